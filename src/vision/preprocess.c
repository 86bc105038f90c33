/*
 * vision/preprocess.c — image regions to model input tensors (pure).
 *
 * One resampler serves every model: a source rectangle, which may reach past
 * the image (letterbox padding, tiles at the border), is sampled to the
 * model's input size. It is separable: per axis a fixed number of taps
 * (source index, weight) per output is built, each source row the vertical
 * taps need is filtered horizontally once into a small ring of float rows,
 * and each output row is the weighted sum of its rows in that ring, written
 * straight into the tensor as (x - mean) / std in the model's layout.
 * Shrinking uses area averaging with fractional pixel coverage rather than
 * bilinear: the detector sees photos shrunk 8x, where bilinear's two taps
 * would alias fine texture into false edges. Enlarging (rare: small images
 * into a 256 input) is bilinear.
 *
 * The samplers for images (vision_preprocess_region and so the detector's
 * views) start from the pyramid level of pyramid.c that leaves a shrink in
 * [1, 2), so each output pixel has two or three taps per axis whatever the
 * photo's size; vision_resample() works on the buffer it is given.
 *
 * Two whole-image samplers stand apart because a model was trained on
 * another library's resize and must be fed exactly that: TF's
 * resizeBilinear(alignCorners) (nsfwjs) and Pillow's Image.resize with a
 * shortest-side centre crop or a squash (OpenCLIP, as Immich feeds it), the
 * latter reproduced bit for bit on the full image (see "Pillow-exact" below).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

typedef struct {
    int *idx;    /* ntaps per output: source index, clamped into [0, n) */
    int *ofs;    /* ntaps per output: 3 * (idx - lo), the tap's first float in a row */
    int lo, hi;  /* least and greatest idx */
    float *w;    /* ntaps per output: weight; 0 for an unused or outside tap */
    float *padw; /* per output: total weight of the taps outside [0, n) */
    int ntaps;
} resample__axis;

static void resample__axis_free(resample__axis *a)
{
    free(a->idx);
    free(a->ofs);
    free(a->w);
    free(a->padw);
}

/*
 * Builds the taps for sampling [r0, r0 + len) of an axis of n source pixels
 * into `out` outputs. Taps of one output are consecutive source indices, so
 * any ntaps consecutive rows land in distinct slots of a ring of ntaps rows.
 */
static int resample__axis_build(resample__axis *a, float r0, float len, int n, int out)
{
    double s = (double)len / out;
    int nt = s > 1.0 ? (int)ceil(s) + 1 : 2;

    memset(a, 0, sizeof(*a));
    a->ntaps = nt;
    a->idx = malloc(sizeof(*a->idx) * (size_t)out * (size_t)nt);
    a->ofs = malloc(sizeof(*a->ofs) * (size_t)out * (size_t)nt);
    a->w = calloc((size_t)out * (size_t)nt, sizeof(*a->w));
    a->padw = calloc((size_t)out, sizeof(*a->padw));
    if (!a->idx || !a->ofs || !a->w || !a->padw) {
        resample__axis_free(a);
        return ERR_NOMEM;
    }
    for (int i = 0; i < out; i++) {
        int *idx = a->idx + (size_t)i * nt;
        float *w = a->w + (size_t)i * nt;
        double lo = 0, hi = 0, c = 0;
        int j0;

        if (s > 1.0) {
            /* Area average over [lo, hi): coverage of each pixel / s. */
            lo = r0 + (double)i * s;
            hi = lo + s;
            j0 = (int)floor(lo);
        } else {
            /* Bilinear around the output pixel's centre. */
            c = r0 + ((double)i + 0.5) * s - 0.5;
            j0 = (int)floor(c);
        }
        for (int t = 0; t < nt; t++) {
            int j = j0 + t;
            double wt;
            if (s > 1.0) {
                wt = (fmin(hi, j + 1.0) - fmax(lo, (double)j)) / s;
                if (wt < 0)
                    wt = 0;
            } else {
                wt = t == 0 ? 1.0 - (c - j0) : c - j0;
            }
            idx[t] = j < 0 ? 0 : j >= n ? n - 1 : j;
            if (j < 0 || j >= n)
                a->padw[i] += (float)wt;
            else
                w[t] = (float)wt;
        }
    }
    a->lo = n;
    a->hi = 0;
    for (size_t k = 0; k < (size_t)out * nt; k++) {
        if (a->idx[k] < a->lo)
            a->lo = a->idx[k];
        if (a->idx[k] > a->hi)
            a->hi = a->idx[k];
    }
    for (size_t k = 0; k < (size_t)out * nt; k++)
        a->ofs[k] = 3 * (a->idx[k] - a->lo);
    return ERR_OK;
}

#if defined(__GNUC__)
/*
 * GCC's -O2 vectorises none of the loops below (its cost model at -O2
 * refuses loops that need a scalar epilogue), so the hot ones use 16-byte
 * vectors through the GCC/Clang vector extension; the scalar code after each
 * #ifdef does the same arithmetic in the same order, per channel, for other
 * compilers. Intrinsics would tie us to one instruction set.
 */
typedef float pre__f32x4 __attribute__((vector_size(16)));
typedef float pre__f32x16 __attribute__((vector_size(64)));
typedef uint8_t pre__u8x16 __attribute__((vector_size(16)));
typedef int16_t pre__i16x16 __attribute__((vector_size(32)));
typedef int32_t pre__i32x16 __attribute__((vector_size(64)));
#define PRE__VECTOR 1
#endif

/* frow[k] = row[k] for k < n. */
static void resample__widen(const uint8_t *row, int n, float *frow)
{
    int k = 0;

#ifdef PRE__VECTOR
    for (; k + 16 <= n; k += 16) {
        pre__u8x16 v;
        memcpy(&v, row + k, 16);
        /* Widened step by step: a direct u8 -> float conversion compiles to scalar code. */
        pre__i16x16 i16 = __builtin_convertvector(v, pre__i16x16);
        pre__i32x16 i32 = __builtin_convertvector(i16, pre__i32x16);
        pre__f32x16 f = __builtin_convertvector(i32, pre__f32x16);
        memcpy(frow + k, &f, sizeof(f));
    }
#endif
    for (; k < n; k++)
        frow[k] = row[k];
}

/*
 * Filters one source row (as floats from column ax->lo on, `frow`, with one
 * readable float past its end) horizontally: hrow[i*3 + c] for each output
 * i; hrow has one writable float past out_w*3. `nt` is passed as a constant
 * by resample__hrow_any() so that the tap loop unrolls.
 */
static inline void resample__hrow(const float *frow, const resample__axis *ax, int out_w,
                                  const float pad[3], float *hrow, int nt)
{
#ifdef PRE__VECTOR
    const pre__f32x4 p4 = {pad[0], pad[1], pad[2], 0};
#endif

    for (int i = 0; i < out_w; i++) {
        const int *ofs = ax->ofs + (size_t)i * nt;
        const float *w = ax->w + (size_t)i * nt;
        float pw = ax->padw[i];
#ifdef PRE__VECTOR
        /* One pixel per vector (r, g, b, unused): loads and stores reach one float over. */
        pre__f32x4 acc = pw * p4;
        for (int t = 0; t < nt; t++) {
            pre__f32x4 v;
            memcpy(&v, frow + ofs[t], sizeof(v));
            acc += w[t] * v;
        }
        memcpy(hrow + i * 3, &acc, sizeof(acc));
#else
        float r = pw * pad[0], g = pw * pad[1], b = pw * pad[2];
        for (int t = 0; t < nt; t++) {
            const float *p = frow + ofs[t];
            r += w[t] * p[0];
            g += w[t] * p[1];
            b += w[t] * p[2];
        }
        hrow[i * 3 + 0] = r;
        hrow[i * 3 + 1] = g;
        hrow[i * 3 + 2] = b;
#endif
    }
}

static void resample__hrow_any(const float *frow, const resample__axis *ax, int out_w,
                               const float pad[3], float *hrow)
{
    switch (ax->ntaps) {
    case 2:
        resample__hrow(frow, ax, out_w, pad, hrow, 2);
        break;
    case 3:
        resample__hrow(frow, ax, out_w, pad, hrow, 3);
        break;
    case 4:
        resample__hrow(frow, ax, out_w, pad, hrow, 4);
        break;
    default:
        resample__hrow(frow, ax, out_w, pad, hrow, ax->ntaps);
        break;
    }
}

/*
 * One output row: o[k] = (pw * padrow[k] + sum_t wt[t] * rows[t][k] - mean[k])
 * * inv[k] for k < n, where padrow/mean/inv repeat the channel values.
 */
static void resample__vrow(const float *const *rows, const float *wt, int nrows, float pw,
                           const float *padrow, const float *mean, const float *inv, int n,
                           float *o)
{
    int k = 0;

#ifdef PRE__VECTOR
    for (; k + 4 <= n; k += 4) {
        pre__f32x4 acc, v, mn, iv;
        memcpy(&acc, padrow + k, sizeof(acc));
        acc *= pw;
        for (int t = 0; t < nrows; t++) {
            memcpy(&v, rows[t] + k, sizeof(v));
            acc += wt[t] * v;
        }
        memcpy(&mn, mean + k, sizeof(mn));
        memcpy(&iv, inv + k, sizeof(iv));
        acc = (acc - mn) * iv;
        memcpy(o + k, &acc, sizeof(acc));
    }
#endif
    for (; k < n; k++) {
        float acc = pw * padrow[k];
        for (int t = 0; t < nrows; t++)
            acc += wt[t] * rows[t][k];
        o[k] = (acc - mean[k]) * inv[k];
    }
}

/*
 * The resampler behind every public sampler: the rectangle of the w x h
 * image `rgb` into out_w x out_h values (v - mean[c]) * inv[c], interleaved
 * (HWC) or planar (CHW) at `out`.
 */
static int resample__run(const uint8_t *rgb, int w, int h, float rx, float ry, float rw,
                         float rh, int out_w, int out_h, const float pad[3], const float mean[3],
                         const float inv[3], int planar, float *out)
{
    resample__axis ax, ay;
    float *ring = NULL, *frow = NULL, *pat = NULL, *line = NULL;
    const float **rows = NULL;
    float *wts = NULL;
    int *held = NULL;
    size_t rowlen = (size_t)out_w * 3, ringrow = rowlen + 4, plane = (size_t)out_w * out_h;
    int nt, span, rc;

    if (!rgb || !out || w <= 0 || h <= 0 || out_w <= 0 || out_h <= 0 || !(rw > 0) || !(rh > 0))
        return ERR_INVAL;
    rc = resample__axis_build(&ax, rx, rw, w, out_w);
    if (rc)
        return rc;
    rc = resample__axis_build(&ay, ry, rh, h, out_h);
    if (rc) {
        resample__axis_free(&ax);
        return rc;
    }
    nt = ay.ntaps;
    span = (ax.hi - ax.lo + 1) * 3;
    ring = malloc(sizeof(float) * ringrow * (size_t)nt);
    frow = calloc((size_t)span + 4, sizeof(float));
    pat = malloc(sizeof(float) * rowlen * 3);
    line = malloc(sizeof(float) * rowlen);
    held = malloc(sizeof(int) * (size_t)nt);
    rows = malloc(sizeof(*rows) * (size_t)nt);
    wts = malloc(sizeof(*wts) * (size_t)nt);
    if (!ring || !frow || !pat || !line || !held || !rows || !wts) {
        rc = ERR_NOMEM;
        goto out;
    }
    /* The per-channel pad, mean and 1/std repeated along a row. */
    for (size_t k = 0; k < rowlen; k++) {
        pat[k] = pad[k % 3];
        pat[rowlen + k] = mean[k % 3];
        pat[2 * rowlen + k] = inv[k % 3];
    }
    for (int t = 0; t < nt; t++)
        held[t] = -1;
    for (int j = 0; j < out_h; j++) {
        const int *idx = ay.idx + (size_t)j * nt;
        const float *wy = ay.w + (size_t)j * nt;
        int nrows = 0;

        for (int t = 0; t < nt; t++) {
            int y = idx[t], slot = y % nt;
            float *hrow = ring + (size_t)slot * ringrow;
            if (wy[t] == 0)
                continue;
            if (held[slot] != y) {
                resample__widen(rgb + ((size_t)y * w + ax.lo) * 3, span, frow);
                resample__hrow_any(frow, &ax, out_w, pad, hrow);
                held[slot] = y;
            }
            rows[nrows] = hrow;
            wts[nrows++] = wy[t];
        }
        if (planar) {
            resample__vrow(rows, wts, nrows, ay.padw[j], pat, pat + rowlen, pat + 2 * rowlen,
                           (int)rowlen, line);
            for (int c = 0; c < 3; c++) {
                float *o = out + c * plane + (size_t)j * out_w;
                for (int i = 0; i < out_w; i++)
                    o[i] = line[i * 3 + c];
            }
        } else {
            resample__vrow(rows, wts, nrows, ay.padw[j], pat, pat + rowlen, pat + 2 * rowlen,
                           (int)rowlen, out + (size_t)j * rowlen);
        }
    }
    rc = ERR_OK;
out:
    free(ring);
    free(frow);
    free(pat);
    free(line);
    free(held);
    free(rows);
    free(wts);
    resample__axis_free(&ax);
    resample__axis_free(&ay);
    return rc;
}

int vision_resample(const uint8_t *rgb, int w, int h, float rx, float ry, float rw, float rh,
                    int out_w, int out_h, const float pad[3], float *out)
{
    static const float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};

    return resample__run(rgb, w, h, rx, ry, rw, rh, out_w, out_h, pad, zero, one, 0, out);
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

/* The model's per-channel mean and 1/std; ERR_INVAL when unusable. */
static int preprocess__norm(const model_manifest *m, float inv[3])
{
    if (m->channels != 3 || m->width <= 0 || m->height <= 0)
        return ERR_INVAL;
    for (int c = 0; c < 3; c++) {
        if (m->std[c] == 0)
            return ERR_INVAL;
        inv[c] = 1.0f / m->std[c];
    }
    return ERR_OK;
}

int vision_preprocess_region(const vision_image *img, const model_manifest *m, float rx, float ry,
                             float rw, float rh, const float pad[3], float *tensor, err_t *e)
{
    const vision_level *lv;
    float inv[3], k;
    int nlevels, l, rc;

    if (!img || !img->rgb || !m || !pad || !tensor)
        return err_set(e, ERR_INVAL, "preprocess: NULL argument");
    if (preprocess__norm(m, inv))
        return err_set(e, ERR_INVAL, "model %s: input is not RGB with a non-zero std", m->name);
    if (!(rw > 0) || !(rh > 0))
        return err_set(e, ERR_INVAL, "preprocess: empty region %gx%g", (double)rw, (double)rh);
    lv = vision_image_levels(img, &nlevels, e);
    if (!lv)
        return ERR_NOMEM;
    /* The axis that shrinks least decides: neither may be enlarged by the level. */
    l = vision_level_for(nlevels, fmin((double)rw / m->width, (double)rh / m->height));
    k = 1.0f / (float)(1 << l);
    rc = resample__run(lv[l].rgb, lv[l].width, lv[l].height, rx * k, ry * k, rw * k, rh * k,
                       m->width, m->height, pad, m->mean, inv, m->layout == LAYOUT_NCHW, tensor);
    if (rc)
        return err_set(e, rc, "preprocess for model %s failed", m->name);
    return ERR_OK;
}

/*
 * ---- Pillow-exact resizing (input.resize shortest_crop_* and squash_*) ----
 *
 * CLIP models are fed what OpenCLIP's (and Immich's) Pillow preprocessing
 * makes, so this reproduces Pillow's Image.resize convolution: per axis, the
 * output pixel i of a resize from n to out pixels is centred at
 * (i + 0.5) * n / out; the filter (bicubic with a = -0.5, support 2, or
 * the triangle, support 1) is widened by the shrink factor when shrinking
 * (antialiasing); taps are the source pixels whose centres fall within the
 * support, weights normalised to sum 1 and rounded to 22-bit fixed point;
 * sums are rounded and clamped to 8 bits. The horizontal pass runs first over
 * every source row the vertical pass needs, into an 8-bit buffer, then the
 * vertical pass. Weights are computed in doubles with the same expressions, so
 * the same image gives the same bytes. Only the output pixels that the
 * centre crop keeps are computed (each output pixel's taps depend on its own
 * index alone, so this changes nothing), which also bounds the work for a
 * panorama whose short side is tiny.
 *
 * It reads the full decoded image, not a pyramid level: a level is rounded to
 * 8 bits and box-filtered, which moves results by a grey level or more at
 * edges, and exactness is the point of this mode (embeddings that agree with
 * the ones Immich computes).
 */
#define PIL__BITS 22 /* Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2 */

static double pil__bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double pil__triangle(double x)
{
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return 1.0 - x;
    return 0.0;
}

typedef struct {
    double (*f)(double);
    double support;
} pil__filter;

typedef struct {
    int ksize;  /* weights per output */
    int *first; /* per output: first source index */
    int *count; /* per output: taps used (<= ksize) */
    int32_t *k; /* ksize per output: fixed-point weights */
} pil__axis;

static void pil__axis_free(pil__axis *a)
{
    free(a->first);
    free(a->count);
    free(a->k);
}

/*
 * The taps of outputs [o0, o0 + n) of an axis resized from `in` to `out`
 * pixels, as Pillow's precompute_coeffs + normalize_coeffs_8bpc.
 */
static int pil__axis_build(pil__axis *a, int in, int out, int o0, int n, const pil__filter *fl)
{
    double scale = (double)in / out, fscale = scale < 1.0 ? 1.0 : scale;
    double support = fl->support * fscale, ss = 1.0 / fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w;

    memset(a, 0, sizeof(*a));
    a->ksize = ksize;
    a->first = malloc(sizeof(int) * (size_t)n);
    a->count = malloc(sizeof(int) * (size_t)n);
    a->k = calloc((size_t)n * (size_t)ksize, sizeof(int32_t));
    w = malloc(sizeof(double) * (size_t)ksize);
    if (!a->first || !a->count || !a->k || !w) {
        free(w);
        pil__axis_free(a);
        return ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        double center = ((double)(o0 + i) + 0.5) * scale, sum = 0.0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5), cnt;
        int32_t *k = a->k + (size_t)i * ksize;

        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        cnt = hi - lo;
        if (cnt > ksize) /* cannot happen: the support spans < ksize pixels */
            cnt = ksize;
        for (int t = 0; t < cnt; t++) {
            w[t] = fl->f(((double)(t + lo) - center + 0.5) * ss);
            sum += w[t];
        }
        for (int t = 0; t < cnt; t++) {
            double x = sum != 0.0 ? w[t] / sum : w[t];
            x *= (double)(1 << PIL__BITS);
            k[t] = (int32_t)(x < 0 ? x - 0.5 : x + 0.5);
        }
        a->first[i] = lo;
        a->count[i] = cnt < 0 ? 0 : cnt;
    }
    free(w);
    return ERR_OK;
}

/* Pillow's clip8: a fixed-point sum (with its rounding half added) to 0..255. */
static inline uint8_t pil__clip8(int32_t v)
{
    if (v >= (255 << PIL__BITS))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PIL__BITS);
}

/*
 * The out_w x out_h window at (cx, cy) of the w x h RGB image `rgb` resized
 * to rw x rh with filter `fl`, written to the tensor as (v - mean) * inv in
 * NCHW (`planar`) or NHWC.
 */
static int pil__resize_crop(const uint8_t *rgb, int w, int h, int rw, int rh, int cx, int cy,
                            int out_w, int out_h, const pil__filter *fl, const float mean[3],
                            const float inv[3], int planar, float *out)
{
    pil__axis ax, ay;
    uint8_t *tmp = NULL;
    int y0, y1, rc;
    size_t plane = (size_t)out_w * out_h, trow = (size_t)out_w * 3;

    rc = pil__axis_build(&ax, w, rw, cx, out_w, fl);
    if (rc)
        return rc;
    rc = pil__axis_build(&ay, h, rh, cy, out_h, fl);
    if (rc) {
        pil__axis_free(&ax);
        return rc;
    }
    /* The source rows the vertical taps read: a contiguous band. */
    y0 = h;
    y1 = 0;
    for (int j = 0; j < out_h; j++) {
        if (ay.count[j] == 0)
            continue;
        if (ay.first[j] < y0)
            y0 = ay.first[j];
        if (ay.first[j] + ay.count[j] > y1)
            y1 = ay.first[j] + ay.count[j];
    }
    if (y1 < y0)
        y1 = y0;
    tmp = malloc(trow * (size_t)(y1 - y0 > 0 ? y1 - y0 : 1));
    if (!tmp) {
        rc = ERR_NOMEM;
        goto out;
    }
    /* Horizontal pass: source rows [y0, y1) to out_w 8-bit pixels each. */
    for (int y = y0; y < y1; y++) {
        const uint8_t *src = rgb + (size_t)y * w * 3;
        uint8_t *t = tmp + (size_t)(y - y0) * trow;
        for (int i = 0; i < out_w; i++) {
            const int32_t *k = ax.k + (size_t)i * ax.ksize;
            const uint8_t *p = src + (size_t)ax.first[i] * 3;
            int32_t r = 1 << (PIL__BITS - 1), g = r, b = r;
            for (int q = 0; q < ax.count[i]; q++) {
                r += p[3 * q + 0] * k[q];
                g += p[3 * q + 1] * k[q];
                b += p[3 * q + 2] * k[q];
            }
            t[3 * i + 0] = pil__clip8(r);
            t[3 * i + 1] = pil__clip8(g);
            t[3 * i + 2] = pil__clip8(b);
        }
    }
    /* Vertical pass, straight into the tensor. */
    for (int j = 0; j < out_h; j++) {
        const int32_t *k = ay.k + (size_t)j * ay.ksize;
        const uint8_t *col = tmp + (size_t)(ay.first[j] - y0) * trow;
        int cnt = ay.count[j];
        for (int i = 0; i < out_w; i++) {
            int32_t acc[3] = {1 << (PIL__BITS - 1), 1 << (PIL__BITS - 1), 1 << (PIL__BITS - 1)};
            for (int q = 0; q < cnt; q++) {
                const uint8_t *p = col + (size_t)q * trow + 3 * i;
                acc[0] += p[0] * k[q];
                acc[1] += p[1] * k[q];
                acc[2] += p[2] * k[q];
            }
            for (int c = 0; c < 3; c++) {
                float v = ((float)pil__clip8(acc[c]) - mean[c]) * inv[c];
                if (planar)
                    out[c * plane + (size_t)j * out_w + i] = v;
                else
                    out[((size_t)j * out_w + i) * 3 + c] = v;
            }
        }
    }
    rc = ERR_OK;
out:
    free(tmp);
    pil__axis_free(&ax);
    pil__axis_free(&ay);
    return rc;
}

int vision_pil_geometry(int w, int h, const model_manifest *m, int *rw, int *rh, int *cx, int *cy)
{
    int shortest =
        m->resize == RESIZE_SHORTEST_CROP_BICUBIC || m->resize == RESIZE_SHORTEST_CROP_BILINEAR;

    if (w <= 0 || h <= 0 || m->width <= 0 || m->height <= 0)
        return ERR_INVAL;
    if (!shortest) {
        *rw = m->width;
        *rh = m->height;
        *cx = *cy = 0;
        return ERR_OK;
    }
    /* Immich's resize_pil with size S, in the same double arithmetic; then crop_pil. */
    int s = m->width > m->height ? m->width : m->height;
    double lng;
    if (w < h) {
        lng = ((double)h / (double)w) * s;
        *rw = s;
        *rh = lng >= (double)INT32_MAX ? INT32_MAX : (int)lng;
    } else {
        lng = ((double)w / (double)h) * s;
        *rw = lng >= (double)INT32_MAX ? INT32_MAX : (int)lng;
        *rh = s;
    }
    *cx = (int)((double)*rw / 2 - (double)m->width / 2);
    *cy = (int)((double)*rh / 2 - (double)m->height / 2);
    return ERR_OK;
}

/* input.resize shortest_crop_* / squash_*: the whole image, Pillow-exact. */
static int preprocess__pil(const vision_image *img, const model_manifest *m, float *tensor,
                           vision_xform *xf, err_t *e)
{
    static const pil__filter bicubic = {pil__bicubic, 2.0}, triangle = {pil__triangle, 1.0};
    const pil__filter *fl =
        m->resize == RESIZE_SHORTEST_CROP_BILINEAR || m->resize == RESIZE_SQUASH_BILINEAR
            ? &triangle
            : &bicubic;
    float inv[3];
    int rw, rh, cx, cy, rc;

    if (preprocess__norm(m, inv))
        return err_set(e, ERR_INVAL, "model %s: input is not RGB with a non-zero std", m->name);
    if (vision_pil_geometry(img->width, img->height, m, &rw, &rh, &cx, &cy))
        return err_set(e, ERR_INVAL, "preprocess: empty image");
    rc = pil__resize_crop(img->rgb, img->width, img->height, rw, rh, cx, cy, m->width, m->height,
                          fl, m->mean, inv, m->layout == LAYOUT_NCHW, tensor);
    if (rc)
        return err_set(e, rc, "preprocess for model %s failed", m->name);
    if (xf) {
        xf->scale = (float)img->width / (float)rw;
        xf->x0 = (float)cx * xf->scale;
        xf->y0 = (float)cy * (float)img->height / (float)rh;
    }
    return ERR_OK;
}

/*
 * The whole image stretched to the input as TensorFlow's resizeBilinear with
 * alignCorners does it: input pixel (u, v) is the bilinear tap at
 * (u (W-1)/(w-1), v (H-1)/(h-1)) of the image (corner pixels map onto corner
 * pixels), on level 0 whatever the shrink. No averaging: a large photo is
 * sampled, not filtered, exactly as the TF.js model's own code feeds it.
 */
static void preprocess__corners(const vision_image *img, const model_manifest *m, float *tensor)
{
    int w = m->width, h = m->height, W = img->width, H = img->height;
    double ry = h > 1 ? (double)(H - 1) / (h - 1) : 0, rx = w > 1 ? (double)(W - 1) / (w - 1) : 0;
    size_t plane = (size_t)w * h, stride = (size_t)W * 3;
    float inv[3];
    for (int c = 0; c < 3; c++)
        inv[c] = 1.0f / m->std[c];
    for (int v = 0; v < h; v++) {
        double sy = v * ry;
        int y0 = (int)sy, y1 = y0 + 1 < H ? y0 + 1 : H - 1;
        float fy = (float)(sy - y0);
        for (int u = 0; u < w; u++) {
            double sx = u * rx;
            int x0 = (int)sx, x1 = x0 + 1 < W ? x0 + 1 : W - 1;
            float fx = (float)(sx - x0);
            const uint8_t *a = img->rgb + (size_t)y0 * stride, *b = img->rgb + (size_t)y1 * stride;
            size_t px = (size_t)v * w + u;
            for (int c = 0; c < 3; c++) {
                float top = a[x0 * 3 + c] + (a[x1 * 3 + c] - a[x0 * 3 + c]) * fx;
                float bot = b[x0 * 3 + c] + (b[x1 * 3 + c] - b[x0 * 3 + c]) * fx;
                float x = ((top + (bot - top) * fy) - m->mean[c]) * inv[c];
                if (m->layout == LAYOUT_NCHW)
                    tensor[c * plane + px] = x;
                else
                    tensor[px * 3 + c] = x;
            }
        }
    }
}

int vision_preprocess(const vision_image *img, const model_manifest *m, int letterbox,
                      float *tensor, vision_xform *xf, err_t *e)
{
    static const float black[3] = {0, 0, 0};
    float rx = 0, ry = 0, rw = (float)img->width, rh = (float)img->height;
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
    } else if (m->resize == RESIZE_BILINEAR_ALIGN_CORNERS) {
        for (int c = 0; c < 3; c++)
            if (m->std[c] == 0)
                return err_set(e, ERR_INVAL, "model %s: zero std", m->name);
        preprocess__corners(img, m, tensor);
        if (xf) {
            xf->x0 = 0;
            xf->y0 = 0;
            xf->scale = rw / (float)m->width;
        }
        return ERR_OK;
    } else if (m->resize != RESIZE_AREA) {
        return preprocess__pil(img, m, tensor, xf, e);
    }
    rc = vision_preprocess_region(img, m, rx, ry, rw, rh, black, tensor, e);
    if (rc)
        return rc;
    if (xf) {
        xf->x0 = rx;
        xf->y0 = ry;
        xf->scale = rw / (float)m->width;
    }
    return ERR_OK;
}
