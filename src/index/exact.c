/*
 * index/exact.c — exact top-k search over a contiguous float matrix, and the
 * dot-product kernels that HNSW shares.
 *
 * The scan is memory-bound: a 512-D row is 2 KiB and needs 32 AVX-512 FMAs,
 * so the core waits on DRAM, not on arithmetic. What matters is to stream rows
 * in order (the hardware prefetcher does the rest), keep several independent
 * accumulators so the FMA latency chain does not cap throughput on cached
 * data, and keep the per-row bookkeeping off the hot path: scores are computed
 * for a block of rows into a small buffer, and only a score that could enter
 * the top k (>= the heap's minimum and >= min_score) pays for the deletion
 * check, the caller's filter and a heap push.
 *
 * The build has no -march flag, so the SIMD kernels are compiled with GCC
 * target attributes and one is chosen at program load with
 * __builtin_cpu_supports (a constructor, so no thread ever sees it unset).
 * We rejected GCC's target_clones with plain C loops: without -ffast-math the
 * compiler may not reassociate a float sum, so the clones would stay scalar.
 * Kernels sum in a different order than the scalar reference, so scores differ
 * from it by float rounding (~1e-6 for unit vectors).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index/hnsw.h"
#include "util/err.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define INDEX_X86 1
#endif

float index__dot_scalar(const float *a, const float *b, size_t dim)
{
    float s = 0.0f;
    for (size_t i = 0; i < dim; i++)
        s += a[i] * b[i];
    return s;
}

/* Lines of a row to request ahead of its turn: all of a row up to 2 KiB (512
 * floats, the size measured); the rest of a longer row is left to the
 * hardware's stream prefetcher, which the first lines start. */
static inline size_t prefetch_lines(size_t dim)
{
    size_t lines = (dim * sizeof(float) + 63) / 64;
    return lines > 32 ? 32 : lines;
}

static inline void prefetch_row_l1(const float *row, size_t lines)
{
    for (size_t i = 0; i < lines; i++)
        __builtin_prefetch((const char *)row + 64 * i, 0, 3);
}

static inline void prefetch_row_l2(const float *row, size_t lines)
{
    for (size_t i = 0; i < lines; i++)
        __builtin_prefetch((const char *)row + 64 * i, 0, 2);
}

/*
 * Scores of rows ids[0..n) of `base`. Graph neighbours are scattered rows, so
 * the hardware prefetcher cannot find them and a search waits on DRAM latency,
 * not on arithmetic (perf put 3/4 of an HNSW search on the FMAs of this loop,
 * stalled on loads). All the rows of the batch are therefore requested at
 * once, towards L2, so that their misses overlap, and each row is requested
 * again towards L1 two rows before its turn. Rejected: prefetching only the
 * next row or two (the old code: ~20% fewer queries per second on 100k x
 * 512-D), or only the first line of the next row (hnswlib's way: it leaves
 * the rest to the stream prefetcher, with about one row ahead in flight), or
 * the whole batch towards L1 (it does not fit and came out slower).
 */
#define GATHER_BODY(DOT)                                                                           \
    size_t lines = prefetch_lines(dim);                                                            \
    for (size_t i = 0; i < n; i++)                                                                 \
        prefetch_row_l2(base + (size_t)ids[i] * dim, lines);                                       \
    for (size_t i = 0; i < n && i < 2; i++)                                                        \
        prefetch_row_l1(base + (size_t)ids[i] * dim, lines);                                       \
    for (size_t i = 0; i < n; i++) {                                                               \
        if (i + 2 < n)                                                                             \
            prefetch_row_l1(base + (size_t)ids[i + 2] * dim, lines);                               \
        out[i] = DOT(q, base + (size_t)ids[i] * dim, dim);                                         \
    }

static void dot_gather_scalar(const float *q, const float *base, size_t dim, const uint32_t *ids,
                              size_t n, float *out)
{
    GATHER_BODY(index__dot_scalar)
}

static void dot_many_scalar(const float *q, const float *mat, size_t n, size_t dim, float *out)
{
    for (size_t r = 0; r < n; r++)
        out[r] = index__dot_scalar(q, mat + r * dim, dim);
}

#ifdef INDEX_X86
__attribute__((target("sse2"))) static inline float dot_sse(const float *a, const float *b,
                                                            size_t dim)
{
    __m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps(), s2 = _mm_setzero_ps(),
           s3 = _mm_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
        s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
        s1 = _mm_add_ps(s1, _mm_mul_ps(_mm_loadu_ps(a + i + 4), _mm_loadu_ps(b + i + 4)));
        s2 = _mm_add_ps(s2, _mm_mul_ps(_mm_loadu_ps(a + i + 8), _mm_loadu_ps(b + i + 8)));
        s3 = _mm_add_ps(s3, _mm_mul_ps(_mm_loadu_ps(a + i + 12), _mm_loadu_ps(b + i + 12)));
    }
    for (; i + 4 <= dim; i += 4)
        s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)));
    __m128 s = _mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3));
    float t[4];
    _mm_storeu_ps(t, s);
    float r = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < dim; i++)
        r += a[i] * b[i];
    return r;
}

__attribute__((target("sse2"))) static float dot_sse_fn(const float *a, const float *b, size_t d)
{
    return dot_sse(a, b, d);
}

__attribute__((target("sse2"))) static void dot_gather_sse(const float *q, const float *base,
                                                           size_t dim, const uint32_t *ids,
                                                           size_t n, float *out)
{
    GATHER_BODY(dot_sse)
}

__attribute__((target("sse2"))) static void dot_many_sse(const float *q, const float *mat,
                                                         size_t n, size_t dim, float *out)
{
    for (size_t r = 0; r < n; r++)
        out[r] = dot_sse(q, mat + r * dim, dim);
}

__attribute__((target("avx2,fma"))) static inline float dot_avx2(const float *a, const float *b,
                                                                 size_t dim)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= dim; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float r = _mm_cvtss_f32(h);
    for (; i < dim; i++)
        r += a[i] * b[i];
    return r;
}

__attribute__((target("avx2,fma"))) static float dot_avx2_fn(const float *a, const float *b,
                                                             size_t d)
{
    return dot_avx2(a, b, d);
}

__attribute__((target("avx2,fma"))) static void dot_gather_avx2(const float *q,
                                                                const float *base, size_t dim,
                                                                const uint32_t *ids, size_t n,
                                                                float *out)
{
    GATHER_BODY(dot_avx2)
}

__attribute__((target("avx2,fma"))) static void dot_many_avx2(const float *q, const float *mat,
                                                              size_t n, size_t dim, float *out)
{
    for (size_t r = 0; r < n; r++)
        out[r] = dot_avx2(q, mat + r * dim, dim);
}

__attribute__((target("avx512f"))) static inline float dot_avx512(const float *a,
                                                                  const float *b, size_t dim)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
           s3 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= dim; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= dim; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < dim) {
        __mmask16 m = (__mmask16)((1u << (dim - i)) - 1u);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f"))) static float dot_avx512_fn(const float *a, const float *b,
                                                              size_t d)
{
    return dot_avx512(a, b, d);
}

__attribute__((target("avx512f"))) static void dot_gather_avx512(const float *q,
                                                                 const float *base, size_t dim,
                                                                 const uint32_t *ids, size_t n,
                                                                 float *out)
{
    GATHER_BODY(dot_avx512)
}

__attribute__((target("avx512f"))) static void dot_many_avx512(const float *q, const float *mat,
                                                               size_t n, size_t dim, float *out)
{
    for (size_t r = 0; r < n; r++)
        out[r] = dot_avx512(q, mat + r * dim, dim);
}
#endif

typedef float (*dot_fn)(const float *, const float *, size_t);
typedef void (*dot_many_fn)(const float *, const float *, size_t, size_t, float *);
typedef void (*dot_gather_fn)(const float *, const float *, size_t, const uint32_t *, size_t,
                              float *);

static dot_fn g_dot = index__dot_scalar;
static dot_many_fn g_dot_many = dot_many_scalar;
static dot_gather_fn g_dot_gather = dot_gather_scalar;
static const char *g_kernel = "scalar";

/* Chooses the kernels before main(), hence before any thread exists. The
 * INFERD_INDEX_KERNEL environment variable (avx512|avx2|sse|scalar) can force
 * a lesser one, for tests and benchmarks. */
__attribute__((constructor)) static void exact_pick_kernel(void)
{
    const char *force = getenv("INFERD_INDEX_KERNEL");
    int lvl = 3;
    if (force && strcmp(force, "avx2") == 0)
        lvl = 2;
    else if (force && strcmp(force, "sse") == 0)
        lvl = 1;
    else if (force && strcmp(force, "scalar") == 0)
        lvl = 0;
#ifdef INDEX_X86
    __builtin_cpu_init();
    if (lvl >= 3 && __builtin_cpu_supports("avx512f")) {
        g_dot = dot_avx512_fn;
        g_dot_many = dot_many_avx512;
        g_dot_gather = dot_gather_avx512;
        g_kernel = "avx512";
    } else if (lvl >= 2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        g_dot = dot_avx2_fn;
        g_dot_many = dot_many_avx2;
        g_dot_gather = dot_gather_avx2;
        g_kernel = "avx2";
    } else if (lvl >= 1 && __builtin_cpu_supports("sse2")) {
        g_dot = dot_sse_fn;
        g_dot_many = dot_many_sse;
        g_dot_gather = dot_gather_sse;
        g_kernel = "sse";
    }
#else
    (void)lvl;
#endif
}

const char *index_kernel_name(void)
{
    return g_kernel;
}

float index__dot(const float *a, const float *b, size_t dim)
{
    return g_dot(a, b, dim);
}

void index__dot_gather(const float *q, const float *base, size_t dim, const uint32_t *ids,
                       size_t n, float *out)
{
    g_dot_gather(q, base, dim, ids, n, out);
}

/* ---- top-k heap ----------------------------------------------------------- */

/* a is worse than b: lower score, or equal score and higher id. */
static inline int hit_worse(float sa, int64_t ia, float sb, int64_t ib)
{
    return sa < sb || (sa == sb && ia > ib);
}

int index__topk_init(index__topk *t, size_t k)
{
    t->n = 0;
    t->k = k;
    t->h = malloc((k ? k : 1) * sizeof *t->h);
    return t->h ? ERR_OK : ERR_NOMEM;
}

void index__topk_fini(index__topk *t)
{
    free(t->h);
    t->h = NULL;
    t->n = t->k = 0;
}

int index__topk_would_take(const index__topk *t, float score, int64_t id)
{
    if (t->n < t->k)
        return 1;
    return hit_worse(t->h[0].score, t->h[0].id, score, id);
}

static void topk_sift_down(index_hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && hit_worse(h[l].score, h[l].id, h[m].score, h[m].id))
            m = l;
        if (l + 1 < n && hit_worse(h[l + 1].score, h[l + 1].id, h[m].score, h[m].id))
            m = l + 1;
        if (m == i)
            return;
        index_hit x = h[i];
        h[i] = h[m];
        h[m] = x;
        i = m;
    }
}

void index__topk_push(index__topk *t, float score, int64_t id)
{
    index_hit *h = t->h;
    if (t->n < t->k) {
        size_t i = t->n++;
        h[i].score = score;
        h[i].id = id;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!hit_worse(h[i].score, h[i].id, h[p].score, h[p].id))
                break;
            index_hit x = h[i];
            h[i] = h[p];
            h[p] = x;
            i = p;
        }
        return;
    }
    if (!hit_worse(h[0].score, h[0].id, score, id))
        return;
    h[0].score = score;
    h[0].id = id;
    topk_sift_down(h, t->n, 0);
}

size_t index__topk_drain(index__topk *t, index_hit *out)
{
    size_t n = t->n;
    /* Pop the worst repeatedly, filling from the back: best ends first. */
    for (size_t i = n; i > 0; i--) {
        out[i - 1] = t->h[0];
        t->h[0] = t->h[--t->n];
        topk_sift_down(t->h, t->n, 0);
    }
    return n;
}

/* ---- exact scan ----------------------------------------------------------- */

enum { SCAN_BLOCK = 256 };

int index__scan(const float *mat, size_t n, size_t dim, const int64_t *labels,
                const uint8_t *deleted, const float *query, float min_score, index_keep_fn keep,
                void *ctx, index__topk *t)
{
    float sc[SCAN_BLOCK];
    dot_many_fn many = g_dot_many;
    for (size_t b = 0; b < n; b += SCAN_BLOCK) {
        size_t m = n - b < SCAN_BLOCK ? n - b : SCAN_BLOCK;
        many(query, mat + b * dim, m, dim, sc);
        /* Admission bar: below it nothing can enter, whatever its id. */
        float bar = min_score;
        if (t->n == t->k && t->h[0].score > bar)
            bar = t->h[0].score;
        for (size_t j = 0; j < m; j++) {
            if (!(sc[j] >= bar))
                continue;
            size_t r = b + j;
            if (deleted && deleted[r])
                continue;
            if (!index__topk_would_take(t, sc[j], labels[r]))
                continue;
            if (keep && !keep(ctx, labels[r]))
                continue;
            index__topk_push(t, sc[j], labels[r]);
            if (t->n == t->k && t->h[0].score > bar)
                bar = t->h[0].score;
        }
    }
    return ERR_OK;
}
