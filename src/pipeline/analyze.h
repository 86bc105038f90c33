/*
 * pipeline/analyze.h — one image through every model: decode, image
 * embedding (+ NSFW scores), face detection, alignment, face embedding.
 *
 * This is the unit of work a worker slot runs for a job, and what
 * `inferd analyze` prints. It owns the three loaded models; the daemon will
 * create one pipeline per process and call pipeline_analyze from every slot.
 *
 * Threading: pipeline_new/free on one thread; pipeline_analyze_* may run
 * concurrently on one pipeline (the models are shared read-only, ORT runs are
 * thread-safe, every buffer is per call). The _shared variants let other
 * threads run views of the call's face detection (pipeline_share); the
 * caller's thread still owns the call and its image, which it frees only
 * after every view has finished.
 */
#ifndef INFERD_PIPELINE_ANALYZE_H
#define INFERD_PIPELINE_ANALYZE_H

#include <jansson.h>
#include <stddef.h>

#include "infer/infer.h"
#include "util/err.h"
#include "vision/vision.h"

typedef struct pipeline pipeline;

#define PIPELINE_DEFAULT_DETECTOR "blazeface-back-256"
#define PIPELINE_DEFAULT_FACE_EMBEDDER "dlib-resnet"
#define PIPELINE_DEFAULT_IMAGE_EMBEDDER "mobilenet-v2-mid"

typedef struct {
    const char *models_dir;     /* directory holding one folder per model */
    const char *detector;       /* model names; NULL = defaults above */
    const char *face_embedder;  /* "" disables face embedding */
    const char *image_embedder; /* "" disables image embedding */
    int intra_op_threads;       /* 0 = ORT default */
    int verify_models;          /* check each model file's sha256 at load */
    vision_decode_opts decode;
    vision_detect_opts detect;
} pipeline_opts;

/* Stages, in order, as reported in timings_ms. */
typedef enum {
    STAGE_DECODE = 0,
    STAGE_IMAGE_EMBEDDING,
    STAGE_FACE_DETECTION,
    STAGE_FACE_ALIGNMENT,
    STAGE_FACE_EMBEDDING,
    STAGE_COUNT
} pipeline_stage;

/* "decode", "image_embedding", ...; static storage. */
const char *pipeline_stage_name(pipeline_stage s);

typedef struct {
    vision_face det;  /* box, score, keypoints (det.nkps says which) in original pixels */
    float *embedding; /* L2-normalised, face_dim floats; NULL without a face embedder */
} analysis_face;

typedef struct {
    int width, height; /* original (upright) image size */
    /* Image embedding: L2-normalised; `image_norm` is the norm before. */
    const char *image_model; /* NULL when disabled; points into the pipeline */
    int image_dim;
    float image_norm;
    float *image_embedding;
    /* Class scores of the image model's "nsfw" output, labels from its manifest. */
    int nnsfw;
    char *const *nsfw_labels;
    float nsfw[MANIFEST_MAX_LABELS];
    const char *face_model; /* NULL when disabled */
    int face_dim;
    int nfaces;
    analysis_face *faces;
    double timings_ms[STAGE_COUNT];
    double total_ms;
    /* A JPEG of the decoded image for pages to show, when the call asked (thumb_side):
     * owned by the analysis. Its time counts in the decode stage. */
    unsigned char *thumb;
    size_t thumb_len;
    int thumb_w, thumb_h;
} analysis;

/*
 * Loads the models named in `opts` from opts->models_dir and starts libvips
 * (vision_init). `*out` is owned by the caller: release with pipeline_free().
 * Fails with the model loader's errors, naming the model directory.
 */
int pipeline_new(const pipeline_opts *opts, pipeline **out, err_t *e);

typedef struct clip_model clip_model;

/*
 * The CLIP model when the image embedder is a CLIP directory (OpenCLIP /
 * Immich layout: visual/ + textual/, no manifest.json), else NULL. Owned by
 * the pipeline; its text encoder serves {text} searches in the same space.
 */
clip_model *pipeline_clip(const pipeline *p);

/* Frees the models and the runtime. NULL is a no-op. */
void pipeline_free(pipeline *p);

/* The manifest of the model loaded for `task`, or NULL when that stage is off. Lives as
 * long as `p`. */
const model_manifest *pipeline_model(const pipeline *p, model_task task);

/* Which stages pipeline_analyze_* runs (same bits as the store's JOB_TASK_*). */
#define PIPELINE_IMAGE_EMBEDDING 0x1u
#define PIPELINE_FACES 0x2u
#define PIPELINE_ALL (PIPELINE_IMAGE_EMBEDDING | PIPELINE_FACES)

/*
 * Runs the stages in `tasks` (PIPELINE_*; stages whose model is disabled are
 * skipped) on the image file at `path` (or on `len` bytes at `buf`).
 * On success `*out` is owned by the caller: release with analysis_free().
 * Fails with ERR_DECODE / ERR_TOOBIG / ERR_UNSUPPORTED_FORMAT for bad
 * images, infer errors otherwise.
 */
int pipeline_analyze_file(pipeline *p, const char *path, unsigned tasks, analysis **out,
                          err_t *e);
int pipeline_analyze_buffer(pipeline *p, const void *buf, size_t len, unsigned tasks,
                            analysis **out, err_t *e);

/*
 * A caller's hook to share the face detection of one pipeline_analyze_*
 * call with other threads. offer() is called on the calling thread after
 * the detection task is set up (only when it has more than one view) and
 * before the caller starts running views; from then on other threads may
 * vision_detect_retain() it (under the caller's own lock, see vision.h) and
 * run views with vision_detect_work(). withdraw() is called on the calling
 * thread once every view has been claimed, before the results are merged;
 * after it the caller must hand `t` to no further thread (a thread that
 * still holds a reference may keep it, it finds nothing left to run).
 * Both are called exactly once each, in that order, or not at all.
 */
typedef struct {
    void *ctx;
    void (*offer)(void *ctx, vision_detect_task *t);
    void (*withdraw)(void *ctx, vision_detect_task *t);
} pipeline_share;

/* How one call runs, beyond what the pipeline was made with. */
typedef struct {
    const pipeline_share *share; /* publish the face detection through it; NULL: none */
    int thumb_side;              /* > 0: make analysis.thumb fitting this side (never upscaled) */
    /*
     * clock_mono_ms() at which the call gives up with ERR_TIMEOUT (0: never):
     * a decode in progress is killed (libvips), a model run terminated (ORT),
     * and no further stage, view or batch starts. A job's deadline.
     */
    int64_t deadline_ms;
    /* > 0: the face detector's score threshold for this call instead of the pipeline's
     * (Immich's per-request minScore). */
    float min_score;
} pipeline_call;

/* As pipeline_analyze_file/_buffer, as `call` says (NULL: as those). */
int pipeline_analyze_file_ex(pipeline *p, const char *path, unsigned tasks,
                             const pipeline_call *call, analysis **out, err_t *e);
int pipeline_analyze_buffer_ex(pipeline *p, const void *buf, size_t len, unsigned tasks,
                               const pipeline_call *call, analysis **out, err_t *e);

/* Frees a result. NULL is a no-op. */
void analysis_free(analysis *a);

/*
 * The result as a new JSON object (the shape `inferd analyze` prints and the
 * API reuses): width, height, image_embedding {model, dim, norm[, vector]},
 * nsfw {label: score}, faces [{box, score, keypoints (6 BlazeFace points, or
 * SCRFD's 5), embedding {model, dim
 * [, vector]}}], timings_ms. Vectors only when `with_vectors`. The caller
 * owns the reference (json_decref).
 */
json_t *analysis_to_json(const analysis *a, int with_vectors);

#endif
