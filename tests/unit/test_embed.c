/*
 * test_embed.c — do the default models' embeddings mean something? The whole
 * pipeline (pipeline_new / pipeline_analyze_buffer) runs with the real
 * provisioned models on real photos, and the embeddings are checked for the
 * property search depends on: a photo or face edited the way people edit
 * them (mirrored, re-cropped, re-encoded, resized) stays closer to its
 * original than anything else in the collection is.
 *
 *   face embedding   each face of the face-api group photos against its
 *                    mirrored, re-cropped and JPEG-60 copies, re-detected in
 *                    the edited image and matched by box; every same-face
 *                    cosine must beat every different-face cosine of the
 *                    same photo (the hardest negatives we have: same light,
 *                    same camera, same resolution).
 *   image embedding  for 8 query photos, the resized + cropped + JPEG-60
 *                    copy must be the nearest neighbour among 33 other real
 *                    photos, both ways round.
 *   nsfw scores      one score per manifest label, each in [0, 1], summing
 *                    to 1 (the head ends in a softmax).
 *
 * The margins are printed so that a model or preprocessing change shows how
 * much room it has left, not only whether it passed. Missing models are a
 * failure, never a skip: this test is the evidence that the defaults work.
 * Set INFERD_MODELS_DIR to point it at another model directory.
 *
 * Images: .deps/testdata (scripts/setup.sh testdata), python3-skimage's
 * sample photos and opencv-doc's example photos (both in setup.sh's apt list).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "pipeline/analyze.h"

#define SKIMAGE "/usr/lib/python3/dist-packages/skimage/data/"
#define OPENCV "/usr/share/doc/opencv-doc/examples/data/"
#define FACEAPI INFERD_TESTDATA "/faceapi/"

/* Matching an edited image's face to the original's: box IoU at least this. */
#define MATCH_IOU 0.4f

static pipeline *pipe_;
static char setup_error[600];

/*
 * Real photos of distinct scenes. Near-duplicate pairs that ship together
 * (aloeL/aloeR, leuvenA/B, motorcycle_left/right, ...) contribute one member
 * only, so that "nearest neighbour" has one right answer.
 */
static const char *const photos[] = {
    OPENCV "aero1.jpg",
    OPENCV "apple.jpg",
    OPENCV "baboon.jpg",
    OPENCV "basketball1.png",
    OPENCV "board.jpg",
    OPENCV "building.jpg",
    OPENCV "butterfly.jpg",
    OPENCV "chicky_512.png",
    OPENCV "ela_original.jpg",
    OPENCV "fruits.jpg",
    OPENCV "home.jpg",
    OPENCV "leuvenA.jpg",
    OPENCV "messi5.jpg",
    OPENCV "orange.jpg",
    OPENCV "squirrel_cls.jpg",
    OPENCV "graf1.png",
    OPENCV "box_in_scene.png",
    OPENCV "aloeL.jpg",
    OPENCV "stuff.jpg",
    OPENCV "rubberwhale1.png",
    SKIMAGE "astronaut.png",
    SKIMAGE "chelsea.png",
    SKIMAGE "coffee.png",
    SKIMAGE "rocket.jpg",
    SKIMAGE "motorcycle_left.png",
    SKIMAGE "hubble_deep_field.jpg",
    SKIMAGE "retina.jpg",
    SKIMAGE "camera.png",
    FACEAPI "sample1.jpg",
    FACEAPI "sample2.jpg",
    FACEAPI "sample3.jpg",
    FACEAPI "sample4.jpg",
    FACEAPI "sample5.jpg",
    FACEAPI "sample6.jpg",
};
#define NPHOTOS ((int)(sizeof photos / sizeof photos[0]))

/* Queries, by file name in photos[]: varied subjects, one group photo. */
static const char *const queries[] = {"building.jpg",  "fruits.jpg",  "home.jpg",   "messi5.jpg",
                                      "astronaut.png", "chelsea.png", "coffee.png", "sample1.jpg"};
#define NQUERIES ((int)(sizeof queries / sizeof queries[0]))

static int setup(void **state)
{
    const char *dir = getenv("INFERD_MODELS_DIR");
    pipeline_opts o = {0};
    err_t e;

    o.models_dir = dir && *dir ? dir : INFERD_MODELS;
    o.intra_op_threads = 0;
    err_clear(&e);
    if (pipeline_new(&o, &pipe_, &e) != ERR_OK) {
        snprintf(setup_error, sizeof setup_error,
                 "pipeline_new(models_dir=%s): %s (run `make "
                 "models`)",
                 o.models_dir, e.msg);
        pipe_ = NULL;
    }
    /* The tests fail one by one with setup_error rather than as a group. */
    return 0;
}

static int teardown(void **state)
{
    pipeline_free(pipe_);
    vision_shutdown();
    return 0;
}

static void need_pipeline(void)
{
    if (pipe_ == NULL)
        fail_msg("%s", setup_error);
}

/* Opens an image file upright (EXIF orientation applied); fails the test otherwise. */
static VipsImage *open_upright(const char *path)
{
    VipsImage *raw = vips_image_new_from_file(path, NULL);
    VipsImage *up = NULL;

    if (raw == NULL)
        fail_msg("open %s: %s", path, vips_error_buffer());
    if (vips_autorot(raw, &up, NULL))
        fail_msg("autorot %s: %s", path, vips_error_buffer());
    g_object_unref(raw);
    return up;
}

/*
 * Encodes `img` (not consumed) as PNG (quality <= 0: lossless, so that an
 * edit is tested alone) or JPEG at `quality`. The caller g_free()s *buf.
 */
static void encode(VipsImage *img, int quality, void **buf, size_t *len)
{
    int rc = quality > 0 ? vips_jpegsave_buffer(img, buf, len, "Q", quality, NULL)
                         : vips_pngsave_buffer(img, buf, len, "compression", 1, NULL);
    if (rc)
        fail_msg("encode: %s", vips_error_buffer());
}

/* Runs the pipeline on an encoded image; fails the test on error. */
static analysis *analyze_image(VipsImage *img, int quality, const char *what)
{
    void *buf = NULL;
    size_t len = 0;
    analysis *a = NULL;
    err_t e;

    encode(img, quality, &buf, &len);
    err_clear(&e);
    if (pipeline_analyze_buffer(pipe_, buf, len, PIPELINE_ALL, &a, &e) != ERR_OK)
        fail_msg("analyze %s: %s", what, e.msg);
    g_free(buf);
    return a;
}

static analysis *analyze_path(const char *path)
{
    analysis *a = NULL;
    err_t e;

    err_clear(&e);
    if (pipeline_analyze_file(pipe_, path, PIPELINE_ALL, &a, &e) != ERR_OK)
        fail_msg("analyze %s: %s", path, e.msg);
    return a;
}

static float dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return (float)s;
}

static const char *base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The index in photos[] of the file named `name`; fails the test when absent. */
static int photo_index(const char *name)
{
    for (int i = 0; i < NPHOTOS; i++)
        if (strcmp(base(photos[i]), name) == 0)
            return i;
    fail_msg("query %s is not in photos[]", name);
    return -1;
}

/* Every embedding the pipeline returns has the manifest's dim and unit norm. */
static void check_unit(const float *v, int dim, int want_dim, const char *what)
{
    assert_non_null(v);
    if (dim != want_dim)
        fail_msg("%s: dim %d, manifest says %d", what, dim, want_dim);
    float n = sqrtf(dot(v, v, dim));
    if (!(fabsf(n - 1.0f) < 1e-3f))
        fail_msg("%s: norm %f, expected 1", what, (double)n);
}

/*
 * The face of `a` whose box, mapped back to the original image by
 * x -> flip ? W - x : x + dx, y -> y + dy, best overlaps `want`; NULL when no
 * box reaches MATCH_IOU.
 */
static const analysis_face *match_face(const analysis *a, const vision_box *want, int flip_w,
                                       float dx, float dy)
{
    const analysis_face *best = NULL;
    float best_iou = MATCH_IOU;

    for (int i = 0; i < a->nfaces; i++) {
        vision_box b = a->faces[i].det.box;
        if (flip_w > 0) {
            float x1 = (float)flip_w - b.x2;
            b.x2 = (float)flip_w - b.x1;
            b.x1 = x1;
        }
        b.x1 += dx;
        b.x2 += dx;
        b.y1 += dy;
        b.y2 += dy;
        float iou = vision_box_iou(&b, want);
        if (iou >= best_iou) {
            best_iou = iou;
            best = &a->faces[i];
        }
    }
    return best;
}

enum { V_MIRROR, V_CROP, V_JPEG, NVARIANTS };
static const char *const variant_names[NVARIANTS] = {"mirror", "crop", "jpeg60"};

static void test_face_embedding(void **state)
{
    const model_manifest *fm;
    float all_min_same = 2, all_max_diff = -2;
    int nfaces_total = 0, nmissed = 0, nchecked = 0, nbad = 0;

    need_pipeline();
    fm = pipeline_model(pipe_, TASK_FACE_EMBEDDING);
    assert_non_null(fm);
    printf("face embedding (%s, %d-D): same face = original vs edited copy, re-detected; "
           "different = two faces of one photo\n",
           fm->name, fm->embedding_dim);
    for (int s = 1; s <= 6; s++) {
        char path[512];
        snprintf(path, sizeof path, FACEAPI "sample%d.jpg", s);
        VipsImage *img = open_upright(path);
        int W = vips_image_get_width(img), H = vips_image_get_height(img);
        analysis *orig = analyze_image(img, 0, path);
        float max_diff = -2, min_same[NVARIANTS] = {2, 2, 2};

        if (orig->nfaces < 2)
            fail_msg("%s: %d faces found, the group photos have 3-5", path, orig->nfaces);
        for (int i = 0; i < orig->nfaces; i++) {
            check_unit(orig->faces[i].embedding, orig->face_dim, fm->embedding_dim, path);
            for (int j = i + 1; j < orig->nfaces; j++) {
                float c = dot(orig->faces[i].embedding, orig->faces[j].embedding, orig->face_dim);
                if (c > max_diff)
                    max_diff = c;
            }
        }

        /* Whole-image edits: one analysis serves every face. */
        VipsImage *flipped = NULL;
        if (vips_flip(img, &flipped, VIPS_DIRECTION_HORIZONTAL, NULL))
            fail_msg("flip: %s", vips_error_buffer());
        analysis *mir = analyze_image(flipped, 0, "mirrored");
        analysis *jpg = analyze_image(img, 60, "jpeg60");
        g_object_unref(flipped);

        for (int i = 0; i < orig->nfaces; i++) {
            const analysis_face *f = &orig->faces[i];
            const vision_box *b = &f->det.box;
            float fw = b->x2 - b->x1, fh = b->y2 - b->y1;
            /*
             * The face's surroundings, off-centre (more below than above, as
             * a portrait crop would take), so that the detector sees the face
             * at a new scale and position.
             */
            int cx0 = (int)fmaxf(0, b->x1 - 1.5f * fw), cy0 = (int)fmaxf(0, b->y1 - 1.0f * fh);
            int cx1 = (int)fminf((float)W, b->x2 + 2.0f * fw);
            int cy1 = (int)fminf((float)H, b->y2 + 2.5f * fh);
            VipsImage *crop = NULL;
            if (vips_extract_area(img, &crop, cx0, cy0, cx1 - cx0, cy1 - cy0, NULL))
                fail_msg("crop: %s", vips_error_buffer());
            analysis *cr = analyze_image(crop, 0, "crop");
            g_object_unref(crop);

            const analysis_face *m[NVARIANTS] = {
                match_face(mir, b, W, 0, 0),
                match_face(cr, b, 0, (float)cx0, (float)cy0),
                match_face(jpg, b, 0, 0, 0),
            };
            for (int v = 0; v < NVARIANTS; v++) {
                if (m[v] == NULL) {
                    printf("  %s face %d (%.0fx%.0f at %.0f,%.0f): not re-detected in %s copy\n",
                           base(path), i, (double)fw, (double)fh, (double)b->x1, (double)b->y1,
                           variant_names[v]);
                    nmissed++;
                    continue;
                }
                check_unit(m[v]->embedding, fm->embedding_dim, fm->embedding_dim, variant_names[v]);
                float c = dot(f->embedding, m[v]->embedding, fm->embedding_dim);
                nchecked++;
                if (c <= max_diff) {
                    printf("  FAIL %s face %d: %s copy cosine %.4f <= max different-face %.4f\n",
                           base(path), i, variant_names[v], (double)c, (double)max_diff);
                    nbad++;
                }
                if (c < min_same[v])
                    min_same[v] = c;
            }
            analysis_free(cr);
        }
        float ms = fminf(min_same[V_MIRROR], fminf(min_same[V_CROP], min_same[V_JPEG]));
        printf("  %s: %d faces; min same-face cosine %.4f (mirror %.4f, crop %.4f, jpeg60 "
               "%.4f); max different-face %.4f; margin %+.4f\n",
               base(path), orig->nfaces, (double)ms, (double)min_same[V_MIRROR],
               (double)min_same[V_CROP], (double)min_same[V_JPEG], (double)max_diff,
               (double)(ms - max_diff));
        if (ms < all_min_same)
            all_min_same = ms;
        if (max_diff > all_max_diff)
            all_max_diff = max_diff;
        nfaces_total += orig->nfaces;
        analysis_free(orig);
        analysis_free(mir);
        analysis_free(jpg);
        g_object_unref(img);
    }
    printf("  all: %d faces, %d edited copies compared, %d not re-detected; min same-face %.4f, "
           "max different-face (within a photo) %.4f\n",
           nfaces_total, nchecked, nmissed, (double)all_min_same, (double)all_max_diff);
    fflush(stdout);
    if (nbad > 0)
        fail_msg("%d edited faces are closer to another face of their photo than to themselves",
                 nbad);
    /*
     * A face the detector loses in an edited copy says nothing about the
     * embedder, but losing many would hollow the test out: at most 1 in 10.
     */
    if (nmissed * 10 > nfaces_total * NVARIANTS)
        fail_msg("%d of %d edited faces not re-detected", nmissed, nfaces_total * NVARIANTS);
}

/* Resized to 0.6x, 5% cut off each side, JPEG quality 60. */
static analysis *analyze_edited(const char *path)
{
    VipsImage *img = open_upright(path), *small = NULL, *crop = NULL;

    if (vips_resize(img, &small, 0.6, NULL))
        fail_msg("resize %s: %s", path, vips_error_buffer());
    int w = vips_image_get_width(small), h = vips_image_get_height(small);
    int mx = w / 20, my = h / 20;
    if (vips_extract_area(small, &crop, mx, my, w - 2 * mx, h - 2 * my, NULL))
        fail_msg("crop %s: %s", path, vips_error_buffer());
    analysis *a = analyze_image(crop, 60, path);
    g_object_unref(crop);
    g_object_unref(small);
    g_object_unref(img);
    return a;
}

static void test_image_embedding(void **state)
{
    const model_manifest *im;
    analysis *orig[NPHOTOS];
    int nbad = 0;
    float min_margin = 2;

    need_pipeline();
    im = pipeline_model(pipe_, TASK_IMAGE_EMBEDDING);
    assert_non_null(im);
    for (int i = 0; i < NPHOTOS; i++) {
        orig[i] = analyze_path(photos[i]);
        check_unit(orig[i]->image_embedding, orig[i]->image_dim, im->embedding_dim, photos[i]);
    }
    printf("image embedding (%s, %d-D): query = original, its edited copy (0.6x, 5%% crop, "
           "jpeg60) among %d other photos\n",
           im->name, im->embedding_dim, NPHOTOS - 1);
    for (int qi = 0; qi < NQUERIES; qi++) {
        int q = photo_index(queries[qi]);
        analysis *ed = analyze_edited(photos[q]);
        const float *vq = orig[q]->image_embedding, *ve = ed->image_embedding;
        int dim = im->embedding_dim;
        float self = dot(vq, ve, dim);
        /* Forward: the copy's rank among {copy} + others, seen from the original. */
        int rank = 1, rank_back = 1, nearest = -1, nearest_back = -1;
        float best_other = -2, best_back = -2;

        check_unit(ve, ed->image_dim, dim, "edited");
        for (int j = 0; j < NPHOTOS; j++) {
            if (j == q)
                continue;
            float c = dot(vq, orig[j]->image_embedding, dim);
            if (c >= self)
                rank++;
            if (c > best_other) {
                best_other = c;
                nearest = j;
            }
            /* Backward: the original's rank among all originals, seen from the copy. */
            float cb = dot(ve, orig[j]->image_embedding, dim);
            if (cb >= self)
                rank_back++;
            if (cb > best_back) {
                best_back = cb;
                nearest_back = j;
            }
        }
        float margin = self - fmaxf(best_other, best_back);
        printf("  %-22s copy cosine %.4f, rank %d (back %d); nearest other %.4f %s (back %.4f "
               "%s); margin %+.4f\n",
               base(photos[q]), (double)self, rank, rank_back, (double)best_other,
               base(photos[nearest]), (double)best_back, base(photos[nearest_back]),
               (double)margin);
        if (rank != 1 || rank_back != 1)
            nbad++;
        if (margin < min_margin)
            min_margin = margin;
        analysis_free(ed);
    }
    printf("  all: %d queries, min margin %+.4f\n", NQUERIES, (double)min_margin);
    fflush(stdout);
    for (int i = 0; i < NPHOTOS; i++)
        analysis_free(orig[i]);
    if (nbad > 0)
        fail_msg("%d of %d edited copies are not their original's nearest neighbour", nbad,
                 NQUERIES);
}

static void test_nsfw_scores(void **state)
{
    const model_manifest *im;
    const manifest_output *out;
    float worst = 0;

    need_pipeline();
    im = pipeline_model(pipe_, TASK_IMAGE_EMBEDDING);
    assert_non_null(im);
    out = manifest_output_by_role(im, "nsfw");
    if (out == NULL)
        fail_msg("image embedder %s has no nsfw output in its manifest", im->name);
    if (out->nlabels < 2)
        fail_msg("%s: nsfw output has %d labels", im->name, out->nlabels);
    for (int i = 0; i < 8; i++) {
        const char *path = photos[i * 4];
        analysis *a = analyze_path(path);
        double sum = 0;
        if (a->nnsfw != out->nlabels)
            fail_msg("%s: %d nsfw scores, manifest has %d labels", path, a->nnsfw, out->nlabels);
        printf("  %-22s", base(path));
        for (int k = 0; k < a->nnsfw; k++) {
            assert_string_equal(a->nsfw_labels[k], out->labels[k]);
            if (!(a->nsfw[k] >= 0.0f && a->nsfw[k] <= 1.0f))
                fail_msg("%s: %s score %f outside [0, 1]", path, out->labels[k],
                         (double)a->nsfw[k]);
            sum += a->nsfw[k];
            printf(" %s=%.3f", a->nsfw_labels[k], (double)a->nsfw[k]);
        }
        printf("  sum=%.5f\n", sum);
        if (fabs(sum - 1.0) > worst)
            worst = (float)fabs(sum - 1.0);
        if (fabs(sum - 1.0) > 1e-3)
            fail_msg("%s: nsfw scores sum to %f", path, sum);
        /* The JSON carries the same labels as keys. */
        json_t *j = analysis_to_json(a, 0);
        json_t *ns = json_object_get(j, "nsfw");
        assert_non_null(ns);
        assert_int_equal(json_object_size(ns), (size_t)out->nlabels);
        for (int k = 0; k < out->nlabels; k++)
            assert_non_null(json_object_get(ns, out->labels[k]));
        json_decref(j);
        analysis_free(a);
    }
    printf("  nsfw: largest |sum - 1| = %.2e\n", (double)worst);
    fflush(stdout);
}

static float box_iou(const vision_box *a, const vision_box *b)
{
    float ix = fminf(a->x2, b->x2) - fmaxf(a->x1, b->x1);
    float iy = fminf(a->y2, b->y2) - fmaxf(a->y1, b->y1);
    if (ix <= 0 || iy <= 0)
        return 0;
    float u = (a->x2 - a->x1) * (a->y2 - a->y1) + (b->x2 - b->x1) * (b->y2 - b->y1) - ix * iy;
    return ix * iy / u;
}

/*
 * Shrink-on-load: with --max-side below the photo's size the image is
 * decoded smaller while detections stay in original pixels. Each face must
 * embed as the same person as at full size (cosine above every
 * different-face cosine of the photo): alignment has to sample the decoded
 * image at the scaled keypoints. (Aligning at unscaled keypoints gave
 * cosines near 0 here.)
 */
static void test_face_embedding_shrunk(void **state)
{
    (void)state;
    need_pipeline();
    const char *dir = getenv("INFERD_MODELS_DIR");
    pipeline_opts o = {0};
    o.models_dir = dir && *dir ? dir : INFERD_MODELS;
    o.image_embedder = "";
    o.decode.max_side = 1024;
    pipeline *small = NULL;
    err_t e;
    err_clear(&e);
    if (pipeline_new(&o, &small, &e) != ERR_OK)
        fail_msg("pipeline_new(max_side 1024): %s", e.msg);
    int matched = 0;
    float worst = 2;
    for (int s = 1; s <= 6; s++) {
        char path[512];
        snprintf(path, sizeof path, FACEAPI "sample%d.jpg", s);
        analysis *full = analyze_path(path);
        analysis *sh = NULL;
        if (pipeline_analyze_file(small, path, PIPELINE_ALL, &sh, &e) != ERR_OK)
            fail_msg("analyze %s at max_side 1024: %s", path, e.msg);
        assert_int_equal(sh->width, full->width); /* reported in original pixels */
        float max_diff = -2;
        for (int i = 0; i < full->nfaces; i++)
            for (int j = i + 1; j < full->nfaces; j++) {
                float c = dot(full->faces[i].embedding, full->faces[j].embedding, full->face_dim);
                max_diff = c > max_diff ? c : max_diff;
            }
        for (int i = 0; i < sh->nfaces; i++) {
            int best = -1;
            float best_iou = 0.5f;
            for (int j = 0; j < full->nfaces; j++) {
                float u = box_iou(&sh->faces[i].det.box, &full->faces[j].det.box);
                if (u > best_iou) {
                    best_iou = u;
                    best = j;
                }
            }
            if (best < 0)
                continue;
            float c = dot(sh->faces[i].embedding, full->faces[best].embedding, full->face_dim);
            printf("  %s face %d: cosine to full size %.4f (max different-face %.4f)\n",
                   base(path), best, c, max_diff);
            if (c <= max_diff || c < 0.5f)
                fail_msg("%s: face %d embeds differently at max_side 1024 (cosine %.4f)",
                         base(path), best, c);
            worst = c < worst ? c : worst;
            matched++;
        }
        analysis_free(sh);
        analysis_free(full);
    }
    printf("  shrunk decode: %d faces matched, lowest cosine %.4f\n", matched, worst);
    assert_true(matched >= 15);
    pipeline_free(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nsfw_scores),
        cmocka_unit_test(test_face_embedding),
        cmocka_unit_test(test_face_embedding_shrunk),
        cmocka_unit_test(test_image_embedding),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
