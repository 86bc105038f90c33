/*
 * index/index.c — the per-(collection, model) search index: locking, the
 * id -> row/node map, and the switch from the exact matrix to HNSW.
 *
 * The algorithms live in exact.c and hnsw.c; this file is the glue, in the
 * way Redis keeps hnsw.c apart from vset.c.
 *
 * Threading
 *   wmu (mutex)   serialises writers: index_add, index_remove, and the builds
 *                 and rebuilds they trigger. It guards `map`, `ws`, `plan`.
 *   rw (rwlock)   guards what searches read: the mode, the exact matrix and
 *                 its ids, the graph pointer and the graph's contents, `live`.
 *                 Writers take it exclusively only to publish.
 *   pool_mu       guards the free list of search scratch objects.
 *   Lock order: wmu, then rw, then pool_mu. Searches take rw (shared) and
 *   then pool_mu; they never take wmu.
 *
 * Why searches do not wait behind writers for long: a writer holding wmu is
 * the only thread that can change anything, so it may *read* the published
 * structures without rw, concurrently with searches. Everything slow is done
 * that way before taking rw exclusively: the HNSW neighbour search and
 * pruning of an insert (hnsw_prepare), the copy into a grown exact matrix,
 * the build of a graph at the threshold, the rebuild after many deletions.
 * The exclusive section is then a few memcpys and pointer swaps (or, for an
 * HNSW insert that fills the graph's capacity, one realloc-doubling).
 * The rwlock prefers writers (glibc's PREFER_WRITER_NONRECURSIVE kind), so a
 * steady stream of searches cannot starve an add; the price is that a thread
 * must never take rw shared twice, which is why `keep` may not call back into
 * the index.
 *
 * Rejected: per-node locks in the graph (as hnswlib does) allow parallel
 * inserts, but inferd's writers are result commits trickling in one at a
 * time, and a lock per node costs every search a lock per visited node.
 * Rejected too: copy-on-write snapshots (RCU) of the whole index per add —
 * O(n) per add.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "index/hnsw.h"
#include "index/index.h"
#include "util/err.h"

/* Rebuild the graph when deleted nodes exceed 1/REBUILD_DIV of it. */
enum { REBUILD_DIV = 5, REBUILD_MIN_NODES = 64 };

/* ---- id map: open addressing, linear probing, backward-shift deletion ---- */

typedef struct {
    int64_t *keys;
    uint32_t *vals; /* slot + 1; 0 = empty */
    size_t cap, n;  /* cap is a power of two; n <= cap / 2 */
} idmap;

static inline size_t idmap_home(const idmap *m, int64_t key)
{
    uint64_t x = (uint64_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (size_t)x & (m->cap - 1);
}

static void idmap_free(idmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int idmap_get(const idmap *m, int64_t key, uint32_t *slot)
{
    if (!m->cap)
        return 0;
    for (size_t i = idmap_home(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (!m->vals[i])
            return 0;
        if (m->keys[i] == key) {
            *slot = m->vals[i] - 1;
            return 1;
        }
    }
}

/* Insert or update; the table must have room (see idmap_reserve). */
static void idmap_put_nogrow(idmap *m, int64_t key, uint32_t slot)
{
    for (size_t i = idmap_home(m, key);; i = (i + 1) & (m->cap - 1)) {
        if (!m->vals[i]) {
            m->keys[i] = key;
            m->vals[i] = slot + 1;
            m->n++;
            return;
        }
        if (m->keys[i] == key) {
            m->vals[i] = slot + 1;
            return;
        }
    }
}

/* Makes room for `n` keys at load <= 1/2. */
static int idmap_reserve(idmap *m, size_t n)
{
    if (n * 2 <= m->cap)
        return ERR_OK;
    size_t cap = m->cap ? m->cap : 64;
    while (cap < n * 2)
        cap *= 2;
    idmap nm = {calloc(cap, sizeof(int64_t)), calloc(cap, sizeof(uint32_t)), cap, 0};
    if (!nm.keys || !nm.vals) {
        idmap_free(&nm);
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->vals[i])
            idmap_put_nogrow(&nm, m->keys[i], m->vals[i] - 1);
    }
    idmap_free(m);
    *m = nm;
    return ERR_OK;
}

static void idmap_del(idmap *m, int64_t key)
{
    if (!m->cap)
        return;
    size_t mask = m->cap - 1;
    size_t i = idmap_home(m, key);
    for (;; i = (i + 1) & mask) {
        if (!m->vals[i])
            return;
        if (m->keys[i] == key)
            break;
    }
    /* Shift back every later entry of the run whose home is not in (i, j]. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->vals[j])
            break;
        size_t h = idmap_home(m, m->keys[j]);
        int stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (stays)
            continue;
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        i = j;
    }
    m->vals[i] = 0;
    m->n--;
}

/* ---- the index ------------------------------------------------------------ */

struct index_t {
    size_t dim;
    index_opts o;
    pthread_mutex_t wmu;
    pthread_rwlock_t rw;
    pthread_mutex_t pool_mu;

    /* Published state (rw). */
    int is_hnsw;
    float *mat;   /* exact: n rows of dim */
    int64_t *ids; /* exact: id of each row */
    size_t n, cap;
    hnsw *g; /* HNSW; NULL while exact */
    size_t live;

    /* Writer state (wmu). */
    idmap map;
    hnsw_scratch *ws;
    hnsw_plan *plan;

    /* Search scratch free list (pool_mu). */
    hnsw_scratch **pool;
    size_t npool, pool_cap;
};

int index_new(size_t dim, const index_opts *opts, index_t **out)
{
    if (!out)
        return ERR_INVAL;
    *out = NULL;
    if (dim == 0 || dim > 65536)
        return ERR_INVAL;
    index_t *ix = calloc(1, sizeof *ix);
    if (!ix)
        return ERR_NOMEM;
    ix->dim = dim;
    if (opts)
        ix->o = *opts;
    if (!ix->o.hnsw_threshold)
        ix->o.hnsw_threshold = INDEX_DEFAULT_HNSW_THRESHOLD;
    if (!ix->o.M)
        ix->o.M = INDEX_DEFAULT_M;
    if (ix->o.M < 4)
        ix->o.M = 4;
    if (ix->o.M > 64)
        ix->o.M = 64;
    if (!ix->o.ef_construction)
        ix->o.ef_construction = INDEX_DEFAULT_EF_CONSTRUCTION;
    if (!ix->o.ef_search)
        ix->o.ef_search = INDEX_DEFAULT_EF_SEARCH;
    if (!ix->o.seed)
        ix->o.seed = 0x1d3a5eed;
    ix->ws = hnsw_scratch_new();
    ix->plan = hnsw_plan_new();
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int bad = pthread_rwlock_init(&ix->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    if (bad || !ix->ws || !ix->plan) {
        hnsw_scratch_free(ix->ws);
        hnsw_plan_free(ix->plan);
        if (!bad)
            pthread_rwlock_destroy(&ix->rw);
        free(ix);
        return ERR_NOMEM;
    }
    pthread_mutex_init(&ix->wmu, NULL);
    pthread_mutex_init(&ix->pool_mu, NULL);
    *out = ix;
    return ERR_OK;
}

void index_free(index_t *ix)
{
    if (!ix)
        return;
    hnsw_free(ix->g);
    free(ix->mat);
    free(ix->ids);
    idmap_free(&ix->map);
    hnsw_scratch_free(ix->ws);
    hnsw_plan_free(ix->plan);
    for (size_t i = 0; i < ix->npool; i++)
        hnsw_scratch_free(ix->pool[i]);
    free(ix->pool);
    pthread_rwlock_destroy(&ix->rw);
    pthread_mutex_destroy(&ix->wmu);
    pthread_mutex_destroy(&ix->pool_mu);
    free(ix);
}

size_t index_dim(const index_t *ix)
{
    return ix ? ix->dim : 0;
}

size_t index_size(index_t *ix)
{
    if (!ix)
        return 0;
    pthread_rwlock_rdlock(&ix->rw);
    size_t n = ix->live;
    pthread_rwlock_unlock(&ix->rw);
    return n;
}

int index_is_hnsw(index_t *ix)
{
    if (!ix)
        return 0;
    pthread_rwlock_rdlock(&ix->rw);
    int h = ix->is_hnsw;
    pthread_rwlock_unlock(&ix->rw);
    return h;
}

static hnsw_params params_of(const index_t *ix)
{
    hnsw_params p = {ix->o.M, ix->o.ef_construction, ix->o.seed};
    return p;
}

/*
 * Builds a graph from the exact matrix (row i becomes node i, so the id map
 * stays valid) and publishes it. Called with wmu held, rw not held: the
 * matrix cannot change meanwhile and searches go on using it. On failure the
 * index simply stays exact; the next add retries.
 */
static void switch_to_hnsw(index_t *ix)
{
    hnsw_params p = params_of(ix);
    hnsw *g = hnsw_new(ix->dim, &p, ix->n + ix->n / 4 + 16);
    if (!g)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        if (hnsw_add(g, ix->ids[i], ix->mat + i * ix->dim, ix->ws, ix->plan, NULL)) {
            hnsw_free(g);
            return;
        }
    }
    pthread_rwlock_wrlock(&ix->rw);
    float *mat = ix->mat;
    int64_t *ids = ix->ids;
    ix->g = g;
    ix->is_hnsw = 1;
    ix->mat = NULL;
    ix->ids = NULL;
    ix->n = ix->cap = 0;
    pthread_rwlock_unlock(&ix->rw);
    free(mat);
    free(ids);
}

/*
 * After deletions: rebuild the graph from its live nodes, or go back to the
 * exact matrix when fewer than half the threshold remain (the hysteresis
 * keeps an index near the threshold from flapping). Same locking as
 * switch_to_hnsw: built aside under wmu, published under rw.
 */
static int rebuild(index_t *ix)
{
    hnsw *old = ix->g;
    size_t count = hnsw_count(old), live = count - hnsw_deleted(old);
    idmap nm = {0};
    if (idmap_reserve(&nm, live))
        return ERR_NOMEM;
    if (live < ix->o.hnsw_threshold / 2) {
        size_t cap = live ? live : 1;
        float *mat = malloc(cap * ix->dim * sizeof *mat);
        int64_t *ids = malloc(cap * sizeof *ids);
        if (!mat || !ids) {
            free(mat);
            free(ids);
            idmap_free(&nm);
            return ERR_NOMEM;
        }
        size_t r = 0;
        for (uint32_t i = 0; i < count; i++) {
            if (hnsw_is_deleted(old, i))
                continue;
            memcpy(mat + r * ix->dim, hnsw_vector(old, i), ix->dim * sizeof *mat);
            ids[r] = hnsw_label(old, i);
            idmap_put_nogrow(&nm, ids[r], (uint32_t)r);
            r++;
        }
        pthread_rwlock_wrlock(&ix->rw);
        ix->mat = mat;
        ix->ids = ids;
        ix->n = r;
        ix->cap = cap;
        ix->g = NULL;
        ix->is_hnsw = 0;
        pthread_rwlock_unlock(&ix->rw);
    } else {
        hnsw_params p = params_of(ix);
        hnsw *g = hnsw_new(ix->dim, &p, live + live / 4 + 16);
        if (!g) {
            idmap_free(&nm);
            return ERR_NOMEM;
        }
        for (uint32_t i = 0; i < count; i++) {
            if (hnsw_is_deleted(old, i))
                continue;
            uint32_t node;
            int64_t id = hnsw_label(old, i);
            if (hnsw_add(g, id, hnsw_vector(old, i), ix->ws, ix->plan, &node)) {
                hnsw_free(g);
                idmap_free(&nm);
                return ERR_NOMEM;
            }
            idmap_put_nogrow(&nm, id, node);
        }
        pthread_rwlock_wrlock(&ix->rw);
        ix->g = g;
        pthread_rwlock_unlock(&ix->rw);
    }
    hnsw_free(old);
    idmap_free(&ix->map);
    ix->map = nm;
    return ERR_OK;
}

static int maybe_rebuild(index_t *ix)
{
    size_t count = hnsw_count(ix->g);
    if (count < REBUILD_MIN_NODES && ix->live > 0)
        return ERR_OK;
    if (hnsw_deleted(ix->g) * REBUILD_DIV <= count)
        return ERR_OK;
    return rebuild(ix);
}

static int vec_ok(const float *v, size_t dim)
{
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(v[i]))
            return 0;
    }
    return 1;
}

/* Exact append: grows the matrix aside (copy without rw), publishes under rw. */
static int exact_append(index_t *ix, int64_t id, const float *vec)
{
    float *oldm = NULL;
    int64_t *oldi = NULL;
    float *mat = ix->mat;
    int64_t *ids = ix->ids;
    size_t cap = ix->cap;
    if (ix->n == ix->cap) {
        cap = ix->cap ? ix->cap * 2 : 256;
        if (cap > (size_t)UINT32_MAX - 1)
            return ERR_TOOBIG;
        mat = malloc(cap * ix->dim * sizeof *mat);
        ids = malloc(cap * sizeof *ids);
        if (!mat || !ids) {
            free(mat);
            free(ids);
            return ERR_NOMEM;
        }
        if (ix->n) {
            memcpy(mat, ix->mat, ix->n * ix->dim * sizeof *mat);
            memcpy(ids, ix->ids, ix->n * sizeof *ids);
        }
        oldm = ix->mat;
        oldi = ix->ids;
    }
    pthread_rwlock_wrlock(&ix->rw);
    ix->mat = mat;
    ix->ids = ids;
    ix->cap = cap;
    memcpy(mat + ix->n * ix->dim, vec, ix->dim * sizeof *mat);
    ids[ix->n] = id;
    ix->n++;
    ix->live++;
    pthread_rwlock_unlock(&ix->rw);
    free(oldm);
    free(oldi);
    return ERR_OK;
}

int index_add(index_t *ix, int64_t id, const float *vec, size_t dim)
{
    if (!ix || !vec || dim != ix->dim || !vec_ok(vec, dim))
        return ERR_INVAL;
    pthread_mutex_lock(&ix->wmu);
    uint32_t slot;
    int have = idmap_get(&ix->map, id, &slot);
    int rc = ERR_OK;
    if (!have) {
        rc = idmap_reserve(&ix->map, ix->map.n + 1);
        if (rc)
            goto out;
    }
    if (!ix->is_hnsw) {
        if (have) {
            pthread_rwlock_wrlock(&ix->rw);
            memcpy(ix->mat + (size_t)slot * dim, vec, dim * sizeof *vec);
            pthread_rwlock_unlock(&ix->rw);
            goto out;
        }
        rc = exact_append(ix, id, vec);
        if (rc)
            goto out;
        idmap_put_nogrow(&ix->map, id, (uint32_t)(ix->n - 1));
        if (ix->n >= ix->o.hnsw_threshold)
            switch_to_hnsw(ix);
        goto out;
    }
    /* HNSW: a replacement is a deletion plus an insert. */
    rc = hnsw_prepare(ix->g, vec, ix->ws, ix->plan);
    if (rc)
        goto out;
    uint32_t node;
    pthread_rwlock_wrlock(&ix->rw);
    rc = hnsw_commit(ix->g, id, vec, ix->plan, &node);
    if (rc == ERR_OK) {
        if (have)
            hnsw_mark_deleted(ix->g, slot);
        else
            ix->live++;
    }
    pthread_rwlock_unlock(&ix->rw);
    if (rc)
        goto out;
    idmap_put_nogrow(&ix->map, id, node);
    if (have)
        (void)maybe_rebuild(ix); /* the add is done; a failed rebuild retries later */
out:
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

int index_remove(index_t *ix, int64_t id)
{
    if (!ix)
        return ERR_INVAL;
    pthread_mutex_lock(&ix->wmu);
    uint32_t slot;
    int rc = ERR_OK;
    if (!idmap_get(&ix->map, id, &slot)) {
        rc = ERR_NOENT;
        goto out;
    }
    if (!ix->is_hnsw) {
        size_t last = ix->n - 1;
        pthread_rwlock_wrlock(&ix->rw);
        if (slot != last) {
            memcpy(ix->mat + (size_t)slot * ix->dim, ix->mat + last * ix->dim,
                   ix->dim * sizeof *ix->mat);
            ix->ids[slot] = ix->ids[last];
        }
        ix->n--;
        ix->live--;
        pthread_rwlock_unlock(&ix->rw);
        if (slot != last)
            idmap_put_nogrow(&ix->map, ix->ids[slot], slot);
        idmap_del(&ix->map, id);
        goto out;
    }
    pthread_rwlock_wrlock(&ix->rw);
    hnsw_mark_deleted(ix->g, slot);
    ix->live--;
    pthread_rwlock_unlock(&ix->rw);
    idmap_del(&ix->map, id);
    rc = maybe_rebuild(ix);
out:
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

static hnsw_scratch *pool_get(index_t *ix)
{
    hnsw_scratch *s = NULL;
    pthread_mutex_lock(&ix->pool_mu);
    if (ix->npool)
        s = ix->pool[--ix->npool];
    pthread_mutex_unlock(&ix->pool_mu);
    return s ? s : hnsw_scratch_new();
}

static void pool_put(index_t *ix, hnsw_scratch *s)
{
    pthread_mutex_lock(&ix->pool_mu);
    if (ix->npool == ix->pool_cap) {
        size_t c = ix->pool_cap ? ix->pool_cap * 2 : 8;
        hnsw_scratch **p = realloc(ix->pool, c * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&ix->pool_mu);
            hnsw_scratch_free(s);
            return;
        }
        ix->pool = p;
        ix->pool_cap = c;
    }
    ix->pool[ix->npool++] = s;
    pthread_mutex_unlock(&ix->pool_mu);
}

int index_search(index_t *ix, const float *query, size_t dim, size_t k, uint32_t ef,
                 float min_score, index_keep_fn keep, void *ctx, index_hit *out, size_t *n)
{
    if (n)
        *n = 0;
    if (!ix || !query || !out || !n || k == 0 || dim != ix->dim)
        return ERR_INVAL;
    int rc = ERR_OK;
    pthread_rwlock_rdlock(&ix->rw);
    if (ix->is_hnsw) {
        hnsw_scratch *s = pool_get(ix);
        if (!s) {
            rc = ERR_NOMEM;
        } else {
            rc = hnsw_search(ix->g, query, k, ef ? ef : ix->o.ef_search, min_score, keep, ctx, s,
                             out, n);
            pool_put(ix, s);
        }
    } else if (ix->n) {
        index__topk t;
        rc = index__topk_init(&t, k < ix->n ? k : ix->n);
        if (rc == ERR_OK) {
            index__scan(ix->mat, ix->n, ix->dim, ix->ids, NULL, query, min_score, keep, ctx, &t);
            *n = index__topk_drain(&t, out);
            index__topk_fini(&t);
        }
    }
    pthread_rwlock_unlock(&ix->rw);
    return rc;
}
