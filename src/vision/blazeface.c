/*
 * vision/blazeface.c — BlazeFace anchors, output decoding and weighted NMS
 * (pure: no model, no image).
 *
 * The 256x256 "back" model has two heads: a 16x16 grid (stride 16) with two
 * anchors per cell and an 8x8 grid (stride 32) with six. MediaPipe's SSD
 * anchor options for it use fixed anchor sizes, so an anchor is only a
 * centre; regressors are offsets in input pixels: box centre (dx, dy), box
 * size (w, h), then six keypoints (dx, dy) relative to the anchor centre.
 * Scores are logits. (keijiro's Barracuda shaders flip y only because Unity
 * textures start at the bottom; ONNX Runtime sees rows top-down.)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

void vision_face_scale(vision_face *f, float sx, float sy)
{
    f->box.x1 *= sx;
    f->box.x2 *= sx;
    f->box.y1 *= sy;
    f->box.y2 *= sy;
    for (int k = 0; k < VISION_FACE_KPS; k++) {
        f->kps[k][0] *= sx;
        f->kps[k][1] *= sy;
    }
}

float vision_box_iou(const vision_box *a, const vision_box *b)
{
    float aw = a->x2 - a->x1, ah = a->y2 - a->y1;
    float bw = b->x2 - b->x1, bh = b->y2 - b->y1;
    float iw, ih, inter, uni;

    if (!(aw > 0 && ah > 0 && bw > 0 && bh > 0))
        return 0;
    iw = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1);
    ih = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
    if (iw <= 0 || ih <= 0)
        return 0;
    inter = iw * ih;
    uni = aw * ah + bw * bh - inter;
    return uni > 0 ? inter / uni : 0;
}

void vision_bf_anchors(float anchors[VISION_BF_ANCHORS][2])
{
    static const struct {
        int cells, per_cell;
    } grids[2] = {{16, 2}, {8, 6}};
    int k = 0;

    for (int g = 0; g < 2; g++) {
        float stride = (float)VISION_BF_INPUT / (float)grids[g].cells;
        for (int y = 0; y < grids[g].cells; y++)
            for (int x = 0; x < grids[g].cells; x++)
                for (int a = 0; a < grids[g].per_cell; a++) {
                    anchors[k][0] = ((float)x + 0.5f) * stride;
                    anchors[k][1] = ((float)y + 0.5f) * stride;
                    k++;
                }
    }
}

/* Decodes `n` anchors starting at anchor index `first`; returns faces written. */
static int bf__decode_grid(const float anchors[VISION_BF_ANCHORS][2], int first, int n,
                           const float *scores, const float *regs, float logit_thr,
                           const vision_xform *xf, vision_face *out, int cap)
{
    int w = 0;

    for (int i = 0; i < n && w < cap; i++) {
        const float *r = regs + (size_t)i * VISION_BF_REGS;
        const float *an = anchors[first + i];
        vision_face *f;
        float cx, cy, bw, bh;

        if (!(scores[i] >= logit_thr))
            continue;
        f = &out[w++];
        f->score = 1.0f / (1.0f + expf(-scores[i]));
        f->nkps = VISION_FACE_KPS;
        cx = an[0] + r[0];
        cy = an[1] + r[1];
        bw = r[2];
        bh = r[3];
        f->box.x1 = xf->x0 + (cx - bw / 2) * xf->scale;
        f->box.y1 = xf->y0 + (cy - bh / 2) * xf->scale;
        f->box.x2 = xf->x0 + (cx + bw / 2) * xf->scale;
        f->box.y2 = xf->y0 + (cy + bh / 2) * xf->scale;
        for (int k = 0; k < VISION_FACE_KPS; k++) {
            f->kps[k][0] = xf->x0 + (an[0] + r[4 + 2 * k]) * xf->scale;
            f->kps[k][1] = xf->y0 + (an[1] + r[5 + 2 * k]) * xf->scale;
        }
    }
    return w;
}

int vision_bf_decode(const float *scores16, const float *boxes16, const float *scores8,
                     const float *boxes8, float threshold, const vision_xform *xf, vision_face *out,
                     int cap)
{
    float anchors[VISION_BF_ANCHORS][2];
    float logit_thr;
    int n;

    if (cap <= 0)
        return 0;
    /* Compare logits, not sigmoids: one log per call instead of 896 exps. */
    if (threshold <= 0)
        logit_thr = -INFINITY;
    else if (threshold >= 1)
        logit_thr = INFINITY;
    else
        logit_thr = logf(threshold / (1.0f - threshold));
    vision_bf_anchors(anchors);
    n = bf__decode_grid(anchors, 0, VISION_BF_ANCHORS_16, scores16, boxes16, logit_thr, xf, out,
                        cap);
    n += bf__decode_grid(anchors, VISION_BF_ANCHORS_16, VISION_BF_ANCHORS_8, scores8, boxes8,
                         logit_thr, xf, out + n, cap - n);
    return n;
}

static int bf__by_score_desc(const void *pa, const void *pb)
{
    const vision_face *a = pa, *b = pb;
    return (a->score < b->score) - (a->score > b->score);
}

int vision_nms_weighted(vision_face *faces, int n, float iou)
{
    char *used;
    vision_face *res;
    int nres = 0;

    if (n <= 0)
        return 0;
    used = calloc((size_t)n, 1);
    res = malloc(sizeof(*res) * (size_t)n);
    if (!used || !res) {
        free(used);
        free(res);
        return ERR_NOMEM;
    }
    qsort(faces, (size_t)n, sizeof(*faces), bf__by_score_desc);
    for (int i = 0; i < n; i++) {
        double acc[4 + 2 * VISION_FACE_KPS] = {0};
        double wsum = 0;
        vision_face *m;

        if (used[i])
            continue;
        for (int j = i; j < n; j++) {
            const vision_face *f = &faces[j];
            double wt;
            if (used[j])
                continue;
            if (j != i && vision_box_iou(&faces[i].box, &f->box) < iou)
                continue;
            used[j] = 1;
            wt = f->score;
            acc[0] += wt * f->box.x1;
            acc[1] += wt * f->box.y1;
            acc[2] += wt * f->box.x2;
            acc[3] += wt * f->box.y2;
            for (int k = 0; k < VISION_FACE_KPS; k++) {
                acc[4 + 2 * k] += wt * f->kps[k][0];
                acc[5 + 2 * k] += wt * f->kps[k][1];
            }
            wsum += wt;
        }
        m = &res[nres++];
        m->score = faces[i].score;
        m->nkps = faces[i].nkps;
        if (wsum <= 0) {
            /* All-zero scores: keep the best member as it is. */
            *m = faces[i];
            continue;
        }
        m->box.x1 = (float)(acc[0] / wsum);
        m->box.y1 = (float)(acc[1] / wsum);
        m->box.x2 = (float)(acc[2] / wsum);
        m->box.y2 = (float)(acc[3] / wsum);
        for (int k = 0; k < VISION_FACE_KPS; k++) {
            m->kps[k][0] = (float)(acc[4 + 2 * k] / wsum);
            m->kps[k][1] = (float)(acc[5 + 2 * k] / wsum);
        }
    }
    memcpy(faces, res, sizeof(*res) * (size_t)nres);
    free(res);
    free(used);
    return nres;
}
