/*
 * vision/heif.c — a HEIC at half its size from libheif's YCbCr planes
 * (vision__heif_decode_half, codecs.h), the one file that calls libheif.
 *
 * HEVC has no reduced-size decode: every pixel of a 12 MP photo is decoded
 * whatever size we keep. What can be skipped is the work after it. Through
 * libvips, libheif converted all 12 MP to interleaved RGB (36 MB, above
 * malloc's largest mmap threshold, so faulted in page by page at every
 * photo) and libvips copied and halved that. Here libheif hands over its
 * 4:2:0 planes (18 MB, reused from the heap) and one pass averages each 2x2
 * luma block, takes the chroma sample that covers it (4:2:0 chroma is
 * already at half size) and converts to RGB with the image's matrix: the
 * same arithmetic, since the conversion is linear, to a grey level of
 * rounding. Measured on a 12 MP heif-enc photo (2-core VM, best of 3):
 * libheif to RGB 626 ms, to YCbCr 582 ms; the whole libvips path 800 ms.
 *
 * Anything else stays with libvips: alpha, more than 8 bits, an odd side
 * (libvips then resizes that axis by a lanczos filter, not a box), chroma
 * other than 4:2:0, a matrix other than BT.601, BT.709 or BT.2020.
 */
#include <libheif/heif.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "vision/codecs.h"

/* Kr and Kb of the matrix (ISO/IEC 23091-2), or -1 for one we leave to libvips. */
static int heif__matrix(enum heif_matrix_coefficients m, float *kr, float *kb)
{
    switch ((int)m) {
    case 1: /* BT.709 */
        *kr = 0.2126f, *kb = 0.0722f;
        return 0;
    case 2: /* unspecified: libheif's own default, BT.601 */
    case 5:
    case 6: /* BT.601 */
        *kr = 0.299f, *kb = 0.114f;
        return 0;
    case 9: /* BT.2020 non-constant luminance */
        *kr = 0.2627f, *kb = 0.0593f;
        return 0;
    default:
        return -1;
    }
}

static uint8_t heif__clamp(float v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5f);
}

int vision__heif_decode_half(const char *path, const void *buf, size_t len, int orient,
                             int64_t deadline_ms, vision_image **out, err_t *e)
{
    *out = NULL;
    struct heif_context *ctx = heif_context_alloc();
    struct heif_image_handle *h = NULL;
    struct heif_image *im = NULL;
    struct heif_color_profile_nclx *nclx = NULL;
    uint8_t *rgb = NULL;
    int rc = VISION_JPEG_FALLBACK;
    if (ctx == NULL)
        return err_set(e, ERR_NOMEM, "heif context");
    struct heif_error he = path != NULL
                               ? heif_context_read_from_file(ctx, path, NULL)
                               : heif_context_read_from_memory_without_copy(ctx, buf, len, NULL);
    if (he.code != heif_error_Ok || heif_context_get_primary_image_handle(ctx, &h).code != 0)
        goto out; /* libvips reports it */
    int W = heif_image_handle_get_width(h), H = heif_image_handle_get_height(h);
    if (heif_image_handle_has_alpha_channel(h) ||
        heif_image_handle_get_luma_bits_per_pixel(h) != 8 ||
        heif_image_handle_get_chroma_bits_per_pixel(h) != 8 || W < 2 || H < 2 || W % 2 || H % 2)
        goto out;
    if (deadline_ms > 0 && clock_mono_ms() >= deadline_ms) {
        rc = err_set(e, ERR_TIMEOUT, "decode: the deadline passed before decoding");
        goto out;
    }
    he = heif_decode_image(h, &im, heif_colorspace_YCbCr, heif_chroma_420, NULL);
    if (he.code != heif_error_Ok) {
        rc = err_set(e, ERR_DECODE, "decode: %s", he.message);
        goto out;
    }
    /*
     * The matrix and range libheif's own RGB conversion would use: the
     * decoded image's nclx (the file's box, or what the decoder attached),
     * else the handle's, else libheif's default, BT.601 full range.
     */
    float kr = 0.299f, kb = 0.114f;
    int full = 1;
    if ((heif_image_get_nclx_color_profile(im, &nclx).code == heif_error_Ok && nclx) ||
        (heif_image_handle_get_nclx_color_profile(h, &nclx).code == heif_error_Ok && nclx)) {
        if (heif__matrix(nclx->matrix_coefficients, &kr, &kb) != 0)
            goto out;
        full = nclx->full_range_flag != 0;
    }
    if (heif_image_get_chroma_format(im) != heif_chroma_420 ||
        heif_image_get_width(im, heif_channel_Y) != W ||
        heif_image_get_height(im, heif_channel_Y) != H ||
        heif_image_get_width(im, heif_channel_Cb) < W / 2 ||
        heif_image_get_height(im, heif_channel_Cb) < H / 2)
        goto out;
    int ys, cbs, crs;
    const uint8_t *Y = heif_image_get_plane_readonly(im, heif_channel_Y, &ys);
    const uint8_t *Cb = heif_image_get_plane_readonly(im, heif_channel_Cb, &cbs);
    const uint8_t *Cr = heif_image_get_plane_readonly(im, heif_channel_Cr, &crs);
    if (Y == NULL || Cb == NULL || Cr == NULL)
        goto out;
    int w = W / 2, hh = H / 2;
    rgb = malloc((size_t)w * hh * 3);
    if (rgb == NULL) {
        rc = err_set(e, ERR_NOMEM, "image %dx%d", w, hh);
        goto out;
    }
    /* Limited range: luma 16..235 and chroma 16..240 stretched to full. */
    float ys_k = full ? 1.0f : 255.0f / 219.0f, cs_k = full ? 1.0f : 255.0f / 224.0f;
    float y0 = full ? 0.0f : 16.0f, kg = 1.0f - kr - kb;
    float rcr = 2 * (1 - kr) * cs_k, bcb = 2 * (1 - kb) * cs_k;
    float gcb = 2 * kb * (1 - kb) / kg * cs_k, gcr = 2 * kr * (1 - kr) / kg * cs_k;
    for (int y = 0; y < hh; y++) {
        const uint8_t *l0 = Y + (size_t)(2 * y) * ys, *l1 = l0 + ys;
        const uint8_t *cb = Cb + (size_t)y * cbs, *cr = Cr + (size_t)y * crs;
        uint8_t *o = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, o += 3) {
            float l =
                ((float)(l0[2 * x] + l0[2 * x + 1] + l1[2 * x] + l1[2 * x + 1]) * 0.25f - y0) *
                ys_k;
            float u = (float)cb[x] - 128.0f, v = (float)cr[x] - 128.0f;
            o[0] = heif__clamp(l + rcr * v);
            o[1] = heif__clamp(l - gcb * u - gcr * v);
            o[2] = heif__clamp(l + bcb * u);
        }
    }
    rc = vision__image_adopt(rgb, w, hh, orient, out, e);
    rgb = NULL;
out:
    free(rgb);
    heif_nclx_color_profile_free(nclx);
    if (im != NULL)
        heif_image_release(im);
    if (h != NULL)
        heif_image_handle_release(h);
    heif_context_free(ctx);
    return rc;
}
