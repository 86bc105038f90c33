/*
 * pipeline/analyze.c — the per-image pipeline behind analyze.h.
 *
 * Buffers are allocated per call and sized from the manifests, so concurrent
 * calls share nothing but the read-only models. Faces are embedded in batches
 * of up to FACE_BATCH through one run when the embedder takes a dynamic batch
 * (one run per face otherwise).
 *
 * Threading: see analyze.h. With a pipeline_share, the face detection is a
 * vision_detect_task offered to the caller's helpers between the calling
 * thread's begin and its own last claimed view; the calling thread frees
 * the image only after vision_detect_finish, which waits for every view.
 */
#include "pipeline/analyze.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "infer/clip.h"
#include "infer/insightface.h"
#include "util/log.h"
#include "util/xalloc.h"
#include "util/clock.h"

#define FACE_BATCH 16

struct pipeline {
    infer_env *env;
    infer_model *detector;
    infer_model *face_embedder;
    infer_model *image_embedder; /* owned by `clip` when that is set */
    clip_model *clip;            /* the image embedder's CLIP directory, or NULL */
    vision_decode_opts decode;
    vision_detect_opts detect;
};

static const char *stage_names[STAGE_COUNT] = {
    "decode", "image_embedding", "face_detection", "face_alignment", "face_embedding",
};

const char *pipeline_stage_name(pipeline_stage s)
{
    return (unsigned)s < STAGE_COUNT ? stage_names[s] : "unknown";
}

static int load(pipeline *p, const pipeline_opts *o, const char *name, model_task task,
                infer_model **out, err_t *e)
{
    if (name == NULL || name[0] == '\0')
        return ERR_OK;
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", o->models_dir, name) >= sizeof dir)
        return err_set(e, ERR_INVAL, "models dir path too long");
    int rc;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/manifest.json", dir);
    if (task == TASK_IMAGE_EMBEDDING && access(probe, F_OK) != 0) {
        /* No manifest: an OpenCLIP / Immich CLIP directory (visual/ + textual/). */
        snprintf(probe, sizeof probe, "%s/visual/model.onnx", dir);
        if (access(probe, F_OK) == 0) {
            if ((rc = clip_model_load(p->env, dir, &p->clip, e)) != ERR_OK)
                return rc;
            *out = clip_visual(p->clip);
            return ERR_OK;
        }
    }
    if ((task == TASK_FACE_DETECTION || task == TASK_FACE_EMBEDDING) &&
        insightface_dir_has(dir, task)) {
        /* No manifest: an Immich facial-recognition pack (detection/ + recognition/). */
        return insightface_load(p->env, dir, task, out, e);
    }
    rc = infer_model_load(p->env, dir, o->verify_models, out, e);
    if (rc != ERR_OK)
        return rc;
    const model_manifest *m = infer_model_manifest(*out);
    if (m->task != task)
        return err_set(e, ERR_MANIFEST, "%s: task is %s, expected %s", dir,
                       manifest_task_name(m->task), manifest_task_name(task));
    return ERR_OK;
}

int pipeline_new(const pipeline_opts *o, pipeline **out, err_t *e)
{
    *out = NULL;
    int rc = vision_init(1, e);
    if (rc != ERR_OK)
        return rc;
    pipeline *p = xcalloc(1, sizeof *p);
    p->decode = o->decode;
    p->detect = o->detect;
    infer_env_opts eo = {.intra_op_threads = o->intra_op_threads};
    if ((rc = infer_env_new(&eo, &p->env, e)) != ERR_OK)
        goto out;
    if ((rc = load(p, o, o->detector ? o->detector : PIPELINE_DEFAULT_DETECTOR,
                   TASK_FACE_DETECTION, &p->detector, e)) != ERR_OK)
        goto out;
    if ((rc = load(p, o, o->face_embedder ? o->face_embedder : PIPELINE_DEFAULT_FACE_EMBEDDER,
                   TASK_FACE_EMBEDDING, &p->face_embedder, e)) != ERR_OK)
        goto out;
    if ((rc = load(p, o, o->image_embedder ? o->image_embedder : PIPELINE_DEFAULT_IMAGE_EMBEDDER,
                   TASK_IMAGE_EMBEDDING, &p->image_embedder, e)) != ERR_OK)
        goto out;
    if (p->face_embedder != NULL) {
        const model_manifest *fm = infer_model_manifest(p->face_embedder);
        if (fm->width != fm->height || fm->channels != 3) {
            rc = err_set(e, ERR_MANIFEST, "face embedder %s: input must be square RGB", fm->name);
            goto out;
        }
        if (infer_fixed_batch(p->face_embedder) > 1) {
            rc = err_set(e, ERR_UNSUPPORTED, "face embedder %s: fixed batch %d (1 or dynamic only)",
                         fm->name, infer_fixed_batch(p->face_embedder));
            goto out;
        }
    }
    *out = p;
    p = NULL;
out:
    pipeline_free(p);
    return rc;
}

void pipeline_free(pipeline *p)
{
    if (p == NULL)
        return;
    infer_model_free(p->detector);
    infer_model_free(p->face_embedder);
    if (p->clip != NULL)
        clip_model_free(p->clip); /* owns image_embedder */
    else
        infer_model_free(p->image_embedder);
    infer_env_free(p->env);
    free(p);
}

clip_model *pipeline_clip(const pipeline *p)
{
    return p->clip;
}

const model_manifest *pipeline_model(const pipeline *p, model_task task)
{
    const infer_model *m = task == TASK_FACE_DETECTION   ? p->detector
                           : task == TASK_FACE_EMBEDDING ? p->face_embedder
                           : task == TASK_IMAGE_EMBEDDING ? p->image_embedder
                                                          : NULL;
    return m ? infer_model_manifest(m) : NULL;
}

void analysis_free(analysis *a)
{
    if (a == NULL)
        return;
    free(a->image_embedding);
    for (int i = 0; i < a->nfaces; i++)
        free(a->faces[i].embedding);
    free(a->faces);
    free(a->thumb);
    free(a);
}

static int embed_image(pipeline *p, const vision_image *img, int64_t deadline, analysis *a,
                       err_t *e)
{
    const model_manifest *m = infer_model_manifest(p->image_embedder);
    float *in = xmalloc(infer_input_size(p->image_embedder) * sizeof(float));
    int rc = vision_preprocess(img, m, 0, in, NULL, e);
    if (rc != ERR_OK)
        goto out;
    a->image_model = m->name;
    a->image_dim = m->embedding_dim;
    a->image_embedding = xmalloc((size_t)m->embedding_dim * sizeof(float));
    const manifest_output *nsfw = manifest_output_by_role(m, "nsfw");
    infer_output outs[2] = {
        {.role = "embedding", .data = a->image_embedding, .cap = (size_t)m->embedding_dim},
        {.role = "nsfw", .data = a->nsfw, .cap = MANIFEST_MAX_LABELS},
    };
    if ((rc = infer_run_until(p->image_embedder, in, 1, outs, nsfw ? 2 : 1, deadline, e)) !=
        ERR_OK)
        goto out;
    if (outs[0].count != (size_t)m->embedding_dim) {
        rc = err_set(e, ERR_MODEL, "%s: embedding has %zu values, manifest says %d", m->name,
                     outs[0].count, m->embedding_dim);
        goto out;
    }
    a->image_norm = infer_l2_normalize(a->image_embedding, (size_t)m->embedding_dim);
    if (nsfw != NULL) {
        a->nnsfw = (int)outs[1].count < nsfw->nlabels ? (int)outs[1].count : nsfw->nlabels;
        a->nsfw_labels = nsfw->labels;
    }
out:
    free(in);
    return rc;
}

/*
 * Raw embedder output to the stored vector: unit length; with a manifest
 * centre, minus the centre and unit length again (see infer/manifest.h).
 */
static void face_vector(const model_manifest *m, float *v)
{
    infer_l2_normalize(v, (size_t)m->embedding_dim);
    if (m->ncenter == 0)
        return;
    for (int k = 0; k < m->ncenter; k++)
        v[k] -= m->center[k];
    infer_l2_normalize(v, (size_t)m->embedding_dim);
}

static int embed_faces(pipeline *p, const vision_image *img, int64_t deadline, analysis *a,
                       err_t *e)
{
    const model_manifest *m = infer_model_manifest(p->face_embedder);
    int dim = m->embedding_dim;
    size_t in_sz = infer_input_size(p->face_embedder);
    /* A model with a fixed batch dimension takes that many faces per run. */
    int batch_cap = infer_fixed_batch(p->face_embedder);
    if (batch_cap == 0)
        batch_cap = FACE_BATCH;
    float *in = xmalloc((size_t)batch_cap * in_sz * sizeof(float));
    float *out = xmalloc((size_t)batch_cap * (size_t)dim * sizeof(float));
    int rc = ERR_OK;
    double t_align = 0, t_embed = 0;
    a->face_model = m->name;
    a->face_dim = dim;
    float sx = (float)img->width / (float)img->orig_width;
    float sy = (float)img->height / (float)img->orig_height;
    for (int start = 0; start < a->nfaces; start += batch_cap) {
        int n = a->nfaces - start < batch_cap ? a->nfaces - start : batch_cap;
        double t0 = clock_mono_msf();
        for (int i = 0; i < n; i++) {
            /* Detections are in original pixels; the crop samples the decoded
             * image, which shrink-on-load may have made smaller. */
            vision_face f = a->faces[start + i].det;
            vision_face_scale(&f, sx, sy);
            float M[2][3];
            if ((rc = vision_face_map(m, &f, M, e)) ||
                (rc = vision_warp_tensor(img, (const float(*)[3])M, m, in + (size_t)i * in_sz, e)))
                goto out;
        }
        double t1 = clock_mono_msf();
        t_align += t1 - t0;
        infer_output o = {.role = "embedding", .data = out, .cap = (size_t)n * (size_t)dim};
        if ((rc = infer_run_until(p->face_embedder, in, n, &o, 1, deadline, e)) != ERR_OK)
            goto out;
        for (int i = 0; i < n; i++) {
            float *v = xmalloc((size_t)dim * sizeof(float));
            memcpy(v, out + (size_t)i * (size_t)dim, (size_t)dim * sizeof(float));
            face_vector(m, v);
            a->faces[start + i].embedding = v;
        }
        t_embed += clock_mono_msf() - t1;
    }
out:
    a->timings_ms[STAGE_FACE_ALIGNMENT] = t_align;
    a->timings_ms[STAGE_FACE_EMBEDDING] = t_embed;
    free(in);
    free(out);
    return rc;
}

/* Face detection, its views offered to other threads through `share` while this one runs. */
static int detect(pipeline *p, const vision_image *img, const pipeline_call *call,
                  vision_face **faces, int *nfaces, err_t *e)
{
    const pipeline_share *share = call != NULL ? call->share : NULL;
    vision_detect_task *t = NULL;
    vision_detect_opts o = p->detect;
    o.deadline_ms = call != NULL ? call->deadline_ms : 0;
    if (call != NULL && call->min_score > 0)
        o.score_threshold = call->min_score;
    int rc = vision_detect_begin(p->detector, img, &o, &t, e);
    if (rc != ERR_OK)
        return rc;
    int shared = share != NULL && share->offer != NULL && vision_detect_pending(t) > 1;
    if (shared)
        share->offer(share->ctx, t);
    vision_detect_work(t, 0);
    if (shared && share->withdraw != NULL)
        share->withdraw(share->ctx, t);
    return vision_detect_finish(t, faces, nfaces, e);
}

/* ERR_TIMEOUT once `deadline` (monotonic ms, 0 = none) has passed, before stage `what`. */
static int check_deadline(int64_t deadline, const char *what, err_t *e)
{
    if (deadline > 0 && clock_mono_ms() >= deadline)
        return err_set(e, ERR_TIMEOUT, "the job's deadline passed before %s", what);
    return ERR_OK;
}

static int analyze(pipeline *p, vision_image *img, unsigned tasks, const pipeline_call *call,
                   double t_start, double t_decoded, analysis **out, err_t *e)
{
    int64_t deadline = call != NULL ? call->deadline_ms : 0;
    analysis *a = xcalloc(1, sizeof *a);
    int rc = ERR_OK;
    a->width = img->orig_width;
    a->height = img->orig_height;
    if (call != NULL && call->thumb_side > 0) {
        double tt = clock_mono_msf();
        if ((rc = vision_thumbnail_jpeg(img, call->thumb_side, &a->thumb, &a->thumb_len,
                                        &a->thumb_w, &a->thumb_h, e)) != ERR_OK)
            goto out;
        t_decoded += clock_mono_msf() - tt; /* counted as decoding */
    }
    a->timings_ms[STAGE_DECODE] = t_decoded - t_start;

    double t = clock_mono_msf();
    if (p->image_embedder != NULL && (tasks & PIPELINE_IMAGE_EMBEDDING) &&
        ((rc = check_deadline(deadline, "the image embedding", e)) != ERR_OK ||
         (rc = embed_image(p, img, deadline, a, e)) != ERR_OK))
        goto out;
    a->timings_ms[STAGE_IMAGE_EMBEDDING] = clock_mono_msf() - t;

    t = clock_mono_msf();
    vision_face *faces = NULL;
    int nfaces = 0;
    if (p->detector != NULL && (tasks & PIPELINE_FACES) &&
        ((rc = check_deadline(deadline, "face detection", e)) != ERR_OK ||
         (rc = detect(p, img, call, &faces, &nfaces, e)) != ERR_OK))
        goto out;
    a->timings_ms[STAGE_FACE_DETECTION] = clock_mono_msf() - t;
    a->nfaces = nfaces;
    a->faces = xcalloc((size_t)(nfaces > 0 ? nfaces : 1), sizeof *a->faces);
    for (int i = 0; i < nfaces; i++)
        a->faces[i].det = faces[i];
    free(faces);
    if (p->face_embedder != NULL && nfaces > 0 &&
        ((rc = check_deadline(deadline, "face embedding", e)) != ERR_OK ||
         (rc = embed_faces(p, img, deadline, a, e)) != ERR_OK))
        goto out;
    a->total_ms = clock_mono_msf() - t_start;
out:
    if (rc != ERR_OK) {
        analysis_free(a);
        a = NULL;
    }
    *out = a;
    return rc;
}

/* The decode options of one call: the pipeline's, with the call's deadline. */
static vision_decode_opts decode_opts(const pipeline *p, const pipeline_call *call)
{
    vision_decode_opts o = p->decode;
    o.deadline_ms = call != NULL ? call->deadline_ms : 0;
    return o;
}

int pipeline_analyze_file_ex(pipeline *p, const char *path, unsigned tasks,
                             const pipeline_call *call, analysis **out, err_t *e)
{
    *out = NULL;
    double t0 = clock_mono_msf();
    vision_image *img = NULL;
    vision_decode_opts o = decode_opts(p, call);
    int rc = vision_decode_file(path, &o, &img, e);
    if (rc != ERR_OK)
        return rc;
    rc = analyze(p, img, tasks, call, t0, clock_mono_msf(), out, e);
    vision_image_free(img);
    return rc;
}

int pipeline_analyze_buffer_ex(pipeline *p, const void *buf, size_t len, unsigned tasks,
                               const pipeline_call *call, analysis **out, err_t *e)
{
    *out = NULL;
    double t0 = clock_mono_msf();
    vision_image *img = NULL;
    vision_decode_opts o = decode_opts(p, call);
    int rc = vision_decode_buffer(buf, len, &o, &img, e);
    if (rc != ERR_OK)
        return rc;
    rc = analyze(p, img, tasks, call, t0, clock_mono_msf(), out, e);
    vision_image_free(img);
    return rc;
}

int pipeline_analyze_file(pipeline *p, const char *path, unsigned tasks, analysis **out,
                          err_t *e)
{
    return pipeline_analyze_file_ex(p, path, tasks, NULL, out, e);
}

int pipeline_analyze_buffer(pipeline *p, const void *buf, size_t len, unsigned tasks,
                            analysis **out, err_t *e)
{
    return pipeline_analyze_buffer_ex(p, buf, len, tasks, NULL, out, e);
}

static json_t *vec_json(const float *v, int n)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_real(v[i]));
    return arr;
}

/* Rounds for output: results are float32, more digits would only be noise. */
static json_t *num(double x, double scale)
{
    return json_real((double)(long long)(x * scale + (x >= 0 ? 0.5 : -0.5)) / scale);
}

json_t *analysis_to_json(const analysis *a, int with_vectors)
{
    json_t *o = json_object();
    json_object_set_new(o, "width", json_integer(a->width));
    json_object_set_new(o, "height", json_integer(a->height));
    if (a->image_model != NULL) {
        json_t *ie = json_object();
        json_object_set_new(ie, "model", json_string(a->image_model));
        json_object_set_new(ie, "dim", json_integer(a->image_dim));
        json_object_set_new(ie, "norm", num(a->image_norm, 1e4));
        if (with_vectors)
            json_object_set_new(ie, "vector", vec_json(a->image_embedding, a->image_dim));
        json_object_set_new(o, "image_embedding", ie);
        if (a->nnsfw > 0) {
            json_t *ns = json_object();
            for (int i = 0; i < a->nnsfw; i++)
                json_object_set_new(ns, a->nsfw_labels[i], num(a->nsfw[i], 1e4));
            json_object_set_new(o, "nsfw", ns);
        }
    }
    json_t *faces = json_array();
    for (int i = 0; i < a->nfaces; i++) {
        const analysis_face *f = &a->faces[i];
        json_t *fo = json_object();
        json_t *box = json_array();
        json_array_append_new(box, num(f->det.box.x1, 10));
        json_array_append_new(box, num(f->det.box.y1, 10));
        json_array_append_new(box, num(f->det.box.x2, 10));
        json_array_append_new(box, num(f->det.box.y2, 10));
        json_object_set_new(fo, "box", box);
        json_object_set_new(fo, "score", num(f->det.score, 1e4));
        json_t *kps = json_array();
        for (int k = 0; k < vision_face_nkps(&f->det); k++) {
            json_t *pt = json_array();
            json_array_append_new(pt, num(f->det.kps[k][0], 10));
            json_array_append_new(pt, num(f->det.kps[k][1], 10));
            json_array_append_new(kps, pt);
        }
        json_object_set_new(fo, "keypoints", kps);
        if (f->embedding != NULL) {
            json_t *fe = json_object();
            json_object_set_new(fe, "model", json_string(a->face_model));
            json_object_set_new(fe, "dim", json_integer(a->face_dim));
            if (with_vectors)
                json_object_set_new(fe, "vector", vec_json(f->embedding, a->face_dim));
            json_object_set_new(fo, "embedding", fe);
        }
        json_array_append_new(faces, fo);
    }
    json_object_set_new(o, "faces", faces);
    json_t *t = json_object();
    for (int s = 0; s < STAGE_COUNT; s++)
        json_object_set_new(t, stage_names[s], num(a->timings_ms[s], 100));
    json_object_set_new(t, "total", num(a->total_ms, 100));
    json_object_set_new(o, "timings_ms", t);
    return o;
}
