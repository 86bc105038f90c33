/*
 * vision/align.c — face alignment onto the embedder's canonical crop (pure).
 *
 * A least-squares similarity transform maps four BlazeFace keypoints (eyes,
 * nose tip, mouth centre; the ear tragions are too unstable under head turn
 * to help) onto ArcFace's 112x112 template, and the crop is sampled through
 * its inverse. We fit with complex numbers: in 2-D a rotation plus uniform
 * scale is multiplication by z = c + i d, whose least-squares value over
 * centred points is sum(conj(a) b) / sum(|a|^2) — Umeyama's solution with
 * the reflection case excluded by construction. When the face is larger
 * than the crop, the crop is sampled from the image pyramid's level that
 * leaves a shrink in [1, 2), with one bilinear tap per output pixel: the
 * pyramid has already averaged the detail a 2x-plus shrink would alias.
 * (Before, each output pixel averaged up to 4x4 bilinear taps of the full
 * image in double: ~4 ms per face, six times the embedder's run.)
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

/*
 * Bilinear tap at (x, y) in the level's sample grid (pixel centres at
 * integers), outside the level black: the slow path for crops that reach
 * past the image.
 */
static void align__tap_edge(const vision_level *lv, float x, float y, uint8_t *o)
{
    float fx0 = floorf(x), fy0 = floorf(y);
    int x0 = (int)fx0, y0 = (int)fy0;
    float ax = x - fx0, ay = y - fy0;
    float acc[3] = {0, 0, 0};

    for (int dy = 0; dy < 2; dy++) {
        int yy = y0 + dy;
        float wy = dy ? ay : 1 - ay;
        if (yy < 0 || yy >= lv->height)
            continue;
        for (int dx = 0; dx < 2; dx++) {
            int xx = x0 + dx;
            float wt = wy * (dx ? ax : 1 - ax);
            const uint8_t *p;
            if (xx < 0 || xx >= lv->width)
                continue;
            p = lv->rgb + ((size_t)yy * lv->width + xx) * 3;
            acc[0] += wt * p[0];
            acc[1] += wt * p[1];
            acc[2] += wt * p[2];
        }
    }
    for (int c = 0; c < 3; c++)
        o[c] = (uint8_t)(acc[c] > 255 ? 255 : acc[c] + 0.5f);
}

/*
 * One output row whose taps all lie inside the level: x, y step by (dx, dy)
 * per output pixel, in 16.16 fixed point, and the bilinear weights are
 * 8-bit, so the loop is integer only (position error under 1/256 pixel over
 * a row, value error under half a grey level). Float taps were a third
 * slower here, and the embedder's own run is only ~0.6 ms per face.
 */
static void align__row_inside(const vision_level *lv, int32_t x, int32_t y, int32_t dx,
                              int32_t dy, int n, uint8_t *o)
{
    size_t stride = (size_t)lv->width * 3;

    for (int u = 0; u < n; u++, x += dx, y += dy, o += 3) {
        uint32_t fx = ((uint32_t)x >> 8) & 255, fy = ((uint32_t)y >> 8) & 255;
        uint32_t w11 = fx * fy, w10 = (fx << 8) - w11, w01 = (fy << 8) - w11;
        uint32_t w00 = 65536 - w10 - w01 - w11;
        const uint8_t *p = lv->rgb + (size_t)(y >> 16) * stride + (size_t)(x >> 16) * 3;
        const uint8_t *q = p + stride;
        for (int c = 0; c < 3; c++)
            o[c] = (uint8_t)((w00 * p[c] + w10 * p[c + 3] + w01 * q[c] + w11 * q[c + 3] + 32768) >>
                             16);
    }
}

int vision_align_face(const vision_image *img, const float kps[VISION_FACE_KPS][2], int out_size,
                      uint8_t *out_rgb, err_t *e)
{
    float dst[4][2], M[2][3];
    double det, ia, ib, ic, id, tx, ty, k, cx[4], cy[4];
    const vision_level *lv;
    int nlevels, l, inside = 1;

    if (!img || !img->rgb || !kps || !out_rgb || out_size < 8)
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
    lv = vision_image_levels(img, &nlevels, e);
    if (!lv)
        return ERR_NOMEM;
    /* 1/sqrt(det) image pixels per output pixel; the level leaves [1, 2) of it. */
    l = vision_level_for(nlevels, 1.0 / sqrt(det));
    k = 1.0 / (double)(1 << l);
    ia = M[1][1] / det * k;
    ib = -M[0][1] / det * k;
    ic = -M[1][0] / det * k;
    id = M[0][0] / det * k;
    tx = M[0][2];
    ty = M[1][2];
    /*
     * Level sample-grid position of output pixel (u, v)'s centre:
     * x = ia (u + 0.5 - tx) + ib (v + 0.5 - ty) - 0.5, likewise y.
     * The map is affine, so the crop's taps are all inside the level when
     * its four corners' are (with a tap's right/lower neighbour included).
     */
    for (int i = 0; i < 4; i++) {
        double u = (i & 1) ? out_size - 1 : 0, v = (i & 2) ? out_size - 1 : 0;
        cx[i] = ia * (u + 0.5 - tx) + ib * (v + 0.5 - ty) - 0.5;
        cy[i] = ic * (u + 0.5 - tx) + id * (v + 0.5 - ty) - 0.5;
        if (!(cx[i] >= 0 && cx[i] < lv[l].width - 1.01 && cy[i] >= 0 &&
              cy[i] < lv[l].height - 1.01))
            inside = 0;
    }
    for (int v = 0; v < out_size; v++) {
        double x = ia * (0.5 - tx) + ib * (v + 0.5 - ty) - 0.5;
        double y = ic * (0.5 - tx) + id * (v + 0.5 - ty) - 0.5;
        uint8_t *o = out_rgb + (size_t)v * out_size * 3;
        if (inside) {
            align__row_inside(&lv[l], (int32_t)lrint(x * 65536), (int32_t)lrint(y * 65536),
                              (int32_t)lrint(ia * 65536), (int32_t)lrint(ic * 65536), out_size, o);
            continue;
        }
        for (int u = 0; u < out_size; u++)
            align__tap_edge(&lv[l], (float)(x + ia * u), (float)(y + ic * u), o + (size_t)u * 3);
    }
    return ERR_OK;
}

#if defined(__GNUC__)
/* See preprocess.c: GCC's -O2 leaves this loop scalar unless spelled out. */
typedef uint8_t align__u8x16 __attribute__((vector_size(16)));
typedef int16_t align__i16x16 __attribute__((vector_size(32)));
typedef int32_t align__i32x16 __attribute__((vector_size(64)));
typedef float align__f32x16 __attribute__((vector_size(64)));
#endif

/* t[k] = (crop[k] - mean[k % 3]) * inv[k % 3] for k < n. */
static void align__pack_hwc(const uint8_t *crop, size_t n, const float mean[3], const float inv[3],
                            float *t)
{
    size_t k = 0;

#if defined(__GNUC__)
    /* 48 values (16 pixels) a step, so the channel pattern repeats per step. */
    align__f32x16 mn[3], iv[3];
    for (int q = 0; q < 48; q++) {
        mn[q / 16][q % 16] = mean[q % 3];
        iv[q / 16][q % 16] = inv[q % 3];
    }
    for (; k + 48 <= n; k += 48) {
        for (int q = 0; q < 3; q++) {
            align__u8x16 v;
            memcpy(&v, crop + k + 16 * q, 16);
            align__i16x16 i16 = __builtin_convertvector(v, align__i16x16);
            align__i32x16 i32 = __builtin_convertvector(i16, align__i32x16);
            align__f32x16 f = (__builtin_convertvector(i32, align__f32x16) - mn[q]) * iv[q];
            memcpy(t + k + 16 * q, &f, sizeof(f));
        }
    }
#endif
    for (; k < n; k++)
        t[k] = ((float)crop[k] - mean[k % 3]) * inv[k % 3];
}

int vision_face_tensor(const uint8_t *crop, int size, const model_manifest *m, float *tensor,
                       err_t *e)
{
    float inv[3];
    size_t plane;

    if (!crop || !m || !tensor || size <= 0 || m->width != size || m->height != size)
        return err_set(e, ERR_INVAL, "face tensor: crop %d vs model input %dx%d", size,
                       m ? m->width : 0, m ? m->height : 0);
    if (m->channels != 3)
        return err_set(e, ERR_INVAL, "face tensor: model %s input is not RGB", m->name);
    for (int c = 0; c < 3; c++) {
        if (m->std[c] == 0)
            return err_set(e, ERR_INVAL, "face tensor: model %s has a zero std", m->name);
        inv[c] = 1.0f / m->std[c];
    }
    plane = (size_t)size * size;
    if (m->layout == LAYOUT_NCHW) {
        for (int c = 0; c < 3; c++)
            for (size_t p = 0; p < plane; p++)
                tensor[c * plane + p] = ((float)crop[p * 3 + c] - m->mean[c]) * inv[c];
        return ERR_OK;
    }
    align__pack_hwc(crop, plane * 3, m->mean, inv, tensor);
    return ERR_OK;
}
