/*
 * vision/jpeg.c — JPEG straight from libjpeg-turbo into the image's buffer
 * (codecs.h), the one file that calls libjpeg.
 *
 * Why not libvips, which decode.c uses for everything else: for a JPEG it
 * can take whole at a DCT scale (the common case: a 12 MP phone photo at
 * half size), libvips adds a worker thread the slot waits on, a strip cache
 * and a copy out of it, and the thumbnail and colour operations around
 * them. Measured on bench/photos' 12 MP JPEGs at half size, best of 5 on
 * the 2-core VM: libvips' path 40-53 ms, this one 20-39 ms for the same
 * pixels. Nothing is lost: libvips' loader reads with libjpeg's defaults
 * (islow IDCT, fancy upsampling) too, and its thumbnail leaves an embedded
 * ICC profile unapplied, as here (test_vision checks equality bit for bit).
 *
 * Errors: libjpeg reports through a jmp_buf (error_exit never returns);
 * warnings (corrupt entropy-coded data, a premature end) are errors here, as
 * libvips' fail_on=warning makes them. The state a longjmp must find is in
 * one struct reached through an unchanged pointer.
 */
#include "vision/codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

#include "util/clock.h"

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg__err;

typedef struct {
    struct jpeg_decompress_struct c;
    jpeg__err err;
    FILE *f;
    unsigned char *file; /* the whole file, when read into memory */
    size_t file_len;
    uint8_t *rgb;
} jpeg__state;

/*
 * Files up to this size (phone photos are 2-8 MB) are read whole and decoded
 * from memory: libjpeg-turbo takes its fast Huffman path only while a few KB
 * of the scan are buffered ahead (2 KB for 4:2:2), which a 4 KB stdio buffer
 * is only part of the time. The six 12 MP photos of bench/photos at half
 * size, summed, best of 5 each: 131 and 156 ms from memory against 135 and
 * 171 from the file in two runs (137 against 178 in a third). The buffer is
 * outside the decode memory budget, hence the small cap.
 */
#define JPEG_SLURP_MAX ((size_t)16 << 20)

/* Reads s->f whole into s->file. 0, or -1 (too big, unreadable: stdio then). */
static int jpeg__slurp(jpeg__state *s)
{
    struct stat st;
    if (fstat(fileno(s->f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (size_t)st.st_size > JPEG_SLURP_MAX)
        return -1;
    s->file = malloc((size_t)st.st_size);
    if (s->file == NULL)
        return -1;
    s->file_len = fread(s->file, 1, (size_t)st.st_size, s->f);
    return s->file_len > 0 ? 0 : -1;
}

static void jpeg__error_exit(j_common_ptr c)
{
    jpeg__err *e = (jpeg__err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

/* Level -1 is a warning: corrupt data libjpeg would paper over. Trace levels are ignored. */
static void jpeg__emit(j_common_ptr c, int level)
{
    if (level < 0)
        jpeg__error_exit(c);
}

/* Destination pixel (x, y) reads source pixel (sx, sy). */
void vision__orient_rgb(const uint8_t *src, int w, int h, int o, uint8_t *dst)
{
    int dw = o >= 5 ? h : w, dh = o >= 5 ? w : h;
    for (int y = 0; y < dh; y++) {
        uint8_t *d = dst + (size_t)y * dw * 3;
        for (int x = 0; x < dw; x++, d += 3) {
            int sx, sy;
            switch (o) {
            case 2:
                sx = w - 1 - x, sy = y;
                break; /* mirrored */
            case 3:
                sx = w - 1 - x, sy = h - 1 - y;
                break; /* 180 */
            case 4:
                sx = x, sy = h - 1 - y;
                break; /* flipped */
            case 5:
                sx = y, sy = x;
                break; /* transposed */
            case 6:
                sx = y, sy = h - 1 - x;
                break; /* 90 clockwise to view */
            case 7:
                sx = w - 1 - y, sy = h - 1 - x;
                break; /* transversed */
            default:
                sx = w - 1 - y, sy = x;
                break; /* 8: 90 anticlockwise to view */
            }
            memcpy(d, src + ((size_t)sy * w + sx) * 3, 3);
        }
    }
}

int vision__image_adopt(uint8_t *rgb, int w, int h, int orient, vision_image **out, err_t *e)
{
    *out = NULL;
    if (orient >= 2 && orient <= 8) {
        uint8_t *up = malloc((size_t)w * (size_t)h * 3);
        if (up == NULL) {
            free(rgb);
            return err_set(e, ERR_NOMEM, "image %dx%d", w, h);
        }
        vision__orient_rgb(rgb, w, h, orient, up);
        free(rgb);
        rgb = up;
        if (orient >= 5) {
            int t = w;
            w = h;
            h = t;
        }
    }
    vision_image *img = calloc(1, sizeof *img);
    if (img == NULL) {
        free(rgb);
        return err_set(e, ERR_NOMEM, "image struct");
    }
    img->rgb = rgb;
    img->width = w;
    img->height = h;
    *out = img;
    return ERR_OK;
}

int vision__jpeg_decode(const char *path, const void *buf, size_t len, int denom, int orient,
                        int64_t deadline_ms, vision_image **out, err_t *e)
{
    *out = NULL;
    jpeg__state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return err_set(e, ERR_NOMEM, "jpeg decoder");
    int rc = ERR_OK;
    s->c.err = jpeg_std_error(&s->err.pub);
    s->err.pub.error_exit = jpeg__error_exit;
    s->err.pub.emit_message = jpeg__emit;
    if (setjmp(s->err.jb)) {
        rc = err_set(e, ERR_DECODE, "decode: %s", s->err.msg);
        goto out;
    }
    jpeg_create_decompress(&s->c);
    if (path != NULL) {
        s->f = fopen(path, "rb");
        if (s->f == NULL) {
            rc = err_set(e, ERR_DECODE, "decode: cannot open the file");
            goto out;
        }
        if (jpeg__slurp(s) == 0)
            jpeg_mem_src(&s->c, s->file, (unsigned long)s->file_len);
        else
            jpeg_stdio_src(&s->c, s->f);
    } else {
        jpeg_mem_src(&s->c, buf, (unsigned long)len);
    }
    jpeg_read_header(&s->c, TRUE);
    if (s->c.jpeg_color_space == JCS_CMYK || s->c.jpeg_color_space == JCS_YCCK ||
        (s->c.num_components != 1 && s->c.num_components != 3)) {
        rc = VISION_JPEG_FALLBACK;
        goto out;
    }
    s->c.scale_num = 1;
    s->c.scale_denom = (unsigned)denom;
    s->c.out_color_space = JCS_RGB;
    jpeg_start_decompress(&s->c);
    int w = (int)s->c.output_width, h = (int)s->c.output_height;
    if (s->c.output_components != 3 || w < 1 || h < 1) {
        rc = err_set(e, ERR_DECODE, "decode: %d components at %dx%d", s->c.output_components, w, h);
        goto out;
    }
    size_t row = (size_t)w * 3;
    s->rgb = malloc(row * (size_t)h);
    if (s->rgb == NULL) {
        rc = err_set(e, ERR_NOMEM, "image %dx%d", w, h);
        goto out;
    }
    while (s->c.output_scanline < s->c.output_height) {
        if (deadline_ms > 0 && s->c.output_scanline % 64 == 0 && clock_mono_ms() >= deadline_ms) {
            rc = err_set(e, ERR_TIMEOUT, "decode: stopped at the job's deadline");
            goto out;
        }
        JSAMPROW rows[8];
        int n = 0;
        for (; n < 8 && s->c.output_scanline + (unsigned)n < s->c.output_height; n++)
            rows[n] = s->rgb + (size_t)(s->c.output_scanline + (unsigned)n) * row;
        jpeg_read_scanlines(&s->c, rows, (JDIMENSION)n);
    }
    jpeg_finish_decompress(&s->c);

    rc = vision__image_adopt(s->rgb, w, h, orient, out, e);
    s->rgb = NULL;
out:
    jpeg_destroy_decompress(&s->c);
    if (s->f != NULL)
        fclose(s->f);
    free(s->file);
    free(s->rgb);
    free(s);
    return rc;
}
