/*
 * vision/preprocess.c — image regions to model input tensors (pure).
 *
 * One resampler serves every model: a source rectangle, which may reach past
 * the image (letterbox padding, tiles at the border), is sampled to the
 * model's input size. It is separable: per axis a table of taps (source
 * index, weight) is built, rows are filtered horizontally into a float
 * buffer, then columns vertically. Shrinking uses area averaging with
 * fractional pixel coverage rather than bilinear: the detector sees photos
 * shrunk 8x, where bilinear's two taps would alias fine texture into false
 * edges. Enlarging (rare: small images into a 256 input) is bilinear.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

typedef struct {
    int start; /* first tap in the tap arrays */
    int count;
} resample__span;

typedef struct {
    resample__span *span; /* one per output index */
    int *idx;             /* source index; outside [0, n) reads as pad */
    float *w;
    int ntaps;
} resample__axis;

static void resample__axis_free(resample__axis *a)
{
    free(a->span);
    free(a->idx);
    free(a->w);
}

/* Builds the taps for sampling [r0, r0 + len) of an axis into `out` outputs. */
static int resample__axis_build(resample__axis *a, float r0, float len, int out)
{
    float s = len / (float)out;
    int maxt = (int)ceilf(s) + 3;

    memset(a, 0, sizeof(*a));
    a->span = malloc(sizeof(*a->span) * (size_t)out);
    a->idx = malloc(sizeof(*a->idx) * (size_t)out * (size_t)maxt);
    a->w = malloc(sizeof(*a->w) * (size_t)out * (size_t)maxt);
    if (!a->span || !a->idx || !a->w) {
        resample__axis_free(a);
        return ERR_NOMEM;
    }
    for (int i = 0; i < out; i++) {
        resample__span *sp = &a->span[i];
        sp->start = a->ntaps;
        sp->count = 0;
        if (s > 1.0f) {
            /* Area average over [lo, hi). */
            double lo = r0 + (double)i * s, hi = lo + s;
            int j0 = (int)floor(lo), j1 = (int)ceil(hi);
            double sum = 0;
            for (int j = j0; j < j1 && sp->count < maxt; j++) {
                double c = fmin(hi, j + 1.0) - fmax(lo, (double)j);
                if (c <= 0)
                    continue;
                a->idx[a->ntaps] = j;
                a->w[a->ntaps] = (float)c;
                sum += c;
                a->ntaps++;
                sp->count++;
            }
            for (int k = sp->start; k < a->ntaps; k++)
                a->w[k] = (float)(a->w[k] / sum);
        } else {
            /* Bilinear around the output pixel's centre. */
            double c = r0 + ((double)i + 0.5) * s - 0.5;
            int j = (int)floor(c);
            float f = (float)(c - j);
            a->idx[a->ntaps] = j;
            a->w[a->ntaps++] = 1.0f - f;
            a->idx[a->ntaps] = j + 1;
            a->w[a->ntaps++] = f;
            sp->count = 2;
        }
    }
    return ERR_OK;
}

int vision_resample(const uint8_t *rgb, int w, int h, float rx, float ry, float rw, float rh,
                    int out_w, int out_h, const float pad[3], float *out)
{
    resample__axis ax, ay;
    float *tmp = NULL;
    int ylo, yhi, rc;

    if (!rgb || !out || w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0 || !(rw > 0) || !(rh > 0))
        return ERR_INVAL;
    rc = resample__axis_build(&ax, rx, rw, out_w);
    if (rc)
        return rc;
    rc = resample__axis_build(&ay, ry, rh, out_h);
    if (rc) {
        resample__axis_free(&ax);
        return rc;
    }
    /* Rows of the image the vertical taps touch. */
    ylo = h;
    yhi = -1;
    for (int k = 0; k < ay.ntaps; k++) {
        int y = ay.idx[k];
        if (y >= 0 && y < h) {
            if (y < ylo)
                ylo = y;
            if (y > yhi)
                yhi = y;
        }
    }
    if (yhi >= ylo) {
        tmp = malloc(sizeof(float) * 3 * (size_t)out_w * (size_t)(yhi - ylo + 1));
        if (!tmp) {
            rc = ERR_NOMEM;
            goto out;
        }
        for (int y = ylo; y <= yhi; y++) {
            const uint8_t *row = rgb + (size_t)y * w * 3;
            float *trow = tmp + (size_t)(y - ylo) * out_w * 3;
            for (int i = 0; i < out_w; i++) {
                const resample__span *sp = &ax.span[i];
                float r = 0, g = 0, b = 0;
                for (int k = sp->start; k < sp->start + sp->count; k++) {
                    int x = ax.idx[k];
                    float wt = ax.w[k];
                    if (x >= 0 && x < w) {
                        const uint8_t *p = row + (size_t)x * 3;
                        r += wt * p[0];
                        g += wt * p[1];
                        b += wt * p[2];
                    } else {
                        r += wt * pad[0];
                        g += wt * pad[1];
                        b += wt * pad[2];
                    }
                }
                trow[i * 3 + 0] = r;
                trow[i * 3 + 1] = g;
                trow[i * 3 + 2] = b;
            }
        }
    }
    for (int j = 0; j < out_h; j++) {
        const resample__span *sp = &ay.span[j];
        float *orow = out + (size_t)j * out_w * 3;
        for (int i = 0; i < out_w * 3; i++)
            orow[i] = 0;
        for (int k = sp->start; k < sp->start + sp->count; k++) {
            int y = ay.idx[k];
            float wt = ay.w[k];
            if (wt == 0)
                continue;
            if (y >= 0 && y < h) {
                const float *trow = tmp + (size_t)(y - ylo) * out_w * 3;
                for (int i = 0; i < out_w * 3; i++)
                    orow[i] += wt * trow[i];
            } else {
                for (int i = 0; i < out_w; i++) {
                    orow[i * 3 + 0] += wt * pad[0];
                    orow[i * 3 + 1] += wt * pad[1];
                    orow[i * 3 + 2] += wt * pad[2];
                }
            }
        }
    }
    rc = ERR_OK;
out:
    free(tmp);
    resample__axis_free(&ax);
    resample__axis_free(&ay);
    return rc;
}

int vision_pack_tensor(const float *hwc, const model_manifest *m, float *tensor)
{
    int w = m->width, h = m->height;
    float inv[3];

    if (m->channels != 3 || w <= 0 || h <= 0)
        return ERR_INVAL;
    for (int c = 0; c < 3; c++) {
        if (m->std[c] == 0)
            return ERR_INVAL;
        inv[c] = 1.0f / m->std[c];
    }
    if (m->layout == LAYOUT_NCHW) {
        size_t plane = (size_t)w * h;
        for (size_t p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++)
                tensor[c * plane + p] = (hwc[p * 3 + c] - m->mean[c]) * inv[c];
    } else {
        size_t n = (size_t)w * h;
        for (size_t p = 0; p < n; p++)
            for (int c = 0; c < 3; c++)
                tensor[p * 3 + c] = (hwc[p * 3 + c] - m->mean[c]) * inv[c];
    }
    return ERR_OK;
}

int vision_preprocess(const vision_image *img, const model_manifest *m, int letterbox,
                      float *tensor, vision_xform *xf, err_t *e)
{
    static const float black[3] = {0, 0, 0};
    float rx = 0, ry = 0, rw = (float)img->width, rh = (float)img->height;
    float *hwc;
    int rc;

    if (m->channels != 3 || m->width <= 0 || m->height <= 0)
        return err_set(e, ERR_INVAL, "model %s: input is not RGB", m->name);
    if (letterbox) {
        /* Grow the rectangle to the input's aspect, image centred. */
        float sx = rw / (float)m->width, sy = rh / (float)m->height;
        float s = sx > sy ? sx : sy;
        float nw = s * (float)m->width, nh = s * (float)m->height;
        rx = -(nw - rw) / 2;
        ry = -(nh - rh) / 2;
        rw = nw;
        rh = nh;
    }
    hwc = malloc(sizeof(float) * 3 * (size_t)m->width * (size_t)m->height);
    if (!hwc)
        return err_set(e, ERR_NOMEM, "preprocess buffer");
    rc = vision_resample(img->rgb, img->width, img->height, rx, ry, rw, rh, m->width, m->height,
                         black, hwc);
    if (!rc)
        rc = vision_pack_tensor(hwc, m, tensor);
    free(hwc);
    if (rc)
        return err_set(e, rc, "preprocess for model %s failed", m->name);
    if (xf) {
        xf->x0 = rx;
        xf->y0 = ry;
        xf->scale = rw / (float)m->width;
    }
    return ERR_OK;
}
