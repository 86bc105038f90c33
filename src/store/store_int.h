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
 * What every backend must do identically (the conformance suite in
 * tests/unit/test_store.c checks it):
 *  - lease-conditional transitions match `id, state = running, lease_owner,
 *    attempts`; zero rows -> ERR_LEASE and the whole transaction rolled back;
 *  - each transition to done, failed or cancelled inserts exactly one outbox
 *    row in the same transaction, with its payload built by
 *    store__event_json() (the event id is the outbox row id);
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

#include "store/store.h"

typedef struct store_ops {
    const char *name; /* "sqlite", "postgres" */
    void (*close)(store *s);
    int (*job_enqueue)(store *s, const job_spec *spec, job *out, int *existing, err_t *e);
    int (*job_get)(store *s, int64_t id, job *out, err_t *e);
    int (*job_list)(store *s, int state, int64_t before_id, int limit, job **out, int *n, err_t *e);
    int (*job_cancel)(store *s, int64_t id, job *out, err_t *e);
    int (*job_claim)(store *s, const char *owner, int max, int64_t lease_ms, job **out, int *n,
                     err_t *e);
    int (*job_heartbeat)(store *s, const char *owner, int64_t lease_ms, err_t *e);
    int (*job_rescue)(store *s, int *n, err_t *e);
    int (*job_retry)(store *s, const job *j, const char *owner, int64_t delay_ms, int code,
                     const char *error, err_t *e);
    int (*job_fail)(store *s, const job *j, const char *owner, int code, const char *error,
                    const char *timings, err_t *e);
    int (*job_complete)(store *s, const job *j, const char *owner, const store_result *r, err_t *e);
    int (*job_release)(store *s, const char *owner, int *n, err_t *e);
    int (*counts_get)(store *s, store_counts *c, err_t *e);
    int (*asset_get)(store *s, const char *asset_id, int with_vectors, json_t **out, err_t *e);
    int (*asset_delete)(store *s, const char *asset_id, err_t *e);
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
    int (*people_list)(store *s, json_t **out, err_t *e);
    int (*person_get)(store *s, int64_t id, json_t **out, err_t *e);
    int (*person_rename)(store *s, int64_t id, const char *name, err_t *e);
    int (*people_merge)(store *s, int64_t into, const int64_t *from, int n, err_t *e);
    int (*upload_sources)(store *s, const char *asset_id, const char *like, char ***srcs, int *n,
                          err_t *e);
} store_ops;

/* The common head of every backend's handle. */
struct store {
    const store_ops *ops;
    int commit_retry_ms; /* store_opts.commit_retry_ms resolved; set by store_open */
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

/*
 * The outbox payload of one event, as new compact JSON text (free()):
 * {"event_id", "job_id", "asset_id", "state", "tasks": [names], "attempts",
 *  "counts": {"faces", "image_embeddings"}, "timings_ms": object or null,
 *  "error": {"code", "message"} or null, "at": RFC 3339 UTC}.
 * `timings` is JSON text or NULL (text that does not parse becomes null);
 * `error_code` NULL means no error. Never NULL (aborts on OOM).
 */
char *store__event_json(int64_t event_id, int64_t job_id, const char *asset_id, job_state state,
                        unsigned tasks, int attempts, int nfaces, int nimage, const char *timings,
                        const char *error_code, const char *error_msg, int64_t at_ms);

/*
 * The outbox payload of an asset deletion, as new compact JSON text (free()):
 * {"event_id", "job_id", "asset_id", "state": "deleted", "at"}. Never NULL.
 */
char *store__deleted_event_json(int64_t event_id, int64_t job_id, const char *asset_id,
                                int64_t at_ms);

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
