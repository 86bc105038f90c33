/*
 * vision/align.c — cutting a face out for the embedder (pure).
 *
 * The embedder's manifest says how ("crop", infer/manifest.h): either a
 * least-squares similarity transform maps four BlazeFace keypoints (eyes,
 * nose tip, mouth centre; the ear tragions are too unstable under head turn
 * to help) onto a template (ArcFace's 112x112 one by default), or the square
 * around the detector's box is taken upright. Both are one 2x3 map from
 * image to crop (vision_face_map), and the crop is sampled through its
 * inverse (vision_warp_rgb, vision_warp_tensor). We fit with complex
 * numbers: in 2-D a rotation plus uniform scale is multiplication by
 * z = c + i d, whose least-squares value over
 * centred points is sum(conj(a) b) / sum(|a|^2) — Umeyama's solution with
 * the reflection case excluded by construction. When the face is larger
 * than the crop, the crop is sampled from the image pyramid's level that
 * leaves a shrink in [1, 2), with one bilinear tap per output pixel: the
 * pyramid has already averaged the detail a 2x-plus shrink would alias.
 * (Before, each output pixel averaged up to 4x4 bilinear taps of the full
 * image in double: ~4 ms per face, six times the embedder's run.)
 *
 * Five-point faces (SCRFD) are fitted by all five points onto ArcFace's
 * five-point template, and under crop method "align5" sampled as
 * insightface's norm_crop samples them for Immich (cv2.warpAffine on the
 * image itself, vision_warp_affine_cv), so that the embeddings are
 * Immich's.
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

const float vision_arcface_template5[5][2] = {
    {38.2946f, 51.6963f}, {73.5318f, 51.5014f}, {56.0252f, 71.7366f},
    {41.5493f, 92.3655f}, {70.7299f, 92.2041f},
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
 * One tap inside the level at 16.16 fixed-point (x, y), with 8-bit bilinear
 * weights, so integer only (position error under 1/256 pixel over a row,
 * value error under half a grey level on smooth content). The reference for
 * the vector path below, which must give the same bytes, and the path for
 * the last few pixels of a row.
 */
static void align__tap_fixed(const vision_level *lv, int32_t x, int32_t y, uint8_t *o)
{
    size_t stride = (size_t)lv->width * 3;
    uint32_t fx = ((uint32_t)x >> 8) & 255, fy = ((uint32_t)y >> 8) & 255;
    uint32_t w11 = fx * fy, w10 = (fx << 8) - w11, w01 = (fy << 8) - w11;
    uint32_t w00 = 65536 - w10 - w01 - w11;
    const uint8_t *p = lv->rgb + (size_t)(y >> 16) * stride + (size_t)(x >> 16) * 3;
    const uint8_t *q = p + stride;

    for (int c = 0; c < 3; c++)
        o[c] = (uint8_t)((w00 * p[c] + w10 * p[c + 3] + w01 * q[c] + w11 * q[c + 3] + 32768) >> 16);
}

/* Where the output of one row goes: the crop's bytes or the model's tensor. */
enum { ALIGN__BYTES, ALIGN__NHWC, ALIGN__NCHW };

typedef struct {
    const vision_level *lv;
    int n;            /* output pixels per row */
    double ia, ib, ic, id, tx, ty;
    int fixed;        /* 16.16 positions cannot overflow on this level */
    int mode;         /* ALIGN__* */
    uint8_t *bytes;   /* ALIGN__BYTES: n*n*3 */
    float *t;         /* the tensors: n*n*3 */
    float mean[3], inv[3];
} align__job;

/* Stores output pixel u of row v (values 0..255 in rgb). */
static inline void align__put(const align__job *j, int v, int u, const uint8_t *rgb)
{
    size_t px = (size_t)v * j->n + u, plane = (size_t)j->n * j->n;

    if (j->mode == ALIGN__BYTES) {
        memcpy(j->bytes + px * 3, rgb, 3);
        return;
    }
    for (int c = 0; c < 3; c++) {
        float f = ((float)rgb[c] - j->mean[c]) * j->inv[c];
        if (j->mode == ALIGN__NHWC)
            j->t[px * 3 + c] = f;
        else
            j->t[c * plane + px] = f;
    }
}

/*
 * The output pixels [*ua, *ub) of a row whose fixed-point taps lie inside
 * the level (with their right and lower neighbours): x0 + u dx in
 * [0, (width - 1) << 16) and likewise y. Each bound is a half-line in u, so
 * their intersection is one interval; we solve for it in 64-bit integers.
 */
static void align__row_span(const vision_level *lv, int32_t x0, int32_t y0, int32_t dx,
                            int32_t dy, int n, int *ua, int *ub)
{
    int64_t lo = 0, hi = n; /* u in [lo, hi) */
    int64_t p0[2] = {x0, y0}, d[2] = {dx, dy};
    int64_t lim[2] = {(int64_t)(lv->width - 1) << 16, (int64_t)(lv->height - 1) << 16};

    for (int a = 0; a < 2; a++) {
        /* 0 <= p0 + u d < lim */
        if (d[a] == 0) {
            if (p0[a] < 0 || p0[a] >= lim[a])
                hi = lo;
        } else if (d[a] > 0) {
            int64_t first = p0[a] >= 0 ? 0 : (-p0[a] + d[a] - 1) / d[a];
            int64_t end = p0[a] >= lim[a] ? 0 : (lim[a] - p0[a] + d[a] - 1) / d[a];
            lo = first > lo ? first : lo;
            hi = end < hi ? end : hi;
        } else {
            int64_t m = -d[a];
            int64_t first = p0[a] < lim[a] ? 0 : (p0[a] - lim[a] + 1 + m - 1) / m;
            int64_t end = p0[a] < 0 ? 0 : p0[a] / m + 1;
            lo = first > lo ? first : lo;
            hi = end < hi ? end : hi;
        }
    }
    if (lo > n)
        lo = n;
    if (hi < lo)
        hi = lo;
    *ua = (int)lo;
    *ub = (int)hi;
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/*
 * Four output pixels a step in 16-byte vectors (SSE2 on x86-64, NEON on
 * arm64; the GCC/Clang vector extension, as in pyramid.c). The four taps of
 * each pixel are gathered as 32-bit words (RGB plus a spare byte: `b` and
 * `d` load from 2 bytes in and drop the low byte, so nothing past the right
 * tap is read), split into channel vectors with shifts, and blended in
 * float with the same integer weights as align__tap_fixed(): every product
 * and sum is an integer below 2^24, so float is exact and the bytes equal
 * the scalar path's. Float because SSE2 has no 32-bit integer multiply.
 * Scalar was ~7 ns a pixel; this is about a third of it.
 */
#define ALIGN__VECTOR 1
typedef int32_t align__i32x4 __attribute__((vector_size(16)));
typedef uint32_t align__u32x4 __attribute__((vector_size(16)));
typedef float align__f32x4 __attribute__((vector_size(16)));
/* Lanes i0..i3 of the 8 lanes of a then b: GCC's and clang's spellings. */
#if defined(__clang__)
#define ALIGN__SHUFFLE(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
#define ALIGN__SHUFFLE(a, b, i0, i1, i2, i3) \
    __builtin_shuffle(a, b, (align__i32x4){i0, i1, i2, i3})
#endif

static inline uint32_t align__ld32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* One channel (byte `sh` / 8 of the left taps) of four pixels, 0..255. */
static inline align__i32x4 align__blend(align__u32x4 a, align__u32x4 b, align__u32x4 c,
                                        align__u32x4 d, int sh, align__f32x4 w00,
                                        align__f32x4 w10, align__f32x4 w01, align__f32x4 w11)
{
    align__f32x4 s = w00 * __builtin_convertvector((align__i32x4)((a >> sh) & 255), align__f32x4) +
                     w10 * __builtin_convertvector((align__i32x4)((b >> (sh + 8)) & 255),
                                                   align__f32x4) +
                     w01 * __builtin_convertvector((align__i32x4)((c >> sh) & 255), align__f32x4) +
                     w11 * __builtin_convertvector((align__i32x4)((d >> (sh + 8)) & 255),
                                                   align__f32x4);
    return __builtin_convertvector(s + 32768.0f, align__i32x4) >> 16;
}

/*
 * Output pixels [u, u + 4k) of row v from fixed-point (x, y) at u; returns
 * the first pixel not done. `mode` is a constant at each call so that the
 * store is chosen at compile time.
 */
static inline __attribute__((always_inline)) int
align__run4(const align__job *j, int v, int u, int ub, int32_t x, int32_t y, int32_t dx,
            int32_t dy, int mode)
{
    const uint8_t *base = j->lv->rgb;
    size_t stride = (size_t)j->lv->width * 3, plane = (size_t)j->n * j->n;
    align__i32x4 xv = {x, x + dx, x + 2 * dx, x + 3 * dx};
    align__i32x4 yv = {y, y + dy, y + 2 * dy, y + 3 * dy};

    for (; u + 4 <= ub; u += 4, xv += 4 * dx, yv += 4 * dy) {
        /* Addresses from scalar positions: lane extraction costs more. */
        const uint8_t *p0 = base + (size_t)(y >> 16) * stride + (size_t)(x >> 16) * 3;
        const uint8_t *p1 = base + (size_t)((y + dy) >> 16) * stride + (size_t)((x + dx) >> 16) * 3;
        const uint8_t *p2 =
            base + (size_t)((y + 2 * dy) >> 16) * stride + (size_t)((x + 2 * dx) >> 16) * 3;
        const uint8_t *p3 =
            base + (size_t)((y + 3 * dy) >> 16) * stride + (size_t)((x + 3 * dx) >> 16) * 3;
        x += 4 * dx;
        y += 4 * dy;
        align__u32x4 a = {align__ld32(p0), align__ld32(p1), align__ld32(p2), align__ld32(p3)};
        align__u32x4 b = {align__ld32(p0 + 2), align__ld32(p1 + 2), align__ld32(p2 + 2),
                          align__ld32(p3 + 2)};
        align__u32x4 c = {align__ld32(p0 + stride), align__ld32(p1 + stride),
                          align__ld32(p2 + stride), align__ld32(p3 + stride)};
        align__u32x4 d = {align__ld32(p0 + stride + 2), align__ld32(p1 + stride + 2),
                          align__ld32(p2 + stride + 2), align__ld32(p3 + stride + 2)};
        align__f32x4 fx = __builtin_convertvector((xv >> 8) & 255, align__f32x4);
        align__f32x4 fy = __builtin_convertvector((yv >> 8) & 255, align__f32x4);
        align__f32x4 w11 = fx * fy, w10 = fx * 256.0f - w11, w01 = fy * 256.0f - w11;
        align__f32x4 w00 = 65536.0f - w10 - w01 - w11;
        align__i32x4 r = align__blend(a, b, c, d, 0, w00, w10, w01, w11);
        align__i32x4 g = align__blend(a, b, c, d, 8, w00, w10, w01, w11);
        align__i32x4 bl = align__blend(a, b, c, d, 16, w00, w10, w01, w11);
        size_t px = (size_t)v * j->n + u;

        if (mode == ALIGN__BYTES) {
            align__i32x4 rgb = r | g << 8 | bl << 16;
            uint8_t *o = j->bytes + px * 3;
            uint32_t w[4] = {(uint32_t)rgb[0], (uint32_t)rgb[1], (uint32_t)rgb[2],
                             (uint32_t)rgb[3]};
            /* 4-byte stores, each spare byte overwritten by the next pixel. */
            memcpy(o, &w[0], 4);
            memcpy(o + 3, &w[1], 4);
            memcpy(o + 6, &w[2], 4);
            memcpy(o + 9, &w[3], 3);
            continue;
        }
        align__f32x4 fr = (__builtin_convertvector(r, align__f32x4) - j->mean[0]) * j->inv[0];
        align__f32x4 fg = (__builtin_convertvector(g, align__f32x4) - j->mean[1]) * j->inv[1];
        align__f32x4 fb = (__builtin_convertvector(bl, align__f32x4) - j->mean[2]) * j->inv[2];
        if (mode == ALIGN__NCHW) {
            memcpy(j->t + px, &fr, sizeof fr);
            memcpy(j->t + plane + px, &fg, sizeof fg);
            memcpy(j->t + 2 * plane + px, &fb, sizeof fb);
            continue;
        }
        /* Interleave to r0 g0 b0 r1 | g1 b1 r2 g2 | b2 r3 g3 b3. */
        align__f32x4 rg = ALIGN__SHUFFLE(fr, fg, 0, 4, 1, 5);
        align__f32x4 hi = ALIGN__SHUFFLE(fr, fg, 2, 6, 3, 7);
        align__f32x4 gb = ALIGN__SHUFFLE(fg, fb, 1, 5, 1, 5);
        align__f32x4 o0 = ALIGN__SHUFFLE(rg, fb, 0, 1, 4, 2);
        align__f32x4 o1 = ALIGN__SHUFFLE(gb, hi, 0, 1, 4, 5);
        align__f32x4 o2 = ALIGN__SHUFFLE(fb, hi, 2, 6, 7, 3);
        memcpy(j->t + px * 3, &o0, sizeof o0);
        memcpy(j->t + px * 3 + 4, &o1, sizeof o1);
        memcpy(j->t + px * 3 + 8, &o2, sizeof o2);
    }
    return u;
}
#endif

/*
 * Output row v: the pixels whose taps lie inside the level through the
 * fixed-point path (four at a time where vectors exist), the rest, which
 * reach past the image, through align__tap_edge().
 */
static inline __attribute__((always_inline)) void align__row(const align__job *j, int v, int mode)
{
    double x = j->ia * (0.5 - j->tx) + j->ib * (v + 0.5 - j->ty) - 0.5;
    double y = j->ic * (0.5 - j->tx) + j->id * (v + 0.5 - j->ty) - 0.5;
    int32_t fx0 = 0, fy0 = 0, dx = 0, dy = 0;
    int ua = 0, ub = 0, u = 0;
    uint8_t rgb[3];

    if (j->fixed) {
        fx0 = (int32_t)lrint(x * 65536);
        fy0 = (int32_t)lrint(y * 65536);
        dx = (int32_t)lrint(j->ia * 65536);
        dy = (int32_t)lrint(j->ic * 65536);
        align__row_span(j->lv, fx0, fy0, dx, dy, j->n, &ua, &ub);
    }
    for (; u < ua; u++) {
        align__tap_edge(j->lv, (float)(x + j->ia * u), (float)(y + j->ic * u), rgb);
        align__put(j, v, u, rgb);
    }
#ifdef ALIGN__VECTOR
    u = align__run4(j, v, u, ub, fx0 + u * dx, fy0 + u * dy, dx, dy, mode);
#endif
    for (; u < ub; u++) {
        align__tap_fixed(j->lv, fx0 + u * dx, fy0 + u * dy, rgb);
        align__put(j, v, u, rgb);
    }
    for (; u < j->n; u++) {
        align__tap_edge(j->lv, (float)(x + j->ia * u), (float)(y + j->ic * u), rgb);
        align__put(j, v, u, rgb);
    }
}

/* Sets up j->lv and the inverse of M (output = M * image) for an out_size crop. */
static int align__prepare(const vision_image *img, const float M[2][3], int out_size,
                          align__job *j, err_t *e)
{
    double det, k;
    const vision_level *lv;
    int nlevels, l;

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
    j->lv = &lv[l];
    j->n = out_size;
    j->ia = M[1][1] / det * k;
    j->ib = -M[0][1] / det * k;
    j->ic = -M[1][0] / det * k;
    j->id = M[0][0] / det * k;
    j->tx = M[0][2];
    j->ty = M[1][2];
    /*
     * Level sample-grid position of output pixel (u, v)'s centre:
     * x = ia (u + 0.5 - tx) + ib (v + 0.5 - ty) - 0.5, likewise y. The map
     * is affine, so when the crop's corners are within +-2^14 pixels so is
     * every position, and 16.16 fixed point (with the row's n steps of
     * rounding) cannot overflow; a far-off crop takes the float path only.
     */
    j->fixed = j->lv->width < 16384 && j->lv->height < 16384;
    for (int i = 0; i < 4; i++) {
        double u = (i & 1) ? out_size : 0, v = (i & 2) ? out_size : 0;
        double cx = j->ia * (u + 0.5 - j->tx) + j->ib * (v + 0.5 - j->ty) - 0.5;
        double cy = j->ic * (u + 0.5 - j->tx) + j->id * (v + 0.5 - j->ty) - 0.5;
        if (!(fabs(cx) < 16384 && fabs(cy) < 16384))
            j->fixed = 0;
    }
    return ERR_OK;
}

/* The similarity putting the eyes, nose and mouth of `kps` on template `t` (output px). */
static int align__fit(const float kps[VISION_FACE_KPS][2], const float (*t)[2], float M[2][3],
                      err_t *e)
{
    if (vision_similarity(kps, t, 4, M))
        return err_set(e, ERR_INVAL, "align: degenerate keypoints");
    return ERR_OK;
}

int vision_face_map(const model_manifest *m, const vision_face *f, float M[2][3], err_t *e)
{
    if (!m || !f || m->width < 8 || m->width != m->height)
        return err_set(e, ERR_INVAL, "face map: the embedder's input must be square, >= 8");
    float size = (float)m->width;
    if (m->crop_method == CROP_BOX) {
        float bw = f->box.x2 - f->box.x1, bh = f->box.y2 - f->box.y1;
        float side = (bw > bh ? bw : bh) * m->crop_scale;
        if (!(side > 1e-3f))
            return err_set(e, ERR_INVAL, "face map: empty box");
        float cx = (f->box.x1 + f->box.x2) * 0.5f;
        float cy = (f->box.y1 + f->box.y2) * 0.5f + m->crop_shift_y * side;
        float s = size / side;
        M[0][0] = s;
        M[0][1] = 0;
        M[0][2] = (side * 0.5f - cx) * s;
        M[1][0] = 0;
        M[1][1] = s;
        M[1][2] = (side * 0.5f - cy) * s;
        return ERR_OK;
    }
    if (vision_face_nkps(f) == VISION_FACE_KPS5) {
        float t5[5][2];
        for (int i = 0; i < 5; i++)
            for (int c = 0; c < 2; c++)
                t5[i][c] = vision_arcface_template5[i][c] * size / 112.0f;
        if (vision_similarity((const float(*)[2])f->kps, (const float(*)[2])t5, 5, M))
            return err_set(e, ERR_INVAL, "align: degenerate keypoints");
        return ERR_OK;
    }
    float t[4][2];
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 2; c++)
            t[i][c] = m->crop_has_template ? m->crop_template[i][c]
                                           : vision_align_template[i][c] * size / 112.0f;
    return align__fit((const float(*)[2])f->kps, (const float(*)[2])t, M, e);
}

/*
 * cv2.warpAffine, INTER_LINEAR, BORDER_CONSTANT 0, 8-bit: the inverse map in
 * double; per output pixel the source position in 1/32 pixel from
 * AB_BITS = 10 fixed-point row and column terms, rounded by half a 1/32;
 * bilinear weights of 1/32768 (products of multiples of 1/32, so exact) and
 * one rounding. Taps outside the image read 0.
 */
int vision_warp_affine_cv(const vision_image *img, const float M[2][3], int out_size,
                          uint8_t *out_rgb, err_t *e)
{
    if (!img || !img->rgb || !M || !out_rgb || out_size < 1)
        return err_set(e, ERR_INVAL, "align: bad arguments (out_size %d)", out_size);
    double D = (double)M[0][0] * M[1][1] - (double)M[0][1] * M[1][0];
    if (!(fabs(D) > 1e-12))
        return err_set(e, ERR_INVAL, "align: degenerate transform");
    D = 1.0 / D;
    double A11 = M[1][1] * D, A22 = M[0][0] * D;
    double A12 = -M[0][1] * D, A21 = -M[1][0] * D;
    double b1 = -A11 * M[0][2] - A12 * M[1][2];
    double b2 = -A21 * M[0][2] - A22 * M[1][2];
    const int W = img->width, H = img->height;
    const uint8_t *src = img->rgb;
    for (int y = 0; y < out_size; y++) {
        long X0 = lrint((A12 * y + b1) * 1024) + 16;
        long Y0 = lrint((A22 * y + b2) * 1024) + 16;
        uint8_t *o = out_rgb + (size_t)y * (size_t)out_size * 3;
        for (int x = 0; x < out_size; x++) {
            long X = (X0 + lrint(A11 * x * 1024)) >> 5;
            long Y = (Y0 + lrint(A21 * x * 1024)) >> 5;
            long sx = X >> 5, sy = Y >> 5;
            int fx = (int)(X & 31), fy = (int)(Y & 31);
            int32_t w[4] = {(32 - fx) * (32 - fy) * 32, fx * (32 - fy) * 32, (32 - fx) * fy * 32,
                            fx * fy * 32};
            for (int c = 0; c < 3; c++) {
                int32_t acc = 0;
                for (int k = 0; k < 4; k++) {
                    long px = sx + (k & 1), py = sy + (k >> 1);
                    if (px >= 0 && py >= 0 && px < W && py < H)
                        acc += w[k] * src[((size_t)py * (size_t)W + (size_t)px) * 3 + (size_t)c];
                }
                acc = (acc + (1 << 14)) >> 15;
                o[x * 3 + c] = (uint8_t)(acc > 255 ? 255 : acc);
            }
        }
    }
    return ERR_OK;
}

int vision_warp_rgb(const vision_image *img, const float M[2][3], int out_size, uint8_t *out_rgb,
                    err_t *e)
{
    align__job j = {.mode = ALIGN__BYTES, .bytes = out_rgb};
    int rc;

    if (!img || !img->rgb || !M || !out_rgb || out_size < 8)
        return err_set(e, ERR_INVAL, "align: bad arguments (out_size %d)", out_size);
    if ((rc = align__prepare(img, M, out_size, &j, e)) != ERR_OK)
        return rc;
    for (int v = 0; v < out_size; v++)
        align__row(&j, v, ALIGN__BYTES);
    return ERR_OK;
}

int vision_align_face(const vision_image *img, const float kps[VISION_FACE_KPS][2], int out_size,
                      uint8_t *out_rgb, err_t *e)
{
    float t[4][2], M[2][3];
    int rc;

    if (!img || !img->rgb || !kps || !out_rgb || out_size < 8)
        return err_set(e, ERR_INVAL, "align: bad arguments (out_size %d)", out_size);
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 2; c++)
            t[i][c] = vision_align_template[i][c] * (float)out_size / 112.0f;
    if ((rc = align__fit(kps, (const float(*)[2])t, M, e)) != ERR_OK)
        return rc;
    return vision_warp_rgb(img, (const float(*)[3])M, out_size, out_rgb, e);
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

/* Checks the manifest against a size x size crop and fills inv[] = 1 / std. */
static int align__tensor_check(int size, const model_manifest *m, float inv[3], err_t *e)
{
    if (!m || size <= 0 || m->width != size || m->height != size)
        return err_set(e, ERR_INVAL, "face tensor: crop %d vs model input %dx%d", size,
                       m ? m->width : 0, m ? m->height : 0);
    if (m->channels != 3)
        return err_set(e, ERR_INVAL, "face tensor: model %s input is not RGB", m->name);
    for (int c = 0; c < 3; c++) {
        if (m->std[c] == 0)
            return err_set(e, ERR_INVAL, "face tensor: model %s has a zero std", m->name);
        inv[c] = 1.0f / m->std[c];
    }
    return ERR_OK;
}

int vision_face_tensor(const uint8_t *crop, int size, const model_manifest *m, float *tensor,
                       err_t *e)
{
    float inv[3];
    size_t plane;
    int rc;

    if (!crop || !tensor)
        return err_set(e, ERR_INVAL, "face tensor: bad arguments");
    if ((rc = align__tensor_check(size, m, inv, e)) != ERR_OK)
        return rc;
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

/*
 * vision_warp_rgb() then vision_face_tensor() without the crop between them:
 * each output pixel's three values go straight from the blend to the
 * tensor, so the bytes are never stored and read back (a third of the two
 * calls' time).
 */
int vision_warp_tensor(const vision_image *img, const float M[2][3], const model_manifest *m,
                       float *tensor, err_t *e)
{
    align__job j = {.t = tensor};
    int rc;

    if (!img || !img->rgb || !M || !tensor || !m)
        return err_set(e, ERR_INVAL, "align: bad arguments");
    if (m->width < 8)
        return err_set(e, ERR_INVAL, "align: bad arguments (out_size %d)", m->width);
    if ((rc = align__tensor_check(m->width, m, j.inv, e)) != ERR_OK)
        return rc;
    if (m->crop_method == CROP_ALIGN5) {
        uint8_t *crop = malloc((size_t)m->width * (size_t)m->width * 3);
        if (!crop)
            return err_set(e, ERR_NOMEM, "align: crop");
        rc = vision_warp_affine_cv(img, M, m->width, crop, e);
        if (rc == ERR_OK)
            rc = vision_face_tensor(crop, m->width, m, tensor, e);
        free(crop);
        return rc;
    }
    for (int c = 0; c < 3; c++)
        j.mean[c] = m->mean[c];
    j.mode = m->layout == LAYOUT_NCHW ? ALIGN__NCHW : ALIGN__NHWC;
    if ((rc = align__prepare(img, M, m->width, &j, e)) != ERR_OK)
        return rc;
    for (int v = 0; v < j.n; v++) {
        if (j.mode == ALIGN__NCHW)
            align__row(&j, v, ALIGN__NCHW);
        else
            align__row(&j, v, ALIGN__NHWC);
    }
    return ERR_OK;
}
