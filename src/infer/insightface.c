/*
 * infer/insightface.c — loads Immich's insightface packs (layout in
 * insightface.h) with manifests made here.
 *
 * The detector's outputs are bound by position ("#0".."#8", resolved by
 * infer.c) to the roles vision/detect.c reads (score_8 .. kps_32). Where the
 * model declares static shapes they are checked against that order (last
 * dimension 1, 4, 10), so that a pack exported in another order fails at
 * load rather than decoding boxes from scores.
 *
 * Threading: load-time only.
 */
#include "infer/insightface.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/log.h"
#include "util/xalloc.h"

#define IF_DET_SIZE 640 /* Immich's input_size for a dynamic input */
#define IF_REC_SIZE 112
#define IF_MAX_DIM 8192

static const char *const if_roles[9] = {"score_8", "score_16", "score_32", "bbox_8", "bbox_16",
                                        "bbox_32", "kps_8",    "kps_16",   "kps_32"};

static int if_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int insightface_dir_has(const char *dir, model_task task)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    if (if_file(p))
        return 0;
    if (task == TASK_FACE_DETECTION)
        snprintf(p, sizeof p, "%s/detection/model.onnx", dir);
    else if (task == TASK_FACE_EMBEDDING)
        snprintf(p, sizeof p, "%s/recognition/model.onnx", dir);
    else
        return 0;
    return if_file(p);
}

/* The common part of both manifests; ERR_MANIFEST for a directory name too long. */
static int if_manifest(model_manifest *m, const char *dir, model_task task, const char *family,
                       int size, float std, err_t *e)
{
    memset(m, 0, sizeof *m);
    int rc = manifest_name_from_dir(m, dir, e);
    if (rc != ERR_OK)
        return rc;
    snprintf(m->family, sizeof m->family, "%s", family);
    snprintf(m->input_name, sizeof m->input_name, "#0");
    m->task = task;
    m->layout = LAYOUT_NCHW;
    m->width = m->height = size;
    m->channels = 3;
    for (int c = 0; c < 3; c++) {
        m->mean[c] = 127.5f;
        m->std[c] = std;
    }
    snprintf(m->licence, sizeof m->licence, "insightface (non-commercial research)");
    return ERR_OK;
}

static int load_detector(infer_env *env, const char *dir, infer_model **out, err_t *e)
{
    char path[4200];
    model_manifest man;
    snprintf(path, sizeof path, "%s/detection/model.onnx", dir);
    if (!if_file(path))
        return err_set(e, ERR_NOENT, "%s: no detection/model.onnx", dir);
    int rc = if_manifest(&man, dir, TASK_FACE_DETECTION, "scrfd", IF_DET_SIZE, 128.0f, e);
    if (rc != ERR_OK)
        return rc;
    snprintf(man.file, sizeof man.file, "detection/model.onnx");
    man.noutputs = 9;
    for (int i = 0; i < 9; i++) {
        snprintf(man.outputs[i].role, sizeof man.outputs[i].role, "%s", if_roles[i]);
        snprintf(man.outputs[i].name, sizeof man.outputs[i].name, "#%d", i);
    }
    rc = infer_model_load_manifest(env, path, &man, out, e);
    if (rc != ERR_OK)
        return rc;
    /* A static input size replaces 640 (square only: insightface's fit assumes it). */
    const model_manifest *m = infer_model_manifest(*out);
    int et, rank;
    int64_t d[8];
    if ((rc = infer_input_info(*out, m->input_name, &et, d, &rank, e)) != ERR_OK)
        goto fail;
    if (d[1] > 0 && d[1] != 3) {
        rc = err_set(e, ERR_MODEL, "%s: input has %lld channels, expected 3 (NCHW)", path,
                     (long long)d[1]);
        goto fail;
    }
    if ((d[2] > 0) != (d[3] > 0) || (d[2] > 0 && (d[2] != d[3] || d[2] % 32 != 0))) {
        rc = err_set(e, ERR_MODEL,
                     "%s: input %lldx%lld: expected dynamic or square, a multiple "
                     "of 32",
                     path, (long long)d[3], (long long)d[2]);
        goto fail;
    }
    if (d[2] > 0 && d[2] != IF_DET_SIZE) {
        man.width = man.height = (int)d[2];
        infer_model_free(*out);
        *out = NULL;
        if ((rc = infer_model_load_manifest(env, path, &man, out, e)) != ERR_OK)
            return rc;
    }
    static const int k[3] = {1, 4, 10};
    for (int i = 0; i < 9; i++) {
        int r = infer_output_shape(*out, if_roles[i], d);
        if (r >= 2 && d[r - 1] > 0 && d[r - 1] != k[i / 3]) {
            rc = err_set(e, ERR_MODEL,
                         "%s: output %d has last dimension %lld, expected %d (outputs must be "
                         "scores, boxes, keypoints of strides 8, 16, 32)",
                         path, i, (long long)d[r - 1], k[i / 3]);
            goto fail;
        }
    }
    log_debug("insightface", "detector %s: input %dx%d", path, infer_model_manifest(*out)->width,
              infer_model_manifest(*out)->height);
    return ERR_OK;
fail:
    infer_model_free(*out);
    *out = NULL;
    return rc;
}

static int load_recognizer(infer_env *env, const char *dir, infer_model **out, err_t *e)
{
    char path[4200];
    model_manifest man;
    snprintf(path, sizeof path, "%s/recognition/model.onnx", dir);
    if (!if_file(path))
        return err_set(e, ERR_NOENT, "%s: no recognition/model.onnx", dir);
    int rc = if_manifest(&man, dir, TASK_FACE_EMBEDDING, "arcface", IF_REC_SIZE, 127.5f, e);
    if (rc != ERR_OK)
        return rc;
    snprintf(man.file, sizeof man.file, "recognition/model.onnx");
    man.crop_method = CROP_ALIGN5;
    man.crop_scale = 1.0f;
    man.noutputs = 1;
    snprintf(man.outputs[0].role, sizeof man.outputs[0].role, "embedding");
    snprintf(man.outputs[0].name, sizeof man.outputs[0].name, "#0");
    rc = infer_model_load_manifest(env, path, &man, out, e);
    if (rc != ERR_OK)
        return rc;
    int et, rank;
    int64_t d[8];
    if ((rc = infer_input_info(*out, infer_model_manifest(*out)->input_name, &et, d, &rank, e)) !=
        ERR_OK)
        goto fail;
    if ((d[1] > 0 && d[1] != 3) || (d[2] > 0 && d[2] != IF_REC_SIZE) ||
        (d[3] > 0 && d[3] != IF_REC_SIZE)) {
        rc = err_set(e, ERR_MODEL, "%s: input [%lld,%lld,%lld,%lld], expected [N,3,%d,%d]", path,
                     (long long)d[0], (long long)d[1], (long long)d[2], (long long)d[3],
                     IF_REC_SIZE, IF_REC_SIZE);
        goto fail;
    }
    /* The embedding size: the output's static last dimension, else one run on a black crop. */
    int r = infer_output_shape(*out, "embedding", d);
    int dim = r == 2 && d[1] > 0 ? (int)d[1] : 0;
    if (dim == 0) {
        size_t n = infer_input_size(*out);
        float *in = xcalloc(n, sizeof *in);
        float *o = xmalloc(IF_MAX_DIM * sizeof *o);
        infer_output io = {.role = "embedding", .data = o, .cap = IF_MAX_DIM};
        rc = infer_run(*out, in, 1, &io, 1, e);
        dim = (int)io.count;
        free(in);
        free(o);
        if (rc != ERR_OK)
            goto fail;
    }
    if (dim < 1 || dim > IF_MAX_DIM) {
        rc = err_set(e, ERR_MODEL, "%s: embedding of %d values", path, dim);
        goto fail;
    }
    infer_model_set_embedding_dim(*out, dim);
    return ERR_OK;
fail:
    infer_model_free(*out);
    *out = NULL;
    return rc;
}

int insightface_load(infer_env *env, const char *dir, model_task task, infer_model **out, err_t *e)
{
    *out = NULL;
    if (strlen(dir) > 4000)
        return err_set(e, ERR_INVAL, "model directory path too long");
    if (task == TASK_FACE_DETECTION)
        return load_detector(env, dir, out, e);
    if (task == TASK_FACE_EMBEDDING)
        return load_recognizer(env, dir, out, e);
    return err_set(e, ERR_INVAL, "%s: an insightface pack has no %s model", dir,
                   manifest_task_name(task));
}
