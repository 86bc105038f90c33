/*
 * vision/detect.c — multi-scale, tiled BlazeFace detection over one image.
 *
 * BlazeFace sees 256x256 pixels, so a 2000-pixel group photo letterboxed into
 * it shrinks a 60-pixel face to 8 pixels, below what the model finds (about
 * 20 input pixels in our measurements). We therefore run it on the whole image
 * and then on square tiles of a third of the longest side, overlapping their
 * neighbours by at least an eighth, for images whose longest side is at least
 * 3 x 256 (so a tile is never enlarged: that would only show the model blur it
 * was not trained on). Tile detections larger than half the tile are dropped
 * (big faces are the whole view's job, and in a tile such hits were mostly
 * texture: clothing, hair), as are those touching a tile edge that lies
 * inside the image, since those are cut faces a neighbour or the whole view
 * sees entire. All detections are merged by weighted NMS in image pixels and
 * finally scaled to original pixels.
 *
 * Measured on the face-api group photos (1920 px): whole view alone finds
 * 22/22 faces of 150-300 px; faces of 49-81 px need the tiles (21/22 with
 * tiles of L/3 vs 17/22 with L/2 and 21/22 with L/4 at twice the cost).
 * Cost is one model run per view: 1 + 12 views for a 1920x1280 photo. The
 * model's batch dimension is fixed at 1, so views run one by one. Each view
 * is sampled from the image pyramid (vision_preprocess_region), so the 13
 * views together cost about as much as one pass over the photo, not 13; the
 * plan is public (vision_detect_plan) so that bench/bench_models.c times
 * exactly these views.
 *
 * Rejected: a second, finer tile level (4x the runs for faces under ~40 px
 * at 2048, which the embedder cannot use anyway), and keeping cut faces and
 * relying on NMS (their boxes are wrong and they outvote the whole ones).
 *
 * Threading. The views are independent, so one detection is a task other
 * threads can join (vision_detect_task): the daemon's idle slots run views
 * of a running job, so that one job uses every idle core (a single run
 * barely scales with more intra-op threads on these small models). The
 * task's plan, model, image and thresholds are written by begin and only
 * read afterwards. `next` (atomic) hands out view indices: each index goes
 * to exactly one thread, which alone writes that view's result slot
 * (res/nres[vi]). `lock` protects done, rc and err; a thread counts its view
 * in `done` under it after writing the slot, and finish reads the slots only
 * after seeing done == nviews under it, so the mutex orders the writes
 * before the merge. The merge walks the slots in view order, so the faces
 * are the serial path's bit for bit. `refs` (atomic) keeps the task alive
 * for helpers that leave after finish returned; finish itself never waits
 * for a helper to leave, only for the views it claimed (each ~10 ms).
 * Each work() call allocates its own tensor and output buffers (~850 KB,
 * only once it has claimed a view). Lock order: task lock, then nothing.
 *
 * SCRFD (manifest family "scrfd", vision/scrfd.c) rides the same task with a
 * single view, the whole image fitted as insightface does: the view decodes,
 * runs hard NMS itself (Immich's 0.4) and keeps up to max_faces; finish then
 * only scales to original pixels. Nothing is shared (one view), but the
 * pipeline's begin/work/finish sequence stays the same for both families.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

#define DETECT_MAX_VIEWS VISION_MAX_VIEWS
#define DETECT_PER_VIEW 128

/* Tile origins along an axis of length n for tiles of side t, overlap >= 1/8. */
static int detect__positions(int n, float t, float *pos, int cap)
{
    int count;
    float step;

    if ((float)n <= t) {
        pos[0] = ((float)n - t) / 2;
        return 1;
    }
    step = t * 0.875f;
    count = (int)ceilf(((float)n - t) / step) + 1;
    if (count > cap)
        count = cap;
    for (int i = 0; i < count; i++)
        pos[i] = count == 1 ? 0 : ((float)n - t) * (float)i / (float)(count - 1);
    return count;
}

int vision_detect_plan(int w, int h, int tiles, vision_view *v, int cap)
{
    int n = 0;
    int L = w > h ? w : h;

    if (w <= 0 || h <= 0 || cap <= 0 || !v)
        return 0;
    v[n].side = (float)L;
    v[n].x0 = ((float)w - (float)L) / 2;
    v[n].y0 = ((float)h - (float)L) / 2;
    v[n].whole = 1;
    n++;
    /*
     * One tile level of a third of the longest side. Below 3 x 256 pixels the
     * tiles would be enlarged, and the whole view already sees faces down to
     * ~1/13 of the image, about 20 pixels.
     */
    if (!tiles || L < 3 * VISION_BF_INPUT)
        return n;
    {
        float t = (float)L / 3;
        float px[8], py[8];
        int nx = detect__positions(w, t, px, 8);
        int ny = detect__positions(h, t, py, 8);
        for (int j = 0; j < ny; j++)
            for (int i = 0; i < nx && n < cap; i++) {
                v[n].x0 = px[i];
                v[n].y0 = py[j];
                v[n].side = t;
                v[n].whole = 0;
                n++;
            }
    }
    return n;
}

/* Whether a face touches an edge of the view that lies inside the image. */
static int detect__cut(const vision_face *f, const vision_view *v, int w, int h)
{
    float m = v->side * 0.01f;

    if (v->whole)
        return 0;
    /* Big faces in a tile are the coarser views' job; here they are mostly texture. */
    if (f->box.x2 - f->box.x1 > v->side * 0.5f || f->box.y2 - f->box.y1 > v->side * 0.5f)
        return 1;
    if (v->x0 > 0.5f && f->box.x1 < v->x0 + m)
        return 1;
    if (v->y0 > 0.5f && f->box.y1 < v->y0 + m)
        return 1;
    if (v->x0 + v->side < (float)w - 0.5f && f->box.x2 > v->x0 + v->side - m)
        return 1;
    if (v->y0 + v->side < (float)h - 0.5f && f->box.y2 > v->y0 + v->side - m)
        return 1;
    return 0;
}

/* ---- shareable detection ---------------------------------------------- */

static const char *const detect__scrfd_roles[9] = {
    "score_8", "score_16", "score_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"};
static const int detect__scrfd_k[3] = {1, 4, 10}; /* floats per anchor: scores, boxes, kps */

static const char *const detect__roles[4] = {"scores_16", "boxes_16", "scores_8", "boxes_8"};
static const size_t detect__sizes[4] = {VISION_BF_ANCHORS_16, VISION_BF_ANCHORS_16 *VISION_BF_REGS,
                                        VISION_BF_ANCHORS_8, VISION_BF_ANCHORS_8 *VISION_BF_REGS};
#define DETECT_OUT_FLOATS                                                                          \
    (VISION_BF_ANCHORS_16 * (1 + VISION_BF_REGS) + VISION_BF_ANCHORS_8 * (1 + VISION_BF_REGS))
#define DETECT_TENSOR_FLOATS (VISION_BF_INPUT * VISION_BF_INPUT * 3)

struct vision_detect_task {
    /* Set by vision_detect_begin, read-only afterwards. */
    infer_model *det;
    const vision_image *img;
    const model_manifest *m;
    float thr, iou;
    int max_faces;
    int64_t deadline_ms; /* monotonic ms; 0 = none */
    int nviews;
    vision_view views[DETECT_MAX_VIEWS];
    int scrfd;    /* family "scrfd": one view, hard NMS in the view */
    int per_view; /* result slots per view */

    atomic_int next;   /* next view to claim; >= nviews: none left */
    atomic_int refs;   /* the owner's + one per retain */
    atomic_int failed; /* a view failed: later claims skip their run */

    pthread_mutex_t lock; /* protects done, rc, err; orders res/nres writes before finish */
    pthread_cond_t cond;  /* broadcast when done reaches nviews */
    int done;             /* views claimed and finished (run, failed or skipped) */
    int rc;               /* first error, ERR_OK while none */
    err_t err;
    int nres[DETECT_MAX_VIEWS];
    vision_face *res; /* nviews x per_view: view vi's kept detections at vi * per_view */
};

static void detect__task_free(vision_detect_task *t)
{
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t->res);
    free(t);
}

/* Allocates a task of `nviews` views with `per_view` result slots each; NULL on ENOMEM. */
static vision_detect_task *detect__task_new(int nviews, int per_view)
{
    vision_detect_task *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->per_view = per_view;
    t->res = malloc(sizeof(*t->res) * (size_t)(nviews > 0 ? nviews : 1) * (size_t)per_view);
    if (!t->res) {
        free(t);
        return NULL;
    }
    atomic_init(&t->next, 0);
    atomic_init(&t->refs, 1);
    atomic_init(&t->failed, 0);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->rc = ERR_OK;
    return t;
}

static int detect__begin_scrfd(infer_model *det, const model_manifest *m, const vision_image *img,
                               const vision_detect_opts *opts, vision_detect_task **out, err_t *e)
{
    vision_detect_task *t;

    if (m->width != m->height || m->width < 32 || m->width % 32 != 0 || m->channels != 3)
        return err_set(e, ERR_INVAL,
                       "detect: SCRFD model %s needs a square RGB input, a multiple "
                       "of 32",
                       m->name);
    for (int r = 0; r < 9; r++)
        if (!manifest_output_by_role(m, detect__scrfd_roles[r]))
            return err_set(e, ERR_INVAL, "detect: model %s has no output role %s", m->name,
                           detect__scrfd_roles[r]);
    int max_faces = opts && opts->max_faces > 0 ? opts->max_faces : 256;
    if (!(t = detect__task_new(1, max_faces)))
        return err_set(e, ERR_NOMEM, "detect task");
    t->scrfd = 1;
    t->det = det;
    t->img = img;
    t->m = m;
    t->thr = opts && opts->score_threshold > 0 ? opts->score_threshold : 0.7f;
    t->iou = VISION_SCRFD_NMS;
    t->max_faces = max_faces;
    t->deadline_ms = opts ? opts->deadline_ms : 0;
    t->nviews = 1;
    t->views[0].x0 = 0;
    t->views[0].y0 = 0;
    t->views[0].side = (float)(img->width > img->height ? img->width : img->height);
    t->views[0].whole = 1;
    *out = t;
    return ERR_OK;
}

/* Runs t's one SCRFD view: the blob, the model, decode and NMS into the result slot. */
static int detect__view_scrfd(vision_detect_task *t, err_t *e)
{
    int size = t->m->width, rc, n, cap;
    size_t anchors[3], total = 0;
    float *tensor = NULL, *buf = NULL, det_scale;
    vision_face *cand = NULL;
    infer_output outs[9];
    const float *lv[3][3];

    for (int l = 0; l < 3; l++) {
        int g = size / (8 << l);
        anchors[l] = (size_t)g * (size_t)g * VISION_SCRFD_ANCHORS;
        total += anchors[l];
    }
    tensor = malloc(sizeof(float) * (size_t)size * (size_t)size * 3);
    buf = malloc(sizeof(float) * total * (1 + 4 + 10));
    if (!tensor || !buf) {
        rc = err_set(e, ERR_NOMEM, "detect buffers");
        goto out;
    }
    if ((rc = vision_scrfd_blob(t->img, t->m, tensor, &det_scale, e)) != ERR_OK)
        goto out;
    memset(outs, 0, sizeof(outs));
    float *p = buf;
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < 3; l++) {
            infer_output *o = &outs[k * 3 + l];
            o->role = detect__scrfd_roles[k * 3 + l];
            o->data = p;
            o->cap = anchors[l] * (size_t)detect__scrfd_k[k];
            lv[k][l] = p;
            p += o->cap;
        }
    if ((rc = infer_run_until(t->det, tensor, 1, outs, 9, t->deadline_ms, e)) != ERR_OK)
        goto out;
    for (int i = 0; i < 9; i++)
        if (outs[i].count != outs[i].cap) {
            rc = err_set(e, ERR_MODEL, "detect: output %s has %zu values, expected %zu",
                         outs[i].role, outs[i].count, outs[i].cap);
            goto out;
        }
    cap = (int)total;
    if (!(cand = malloc(sizeof(*cand) * total))) {
        rc = err_set(e, ERR_NOMEM, "detect candidates");
        goto out;
    }
    n = vision_scrfd_decode(lv[0], lv[1], lv[2], size, t->thr, det_scale, cand, cap);
    if ((n = vision_nms_hard(cand, n > cap ? cap : n, t->iou)) < 0) {
        rc = err_set(e, ERR_NOMEM, "detect: nms");
        goto out;
    }
    if (n > t->per_view)
        n = t->per_view;
    memcpy(t->res, cand, sizeof(*cand) * (size_t)n);
    t->nres[0] = n;
out:
    free(tensor);
    free(buf);
    free(cand);
    return rc;
}

int vision_detect_begin(infer_model *det, const vision_image *img, const vision_detect_opts *opts,
                        vision_detect_task **out, err_t *e)
{
    const model_manifest *m;
    vision_detect_task *t;
    int nlevels;

    *out = NULL;
    if (!det || !img || !img->rgb)
        return err_set(e, ERR_INVAL, "detect: NULL argument");
    m = infer_model_manifest(det);
    if (m->task == TASK_FACE_DETECTION && strcmp(m->family, "scrfd") == 0)
        return detect__begin_scrfd(det, m, img, opts, out, e);
    if (m->task != TASK_FACE_DETECTION || m->width != VISION_BF_INPUT ||
        m->height != VISION_BF_INPUT || m->channels != 3)
        return err_set(e, ERR_INVAL, "detect: model %s is not a 256x256 BlazeFace detector",
                       m->name);
    for (int r = 0; r < 4; r++)
        if (!manifest_output_by_role(m, detect__roles[r]))
            return err_set(e, ERR_INVAL, "detect: model %s has no output role %s", m->name,
                           detect__roles[r]);
    /* Build the pyramid now, on the owner: helpers would otherwise race to build it. */
    if (!vision_image_levels(img, &nlevels, e))
        return ERR_NOMEM;

    vision_view views[DETECT_MAX_VIEWS];
    int nviews = vision_detect_plan(img->width, img->height, !(opts && opts->no_tiles), views,
                                    DETECT_MAX_VIEWS);
    t = detect__task_new(nviews, DETECT_PER_VIEW);
    if (!t)
        return err_set(e, ERR_NOMEM, "detect task");
    t->nviews = nviews;
    memcpy(t->views, views, sizeof(views[0]) * (size_t)nviews);
    t->det = det;
    t->img = img;
    t->m = m;
    t->thr = opts && opts->score_threshold > 0 ? opts->score_threshold : 0.75f;
    t->iou = opts && opts->iou_threshold > 0 ? opts->iou_threshold : 0.3f;
    t->max_faces = opts && opts->max_faces > 0 ? opts->max_faces : 256;
    t->deadline_ms = opts ? opts->deadline_ms : 0;
    *out = t;
    return ERR_OK;
}

/* Runs view vi of t into its result slot, with the caller's buffers. */
static int detect__view(vision_detect_task *t, int vi, float *tensor, float *outbuf, err_t *e)
{
    static const float black[3] = {0, 0, 0};
    const vision_view *v = &t->views[vi];
    vision_face *res = t->res + (size_t)vi * DETECT_PER_VIEW;
    infer_output outs[4];
    vision_xform xf;
    float *p = outbuf;
    int rc, n, kept = 0;

    rc = vision_preprocess_region(t->img, t->m, v->x0, v->y0, v->side, v->side, black, tensor, e);
    if (rc)
        return rc;
    memset(outs, 0, sizeof(outs));
    for (int r = 0; r < 4; r++) {
        outs[r].role = detect__roles[r];
        outs[r].data = p;
        outs[r].cap = detect__sizes[r];
        p += detect__sizes[r];
    }
    rc = infer_run_until(t->det, tensor, 1, outs, 4, t->deadline_ms, e);
    if (rc)
        return rc;
    for (int r = 0; r < 4; r++)
        if (outs[r].count != detect__sizes[r])
            return err_set(e, ERR_MODEL, "detect: output %s has %zu values, expected %zu",
                           detect__roles[r], outs[r].count, detect__sizes[r]);
    xf.x0 = v->x0;
    xf.y0 = v->y0;
    xf.scale = v->side / (float)VISION_BF_INPUT;
    n = vision_bf_decode(outs[0].data, outs[1].data, outs[2].data, outs[3].data, t->thr, &xf, res,
                         DETECT_PER_VIEW);
    for (int i = 0; i < n; i++)
        if (!detect__cut(&res[i], v, t->img->width, t->img->height))
            res[kept++] = res[i];
    t->nres[vi] = kept;
    return ERR_OK;
}

int vision_detect_work(vision_detect_task *t, int max_views)
{
    float *tensor = NULL, *outbuf = NULL;
    int ran = 0;

    while (max_views <= 0 || ran < max_views) {
        int vi, rc = ERR_OK;
        err_t e = {0};

        /* Cheap check first, so that a finished task's counter stops growing. */
        if (atomic_load_explicit(&t->next, memory_order_relaxed) >= t->nviews)
            break;
        vi = atomic_fetch_add(&t->next, 1);
        if (vi >= t->nviews)
            break;
        /* From here until `done` is counted, the owner waits for this view. */
        if (!atomic_load(&t->failed) && t->scrfd) {
            rc = detect__view_scrfd(t, &e);
            ran++;
        } else if (!atomic_load(&t->failed)) {
            if (!tensor) {
                tensor = malloc(sizeof(float) * DETECT_TENSOR_FLOATS);
                outbuf = malloc(sizeof(float) * DETECT_OUT_FLOATS);
            }
            if (!tensor || !outbuf)
                rc = err_set(&e, ERR_NOMEM, "detect buffers");
            else
                rc = detect__view(t, vi, tensor, outbuf, &e);
            ran++;
        }
        pthread_mutex_lock(&t->lock);
        if (rc != ERR_OK && t->rc == ERR_OK) {
            t->rc = rc;
            t->err = e;
            atomic_store(&t->failed, 1);
        }
        if (++t->done == t->nviews)
            pthread_cond_broadcast(&t->cond);
        pthread_mutex_unlock(&t->lock);
    }
    free(tensor);
    free(outbuf);
    return ran;
}

int vision_detect_pending(const vision_detect_task *t)
{
    int left = t->nviews - atomic_load_explicit(&t->next, memory_order_relaxed);
    return left > 0 ? left : 0;
}

void vision_detect_retain(vision_detect_task *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void vision_detect_release(vision_detect_task *t)
{
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
        detect__task_free(t);
}

int vision_detect_finish(vision_detect_task *t, vision_face **faces, int *nfaces, err_t *e)
{
    vision_face *all = NULL, *got = NULL;
    int nall = 0, rc;
    float sx, sy;

    *faces = NULL;
    *nfaces = 0;
    if (!t)
        return err_set(e, ERR_INVAL, "detect: NULL task");
    /* Claim and run whatever no helper has taken, then wait for the helpers' views. */
    vision_detect_work(t, 0);
    pthread_mutex_lock(&t->lock);
    while (t->done < t->nviews)
        pthread_cond_wait(&t->cond, &t->lock);
    rc = t->rc;
    if (rc != ERR_OK && e)
        *e = t->err;
    pthread_mutex_unlock(&t->lock);
    if (rc != ERR_OK)
        goto out;

    /* Merge in view order, exactly as one thread running the views in turn would. */
    all = malloc(sizeof(*all) * (size_t)(t->nviews > 0 ? t->nviews : 1) * (size_t)t->per_view);
    if (!all) {
        rc = err_set(e, ERR_NOMEM, "detect buffers");
        goto out;
    }
    for (int vi = 0; vi < t->nviews; vi++) {
        memcpy(all + nall, t->res + (size_t)vi * (size_t)t->per_view,
               sizeof(*all) * (size_t)t->nres[vi]);
        nall += t->nres[vi];
    }
    /* SCRFD's one view ran its hard NMS already. */
    rc = t->scrfd ? nall : vision_nms_weighted(all, nall, t->iou);
    if (rc < 0) {
        rc = err_set(e, ERR_NOMEM, "detect: nms");
        goto out;
    }
    nall = rc;
    rc = ERR_OK;
    if (nall > t->max_faces)
        nall = t->max_faces;
    if (nall == 0)
        goto out;
    got = malloc(sizeof(*got) * (size_t)nall);
    if (!got) {
        rc = err_set(e, ERR_NOMEM, "detect: result");
        goto out;
    }
    sx = (float)t->img->orig_width / (float)t->img->width;
    sy = (float)t->img->orig_height / (float)t->img->height;
    for (int i = 0; i < nall; i++) {
        got[i] = all[i];
        vision_face_scale(&got[i], sx, sy);
    }
    *faces = got;
    *nfaces = nall;
out:
    free(all);
    vision_detect_release(t);
    return rc;
}

int vision_detect_faces(infer_model *det, const vision_image *img, const vision_detect_opts *opts,
                        vision_face **faces, int *nfaces, err_t *e)
{
    vision_detect_task *t;
    int rc;

    *faces = NULL;
    *nfaces = 0;
    rc = vision_detect_begin(det, img, opts, &t, e);
    if (rc)
        return rc;
    return vision_detect_finish(t, faces, nfaces, e);
}
