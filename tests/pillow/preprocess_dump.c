/*
 * tests/pillow/preprocess_dump.c — a test hook: runs inferd's own decode and
 * image-embedder preprocessing (vision_decode_file + vision_preprocess) on
 * one photo and writes what it made, for tests/pillow/pillow_parity.py to
 * compare with Pillow; optionally times the preprocessing.
 *
 *   preprocess_dump (--clip-dir DIR | --resize NAME --size N) [--rgb OUT.rgb]
 *                   [--bench RUNS] IMAGE OUT.f32
 *
 * --clip-dir takes the manifest clip.c synthesises for a CLIP directory
 * (only its config files are read); --resize/--size a plain NCHW manifest
 * with mean 0 and std 1. OUT.f32 receives the tensor (float32, native
 * order), --rgb the decoded image (packed 8-bit RGB). One JSON line on
 * stdout says the sizes, layout, mean and std (0..255 units) and the resize;
 * with --bench, the median thread CPU milliseconds of RUNS runs of this
 * manifest's resize and of "area" (the pyramid rebuilt each run, and
 * reused).
 * Exit status 0 on success, 1 on any failure (said on stderr).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/clip.h"
#include "infer/manifest.h"
#include "util/err.h"
#include "vision/vision.h"

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        if (f)
            fclose(f);
        fprintf(stderr, "preprocess_dump: cannot write %s\n", path);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* This thread's CPU time in ms: steadier than wall time on a shared machine. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median ms of `runs` vision_preprocess calls; `fresh`: drop the pyramid before each. */
static double bench(vision_image *img, const model_manifest *m, float *t, int runs, int fresh)
{
    double *ms = malloc(sizeof(double) * (size_t)runs), med;
    err_t e;
    if (!ms)
        return -1;
    for (int r = 0; r < runs; r++) {
        if (fresh)
            vision_image_changed(img);
        double t0 = cpu_ms();
        if (vision_preprocess(img, m, 0, t, NULL, &e)) {
            free(ms);
            return -1;
        }
        ms[r] = cpu_ms() - t0;
    }
    qsort(ms, (size_t)runs, sizeof(double), cmp_double);
    med = ms[runs / 2];
    free(ms);
    return med;
}

int main(int argc, char **argv)
{
    const char *clip_dir = NULL, *resize = NULL, *rgb_out = NULL, *img_path, *out_path;
    int size = 0, runs = 0, ai = 1;
    model_manifest m;
    vision_image *img = NULL;
    err_t e;

    for (; ai + 1 < argc && strncmp(argv[ai], "--", 2) == 0; ai += 2) {
        if (strcmp(argv[ai], "--clip-dir") == 0)
            clip_dir = argv[ai + 1];
        else if (strcmp(argv[ai], "--resize") == 0)
            resize = argv[ai + 1];
        else if (strcmp(argv[ai], "--size") == 0)
            size = atoi(argv[ai + 1]);
        else if (strcmp(argv[ai], "--rgb") == 0)
            rgb_out = argv[ai + 1];
        else if (strcmp(argv[ai], "--bench") == 0)
            runs = atoi(argv[ai + 1]);
        else
            break;
    }
    if (argc - ai != 2 || (!clip_dir && (!resize || size <= 0))) {
        fprintf(stderr, "usage: preprocess_dump (--clip-dir DIR | --resize NAME --size N) "
                        "[--rgb OUT.rgb] [--bench RUNS] IMAGE OUT.f32\n");
        return 1;
    }
    img_path = argv[ai];
    out_path = argv[ai + 1];
    if (clip_dir) {
        if (clip_visual_manifest(clip_dir, &m, &e)) {
            fprintf(stderr, "preprocess_dump: %s\n", e.msg);
            return 1;
        }
    } else {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"name\":\"dump\",\"task\":\"image_embedding\",\"family\":\"clip\","
                 "\"file\":\"model.onnx\",\"input\":{\"name\":\"image\",\"layout\":\"NCHW\","
                 "\"width\":%d,\"height\":%d,\"channels\":3,\"resize\":\"%s\"},"
                 "\"outputs\":{\"embedding\":\"embedding\"},\"embedding_dim\":4}",
                 size, size, resize);
        if (manifest_parse(json, strlen(json), "--resize", &m, &e)) {
            fprintf(stderr, "preprocess_dump: %s\n", e.msg);
            return 1;
        }
    }
    if (vision_init(1, &e) || vision_decode_file(img_path, NULL, &img, &e)) {
        fprintf(stderr, "preprocess_dump: %s: %s\n", img_path, e.msg);
        manifest_clear(&m);
        return 1;
    }
    size_t n = (size_t)m.width * m.height * 3;
    float *t = malloc(n * sizeof(float));
    int rc = 1;
    if (!t)
        goto out;
    if (vision_preprocess(img, &m, 0, t, NULL, &e)) {
        fprintf(stderr, "preprocess_dump: %s\n", e.msg);
        goto out;
    }
    if (write_file(out_path, t, n * sizeof(float)) ||
        (rgb_out && write_file(rgb_out, img->rgb, (size_t)img->width * img->height * 3)))
        goto out;
    printf("{\"image\":[%d,%d],\"input\":[%d,%d],\"layout\":\"%s\",\"resize\":\"%s\","
           "\"mean\":[%.9g,%.9g,%.9g],\"std\":[%.9g,%.9g,%.9g]",
           img->width, img->height, m.width, m.height, m.layout == LAYOUT_NCHW ? "NCHW" : "NHWC",
           manifest_resize_name(m.resize), (double)m.mean[0], (double)m.mean[1], (double)m.mean[2],
           (double)m.std[0], (double)m.std[1], (double)m.std[2]);
    if (runs > 0) {
        model_manifest area = m;
        area.resize = RESIZE_AREA;
        printf(",\"bench_runs\":%d,\"ms_mode\":%.3f,\"ms_area_fresh_pyramid\":%.3f,"
               "\"ms_area_cached_pyramid\":%.3f",
               runs, bench(img, &m, t, runs, 0), bench(img, &area, t, runs, 1),
               bench(img, &area, t, runs, 0));
    }
    printf("}\n");
    rc = 0;
out:
    free(t);
    vision_image_free(img);
    manifest_clear(&m);
    vision_shutdown();
    return rc;
}
