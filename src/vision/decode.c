/*
 * vision/decode.c — the one file that calls libvips: untrusted bytes to a
 * bounded, upright, 8-bit sRGB image.
 *
 * The header is opened first (libvips reads only metadata until pixels are
 * asked for) so that decompression bombs are refused on their declared size
 * before any allocation. A JPEG that a DCT scale (1/2, 1/4, 1/8 or 1)
 * brings to the target size is then decoded by libjpeg itself straight into
 * the image (vision/jpeg.c: the same pixels, half the time), and a HEIC
 * halved from libheif's YCbCr planes (vision/heif.c). Everything else
 * is produced by vips_thumbnail, which combines shrink-on-load (JPEG DCT
 * scaling, WebP/HEIF load at size), EXIF autorotation and the conversion to
 * sRGB in one pipeline. We
 * rejected decoding at full size and resizing ourselves: a 24 MP JPEG costs
 * 72 MB and ~4x the time, and the models see at most 2048 pixels anyway.
 *
 * Only photo formats reach a decoder. libvips can load thirty-odd formats
 * through a dozen libraries (poppler for PDF, librsvg for SVG, ImageMagick
 * for whatever else, OpenEXR, FITS, Matlab...), each one more parser of
 * untrusted bytes. vision_init() blocks every loader, then unblocks JPEG,
 * PNG, WebP, HEIF (HEIC and AVIF), TIFF and GIF (its first frame): what
 * cameras, phones and the web produce. Not accepted, on purpose: SVG (a
 * program more than a picture: its filters can take minutes, and it never
 * holds a photo), PDF and PostScript (documents), JPEG XL (libvips 8.14 marks
 * its loader untrusted; few cameras write it yet), RAW formats (demosaicing
 * is an editor's job), and the scientific ones. A file in a format we know
 * and refuse fails with ERR_UNSUPPORTED_FORMAT naming it; bytes no loader
 * recognises are ERR_DECODE.
 *
 * Errors: libvips' messages live in one process-wide buffer; we copy it into
 * the caller's err_t and clear it. Two threads failing at once may swap
 * messages (codes stay correct) — acceptable for logs, noted in vision.h.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vips/vips.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/xalloc.h"
#include "vision/codecs.h"
#include "vision/vision.h"

static int vision__inited;

/*
 * The decode memory budget (vision_set_decode_budget): bytes that decodes in
 * flight may claim together. `budget` 0 means none. Guarded by budget_lock;
 * decodes waiting for room sleep on budget_cond.
 */
static pthread_mutex_t budget_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t budget_cond;
static pthread_once_t budget_once = PTHREAD_ONCE_INIT;
static int64_t budget, budget_used;

static void budget_init(void)
{
    clock_cond_init(&budget_cond);
}

void vision_set_decode_budget(int64_t bytes)
{
    pthread_once(&budget_once, budget_init);
    pthread_mutex_lock(&budget_lock);
    budget = bytes > 0 ? bytes : 0;
    pthread_cond_broadcast(&budget_cond);
    pthread_mutex_unlock(&budget_lock);
}

/*
 * Claims `need` bytes of the budget, waiting while other decodes hold it,
 * until `deadline` (monotonic ms, 0 = none). ERR_TOOBIG when `need` alone is
 * over the budget, ERR_TIMEOUT when the deadline passes while waiting.
 * *claimed receives what to give back (0 without a budget).
 */
static int budget_acquire(int64_t need, int64_t deadline, int64_t *claimed, err_t *e)
{
    *claimed = 0;
    pthread_once(&budget_once, budget_init);
    pthread_mutex_lock(&budget_lock);
    int rc = ERR_OK;
    if (budget > 0 && need > budget) {
        rc = err_set(e, ERR_TOOBIG,
                     "decoding it would take %lld MiB, more than the decode budget of %lld MiB "
                     "(--decode-memory)",
                     (long long)(need >> 20), (long long)(budget >> 20));
    } else if (budget > 0) {
        while (budget_used + need > budget && rc == ERR_OK) {
            if (deadline > 0 && clock_mono_ms() >= deadline) {
                rc = err_set(e, ERR_TIMEOUT, "decode: the deadline passed waiting for memory");
                break;
            }
            struct timespec ts;
            clock_deadline(&ts, deadline > 0 ? deadline - clock_mono_ms() : 1000);
            pthread_cond_timedwait(&budget_cond, &budget_lock, &ts);
        }
        if (rc == ERR_OK) {
            budget_used += need;
            *claimed = need;
        }
    }
    pthread_mutex_unlock(&budget_lock);
    return rc;
}

static void budget_release(int64_t claimed)
{
    if (claimed == 0)
        return;
    pthread_mutex_lock(&budget_lock);
    budget_used -= claimed;
    pthread_cond_broadcast(&budget_cond);
    pthread_mutex_unlock(&budget_lock);
}

/*
 * What decoding the image with this header will hold in memory at its peak,
 * from the header alone. Most loaders stream (a baseline JPEG, a plain PNG,
 * a TIFF: a band of rows at a time, shrunk as it goes), but some need the
 * whole frame at full size before a pixel comes out: an interlaced PNG,
 * HEIF, WebP and GIF decode whole, and a progressive JPEG keeps all its
 * coefficients (two bytes a sample). On top comes the result (at most
 * max_side on its longer side) twice over, for the copy and the pyramid.
 */
static int64_t decode__need(VipsImage *hdr, int max_side)
{
    int64_t w = vips_image_get_width(hdr), h = vips_image_get_height(hdr);
    int64_t bands = vips_image_get_bands(hdr);
    int64_t sample = (int64_t)vips_format_sizeof(vips_image_get_format(hdr));
    const char *loader = "";
    int interlaced = 0;
    if (vips_image_get_typeof(hdr, "vips-loader"))
        vips_image_get_string(hdr, "vips-loader", &loader);
    if (vips_image_get_typeof(hdr, "interlaced"))
        vips_image_get_int(hdr, "interlaced", &interlaced);
    int jpeg = strncmp(loader, "jpegload", 8) == 0;
    int whole = strncmp(loader, "heifload", 8) == 0 || strncmp(loader, "webpload", 8) == 0 ||
                strncmp(loader, "gifload", 7) == 0 || (interlaced && !jpeg);
    int64_t held;
    if (whole)
        held = w * h * bands * sample;
    else if (jpeg && interlaced)
        held = w * h * bands * 2;
    else
        held = w * bands * sample * 64;
    double k = (double)max_side / (double)(w > h ? w : h);
    int64_t ow = k < 1 ? (int64_t)(w * k) + 1 : w, oh = k < 1 ? (int64_t)(h * k) + 1 : h;
    return held + 2 * ow * oh * 3 + (1 << 20);
}

/* The loaders untrusted bytes may reach (libvips class names; subclasses follow). */
static const char *const vision__loaders[] = {
    "VipsForeignLoadJpeg", "VipsForeignLoadPng",  "VipsForeignLoadWebp",
    "VipsForeignLoadHeif", "VipsForeignLoadTiff", "VipsForeignLoadNsgif",
};

const char *const vision_accepted_formats = "JPEG, PNG, WebP, HEIF/HEIC/AVIF, TIFF and GIF";

static void decode__vips_warning(const gchar *domain, GLogLevelFlags level, const gchar *msg,
                                 gpointer data)
{
    (void)domain;
    (void)level;
    (void)data;
    log_debug("vision", "libvips: %s", msg);
}

int vision_init(int concurrency, err_t *e)
{
    if (vision__inited)
        return ERR_OK;
    if (VIPS_INIT("inferd")) {
        int rc = err_set(e, ERR_INTERNAL, "libvips init: %s", vips_error_buffer());
        vips_error_clear();
        return rc;
    }
    /* libvips' warnings (a HEIF's ignored colour profile, ...) go to our log, not stderr. */
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, decode__vips_warning,
                      NULL);
    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoad", TRUE);
    for (size_t i = 0; i < sizeof vision__loaders / sizeof vision__loaders[0]; i++)
        vips_operation_block_set(vision__loaders[i], FALSE);
    vips_concurrency_set(concurrency > 0 ? concurrency : 1);
    /* Every decode is of a new file: the operation cache would only pin memory. */
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vision__inited = 1;
    return ERR_OK;
}

void vision_shutdown(void)
{
    if (!vision__inited)
        return;
    vips_shutdown();
    vision__inited = 0;
}

/*
 * Names a format we refuse from its first bytes, or NULL: for a clear
 * "unsupported_format" instead of libvips' "not in a known format".
 */
static const char *decode__refused_format(const unsigned char *p, size_t n)
{
    static const struct {
        const char *magic;
        size_t len, off;
        const char *name;
    } sig[] = {
        {"%PDF", 4, 0, "PDF"},
        {"%!PS", 4, 0, "PostScript"},
        {"BM", 2, 0, "BMP"},
        {"\0\0\1\0", 4, 0, "ICO"},
        {"8BPS", 4, 0, "Photoshop PSD"},
        {"\xff\x0a", 2, 0, "JPEG XL"},
        {"\0\0\0\x0cJXL ", 8, 0, "JPEG XL"},
        {"\0\0\0\x0cjP  ", 8, 0, "JPEG 2000"},
        {"\xff\x4f\xff\x51", 4, 0, "JPEG 2000"},
        {"v/1\x01", 4, 0, "OpenEXR"},
        {"#?RADIANCE", 10, 0, "Radiance HDR"},
        {"#?RGBE", 6, 0, "Radiance HDR"},
        {"SIMPLE  =", 9, 0, "FITS"},
        {"MATLAB", 6, 0, "Matlab"},
        {"\x08\xf2\xa6\xb6", 4, 0, "VIPS"},
        {"\xb6\xa6\xf2\x08", 4, 0, "VIPS"},
        {"gimp xcf", 8, 0, "GIMP XCF"},
        {"FORM", 4, 0, "IFF"},
        {"DDS ", 4, 0, "DirectDraw Surface"},
    };
    for (size_t i = 0; i < sizeof sig / sizeof sig[0]; i++)
        if (n >= sig[i].off + sig[i].len && memcmp(p + sig[i].off, sig[i].magic, sig[i].len) == 0)
            return sig[i].name;
    if (n >= 2 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7')
        return "PNM/PPM";
    /* SVG: XML text that opens an <svg element within its first kilobyte. */
    size_t k = 0;
    while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n' ||
                     p[k] == 0xef || p[k] == 0xbb || p[k] == 0xbf))
        k++;
    if (k < n && p[k] == '<') {
        size_t lim = n < 1024 ? n : 1024;
        for (size_t i = k; i + 4 <= lim; i++)
            if (memcmp(p + i, "<svg", 4) == 0)
                return "SVG";
    }
    return NULL;
}

/* The same for a file: reads its first kilobyte. */
static const char *decode__refused_file(const char *path)
{
    unsigned char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 ? decode__refused_format(buf, (size_t)n) : NULL;
}

/* Copies libvips' pending error text into `e` (trimmed) and clears it. */
static int decode__vips_error(err_t *e, int code, const char *what)
{
    char buf[400];
    const char *msg = vips_error_buffer();
    size_t n;

    snprintf(buf, sizeof(buf), "%s", msg && *msg ? msg : "unknown libvips error");
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    vips_error_clear();
    return err_set(e, code, "%s: %s", what, buf);
}

int vision_image_new(int width, int height, vision_image **out, err_t *e)
{
    vision_image *img;

    *out = NULL;
    if (width <= 0 || height <= 0)
        return err_set(e, ERR_INVAL, "image size %dx%d", width, height);
    if ((long long)width * height > (1LL << 28))
        return err_set(e, ERR_TOOBIG, "image size %dx%d", width, height);
    img = calloc(1, sizeof(*img));
    if (!img)
        return err_set(e, ERR_NOMEM, "image struct");
    img->rgb = calloc((size_t)width * height, 3);
    if (!img->rgb) {
        free(img);
        return err_set(e, ERR_NOMEM, "image %dx%d", width, height);
    }
    img->width = img->orig_width = width;
    img->height = img->orig_height = height;
    *out = img;
    return ERR_OK;
}

void vision_image_free(vision_image *img)
{
    if (!img)
        return;
    vision_image_changed(img); /* frees the pyramid */
    free(img->rgb);
    free(img);
}

/*
 * Whether `p` is a JPEG cut short. libvips 8.14 only warns on a truncated
 * JPEG whatever fail_on says (libjpeg pads the missing rows with grey), so we
 * check ourselves: a complete JPEG has an EOI marker (FF D9) after its last
 * start-of-scan (FF DA). Inside entropy-coded data an FF byte is always
 * followed by 00 or a restart marker, so scanning back from the end and
 * taking whichever of the two comes first is exact for files cut mid-scan,
 * and trailing bytes after EOI (some cameras append data) do not matter.
 */
static int decode__jpeg_truncated(const unsigned char *p, size_t n)
{
    if (n < 4 || p[0] != 0xff || p[1] != 0xd8)
        return 0;
    for (size_t i = n - 1; i-- > 0;) {
        if (p[i] != 0xff)
            continue;
        if (p[i + 1] == 0xd9)
            return 0;
        if (p[i + 1] == 0xda)
            return 1;
    }
    return 1;
}

/* As decode__jpeg_truncated() for a file; 0 when it cannot be read (libvips will say why). */
static int decode__jpeg_file_truncated(const char *path)
{
    struct stat st;
    void *map;
    int fd, cut = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 4) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            cut = decode__jpeg_truncated(map, (size_t)st.st_size);
            munmap(map, (size_t)st.st_size);
        }
    }
    close(fd);
    return cut;
}

/* libvips' "eval" progress signal: kills the evaluation once the deadline has passed. */
static void decode__on_eval(VipsImage *image, VipsProgress *progress, void *deadline)
{
    (void)progress;
    if (clock_mono_ms() >= *(const int64_t *)deadline)
        vips_image_set_kill(image, TRUE);
}

/*
 * JPEG shrink-on-load that vips_thumbnail does not do. libjpeg decodes at 1/2,
 * 1/4 or 1/8 of the size in the DCT, for a fraction of the work, but
 * vips_thumbnail keeps a factor of two in hand for its own reduction: a
 * 4032-wide phone photo against --max-side 2048 was decoded at all 12 MP
 * (2016 is under 2048), and one against 1008 at 2016. So when a DCT scale
 * lands on max_side or within DECODE_SNAP below it, the JPEG is loaded at that
 * scale here and vips_thumbnail_image only turns it upright and into sRGB (no
 * resize: it is already the target size). Returns the scale, or 1 to leave
 * everything to vips_thumbnail (other formats, small photos, no scale close
 * enough), with the resulting longest side in *side.
 */
#define DECODE_SNAP 0.9
static int decode__jpeg_shrink(VipsImage *hdr, int w, int h, int max_side, int *side)
{
    const char *loader = NULL;
    int longest = w > h ? w : h;
    *side = max_side;
    if (longest <= max_side || !vips_image_get_typeof(hdr, VIPS_META_LOADER) ||
        vips_image_get_string(hdr, VIPS_META_LOADER, &loader) != 0 ||
        strncmp(loader, "jpegload", 8) != 0)
        return 1;
    for (int f = 8; f >= 2; f /= 2) {
        int s = (longest + f - 1) / f; /* libjpeg's scaled size */
        if (s <= max_side && s >= DECODE_SNAP * max_side) {
            *side = s;
            return f;
        }
    }
    return 1;
}

/*
 * The longest side other formats are shrunk to: half, a quarter or an
 * eighth of `longest` when that lands within DECODE_SNAP under max_side,
 * so that libvips shrinks by a whole factor (a box average) and skips its
 * lanczos reduce; max_side otherwise. A 12 MP HEIC against 2048: 2016 wide,
 * 798 against 921 ms a decode (the reduce of 12 MP was 13 % of it).
 */
static int decode__snap_side(int longest, int max_side)
{
    for (int f = 2; f <= 8; f *= 2)
        if (longest % f == 0 && longest / f <= max_side && longest / f >= DECODE_SNAP * max_side)
            return longest / f;
    return max_side;
}

/* Exactly one of `path` and `buf` is set. */
static int decode__run(const char *path, const void *buf, size_t len,
                       const vision_decode_opts *opts, vision_image **out, err_t *e)
{
    int max_side = opts && opts->max_side > 0 ? opts->max_side : VISION_DEFAULT_MAX_SIDE;
    long long max_pixels =
        opts && opts->max_pixels > 0 ? opts->max_pixels : VISION_DEFAULT_MAX_PIXELS;
    VipsImage *hdr = NULL, *t[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    VipsImage *cur;
    vision_image *img = NULL;
    int rc = ERR_OK;
    int orient = 1, ow, oh, ti = 0;
    int64_t need = 0, claimed = 0;
    void *pix = NULL;
    size_t pixlen = 0;

    *out = NULL;
    if (!vision__inited)
        return err_set(e, ERR_INTERNAL, "vision_init() was not called");
    if (buf && len == 0)
        return err_set(e, ERR_DECODE, "empty buffer");
    if (max_side > 65535)
        max_side = 65535;

    /* 1. Header only: refuse bombs on their declared size. */
    if (path)
        hdr = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    else
        hdr = vips_image_new_from_buffer(buf, len, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!hdr) {
        const char *fmt = path ? decode__refused_file(path) : decode__refused_format(buf, len);
        if (fmt != NULL) {
            vips_error_clear();
            return err_set(e, ERR_UNSUPPORTED_FORMAT, "%s is not accepted: inferd reads %s", fmt,
                           vision_accepted_formats);
        }
        if (strstr(vips_error_buffer(), "is blocked") != NULL) /* a loader we refuse */
            return decode__vips_error(e, ERR_UNSUPPORTED_FORMAT, "not a format inferd reads");
        return decode__vips_error(e, ERR_DECODE, "header");
    }
    ow = vips_image_get_width(hdr);
    oh = vips_image_get_height(hdr);
    if (vips_image_get_typeof(hdr, VIPS_META_ORIENTATION) &&
        vips_image_get_int(hdr, VIPS_META_ORIENTATION, &orient))
        orient = 1;
    need = decode__need(hdr, max_side);
    int target = max_side;
    int shrink = decode__jpeg_shrink(hdr, ow, oh, max_side, &target);
    const char *loader = NULL;
    if (!vips_image_get_typeof(hdr, VIPS_META_LOADER) ||
        vips_image_get_string(hdr, VIPS_META_LOADER, &loader) != 0)
        loader = "";
    int jpeg = strncmp(loader, "jpegload", 8) == 0, heif = strncmp(loader, "heifload", 8) == 0;
    g_object_unref(hdr);
    vips_error_clear();
    if (!jpeg)
        target = decode__snap_side(ow > oh ? ow : oh, max_side);
    if (ow <= 0 || oh <= 0)
        return err_set(e, ERR_DECODE, "image has size %dx%d", ow, oh);
    if ((long long)ow * oh > max_pixels)
        return err_set(e, ERR_TOOBIG, "image is %dx%d = %lld pixels, limit %lld", ow, oh,
                       (long long)ow * oh, max_pixels);
    if (path ? decode__jpeg_file_truncated(path) : decode__jpeg_truncated(buf, len))
        return err_set(e, ERR_DECODE, "JPEG is truncated (no end-of-image marker)");
    /* The memory the decode will hold: within the budget, shared with other decodes. */
    if ((rc = budget_acquire(need, opts ? opts->deadline_ms : 0, &claimed, e)) != ERR_OK)
        return rc;
    if (orient >= 5 && orient <= 8) {
        int s = ow;
        ow = oh;
        oh = s;
    }

    /*
     * A JPEG taken whole at a DCT scale (or at its own size) goes to
     * libjpeg directly (vision/jpeg.c: the same pixels, without libvips'
     * worker thread and copies), a HEIC landing on exactly half its size
     * (decode__snap_side) to libheif's YCbCr planes (vision/heif.c). Those
     * leave what they do not take (a JPEG that needs a resize after the DCT
     * scale, CMYK, a HEIC with alpha...) to libvips.
     */
    int64_t deadline_ms = opts ? opts->deadline_ms : 0;
    rc = VISION_JPEG_FALLBACK;
    if (jpeg && (shrink > 1 || (ow > oh ? ow : oh) <= max_side))
        rc = vision__jpeg_decode(path, buf, len, shrink, orient, deadline_ms, &img, e);
    else if (heif && (ow > oh ? ow : oh) == 2 * target)
        rc = vision__heif_decode_half(path, buf, len, orient, deadline_ms, &img, e);
    if (rc != VISION_JPEG_FALLBACK) {
        if (rc == ERR_OK) {
            img->orig_width = ow;
            img->orig_height = oh;
            *out = img;
        }
        budget_release(claimed);
        return rc;
    }
    rc = ERR_OK;

    /*
     * 2. Shrink-on-load + autorotate + sRGB. fail_on=warning turns a corrupt
     * file into an error rather than an image of garbage: libjpeg reports
     * corrupt entropy-coded data ("Corrupt JPEG data", "invalid Huffman code")
     * only as warnings and then returns pixels, so fail_on=error lets such a
     * file through (measured with libvips 8.14). The price: a JPEG with
     * harmless damage, such as junk after its end marker, is refused too; we
     * prefer a clear failure with libjpeg's message over embedding noise.
     * Truncation is caught by the marker check above, since 8.14's JPEG
     * loader fills missing rows with grey whatever fail_on says.
     */
    if (shrink > 1) {
        VipsImage *scaled =
            path
                ? vips_image_new_from_file(path, "shrink", shrink, "access", VIPS_ACCESS_SEQUENTIAL,
                                           "fail_on", VIPS_FAIL_ON_WARNING, NULL)
                : vips_image_new_from_buffer(buf, len, "", "shrink", shrink, "access",
                                             VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                             VIPS_FAIL_ON_WARNING, NULL);
        rc = scaled == NULL || vips_thumbnail_image(scaled, &t[0], target, "height", target, "size",
                                                    VIPS_SIZE_DOWN, NULL) != 0;
        if (scaled != NULL)
            g_object_unref(scaled);
    } else if (path) {
        rc = vips_thumbnail(path, &t[0], target, "height", target, "size", VIPS_SIZE_DOWN,
                            "fail_on", VIPS_FAIL_ON_WARNING, NULL);
    } else {
        rc = vips_thumbnail_buffer((void *)buf, len, &t[0], target, "height", target, "size",
                                   VIPS_SIZE_DOWN, "fail_on", VIPS_FAIL_ON_WARNING, NULL);
    }
    if (rc) {
        rc = decode__vips_error(e, ERR_DECODE, "decode");
        goto out;
    }
    cur = t[0];
    ti = 1;

    /* 3. Flatten alpha onto white, then force 8-bit sRGB with 3 bands. */
    if (vips_image_hasalpha(cur)) {
        double white[3] = {255, 255, 255};
        VipsArrayDouble *bg;
        int wb = cur->BandFmt == VIPS_FORMAT_USHORT ? 65535 : 255;

        white[0] = white[1] = white[2] = wb;
        bg = vips_array_double_new(white, cur->Bands - 1 >= 3 ? 3 : 1);
        rc = vips_flatten(cur, &t[ti], "background", bg, "max_alpha", (double)wb, NULL);
        vips_area_unref(VIPS_AREA(bg));
        if (rc) {
            rc = decode__vips_error(e, ERR_DECODE, "flatten");
            goto out;
        }
        cur = t[ti++];
    }
    if (vips_colourspace(cur, &t[ti], VIPS_INTERPRETATION_sRGB, NULL)) {
        rc = decode__vips_error(e, ERR_DECODE, "colourspace");
        goto out;
    }
    cur = t[ti++];
    if (cur->Bands != 3 || cur->BandFmt != VIPS_FORMAT_UCHAR) {
        VipsImage *b = NULL;
        if (cur->Bands > 3) {
            if (vips_extract_band(cur, &b, 0, "n", 3, NULL)) {
                rc = decode__vips_error(e, ERR_DECODE, "bands");
                goto out;
            }
        } else if (cur->Bands == 1) {
            VipsImage *in3[3] = {cur, cur, cur};
            if (vips_bandjoin(in3, &b, 3, NULL)) {
                rc = decode__vips_error(e, ERR_DECODE, "bands");
                goto out;
            }
        } else if (cur->Bands != 3) {
            rc = err_set(e, ERR_DECODE, "unsupported band count %d", cur->Bands);
            goto out;
        }
        if (b) {
            t[ti] = b;
            cur = t[ti++];
        }
        if (cur->BandFmt != VIPS_FORMAT_UCHAR) {
            if (vips_cast(cur, &t[ti], VIPS_FORMAT_UCHAR, NULL)) {
                rc = decode__vips_error(e, ERR_DECODE, "cast");
                goto out;
            }
            cur = t[ti++];
        }
    }

    /*
     * 4. Run the pipeline into memory. Truncation errors surface here. With a
     * deadline, libvips reports progress on `cur` as it computes and the
     * handler kills the evaluation once the deadline has passed.
     */
    gulong sig = 0;
    int64_t deadline = opts ? opts->deadline_ms : 0;
    if (deadline > 0) {
        if (clock_mono_ms() >= deadline) {
            rc = err_set(e, ERR_TIMEOUT, "decode: the deadline passed before decoding");
            goto out;
        }
        vips_image_set_progress(cur, TRUE);
        sig = g_signal_connect(cur, "eval", G_CALLBACK(decode__on_eval), &deadline);
    }
    pix = vips_image_write_to_memory(cur, &pixlen);
    if (sig != 0)
        g_signal_handler_disconnect(cur, sig);
    if (!pix && deadline > 0 && clock_mono_ms() >= deadline) {
        vips_error_clear();
        rc = err_set(e, ERR_TIMEOUT, "decode: stopped at the job's deadline");
        goto out;
    }
    if (!pix) {
        rc = decode__vips_error(e, ERR_DECODE, "decode");
        goto out;
    }
    if (pixlen != (size_t)vips_image_get_width(cur) * vips_image_get_height(cur) * 3) {
        rc = err_set(e, ERR_INTERNAL, "decoded %zu bytes for %dx%d", pixlen,
                     vips_image_get_width(cur), vips_image_get_height(cur));
        goto out;
    }
    img = calloc(1, sizeof(*img));
    if (!img) {
        rc = err_set(e, ERR_NOMEM, "image struct");
        goto out;
    }
    img->width = vips_image_get_width(cur);
    img->height = vips_image_get_height(cur);
    /* The loader may disagree with the header on orientation; trust the pixels. */
    if ((img->width > img->height) != (ow > oh) && ow != oh) {
        int s = ow;
        ow = oh;
        oh = s;
    }
    img->orig_width = ow;
    img->orig_height = oh;
    /*
     * libvips' buffer becomes the image's, no copy (an 8 MB memcpy and its
     * page faults per 12 MP photo). It comes from g_malloc, which is the C
     * library's malloc since GLib 2.46 (Debian 12 has 2.74), so
     * vision_image_free()'s plain free() releases it.
     */
    img->rgb = pix;
    pix = NULL;
    *out = img;
    rc = ERR_OK;
out:
    g_free(pix);
    for (int i = 5; i >= 0; i--)
        if (t[i])
            g_object_unref(t[i]);
    budget_release(claimed);
    return rc;
}

int vision_decode_file(const char *path, const vision_decode_opts *opts, vision_image **out,
                       err_t *e)
{
    if (!path || !out)
        return err_set(e, ERR_INVAL, "NULL argument");
    return decode__run(path, NULL, 0, opts, out, e);
}

int vision_decode_buffer(const void *buf, size_t len, const vision_decode_opts *opts,
                         vision_image **out, err_t *e)
{
    if (!buf || !out)
        return err_set(e, ERR_INVAL, "NULL argument");
    return decode__run(NULL, buf, len, opts, out, e);
}

/* libvips' buffer as our own malloc'd copy (callers free() it). */
static unsigned char *own_buffer(void *vbuf, size_t len)
{
    unsigned char *out = xmalloc(len > 0 ? len : 1);
    memcpy(out, vbuf, len);
    g_free(vbuf);
    return out;
}

int vision_thumbnail_jpeg(const vision_image *img, int max_side, unsigned char **out, size_t *len,
                          int *w, int *h, err_t *e)
{
    *out = NULL;
    *len = 0;
    if (img == NULL || img->rgb == NULL || max_side < 1)
        return err_set(e, ERR_INVAL, "thumbnail: no image");
    /*
     * Area-averaged (vision_resample) from the smallest pyramid level still
     * at least max_side on its longer side, then only encoded by libvips:
     * 2016x1344 to 512 costs 5-9 ms with the pyramid's build, which the
     * models then reuse, against 17-22 ms for vips_thumbnail_image on the
     * whole image and the build apart (bench/photos' photos, 2-core VM).
     */
    int nlevels = 0, l = 0;
    const vision_level *lv = vision_image_levels(img, &nlevels, e);
    if (lv == NULL)
        return ERR_NOMEM;
    while (l + 1 < nlevels &&
           (lv[l + 1].width > lv[l + 1].height ? lv[l + 1].width : lv[l + 1].height) >= max_side)
        l++;
    int sw = lv[l].width, sh = lv[l].height, longest = sw > sh ? sw : sh;
    int tw = sw, th = sh;
    if (longest > max_side) {
        tw = (int)((double)sw * max_side / longest + 0.5);
        th = (int)((double)sh * max_side / longest + 0.5);
        tw = tw < 1 ? 1 : tw;
        th = th < 1 ? 1 : th;
    }
    size_t n = (size_t)tw * (size_t)th * 3;
    uint8_t *px = (uint8_t *)lv[l].rgb;
    if (tw != sw || th != sh) {
        static const float black[3] = {0, 0, 0};
        float *f = malloc(n * sizeof *f);
        px = malloc(n);
        if (f == NULL || px == NULL) {
            free(f);
            free(px);
            return err_set(e, ERR_NOMEM, "thumbnail %dx%d", tw, th);
        }
        vision_resample(lv[l].rgb, sw, sh, 0, 0, (float)sw, (float)sh, tw, th, black, f);
        for (size_t i = 0; i < n; i++)
            px[i] = (uint8_t)(f[i] + 0.5f);
        free(f);
    }
    VipsImage *in = vips_image_new_from_memory(px, n, tw, th, 3, VIPS_FORMAT_UCHAR);
    void *buf = NULL;
    int rc = ERR_OK;
    if (in == NULL || vips_jpegsave_buffer(in, &buf, len, "Q", 75, "strip", TRUE, NULL) != 0) {
        rc = err_set(e, ERR_INTERNAL, "thumbnail: %s", vips_error_buffer());
        vips_error_clear();
    } else {
        *w = tw;
        *h = th;
        *out = own_buffer(buf, *len);
    }
    if (in != NULL)
        g_object_unref(in);
    if (px != lv[l].rgb)
        free(px);
    return rc;
}

int vision_jpeg_crop(const void *jpeg, size_t len, const float box[4], int max_side,
                     unsigned char **out, size_t *outlen, err_t *e)
{
    *out = NULL;
    *outlen = 0;
    VipsImage *in = vips_image_new_from_buffer(jpeg, len, "", "access", VIPS_ACCESS_RANDOM, NULL);
    if (in == NULL) {
        int rc = err_set(e, ERR_DECODE, "crop: %s", vips_error_buffer());
        vips_error_clear();
        return rc;
    }
    int W = vips_image_get_width(in), H = vips_image_get_height(in);
    float fx1 = box[0] < 0 ? 0 : box[0], fy1 = box[1] < 0 ? 0 : box[1];
    float fx2 = box[2] > 1 ? 1 : box[2], fy2 = box[3] > 1 ? 1 : box[3];
    int x = (int)(fx1 * (float)W), y = (int)(fy1 * (float)H);
    int cw = (int)(fx2 * (float)W + 0.5f) - x, ch = (int)(fy2 * (float)H + 0.5f) - y;
    if (cw < 1 || ch < 1 || x >= W || y >= H) {
        g_object_unref(in);
        return err_set(e, ERR_INVAL, "crop: empty region");
    }
    VipsImage *cut = NULL, *th = NULL;
    void *buf = NULL;
    int rc = ERR_OK;
    if (vips_extract_area(in, &cut, x, y, cw, ch, NULL) != 0 ||
        vips_thumbnail_image(cut, &th, max_side, "height", max_side, "size", VIPS_SIZE_DOWN,
                             NULL) != 0 ||
        vips_jpegsave_buffer(th, &buf, outlen, "Q", 80, "strip", TRUE, NULL) != 0) {
        rc = err_set(e, ERR_INTERNAL, "crop: %s", vips_error_buffer());
        vips_error_clear();
    } else {
        *out = own_buffer(buf, *outlen);
    }
    if (th != NULL)
        g_object_unref(th);
    if (cut != NULL)
        g_object_unref(cut);
    g_object_unref(in);
    return rc;
}
