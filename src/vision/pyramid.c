/*
 * vision/pyramid.c — the image pyramid every sampler reads from (pure).
 *
 * Models see 112 to 256 pixels; photos arrive at up to 2048. Averaging the
 * covered source area for each input pixel straight from the photo costs in
 * proportion to the photo, per view: 13 detector views of a 1920x1280 photo
 * read it about 25 times. Instead each image gets, once, a pyramid of 2x2
 * box averages (level l holds the mean of 2^l x 2^l photo pixels), and a
 * sampler starts from the coarsest level that still has a pixel per output
 * pixel, leaving a shrink in [1, 2) for the area average or bilinear tap.
 * The result is the area average up to the rounding of each level to 8 bits
 * (the box filters nest exactly: every level pixel covers whole pixels of
 * the level below), and the cost of a view follows the model's input size.
 * The build is one pass over the photo plus a third for the smaller levels.
 *
 * Rejected: box-filtering at arbitrary scales per view (what we did before;
 * the cost is the photo's size times the number of views), and a pyramid in
 * float (four times the memory traffic for a precision the models cannot
 * use: their inputs are 8-bit photos).
 *
 * Threading: the pyramid is a cache inside a `const vision_image` that any
 * sampler may build. It is built into private memory and published with one
 * atomic compare-and-swap; a thread that loses the race frees its copy and
 * uses the winner's. Readers only ever see a complete pyramid, and its
 * memory is not changed after publication. vision_image_changed() and
 * vision_image_free() must not race with readers (as for the pixels).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vision.h"

struct vision_pyramid {
    int nlevels;
    vision_level level[VISION_MAX_LEVELS];
    uint8_t *pix; /* pixels of levels 1.. (level 0 is the image's own) */
};

#if defined(__GNUC__)
/*
 * GCC's -O2 does not vectorise the averaging loop (its cost model at -O2
 * refuses loops that need a scalar epilogue), and it is the hot part of the
 * build, so we spell out 16-byte vectors with the GCC/Clang vector extension
 * (plain scalar code on targets without SIMD). Intrinsics would tie us to
 * one instruction set; -O3 for one file would belong in CMake.
 */
typedef uint8_t pyr__u8x16 __attribute__((vector_size(16)));
typedef uint16_t pyr__u16x16 __attribute__((vector_size(32)));
#define PYR__VECTOR 1
#endif

/*
 * t[k] = rounded mean of a[k], a[k + 3], b[k], b[k + 3] for k < n: the 2x2
 * box of the pixel pair starting at byte k (3 bytes per pixel). Reads
 * a[0 .. n + 3) and b[0 .. n + 3).
 */
static void pyr__pairs(uint8_t *t, const uint8_t *a, const uint8_t *b, int n)
{
    int k = 0;

#ifdef PYR__VECTOR
    const pyr__u16x16 two = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    for (; k + 16 <= n; k += 16) {
        pyr__u8x16 v0, v1, v2, v3;
        memcpy(&v0, a + k, 16);
        memcpy(&v1, a + k + 3, 16);
        memcpy(&v2, b + k, 16);
        memcpy(&v3, b + k + 3, 16);
        pyr__u16x16 s = __builtin_convertvector(v0, pyr__u16x16) +
                        __builtin_convertvector(v1, pyr__u16x16) +
                        __builtin_convertvector(v2, pyr__u16x16) +
                        __builtin_convertvector(v3, pyr__u16x16) + two;
        pyr__u8x16 r = __builtin_convertvector(s >> 2, pyr__u8x16);
        memcpy(t + k, &r, 16);
    }
#endif
    for (; k < n; k++)
        t[k] = (uint8_t)((a[k] + a[k + 3] + b[k] + b[k + 3] + 2) >> 2);
}

/*
 * Halves src (w x h) into dst ((w+1)/2 x (h+1)/2); a last odd row or column
 * is averaged with itself. `tmp` holds 3 * w bytes.
 */
static void pyr__halve(const uint8_t *src, int w, int h, uint8_t *dst, uint8_t *tmp)
{
    int dw = (w + 1) / 2, dh = (h + 1) / 2, full = w / 2;
    size_t stride = (size_t)w * 3;

    for (int y = 0; y < dh; y++) {
        const uint8_t *a = src + (size_t)(2 * y) * stride;
        const uint8_t *b = 2 * y + 1 < h ? a + stride : a;
        uint8_t *o = dst + (size_t)y * dw * 3;
        if (full > 0) {
            /* Pairs start at every byte; keep those at even pixels. */
            pyr__pairs(tmp, a, b, (full - 1) * 6 + 3);
            for (int x = 0; x + 1 < full; x++)
                memcpy(o + 3 * x, tmp + 6 * x, 4); /* the 4th byte is rewritten next */
            memcpy(o + 3 * (full - 1), tmp + 6 * (full - 1), 3);
        }
        if (dw > full) {
            const uint8_t *p = a + (size_t)(w - 1) * 3, *q = b + (size_t)(w - 1) * 3;
            for (int c = 0; c < 3; c++)
                o[3 * full + c] = (uint8_t)((2 * p[c] + 2 * q[c] + 2) >> 2);
        }
    }
}

/* Builds a pyramid for img; NULL when out of memory. */
static struct vision_pyramid *pyr__build(const vision_image *img)
{
    struct vision_pyramid *p = calloc(1, sizeof(*p));
    size_t total = 0;
    uint8_t *tmp, *at;
    int n = 1, w = img->width, h = img->height;

    if (!p)
        return NULL;
    p->level[0].rgb = img->rgb;
    p->level[0].width = w;
    p->level[0].height = h;
    while (n < VISION_MAX_LEVELS) {
        int nw = (w + 1) / 2, nh = (h + 1) / 2;
        if (nw < VISION_LEVEL_MIN_SIDE || nh < VISION_LEVEL_MIN_SIDE)
            break;
        p->level[n].width = nw;
        p->level[n].height = nh;
        total += (size_t)nw * nh * 3;
        w = nw;
        h = nh;
        n++;
    }
    p->nlevels = n;
    if (n == 1)
        return p;
    p->pix = malloc(total);
    tmp = malloc((size_t)img->width * 3);
    if (!p->pix || !tmp) {
        free(tmp);
        free(p->pix);
        free(p);
        return NULL;
    }
    at = p->pix;
    for (int l = 1; l < n; l++) {
        const vision_level *s = &p->level[l - 1];
        pyr__halve(s->rgb, s->width, s->height, at, tmp);
        p->level[l].rgb = at;
        at += (size_t)p->level[l].width * p->level[l].height * 3;
    }
    free(tmp);
    return p;
}

static void pyr__free(struct vision_pyramid *p)
{
    if (!p)
        return;
    free(p->pix);
    free(p);
}

const vision_level *vision_image_levels(const vision_image *img, int *nlevels, err_t *e)
{
    /*
     * The cache is the one member a reader writes; the image was allocated
     * non-const, so writing through the cast is defined.
     */
    vision_image *mut = (vision_image *)img;
    struct vision_pyramid *p = atomic_load_explicit(&mut->pyramid, memory_order_acquire);

    if (!p) {
        struct vision_pyramid *expected = NULL;
        p = pyr__build(img);
        if (!p) {
            err_set(e, ERR_NOMEM, "image pyramid for %dx%d", img->width, img->height);
            return NULL;
        }
        if (!atomic_compare_exchange_strong_explicit(&mut->pyramid, &expected, p,
                                                     memory_order_acq_rel,
                                                     memory_order_acquire)) {
            pyr__free(p);
            p = expected;
        }
    }
    *nlevels = p->nlevels;
    return p->level;
}

void vision_image_changed(vision_image *img)
{
    if (!img)
        return;
    pyr__free(atomic_exchange_explicit(&img->pyramid, NULL, memory_order_acq_rel));
}

int vision_level_for(int nlevels, double factor)
{
    int l = 0;

    /* A hair of slack so that an exact 2^l computed in float still counts. */
    while (l + 1 < nlevels && (double)(2 << l) <= factor * (1 + 1e-6))
        l++;
    return l;
}
