/*
 * index/hnsw.c — Hierarchical Navigable Small World graph (Malkov & Yashunin,
 * "Efficient and robust approximate nearest neighbor search using
 * Hierarchical Navigable Small World graphs", TPAMI 2018), for dot-product
 * similarity on float32 vectors. Pure algorithm: no locks, no logging, no
 * knowledge of the daemon; index.c supplies those.
 *
 * Written from the paper:
 *   - levels drawn as floor(-ln(U) * mL) with mL = 1/ln(M) (section 4.1);
 *   - insert (Algorithm 1): greedy descent with ef = 1 above the new node's
 *     level, then a beam search of width ef_construction on each layer from
 *     min(level, top) to 0, neighbours picked by the heuristic of Algorithm 4
 *     (without candidate extension or pruned-connection keeping, which the
 *     paper finds useful only for extremely clustered low-dimensional data),
 *     links made both ways, and an overfull neighbour list shrunk by the same
 *     heuristic; Mmax = M on layers >= 1 and Mmax0 = 2M on layer 0;
 *   - search (Algorithm 5): greedy descent to layer 1, then SEARCH-LAYER
 *     (Algorithm 2) on layer 0 with ef = max(ef, k).
 * "Distance" here is 1 - dot, so every comparison is on the dot product with
 * the sign turned: nearer means a higher score.
 *
 * Layout. Vectors live in one contiguous row-major matrix (node i = row i),
 * so an exact fallback scan and a rebuild read them sequentially. Layer-0
 * links are one flat array of (1 + 2M) uint32 per node (count, then ids);
 * upper layers, which only ~1/M of nodes have, get a small per-node block.
 * Labels (the caller's int64 ids) and deletion flags are parallel arrays.
 * The matrix and the layer-0 links of a large graph sit on transparent huge
 * pages (see "Big arrays" below): the search reads them at random, and with
 * 4 KiB pages nearly every row also costs a page walk.
 *
 * Where a search's time goes: nearly all of it waits on DRAM for the vectors
 * of the neighbours it scores (perf: ~80% on the loads of the dot kernel for
 * 100k x 512-D), so the search is arranged around memory-level parallelism.
 * The unvisited neighbours of an expanded node are scored in one batch by
 * index__dot_gather, which requests all their rows before it reads the first
 * (exact.c). A node's link list is requested when it enters the candidate
 * heap, and again when it becomes the best candidate left, so that the list
 * is in cache by the time the node is expanded.
 * Rejected: hnswlib's layout, one record per node holding its layer-0 links,
 * vector and label, so that the links sit next to a vector already read. It
 * would break the contiguous matrix above (hnsw_vectors), and the prefetches
 * hide the separate link miss almost as well: after them, perf puts ~5% of a
 * search on link loads (a node pushed as the best candidate is expanded
 * right away, before its prefetch completes).
 *
 * Visited set: a bitset per scratch (one per searching thread), cleared at
 * the start of each layer search. At 1 bit per node it stays in L1/L2 (12.5
 * KiB for 100k nodes) where per-node generation stamps (the old scheme,
 * which saved the clearing) took 32 times the space. The clearing costs n/8
 * bytes of memset per search, well under 1% of an ef-16 search at 100k.
 *
 * Inserts are split into a read-only hnsw_prepare (all the searching and
 * pruning, including the new link lists of the neighbours) and a short
 * mutating hnsw_commit that copies those lists in. index.c runs the first
 * while searches continue and holds its write lock only for the second. The
 * level of node n is a hash of (seed, n) rather than a draw from a stateful
 * generator, so prepare stays read-only and builds are reproducible.
 *
 * Deleted nodes stay in the graph: they still route searches (removing them
 * would cut paths) but are never admitted to results. index.c rebuilds the
 * graph when they pile up. Filtered-out labels are treated the same way.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "index/hnsw.h"
#include "util/err.h"

enum { HNSW_MAX_LEVEL = 15, HNSW_MAX_M = 64 };

struct hnsw {
    size_t dim;
    uint32_t M, M0, efc;
    double mL;
    uint64_t seed;
    size_t n, cap, ndel;
    float *vecs;     /* cap * dim; see "Big arrays" */
    uint32_t *l0;    /* cap * (M0 + 1): count, then links; idem */
    size_t vecs_map; /* bytes mapped for vecs; 0 when it came from malloc */
    size_t l0_map;   /* idem for l0 */
    uint32_t **up;   /* per node: level * (M + 1), layers 1..level */
    uint8_t *level;  /* per node */
    int64_t *labels; /* per node */
    uint8_t *del;    /* per node */
    uint32_t entry;
    int top; /* level of the entry point; -1 when empty */
};

typedef struct {
    float s;
    uint32_t id;
} cand;

struct hnsw_scratch {
    uint64_t *vis; /* visited bitset, one bit per node */
    size_t vcap;   /* words */
    cand *c;       /* candidates: max-heap on s */
    size_t cn, ccap;
    cand *w; /* results: min-heap on s */
    size_t wn, wcap;
    cand *sorted; /* results, best first */
    size_t scap;
};

typedef struct {
    uint32_t node;
    uint32_t lvl;
    uint32_t cnt;
    uint32_t links[2 * HNSW_MAX_M];
} plan_upd;

struct hnsw_plan {
    uint32_t node;
    int level;
    uint32_t *own; /* layer 0 block (M0 + 1), then layer l block (M + 1) */
    size_t own_cap;
    plan_upd *u;
    size_t nu, ucap;
};

/* ---- small helpers -------------------------------------------------------- */

static inline const float *vec_of(const hnsw *g, uint32_t id)
{
    return g->vecs + (size_t)id * g->dim;
}

static inline uint32_t *links_of(const hnsw *g, uint32_t id, int lvl)
{
    if (lvl == 0)
        return g->l0 + (size_t)id * (g->M0 + 1);
    return g->up[id] + (size_t)(lvl - 1) * (g->M + 1);
}

/* Requests the link list of `id` on layer `lvl` (count and ids: up to three
 * cache lines) into the cache, without waiting for it. */
static inline void prefetch_links(const hnsw *g, uint32_t id, int lvl)
{
    const char *p = (const char *)links_of(g, id, lvl);
    size_t bytes = ((lvl == 0 ? g->M0 : g->M) + 1) * sizeof(uint32_t);
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(p + o, 0, 2);
    __builtin_prefetch(p + bytes - 1, 0, 2);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int sample_level(const hnsw *g, uint64_t n)
{
    uint64_t x = splitmix64(g->seed ^ splitmix64(n));
    double u = ((double)(x >> 11) + 0.5) * 0x1p-53; /* (0, 1) */
    double l = -log(u) * g->mL;
    return l >= HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : (int)l;
}

/* ---- big arrays ----------------------------------------------------------- */

/*
 * The vector matrix and the layer-0 links are read at random, a row per
 * visited node. With 4 KiB pages a graph of a few hundred MB is far beyond the
 * TLB's reach, so nearly every row costs a page walk on top of its cache
 * misses. Arrays of at least BIG_MIN bytes therefore get their own anonymous
 * mapping, aligned to 2 MiB and advised MADV_HUGEPAGE, so that the kernel can
 * back them with transparent huge pages (where THP is "always" or "madvise";
 * elsewhere the advice is ignored and nothing is lost). The aligned mapping
 * also starts every row of a dimension that is a multiple of 16 on a cache
 * line, so a 2 KiB row costs 32 line fills, not 33. Together: 1.9x the QPS
 * of the same search on malloc'd arrays (100k x 512-D low-rank, ef 64).
 *
 * Growth uses mremap into a fresh aligned window: the kernel moves the page
 * tables instead of copying the data, so a growth (which index.c may do under
 * its write lock) costs no more than the glibc realloc it replaces, and the
 * huge pages stay intact. Smaller arrays stay on malloc: a 2 MiB page per
 * small graph would waste memory for no gain, as such graphs fit the TLB's
 * reach. Rejected: aligned_alloc plus madvise, which copies on every growth.
 * The cost: RSS rounds up to whole 2 MiB pages, and a fault on a fresh huge
 * page may wait for the kernel to compact memory.
 */
enum { BIG_PAGE = 2u << 20, BIG_MIN = 4 * BIG_PAGE };

/* Frees an array from big_resize; `map` is its mapped length (0: malloc). */
static void big_free(void *p, size_t map)
{
    if (map)
        munmap(p, map);
    else
        free(p);
}

/*
 * Grows the array *p, of which the first `used` bytes matter, to `bytes`
 * bytes, keeping those. *map is the length mapped for it (0 when it came from
 * malloc, or is NULL) and is updated. ERR_OK, or ERR_NOMEM with *p and *map
 * unchanged.
 */
static int big_resize(void **p, size_t *map, size_t used, size_t bytes)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(MREMAP_FIXED)
    if (bytes >= BIG_MIN || *map) {
        size_t len = (bytes + BIG_PAGE - 1) & ~((size_t)BIG_PAGE - 1);
        if (len <= *map)
            return ERR_OK;
        /* Map one page more than needed and cut an aligned window from it. */
        char *r =
            mmap(NULL, len + BIG_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r == MAP_FAILED)
            return ERR_NOMEM;
        uintptr_t off = (BIG_PAGE - (uintptr_t)r % BIG_PAGE) % BIG_PAGE;
        char *a = r + off;
        if (off)
            munmap(r, off);
        munmap(a + len, BIG_PAGE - off);
        if (*map) {
            /* Replaces the window; the advice travels with the mapping. */
            if (mremap(*p, *map, len, MREMAP_MAYMOVE | MREMAP_FIXED, a) == MAP_FAILED) {
                munmap(a, len);
                return ERR_NOMEM;
            }
        } else {
            madvise(a, len, MADV_HUGEPAGE); /* advice only: failure costs speed */
            if (used)
                memcpy(a, *p, used);
            free(*p);
        }
        *p = a;
        *map = len;
        return ERR_OK;
    }
#else
    (void)used;
#endif
    void *n = realloc(*p, bytes);
    if (!n)
        return ERR_NOMEM;
    *p = n;
    return ERR_OK;
}

/* ---- construction / accessors -------------------------------------------- */

hnsw *hnsw_new(size_t dim, const hnsw_params *p, size_t cap)
{
    if (dim == 0 || !p)
        return NULL;
    hnsw *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    uint32_t M = p->M < 4 ? 4 : p->M > HNSW_MAX_M ? HNSW_MAX_M : p->M;
    g->dim = dim;
    g->M = M;
    g->M0 = 2 * M;
    g->efc = p->ef_construction ? p->ef_construction : 200;
    if (g->efc < M)
        g->efc = M;
    g->mL = 1.0 / log((double)M);
    g->seed = p->seed;
    g->top = -1;
    if (cap && hnsw_reserve(g, cap) != ERR_OK) {
        hnsw_free(g);
        return NULL;
    }
    return g;
}

void hnsw_free(hnsw *g)
{
    if (!g)
        return;
    if (g->up) {
        for (size_t i = 0; i < g->n; i++)
            free(g->up[i]);
    }
    free(g->up);
    big_free(g->vecs, g->vecs_map);
    big_free(g->l0, g->l0_map);
    free(g->level);
    free(g->labels);
    free(g->del);
    free(g);
}

int hnsw_reserve(hnsw *g, size_t cap)
{
    if (cap <= g->cap)
        return ERR_OK;
    if (cap > (size_t)UINT32_MAX - 1)
        return ERR_TOOBIG;
    /* Each array is grown in turn; a failure leaves the grown ones bigger than
     * g->cap, which is harmless, and g->cap unchanged. */
    size_t vrow = g->dim * sizeof *g->vecs, lrow = (g->M0 + 1) * sizeof *g->l0;
    void *v = g->vecs;
    if (big_resize(&v, &g->vecs_map, g->n * vrow, cap * vrow))
        return ERR_NOMEM;
    g->vecs = v;
    void *l0 = g->l0;
    if (big_resize(&l0, &g->l0_map, g->n * lrow, cap * lrow))
        return ERR_NOMEM;
    g->l0 = l0;
    uint32_t **up = realloc(g->up, cap * sizeof *up);
    if (!up)
        return ERR_NOMEM;
    g->up = up;
    uint8_t *lv = realloc(g->level, cap);
    if (!lv)
        return ERR_NOMEM;
    g->level = lv;
    int64_t *lb = realloc(g->labels, cap * sizeof *lb);
    if (!lb)
        return ERR_NOMEM;
    g->labels = lb;
    uint8_t *d = realloc(g->del, cap);
    if (!d)
        return ERR_NOMEM;
    g->del = d;
    g->cap = cap;
    return ERR_OK;
}

size_t hnsw_count(const hnsw *g)
{
    return g->n;
}

size_t hnsw_deleted(const hnsw *g)
{
    return g->ndel;
}

const float *hnsw_vector(const hnsw *g, uint32_t node)
{
    return vec_of(g, node);
}

int64_t hnsw_label(const hnsw *g, uint32_t node)
{
    return g->labels[node];
}

int hnsw_is_deleted(const hnsw *g, uint32_t node)
{
    return g->del[node] != 0;
}

const float *hnsw_vectors(const hnsw *g)
{
    return g->vecs;
}

const int64_t *hnsw_labels(const hnsw *g)
{
    return g->labels;
}

const uint8_t *hnsw_deleted_flags(const hnsw *g)
{
    return g->del;
}

void hnsw_mark_deleted(hnsw *g, uint32_t node)
{
    if (node < g->n && !g->del[node]) {
        g->del[node] = 1;
        g->ndel++;
    }
}

/* ---- scratch -------------------------------------------------------------- */

hnsw_scratch *hnsw_scratch_new(void)
{
    return calloc(1, sizeof(hnsw_scratch));
}

void hnsw_scratch_free(hnsw_scratch *s)
{
    if (!s)
        return;
    free(s->vis);
    free(s->c);
    free(s->w);
    free(s->sorted);
    free(s);
}

/* Makes the visited bitset cover `n` nodes, all unvisited. */
static int scratch_begin(hnsw_scratch *s, size_t n)
{
    size_t words = (n + 63) / 64;
    if (words > s->vcap) {
        size_t cap = s->vcap ? s->vcap : 64;
        while (cap < words)
            cap *= 2;
        uint64_t *v = realloc(s->vis, cap * sizeof *v);
        if (!v)
            return ERR_NOMEM;
        s->vis = v;
        s->vcap = cap;
    }
    memset(s->vis, 0, words * sizeof *s->vis);
    s->cn = 0;
    s->wn = 0;
    return ERR_OK;
}

static int grow(cand **a, size_t *cap, size_t need)
{
    if (need <= *cap)
        return ERR_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    cand *p = realloc(*a, c * sizeof *p);
    if (!p)
        return ERR_NOMEM;
    *a = p;
    *cap = c;
    return ERR_OK;
}

/* Max-heap on s (candidates). */
static void cpush(hnsw_scratch *s, float sc, uint32_t id)
{
    cand *h = s->c;
    size_t i = s->cn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].s >= sc)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i].s = sc;
    h[i].id = id;
}

static cand cpop(hnsw_scratch *s)
{
    cand *h = s->c;
    cand top = h[0];
    cand x = h[--s->cn];
    size_t n = s->cn, i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        if (l + 1 < n && h[l + 1].s > h[l].s)
            l++;
        if (h[l].s <= x.s)
            break;
        h[i] = h[l];
        i = l;
    }
    if (n)
        h[i] = x;
    return top;
}

/* Min-heap on s (results). */
static void wpush(hnsw_scratch *s, float sc, uint32_t id)
{
    cand *h = s->w;
    size_t i = s->wn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].s <= sc)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i].s = sc;
    h[i].id = id;
}

static void wpop(hnsw_scratch *s)
{
    cand *h = s->w;
    cand x = h[--s->wn];
    size_t n = s->wn, i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        if (l + 1 < n && h[l + 1].s < h[l].s)
            l++;
        if (h[l].s >= x.s)
            break;
        h[i] = h[l];
        i = l;
    }
    if (n)
        h[i] = x;
}

/* ---- the two search primitives ------------------------------------------- */

/* Greedy walk on layer `lvl` from *ep (score *eps) to a local maximum. */
static void greedy(const hnsw *g, const float *q, int lvl, uint32_t *ep, float *eps)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        const uint32_t *l = links_of(g, *ep, lvl);
        uint32_t cnt = l[0];
        float sc[2 * HNSW_MAX_M];
        index__dot_gather(q, g->vecs, g->dim, l + 1, cnt, sc);
        for (uint32_t j = 0; j < cnt; j++) {
            if (sc[j] > *eps) {
                *eps = sc[j];
                *ep = l[1 + j];
                changed = 1;
            }
        }
    }
}

typedef struct {
    int restricted; /* some nodes are not admissible */
    index_keep_fn keep;
    void *ctx;
} admit_t;

static inline int admissible(const hnsw *g, const admit_t *a, uint32_t id)
{
    if (!a->restricted)
        return 1;
    if (g->del[id])
        return 0;
    return !a->keep || a->keep(a->ctx, g->labels[id]);
}

/*
 * SEARCH-LAYER (Algorithm 2) from one entry point with beam `ef` on layer
 * `lvl`. Admissible visited nodes end in s->w (a min-heap of at most ef).
 * Inadmissible ones are expanded but not kept; the search then stops only
 * once the beam is full, as the paper's bound assumes a full W.
 */
static int search_layer(const hnsw *g, const float *q, uint32_t ep, float eps, size_t ef, int lvl,
                        const admit_t *a, hnsw_scratch *s)
{
    int rc = scratch_begin(s, g->n);
    if (rc)
        return rc;
    size_t maxl = lvl == 0 ? g->M0 : g->M;
    if (grow(&s->w, &s->wcap, ef + 1) || grow(&s->c, &s->ccap, 64))
        return ERR_NOMEM;
    uint64_t *vis = s->vis;
    vis[ep >> 6] |= 1ull << (ep & 63);
    cpush(s, eps, ep);
    float lower = -INFINITY;
    if (admissible(g, a, ep)) {
        wpush(s, eps, ep);
        lower = eps;
    }
    while (s->cn) {
        cand c = cpop(s);
        if (c.s < lower && (s->wn >= ef || !a->restricted))
            break;
        /* The best remaining candidate is the likely next one to expand;
         * its list was requested when it was pushed but may have been
         * evicted since by the vectors streaming through. */
        if (s->cn)
            prefetch_links(g, s->c[0].id, lvl);
        const uint32_t *l = links_of(g, c.id, lvl);
        uint32_t cnt = l[0];
        if (s->cn + cnt > s->ccap && grow(&s->c, &s->ccap, s->cn + maxl + 1))
            return ERR_NOMEM;
        /* Collect the unvisited neighbours, then score them in one batched,
         * prefetching kernel call. */
        uint32_t ids[2 * HNSW_MAX_M];
        float sc[2 * HNSW_MAX_M];
        size_t m = 0;
        for (uint32_t j = 1; j <= cnt; j++) {
            uint32_t e = l[j];
            uint64_t bit = 1ull << (e & 63);
            if (vis[e >> 6] & bit)
                continue;
            vis[e >> 6] |= bit;
            ids[m++] = e;
        }
        index__dot_gather(q, g->vecs, g->dim, ids, m, sc);
        for (size_t j = 0; j < m; j++) {
            uint32_t e = ids[j];
            if (s->wn < ef || sc[j] > lower) {
                cpush(s, sc[j], e);
                /* A candidate is likely to be expanded soon: fetch its link
                 * list now, while other work hides the miss. */
                prefetch_links(g, e, lvl);
                if (admissible(g, a, e)) {
                    wpush(s, sc[j], e);
                    if (s->wn > ef)
                        wpop(s);
                    lower = s->w[0].s;
                }
            }
        }
    }
    return ERR_OK;
}

/* Moves s->w into s->sorted, best first; returns the count. */
static size_t drain_sorted(hnsw_scratch *s)
{
    size_t n = s->wn;
    if (grow(&s->sorted, &s->scap, n + 1))
        return 0;
    for (size_t i = n; i > 0; i--) {
        s->sorted[i - 1] = s->w[0];
        wpop(s);
    }
    return n;
}

/* ---- insert --------------------------------------------------------------- */

hnsw_plan *hnsw_plan_new(void)
{
    return calloc(1, sizeof(hnsw_plan));
}

void hnsw_plan_free(hnsw_plan *p)
{
    if (!p)
        return;
    free(p->own);
    free(p->u);
    free(p);
}

/* Vector of `id`, where `newid` (not yet in the graph) is `newvec`. */
static inline const float *vec_or_new(const hnsw *g, uint32_t id, uint32_t newid,
                                      const float *newvec)
{
    return id == newid ? newvec : vec_of(g, id);
}

/*
 * SELECT-NEIGHBORS-HEURISTIC (Algorithm 4) over `cs` (n candidates, sorted
 * best first by score against the base element): keep a candidate only if it
 * is nearer the base than every one kept so far, up to `m`. Writes the kept
 * ids to out and returns their number.
 */
static size_t select_heuristic(const hnsw *g, uint32_t newid, const float *newvec, const cand *cs,
                               size_t n, size_t m, uint32_t *out)
{
    size_t r = 0;
    for (size_t i = 0; i < n && r < m; i++) {
        const float *v = vec_or_new(g, cs[i].id, newid, newvec);
        int good = 1;
        for (size_t j = 0; j < r; j++) {
            if (index__dot(v, vec_or_new(g, out[j], newid, newvec), g->dim) > cs[i].s) {
                good = 0;
                break;
            }
        }
        if (good)
            out[r++] = cs[i].id;
    }
    return r;
}

static void sort_desc(cand *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        cand x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1].s < x.s) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

static uint32_t *plan_own(const hnsw *g, hnsw_plan *p, int lvl)
{
    if (lvl == 0)
        return p->own;
    return p->own + (g->M0 + 1) + (size_t)(lvl - 1) * (g->M + 1);
}

int hnsw_prepare(const hnsw *g, const float *vec, hnsw_scratch *s, hnsw_plan *p)
{
    if ((size_t)g->n >= (size_t)UINT32_MAX - 1)
        return ERR_TOOBIG;
    uint32_t node = (uint32_t)g->n;
    int level = sample_level(g, node);
    size_t own_need = (g->M0 + 1) + (size_t)level * (g->M + 1);
    if (own_need > p->own_cap) {
        uint32_t *o = realloc(p->own, own_need * sizeof *o);
        if (!o)
            return ERR_NOMEM;
        p->own = o;
        p->own_cap = own_need;
    }
    memset(p->own, 0, own_need * sizeof *p->own);
    p->node = node;
    p->level = level;
    p->nu = 0;
    if (g->top < 0)
        return ERR_OK;

    uint32_t ep = g->entry;
    float eps = index__dot(vec, vec_of(g, ep), g->dim);
    for (int l = g->top; l > level; l--)
        greedy(g, vec, l, &ep, &eps);

    admit_t all = {0, NULL, NULL};
    int start = level < g->top ? level : g->top;
    for (int l = start; l >= 0; l--) {
        int rc = search_layer(g, vec, ep, eps, g->efc, l, &all, s);
        if (rc)
            return rc;
        size_t nw = drain_sorted(s);
        if (nw == 0)
            return ERR_NOMEM;
        uint32_t *own = plan_own(g, p, l);
        size_t nsel = select_heuristic(g, node, vec, s->sorted, nw, g->M, own + 1);
        own[0] = (uint32_t)nsel;
        ep = s->sorted[0].id;
        eps = s->sorted[0].s;

        if (p->nu + nsel > p->ucap) {
            size_t c = p->ucap ? p->ucap * 2 : 32;
            while (c < p->nu + nsel)
                c *= 2;
            plan_upd *u = realloc(p->u, c * sizeof *u);
            if (!u)
                return ERR_NOMEM;
            p->u = u;
            p->ucap = c;
        }
        size_t mmax = l == 0 ? g->M0 : g->M;
        for (size_t i = 0; i < nsel; i++) {
            uint32_t e = own[1 + i];
            const uint32_t *el = links_of(g, e, l);
            plan_upd *u = &p->u[p->nu++];
            u->node = e;
            u->lvl = (uint32_t)l;
            if (el[0] < mmax) {
                memcpy(u->links, el + 1, el[0] * sizeof *el);
                u->links[el[0]] = node;
                u->cnt = el[0] + 1;
                continue;
            }
            /* Overfull: re-select e's links among its old ones and the new
             * node, by the same heuristic, relative to e. */
            cand cs[2 * HNSW_MAX_M + 1];
            float esc[2 * HNSW_MAX_M];
            const float *ev = vec_of(g, e);
            size_t nc = 0;
            /* e's links are scattered rows: one batched, prefetching call
             * rather than a dot per link, so that their misses overlap. */
            index__dot_gather(ev, g->vecs, g->dim, el + 1, el[0], esc);
            for (uint32_t j = 1; j <= el[0]; j++) {
                cs[nc].id = el[j];
                cs[nc].s = esc[j - 1];
                nc++;
            }
            cs[nc].id = node;
            cs[nc].s = index__dot(ev, vec, g->dim);
            nc++;
            sort_desc(cs, nc);
            u->cnt = (uint32_t)select_heuristic(g, node, vec, cs, nc, mmax, u->links);
        }
    }
    return ERR_OK;
}

int hnsw_commit(hnsw *g, int64_t label, const float *vec, hnsw_plan *p, uint32_t *node_out)
{
    if (p->node != g->n)
        return ERR_INTERNAL;
    if (g->n >= g->cap) {
        size_t c = g->cap ? g->cap * 2 : 64;
        int rc = hnsw_reserve(g, c);
        if (rc)
            return rc;
    }
    uint32_t node = p->node;
    uint32_t *up = NULL;
    if (p->level > 0) {
        up = malloc((size_t)p->level * (g->M + 1) * sizeof *up);
        if (!up)
            return ERR_NOMEM;
        memcpy(up, p->own + (g->M0 + 1), (size_t)p->level * (g->M + 1) * sizeof *up);
    }
    g->up[node] = up;
    memcpy(g->vecs + (size_t)node * g->dim, vec, g->dim * sizeof *vec);
    memcpy(g->l0 + (size_t)node * (g->M0 + 1), p->own, (g->M0 + 1) * sizeof *p->own);
    g->level[node] = (uint8_t)p->level;
    g->labels[node] = label;
    g->del[node] = 0;
    for (size_t i = 0; i < p->nu; i++) {
        const plan_upd *u = &p->u[i];
        uint32_t *l = links_of(g, u->node, (int)u->lvl);
        memcpy(l + 1, u->links, u->cnt * sizeof *l);
        l[0] = u->cnt;
    }
    g->n++;
    if (p->level > g->top) {
        g->top = p->level;
        g->entry = node;
    }
    if (node_out)
        *node_out = node;
    return ERR_OK;
}

int hnsw_add(hnsw *g, int64_t label, const float *vec, hnsw_scratch *s, hnsw_plan *p,
             uint32_t *node)
{
    int rc = hnsw_prepare(g, vec, s, p);
    if (rc)
        return rc;
    return hnsw_commit(g, label, vec, p, node);
}

/* ---- search --------------------------------------------------------------- */

int hnsw_search(const hnsw *g, const float *q, size_t k, uint32_t ef, float min_score,
                index_keep_fn keep, void *ctx, hnsw_scratch *s, index_hit *out, size_t *n)
{
    *n = 0;
    if (g->top < 0 || k == 0)
        return ERR_OK;
    if (k > g->n)
        k = g->n; /* no more hits than nodes: bounds the heap below */
    size_t beam = ef < k ? k : ef;
    uint32_t ep = g->entry;
    float eps = index__dot(q, vec_of(g, ep), g->dim);
    for (int l = g->top; l > 0; l--)
        greedy(g, q, l, &ep, &eps);
    admit_t a = {keep != NULL || g->ndel > 0, keep, ctx};
    int rc = search_layer(g, q, ep, eps, beam, 0, &a, s);
    if (rc)
        return rc;

    index__topk t;
    if (index__topk_init(&t, k))
        return ERR_NOMEM;
    size_t live = g->n - g->ndel;
    if (s->wn < k && s->wn < live && a.restricted) {
        /* The beam ran out of admissible nodes: a selective filter or many
         * deletions. Answer exactly instead of returning a short list. */
        index__scan(g->vecs, g->n, g->dim, g->labels, g->del, q, min_score, keep, ctx, &t);
    } else {
        for (size_t i = 0; i < s->wn; i++) {
            const cand *c = &s->w[i];
            if (c->s >= min_score)
                index__topk_push(&t, c->s, g->labels[c->id]);
        }
        s->wn = 0;
    }
    *n = index__topk_drain(&t, out);
    index__topk_fini(&t);
    return ERR_OK;
}
