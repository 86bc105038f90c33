/*
 * index/index.c — the per-(collection, model) search index: locking, the
 * id -> row/node map, the switch from the exact matrix to HNSW, and the
 * background thread that builds and rebuilds graphs.
 *
 * The algorithms live in exact.c and hnsw.c; this file is the glue, in the
 * way Redis keeps hnsw.c apart from vset.c.
 *
 * Threading
 *   wmu (mutex)   serialises writers: index_add, index_remove, and the final
 *                 step of a build (catch-up and swap). It guards `map`, `ws`,
 *                 `plan`, `job`, `thr`, `thr_joinable`, `last_rc`; `idle` is
 *                 its condition variable (signalled when `job` becomes NULL).
 *   rw (rwlock)   guards what searches read: the mode, the exact matrix (rows,
 *                 ids, tombstones), the graph pointer and the graph's contents,
 *                 `live`. Writers take it exclusively only to publish; the
 *                 build thread takes it shared to read the structure it copies.
 *   pool_mu       guards the free list of search scratch objects.
 *   Lock order: wmu, then rw, then pool_mu. Searches take rw (shared) and
 *   then pool_mu; they never take wmu. The build thread takes rw shared alone,
 *   or wmu then rw; it never holds rw while it waits for wmu.
 *   `cancel` and `building` are atomics read without locks.
 *
 * Why searches do not wait behind writers for long: a writer holding wmu is
 * the only thread that can change anything, so it may *read* the published
 * structures without rw, concurrently with searches. Everything slow is done
 * that way before taking rw exclusively: the HNSW neighbour search and
 * pruning of an insert (hnsw_prepare), the copy into a grown exact matrix.
 * The exclusive section is then a few memcpys and pointer swaps (or, for an
 * HNSW insert that fills the graph's capacity, one realloc-doubling).
 * The rwlock prefers writers (glibc's PREFER_WRITER_NONRECURSIVE kind), so a
 * steady stream of searches cannot starve an add; the price is that a thread
 * must never take rw shared twice, which is why `keep` may not call back into
 * the index.
 *
 * Builds. Building a graph takes about a millisecond per vector (512-D, the
 * default M and ef_construction), so a build of 20k vectors takes seconds:
 * far too long for the writer, which is the search service's feed thread.
 * So the writer that finds a build due (the exact matrix reached the
 * threshold, or deleted nodes exceed a fifth of the graph) only starts a
 * thread; the thread builds the new structure (the "target") from the
 * published one (the "source") while writers keep applying their changes to
 * the source, and searches keep using it.
 *
 * The trick that makes the catch-up cheap: while a build is pending, the
 * source only grows at its end and only gains tombstones. An HNSW source is
 * that way anyway (an insert appends a node, a removal marks it deleted, a
 * replacement does both). An exact source is switched to the same discipline
 * while a build is pending: a removal sets the row's tombstone instead of
 * moving the last row into the hole, and a replacement tombstones the old row
 * and appends the new one, in one publish (the scan skips tombstoned rows).
 * So row r of the source, once appended, never changes except that it may
 * die, and the builder needs no log of the writers' operations: it keeps a
 * cursor `done` over the source rows it has consumed, a map `remap` from
 * source row to target slot, and its own id map `nmap` (id -> target slot).
 * A round of catch-up inserts the rows appended since the last round (live
 * ones only) and deletes from the target the slots whose source rows died.
 * Rounds run without wmu, copying rows out in short batches under rw shared
 * (a realloc of the source happens under rw exclusive, so a batch never reads
 * a freed buffer; a writer waits for at most one batch copy of BATCH_BYTES,
 * and searches queue behind a waiting writer for as long). When a round
 * finds at most FINAL_ROWS new rows, the builder takes wmu, runs one last
 * round (nothing can change now) and swaps the target in under rw
 * exclusive, together with `nmap` as the new `map`.
 * At that moment the target holds exactly the source's live rows with their
 * vectors, so no search, before or after the swap, sees an id that was
 * removed or misses one that was added. Writers thus wait for the builder
 * only in that last step: at most FINAL_ROWS inserts and a scan of the
 * tombstones. If writers add rows faster than the builder can insert them
 * (a bulk load; ~1k rows/s at 512-D) the rounds do not converge and the index
 * simply stays on its source, fully searchable, until they slow down.
 *
 * After a swap the builder evaluates the same rules as the writers on the new
 * structure (rows deleted during the build become deleted nodes of the new
 * graph; adds during a fallback to exact may reach the threshold) and, when
 * one holds, starts the next build itself. A graph build is abandoned
 * (checked after each round and in the last step) when removals take the
 * index below half the threshold. A build that fails (ERR_NOMEM) discards its
 * target and leaves the source in place; the next write that finds a build
 * due starts another. Either way an exact source keeps its tombstones (the
 * scan skips them); once they exceed a fifth of its rows, an exact-to-exact
 * build compacts it, by the same machinery. index_free() sets `cancel`,
 * which the builder checks between inserts, and joins the thread.
 *
 * Rejected: logging each writer operation (id, vector) for the builder to
 * replay: a copy of every vector written during a build, and replaying a
 * remove needs the id map of the target anyway. Rejected too: a copy of the
 * source at the start of a build (40 MB at 20k x 512-D: ~10 ms or more in
 * the writer, and a third copy of the vectors in memory), and building under wmu
 * in the builder thread (writers would wait for the whole build again).
 * Rejected: per-node locks in the graph (as hnswlib does) allow parallel
 * inserts, but inferd's writers are result commits trickling in one at a
 * time, and a lock per node costs every search a lock per visited node.
 * Rejected too: copy-on-write snapshots (RCU) of the whole index per add —
 * O(n) per add.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/hnsw.h"
#include "index/index.h"
#include "util/err.h"

/* Rebuild the graph when deleted nodes exceed 1/REBUILD_DIV of it. */
enum { REBUILD_DIV = 5, REBUILD_MIN_NODES = 64 };

/*
 * FINAL_ROWS: the builder takes wmu for its last round only when at most this
 * many rows are left to insert, so a writer waits for at most that many graph
 * inserts (~1 ms each at 512-D). BATCH_BYTES: the rows a build copies out of
 * the source per rw hold. SCAN_ROWS: tombstone flags read per rw hold.
 */
enum { FINAL_ROWS = 16, BATCH_BYTES = 256 * 1024, SCAN_ROWS = 64 * 1024 };

/* Internal results of a build besides the ERR_ codes (which are <= 0). */
enum { BUILD_CANCELED = 1, BUILD_ABANDONED = 2 };

/*
 * Test hooks (tests/unit/test_index.c declares them; no header does). Zero in
 * production, where they cost one atomic load per build and per insert.
 *   index__build_fault  N > 0: the next build to start fails with ERR_NOMEM
 *                       at its Nth insert; that build resets it to 0.
 *   index__build_hold   N > 0: every build, before its Nth insert, sets
 *                       index__build_held and waits until the hook changes
 *                       (or index_free cancels it), so that a test can make
 *                       writes at a known point of a build.
 */
_Atomic int index__build_fault;
_Atomic int index__build_hold;
_Atomic int index__build_held;

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

/* ---- exact matrix ------------------------------------------------------- */

/*
 * Row-major vectors with their ids and tombstones. Published as the exact
 * backend (under rw), and used privately by a build whose target is exact.
 * Tombstones (del[r] != 0) exist only while a build reads the matrix, or left
 * behind by one that failed or was abandoned; a published matrix without a
 * pending build removes rows by moving the last row into the hole.
 */
typedef struct {
    float *mat;   /* cap rows of dim */
    int64_t *ids; /* id of each row */
    uint8_t *del; /* tombstone of each row */
    size_t n, cap, ndead;
} xmat;

static void xmat_free(xmat *x)
{
    free(x->mat);
    free(x->ids);
    free(x->del);
    memset(x, 0, sizeof *x);
}

/*
 * Allocates buffers for `cap` rows into *nx and copies the n rows of *x
 * there, leaving *x untouched (its owner may be reading it). nx->n = x->n.
 */
static int xmat_copy_grown(const xmat *x, size_t dim, size_t cap, xmat *nx)
{
    memset(nx, 0, sizeof *nx);
    if (cap > (size_t)UINT32_MAX - 1)
        return ERR_TOOBIG;
    nx->mat = malloc(cap * dim * sizeof *nx->mat);
    nx->ids = malloc(cap * sizeof *nx->ids);
    nx->del = malloc(cap);
    if (!nx->mat || !nx->ids || !nx->del) {
        xmat_free(nx);
        return ERR_NOMEM;
    }
    if (x->n) {
        memcpy(nx->mat, x->mat, x->n * dim * sizeof *nx->mat);
        memcpy(nx->ids, x->ids, x->n * sizeof *nx->ids);
        memcpy(nx->del, x->del, x->n);
    }
    nx->n = x->n;
    nx->cap = cap;
    nx->ndead = x->ndead;
    return ERR_OK;
}

/* ---- the index ------------------------------------------------------------ */

typedef struct build build;

struct index_t {
    size_t dim;
    index_opts o;
    pthread_mutex_t wmu;
    pthread_rwlock_t rw;
    pthread_mutex_t pool_mu;
    pthread_cond_t idle;

    /* Published state (rw). */
    int is_hnsw;
    xmat x;  /* exact: empty while HNSW */
    hnsw *g; /* HNSW; NULL while exact */
    size_t live;

    /* Writer state (wmu). */
    idmap map; /* id -> row of x, or node of g */
    hnsw_scratch *ws;
    hnsw_plan *plan;

    /* The build thread (wmu; see "Builds" above). */
    build *job;          /* the pending build, NULL when none */
    pthread_t thr;       /* the thread running `job`, or the last one */
    int thr_joinable;    /* thr has been started and not joined */
    int last_rc;         /* result of the last build that ended */
    atomic_int building; /* job != NULL, readable without wmu */
    atomic_int cancel;   /* index_free() is waiting: stop */

    /* Search scratch free list (pool_mu). */
    hnsw_scratch **pool;
    size_t npool, pool_cap;
};

/*
 * One build: the target under construction and the builder's view of the
 * source. Owned by the build thread (ix->job only names it, for the writers'
 * "is a build pending" test).
 */
struct build {
    int to_hnsw;     /* target kind: graph, or exact matrix */
    int fault;       /* fail at this insert (index__build_fault); 0: never */
    size_t inserted; /* target inserts so far */

    hnsw *g;         /* target graph */
    hnsw_scratch *s; /* the builder's own, not the writers' */
    hnsw_plan *plan;
    xmat x;        /* target matrix (no tombstones: deletion moves the last row) */
    uint32_t *inv; /* target row -> source row, x.cap entries */

    idmap nmap;       /* id -> target slot */
    uint32_t *remap;  /* source row -> target slot + 1; 0: not in the target */
    size_t remap_cap; /* entries of remap */
    size_t done;      /* source rows consumed */
    size_t seen_dead; /* source tombstones at the last deletion pass */

    /* One batch of source rows copied out under rw shared. */
    float *bvec;
    int64_t *blab;
    uint8_t *bdead;
    size_t brows;
};

static void build_free(build *b)
{
    if (!b)
        return;
    hnsw_free(b->g);
    hnsw_scratch_free(b->s);
    hnsw_plan_free(b->plan);
    xmat_free(&b->x);
    free(b->inv);
    idmap_free(&b->nmap);
    free(b->remap);
    free(b->bvec);
    free(b->blab);
    free(b->bdead);
    free(b);
}

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
    int badc = pthread_cond_init(&ix->idle, NULL);
    if (bad || badc || !ix->ws || !ix->plan) {
        hnsw_scratch_free(ix->ws);
        hnsw_plan_free(ix->plan);
        if (!bad)
            pthread_rwlock_destroy(&ix->rw);
        if (!badc)
            pthread_cond_destroy(&ix->idle);
        free(ix);
        return ERR_NOMEM;
    }
    pthread_mutex_init(&ix->wmu, NULL);
    pthread_mutex_init(&ix->pool_mu, NULL);
    atomic_init(&ix->building, 0);
    atomic_init(&ix->cancel, 0);
    *out = ix;
    return ERR_OK;
}

void index_free(index_t *ix)
{
    if (!ix)
        return;
    /* No other call may race with this one, so thr_joinable is stable; the
     * builder stops at its next check of `cancel` (or after its final step,
     * if it is in it) and clears `job` before it returns. */
    atomic_store(&ix->cancel, 1);
    if (ix->thr_joinable)
        pthread_join(ix->thr, NULL);
    build_free(ix->job);
    hnsw_free(ix->g);
    xmat_free(&ix->x);
    idmap_free(&ix->map);
    hnsw_scratch_free(ix->ws);
    hnsw_plan_free(ix->plan);
    for (size_t i = 0; i < ix->npool; i++)
        hnsw_scratch_free(ix->pool[i]);
    free(ix->pool);
    pthread_cond_destroy(&ix->idle);
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

int index_building(index_t *ix)
{
    return ix ? atomic_load(&ix->building) : 0;
}

int index_wait_idle(index_t *ix)
{
    if (!ix)
        return ERR_INVAL;
    pthread_mutex_lock(&ix->wmu);
    while (ix->job)
        pthread_cond_wait(&ix->idle, &ix->wmu);
    int rc = ix->last_rc;
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

static hnsw_params params_of(const index_t *ix)
{
    hnsw_params p = {ix->o.M, ix->o.ef_construction, ix->o.seed};
    return p;
}

/* ---- builds (see "Builds" above) ----------------------------------------- */

/* The published structure as a builder reads it: rows that only grow at the
 * end and gain tombstones while a build is pending. */
typedef struct {
    const float *vecs;
    const int64_t *labels;
    const uint8_t *dead;
    size_t n, ndead;
} srcview;

/* Call with rw held (either way) or wmu held. */
static srcview source_of(const index_t *ix)
{
    srcview v;
    if (ix->is_hnsw) {
        v.vecs = hnsw_vectors(ix->g);
        v.labels = hnsw_labels(ix->g);
        v.dead = hnsw_deleted_flags(ix->g);
        v.n = hnsw_count(ix->g);
        v.ndead = hnsw_deleted(ix->g);
    } else {
        v.vecs = ix->x.mat;
        v.labels = ix->x.ids;
        v.dead = ix->x.del;
        v.n = ix->x.n;
        v.ndead = ix->x.ndead;
    }
    return v;
}

/*
 * Which build the published structure calls for, wmu held: -1 none, 1 a
 * graph, 0 an exact matrix. The rules are the synchronous ones of before:
 * an exact index that holds `hnsw_threshold` live vectors gets a graph; a
 * graph whose deleted nodes exceed a fifth of it is rebuilt, as an exact
 * matrix when fewer than half the threshold remain (the hysteresis keeps an
 * index near the threshold from flapping). New: an exact matrix whose
 * tombstones (left by a failed or abandoned build) exceed a fifth of its
 * rows is compacted the same way.
 */
static int build_due(const index_t *ix)
{
    if (!ix->is_hnsw) {
        const xmat *x = &ix->x;
        if (ix->live >= ix->o.hnsw_threshold)
            return 1;
        if (x->n >= REBUILD_MIN_NODES && x->ndead * REBUILD_DIV > x->n)
            return 0;
        return -1;
    }
    size_t count = hnsw_count(ix->g);
    if (count < REBUILD_MIN_NODES && ix->live > 0)
        return -1;
    if (hnsw_deleted(ix->g) * REBUILD_DIV <= count)
        return -1;
    return ix->live < ix->o.hnsw_threshold / 2 ? 0 : 1;
}

/* Allocates the target and the builder's buffers, sized from the source. */
static int build_begin(index_t *ix, build *b)
{
    b->fault = atomic_exchange(&index__build_fault, 0);
    pthread_rwlock_rdlock(&ix->rw);
    srcview v = source_of(ix);
    size_t n = v.n, live = v.n - v.ndead;
    pthread_rwlock_unlock(&ix->rw);

    size_t dim = ix->dim;
    b->brows = BATCH_BYTES / (dim * sizeof(float));
    if (!b->brows)
        b->brows = 1;
    b->bvec = malloc(b->brows * dim * sizeof *b->bvec);
    b->blab = malloc(b->brows * sizeof *b->blab);
    b->bdead = malloc(b->brows);
    b->remap_cap = n + n / 4 + 64;
    b->remap = calloc(b->remap_cap, sizeof *b->remap);
    if (!b->bvec || !b->blab || !b->bdead || !b->remap)
        return ERR_NOMEM;
    int rc = idmap_reserve(&b->nmap, live + 1);
    if (rc)
        return rc;
    size_t cap = live + live / 4 + 16;
    if (b->to_hnsw) {
        hnsw_params p = params_of(ix);
        b->g = hnsw_new(dim, &p, cap);
        b->s = hnsw_scratch_new();
        b->plan = hnsw_plan_new();
        if (!b->g || !b->s || !b->plan)
            return ERR_NOMEM;
        return ERR_OK;
    }
    xmat none = {0};
    rc = xmat_copy_grown(&none, dim, cap, &b->x);
    if (rc)
        return rc;
    b->inv = malloc(cap * sizeof *b->inv);
    return b->inv ? ERR_OK : ERR_NOMEM;
}

/* Adds source row `srow` (id, vec) to the target. */
static int target_insert(const index_t *ix, build *b, size_t srow, int64_t id, const float *vec)
{
    if (b->fault && b->inserted + 1 == (size_t)b->fault)
        return ERR_NOMEM;
    int rc = idmap_reserve(&b->nmap, b->nmap.n + 1);
    if (rc)
        return rc;
    uint32_t slot;
    if (b->to_hnsw) {
        rc = hnsw_add(b->g, id, vec, b->s, b->plan, &slot);
        if (rc)
            return rc;
    } else {
        xmat *x = &b->x;
        if (x->n == x->cap) {
            xmat nx;
            rc = xmat_copy_grown(x, ix->dim, x->cap * 2, &nx);
            if (rc)
                return rc;
            uint32_t *inv = realloc(b->inv, nx.cap * sizeof *inv);
            if (!inv) {
                xmat_free(&nx);
                return ERR_NOMEM;
            }
            b->inv = inv;
            xmat_free(x);
            *x = nx;
        }
        slot = (uint32_t)x->n;
        memcpy(x->mat + (size_t)slot * ix->dim, vec, ix->dim * sizeof *vec);
        x->ids[slot] = id;
        x->del[slot] = 0;
        b->inv[slot] = (uint32_t)srow;
        x->n++;
    }
    b->remap[srow] = slot + 1;
    idmap_put_nogrow(&b->nmap, id, slot); /* replaces an older slot of the same id */
    b->inserted++;
    return ERR_OK;
}

/* Removes target slot `slot` (of `id`), whose source row died. The caller has
 * cleared that row's remap entry. An exact target moves its last row into
 * the hole, so it never holds tombstones. */
static void target_delete(const index_t *ix, build *b, uint32_t slot, int64_t id)
{
    uint32_t cur;
    if (idmap_get(&b->nmap, id, &cur) && cur == slot)
        idmap_del(&b->nmap, id);
    if (b->to_hnsw) {
        hnsw_mark_deleted(b->g, slot);
        return;
    }
    xmat *x = &b->x;
    uint32_t last = (uint32_t)(x->n - 1);
    if (slot != last) {
        memcpy(x->mat + (size_t)slot * ix->dim, x->mat + (size_t)last * ix->dim,
               ix->dim * sizeof *x->mat);
        x->ids[slot] = x->ids[last];
        b->inv[slot] = b->inv[last];
        b->remap[b->inv[slot]] = slot + 1;
        if (idmap_get(&b->nmap, x->ids[slot], &cur) && cur == last)
            idmap_put_nogrow(&b->nmap, x->ids[slot], slot);
    }
    x->n--;
}

/* index__build_hold: waits here before the hook's insert, see above. */
static void hold_point(index_t *ix, const build *b)
{
    int h = atomic_load_explicit(&index__build_hold, memory_order_relaxed);
    if (h <= 0 || b->inserted + 1 != (size_t)h)
        return;
    atomic_store(&index__build_held, 1);
    while (atomic_load(&index__build_hold) == h && !atomic_load(&ix->cancel)) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&index__build_held, 0);
}

/*
 * Consumes the source rows appended since the last call: copies them out in
 * batches under rw shared and inserts the live ones into the target without
 * any lock (the target is the builder's alone). Stops when it has caught up
 * with the source. Stores in *took the rows consumed. `final`: wmu is held
 * (the test hold is skipped: the test's writes would wait for us). Returns
 * ERR_OK, BUILD_CANCELED (index_free is waiting) or an insert's error.
 */
static int take_rows(index_t *ix, build *b, int final, size_t *took)
{
    size_t dim = ix->dim;
    *took = 0;
    for (;;) {
        pthread_rwlock_rdlock(&ix->rw);
        srcview v = source_of(ix);
        size_t total = v.n, m = v.n - b->done;
        if (m > b->brows)
            m = b->brows;
        if (m) {
            memcpy(b->bvec, v.vecs + b->done * dim, m * dim * sizeof *b->bvec);
            memcpy(b->blab, v.labels + b->done, m * sizeof *b->blab);
            memcpy(b->bdead, v.dead + b->done, m);
        }
        pthread_rwlock_unlock(&ix->rw);
        if (!m)
            return ERR_OK;
        if (total > b->remap_cap) {
            size_t cap = total + total / 4 + 64;
            uint32_t *r = realloc(b->remap, cap * sizeof *r);
            if (!r)
                return ERR_NOMEM;
            memset(r + b->remap_cap, 0, (cap - b->remap_cap) * sizeof *r);
            b->remap = r;
            b->remap_cap = cap;
        }
        for (size_t i = 0; i < m; i++) {
            if (atomic_load_explicit(&ix->cancel, memory_order_relaxed))
                return BUILD_CANCELED;
            if (b->bdead[i])
                continue; /* dead before we got to it: never enters the target */
            if (!final)
                hold_point(ix, b);
            int rc = target_insert(ix, b, b->done + i, b->blab[i], b->bvec + i * dim);
            if (rc)
                return rc;
        }
        b->done += m;
        *took += m;
    }
}

/*
 * Deletes from the target the slots of consumed source rows that have died
 * since. Skipped when the source has gained no tombstone since the last pass
 * (tombstones only accumulate while a build is pending); otherwise a scan of
 * the consumed rows' flags, SCAN_ROWS at a time under rw shared.
 */
static void take_deletions(index_t *ix, build *b)
{
    pthread_rwlock_rdlock(&ix->rw);
    size_t nd = source_of(ix).ndead;
    pthread_rwlock_unlock(&ix->rw);
    if (nd == b->seen_dead)
        return;
    for (size_t r0 = 0; r0 < b->done; r0 += SCAN_ROWS) {
        size_t r1 = b->done - r0 < SCAN_ROWS ? b->done : r0 + SCAN_ROWS;
        pthread_rwlock_rdlock(&ix->rw);
        srcview v = source_of(ix);
        for (size_t r = r0; r < r1; r++) {
            if (!b->remap[r] || !v.dead[r])
                continue;
            uint32_t slot = b->remap[r] - 1;
            b->remap[r] = 0;
            target_delete(ix, b, slot, v.labels[r]);
        }
        pthread_rwlock_unlock(&ix->rw);
    }
    b->seen_dead = nd; /* counted before the scan: a later tombstone is seen next time */
}

/* A graph build is abandoned when the index falls below half the threshold
 * (the same hysteresis as build_due's). */
static int build_abandoned(index_t *ix, const build *b)
{
    if (!b->to_hnsw)
        return 0;
    pthread_rwlock_rdlock(&ix->rw);
    size_t live = ix->live;
    pthread_rwlock_unlock(&ix->rw);
    return live < ix->o.hnsw_threshold / 2;
}

/*
 * Runs build `b` up to the swap: catch-up rounds without wmu until one finds
 * at most FINAL_ROWS new rows, then a last round under wmu. Returns ERR_OK
 * (caught up: ready to publish), BUILD_ABANDONED, BUILD_CANCELED or an error;
 * with wmu held in every case but BUILD_CANCELED.
 */
static int build_run(index_t *ix, build *b)
{
    int rc = build_begin(ix, b);
    while (rc == ERR_OK) {
        size_t took;
        rc = take_rows(ix, b, 0, &took);
        if (rc)
            break;
        take_deletions(ix, b);
        if (build_abandoned(ix, b)) {
            rc = BUILD_ABANDONED;
            break;
        }
        if (took > FINAL_ROWS)
            continue;
        pthread_mutex_lock(&ix->wmu);
        /* wmu held: no writer can change the source now. */
        if (source_of(ix).n - b->done <= FINAL_ROWS) {
            rc = take_rows(ix, b, 1, &took);
            if (rc == ERR_OK) {
                take_deletions(ix, b);
                if (build_abandoned(ix, b))
                    rc = BUILD_ABANDONED;
            }
            if (rc == BUILD_CANCELED)
                pthread_mutex_unlock(&ix->wmu);
            return rc;
        }
        pthread_mutex_unlock(&ix->wmu);
    }
    if (rc != BUILD_CANCELED)
        pthread_mutex_lock(&ix->wmu);
    return rc;
}

/*
 * Swaps the caught-up target in, wmu held. What the source owned moves to
 * *ox, *og and *om, for the caller to free once it has released wmu.
 */
static void build_publish(index_t *ix, build *b, xmat *ox, hnsw **og, idmap *om)
{
    pthread_rwlock_wrlock(&ix->rw);
    *ox = ix->x;
    *og = ix->g;
    if (b->to_hnsw) {
        ix->g = b->g;
        b->g = NULL;
        memset(&ix->x, 0, sizeof ix->x);
        ix->is_hnsw = 1;
    } else {
        ix->x = b->x;
        memset(&b->x, 0, sizeof b->x);
        ix->g = NULL;
        ix->is_hnsw = 0;
    }
    assert(ix->live == (ix->is_hnsw ? hnsw_count(ix->g) - hnsw_deleted(ix->g) : ix->x.n));
    pthread_rwlock_unlock(&ix->rw);
    assert(b->nmap.n == ix->live);
    *om = ix->map;
    ix->map = b->nmap;
    memset(&b->nmap, 0, sizeof b->nmap);
}

/*
 * The build thread: runs ix->job, publishes it, and runs the next build the
 * new structure calls for, until none does. Clears ix->job (and signals
 * `idle`) before it returns; after its last release of wmu it only frees.
 */
static void *build_main(void *arg)
{
    index_t *ix = arg;
    build *b = ix->job; /* set before this thread was created; only we change it */
    while (b) {
        int rc = build_run(ix, b);
        if (rc == BUILD_CANCELED)
            pthread_mutex_lock(&ix->wmu);
        xmat ox = {0};
        hnsw *og = NULL;
        idmap om = {0};
        if (rc == ERR_OK)
            build_publish(ix, b, &ox, &og, &om);
        if (rc != BUILD_CANCELED)
            ix->last_rc = rc == BUILD_ABANDONED ? ERR_OK : rc;
        /* A failed build does not chain (the next write retries). */
        build *next = NULL;
        if ((rc == ERR_OK || rc == BUILD_ABANDONED) && !atomic_load(&ix->cancel)) {
            int due = build_due(ix);
            if (due >= 0 && (next = calloc(1, sizeof *next)) != NULL)
                next->to_hnsw = due;
        }
        ix->job = next;
        if (!next) {
            atomic_store(&ix->building, 0);
            pthread_cond_broadcast(&ix->idle);
        }
        pthread_mutex_unlock(&ix->wmu);
        hnsw_free(og);
        xmat_free(&ox);
        idmap_free(&om);
        build_free(b);
        b = next;
    }
    return NULL;
}

/* Starts a build towards `to_hnsw` on a new thread, wmu held, no build
 * pending. On failure nothing changes but last_rc; the next write retries. */
static void build_start(index_t *ix, int to_hnsw)
{
    build *b = calloc(1, sizeof *b);
    if (!b) {
        ix->last_rc = ERR_NOMEM;
        return;
    }
    b->to_hnsw = to_hnsw;
    if (ix->thr_joinable) {
        /* The previous build thread has cleared `job` under wmu and is at
         * most freeing what it swapped out: this join is short. */
        pthread_join(ix->thr, NULL);
        ix->thr_joinable = 0;
    }
    ix->job = b;
    atomic_store(&ix->building, 1);
    if (pthread_create(&ix->thr, NULL, build_main, ix) != 0) {
        ix->job = NULL;
        atomic_store(&ix->building, 0);
        free(b);
        ix->last_rc = ERR_INTERNAL;
        return;
    }
    ix->thr_joinable = 1;
}

/* After every write, wmu held: starts the build the index calls for, if any
 * and none is pending. */
static void build_maybe_start(index_t *ix)
{
    if (ix->job || atomic_load_explicit(&ix->cancel, memory_order_relaxed))
        return;
    int due = build_due(ix);
    if (due >= 0)
        build_start(ix, due);
}

/* ---- writers ------------------------------------------------------------ */

static int vec_ok(const float *v, size_t dim)
{
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(v[i]))
            return 0;
    }
    return 1;
}

/*
 * Exact append of (id, vec), wmu held: grows the matrix aside (copy without
 * rw), publishes under rw. When `kill` is a row (not -1), that row is
 * tombstoned in the same publish: a replacement while a build is pending,
 * so that no search sees the id twice or not at all.
 */
static int exact_append(index_t *ix, int64_t id, const float *vec, int64_t kill)
{
    xmat *x = &ix->x;
    xmat grown = {0}, old = {0};
    if (x->n == x->cap) {
        int rc = xmat_copy_grown(x, ix->dim, x->cap ? x->cap * 2 : 256, &grown);
        if (rc)
            return rc;
    }
    pthread_rwlock_wrlock(&ix->rw);
    if (grown.mat) {
        old = *x;
        *x = grown;
    }
    memcpy(x->mat + x->n * ix->dim, vec, ix->dim * sizeof *x->mat);
    x->ids[x->n] = id;
    x->del[x->n] = 0;
    x->n++;
    if (kill >= 0) {
        x->del[kill] = 1;
        x->ndead++;
    } else {
        ix->live++;
    }
    pthread_rwlock_unlock(&ix->rw);
    xmat_free(&old);
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
        if (have && !ix->job) {
            pthread_rwlock_wrlock(&ix->rw);
            memcpy(ix->x.mat + (size_t)slot * dim, vec, dim * sizeof *vec);
            pthread_rwlock_unlock(&ix->rw);
            goto done;
        }
        /* A build reads the matrix: rows must not change, so a replacement
         * tombstones the old row and appends (see "Builds"). */
        rc = exact_append(ix, id, vec, have ? (int64_t)slot : -1);
        if (rc)
            goto out;
        idmap_put_nogrow(&ix->map, id, (uint32_t)(ix->x.n - 1));
        goto done;
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
done:
    build_maybe_start(ix); /* the add is done whatever becomes of this */
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
        xmat *x = &ix->x;
        size_t last = x->n - 1;
        int moved = 0;
        pthread_rwlock_wrlock(&ix->rw);
        if (ix->job) {
            /* A build reads the matrix: tombstone, do not move rows. */
            x->del[slot] = 1;
            x->ndead++;
        } else {
            if (slot != last) {
                memcpy(x->mat + (size_t)slot * ix->dim, x->mat + last * ix->dim,
                       ix->dim * sizeof *x->mat);
                x->ids[slot] = x->ids[last];
                x->del[slot] = x->del[last];
                moved = !x->del[slot]; /* a dead row (left by a build) has no map entry */
            }
            x->n--;
        }
        ix->live--;
        pthread_rwlock_unlock(&ix->rw);
        if (moved)
            idmap_put_nogrow(&ix->map, x->ids[slot], slot);
        idmap_del(&ix->map, id);
    } else {
        pthread_rwlock_wrlock(&ix->rw);
        hnsw_mark_deleted(ix->g, slot);
        ix->live--;
        pthread_rwlock_unlock(&ix->rw);
        idmap_del(&ix->map, id);
    }
    build_maybe_start(ix);
out:
    pthread_mutex_unlock(&ix->wmu);
    return rc;
}

/* ---- searches ----------------------------------------------------------- */

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
    } else if (ix->x.n) {
        const xmat *x = &ix->x;
        index__topk t;
        rc = index__topk_init(&t, k < x->n ? k : x->n);
        if (rc == ERR_OK) {
            index__scan(x->mat, x->n, ix->dim, x->ids, x->ndead ? x->del : NULL, query, min_score,
                        keep, ctx, &t);
            *n = index__topk_drain(&t, out);
            index__topk_fini(&t);
        }
    }
    pthread_rwlock_unlock(&ix->rw);
    return rc;
}
