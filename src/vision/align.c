/*
 * vision/align.c — face alignment onto the embedder's canonical crop (pure).
 *
 * A least-squares similarity transform maps four BlazeFace keypoints (eyes,
 * nose tip, mouth centre; the ear tragions are too unstable under head turn
 * to help) onto ArcFace's 112x112 template, and the crop is sampled through
 * its inverse. We fit with complex numbers: in 2-D a rotation plus uniform
 * scale is multiplication by z = c + i d, whose least-squares value over
 * centred points is sum(conj(a) b) / sum(|a|^2) — Umeyama's solution with
 * the reflection case excluded by construction. When the face is much larger
 * than the crop, each output pixel averages a k x k grid of bilinear samples
 * (k up to 4) so that the downscale does not alias.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

/*
 * ArcFace's five-point template is right eye (38.2946, 51.6963), left eye
 * (73.5318, 51.5014), nose (56.0252, 71.7366), mouth corners (41.5493,
 * 92.3655) and (70.7299, 92.2041); BlazeFace gives the mouth centre, so we
 * use the corners' mean.
 */
const float vision_align_template[4][2] = {
    {38.2946f, 51.6963f},
    {73.5318f, 51.5014f},
    {56.0252f, 71.7366f},
    {56.1396f, 92.2848f},
};

int vision_similarity(const float (*src)[2], const float (*dst)[2], int n, float M[2][3])
{
    double mpx = 0, mpy = 0, mqx = 0, mqy = 0, ss = 0, c = 0, d = 0;

    if (n < 2)
        return ERR_INVAL;
    for (int i = 0; i < n; i++) {
        mpx += src[i][0];
        mpy += src[i][1];
        mqx += dst[i][0];
        mqy += dst[i][1];
    }
    mpx /= n;
    mpy /= n;
    mqx /= n;
    mqy /= n;
    for (int i = 0; i < n; i++) {
        double ax = src[i][0] - mpx, ay = src[i][1] - mpy;
        double bx = dst[i][0] - mqx, by = dst[i][1] - mqy;
        ss += ax * ax + ay * ay;
        c += ax * bx + ay * by;
        d += ax * by - ay * bx;
    }
    if (!(ss > 1e-12))
        return ERR_INVAL;
    c /= ss;
    d /= ss;
    M[0][0] = (float)c;
    M[0][1] = (float)-d;
    M[0][2] = (float)(mqx - (c * mpx - d * mpy));
    M[1][0] = (float)d;
    M[1][1] = (float)c;
    M[1][2] = (float)(mqy - (d * mpx + c * mpy));
    return ERR_OK;
}

/* Bilinear sample at continuous position (x, y) (pixel centres at +0.5). */
static void align__sample(const vision_image *img, double x, double y, double acc[3])
{
    double fx = x - 0.5, fy = y - 0.5;
    int x0 = (int)floor(fx), y0 = (int)floor(fy);
    double ax = fx - x0, ay = fy - y0;

    for (int dy = 0; dy < 2; dy++) {
        int yy = y0 + dy;
        double wy = dy ? ay : 1 - ay;
        if (yy < 0 || yy >= img->height || wy == 0)
            continue;
        for (int dx = 0; dx < 2; dx++) {
            int xx = x0 + dx;
            double wt = wy * (dx ? ax : 1 - ax);
            const uint8_t *p;
            if (xx < 0 || xx >= img->width || wt == 0)
                continue;
            p = img->rgb + ((size_t)yy * img->width + xx) * 3;
            acc[0] += wt * p[0];
            acc[1] += wt * p[1];
            acc[2] += wt * p[2];
        }
    }
}

int vision_align_face(const vision_image *img, const float kps[VISION_FACE_KPS][2], int out_size,
                      uint8_t *out_rgb, err_t *e)
{
    float dst[4][2], M[2][3];
    double det, ia, ib, ic, id, tx, ty, scale;
    int k;

    if (!img || !kps || !out_rgb || out_size < 8)
        return err_set(e, ERR_INVAL, "align: bad arguments (out_size %d)", out_size);
    for (int i = 0; i < 4; i++) {
        dst[i][0] = vision_align_template[i][0] * (float)out_size / 112.0f;
        dst[i][1] = vision_align_template[i][1] * (float)out_size / 112.0f;
    }
    if (vision_similarity(kps, (const float(*)[2])dst, 4, M))
        return err_set(e, ERR_INVAL, "align: degenerate keypoints");
    /* Invert dst = A src + t:  src = A^-1 (dst - t). */
    det = (double)M[0][0] * M[1][1] - (double)M[0][1] * M[1][0];
    if (!(det > 1e-12))
        return err_set(e, ERR_INVAL, "align: degenerate transform");
    ia = M[1][1] / det;
    ib = -M[0][1] / det;
    ic = -M[1][0] / det;
    id = M[0][0] / det;
    tx = M[0][2];
    ty = M[1][2];
    scale = 1.0 / sqrt(det); /* source pixels per output pixel */
    k = (int)ceil(scale);
    if (k < 1)
        k = 1;
    if (k > 4)
        k = 4;
    for (int v = 0; v < out_size; v++) {
        for (int u = 0; u < out_size; u++) {
            double acc[3] = {0, 0, 0};
            uint8_t *o = out_rgb + ((size_t)v * out_size + u) * 3;
            for (int sy = 0; sy < k; sy++) {
                for (int sx = 0; sx < k; sx++) {
                    double qx = u + (sx + 0.5) / k - tx;
                    double qy = v + (sy + 0.5) / k - ty;
                    align__sample(img, ia * qx + ib * qy, ic * qx + id * qy, acc);
                }
            }
            for (int c = 0; c < 3; c++) {
                double val = acc[c] / (k * k);
                o[c] = (uint8_t)(val < 0 ? 0 : val > 255 ? 255 : val + 0.5);
            }
        }
    }
    return ERR_OK;
}

int vision_face_tensor(const uint8_t *crop, int size, const model_manifest *m, float *tensor,
                       err_t *e)
{
    float *hwc;
    size_t n;
    int rc;

    if (!crop || !m || !tensor || size <= 0 || m->width != size || m->height != size)
        return err_set(e, ERR_INVAL, "face tensor: crop %d vs model input %dx%d", size,
                       m ? m->width : 0, m ? m->height : 0);
    n = (size_t)size * size * 3;
    hwc = malloc(sizeof(float) * n);
    if (!hwc)
        return err_set(e, ERR_NOMEM, "face tensor buffer");
    for (size_t i = 0; i < n; i++)
        hwc[i] = crop[i];
    rc = vision_pack_tensor(hwc, m, tensor);
    free(hwc);
    if (rc)
        return err_set(e, rc, "face tensor: model %s input is not usable", m->name);
    return ERR_OK;
}
