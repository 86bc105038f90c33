/*
 * tools/tfjs2onnx/t2o.h — the TF.js graph model to ONNX converter, as a
 * small library shared by the `tfjs2onnx` command and its unit test.
 *
 * Three layers: jslit.c turns the JavaScript wrappers nsfwjs ships its models
 * in back into JSON and bytes (without running JavaScript); tfjs.c loads a
 * model.json and its weight shards into a t2o_model with every weight
 * decoded to float32 or int32; convert.c maps the TF graph onto ONNX opset 13
 * nodes and serialises a ModelProto with protobuf-c. Packages that ship
 * weights without a graph (face-api) need the architecture written down:
 * dlibnet.c builds dlib's face recognition ResNet from its weight names.
 * ONNX protos are built with tools/onnxb. Names here carry the `t2o_` prefix
 * so that nothing collides with the daemon's modules.
 */
#ifndef INFERD_TOOLS_T2O_H
#define INFERD_TOOLS_T2O_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/err.h"

/* Limits on sizes read from input, checked before allocation. */
#define T2O_MAX_JSON_BYTES (64u << 20)
#define T2O_MAX_SHARD_BYTES (512u << 20)
#define T2O_MAX_ELEMS (1u << 28)
#define T2O_MAX_RANK 8

/* ---- jslit.c ----------------------------------------------------------- */

/*
 * Converts the JavaScript object/array literal that starts at `src` (after
 * optional whitespace) into JSON text: unquoted and single-quoted keys are
 * quoted, numbers like `.5`, `-.1`, `5.` are normalised, `!0`/`!1` become
 * true/false, `void 0`/`undefined` become null, trailing commas are dropped.
 * Stops at the end of that one value; `*consumed` (may be NULL) receives the
 * number of bytes read. On success `*json` is a NUL-terminated string the
 * caller frees. Fails with ERR_FORMAT naming the byte offset.
 */
int t2o_js_to_json(const char *src, size_t len, size_t *consumed, char **json, err_t *e);

/*
 * Finds the value assigned by the first `exports=` in a browserify-style
 * wrapper and returns its offset in `*off`. ERR_FORMAT when there is none.
 */
int t2o_js_find_export(const char *src, size_t len, size_t *off, err_t *e);

/*
 * Decodes base64 (standard or URL-safe alphabet, padding optional, whitespace
 * ignored). `*out` is malloc'd (caller frees), `*outlen` its length.
 * ERR_FORMAT on a character outside the alphabet or a dangling sextet.
 */
int t2o_base64_decode(const char *src, size_t len, uint8_t **out, size_t *outlen, err_t *e);

/* IEEE 754 half (binary16) to float, including subnormals, inf and NaN. */
float t2o_f16_to_f32(uint16_t h);

/* ---- tfjs.c ------------------------------------------------------------ */

typedef enum { T2O_F32 = 1, T2O_I32 = 6 } t2o_dtype; /* values are ONNX's */

typedef struct {
    char *name;
    t2o_dtype dtype;
    int rank;
    int64_t dims[T2O_MAX_RANK];
    size_t count;
    void *data; /* float[count] or int32_t[count], owned */
} t2o_weight;

typedef struct {
    json_t *root;      /* owned reference to the parsed model.json */
    json_t *nodes;     /* borrowed: modelTopology.node; NULL for weights only */
    json_t *signature; /* borrowed, may be NULL */
    size_t nweights;
    t2o_weight *weights;
} t2o_model;

/*
 * Loads `path` (a model.json, a .js wrapping the model literal, or a bare
 * weights manifest: the JSON array of {paths, weights} groups that
 * model.json holds as weightsManifest, which leaves m->nodes NULL) and every
 * shard named by its weight groups, relative to the file's directory. A
 * shard path that does not exist is retried with ".min.js" and ".js"
 * appended; a shard ending in ".js" is unwrapped from its base64 string.
 * Release with t2o_model_free().
 */
int t2o_model_load(const char *path, t2o_model *m, err_t *e);

/*
 * Takes a reference on `root` (a parsed model.json) and fills `m` with its
 * graph and signature; no weights yet. Used by t2o_model_load and by tests.
 */
int t2o_model_init(t2o_model *m, json_t *root, err_t *e);

/*
 * Decodes the weights listed in the JSON array `entries` (one manifest
 * group) from `buf`, the group's shards concatenated, and appends them to
 * `m`. float32/int32 are copied; quantized uint8/uint16 become q*scale+min;
 * float16 becomes float32. ERR_FORMAT when the bytes run short or an entry
 * is malformed, ERR_UNSUPPORTED for other dtypes.
 */
int t2o_weights_decode(t2o_model *m, json_t *entries, const uint8_t *buf, size_t len, err_t *e);

/* Returns the weight named `name`, or NULL. */
const t2o_weight *t2o_model_weight(const t2o_model *m, const char *name);

/* Frees everything `m` owns; safe on a zeroed struct. */
void t2o_model_free(t2o_model *m);

/* ---- convert.c --------------------------------------------------------- */

#define T2O_MAX_EXTRA 8

typedef struct {
    const char *node; /* TF node name, or a unique "/suffix" of one */
    const char *name; /* graph output name; NULL: "<node>:0" */
} t2o_extra_output;

typedef struct {
    int nextra;
    t2o_extra_output extra[T2O_MAX_EXTRA];
} t2o_options;

/*
 * Converts `m` to a serialised ONNX ModelProto (ir_version 8, opset 13). The
 * graph keeps the TF.js NHWC input and the signature's tensor names; each
 * convolution and pooling is wrapped in NHWC<->NCHW transposes. Outputs are
 * the signature's plus `o->extra`. The bytes depend only on the input, so
 * converting twice gives the same file. `*out` is malloc'd (caller frees).
 * ERR_UNSUPPORTED names the op and node that cannot be mapped.
 */
int t2o_convert(const t2o_model *m, const t2o_options *o, uint8_t **out, size_t *outlen,
                err_t *e);

/* Prints "count op" lines for the graph's ops, most frequent first. */
void t2o_print_histogram(const t2o_model *m, FILE *f);

/* ---- dlibnet.c --------------------------------------------------------- */

/*
 * Builds dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1
 * as face-api ships it: weights only) from the weights of `m` and serialises
 * it as ONNX (ir 8, opset 13): input "input" float [N, 3, S, S] with
 * S = `input_size` (face-api: 150), pixels already normalised as
 * (rgb - mean) / 255; output "embedding" [N, D], the raw descriptor. The
 * structure is read from the weight names (see dlibnet.c); a manifest that
 * does not follow them fails with ERR_FORMAT naming the weight or block.
 * ERR_INVAL for an input size outside 32..1024 or too small for the
 * network. `*out` is malloc'd (caller frees). Deterministic, as t2o_convert.
 */
int t2o_build_dlib_resnet(const t2o_model *m, int input_size, uint8_t **out, size_t *outlen,
                          err_t *e);

#endif
