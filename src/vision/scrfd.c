/*
 * vision/scrfd.c — SCRFD face detection as insightface's RetinaFace class
 * runs it for Immich's machine-learning service (pure: no model here; the
 * run is detect.c's).
 *
 * Immich (immich_ml/models/facial_recognition/detection.py) hands a BGR cv2
 * image to insightface's RetinaFace.detect with input_size (640, 640):
 *
 *   fit     the image is resized with cv2.resize(INTER_LINEAR) so that its
 *           longer side is 640 and the other int(640 * ratio), pasted at the
 *           top-left of a black 640x640 canvas; det_scale = new_h / h.
 *   blob    (RGB - 127.5) / 128, NCHW (the channel swap makes BGR RGB).
 *   outputs 9 tensors in order: scores of strides 8, 16, 32 ([A, 1]), box
 *           distances ([A, 4]), keypoint offsets ([A, 10]), A = (640/s)^2 * 2;
 *           some exports add a leading batch dimension [1, A, k], which
 *           changes nothing here (values are read flat).
 *   decode  anchors row-major over each grid, two per cell, both at the
 *           cell's corner (x*s, y*s); distances and offsets are in strides.
 *   NMS     hard, IoU > 0.4 suppresses, areas with the +1 of pixel-inclusive
 *           boxes; results by descending score.
 *
 * The resize reproduces OpenCV's 8-bit INTER_LINEAR arithmetic (11-bit
 * weights, the AVX2 vertical pass's rounding, the scalar tail's, INTER_AREA
 * for an exact halving), not the bit-exact INTER_LINEAR_EXACT; an SSE-only
 * OpenCV build may differ by one grey level in a row's last values. The blob
 * and decode are float32 like insightface's numpy arrays, so boxes agree
 * with Immich's to float rounding. Score ties
 * are broken by anchor order (numpy's argsort leaves them unspecified).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

static const int scrfd__strides[VISION_SCRFD_LEVELS] = {8, 16, 32};

void vision_scrfd_letterbox(int w, int h, int size, int *new_w, int *new_h, float *det_scale)
{
    /* insightface: im_ratio = h / w against the input's ratio (1 for a square). */
    double im_ratio = (double)h / (double)w;
    if (im_ratio > 1.0) {
        *new_h = size;
        *new_w = (int)((double)size / im_ratio);
    } else {
        *new_w = size;
        *new_h = (int)((double)size * im_ratio);
    }
    if (*new_w < 1)
        *new_w = 1;
    if (*new_h < 1)
        *new_h = 1;
    *det_scale = (float)((double)*new_h / (double)h);
}

/*
 * One axis of OpenCV's INTER_LINEAR for 8-bit images: the first tap and the
 * two 11-bit weights per output index. The position is computed in double
 * and rounded to float, each weight rounded on its own (cvRound), and a
 * position before the first or past the last pixel clamped to it with
 * weight (2048, 0).
 */
static void scrfd__axis(int n, int dn, int *idx, int16_t *w)
{
    double scale = 1.0 / ((double)dn / (double)n); /* as cv::resize: 1 / inv_scale */
    for (int d = 0; d < dn; d++) {
        float f = (float)(((double)d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        if (s < 0) {
            s = 0;
            f = 0;
        }
        if (s >= n - 1) {
            s = n - 1;
            f = 0;
        }
        idx[d] = s;
        w[2 * d] = (int16_t)lrintf((1.0f - f) * 2048.0f);
        w[2 * d + 1] = (int16_t)lrintf(f * 2048.0f);
    }
}

/*
 * Where OpenCV's vectorised vertical pass (AVX2: 32 then 16 values a step)
 * stops in a row of `width` values; the rest is its scalar loop.
 */
static int scrfd__simd_end(int width)
{
    int x = 0;
    while (x <= width - 32)
        x += 32;
    while (x < width - 16)
        x += 16;
    return x;
}

int vision_resize_linear(const uint8_t *src, int w, int h, uint8_t *dst, int dw, int dh)
{
    if (!src || !dst || w <= 0 || h <= 0 || dw <= 0 || dh <= 0)
        return ERR_INVAL;
    if (dw == w && dh == h) { /* cv::resize copies */
        memcpy(dst, src, (size_t)w * (size_t)h * 3);
        return ERR_OK;
    }
    if (w == 2 * dw && h == 2 * dh) {
        /* An exact halving is INTER_AREA's fast path in OpenCV: 2x2 means, rounded. */
        for (int v = 0; v < dh; v++)
            for (int u = 0; u < dw * 3; u++) {
                const uint8_t *p =
                    src + ((size_t)(2 * v) * (size_t)w * 3) + (size_t)(u / 3) * 6 + (size_t)(u % 3);
                const uint8_t *q = p + (size_t)w * 3;
                dst[(size_t)v * (size_t)dw * 3 + (size_t)u] =
                    (uint8_t)((p[0] + p[3] + q[0] + q[3] + 2) >> 2);
            }
        return ERR_OK;
    }
    int *xi = malloc(sizeof(int) * (size_t)(dw + dh));
    int16_t *wt = malloc(sizeof(int16_t) * 2 * (size_t)(dw + dh));
    int32_t *r0 = malloc(sizeof(int32_t) * 2 * (size_t)dw * 3);
    if (!xi || !wt || !r0) {
        free(xi);
        free(wt);
        free(r0);
        return ERR_NOMEM;
    }
    int *yi = xi + dw;
    int16_t *xw = wt, *yw = wt + 2 * dw;
    int32_t *r1 = r0 + (size_t)dw * 3;
    int width = dw * 3, vend = scrfd__simd_end(width);
    scrfd__axis(w, dw, xi, xw);
    scrfd__axis(h, dh, yi, yw);
    for (int v = 0; v < dh; v++) {
        /* Horizontal pass of the two source rows: exact sums with 11-bit weights. */
        for (int k = 0; k < 2; k++) {
            int sy = yi[v] + k < h ? yi[v] + k : h - 1;
            const uint8_t *row = src + (size_t)sy * (size_t)w * 3;
            int32_t *o = k ? r1 : r0;
            for (int u = 0; u < dw; u++) {
                int x0 = xi[u], x1 = x0 + 1 < w ? x0 + 1 : x0;
                for (int c = 0; c < 3; c++)
                    o[u * 3 + c] = row[x0 * 3 + c] * xw[2 * u] + row[x1 * 3 + c] * xw[2 * u + 1];
            }
        }
        /* Vertical pass: the vector loop's rounding, then the scalar tail's. */
        int32_t b0 = yw[2 * v], b1 = yw[2 * v + 1];
        uint8_t *o = dst + (size_t)v * (size_t)width;
        for (int x = 0; x < width; x++) {
            int32_t y;
            if (x < vend)
                y = ((((r0[x] >> 4) * b0) >> 16) + (((r1[x] >> 4) * b1) >> 16) + 2) >> 2;
            else
                y = (r0[x] * b0 + r1[x] * b1 + (1 << 21)) >> 22;
            o[x] = (uint8_t)(y < 0 ? 0 : y > 255 ? 255 : y);
        }
    }
    free(xi);
    free(wt);
    free(r0);
    return ERR_OK;
}

int vision_scrfd_blob(const vision_image *img, const model_manifest *m, float *tensor,
                      float *det_scale, err_t *e)
{
    int size, nw, nh;
    float inv[3];

    if (!img || !img->rgb || !m || !tensor)
        return err_set(e, ERR_INVAL, "scrfd: NULL argument");
    if (m->width != m->height || m->width < 32 || m->channels != 3)
        return err_set(e, ERR_INVAL, "scrfd: model %s input must be square RGB", m->name);
    for (int c = 0; c < 3; c++) {
        if (m->std[c] == 0)
            return err_set(e, ERR_INVAL, "scrfd: model %s has a zero std", m->name);
        inv[c] = 1.0f / m->std[c];
    }
    size = m->width;
    vision_scrfd_letterbox(img->width, img->height, size, &nw, &nh, det_scale);
    uint8_t *rs = malloc((size_t)nw * (size_t)nh * 3);
    if (!rs)
        return err_set(e, ERR_NOMEM, "scrfd: resize buffer");
    vision_resize_linear(img->rgb, img->width, img->height, rs, nw, nh);
    size_t plane = (size_t)size * (size_t)size;
    for (int v = 0; v < size; v++)
        for (int u = 0; u < size; u++) {
            size_t p = (size_t)v * (size_t)size + (size_t)u;
            for (int c = 0; c < 3; c++) {
                float x = u < nw && v < nh ? (float)rs[((size_t)v * (size_t)nw + (size_t)u) * 3 + c]
                                           : 0.0f;
                float y = (x - m->mean[c]) * inv[c];
                if (m->layout == LAYOUT_NCHW)
                    tensor[(size_t)c * plane + p] = y;
                else
                    tensor[p * 3 + (size_t)c] = y;
            }
        }
    free(rs);
    return ERR_OK;
}

int vision_scrfd_decode(const float *const score[VISION_SCRFD_LEVELS],
                        const float *const bbox[VISION_SCRFD_LEVELS],
                        const float *const kps[VISION_SCRFD_LEVELS], int size, float threshold,
                        float det_scale, vision_face *out, int cap)
{
    int n = 0;

    for (int l = 0; l < VISION_SCRFD_LEVELS; l++) {
        int s = scrfd__strides[l], g = size / s;
        float fs = (float)s;
        for (int a = 0; a < g * g * VISION_SCRFD_ANCHORS; a++) {
            if (!(score[l][a] >= threshold))
                continue;
            if (n < cap) {
                int cell = a / VISION_SCRFD_ANCHORS;
                float cx = (float)((cell % g) * s), cy = (float)((cell / g) * s);
                const float *d = bbox[l] + (size_t)a * 4;
                const float *k = kps[l] + (size_t)a * 10;
                vision_face *f = &out[n];
                memset(f, 0, sizeof(*f));
                f->box.x1 = (cx - d[0] * fs) / det_scale;
                f->box.y1 = (cy - d[1] * fs) / det_scale;
                f->box.x2 = (cx + d[2] * fs) / det_scale;
                f->box.y2 = (cy + d[3] * fs) / det_scale;
                for (int i = 0; i < VISION_FACE_KPS5; i++) {
                    f->kps[i][0] = (cx + k[2 * i] * fs) / det_scale;
                    f->kps[i][1] = (cy + k[2 * i + 1] * fs) / det_scale;
                }
                f->score = score[l][a];
                f->nkps = VISION_FACE_KPS5;
            }
            n++;
        }
    }
    return n;
}

typedef struct {
    float score;
    int idx;
} scrfd__key;

/* Descending score; ties by index (a stable order). */
static int scrfd__cmp(const void *pa, const void *pb)
{
    const scrfd__key *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->idx - b->idx;
}

int vision_nms_hard(vision_face *faces, int n, float iou)
{
    if (n <= 0)
        return 0;
    scrfd__key *k = malloc(sizeof(*k) * (size_t)n);
    vision_face *sorted = malloc(sizeof(*sorted) * (size_t)n);
    char *gone = calloc((size_t)n, 1);
    if (!k || !sorted || !gone) {
        free(k);
        free(sorted);
        free(gone);
        return ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        k[i].score = faces[i].score;
        k[i].idx = i;
    }
    qsort(k, (size_t)n, sizeof(*k), scrfd__cmp);
    for (int i = 0; i < n; i++)
        sorted[i] = faces[k[i].idx];
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (gone[i])
            continue;
        const vision_box *a = &sorted[i].box;
        float area_a = (a->x2 - a->x1 + 1) * (a->y2 - a->y1 + 1);
        for (int j = i + 1; j < n; j++) {
            if (gone[j])
                continue;
            const vision_box *b = &sorted[j].box;
            float w = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1) + 1;
            float h = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1) + 1;
            float inter = fmaxf(0.0f, w) * fmaxf(0.0f, h);
            float area_b = (b->x2 - b->x1 + 1) * (b->y2 - b->y1 + 1);
            if (inter / (area_a + area_b - inter) > iou)
                gone[j] = 1;
        }
        faces[kept++] = sorted[i];
    }
    free(k);
    free(sorted);
    free(gone);
    return kept;
}
