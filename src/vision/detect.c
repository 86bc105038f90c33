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
 */
#include <math.h>
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

int vision_detect_faces(infer_model *det, const vision_image *img, const vision_detect_opts *opts,
                        vision_face **faces, int *nfaces, err_t *e)
{
    static const float black[3] = {0, 0, 0};
    static const char *roles[4] = {"scores_16", "boxes_16", "scores_8", "boxes_8"};
    static const size_t sizes[4] = {VISION_BF_ANCHORS_16, VISION_BF_ANCHORS_16 * VISION_BF_REGS,
                                    VISION_BF_ANCHORS_8, VISION_BF_ANCHORS_8 * VISION_BF_REGS};
    float thr = opts && opts->score_threshold > 0 ? opts->score_threshold : 0.75f;
    float iou = opts && opts->iou_threshold > 0 ? opts->iou_threshold : 0.3f;
    int max_faces = opts && opts->max_faces > 0 ? opts->max_faces : 256;
    const model_manifest *m;
    vision_view views[DETECT_MAX_VIEWS];
    float *tensor = NULL, *outbuf = NULL;
    vision_face *all = NULL, *got = NULL;
    int nviews, nall = 0, rc = ERR_OK;
    float sx, sy;

    *faces = NULL;
    *nfaces = 0;
    if (!det || !img || !img->rgb)
        return err_set(e, ERR_INVAL, "detect: NULL argument");
    m = infer_model_manifest(det);
    if (m->task != TASK_FACE_DETECTION || m->width != VISION_BF_INPUT ||
        m->height != VISION_BF_INPUT || m->channels != 3)
        return err_set(e, ERR_INVAL, "detect: model %s is not a 256x256 BlazeFace detector",
                       m->name);
    for (int r = 0; r < 4; r++)
        if (!manifest_output_by_role(m, roles[r]))
            return err_set(e, ERR_INVAL, "detect: model %s has no output role %s", m->name,
                           roles[r]);

    nviews = vision_detect_plan(img->width, img->height, !(opts && opts->no_tiles), views,
                                DETECT_MAX_VIEWS);
    tensor = malloc(sizeof(float) * VISION_BF_INPUT * VISION_BF_INPUT * 3);
    outbuf = malloc(sizeof(float) * (sizes[0] + sizes[1] + sizes[2] + sizes[3]));
    all = malloc(sizeof(*all) * (size_t)nviews * DETECT_PER_VIEW);
    if (!tensor || !outbuf || !all) {
        rc = err_set(e, ERR_NOMEM, "detect buffers");
        goto out;
    }
    for (int vi = 0; vi < nviews; vi++) {
        const vision_view *v = &views[vi];
        infer_output outs[4];
        vision_xform xf;
        vision_face tmp[DETECT_PER_VIEW];
        float *p = outbuf;
        int n;

        rc = vision_preprocess_region(img, m, v->x0, v->y0, v->side, v->side, black, tensor, e);
        if (rc)
            goto out;
        memset(outs, 0, sizeof(outs));
        for (int r = 0; r < 4; r++) {
            outs[r].role = roles[r];
            outs[r].data = p;
            outs[r].cap = sizes[r];
            p += sizes[r];
        }
        rc = infer_run(det, tensor, 1, outs, 4, e);
        if (rc)
            goto out;
        for (int r = 0; r < 4; r++)
            if (outs[r].count != sizes[r]) {
                rc = err_set(e, ERR_MODEL, "detect: output %s has %zu values, expected %zu",
                             roles[r], outs[r].count, sizes[r]);
                goto out;
            }
        xf.x0 = v->x0;
        xf.y0 = v->y0;
        xf.scale = v->side / (float)VISION_BF_INPUT;
        n = vision_bf_decode(outs[0].data, outs[1].data, outs[2].data, outs[3].data, thr, &xf, tmp,
                             DETECT_PER_VIEW);
        for (int i = 0; i < n; i++)
            if (!detect__cut(&tmp[i], v, img->width, img->height))
                all[nall++] = tmp[i];
    }
    rc = vision_nms_weighted(all, nall, iou);
    if (rc < 0) {
        rc = err_set(e, ERR_NOMEM, "detect: nms");
        goto out;
    }
    nall = rc;
    rc = ERR_OK;
    if (nall > max_faces)
        nall = max_faces;
    if (nall == 0)
        goto out;
    got = malloc(sizeof(*got) * (size_t)nall);
    if (!got) {
        rc = err_set(e, ERR_NOMEM, "detect: result");
        goto out;
    }
    sx = (float)img->orig_width / (float)img->width;
    sy = (float)img->orig_height / (float)img->height;
    for (int i = 0; i < nall; i++) {
        vision_face f = all[i];
        f.box.x1 *= sx;
        f.box.x2 *= sx;
        f.box.y1 *= sy;
        f.box.y2 *= sy;
        for (int k = 0; k < VISION_FACE_KPS; k++) {
            f.kps[k][0] *= sx;
            f.kps[k][1] *= sy;
        }
        got[i] = f;
    }
    *faces = got;
    *nfaces = nall;
out:
    free(tensor);
    free(outbuf);
    free(all);
    return rc;
}
