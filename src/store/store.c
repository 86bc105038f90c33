/*
 * store/store.c — the backend-neutral half of the store: picks a backend from
 * the URL, checks every argument that does not need the database, forwards
 * through the backend's ops table (store_int.h), and owns what must be
 * identical across backends: job and event JSON, state and task names,
 * timestamps and the on-disk vector byte order.
 *
 * Checking arguments here rather than in each backend means a PostgreSQL
 * backend inherits the same ERR_INVAL answers for free, and the conformance
 * suite (tests/unit/test_store.c) cannot see a difference between them.
 *
 * Threading: nothing here keeps state; every function is safe from any
 * thread. Backends document their own locking.
 */
#include "store/store_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/redact.h"
#include "util/xalloc.h"

/*
 * How event payloads are written: compact, and reals with 9 significant
 * digits, which is exact for float32 and keeps a timing of 0.1 ms from
 * reaching consumers as 0.10000000000000001 (jansson's default is 17).
 */
#define STORE__JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* Default of store_opts.commit_retry_ms. */
#define STORE__COMMIT_RETRY_MS 20000

/* Limits on what a caller may hand to the store; beyond them is a bug or an attack. */
#define STORE_LIST_MAX 1000
#define STORE_DIM_MAX 65536
#define STORE_FACES_MAX 100000
#define STORE_MAX_ATTEMPTS_MAX 100

static const char *const state_names[] = {"queued", "running", "done", "failed", "cancelled"};

const char *job_state_name(job_state s)
{
    if ((int)s < 0 || (int)s >= (int)(sizeof state_names / sizeof state_names[0]))
        return NULL;
    return state_names[s];
}

int job_state_parse(const char *s)
{
    if (s == NULL)
        return -1;
    for (int i = 0; i < (int)(sizeof state_names / sizeof state_names[0]); i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

void job_clear(job *j)
{
    if (j == NULL)
        return;
    free(j->source);
    free(j->payload);
    free(j->error);
    free(j->error_code);
    free(j->timings);
    memset(j, 0, sizeof *j);
}

void job_array_free(job *jobs, int n)
{
    if (jobs == NULL)
        return;
    for (int i = 0; i < n; i++)
        job_clear(&jobs[i]);
    free(jobs);
}

void outbox_event_array_free(outbox_event *ev, int n)
{
    if (ev == NULL)
        return;
    for (int i = 0; i < n; i++)
        free(ev[i].payload);
    free(ev);
}

int64_t store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- shared helpers (store_int.h) ----------------------------------------- */

void store__rfc3339(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", day, frac);
}

static json_t *time_json(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[40];
    store__rfc3339(ms, buf, sizeof buf);
    return json_string(buf);
}

json_t *store__json_or_null(const char *text)
{
    if (text == NULL)
        return json_null();
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v != NULL ? v : json_null();
}

json_t *store__tasks_json(unsigned tasks)
{
    json_t *a = json_array();
    if (tasks & JOB_TASK_IMAGE_EMBEDDING)
        json_array_append_new(a, json_string("image_embedding"));
    if (tasks & JOB_TASK_FACES)
        json_array_append_new(a, json_string("faces"));
    return a;
}

json_t *store__num(double x, double scale)
{
    return json_real((double)(long long)(x * scale + (x >= 0 ? 0.5 : -0.5)) / scale);
}

void store__vec_to_le(const float *src, int n, unsigned char *dst)
{
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        dst[4 * i + 0] = (unsigned char)(u & 0xff);
        dst[4 * i + 1] = (unsigned char)((u >> 8) & 0xff);
        dst[4 * i + 2] = (unsigned char)((u >> 16) & 0xff);
        dst[4 * i + 3] = (unsigned char)((u >> 24) & 0xff);
    }
}

void store__vec_from_le(const unsigned char *src, int n, float *dst)
{
    for (int i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                     (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
        memcpy(&dst[i], &u, 4);
    }
}

static json_t *error_json(const char *code, const char *msg)
{
    if (code == NULL && msg == NULL)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "code", json_string(code != NULL ? code : "unknown"));
    json_object_set_new(o, "message", json_string(msg != NULL ? msg : ""));
    return o;
}

char *store__event_payload(const store_event *ev, int64_t now)
{
    json_t *o = json_object();
    json_object_set_new(o, "job_id", json_integer(ev->job_id));
    json_object_set_new(o, "asset_id", json_string(ev->asset_id));
    if (ev->deleted) {
        json_object_set_new(o, "state", json_string("deleted"));
    } else {
        json_object_set_new(o, "state", json_string(job_state_name(ev->state)));
        json_object_set_new(o, "tasks", store__tasks_json(ev->tasks));
        json_object_set_new(o, "attempts", json_integer(ev->attempts));
        json_t *counts = json_object();
        json_object_set_new(counts, "faces", json_integer(ev->nfaces));
        json_object_set_new(counts, "image_embeddings", json_integer(ev->nimage));
        json_object_set_new(o, "counts", counts);
        json_object_set_new(o, "timings_ms", store__json_or_null(ev->timings));
        json_object_set_new(o, "error",
                            ev->error_code != NULL ? error_json(ev->error_code, ev->error_msg)
                                                   : json_null());
    }
    json_object_set_new(o, "at", time_json(now));
    char *text = json_dumps(o, STORE__JSON_FLAGS);
    json_decref(o);
    if (text == NULL) {
        fprintf(stderr, "%s:%d: out of memory\n", __FILE__, __LINE__);
        abort();
    }
    return text;
}

/*
 * Puts each event's id in front of its stored payload. Rows are stored
 * without it so that inserting one needs no round trip for the id (the
 * database assigns it); rows written before that already carry it.
 */
static void outbox_add_ids(outbox_event *ev, int n)
{
    static const char key[] = "{\"event_id\":";
    for (int i = 0; i < n; i++) {
        const char *p = ev[i].payload;
        if (p == NULL || p[0] != '{' || strncmp(p, key, sizeof key - 1) == 0)
            continue;
        size_t len = strlen(p);
        char *t = xmalloc(len + 32);
        snprintf(t, len + 32, "%s%lld%s%s", key, (long long)ev[i].id, p[1] == '}' ? "" : ",",
                 p + 1);
        free(ev[i].payload);
        ev[i].payload = t;
    }
}

json_t *job_to_json(const job *j)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(j->id));
    json_object_set_new(o, "asset_id", json_string(j->asset_id));
    const char *st = job_state_name(j->state);
    json_object_set_new(o, "state", st != NULL ? json_string(st) : json_null());
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "tasks", store__tasks_json(j->tasks));
    json_object_set_new(o, "attempts", json_integer(j->attempts));
    json_object_set_new(o, "max_attempts", json_integer(j->max_attempts));
    json_object_set_new(o, "source", store__json_or_null(j->source));
    json_object_set_new(o, "payload", store__json_or_null(j->payload));
    json_object_set_new(o, "error", error_json(j->error_code, j->error));
    json_object_set_new(o, "timings_ms", store__json_or_null(j->timings));
    json_object_set_new(o, "lease_owner",
                        j->lease_owner[0] != '\0' ? json_string(j->lease_owner) : json_null());
    json_object_set_new(o, "worker_id",
                        j->worker_id[0] != '\0' ? json_string(j->worker_id) : json_null());
    json_object_set_new(o, "cancel_requested", json_boolean(j->cancel_requested));
    json_object_set_new(o, "created_at", time_json(j->created_ms));
    json_object_set_new(o, "updated_at", time_json(j->updated_ms));
    json_object_set_new(o, "finished_at", time_json(j->finished_ms));
    return o;
}

/* --- argument checks -------------------------------------------------------- */

/* Whether `text` parses as a JSON object. */
static int is_json_object(const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    int ok = v != NULL && json_is_object(v);
    json_decref(v);
    return ok;
}

int store_asset_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > STORE_ASSET_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == ':' || ch == '@' || ch == '/' || ch == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

static int check_asset_id(const char *asset_id, err_t *e)
{
    if (asset_id == NULL || asset_id[0] == '\0')
        return err_set(e, ERR_INVAL, "asset_id is empty");
    if (strlen(asset_id) > STORE_ASSET_ID_MAX)
        return err_set(e, ERR_INVAL, "asset_id longer than %d bytes", STORE_ASSET_ID_MAX);
    return ERR_OK;
}

static int check_owner(const char *owner, err_t *e)
{
    if (owner == NULL || owner[0] == '\0')
        return err_set(e, ERR_INVAL, "lease owner is empty");
    if (strlen(owner) > STORE_OWNER_MAX)
        return err_set(e, ERR_INVAL, "lease owner longer than %d bytes", STORE_OWNER_MAX);
    return ERR_OK;
}

static int check_leased_job(const job *j, const char *owner, err_t *e)
{
    if (j == NULL || j->id <= 0)
        return err_set(e, ERR_INVAL, "no job");
    return check_owner(owner, e);
}

static int check_timings(const char *timings, err_t *e)
{
    if (timings != NULL && !is_json_object(timings))
        return err_set(e, ERR_INVAL, "timings is not a JSON object");
    return ERR_OK;
}

static int check_result(const store_result *r, err_t *e)
{
    if (r == NULL)
        return err_set(e, ERR_INVAL, "no result");
    if (r->width < 0 || r->height < 0)
        return err_set(e, ERR_INVAL, "negative image size");
    if (r->image_model != NULL) {
        if (r->image_dim <= 0 || r->image_dim > STORE_DIM_MAX || r->image_vector == NULL)
            return err_set(e, ERR_INVAL, "image embedding: bad dim %d or no vector", r->image_dim);
        if (r->nsfw != NULL && !is_json_object(r->nsfw))
            return err_set(e, ERR_INVAL, "nsfw is not a JSON object");
    }
    if (r->face_model != NULL || r->detector_model != NULL) {
        if (r->nfaces < 0 || r->nfaces > STORE_FACES_MAX || (r->nfaces > 0 && r->faces == NULL))
            return err_set(e, ERR_INVAL, "faces: bad count %d", r->nfaces);
        if (r->face_dim < 0 || r->face_dim > STORE_DIM_MAX)
            return err_set(e, ERR_INVAL, "faces: bad dim %d", r->face_dim);
        for (int i = 0; i < r->nfaces; i++)
            if (r->faces[i].vector != NULL && r->face_dim == 0)
                return err_set(e, ERR_INVAL, "faces: vector without a dim");
    }
    return check_timings(r->timings, e);
}

/* --- forwarding ----------------------------------------------------------- */

/* Backends may assume a non-NULL err_t; callers may pass NULL. */
#define E_OR_LOCAL(e, local) ((e) != NULL ? (e) : &(local))

int store_open(const char *url, const store_opts *opts, store **out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (out == NULL)
        return err_set(e, ERR_INVAL, "store_open: no output");
    *out = NULL;
    if (url == NULL || url[0] == '\0')
        return err_set(e, ERR_INVAL, "store: empty URL");
    store_opts o = {0};
    if (opts != NULL)
        o = *opts;
    if (o.busy_timeout_ms < 0)
        return err_set(e, ERR_INVAL, "store: negative busy timeout");
    if (o.busy_timeout_ms == 0)
        o.busy_timeout_ms = 5000;

    if (o.commit_retry_ms == 0)
        o.commit_retry_ms = STORE__COMMIT_RETRY_MS;

    int rc;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        rc = store__pg_open(url, &o, out, e);
    } else {
        const char *path = url;
        if (strncmp(url, "sqlite://", 9) == 0)
            path = url + 9;
        else if (strncmp(url, "sqlite:", 7) == 0)
            path = url + 7;
        else if (strstr(url, "://") != NULL) {
            char *shown = redact_url(url);
            rc = err_set(e, ERR_UNSUPPORTED, "store %s: unknown URL scheme", shown);
            free(shown);
            return rc;
        }
        if (path[0] == '\0')
            return err_set(e, ERR_INVAL, "store %s: no file path", url);
        static const char normal[] = "?synchronous=normal", full[] = "?synchronous=full";
        size_t pl = strlen(path);
        char *plain = NULL;
        if (pl > sizeof normal - 1 && strcmp(path + pl - (sizeof normal - 1), normal) == 0) {
            o.sqlite_normal = 1;
            plain = xstrdup(path);
            plain[pl - (sizeof normal - 1)] = '\0';
        } else if (pl > sizeof full - 1 && strcmp(path + pl - (sizeof full - 1), full) == 0) {
            plain = xstrdup(path);
            plain[pl - (sizeof full - 1)] = '\0';
        } else if (strstr(path, "?synchronous=") != NULL) {
            return err_set(e, ERR_INVAL, "store %s: synchronous must be full or normal", url);
        }
        rc = store__sqlite_open(plain != NULL ? plain : path, &o, out, e);
        free(plain);
    }
    if (rc == ERR_OK) {
        (*out)->commit_retry_ms = o.commit_retry_ms;
        pthread_mutex_init(&(*out)->gc_lock, NULL);
        pthread_cond_init(&(*out)->gc_cond, NULL);
        (*out)->gc_ready = 1;
    }
    return rc;
}

/* --- the queue policy (store_int.h) ------------------------------------------ */

typedef enum {
    STORE__W_COMPLETE,
    STORE__W_FAIL,
    STORE__W_RETRY,
    STORE__W_RESCUE,
    STORE__W_RELEASE,
    STORE__W_CANCEL,
} store__write_kind;

/* One transition a caller asks for, with what it brings. */
typedef struct {
    store__write_kind kind;
    const job *j;          /* complete, fail, retry: the leased job */
    const char *owner;     /* complete, fail, retry, release */
    const store_result *r; /* complete */
    int code;              /* fail, retry */
    const char *error;     /* fail, retry */
    const char *timings;   /* fail, complete */
    int64_t delay_ms;      /* retry */
    int64_t id;            /* cancel */
} store__write;

static char *cols_dup(const store_cols *c, int col)
{
    const char *t = c->text(c->res, col);
    return t != NULL ? xstrdup(t) : NULL;
}

static void cols_copy(const store_cols *c, int col, char *dst, size_t size)
{
    const char *t = c->text(c->res, col);
    snprintf(dst, size, "%s", t != NULL ? t : "");
}

static job_state cols_state(const store_cols *c, int col)
{
    int state = job_state_parse(c->text(c->res, col));
    return state >= 0 ? (job_state)state : JOB_FAILED;
}

void store__job_from_cols(const store_cols *c, job *j)
{
    memset(j, 0, sizeof *j);
    j->id = c->i64(c->res, 0);
    cols_copy(c, 1, j->asset_id, sizeof j->asset_id);
    j->state = cols_state(c, 2);
    j->priority = (int)c->i64(c->res, 3);
    j->tasks = (unsigned)c->i64(c->res, 4);
    j->attempts = (int)c->i64(c->res, 5);
    j->max_attempts = (int)c->i64(c->res, 6);
    j->source = cols_dup(c, 7);
    j->payload = cols_dup(c, 8);
    j->error = cols_dup(c, 9);
    j->error_code = cols_dup(c, 10);
    j->timings = cols_dup(c, 11);
    cols_copy(c, 12, j->lease_owner, sizeof j->lease_owner);
    j->lease_until_ms = c->i64(c->res, 13);
    j->run_after_ms = c->i64(c->res, 14);
    j->created_ms = c->i64(c->res, 15);
    j->updated_ms = c->i64(c->res, 16);
    j->finished_ms = c->i64(c->res, 17);
    j->cancel_requested = (int)c->i64(c->res, 18);
    cols_copy(c, 19, j->worker_id, sizeof j->worker_id);
}

void store__row_from_cols(const store_cols *c, store_row *r)
{
    r->id = c->i64(c->res, 0);
    cols_copy(c, 1, r->asset_id, sizeof r->asset_id);
    r->state = cols_state(c, 2);
    r->tasks = (unsigned)c->i64(c->res, 3);
    r->attempts = (int)c->i64(c->res, 4);
    r->max_attempts = (int)c->i64(c->res, 5);
    r->cancel_requested = (int)c->i64(c->res, 6);
    r->timings = cols_dup(c, 7);
    r->payload = cols_dup(c, 8);
}

void store__rows_free(store_row *rows, int n)
{
    for (int i = 0; rows != NULL && i < n; i++) {
        free(rows[i].timings);
        free(rows[i].payload);
    }
    free(rows);
}

/*
 * The queue's rules, in one place: what becomes of row `r` under `w` at
 * `now`. Fills `o` and returns 1, or returns 0 to leave the row as it is (a
 * cancel of a job that already ended or was already asked to cancel).
 * `msg` (of `size` bytes) holds text that `o` may point into.
 *
 *  - A job asked to cancel that leaves running for any reason ends
 *    cancelled; what a failing worker said about it is kept.
 *  - Retry and lease rescue put the job back while attempts are left
 *    (retry after its backoff, rescue at once), and fail it after the last.
 *  - Release (a worker shutting down) puts the job back and gives the
 *    attempt back: the job was not at fault.
 *  - Complete ends done with the error of earlier attempts cleared.
 */
static int decide(const store_row *r, const store__write *w, int64_t now, store_outcome *o,
                  char *msg, size_t size)
{
    memset(o, 0, sizeof *o);
    const char *code = NULL, *error = NULL;
    switch (w->kind) {
    case STORE__W_CANCEL:
        if (r->state == JOB_QUEUED)
            o->to = JOB_CANCELLED;
        else if (r->state == JOB_RUNNING && !r->cancel_requested)
            o->to = JOB_RUNNING; /* the worker sees the flag and stops */
        else
            return 0;
        return 1;
    case STORE__W_RESCUE:
        snprintf(msg, size, "lease expired at attempt %d", r->attempts);
        code = STORE_LEASE_EXPIRED_CODE;
        error = msg;
        break;
    case STORE__W_RETRY:
    case STORE__W_FAIL:
        code = err_name(w->code);
        error = w->error;
        break;
    case STORE__W_COMPLETE:
    case STORE__W_RELEASE:
        break;
    }
    if (r->cancel_requested) {
        o->to = JOB_CANCELLED;
        if (w->kind == STORE__W_RETRY || w->kind == STORE__W_FAIL) {
            o->code = code;
            o->error = error;
        }
        o->timings = w->timings;
        return 1;
    }
    switch (w->kind) {
    case STORE__W_RESCUE:
    case STORE__W_RETRY:
        o->code = code;
        o->error = error;
        if (r->attempts >= r->max_attempts) {
            o->to = JOB_FAILED;
        } else {
            o->to = JOB_QUEUED;
            o->run_after_ms = now + (w->kind == STORE__W_RETRY ? w->delay_ms : 0);
        }
        break;
    case STORE__W_FAIL:
        o->to = JOB_FAILED;
        o->code = code;
        o->error = error;
        o->timings = w->timings;
        break;
    case STORE__W_COMPLETE:
        o->to = JOB_DONE;
        o->timings = w->timings;
        o->clear_error = 1;
        break;
    case STORE__W_RELEASE:
        o->to = JOB_QUEUED;
        o->run_after_ms = now;
        o->uncount = 1;
        break;
    case STORE__W_CANCEL:
        break;
    }
    return 1;
}

/* One locked row's share of a transition: the write it answers and what was decided. */
typedef struct {
    const store_row *r;
    const store__write *w;
    int act; /* decide() asked for a write */
    store_outcome o;
    char msg[128];
} store__step;

static int cmp_step_asset(const void *a, const void *b)
{
    const store__step *const *x = a, *const *y = b;
    int c = strcmp((*x)->r->asset_id, (*y)->r->asset_id);
    return c != 0 ? c : ((*x)->r->id > (*y)->r->id) - ((*x)->r->id < (*y)->r->id);
}

/*
 * Writes what was decided for `n` locked rows inside `tx`: first every
 * row's results and state, in asset order (two batches touching the same
 * assets take their row locks in the same order), then every event.
 * PostgreSQL's outbox lock is taken by the first event and held to commit,
 * so everything else a transaction writes must come before it (store_pg.c,
 * "Outbox order").
 */
static int apply_steps(store *s, store_tx *tx, store__step *steps, int n, int64_t now, err_t *e)
{
    store__step **order = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++) {
        order[i] = &steps[i];
        steps[i].act =
            decide(steps[i].r, steps[i].w, now, &steps[i].o, steps[i].msg, sizeof steps[i].msg);
    }
    if (n > 1)
        qsort(order, (size_t)n, sizeof *order, cmp_step_asset);
    int rc = ERR_OK;
    for (int i = 0; rc == ERR_OK && i < n; i++) {
        const store__step *st = order[i];
        if (!st->act)
            continue;
        if (st->o.to == JOB_DONE)
            rc = s->ops->results_put(s, tx, st->r, st->w->r, now, e);
        if (rc == ERR_OK)
            rc = s->ops->row_apply(s, tx, st->r, &st->o, now, e);
    }
    free(order);
    for (int i = 0; rc == ERR_OK && i < n; i++) {
        const store__step *st = &steps[i];
        if (!st->act || st->o.to == JOB_QUEUED || st->o.to == JOB_RUNNING)
            continue;
        const store_result *res = st->o.to == JOB_DONE ? st->w->r : NULL;
        store_event ev = {
            .job_id = st->r->id,
            .asset_id = st->r->asset_id,
            .state = st->o.to,
            .tasks = st->r->tasks,
            .attempts = st->r->attempts,
            .nfaces = res != NULL && (res->face_model != NULL || res->detector_model != NULL)
                          ? res->nfaces
                          : 0,
            .nimage = res != NULL && res->image_model != NULL ? 1 : 0,
            .timings = st->o.timings != NULL ? st->o.timings : st->r->timings,
            .error_code = st->o.to == JOB_FAILED ? st->o.code : NULL,
            .error_msg = st->o.to == JOB_FAILED ? st->o.error : NULL,
        };
        rc = s->ops->event_put(s, tx, &ev, now, e);
    }
    return rc;
}

/* Runs `w` over the rows it names in one transaction; `*count` gets how many were locked. */
static int write_once_n(store *s, const store__write *w, int *count, err_t *e)
{
    store_sel sel = {.owner = w->owner, .n = 1};
    int64_t id = 0;
    int attempts = 0;
    switch (w->kind) {
    case STORE__W_COMPLETE:
    case STORE__W_FAIL:
    case STORE__W_RETRY:
        sel.kind = STORE_SEL_LEASED;
        id = w->j->id;
        attempts = w->j->attempts;
        break;
    case STORE__W_RESCUE:
        sel.kind = STORE_SEL_EXPIRED;
        break;
    case STORE__W_RELEASE:
        sel.kind = STORE_SEL_OWNED;
        break;
    case STORE__W_CANCEL:
        sel.kind = STORE_SEL_ID;
        id = w->id;
        break;
    }
    sel.ids = &id;
    sel.attempts = &attempts;
    store_tx *tx = NULL;
    int rc = s->ops->tx_begin(s, &tx, e);
    if (rc)
        return rc;
    int64_t now = store_now_ms();
    sel.now = now;
    store_row *rows = NULL;
    int n = 0;
    rc = s->ops->rows_lock(s, tx, &sel, &rows, &n, e);
    if (rc == ERR_OK && n == 0 && sel.kind == STORE_SEL_LEASED)
        rc = err_set(e, ERR_LEASE, "job %lld: not running under %s at attempt %d", (long long)id,
                     w->owner, attempts);
    else if (rc == ERR_OK && n == 0 && sel.kind == STORE_SEL_ID)
        rc = err_set(e, ERR_NOENT, "job %lld not found", (long long)id);
    if (rc == ERR_OK && n > 0) {
        store__step *steps = xcalloc((size_t)n, sizeof *steps);
        for (int i = 0; i < n; i++) {
            steps[i].r = &rows[i];
            steps[i].w = w;
        }
        rc = apply_steps(s, tx, steps, n, now, e);
        free(steps);
    }
    store__rows_free(rows, n);
    rc = s->ops->tx_end(s, tx, rc, e);
    if (rc == ERR_OK && count != NULL)
        *count = n;
    return rc;
}

static int write_once(store *s, const store__write *w, err_t *e)
{
    return write_once_n(s, w, NULL, e);
}

/*
 * Runs the lease-conditional writes `ws[0..n)`, all of one owner, in one
 * transaction. A job no longer leased gets ERR_LEASE in rcs[i] (message in
 * es[i]) and the others go ahead. Returns the transaction's answer; unless
 * it is ERR_OK nothing was written and rcs[] mean nothing.
 */
static int write_batch_once(store *s, const store__write *const *ws, int n, int *rcs, err_t **es,
                            err_t *e)
{
    int64_t *ids = xmalloc((size_t)n * sizeof *ids);
    int *att = xmalloc((size_t)n * sizeof *att);
    for (int i = 0; i < n; i++) {
        ids[i] = ws[i]->j->id;
        att[i] = ws[i]->j->attempts;
    }
    store_sel sel = {
        .kind = STORE_SEL_LEASED, .ids = ids, .attempts = att, .n = n, .owner = ws[0]->owner};
    store_tx *tx = NULL;
    store_row *rows = NULL;
    int nrows = 0;
    int rc = s->ops->tx_begin(s, &tx, e);
    if (rc)
        goto out;
    int64_t now = store_now_ms();
    rc = s->ops->rows_lock(s, tx, &sel, &rows, &nrows, e);
    store__step *steps = xcalloc((size_t)(n > 0 ? n : 1), sizeof *steps);
    int nsteps = 0;
    char *taken = xcalloc((size_t)(nrows > 0 ? nrows : 1), 1);
    for (int i = 0; rc == ERR_OK && i < n; i++) {
        int k = 0;
        while (k < nrows && (rows[k].id != ids[i] || taken[k]))
            k++;
        if (k == nrows) {
            rcs[i] = err_set(es[i], ERR_LEASE, "job %lld: not running under %s at attempt %d",
                             (long long)ids[i], ws[i]->owner, att[i]);
            continue;
        }
        taken[k] = 1;
        rcs[i] = ERR_OK;
        steps[nsteps].r = &rows[k];
        steps[nsteps].w = ws[i];
        nsteps++;
    }
    if (rc == ERR_OK)
        rc = apply_steps(s, tx, steps, nsteps, now, e);
    free(taken);
    free(steps);
    rc = s->ops->tx_end(s, tx, rc, e);
out:
    store__rows_free(rows, nrows);
    free(ids);
    free(att);
    return rc;
}

/* --- retrying lease-conditional writes (store.h: "Connection loss") --------- */

/*
 * Whether an earlier try of `w` committed although its caller saw the
 * connection break: the job is in the state that `w` writes, at the same
 * attempt, with `owner` as its last claimer (another worker's run would
 * have a higher attempt), and not put there by a lease rescue.
 */
static int write_landed(store *s, const store__write *w)
{
    job now = {0}; /* job_get may clear it on error */
    err_t ignore;
    if (s->ops->job_get(s, w->j->id, &now, &ignore) != ERR_OK)
        return 0;
    int same = now.attempts == w->j->attempts && strcmp(now.worker_id, w->owner) == 0 &&
               (now.error_code == NULL || strcmp(now.error_code, STORE_LEASE_EXPIRED_CODE) != 0);
    int state_ok = now.state == JOB_CANCELLED;
    if (w->kind == STORE__W_COMPLETE)
        state_ok = state_ok || now.state == JOB_DONE;
    else if (w->kind == STORE__W_FAIL)
        state_ok = state_ok || now.state == JOB_FAILED;
    else
        state_ok = state_ok || now.state == JOB_FAILED ||
                   (now.state == JOB_QUEUED && now.run_after_ms > 0);
    job_clear(&now);
    return same && state_ok;
}

/*
 * Runs `w`, retrying while the server is unreachable (ERR_UNAVAILABLE) for
 * up to s->commit_retry_ms. The PostgreSQL backend reconnects on the next
 * call by itself, so a retry is just another call.
 */
static int write_retrying(store *s, const store__write *w, err_t *e)
{
    int rc = write_once(s, w, e);
    if (rc != ERR_UNAVAILABLE || s->commit_retry_ms < 0)
        return rc;
    int64_t give_up = store_now_ms() + s->commit_retry_ms;
    int64_t pause = 100;
    int tries = 1;
    while (rc == ERR_UNAVAILABLE && store_now_ms() + pause <= give_up) {
        struct timespec ts = {(time_t)(pause / 1000), (long)(pause % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        pause = pause * 2 > 2000 ? 2000 : pause * 2;
        rc = write_once(s, w, e);
        tries++;
        if (rc == ERR_LEASE && write_landed(s, w))
            rc = ERR_OK; /* an earlier try committed; its reply was lost */
    }
    if (tries > 1)
        log_info("store", "job=%lld write %s after %d tries: %s", (long long)w->j->id,
                 rc == ERR_OK ? "succeeded" : "gave up", tries,
                 rc == ERR_OK ? "connection restored" : e->msg);
    return rc;
}

/* --- group commit ------------------------------------------------------------- */

/* The most writes one group commit takes. */
#define STORE__GROUP_MAX 64

struct store__waiter {
    const store__write *w;
    err_t *e;
    int rc, done;
    struct store__waiter *next;
};

/*
 * Commits the lease-conditional writes g[0..n) (one owner): one transaction
 * for all; when that fails as a whole, each write on its own
 * (write_retrying), so every caller gets the answer a lone call would have
 * had. A write the failed batch had in fact committed (its reply lost with
 * the connection) is recognised as landed, as write_retrying does.
 */
static void commit_group(store *s, struct store__waiter **g, int n)
{
    if (n == 1) {
        g[0]->rc = write_retrying(s, g[0]->w, g[0]->e);
        return;
    }
    const store__write *ws[STORE__GROUP_MAX];
    err_t *es[STORE__GROUP_MAX];
    int rcs[STORE__GROUP_MAX];
    for (int i = 0; i < n; i++) {
        ws[i] = g[i]->w;
        es[i] = g[i]->e;
    }
    err_t be = {0};
    int rc = write_batch_once(s, ws, n, rcs, es, &be);
    if (rc == ERR_OK) {
        for (int i = 0; i < n; i++)
            g[i]->rc = rcs[i];
        return;
    }
    log_info("store", "a group commit of %d writes failed (%s); writing them one by one", n,
             be.msg);
    for (int i = 0; i < n; i++) {
        int r = write_retrying(s, ws[i], es[i]);
        if (r == ERR_LEASE && rc == ERR_UNAVAILABLE && write_landed(s, ws[i]))
            r = ERR_OK;
        g[i]->rc = r;
    }
}

/*
 * Runs the lease-conditional write `w` through the group commit: a caller
 * that finds no commit in flight commits at once, alone or with whatever
 * queued meanwhile (so a lone worker pays no added latency); callers that
 * arrive while a commit is in flight queue, and the next of them commits
 * the queue in one transaction. Slot threads completing jobs at the same
 * time thus share transactions, fsyncs and round trips.
 */
static int write_grouped(store *s, const store__write *w, err_t *e)
{
    if (!s->gc_ready)
        return write_retrying(s, w, e);
    struct store__waiter me = {.w = w, .e = e};
    pthread_mutex_lock(&s->gc_lock);
    if (s->gc_tail != NULL)
        s->gc_tail->next = &me;
    else
        s->gc_head = &me;
    s->gc_tail = &me;
    while (!me.done) {
        if (s->gc_busy) {
            pthread_cond_wait(&s->gc_cond, &s->gc_lock);
            continue;
        }
        s->gc_busy = 1;
        struct store__waiter *g[STORE__GROUP_MAX];
        int n = 0;
        const char *owner = s->gc_head->w->owner;
        struct store__waiter **pp = &s->gc_head;
        while (*pp != NULL && n < STORE__GROUP_MAX) {
            struct store__waiter *x = *pp;
            if (strcmp(x->w->owner, owner) == 0) {
                g[n++] = x;
                *pp = x->next;
            } else {
                pp = &x->next;
            }
        }
        s->gc_tail = NULL;
        for (struct store__waiter *x = s->gc_head; x != NULL; x = x->next)
            s->gc_tail = x;
        pthread_mutex_unlock(&s->gc_lock);
        commit_group(s, g, n);
        pthread_mutex_lock(&s->gc_lock);
        for (int i = 0; i < n; i++)
            g[i]->done = 1;
        s->gc_busy = 0;
        pthread_cond_broadcast(&s->gc_cond);
    }
    pthread_mutex_unlock(&s->gc_lock);
    return me.rc;
}

void store_close(store *s)
{
    if (s == NULL)
        return;
    if (s->gc_ready) {
        pthread_mutex_destroy(&s->gc_lock);
        pthread_cond_destroy(&s->gc_cond);
    }
    s->ops->close(s);
}

const char *store_backend(const store *s)
{
    return s != NULL ? s->ops->name : NULL;
}

/* Checks one spec and fills *out with it, max_attempts defaulted. */
static int spec_check(const job_spec *spec, job_spec *out, err_t *e)
{
    int rc = check_asset_id(spec->asset_id, e);
    if (rc)
        return rc;
    if (spec->tasks == 0 || (spec->tasks & ~JOB_TASK_ALL) != 0)
        return err_set(e, ERR_INVAL, "tasks 0x%x: empty or unknown", spec->tasks);
    if (spec->max_attempts < 0 || spec->max_attempts > STORE_MAX_ATTEMPTS_MAX)
        return err_set(e, ERR_INVAL, "max_attempts %d outside 0..%d", spec->max_attempts,
                       STORE_MAX_ATTEMPTS_MAX);
    if (spec->source == NULL || !is_json_object(spec->source))
        return err_set(e, ERR_INVAL, "source is not a JSON object");
    if (spec->payload != NULL && !is_json_object(spec->payload))
        return err_set(e, ERR_INVAL, "payload is not a JSON object");
    *out = *spec;
    if (out->max_attempts == 0)
        out->max_attempts = STORE_DEFAULT_MAX_ATTEMPTS;
    return ERR_OK;
}

int store_job_enqueue(store *s, const job_spec *spec, job *out, int *existing, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (existing != NULL)
        *existing = 0;
    if (s == NULL || spec == NULL || out == NULL)
        return err_set(e, ERR_INVAL, "store_job_enqueue: missing argument");
    memset(out, 0, sizeof *out);
    job_spec sp;
    int rc = spec_check(spec, &sp, e);
    if (rc)
        return rc;
    int ex = 0;
    rc = s->ops->job_enqueue(s, &sp, 1, out, &ex, e);
    if (rc == ERR_OK && existing != NULL)
        *existing = ex;
    return rc;
}

int store_job_enqueue_many(store *s, const job_spec *specs, int n, job *out, int *existing,
                           err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || specs == NULL || out == NULL || existing == NULL || n < 1 ||
        n > STORE_ENQUEUE_MAX)
        return err_set(e, ERR_INVAL, "store_job_enqueue_many: 1..%d jobs", STORE_ENQUEUE_MAX);
    memset(out, 0, (size_t)n * sizeof *out);
    memset(existing, 0, (size_t)n * sizeof *existing);
    job_spec *sp = xcalloc((size_t)n, sizeof *sp);
    int rc = ERR_OK;
    for (int i = 0; i < n && rc == ERR_OK; i++) {
        rc = spec_check(&specs[i], &sp[i], e);
        if (rc) {
            char m[sizeof e->msg];
            snprintf(m, sizeof m, "%s", e->msg);
            err_set(e, rc, "jobs[%d]: %.480s", i, m);
        }
    }
    if (rc == ERR_OK)
        rc = s->ops->job_enqueue(s, sp, n, out, existing, e);
    free(sp);
    return rc;
}

int store_job_get(store *s, int64_t id, job *out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL)
        return err_set(e, ERR_INVAL, "store_job_get: missing argument");
    memset(out, 0, sizeof *out);
    if (id <= 0)
        return err_set(e, ERR_NOENT, "job %lld not found", (long long)id);
    return s->ops->job_get(s, id, out, e);
}

int store_job_list(store *s, int state, int64_t before_id, int limit, job **out, int *n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL || n == NULL)
        return err_set(e, ERR_INVAL, "store_job_list: missing argument");
    *out = NULL;
    *n = 0;
    if (state != -1 && job_state_name((job_state)state) == NULL)
        return err_set(e, ERR_INVAL, "unknown job state %d", state);
    if (limit < 1 || limit > STORE_LIST_MAX)
        return err_set(e, ERR_INVAL, "limit %d outside 1..%d", limit, STORE_LIST_MAX);
    if (before_id < 0)
        return err_set(e, ERR_INVAL, "negative cursor");
    return s->ops->job_list(s, state, before_id, limit, out, n, e);
}

int store_job_cancel(store *s, int64_t id, job *out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_job_cancel: no store");
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (id <= 0)
        return err_set(e, ERR_NOENT, "job %lld not found", (long long)id);
    store__write w = {.kind = STORE__W_CANCEL, .id = id};
    int rc = write_once(s, &w, e);
    if (rc == ERR_OK && out != NULL)
        rc = s->ops->job_get(s, id, out, e);
    return rc;
}

/* Claim order: higher priority first, then older (smaller id). */
static int cmp_claim_order(const void *a, const void *b)
{
    const job *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int store_job_claim(store *s, const char *owner, int max, int64_t lease_ms, job **out, int *n,
                    err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL || n == NULL)
        return err_set(e, ERR_INVAL, "store_job_claim: missing argument");
    *out = NULL;
    *n = 0;
    int rc = check_owner(owner, e);
    if (rc)
        return rc;
    if (max < 0 || max > STORE_LIST_MAX || lease_ms < 0)
        return err_set(e, ERR_INVAL, "claim: max %d outside 0..%d or negative lease", max,
                       STORE_LIST_MAX);
    if (max == 0)
        return ERR_OK;
    rc = s->ops->job_claim(s, owner, max, lease_ms, out, n, e);
    /* UPDATE ... RETURNING yields rows in no promised order; hand them out in claim order. */
    if (rc == ERR_OK && *n > 1)
        qsort(*out, (size_t)*n, sizeof **out, cmp_claim_order);
    return rc;
}

int store_job_heartbeat(store *s, const char *owner, int64_t lease_ms, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || lease_ms < 0)
        return err_set(e, ERR_INVAL, "store_job_heartbeat: bad argument");
    int rc = check_owner(owner, e);
    if (rc)
        return rc;
    return s->ops->job_heartbeat(s, owner, lease_ms, e);
}

int store_job_rescue(store *s, int *n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    int dummy;
    if (n == NULL)
        n = &dummy;
    *n = 0;
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_job_rescue: no store");
    store__write w = {.kind = STORE__W_RESCUE};
    return write_once_n(s, &w, n, e);
}

int store_job_retry(store *s, const job *j, const char *owner, int64_t delay_ms, int code,
                    const char *error, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || delay_ms < 0)
        return err_set(e, ERR_INVAL, "store_job_retry: bad argument");
    int rc = check_leased_job(j, owner, e);
    if (rc)
        return rc;
    store__write w = {.kind = STORE__W_RETRY,
                      .j = j,
                      .owner = owner,
                      .code = code,
                      .error = error != NULL ? error : err_strerror(code),
                      .delay_ms = delay_ms};
    return write_grouped(s, &w, e);
}

int store_job_fail(store *s, const job *j, const char *owner, int code, const char *error,
                   const char *timings, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_job_fail: no store");
    int rc = check_leased_job(j, owner, e);
    if (rc == ERR_OK)
        rc = check_timings(timings, e);
    if (rc)
        return rc;
    store__write w = {.kind = STORE__W_FAIL,
                      .j = j,
                      .owner = owner,
                      .code = code,
                      .error = error != NULL ? error : err_strerror(code),
                      .timings = timings};
    return write_grouped(s, &w, e);
}

int store_job_complete(store *s, const job *j, const char *owner, const store_result *r, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_job_complete: no store");
    int rc = check_leased_job(j, owner, e);
    if (rc == ERR_OK)
        rc = check_result(r, e);
    if (rc)
        return rc;
    store__write w = {
        .kind = STORE__W_COMPLETE, .j = j, .owner = owner, .r = r, .timings = r->timings};
    return write_grouped(s, &w, e);
}

int store_job_complete_many(store *s, const job *jobs, const char *owner,
                            const store_result *results, int n, int *rcs, err_t *errs)
{
    if (s == NULL || n < 0 || (n > 0 && (jobs == NULL || results == NULL || rcs == NULL)))
        return ERR_INVAL;
    err_t *local = errs == NULL ? xcalloc((size_t)(n > 0 ? n : 1), sizeof *local) : NULL;
    err_t *es = errs != NULL ? errs : local;
    store__write *ws = xcalloc((size_t)(n > 0 ? n : 1), sizeof *ws);
    struct store__waiter *wt = xcalloc((size_t)(n > 0 ? n : 1), sizeof *wt);
    struct store__waiter *g[STORE__GROUP_MAX];
    int ng = 0;
    for (int i = 0; i < n; i++) {
        rcs[i] = check_leased_job(&jobs[i], owner, &es[i]);
        if (rcs[i] == ERR_OK)
            rcs[i] = check_result(&results[i], &es[i]);
        if (rcs[i] != ERR_OK)
            continue;
        ws[i] = (store__write){.kind = STORE__W_COMPLETE,
                               .j = &jobs[i],
                               .owner = owner,
                               .r = &results[i],
                               .timings = results[i].timings};
        wt[i] = (struct store__waiter){.w = &ws[i], .e = &es[i]};
        g[ng++] = &wt[i];
        if (ng == STORE__GROUP_MAX) {
            commit_group(s, g, ng);
            ng = 0;
        }
    }
    if (ng > 0)
        commit_group(s, g, ng);
    int first = ERR_OK;
    for (int i = 0; i < n; i++) {
        if (wt[i].w != NULL)
            rcs[i] = wt[i].rc;
        if (first == ERR_OK)
            first = rcs[i];
    }
    free(wt);
    free(ws);
    free(local);
    return first;
}

int store_job_release(store *s, const char *owner, int *n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    int dummy;
    if (n == NULL)
        n = &dummy;
    *n = 0;
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_job_release: no store");
    int rc = check_owner(owner, e);
    if (rc)
        return rc;
    store__write w = {.kind = STORE__W_RELEASE, .owner = owner};
    return write_once_n(s, &w, n, e);
}

int store_counts_get(store *s, store_counts *c, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || c == NULL)
        return err_set(e, ERR_INVAL, "store_counts_get: missing argument");
    memset(c, 0, sizeof *c);
    return s->ops->counts_get(s, c, e);
}

/* --- asset and person JSON: built here, read by the backends ---------------- */

void store__asset_clear(store_asset *a)
{
    free(a->payload);
    for (int i = 0; i < a->nembs; i++) {
        free(a->embs[i].model);
        free(a->embs[i].nsfw);
        free(a->embs[i].vector);
    }
    free(a->embs);
    for (int i = 0; i < a->nfaces; i++) {
        free(a->faces[i].keypoints);
        free(a->faces[i].detector);
        free(a->faces[i].model);
        free(a->faces[i].vector);
    }
    free(a->faces);
    memset(a, 0, sizeof *a);
}

void store__person_clear(store_person *p)
{
    free(p->name);
    for (int i = 0; i < p->nfaces; i++)
        free(p->faces[i].asset_id);
    free(p->faces);
    store_strings_free(p->assets, p->nassets);
    memset(p, 0, sizeof *p);
}

void store__person_rows_free(store_person_row *rows, int n)
{
    for (int i = 0; rows != NULL && i < n; i++) {
        free(rows[i].name);
        free(rows[i].cover_asset);
    }
    free(rows);
}

float *store__vec_dup(const void *blob, size_t bytes, int dim, int *n)
{
    *n = 0;
    if (blob == NULL || dim <= 0 || bytes < 4)
        return NULL;
    int cnt = bytes / 4 < (size_t)dim ? (int)(bytes / 4) : dim;
    float *v = xmalloc((size_t)cnt * sizeof *v);
    store__vec_from_le(blob, cnt, v);
    *n = cnt;
    return v;
}

static json_t *floats_json(const float *v, int n)
{
    if (v == NULL)
        return json_null();
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

/* Stored keypoints text [[x,y] x6 or x5] as JSON rounded to 0.1 px. */
static json_t *keypoints_json(const char *text)
{
    json_t *in = store__json_or_null(text);
    json_t *out = json_array();
    size_t i;
    json_t *pt;
    json_array_foreach(in, i, pt)
    {
        json_t *p = json_array();
        json_array_append_new(p, store__num(json_number_value(json_array_get(pt, 0)), 10));
        json_array_append_new(p, store__num(json_number_value(json_array_get(pt, 1)), 10));
        json_array_append_new(out, p);
    }
    json_decref(in);
    return out;
}

static json_t *box_json(const double box[4])
{
    json_t *a = json_array();
    for (int b = 0; b < 4; b++)
        json_array_append_new(a, store__num(box[b], 10));
    return a;
}

static json_t *string_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *asset_json(const char *asset_id, const store_asset *a, int with_vectors)
{
    json_t *o = json_object();
    json_object_set_new(o, "asset_id", json_string(asset_id));
    json_object_set_new(o, "payload", store__json_or_null(a->payload));
    json_object_set_new(o, "width", json_integer(a->width));
    json_object_set_new(o, "height", json_integer(a->height));
    json_object_set_new(o, "updated_at", time_json(a->updated_ms));
    json_t *embs = json_array();
    for (int i = 0; i < a->nembs; i++) {
        const store_asset_emb *m = &a->embs[i];
        json_t *ie = json_object();
        json_object_set_new(ie, "model", json_string(m->model != NULL ? m->model : ""));
        json_object_set_new(ie, "dim", json_integer(m->dim));
        json_object_set_new(ie, "norm", store__num(m->norm, 1e4));
        json_object_set_new(ie, "nsfw", store__json_or_null(m->nsfw));
        if (with_vectors)
            json_object_set_new(ie, "vector", floats_json(m->vector, m->nvec));
        json_array_append_new(embs, ie);
    }
    json_object_set_new(o, "image_embeddings", embs);
    json_t *faces = json_array();
    for (int i = 0; i < a->nfaces; i++) {
        const store_asset_face *f = &a->faces[i];
        json_t *fo = json_object();
        json_object_set_new(fo, "id", json_integer(f->id));
        json_object_set_new(fo, "box", box_json(f->box));
        json_object_set_new(fo, "score", store__num(f->score, 1e4));
        json_object_set_new(fo, "keypoints", keypoints_json(f->keypoints));
        json_object_set_new(fo, "detector", json_string(f->detector != NULL ? f->detector : ""));
        json_object_set_new(fo, "model", json_string(f->model != NULL ? f->model : ""));
        json_object_set_new(fo, "dim", json_integer(f->dim));
        if (with_vectors)
            json_object_set_new(fo, "vector", floats_json(f->vector, f->nvec));
        json_object_set_new(fo, "person_id",
                            f->person_id > 0 ? json_integer(f->person_id) : json_null());
        json_array_append_new(faces, fo);
    }
    json_object_set_new(o, "faces", faces);
    return o;
}

static json_t *cover_json(int64_t face_id, const char *asset_id)
{
    json_t *c = json_object();
    json_object_set_new(c, "face_id", json_integer(face_id));
    json_object_set_new(c, "asset_id", json_string(asset_id != NULL ? asset_id : ""));
    return c;
}

/* A person's summary: {id, name, face_count, cover}. */
static json_t *person_row_json(const store_person_row *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(p->id));
    json_object_set_new(o, "name", string_or_null(p->name));
    json_object_set_new(o, "face_count", json_integer(p->face_count));
    json_object_set_new(o, "cover", cover_json(p->cover_face, p->cover_asset));
    return o;
}

/* A person in full: faces, assets, face_count and the first best-scoring face as cover. */
static json_t *person_json(int64_t id, const store_person *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "name", string_or_null(p->name));
    json_t *faces = json_array();
    int best = -1;
    for (int i = 0; i < p->nfaces; i++) {
        const store_person_face *f = &p->faces[i];
        json_t *fo = json_object();
        json_object_set_new(fo, "id", json_integer(f->id));
        json_object_set_new(fo, "asset_id", json_string(f->asset_id != NULL ? f->asset_id : ""));
        json_object_set_new(fo, "box", box_json(f->box));
        json_object_set_new(fo, "score", store__num(f->score, 1e4));
        json_array_append_new(faces, fo);
        if (best < 0 || f->score > p->faces[best].score)
            best = i;
    }
    json_object_set_new(o, "faces", faces);
    json_t *assets = json_array();
    for (int i = 0; i < p->nassets; i++)
        json_array_append_new(assets, json_string(p->assets[i]));
    json_object_set_new(o, "assets", assets);
    json_object_set_new(o, "face_count", json_integer(p->nfaces));
    json_object_set_new(o, "cover",
                        best >= 0 ? cover_json(p->faces[best].id, p->faces[best].asset_id)
                                  : json_null());
    return o;
}

int store_asset_get(store *s, const char *asset_id, int with_vectors, json_t **out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL)
        return err_set(e, ERR_INVAL, "store_asset_get: missing argument");
    *out = NULL;
    int rc = check_asset_id(asset_id, e);
    if (rc)
        return rc;
    store_asset a = {0};
    rc = s->ops->asset_read(s, asset_id, with_vectors, &a, e);
    if (rc == ERR_OK)
        *out = asset_json(asset_id, &a, with_vectors);
    store__asset_clear(&a);
    return rc;
}

int store_asset_delete(store *s, const char *asset_id, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_asset_delete: no store");
    int rc = check_asset_id(asset_id, e);
    if (rc)
        return rc;
    return s->ops->asset_delete(s, asset_id, e);
}

int store_thumb_get(store *s, const char *asset_id, unsigned char **jpeg, size_t *len, int *w,
                    int *h, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    *jpeg = NULL;
    *len = 0;
    *w = *h = 0;
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_thumb_get: no store");
    int rc = check_asset_id(asset_id, e);
    if (rc)
        return rc;
    return s->ops->thumb_get(s, asset_id, jpeg, len, w, h, e);
}

/* store_assets_list's row callback: one asset object onto the array `ctx`. */
static void asset_list_row(void *ctx, const store_cols *c)
{
    json_t *o = json_object();
    const char *id = c->text(c->res, 0);
    json_object_set_new(o, "asset_id", json_string(id != NULL ? id : ""));
    json_object_set_new(o, "width", json_integer(c->i64(c->res, 1)));
    json_object_set_new(o, "height", json_integer(c->i64(c->res, 2)));
    json_object_set_new(o, "faces", json_integer(c->i64(c->res, 5)));
    json_object_set_new(o, "thumbnail", json_boolean(c->i64(c->res, 6) != 0));
    json_object_set_new(o, "payload", store__json_or_null(c->text(c->res, 3)));
    json_object_set_new(o, "updated_at", time_json(c->i64(c->res, 4)));
    json_array_append_new((json_t *)ctx, o);
}

int store_assets_list(store *s, const char *after, int limit, json_t **out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    *out = NULL;
    if (s == NULL || limit < 1 || limit > 1000)
        return err_set(e, ERR_INVAL, "store_assets_list: limit 1..1000");
    json_t *arr = json_array();
    int64_t total = 0;
    int rc =
        s->ops->assets_list(s, after != NULL ? after : "", limit, asset_list_row, arr, &total, e);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    size_t n = json_array_size(arr);
    json_t *last = n > 0 ? json_object_get(json_array_get(arr, n - 1), "asset_id") : NULL;
    json_t *o = json_object();
    json_object_set_new(o, "assets", arr);
    json_object_set_new(o, "next_cursor",
                        n == (size_t)limit && last != NULL ? json_copy(last) : json_null());
    json_object_set_new(o, "total", json_integer(total));
    *out = o;
    return ERR_OK;
}

int store_outbox_read(store *s, int64_t after_id, int unsent_only, int limit, outbox_event **out,
                      int *n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL || n == NULL)
        return err_set(e, ERR_INVAL, "store_outbox_read: missing argument");
    *out = NULL;
    *n = 0;
    if (after_id < 0 || limit < 1 || limit > STORE_LIST_MAX)
        return err_set(e, ERR_INVAL, "outbox read: limit %d outside 1..%d or negative cursor",
                       limit, STORE_LIST_MAX);
    int rc = s->ops->outbox_read(s, after_id, unsent_only, limit, out, n, e);
    if (rc == ERR_OK)
        outbox_add_ids(*out, *n);
    return rc;
}

int store_outbox_max_id(store *s, int64_t *out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL)
        return err_set(e, ERR_INVAL, "store_outbox_max_id: missing argument");
    *out = 0;
    return s->ops->outbox_max_id(s, out, e);
}

int store_outbox_mark_sent(store *s, int64_t id, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_outbox_mark_sent: no store");
    if (id <= 0)
        return err_set(e, ERR_NOENT, "outbox row %lld not found", (long long)id);
    return s->ops->outbox_mark_sent(s, id, e);
}

int store_leader_acquire(store *s, const char *name, const char *owner, int64_t lease_ms, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || lease_ms <= 0)
        return err_set(e, ERR_INVAL, "store_leader_acquire: no store or lease_ms <= 0");
    int rc = check_owner(name, e);
    if (rc == ERR_OK)
        rc = check_owner(owner, e);
    if (rc)
        return rc;
    return s->ops->leader_acquire(s, name, owner, lease_ms, e);
}

int store_leader_release(store *s, const char *name, const char *owner, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_leader_release: no store");
    int rc = check_owner(name, e);
    if (rc == ERR_OK)
        rc = check_owner(owner, e);
    if (rc)
        return rc;
    return s->ops->leader_release(s, name, owner, e);
}

/*
 * Two calls rather than one backend transaction: holding the lease at the
 * moment of the read is all one transaction could promise either, since the
 * lease may expire right after any commit. The rule that keeps delivery
 * single is the holder's: renew well within lease_ms.
 */
int store_outbox_claim(store *s, const char *owner, int limit, int64_t lease_ms, outbox_event **out,
                       int *n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL || n == NULL)
        return err_set(e, ERR_INVAL, "store_outbox_claim: missing argument");
    *out = NULL;
    *n = 0;
    if (limit < 1 || limit > STORE_LIST_MAX)
        return err_set(e, ERR_INVAL, "outbox claim: limit %d outside 1..%d", limit, STORE_LIST_MAX);
    int rc = store_leader_acquire(s, STORE_LEADER_PUBLISHER, owner, lease_ms, e);
    if (rc)
        return rc;
    rc = s->ops->outbox_read(s, 0, 1, limit, out, n, e);
    if (rc == ERR_OK)
        outbox_add_ids(*out, *n);
    return rc;
}

int store_wait_notify(store *s, store_channel ch, int timeout_ms, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || (ch != STORE_CHANNEL_JOBS && ch != STORE_CHANNEL_OUTBOX) || timeout_ms < 0 ||
        timeout_ms > 3600000)
        return err_set(e, ERR_INVAL, "store_wait_notify: bad channel %d or timeout %d", (int)ch,
                       timeout_ms);
    return s->ops->wait_notify(s, ch, timeout_ms, e);
}

/* --- deletion events, vectors, people ----------------------------------------- */

void store_vec_array_free(store_vec *v, int n)
{
    if (v == NULL)
        return;
    for (int i = 0; i < n; i++) {
        free(v[i].model);
        free(v[i].vector);
        free(v[i].payload);
    }
    free(v);
}

int store_vectors_read(store *s, store_vec_kind kind, const char *asset_id, const store_vec *after,
                       int limit, store_vec **out, int *n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL || n == NULL)
        return err_set(e, ERR_INVAL, "store_vectors_read: missing argument");
    *out = NULL;
    *n = 0;
    if ((kind != STORE_VEC_IMAGE && kind != STORE_VEC_FACE) || limit < 1 || limit > STORE_LIST_MAX)
        return err_set(e, ERR_INVAL, "vectors read: kind %d or limit %d outside 1..%d", (int)kind,
                       limit, STORE_LIST_MAX);
    if (asset_id != NULL) {
        int rc = check_asset_id(asset_id, e);
        if (rc)
            return rc;
    }
    if (after != NULL && kind == STORE_VEC_IMAGE && after->model == NULL)
        return err_set(e, ERR_INVAL, "vectors read: cursor without a model");
    return s->ops->vectors_read(s, kind, asset_id, after, limit, out, n, e);
}

static int check_name(const char *name, err_t *e)
{
    if (name != NULL && strlen(name) > STORE_PERSON_NAME_MAX)
        return err_set(e, ERR_INVAL, "person name: longer than %d bytes", STORE_PERSON_NAME_MAX);
    return ERR_OK;
}

int store_person_create(store *s, const char *name, int64_t *id, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || id == NULL)
        return err_set(e, ERR_INVAL, "store_person_create: missing argument");
    int rc = check_name(name, e);
    if (rc)
        return rc;
    return s->ops->person_create(s, name, id, e);
}

int store_faces_assign(store *s, const int64_t *face_ids, const int64_t *person_ids, int n,
                       int *assigned, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    int dummy = 0;
    if (assigned == NULL)
        assigned = &dummy;
    *assigned = 0;
    if (s == NULL || n < 0 || n > STORE_LIST_MAX ||
        (n > 0 && (face_ids == NULL || person_ids == NULL)))
        return err_set(e, ERR_INVAL, "store_faces_assign: missing argument or n %d outside 0..%d",
                       n, STORE_LIST_MAX);
    for (int i = 0; i < n; i++)
        if (face_ids[i] <= 0 || person_ids[i] <= 0)
            return err_set(e, ERR_INVAL, "faces assign: non-positive id at %d", i);
    if (n == 0)
        return ERR_OK;
    return s->ops->faces_assign(s, face_ids, person_ids, n, assigned, e);
}

int store_people_reset(store *s, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL)
        return err_set(e, ERR_INVAL, "store_people_reset: no store");
    return s->ops->people_reset(s, e);
}

int store_people_list(store *s, json_t **out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL)
        return err_set(e, ERR_INVAL, "store_people_list: missing argument");
    *out = NULL;
    store_person_row *rows = NULL;
    int n = 0;
    int rc = s->ops->people_read(s, &rows, &n, e);
    if (rc == ERR_OK) {
        *out = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(*out, person_row_json(&rows[i]));
    }
    store__person_rows_free(rows, n);
    return rc;
}

int store_person_get(store *s, int64_t id, json_t **out, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || out == NULL || id <= 0)
        return err_set(e, ERR_INVAL, "store_person_get: missing argument or id <= 0");
    *out = NULL;
    store_person p = {0};
    int rc = s->ops->person_read(s, id, &p, e);
    if (rc == ERR_OK)
        *out = person_json(id, &p);
    store__person_clear(&p);
    return rc;
}

int store_person_rename(store *s, int64_t id, const char *name, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || id <= 0)
        return err_set(e, ERR_INVAL, "store_person_rename: missing argument or id <= 0");
    int rc = check_name(name, e);
    if (rc)
        return rc;
    return s->ops->person_rename(s, id, name, e);
}

int store_people_merge(store *s, int64_t into, const int64_t *from, int n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || into <= 0 || from == NULL || n < 1 || n > 100)
        return err_set(e, ERR_INVAL, "people merge: need a target and 1..100 people to merge");
    for (int i = 0; i < n; i++)
        if (from[i] <= 0 || from[i] == into)
            return err_set(e, ERR_INVAL, "people merge: bad source id %lld", (long long)from[i]);
    return s->ops->people_merge(s, into, from, n, e);
}

/* --- uploads referenced by jobs ----------------------------------------------- */

/* The 64-hex "upload" of a source JSON text, into sha[65]; 0 when it has none. */
static int upload_of(const char *source, char sha[65])
{
    json_t *o = json_loads(source, 0, NULL);
    const char *v = json_string_value(json_object_get(o, "upload"));
    int ok = v != NULL && strlen(v) == 64 && strspn(v, "0123456789abcdef") == 64;
    if (ok)
        memcpy(sha, v, 65);
    json_decref(o);
    return ok;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int store_upload_shas(store *s, const char *asset_id, char ***shas, int *n, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || shas == NULL || n == NULL)
        return err_set(e, ERR_INVAL, "store_upload_shas: missing argument");
    *shas = NULL;
    *n = 0;
    char **srcs = NULL;
    int ns = 0;
    int rc = s->ops->upload_sources(s, asset_id, "%\"upload\"%", &srcs, &ns, e);
    if (rc)
        return rc;
    char **out = xcalloc((size_t)(ns > 0 ? ns : 1), sizeof *out);
    int k = 0;
    for (int i = 0; i < ns; i++) {
        char sha[65];
        if (upload_of(srcs[i], sha))
            out[k++] = xstrdup(sha);
        free(srcs[i]);
    }
    free(srcs);
    qsort(out, (size_t)k, sizeof *out, cmp_str);
    int u = 0;
    for (int i = 0; i < k; i++) {
        if (u > 0 && strcmp(out[u - 1], out[i]) == 0)
            free(out[i]);
        else
            out[u++] = out[i];
    }
    *shas = out;
    *n = u;
    return ERR_OK;
}

int store_upload_in_use(store *s, const char *sha, int *used, err_t *e)
{
    err_t local;
    e = E_OR_LOCAL(e, local);
    if (s == NULL || used == NULL || sha == NULL || strlen(sha) != 64 ||
        strspn(sha, "0123456789abcdef") != 64)
        return err_set(e, ERR_INVAL, "store_upload_in_use: need a 64-hex digest");
    *used = 0;
    char like[70], **srcs = NULL;
    int ns = 0;
    snprintf(like, sizeof like, "%%%s%%", sha);
    int rc = s->ops->upload_sources(s, NULL, like, &srcs, &ns, e);
    if (rc)
        return rc;
    for (int i = 0; i < ns; i++) {
        char got[65];
        if (upload_of(srcs[i], got) && strcmp(got, sha) == 0)
            *used = 1;
        free(srcs[i]);
    }
    free(srcs);
    return ERR_OK;
}

void store_strings_free(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}
