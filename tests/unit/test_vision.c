/*
 * test_vision.c — the model-free parts of vision/: decoding (good and hostile
 * inputs), the image pyramid, resampling and tensor packing (pyramid vs
 * exact area average), the detector's view plan, BlazeFace anchors and
 * decoding, weighted NMS, similarity fitting and face alignment.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <vips/vips.h>
#include <zlib.h>

#include "util/clock.h"
#include "vision/vision.h"

#define SAMPLE1 INFERD_TESTDATA "/faceapi/sample1.jpg"

static int setup(void **state)
{
    err_t e;
    (void)state;
    return vision_init(1, &e);
}

static int teardown(void **state)
{
    (void)state;
    vision_shutdown();
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint32_t crc32_png(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* ---- decode --------------------------------------------------------------- */

static void test_decode_shrinks_and_keeps_original_size(void **state)
{
    vision_decode_opts o = {.max_side = 1000};
    vision_image *img = NULL;
    err_t e;
    (void)state;

    assert_int_equal(vision_decode_file(SAMPLE1, &o, &img, &e), ERR_OK);
    assert_int_equal(img->orig_width, 1920);
    assert_int_equal(img->orig_height, 1280);
    /* Half size in the DCT (960) is within 10 % under 1000: decoded at that, not resized. */
    assert_int_equal(img->width, 960);
    assert_int_equal(img->height, 640);
    vision_image_free(img);
    /* Under 1200 by more than 10 %: resized to 1200 as asked. */
    o.max_side = 1200;
    assert_int_equal(vision_decode_file(SAMPLE1, &o, &img, &e), ERR_OK);
    assert_int_equal(img->width, 1200);
    assert_int_equal(img->height, 800);
    vision_image_free(img);
    /* The same from memory. */
    o.max_side = 1000;
    size_t len = 0;
    unsigned char *bytes = read_all(SAMPLE1, &len);
    assert_int_equal(vision_decode_buffer(bytes, len, &o, &img, &e), ERR_OK);
    assert_int_equal(img->width, 960);
    vision_image_free(img);

    /* Decoded small in the DCT and still turned upright: EXIF orientation 6 (rotate 90). */
    static const unsigned char exif[] = {
        0xff, 0xe1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 0x2a, 0, 0, 0, 8,
        0,    1,    0x01, 0x12, 0,   3,   0,   0,   0, 1, 0,   6,   0, 0,    0, 0, 0, 0};
    unsigned char *rot = malloc(len + sizeof exif);
    assert_non_null(rot);
    memcpy(rot, bytes, 2);
    memcpy(rot + 2, exif, sizeof exif);
    memcpy(rot + 2 + sizeof exif, bytes + 2, len - 2);
    assert_int_equal(vision_decode_buffer(rot, len + sizeof exif, &o, &img, &e), ERR_OK);
    assert_int_equal(img->width, 640);
    assert_int_equal(img->height, 960);
    assert_int_equal(img->orig_width, 1280);
    assert_int_equal(img->orig_height, 1920);
    vision_image_free(img);
    free(rot);
    free(bytes);

    /* Default: no shrink needed below 2048. */
    assert_int_equal(vision_decode_file(SAMPLE1, NULL, &img, &e), ERR_OK);
    assert_int_equal(img->width, 1920);
    assert_int_equal(img->height, 1280);
    vision_image_free(img);
}

static void test_decode_buffer_matches_file(void **state)
{
    vision_image *a = NULL, *b = NULL;
    size_t len;
    unsigned char *buf = read_all(SAMPLE1, &len);
    err_t e;
    (void)state;

    assert_int_equal(vision_decode_file(SAMPLE1, NULL, &a, &e), ERR_OK);
    assert_int_equal(vision_decode_buffer(buf, len, NULL, &b, &e), ERR_OK);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    assert_memory_equal(a->rgb, b->rgb, (size_t)a->width * a->height * 3);
    vision_image_free(a);
    vision_image_free(b);
    free(buf);
}

static void test_decode_bad_inputs(void **state)
{
    char dir[] = "/tmp/test_vision_XXXXXX";
    char path[256];
    vision_image *img = (vision_image *)1;
    size_t len;
    unsigned char *jpg = read_all(SAMPLE1, &len);
    unsigned char *bad;
    FILE *f;
    err_t e;
    (void)state;

    assert_non_null(mkdtemp(dir));

    /* Zero bytes: file and buffer. */
    snprintf(path, sizeof(path), "%s/empty.jpg", dir);
    f = fopen(path, "wb");
    fclose(f);
    assert_int_equal(vision_decode_file(path, NULL, &img, &e), ERR_DECODE);
    assert_null(img);
    assert_int_equal(vision_decode_buffer(jpg, 0, NULL, &img, &e), ERR_DECODE);
    unlink(path);

    /* Text file. */
    snprintf(path, sizeof(path), "%s/notes.jpg", dir);
    f = fopen(path, "wb");
    fputs("this is not an image, just some text\n", f);
    fclose(f);
    assert_int_equal(vision_decode_file(path, NULL, &img, &e), ERR_DECODE);
    assert_true(strlen(e.msg) > 0);
    unlink(path);

    /* Missing file. */
    assert_int_equal(vision_decode_file("/nonexistent/x.jpg", NULL, &img, &e), ERR_DECODE);

    /* Truncated JPEG: the first third, as a buffer and as a file. */
    assert_int_equal(vision_decode_buffer(jpg, len / 3, NULL, &img, &e), ERR_DECODE);
    assert_null(img);
    snprintf(path, sizeof(path), "%s/cut.jpg", dir);
    f = fopen(path, "wb");
    fwrite(jpg, 1, len / 3, f);
    fclose(f);
    assert_int_equal(vision_decode_file(path, NULL, &img, &e), ERR_DECODE);
    assert_non_null(strstr(e.msg, "truncated"));
    unlink(path);

    /* Corrupt JPEG: garbage over the entropy-coded data after the header. */
    bad = malloc(len);
    memcpy(bad, jpg, len);
    for (size_t i = len / 4; i < len / 4 + 4096; i++)
        bad[i] = (unsigned char)(i * 131u + 7u);
    for (size_t i = len / 2; i < len - 2; i++)
        bad[i] = 0xff;
    {
        int rc = vision_decode_buffer(bad, len, NULL, &img, &e);
        /* libjpeg may recover from some corruption; it must never crash or lie. */
        assert_true(rc == ERR_DECODE || rc == ERR_OK);
        if (rc == ERR_OK)
            vision_image_free(img);
    }
    /* Corrupt header: SOI then nonsense. */
    memset(bad + 2, 0x5a, 200);
    assert_int_equal(vision_decode_buffer(bad, len, NULL, &img, &e), ERR_DECODE);
    free(bad);
    free(jpg);
    rmdir(dir);
}

/*
 * The loader allowlist: JPEG, PNG, WebP, TIFF, GIF and HEIF (AVIF) written by
 * libvips' own savers decode; PDF, SVG, BMP, PostScript, PPM and a format only
 * ImageMagick reads (TGA) fail with ERR_UNSUPPORTED_FORMAT naming what they
 * are, and junk is still ERR_DECODE.
 */
static void test_decode_format_allowlist(void **state)
{
    (void)state;
    VipsImage *src = vips_image_new_from_file(SAMPLE1, NULL), *small = NULL;
    assert_non_null(src);
    assert_int_equal(vips_resize(src, &small, 0.1, NULL), 0);
    static const char *const ok[] = {".jpg", ".png", ".webp", ".tif", ".gif", ".avif"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        void *buf = NULL;
        size_t len = 0;
        int rc = strcmp(ok[i], ".avif") == 0
                     ? vips_heifsave_buffer(small, &buf, &len, "compression",
                                            VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL)
                     : vips_image_write_to_buffer(small, ok[i], &buf, &len, NULL);
        if (rc != 0)
            fail_msg("save %s: %s", ok[i], vips_error_buffer());
        vision_image *img = NULL;
        err_t e = {0};
        if (vision_decode_buffer(buf, len, NULL, &img, &e) != ERR_OK)
            fail_msg("%s does not decode: %s", ok[i], e.msg);
        assert_int_equal(img->width, vips_image_get_width(small));
        vision_image_free(img);
        g_free(buf);
    }
    g_object_unref(small);
    g_object_unref(src);

    static const struct {
        const char *bytes, *name;
    } refused[] = {
        {"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n", "PDF"},
        {"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"8\" "
         "height=\"8\"><filter id=\"f\"><feTurbulence/></filter></svg>",
         "SVG"},
        /* 38 bytes: the file and info headers up to the bit count, then zeros. */
        {"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0\x01\0\0\0\x01\0\0\0\x01\0\x18\0"
         "\0\0\0\0\0\0\0\0",
         "BMP"},
        {"%!PS-Adobe-3.0\n", "PostScript"},
        {"P6\n1 1\n255\n\xff\0\0", "PNM"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        vision_image *img = NULL;
        err_t e = {0};
        size_t n = strlen(refused[i].bytes);
        if (strcmp(refused[i].name, "BMP") == 0)
            n = 38;
        assert_int_equal(vision_decode_buffer(refused[i].bytes, n, NULL, &img, &e),
                         ERR_UNSUPPORTED_FORMAT);
        assert_null(img);
        if (strstr(e.msg, refused[i].name) == NULL || strstr(e.msg, "JPEG, PNG") == NULL)
            fail_msg("%s: \"%s\"", refused[i].name, e.msg);
    }
    /* TGA has no signature: only ImageMagick's loader (blocked) would take it. */
    unsigned char tga[18 + 3] = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 24, 0, 0, 0, 255};
    vision_image *img = NULL;
    err_t e = {0};
    assert_int_equal(vision_decode_buffer(tga, sizeof tga, NULL, &img, &e),
                     ERR_UNSUPPORTED_FORMAT);
    assert_int_equal(vision_decode_buffer("no image here at all", 20, NULL, &img, &e), ERR_DECODE);
}

/*
 * A w x h PNG whose every sample is `fill` (zlib level 1, row by row):
 * `depth` 8 or 16, `ctype` 2 (RGB) or 6 (RGBA), Adam7-interlaced or not.
 * A few hundred KB that make libvips work for seconds. Caller frees.
 */
static unsigned char *make_png(int w, int h, int depth, int ctype, int interlace,
                               unsigned char fill, size_t *outlen)
{
    static const int passes[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                     {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    int bpp = (ctype == 6 ? 4 : 3) * depth / 8;
    size_t cap = 8 << 20, len = 0;
    unsigned char *png = malloc(cap), *row = malloc((size_t)w * bpp + 1);
    assert_non_null(png);
    assert_non_null(row);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(png, sig, 8);
    len = 8;
    unsigned char ihdr[25] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    put32(ihdr + 8, (uint32_t)w);
    put32(ihdr + 12, (uint32_t)h);
    ihdr[16] = (unsigned char)depth;
    ihdr[17] = (unsigned char)ctype;
    ihdr[20] = (unsigned char)interlace;
    put32(ihdr + 21, crc32_png(ihdr + 4, 17));
    memcpy(png + len, ihdr, 25);
    len += 25;
    size_t idat_at = len;
    len += 8; /* length + "IDAT", filled in below */
    z_stream z = {0};
    assert_int_equal(deflateInit(&z, 1), Z_OK);
    for (int p = 0; p < (interlace ? 7 : 1); p++) {
        int x0 = interlace ? passes[p][0] : 0, y0 = interlace ? passes[p][1] : 0;
        int dx = interlace ? passes[p][2] : 1, dy = interlace ? passes[p][3] : 1;
        int pw = (w - x0 + dx - 1) / dx, ph = (h - y0 + dy - 1) / dy;
        if (pw <= 0 || ph <= 0)
            continue;
        row[0] = 0;
        memset(row + 1, fill, (size_t)pw * bpp);
        for (int y = 0; y < ph; y++) {
            z.next_in = row;
            z.avail_in = (uInt)((size_t)pw * bpp + 1);
            while (z.avail_in > 0) {
                z.next_out = png + len;
                z.avail_out = (uInt)(cap - len - 12);
                assert_true(deflate(&z, Z_NO_FLUSH) != Z_STREAM_ERROR);
                len = cap - 12 - z.avail_out;
            }
        }
    }
    int zr;
    do {
        z.next_out = png + len;
        z.avail_out = (uInt)(cap - len - 12);
        zr = deflate(&z, Z_FINISH);
        len = cap - 12 - z.avail_out;
    } while (zr == Z_OK);
    deflateEnd(&z);
    size_t idat_len = len - idat_at - 8;
    put32(png + idat_at, (uint32_t)idat_len);
    memcpy(png + idat_at + 4, "IDAT", 4);
    put32(png + len, crc32_png(png + idat_at + 4, idat_len + 4));
    len += 4;
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    memcpy(png + len, iend, 12);
    len += 12;
    free(row);
    *outlen = len;
    return png;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * A 10000x10000 PNG of one grey (libvips spends ~1.6 s decoding it) is
 * killed at its deadline: ERR_TIMEOUT, long before a full decode.
 */
static void test_decode_deadline(void **state)
{
    (void)state;
    size_t len;
    unsigned char *png = make_png(10000, 10000, 8, 2, 0, 0x80, &len);
    vision_decode_opts o = {.max_pixels = 100000000LL};
    vision_image *img = NULL;
    err_t e = {0};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    o.deadline_ms = clock_mono_ms() + 150;
    int rc = vision_decode_buffer(png, len, &o, &img, &e);
    double ms = ms_since(&t0);
    printf("  10000x10000 PNG (%zu bytes) with a 150 ms deadline: %s after %.0f ms (%s)\n", len,
           err_name(rc), ms, e.msg);
    assert_int_equal(rc, ERR_TIMEOUT);
    assert_null(img);
    assert_true(ms < 1000);
    /* A deadline already past refuses at once. */
    o.deadline_ms = clock_mono_ms() - 1;
    assert_int_equal(vision_decode_buffer(png, len, &o, &img, &e), ERR_TIMEOUT);
    free(png);
}

typedef struct {
    const unsigned char *png;
    size_t len;
    int rc;
} decode_arg;

static void *decode_thread(void *arg)
{
    decode_arg *d = arg;
    vision_image *img = NULL;
    err_t e = {0};
    d->rc = vision_decode_buffer(d->png, d->len, NULL, &img, &e);
    vision_image_free(img);
    return NULL;
}

/*
 * The decode memory budget: an interlaced 16-bit RGBA PNG of 4000x4000 (a
 * few hundred KB, 128 MB once decoded whole) is refused at once (ERR_TOOBIG)
 * by a 64 MB budget, while the same picture not interlaced streams through;
 * with room for one such image only, a second waits for the first and gives
 * up at its deadline (ERR_TIMEOUT).
 */
static void test_decode_memory_budget(void **state)
{
    (void)state;
    size_t il_len, flat_len;
    unsigned char *il = make_png(4000, 4000, 16, 6, 1, 0x40, &il_len);
    unsigned char *flat = make_png(4000, 4000, 16, 6, 0, 0x40, &flat_len);
    vision_image *img = NULL;
    err_t e = {0};
    struct timespec t0;
    vision_set_decode_budget(64 << 20);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = vision_decode_buffer(il, il_len, NULL, &img, &e);
    printf("  interlaced 4000x4000x16-bit RGBA PNG (%zu bytes), budget 64 MiB: %s after %.0f ms "
           "(%s)\n",
           il_len, err_name(rc), ms_since(&t0), e.msg);
    assert_int_equal(rc, ERR_TOOBIG);
    assert_true(ms_since(&t0) < 200);
    assert_int_equal(vision_decode_buffer(flat, flat_len, NULL, &img, &e), ERR_OK);
    vision_image_free(img);

    /* Room for one: a second decode waits while the first holds the budget. */
    vision_set_decode_budget(200 << 20);
    decode_arg first = {il, il_len, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, decode_thread, &first), 0);
    usleep(50000); /* the first claims its 128 MB */
    vision_decode_opts o = {.deadline_ms = clock_mono_ms() + 200};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = vision_decode_buffer(il, il_len, &o, &img, &e);
    printf("  a second one while the first decodes (budget 200 MiB): %s after %.0f ms (%s)\n",
           err_name(rc), ms_since(&t0), e.msg);
    assert_int_equal(rc, ERR_TIMEOUT);
    assert_non_null(strstr(e.msg, "waiting for memory"));
    pthread_join(th, NULL);
    assert_int_equal(first.rc, ERR_OK);
    vision_set_decode_budget(0);
    free(il);
    free(flat);
}

static void test_decode_refuses_bombs_from_header(void **state)
{
    /* PNG signature + IHDR claiming 100000 x 100000 RGB, then IEND. */
    unsigned char png[8 + 25 + 12 + 12];
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    vision_image *img = NULL;
    vision_decode_opts small = {.max_pixels = 1000};
    size_t len;
    unsigned char *jpg;
    err_t e;
    (void)state;

    memcpy(png, sig, 8);
    put32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put32(png + 16, 100000);
    put32(png + 20, 100000);
    png[24] = 8; /* bit depth */
    png[25] = 2; /* RGB */
    png[26] = png[27] = png[28] = 0;
    put32(png + 29, crc32_png(png + 12, 17));
    put32(png + 33, 0); /* an empty IDAT */
    memcpy(png + 37, "IDAT", 4);
    put32(png + 41, crc32_png(png + 37, 4));
    put32(png + 45, 0);
    memcpy(png + 49, "IEND", 4);
    put32(png + 53, crc32_png(png + 49, 4));
    assert_int_equal(vision_decode_buffer(png, sizeof(png), NULL, &img, &e), ERR_TOOBIG);
    assert_null(img);
    assert_non_null(strstr(e.msg, "100000x100000"));

    /* A real image over a small cap. */
    jpg = read_all(SAMPLE1, &len);
    assert_int_equal(vision_decode_buffer(jpg, len, &small, &img, &e), ERR_TOOBIG);
    free(jpg);
}

static void test_decode_exif_rotation_and_alpha(void **state)
{
    VipsImage *src, *rgba;
    void *buf = NULL;
    size_t len = 0;
    vision_image *img = NULL;
    unsigned char px[300 * 200 * 4];
    err_t e;
    (void)state;

    /* 300x200 RGBA: left half opaque red, right half fully transparent. */
    for (int y = 0; y < 200; y++)
        for (int x = 0; x < 300; x++) {
            unsigned char *p = px + (y * 300 + x) * 4;
            p[0] = 200;
            p[1] = 10;
            p[2] = 10;
            p[3] = x < 150 ? 255 : 0;
        }
    rgba = vips_image_new_from_memory(px, sizeof(px), 300, 200, 4, VIPS_FORMAT_UCHAR);
    assert_non_null(rgba);
    assert_int_equal(vips_pngsave_buffer(rgba, &buf, &len, NULL), 0);
    assert_int_equal(vision_decode_buffer(buf, len, NULL, &img, &e), ERR_OK);
    g_free(buf);
    assert_int_equal(img->width, 300);
    /* Opaque stays red, transparent became white. */
    assert_int_equal(img->rgb[(100 * 300 + 10) * 3 + 0], 200);
    assert_int_equal(img->rgb[(100 * 300 + 290) * 3 + 0], 255);
    assert_int_equal(img->rgb[(100 * 300 + 290) * 3 + 1], 255);
    vision_image_free(img);

    /* JPEG with EXIF orientation 6 (rotate 90 cw): decoded upright as 200x300. */
    assert_int_equal(vips_extract_band(rgba, &src, 0, "n", 3, NULL), 0);
    g_object_unref(rgba);
    {
        VipsImage *cp;
        assert_int_equal(vips_copy(src, &cp, NULL), 0);
        vips_image_set_int(cp, VIPS_META_ORIENTATION, 6);
        assert_int_equal(vips_jpegsave_buffer(cp, &buf, &len, NULL), 0);
        g_object_unref(cp);
    }
    g_object_unref(src);
    assert_int_equal(vision_decode_buffer(buf, len, NULL, &img, &e), ERR_OK);
    g_free(buf);
    assert_int_equal(img->width, 200);
    assert_int_equal(img->height, 300);
    assert_int_equal(img->orig_width, 200);
    assert_int_equal(img->orig_height, 300);
    /* The red (formerly left) half is now on top. */
    assert_true(img->rgb[(10 * 200 + 100) * 3 + 0] > 150);
    assert_true(img->rgb[(10 * 200 + 100) * 3 + 1] < 80);
    vision_image_free(img);
}

static void fill_texture(vision_image *img, unsigned seed);

/*
 * Formats other than JPEG land on half, a quarter or an eighth of their size
 * when that is within 10 % under max_side (libvips then shrinks by a whole
 * factor, no lanczos pass), and on max_side otherwise.
 */
static void test_decode_snaps_other_formats(void **state)
{
    (void)state;
    static const struct {
        int max_side, w, h;
    } cases[] = {{512, 500, 300}, {600, 600, 360}, {260, 250, 150}, {2000, 1000, 600}};
    vision_image *src;
    err_t e;
    assert_int_equal(vision_image_new(1000, 600, &src, &e), 0);
    fill_texture(src, 3);
    VipsImage *in =
        vips_image_new_from_memory(src->rgb, 1000 * 600 * 3, 1000, 600, 3, VIPS_FORMAT_UCHAR);
    void *png = NULL;
    size_t len = 0;
    assert_int_equal(vips_pngsave_buffer(in, &png, &len, NULL), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vision_decode_opts o = {.max_side = cases[i].max_side};
        vision_image *img = NULL;
        assert_int_equal(vision_decode_buffer(png, len, &o, &img, &e), ERR_OK);
        assert_int_equal(img->width, cases[i].w);
        assert_int_equal(img->height, cases[i].h);
        assert_int_equal(img->orig_width, 1000);
        vision_image_free(img);
    }
    g_free(png);
    g_object_unref(in);
    vision_image_free(src);
}

/*
 * A HEIC halved by --max-side is read from libheif's YCbCr planes
 * (vision/heif.c) instead of libvips' RGB path: the same photo within
 * rounding of libvips' own result (libheif's RGB, halved by vips_thumbnail):
 * mean difference under half a grey level, none over 24 (chroma edges;
 * BT.709 taken for BT.601 gives 0.88 and 25). An odd height, and a size that
 * is not a half, stay with libvips (checked against its result exactly).
 */
static void test_decode_heic_half_matches_libvips(void **state)
{
    (void)state;
    VipsImage *photo = vips_image_new_from_file(SAMPLE1, NULL);
    assert_non_null(photo);
    for (int odd = 0; odd <= 1; odd++) {
        VipsImage *src = NULL;
        assert_int_equal(vips_crop(photo, &src, 0, 0, 1920, 1280 - odd, NULL), 0);
        /* HEVC by heif-enc (libheif-examples, as bench/photos): x265 in this
         * process would leave its global allocations to LeakSanitizer. */
        char dir[] = "/tmp/test_vision_heic_XXXXXX", jpg[64], heic[64], cmd[256];
        assert_non_null(mkdtemp(dir));
        snprintf(jpg, sizeof jpg, "%s/in.jpg", dir);
        snprintf(heic, sizeof heic, "%s/out.heic", dir);
        assert_int_equal(vips_jpegsave(src, jpg, "Q", 95, NULL), 0);
        snprintf(cmd, sizeof cmd, "heif-enc -q 90 -o %s %s >/dev/null 2>&1", heic, jpg);
        if (system(cmd) != 0) {
            g_object_unref(src);
            g_object_unref(photo);
            skip(); /* heif-enc missing: scripts/setup.sh installs it */
        }
        size_t len = 0;
        unsigned char *buf = read_all(heic, &len);
        unlink(jpg);
        unlink(heic);
        rmdir(dir);
        for (int half = 1; half >= 0; half--) {
            /* 960 is half; 1200 is not (960 is more than 10 % under it). */
            int side = half ? 960 : 1200;
            vision_decode_opts o = {.max_side = side};
            vision_image *img = NULL;
            err_t e;
            assert_int_equal(vision_decode_buffer(buf, len, &o, &img, &e), ERR_OK);
            assert_int_equal(img->width, side);
            assert_int_equal(img->orig_height, 1280 - odd);
            VipsImage *ref = NULL;
            assert_int_equal(vips_thumbnail_buffer(buf, len, &ref, side, "height", side, NULL), 0);
            size_t n = 0;
            unsigned char *px = vips_image_write_to_memory(ref, &n);
            assert_int_equal(vips_image_get_width(ref), img->width);
            assert_int_equal(vips_image_get_height(ref), img->height);
            double sum = 0;
            int worst = 0;
            for (size_t i = 0; i < n; i++) {
                int d = abs((int)px[i] - (int)img->rgb[i]);
                sum += d;
                worst = d > worst ? d : worst;
            }
            int ours = half && !odd; /* the YCbCr path; libvips' otherwise, equal to it */
            if (ours ? sum / (double)n >= 0.5 || worst > 24 : worst != 0)
                fail_msg("height %d to %d: mean difference %.3f, worst %d", 1280 - odd, side,
                         sum / (double)n, worst);
            g_free(px);
            g_object_unref(ref);
            vision_image_free(img);
        }
        free(buf);
        g_object_unref(src);
    }
    g_object_unref(photo);
}

/*
 * libvips' pixels for the JPEG `buf`: its loader at DCT scale 1/denom, turned
 * upright, in sRGB with 3 bands (what decode.c's libvips path produces for a
 * JPEG at a scale it needs no resize after). *w, *h its size; g_free() it.
 */
static unsigned char *vips_reference(const void *buf, size_t len, int denom, int *w, int *h)
{
    VipsImage *in = vips_image_new_from_buffer(buf, len, "", "shrink", denom, NULL);
    VipsImage *up = NULL, *rgb = NULL;
    assert_non_null(in);
    assert_int_equal(vips_autorot(in, &up, NULL), 0);
    assert_int_equal(vips_colourspace(up, &rgb, VIPS_INTERPRETATION_sRGB, NULL), 0);
    size_t n = 0;
    unsigned char *px = vips_image_write_to_memory(rgb, &n);
    *w = vips_image_get_width(rgb);
    *h = vips_image_get_height(rgb);
    assert_int_equal(n, (size_t)*w * *h * 3);
    g_object_unref(rgb);
    g_object_unref(up);
    g_object_unref(in);
    return px;
}

/*
 * A JPEG inferd can take whole at a DCT scale goes to libjpeg directly
 * (vision/jpeg.c). Its pixels must be libvips' bit for bit: every EXIF
 * orientation, at full size and at half (max_side 960 on a 1920-wide photo),
 * baseline and progressive, colour and grey. A CMYK JPEG is left to libvips
 * and still decodes. Corrupt data and a deadline fail as on the libvips path.
 */
static void test_decode_jpeg_direct_matches_libvips(void **state)
{
    (void)state;
    VipsImage *photo = vips_image_new_from_file(SAMPLE1, NULL), *grey = NULL;
    assert_non_null(photo);
    assert_int_equal(vips_colourspace(photo, &grey, VIPS_INTERPRETATION_B_W, NULL), 0);
    for (int variant = 0; variant < 3; variant++) {
        VipsImage *src = variant == 2 ? grey : photo;
        for (int orient = 1; orient <= 8; orient++) {
            VipsImage *cp;
            void *buf = NULL;
            size_t len = 0;
            assert_int_equal(vips_copy(src, &cp, NULL), 0);
            vips_image_set_int(cp, VIPS_META_ORIENTATION, orient);
            assert_int_equal(
                vips_jpegsave_buffer(cp, &buf, &len, "Q", 90, "interlace", variant == 1, NULL), 0);
            g_object_unref(cp);
            for (int denom = 1; denom <= 2; denom++) {
                vision_decode_opts o = {.max_side = denom == 1 ? 4096 : 960};
                vision_image *img = NULL;
                err_t e;
                int w, h;
                assert_int_equal(vision_decode_buffer(buf, len, &o, &img, &e), ERR_OK);
                unsigned char *ref = vips_reference(buf, len, denom, &w, &h);
                assert_int_equal(img->width, w);
                assert_int_equal(img->height, h);
                assert_int_equal(img->orig_width, orient >= 5 ? 1280 : 1920);
                assert_int_equal(img->orig_height, orient >= 5 ? 1920 : 1280);
                if (memcmp(img->rgb, ref, (size_t)w * h * 3) != 0)
                    fail_msg("variant %d orientation %d scale 1/%d: pixels differ from libvips'",
                             variant, orient, denom);
                g_free(ref);
                vision_image_free(img);
            }
            if (orient == 1 && variant == 0) {
                /* A deadline already past stops it. */
                vision_decode_opts o = {.max_side = 960, .deadline_ms = clock_mono_ms() - 1};
                vision_image *img = NULL;
                err_t e;
                assert_int_equal(vision_decode_buffer(buf, len, &o, &img, &e), ERR_TIMEOUT);
                assert_null(img);
                /* Garbage over the scan: libjpeg's warning is an error, as libvips' is. */
                unsigned char *bad = malloc(len);
                memcpy(bad, buf, len);
                for (size_t i = len / 2; i < len / 2 + 64; i++)
                    bad[i] = (unsigned char)(i * 37u);
                o.deadline_ms = 0;
                assert_int_equal(vision_decode_buffer(bad, len, &o, &img, &e), ERR_DECODE);
                assert_non_null(strstr(e.msg, "decode:"));
                free(bad);
            }
            g_free(buf);
        }
    }
    /* CMYK: libvips' path, three bands out. */
    VipsImage *cmyk = NULL;
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(vips_colourspace(photo, &cmyk, VIPS_INTERPRETATION_CMYK, NULL), 0);
    assert_int_equal(vips_jpegsave_buffer(cmyk, &buf, &len, NULL), 0);
    vision_decode_opts o = {.max_side = 960};
    vision_image *img = NULL;
    err_t e;
    assert_int_equal(vision_decode_buffer(buf, len, &o, &img, &e), ERR_OK);
    assert_int_equal(img->width, 960);
    assert_int_equal(img->height, 640);
    vision_image_free(img);
    g_free(buf);
    g_object_unref(cmyk);
    g_object_unref(grey);
    g_object_unref(photo);
}

/* ---- preprocessing ------------------------------------------------------ */

static void test_resample_area_and_pad(void **state)
{
    /* 4x4 image: value = 10*x + y in every channel. */
    uint8_t rgb[4 * 4 * 3];
    float out[2 * 2 * 3], big[4 * 4 * 3];
    const float pad[3] = {100, 100, 100};
    (void)state;

    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * 4 + x) * 3 + c] = (uint8_t)(10 * x + y);
    /* 2x shrink: mean of each 2x2 block. */
    assert_int_equal(vision_resample(rgb, 4, 4, 0, 0, 4, 4, 2, 2, pad, out), 0);
    assert_float_equal(out[0], (0 + 1 + 10 + 11) / 4.0f, 1e-4);
    assert_float_equal(out[(1 * 2 + 1) * 3], (22 + 23 + 32 + 33) / 4.0f, 1e-4);
    /* Rectangle half outside on the left: the left output column is all pad. */
    assert_int_equal(vision_resample(rgb, 4, 4, -4, 0, 8, 4, 2, 1, pad, out), 0);
    assert_float_equal(out[0], 100, 1e-4);
    /* Identity size: exact copy. */
    assert_int_equal(vision_resample(rgb, 4, 4, 0, 0, 4, 4, 4, 4, pad, big), 0);
    for (int i = 0; i < 4 * 4 * 3; i++)
        assert_float_equal(big[i], rgb[i], 1e-4);
    assert_int_equal(vision_resample(rgb, 4, 4, 0, 0, 0, 4, 2, 2, pad, out), ERR_INVAL);
}

static void test_pack_tensor_layouts(void **state)
{
    model_manifest m;
    float hwc[2 * 1 * 3] = {0, 127.5f, 255, 10, 20, 30};
    float t[6];
    (void)state;

    memset(&m, 0, sizeof(m));
    m.width = 2;
    m.height = 1;
    m.channels = 3;
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 127.5f;
        m.std[c] = 127.5f;
    }
    m.layout = LAYOUT_NHWC;
    assert_int_equal(vision_pack_tensor(hwc, &m, t), 0);
    assert_float_equal(t[0], -1, 1e-6);
    assert_float_equal(t[1], 0, 1e-6);
    assert_float_equal(t[2], 1, 1e-6);
    m.layout = LAYOUT_NCHW;
    assert_int_equal(vision_pack_tensor(hwc, &m, t), 0);
    /* Plane R = pixels 0,1; plane G; plane B. */
    assert_float_equal(t[0], -1, 1e-6);
    assert_float_equal(t[1], (10 - 127.5f) / 127.5f, 1e-6);
    assert_float_equal(t[2], 0, 1e-6);
    assert_float_equal(t[5], (30 - 127.5f) / 127.5f, 1e-6);
    m.std[1] = 0;
    assert_int_equal(vision_pack_tensor(hwc, &m, t), ERR_INVAL);
}

static void test_preprocess_letterbox(void **state)
{
    vision_image *img;
    model_manifest m;
    vision_xform xf;
    float *t;
    err_t e;
    (void)state;

    assert_int_equal(vision_image_new(512, 256, &img, &e), 0);
    memset(img->rgb, 255, 512 * 256 * 3);
    memset(&m, 0, sizeof(m));
    m.width = m.height = 256;
    m.channels = 3;
    m.std[0] = m.std[1] = m.std[2] = 1;
    t = malloc(sizeof(float) * 256 * 256 * 3);
    assert_int_equal(vision_preprocess(img, &m, 1, t, &xf, &e), 0);
    assert_float_equal(xf.scale, 2, 1e-6);
    assert_float_equal(xf.x0, 0, 1e-6);
    assert_float_equal(xf.y0, -128, 1e-6);
    /* Top quarter is black padding, middle is the white image. */
    assert_float_equal(t[(10 * 256 + 100) * 3], 0, 1e-4);
    assert_float_equal(t[(128 * 256 + 100) * 3], 255, 1e-3);
    /* Stretch: all white. */
    assert_int_equal(vision_preprocess(img, &m, 0, t, &xf, &e), 0);
    assert_float_equal(t[(10 * 256 + 100) * 3], 255, 1e-3);
    free(t);
    vision_image_free(img);
}

/* ---- pyramid ------------------------------------------------------------ */

/* A deterministic texture: smooth waves plus per-pixel noise of +-8. */
static void fill_texture(vision_image *img, unsigned seed)
{
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            for (int c = 0; c < 3; c++) {
                seed = seed * 1103515245u + 12345u;
                double v = 128 + 100 * sin(x / 37.0 + c) * cos(y / 23.0) +
                           (double)((seed >> 16) % 17) - 8;
                img->rgb[((size_t)y * img->width + x) * 3 + c] = (uint8_t)lrint(v);
            }
}

static void test_pyramid_levels(void **state)
{
    vision_image *img;
    const vision_level *lv, *again;
    int n, n2;
    err_t e;
    (void)state;

    /* Odd sizes: 131x67 -> 66x34 -> (33x17 is below the minimum side). */
    assert_int_equal(vision_image_new(131, 67, &img, &e), 0);
    fill_texture(img, 1);
    lv = vision_image_levels(img, &n, &e);
    assert_non_null(lv);
    assert_int_equal(n, 2);
    assert_ptr_equal(lv[0].rgb, img->rgb);
    assert_int_equal(lv[1].width, 66);
    assert_int_equal(lv[1].height, 34);
    for (int y = 0; y < lv[1].height; y++)
        for (int x = 0; x < lv[1].width; x++)
            for (int c = 0; c < 3; c++) {
                /* The last odd column/row is averaged with itself. */
                int x0 = 2 * x, y0 = 2 * y;
                int x1 = x0 + 1 < 131 ? x0 + 1 : x0, y1 = y0 + 1 < 67 ? y0 + 1 : y0;
                int sum = img->rgb[(y0 * 131 + x0) * 3 + c] + img->rgb[(y0 * 131 + x1) * 3 + c] +
                          img->rgb[(y1 * 131 + x0) * 3 + c] + img->rgb[(y1 * 131 + x1) * 3 + c];
                assert_int_equal(lv[1].rgb[(y * 66 + x) * 3 + c], (sum + 2) / 4);
            }
    /* Cached: the same levels come back. */
    again = vision_image_levels(img, &n2, &e);
    assert_ptr_equal(again, lv);
    assert_int_equal(n2, n);
    /* After vision_image_changed() the levels follow the new pixels. */
    memset(img->rgb, 40, 131 * 67 * 3);
    vision_image_changed(img);
    lv = vision_image_levels(img, &n, &e);
    assert_non_null(lv);
    assert_int_equal(lv[1].rgb[(20 * 66 + 65) * 3 + 2], 40);
    vision_image_changed(img);
    vision_image_changed(NULL);
    vision_image_free(img); /* frees a pyramid never rebuilt: nothing to leak either way */

    /* A 1920x1280 photo: halvings down to 60x40. */
    assert_int_equal(vision_image_new(1920, 1280, &img, &e), 0);
    lv = vision_image_levels(img, &n, &e);
    assert_non_null(lv);
    assert_int_equal(n, 6);
    assert_int_equal(lv[5].width, 60);
    assert_int_equal(lv[5].height, 40);
    vision_image_free(img); /* with its pyramid: ASan's leak check sees it freed */

    /* Level choice: the shrink left on the level is in [1, 2). */
    assert_int_equal(vision_level_for(6, 0.5), 0);
    assert_int_equal(vision_level_for(6, 1.99), 0);
    assert_int_equal(vision_level_for(6, 2.0), 1);
    assert_int_equal(vision_level_for(6, 7.5), 2);
    assert_int_equal(vision_level_for(6, 1000), 5);
    assert_int_equal(vision_level_for(1, 8), 0);
}

/*
 * vision_thumbnail_jpeg: fits max_side (never enlarges), and its pixels are
 * the image's: decoded back, each 8x8 block's mean is within a few grey
 * levels of the exact area average of the same region of the full image
 * (a wrong level, a swapped axis or an offset would be off by tens on this
 * texture). Once from a level above 0 (2016x1344 to 512: level 1), once from
 * level 0 (a 700x300 image to 512), once not scaled (to 4096).
 */
static void test_thumbnail_jpeg(void **state)
{
    static const struct {
        int w, h, side, tw, th;
    } cases[] = {
        {2016, 1344, 512, 512, 341}, {700, 300, 512, 512, 219}, {300, 700, 4096, 300, 700}};
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        vision_image *img, *back;
        err_t e;
        unsigned char *jpg;
        size_t len;
        int w, h;
        assert_int_equal(vision_image_new(cases[c].w, cases[c].h, &img, &e), 0);
        fill_texture(img, 7);
        assert_int_equal(vision_thumbnail_jpeg(img, cases[c].side, &jpg, &len, &w, &h, &e), 0);
        assert_int_equal(w, cases[c].tw);
        assert_int_equal(h, cases[c].th);
        assert_true(len > 2 && jpg[0] == 0xFF && jpg[1] == 0xD8);
        assert_int_equal(vision_decode_buffer(jpg, len, NULL, &back, &e), 0);
        assert_int_equal(back->width, w);
        assert_int_equal(back->height, h);
        double sx = (double)cases[c].w / w, sy = (double)cases[c].h / h, worst = 0;
        float want[8 * 8 * 3];
        static const float pad[3] = {0, 0, 0};
        for (int by = 0; by + 8 <= h; by += 8)
            for (int bx = 0; bx + 8 <= w; bx += 8) {
                assert_int_equal(vision_resample(img->rgb, img->width, img->height,
                                                 (float)(bx * sx), (float)(by * sy),
                                                 (float)(8 * sx), (float)(8 * sy), 1, 1, pad, want),
                                 0);
                double got[3] = {0, 0, 0};
                for (int y = by; y < by + 8; y++)
                    for (int x = bx; x < bx + 8; x++)
                        for (int k = 0; k < 3; k++)
                            got[k] += back->rgb[((size_t)y * w + x) * 3 + k] / 64.0;
                for (int k = 0; k < 3; k++)
                    worst = fmax(worst, fabs(got[k] - want[k]));
            }
        assert_true(worst < 6.0);
        vision_image_free(back);
        free(jpg);
        vision_image_free(img);
    }
}

/*
 * The pyramid path (vision_preprocess_region) against the exact area
 * average from full resolution (vision_resample on level 0). They differ by
 * the levels' 8-bit rounding and because a level pixel that an output pixel
 * covers in part is averaged whole (a slightly wider filter), so on smooth
 * content with pixel noise they agree to about a grey level on average (a
 * few at worst, where the noise meets the wider filter); a level or an
 * offset wrong by one source pixel would be off by several on average. Views as the detector and the image
 * embedder take them, including padding past the border, and both layouts.
 */
static void test_preprocess_region_matches_exact(void **state)
{
    static const float pad[3] = {0, 0, 0};
    static const struct {
        float x, y, w, h;
        int ow, oh;
    } cases[] = {
        {-240, 0, 1920, 1920, 256, 256}, /* letterboxed whole view, level 2 */
        {0, 0, 640, 640, 256, 256},      /* tile, level 1 */
        {1280, 640, 640, 640, 256, 256}, /* tile reaching past the bottom */
        {0, 0, 1440, 1280, 224, 224},    /* stretched, level 2 on the shorter axis */
        {300, 200, 200, 150, 256, 256},  /* enlarged: level 0, bilinear */
    };
    vision_image *img;
    model_manifest m;
    float *fast, *exact, *planar;
    err_t e;
    (void)state;

    assert_int_equal(vision_image_new(1440, 1280, &img, &e), 0);
    fill_texture(img, 7);
    memset(&m, 0, sizeof(m));
    snprintf(m.name, sizeof(m.name), "test");
    m.channels = 3;
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 127.5f;
        m.std[c] = 127.5f;
    }
    fast = malloc(sizeof(float) * 256 * 256 * 3);
    exact = malloc(sizeof(float) * 256 * 256 * 3);
    planar = malloc(sizeof(float) * 256 * 256 * 3);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = cases[i].ow * cases[i].oh * 3;
        double sum = 0, worst = 0;
        m.width = cases[i].ow;
        m.height = cases[i].oh;
        m.layout = LAYOUT_NHWC;
        assert_int_equal(vision_preprocess_region(img, &m, cases[i].x, cases[i].y, cases[i].w,
                                                  cases[i].h, pad, fast, &e),
                         0);
        assert_int_equal(vision_resample(img->rgb, img->width, img->height, cases[i].x,
                                         cases[i].y, cases[i].w, cases[i].h, cases[i].ow,
                                         cases[i].oh, pad, exact),
                         0);
        for (int k = 0; k < n; k++) {
            /* Back to 0..255 to compare in grey levels. */
            double d = fabs(fast[k] * 127.5 + 127.5 - exact[k]);
            sum += d;
            if (d > worst)
                worst = d;
        }
        printf("  region %zu: pyramid vs exact: mean |d| %.3f, max %.3f grey levels\n", i,
               sum / n, worst);
        assert_true(sum / n < 1.0);
        assert_true(worst < 8.0);
        /* The planar layout holds the same values. */
        m.layout = LAYOUT_NCHW;
        assert_int_equal(vision_preprocess_region(img, &m, cases[i].x, cases[i].y, cases[i].w,
                                                  cases[i].h, pad, planar, &e),
                         0);
        for (int p = 0; p < cases[i].ow * cases[i].oh; p++)
            for (int c = 0; c < 3; c++)
                assert_float_equal(planar[c * (n / 3) + p], fast[p * 3 + c], 1e-6);
    }
    m.width = m.height = 256;
    assert_int_equal(vision_preprocess_region(img, &m, 0, 0, 0, 10, pad, fast, &e), ERR_INVAL);
    m.std[2] = 0;
    assert_int_equal(vision_preprocess_region(img, &m, 0, 0, 10, 10, pad, fast, &e), ERR_INVAL);
    free(fast);
    free(exact);
    free(planar);
    vision_image_free(img);
}

static void test_detect_plan(void **state)
{
    vision_view v[VISION_MAX_VIEWS];
    int n;
    (void)state;

    n = vision_detect_plan(1920, 1280, 1, v, VISION_MAX_VIEWS);
    assert_int_equal(n, 13);
    assert_true(v[0].whole);
    assert_float_equal(v[0].side, 1920, 1e-3);
    assert_float_equal(v[0].y0, -320, 1e-3);
    for (int i = 1; i < n; i++) {
        assert_false(v[i].whole);
        assert_float_equal(v[i].side, 640, 1e-3);
        assert_true(v[i].x0 >= 0 && v[i].x0 + v[i].side <= 1920 + 1e-3);
        assert_true(v[i].y0 >= 0 && v[i].y0 + v[i].side <= 1280 + 1e-3);
    }
    assert_int_equal(vision_detect_plan(1920, 1280, 0, v, VISION_MAX_VIEWS), 1);
    assert_int_equal(vision_detect_plan(700, 500, 1, v, VISION_MAX_VIEWS), 1); /* < 3 x 256 */
    assert_int_equal(vision_detect_plan(1920, 1280, 1, v, 5), 5);
    assert_int_equal(vision_detect_plan(0, 1280, 1, v, VISION_MAX_VIEWS), 0);
}

/* ---- BlazeFace ---------------------------------------------------------- */

static void test_anchors(void **state)
{
    float a[VISION_BF_ANCHORS][2];
    (void)state;

    vision_bf_anchors(a);
    /* 16x16 grid, stride 16, two anchors per cell. */
    assert_float_equal(a[0][0], 8, 1e-6);
    assert_float_equal(a[0][1], 8, 1e-6);
    assert_float_equal(a[1][0], 8, 1e-6);
    assert_float_equal(a[2][0], 24, 1e-6);
    assert_float_equal(a[2 * 16][1], 24, 1e-6);
    assert_float_equal(a[511][0], 248, 1e-6);
    assert_float_equal(a[511][1], 248, 1e-6);
    /* 8x8 grid, stride 32, six anchors per cell. */
    assert_float_equal(a[512][0], 16, 1e-6);
    assert_float_equal(a[512][1], 16, 1e-6);
    assert_float_equal(a[517][0], 16, 1e-6);
    assert_float_equal(a[518][0], 48, 1e-6);
    assert_float_equal(a[512 + 6 * 8][1], 48, 1e-6);
    assert_float_equal(a[895][0], 240, 1e-6);
    assert_float_equal(a[895][1], 240, 1e-6);
}

static void test_bf_decode_synthetic(void **state)
{
    static float s16[512], b16[512 * 16], s8[384], b8[384 * 16];
    vision_face f[8];
    vision_xform xf = {10, 20, 2};
    float *r;
    int n;
    (void)state;

    for (int i = 0; i < 512; i++)
        s16[i] = -10;
    for (int i = 0; i < 384; i++)
        s8[i] = -10;
    memset(b16, 0, sizeof(b16));
    memset(b8, 0, sizeof(b8));
    /* Anchor 3: 16-grid cell (1, 0), second anchor, centre (24, 8). */
    s16[3] = 2.0f;
    r = b16 + 3 * 16;
    r[0] = 2;
    r[1] = -1;
    r[2] = 40;
    r[3] = 50;
    r[4] = -10; /* right eye dx */
    r[5] = -5;
    /* 8-grid anchor 6*9 + 2: cell (1, 1), centre (48, 48); below threshold. */
    s8[6 * 9 + 2] = 0.5f; /* sigmoid 0.62 */
    b8[(6 * 9 + 2) * 16 + 2] = 30;
    b8[(6 * 9 + 2) * 16 + 3] = 30;

    n = vision_bf_decode(s16, b16, s8, b8, 0.75f, &xf, f, 8);
    assert_int_equal(n, 1);
    assert_float_equal(f[0].score, 1.0f / (1.0f + expf(-2.0f)), 1e-5);
    /* centre (26, 7) in input px, size 40x50 -> image: x0 + u*2 */
    assert_float_equal(f[0].box.x1, 10 + (26 - 20) * 2, 1e-4);
    assert_float_equal(f[0].box.x2, 10 + (26 + 20) * 2, 1e-4);
    assert_float_equal(f[0].box.y1, 20 + (7 - 25) * 2, 1e-4);
    assert_float_equal(f[0].box.y2, 20 + (7 + 25) * 2, 1e-4);
    assert_float_equal(f[0].kps[VISION_KP_RIGHT_EYE][0], 10 + (24 - 10) * 2, 1e-4);
    assert_float_equal(f[0].kps[VISION_KP_RIGHT_EYE][1], 20 + (8 - 5) * 2, 1e-4);
    assert_float_equal(f[0].kps[VISION_KP_NOSE][0], 10 + 24 * 2, 1e-4);

    n = vision_bf_decode(s16, b16, s8, b8, 0.6f, &xf, f, 8);
    assert_int_equal(n, 2);
    assert_float_equal(f[1].box.x1, 10 + (48 - 15) * 2, 1e-4);
    /* cap */
    assert_int_equal(vision_bf_decode(s16, b16, s8, b8, 0.6f, &xf, f, 1), 1);
}

static vision_face mkface(float x1, float y1, float x2, float y2, float score)
{
    vision_face f;
    memset(&f, 0, sizeof(f));
    f.box.x1 = x1;
    f.box.y1 = y1;
    f.box.x2 = x2;
    f.box.y2 = y2;
    f.score = score;
    for (int k = 0; k < VISION_FACE_KPS; k++) {
        f.kps[k][0] = (x1 + x2) / 2;
        f.kps[k][1] = (y1 + y2) / 2;
    }
    return f;
}

static void test_iou(void **state)
{
    vision_box a = {0, 0, 10, 10}, b = {5, 0, 15, 10}, c = {20, 20, 30, 30}, z = {0, 0, 0, 5};
    (void)state;
    assert_float_equal(vision_box_iou(&a, &a), 1, 1e-6);
    assert_float_equal(vision_box_iou(&a, &b), 50.0f / 150.0f, 1e-6);
    assert_float_equal(vision_box_iou(&a, &c), 0, 1e-6);
    assert_float_equal(vision_box_iou(&a, &z), 0, 1e-6);
}

static void test_nms_weighted(void **state)
{
    vision_face f[4];
    int n;
    (void)state;

    /* Two overlapping (IoU 0.82) blend by score; a far one stays; a weak one in order. */
    f[0] = mkface(0, 0, 100, 100, 0.6f);
    f[1] = mkface(10, 0, 110, 100, 0.9f);
    f[2] = mkface(500, 500, 600, 600, 0.8f);
    f[3] = mkface(60, 0, 160, 100, 0.7f); /* IoU with f[1] 0.33 -> merged too */
    n = vision_nms_weighted(f, 4, 0.3f);
    assert_int_equal(n, 2);
    assert_float_equal(f[0].score, 0.9f, 1e-6);
    assert_float_equal(f[0].box.x1, (0.9f * 10 + 0.6f * 0 + 0.7f * 60) / 2.2f, 1e-3);
    assert_float_equal(f[0].kps[0][0], (0.9f * 60 + 0.6f * 50 + 0.7f * 110) / 2.2f, 1e-3);
    assert_float_equal(f[1].score, 0.8f, 1e-6);
    assert_float_equal(f[1].box.x1, 500, 1e-4);

    /* Higher IoU threshold: the 0.33 overlap survives on its own. */
    f[0] = mkface(0, 0, 100, 100, 0.6f);
    f[1] = mkface(10, 0, 110, 100, 0.9f);
    f[2] = mkface(60, 0, 160, 100, 0.7f);
    n = vision_nms_weighted(f, 3, 0.5f);
    assert_int_equal(n, 2);
    assert_float_equal(f[1].score, 0.7f, 1e-6);
    assert_float_equal(f[1].box.x1, 60, 1e-4);

    assert_int_equal(vision_nms_weighted(f, 0, 0.3f), 0);
}

/* ---- alignment ---------------------------------------------------------- */

static void test_similarity_recovers_transform(void **state)
{
    const double s = 1.7, th = 20 * M_PI / 180, tx = 31.5, ty = -12.25;
    float src[4][2], dst[4][2], M[2][3];
    (void)state;

    for (int i = 0; i < 4; i++) {
        src[i][0] = vision_align_template[i][0] * 3 + 100;
        src[i][1] = vision_align_template[i][1] * 2.5f + 40;
        dst[i][0] = (float)(s * (cos(th) * src[i][0] - sin(th) * src[i][1]) + tx);
        dst[i][1] = (float)(s * (sin(th) * src[i][0] + cos(th) * src[i][1]) + ty);
    }
    assert_int_equal(vision_similarity((const float(*)[2])src, (const float(*)[2])dst, 4, M), 0);
    assert_float_equal(M[0][0], s * cos(th), 1e-4);
    assert_float_equal(M[0][1], -s * sin(th), 1e-4);
    assert_float_equal(M[1][0], s * sin(th), 1e-4);
    assert_float_equal(M[1][1], s * cos(th), 1e-4);
    assert_float_equal(M[0][2], tx, 1e-2);
    assert_float_equal(M[1][2], ty, 1e-2);

    /* A mirrored target is not reachable: the fit must not reflect. */
    for (int i = 0; i < 4; i++)
        dst[i][0] = -src[i][0];
    assert_int_equal(vision_similarity((const float(*)[2])src, (const float(*)[2])dst, 4, M), 0);
    assert_true(M[0][0] * M[1][1] - M[0][1] * M[1][0] >= 0);

    for (int i = 0; i < 4; i++) {
        src[i][0] = 5;
        src[i][1] = 5;
    }
    assert_int_equal(vision_similarity((const float(*)[2])src, (const float(*)[2])dst, 4, M),
                     ERR_INVAL);
}

static void test_align_face_samples_through_transform(void **state)
{
    vision_image *img;
    float kps[VISION_FACE_KPS][2];
    uint8_t crop[112 * 112 * 3];
    err_t e;
    (void)state;

    /* Gradient image: R = x / 2, G = y / 2. */
    assert_int_equal(vision_image_new(400, 400, &img, &e), 0);
    for (int y = 0; y < 400; y++)
        for (int x = 0; x < 400; x++) {
            img->rgb[(y * 400 + x) * 3 + 0] = (uint8_t)(x / 2);
            img->rgb[(y * 400 + x) * 3 + 1] = (uint8_t)(y / 2);
        }
    /* The face is the template scaled by 2 and shifted by (50, 60). */
    memset(kps, 0, sizeof(kps));
    for (int i = 0; i < 4; i++) {
        kps[i][0] = vision_align_template[i][0] * 2 + 50;
        kps[i][1] = vision_align_template[i][1] * 2 + 60;
    }
    assert_int_equal(vision_align_face(img, (const float(*)[2])kps, 112, crop, &e), 0);
    for (int v = 0; v < 112; v += 37)
        for (int u = 0; u < 112; u += 29) {
            /* Output centre (u+.5, v+.5) -> source (2u+51, 2v+61): R ~ (2u+50.5)/2 */
            const uint8_t *p = crop + (v * 112 + u) * 3;
            assert_true(fabs(p[0] - (u + 25.25)) <= 1.0);
            assert_true(fabs(p[1] - (v + 30.25)) <= 1.0);
        }
    assert_int_equal(vision_align_face(img, (const float(*)[2])kps, 4, crop, &e), ERR_INVAL);
    vision_image_free(img);
}

/*
 * A face four times the crop's scale over a one-pixel checkerboard: sampled
 * from the pyramid's level 2 the crop is the board's mean grey, where single
 * taps on the full image would alias to black and white.
 */
static void test_align_large_face_does_not_alias(void **state)
{
    vision_image *img;
    float kps[VISION_FACE_KPS][2];
    uint8_t crop[112 * 112 * 3];
    int lo = 255, hi = 0;
    err_t e;
    (void)state;

    assert_int_equal(vision_image_new(1024, 1024, &img, &e), 0);
    for (int y = 0; y < 1024; y++)
        for (int x = 0; x < 1024; x++)
            memset(img->rgb + ((size_t)y * 1024 + x) * 3, (x + y) % 2 ? 255 : 0, 3);
    memset(kps, 0, sizeof(kps));
    for (int i = 0; i < 4; i++) {
        kps[i][0] = vision_align_template[i][0] * 4 + 100;
        kps[i][1] = vision_align_template[i][1] * 4 + 120;
    }
    assert_int_equal(vision_align_face(img, (const float(*)[2])kps, 112, crop, &e), 0);
    for (int i = 0; i < 112 * 112 * 3; i++) {
        if (crop[i] < lo)
            lo = crop[i];
        if (crop[i] > hi)
            hi = crop[i];
    }
    assert_true(lo >= 120 && hi <= 135);
    vision_image_free(img);
}

/* A face at the image's corner: the crop's part outside the image is black. */
static void test_align_face_past_border(void **state)
{
    vision_image *img;
    float kps[VISION_FACE_KPS][2];
    uint8_t crop[112 * 112 * 3];
    err_t e;
    (void)state;

    assert_int_equal(vision_image_new(300, 200, &img, &e), 0);
    memset(img->rgb, 200, 300 * 200 * 3);
    memset(kps, 0, sizeof(kps));
    for (int i = 0; i < 4; i++) {
        kps[i][0] = vision_align_template[i][0] - 50;
        kps[i][1] = vision_align_template[i][1] - 50;
    }
    assert_int_equal(vision_align_face(img, (const float(*)[2])kps, 112, crop, &e), 0);
    assert_int_equal(crop[(10 * 112 + 10) * 3], 0);      /* maps to (-40, -40) */
    assert_int_equal(crop[(100 * 112 + 100) * 3], 200); /* maps to (50, 50) */
    vision_image_free(img);
}

static void test_face_tensor(void **state)
{
    model_manifest m;
    uint8_t crop[112 * 112 * 3];
    float *t = malloc(sizeof(float) * 112 * 112 * 3);
    err_t e;
    (void)state;

    memset(&m, 0, sizeof(m));
    m.width = m.height = 112;
    m.channels = 3;
    m.std[0] = m.std[1] = m.std[2] = 1;
    memset(crop, 7, sizeof(crop));
    assert_int_equal(vision_face_tensor(crop, 112, &m, t, &e), 0);
    assert_float_equal(t[12345], 7, 1e-6);
    assert_int_equal(vision_face_tensor(crop, 96, &m, t, &e), ERR_INVAL);
    /* Every value, both layouts, per-channel mean and std. */
    for (int i = 0; i < 112 * 112 * 3; i++)
        crop[i] = (uint8_t)(i * 7 % 251);
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 100.0f + 10 * c;
        m.std[c] = 50.0f + c;
    }
    for (int layout = 0; layout < 2; layout++) {
        m.layout = layout ? LAYOUT_NCHW : LAYOUT_NHWC;
        assert_int_equal(vision_face_tensor(crop, 112, &m, t, &e), 0);
        for (int p = 0; p < 112 * 112; p++)
            for (int c = 0; c < 3; c++) {
                float want = ((float)crop[p * 3 + c] - m.mean[c]) / m.std[c];
                float got = layout ? t[c * 112 * 112 + p] : t[p * 3 + c];
                assert_float_equal(got, want, 1e-5);
            }
    }
    m.std[1] = 0;
    assert_int_equal(vision_face_tensor(crop, 112, &m, t, &e), ERR_INVAL);
    free(t);
}

/*
 * vision_warp_tensor() through vision_face_map() equals vision_align_face() +
 * vision_face_tensor() (both layouts), and the crop is within two grey levels of exact bilinear
 * sampling in double (8-bit weights are truncated: under 1/256 of the
 * neighbours' difference per axis, plus rounding), on noise (every neighbour differs, so a wrong tap or
 * weight in the vector path shows), for a rotated face inside the image and
 * one reaching past its corner.
 */
static void test_align_fused_matches_and_is_bilinear(void **state)
{
    vision_image *img;
    model_manifest m;
    float kps[VISION_FACE_KPS][2];
    uint8_t crop[112 * 112 * 3];
    float *t1 = malloc(sizeof(float) * 112 * 112 * 3), *t2 = malloc(sizeof(float) * 112 * 112 * 3);
    uint32_t seed = 1;
    err_t e;
    (void)state;

    assert_non_null(t1);
    assert_non_null(t2);
    assert_int_equal(vision_image_new(300, 260, &img, &e), 0);
    for (int i = 0; i < 300 * 260 * 3; i++) {
        seed = seed * 1103515245u + 12345u;
        img->rgb[i] = (uint8_t)(seed >> 16);
    }
    memset(&m, 0, sizeof(m));
    m.width = m.height = 112;
    m.channels = 3;
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 127.5f;
        m.std[c] = 128.0f;
    }
    for (int pass = 0; pass < 2; pass++) {
        /* Template rotated by 0.3 rad, scaled by 1.3, at (80, 60) or (-40, -30). */
        double th = 0.3, s = 1.3, ox = pass ? -40 : 80, oy = pass ? -30 : 60;
        float M[2][3], src[4][2];
        memset(kps, 0, sizeof(kps));
        for (int i = 0; i < 4; i++) {
            double x = vision_align_template[i][0], y = vision_align_template[i][1];
            kps[i][0] = (float)(s * (cos(th) * x - sin(th) * y) + ox);
            kps[i][1] = (float)(s * (sin(th) * x + cos(th) * y) + oy);
            src[i][0] = kps[i][0];
            src[i][1] = kps[i][1];
        }
        assert_int_equal(vision_align_face(img, (const float(*)[2])kps, 112, crop, &e), 0);
        for (int layout = 0; layout < 2; layout++) {
            m.layout = layout ? LAYOUT_NCHW : LAYOUT_NHWC;
            assert_int_equal(vision_face_tensor(crop, 112, &m, t1, &e), 0);
            vision_face f = {.score = 1};
            float FM[2][3];
            memcpy(f.kps, kps, sizeof f.kps);
            assert_int_equal(vision_face_map(&m, &f, FM, &e), 0);
            assert_int_equal(vision_warp_tensor(img, (const float(*)[3])FM, &m, t2, &e), 0);
            assert_memory_equal(t1, t2, sizeof(float) * 112 * 112 * 3);
        }
        /* Reference: exact bilinear on level 0 (the shrink is below 2). */
        assert_int_equal(vision_similarity((const float(*)[2])src,
                                           (const float(*)[2])vision_align_template, 4, M),
                         0);
        double det = (double)M[0][0] * M[1][1] - (double)M[0][1] * M[1][0];
        for (int v = 0; v < 112; v++)
            for (int u = 0; u < 112; u++) {
                double du = u + 0.5 - M[0][2], dv = v + 0.5 - M[1][2];
                double x = (M[1][1] * du - M[0][1] * dv) / det - 0.5;
                double y = (-M[1][0] * du + M[0][0] * dv) / det - 0.5;
                int x0 = (int)floor(x), y0 = (int)floor(y);
                double ax = x - x0, ay = y - y0;
                for (int c = 0; c < 3; c++) {
                    double acc = 0;
                    for (int k = 0; k < 4; k++) {
                        int xx = x0 + (k & 1), yy = y0 + (k >> 1);
                        double w = ((k & 1) ? ax : 1 - ax) * ((k >> 1) ? ay : 1 - ay);
                        if (xx >= 0 && xx < 300 && yy >= 0 && yy < 260)
                            acc += w * img->rgb[((size_t)yy * 300 + xx) * 3 + c];
                    }
                    assert_true(fabs(crop[(v * 112 + u) * 3 + c] - acc) <= 2.0);
                }
            }
    }
    m.std[0] = 0;
    float FM[2][3] = {{1, 0, 0}, {0, 1, 0}};
    assert_int_equal(vision_warp_tensor(img, (const float(*)[3])FM, &m, t2, &e), ERR_INVAL);
    vision_image_free(img);
    free(t1);
    free(t2);
}

/*
 * vision_face_map(): the "box" crop maps the square of side scale * the
 * box's longer side, centred on the box moved down by shift_y sides, onto
 * the input; the "align" crop with a template puts the keypoints on it.
 */
static void test_face_map_box_and_template(void **state)
{
    (void)state;
    model_manifest m;
    memset(&m, 0, sizeof m);
    m.width = m.height = 150;
    m.channels = 3;
    m.crop_method = CROP_BOX;
    m.crop_scale = 1.5f;
    m.crop_shift_y = 0.1f;
    vision_face f = {.box = {100, 200, 180, 300}, .score = 1}; /* 80 x 100, centre (140, 250) */
    float M[2][3];
    err_t e;
    assert_int_equal(vision_face_map(&m, &f, M, &e), ERR_OK);
    /* side 150, centre (140, 265): corners (65, 190) -> (0, 0), (215, 340) -> (150, 150). */
    assert_true(M[0][1] == 0 && M[1][0] == 0);
    assert_true(fabsf(M[0][0] * 65 + M[0][2]) < 1e-4f && fabsf(M[1][1] * 190 + M[1][2]) < 1e-4f);
    assert_true(fabsf(M[0][0] * 215 + M[0][2] - 150) < 1e-3f);
    assert_true(fabsf(M[1][1] * 340 + M[1][2] - 150) < 1e-3f);
    vision_face empty = {.box = {5, 5, 5, 5}};
    assert_int_equal(vision_face_map(&m, &empty, M, &e), ERR_INVAL);

    m.crop_method = CROP_ALIGN;
    m.crop_has_template = 1;
    const float t[4][2] = {{48, 46}, {102, 46}, {75, 80}, {75, 107}};
    memcpy(m.crop_template, t, sizeof t);
    /* The template turned by 0.2 rad, scaled by 2, moved to (300, 100). */
    for (int i = 0; i < 4; i++) {
        double c = cos(0.2), sn = sin(0.2);
        f.kps[i][0] = (float)(2 * (c * t[i][0] - sn * t[i][1]) + 300);
        f.kps[i][1] = (float)(2 * (sn * t[i][0] + c * t[i][1]) + 100);
    }
    assert_int_equal(vision_face_map(&m, &f, M, &e), ERR_OK);
    for (int i = 0; i < 4; i++) {
        float u = M[0][0] * f.kps[i][0] + M[0][1] * f.kps[i][1] + M[0][2];
        float v = M[1][0] * f.kps[i][0] + M[1][1] * f.kps[i][1] + M[1][2];
        assert_true(fabsf(u - t[i][0]) < 1e-3f && fabsf(v - t[i][1]) < 1e-3f);
    }
    m.width = 150;
    m.height = 112;
    assert_int_equal(vision_face_map(&m, &f, M, &e), ERR_INVAL); /* not square */
}

/*
 * input.resize "bilinear_align_corners": the corner pixels of the image are
 * the corner pixels of the input, and between them one bilinear tap
 * (TensorFlow's resizeBilinear with alignCorners), in either layout.
 */
static void test_preprocess_align_corners(void **state)
{
    (void)state;
    vision_image *img;
    err_t e;
    assert_int_equal(vision_image_new(9, 5, &img, &e), ERR_OK);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 9; x++)
            for (int c = 0; c < 3; c++)
                img->rgb[(y * 9 + x) * 3 + c] = (uint8_t)(x * 20 + y * 3 + c);
    model_manifest m;
    memset(&m, 0, sizeof m);
    m.width = 5;
    m.height = 3;
    m.channels = 3;
    m.resize = RESIZE_BILINEAR_ALIGN_CORNERS;
    for (int c = 0; c < 3; c++) {
        m.mean[c] = 1;
        m.std[c] = 2;
    }
    float t[5 * 3 * 3];
    for (int layout = 0; layout < 2; layout++) {
        m.layout = layout ? LAYOUT_NCHW : LAYOUT_NHWC;
        assert_int_equal(vision_preprocess(img, &m, 0, t, NULL, &e), ERR_OK);
        for (int v = 0; v < 3; v++)
            for (int u = 0; u < 5; u++)
                for (int c = 0; c < 3; c++) {
                    /* x = u * 8/4 = 2u, y = v * 4/2 = 2v: whole pixels, exact. */
                    float want = ((float)(2 * u * 20 + 2 * v * 3 + c) - 1) / 2;
                    float got = layout ? t[c * 15 + v * 5 + u] : t[(v * 5 + u) * 3 + c];
                    assert_true(fabsf(got - want) < 1e-5f);
                }
    }
    /* Between pixels: 9 wide to 4 wide puts u = 1 at x = 8/3. */
    m.width = 4;
    m.layout = LAYOUT_NHWC;
    assert_int_equal(vision_preprocess(img, &m, 0, t, NULL, &e), ERR_OK);
    float x = 8.0f / 3.0f, want = ((x * 20 + 0) - 1) / 2;
    assert_true(fabsf(t[1 * 3] - want) < 1e-4f);
    vision_image_free(img);
}

/*
 * input.resize shortest_crop_* / squash_*: Immich's geometry (shortest side to
 * the input, the other truncated, centre crop at the truncated half
 * difference), and Pillow's filter properties that do not need Pillow
 * (tests/pillow/pillow_parity.py compares with Pillow itself): a constant
 * stays constant, a resize by 1 is the identity (so a short side equal to the
 * input leaves the cropped window untouched), shrinking is antialiased.
 */
static void test_preprocess_pil_modes(void **state)
{
    (void)state;
    static const struct {
        int w, h, side;
        image_resize r;
        int rw, rh, cx, cy;
    } geo[] = {
        {1440, 1080, 224, RESIZE_SHORTEST_CROP_BICUBIC, 298, 224, 37, 0},
        {1080, 1440, 224, RESIZE_SHORTEST_CROP_BILINEAR, 224, 298, 0, 37},
        {1000, 667, 224, RESIZE_SHORTEST_CROP_BICUBIC, 335, 224, 55, 0}, /* 335.83 truncated */
        {500, 500, 336, RESIZE_SHORTEST_CROP_BICUBIC, 336, 336, 0, 0},
        {100, 60, 224, RESIZE_SHORTEST_CROP_BICUBIC, 373, 224, 74, 0}, /* enlarged */
        {1440, 1080, 224, RESIZE_SQUASH_BICUBIC, 224, 224, 0, 0},
    };
    model_manifest m;
    memset(&m, 0, sizeof m);
    m.channels = 3;
    m.layout = LAYOUT_NCHW;
    for (int c = 0; c < 3; c++)
        m.std[c] = 1;
    for (size_t i = 0; i < sizeof geo / sizeof geo[0]; i++) {
        int rw, rh, cx, cy;
        m.width = m.height = geo[i].side;
        m.resize = geo[i].r;
        assert_int_equal(vision_pil_geometry(geo[i].w, geo[i].h, &m, &rw, &rh, &cx, &cy), ERR_OK);
        if (rw != geo[i].rw || rh != geo[i].rh || cx != geo[i].cx || cy != geo[i].cy)
            fail_msg("case %zu: %dx%d at %d,%d", i, rw, rh, cx, cy);
    }

    vision_image *img;
    err_t e;
    float *t = malloc(sizeof(float) * 3 * 64 * 64);
    assert_non_null(t);
    m.width = m.height = 64;
    m.mean[0] = 10;
    m.std[0] = 2;

    /* A constant image stays constant through either filter, enlarged or shrunk. */
    static const int sizes[][2] = {{200, 90}, {37, 50}};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(vision_image_new(sizes[k][0], sizes[k][1], &img, &e), ERR_OK);
        memset(img->rgb, 77, (size_t)img->width * img->height * 3);
        for (int f = 0; f < 2; f++) {
            m.resize = f ? RESIZE_SHORTEST_CROP_BILINEAR : RESIZE_SHORTEST_CROP_BICUBIC;
            assert_int_equal(vision_preprocess(img, &m, 0, t, NULL, &e), ERR_OK);
            for (int p = 0; p < 64 * 64; p++)
                assert_true(t[p] == (77.0f - 10) / 2 && t[64 * 64 + p] == 77.0f);
        }
        vision_image_free(img);
    }

    /* 100x64 to 64: no scaling, the window is columns 18..81 (int(100/2 - 32)), exactly. */
    assert_int_equal(vision_image_new(100, 64, &img, &e), ERR_OK);
    for (size_t p = 0; p < (size_t)100 * 64 * 3; p++)
        img->rgb[p] = (uint8_t)((p * 2654435761u) >> 24);
    for (int f = 0; f < 2; f++) {
        m.resize = f ? RESIZE_SHORTEST_CROP_BILINEAR : RESIZE_SHORTEST_CROP_BICUBIC;
        assert_int_equal(vision_preprocess(img, &m, 0, t, NULL, &e), ERR_OK);
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
                for (int c = 0; c < 3; c++) {
                    float want = ((float)img->rgb[((size_t)y * 100 + x + 18) * 3 + c] - m.mean[c]) /
                                 m.std[c];
                    assert_true(t[c * 64 * 64 + y * 64 + x] == want);
                }
    }
    vision_image_free(img);

    /* A one-pixel checkerboard shrunk 2x averages to mid-grey, not to a pattern. */
    assert_int_equal(vision_image_new(128, 128, &img, &e), ERR_OK);
    for (int y = 0; y < 128; y++)
        for (int x = 0; x < 128; x++)
            memset(img->rgb + ((size_t)y * 128 + x) * 3, (x + y) % 2 ? 255 : 0, 3);
    m.mean[0] = 0;
    m.std[0] = 1;
    for (int f = 0; f < 2; f++) {
        m.resize = f ? RESIZE_SQUASH_BILINEAR : RESIZE_SQUASH_BICUBIC;
        assert_int_equal(vision_preprocess(img, &m, 0, t, NULL, &e), ERR_OK);
        /* Away from the border, where the clipped filter is no longer symmetric. */
        for (int y = 4; y < 60; y++)
            for (int x = 4; x < 60; x++)
                assert_true(fabsf(t[y * 64 + x] - 127.5f) <= 1.0f);
    }
    vision_image_free(img);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_shrinks_and_keeps_original_size),
        cmocka_unit_test(test_decode_buffer_matches_file),
        cmocka_unit_test(test_decode_bad_inputs),
        cmocka_unit_test(test_decode_refuses_bombs_from_header),
        cmocka_unit_test(test_decode_exif_rotation_and_alpha),
        cmocka_unit_test(test_decode_jpeg_direct_matches_libvips),
        cmocka_unit_test(test_decode_snaps_other_formats),
        cmocka_unit_test(test_decode_heic_half_matches_libvips),
        cmocka_unit_test(test_pyramid_levels),
        cmocka_unit_test(test_thumbnail_jpeg),
        cmocka_unit_test(test_resample_area_and_pad),
        cmocka_unit_test(test_preprocess_region_matches_exact),
        cmocka_unit_test(test_detect_plan),
        cmocka_unit_test(test_pack_tensor_layouts),
        cmocka_unit_test(test_preprocess_letterbox),
        cmocka_unit_test(test_anchors),
        cmocka_unit_test(test_bf_decode_synthetic),
        cmocka_unit_test(test_iou),
        cmocka_unit_test(test_nms_weighted),
        cmocka_unit_test(test_similarity_recovers_transform),
        cmocka_unit_test(test_align_face_samples_through_transform),
        cmocka_unit_test(test_align_large_face_does_not_alias),
        cmocka_unit_test(test_align_face_past_border),
        cmocka_unit_test(test_face_tensor),
        cmocka_unit_test(test_align_fused_matches_and_is_bilinear),
        cmocka_unit_test(test_decode_format_allowlist),
        cmocka_unit_test(test_decode_deadline),
        cmocka_unit_test(test_decode_memory_budget),
        cmocka_unit_test(test_face_map_box_and_template),
        cmocka_unit_test(test_preprocess_align_corners),
        cmocka_unit_test(test_preprocess_pil_modes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
