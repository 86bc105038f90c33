/*
 * store/store_pg.c — the PostgreSQL backend of store.h: the queue, the
 * results and the outbox shared by any number of inferd processes on any
 * number of machines. store.c has already checked every argument; this file
 * only talks to libpq and translates its errors (SQLSTATE) into ERR_ codes,
 * the one adapter that does. Semantics are those of store_sqlite.c, checked
 * by the same conformance suite (tests/unit/test_store.c).
 *
 * URL. A libpq connection URI, plus one parameter of our own: "schema=NAME"
 * puts every table in schema NAME (created when missing) by connecting with
 * options "-c search_path=NAME", so several deployments, or one test per
 * schema, share a database. It is removed from the URI before libpq sees it
 * (libpq refuses unknown parameters). store_opts.busy_timeout_ms becomes the
 * session's lock_timeout: a lock wait longer than that fails with ERR_BUSY,
 * as a busy SQLite file does. Both are passed as "options", which therefore
 * replaces an "options" given in the URL.
 *
 * Schema. inferd creates and migrates its own tables: schema_version holds
 * one row per applied version (a database from before version 2 holds the
 * single row 1, which is the same thing); each migration is idempotent
 * (IF NOT EXISTS) and all of them run in one transaction that first takes
 * pg_advisory_xact_lock(PG_LOCK_MIGRATE), so processes starting together
 * on an empty database queue on the lock, the first migrates and the others
 * find the work done. A database at a newer version than this binary knows
 * is refused (ERR_UNSUPPORTED).
 *
 * Claims never wait on each other: the claiming UPDATE picks its rows with
 * SELECT ... FOR UPDATE SKIP LOCKED, so two workers skip each other's rows
 * instead of queueing. Lease-conditional transitions lock the job row
 * (SELECT ... FOR UPDATE) and re-check owner, state and attempt after the
 * lock, exactly the check SQLite makes under its file lock.
 *
 * Outbox order. A sequence hands out ids at insert time, not at commit, so
 * two transactions could commit ids 8 and 7 in that order, and a reader
 * paging by id (after_id) who saw 8 would never see 7. Every transaction
 * that inserts an event therefore takes pg_advisory_xact_lock(PG_LOCK_OUTBOX)
 * just before the insert, as its last step, and holds it to commit: ids are
 * then committed in order. The cost is that event-writing commits are
 * serialised (one WAL flush each); rejected alternative: readers that stop
 * at the oldest transaction still in flight (pg_snapshot_xmin), which moves
 * the complexity into every reader. To avoid deadlocks on that lock, a
 * transaction locks every row it will touch before it takes it.
 *
 * Connection loss. A failed statement on a connection that libpq now marks
 * CONNECTION_BAD returns ERR_UNAVAILABLE (transient): the server rolled the
 * transaction back, callers retry. The next use of that connection resets it
 * (PQreset), at most once per backoff interval (100 ms doubling to 5 s) so
 * a dead server is not hammered; within the interval calls fail fast with
 * ERR_UNAVAILABLE. A BEGIN that fails on a connection that died while idle
 * is retried once on a fresh connection, since nothing was done yet.
 *
 * Threading. One handle serves every thread:
 *  - `plock`/`pcond` guard the pool's free list. A thread takes one
 *    connection for the whole of one call (one transaction) and returns it,
 *    so a connection is used by one thread at a time; with all PG_POOL
 *    connections taken, callers wait on pcond.
 *  - each listener (one per store_channel, opened by the first
 *    store_wait_notify on it) has its own mutex, held for the whole wait.
 *  Lock order: a thread holds at most one pool connection and at most one
 *  listener mutex, never both (the listener is not in the pool); plock is
 *  held only to move a connection on or off the free list.
 */
#include "store/store_int.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/redact.h"
#include "util/xalloc.h"
#include "util/clock.h"

#define PG_POOL 4
#define PG_SCHEMA_VERSION 3
#define PG_SCHEMA_MAX 48
#define PG_MAXP 16
/* Statements in flight in one pipeline at most (q_send). */
#define PG_PIPE_MAX 256
/* Statements kept prepared per connection at most (q_run). */
#define PG_PREP_MAX 64
#define PG_BACKOFF_MIN_MS 100
#define PG_BACKOFF_MAX_MS 5000
/* Advisory lock keys: "inferd" in ASCII, then a role number. */
#define PG_LOCK_MIGRATE "7594018170315265"
#define PG_LOCK_OUTBOX "7594018170315266"

typedef struct {
    PGconn *conn;
    int64_t retry_at_ms; /* no reconnect attempt before this */
    int backoff_ms;
    /* The open transaction's state (pg_begin resets it). */
    int piped;         /* statements sent in pipeline mode, answers not read yet (q_send) */
    int outbox_locked; /* PG_LOCK_OUTBOX taken */
    unsigned notified; /* channels notified, 1 << store_channel */
    /* Statements prepared on this connection: prep[i] is the SQL of "inferd_<i>" (q_run). */
    char *prep[PG_PREP_MAX];
    int nprep;
    int prep_unsure; /* a pipelined PREPARE's answer not read yet */
    int prep_stale;  /* a pipeline failed with one in flight: forget them all when idle */
} pg_conn;

typedef struct {
    pthread_mutex_t lock; /* held for a whole wait */
    pg_conn c;            /* c.conn NULL until the first wait */
    char channel[80];
} pg_listener;

typedef struct {
    struct store base; /* first: store.c reaches ops through it */
    char *shown;       /* the URL with any password masked, for messages */
    char *conninfo;    /* the URL without our own parameters */
    char *options;     /* "-c search_path=... -c lock_timeout=..." */
    char chan_jobs[80], chan_outbox[80];
    pthread_mutex_t plock; /* guards freel/nfree */
    pthread_cond_t pcond;  /* signalled when a connection is returned */
    pg_conn pool[PG_POOL];
    pg_conn *freel[PG_POOL];
    int nfree;
    pg_listener listen[2]; /* by store_channel */
} pg_store;

/* --- schema ------------------------------------------------------------- */

/*
 * Migrations, applied in order above the stored version. Append only; never
 * edit a released step. The shapes follow store_sqlite.c: the same columns
 * and indexes, BIGSERIAL for AUTOINCREMENT, BYTEA for BLOB (float32 LE),
 * DOUBLE PRECISION for REAL, JSON kept as TEXT so that it comes back byte
 * for byte as it was written.
 */
static const char *const pg_migrations[PG_SCHEMA_VERSION] = {
    /* 1: initial schema, leader leases included */
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  id BIGSERIAL PRIMARY KEY,"
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
    "  lease_until_ms BIGINT NOT NULL DEFAULT 0,"
    "  run_after_ms BIGINT NOT NULL DEFAULT 0,"
    "  created_ms BIGINT NOT NULL,"
    "  updated_ms BIGINT NOT NULL,"
    "  finished_ms BIGINT,"
    "  cancel_requested INTEGER NOT NULL DEFAULT 0"
    ");"
    /* Claim scans this: queued jobs by priority DESC, id. */
    "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(priority DESC, id) WHERE state = 'queued';"
    "CREATE INDEX IF NOT EXISTS jobs_state_id ON jobs(state, id);"
    "CREATE INDEX IF NOT EXISTS jobs_running ON jobs(lease_owner) WHERE state = 'running';"
    /* At most one live job per (asset_id, tasks): see store_sqlite.c. */
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe ON jobs(asset_id, tasks)"
    "  WHERE state IN ('queued','running') AND cancel_requested = 0;"
    "CREATE TABLE IF NOT EXISTS assets ("
    "  asset_id TEXT PRIMARY KEY,"
    "  payload TEXT,"
    "  width INTEGER NOT NULL DEFAULT 0,"
    "  height INTEGER NOT NULL DEFAULT 0,"
    "  updated_ms BIGINT NOT NULL"
    ");"
    "CREATE TABLE IF NOT EXISTS image_embeddings ("
    "  asset_id TEXT NOT NULL REFERENCES assets(asset_id) ON DELETE CASCADE,"
    "  model TEXT NOT NULL,"
    "  dim INTEGER NOT NULL,"
    "  norm DOUBLE PRECISION NOT NULL,"
    "  nsfw TEXT,"
    "  vector BYTEA NOT NULL,"
    "  PRIMARY KEY (asset_id, model)"
    ");"
    "CREATE INDEX IF NOT EXISTS image_embeddings_model ON image_embeddings(model);"
    "CREATE TABLE IF NOT EXISTS people ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  name TEXT"
    ");"
    "CREATE TABLE IF NOT EXISTS faces ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  asset_id TEXT NOT NULL REFERENCES assets(asset_id) ON DELETE CASCADE,"
    "  detector TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  x1 DOUBLE PRECISION NOT NULL, y1 DOUBLE PRECISION NOT NULL,"
    "  x2 DOUBLE PRECISION NOT NULL, y2 DOUBLE PRECISION NOT NULL,"
    "  score DOUBLE PRECISION NOT NULL,"
    "  keypoints TEXT NOT NULL,"
    "  dim INTEGER NOT NULL,"
    "  vector BYTEA,"
    "  person_id BIGINT REFERENCES people(id) ON DELETE SET NULL"
    ");"
    "CREATE INDEX IF NOT EXISTS faces_asset ON faces(asset_id, detector, model);"
    "CREATE INDEX IF NOT EXISTS faces_model ON faces(model);"
    "CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    "  id BIGSERIAL PRIMARY KEY,"
    "  job_id BIGINT NOT NULL REFERENCES jobs(id),"
    "  asset_id TEXT NOT NULL,"
    "  payload TEXT NOT NULL,"
    "  created_ms BIGINT NOT NULL,"
    "  sent_ms BIGINT"
    ");"
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox(id) WHERE sent_ms IS NULL;"
    "CREATE TABLE IF NOT EXISTS leader ("
    "  name TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL,"
    "  until_ms BIGINT NOT NULL"
    ");",
    /* 2: jobs.worker_id, the owner of the last claim, kept after the job finishes. */
    "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS worker_id TEXT;",
    /* 3: one thumbnail per asset (JPEG), for pages to show */
    "CREATE TABLE IF NOT EXISTS thumbs ("
    "  asset_id TEXT PRIMARY KEY REFERENCES assets(asset_id) ON DELETE CASCADE,"
    "  width INTEGER NOT NULL,"
    "  height INTEGER NOT NULL,"
    "  jpeg BYTEA NOT NULL"
    ");",
};

#define JOB_COLS STORE_JOB_COLS

/* --- parameters and values -------------------------------------------------- */

/* The parameters of one statement: text, except bytea vectors sent binary. */
typedef struct {
    int n;
    const char *v[PG_MAXP];
    int len[PG_MAXP];
    int fmt[PG_MAXP];
    char num[PG_MAXP][32];
} pg_params;

static void p_text(pg_params *p, const char *v)
{
    p->v[p->n] = v;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

static void p_i64(pg_params *p, int64_t v)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)v);
    p_text(p, p->num[p->n]);
}

static void p_f64(pg_params *p, double v)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%.17g", v);
    p_text(p, p->num[p->n]);
}

static void p_bin(pg_params *p, const void *v, int len)
{
    p->v[p->n] = v;
    p->len[p->n] = len;
    p->fmt[p->n] = 1;
    p->n++;
}

static const char *v_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int64_t v_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int v_int(const PGresult *r, int row, int col)
{
    return (int)v_i64(r, row, col);
}

static double v_f64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0.0 : strtod(PQgetvalue(r, row, col), NULL);
}

static char *v_dup(const PGresult *r, int row, int col)
{
    const char *t = v_str(r, row, col);
    return t != NULL ? xstrdup(t) : NULL;
}

static void v_copy(const PGresult *r, int row, int col, char *dst, size_t size)
{
    const char *t = v_str(r, row, col);
    snprintf(dst, size, "%s", t != NULL ? t : "");
}

/* Fills `j` from row `row` whose first columns are JOB_COLS. */
/* A PGresult row as store_cols reads it. */
typedef struct {
    const PGresult *r;
    int row;
} pg_cell_row;

static const char *pg_col_text(const void *res, int col)
{
    const pg_cell_row *x = res;
    return v_str(x->r, x->row, col);
}

static int64_t pg_col_i64(const void *res, int col)
{
    const pg_cell_row *x = res;
    return v_i64(x->r, x->row, col);
}

static void row_to_job(const PGresult *r, int row, job *j)
{
    pg_cell_row x = {r, row};
    store_cols c = {.text = pg_col_text, .i64 = pg_col_i64, .res = &x};
    store__job_from_cols(&c, j);
}

/* Every row of `r` (JOB_COLS) as a new array; NULL with *n 0 when none. */
static void collect_jobs(const PGresult *r, job **out, int *n)
{
    int cnt = PQntuples(r);
    *out = NULL;
    *n = 0;
    if (cnt == 0)
        return;
    job *arr = xmalloc((size_t)cnt * sizeof *arr);
    for (int i = 0; i < cnt; i++)
        row_to_job(r, i, &arr[i]);
    *out = arr;
    *n = cnt;
}

/* --- errors and statements ----------------------------------------------- */

/* Copies `msg` into `buf` without its trailing newlines. */
static const char *trim_msg(const char *msg, char *buf, size_t size)
{
    snprintf(buf, size, "%s", msg != NULL ? msg : "");
    size_t len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    return buf;
}

/* The ERR_ code for a SQLSTATE. */
static int sqlstate_code(const char *st)
{
    if (st == NULL || strlen(st) != 5)
        return ERR_INTERNAL;
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0 ||
        strcmp(st, "57014") == 0)
        return ERR_BUSY; /* serialization, deadlock, lock_timeout, statement timeout */
    if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
        strcmp(st, "57P03") == 0 || strcmp(st, "53300") == 0)
        return ERR_UNAVAILABLE; /* connection, shutdown, starting up, too many connections */
    if (strcmp(st, "53200") == 0)
        return ERR_NOMEM;
    if (strncmp(st, "53", 2) == 0 || strncmp(st, "58", 2) == 0)
        return ERR_IO;
    if (strncmp(st, "23", 2) == 0)
        return ERR_CONFLICT;
    if (strncmp(st, "28", 2) == 0 || strcmp(st, "42501") == 0 || strcmp(st, "25006") == 0)
        return ERR_FORBIDDEN;
    return ERR_INTERNAL;
}

/* Translates a failed result (or connection) into an ERR_ code, keeping the server's message. */
static int pg_err(pg_store *s, pg_conn *c, const PGresult *r, const char *op, err_t *e)
{
    char msg[400];
    if (PQstatus(c->conn) != CONNECTION_OK)
        return err_set(e, ERR_UNAVAILABLE, "store %s: %s: connection lost: %s", s->shown, op,
                       trim_msg(PQerrorMessage(c->conn), msg, sizeof msg));
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *text = r != NULL ? PQresultErrorMessage(r) : NULL;
    if (text == NULL || text[0] == '\0')
        text = PQerrorMessage(c->conn);
    return err_set(e, sqlstate_code(state), "store %s: %s: %s (sqlstate %s)", s->shown, op,
                   trim_msg(text, msg, sizeof msg), state != NULL ? state : "none");
}

/*
 * Runs `sql` with `p` (may be NULL). On success `*res` (may be NULL: the
 * result is dropped) receives the result, which the caller PQclear()s.
 */
/* Forgets the connection's prepared statements (the server forgot them, or will). */
static void prep_clear(pg_conn *c)
{
    for (int i = 0; i < c->nprep; i++)
        free(c->prep[i]);
    c->nprep = 0;
    c->prep_unsure = 0;
    c->prep_stale = 0;
}

/*
 * The index of `sql`'s prepared statement on `c`, -1 when it should run
 * unprepared. Only plain DML and SELECT are prepared (the protocol would
 * take BEGIN too, but nothing is gained). `*fresh` is set when the caller
 * must prepare it first as "inferd_<index>".
 */
static int prep_find(pg_conn *c, const char *sql, int *fresh)
{
    *fresh = 0;
    if (strncmp(sql, "SELECT", 6) != 0 && strncmp(sql, "INSERT", 6) != 0 &&
        strncmp(sql, "UPDATE", 6) != 0 && strncmp(sql, "DELETE", 6) != 0)
        return -1;
    for (int i = 0; i < c->nprep; i++)
        if (strcmp(c->prep[i], sql) == 0)
            return i;
    if (c->nprep == PG_PREP_MAX)
        return -1;
    *fresh = 1;
    return c->nprep;
}

/*
 * Reads the answers of every statement q_send() queued, then leaves
 * pipeline mode. Returns the first failure (later statements of a failed
 * pipeline are skipped by the server, and the transaction is aborted).
 */
static int q_flush(pg_store *s, pg_conn *c, err_t *e)
{
    if (c->piped == 0)
        return ERR_OK;
    int rc = ERR_OK;
    if (PQpipelineSync(c->conn) != 1)
        rc = pg_err(s, c, NULL, "pipeline sync", e);
    int nulls = 0;
    while (rc == ERR_OK || PQstatus(c->conn) == CONNECTION_OK) {
        PGresult *r = PQgetResult(c->conn);
        if (r == NULL) {
            /* One NULL ends each statement's answers; more than that means nothing is coming. */
            if (++nulls > c->piped + 1 || PQstatus(c->conn) != CONNECTION_OK) {
                if (rc == ERR_OK)
                    rc = pg_err(s, c, NULL, "pipelined write", e);
                break;
            }
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        if (rc == ERR_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
            st != PGRES_PIPELINE_ABORTED)
            rc = pg_err(s, c, r, "pipelined write", e);
        PQclear(r);
    }
    c->piped = 0;
    if (rc != ERR_OK && c->prep_unsure)
        c->prep_stale = 1; /* the PREPARE may have been skipped with the rest */
    c->prep_unsure = 0;
    if (PQpipelineStatus(c->conn) != PQ_PIPELINE_OFF && PQexitPipelineMode(c->conn) != 1 &&
        rc == ERR_OK)
        rc = pg_err(s, c, NULL, "pipeline exit", e);
    return rc;
}

/*
 * Sends `sql` without waiting for its answer: libpq's pipeline mode, so a
 * transaction's writes cost one round trip together rather than one each.
 * Only for statements whose result is not read; the next q_run() (COMMIT
 * included) or q_flush() collects the answers and reports the first error.
 */
static int q_send(pg_store *s, pg_conn *c, const char *sql, const pg_params *p, const char *op,
                  err_t *e)
{
    /* Bounded, so the server never blocks on answers we have not read yet. */
    if (c->piped >= PG_PIPE_MAX) {
        int rc = q_flush(s, c, e);
        if (rc)
            return rc;
    }
    if (c->piped == 0 && PQenterPipelineMode(c->conn) != 1)
        return pg_err(s, c, NULL, op, e);
    int fresh = 0, k = prep_find(c, sql, &fresh);
    char name[32];
    snprintf(name, sizeof name, "inferd_%d", k);
    int ok = 1;
    if (fresh) {
        ok = PQsendPrepare(c->conn, name, sql, p != NULL ? p->n : 0, NULL) == 1;
        if (ok) {
            c->prep[c->nprep++] = xstrdup(sql);
            c->prep_unsure = 1;
            c->piped++;
        }
    }
    if (ok && k >= 0)
        ok = PQsendQueryPrepared(c->conn, name, p != NULL ? p->n : 0, p != NULL ? p->v : NULL,
                                 p != NULL ? p->len : NULL, p != NULL ? p->fmt : NULL, 0) == 1;
    else if (ok)
        ok = PQsendQueryParams(c->conn, sql, p != NULL ? p->n : 0, NULL, p != NULL ? p->v : NULL,
                               p != NULL ? p->len : NULL, p != NULL ? p->fmt : NULL, 0) == 1;
    if (!ok) {
        int rc = pg_err(s, c, NULL, op, e);
        err_t ignore;
        q_flush(s, c, &ignore);
        return rc;
    }
    c->piped++;
    return ERR_OK;
}

static int q_run(pg_store *s, pg_conn *c, const char *sql, const pg_params *p, const char *op,
                 PGresult **res, err_t *e)
{
    if (res != NULL)
        *res = NULL;
    if (c->piped > 0) {
        int rc = q_flush(s, c, e);
        if (rc)
            return rc;
    }
    /*
     * Statements run prepared, once per connection: the server then skips
     * parsing and planning, which is most of what these small statements
     * cost it.
     */
    int fresh = 0, k = prep_find(c, sql, &fresh);
    char name[32];
    snprintf(name, sizeof name, "inferd_%d", k);
    if (fresh) {
        PGresult *pr = PQprepare(c->conn, name, sql, p != NULL ? p->n : 0, NULL);
        if (PQresultStatus(pr) != PGRES_COMMAND_OK) {
            int rc = pg_err(s, c, pr, op, e);
            PQclear(pr);
            return rc;
        }
        PQclear(pr);
        c->prep[c->nprep++] = xstrdup(sql);
    }
    PGresult *r =
        k >= 0 ? PQexecPrepared(c->conn, name, p != NULL ? p->n : 0, p != NULL ? p->v : NULL,
                                p != NULL ? p->len : NULL, p != NULL ? p->fmt : NULL, 0)
               : PQexecParams(c->conn, sql, p != NULL ? p->n : 0, NULL, p != NULL ? p->v : NULL,
                              p != NULL ? p->len : NULL, p != NULL ? p->fmt : NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (r != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        if (res != NULL)
            *res = r;
        else
            PQclear(r);
        return ERR_OK;
    }
    int rc = pg_err(s, c, r, op, e);
    PQclear(r);
    return rc;
}

/* Runs SQL text that may hold several statements (simple protocol, no parameters). */
static int q_exec(pg_store *s, pg_conn *c, const char *sql, const char *op, err_t *e)
{
    PGresult *r = PQexec(c->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = ERR_OK;
    if (r == NULL || (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK))
        rc = pg_err(s, c, r, op, e);
    PQclear(r);
    return rc;
}

/* --- connections and transactions ---------------------------------------- */

/* Server notices and warnings go to our log instead of libpq's stderr default. */
static void pg_notice(void *arg, const char *message)
{
    char msg[400];
    log_warn("store", "postgres: %s", trim_msg(message, msg, sizeof msg));
    (void)arg;
}

static PGconn *pg_connect(pg_store *s)
{
    /*
     * connect_timeout before dbname so that the URL may override it;
     * options after it so that ours win (they carry the schema).
     */
    const char *kw[] = {"connect_timeout", "application_name", "dbname", "options", NULL};
    const char *val[] = {"10", "inferd", s->conninfo, s->options, NULL};
    PGconn *conn = PQconnectdbParams(kw, val, 1);
    if (conn != NULL)
        PQsetNoticeProcessor(conn, pg_notice, NULL);
    return conn;
}

/* Notes a failed (re)connect on `c`: no new attempt before the backoff. */
static void note_failure(pg_conn *c, int64_t now)
{
    c->backoff_ms = c->backoff_ms == 0 ? PG_BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > PG_BACKOFF_MAX_MS)
        c->backoff_ms = PG_BACKOFF_MAX_MS;
    c->retry_at_ms = now + c->backoff_ms;
}

/*
 * Makes `c` usable: a no-op when its status is good, else one reset
 * attempt unless the backoff forbids it. ERR_UNAVAILABLE when not usable.
 */
static int conn_ensure(pg_store *s, pg_conn *c, err_t *e)
{
    if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK)
        return ERR_OK;
    int64_t now = store_now_ms();
    if (now < c->retry_at_ms)
        return err_set(e, ERR_UNAVAILABLE,
                       "store %s: connection lost; next reconnect attempt in %lld ms", s->shown,
                       (long long)(c->retry_at_ms - now));
    prep_clear(c); /* a new session has none */
    if (c->conn == NULL)
        c->conn = pg_connect(s);
    else
        PQreset(c->conn);
    if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK) {
        c->backoff_ms = 0;
        c->retry_at_ms = 0;
        return ERR_OK;
    }
    char msg[400];
    note_failure(c, now);
    return err_set(
        e, ERR_UNAVAILABLE, "store %s: cannot connect: %s", s->shown,
        trim_msg(c->conn != NULL ? PQerrorMessage(c->conn) : "out of memory", msg, sizeof msg));
}

static pg_conn *pool_get(pg_store *s)
{
    pthread_mutex_lock(&s->plock);
    while (s->nfree == 0)
        pthread_cond_wait(&s->pcond, &s->plock);
    pg_conn *c = s->freel[--s->nfree];
    pthread_mutex_unlock(&s->plock);
    return c;
}

static void pool_put(pg_store *s, pg_conn *c)
{
    pthread_mutex_lock(&s->plock);
    s->freel[s->nfree++] = c;
    pthread_cond_signal(&s->pcond);
    pthread_mutex_unlock(&s->plock);
}

/*
 * Takes a connection and opens a transaction (`begin` is the BEGIN
 * statement); pg_end() must follow. A BEGIN that fails because the idle
 * connection had died is retried once after a reset: nothing was done yet.
 */
static int pg_begin(pg_store *s, const char *begin, pg_conn **out, err_t *e)
{
    pg_conn *c = pool_get(s);
    c->piped = 0;
    c->outbox_locked = 0;
    c->notified = 0;
    int rc = conn_ensure(s, c, e);
    if (rc == ERR_OK) {
        rc = q_run(s, c, begin, NULL, "begin", NULL, e);
        if (rc == ERR_UNAVAILABLE) {
            c->retry_at_ms = 0;
            rc = conn_ensure(s, c, e);
            if (rc == ERR_OK)
                rc = q_run(s, c, begin, NULL, "begin", NULL, e);
        }
    }
    if (rc) {
        pool_put(s, c);
        return rc;
    }
    *out = c;
    return ERR_OK;
}

#define BEGIN_RW "BEGIN"
#define BEGIN_RO "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

/* Commits when `rc` is ERR_OK, else rolls back; returns the connection to the pool. */
static int pg_end(pg_store *s, pg_conn *c, int rc, err_t *e)
{
    if (c->piped > 0) {
        err_t ignore;
        int f = q_flush(s, c, rc == ERR_OK ? e : &ignore);
        if (rc == ERR_OK)
            rc = f;
    }
    if (rc == ERR_OK) {
        PGresult *r = NULL;
        rc = q_run(s, c, "COMMIT", NULL, "commit", &r, e);
        /* COMMIT of a transaction that had failed answers ROLLBACK, not an error. */
        if (rc == ERR_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0)
            rc = err_set(e, ERR_INTERNAL, "store %s: commit answered %s", s->shown, PQcmdStatus(r));
        PQclear(r);
    }
    if (rc != ERR_OK && PQstatus(c->conn) == CONNECTION_OK &&
        PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
        err_t ignore;
        q_run(s, c, "ROLLBACK", NULL, "rollback", NULL, &ignore);
    }
    if (c->prep_stale && PQstatus(c->conn) == CONNECTION_OK &&
        PQtransactionStatus(c->conn) == PQTRANS_IDLE) {
        PQclear(PQexec(c->conn, "DEALLOCATE ALL"));
        prep_clear(c);
    }
    pool_put(s, c);
    return rc;
}

/*
 * Runs the one statement `sql` with `p` (may be NULL) in a transaction of
 * its own (`begin`: BEGIN_RO or BEGIN_RW) and commits it. On ERR_OK `*res`
 * (may be NULL: the result is dropped) receives the result, which the caller
 * PQclear()s; a PGresult does not depend on its connection, so it is read
 * after the connection is back in the pool. On error `*res` is NULL and `e`
 * holds the message of the step that failed (begin, `what`, or commit);
 * pg_begin's one retry of a BEGIN on a dead idle connection applies, nothing
 * else is retried.
 *
 * The caller reads the result after COMMIT, not before it. That is why only
 * a statement whose result the caller may reject without undoing anything
 * belongs here: a read, or a write of one statement whose rejection (zero
 * rows: ERR_NOENT) leaves nothing to roll back. A caller that must check
 * rows before its transaction may commit, or runs several statements, keeps
 * pg_begin()/pg_end(). One difference from checking before COMMIT remains:
 * when COMMIT fails, its error is returned even where the result would have
 * been rejected (ERR_UNAVAILABLE rather than ERR_NOENT on a lost connection).
 */
static int pg_query(pg_store *s, const char *begin, const char *sql, const pg_params *p,
                    const char *what, PGresult **res, err_t *e)
{
    pg_conn *c = NULL;
    PGresult *r = NULL;
    if (res != NULL)
        *res = NULL;
    int rc = pg_begin(s, begin, &c, e);
    if (rc)
        return rc;
    rc = q_run(s, c, sql, p, what, &r, e);
    rc = pg_end(s, c, rc, e);
    if (rc != ERR_OK || res == NULL) {
        PQclear(r);
        return rc;
    }
    *res = r;
    return ERR_OK;
}

static int pg_migrate(pg_store *s, pg_conn *c, const char *schema, err_t *e)
{
    PGresult *r = NULL;
    int rc = q_run(s, c, "BEGIN", NULL, "begin", NULL, e);
    if (rc)
        return rc;
    rc = q_run(s, c, "SELECT pg_advisory_xact_lock(" PG_LOCK_MIGRATE ")", NULL, "migrate lock",
               NULL, e);
    if (rc == ERR_OK && schema != NULL) {
        char sql[128];
        snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS \"%s\"", schema);
        rc = q_run(s, c, sql, NULL, "create schema", NULL, e);
    }
    if (rc == ERR_OK)
        rc = q_run(s, c, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                   NULL, "schema_version", NULL, e);
    if (rc == ERR_OK)
        rc = q_run(s, c, "SELECT coalesce(max(version), 0) FROM schema_version", NULL,
                   "schema_version", &r, e);
    int version = 0;
    if (rc == ERR_OK) {
        version = v_int(r, 0, 0);
        PQclear(r);
        if (version > PG_SCHEMA_VERSION)
            rc = err_set(e, ERR_UNSUPPORTED,
                         "store %s: schema version %d is newer than this inferd (%d)", s->shown,
                         version, PG_SCHEMA_VERSION);
    }
    for (int v = version; rc == ERR_OK && v < PG_SCHEMA_VERSION; v++)
        rc = q_exec(s, c, pg_migrations[v], "migrate", e);
    /* One row per applied version (so a race that applied one twice would show). */
    for (int v = version + 1; rc == ERR_OK && v <= PG_SCHEMA_VERSION; v++) {
        pg_params p = {0};
        p_i64(&p, v);
        rc = q_run(s, c,
                   "INSERT INTO schema_version(version) SELECT $1::integer WHERE NOT EXISTS"
                   " (SELECT 1 FROM schema_version WHERE version = $1::integer)",
                   &p, "schema_version", NULL, e);
    }
    if (rc == ERR_OK)
        return q_run(s, c, "COMMIT", NULL, "commit", NULL, e);
    if (PQstatus(c->conn) == CONNECTION_OK) {
        err_t ignore;
        q_run(s, c, "ROLLBACK", NULL, "rollback", NULL, &ignore);
    }
    return rc;
}

static void pg_close(store *base)
{
    pg_store *s = (pg_store *)base;
    for (int i = 0; i < PG_POOL; i++) {
        PQfinish(s->pool[i].conn);
        prep_clear(&s->pool[i]);
    }
    for (int i = 0; i < 2; i++) {
        PQfinish(s->listen[i].c.conn);
        prep_clear(&s->listen[i].c);
        pthread_mutex_destroy(&s->listen[i].lock);
    }
    pthread_mutex_destroy(&s->plock);
    pthread_cond_destroy(&s->pcond);
    free(s->shown);
    free(s->conninfo);
    free(s->options);
    free(s);
}

/*
 * Splits our "schema" parameter off `url`: `*conninfo` receives the rest
 * (new string), `schema` (PG_SCHEMA_MAX + 1 bytes) the name or "".
 */
static int split_url(const char *url, const char *shown, char **conninfo, char *schema, err_t *e)
{
    schema[0] = '\0';
    const char *q = strchr(url, '?');
    if (q == NULL) {
        *conninfo = xstrdup(url);
        return ERR_OK;
    }
    size_t size = strlen(url) + 1;
    char *out = xmalloc(size);
    size_t len = (size_t)(q - url);
    memcpy(out, url, len);
    out[len] = '\0';
    int first = 1;
    const char *p = q + 1;
    while (*p != '\0') {
        size_t n = strcspn(p, "&");
        if (n > 7 && strncmp(p, "schema=", 7) == 0) {
            size_t sl = n - 7;
            int ok = sl <= PG_SCHEMA_MAX && !(p[7] >= '0' && p[7] <= '9');
            for (size_t i = 0; ok && i < sl; i++) {
                char ch = p[7 + i];
                ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
            }
            if (!ok) {
                free(out);
                return err_set(e, ERR_INVAL,
                               "store %s: schema must match [a-z_][a-z0-9_]* and be at most %d "
                               "bytes",
                               shown, PG_SCHEMA_MAX);
            }
            memcpy(schema, p + 7, sl);
            schema[sl] = '\0';
        } else if (n > 0) {
            out[len++] = first ? '?' : '&';
            memcpy(out + len, p, n);
            len += n;
            out[len] = '\0';
            first = 0;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    *conninfo = out;
    return ERR_OK;
}

static const store_ops pg_ops;

int store__pg_open(const char *target, const store_opts *opts, store **out, err_t *e)
{
    pg_store *s = xcalloc(1, sizeof *s);
    s->base.ops = &pg_ops;
    s->shown = redact_url(target);
    pthread_mutex_init(&s->plock, NULL);
    pthread_cond_init(&s->pcond, NULL);
    for (int i = 0; i < 2; i++)
        pthread_mutex_init(&s->listen[i].lock, NULL);
    char schema[PG_SCHEMA_MAX + 1];
    int rc = split_url(target, s->shown, &s->conninfo, schema, e);
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    /* client_min_messages: no NOTICE chatter from IF NOT EXISTS on stderr. */
    char opt[200];
    snprintf(opt, sizeof opt, "%s%s%s-c lock_timeout=%d -c client_min_messages=warning",
             schema[0] ? "-c search_path=" : "", schema, schema[0] ? " " : "",
             opts->busy_timeout_ms);
    s->options = xstrdup(opt);
    /* Channels are database-wide: the schema keeps deployments apart. */
    snprintf(s->chan_jobs, sizeof s->chan_jobs, "inferd_jobs%s%s", schema[0] ? "_" : "", schema);
    snprintf(s->chan_outbox, sizeof s->chan_outbox, "inferd_outbox%s%s", schema[0] ? "_" : "",
             schema);
    snprintf(s->listen[STORE_CHANNEL_JOBS].channel, sizeof s->listen[0].channel, "%s",
             s->chan_jobs);
    snprintf(s->listen[STORE_CHANNEL_OUTBOX].channel, sizeof s->listen[0].channel, "%s",
             s->chan_outbox);

    for (int i = 0; rc == ERR_OK && i < PG_POOL; i++) {
        pg_conn *c = &s->pool[i];
        c->conn = pg_connect(s);
        if (c->conn == NULL || PQstatus(c->conn) != CONNECTION_OK) {
            char msg[400];
            rc = err_set(e, ERR_UNAVAILABLE, "store %s: cannot connect: %s", s->shown,
                         trim_msg(c->conn != NULL ? PQerrorMessage(c->conn) : "out of memory", msg,
                                  sizeof msg));
            break;
        }
        if (i == 0)
            rc = pg_migrate(s, c, schema[0] != '\0' ? schema : NULL, e);
        s->freel[s->nfree++] = c;
    }
    if (rc) {
        pg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return ERR_OK;
}

/* --- transitions: the primitives store.c's queue policy drives ------------- */

/* The transaction is the pooled connection it runs on. */
static int pg_tx_begin(store *base, store_tx **tx, err_t *e)
{
    pg_conn *c = NULL;
    int rc = pg_begin((pg_store *)base, BEGIN_RW, &c, e);
    *tx = (store_tx *)c;
    return rc;
}

static int pg_tx_end(store *base, store_tx *tx, int rc, err_t *e)
{
    return pg_end((pg_store *)base, (pg_conn *)tx, rc, e);
}

/* Sends the wake-up of channel `ch` once per transaction; delivered at commit. */
static int notify(pg_store *s, pg_conn *c, store_channel ch, err_t *e)
{
    if (c->notified & (1u << ch))
        return ERR_OK;
    c->notified |= 1u << ch;
    pg_params p = {0};
    p_text(&p, ch == STORE_CHANNEL_JOBS ? s->chan_jobs : s->chan_outbox);
    return q_send(s, c, "SELECT pg_notify($1, '')", &p, "notify", e);
}

/*
 * Inserts the outbox row for `ev` and the outbox wake-up; the caller holds
 * the transaction and every row lock it needs (see "Outbox order" above).
 * The outbox lock is taken once per transaction, before its first event;
 * the database assigns the id.
 */
static int pg_event_put(store *base, store_tx *tx, const store_event *ev, int64_t now, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = (pg_conn *)tx;
    int rc = ERR_OK;
    if (!c->outbox_locked) {
        rc = q_send(s, c, "SELECT pg_advisory_xact_lock(" PG_LOCK_OUTBOX ")", NULL, "outbox lock",
                    e);
        c->outbox_locked = rc == ERR_OK;
    }
    if (rc)
        return rc;
    char *payload = store__event_payload(ev, now);
    pg_params p = {0};
    p_i64(&p, ev->job_id);
    p_text(&p, ev->asset_id);
    p_text(&p, payload);
    p_i64(&p, now);
    rc = q_send(s, c,
                "INSERT INTO outbox(job_id, asset_id, payload, created_ms) VALUES ($1, $2, $3, $4)",
                &p, "outbox insert", e);
    free(payload);
    if (rc == ERR_OK)
        rc = notify(s, c, STORE_CHANNEL_OUTBOX, e);
    return rc;
}

#define ROW_COLS STORE_ROW_COLS

static void read_row(const PGresult *r, int row, store_row *out)
{
    pg_cell_row x = {r, row};
    store_cols c = {.text = pg_col_text, .i64 = pg_col_i64, .res = &x};
    store__row_from_cols(&c, out);
}

/* `n` integers (from `v64`, else from `v32`) as a PostgreSQL array literal "{1,2}" (free()). */
static char *int_array_text(const int64_t *v64, const int *v32, int n)
{
    size_t size = (size_t)n * 21 + 3, len = 0;
    char *t = xmalloc(size);
    t[len++] = '{';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(t + len, size - len, "%s%lld", i ? "," : "",
                                v64 != NULL ? (long long)v64[i] : (long long)v32[i]);
    snprintf(t + len, size - len, "}");
    return t;
}

/*
 * Locks and reads the rows `sel` names, in id order (see "Outbox order").
 * FOR UPDATE re-checks the condition on the newest version after any wait,
 * so what the rows say holds until the caller's commit. Expired leases use
 * SKIP LOCKED: a row locked by someone else is being finished or rescued by
 * them.
 */
static int pg_rows_lock(store *base, store_tx *tx, const store_sel *sel, store_row **out, int *n,
                        err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_params p = {0};
    const char *sql = NULL;
    char *ids = NULL, *att = NULL;
    switch (sel->kind) {
    case STORE_SEL_LEASED:
        sql = "SELECT " ROW_COLS " FROM jobs WHERE (id, attempts) IN"
              " (SELECT * FROM unnest($1::bigint[], $3::integer[])) AND state = 'running'"
              " AND lease_owner = $2 ORDER BY id FOR UPDATE";
        ids = int_array_text(sel->ids, NULL, sel->n);
        att = int_array_text(NULL, sel->attempts, sel->n);
        p_text(&p, ids);
        p_text(&p, sel->owner);
        p_text(&p, att);
        break;
    case STORE_SEL_EXPIRED:
        sql = "SELECT " ROW_COLS " FROM jobs WHERE state = 'running' AND lease_until_ms < $1"
              " ORDER BY id FOR UPDATE SKIP LOCKED";
        p_i64(&p, sel->now);
        break;
    case STORE_SEL_OWNED:
        sql = "SELECT " ROW_COLS " FROM jobs WHERE state = 'running' AND lease_owner = $1"
              " ORDER BY id FOR UPDATE";
        p_text(&p, sel->owner);
        break;
    case STORE_SEL_ID:
        sql = "SELECT " ROW_COLS " FROM jobs WHERE id = $1 FOR UPDATE";
        p_i64(&p, sel->ids[0]);
        break;
    }
    PGresult *r = NULL;
    int rc = q_run(s, (pg_conn *)tx, sql, &p, "lock rows", &r, e);
    free(ids);
    free(att);
    if (rc)
        return rc;
    int cnt = PQntuples(r);
    store_row *arr = cnt > 0 ? xcalloc((size_t)cnt, sizeof *arr) : NULL;
    for (int i = 0; i < cnt; i++)
        read_row(r, i, &arr[i]);
    PQclear(r);
    *out = arr;
    *n = cnt;
    return ERR_OK;
}

static int pg_row_apply(store *base, store_tx *tx, const store_row *row, const store_outcome *o,
                        int64_t now, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = (pg_conn *)tx;
    pg_params p = {0};
    if (o->to == JOB_RUNNING) {
        p_i64(&p, now);
        p_i64(&p, row->id);
        return q_send(s, c, "UPDATE jobs SET cancel_requested = 1, updated_ms = $1 WHERE id = $2",
                      &p, "cancel", e);
    }
    if (o->to == JOB_QUEUED) {
        p_i64(&p, o->run_after_ms);
        p_i64(&p, o->uncount);
        p_text(&p, o->code);
        p_text(&p, o->error);
        p_i64(&p, now);
        p_i64(&p, row->id);
        int rc = q_send(s, c,
                        "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until_ms = 0,"
                        " run_after_ms = $1, attempts = greatest(attempts - $2::integer, 0),"
                        " error_code = coalesce($3, error_code), error = coalesce($4, error),"
                        " updated_ms = $5 WHERE id = $6",
                        &p, "requeue", e);
        if (rc == ERR_OK && o->run_after_ms <= now)
            rc = notify(s, c, STORE_CHANNEL_JOBS, e);
        return rc;
    }
    p_text(&p, job_state_name(o->to));
    p_text(&p, o->code);
    p_text(&p, o->error);
    p_text(&p, o->timings);
    p_text(&p, o->clear_error ? "true" : "false");
    p_i64(&p, now);
    p_i64(&p, row->id);
    return q_send(s, c,
                  "UPDATE jobs SET state = $1, error_code = CASE WHEN $5::boolean THEN NULL"
                  " ELSE coalesce($2, error_code) END, error = CASE WHEN $5::boolean THEN NULL"
                  " ELSE coalesce($3, error) END, timings = coalesce($4, timings),"
                  " lease_owner = NULL, lease_until_ms = 0, finished_ms = $6, updated_ms = $6"
                  " WHERE id = $7",
                  &p, "finish job", e);
}

/* --- jobs ----------------------------------------------------------------- */

/* One job of an enqueue, inside its transaction on `c`; *notified: the NOTIFY was sent. */
static int enqueue_one(pg_store *s, pg_conn *c, const job_spec *spec, int64_t now, job *out,
                       int *existing, int *notified, err_t *e)
{
    PGresult *r = NULL;
    int rc = ERR_OK;
    /*
     * Look, then insert unless the dedupe index already holds a live job;
     * a concurrent enqueue of the same asset makes the insert do nothing
     * (ON CONFLICT waits for that transaction), and the next look, a new
     * statement with a new snapshot, finds its job. The loop ends: each
     * round either finds a job or inserts one, unless the job found by the
     * conflict finished in between, which needs another worker to be fast
     * indeed several times in a row.
     */
    for (int round = 0; rc == ERR_OK; round++) {
        if (round == 5) {
            rc = err_set(e, ERR_BUSY, "store %s: enqueue %s: dedupe kept changing", s->shown,
                         spec->asset_id);
            break;
        }
        pg_params p = {0};
        p_text(&p, spec->asset_id);
        p_i64(&p, spec->tasks);
        rc = q_run(s, c,
                   "SELECT " JOB_COLS " FROM jobs WHERE asset_id = $1 AND tasks = $2"
                   " AND state IN ('queued','running') AND cancel_requested = 0",
                   &p, "dedupe", &r, e);
        if (rc)
            break;
        if (PQntuples(r) > 0) {
            row_to_job(r, 0, out);
            *existing = 1;
            break;
        }
        PQclear(r);
        r = NULL;
        pg_params q = {0};
        p_text(&q, spec->asset_id);
        p_i64(&q, spec->priority);
        p_i64(&q, spec->tasks);
        p_i64(&q, spec->max_attempts);
        p_text(&q, spec->source);
        p_text(&q, spec->payload);
        p_i64(&q, now);
        rc = q_run(s, c,
                   "INSERT INTO jobs(asset_id, state, priority, tasks, attempts, max_attempts,"
                   " source, payload, run_after_ms, created_ms, updated_ms)"
                   " VALUES ($1, 'queued', $2, $3, 0, $4, $5, $6, $7, $7, $7)"
                   " ON CONFLICT (asset_id, tasks)"
                   " WHERE state IN ('queued','running') AND cancel_requested = 0"
                   " DO NOTHING RETURNING " JOB_COLS,
                   &q, "enqueue", &r, e);
        if (rc)
            break;
        if (PQntuples(r) == 1) {
            row_to_job(r, 0, out);
            if (!*notified)
                rc = notify(s, c, STORE_CHANNEL_JOBS, e);
            *notified = rc == ERR_OK;
            break;
        }
        PQclear(r);
        r = NULL;
    }
    PQclear(r);
    return rc;
}

static int pg_job_enqueue(store *base, const job_spec *specs, int n, job *out, int *existing,
                          err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    int64_t now = store_now_ms();
    int rc = pg_begin(s, BEGIN_RW, &c, e);
    if (rc)
        return rc;
    int notified = 0;
    for (int i = 0; i < n && rc == ERR_OK; i++)
        rc = enqueue_one(s, c, &specs[i], now, &out[i], &existing[i], &notified, e);
    rc = pg_end(s, c, rc, e);
    if (rc) {
        for (int i = 0; i < n; i++) {
            job_clear(&out[i]);
            existing[i] = 0;
        }
    }
    return rc;
}

static int pg_job_get(store *base, int64_t id, job *out, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    pg_params p = {0};
    p_i64(&p, id);
    int rc =
        pg_query(s, BEGIN_RO, "SELECT " JOB_COLS " FROM jobs WHERE id = $1", &p, "get job", &r, e);
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        row_to_job(r, 0, out);
    else
        rc = err_set(e, ERR_NOENT, "job %lld not found", (long long)id);
    PQclear(r);
    return rc;
}

static int pg_job_list(store *base, int state, int64_t before_id, int limit, job **out, int *n,
                       err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    pg_params p = {0};
    char sql[512];
    char cond_id[32] = "", cond_state[32] = "";
    if (before_id > 0) {
        p_i64(&p, before_id);
        snprintf(cond_id, sizeof cond_id, " AND id < $%d", p.n);
    }
    if (state >= 0) {
        p_text(&p, job_state_name((job_state)state));
        snprintf(cond_state, sizeof cond_state, " AND state = $%d", p.n);
    }
    p_i64(&p, limit);
    snprintf(sql, sizeof sql,
             "SELECT " JOB_COLS " FROM jobs WHERE true%s%s ORDER BY id DESC LIMIT $%d", cond_id,
             cond_state, p.n);
    int rc = pg_query(s, BEGIN_RO, sql, &p, "list jobs", &r, e);
    if (rc)
        return rc;
    collect_jobs(r, out, n);
    PQclear(r);
    return ERR_OK;
}

/* See store_int.h's op: sources of active jobs, or of one asset's jobs, matching `like`. */
static int pg_upload_sources(store *base, const char *asset_id, const char *like, char ***srcs,
                             int *n, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    pg_params p = {0};
    p_text(&p, like);
    if (asset_id != NULL)
        p_text(&p, asset_id);
    int rc = pg_query(s, BEGIN_RO,
                      asset_id != NULL ? "SELECT source FROM jobs WHERE source LIKE $1 AND "
                                         "asset_id = $2"
                                       : "SELECT source FROM jobs WHERE state IN "
                                         "('queued','running') AND source LIKE $1",
                      &p, "upload sources", &r, e);
    if (rc)
        return rc;
    int cnt = PQntuples(r);
    char **arr = xcalloc((size_t)(cnt > 0 ? cnt : 1), sizeof *arr);
    for (int i = 0; i < cnt; i++)
        arr[i] = xstrdup(v_str(r, i, 0) != NULL ? v_str(r, i, 0) : "");
    PQclear(r);
    *srcs = arr;
    *n = cnt;
    return ERR_OK;
}

static int pg_job_claim(store *base, const char *owner, int max, int64_t lease_ms, job **out,
                        int *n, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    PGresult *r = NULL;
    int64_t now = store_now_ms();
    int rc = pg_begin(s, BEGIN_RW, &c, e);
    if (rc)
        return rc;
    pg_params p = {0};
    p_text(&p, owner);
    p_i64(&p, now + lease_ms);
    p_i64(&p, now);
    p_i64(&p, max);
    /* SKIP LOCKED: rows another claimer is taking are passed over, never waited for. */
    rc = q_run(s, c,
               "UPDATE jobs SET state = 'running', lease_owner = $1, worker_id = $1,"
               " lease_until_ms = $2, attempts = attempts + 1, updated_ms = $3"
               " WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_after_ms <= $3"
               " ORDER BY priority DESC, id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING " JOB_COLS,
               &p, "claim", &r, e);
    if (rc == ERR_OK)
        collect_jobs(r, out, n);
    PQclear(r);
    rc = pg_end(s, c, rc, e);
    if (rc) {
        job_array_free(*out, *n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    return ERR_OK;
}

static int pg_job_heartbeat(store *base, const char *owner, int64_t lease_ms, err_t *e)
{
    int64_t now = store_now_ms();
    pg_params p = {0};
    p_i64(&p, now + lease_ms);
    p_i64(&p, now);
    p_text(&p, owner);
    return pg_query((pg_store *)base, BEGIN_RW,
                    "UPDATE jobs SET lease_until_ms = $1, updated_ms = $2"
                    " WHERE state = 'running' AND lease_owner = $3",
                    &p, "heartbeat", NULL, e);
}

/* The keypoints of `f` as JSON text [[x,y] x6 or x5], as store_sqlite.c writes them. */
static void keypoints_text(const store_face *f, char *kps, size_t size)
{
    size_t len = 0;
    kps[len++] = '[';
    for (int k = 0; k < (f->nkps == 5 ? 5 : 6); k++)
        len += (size_t)snprintf(kps + len, size - len, "%s[%.9g,%.9g]", k ? "," : "", f->kps[k][0],
                                f->kps[k][1]);
    snprintf(kps + len, size - len, "]");
}

/* Writes the results `r` of job row `row`; inside the caller's transaction. */
static int pg_results_put(store *base, store_tx *tx, const store_row *row, const store_result *r,
                          int64_t now, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = (pg_conn *)tx;
    const char *asset_id = row->asset_id, *payload = row->payload;
    pg_params p = {0};
    p_text(&p, asset_id);
    p_text(&p, payload);
    p_i64(&p, r->width);
    p_i64(&p, r->height);
    p_i64(&p, now);
    /* A job without a payload keeps the payload an earlier job gave the asset. */
    int rc = q_send(s, c,
                    "INSERT INTO assets(asset_id, payload, width, height, updated_ms)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (asset_id) DO UPDATE SET"
                    " payload = coalesce(excluded.payload, assets.payload), width = excluded.width,"
                    " height = excluded.height, updated_ms = excluded.updated_ms",
                    &p, "asset upsert", e);
    if (rc)
        return rc;

    if (r->image_model != NULL) {
        int bytes = r->image_dim * 4;
        unsigned char *blob = xmalloc((size_t)bytes);
        store__vec_to_le(r->image_vector, r->image_dim, blob);
        pg_params q = {0};
        p_text(&q, asset_id);
        p_text(&q, r->image_model);
        p_i64(&q, r->image_dim);
        p_f64(&q, r->image_norm);
        p_text(&q, r->nsfw);
        p_bin(&q, blob, bytes);
        rc = q_send(s, c,
                    "INSERT INTO image_embeddings(asset_id, model, dim, norm, nsfw, vector)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (asset_id, model) DO UPDATE SET"
                    " dim = excluded.dim, norm = excluded.norm, nsfw = excluded.nsfw,"
                    " vector = excluded.vector",
                    &q, "image embedding", e);
        free(blob);
        if (rc)
            return rc;
    }

    if (r->thumb != NULL) {
        pg_params t = {0};
        p_text(&t, asset_id);
        p_i64(&t, r->thumb_w);
        p_i64(&t, r->thumb_h);
        p_bin(&t, r->thumb, (int)r->thumb_len);
        rc = q_send(s, c,
                    "INSERT INTO thumbs(asset_id, width, height, jpeg) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (asset_id) DO UPDATE SET width = excluded.width,"
                    " height = excluded.height, jpeg = excluded.jpeg",
                    &t, "thumbnail", e);
        if (rc)
            return rc;
    }

    if (r->face_model == NULL && r->detector_model == NULL)
        return ERR_OK;
    const char *det = r->detector_model != NULL ? r->detector_model : "";
    const char *fm = r->face_model != NULL ? r->face_model : "";
    pg_params d = {0};
    p_text(&d, asset_id);
    p_text(&d, det);
    p_text(&d, fm);
    rc = q_send(s, c, "DELETE FROM faces WHERE asset_id = $1 AND detector = $2 AND model = $3", &d,
                "faces delete", e);
    unsigned char *blob = r->face_dim > 0 ? xmalloc((size_t)r->face_dim * 4) : NULL;
    for (int i = 0; rc == ERR_OK && i < r->nfaces; i++) {
        const store_face *f = &r->faces[i];
        char kps[6 * 2 * 20 + 16];
        keypoints_text(f, kps, sizeof kps);
        pg_params q = {0};
        p_text(&q, asset_id);
        p_text(&q, det);
        p_text(&q, fm);
        for (int b = 0; b < 4; b++)
            p_f64(&q, f->box[b]);
        p_f64(&q, f->score);
        p_text(&q, kps);
        if (f->vector != NULL) {
            store__vec_to_le(f->vector, r->face_dim, blob);
            p_i64(&q, r->face_dim);
            p_bin(&q, blob, r->face_dim * 4);
        } else {
            p_i64(&q, 0);
            p_text(&q, NULL);
        }
        rc =
            q_send(s, c,
                   "INSERT INTO faces(asset_id, detector, model, x1, y1, x2, y2, score,"
                   " keypoints, dim, vector) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                   &q, "face insert", e);
    }
    free(blob);
    return rc;
}

static int pg_counts_get(store *base, store_counts *cnt, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    int rc = pg_query(s, BEGIN_RO,
                      "SELECT state, count(*) FROM jobs GROUP BY state UNION ALL"
                      " SELECT 'outbox', count(*) FROM outbox WHERE sent_ms IS NULL",
                      NULL, "counts", &r, e);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t k = v_i64(r, i, 1);
        const char *name = v_str(r, i, 0);
        if (name != NULL && strcmp(name, "outbox") == 0) {
            cnt->outbox_pending = k;
            continue;
        }
        switch (job_state_parse(name)) {
        case JOB_QUEUED:
            cnt->queued = k;
            break;
        case JOB_RUNNING:
            cnt->running = k;
            break;
        case JOB_DONE:
            cnt->done = k;
            break;
        case JOB_FAILED:
            cnt->failed = k;
            break;
        case JOB_CANCELLED:
            cnt->cancelled = k;
            break;
        }
    }
    PQclear(r);
    return ERR_OK;
}

/* --- results ---------------------------------------------------------------- */

/* The bytea column as a new float array of at most `dim` floats (store__vec_dup). */
static float *v_vec(const PGresult *r, int row, int col, int dim, int *n)
{
    *n = 0;
    if (PQgetisnull(r, row, col) || dim <= 0)
        return NULL;
    size_t bytes = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &bytes);
    if (b == NULL)
        return NULL;
    float *v = store__vec_dup(b, bytes, dim, n);
    PQfreemem(b);
    return v;
}

static int pg_asset_read(store *base, const char *asset_id, int with_vectors, store_asset *a,
                         err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    PGresult *r = NULL;
    int rc = pg_begin(s, BEGIN_RO, &c, e);
    if (rc)
        return rc;
    pg_params p = {0};
    p_text(&p, asset_id);
    rc = q_run(s, c, "SELECT payload, width, height, updated_ms FROM assets WHERE asset_id = $1",
               &p, "asset", &r, e);
    if (rc)
        goto out;
    if (PQntuples(r) != 1) {
        rc = err_set(e, ERR_NOENT, "asset %s not found", asset_id);
        goto out;
    }
    a->payload = v_dup(r, 0, 0);
    a->width = v_int(r, 0, 1);
    a->height = v_int(r, 0, 2);
    a->updated_ms = v_i64(r, 0, 3);
    PQclear(r);
    r = NULL;

    rc = q_run(s, c,
               with_vectors ? "SELECT model, dim, norm, nsfw, vector FROM image_embeddings"
                              " WHERE asset_id = $1 ORDER BY model"
                            : "SELECT model, dim, norm, nsfw FROM image_embeddings"
                              " WHERE asset_id = $1 ORDER BY model",
               &p, "image embeddings", &r, e);
    if (rc)
        goto out;
    a->nembs = PQntuples(r);
    a->embs = a->nembs > 0 ? xcalloc((size_t)a->nembs, sizeof *a->embs) : NULL;
    for (int i = 0; i < a->nembs; i++) {
        store_asset_emb *m = &a->embs[i];
        m->model = v_dup(r, i, 0);
        m->dim = v_int(r, i, 1);
        m->norm = v_f64(r, i, 2);
        m->nsfw = v_dup(r, i, 3);
        if (with_vectors)
            m->vector = v_vec(r, i, 4, m->dim, &m->nvec);
    }
    PQclear(r);
    r = NULL;

    rc = q_run(s, c,
               with_vectors ? "SELECT id, x1, y1, x2, y2, score, keypoints, detector, model, dim,"
                              " person_id, vector FROM faces WHERE asset_id = $1 ORDER BY id"
                            : "SELECT id, x1, y1, x2, y2, score, keypoints, detector, model, dim,"
                              " person_id FROM faces WHERE asset_id = $1 ORDER BY id",
               &p, "faces", &r, e);
    if (rc)
        goto out;
    a->nfaces = PQntuples(r);
    a->faces = a->nfaces > 0 ? xcalloc((size_t)a->nfaces, sizeof *a->faces) : NULL;
    for (int i = 0; i < a->nfaces; i++) {
        store_asset_face *f = &a->faces[i];
        f->id = v_i64(r, i, 0);
        for (int b = 0; b < 4; b++)
            f->box[b] = v_f64(r, i, 1 + b);
        f->score = v_f64(r, i, 5);
        f->keypoints = v_dup(r, i, 6);
        f->detector = v_dup(r, i, 7);
        f->model = v_dup(r, i, 8);
        f->dim = v_int(r, i, 9);
        f->person_id = PQgetisnull(r, i, 10) ? 0 : v_i64(r, i, 10);
        if (with_vectors)
            f->vector = v_vec(r, i, 11, f->dim, &f->nvec);
    }
out:
    PQclear(r);
    return pg_end(s, c, rc, e);
}

/*
 * Inserts the "deleted" outbox event of `asset_id` under its latest job (the
 * outbox row needs one; see store_asset_delete) and its NOTIFY, taking the
 * outbox lock as pg_event_put() does. An asset whose jobs are all gone gets no
 * event.
 */
static int put_deleted_event(pg_store *s, pg_conn *c, const char *asset_id, err_t *e)
{
    PGresult *r = NULL;
    pg_params p = {0};
    p_text(&p, asset_id);
    int rc = q_run(s, c, "SELECT max(id) FROM jobs WHERE asset_id = $1", &p, "latest job", &r, e);
    if (rc)
        return rc;
    int isnull = PQntuples(r) != 1 || PQgetisnull(r, 0, 0);
    int64_t job_id = isnull ? 0 : v_i64(r, 0, 0);
    PQclear(r);
    if (isnull)
        return ERR_OK;
    store_event ev = {.job_id = job_id, .asset_id = asset_id, .deleted = 1};
    return pg_event_put(&s->base, (store_tx *)c, &ev, store_now_ms(), e);
}

static int pg_thumb_get(store *base, const char *asset_id, unsigned char **jpeg, size_t *len,
                        int *w, int *h, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    pg_params p = {0};
    p_text(&p, asset_id);
    int rc = pg_query(s, BEGIN_RO, "SELECT width, height, jpeg FROM thumbs WHERE asset_id = $1", &p,
                      "thumbnail", &r, e);
    if (rc)
        return rc;
    if (PQntuples(r) == 1) {
        *w = atoi(PQgetvalue(r, 0, 0));
        *h = atoi(PQgetvalue(r, 0, 1));
        size_t n = 0;
        unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 2), &n);
        if (b == NULL) {
            rc = err_set(e, ERR_NOMEM, "thumbnail of %s: out of memory", asset_id);
        } else {
            *jpeg = xmalloc(n > 0 ? n : 1);
            memcpy(*jpeg, b, n);
            *len = n;
            PQfreemem(b);
        }
    } else {
        rc = err_set(e, ERR_NOENT, "asset %s has no thumbnail", asset_id);
    }
    PQclear(r);
    return rc;
}

static int pg_assets_list(store *base, const char *after, int limit,
                          void (*each)(void *ctx, const store_cols *c), void *ctx, int64_t *total,
                          err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    pg_params p = {0};
    p_text(&p, after);
    p_i64(&p, limit);
    /* One statement: the page and the total come from the same snapshot. */
    int rc = pg_query(s, BEGIN_RO,
                      "SELECT " STORE_ASSET_LIST_COLS ", (SELECT count(*) FROM assets)"
                      " FROM assets a WHERE a.asset_id > $1 ORDER BY a.asset_id LIMIT $2",
                      &p, "assets list", &r, e);
    if (rc)
        return rc;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        pg_cell_row x = {r, i};
        store_cols c = {.text = pg_col_text, .i64 = pg_col_i64, .res = &x};
        each(ctx, &c);
    }
    *total = n > 0 ? atoll(PQgetvalue(r, 0, 7)) : 0;
    PQclear(r);
    if (n == 0) { /* an empty page carries no total */
        rc = pg_query(s, BEGIN_RO, "SELECT count(*) FROM assets", NULL, "assets count", &r, e);
        if (rc)
            return rc;
        *total = atoll(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return ERR_OK;
}

static int pg_asset_delete(store *base, const char *asset_id, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    PGresult *r = NULL;
    int rc = pg_begin(s, BEGIN_RW, &c, e);
    if (rc)
        return rc;
    pg_params p = {0};
    p_text(&p, asset_id);
    /* image_embeddings and faces go with it: ON DELETE CASCADE. */
    rc = q_run(s, c, "DELETE FROM assets WHERE asset_id = $1", &p, "asset delete", &r, e);
    if (rc == ERR_OK && strcmp(PQcmdTuples(r), "0") == 0)
        rc = err_set(e, ERR_NOENT, "asset %s not found", asset_id);
    PQclear(r);
    if (rc == ERR_OK)
        rc = put_deleted_event(s, c, asset_id, e);
    return pg_end(s, c, rc, e);
}

/* --- outbox --------------------------------------------------------------- */

static int pg_outbox_read(store *base, int64_t after_id, int unsent_only, int limit,
                          outbox_event **out, int *n, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    pg_params p = {0};
    p_i64(&p, after_id);
    p_i64(&p, limit);
    int rc =
        pg_query(s, BEGIN_RO,
                 unsent_only ? "SELECT id, job_id, asset_id, payload, created_ms, sent_ms"
                               " FROM outbox WHERE id > $1 AND sent_ms IS NULL ORDER BY id LIMIT $2"
                             : "SELECT id, job_id, asset_id, payload, created_ms, sent_ms"
                               " FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
                 &p, "outbox read", &r, e);
    if (rc)
        return rc;
    int cnt = PQntuples(r);
    if (cnt > 0) {
        outbox_event *arr = xcalloc((size_t)cnt, sizeof *arr);
        for (int i = 0; i < cnt; i++) {
            outbox_event *ev = &arr[i];
            ev->id = v_i64(r, i, 0);
            ev->job_id = v_i64(r, i, 1);
            v_copy(r, i, 2, ev->asset_id, sizeof ev->asset_id);
            ev->payload = v_dup(r, i, 3);
            ev->created_ms = v_i64(r, i, 4);
            ev->sent = !PQgetisnull(r, i, 5);
        }
        *out = arr;
        *n = cnt;
    }
    PQclear(r);
    return ERR_OK;
}

static int pg_outbox_max_id(store *base, int64_t *out, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    int rc = pg_query(s, BEGIN_RO, "SELECT COALESCE(MAX(id), 0) FROM outbox", NULL, "outbox max id",
                      &r, e);
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        *out = v_i64(r, 0, 0);
    PQclear(r);
    return ERR_OK;
}

static int pg_outbox_mark_sent(store *base, int64_t id, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    pg_params p = {0};
    p_i64(&p, store_now_ms());
    p_i64(&p, id);
    int rc =
        pg_query(s, BEGIN_RW, "UPDATE outbox SET sent_ms = coalesce(sent_ms, $1) WHERE id = $2", &p,
                 "mark sent", &r, e);
    if (rc)
        return rc;
    if (strcmp(PQcmdTuples(r), "0") == 0)
        rc = err_set(e, ERR_NOENT, "outbox row %lld not found", (long long)id);
    PQclear(r);
    return rc;
}

/* --- leader leases -------------------------------------------------------- */

static int pg_leader_acquire(store *base, const char *name, const char *owner, int64_t lease_ms,
                             err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    PGresult *r = NULL;
    int64_t now = store_now_ms();
    int rc = pg_begin(s, BEGIN_RW, &c, e);
    if (rc)
        return rc;
    pg_params p = {0};
    p_text(&p, name);
    p_text(&p, owner);
    p_i64(&p, now + lease_ms);
    p_i64(&p, now);
    /*
     * ON CONFLICT DO UPDATE locks the row and evaluates its WHERE on the
     * newest version: of racing callers one writes, the others see its row.
     */
    rc = q_run(s, c,
               "INSERT INTO leader(name, owner, until_ms) VALUES ($1, $2, $3)"
               " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
               " until_ms = excluded.until_ms WHERE leader.owner = excluded.owner"
               " OR leader.until_ms < $4 RETURNING owner",
               &p, "leader acquire", &r, e);
    if (rc == ERR_OK && PQntuples(r) == 0) {
        PQclear(r);
        r = NULL;
        pg_params q = {0};
        p_text(&q, name);
        rc = q_run(s, c, "SELECT owner, until_ms FROM leader WHERE name = $1", &q, "leader", &r, e);
        if (rc == ERR_OK && PQntuples(r) == 1)
            rc = err_set(e, ERR_LEASE, "leader %s: held by %s for %lld ms more", name,
                         v_str(r, 0, 0), (long long)(v_i64(r, 0, 1) - now));
        else if (rc == ERR_OK)
            rc = err_set(e, ERR_BUSY, "leader %s: released while being taken; try again", name);
    }
    PQclear(r);
    return pg_end(s, c, rc, e);
}

static int pg_leader_release(store *base, const char *name, const char *owner, err_t *e)
{
    pg_params p = {0};
    p_text(&p, name);
    p_text(&p, owner);
    return pg_query((pg_store *)base, BEGIN_RW, "DELETE FROM leader WHERE name = $1 AND owner = $2",
                    &p, "leader release", NULL, e);
}

/* --- wake-ups --------------------------------------------------------------- */

/* Drops every notification libpq has buffered on `conn`; how many there were. */
static int drain_notifies(PGconn *conn)
{
    int n = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(conn)) != NULL) {
        PQfreemem(nt);
        n++;
    }
    return n;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * (Re)opens the listener's connection and LISTENs. 1 when it was (re)opened
 * now (hints may have been missed meanwhile), 0 when it was fine, or an
 * error, after which the caller waits out the backoff.
 */
static int listen_ensure(pg_store *s, pg_listener *l, err_t *e)
{
    if (l->c.conn != NULL && PQstatus(l->c.conn) == CONNECTION_OK)
        return 0;
    int fresh = l->c.conn != NULL;
    int rc = conn_ensure(s, &l->c, e);
    if (rc)
        return rc;
    char sql[128];
    snprintf(sql, sizeof sql, "LISTEN \"%s\"", l->channel);
    rc = q_run(s, &l->c, sql, NULL, "listen", NULL, e);
    if (rc) {
        note_failure(&l->c, store_now_ms());
        return rc;
    }
    return fresh;
}

static int pg_wait_notify(store *base, store_channel ch, int timeout_ms, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_listener *l = &s->listen[ch];
    int64_t deadline = clock_mono_ms() + timeout_ms;
    pthread_mutex_lock(&l->lock);
    int rc = listen_ensure(s, l, e);
    if (rc < 0) {
        int64_t wait = l->c.retry_at_ms - store_now_ms();
        pthread_mutex_unlock(&l->lock);
        sleep_ms(wait < timeout_ms ? wait : timeout_ms);
        return rc;
    }
    if (rc == 1) {
        /* Reconnected: whatever was sent meanwhile is lost, so say "look". */
        pthread_mutex_unlock(&l->lock);
        return ERR_OK;
    }
    PGconn *conn = l->c.conn;
    rc = 1;
    for (;;) {
        if (!PQconsumeInput(conn)) {
            char msg[400];
            rc = err_set(e, ERR_UNAVAILABLE, "store %s: listen connection lost: %s", s->shown,
                         trim_msg(PQerrorMessage(conn), msg, sizeof msg));
            break;
        }
        if (drain_notifies(conn) > 0) {
            rc = ERR_OK;
            break;
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno != EINTR) {
            rc = err_set(e, ERR_IO, "store %s: poll: %s", s->shown, strerror(errno));
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

/* --- vectors -------------------------------------------------------------- */

static int pg_vectors_read(store *base, store_vec_kind kind, const char *asset_id,
                           const store_vec *after, int limit, store_vec **out, int *n, err_t *e)
{
    pg_store *s = (pg_store *)base;
    PGresult *r = NULL;
    store_vec *arr = NULL;
    int cnt = 0;
    int rc;
    pg_params p = {0};
    p_text(&p, asset_id);
    p_i64(&p, limit);
    if (kind == STORE_VEC_IMAGE) {
        p_text(&p, after != NULL ? after->asset_id : NULL);
        p_text(&p, after != NULL ? after->model : NULL);
        /* COLLATE "C": the key order must be byte order, as SQLite's. */
        rc = pg_query(s, BEGIN_RO,
                      "SELECT 0, i.asset_id, i.model, i.dim, i.vector, 0, a.payload"
                      " FROM image_embeddings i JOIN assets a ON a.asset_id = i.asset_id"
                      " WHERE ($1::text IS NULL OR i.asset_id = $1)"
                      " AND ($3::text IS NULL OR (i.asset_id COLLATE \"C\", i.model COLLATE \"C\")"
                      " > ($3::text COLLATE \"C\", $4::text COLLATE \"C\"))"
                      " ORDER BY i.asset_id COLLATE \"C\", i.model COLLATE \"C\" LIMIT $2",
                      &p, "vectors", &r, e);
    } else {
        p_i64(&p, after != NULL ? after->face_id : 0);
        rc = pg_query(s, BEGIN_RO,
                      "SELECT id, asset_id, model, dim, vector, person_id, NULL FROM faces"
                      " WHERE vector IS NOT NULL AND ($1::text IS NULL OR asset_id = $1)"
                      " AND id > $3 ORDER BY id LIMIT $2",
                      &p, "vectors", &r, e);
    }
    if (rc)
        return rc;
    if (PQntuples(r) > 0) {
        int rows = PQntuples(r);
        arr = xcalloc((size_t)rows, sizeof *arr);
        for (int i = 0; i < rows && rc == ERR_OK; i++) {
            store_vec *v = &arr[cnt++];
            v->face_id = v_i64(r, i, 0);
            v_copy(r, i, 1, v->asset_id, sizeof v->asset_id);
            v->model = v_dup(r, i, 2);
            int dim = v_int(r, i, 3);
            size_t bytes = 0;
            unsigned char *b = NULL;
            if (!PQgetisnull(r, i, 4))
                b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 4), &bytes);
            if (b == NULL || dim <= 0 || bytes != (size_t)dim * 4) {
                rc = err_set(e, ERR_INTERNAL, "store %s: vector of %s has %zu bytes for dim %d",
                             s->shown, v->asset_id, bytes, dim);
            } else {
                v->dim = dim;
                v->vector = xmalloc((size_t)dim * sizeof(float));
                store__vec_from_le(b, dim, v->vector);
            }
            PQfreemem(b);
            v->person_id = v_i64(r, i, 5);
            v->payload = v_dup(r, i, 6);
        }
    }
    PQclear(r);
    if (rc) {
        store_vec_array_free(arr, cnt);
        return rc;
    }
    *out = arr;
    *n = cnt;
    return ERR_OK;
}

/* --- people ---------------------------------------------------------------- */

static int pg_person_create(store *base, const char *name, int64_t *id, err_t *e)
{
    PGresult *r = NULL;
    pg_params p = {0};
    p_text(&p, name);
    int rc =
        pg_query((pg_store *)base, BEGIN_RW, "INSERT INTO people(name) VALUES ($1) RETURNING id",
                 &p, "person create", &r, e);
    if (rc)
        return rc;
    *id = v_i64(r, 0, 0);
    PQclear(r);
    return ERR_OK;
}

static int pg_faces_assign(store *base, const int64_t *face_ids, const int64_t *person_ids, int n,
                           int *assigned, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    int changed = 0;
    int rc = pg_begin(s, BEGIN_RW, &c, e);
    if (rc)
        return rc;
    for (int i = 0; rc == ERR_OK && i < n; i++) {
        PGresult *r = NULL;
        pg_params p = {0};
        p_i64(&p, person_ids[i]);
        p_i64(&p, face_ids[i]);
        rc = q_run(s, c, "UPDATE faces SET person_id = $1 WHERE id = $2 AND person_id IS NULL", &p,
                   "faces assign", &r, e);
        if (rc == ERR_OK)
            changed += atoi(PQcmdTuples(r));
        PQclear(r);
    }
    rc = pg_end(s, c, rc, e);
    if (rc == ERR_OK)
        *assigned = changed;
    return rc;
}

static int pg_people_reset(store *base, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    int rc = pg_begin(s, BEGIN_RW, &c, e);
    if (rc)
        return rc;
    rc = q_run(s, c, "UPDATE faces SET person_id = NULL WHERE person_id IS NOT NULL", NULL,
               "people reset", NULL, e);
    if (rc == ERR_OK)
        rc = q_run(s, c, "DELETE FROM people", NULL, "people reset", NULL, e);
    return pg_end(s, c, rc, e);
}

#define PG_PEOPLE_SELECT                                                                           \
    "SELECT p.id, p.name, (SELECT count(*) FROM faces f WHERE f.person_id = p.id) AS n,"           \
    " cf.id, cf.asset_id FROM people p JOIN faces cf ON cf.id = (SELECT f.id FROM faces f"         \
    " WHERE f.person_id = p.id ORDER BY f.score DESC, f.id LIMIT 1)"

static int pg_people_read(store *base, store_person_row **out, int *n, err_t *e)
{
    PGresult *r = NULL;
    int rc = pg_query((pg_store *)base, BEGIN_RO, PG_PEOPLE_SELECT " ORDER BY n DESC, p.id", NULL,
                      "people", &r, e);
    if (rc)
        return rc;
    *n = PQntuples(r);
    *out = *n > 0 ? xcalloc((size_t)*n, sizeof **out) : NULL;
    for (int i = 0; i < *n; i++) {
        store_person_row *p = &(*out)[i];
        p->id = v_i64(r, i, 0);
        p->name = v_dup(r, i, 1);
        p->face_count = v_i64(r, i, 2);
        p->cover_face = v_i64(r, i, 3);
        p->cover_asset = v_dup(r, i, 4);
    }
    PQclear(r);
    return ERR_OK;
}

static int pg_person_read(store *base, int64_t id, store_person *out, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    PGresult *r = NULL;
    int rc = pg_begin(s, BEGIN_RO, &c, e);
    if (rc)
        return rc;
    pg_params p = {0};
    p_i64(&p, id);
    rc = q_run(s, c, "SELECT name FROM people WHERE id = $1", &p, "person", &r, e);
    if (rc)
        goto out;
    if (PQntuples(r) != 1) {
        rc = err_set(e, ERR_NOENT, "person %lld not found", (long long)id);
        goto out;
    }
    out->name = v_dup(r, 0, 0);
    PQclear(r);
    r = NULL;
    rc = q_run(s, c,
               "SELECT id, asset_id, x1, y1, x2, y2, score FROM faces WHERE person_id = $1"
               " ORDER BY id",
               &p, "person faces", &r, e);
    if (rc)
        goto out;
    out->nfaces = PQntuples(r);
    out->faces = out->nfaces > 0 ? xcalloc((size_t)out->nfaces, sizeof *out->faces) : NULL;
    for (int i = 0; i < out->nfaces; i++) {
        store_person_face *f = &out->faces[i];
        f->id = v_i64(r, i, 0);
        f->asset_id = v_dup(r, i, 1);
        for (int b = 0; b < 4; b++)
            f->box[b] = v_f64(r, i, 2 + b);
        f->score = v_f64(r, i, 6);
    }
    PQclear(r);
    r = NULL;
    rc = q_run(s, c,
               "SELECT DISTINCT asset_id COLLATE \"C\" AS a FROM faces WHERE person_id = $1"
               " ORDER BY a",
               &p, "person assets", &r, e);
    if (rc)
        goto out;
    out->nassets = PQntuples(r);
    out->assets = out->nassets > 0 ? xcalloc((size_t)out->nassets, sizeof *out->assets) : NULL;
    for (int i = 0; i < out->nassets; i++)
        out->assets[i] = v_dup(r, i, 0);
out:
    PQclear(r);
    return pg_end(s, c, rc, e);
}

static int pg_person_rename(store *base, int64_t id, const char *name, err_t *e)
{
    PGresult *r = NULL;
    pg_params p = {0};
    p_text(&p, name);
    p_i64(&p, id);
    int rc = pg_query((pg_store *)base, BEGIN_RW, "UPDATE people SET name = $1 WHERE id = $2", &p,
                      "person rename", &r, e);
    if (rc)
        return rc;
    if (strcmp(PQcmdTuples(r), "0") == 0)
        rc = err_set(e, ERR_NOENT, "person %lld not found", (long long)id);
    PQclear(r);
    return rc;
}

static int pg_people_merge(store *base, int64_t into, const int64_t *from, int n, err_t *e)
{
    pg_store *s = (pg_store *)base;
    pg_conn *c = NULL;
    int rc = pg_begin(s, BEGIN_RW, &c, e);
    if (rc)
        return rc;
    for (int i = -1; rc == ERR_OK && i < n; i++) {
        PGresult *r = NULL;
        pg_params p = {0};
        p_i64(&p, i < 0 ? into : from[i]);
        rc = q_run(s, c, "SELECT 1 FROM people WHERE id = $1 FOR UPDATE", &p, "person", &r, e);
        if (rc == ERR_OK && PQntuples(r) != 1)
            rc =
                err_set(e, ERR_NOENT, "person %lld not found", (long long)(i < 0 ? into : from[i]));
        PQclear(r);
    }
    for (int i = 0; rc == ERR_OK && i < n; i++) {
        pg_params p = {0};
        p_i64(&p, into);
        p_i64(&p, from[i]);
        rc = q_run(s, c, "UPDATE faces SET person_id = $1 WHERE person_id = $2", &p, "merge faces",
                   NULL, e);
        if (rc == ERR_OK) {
            pg_params d = {0};
            p_i64(&d, from[i]);
            rc = q_run(s, c, "DELETE FROM people WHERE id = $1", &d, "merge delete", NULL, e);
        }
    }
    return pg_end(s, c, rc, e);
}

static const store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .job_enqueue = pg_job_enqueue,
    .job_get = pg_job_get,
    .job_list = pg_job_list,
    .job_claim = pg_job_claim,
    .job_heartbeat = pg_job_heartbeat,
    .tx_begin = pg_tx_begin,
    .tx_end = pg_tx_end,
    .rows_lock = pg_rows_lock,
    .row_apply = pg_row_apply,
    .results_put = pg_results_put,
    .event_put = pg_event_put,
    .counts_get = pg_counts_get,
    .asset_read = pg_asset_read,
    .asset_delete = pg_asset_delete,
    .thumb_get = pg_thumb_get,
    .assets_list = pg_assets_list,
    .outbox_read = pg_outbox_read,
    .outbox_max_id = pg_outbox_max_id,
    .upload_sources = pg_upload_sources,
    .outbox_mark_sent = pg_outbox_mark_sent,
    .leader_acquire = pg_leader_acquire,
    .leader_release = pg_leader_release,
    .wait_notify = pg_wait_notify,
    .vectors_read = pg_vectors_read,
    .person_create = pg_person_create,
    .faces_assign = pg_faces_assign,
    .people_reset = pg_people_reset,
    .people_read = pg_people_read,
    .person_read = pg_person_read,
    .person_rename = pg_person_rename,
    .people_merge = pg_people_merge,
};
