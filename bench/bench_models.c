/*
 * bench_models.c — how long each default model's ONNX Runtime run takes, and
 * how much our own pre- and postprocessing adds to it, on real inputs.
 *
 * For each model, N rounds on real photos, each round timed in parts:
 *
 *   face detector    pre:  the image pyramid's build, then every view of
 *                          vision_detect_plan() (the whole image letterboxed,
 *                          then the tiles) sampled to 256x256 into the tensor
 *                    run:  one OrtRun per view
 *                    post: anchor decoding per view, then weighted NMS over
 *                          all views' detections
 *   face embedder    pre:  the crop of every face (found on the photo by the
 *                          detector, so real boxes and keypoints) as the
 *                          manifest says (vision_face_map), sampled straight
 *                          into the tensor (vision_warp_tensor)
 *                    run:  one OrtRun on the batch of faces
 *                    post: L2 normalisation of each embedding, and the
 *                          manifest's centre taken out (normalised again)
 *                    The default embedder, then mobileface (the
 *                          alternative) when it is provisioned; the units
 *                          line gives the time per face.
 *   image embedder   pre:  the image pyramid's build, then resize (stretch)
 *                          into the tensor
 *                    run:  one OrtRun (embedding + nsfw outputs)
 *                    post: L2 normalisation
 *
 * Decoding is excluded: it is libvips' cost, and the same for every model.
 * The pyramid (vision_image_levels) is built once per image and shared by
 * all models, but we charge its full build to both the detector and the
 * image embedder, as if each ran alone: the cache is dropped before each of
 * their rounds. The face embedder is not charged: its keypoints come from
 * the detector, which has always built the pyramid by then. The build alone
 * is also printed on stderr.
 *
 * The detector's parts are timed on vision_detect_plan(), the plan
 * vision_detect_faces() runs; its end-to-end time (pyramid included) is
 * printed on stderr next to the sum of the parts, with a warning when they
 * differ by more than 25 %.
 *
 * ONNX Runtime allows one environment per process, so one process measures
 * one intra-op thread count (--threads). bench/models runs this binary once
 * per thread count and prints the side-by-side table; `make bench` runs it
 * alone, at 1 thread.
 *
 * Output: a human-readable table, or with --tsv one line per model:
 *   model NAME role ROLE threads T runs N run_med R run_p90 R90 pre_med P
 *   post_med Q prepost_pct PCT e2e_med E units U
 * (times in ms, per image; PCT = (pre_med + post_med) / run_med * 100).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/infer.h"
#include "pipeline/analyze.h"
#include "vision/vision.h"
#include "util/xalloc.h"

#define BENCH_MAX_VIEWS VISION_MAX_VIEWS
#define BENCH_PER_VIEW 128
#define BENCH_MAX_FACES 16

/* Group photos under --testdata: the detector and face embedder see real faces. */
static const char *const bench_images[] = {
    "faceapi/sample1.jpg",
    "faceapi/sample3.jpg",
    "faceapi/sample5.jpg",
};
#define BENCH_NIMAGES ((int)(sizeof bench_images / sizeof bench_images[0]))

typedef struct {
    double *run, *pre, *post, *e2e; /* one entry per round, ms */
    int n;
} bench_times;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, const err_t *e)
{
    fprintf(stderr, "bench_models: %s: %s\n", what, e ? e->msg : "failed");
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of v[0..n), nearest rank; sorts v. */
static double quantile(double *v, int n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void times_init(bench_times *t, int rounds)
{
    t->run = calloc((size_t)rounds, sizeof(double));
    t->pre = calloc((size_t)rounds, sizeof(double));
    t->post = calloc((size_t)rounds, sizeof(double));
    t->e2e = calloc((size_t)rounds, sizeof(double));
    if (!t->run || !t->pre || !t->post || !t->e2e)
        die("out of memory", NULL);
    t->n = 0;
}

static void times_free(bench_times *t)
{
    free(t->run);
    free(t->pre);
    free(t->post);
    free(t->e2e);
}

static void bench_detector(infer_model *det, vision_image **imgs, bench_times *t, int rounds)
{
    static const char *roles[4] = {"scores_16", "boxes_16", "scores_8", "boxes_8"};
    static const size_t sizes[4] = {VISION_BF_ANCHORS_16, VISION_BF_ANCHORS_16 * VISION_BF_REGS,
                                    VISION_BF_ANCHORS_8, VISION_BF_ANCHORS_8 * VISION_BF_REGS};
    static const float black[3] = {0, 0, 0};
    const model_manifest *m = infer_model_manifest(det);
    size_t in_sz = (size_t)VISION_BF_INPUT * VISION_BF_INPUT * 3;
    float *tensors = malloc(BENCH_MAX_VIEWS * in_sz * sizeof(float));
    float *outs_buf =
        malloc(BENCH_MAX_VIEWS * (sizes[0] + sizes[1] + sizes[2] + sizes[3]) * sizeof(float));
    vision_face *all = malloc(BENCH_MAX_VIEWS * BENCH_PER_VIEW * sizeof(vision_face));
    err_t e;

    if (!tensors || !outs_buf || !all)
        die("out of memory", NULL);
    for (int r = 0; r < rounds; r++) {
        vision_image *img = imgs[r % BENCH_NIMAGES];
        vision_view views[VISION_MAX_VIEWS];
        int nviews = vision_detect_plan(img->width, img->height, 1, views, VISION_MAX_VIEWS);
        size_t per_view = sizes[0] + sizes[1] + sizes[2] + sizes[3];

        vision_image_changed(img); /* the first view rebuilds the pyramid, timed */
        double t0 = now_ms();
        for (int v = 0; v < nviews; v++)
            if (vision_preprocess_region(img, m, views[v].x0, views[v].y0, views[v].side,
                                         views[v].side, black, tensors + (size_t)v * in_sz, &e))
                die("detector preprocessing", &e);
        double t1 = now_ms();
        for (int v = 0; v < nviews; v++) {
            infer_output o[4];
            float *p = outs_buf + (size_t)v * per_view;
            memset(o, 0, sizeof o);
            for (int k = 0; k < 4; k++) {
                o[k].role = roles[k];
                o[k].data = p;
                o[k].cap = sizes[k];
                p += sizes[k];
            }
            if (infer_run(det, tensors + (size_t)v * in_sz, 1, o, 4, &e) != ERR_OK)
                die("detector run", &e);
        }
        double t2 = now_ms();
        int nall = 0;
        for (int v = 0; v < nviews; v++) {
            const float *p = outs_buf + (size_t)v * per_view;
            vision_xform xf = {views[v].x0, views[v].y0, views[v].side / VISION_BF_INPUT};
            nall += vision_bf_decode(p, p + sizes[0], p + sizes[0] + sizes[1],
                                     p + sizes[0] + sizes[1] + sizes[2], 0.75f, &xf, all + nall,
                                     BENCH_PER_VIEW);
        }
        if (vision_nms_weighted(all, nall, 0.3f) < 0)
            die("nms", NULL);
        double t3 = now_ms();

        vision_face *faces = NULL;
        int nfaces = 0;
        vision_image_changed(img);
        double t4 = now_ms();
        if (vision_detect_faces(det, img, NULL, &faces, &nfaces, &e) != ERR_OK)
            die("vision_detect_faces", &e);
        t->e2e[t->n] = now_ms() - t4;
        free(faces);
        t->pre[t->n] = t1 - t0;
        t->run[t->n] = t2 - t1;
        t->post[t->n] = t3 - t2;
        t->n++;
    }
    free(tensors);
    free(outs_buf);
    free(all);
}

static void bench_face_embedder(infer_model *emb, vision_image **imgs, vision_face **faces,
                                const int *nfaces, bench_times *t, int rounds)
{
    const model_manifest *m = infer_model_manifest(emb);
    int size = m->width, dim = m->embedding_dim;
    size_t in_sz = infer_input_size(emb);
    float *in = malloc(BENCH_MAX_FACES * in_sz * sizeof(float));
    float *out = malloc((size_t)BENCH_MAX_FACES * (size_t)dim * sizeof(float));
    err_t e;

    (void)size;
    if (!in || !out)
        die("out of memory", NULL);
    for (int r = 0; r < rounds; r++) {
        int k = r % BENCH_NIMAGES;
        int n = nfaces[k] < BENCH_MAX_FACES ? nfaces[k] : BENCH_MAX_FACES;
        /* As pipeline/analyze.c: detections in original pixels, scaled to the decoded image. */
        float sx = (float)imgs[k]->width / (float)imgs[k]->orig_width;
        float sy = (float)imgs[k]->height / (float)imgs[k]->orig_height;
        double t0 = now_ms();
        for (int i = 0; i < n; i++) {
            vision_face f = faces[k][i];
            float M[2][3];
            vision_face_scale(&f, sx, sy);
            if (vision_face_map(m, &f, M, &e) ||
                vision_warp_tensor(imgs[k], (const float(*)[3])M, m, in + (size_t)i * in_sz, &e))
                die("face preprocessing", &e);
        }
        double t1 = now_ms();
        infer_output o = {.role = "embedding", .data = out, .cap = (size_t)n * (size_t)dim};
        if (infer_run(emb, in, n, &o, 1, &e) != ERR_OK)
            die("face embedder run", &e);
        double t2 = now_ms();
        for (int i = 0; i < n; i++) {
            float *v = out + (size_t)i * (size_t)dim;
            infer_l2_normalize(v, (size_t)dim);
            if (m->ncenter > 0) {
                for (int q = 0; q < m->ncenter; q++)
                    v[q] -= m->center[q];
                infer_l2_normalize(v, (size_t)dim);
            }
        }
        double t3 = now_ms();
        t->pre[t->n] = t1 - t0;
        t->run[t->n] = t2 - t1;
        t->post[t->n] = t3 - t2;
        t->e2e[t->n] = t3 - t0;
        t->n++;
    }
    free(in);
    free(out);
}

static void bench_image_embedder(infer_model *emb, vision_image **imgs, bench_times *t, int rounds)
{
    const model_manifest *m = infer_model_manifest(emb);
    int dim = m->embedding_dim;
    float *in = malloc(infer_input_size(emb) * sizeof(float));
    float *vec = malloc((size_t)dim * sizeof(float));
    float nsfw[MANIFEST_MAX_LABELS];
    int has_nsfw = manifest_output_by_role(m, "nsfw") != NULL;
    err_t e;

    if (!in || !vec)
        die("out of memory", NULL);
    for (int r = 0; r < rounds; r++) {
        vision_image *img = imgs[r % BENCH_NIMAGES];
        vision_image_changed(img); /* vision_preprocess() rebuilds the pyramid, timed */
        double t0 = now_ms();
        if (vision_preprocess(img, m, 0, in, NULL, &e) != ERR_OK)
            die("image preprocessing", &e);
        double t1 = now_ms();
        infer_output o[2] = {
            {.role = "embedding", .data = vec, .cap = (size_t)dim},
            {.role = "nsfw", .data = nsfw, .cap = MANIFEST_MAX_LABELS},
        };
        if (infer_run(emb, in, 1, o, has_nsfw ? 2 : 1, &e) != ERR_OK)
            die("image embedder run", &e);
        double t2 = now_ms();
        infer_l2_normalize(vec, (size_t)dim);
        double t3 = now_ms();
        t->pre[t->n] = t1 - t0;
        t->run[t->n] = t2 - t1;
        t->post[t->n] = t3 - t2;
        t->e2e[t->n] = t3 - t0;
        t->n++;
    }
    free(in);
    free(vec);
}

/* Median time of building img's pyramid from scratch, ms. */
static double bench_pyramid(vision_image *img, int rounds)
{
    double *v = calloc((size_t)rounds, sizeof(double)), med;
    err_t e;
    int n;

    if (!v)
        die("out of memory", NULL);
    for (int r = 0; r < rounds; r++) {
        vision_image_changed(img);
        double t0 = now_ms();
        if (!vision_image_levels(img, &n, &e))
            die("pyramid", &e);
        v[r] = now_ms() - t0;
    }
    med = quantile(v, rounds, 0.5);
    free(v);
    return med;
}

static void report(const char *name, const char *role, const char *units, int threads,
                   bench_times *t, int tsv)
{
    double run_med = quantile(t->run, t->n, 0.5), run_p90 = quantile(t->run, t->n, 0.9);
    double pre = quantile(t->pre, t->n, 0.5), post = quantile(t->post, t->n, 0.5);
    double e2e = quantile(t->e2e, t->n, 0.5);
    double pct = run_med > 0 ? (pre + post) / run_med * 100 : 0;

    if (tsv)
        printf("model %s role %s threads %d runs %d run_med %.3f run_p90 %.3f pre_med %.3f "
               "post_med %.3f prepost_pct %.2f e2e_med %.3f units %s\n",
               name, role, threads, t->n, run_med, run_p90, pre, post, pct, e2e, units);
    else
        printf("%-20s %-15s %8.2f %8.2f %8.3f %8.3f %7.1f %%  %s  %s\n", name, role, run_med,
               run_p90, pre, post, pct, pct <= 10 ? "ok  " : "OVER", units);
}

static void usage(FILE *f)
{
    fputs("usage: bench_models [--models-dir DIR] [--testdata DIR] [--threads N] [--runs N]\n"
          "                    [--spin] [--tsv]\n"
          "Times each default model's ONNX Runtime run (median, p90) and our pre+post\n"
          "processing around it, per image, at N intra-op threads (default 1).\n"
          "bench/models runs it at 1 and 2 threads and prints them side by side.\n",
          f);
}

int main(int argc, char **argv)
{
    const char *models_dir = "var/models", *testdata = ".deps/testdata";
    int threads = 1, rounds = 30, spin = 0, tsv = 0;
    xalloc_keep_freed(); /* as the inferd binary does */
    static const struct option lopts[] = {
        {"models-dir", required_argument, 0, 'm'},
        {"threads", required_argument, 0, 't'},
        {"runs", required_argument, 0, 'n'},
        {"spin", no_argument, 0, 's'},
        {"tsv", no_argument, 0, 'T'},
        {"testdata", required_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'm':
            models_dir = optarg;
            break;
        case 't':
            threads = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || threads < 1 || threads > 256) {
                fprintf(stderr, "bench_models: --threads: expected 1..256, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'n':
            rounds = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || rounds < 1 || rounds > 100000) {
                fprintf(stderr, "bench_models: --runs: expected 1..100000, got \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'd':
            testdata = optarg;
            break;
        case 's':
            spin = 1;
            break;
        case 'T':
            tsv = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }

    err_t e;
    err_clear(&e);
    if (vision_init(1, &e) != ERR_OK)
        die("vision_init", &e);
    infer_env *env = NULL;
    infer_env_opts eo = {.intra_op_threads = threads, .allow_spinning = spin};
    if (infer_env_new(&eo, &env, &e) != ERR_OK)
        die("infer_env_new", &e);
    /* The three defaults, then the alternative face embedder when it is there. */
    const char *names[4] = {PIPELINE_DEFAULT_DETECTOR, PIPELINE_DEFAULT_FACE_EMBEDDER,
                            PIPELINE_DEFAULT_IMAGE_EMBEDDER, "mobileface"};
    infer_model *models[4] = {NULL, NULL, NULL, NULL};
    int nmodels = 4;
    for (int i = 0; i < 4; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", models_dir, names[i]);
        if (infer_model_load(env, dir, 0, &models[i], &e) == ERR_OK)
            continue;
        if (i < 3)
            die(dir, &e);
        nmodels = 3;
    }

    /* Real inputs, decoded once (decoding is not what is measured). */
    vision_image *imgs[BENCH_NIMAGES];
    vision_face *faces[BENCH_NIMAGES];
    int nfaces[BENCH_NIMAGES], total_faces = 0;
    for (int k = 0; k < BENCH_NIMAGES; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", testdata, bench_images[k]);
        if (vision_decode_file(path, NULL, &imgs[k], &e) != ERR_OK)
            die(path, &e);
        if (vision_detect_faces(models[0], imgs[k], NULL, &faces[k], &nfaces[k], &e) != ERR_OK)
            die("vision_detect_faces", &e);
        if (nfaces[k] == 0) {
            fprintf(stderr, "bench_models: no face found in %s\n", path);
            return 1;
        }
        total_faces += nfaces[k];
    }

    /* Warm-up: first runs allocate ORT's arenas and are not representative. */
    bench_times warm[4], t[4];
    for (int i = 0; i < nmodels; i++) {
        times_init(&warm[i], 3);
        times_init(&t[i], rounds);
    }
    bench_detector(models[0], imgs, &warm[0], 2);
    bench_face_embedder(models[1], imgs, faces, nfaces, &warm[1], 2);
    bench_image_embedder(models[2], imgs, &warm[2], 2);
    bench_detector(models[0], imgs, &t[0], rounds);
    bench_face_embedder(models[1], imgs, faces, nfaces, &t[1], rounds);
    bench_image_embedder(models[2], imgs, &t[2], rounds);
    if (nmodels == 4) {
        bench_face_embedder(models[3], imgs, faces, nfaces, &warm[3], 2);
        bench_face_embedder(models[3], imgs, faces, nfaces, &t[3], rounds);
    }

    char units[4][128];
    vision_view views[VISION_MAX_VIEWS];
    snprintf(units[0], sizeof units[0], "image (%d views of a %dx%d photo)",
             vision_detect_plan(imgs[0]->width, imgs[0]->height, 1, views, VISION_MAX_VIEWS),
             imgs[0]->width, imgs[0]->height);
    double per_image = (double)total_faces / BENCH_NIMAGES;
    for (int i = 1; i < nmodels; i += 2) {
        /* quantile() sorts, so the medians are read before report() reads them again. */
        double run = quantile(t[i].run, t[i].n, 0.5);
        double pp = quantile(t[i].pre, t[i].n, 0.5) + quantile(t[i].post, t[i].n, 0.5);
        snprintf(units[i], sizeof units[i],
                 "image (a batch of %.1f faces on average: run %.2f ms, pre+post %.3f ms a face)",
                 per_image, run / per_image, pp / per_image);
    }
    snprintf(units[2], sizeof units[2], "image");
    for (int i = 0; i < nmodels && tsv; i++)
        for (char *p = units[i]; *p != '\0'; p++)
            if (*p == ' ')
                *p = '_';

    if (!tsv) {
        printf("bench_models: %d rounds over %d photos, %d intra-op thread(s), spinning %s, "
               "ONNX Runtime %s\n",
               rounds, BENCH_NIMAGES, threads, spin ? "on" : "off", infer_runtime_version());
        printf("%-20s %-15s %8s %8s %8s %8s %9s  %s\n", "model", "role", "run med", "run p90",
               "pre med", "post med", "pre+post", "target <= 10 % of run");
    }
    static const char *roles[4] = {"face_detection", "face_embedding", "image_embedding",
                                   "face_embedding"};
    for (int i = 0; i < nmodels; i++)
        report(infer_model_manifest(models[i])->name, roles[i], units[i], threads, &t[i], tsv);
    if (!tsv)
        printf("(times in ms; bench/models prints 1 vs 2 threads side by side)\n");
    /* The parts must add up to the real vision_detect_faces(). */
    double parts = quantile(t[0].pre, t[0].n, 0.5) + quantile(t[0].run, t[0].n, 0.5) +
                   quantile(t[0].post, t[0].n, 0.5);
    double e2e = quantile(t[0].e2e, t[0].n, 0.5);
    fflush(stdout);
    fprintf(stderr, "bench_models: detector: vision_detect_faces %.2f ms, sum of parts %.2f ms\n",
            e2e, parts);
    if (fabs(e2e - parts) > 0.25 * e2e)
        fprintf(stderr, "bench_models: WARNING: the parts differ from vision_detect_faces by "
                        "more than 25 %%: the bench no longer times what detect.c does\n");
    fprintf(stderr, "bench_models: image pyramid build (in the detector's and image embedder's "
                    "pre): median %.3f ms on a %dx%d photo\n",
            bench_pyramid(imgs[0], rounds), imgs[0]->width, imgs[0]->height);

    for (int i = 0; i < nmodels; i++) {
        times_free(&warm[i]);
        times_free(&t[i]);
    }
    for (int k = 0; k < BENCH_NIMAGES; k++) {
        free(faces[k]);
        vision_image_free(imgs[k]);
    }
    for (int i = 0; i < 4; i++)
        infer_model_free(models[i]);
    infer_env_free(env);
    vision_shutdown();
    return 0;
}
