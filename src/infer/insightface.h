/*
 * infer/insightface.h — Immich's facial-recognition model directories
 * (insightface model packs such as buffalo_l) without an inferd manifest.
 *
 * Layout (what Immich's machine-learning service downloads):
 *
 *   DIR/detection/model.onnx    SCRFD (e.g. det_10g): input 0 float [1,3,H,W] (H, W
 *                               dynamic or static and square; dynamic means 640);
 *                               9 outputs in this order: scores of strides 8, 16, 32
 *                               ([A,1]), box distances ([A,4]), keypoint offsets
 *                               ([A,10]), A = (H/s)^2 * 2, optionally with a leading
 *                               batch dimension [1,A,k]. Tensor names are arbitrary:
 *                               they are read by position.
 *   DIR/recognition/model.onnx  ArcFace (e.g. w600k_r50): input 0 float [N,3,112,112]
 *                               (N dynamic or 1), output 0 [N,D] (D = 512 for buffalo_l).
 *
 * The manifests are synthesised in memory (we never write into a user's
 * model directory): the detector is family "scrfd", (RGB - 127.5) / 128,
 * NCHW; the recognizer family "arcface", (RGB - 127.5) / 127.5, NCHW, crop
 * "align5" (insightface's norm_crop). Both are named after DIR's last
 * component ("buffalo_l").
 */
#ifndef INFERD_INFER_INSIGHTFACE_H
#define INFERD_INFER_INSIGHTFACE_H

#include "infer/infer.h"
#include "util/err.h"

/*
 * Whether `dir` holds the part of an insightface pack that `task` needs
 * (detection/model.onnx for TASK_FACE_DETECTION, recognition/model.onnx for
 * TASK_FACE_EMBEDDING) and no manifest.json.
 */
int insightface_dir_has(const char *dir, model_task task);

/*
 * Loads the detector (TASK_FACE_DETECTION) or the recognizer
 * (TASK_FACE_EMBEDDING) of the pack at `dir`. `*out` is the caller's
 * (infer_model_free). ERR_NOENT when the file is missing, ERR_MODEL /
 * ERR_MANIFEST when the model does not have the layout above, ERR_INVAL for
 * another task.
 */
int insightface_load(infer_env *env, const char *dir, model_task task, infer_model **out, err_t *e);

#endif
