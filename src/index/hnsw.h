/*
 * index/hnsw.h — internal interface of the pure search algorithms of
 * src/index/: the exact kernels (exact.c) and the HNSW graph (hnsw.c).
 *
 * Nothing here locks, logs or knows about ids chosen by callers beyond an
 * opaque int64 label per row/node; index.c adds the locking, the id map and
 * the exact/HNSW switch. These functions are unit-tested alone
 * (tests/unit/test_index.c). Not for use outside src/index/ and its tests.
 *
 * Threading: an `hnsw` may be read by many threads at once (hnsw_search,
 * hnsw_prepare, the accessors), each with its own `hnsw_scratch`; every
 * mutating call (hnsw_commit, hnsw_mark_deleted, hnsw_reserve) must exclude
 * all other calls. hnsw_prepare only reads, so a writer may run it while
 * searches proceed, provided no other mutation happens between its prepare
 * and its commit.
 */
#ifndef INFERD_INDEX_HNSW_H
#define INFERD_INDEX_HNSW_H

#include <stddef.h>
#include <stdint.h>

#include "index/index.h"

/* ---- exact kernels (exact.c) ---------------------------------------------- */

/* The dispatched dot product, chosen once at program load. */
float index__dot(const float *a, const float *b, size_t dim);
/* Plain C reference (sums in order, float). */
float index__dot_scalar(const float *a, const float *b, size_t dim);
/* out[i] = dot(q, base + ids[i] * dim) for i < n, prefetching ahead. */
void index__dot_gather(const float *q, const float *base, size_t dim, const uint32_t *ids,
                       size_t n, float *out);

/*
 * Bounded top-k collector: a min-heap on (score, then larger id is worse) of
 * at most k hits. Owned by the caller; index__topk_init allocates room for k.
 */
typedef struct {
    index_hit *h;
    size_t n, k;
} index__topk;

int index__topk_init(index__topk *t, size_t k);
void index__topk_fini(index__topk *t);
/* Whether (score, id) would enter the heap now. */
int index__topk_would_take(const index__topk *t, float score, int64_t id);
void index__topk_push(index__topk *t, float score, int64_t id);
/* Sorts the heap best first into out[0..n) and returns n; empties the heap. */
size_t index__topk_drain(index__topk *t, index_hit *out);

/*
 * Exact top-k scan over `n` rows of `mat` (row-major, `dim` floats each):
 * row i is labelled labels[i]; rows with deleted[i] != 0 (deleted may be
 * NULL) are skipped, as are scores < min_score and labels keep() rejects.
 * Pushes into `t` (already sized for k). Returns ERR_OK.
 */
int index__scan(const float *mat, size_t n, size_t dim, const int64_t *labels,
                const uint8_t *deleted, const float *query, float min_score, index_keep_fn keep,
                void *ctx, index__topk *t);

/* ---- HNSW (hnsw.c) -------------------------------------------------------- */

typedef struct hnsw hnsw;
typedef struct hnsw_scratch hnsw_scratch;
typedef struct hnsw_plan hnsw_plan;

typedef struct {
    uint32_t M;               /* links per node on layers >= 1 (layer 0: 2*M) */
    uint32_t ef_construction; /* insert beam width */
    uint64_t seed;            /* level sampling */
} hnsw_params;

/* New empty graph for `dim`-float vectors with room for `cap` nodes (0 is
 * fine). NULL on OOM. The caller owns it and frees it with hnsw_free
 * (hnsw_free(NULL) is a no-op). */
hnsw *hnsw_new(size_t dim, const hnsw_params *p, size_t cap);
void hnsw_free(hnsw *g);

/* Nodes ever inserted (live + deleted), and deleted ones. */
size_t hnsw_count(const hnsw *g);
size_t hnsw_deleted(const hnsw *g);
/* Node accessors; node < hnsw_count(g). */
const float *hnsw_vector(const hnsw *g, uint32_t node);
int64_t hnsw_label(const hnsw *g, uint32_t node);
int hnsw_is_deleted(const hnsw *g, uint32_t node);
/* The contiguous vector matrix, labels and deletion flags (hnsw_count rows).
 * These and hnsw_vector's row belong to the graph and stay valid until the
 * next mutating call, which may move them. */
const float *hnsw_vectors(const hnsw *g);
const int64_t *hnsw_labels(const hnsw *g);
const uint8_t *hnsw_deleted_flags(const hnsw *g);

/* Grows storage to hold `cap` nodes. Mutating. ERR_OK / ERR_NOMEM / ERR_TOOBIG. */
int hnsw_reserve(hnsw *g, size_t cap);

/* Per-thread search state (visited set, heaps). Grows on demand. NULL on
 * OOM; the caller owns it and frees it with hnsw_scratch_free. */
hnsw_scratch *hnsw_scratch_new(void);
void hnsw_scratch_free(hnsw_scratch *s);

/* Insert plan: everything an insert computes before it writes. Reusable.
 * NULL on OOM; the caller owns it and frees it with hnsw_plan_free. */
hnsw_plan *hnsw_plan_new(void);
void hnsw_plan_free(hnsw_plan *p);

/*
 * Insert, phase 1 (reads only): samples the new node's level, finds its
 * neighbours layer by layer (beam ef_construction, heuristic of Algorithm 4)
 * and the pruned link lists of those neighbours, into `plan`.
 */
int hnsw_prepare(const hnsw *g, const float *vec, hnsw_scratch *s, hnsw_plan *plan);
/*
 * Insert, phase 2 (mutating, short): appends node hnsw_count(g) with `vec`
 * and `label` and writes the planned links. The graph must not have changed
 * since hnsw_prepare(plan). Stores the node number in *node when not NULL.
 */
int hnsw_commit(hnsw *g, int64_t label, const float *vec, hnsw_plan *plan, uint32_t *node);
/* prepare + commit. */
int hnsw_add(hnsw *g, int64_t label, const float *vec, hnsw_scratch *s, hnsw_plan *plan,
             uint32_t *node);

/* Marks `node` deleted (idempotent). Mutating. */
void hnsw_mark_deleted(hnsw *g, uint32_t node);

/*
 * k-NN search: greedy descent to layer 0, then a beam of width max(ef, k).
 * Deleted nodes and labels keep() rejects are traversed but not returned.
 * Fills out[0..*n) best first with hits of score >= min_score; when the beam
 * found fewer than k admissible nodes while more exist, falls back to an
 * exact scan of the stored vectors. ERR_OK / ERR_NOMEM.
 */
int hnsw_search(const hnsw *g, const float *q, size_t k, uint32_t ef, float min_score,
                index_keep_fn keep, void *ctx, hnsw_scratch *s, index_hit *out, size_t *n);

#endif
