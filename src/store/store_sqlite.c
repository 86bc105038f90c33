/*
 * store/store_sqlite.c — the SQLite backend of store.h: the embedded default,
 * one database file in WAL mode holding the queue, the results and the
 * outbox. store.c has already checked every argument; this file only talks
 * to SQLite and translates its result codes (the one adapter that does).
 *
 * Durability. journal_mode=WAL with synchronous=FULL (the default): every
 * commit fsyncs the WAL before it returns, so a job acknowledged with 202
 * is on disk and survives power loss, as the README says. With
 * "?synchronous=normal" on the URL a commit is only appended to the WAL:
 * safe against a crash or kill -9 of the process (the data is in the OS page
 * cache and the WAL is replayed on the next open), but an OS crash or power
 * loss may roll back the last few commits (never corrupt the file). What
 * FULL costs is measured by bench/queue (sqlite rows, both settings).
 *
 * Privacy. The file holds face embeddings (biometric data): it and its
 * -wal/-shm companions are chmod'ed to 0600 at open when group or others
 * can read them (files made by an older inferd, or under a loose umask). The schema migrates
 * forward by PRAGMA user_version inside a BEGIN IMMEDIATE transaction, so several processes opening
 * a new file at once migrate it exactly once.
 *
 * Threading. One handle serves every thread of the daemon (API connection
 * threads, dispatcher, slots, publisher):
 *  - `wlock` guards `wdb`, the only connection that writes. Every write is
 *    one short BEGIN IMMEDIATE ... COMMIT taken and finished inside one call,
 *    so writers in this process queue on the mutex and writers in other
 *    processes on SQLite's file lock (busy_timeout, then ERR_BUSY).
 *    BEGIN IMMEDIATE rather than a deferred BEGIN: a deferred transaction
 *    that reads and then writes can fail at once with SQLITE_BUSY_SNAPSHOT
 *    when another process committed in between, without waiting.
 *  - `rlock`/`rcond` guard a small pool of read connections. WAL lets them
 *    read a consistent snapshot while a write is in progress, so GET
 *    /v1/jobs/{id} never waits behind a claim that waits for another
 *    process's lock. A multi-statement read runs inside BEGIN ... COMMIT so
 *    that it sees one snapshot.
 *  - `nlock`/`ncond` guard `pending`, the wake-up bits of store_wait_notify;
 *    wend() takes nlock only after releasing wlock.
 *  Lock order: a thread holds at most one of wlock, one read connection, nlock; the
 *  store never calls back into the caller with either held. Rejected design:
 *  a single connection in SQLite's serialized mode — simpler, but every read
 *  would queue behind writes, including writes stuck on another process.
 */
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/xalloc.h"

#define SQ_READERS 4
#define SQ_SCHEMA_VERSION 4

/* How many of the write connection's statements stay prepared (w_prep). */
#define SQ_WCACHE 48

typedef struct {
    struct store base; /* first: store.c reaches ops through it */
    char *path;
    int busy_ms;
    int sync_normal;       /* synchronous=NORMAL instead of FULL */
    pthread_mutex_t wlock; /* guards wdb and its statements */
    sqlite3 *wdb;
    pthread_mutex_t rlock; /* guards rfree/nfree */
    pthread_cond_t rcond;  /* signalled when a read connection is returned */
    sqlite3 *rall[SQ_READERS];
    sqlite3 *rfree[SQ_READERS];
    int nfree;
    /*
     * Wake-ups (store_wait_notify): a write transaction collects the channel
     * bits it touched in `wnotify` (under wlock); a successful COMMIT moves
     * them into `pending` (under nlock) and broadcasts `ncond`.
     */
    unsigned wnotify;
    pthread_mutex_t nlock;
    pthread_cond_t ncond;
    unsigned pending;
    /* Prepared statements of the write connection, by SQL text (under wlock; w_prep). */
    struct {
        char *sql;
        sqlite3_stmt *st;
    } wcache[SQ_WCACHE];
    int nwcache;
} sq_store;

/* --- schema ------------------------------------------------------------- */

/*
 * Migrations, applied in order to a database whose user_version is below
 * their number. Append only; never edit a released step (write a new one).
 * IF NOT EXISTS makes each step idempotent should a step be half-applied by
 * hand.
 */
static const char *const sq_migrations[SQ_SCHEMA_VERSION] = {
    /* 1: initial schema */
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  asset_id TEXT NOT NULL,"
    "  state TEXT NOT NULL"
    "    CHECK (state IN ('queued','running','done','failed','cancelled')),"
    "  priority INTEGER NOT NULL DEFAULT 0,"
    "  tasks INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  payload TEXT,"
    "  error TEXT,"
    "  error_code TEXT,"
    "  timings TEXT,"
    "  lease_owner TEXT,"
    "  lease_until_ms INTEGER NOT NULL DEFAULT 0,"
    "  run_after_ms INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER,"
    "  cancel_requested INTEGER NOT NULL DEFAULT 0"
    ");"
    /* Claim scans this in order: state = 'queued', priority DESC, id. */
    "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(state, priority DESC, id);"
    "CREATE INDEX IF NOT EXISTS jobs_state_id ON jobs(state, id);"
    /*
     * Dedupe lookup, and its guarantee: at most one live (queued or running,
     * not being cancelled) job per (asset_id, tasks), enforced by the
     * database rather than by the enqueue code alone. A running job being
     * cancelled leaves the index, so a new request for the asset is not
     * answered with a job that is about to end cancelled.
     */
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe ON jobs(asset_id, tasks)"
    "  WHERE state IN ('queued','running') AND cancel_requested = 0;"
    "CREATE INDEX IF NOT EXISTS jobs_asset ON jobs(asset_id, tasks, state);"
    "CREATE TABLE IF NOT EXISTS assets ("
    "  asset_id TEXT PRIMARY KEY,"
    "  payload TEXT,"
    "  width INTEGER NOT NULL DEFAULT 0,"
    "  height INTEGER NOT NULL DEFAULT 0,"
    "  updated_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE IF NOT EXISTS image_embeddings ("
    "  asset_id TEXT NOT NULL REFERENCES assets(asset_id) ON DELETE CASCADE,"
    "  model TEXT NOT NULL,"
    "  dim INTEGER NOT NULL,"
    "  norm REAL NOT NULL,"
    "  nsfw TEXT,"
    "  vector BLOB NOT NULL," /* dim float32, little-endian */
    "  PRIMARY KEY (asset_id, model)"
    ");"
    "CREATE INDEX IF NOT EXISTS image_embeddings_model ON image_embeddings(model);"
    "CREATE TABLE IF NOT EXISTS people ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT"
    ");"
    /* AUTOINCREMENT: a face id is never reused, so a stale id cannot name another face. */
    "CREATE TABLE IF NOT EXISTS faces ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  asset_id TEXT NOT NULL REFERENCES assets(asset_id) ON DELETE CASCADE,"
    "  detector TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,"
    "  score REAL NOT NULL,"
    "  keypoints TEXT NOT NULL," /* JSON [[x, y], ...] */
    "  dim INTEGER NOT NULL,"
    "  vector BLOB," /* dim float32, little-endian, or NULL */
    "  person_id INTEGER REFERENCES people(id) ON DELETE SET NULL"
    ");"
    "CREATE INDEX IF NOT EXISTS faces_asset ON faces(asset_id, detector, model);"
    "CREATE INDEX IF NOT EXISTS faces_model ON faces(model);"
    "CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  job_id INTEGER NOT NULL REFERENCES jobs(id),"
    "  asset_id TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  sent_ms INTEGER"
    ");"
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox(id) WHERE sent_ms IS NULL;",
    /* 2: leader leases (store_leader_acquire) */
    "CREATE TABLE IF NOT EXISTS leader ("
    "  name TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL,"
    "  until_ms INTEGER NOT NULL"
    ");",
    /*
     * 3: jobs.worker_id, the owner of the last claim, kept after the job
     * finishes. SQLite has no ADD COLUMN IF NOT EXISTS: sq_migrate skips this
     * step when the column is already there (added by hand).
     */
    "ALTER TABLE jobs ADD COLUMN worker_id TEXT;",
    /* 4: one thumbnail per asset (JPEG), for pages to show */
    "CREATE TABLE IF NOT EXISTS thumbs ("
    "  asset_id TEXT PRIMARY KEY REFERENCES assets(asset_id) ON DELETE CASCADE,"
    "  width INTEGER NOT NULL,"
    "  height INTEGER NOT NULL,"
    "  jpeg BLOB NOT NULL"
    ");",
};

#define JOB_COLS STORE_JOB_COLS

/* --- errors and statements ----------------------------------------------- */

/* Translates a SQLite result code into an ERR_ code, keeping SQLite's message. */
static int sq_err(sq_store *s, sqlite3 *db, int src, const char *op, err_t *e)
{
    int code;
    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = ERR_BUSY;
        break;
    case SQLITE_NOMEM:
        code = ERR_NOMEM;
        break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
        code = ERR_IO;
        break;
    case SQLITE_CONSTRAINT:
        code = ERR_CONFLICT;
        break;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        code = ERR_FORBIDDEN;
        break;
    default:
        code = ERR_INTERNAL;
        break;
    }
    const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(src);
    return err_set(e, code, "store %s: %s: %s (sqlite %d)", s->path, op, msg, src);
}

static int q_prep(sq_store *s, sqlite3 *db, const char *sql, sqlite3_stmt **st, err_t *e)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return sq_err(s, db, rc, "prepare", e);
    }
    return ERR_OK;
}

/*
 * The write connection's prepared statement for `sql`, kept across calls:
 * parsing and planning a statement costs more than running these small
 * ones, and the queue runs the same few thousands of times a second. The
 * statement comes back reset with its bindings cleared; the caller (holding
 * wlock) runs it and then calls w_done(), never sqlite3_finalize(). Once
 * the cache is full, further texts are prepared and dropped each time.
 */
static int w_prep(sq_store *s, const char *sql, sqlite3_stmt **st, err_t *e)
{
    for (int i = 0; i < s->nwcache; i++) {
        if (strcmp(s->wcache[i].sql, sql) == 0) {
            *st = s->wcache[i].st;
            sqlite3_reset(*st);
            sqlite3_clear_bindings(*st);
            return ERR_OK;
        }
    }
    int rc = sqlite3_prepare_v3(s->wdb, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return sq_err(s, s->wdb, rc, "prepare", e);
    }
    if (s->nwcache < SQ_WCACHE) {
        s->wcache[s->nwcache].sql = xstrdup(sql);
        s->wcache[s->nwcache].st = *st;
        s->nwcache++;
    }
    return ERR_OK;
}

/* Ends a use of w_prep()'s statement: reset if cached, finalized if not. */
static void w_done(sq_store *s, sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < s->nwcache; i++) {
        if (s->wcache[i].st == st) {
            sqlite3_reset(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

/* Steps `st`: 1 for a row, 0 when done, a negative ERR_ code on failure. */
static int q_step(sq_store *s, sqlite3 *db, sqlite3_stmt *st, const char *op, err_t *e)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sq_err(s, db, rc, op, e);
}

/* Runs SQL with no parameters and no rows wanted. */
static int q_exec(sq_store *s, sqlite3 *db, const char *sql, const char *op, err_t *e)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return ERR_OK;
    int r = sq_err(s, db, rc, op, e);
    if (msg != NULL) {
        err_set(e, r, "store %s: %s: %s (sqlite %d)", s->path, op, msg, rc);
        sqlite3_free(msg);
    }
    return r;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v != NULL)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* One parameter of q_do() and w_do(): an integer, or a text (NULL binds NULL). */
typedef struct {
    int text;
    int64_t i;
    const char *t;
} sq_arg;

#define A_INT(v) ((sq_arg){.i = (v)})
#define A_TEXT(v) ((sq_arg){.text = 1, .t = (v)})
/* The argument list of q_do()/w_do(): the array and its length. */
#define ARGS(...)                                                                                  \
    (const sq_arg[]){__VA_ARGS__}, (int)(sizeof((const sq_arg[]){__VA_ARGS__}) / sizeof(sq_arg))

/*
 * Prepares `sql` on `db`, binds `a` to ?1..?na, steps it once and finalizes
 * it: q_step()'s answer (ERR_OK when done, 1 for a row, a negative ERR_ code
 * with `e` set on failure, prepare's included). For a statement whose rows
 * are not read: a write inside the caller's transaction, or an existence
 * check. sqlite3_changes() still answers for it after it returns.
 */
static int q_do(sq_store *s, sqlite3 *db, const char *sql, const sq_arg *a, int na, const char *op,
                err_t *e)
{
    sqlite3_stmt *st = NULL;
    int wr = db == s->wdb;
    int rc = wr ? w_prep(s, sql, &st, e) : q_prep(s, db, sql, &st, e);
    if (rc)
        return rc;
    for (int i = 0; i < na; i++) {
        if (a[i].text)
            bind_text(st, i + 1, a[i].t);
        else
            sqlite3_bind_int64(st, i + 1, a[i].i);
    }
    rc = q_step(s, db, st, op, e);
    if (wr)
        w_done(s, st);
    else
        sqlite3_finalize(st);
    return rc;
}

static char *col_strdup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t != NULL ? xstrdup((const char *)t) : NULL;
}

static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, size, "%s", t != NULL ? (const char *)t : "");
}

static const char *sq_col_text(const void *res, int col)
{
    return (const char *)sqlite3_column_text((sqlite3_stmt *)res, col);
}

static int64_t sq_col_i64(const void *res, int col)
{
    return sqlite3_column_int64((sqlite3_stmt *)res, col);
}

/* Fills `j` from a row whose first columns are JOB_COLS starting at column 0. */
static void row_to_job(sqlite3_stmt *st, job *j)
{
    store_cols c = {.text = sq_col_text, .i64 = sq_col_i64, .res = st};
    store__job_from_cols(&c, j);
}

/* Steps `st` to the end, collecting JOB_COLS rows into a new array. */
static int collect_jobs(sq_store *s, sqlite3 *db, sqlite3_stmt *st, const char *op, job **out,
                        int *n, err_t *e)
{
    job *arr = NULL;
    int cnt = 0, cap = 0, rc;
    while ((rc = q_step(s, db, st, op, e)) == 1) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            arr = xrealloc(arr, (size_t)cap * sizeof *arr);
        }
        row_to_job(st, &arr[cnt++]);
    }
    if (rc < 0) {
        job_array_free(arr, cnt);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return ERR_OK;
}

/* --- connections and transactions ---------------------------------------- */

/* chmod 0600 the database and its WAL files where group or others may read them. */
static void sq_make_private(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char p[4200];
        struct stat st;
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077) == 0)
            continue;
        if (chmod(p, st.st_mode & 0700) == 0)
            log_info("store", "made %s private (was %03o)", p, (unsigned)(st.st_mode & 0777));
        else
            log_warn("store", "cannot make %s private: %s", p, strerror(errno));
    }
}

static int sq_connect(sq_store *s, sqlite3 **out, err_t *e)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(
        s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = sq_err(s, db, rc, "open", e);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, s->busy_ms);
    rc = q_exec(s, db,
                s->sync_normal ? "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
                               : "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;",
                "pragma", e);
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return ERR_OK;
}

/* Takes the write connection and opens a write transaction; wend() must follow. */
static int wbegin(sq_store *s, err_t *e)
{
    pthread_mutex_lock(&s->wlock);
    int rc = q_exec(s, s->wdb, "BEGIN IMMEDIATE", "begin", e);
    if (rc)
        pthread_mutex_unlock(&s->wlock);
    return rc;
}

/* Commits when `rc` is ERR_OK, else rolls back; releases the write connection. */
static int wend(sq_store *s, int rc, err_t *e)
{
    if (rc == ERR_OK) {
        rc = q_exec(s, s->wdb, "COMMIT", "commit", e);
    }
    if (rc != ERR_OK && !sqlite3_get_autocommit(s->wdb)) {
        err_t ignore;
        q_exec(s, s->wdb, "ROLLBACK", "rollback", &ignore);
    }
    unsigned bits = rc == ERR_OK ? s->wnotify : 0;
    s->wnotify = 0;
    pthread_mutex_unlock(&s->wlock);
    if (bits != 0) {
        pthread_mutex_lock(&s->nlock);
        s->pending |= bits;
        pthread_cond_broadcast(&s->ncond);
        pthread_mutex_unlock(&s->nlock);
    }
    return rc;
}

/* Runs the one statement `sql` (see q_do) in a write transaction of its own. */
static int w_do(sq_store *s, const char *sql, const sq_arg *a, int na, const char *op, err_t *e)
{
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = q_do(s, s->wdb, sql, a, na, op, e);
    return wend(s, rc, e);
}

static sqlite3 *rget(sq_store *s)
{
    pthread_mutex_lock(&s->rlock);
    while (s->nfree == 0)
        pthread_cond_wait(&s->rcond, &s->rlock);
    sqlite3 *db = s->rfree[--s->nfree];
    pthread_mutex_unlock(&s->rlock);
    return db;
}

static void rput(sq_store *s, sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&s->rlock);
    s->rfree[s->nfree++] = db;
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->rlock);
}

/* Whether `table` has a column `col` (false on any error: the ALTER then reports it). */
static int column_exists(sq_store *s, sqlite3 *db, const char *table, const char *col)
{
    sqlite3_stmt *st = NULL;
    err_t ignore;
    int found = 0;
    if (q_prep(s, db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", &st, &ignore) !=
        ERR_OK)
        return 0;
    bind_text(st, 1, table);
    bind_text(st, 2, col);
    found = q_step(s, db, st, "table_info", &ignore) == 1;
    sqlite3_finalize(st);
    return found;
}

static int sq_migrate(sq_store *s, err_t *e)
{
    sqlite3 *db = s->wdb;
    sqlite3_stmt *st = NULL;
    /*
     * The mode is persistent in the file; setting it again is a no-op.
     * Switching a new file to WAL needs an exclusive lock, and SQLite does
     * not call the busy handler for it: when several processes open a new
     * file at once, the losers get SQLITE_BUSY at once. Retry for up to the
     * busy timeout, as any other lock wait would.
     */
    int64_t give_up = store_now_ms() + s->busy_ms;
    int rc;
    for (;;) {
        rc = q_prep(s, db, "PRAGMA journal_mode = WAL", &st, e);
        if (rc)
            return rc;
        rc = q_step(s, db, st, "journal_mode", e);
        if (rc != ERR_BUSY || store_now_ms() >= give_up)
            break;
        sqlite3_finalize(st);
        st = NULL;
        struct timespec pause = {0, 5 * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (rc == 1) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (mode == NULL || strcmp(mode, "wal") != 0)
            rc = err_set(e, ERR_UNSUPPORTED, "store %s: cannot use WAL (journal_mode %s)", s->path,
                         mode != NULL ? mode : "?");
        else
            rc = ERR_OK;
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;

    rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = q_prep(s, db, "PRAGMA user_version", &st, e);
    int version = 0;
    if (rc == ERR_OK) {
        rc = q_step(s, db, st, "user_version", e);
        if (rc == 1) {
            version = sqlite3_column_int(st, 0);
            rc = ERR_OK;
        }
        sqlite3_finalize(st);
    }
    if (rc == ERR_OK && version > SQ_SCHEMA_VERSION)
        rc = err_set(e, ERR_UNSUPPORTED,
                     "store %s: schema version %d is newer than this inferd (%d)", s->path, version,
                     SQ_SCHEMA_VERSION);
    for (int v = version; rc == ERR_OK && v < SQ_SCHEMA_VERSION; v++) {
        /* Step 3 already applied by hand: skip it, so the step is idempotent. */
        int done = v == 2 && column_exists(s, db, "jobs", "worker_id");
        if (!done)
            rc = q_exec(s, db, sq_migrations[v], "migrate", e);
        if (rc == ERR_OK) {
            char sql[64];
            snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
            rc = q_exec(s, db, sql, "migrate", e);
        }
    }
    return wend(s, rc, e);
}

static void sq_close(store *base)
{
    sq_store *s = (sq_store *)base;
    for (int i = 0; i < s->nwcache; i++) {
        sqlite3_finalize(s->wcache[i].st);
        free(s->wcache[i].sql);
    }
    for (int i = 0; i < SQ_READERS; i++)
        sqlite3_close(s->rall[i]);
    sqlite3_close(s->wdb);
    pthread_mutex_destroy(&s->wlock);
    pthread_mutex_destroy(&s->rlock);
    pthread_cond_destroy(&s->rcond);
    pthread_mutex_destroy(&s->nlock);
    pthread_cond_destroy(&s->ncond);
    free(s->path);
    free(s);
}

static const store_ops sq_ops;

int store__sqlite_open(const char *target, const store_opts *opts, store **out, err_t *e)
{
    if (strcmp(target, ":memory:") == 0 || strncmp(target, "file:", 5) == 0)
        return err_set(e, ERR_INVAL,
                       "store sqlite:%s: need a file path (in-memory and URI names are not shared "
                       "between the store's connections)",
                       target);
    if (!sqlite3_threadsafe())
        return err_set(e, ERR_UNSUPPORTED, "store: libsqlite3 was built without thread support");
    sq_store *s = xcalloc(1, sizeof *s);
    s->base.ops = &sq_ops;
    s->path = xstrdup(target);
    s->busy_ms = opts->busy_timeout_ms;
    s->sync_normal = opts->sqlite_normal;
    pthread_mutex_init(&s->wlock, NULL);
    pthread_mutex_init(&s->rlock, NULL);
    pthread_cond_init(&s->rcond, NULL);
    pthread_mutex_init(&s->nlock, NULL);
    clock_cond_init(&s->ncond);

    int rc = sq_connect(s, &s->wdb, e);
    if (rc == ERR_OK)
        rc = sq_migrate(s, e);
    for (int i = 0; rc == ERR_OK && i < SQ_READERS; i++) {
        rc = sq_connect(s, &s->rall[i], e);
        if (rc == ERR_OK)
            s->rfree[s->nfree++] = s->rall[i];
    }
    if (rc) {
        sq_close(&s->base);
        return rc;
    }
    sq_make_private(s->path);
    *out = &s->base;
    return ERR_OK;
}

/* --- transitions: the primitives store.c's queue policy drives ------------- */

/* The write connection is the transaction: there is one writer. */
static int sq_tx_begin(store *base, store_tx **tx, err_t *e)
{
    *tx = (store_tx *)base;
    return wbegin((sq_store *)base, e);
}

static int sq_tx_end(store *base, store_tx *tx, int rc, err_t *e)
{
    (void)tx;
    return wend((sq_store *)base, rc, e);
}

/* Inserts the outbox row for `ev`; the caller holds the write transaction. */
static int sq_event_put(store *base, store_tx *tx, const store_event *ev, int64_t now, err_t *e)
{
    (void)tx;
    sq_store *s = (sq_store *)base;
    char *payload = store__event_payload(ev, now);
    s->wnotify |= 1u << STORE_CHANNEL_OUTBOX;
    int rc = q_do(s, s->wdb,
                  "INSERT INTO outbox(job_id, asset_id, payload, created_ms) VALUES (?, ?, ?, ?)",
                  ARGS(A_INT(ev->job_id), A_TEXT(ev->asset_id), A_TEXT(payload), A_INT(now)),
                  "outbox insert", e);
    free(payload);
    return rc;
}

static int sq_row_apply(store *base, store_tx *tx, const store_row *r, const store_outcome *o,
                        int64_t now, err_t *e)
{
    (void)tx;
    sq_store *s = (sq_store *)base;
    if (o->to == JOB_RUNNING)
        return q_do(s, s->wdb, "UPDATE jobs SET cancel_requested = 1, updated_ms = ? WHERE id = ?",
                    ARGS(A_INT(now), A_INT(r->id)), "cancel", e);
    if (o->to == JOB_QUEUED) {
        if (o->run_after_ms <= now)
            s->wnotify |= 1u << STORE_CHANNEL_JOBS;
        return q_do(s, s->wdb,
                    "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until_ms = 0,"
                    " run_after_ms = ?1, attempts = max(attempts - ?2, 0),"
                    " error_code = coalesce(?3, error_code), error = coalesce(?4, error),"
                    " updated_ms = ?5 WHERE id = ?6",
                    ARGS(A_INT(o->run_after_ms), A_INT(o->uncount), A_TEXT(o->code),
                         A_TEXT(o->error), A_INT(now), A_INT(r->id)),
                    "requeue", e);
    }
    return q_do(s, s->wdb,
                "UPDATE jobs SET state = ?1, error_code = CASE WHEN ?5 THEN NULL ELSE"
                " coalesce(?2, error_code) END, error = CASE WHEN ?5 THEN NULL ELSE"
                " coalesce(?3, error) END, timings = coalesce(?4, timings),"
                " lease_owner = NULL, lease_until_ms = 0, finished_ms = ?6, updated_ms = ?6"
                " WHERE id = ?7",
                ARGS(A_TEXT(job_state_name(o->to)), A_TEXT(o->code), A_TEXT(o->error),
                     A_TEXT(o->timings), A_INT(o->clear_error), A_INT(now), A_INT(r->id)),
                "finish job", e);
}

#define SQ_ROW_COLS STORE_ROW_COLS

static void read_row(sqlite3_stmt *st, store_row *r)
{
    store_cols c = {.text = sq_col_text, .i64 = sq_col_i64, .res = st};
    store__row_from_cols(&c, r);
}

static int cmp_row_id(const void *a, const void *b)
{
    const store_row *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/*
 * Reads the rows `sel` names, by id. The caller holds the write
 * transaction, so what they say stays true until it commits: SQLite has one
 * writer. A batch of leased jobs is one prepared statement run per job.
 */
static int sq_rows_lock(store *base, store_tx *tx, const store_sel *sel, store_row **out, int *n,
                        err_t *e)
{
    (void)tx;
    sq_store *s = (sq_store *)base;
    static const char *const where[] = {
        [STORE_SEL_LEASED] = "id = ?1 AND state = 'running' AND lease_owner = ?2 AND attempts = ?3",
        [STORE_SEL_EXPIRED] = "state = 'running' AND lease_until_ms < ?4",
        [STORE_SEL_OWNED] = "state = 'running' AND lease_owner = ?2",
        [STORE_SEL_ID] = "id = ?1",
    };
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT " SQ_ROW_COLS " FROM jobs WHERE %s ORDER BY id",
             where[sel->kind]);
    sqlite3_stmt *st = NULL;
    int rc = w_prep(s, sql, &st, e);
    if (rc)
        return rc;
    store_row *arr = NULL;
    int cnt = 0, cap = 0;
    int runs = sel->kind == STORE_SEL_LEASED ? sel->n : 1;
    for (int k = 0; rc == ERR_OK && k < runs; k++) {
        sqlite3_reset(st);
        /* Unused numbered parameters are allowed; bind what this kind uses. */
        if (sel->kind == STORE_SEL_LEASED || sel->kind == STORE_SEL_ID)
            sqlite3_bind_int64(st, 1, sel->ids[k]);
        if (sel->kind == STORE_SEL_LEASED || sel->kind == STORE_SEL_OWNED)
            bind_text(st, 2, sel->owner);
        if (sel->kind == STORE_SEL_LEASED)
            sqlite3_bind_int(st, 3, sel->attempts[k]);
        if (sel->kind == STORE_SEL_EXPIRED)
            sqlite3_bind_int64(st, 4, sel->now);
        while ((rc = q_step(s, s->wdb, st, "lock rows", e)) == 1) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 8;
                arr = xrealloc(arr, (size_t)cap * sizeof *arr);
            }
            read_row(st, &arr[cnt++]);
        }
    }
    w_done(s, st);
    if (rc) {
        store__rows_free(arr, cnt);
        return rc;
    }
    if (cnt > 1)
        qsort(arr, (size_t)cnt, sizeof *arr, cmp_row_id);
    *out = arr;
    *n = cnt;
    return ERR_OK;
}

/* --- jobs ----------------------------------------------------------------- */

/* One job of an enqueue, inside its write transaction. */
static int enqueue_one(sq_store *s, const job_spec *spec, int64_t now, job *out, int *existing,
                       err_t *e)
{
    sqlite3 *db = s->wdb;
    sqlite3_stmt *st = NULL;
    int rc;
    /* Written to match the partial index jobs_dedupe, so the lookup uses it. */
    rc = w_prep(s,
                "SELECT " JOB_COLS " FROM jobs WHERE asset_id = ? AND tasks = ?"
                " AND state IN ('queued','running') AND cancel_requested = 0",
                &st, e);
    if (rc)
        goto out;
    bind_text(st, 1, spec->asset_id);
    sqlite3_bind_int(st, 2, (int)spec->tasks);
    rc = q_step(s, db, st, "dedupe", e);
    if (rc == 1) {
        row_to_job(st, out);
        *existing = 1;
        rc = ERR_OK;
        goto out;
    }
    if (rc < 0)
        goto out;
    w_done(s, st);
    rc = w_prep(s,
                "INSERT INTO jobs(asset_id, state, priority, tasks, attempts, max_attempts,"
                " source, payload, run_after_ms, created_ms, updated_ms)"
                " VALUES (?1, 'queued', ?2, ?3, 0, ?4, ?5, ?6, ?7, ?7, ?7) RETURNING " JOB_COLS,
                &st, e);
    if (rc)
        goto out;
    bind_text(st, 1, spec->asset_id);
    sqlite3_bind_int(st, 2, spec->priority);
    sqlite3_bind_int(st, 3, (int)spec->tasks);
    sqlite3_bind_int(st, 4, spec->max_attempts);
    bind_text(st, 5, spec->source);
    bind_text(st, 6, spec->payload);
    sqlite3_bind_int64(st, 7, now);
    rc = q_step(s, db, st, "enqueue", e);
    if (rc == 1) {
        s->wnotify |= 1u << STORE_CHANNEL_JOBS;
        row_to_job(st, out);
        /* Run the statement to completion so that the insert is final before COMMIT. */
        rc = q_step(s, db, st, "enqueue", e);
        if (rc != 0)
            job_clear(out);
        if (rc > 0)
            rc = err_set(e, ERR_INTERNAL, "enqueue: two rows returned");
    } else if (rc == 0) {
        rc = err_set(e, ERR_INTERNAL, "enqueue: no row returned");
    }
out:
    w_done(s, st);
    return rc;
}

static int sq_job_enqueue(store *base, const job_spec *specs, int n, job *out, int *existing,
                          err_t *e)
{
    sq_store *s = (sq_store *)base;
    int64_t now = store_now_ms();
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    for (int i = 0; i < n && rc == ERR_OK; i++)
        rc = enqueue_one(s, &specs[i], now, &out[i], &existing[i], e);
    rc = wend(s, rc, e);
    if (rc) {
        for (int i = 0; i < n; i++) {
            job_clear(&out[i]);
            existing[i] = 0;
        }
    }
    return rc;
}

static int sq_job_get(store *base, int64_t id, job *out, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc = q_prep(s, db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", &st, e);
    if (rc == ERR_OK) {
        sqlite3_bind_int64(st, 1, id);
        rc = q_step(s, db, st, "get job", e);
        if (rc == 1) {
            row_to_job(st, out);
            rc = ERR_OK;
        } else if (rc == 0) {
            rc = err_set(e, ERR_NOENT, "job %lld not found", (long long)id);
        }
    }
    sqlite3_finalize(st);
    rput(s, db);
    return rc;
}

static int sq_job_list(store *base, int state, int64_t before_id, int limit, job **out, int *n,
                       err_t *e)
{
    sq_store *s = (sq_store *)base;
    /* Four shapes rather than "?1 = 0 OR id < ?1": the planner picks an index per shape. */
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT " JOB_COLS " FROM jobs WHERE 1%s%s ORDER BY id DESC LIMIT ?3",
             before_id > 0 ? " AND id < ?1" : "", state >= 0 ? " AND state = ?2" : "");
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc = q_prep(s, db, sql, &st, e);
    if (rc == ERR_OK) {
        if (before_id > 0)
            sqlite3_bind_int64(st, 1, before_id);
        if (state >= 0)
            sqlite3_bind_text(st, 2, job_state_name((job_state)state), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, limit);
        rc = collect_jobs(s, db, st, "list jobs", out, n, e);
    }
    sqlite3_finalize(st);
    rput(s, db);
    return rc;
}

/* See store_int.h's op: sources of active jobs, or of one asset's jobs, matching `like`. */
static int sq_upload_sources(store *base, const char *asset_id, const char *like, char ***srcs,
                             int *n, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc =
        q_prep(s, db,
               asset_id != NULL ? "SELECT source FROM jobs WHERE asset_id = ?1 AND source LIKE ?2"
                                : "SELECT source FROM jobs WHERE state IN ('queued','running') "
                                  "AND source LIKE ?2",
               &st, e);
    char **arr = NULL;
    int cnt = 0, cap = 0;
    if (rc == ERR_OK) {
        if (asset_id != NULL)
            sqlite3_bind_text(st, 1, asset_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, like, -1, SQLITE_STATIC);
        while ((rc = q_step(s, db, st, "upload sources", e)) == 1) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 16;
                arr = xrealloc(arr, (size_t)cap * sizeof *arr);
            }
            const char *t = (const char *)sqlite3_column_text(st, 0);
            arr[cnt++] = xstrdup(t != NULL ? t : "");
        }
    }
    sqlite3_finalize(st);
    rput(s, db);
    if (rc < 0) {
        for (int i = 0; i < cnt; i++)
            free(arr[i]);
        free(arr);
        return rc;
    }
    *srcs = arr;
    *n = cnt;
    return ERR_OK;
}

static int sq_job_claim(store *base, const char *owner, int max, int64_t lease_ms, job **out,
                        int *n, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = s->wdb;
    sqlite3_stmt *st = NULL;
    int64_t now = store_now_ms();
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = w_prep(s,
                "UPDATE jobs SET state = 'running', lease_owner = ?1, worker_id = ?1,"
                " lease_until_ms = ?2, attempts = attempts + 1, updated_ms = ?3"
                " WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_after_ms <= ?3"
                " ORDER BY priority DESC, id LIMIT ?4) RETURNING " JOB_COLS,
                &st, e);
    if (rc == ERR_OK) {
        bind_text(st, 1, owner);
        sqlite3_bind_int64(st, 2, now + lease_ms);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_int(st, 4, max);
        rc = collect_jobs(s, db, st, "claim", out, n, e);
        w_done(s, st);
    }
    rc = wend(s, rc, e);
    if (rc) {
        job_array_free(*out, *n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    return ERR_OK;
}

static int sq_job_heartbeat(store *base, const char *owner, int64_t lease_ms, err_t *e)
{
    int64_t now = store_now_ms();
    return w_do((sq_store *)base,
                "UPDATE jobs SET lease_until_ms = ?, updated_ms = ?"
                " WHERE state = 'running' AND lease_owner = ?",
                ARGS(A_INT(now + lease_ms), A_INT(now), A_TEXT(owner)), "heartbeat", e);
}

/* Writes the results `r` of job row `row`; inside the write transaction. */
static int sq_results_put(store *base, store_tx *tx, const store_row *row, const store_result *r,
                          int64_t now, err_t *e)
{
    (void)tx;
    sq_store *s = (sq_store *)base;
    sqlite3 *db = s->wdb;
    const char *asset_id = row->asset_id, *payload = row->payload;
    sqlite3_stmt *st = NULL;
    /* A job without a payload keeps the payload an earlier job gave the asset. */
    int rc =
        q_do(s, db,
             "INSERT INTO assets(asset_id, payload, width, height, updated_ms)"
             " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(asset_id) DO UPDATE SET"
             " payload = coalesce(excluded.payload, payload), width = excluded.width,"
             " height = excluded.height, updated_ms = excluded.updated_ms",
             ARGS(A_TEXT(asset_id), A_TEXT(payload), A_INT(r->width), A_INT(r->height), A_INT(now)),
             "asset upsert", e);
    if (rc)
        return rc;

    if (r->image_model != NULL) {
        /* The (asset_id, model) primary key makes the insert a replacement. */
        rc = w_prep(s,
                    "INSERT OR REPLACE INTO image_embeddings(asset_id, model, dim, norm, nsfw,"
                    " vector) VALUES (?, ?, ?, ?, ?, ?)",
                    &st, e);
        if (rc)
            return rc;
        size_t bytes = (size_t)r->image_dim * 4;
        unsigned char *blob = xmalloc(bytes);
        store__vec_to_le(r->image_vector, r->image_dim, blob);
        bind_text(st, 1, asset_id);
        bind_text(st, 2, r->image_model);
        sqlite3_bind_int(st, 3, r->image_dim);
        sqlite3_bind_double(st, 4, r->image_norm);
        bind_text(st, 5, r->nsfw);
        sqlite3_bind_blob(st, 6, blob, (int)bytes, free);
        rc = q_step(s, db, st, "image embedding", e);
        w_done(s, st);
        st = NULL;
        if (rc)
            return rc;
    }

    if (r->thumb != NULL) {
        rc = w_prep(s,
                    "INSERT OR REPLACE INTO thumbs(asset_id, width, height, jpeg)"
                    " VALUES (?, ?, ?, ?)",
                    &st, e);
        if (rc)
            return rc;
        bind_text(st, 1, asset_id);
        sqlite3_bind_int(st, 2, r->thumb_w);
        sqlite3_bind_int(st, 3, r->thumb_h);
        sqlite3_bind_blob(st, 4, r->thumb, (int)r->thumb_len, SQLITE_TRANSIENT);
        rc = q_step(s, db, st, "thumbnail", e);
        w_done(s, st);
        st = NULL;
        if (rc)
            return rc;
    }

    if (r->face_model == NULL && r->detector_model == NULL)
        return ERR_OK;
    const char *det = r->detector_model != NULL ? r->detector_model : "";
    const char *fm = r->face_model != NULL ? r->face_model : "";
    rc = q_do(s, db, "DELETE FROM faces WHERE asset_id = ? AND detector = ? AND model = ?",
              ARGS(A_TEXT(asset_id), A_TEXT(det), A_TEXT(fm)), "faces delete", e);
    if (rc || r->nfaces == 0)
        return rc;
    rc = w_prep(s,
                "INSERT INTO faces(asset_id, detector, model, x1, y1, x2, y2, score, keypoints,"
                " dim, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                &st, e);
    if (rc)
        return rc;
    for (int i = 0; rc == ERR_OK && i < r->nfaces; i++) {
        const store_face *f = &r->faces[i];
        char kps[6 * 2 * 20 + 16];
        size_t len = 0;
        kps[len++] = '[';
        for (int k = 0; k < (f->nkps == 5 ? 5 : 6); k++)
            len += (size_t)snprintf(kps + len, sizeof kps - len, "%s[%.9g,%.9g]", k ? "," : "",
                                    f->kps[k][0], f->kps[k][1]);
        snprintf(kps + len, sizeof kps - len, "]");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        bind_text(st, 1, asset_id);
        bind_text(st, 2, det);
        bind_text(st, 3, fm);
        for (int b = 0; b < 4; b++)
            sqlite3_bind_double(st, 4 + b, f->box[b]);
        sqlite3_bind_double(st, 8, f->score);
        bind_text(st, 9, kps);
        if (f->vector != NULL) {
            size_t bytes = (size_t)r->face_dim * 4;
            unsigned char *blob = xmalloc(bytes);
            store__vec_to_le(f->vector, r->face_dim, blob);
            sqlite3_bind_int(st, 10, r->face_dim);
            sqlite3_bind_blob(st, 11, blob, (int)bytes, free);
        } else {
            sqlite3_bind_int(st, 10, 0);
        }
        rc = q_step(s, db, st, "face insert", e);
    }
    w_done(s, st);
    return rc;
}

static int sq_counts_get(store *base, store_counts *c, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc = q_exec(s, db, "BEGIN", "begin", e);
    if (rc == ERR_OK)
        rc = q_prep(s, db, "SELECT state, count(*) FROM jobs GROUP BY state", &st, e);
    if (rc == ERR_OK) {
        while ((rc = q_step(s, db, st, "counts", e)) == 1) {
            int64_t k = sqlite3_column_int64(st, 1);
            switch (job_state_parse((const char *)sqlite3_column_text(st, 0))) {
            case JOB_QUEUED:
                c->queued = k;
                break;
            case JOB_RUNNING:
                c->running = k;
                break;
            case JOB_DONE:
                c->done = k;
                break;
            case JOB_FAILED:
                c->failed = k;
                break;
            case JOB_CANCELLED:
                c->cancelled = k;
                break;
            }
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (rc == ERR_OK)
        rc = q_prep(s, db, "SELECT count(*) FROM outbox WHERE sent_ms IS NULL", &st, e);
    if (rc == ERR_OK) {
        rc = q_step(s, db, st, "counts", e);
        if (rc == 1) {
            c->outbox_pending = sqlite3_column_int64(st, 0);
            rc = ERR_OK;
        }
    }
    sqlite3_finalize(st);
    if (rc == ERR_OK)
        rc = q_exec(s, db, "COMMIT", "commit", e);
    rput(s, db);
    return rc;
}

/* --- results ---------------------------------------------------------------- */

/* Appends one element to the growing array `*arr` of `*n` (capacity `*cap`); returns it zeroed. */
static void *grow(void *arr, int *n, int *cap, size_t size, void **out)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        arr = xrealloc(arr, (size_t)*cap * size);
    }
    *out = (char *)arr + (size_t)(*n)++ * size;
    memset(*out, 0, size);
    return arr;
}

static float *col_vec(sqlite3_stmt *st, int col, int dim, int *n)
{
    return store__vec_dup(sqlite3_column_blob(st, col), (size_t)sqlite3_column_bytes(st, col), dim,
                          n);
}

static int sq_asset_read(store *base, const char *asset_id, int with_vectors, store_asset *a,
                         err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc = q_exec(s, db, "BEGIN", "begin", e);
    if (rc)
        goto out;
    rc = q_prep(s, db, "SELECT payload, width, height, updated_ms FROM assets WHERE asset_id = ?",
                &st, e);
    if (rc)
        goto out;
    bind_text(st, 1, asset_id);
    rc = q_step(s, db, st, "asset", e);
    if (rc == 0)
        rc = err_set(e, ERR_NOENT, "asset %s not found", asset_id);
    if (rc < 0)
        goto out;
    a->payload = col_strdup(st, 0);
    a->width = sqlite3_column_int(st, 1);
    a->height = sqlite3_column_int(st, 2);
    a->updated_ms = sqlite3_column_int64(st, 3);
    sqlite3_finalize(st);
    st = NULL;

    rc = q_prep(s, db,
                "SELECT model, dim, norm, nsfw, vector FROM image_embeddings WHERE asset_id = ?"
                " ORDER BY model",
                &st, e);
    if (rc)
        goto out;
    bind_text(st, 1, asset_id);
    int cap = 0;
    while ((rc = q_step(s, db, st, "image embeddings", e)) == 1) {
        store_asset_emb *m;
        a->embs = grow(a->embs, &a->nembs, &cap, sizeof *m, (void **)&m);
        m->model = col_strdup(st, 0);
        m->dim = sqlite3_column_int(st, 1);
        m->norm = sqlite3_column_double(st, 2);
        m->nsfw = col_strdup(st, 3);
        if (with_vectors)
            m->vector = col_vec(st, 4, m->dim, &m->nvec);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc)
        goto out;

    rc = q_prep(s, db,
                "SELECT id, x1, y1, x2, y2, score, keypoints, detector, model, dim, vector,"
                " person_id FROM faces WHERE asset_id = ? ORDER BY id",
                &st, e);
    if (rc)
        goto out;
    bind_text(st, 1, asset_id);
    cap = 0;
    while ((rc = q_step(s, db, st, "faces", e)) == 1) {
        store_asset_face *f;
        a->faces = grow(a->faces, &a->nfaces, &cap, sizeof *f, (void **)&f);
        f->id = sqlite3_column_int64(st, 0);
        for (int b = 0; b < 4; b++)
            f->box[b] = sqlite3_column_double(st, 1 + b);
        f->score = sqlite3_column_double(st, 5);
        f->keypoints = col_strdup(st, 6);
        f->detector = col_strdup(st, 7);
        f->model = col_strdup(st, 8);
        f->dim = sqlite3_column_int(st, 9);
        if (with_vectors)
            f->vector = col_vec(st, 10, f->dim, &f->nvec);
        f->person_id = sqlite3_column_int64(st, 11);
    }
    if (rc == ERR_OK)
        rc = q_exec(s, db, "COMMIT", "commit", e);
out:
    sqlite3_finalize(st);
    rput(s, db);
    return rc;
}

/*
 * Inserts the "deleted" outbox event of `asset_id` under its latest job (the
 * outbox row needs one; see store_asset_delete). An asset whose jobs are all
 * gone gets no event. Inside the write transaction.
 */
static int put_deleted_event(sq_store *s, const char *asset_id, err_t *e)
{
    sqlite3_stmt *st = NULL;
    int rc = q_prep(s, s->wdb, "SELECT max(id) FROM jobs WHERE asset_id = ?", &st, e);
    if (rc)
        return rc;
    bind_text(st, 1, asset_id);
    rc = q_step(s, s->wdb, st, "latest job", e);
    int64_t job_id = rc == 1 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc < 0 || job_id == 0)
        return rc < 0 ? rc : ERR_OK;
    store_event ev = {.job_id = job_id, .asset_id = asset_id, .deleted = 1};
    return sq_event_put(&s->base, (store_tx *)s, &ev, store_now_ms(), e);
}

static int sq_thumb_get(store *base, const char *asset_id, unsigned char **jpeg, size_t *len,
                        int *w, int *h, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc = q_prep(s, db, "SELECT width, height, jpeg FROM thumbs WHERE asset_id = ?", &st, e);
    if (rc == ERR_OK) {
        bind_text(st, 1, asset_id);
        rc = q_step(s, db, st, "thumbnail", e);
        if (rc == 1) {
            *w = sqlite3_column_int(st, 0);
            *h = sqlite3_column_int(st, 1);
            int n = sqlite3_column_bytes(st, 2);
            *jpeg = xmalloc(n > 0 ? (size_t)n : 1);
            memcpy(*jpeg, sqlite3_column_blob(st, 2), (size_t)n);
            *len = (size_t)n;
            rc = ERR_OK;
        } else if (rc == 0) {
            rc = err_set(e, ERR_NOENT, "asset %s has no thumbnail", asset_id);
        }
    }
    sqlite3_finalize(st);
    rput(s, db);
    return rc;
}

static int sq_assets_list(store *base, const char *after, int limit,
                          void (*each)(void *ctx, const store_cols *c), void *ctx, int64_t *total,
                          err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    /* One read transaction: the page and the total agree. */
    int rc = q_exec(s, db, "BEGIN", "assets list", e);
    if (rc == ERR_OK)
        rc = q_prep(s, db,
                    "SELECT " STORE_ASSET_LIST_COLS " FROM assets a WHERE a.asset_id > ?1"
                    " ORDER BY a.asset_id LIMIT ?2",
                    &st, e);
    if (rc == ERR_OK) {
        bind_text(st, 1, after);
        sqlite3_bind_int(st, 2, limit);
        store_cols c = {.text = sq_col_text, .i64 = sq_col_i64, .res = st};
        while ((rc = q_step(s, db, st, "assets list", e)) == 1)
            each(ctx, &c);
        sqlite3_finalize(st);
        st = NULL;
    }
    if (rc == ERR_OK)
        rc = q_prep(s, db, "SELECT count(*) FROM assets", &st, e);
    if (rc == ERR_OK && (rc = q_step(s, db, st, "assets count", e)) == 1) {
        *total = sqlite3_column_int64(st, 0);
        rc = ERR_OK;
    }
    sqlite3_finalize(st);
    if (rc == ERR_OK)
        rc = q_exec(s, db, "COMMIT", "commit", e); /* on failure rput rolls back */
    rput(s, db);
    return rc;
}

static int sq_asset_delete(store *base, const char *asset_id, err_t *e)
{
    sq_store *s = (sq_store *)base;
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    /* image_embeddings and faces go with it: ON DELETE CASCADE. */
    rc = q_do(s, s->wdb, "DELETE FROM assets WHERE asset_id = ?", ARGS(A_TEXT(asset_id)),
              "asset delete", e);
    if (rc == ERR_OK && sqlite3_changes(s->wdb) == 0)
        rc = err_set(e, ERR_NOENT, "asset %s not found", asset_id);
    if (rc == ERR_OK)
        rc = put_deleted_event(s, asset_id, e);
    return wend(s, rc, e);
}

/* --- outbox --------------------------------------------------------------- */

static int sq_outbox_read(store *base, int64_t after_id, int unsent_only, int limit,
                          outbox_event **out, int *n, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    outbox_event *arr = NULL;
    int cnt = 0, cap = 0;
    int rc = q_prep(s, db,
                    unsent_only ? "SELECT id, job_id, asset_id, payload, created_ms, sent_ms"
                                  " FROM outbox WHERE id > ? AND sent_ms IS NULL ORDER BY id"
                                  " LIMIT ?"
                                : "SELECT id, job_id, asset_id, payload, created_ms, sent_ms"
                                  " FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    &st, e);
    if (rc == ERR_OK) {
        sqlite3_bind_int64(st, 1, after_id);
        sqlite3_bind_int(st, 2, limit);
        while ((rc = q_step(s, db, st, "outbox read", e)) == 1) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 16;
                arr = xrealloc(arr, (size_t)cap * sizeof *arr);
            }
            outbox_event *ev = &arr[cnt++];
            memset(ev, 0, sizeof *ev);
            ev->id = sqlite3_column_int64(st, 0);
            ev->job_id = sqlite3_column_int64(st, 1);
            col_copy(st, 2, ev->asset_id, sizeof ev->asset_id);
            ev->payload = col_strdup(st, 3);
            ev->created_ms = sqlite3_column_int64(st, 4);
            ev->sent = sqlite3_column_type(st, 5) != SQLITE_NULL;
        }
    }
    sqlite3_finalize(st);
    rput(s, db);
    if (rc) {
        outbox_event_array_free(arr, cnt);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return ERR_OK;
}

static int sq_outbox_max_id(store *base, int64_t *out, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc = q_prep(s, db, "SELECT COALESCE(MAX(id), 0) FROM outbox", &st, e);
    if (rc == ERR_OK && (rc = q_step(s, db, st, "outbox max id", e)) == 1) {
        *out = sqlite3_column_int64(st, 0);
        rc = ERR_OK;
    }
    sqlite3_finalize(st);
    rput(s, db);
    return rc;
}

static int sq_outbox_mark_sent(store *base, int64_t id, err_t *e)
{
    sq_store *s = (sq_store *)base;
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = q_do(s, s->wdb, "UPDATE outbox SET sent_ms = coalesce(sent_ms, ?) WHERE id = ?",
              ARGS(A_INT(store_now_ms()), A_INT(id)), "mark sent", e);
    if (rc == ERR_OK && sqlite3_changes(s->wdb) == 0)
        rc = err_set(e, ERR_NOENT, "outbox row %lld not found", (long long)id);
    return wend(s, rc, e);
}

/* --- leader leases and wake-ups ------------------------------------------ */

static int sq_leader_acquire(store *base, const char *name, const char *owner, int64_t lease_ms,
                             err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = NULL;
    int64_t now = store_now_ms();
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    /* The upsert's WHERE lets only the holder or a taker of an expired lease write. */
    rc = q_do(s, s->wdb,
              "INSERT INTO leader(name, owner, until_ms) VALUES (?1, ?2, ?3)"
              " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner,"
              " until_ms = excluded.until_ms WHERE leader.owner = excluded.owner"
              " OR leader.until_ms < ?4",
              ARGS(A_TEXT(name), A_TEXT(owner), A_INT(now + lease_ms), A_INT(now)),
              "leader acquire", e);
    if (rc || sqlite3_changes(s->wdb) > 0)
        goto out;
    rc = q_prep(s, s->wdb, "SELECT owner, until_ms FROM leader WHERE name = ?", &st, e);
    if (rc)
        goto out;
    bind_text(st, 1, name);
    rc = q_step(s, s->wdb, st, "leader", e);
    if (rc == 1)
        rc = err_set(e, ERR_LEASE, "leader %s: held by %s for %lld ms more", name,
                     (const char *)sqlite3_column_text(st, 0),
                     (long long)(sqlite3_column_int64(st, 1) - now));
    else if (rc == 0)
        rc = err_set(e, ERR_INTERNAL, "leader %s: neither written nor held", name);
out:
    sqlite3_finalize(st);
    return wend(s, rc, e);
}

static int sq_leader_release(store *base, const char *name, const char *owner, err_t *e)
{
    return w_do((sq_store *)base, "DELETE FROM leader WHERE name = ? AND owner = ?",
                ARGS(A_TEXT(name), A_TEXT(owner)), "leader release", e);
}

/*
 * In-process only: SQLite has no way to hear another process's commit
 * short of polling the file, which is what the caller's timeout does.
 */
static int sq_wait_notify(store *base, store_channel ch, int timeout_ms, err_t *e)
{
    sq_store *s = (sq_store *)base;
    unsigned bit = 1u << ch;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int woken = 0;
    pthread_mutex_lock(&s->nlock);
    for (;;) {
        if (s->pending & bit) {
            s->pending &= ~bit;
            woken = 1;
            break;
        }
        if (pthread_cond_timedwait(&s->ncond, &s->nlock, &until) == ETIMEDOUT) {
            woken = (s->pending & bit) != 0;
            s->pending &= ~bit;
            break;
        }
    }
    pthread_mutex_unlock(&s->nlock);
    (void)e;
    return woken ? ERR_OK : 1;
}

/* --- vectors -------------------------------------------------------------- */

static int sq_vectors_read(store *base, store_vec_kind kind, const char *asset_id,
                           const store_vec *after, int limit, store_vec **out, int *n, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    store_vec *arr = NULL;
    int cnt = 0;
    int rc;
    if (kind == STORE_VEC_IMAGE)
        rc = q_prep(s, db,
                    "SELECT 0, i.asset_id, i.model, i.dim, i.vector, 0, a.payload"
                    " FROM image_embeddings i JOIN assets a ON a.asset_id = i.asset_id"
                    " WHERE (?1 IS NULL OR i.asset_id = ?1)"
                    " AND (?2 IS NULL OR (i.asset_id, i.model) > (?2, ?3))"
                    " ORDER BY i.asset_id, i.model LIMIT ?4",
                    &st, e);
    else
        rc = q_prep(s, db,
                    "SELECT id, asset_id, model, dim, vector, person_id, NULL FROM faces"
                    " WHERE vector IS NOT NULL AND (?1 IS NULL OR asset_id = ?1)"
                    " AND id > ?5 ORDER BY id LIMIT ?4",
                    &st, e);
    if (rc == ERR_OK) {
        bind_text(st, 1, asset_id);
        if (kind == STORE_VEC_IMAGE) {
            bind_text(st, 2, after != NULL ? after->asset_id : NULL);
            bind_text(st, 3, after != NULL ? after->model : NULL);
        } else {
            sqlite3_bind_int64(st, 5, after != NULL ? after->face_id : 0);
        }
        sqlite3_bind_int(st, 4, limit);
        arr = xcalloc((size_t)limit, sizeof *arr);
        while (cnt < limit && (rc = q_step(s, db, st, "vectors", e)) == 1) {
            store_vec *v = &arr[cnt++];
            v->face_id = sqlite3_column_int64(st, 0);
            col_copy(st, 1, v->asset_id, sizeof v->asset_id);
            v->model = col_strdup(st, 2);
            int dim = sqlite3_column_int(st, 3);
            int bytes = sqlite3_column_bytes(st, 4);
            const void *blob = sqlite3_column_blob(st, 4);
            if (dim <= 0 || bytes != dim * 4 || blob == NULL) {
                rc = err_set(e, ERR_INTERNAL, "store %s: vector of %s has %d bytes for dim %d",
                             s->path, v->asset_id, bytes, dim);
                break;
            }
            v->dim = dim;
            v->vector = xmalloc((size_t)dim * sizeof(float));
            store__vec_from_le(blob, dim, v->vector);
            v->person_id = sqlite3_column_int64(st, 5);
            v->payload = col_strdup(st, 6);
        }
        if (rc == 1)
            rc = ERR_OK;
    }
    sqlite3_finalize(st);
    rput(s, db);
    if (rc) {
        store_vec_array_free(arr, cnt);
        return rc;
    }
    if (cnt == 0) {
        free(arr);
        arr = NULL;
    }
    *out = arr;
    *n = cnt;
    return ERR_OK;
}

/* --- people ---------------------------------------------------------------- */

static int sq_person_create(store *base, const char *name, int64_t *id, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = NULL;
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = q_prep(s, s->wdb, "INSERT INTO people(name) VALUES (?) RETURNING id", &st, e);
    if (rc == ERR_OK) {
        bind_text(st, 1, name);
        rc = q_step(s, s->wdb, st, "person create", e);
        if (rc == 1) {
            *id = sqlite3_column_int64(st, 0);
            rc = q_step(s, s->wdb, st, "person create", e);
        }
        sqlite3_finalize(st);
    }
    return wend(s, rc, e);
}

static int sq_faces_assign(store *base, const int64_t *face_ids, const int64_t *person_ids, int n,
                           int *assigned, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3_stmt *st = NULL;
    int changed = 0;
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = q_prep(s, s->wdb, "UPDATE faces SET person_id = ? WHERE id = ? AND person_id IS NULL", &st,
                e);
    for (int i = 0; rc == ERR_OK && i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, person_ids[i]);
        sqlite3_bind_int64(st, 2, face_ids[i]);
        rc = q_step(s, s->wdb, st, "faces assign", e);
        if (rc == ERR_OK)
            changed += sqlite3_changes(s->wdb);
    }
    sqlite3_finalize(st);
    rc = wend(s, rc, e);
    if (rc == ERR_OK)
        *assigned = changed;
    return rc;
}

static int sq_people_reset(store *base, err_t *e)
{
    sq_store *s = (sq_store *)base;
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = q_exec(s, s->wdb,
                "UPDATE faces SET person_id = NULL WHERE person_id IS NOT NULL;"
                " DELETE FROM people;",
                "people reset", e);
    return wend(s, rc, e);
}

/* People rows with face counts and cover: id, name, face_count, cover face id, cover asset. */
#define SQ_PEOPLE_SELECT                                                                           \
    "SELECT p.id, p.name, (SELECT count(*) FROM faces f WHERE f.person_id = p.id),"                \
    " c.id, c.asset_id FROM people p JOIN faces c ON c.id = (SELECT f.id FROM faces f"             \
    " WHERE f.person_id = p.id ORDER BY f.score DESC, f.id LIMIT 1)"

static int sq_people_read(store *base, store_person_row **out, int *n, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int cap = 0;
    int rc = q_prep(s, db, SQ_PEOPLE_SELECT " ORDER BY 3 DESC, p.id", &st, e);
    while (rc == ERR_OK && (rc = q_step(s, db, st, "people", e)) == 1) {
        store_person_row *p;
        *out = grow(*out, n, &cap, sizeof *p, (void **)&p);
        p->id = sqlite3_column_int64(st, 0);
        p->name = col_strdup(st, 1);
        p->face_count = sqlite3_column_int64(st, 2);
        p->cover_face = sqlite3_column_int64(st, 3);
        p->cover_asset = col_strdup(st, 4);
        rc = ERR_OK;
    }
    sqlite3_finalize(st);
    rput(s, db);
    return rc;
}

static int sq_person_read(store *base, int64_t id, store_person *p, err_t *e)
{
    sq_store *s = (sq_store *)base;
    sqlite3 *db = rget(s);
    sqlite3_stmt *st = NULL;
    int rc = q_exec(s, db, "BEGIN", "begin", e);
    if (rc == ERR_OK)
        rc = q_prep(s, db, "SELECT name FROM people WHERE id = ?", &st, e);
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    rc = q_step(s, db, st, "person", e);
    if (rc == 0)
        rc = err_set(e, ERR_NOENT, "person %lld not found", (long long)id);
    if (rc < 0)
        goto out;
    p->name = col_strdup(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    rc = q_prep(s, db,
                "SELECT id, asset_id, x1, y1, x2, y2, score FROM faces WHERE person_id = ?"
                " ORDER BY id",
                &st, e);
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    int cap = 0;
    while ((rc = q_step(s, db, st, "person faces", e)) == 1) {
        store_person_face *f;
        p->faces = grow(p->faces, &p->nfaces, &cap, sizeof *f, (void **)&f);
        f->id = sqlite3_column_int64(st, 0);
        f->asset_id = col_strdup(st, 1);
        for (int b = 0; b < 4; b++)
            f->box[b] = sqlite3_column_double(st, 2 + b);
        f->score = sqlite3_column_double(st, 6);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc)
        goto out;
    rc = q_prep(s, db, "SELECT DISTINCT asset_id FROM faces WHERE person_id = ? ORDER BY asset_id",
                &st, e);
    if (rc)
        goto out;
    sqlite3_bind_int64(st, 1, id);
    cap = 0;
    while ((rc = q_step(s, db, st, "person assets", e)) == 1) {
        char **slot;
        p->assets = grow(p->assets, &p->nassets, &cap, sizeof *slot, (void **)&slot);
        *slot = col_strdup(st, 0);
    }
    if (rc == ERR_OK)
        rc = q_exec(s, db, "COMMIT", "commit", e);
out:
    sqlite3_finalize(st);
    rput(s, db);
    return rc;
}

static int sq_person_rename(store *base, int64_t id, const char *name, err_t *e)
{
    sq_store *s = (sq_store *)base;
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    rc = q_do(s, s->wdb, "UPDATE people SET name = ? WHERE id = ?", ARGS(A_TEXT(name), A_INT(id)),
              "person rename", e);
    if (rc == ERR_OK && sqlite3_changes(s->wdb) == 0)
        rc = err_set(e, ERR_NOENT, "person %lld not found", (long long)id);
    return wend(s, rc, e);
}

static int sq_people_merge(store *base, int64_t into, const int64_t *from, int n, err_t *e)
{
    sq_store *s = (sq_store *)base;
    int rc = wbegin(s, e);
    if (rc)
        return rc;
    for (int i = -1; rc == ERR_OK && i < n; i++) {
        int64_t pid = i < 0 ? into : from[i];
        rc = q_do(s, s->wdb, "SELECT 1 FROM people WHERE id = ?", ARGS(A_INT(pid)), "person", e);
        if (rc == 0)
            rc = err_set(e, ERR_NOENT, "person %lld not found", (long long)pid);
        else if (rc == 1)
            rc = ERR_OK;
    }
    for (int i = 0; rc == ERR_OK && i < n; i++) {
        rc = q_do(s, s->wdb, "UPDATE faces SET person_id = ?1 WHERE person_id = ?2;",
                  ARGS(A_INT(into), A_INT(from[i])), "merge faces", e);
        if (rc)
            break;
        rc = q_do(s, s->wdb, "DELETE FROM people WHERE id = ?", ARGS(A_INT(from[i])),
                  "merge delete", e);
    }
    return wend(s, rc, e);
}

static const store_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .job_enqueue = sq_job_enqueue,
    .job_get = sq_job_get,
    .job_list = sq_job_list,
    .job_claim = sq_job_claim,
    .job_heartbeat = sq_job_heartbeat,
    .tx_begin = sq_tx_begin,
    .tx_end = sq_tx_end,
    .rows_lock = sq_rows_lock,
    .row_apply = sq_row_apply,
    .results_put = sq_results_put,
    .event_put = sq_event_put,
    .counts_get = sq_counts_get,
    .asset_read = sq_asset_read,
    .asset_delete = sq_asset_delete,
    .thumb_get = sq_thumb_get,
    .assets_list = sq_assets_list,
    .upload_sources = sq_upload_sources,
    .outbox_read = sq_outbox_read,
    .outbox_max_id = sq_outbox_max_id,
    .outbox_mark_sent = sq_outbox_mark_sent,
    .leader_acquire = sq_leader_acquire,
    .leader_release = sq_leader_release,
    .wait_notify = sq_wait_notify,
    .vectors_read = sq_vectors_read,
    .person_create = sq_person_create,
    .faces_assign = sq_faces_assign,
    .people_reset = sq_people_reset,
    .people_read = sq_people_read,
    .person_read = sq_person_read,
    .person_rename = sq_person_rename,
    .people_merge = sq_people_merge,
};
