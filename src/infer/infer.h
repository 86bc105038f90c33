/*
 * infer/infer.h — inferd's wrapper over the ONNX Runtime C API.
 *
 * An infer_env is the process-wide runtime: one OrtEnv with global intra-op
 * and inter-op thread pools, so that every session shares the same threads
 * instead of each model spawning its own. An infer_model is one loaded model
 * directory (manifest + one OrtSession) shared by all slot threads: OrtRun is
 * thread-safe, so the model is loaded once per process.
 *
 * Threading: infer_env_new/infer_model_load/free run on the main thread
 * before/after workers; infer_run may be called concurrently from any number
 * of threads on the same model. Nothing here holds a lock during a run; an
 * env runs one watchdog thread once a run with a deadline has been made.
 */
#ifndef INFERD_INFER_INFER_H
#define INFERD_INFER_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "infer/manifest.h"
#include "util/err.h"

typedef struct infer_env infer_env;
typedef struct infer_model infer_model;

typedef struct {
    int intra_op_threads; /* threads per run in the global pool; 0 = ORT default */
    int inter_op_threads; /* 0 = ORT default (1 with sequential execution) */
    int allow_spinning;   /* 0: pool threads sleep at once (many slots); 1: spin (latency) */
    int log_level;        /* ORT severity: 0 verbose .. 4 fatal; default 3 (error) */
} infer_env_opts;

/*
 * Creates the process runtime. `opts` may be NULL for defaults. On success
 * `*out` is owned by the caller: release with infer_env_free(). Fails with
 * ERR_RUNTIME and ORT's message.
 */
int infer_env_new(const infer_env_opts *opts, infer_env **out, err_t *e);

/* Releases the runtime; every model must be freed first. NULL is a no-op. */
void infer_env_free(infer_env *env);

/* ONNX Runtime library version string ("1.22.0"); static storage. */
const char *infer_runtime_version(void);

/* The ORT C API version inferd was compiled against (the headers'). */
int infer_api_version(void);

/*
 * Loads the model directory `dir` (manifest.json + model file) into one
 * session. Checks that the manifest's input and output names exist in the
 * model (a name "#K" is the model's K-th: infer_model_manifest() then shows
 * the real name). When `verify_sha256` is non-zero the model file's sha256 must equal
 * the manifest's (ERR_CHECKSUM otherwise). `*out` is owned by the caller:
 * release with infer_model_free(). `env` must outlive the model.
 */
int infer_model_load(infer_env *env, const char *dir, int verify_sha256, infer_model **out,
                     err_t *e);

/* Releases the session and manifest. NULL is a no-op. */
void infer_model_free(infer_model *m);

/* The parsed manifest; lives as long as `m`. */
const model_manifest *infer_model_manifest(const infer_model *m);

/*
 * Number of floats one image occupies in the input tensor
 * (width * height * channels from the manifest).
 */
size_t infer_input_size(const infer_model *m);

/*
 * The batch size the model's input requires: its fixed first dimension, or 0
 * when the batch is dynamic (any batch >= 1 is accepted).
 */
int infer_fixed_batch(const infer_model *m);

/*
 * The declared shape of the output with manifest role `role` into
 * dims[0..rank) (-1 where dynamic); returns the rank, or -1 when the model
 * has no such role.
 */
int infer_output_shape(const infer_model *m, const char *role, int64_t dims[8]);

/*
 * Sets the manifest's embedding_dim of a model whose loader learnt it only
 * after loading (from the output shape or a probe run). Load time only: not
 * safe against concurrent runs.
 */
void infer_model_set_embedding_dim(infer_model *m, int dim);

/* One output request for infer_run(). */
typedef struct {
    const char *role; /* manifest output role, e.g. "embedding" */
    float *data;      /* caller's buffer; receives the output */
    size_t cap;       /* capacity of data, in floats */
    size_t count;     /* out: floats written */
    int64_t shape[8]; /* out: the output's shape */
    int rank;         /* out: number of dims */
} infer_output;

/*
 * Runs the model on `batch` images laid out per the manifest (NHWC or NCHW,
 * already normalised) in `input` (batch * infer_input_size floats; not
 * copied, not modified). Fills each of the `nouts` requested outputs.
 * Fails with ERR_INVAL for an unknown role, ERR_TOOBIG when an output does not
 * fit its buffer, ERR_RUNTIME with ORT's message when the run fails.
 * Thread-safe.
 */
int infer_run(infer_model *m, const float *input, int batch, infer_output *outs, size_t nouts,
              err_t *e);

/*
 * infer_run() that gives up at `deadline_ms` (CLOCK_MONOTONIC ms, as
 * clock_mono_ms(); 0 = none): a run still going then is terminated by the
 * env's watchdog thread (ORT's RunOptionsSetTerminate) and fails with
 * ERR_TIMEOUT, as does a call made after the deadline. Thread-safe.
 */
int infer_run_until(infer_model *m, const float *input, int batch, infer_output *outs,
                    size_t nouts, int64_t deadline_ms, err_t *e);

/*
 * Generic tensor entry points, for models that are not fed one normalised
 * image (a CLIP text encoder takes int32/int64 token ids [N, 77]).
 */

/* Element types accepted by infer_run_tensor; the values are ONNX's. */
typedef enum { INFER_ELEM_FLOAT = 1, INFER_ELEM_INT32 = 6, INFER_ELEM_INT64 = 7 } infer_elem_type;

/*
 * Like infer_model_load, but with the manifest supplied by the caller instead
 * of read from manifest.json, and the model file at `model_path` (man->file
 * is ignored; no sha256 check). `man` is copied (labels too); the caller keeps
 * its own. When man->task is TASK_UNKNOWN the model is a "tensor model" fed
 * only through infer_run_tensor: its input named man->input_name must exist
 * but may have any rank and element type. For image tasks the input is
 * checked exactly as infer_model_load checks it. Errors as infer_model_load.
 */
int infer_model_load_manifest(infer_env *env, const char *model_path, const model_manifest *man,
                              infer_model **out, err_t *e);

/*
 * Describes the model input `name`: its element type (ONNX's number, see
 * infer_elem_type) into `*elem_type`, and its declared shape (-1 where
 * dynamic) into dims[0..*rank) (dims must hold 8). ERR_INVAL when the model
 * has no such input.
 */
int infer_input_info(const infer_model *m, const char *name, int *elem_type, int64_t *dims,
                     int *rank, err_t *e);

/*
 * Runs the model on one input tensor: `data` (not copied, not modified)
 * holds prod(shape[0..rank)) elements of `elem_type` for the input named
 * `input_name` (NULL: the manifest's input). shape[0] is the batch used to
 * bind outputs of static shape. Outputs are requested by role as for
 * infer_run, with the same errors; ERR_INVAL for rank outside 1..8 or a
 * non-positive dimension. Thread-safe.
 */
int infer_run_tensor(infer_model *m, const char *input_name, infer_elem_type elem_type,
                     const void *data, const int64_t *shape, int rank, infer_output *outs,
                     size_t nouts, err_t *e);

/* Scales `v[0..n)` to unit L2 norm in place and returns the norm it had. */
float infer_l2_normalize(float *v, size_t n);

#endif
