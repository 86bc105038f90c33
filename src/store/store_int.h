/*
 * store/store_int.h — what a store backend implements, and the helpers that
 * store.c shares with every backend. Not for callers outside src/store/.
 *
 * store.c validates arguments that do not depend on the database (lengths,
 * limits, task bits, JSON syntax) once, then forwards each call through the
 * backend's `store_ops` table. A backend therefore receives only well-formed
 * arguments, and may assume `e` is non-NULL (store.c substitutes a local
 * err_t). A backend object starts with `struct store` so that store.c can
 * reach the table from any handle, the way SQLite's sqlite3_vfs subclasses
 * work.
 *
 * The queue policy lives in store.c alone: what becomes of a job on rescue,
 * retry, fail, complete, release and cancel (cancel requested, attempts
 * left, backoff, terminal state, its event) is decided there from plain
 * `store_row`s. A backend only opens a transaction (tx_begin/tx_end), locks
 * and reads the rows a transition names (rows_lock), and applies the
 * outcome store.c hands back (row_apply, results_put, event_put) inside
 * that transaction. How it locks (SQLite's single writer, PostgreSQL's
 * FOR UPDATE / SKIP LOCKED) and orders its outbox stays its own business.
 *
 * What every backend must do identically (the conformance suite in
 * tests/unit/test_store.c checks it):
 *  - lease-conditional transitions match `id, state = running, lease_owner,
 *    attempts`; zero rows -> ERR_LEASE and the whole transaction rolled back;
 *  - each transition to done, failed or cancelled inserts exactly one outbox
 *    row in the same transaction, with its payload built by
 *    store__event_payload() (the event id is the outbox row id, added by
 *    store_outbox_read());
 *  - a running job with cancel_requested that leaves running for any reason
 *    (complete, fail, retry, release, lease rescue) ends cancelled;
 *  - vectors are stored as float32 little-endian (store__vec_to_le);
 *  - lock conflicts that outlast the busy timeout return ERR_BUSY (transient);
 *  - a lost database connection returns ERR_UNAVAILABLE (transient);
 *  - the leader lease is one row per name, acquired or renewed by one atomic
 *    upsert that only succeeds for the holder or over an expired lease.
 */
#ifndef INFERD_STORE_STORE_INT_H
#define INFERD_STORE_STORE_INT_H

#include <pthread.h>

#include "store/store.h"

/* A backend's open write transaction (opaque to store.c). */
typedef struct store_tx store_tx;

/* The columns of a job that the queue policy reads (backends fill it). */
typedef struct store_row {
    int64_t id;
    char asset_id[STORE_ASSET_ID_MAX + 1];
    job_state state;
    unsigned tasks;
    int attempts, max_attempts, cancel_requested;
    char *timings; /* JSON text or NULL; owned by the row (store__rows_free) */
    char *payload; /* JSON text or NULL; owned by the row */
} store_row;

/* Which rows a transition locks. */
typedef enum {
    STORE_SEL_LEASED,  /* ids, each running under owner at its attempts: 0..n rows */
    STORE_SEL_EXPIRED, /* running with lease_until_ms < now; rows locked elsewhere skipped */
    STORE_SEL_OWNED,   /* running under owner */
    STORE_SEL_ID,      /* id, whatever its state: 0 or 1 row */
} store_sel_kind;

typedef struct {
    store_sel_kind kind;
    const int64_t *ids;  /* LEASED: n job ids; ID: ids[0] */
    const int *attempts; /* LEASED: the attempt each of ids was claimed at */
    int n;               /* LEASED, ID */
    const char *owner;   /* LEASED, OWNED */
    int64_t now;         /* EXPIRED */
} store_sel;

/*
 * What store.c decided for one row, for the backend to write:
 *  - to == JOB_QUEUED: back to the queue, lease cleared, run_after_ms set,
 *    attempts minus `uncount`; a due job (run_after_ms <= now) wakes
 *    claimers;
 *  - to == JOB_RUNNING: the row stays running with cancel_requested set;
 *  - otherwise a terminal state: lease cleared, finished_ms = now.
 * NULL code, error or timings keep the stored value; clear_error clears
 * the error instead (a job done after a retry has no error).
 */
typedef struct {
    job_state to;
    int64_t run_after_ms;
    int uncount;
    const char *code, *error, *timings;
    int clear_error;
} store_outcome;

/* An outbox row to insert; its payload is store__event_payload(). */
typedef struct {
    int64_t job_id;
    const char *asset_id;
    int deleted; /* an asset deletion rather than a job's end */
    job_state state;
    unsigned tasks;
    int attempts;
    int nfaces, nimage;
    const char *timings;
    const char *error_code, *error_msg;
} store_event;

/*
 * An asset as a backend reads it (asset_read); store.c turns it into the
 * JSON of store_asset_get. Every pointer is owned by the struct
 * (store__asset_clear). Vectors are read only when asked for; `nvec` is
 * how many floats arrived (fewer than dim if the stored value is short).
 */
typedef struct {
    char *model;
    int dim;
    double norm;
    char *nsfw; /* JSON text or NULL */
    float *vector;
    int nvec;
} store_asset_emb;

typedef struct {
    int64_t id;
    double box[4];
    double score;
    char *keypoints; /* JSON text [[x,y] x6, or x5 for SCRFD] */
    char *detector, *model;
    int dim;
    float *vector;
    int nvec;
    int64_t person_id; /* 0: none */
} store_asset_face;

typedef struct {
    char *payload; /* JSON text or NULL */
    int width, height;
    int64_t updated_ms;
    store_asset_emb *embs; /* by model */
    int nembs;
    store_asset_face *faces; /* by id */
    int nfaces;
} store_asset;

/* One person of people_read: its best-scoring face is the cover. Owned by the array. */
typedef struct {
    int64_t id;
    char *name; /* NULL: unnamed */
    int64_t face_count;
    int64_t cover_face;
    char *cover_asset;
} store_person_row;

typedef struct {
    int64_t id;
    char *asset_id;
    double box[4];
    double score;
} store_person_face;

/* A person of person_read with its faces (by id) and distinct assets (sorted bytewise). */
typedef struct {
    char *name; /* NULL: unnamed */
    store_person_face *faces;
    int nfaces;
    char **assets;
    int nassets;
} store_person;

/*
 * One result row as store.c reads it, whatever the backend: column `col` as
 * text (NULL for SQL NULL) or as an integer (0 for NULL). It lets the rows
 * of STORE_JOB_COLS and STORE_ROW_COLS become jobs and store_rows in one
 * place (store__job_from_cols, store__row_from_cols).
 */
typedef struct {
    const char *(*text)(const void *res, int col);
    int64_t (*i64)(const void *res, int col);
    const void *res; /* the backend's statement or result row */
} store_cols;

/* The columns of a job, in the order store__job_from_cols reads them. */
#define STORE_JOB_COLS                                                                             \
    "id, asset_id, state, priority, tasks, attempts, max_attempts, source, payload, error, "       \
    "error_code, timings, lease_owner, lease_until_ms, run_after_ms, created_ms, updated_ms, "     \
    "finished_ms, cancel_requested, worker_id"

/* The columns of a store_row, in the order store__row_from_cols reads them. */
#define STORE_ROW_COLS                                                                             \
    "id, asset_id, state, tasks, attempts, max_attempts, cancel_requested, timings, payload"

/* The columns of an asset list row (store_assets_list), for `FROM assets a`. */
#define STORE_ASSET_LIST_COLS                                                                      \
    "a.asset_id, a.width, a.height, a.payload, a.updated_ms,"                                      \
    " (SELECT count(*) FROM faces f WHERE f.asset_id = a.asset_id),"                               \
    " CASE WHEN EXISTS (SELECT 1 FROM thumbs t WHERE t.asset_id = a.asset_id) THEN 1 ELSE 0 END"

/* Fills `j` (zeroed first; strings owned by it) from a STORE_JOB_COLS row. */
void store__job_from_cols(const store_cols *c, job *j);

/* Fills `r` (strings owned by it) from a STORE_ROW_COLS row. */
void store__row_from_cols(const store_cols *c, store_row *r);

typedef struct store_ops {
    const char *name; /* "sqlite", "postgres" */
    void (*close)(store *s);
    /* Enqueues specs[0..n) in one transaction: all or none (out[i], existing[i] per job). */
    int (*job_enqueue)(store *s, const job_spec *specs, int n, job *out, int *existing, err_t *e);
    int (*job_get)(store *s, int64_t id, job *out, err_t *e);
    int (*job_list)(store *s, int state, int64_t before_id, int limit, job **out, int *n, err_t *e);
    int (*job_claim)(store *s, const char *owner, int max, int64_t lease_ms, job **out, int *n,
                     err_t *e);
    int (*job_heartbeat)(store *s, const char *owner, int64_t lease_ms, err_t *e);
    /* The transition primitives (see the top of this file). */
    int (*tx_begin)(store *s, store_tx **tx, err_t *e);
    /* Commits when rc == ERR_OK, else rolls back; returns the final code. */
    int (*tx_end)(store *s, store_tx *tx, int rc, err_t *e);
    /* Locks and reads the rows `sel` names into a new array (store__rows_free), ordered by id. */
    int (*rows_lock)(store *s, store_tx *tx, const store_sel *sel, store_row **rows, int *n,
                     err_t *e);
    int (*row_apply)(store *s, store_tx *tx, const store_row *r, const store_outcome *o,
                     int64_t now, err_t *e);
    /* Writes a completed job's results for r->asset_id (r->payload becomes the asset's). */
    int (*results_put)(store *s, store_tx *tx, const store_row *r, const store_result *res,
                       int64_t now, err_t *e);
    int (*event_put)(store *s, store_tx *tx, const store_event *ev, int64_t now, err_t *e);
    int (*counts_get)(store *s, store_counts *c, err_t *e);
    int (*asset_read)(store *s, const char *asset_id, int with_vectors, store_asset *out, err_t *e);
    int (*asset_delete)(store *s, const char *asset_id, err_t *e);
    int (*thumb_get)(store *s, const char *asset_id, unsigned char **jpeg, size_t *len, int *w,
                     int *h, err_t *e);
    /* Runs STORE_ASSET_LIST_COLS rows of assets with asset_id > after (in that order, at most
     * `limit`) through each(); *total: every asset. */
    int (*assets_list)(store *s, const char *after, int limit,
                       void (*each)(void *ctx, const store_cols *c), void *ctx, int64_t *total,
                       err_t *e);
    int (*outbox_read)(store *s, int64_t after_id, int unsent_only, int limit, outbox_event **out,
                       int *n, err_t *e);
    int (*outbox_mark_sent)(store *s, int64_t id, err_t *e);
    int (*outbox_max_id)(store *s, int64_t *out, err_t *e);
    int (*leader_acquire)(store *s, const char *name, const char *owner, int64_t lease_ms,
                          err_t *e);
    int (*leader_release)(store *s, const char *name, const char *owner, err_t *e);
    int (*wait_notify)(store *s, store_channel ch, int timeout_ms, err_t *e);
    int (*vectors_read)(store *s, store_vec_kind kind, const char *asset_id, const store_vec *after,
                        int limit, store_vec **out, int *n, err_t *e);
    int (*person_create)(store *s, const char *name, int64_t *id, err_t *e);
    int (*faces_assign)(store *s, const int64_t *face_ids, const int64_t *person_ids, int n,
                        int *assigned, err_t *e);
    int (*people_reset)(store *s, err_t *e);
    int (*people_read)(store *s, store_person_row **out, int *n, err_t *e);
    int (*person_read)(store *s, int64_t id, store_person *out, err_t *e);
    int (*person_rename)(store *s, int64_t id, const char *name, err_t *e);
    int (*people_merge)(store *s, int64_t into, const int64_t *from, int n, err_t *e);
    int (*upload_sources)(store *s, const char *asset_id, const char *like, char ***srcs, int *n,
                          err_t *e);
} store_ops;

/* The common head of every backend's handle. */
struct store__waiter;

/* The common head of every backend's handle; store.c owns all but `ops`. */
struct store {
    const store_ops *ops;
    int commit_retry_ms; /* store_opts.commit_retry_ms resolved; set by store_open */
    /*
     * Group commit of lease-conditional writes (store.c): callers queue on
     * `gc_head`; one at a time (gc_busy) takes the queue and commits it as
     * one transaction while the others wait on gc_cond.
     */
    pthread_mutex_t gc_lock;
    pthread_cond_t gc_cond;
    struct store__waiter *gc_head, *gc_tail;
    int gc_busy;
    int gc_ready; /* gc_lock and gc_cond initialised */
};

/*
 * Backend constructors. `target` is the URL with the scheme removed for
 * SQLite (a file path) and the full URL for PostgreSQL; `opts` is never NULL.
 * On success `*out` is a handle whose ops->close releases it.
 */
int store__sqlite_open(const char *target, const store_opts *opts, store **out, err_t *e);
int store__pg_open(const char *target, const store_opts *opts, store **out, err_t *e);

/* Default for job_spec.max_attempts == 0. */
#define STORE_DEFAULT_MAX_ATTEMPTS 3

/* Error code stored on a job failed by lease rescue (not an err_name()). */
#define STORE_LEASE_EXPIRED_CODE "lease_expired"

/* Frees what the struct owns and zeroes it. */
void store__asset_clear(store_asset *a);
void store__person_clear(store_person *p);
void store__person_rows_free(store_person_row *rows, int n);

/*
 * The stored vector `blob` (`bytes` bytes of float32 LE) as a new array of
 * min(dim, bytes / 4) floats (free()), its length in `*n`; NULL with *n = 0
 * for an empty or NULL blob.
 */
float *store__vec_dup(const void *blob, size_t bytes, int dim, int *n);

/* Frees `n` rows and the array. */
void store__rows_free(store_row *rows, int n);

/*
 * The outbox payload of `ev` to store, as new compact JSON text (free()):
 * {"job_id", "asset_id", "state", "tasks": [names], "attempts",
 *  "counts": {"faces", "image_embeddings"}, "timings_ms": object or null,
 *  "error": {"code", "message"} or null, "at": RFC 3339 UTC}, or for an
 * asset deletion {"job_id", "asset_id", "state": "deleted", "at"}. `timings`
 * text that does not parse becomes null. It has no "event_id": the database
 * assigns the row id at insert, and store_outbox_read() puts it in front.
 * Never NULL (aborts on OOM).
 */
char *store__event_payload(const store_event *ev, int64_t now);

/* The task bits as a new JSON array of names ("image_embedding", "faces"). */
json_t *store__tasks_json(unsigned tasks);

/* `ms` since the epoch as RFC 3339 UTC with milliseconds into `buf` (>= 32 bytes). */
void store__rfc3339(int64_t ms, char *buf, size_t size);

/* Parses JSON text into a new reference; NULL text or a parse failure gives json_null(). */
json_t *store__json_or_null(const char *text);

/*
 * Copies `n` floats to `dst` as float32 little-endian (n * 4 bytes), and back.
 * The on-disk vector format of both backends, whatever the host's byte order.
 */
void store__vec_to_le(const float *src, int n, unsigned char *dst);
void store__vec_from_le(const unsigned char *src, int n, float *dst);

/* Rounds `x` to 1/scale for JSON output (results are float32; more digits are noise). */
json_t *store__num(double x, double scale);

#endif
