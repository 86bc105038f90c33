/*
 * index/index.h — the in-memory vector search index of inferd.
 *
 * One index holds the vectors of one (collection, model) pair: image
 * embeddings keyed by asset rowid, or face embeddings keyed by face id. The
 * caller chooses the int64 ids. Vectors are float32 of a fixed dimension set
 * at creation; inferd stores them L2-normalised, and the score of a hit is the
 * plain dot product (cosine similarity for unit vectors). The index never
 * normalises: it scores what it is given.
 *
 * Two backends sit behind this interface (index.c is the glue; the algorithms
 * are in exact.c and hnsw.c, which know nothing of locks or ids):
 *   - exact: a contiguous row-major float matrix scanned with a SIMD dot
 *     product (AVX-512 / AVX2+FMA / SSE chosen at load time), top-k by a small
 *     heap. Memory-bandwidth bound; exact answers.
 *   - HNSW (Malkov & Yashunin): approximate, logarithmic, used once the index
 *     holds `hnsw_threshold` vectors or more.
 * An index starts exact. The add that makes it hold the threshold starts a
 * build of the graph on a thread of the index's own and returns at once; the
 * build takes seconds (about a millisecond per vector at 512-D). Meanwhile the
 * index stays exact: searches scan the matrix, and adds and removes are
 * applied to it as usual; the build catches up on them before it swaps the
 * graph in. A search sees every add and remove that returned before it began,
 * before, during and after the swap. index_building() tells whether a build
 * is pending; index_wait_idle() waits until none is. Results from either
 * backend have the same shape, the same order rule and the same score; only
 * HNSW may miss some true neighbours (recall@10 >= 0.95 at the default ef on
 * the data we test).
 *
 * Below the threshold during a build: the build goes on while the index holds
 * at least half the threshold (the band in which an index keeps whichever
 * backend it has, as for deletions below) and is swapped in at the end; if
 * removals take the index below half the threshold, the build is abandoned
 * and the index stays exact. Crossing the threshold again while a build is
 * pending starts nothing (that build covers it); once none is pending, the
 * next add or remove that finds an exact index at or above the threshold
 * starts a new one.
 *
 * Threading
 *   - Any number of threads may call index_search(), index_size(),
 *     index_is_hnsw() and index_building() at once.
 *   - index_add() and index_remove() may be called from any thread; they are
 *     serialised by a writer mutex (one writer at a time per index).
 *   - Searches and writers share a reader-writer lock that prefers writers.
 *     A writer holds it exclusively only to publish a change: an exact append
 *     or removal (a row copy), or the final link writes of an HNSW insert,
 *     whose neighbour search and heuristic pruning run beforehand under the
 *     writer mutex alone (reads only). So a search waits behind at most one
 *     short publish — microseconds, or one amortised array doubling — never
 *     behind an HNSW neighbour search, a graph build or a rebuild.
 *   - Builds and rebuilds run on a thread owned by the index, at most one at
 *     a time, started by the add or remove that finds one due (that call only
 *     starts the thread). The build reads the structure being searched in
 *     short batches under the shared lock and builds the new one aside. Its
 *     last step, under the writer mutex, inserts the few rows added since its
 *     previous pass (at most 16: a writer waits for at most that many graph
 *     inserts, ~20 ms at 512-D) and swaps the new structure in with one short
 *     exclusive publish. If writers keep adding faster than the build can
 *     insert (a bulk load, ~1k vectors/s at 512-D), the build keeps catching
 *     up and the index stays on the old structure until they slow down.
 *   - The `keep` filter callback runs in the searching thread with the read
 *     lock held. It must not call any index_ function on the same index
 *     (index_add / index_remove / index_wait_idle would deadlock, a nested
 *     search could); it may be called concurrently from several searches.
 *   - index_free() must not race with any other call on the same index. It
 *     may be called while a build runs: it stops the build (within about one
 *     graph insert) and joins its thread.
 *
 * Deletions: the exact backend removes the row (the last row moves into the
 * hole); while a build is pending it marks the row deleted instead (and a
 * replacement marks the old row and appends the new one), so that the build
 * can read the matrix without copying it. HNSW marks the node deleted: it
 * still guides navigation but is never returned. When deleted nodes exceed a
 * fifth of the graph, the remove (or replacing add) that crosses that line
 * starts a rebuild from the live vectors in the background, like the first
 * build; searches continue on the old graph, which takes the writes until the
 * swap. The rebuild makes an exact matrix instead when fewer than half the
 * threshold remain. Deletions during a build become deleted nodes of the new
 * graph; if they exceed a fifth of it, another rebuild follows at once.
 *
 * Errors are the negative codes of util/err.h: ERR_INVAL (NULL handle or
 * vector, dimension mismatch, non-finite component, k == 0), ERR_NOMEM,
 * ERR_NOENT (index_remove of an unknown id), ERR_TOOBIG (more than 2^31-2
 * vectors).
 */
#ifndef INFERD_INDEX_INDEX_H
#define INFERD_INDEX_INDEX_H

#include <stddef.h>
#include <stdint.h>

/*
 * The handle. Not `index`: <strings.h> (pulled in by <string.h> under
 * _GNU_SOURCE) declares the legacy BSD function index(3), and a type of that
 * name would clash in every file that includes both.
 */
typedef struct index_t index_t;

/* Tuning knobs. A zero field means "the default" shown in brackets. */
typedef struct {
    size_t hnsw_threshold;    /* [20000] switch to HNSW at this many vectors;
                                 SIZE_MAX keeps the index exact forever. */
    uint32_t M;               /* [16] HNSW links per node on layers >= 1; 2*M on
                                 layer 0. Clamped to 4..64. */
    uint32_t ef_construction; /* [200] HNSW beam width while inserting. */
    uint32_t ef_search;       /* [64] HNSW beam width of a search given ef 0. */
    uint64_t seed;            /* [fixed] HNSW level sampling seed. */
} index_opts;

#define INDEX_DEFAULT_HNSW_THRESHOLD 20000
#define INDEX_DEFAULT_M 16
#define INDEX_DEFAULT_EF_CONSTRUCTION 200
#define INDEX_DEFAULT_EF_SEARCH 64

/* One search result. */
typedef struct {
    int64_t id;
    float score; /* dot product with the query */
} index_hit;

/*
 * Search filter: returns nonzero to keep `id` in the results. Called only for
 * ids that would otherwise enter the top k (so usually far fewer times than
 * the index size); see Threading above for what it may not do.
 */
typedef int (*index_keep_fn)(void *ctx, int64_t id);

/*
 * Creates an empty index of dimension `dim` (1..65536) and stores it in *out.
 * `opts` may be NULL (all defaults). Returns ERR_OK, ERR_INVAL (dim out of
 * range, out NULL) or ERR_NOMEM; on error *out is NULL. Free with
 * index_free().
 */
int index_new(size_t dim, const index_opts *opts, index_t **out);

/*
 * Frees the index and every vector in it. NULL is a no-op. A running build
 * is stopped and its thread joined first (see Threading).
 */
void index_free(index_t *ix);

/*
 * Adds `vec` (`dim` floats, copied) under `id`. If `id` is present already,
 * its vector is replaced. May start a build of the HNSW graph in the
 * background (see above); does not wait for it. Returns ERR_OK, ERR_INVAL
 * (dim != the index's, NULL vec, NaN/Inf component), ERR_NOMEM or
 * ERR_TOOBIG. On error the index is unchanged.
 */
int index_add(index_t *ix, int64_t id, const float *vec, size_t dim);

/*
 * Removes `id`. May start a rebuild in the background (see Deletions); does
 * not wait for it. Returns ERR_OK, ERR_NOENT when absent, or ERR_INVAL (NULL
 * ix). A rebuild that fails is reported by index_wait_idle().
 */
int index_remove(index_t *ix, int64_t id);

/*
 * Finds up to `k` ids whose vectors have the highest dot product with `query`
 * (`dim` floats), keeping only scores >= `min_score` (pass -INFINITY or -2 for
 * no bound) and ids for which `keep(ctx, id)` is nonzero (`keep` may be NULL).
 * `ef` is the HNSW beam width (0 = the index default; raised to k when
 * smaller); the exact backend ignores it. Writes the hits, best first (higher
 * score first, ties by lower id), to `out` (room for k, caller-owned) and
 * their number to *n (< k when fewer match; 0 on an empty index). With HNSW and
 * a filter or many deletions, a graph search that finds fewer than k survivors
 * falls back to an exact scan, so selective filters still get complete answers.
 * Returns ERR_OK, ERR_INVAL (NULL arguments, dim mismatch, k == 0) or
 * ERR_NOMEM.
 */
int index_search(index_t *ix, const float *query, size_t dim, size_t k, uint32_t ef,
                 float min_score, index_keep_fn keep, void *ctx, index_hit *out, size_t *n);

/* Number of live (not removed) vectors; 0 for NULL. */
size_t index_size(index_t *ix);

/* Dimension given at creation; 0 for NULL. */
size_t index_dim(const index_t *ix);

/* Whether the index currently searches with HNSW (1) or exactly (0). A
 * pending build changes this only when it swaps its graph in. 0 for NULL. */
int index_is_hnsw(index_t *ix);

/* Whether a build or rebuild is pending (1) or not (0); never blocks. The
 * answer may be stale by the time the caller looks at it. 0 for NULL. */
int index_building(index_t *ix);

/*
 * Waits until no build is pending (including one that a finished build
 * chained, see Deletions), so that index_is_hnsw() reflects every write made
 * before the call; writes made meanwhile by other threads may start another.
 * Returns immediately when none is pending. Returns the result of the last
 * build that ended: ERR_OK (also when none ever ran, or when one was
 * abandoned), ERR_NOMEM (it could not allocate; the index kept its old
 * structure, fully correct, and the next add or remove that finds a build
 * due starts another), ERR_INTERNAL (its thread could not be started); or
 * ERR_INVAL for NULL. Not to be called from a `keep` callback.
 */
int index_wait_idle(index_t *ix);

/* Name of the dot-product kernel chosen at load time: "avx512", "avx2", "sse",
 * "scalar". A static string: do not free. */
const char *index_kernel_name(void);

#endif
