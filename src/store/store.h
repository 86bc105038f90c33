/*
 * store/store.h — the one interface over inferd's database: the job queue,
 * the results (assets, image embeddings, faces) and the event outbox.
 *
 * They live in one database so that finishing a job is one transaction:
 * results replaced, job marked done, outbox event inserted — all or nothing.
 * Backends: SQLite (store_sqlite.c, the embedded default: one WAL file) and
 * PostgreSQL (store_pg.c, many processes on many machines) behind the same
 * functions; store.c picks the
 * backend from the URL and forwards through a table of operations
 * (store_int.h), the way Redis' ae.c sits over epoll/kqueue.
 *
 * Job lifecycle (docs/internals/queue.md):
 *   queued -> running (claim: lease_owner, lease_until, attempts += 1,
 *                      worker_id = lease_owner, kept after the job leaves running)
 *   running -> done | failed | cancelled      (only while the lease is ours)
 *   running -> queued (retry with run_after, lease expiry rescue, release at shutdown)
 *   queued -> cancelled (cancel)
 * Every transition to done, failed or cancelled inserts exactly one outbox row
 * in the same transaction.
 *
 * Time: all *_ms fields are milliseconds since the Unix epoch (CLOCK_REALTIME),
 * taken from the caller's clock via store_now_ms().
 *
 * Threading: a store handle is safe to use from any number of threads at
 * once; each backend serialises or pools its connections internally. No
 * function holds a store lock while calling back into the caller.
 *
 * Errors common to every call: ERR_INVAL for arguments out of range (checked
 * before the database is touched); ERR_BUSY (transient) when another process
 * holds the database lock longer than the busy timeout (PostgreSQL: a row
 * lock, via lock_timeout); ERR_UNAVAILABLE (transient) when the database
 * server cannot be reached or the connection broke mid-call (PostgreSQL;
 * the transaction was rolled back, the next call reconnects); ERR_IO, ERR_NOMEM,
 * ERR_INTERNAL for database failures, with the backend's message in `e`.
 * A failed call writes nothing.
 */
#ifndef INFERD_STORE_STORE_H
#define INFERD_STORE_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "util/err.h"

typedef struct store store;

#define STORE_ASSET_ID_MAX 128

/* 1 when `s` is an asset id the API accepts: 1..STORE_ASSET_ID_MAX of [A-Za-z0-9._:@/-]. */
int store_asset_id_valid(const char *s);
#define STORE_OWNER_MAX 64

typedef enum {
    JOB_QUEUED = 0,
    JOB_RUNNING = 1,
    JOB_DONE = 2,
    JOB_FAILED = 3,
    JOB_CANCELLED = 4,
} job_state;

/* Task bits: what a job computes. FACES means detection + face embedding. */
#define JOB_TASK_IMAGE_EMBEDDING 0x1u
#define JOB_TASK_FACES 0x2u
#define JOB_TASK_ALL (JOB_TASK_IMAGE_EMBEDDING | JOB_TASK_FACES)

/* "queued", ...; NULL for an invalid value. */
const char *job_state_name(job_state s);
/* Parses a state name; -1 when unknown. */
int job_state_parse(const char *s);

/*
 * A job as stored. String members are heap copies owned by the struct:
 * release them with job_clear(). NULL means absent.
 */
typedef struct {
    int64_t id;
    char asset_id[STORE_ASSET_ID_MAX + 1];
    job_state state;
    int priority; /* higher runs first; FIFO (by id) within a priority */
    unsigned tasks;
    int attempts;     /* claims so far, including the running one */
    int max_attempts; /* after this many, a transient failure fails the job */
    char *source;     /* JSON text: {"path": P} | {"url": U} | {"upload": SHA256, "size": N} */
    char *payload;    /* JSON text of the client's payload object, or NULL */
    char *error;      /* last error message, or NULL (cleared when done) */
    char *error_code; /* err_name() of the last error, "lease_expired", or NULL */
    char *timings;    /* JSON text {stage: ms} of the last run, or NULL */
    char lease_owner[STORE_OWNER_MAX + 1]; /* "" when not running */
    /* The owner of the last claim: the worker that ran (or runs) the job.
     * Unlike lease_owner it stays set after the job finishes; "" when never
     * claimed. */
    char worker_id[STORE_OWNER_MAX + 1];
    int64_t lease_until_ms;
    int64_t run_after_ms; /* not claimable before this (retry backoff) */
    int64_t created_ms, updated_ms, finished_ms;
    int cancel_requested;
} job;

/* Frees the strings inside `j` and zeroes it. NULL is a no-op. */
void job_clear(job *j);
/* Frees an array of `n` jobs returned by the store (each cleared). NULL is a no-op. */
void job_array_free(job *jobs, int n);
/*
 * The job as a new JSON object (the API's job shape): id, asset_id, state,
 * priority, tasks [names], attempts, max_attempts, source, payload, error
 * {code, message} or null, timings_ms, lease_owner (or null), worker_id (the
 * last claimer, or null when never claimed), cancel_requested,
 * created_at/updated_at/finished_at (RFC 3339 UTC with milliseconds, null when
 * unset). Caller owns the reference.
 */
json_t *job_to_json(const job *j);

/* What a client asks for; strings are borrowed for the call. */
typedef struct {
    const char *asset_id;
    unsigned tasks;
    int priority;
    int max_attempts;    /* 0 = store default (3); at most 100 */
    const char *source;  /* JSON object text, see job.source; required */
    const char *payload; /* JSON object text or NULL */
} job_spec;

/* The results of one successful run, handed to store_job_complete(). */
typedef struct {
    float box[4]; /* x1, y1, x2, y2 in original pixels */
    float score;
    float kps[6][2];
    int nkps;            /* keypoints stored from kps: 5 (SCRFD); 0 or 6 = all six */
    const float *vector; /* dim floats, L2-normalised, or NULL */
} store_face;

typedef struct {
    int width, height;
    /* Image embedding (NULL model: task not run). */
    const char *image_model;
    int image_dim;
    float image_norm;
    const float *image_vector;
    const char *nsfw; /* JSON text {label: score} or NULL */
    /*
     * Faces (NULL face_model and NULL detector_model: task not run; nfaces may
     * be 0 when run). Results are replaced per (detector_model, face_model).
     */
    const char *detector_model;
    const char *face_model;
    int face_dim;
    int nfaces;
    const store_face *faces;
    const char *timings; /* JSON text {stage: ms} */
    /* A JPEG to show the asset by (NULL: keep the one stored, if any). */
    const unsigned char *thumb;
    size_t thumb_len;
    int thumb_w, thumb_h;
} store_result;

typedef struct {
    int64_t queued, running, done, failed, cancelled;
    int64_t outbox_pending;
} store_counts;

/* One outbox row: an event about a job, published to MQTT and /v1/events. */
typedef struct {
    int64_t id; /* increasing; the delivery order */
    int64_t job_id;
    char asset_id[STORE_ASSET_ID_MAX + 1];
    char *payload; /* JSON text of the event (owned) */
    int64_t created_ms;
    int sent;
} outbox_event;

void outbox_event_array_free(outbox_event *ev, int n);

typedef struct {
    int busy_timeout_ms; /* SQLite: wait this long for a lock; 0 = 5000 */
    int sqlite_normal;   /* SQLite: synchronous=NORMAL (store_open sets it from the URL) */
    /*
     * How long store_job_complete, store_job_fail and store_job_retry keep
     * retrying a write that failed with ERR_UNAVAILABLE (the database
     * server went away) before returning it: 0 = 20000 ms, < 0 = never
     * retry. A job's results are then not thrown away because the database
     * blinked; see store_job_complete().
     */
    int commit_retry_ms;
} store_opts;

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t store_now_ms(void);

/*
 * Opens (creating and migrating when needed) the store at `url`:
 * "sqlite:PATH", "sqlite://PATH" or a plain file path for SQLite, which
 * fsyncs every commit (synchronous=FULL: an acknowledged write survives
 * power loss) unless PATH ends in "?synchronous=normal" (a commit survives a
 * crash of the process, not of the machine: faster, see store_sqlite.c);
 * the database file and its WAL are made private (0600) when they are not;
 * "postgres://..." / "postgresql://..." (a libpq connection URI) for
 * PostgreSQL, where the extra query parameter "schema=NAME" (NAME matching
 * [a-z_][a-z0-9_]*, at most 48 bytes) keeps every table in that schema,
 * created when missing, so that several deployments or tests share one
 * database; ERR_UNSUPPORTED for other schemes. ":memory:" and
 * "file:" URIs are refused (ERR_INVAL): the store's connections must share
 * one file. A database written by a newer inferd gives ERR_UNSUPPORTED.
 * `opts` may be NULL. `*out` is owned by the caller: release with
 * store_close(). Errors name the URL and keep the backend's message.
 */
int store_open(const char *url, const store_opts *opts, store **out, err_t *e);

/* Closes the store. NULL is a no-op. */
void store_close(store *s);

/* "sqlite" or "postgres"; static storage. */
const char *store_backend(const store *s);

/* --- jobs ---------------------------------------------------------------- */

/*
 * Enqueues a job. Dedupe: when a job for the same asset_id and tasks is
 * queued or running (and not being cancelled), no job is created; that job
 * is returned and `*existing` (may be NULL) is set to 1. `out` receives the
 * job (caller clears it). ERR_INVAL for an empty or too long asset id, empty
 * or unknown task bits, a source or payload that is not a JSON object.
 */
int store_job_enqueue(store *s, const job_spec *spec, job *out, int *existing, err_t *e);

/* Most jobs store_job_enqueue_many takes at once. */
#define STORE_ENQUEUE_MAX 1000

/*
 * Enqueues specs[0..n) (1..STORE_ENQUEUE_MAX) in one transaction: all of
 * them or, on any error, none. Each is checked and deduplicated as by
 * store_job_enqueue (a later spec for the same asset and tasks as an earlier
 * one in the batch finds that job: existing[i] = 1). out[i] (n entries, the
 * caller's array) is filled on success: job_clear() each. An invalid spec
 * fails the batch with ERR_INVAL naming it ("jobs[3]: ...").
 */
int store_job_enqueue_many(store *s, const job_spec *specs, int n, job *out, int *existing,
                           err_t *e);

/* Reads job `id` into `out` (caller clears it). ERR_NOENT when absent. */
int store_job_get(store *s, int64_t id, job *out, err_t *e);

/*
 * Lists jobs with id < `before_id` (0 = from the newest), newest first,
 * optionally only in `state` (-1 = any), at most `limit` (1..1000).
 * `*out` is a new array of `*n` jobs (caller frees with job_array_free);
 * `*n` may be 0 with `*out` NULL. The next page starts before the last id.
 */
int store_job_list(store *s, int state, int64_t before_id, int limit, job **out, int *n, err_t *e);

/*
 * Cancels job `id`: a queued job becomes cancelled at once (with its outbox
 * event); a running one gets cancel_requested and ends cancelled (with its
 * event) whenever it leaves running: complete, fail, retry, release or lease
 * rescue; a finished job is left as it is. `out` (may be NULL) receives the
 * job afterwards. ERR_NOENT when absent.
 */
int store_job_cancel(store *s, int64_t id, job *out, err_t *e);

/*
 * Atomically claims up to `max` claimable jobs (queued, run_after <= now),
 * highest priority first then oldest, moving them to running with
 * lease_owner = `owner`, lease_until = now + lease_ms and attempts + 1.
 * `*out` is a new array of `*n` jobs in that order (caller frees with
 * job_array_free); `max` 0 claims nothing, at most 1000.
 * Never waits on another worker's claim for longer than the busy timeout.
 */
int store_job_claim(store *s, const char *owner, int max, int64_t lease_ms, job **out, int *n,
                    err_t *e);

/* Extends to now + lease_ms the lease of every job running under `owner`. */
int store_job_heartbeat(store *s, const char *owner, int64_t lease_ms, err_t *e);

/*
 * Puts back to queued every running job whose lease expired (its worker
 * died), or fails it when it has used max_attempts (with an outbox event).
 * `*n` (may be NULL) receives how many were rescued.
 */
int store_job_rescue(store *s, int *n, err_t *e);

/*
 * Requeues job `j` after a transient failure: queued, run_after = now +
 * delay_ms, error recorded (`error` NULL: err_strerror(code)). Only if still
 * running under `owner` with the same attempt number: ERR_LEASE otherwise
 * (someone else owns it now), and nothing is written. When the stored
 * attempts >= max_attempts the job fails instead (with its event).
 */
int store_job_retry(store *s, const job *j, const char *owner, int64_t delay_ms, int code,
                    const char *error, err_t *e);

/*
 * Fails job `j` permanently with `code` (an ERR_ value) and `error`, storing
 * `timings` (JSON text or NULL) and its outbox event. Lease-conditional as
 * store_job_retry().
 */
int store_job_fail(store *s, const job *j, const char *owner, int code, const char *error,
                   const char *timings, err_t *e);

/*
 * Commits a successful run in one transaction: replaces the asset's results
 * for the models in `r` (a second job for the same asset leaves one set of
 * results), upserts the asset (width, height, and the job's payload; a job
 * without a payload keeps the asset's), marks the job done with r->timings
 * (clearing the error of earlier attempts) and inserts its outbox event.
 * If cancel was requested meanwhile, the results are discarded and the job
 * ends cancelled instead (with its event).
 * Lease-conditional as store_job_retry(): ERR_LEASE and nothing written when
 * the lease is no longer ours.
 *
 * Connection loss (store_job_complete, store_job_fail and store_job_retry
 * alike): a write that fails with ERR_UNAVAILABLE is retried, 100 ms
 * doubling to 2 s apart, for up to store_opts.commit_retry_ms, so a
 * finished job survives a database restart. The retry is safe because the
 * write is lease-conditional: if the lease expired meanwhile and another
 * worker took the job, the retry gets ERR_LEASE and writes nothing (the
 * job runs again there). If the connection broke after the server had
 * committed, the retry finds the job finished by `owner` at the same
 * attempt (worker_id) and returns ERR_OK, not ERR_LEASE. The calling
 * thread blocks meanwhile; it is a slot thread that owns the job anyway.
 */
int store_job_complete(store *s, const job *j, const char *owner, const store_result *r, err_t *e);

/*
 * Completes the `n` jobs `jobs` (all leased by `owner`) with `results[i]`,
 * as store_job_complete() would each, in as few transactions as possible
 * (up to 64 jobs share one commit). Each job gets its own answer in rcs[i]
 * and, when `errs` is not NULL, its message in errs[i]: ERR_LEASE for a job
 * no longer ours does not stop the others. Returns the first non-ERR_OK
 * answer, or ERR_OK; ERR_INVAL (nothing written) for a NULL store or arrays.
 *
 * Group commit. store_job_complete, store_job_fail and store_job_retry
 * calls made at the same time from several threads on one handle are
 * committed together the same way: a call that finds no commit in flight
 * commits at once, and calls that arrive meanwhile share the next one.
 */
int store_job_complete_many(store *s, const job *jobs, const char *owner,
                            const store_result *results, int n, int *rcs, err_t *errs);

/*
 * Returns every job running under `owner` to queued without counting the
 * attempt (attempts - 1; graceful shutdown). `*n` (may be NULL) receives
 * how many.
 */
int store_job_release(store *s, const char *owner, int *n, err_t *e);

/* Counts jobs per state and undelivered outbox rows. */
int store_counts_get(store *s, store_counts *c, err_t *e);

/* --- results ------------------------------------------------------------- */

/*
 * The asset as a new JSON object: {asset_id, payload (object or null), width,
 * height, updated_at, image_embeddings: [{model, dim, norm, nsfw (object or
 * null)[, vector]}] by model, faces: [{id, box [x1,y1,x2,y2], score,
 * keypoints [[x,y] x6 or x5], detector, model, dim[, vector], person_id}] by id};
 * numbers rounded as `inferd analyze` prints them, vectors (exact float32)
 * only with `with_vectors`. ERR_NOENT when the store has nothing for the
 * asset. Caller owns the reference.
 */
int store_asset_get(store *s, const char *asset_id, int with_vectors, json_t **out, err_t *e);

/*
 * Forgets an asset: its payload, embeddings and faces. ERR_NOENT when absent.
 * In the same transaction it inserts an outbox event {"event_id", "job_id",
 * "asset_id", "state": "deleted", "at"} so that every process's search index
 * (which follows the outbox) drops the asset; job_id is the asset's latest
 * job (an asset only exists because a job finished for it), and the
 * publisher forwards the event like any other.
 */
int store_asset_delete(store *s, const char *asset_id, err_t *e);

/*
 * The asset's thumbnail: a JPEG the last job that made one stored (*jpeg is
 * the caller's, free()), *w x *h pixels. ERR_NOENT when the asset has none.
 */
int store_thumb_get(store *s, const char *asset_id, unsigned char **jpeg, size_t *len, int *w,
                    int *h, err_t *e);

/*
 * A page of assets in asset id order, after `after` (NULL or "": from the
 * start), at most `limit` (1..1000): *out is the caller's new object
 * {"assets": [{"asset_id", "width", "height", "faces" (count), "thumbnail"
 * (bool), "payload", "updated_at"}], "next_cursor": the last id or null when
 * the page is the last, "total": every asset}.
 */
int store_assets_list(store *s, const char *after, int limit, json_t **out, err_t *e);

/* --- outbox -------------------------------------------------------------- */

/*
 * Reads outbox rows with id > `after_id` in id order, at most `limit` (1..1000);
 * with `unsent_only` only rows not yet marked sent. `*out` is a new array of
 * `*n` rows (caller frees with outbox_event_array_free).
 */
int store_outbox_read(store *s, int64_t after_id, int unsent_only, int limit, outbox_event **out,
                      int *n, err_t *e);

/*
 * The id of the newest committed outbox row visible now, 0 when the outbox is
 * empty (one indexed MAX query; followers start their cursor here). Nothing
 * to free.
 */
int store_outbox_max_id(store *s, int64_t *out, err_t *e);

/*
 * Marks outbox row `id` sent (after the broker acknowledged it); marking it
 * again is a no-op. ERR_NOENT when absent.
 */
int store_outbox_mark_sent(store *s, int64_t id, err_t *e);

/* --- leader leases -------------------------------------------------------- */

/*
 * A leader lease makes one process among many the only one doing a job
 * that must not run twice at once, such as publishing the outbox in order.
 * A lease is a named row (name, owner, until): whoever holds an unexpired
 * row is the leader; everyone else stands by and tries again later. Leases
 * are judged by the callers' clocks (store_now_ms()), like job leases, so
 * the machines' clocks must agree to well within lease_ms.
 */
#define STORE_LEADER_PUBLISHER "publisher"

/*
 * Acquires the lease `name` for `owner`, or renews it when `owner` already
 * holds it, until now + lease_ms; one atomic statement, so of several
 * processes asking at once exactly one gets it. Taking over a lease whose
 * holder let it expire is allowed. ERR_LEASE (nothing written) when another
 * owner holds an unexpired lease; the message names it. ERR_INVAL for an
 * empty or too long (> STORE_OWNER_MAX) name or owner, or lease_ms <= 0.
 */
int store_leader_acquire(store *s, const char *name, const char *owner, int64_t lease_ms, err_t *e);

/*
 * Gives up the lease `name` if `owner` holds it (so a standby takes over at
 * once instead of after the expiry); a no-op otherwise.
 */
int store_leader_release(store *s, const char *name, const char *owner, err_t *e);

/*
 * The publisher's read: acquires or renews the STORE_LEADER_PUBLISHER lease
 * for `owner` (as store_leader_acquire()), then returns up to `limit`
 * (1..1000) unsent outbox rows in id order, the oldest first. Only the
 * lease holder gets rows, so with many processes each row is delivered by
 * one publisher at a time, in order; the holder must call again (or
 * renew) well within lease_ms and mark rows sent as the broker
 * acknowledges them. ERR_LEASE when another publisher holds the lease
 * (`*n` 0: stand by). `*out` as store_outbox_read().
 */
int store_outbox_claim(store *s, const char *owner, int limit, int64_t lease_ms, outbox_event **out,
                       int *n, err_t *e);

/* --- wake-up ---------------------------------------------------------------- */

typedef enum {
    STORE_CHANNEL_JOBS = 0,   /* a job became claimable (enqueue, retry, release, rescue) */
    STORE_CHANNEL_OUTBOX = 1, /* an outbox row was committed */
} store_channel;

/*
 * Waits up to `timeout_ms` (0..3600000) for a hint that `ch` has news, so
 * that the dispatcher (JOBS) and the publisher (OUTBOX) need not poll on a
 * short fixed sleep. Returns ERR_OK (0) when woken, 1 when the timeout
 * passed without news, or a negative error. A hint may be spurious and may
 * cover several events: after any return the caller looks for work itself
 * (claim, outbox read). A hint posted while nobody waits is kept until the
 * next call, which then returns at once.
 * PostgreSQL: hints from every process using the database (LISTEN/NOTIFY on
 * a dedicated connection that the first call opens, so hints start with
 * it: call once with timeout 0 at start-up; the writer's
 * transaction sends the NOTIFY, so it arrives only once committed).
 * ERR_UNAVAILABLE when that connection is lost (at once), or cannot be
 * reopened (after sleeping the shorter of the timeout and the reconnect
 * backoff, so that a caller looping on it does not spin); a call that
 * reopens it returns 0 once listening again, as hints may have been lost.
 * SQLite: hints from writes through this same handle only (an in-process
 * condition variable): other processes are not seen, so callers must keep
 * polling with the timeout as their interval.
 * One thread per channel should wait; concurrent callers on one channel
 * queue behind each other.
 */
int store_wait_notify(store *s, store_channel ch, int timeout_ms, err_t *e);

/* --- vectors (the search index's source) ------------------------------------ */

typedef enum {
    STORE_VEC_IMAGE = 0, /* image_embeddings, keyed by (asset_id, model) */
    STORE_VEC_FACE = 1,  /* faces with a vector, keyed by face id */
} store_vec_kind;

/*
 * One stored vector with what search needs next to it. Heap members are
 * owned by the struct (store_vec_array_free releases them).
 */
typedef struct {
    int64_t face_id; /* STORE_VEC_FACE: the face id; 0 for images */
    char asset_id[STORE_ASSET_ID_MAX + 1];
    char *model;       /* image or face embedding model name */
    int dim;           /* floats in `vector` */
    float *vector;     /* dim floats, as stored (L2-normalised) */
    int64_t person_id; /* STORE_VEC_FACE: 0 when the face belongs to nobody */
    char *payload;     /* STORE_VEC_IMAGE: the asset's payload (JSON text) or NULL */
} store_vec;

/* Frees an array of `n` vectors from store_vectors_read(). NULL is a no-op. */
void store_vec_array_free(store_vec *v, int n);

/*
 * Reads one page of stored vectors of `kind`, at most `limit` (1..1000), in
 * key order: images by (asset_id, model), faces by face id; only those of
 * `asset_id` when it is not NULL. `after` (NULL: from the start) is the last
 * row of the previous page; keyset paging, so a page never repeats or skips
 * a row that existed throughout. Faces without a vector are skipped.
 * `*out` is a new array of `*n` rows (caller frees with
 * store_vec_array_free); a page shorter than `limit` is the last.
 */
int store_vectors_read(store *s, store_vec_kind kind, const char *asset_id, const store_vec *after,
                       int limit, store_vec **out, int *n, err_t *e);

/* --- people ---------------------------------------------------------------- */

/* The leader lease that makes one process the face clusterer (people.c). */
#define STORE_LEADER_PEOPLE "people"
#define STORE_PERSON_NAME_MAX 200

/* Creates a person named `name` (NULL: unnamed); `*id` receives its id. */
int store_person_create(store *s, const char *name, int64_t *id, err_t *e);

/*
 * Assigns face_ids[i] to person_ids[i] for i < n (n 0..1000), each only when
 * the face exists and belongs to nobody yet, so that a clustering pass never
 * overrides a merge or a newer pass. `*assigned` (may be NULL) receives how
 * many faces changed. A person id that does not exist gives ERR_CONFLICT.
 */
int store_faces_assign(store *s, const int64_t *face_ids, const int64_t *person_ids, int n,
                       int *assigned, err_t *e);

/* Unassigns every face and deletes every person (a full recluster starts here). */
int store_people_reset(store *s, err_t *e);

/*
 * Every person with at least one face, as a new JSON array (caller owns):
 * [{id, name (or null), face_count, cover: {face_id, asset_id}}], most faces
 * first, then by id. The cover is the person's face with the best detector score.
 */
int store_people_list(store *s, json_t **out, err_t *e);

/*
 * Person `id` as a new JSON object: {id, name, face_count, cover, faces:
 * [{id, asset_id, box, score}] by id, assets: [asset ids, sorted]}.
 * ERR_NOENT when absent.
 */
int store_person_get(store *s, int64_t id, json_t **out, err_t *e);

/* Renames person `id` (`name` NULL clears it; at most STORE_PERSON_NAME_MAX bytes). ERR_NOENT. */
int store_person_rename(store *s, int64_t id, const char *name, err_t *e);

/*
 * Moves every face of the people `from[0..n)` (n 1..100, none equal to
 * `into`) to person `into` and deletes them, in one transaction. ERR_NOENT
 * (nothing written) when `into` or any of `from` does not exist.
 */
int store_people_merge(store *s, int64_t into, const int64_t *from, int n, err_t *e);

/*
 * Spooled uploads referenced by jobs (sources {"upload": SHA, "size": N}):
 * the digests of the jobs still queued or running (`asset_id` NULL), or of
 * every job of `asset_id` whatever its state. `*shas` receives n sorted,
 * unique 64-hex strings; release with store_strings_free(). Store errors as
 * they come.
 */
int store_upload_shas(store *s, const char *asset_id, char ***shas, int *n, err_t *e);

/*
 * Whether a queued or running job's source is the upload `sha` (64 hex
 * digits, else ERR_INVAL): *used 1 or 0. Scans the active jobs' sources.
 */
int store_upload_in_use(store *s, const char *sha, int *used, err_t *e);

/* Frees n strings and their array; NULL is a no-op. */
void store_strings_free(char **v, int n);

#endif
