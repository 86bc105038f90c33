/*
 * test_search_real.c — search on REAL embeddings, across inserts, deletes and
 * restarts, on every store backend: exact and HNSW answers against a brute
 * force top-10 computed here (README "Search and people"; index/index.h
 * promises HNSW recall@10 >= 0.95 at the default ef).
 *
 * Data. The default models, loaded through infer/ and fed through vision/
 * exactly as the pipeline feeds them, embed:
 *   images  MAX_PHOTOS real photos (face-api samples, python3-skimage's and
 *           opencv-doc's example photos), each in IMG_VARIANTS random edits
 *           of the kind people make (crop, mirror, scale, brightness and
 *           contrast, JPEG re-encode through libvips, then decoded by
 *           vision_decode_buffer as a job's upload would be);
 *   faces   every face BlazeFace finds in those photos, in FACE_IMG_VARIANTS
 *           whole-image edits (original, mirrored, brighter, 0.7x + JPEG 50)
 *           times FACE_JITTERS aligned crops whose keypoints are jittered
 *           (shift, scale, rotation, per-point noise; one crop per edit takes
 *           the detection as it is), as detections of one face differ from
 *           photo to photo.
 * Edits of one photo or face sit close together, so the neighbourhoods are
 * dense and near-duplicate: the hard case for a graph index, and the common
 * one in a photo library. A few edits per photo and face are held out: never
 * stored, only used as queries.
 *
 * Scenario, per store URL: commit the vectors as the results of assets
 * (store_job_enqueue/claim/complete, as a worker does), then
 *   exact     a service with the default threshold: answers equal brute force;
 *   load      a service with hnsw_threshold HNSW_THRESHOLD, searched at once
 *             (its graphs build in the background: exact answers until they
 *             swap in), then after search_wait_idle: the indexes must be HNSW
 *             and recall@10 at the default ef >= MIN_RECALL;
 *   delete    ~DELETE_PCT% of the assets deleted through the store,
 *             search_sync: deleted ids never returned, recall holds;
 *   restart   search_free + search_new on the same store: as at load;
 *   insert    the assets held back so far committed, search_sync: same checks.
 * The truth at each step is a brute force over the vectors the store holds
 * then (and the store must hold exactly the live assets). A hit counts as a
 * true neighbour when its score reaches the 10th brute-force score (ties
 * cannot be told apart), and its score must be the dot product of the query
 * with that asset's or face's stored vector.
 *
 * Store URLs: INFERD_TEST_STORE_URLS (spaces or commas; "{n}" replaced by a
 * token unique to the run), default a fresh SQLite file. An argument keeps
 * only the URLs of that backend: `test_search_real postgres` under
 * tests/pg/with_pg.sh is how tests/search_real_pg.cmake runs it. Missing
 * models or photos are a failure, never a skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vips/vips.h>

#include "index/search.h"
#include "infer/infer.h"
#include "store/store.h"
#include "testsupport.h"
#include "vision/vision.h"

#define SKIMAGE "/usr/lib/python3/dist-packages/skimage/data"
#define OPENCV "/usr/share/doc/opencv-doc/examples/data"
#define FACEAPI INFERD_TESTDATA "/faceapi"

#define IMAGE_MODEL "mobilenet-v2-mid"
#define FACE_MODEL "mobileface"
#define DETECTOR "blazeface-back-256"

#define MAX_PHOTOS 50
#define MIN_PHOTOS 40
#define MIN_FACE_VECTORS 1500
#define IMG_VARIANTS 20 /* edits per photo, the first IMG_HELD_OUT only queried */
#define IMG_HELD_OUT 2
#define IMG_BASE_SIDE 384 /* photos are decoded this large before editing */
#define FACE_BASE_SIDE                                                                             \
    760                     /* and this large for face detection: one detector view (tiles         \
                               start at 3 x 256, vision/detect.c) */
#define FACE_IMG_VARIANTS 4 /* whole-image edits per photo with faces */
#define FACE_JITTERS 22     /* aligned crops per face and image edit, ... */
#define FACE_HELD_OUT 2     /* ... the first FACE_HELD_OUT only queried */
#define MAX_FACES 8         /* per photo: the best-scored */
#define LATE_PCT 15         /* assets committed only at the "insert" step */
#define DELETE_PCT                                                                                 \
    25 /* of the committed assets, deleted at the "delete" step: past the                          \
          fifth of a graph that starts a rebuild (index.h) */
#define HNSW_THRESHOLD 300
#define K 10
#define MIN_RECALL 0.95
#define QUERIES_HELD 100  /* per kind and step: held-out edits ... */
#define QUERIES_STORED 60 /* ... and stored vectors */

/* --- data -------------------------------------------------------------------- */

typedef struct {
    char asset_id[32]; /* "img-NNNNN" or "fac-NNNNN": NNNNN is the index in g.assets */
    int is_face;
    int w, h;
    float *image; /* image asset: one image vector */
    int nfaces;   /* face asset: nfaces vectors in `faces`, detections in `dets` */
    float *faces;
    vision_face *dets;
    int held_out; /* never committed: its vectors are queries */
    int late;     /* committed at the insert step */
    int committed, deleted;
} asset_rec;

static struct {
    int ready;
    char error[600];
    int idim, fdim;
    asset_rec *assets;
    int nassets;
    int nphotos, nface_photos, nfaces_found;
    int nimg_vectors, nface_vectors;
    double t_image_ms, t_face_ms, t_detect_ms, t_edit_ms, t_total_ms;
} g;

static const char *g_template; /* store URL of this run, maybe with "{n}" */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Deterministic uniform numbers in [0, 1) (xorshift64*). */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double urand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static double uniform(double lo, double hi)
{
    return lo + (hi - lo) * urand();
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static asset_rec *new_asset(int is_face)
{
    if ((g.nassets & 1023) == 0)
        g.assets = realloc(g.assets, (size_t)(g.nassets + 1024) * sizeof *g.assets);
    asset_rec *a = &g.assets[g.nassets];
    memset(a, 0, sizeof *a);
    snprintf(a->asset_id, sizeof a->asset_id, "%s-%05d", is_face ? "fac" : "img", g.nassets);
    a->is_face = is_face;
    g.nassets++;
    return a;
}

/* The record of `asset_id` ("img-NNNNN" / "fac-NNNNN"), or NULL when it is not one of ours. */
static asset_rec *asset_by_id(const char *asset_id)
{
    if (asset_id == NULL || strlen(asset_id) != 9 || asset_id[3] != '-')
        return NULL;
    int i = atoi(asset_id + 4);
    if (i < 0 || i >= g.nassets || strcmp(g.assets[i].asset_id, asset_id) != 0)
        return NULL;
    return &g.assets[i];
}

/* --- photos ----------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The real photos: JPEG and PNG files of 2 KB..3 MB in the test data folders, sorted per folder. */
static int list_photos(char **paths, int cap)
{
    static const char *const dirs[] = {FACEAPI, SKIMAGE, OPENCV};
    int n = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        DIR *dir = opendir(dirs[d]);
        if (dir == NULL)
            continue;
        char *found[256];
        int nf = 0;
        struct dirent *de;
        while ((de = readdir(dir)) != NULL && nf < 256) {
            size_t l = strlen(de->d_name);
            if (l < 5 || (strcasecmp(de->d_name + l - 4, ".jpg") != 0 &&
                          strcasecmp(de->d_name + l - 4, ".png") != 0))
                continue;
            char path[600];
            snprintf(path, sizeof path, "%s/%s", dirs[d], de->d_name);
            struct stat st;
            if (stat(path, &st) != 0 || st.st_size <= 2000 || st.st_size >= 3000000)
                continue;
            found[nf++] = strdup(path);
        }
        closedir(dir);
        qsort(found, (size_t)nf, sizeof *found, cmp_str);
        for (int i = 0; i < nf; i++) {
            if (n < cap)
                paths[n++] = found[i];
            else
                free(found[i]);
        }
    }
    return n;
}

/* --- models -------------------------------------------------------------------- */

typedef struct {
    infer_env *env;
    infer_model *det, *face, *image;
    const model_manifest *fm, *im;
    int image_batch, face_batch;
} models;

static int load_models(models *m, err_t *e)
{
    const char *dir = getenv("INFERD_MODELS_DIR");
    const char *root = dir != NULL && dir[0] != '\0' ? dir : INFERD_MODELS;
    char path[700];
    infer_env_opts eo = {0};
    int rc = infer_env_new(&eo, &m->env, e);
    if (rc == ERR_OK) {
        snprintf(path, sizeof path, "%s/%s", root, DETECTOR);
        rc = infer_model_load(m->env, path, 0, &m->det, e);
    }
    if (rc == ERR_OK) {
        snprintf(path, sizeof path, "%s/%s", root, FACE_MODEL);
        rc = infer_model_load(m->env, path, 0, &m->face, e);
    }
    if (rc == ERR_OK) {
        snprintf(path, sizeof path, "%s/%s", root, IMAGE_MODEL);
        rc = infer_model_load(m->env, path, 0, &m->image, e);
    }
    if (rc != ERR_OK)
        return rc;
    m->fm = infer_model_manifest(m->face);
    m->im = infer_model_manifest(m->image);
    /*
     * As the pipeline: one image per image-embedder run (batches of 4 or 8
     * measured slower per image here, on 2 cores), faces in batches.
     */
    m->image_batch = infer_fixed_batch(m->image) == 0 ? 1 : infer_fixed_batch(m->image);
    m->face_batch = infer_fixed_batch(m->face) == 0 ? 32 : infer_fixed_batch(m->face);
    return ERR_OK;
}

static void free_models(models *m)
{
    infer_model_free(m->det);
    infer_model_free(m->face);
    infer_model_free(m->image);
    infer_env_free(m->env);
}

/*
 * Image embeddings of `n` images into out[i * dim], as pipeline/analyze.c
 * computes them: the whole image stretched to the input (vision_preprocess
 * without letterbox), the "embedding" output, L2-normalised.
 */
static int embed_images(models *m, vision_image *const *imgs, int n, float *out, err_t *e)
{
    size_t in_sz = infer_input_size(m->image);
    int dim = m->im->embedding_dim;
    float *in = malloc((size_t)m->image_batch * in_sz * sizeof *in);
    int rc = ERR_OK;
    double t0 = now_ms();
    for (int s = 0; s < n && rc == ERR_OK; s += m->image_batch) {
        int nb = n - s < m->image_batch ? n - s : m->image_batch;
        for (int i = 0; i < nb && rc == ERR_OK; i++)
            rc = vision_preprocess(imgs[s + i], m->im, 0, in + (size_t)i * in_sz, NULL, e);
        if (rc != ERR_OK)
            break;
        infer_output o = {.role = "embedding",
                          .data = out + (size_t)s * (size_t)dim,
                          .cap = (size_t)nb * (size_t)dim};
        rc = infer_run(m->image, in, nb, &o, 1, e);
        if (rc == ERR_OK && o.count != (size_t)nb * (size_t)dim)
            rc = err_set(e, ERR_MODEL, "image embedding: %zu floats for %d images", o.count, nb);
        for (int i = 0; rc == ERR_OK && i < nb; i++)
            infer_l2_normalize(out + (size_t)(s + i) * (size_t)dim, (size_t)dim);
    }
    g.t_image_ms += now_ms() - t0;
    free(in);
    return rc;
}

/* Face embeddings of the faces with keypoints kps[i] in `img`, as the pipeline computes them. */
static int embed_faces(models *m, const vision_image *img, float (*kps)[VISION_FACE_KPS][2], int n,
                       float *out, err_t *e)
{
    size_t in_sz = infer_input_size(m->face);
    int dim = m->fm->embedding_dim;
    float *in = malloc((size_t)m->face_batch * in_sz * sizeof *in);
    int rc = ERR_OK;
    double t0 = now_ms();
    for (int s = 0; s < n && rc == ERR_OK; s += m->face_batch) {
        int nb = n - s < m->face_batch ? n - s : m->face_batch;
        for (int i = 0; i < nb && rc == ERR_OK; i++) {
            /* mobileface aligns on keypoints: the box plays no part. */
            vision_face f = {.score = 1};
            float M[2][3];
            memcpy(f.kps, kps[s + i], sizeof f.kps);
            rc = vision_face_map(m->fm, &f, M, e);
            if (rc == ERR_OK)
                rc = vision_warp_tensor(img, (const float(*)[3])M, m->fm, in + (size_t)i * in_sz,
                                        e);
        }
        if (rc != ERR_OK)
            break;
        infer_output o = {.role = "embedding",
                          .data = out + (size_t)s * (size_t)dim,
                          .cap = (size_t)nb * (size_t)dim};
        rc = infer_run(m->face, in, nb, &o, 1, e);
        for (int i = 0; rc == ERR_OK && i < nb; i++)
            infer_l2_normalize(out + (size_t)(s + i) * (size_t)dim, (size_t)dim);
    }
    g.t_face_ms += now_ms() - t0;
    free(in);
    return rc;
}

/* --- edits (libvips) ------------------------------------------------------------ */

/* A VipsImage over the pixels of `img` (not copied: `img` must outlive it). */
static VipsImage *vips_of(const vision_image *img)
{
    return vips_image_new_from_memory(img->rgb, (size_t)img->width * (size_t)img->height * 3,
                                      img->width, img->height, 3, VIPS_FORMAT_UCHAR);
}

/* The pixels of `v` (3-band 8-bit) as a new vision_image. Consumes `v`. */
static int to_vision(VipsImage *v, vision_image **out, err_t *e)
{
    size_t len = 0;
    void *px = vips_image_write_to_memory(v, &len);
    int w = vips_image_get_width(v), h = vips_image_get_height(v);
    g_object_unref(v);
    if (px == NULL || len != (size_t)w * (size_t)h * 3) {
        g_free(px);
        return err_set(e, ERR_INTERNAL, "vips: %s", vips_error_buffer());
    }
    int rc = vision_image_new(w, h, out, e);
    if (rc == ERR_OK)
        memcpy((*out)->rgb, px, len);
    g_free(px);
    return rc;
}

/*
 * Encodes `v` as JPEG at `quality` and decodes it with vision_decode_buffer,
 * as an uploaded file would be. Consumes `v`.
 */
static int reencode(VipsImage *v, int quality, vision_image **out, err_t *e)
{
    void *buf = NULL;
    size_t len = 0;
    int bad = vips_jpegsave_buffer(v, &buf, &len, "Q", quality, NULL);
    g_object_unref(v);
    if (bad)
        return err_set(e, ERR_INTERNAL, "encode: %s", vips_error_buffer());
    int rc = vision_decode_buffer(buf, len, NULL, out, e);
    g_free(buf);
    return rc;
}

/*
 * After a libvips operation that returned `bad` and wrote its result to
 * *next: replaces *v by that result (releasing the old image) and clears
 * *next. *next is read here, after the operation ran, not as an argument
 * evaluated alongside it.
 */
static int vips_step(VipsImage **v, VipsImage **next, int bad, err_t *e)
{
    g_object_unref(*v);
    *v = *next;
    *next = NULL;
    if (bad || *v == NULL)
        return err_set(e, ERR_INTERNAL, "edit: %s", vips_error_buffer());
    return ERR_OK;
}

/*
 * A random edit of `base`: a crop keeping 60..100% of each side, a mirror
 * half the time, a (bilinear) resize to a longest side of 128..320,
 * brightness and contrast (gain 0.7..1.3, offset -25..25), then JPEG quality
 * 35..98.
 */
static int image_edit(const vision_image *base, vision_image **out, err_t *e)
{
    int W = base->width, H = base->height;
    int cw = (int)(W * uniform(0.6, 1.0)), ch = (int)(H * uniform(0.6, 1.0));
    cw = cw < 16 ? 16 : cw;
    ch = ch < 16 ? 16 : ch;
    int x0 = (int)((W - cw) * urand()), y0 = (int)((H - ch) * urand());
    VipsImage *v = vips_of(base), *t = NULL;
    if (v == NULL)
        return err_set(e, ERR_INTERNAL, "vips: %s", vips_error_buffer());
    int rc = vips_step(&v, &t, vips_extract_area(v, &t, x0, y0, cw, ch, NULL), e);
    if (rc == ERR_OK && urand() < 0.5)
        rc = vips_step(&v, &t, vips_flip(v, &t, VIPS_DIRECTION_HORIZONTAL, NULL), e);
    if (rc == ERR_OK) {
        double side = uniform(128, 320), scale = side / (cw > ch ? cw : ch);
        rc = vips_step(&v, &t, vips_resize(v, &t, scale, "kernel", VIPS_KERNEL_LINEAR, NULL), e);
    }
    if (rc == ERR_OK)
        rc = vips_step(&v, &t, vips_linear1(v, &t, uniform(0.7, 1.3), uniform(-25, 25), NULL), e);
    if (rc == ERR_OK)
        rc = vips_step(&v, &t, vips_cast_uchar(v, &t, NULL), e); /* clips to 0..255 */
    if (rc != ERR_OK) {
        if (v != NULL)
            g_object_unref(v);
        return rc;
    }
    return reencode(v, (int)uniform(35, 99), out, e);
}

/*
 * Whole-image edit `kind` of a photo with faces: 0 the photo, 1 mirrored,
 * 2 brighter and flatter, 3 0.7x and JPEG 50 (decoded as an upload). `*sx`,
 * `*flip` say how a keypoint maps: x' = flip ? W - x : x * sx, y' = y * sx.
 */
static int face_photo_edit(const vision_image *base, int kind, vision_image **out, float *sx,
                           int *flip, err_t *e)
{
    *sx = 1;
    *flip = 0;
    VipsImage *v = vips_of(base), *t = NULL;
    if (v == NULL)
        return err_set(e, ERR_INTERNAL, "vips: %s", vips_error_buffer());
    int rc = ERR_OK;
    int quality = 0;
    if (kind == 1) {
        *flip = 1;
        rc = vips_step(&v, &t, vips_flip(v, &t, VIPS_DIRECTION_HORIZONTAL, NULL), e);
    } else if (kind == 2) {
        rc = vips_step(&v, &t, vips_linear1(v, &t, 0.8, 40, NULL), e);
        if (rc == ERR_OK)
            rc = vips_step(&v, &t, vips_cast_uchar(v, &t, NULL), e);
    } else if (kind == 3) {
        *sx = 0.7f;
        quality = 50;
        rc = vips_step(&v, &t, vips_resize(v, &t, 0.7, NULL), e);
    }
    if (rc != ERR_OK) {
        if (v != NULL)
            g_object_unref(v);
        return rc;
    }
    return quality > 0 ? reencode(v, quality, out, e) : to_vision(v, out, e);
}

/*
 * Keypoints of a detection seen again: mapped through an edit (see
 * face_photo_edit; a mirror also swaps the subject's left and right), then
 * jittered unless `exact`: rotation +-8 degrees, scale 0.92..1.08 and a
 * shift of up to 6% of the eye distance about the centre of eyes, nose and
 * mouth, plus 2% per-point noise.
 */
static void jitter_kps(const vision_face *f, float sx, int flip, int W, int exact,
                       float out[VISION_FACE_KPS][2])
{
    float p[VISION_FACE_KPS][2];
    for (int k = 0; k < VISION_FACE_KPS; k++) {
        int src = k;
        if (flip) /* the subject's right eye is now on the image's right */
            src = k == VISION_KP_RIGHT_EYE   ? VISION_KP_LEFT_EYE
                  : k == VISION_KP_LEFT_EYE  ? VISION_KP_RIGHT_EYE
                  : k == VISION_KP_RIGHT_EAR ? VISION_KP_LEFT_EAR
                  : k == VISION_KP_LEFT_EAR  ? VISION_KP_RIGHT_EAR
                                             : k;
        p[k][0] = flip ? (float)W - f->kps[src][0] : f->kps[src][0] * sx;
        p[k][1] = f->kps[src][1] * sx;
    }
    if (exact) {
        memcpy(out, p, sizeof p);
        return;
    }
    float cx = 0, cy = 0;
    for (int k = 0; k < 4; k++) {
        cx += p[k][0] / 4;
        cy += p[k][1] / 4;
    }
    float eye = hypotf(p[0][0] - p[1][0], p[0][1] - p[1][1]);
    float th = (float)uniform(-8, 8) * 3.14159265f / 180, s = (float)uniform(0.92, 1.08);
    float dx = (float)uniform(-0.06, 0.06) * eye, dy = (float)uniform(-0.06, 0.06) * eye;
    float c = cosf(th) * s, sn = sinf(th) * s;
    for (int k = 0; k < VISION_FACE_KPS; k++) {
        float x = p[k][0] - cx, y = p[k][1] - cy;
        out[k][0] = cx + c * x - sn * y + dx + (float)uniform(-0.02, 0.02) * eye;
        out[k][1] = cy + sn * x + c * y + dy + (float)uniform(-0.02, 0.02) * eye;
    }
}

/* --- building the data set ----------------------------------------------------- */

static int build_images(models *m, const vision_image *base, err_t *e)
{
    vision_image *ed[IMG_VARIANTS] = {0};
    float *vecs = malloc((size_t)IMG_VARIANTS * (size_t)g.idim * sizeof *vecs);
    int rc = ERR_OK;
    double t0 = now_ms();
    for (int i = 0; i < IMG_VARIANTS && rc == ERR_OK; i++)
        rc = image_edit(base, &ed[i], e);
    g.t_edit_ms += now_ms() - t0;
    if (rc == ERR_OK)
        rc = embed_images(m, ed, IMG_VARIANTS, vecs, e);
    for (int i = 0; rc == ERR_OK && i < IMG_VARIANTS; i++) {
        asset_rec *a = new_asset(0);
        a->w = ed[i]->width;
        a->h = ed[i]->height;
        a->image = malloc((size_t)g.idim * sizeof(float));
        memcpy(a->image, vecs + (size_t)i * (size_t)g.idim, (size_t)g.idim * sizeof(float));
        a->held_out = i < IMG_HELD_OUT;
        a->late = !a->held_out && urand() * 100 < LATE_PCT;
        g.nimg_vectors++;
    }
    for (int i = 0; i < IMG_VARIANTS; i++)
        vision_image_free(ed[i]);
    free(vecs);
    return rc;
}

static int cmp_score(const void *a, const void *b)
{
    float sa = ((const vision_face *)a)->score, sb = ((const vision_face *)b)->score;
    return (sa < sb) - (sa > sb);
}

/* Detects the faces of `path` and adds one asset per (photo edit, jitter) holding all of them. */
static int build_faces(models *m, const char *path, err_t *e)
{
    vision_image *full = NULL;
    vision_face *dets = NULL;
    int n = 0;
    vision_decode_opts dec = {.max_side = FACE_BASE_SIDE};
    int rc = vision_decode_file(path, &dec, &full, e);
    double t0 = now_ms();
    vision_detect_opts dop = {0};
    if (rc == ERR_OK)
        rc = vision_detect_faces(m->det, full, &dop, &dets, &n, e);
    g.t_detect_ms += now_ms() - t0;
    if (rc != ERR_OK || n == 0) {
        vision_image_free(full);
        free(dets);
        return rc;
    }
    qsort(dets, (size_t)n, sizeof *dets, cmp_score);
    if (n > MAX_FACES)
        n = MAX_FACES;
    /* Detections are in original pixels; the image may have been shrunk on load. */
    float to_img = (float)full->width / (float)full->orig_width;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < VISION_FACE_KPS; k++) {
            dets[i].kps[k][0] *= to_img;
            dets[i].kps[k][1] *= to_img;
        }
        dets[i].box.x1 *= to_img;
        dets[i].box.y1 *= to_img;
        dets[i].box.x2 *= to_img;
        dets[i].box.y2 *= to_img;
    }
    g.nface_photos++;
    g.nfaces_found += n;
    float(*kps)[VISION_FACE_KPS][2] = malloc((size_t)FACE_JITTERS * (size_t)n * sizeof *kps);
    float *vecs = malloc((size_t)FACE_JITTERS * (size_t)n * (size_t)g.fdim * sizeof *vecs);
    for (int kind = 0; kind < FACE_IMG_VARIANTS && rc == ERR_OK; kind++) {
        vision_image *img = NULL;
        float sx;
        int flip;
        double te = now_ms();
        rc = face_photo_edit(full, kind, &img, &sx, &flip, e);
        g.t_edit_ms += now_ms() - te;
        if (rc != ERR_OK)
            break;
        for (int j = 0; j < FACE_JITTERS; j++)
            for (int i = 0; i < n; i++)
                jitter_kps(&dets[i], sx, flip, full->width, j == FACE_HELD_OUT, kps[j * n + i]);
        rc = embed_faces(m, img, kps, FACE_JITTERS * n, vecs, e);
        for (int j = 0; rc == ERR_OK && j < FACE_JITTERS; j++) {
            asset_rec *a = new_asset(1);
            a->w = img->width;
            a->h = img->height;
            a->nfaces = n;
            a->faces = malloc((size_t)n * (size_t)g.fdim * sizeof(float));
            memcpy(a->faces, vecs + (size_t)j * (size_t)n * (size_t)g.fdim,
                   (size_t)n * (size_t)g.fdim * sizeof(float));
            a->dets = malloc((size_t)n * sizeof *a->dets);
            for (int i = 0; i < n; i++) {
                a->dets[i] = dets[i];
                memcpy(a->dets[i].kps, kps[j * n + i], sizeof a->dets[i].kps);
            }
            a->held_out = j < FACE_HELD_OUT;
            a->late = !a->held_out && urand() * 100 < LATE_PCT;
            g.nface_vectors += n;
        }
        vision_image_free(img);
    }
    free(kps);
    free(vecs);
    free(dets);
    vision_image_free(full);
    return rc;
}

static int vips_warnings;
static char vips_first_warning[200];

/* Some example PNGs have broken ICC profiles, and libvips warns at every decode: counted. */
static void quiet_vips(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer ctx)
{
    (void)domain;
    (void)level;
    (void)ctx;
    if (vips_warnings++ == 0)
        snprintf(vips_first_warning, sizeof vips_first_warning, "%s", msg);
}

/* Computes every vector once per process; on failure g.error says why. */
static int build_data(void **state)
{
    (void)state;
    if (g.ready || g.error[0] != '\0')
        return 0;
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, quiet_vips, NULL);
    double t0 = now_ms();
    err_t e;
    err_clear(&e);
    models m = {0};
    char *paths[MAX_PHOTOS];
    int np = list_photos(paths, MAX_PHOTOS);
    int rc = vision_init(1, &e);
    if (rc == ERR_OK)
        rc = load_models(&m, &e);
    if (rc != ERR_OK) {
        snprintf(g.error, sizeof g.error, "models (run `make models`): %s", e.msg);
        goto out;
    }
    g.idim = m.im->embedding_dim;
    g.fdim = m.fm->embedding_dim;
    if (np < MIN_PHOTOS) {
        snprintf(g.error, sizeof g.error,
                 "only %d photos under %s, %s, %s (run scripts/setup.sh: testdata, "
                 "python3-skimage, opencv-doc)",
                 np, FACEAPI, SKIMAGE, OPENCV);
        goto out;
    }
    vision_decode_opts small = {.max_side = IMG_BASE_SIDE};
    for (int p = 0; p < np && rc == ERR_OK; p++) {
        vision_image *base = NULL;
        rc = vision_decode_file(paths[p], &small, &base, &e);
        if (rc != ERR_OK) { /* an odd file among the examples: not a photo we can use */
            printf("  skipped %s: %s\n", paths[p], e.msg);
            err_clear(&e);
            rc = ERR_OK;
            continue;
        }
        g.nphotos++;
        rc = build_images(&m, base, &e);
        vision_image_free(base);
        if (rc == ERR_OK)
            rc = build_faces(&m, paths[p], &e);
        if (rc != ERR_OK)
            snprintf(g.error, sizeof g.error, "%s: %s", paths[p], e.msg);
    }
    g.t_total_ms = now_ms() - t0;
    if (rc == ERR_OK && (g.nphotos < MIN_PHOTOS || g.nface_vectors < MIN_FACE_VECTORS)) {
        snprintf(g.error, sizeof g.error,
                 "%d usable photos (%d wanted), %d face vectors (%d wanted): run "
                 "scripts/setup.sh (face-api samples, python3-skimage, opencv-doc)",
                 g.nphotos, MIN_PHOTOS, g.nface_vectors, MIN_FACE_VECTORS);
        rc = ERR_NOENT;
    }
    if (rc == ERR_OK) {
        g.ready = 1;
        printf("data: %d photos -> %d image vectors (%d-D, %d held out), %d photos with %d faces "
               "-> %d face vectors (%d-D, %d per face), %d assets\n",
               g.nphotos, g.nimg_vectors, g.idim, g.nphotos * IMG_HELD_OUT, g.nface_photos,
               g.nfaces_found, g.nface_vectors, g.fdim, FACE_IMG_VARIANTS * FACE_JITTERS,
               g.nassets);
        if (vips_warnings > 0)
            printf("data: %d libvips warnings not shown, the first: %s\n", vips_warnings,
                   vips_first_warning);
        printf("data: image embedder %.0f ms (%.1f ms each), face detection %.0f ms, face "
               "embedder %.0f ms (%.2f ms each incl. alignment), edits %.0f ms, all %.0f ms\n",
               g.t_image_ms, g.t_image_ms / g.nimg_vectors, g.t_detect_ms, g.t_face_ms,
               g.t_face_ms / (g.nface_vectors > 0 ? g.nface_vectors : 1), g.t_edit_ms,
               g.t_total_ms);
        fflush(stdout);
    }
out:
    for (int p = 0; p < np; p++)
        free(paths[p]);
    free_models(&m);
    return 0;
}

static void free_data(void)
{
    for (int i = 0; i < g.nassets; i++) {
        free(g.assets[i].image);
        free(g.assets[i].faces);
        free(g.assets[i].dets);
    }
    free(g.assets);
}

/* --- store ------------------------------------------------------------------------ */

/* A URL of this run for one store, "{n}" made unique (sr<pid>_<k>). */
static void expand_url(char *out, size_t size)
{
    ts_store_url_expand(g_template, "sr", out, size);
}

/* Commits the assets not yet committed with late == `late` as finished jobs, as a worker would. */
static int commit_assets(store *st, int late)
{
    err_t e;
    err_clear(&e);
    int n = 0;
    for (int i = 0; i < g.nassets; i++) {
        asset_rec *a = &g.assets[i];
        if (a->held_out || a->committed || a->late != late)
            continue;
        job_spec sp = {.asset_id = a->asset_id,
                       .tasks = a->is_face ? JOB_TASK_FACES : JOB_TASK_IMAGE_EMBEDDING,
                       .source = "{\"path\":\"/photos/x.jpg\"}",
                       .payload = a->is_face ? "{\"kind\":\"faces\"}" : "{\"kind\":\"image\"}"};
        job j;
        if (store_job_enqueue(st, &sp, &j, NULL, &e) != ERR_OK)
            fail_msg("enqueue %s: %s", a->asset_id, e.msg);
        job_clear(&j);
        n++;
    }
    store_face faces[MAX_FACES];
    for (int done = 0; done < n;) {
        job *cl = NULL;
        int nc = 0;
        if (store_job_claim(st, "search-real", 500, 600000, &cl, &nc, &e) != ERR_OK)
            fail_msg("claim: %s", e.msg);
        if (nc == 0)
            fail_msg("claim: %d of %d jobs claimed, then none", done, n);
        for (int c = 0; c < nc; c++) {
            asset_rec *a = asset_by_id(cl[c].asset_id);
            assert_non_null(a);
            store_result r = {.width = a->w, .height = a->h};
            if (a->is_face) {
                r.detector_model = DETECTOR;
                r.face_model = FACE_MODEL;
                r.face_dim = g.fdim;
                r.nfaces = a->nfaces;
                r.faces = faces;
                for (int f = 0; f < a->nfaces; f++) {
                    const vision_face *d = &a->dets[f];
                    faces[f] = (store_face){.box = {d->box.x1, d->box.y1, d->box.x2, d->box.y2},
                                            .score = d->score,
                                            .vector = a->faces + (size_t)f * (size_t)g.fdim};
                    memcpy(faces[f].kps, d->kps, sizeof faces[f].kps);
                }
            } else {
                r.image_model = IMAGE_MODEL;
                r.image_dim = g.idim;
                r.image_norm = 1;
                r.image_vector = a->image;
            }
            if (store_job_complete(st, &cl[c], "search-real", &r, &e) != ERR_OK)
                fail_msg("complete %s: %s", a->asset_id, e.msg);
            a->committed = 1;
        }
        done += nc;
        job_array_free(cl, nc);
    }
    return n;
}

/* --- truth and checks --------------------------------------------------------------- */

/* What the store holds now, the brute force's side of every comparison. */
typedef struct {
    int n;
    int dim;
    float *vecs;       /* n rows */
    asset_rec **owner; /* asset of each row */
    int64_t *face_id;  /* faces: id of each row, ascending */
} truth;

static void truth_free(truth *t)
{
    free(t->vecs);
    free(t->owner);
    free(t->face_id);
    memset(t, 0, sizeof *t);
}

/* Reads every vector of `kind` from the store and checks that it holds exactly the live assets. */
static void truth_read(store *st, store_vec_kind kind, truth *t)
{
    memset(t, 0, sizeof *t);
    t->dim = kind == STORE_VEC_FACE ? g.fdim : g.idim;
    int cap = 0;
    store_vec last;
    memset(&last, 0, sizeof last);
    int have = 0;
    err_t e;
    err_clear(&e);
    for (;;) {
        store_vec *page = NULL;
        int np = 0;
        if (store_vectors_read(st, kind, NULL, have ? &last : NULL, 1000, &page, &np, &e) != ERR_OK)
            fail_msg("store_vectors_read: %s", e.msg);
        if (t->n + np > cap) {
            cap = (t->n + np) * 2;
            t->vecs = realloc(t->vecs, (size_t)cap * (size_t)t->dim * sizeof *t->vecs);
            t->owner = realloc(t->owner, (size_t)cap * sizeof *t->owner);
            t->face_id = realloc(t->face_id, (size_t)cap * sizeof *t->face_id);
        }
        for (int i = 0; i < np; i++) {
            asset_rec *a = asset_by_id(page[i].asset_id);
            if (a == NULL || !a->committed || a->deleted || page[i].dim != t->dim)
                fail_msg("store holds %s (dim %d), which should not be there", page[i].asset_id,
                         page[i].dim);
            memcpy(t->vecs + (size_t)t->n * (size_t)t->dim, page[i].vector,
                   (size_t)t->dim * sizeof(float));
            t->owner[t->n] = a;
            t->face_id[t->n] = page[i].face_id;
            t->n++;
        }
        if (np > 0) { /* the paging key: a copy, the page is freed below */
            free(last.model);
            last = page[np - 1];
            last.model = strdup(last.model);
            last.vector = NULL;
            last.payload = NULL;
            have = 1;
        }
        store_vec_array_free(page, np);
        if (np < 1000)
            break;
    }
    free(last.model);
    int want = 0;
    for (int i = 0; i < g.nassets; i++) {
        const asset_rec *a = &g.assets[i];
        if (a->committed && !a->deleted && (kind == STORE_VEC_FACE) == a->is_face)
            want += a->is_face ? a->nfaces : 1;
    }
    if (t->n != want)
        fail_msg("store holds %d %s vectors, expected %d", t->n,
                 kind == STORE_VEC_FACE ? "face" : "image", want);
}

/* Row of face `id` in the truth (ascending ids), or -1. */
static int truth_face_row(const truth *t, int64_t id)
{
    int lo = 0, hi = t->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (t->face_id[mid] == id)
            return mid;
        if (t->face_id[mid] < id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Row of image asset `asset_id` in the truth, or -1 (the rows are few enough for a scan). */
static int truth_image_row(const truth *t, const char *asset_id)
{
    const asset_rec *a = asset_by_id(asset_id);
    for (int i = 0; a != NULL && i < t->n; i++)
        if (t->owner[i] == a)
            return i;
    return -1;
}

/* The K best brute-force scores of `q` over the truth, descending (-2 past the rows). */
static void brute_topk(const truth *t, const float *q, float *best)
{
    for (int i = 0; i < K; i++)
        best[i] = -2;
    for (int r = 0; r < t->n; r++) {
        float s = dot(q, t->vecs + (size_t)r * (size_t)t->dim, t->dim);
        if (s <= best[K - 1])
            continue;
        int i = K - 1;
        while (i > 0 && best[i - 1] < s) {
            best[i] = best[i - 1];
            i--;
        }
        best[i] = s;
    }
}

typedef struct {
    const float *vec;
    int held_out;
} query;

/* The queries of one kind: QUERIES_HELD held-out vectors and QUERIES_STORED live stored ones. */
static int pick_queries(int faces, query *out)
{
    int n = 0, nheld = 0;
    uint64_t saved = rng;
    rng = 0x2545f4914f6cdd1dULL + (uint64_t)faces; /* the same held-out queries at every step */
    for (int pass = 0; pass < 2; pass++) {
        int want = pass == 0 ? QUERIES_HELD : QUERIES_STORED;
        int got = 0;
        for (int tries = 0; got < want && tries < 200 * want; tries++) {
            asset_rec *a = &g.assets[(int)(urand() * g.nassets)];
            if (a->is_face != faces || (pass == 0 ? !a->held_out : (!a->committed || a->deleted)))
                continue;
            int f = faces ? (int)(urand() * a->nfaces) : 0;
            out[n].vec = faces ? a->faces + (size_t)f * (size_t)g.fdim : a->image;
            out[n].held_out = pass == 0;
            n++;
            got++;
        }
        if (pass == 0)
            nheld = got;
    }
    rng = saved;
    assert_true(nheld > QUERIES_HELD / 2);
    return n;
}

typedef struct {
    double recall;      /* mean recall@K */
    double min_recall;  /* worst query */
    double recall_held; /* mean over held-out queries */
    int exact_order;    /* queries whose hits equal the brute-force order */
    int nq;
    double ms;
} outcome;

/*
 * Runs the queries of one kind against `s` and compares with the truth:
 * recall@K, hit scores equal to the stored vectors' dot products, no deleted
 * asset, K results.
 */
static outcome run_queries(search *s, const truth *t, const query *qs, int nq, float (*top)[K],
                           uint32_t ef, int faces, const char *step, const char *backend)
{
    outcome o = {.min_recall = 1, .nq = nq};
    double sum = 0, sum_held = 0;
    int nheld = 0;
    double t0 = now_ms();
    for (int qi = 0; qi < nq; qi++) {
        const float *best = top[qi];
        float kth = best[K - 1];
        json_t *res = NULL;
        err_t e;
        err_clear(&e);
        int rc;
        if (faces) {
            search_face_query fq = {
                .vector = qs[qi].vec, .dim = g.fdim, .limit = K, .min_score = -2, .ef = ef};
            rc = search_faces(s, &fq, &res, &e);
        } else {
            search_image_query iq = {
                .vector = qs[qi].vec, .dim = g.idim, .limit = K, .min_score = -2, .ef = ef};
            rc = search_images(s, &iq, &res, &e);
        }
        if (rc != ERR_OK)
            fail_msg("[%s] %s: %s search: %s", backend, step, faces ? "face" : "image", e.msg);
        size_t nh = json_array_size(res);
        size_t want = (size_t)(t->n < K ? t->n : K);
        if (nh != want)
            fail_msg("[%s] %s: %zu hits, expected %zu", backend, step, nh, want);
        int good = 0, ordered = 1;
        for (size_t h = 0; h < nh; h++) {
            json_t *hit = json_array_get(res, h);
            const char *aid = json_string_value(json_object_get(hit, "asset_id"));
            double score = json_number_value(json_object_get(hit, "score"));
            asset_rec *a = asset_by_id(aid);
            if (a == NULL || a->deleted || !a->committed)
                fail_msg("[%s] %s: hit %s is %s", backend, step, aid ? aid : "(null)",
                         a == NULL    ? "unknown"
                         : a->deleted ? "DELETED"
                                      : "not committed");
            int row = faces ? truth_face_row(t, json_integer_value(json_object_get(hit, "face_id")))
                            : truth_image_row(t, aid);
            if (row < 0 || t->owner[row] != a)
                fail_msg("[%s] %s: hit %s is not in the store", backend, step, aid);
            float d = dot(qs[qi].vec, t->vecs + (size_t)row * (size_t)t->dim, t->dim);
            if (fabs(d - score) > 2e-4)
                fail_msg("[%s] %s: hit %s score %.6f, but its stored vector scores %.6f", backend,
                         step, aid, score, (double)d);
            if (score >= (double)kth - 2e-5)
                good++;
            if (fabs(score - (double)best[h]) > 2e-5)
                ordered = 0;
        }
        json_decref(res);
        double r = want > 0 ? (double)(good > (int)want ? (int)want : good) / (double)want : 1;
        sum += r;
        if (qs[qi].held_out) {
            sum_held += r;
            nheld++;
        }
        if (r < o.min_recall)
            o.min_recall = r;
        o.exact_order += ordered;
    }
    o.ms = now_ms() - t0;
    o.recall = sum / nq;
    o.recall_held = nheld > 0 ? sum_held / nheld : 1;
    return o;
}

/* Waits for pending builds and checks that both indexes are HNSW; returns the milliseconds waited.
 */
static double wait_hnsw(search *s, const char *backend, const char *step)
{
    /* Graphs are built in the background (index.h): a fresh service is exact until they land. */
    double t0 = now_ms();
    err_t e;
    err_clear(&e);
    if (search_wait_idle(s, &e) != ERR_OK)
        fail_msg("[%s] %s: search_wait_idle: %s", backend, step, e.msg);
    int hi = search_index_is_hnsw(s, STORE_VEC_IMAGE, IMAGE_MODEL);
    int hf = search_index_is_hnsw(s, STORE_VEC_FACE, FACE_MODEL);
    if (hi != 1 || hf != 1)
        fail_msg("[%s] %s: indexes not HNSW once idle (images %d, faces %d; threshold %d)", backend,
                 step, hi, hf, HNSW_THRESHOLD);
    return now_ms() - t0;
}

static search *start_search(store *st, size_t threshold, double *ms)
{
    search_opts o = {.st = st, .index = {.hnsw_threshold = threshold}};
    search *s = NULL;
    err_t e;
    err_clear(&e);
    double t0 = now_ms();
    if (search_new(&o, &s, &e) != ERR_OK)
        fail_msg("search_new: %s", e.msg);
    *ms = now_ms() - t0;
    return s;
}

typedef enum {
    STEP_EXACT, /* a new service with the default threshold: exact, equal to brute force */
    STEP_HNSW,  /* the service in *sp, HNSW once the pending builds are in */
    STEP_FRESH, /* a new service (HNSW_THRESHOLD) searched at once, then as STEP_HNSW */
} step_kind;

/*
 * Checks both kinds at one step of the scenario and prints the numbers.
 * STEP_EXACT and STEP_FRESH start the service into *sp once the truth is
 * computed, so that the first queries run right after the load.
 */
static void check_step(search **sp, store *st, const char *step, const char *backend,
                       step_kind kind)
{
    truth t[2];
    query qs[2][QUERIES_HELD + QUERIES_STORED];
    int nq[2];
    float(*top[2])[K];
    for (int faces = 0; faces <= 1; faces++) {
        truth_read(st, faces ? STORE_VEC_FACE : STORE_VEC_IMAGE, &t[faces]);
        nq[faces] = pick_queries(faces, qs[faces]);
        top[faces] = malloc((size_t)nq[faces] * sizeof *top[faces]);
        for (int i = 0; i < nq[faces]; i++)
            brute_topk(&t[faces], qs[faces][i].vec, top[faces][i]);
    }
    if (kind != STEP_HNSW) {
        double ms = 0;
        *sp = start_search(st, kind == STEP_EXACT ? 0 : HNSW_THRESHOLD, &ms);
        printf("[%s] %-7s service (threshold %d) loaded in %.0f ms\n", backend, step,
               kind == STEP_EXACT ? INDEX_DEFAULT_HNSW_THRESHOLD : HNSW_THRESHOLD, ms);
    }
    search *s = *sp;
    if (kind == STEP_FRESH) {
        /* A fresh service answers while its graphs build: exact until each swap, then HNSW. */
        for (int faces = 0; faces <= 1; faces++) {
            int h = search_index_is_hnsw(s, faces ? STORE_VEC_FACE : STORE_VEC_IMAGE,
                                         faces ? FACE_MODEL : IMAGE_MODEL);
            outcome o = run_queries(s, &t[faces], qs[faces], nq[faces], top[faces], 0, faces, step,
                                    backend);
            printf("[%s] %-7s %-6s %4d vectors, searched at once (%s when the queries began): "
                   "recall@%d %.4f\n",
                   backend, step, faces ? "faces" : "images", t[faces].n, h ? "HNSW" : "exact", K,
                   o.recall);
            if (o.recall < MIN_RECALL)
                fail_msg("[%s] %s: recall@%d %.4f during the build", backend, step, K, o.recall);
        }
    }
    double waited = kind == STEP_EXACT ? 0 : wait_hnsw(s, backend, step);
    if (kind == STEP_EXACT) {
        assert_int_equal(search_index_is_hnsw(s, STORE_VEC_IMAGE, IMAGE_MODEL), 0);
        assert_int_equal(search_index_is_hnsw(s, STORE_VEC_FACE, FACE_MODEL), 0);
    }
    for (int faces = 0; faces <= 1; faces++) {
        outcome o =
            run_queries(s, &t[faces], qs[faces], nq[faces], top[faces], 0, faces, step, backend);
        printf("[%s] %-7s %-6s %4d vectors %-5s recall@%d %.4f (held-out %.4f, worst %.1f), "
               "%d/%d in brute-force order, %d queries %.0f ms",
               backend, step, faces ? "faces" : "images", t[faces].n,
               kind == STEP_EXACT ? "exact" : "HNSW", K, o.recall, o.recall_held, o.min_recall,
               o.exact_order, o.nq, o.nq, o.ms);
        if (kind != STEP_EXACT) {
            /* For the record: how much the default beam adds over the narrowest one. */
            outcome lo = run_queries(s, &t[faces], qs[faces], nq[faces], top[faces], K, faces, step,
                                     backend);
            printf("; at ef=%d %.4f", K, lo.recall);
            if (faces == 0)
                printf("; waited %.0f ms for builds", waited);
        }
        printf("\n");
        fflush(stdout);
        if (kind == STEP_EXACT && (o.recall < 1.0 || o.exact_order != o.nq))
            fail_msg("[%s] %s: the exact index differs from brute force", backend, step);
        if (o.recall < MIN_RECALL)
            fail_msg("[%s] %s: %s recall@%d %.4f < %.2f at the default ef", backend, step,
                     faces ? "face" : "image", K, o.recall, MIN_RECALL);
    }
    for (int faces = 0; faces <= 1; faces++) {
        free(top[faces]);
        truth_free(&t[faces]);
    }
}

/* --- the scenario ------------------------------------------------------------------- */

static void test_recall(void **state)
{
    (void)state;
    if (!g.ready)
        fail_msg("%s", g.error);
    char url[600];
    expand_url(url, sizeof url);
    ts_store_url_remove_sqlite(url);
    const char *backend = strncmp(url, "postgres", 8) == 0 ? "postgres" : "sqlite";
    store *st = NULL;
    err_t e;
    err_clear(&e);
    if (store_open(url, NULL, &st, &e) != ERR_OK)
        fail_msg("store_open(%s): %s", url, e.msg);
    for (int i = 0; i < g.nassets; i++)
        g.assets[i].committed = g.assets[i].deleted = 0;
    double t0 = now_ms(), t_step = now_ms();

    int n = commit_assets(st, 0);
    printf("[%s] committed %d assets in %.0f ms\n", backend, n, now_ms() - t_step);

    search *s = NULL;
    check_step(&s, st, "exact", backend, STEP_EXACT);
    search_free(s);
    check_step(&s, st, "load", backend, STEP_FRESH);

    t_step = now_ms();
    int ndel = 0;
    for (int i = 0; i < g.nassets; i++) {
        asset_rec *a = &g.assets[i];
        if (!a->committed || urand() * 100 >= DELETE_PCT)
            continue;
        if (store_asset_delete(st, a->asset_id, &e) != ERR_OK)
            fail_msg("delete %s: %s", a->asset_id, e.msg);
        a->deleted = 1;
        ndel++;
    }
    double t_del = now_ms() - t_step;
    t_step = now_ms();
    if (search_sync(s, &e) != ERR_OK)
        fail_msg("search_sync: %s", e.msg);
    printf("[%s] deleted %d of %d assets in %.0f ms, search_sync %.0f ms\n", backend, ndel, n,
           t_del, now_ms() - t_step);
    check_step(&s, st, "delete", backend, STEP_HNSW);

    search_free(s); /* the restart */
    check_step(&s, st, "restart", backend, STEP_FRESH);

    t_step = now_ms();
    n = commit_assets(st, 1);
    if (search_sync(s, &e) != ERR_OK)
        fail_msg("search_sync: %s", e.msg);
    printf("[%s] inserted %d more assets, committed and synced in %.0f ms\n", backend, n,
           now_ms() - t_step);
    check_step(&s, st, "insert", backend, STEP_HNSW);
    search_free(s);
    store_close(st);
    ts_store_url_remove_sqlite(url);
    printf("[%s] scenario %.0f ms\n", backend, now_ms() - t0);
    fflush(stdout);
}

static int run_suite(const char *url_template)
{
    g_template = url_template;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recall),
    };
    char name[600];
    snprintf(name, sizeof name, "search_real[%s]", url_template);
    return _cmocka_run_group_tests(name, tests, 1, build_data, NULL);
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    int failed = ts_store_urls_each("test_search_real", "search-real", only, run_suite);
    free_data();
    vision_shutdown();
    return failed != 0;
}
