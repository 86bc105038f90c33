/*
 * index/search.h — the search service: the in-memory vector indexes of one
 * process, loaded from the store at start and kept current by following the
 * outbox as a change feed (DESIGN.md "Storage", "HTTP API" search endpoints).
 *
 * One index_t per (collection, model): "images" (image embeddings; the index
 * id is a process-local number interned per asset_id, see search.c) and
 * "faces" (face embeddings; the index id is the face id). Every outbox event
 * names an asset: the service reloads that asset's vectors from the store
 * (state "done": replace; "deleted": drop), so commits by other processes on
 * PostgreSQL are seen as well as our own.
 *
 * Threading: search_images/search_faces (the duplicates route is an image
 * search) and the read-only accessors may run on any number of threads at
 * once, concurrently with the feed thread that search_start() creates. See
 * search.c for the locks.
 */
#ifndef INFERD_INDEX_SEARCH_H
#define INFERD_INDEX_SEARCH_H

#include <jansson.h>
#include <stdint.h>

#include "events/events.h"
#include "index/index.h"
#include "index/people.h"
#include "store/store.h"
#include "util/err.h"

typedef struct search search;

typedef struct {
    store *st;               /* required; must outlive the service */
    events *ev;              /* may be NULL: then store_wait_notify wakes the feed */
    int poll_ms;             /* feed poll fallback; 0 = 1000 */
    index_opts index;        /* for every index */
    const char *owner;       /* lease owner for clustering (worker id); NULL: no clustering */
    people_opts people;      /* clustering parameters (zero: defaults) */
    const char *image_model; /* default model of image searches; NULL: the largest index */
} search_opts;

/*
 * Creates the service and loads every vector from the store. `*out`:
 * search_free(). Errors from the store (with its message).
 */
int search_new(const search_opts *o, search **out, err_t *e);

/* Starts the feed thread (and clustering when opts.owner is set). */
int search_start(search *s, err_t *e);

/* Stops the feed thread (no-op when not started). */
void search_stop(search *s);

/* Stops and frees. NULL is a no-op. */
void search_free(search *s);

/*
 * Applies every outbox event committed so far, in the calling thread (the
 * feed thread does it continuously; tests call it to be deterministic).
 */
int search_sync(search *s, err_t *e);

typedef struct {
    const char *asset_id; /* query by the stored embedding of this asset (excluded from results) */
    const float *vector;  /* or by this vector (dim floats) */
    int dim;
    const char *model;    /* NULL: opts.image_model or the largest index */
    int limit;            /* 1..1000 */
    float min_score;      /* -2: none */
    uint32_t ef;          /* 0: default */
    const json_t *filter; /* NULL or object: payload key == value for every key */
} search_image_query;

/*
 * Image search: `*out` is a new JSON array [{asset_id, score, payload}] best
 * first. ERR_NOENT when the asset has no embedding of the model or no index
 * of that model exists; ERR_INVAL for a vector of the wrong dimension.
 */
int search_images(search *s, const search_image_query *q, json_t **out, err_t *e);

typedef struct {
    int64_t face_id; /* query by this face (excluded from results), or */
    const float *vector;
    int dim;
    const char *model; /* NULL: the largest face index */
    int limit;
    float min_score;
    uint32_t ef;
} search_face_query;

/* Face search: `*out` is a new JSON array [{face_id, asset_id, person_id, score}]. */
int search_faces(search *s, const search_face_query *q, json_t **out, err_t *e);

/* Re-reads the person of every face from the store (after a merge through this process). */
int search_refresh_people(search *s, err_t *e);

/* Vectors per collection, as a new JSON object {"images": {model: n}, "faces": {model: n}}. */
json_t *search_stats(search *s);

/*
 * One entry per index, as a new JSON array (caller decrefs) of
 * {"collection": "images"|"faces", "model", "vectors", "hnsw": bool,
 * "building": bool}: `hnsw` is the backend searches use now, `building`
 * whether a background graph build is pending. For /metrics.
 */
json_t *search_index_stats(search *s);

/* The default image model (static until search_free), or NULL when none is known. */
const char *search_image_model(search *s);

/*
 * Whether the index of `kind` (images or faces) and `model` (NULL: the one a
 * query without a model searches) searches with HNSW now: 1 HNSW, 0 exact,
 * -1 no such index. A snapshot for tests and diagnostics (an index switches
 * when it reaches opts.index.hnsw_threshold vectors and may fall back after
 * deletions, index.h).
 */
int search_index_is_hnsw(search *s, store_vec_kind kind, const char *model);

/*
 * Waits until no index has an HNSW build or rebuild pending (index_wait_idle
 * on each, index.h): afterwards search_index_is_hnsw() reflects every vector
 * applied before the call. Builds run in the background so that loading and
 * the feed never wait for them; this is for tests, benchmarks and
 * diagnostics. Returns ERR_OK, or the first failed build's error (the index
 * kept its old structure and answers correctly). Not to be called while
 * holding anything a search needs.
 */
int search_wait_idle(search *s, err_t *e);

#endif
