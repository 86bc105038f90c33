/*
 * client/index.c — `inferd index` (index.h).
 *
 * Threads: the main thread walks, submits and (with --watch) reads inotify;
 * an events thread follows GET /v1/events and counts the ends of our jobs;
 * a progress thread prints the live line. `lock` protects the counters, the
 * job table and the failure list; the HTTP handles belong to their thread.
 *
 * The events stream is opened, and its headers received, before the first
 * submission: the server starts a stream without Last-Event-ID at the
 * current end of its outbox, so every end of a job we submit afterwards is
 * on it. An end can still arrive before the response that gave us the job
 * id; the job table keeps such ends until the id is registered.
 *
 * The state file (TSV: size, mtime in ns, asset id; "-" for both numbers
 * forgets the asset) records a file once the server accepted its job, and
 * forgets it when its job fails, so that a new run retries failures and
 * skips what is done or still running (the server deduplicates the latter
 * anyway). Later lines win; the file is rewritten compactly at the end.
 */
#include "client/index.h"

#include <curl/curl.h>
#include <jansson.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/fileio.h"
#include "util/sha256.h"
#include "util/xalloc.h"

#define FAIL_KEEP 1000 /* failure reasons kept for the summary */

/* --- small hash tables ----------------------------------------------------- */

/* asset id -> (size, mtime): what the state file says was submitted. */
typedef struct {
    char *key;
    int64_t size, mtime_ns;
} sent_ent;

typedef struct {
    sent_ent *e;
    size_t cap, n;
} sent_map;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static sent_ent *sent_find(sent_map *m, const char *key, int insert)
{
    if (insert && (m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        sent_ent *e = xcalloc(cap, sizeof *e);
        for (size_t i = 0; i < m->cap; i++) {
            if (m->e[i].key == NULL)
                continue;
            size_t k = hash_str(m->e[i].key) & (cap - 1);
            while (e[k].key != NULL)
                k = (k + 1) & (cap - 1);
            e[k] = m->e[i];
        }
        free(m->e);
        m->e = e;
        m->cap = cap;
    }
    if (m->cap == 0)
        return NULL;
    size_t k = hash_str(key) & (m->cap - 1);
    while (m->e[k].key != NULL) {
        if (strcmp(m->e[k].key, key) == 0)
            return &m->e[k];
        k = (k + 1) & (m->cap - 1);
    }
    if (!insert)
        return NULL;
    m->e[k].key = xstrdup(key);
    m->e[k].size = m->e[k].mtime_ns = -1;
    m->n++;
    return &m->e[k];
}

static void sent_free(sent_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->e[i].key);
    free(m->e);
}

/* job id -> what we know of it. */
enum { J_OURS = 1, J_DONE = 2, J_FAILED = 4 };

typedef struct {
    int64_t id; /* 0: empty */
    unsigned flags;
    char *asset; /* ours: its asset id, for the state file on failure */
} job_ent;

typedef struct {
    job_ent *e;
    size_t cap, n;
} job_map;

static job_ent *job_find(job_map *m, int64_t id)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        job_ent *e = xcalloc(cap, sizeof *e);
        for (size_t i = 0; i < m->cap; i++) {
            if (m->e[i].id == 0)
                continue;
            size_t k = (size_t)((uint64_t)m->e[i].id * 11400714819323198485ull) & (cap - 1);
            while (e[k].id != 0)
                k = (k + 1) & (cap - 1);
            e[k] = m->e[i];
        }
        free(m->e);
        m->e = e;
        m->cap = cap;
    }
    size_t k = (size_t)((uint64_t)id * 11400714819323198485ull) & (m->cap - 1);
    while (m->e[k].id != 0 && m->e[k].id != id)
        k = (k + 1) & (m->cap - 1);
    if (m->e[k].id == 0) {
        m->e[k].id = id;
        m->n++;
    }
    return &m->e[k];
}

/* --- the run ----------------------------------------------------------------- */

typedef struct {
    char asset[STORE_ASSET_ID_MAX + 1];
    char *rel; /* path relative to the media root */
    int64_t size, mtime_ns;
} item;

typedef struct {
    const config *cfg;
    const char *cmd;
    char base[600];      /* the URL without a trailing slash */
    char auth[300];      /* "Authorization: Bearer ..." or "" */
    char root[PATH_MAX]; /* the media root, resolved */
    size_t root_len;
    char state_path[PATH_MAX];
    FILE *state; /* appended to */
    sent_map sent;
    CURL *http; /* main thread's */
    struct curl_slist *hdrs;

    item *batch;
    int nbatch;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* counters (lock) */
    long found, unchanged, queued, refused, done, failed;
    job_map jobs;
    char **fails; /* "asset: reason" */
    int nfails;
    long fails_more;
    int events_up;     /* the stream's headers arrived (1) or it failed (-1) */
    int events_status; /* its HTTP status */
    int events_stop;   /* the events thread must end */
    int progress_stop;
    int64_t t0_ms, first_submit_ms;
    int unreachable; /* a request could not reach the server */

    int inotify_fd;
    char **wdirs; /* wd -> directory (absolute) */
    int nwdirs;
} run;

static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    if (g_interrupted)
        _exit(130); /* a second Ctrl-C: leave now */
    g_interrupted = 1;
}

static void fail_add(run *r, const char *asset, const char *why)
{
    /* lock held */
    if (r->nfails >= FAIL_KEEP) {
        r->fails_more++;
        return;
    }
    size_t n = strlen(asset) + strlen(why) + 3;
    char *s = xmalloc(n);
    snprintf(s, n, "%s: %s", asset, why);
    r->fails = xrealloc(r->fails, (size_t)(r->nfails + 1) * sizeof *r->fails);
    r->fails[r->nfails++] = s;
}

static void state_put(run *r, const char *asset, int64_t size, int64_t mtime_ns)
{
    sent_ent *s = sent_find(&r->sent, asset, 1);
    s->size = size;
    s->mtime_ns = mtime_ns;
    if (r->state == NULL)
        return;
    if (size < 0)
        fprintf(r->state, "-\t-\t%s\n", asset);
    else
        fprintf(r->state, "%lld\t%lld\t%s\n", (long long)size, (long long)mtime_ns, asset);
}

/* Loads the state file (missing: empty) and opens it for appending. */
static int state_open(run *r)
{
    FILE *f = fopen(r->state_path, "r");
    if (f != NULL) {
        char line[PATH_MAX + 64];
        while (fgets(line, sizeof line, f) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            char *t1 = strchr(line, '\t');
            char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
            if (t2 == NULL || !store_asset_id_valid(t2 + 1))
                continue;
            *t1 = *t2 = '\0';
            sent_ent *s = sent_find(&r->sent, t2 + 1, 1);
            s->size = line[0] == '-' ? -1 : atoll(line);
            s->mtime_ns = line[0] == '-' ? -1 : atoll(t1 + 1);
        }
        fclose(f);
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", r->state_path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (fileio_mkdir_p(dir, 0700, NULL) != 0) {
            fprintf(stderr, "%s: --state: cannot make %s: %s\n", r->cmd, dir, strerror(errno));
            return -1;
        }
    }
    r->state = fopen(r->state_path, "a");
    if (r->state == NULL) {
        fprintf(stderr, "%s: --state %s: %s\n", r->cmd, r->state_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Rewrites the state file with one line per asset still remembered. */
static void state_compact(run *r)
{
    if (r->state == NULL)
        return;
    fclose(r->state);
    r->state = NULL;
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->state_path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return; /* the appended file stays valid */
    for (size_t i = 0; i < r->sent.cap; i++) {
        const sent_ent *s = &r->sent.e[i];
        if (s->key != NULL && s->size >= 0)
            fprintf(f, "%lld\t%lld\t%s\n", (long long)s->size, (long long)s->mtime_ns, s->key);
    }
    if (fflush(f) == 0 && fsync(fileno(f)) == 0 && fclose(f) == 0)
        rename(tmp, r->state_path);
    else
        unlink(tmp);
}

/* --- HTTP -------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n;
} membuf;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    membuf *b = ud;
    size_t n = sz * nm;
    if (b->n + n > (64u << 20))
        return 0;
    b->p = xrealloc(b->p, b->n + n + 1);
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/*
 * One request on the main thread's handle: `body` NULL for GET. Returns the
 * HTTP status with the parsed JSON answer in *out (NULL if not JSON), or 0
 * when the server could not be reached (why in `why`).
 */
static long http_json(run *r, const char *path, const char *body, json_t **out, char *why,
                      size_t whylen)
{
    char url[800];
    snprintf(url, sizeof url, "%s%s", r->base, path);
    membuf b = {0};
    CURL *h = r->http;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    *out = NULL;
    if (cc != CURLE_OK) {
        snprintf(why, whylen, "%.500s: %s", url, curl_easy_strerror(cc));
    } else {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (b.p != NULL)
            *out = json_loads(b.p, 0, NULL);
        snprintf(why, whylen, "HTTP %ld from %.500s", status, url);
    }
    free(b.p);
    return status;
}

/* The message of an {"error": {"code", "message"}} answer, or `dflt`. */
static const char *error_message(const json_t *o, const char *dflt)
{
    const char *m = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    return m != NULL ? m : dflt;
}

/* --- events ------------------------------------------------------------------ */

typedef struct {
    run *r;
    char line[16384];
    size_t len;
} sse;

/* One "data:" payload of the stream: counts the end of a job. */
static void on_event(run *r, const char *data)
{
    json_t *o = json_loads(data, 0, NULL);
    if (o == NULL)
        return;
    json_int_t id = json_integer_value(json_object_get(o, "job_id"));
    const char *state = json_string_value(json_object_get(o, "state"));
    unsigned end = state == NULL                     ? 0
                   : strcmp(state, "done") == 0      ? J_DONE
                   : strcmp(state, "failed") == 0    ? J_FAILED
                   : strcmp(state, "cancelled") == 0 ? J_FAILED
                                                     : 0;
    if (id > 0 && end != 0) {
        pthread_mutex_lock(&r->lock);
        job_ent *j = job_find(&r->jobs, id);
        if (!(j->flags & (J_DONE | J_FAILED))) {
            j->flags |= end;
            if (j->flags & J_OURS) {
                if (end == J_DONE) {
                    r->done++;
                } else {
                    r->failed++;
                    const char *why = error_message(o, state);
                    fail_add(r, j->asset, why);
                    state_put(r, j->asset, -1, -1); /* retried by the next run */
                }
            }
            pthread_cond_broadcast(&r->cond);
        }
        pthread_mutex_unlock(&r->lock);
    }
    json_decref(o);
}

static size_t on_sse(char *p, size_t sz, size_t nm, void *ud)
{
    sse *s = ud;
    size_t n = sz * nm;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\n') {
            s->line[s->len] = '\0';
            if (strncmp(s->line, "data:", 5) == 0)
                on_event(s->r, s->line + 5 + (s->line[5] == ' '));
            s->len = 0;
        } else if (s->len + 1 < sizeof s->line) {
            s->line[s->len++] = ch;
        }
    }
    return n;
}

/* The stream is up once a 200's headers are in; any other status fails it. */
static size_t on_sse_header(char *p, size_t sz, size_t nm, void *ud)
{
    run *r = ud;
    size_t n = sz * nm;
    if (n > 9 && strncmp(p, "HTTP/", 5) == 0) {
        const char *sp = memchr(p, ' ', n);
        pthread_mutex_lock(&r->lock);
        r->events_status = sp != NULL ? atoi(sp + 1) : 0;
        pthread_mutex_unlock(&r->lock);
    } else if (n <= 2) { /* the blank line after the headers */
        pthread_mutex_lock(&r->lock);
        if (r->events_up == 0)
            r->events_up = r->events_status == 200 ? 1 : -1;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
    }
    return n;
}

static int sse_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    run *r = ud;
    (void)a, (void)b, (void)c, (void)d;
    pthread_mutex_lock(&r->lock);
    int stop = r->events_stop;
    pthread_mutex_unlock(&r->lock);
    return stop; /* non-zero aborts the transfer */
}

static void *events_main(void *arg)
{
    run *r = arg;
    sse *s = xcalloc(1, sizeof *s);
    s->r = r;
    CURL *h = curl_easy_init();
    char url[800];
    snprintf(url, sizeof url, "%s/v1/events", r->base);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_sse);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_sse_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, sse_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_perform(h);
    curl_easy_cleanup(h);
    free(s);
    pthread_mutex_lock(&r->lock);
    if (r->events_up == 0 || !r->events_stop)
        r->events_up = -1; /* never opened, or ended under us */
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* --- progress ---------------------------------------------------------------- */

static void fmt_duration(char *out, size_t n, double s)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(out, n, "%lds", t);
}

/* The progress line from the counters (lock held). */
static void progress_line(run *r, char *out, size_t n)
{
    double since =
        r->first_submit_ms > 0 ? (double)(clock_mono_ms() - r->first_submit_ms) / 1e3 : 0.0;
    long ended = r->done + r->failed;
    double rate = since > 0.5 ? (double)ended / since : 0.0;
    long left = r->queued - ended;
    char eta[32] = "-";
    if (rate > 0 && left > 0)
        fmt_duration(eta, sizeof eta, (double)left / rate);
    else if (left <= 0 && r->queued > 0)
        snprintf(eta, sizeof eta, "0s");
    snprintf(out, n,
             "found %ld  unchanged %ld  queued %ld  done %ld  failed %ld  refused %ld  "
             "%.1f images/s  ETA %s",
             r->found, r->unchanged, r->queued, r->done, r->failed, r->refused, rate, eta);
}

/* Waits on the run's condition until `deadline_ms` (monotonic) or a broadcast. Lock held. */
static void wait_until(run *r, int64_t deadline_ms)
{
    int64_t left = deadline_ms - clock_mono_ms();
    if (left <= 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + left * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&r->cond, &r->lock, &ts);
}

/* A live line on a terminal (4 times a second), else a plain line every 5 s. */
static void *progress_main(void *arg)
{
    run *r = arg;
    int tty = isatty(2);
    int64_t every = tty ? 250 : 5000;
    int64_t next = clock_mono_ms() + every;
    pthread_mutex_lock(&r->lock);
    while (!r->progress_stop) {
        wait_until(r, next);
        if (r->progress_stop || clock_mono_ms() < next)
            continue;
        next += every;
        char line[300];
        progress_line(r, line, sizeof line);
        if (tty)
            fprintf(stderr, "\r\033[K%s", line);
        else
            fprintf(stderr, "%s\n", line);
        fflush(stderr);
    }
    if (tty)
        fprintf(stderr, "\r\033[K");
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* --- submitting -------------------------------------------------------------- */

static json_t *item_json(const item *it)
{
    return json_pack("{sss{ss}s{sssIsI}}", "asset_id", it->asset, "source", "path", it->rel,
                     "payload", "path", it->rel, "size", (json_int_t)it->size, "mtime",
                     (json_int_t)(it->mtime_ns / 1000000000));
}

/* Records the answer for item `it`: a job (registered) or a refusal. Lock not held. */
static void took(run *r, const item *it, const json_t *answer, long status)
{
    pthread_mutex_lock(&r->lock);
    json_int_t id = json_integer_value(json_object_get(answer, "id"));
    if (id > 0 && (status == 200 || status == 202)) {
        r->queued++;
        state_put(r, it->asset, it->size, it->mtime_ns);
        job_ent *j = job_find(&r->jobs, id);
        j->flags |= J_OURS;
        free(j->asset);
        j->asset = xstrdup(it->asset);
        if (j->flags & J_DONE) {
            r->done++;
        } else if (j->flags & J_FAILED) {
            r->failed++;
            fail_add(r, it->asset, "failed (see GET /v1/jobs/ID)");
            state_put(r, it->asset, -1, -1);
        }
    } else {
        r->refused++;
        char why[64];
        snprintf(why, sizeof why, "refused (HTTP %ld)", status);
        fail_add(r, it->asset, error_message(answer, why));
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* Sends the pending batch. 0, or -1 when the server could not be reached. */
static int flush(run *r)
{
    if (r->nbatch == 0)
        return 0;
    pthread_mutex_lock(&r->lock);
    if (r->first_submit_ms == 0)
        r->first_submit_ms = clock_mono_ms();
    pthread_mutex_unlock(&r->lock);
    char why[700];
    int rc = 0;
    if (r->cfg->batch == 1) {
        for (int i = 0; i < r->nbatch && rc == 0; i++) {
            json_t *o = item_json(&r->batch[i]);
            char *body = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            json_t *ans = NULL;
            long st = http_json(r, "/v1/jobs", body, &ans, why, sizeof why);
            free(body);
            if (st == 0 || st >= 500 || st == 401) {
                fprintf(stderr, "\n%s: %s: %s\n", r->cmd, why, error_message(ans, ""));
                rc = -1;
            } else {
                took(r, &r->batch[i], ans, st);
            }
            json_decref(ans);
        }
    } else {
        json_t *arr = json_array();
        for (int i = 0; i < r->nbatch; i++)
            json_array_append_new(arr, item_json(&r->batch[i]));
        json_t *o = json_pack("{so}", "jobs", arr);
        char *body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        json_t *ans = NULL;
        long st = http_json(r, "/v1/jobs/batch", body, &ans, why, sizeof why);
        free(body);
        json_t *jobs = json_object_get(ans, "jobs");
        if (st == 0 || st >= 500 || st == 401 || st == 404 || st == 405 || st == 413) {
            fprintf(stderr, "\n%s: %s: %s\n", r->cmd, why, error_message(ans, ""));
            rc = -1;
        } else if (json_is_array(jobs) && json_array_size(jobs) == (size_t)r->nbatch) {
            for (int i = 0; i < r->nbatch; i++) {
                json_t *a = json_array_get(jobs, (size_t)i);
                took(r, &r->batch[i], a, json_is_object(json_object_get(a, "error")) ? 400 : st);
            }
        } else { /* no item valid: the first one's error for all */
            for (int i = 0; i < r->nbatch; i++)
                took(r, &r->batch[i], ans, st);
        }
        json_decref(ans);
    }
    for (int i = 0; i < r->nbatch; i++)
        free(r->batch[i].rel);
    r->nbatch = 0;
    if (r->state != NULL)
        fflush(r->state);
    if (rc != 0)
        r->unreachable = 1;
    return rc;
}

/* The asset id of a file at `rel` under the media root: the path when it is a valid id. */
static void asset_id_of(const char *rel, char out[STORE_ASSET_ID_MAX + 1])
{
    if (store_asset_id_valid(rel)) {
        snprintf(out, STORE_ASSET_ID_MAX + 1, "%s", rel);
        return;
    }
    char hex[65];
    sha256_hex(rel, strlen(rel), hex);
    snprintf(out, STORE_ASSET_ID_MAX + 1, "path:%.40s", hex);
}

/*
 * Considers one regular file at absolute path `abs`: an image? under the
 * media root? changed? Then queues it (and sends a full batch). -1 when the
 * server could not be reached.
 */
static int consider(run *r, const char *abs, const struct stat *st)
{
    int fd = open(abs, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    unsigned char head[32];
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n <= 0 || index_sniff(head, (size_t)n) == NULL)
        return 0;
    pthread_mutex_lock(&r->lock);
    r->found++;
    pthread_mutex_unlock(&r->lock);
    if (strncmp(abs, r->root, r->root_len) != 0 || abs[r->root_len] != '/') {
        pthread_mutex_lock(&r->lock);
        r->refused++;
        fail_add(r, abs,
                 "outside the media root: give --media-root a folder above it (and the "
                 "server the same --media-root)");
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    const char *rel = abs + r->root_len + 1;
    item it = {.size = (int64_t)st->st_size,
               .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec};
    asset_id_of(rel, it.asset);
    pthread_mutex_lock(&r->lock);
    sent_ent *s = sent_find(&r->sent, it.asset, 0);
    int same = !r->cfg->all && s != NULL && s->size == it.size && s->mtime_ns == it.mtime_ns;
    if (same)
        r->unchanged++;
    pthread_mutex_unlock(&r->lock);
    if (same)
        return 0;
    it.rel = xstrdup(rel);
    r->batch[r->nbatch++] = it;
    if (r->nbatch >= r->cfg->batch)
        return flush(r);
    return 0;
}

static void watch_add(run *r, const char *dir)
{
    if (r->inotify_fd < 0)
        return;
    int wd = inotify_add_watch(r->inotify_fd, dir,
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR);
    if (wd < 0) {
        fprintf(stderr, "\n%s: --watch: %s: %s\n", r->cmd, dir, strerror(errno));
        return;
    }
    if (wd >= r->nwdirs) {
        int n = wd + 64;
        r->wdirs = xrealloc(r->wdirs, (size_t)n * sizeof *r->wdirs);
        memset(r->wdirs + r->nwdirs, 0, (size_t)(n - r->nwdirs) * sizeof *r->wdirs);
        r->nwdirs = n;
    }
    free(r->wdirs[wd]);
    r->wdirs[wd] = xstrdup(dir);
}

/* Walks `dir` (absolute, resolved) depth first; hidden entries and symlinked folders skipped. */
static int walk(run *r, const char *dir)
{
    watch_add(r, dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        pthread_mutex_lock(&r->lock);
        fail_add(r, dir, strerror(errno));
        r->refused++;
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && !g_interrupted && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc = walk(r, path);
        else if (S_ISREG(st.st_mode))
            rc = consider(r, path, &st);
    }
    closedir(d);
    return rc;
}

/* --watch: reads inotify until Ctrl-C; a file that settles is considered, a new folder walked. */
static int watch_loop(run *r)
{
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    int rc = 0;
    while (!g_interrupted && rc == 0) {
        struct pollfd p = {.fd = r->inotify_fd, .events = POLLIN};
        int pr = poll(&p, 1, r->nbatch > 0 ? 300 : 1000);
        if (pr <= 0) {
            rc = flush(r); /* quiet for a moment: send what is pending */
            continue;
        }
        ssize_t n = read(r->inotify_fd, buf, sizeof buf);
        for (ssize_t off = 0; n > 0 && off < n && rc == 0;) {
            const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
            off += (ssize_t)(sizeof *ev + ev->len);
            if (ev->len == 0 || ev->name[0] == '.' || ev->wd < 0 || ev->wd >= r->nwdirs ||
                r->wdirs[ev->wd] == NULL)
                continue;
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", r->wdirs[ev->wd], ev->name);
            struct stat st;
            if (lstat(path, &st) != 0)
                continue;
            if (S_ISDIR(st.st_mode) && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
                rc = walk(r, path);
            else if (S_ISREG(st.st_mode) && (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)))
                rc = consider(r, path, &st);
        }
    }
    if (rc == 0)
        rc = flush(r);
    return rc;
}

const char *index_sniff(const unsigned char *h, size_t n)
{
    if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF)
        return "jpeg";
    if (n >= 8 && memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "png";
    if (n >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0)
        return "webp";
    if (n >= 6 && (memcmp(h, "GIF87a", 6) == 0 || memcmp(h, "GIF89a", 6) == 0))
        return "gif";
    if (n >= 4 && (memcmp(h, "II*\0", 4) == 0 || memcmp(h, "MM\0*", 4) == 0))
        return "tiff";
    if (n >= 12 && memcmp(h + 4, "ftyp", 4) == 0) {
        static const char *const heif[] = {"heic", "heix", "hevc", "hevx", "heim",
                                           "heis", "hevm", "hevs", "mif1", "msf1"};
        for (size_t i = 0; i < sizeof heif / sizeof heif[0]; i++)
            if (memcmp(h + 8, heif[i], 4) == 0)
                return "heif";
        if (memcmp(h + 8, "avif", 4) == 0 || memcmp(h + 8, "avis", 4) == 0)
            return "avif";
    }
    return NULL;
}

/* The default state file: $XDG_STATE_HOME or ~/.local/state, inferd/index-HOST-PORT.tsv. */
static void default_state(const char *url, char *out, size_t n)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char base[PATH_MAX - 256];
    if (xdg != NULL && xdg[0] == '/')
        snprintf(base, sizeof base, "%.3800s/inferd", xdg);
    else
        snprintf(base, sizeof base, "%.3800s/.local/state/inferd", home != NULL ? home : ".");
    const char *h = strstr(url, "://");
    h = h != NULL ? h + 3 : url;
    char name[200];
    size_t k = 0;
    for (; *h && *h != '/' && k + 1 < sizeof name; h++)
        name[k++] = (*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') ||
                            (*h >= '0' && *h <= '9') || *h == '.' || *h == '-'
                        ? *h
                        : '-';
    name[k] = '\0';
    snprintf(out, n, "%s/index-%s.tsv", base, name);
}

static void summary(run *r, int64_t wall_ms, int waited)
{
    pthread_mutex_lock(&r->lock);
    long left = r->queued - r->done - r->failed;
    printf("%s: %ld image files found, %ld unchanged, %ld queued, %ld done, %ld failed, "
           "%ld refused in %.1f s\n",
           r->cmd, r->found, r->unchanged, r->queued, r->done, r->failed, r->refused,
           (double)wall_ms / 1000.0);
    if (left > 0)
        printf("%s: %ld jobs %s on the server (GET /v1/jobs?state=queued)\n", r->cmd, left,
               waited ? "still running" : "submitted and running");
    for (int i = 0; i < r->nfails && i < 20; i++)
        printf("  %s\n", r->fails[i]);
    if (r->nfails > 20 || r->fails_more > 0)
        printf("  ... and %ld more\n",
               (long)(r->nfails - 20 > 0 ? r->nfails - 20 : 0) + r->fails_more);
    pthread_mutex_unlock(&r->lock);
    fflush(stdout);
}

int index_main(int argc, char **argv)
{
    static const char cmdname[] = "inferd index";
    argv[0] = (char *)cmdname;
    config cfg;
    char msg[600];
    int prc = config_parse_role(&cfg, CONFIG_ROLE_INDEX, argc, argv, msg, sizeof msg);
    if (prc == 1)
        return 0;
    if (prc != 0) {
        config_print_error(cmdname, msg);
        return 2;
    }
    if (strncmp(cfg.url, "http://", 7) != 0 && strncmp(cfg.url, "https://", 8) != 0) {
        fprintf(stderr, "%s: --url must start with http:// or https://\n", cmdname);
        return 2;
    }
    run *r = xcalloc(1, sizeof *r);
    r->cfg = &cfg;
    r->cmd = cmdname;
    r->inotify_fd = -1;
    snprintf(r->base, sizeof r->base, "%s", cfg.url);
    size_t bl = strlen(r->base);
    while (bl > 0 && r->base[bl - 1] == '/')
        r->base[--bl] = '\0';
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->batch = xcalloc((size_t)cfg.batch, sizeof *r->batch);
    r->t0_ms = clock_mono_ms();
    int status = 0;
    pthread_t ev_th, pr_th;
    int ev_ok = 0, pr_ok = 0;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    r->http = curl_easy_init();
    r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (cfg.token[0] != '\0') {
        snprintf(r->auth, sizeof r->auth, "Authorization: Bearer %s", cfg.token);
        r->hdrs = curl_slist_append(r->hdrs, r->auth);
    }

    /* The media root: ours, or the one the server reports. */
    char why[700];
    json_t *info = NULL;
    long st = http_json(r, "/v1/info", NULL, &info, why, sizeof why);
    if (st != 200) {
        fprintf(stderr, "%s: cannot reach inferd: %s%s%s\n", cmdname, why, info ? ": " : "",
                info ? error_message(info, "") : "");
        json_decref(info);
        status = st == 401 ? 2 : 3;
        goto out;
    }
    const char *mr =
        cfg.media_root[0] ? cfg.media_root : json_string_value(json_object_get(info, "media_root"));
    if (mr == NULL || realpath(mr, r->root) == NULL) {
        if (mr == NULL)
            fprintf(stderr,
                    "%s: the server at %s has no --media-root, so it reads no files by path: "
                    "start it with --media-root DIR (a folder above your photos), or give "
                    "--media-root here if it has one this machine sees under another name\n",
                    cmdname, r->base);
        else
            fprintf(stderr, "%s: --media-root %s: %s\n", cmdname, mr, strerror(errno));
        json_decref(info);
        status = 2;
        goto out;
    }
    json_decref(info);
    r->root_len = strlen(r->root);
    if (r->root_len == 1) /* "/" */
        r->root_len = 0;

    char(*roots)[PATH_MAX] = xcalloc((size_t)cfg.nargs, sizeof *roots);
    for (int i = 0; i < cfg.nargs; i++) {
        struct stat sb;
        errno = 0;
        if (realpath(cfg.args[i], roots[i]) == NULL || stat(roots[i], &sb) != 0 ||
            !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "%s: %s: %s\n", cmdname, cfg.args[i],
                    errno != 0 ? strerror(errno) : "not a folder");
            free(roots);
            status = 2;
            goto out;
        }
        if (strncmp(roots[i], r->root, r->root_len) != 0 ||
            (roots[i][r->root_len] != '/' && roots[i][r->root_len] != '\0')) {
            fprintf(stderr,
                    "%s: %s is outside the media root %s: jobs name files relative to it; give "
                    "the server (and --media-root here) a folder above it\n",
                    cmdname, roots[i], r->root);
            free(roots);
            status = 2;
            goto out;
        }
    }

    if (cfg.state_file[0])
        snprintf(r->state_path, sizeof r->state_path, "%s", cfg.state_file);
    else
        default_state(r->base, r->state_path, sizeof r->state_path);
    if (state_open(r) != 0) {
        free(roots);
        status = 2;
        goto out;
    }
    if (cfg.watch) {
        r->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (r->inotify_fd < 0) {
            fprintf(stderr, "%s: --watch: inotify: %s\n", cmdname, strerror(errno));
            free(roots);
            status = 2;
            goto out;
        }
    }

    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Follow the events from before the first submission. */
    if (!cfg.no_wait || cfg.watch) {
        ev_ok = pthread_create(&ev_th, NULL, events_main, r) == 0;
        pthread_mutex_lock(&r->lock);
        while (ev_ok && r->events_up == 0)
            pthread_cond_wait(&r->cond, &r->lock);
        int up = r->events_up;
        pthread_mutex_unlock(&r->lock);
        if (up < 0)
            fprintf(stderr, "%s: GET /v1/events failed: no progress of the jobs will be shown\n",
                    cmdname);
    }
    if (!cfg.quiet)
        pr_ok = pthread_create(&pr_th, NULL, progress_main, r) == 0;

    int rc = 0;
    for (int i = 0; i < cfg.nargs && rc == 0 && !g_interrupted; i++)
        rc = walk(r, roots[i]);
    free(roots);
    if (rc == 0 && !g_interrupted)
        rc = flush(r);
    if (rc == 0 && cfg.watch)
        rc = watch_loop(r);

    /* Wait for our jobs to end (unless told not to, interrupted, or blind). */
    int waited = 0;
    if (rc == 0 && !cfg.no_wait && !g_interrupted) {
        pthread_mutex_lock(&r->lock);
        while (!g_interrupted && r->events_up > 0 && r->done + r->failed < r->queued)
            wait_until(r, clock_mono_ms() + 200); /* also wakes for Ctrl-C */
        waited = r->events_up > 0;
        pthread_mutex_unlock(&r->lock);
    }

    pthread_mutex_lock(&r->lock);
    r->events_stop = 1;
    r->progress_stop = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (pr_ok)
        pthread_join(pr_th, NULL);
    if (ev_ok)
        pthread_join(ev_th, NULL);
    state_compact(r);
    summary(r, clock_mono_ms() - r->t0_ms, waited);
    if (g_interrupted) {
        fprintf(stderr, "%s: interrupted: what was submitted keeps running on the server\n",
                cmdname);
        status = 130;
    } else if (r->unreachable) {
        status = 3;
    } else {
        status = r->failed > 0 || r->refused > 0 ? 1 : 0;
    }
out:
    if (r->state != NULL)
        fclose(r->state);
    if (r->inotify_fd >= 0)
        close(r->inotify_fd);
    for (int i = 0; i < r->nwdirs; i++)
        free(r->wdirs[i]);
    free(r->wdirs);
    for (int i = 0; i < r->nfails; i++)
        free(r->fails[i]);
    free(r->fails);
    for (size_t i = 0; i < r->jobs.cap; i++)
        free(r->jobs.e[i].asset);
    free(r->jobs.e);
    sent_free(&r->sent);
    for (int i = 0; i < r->nbatch; i++)
        free(r->batch[i].rel);
    free(r->batch);
    curl_slist_free_all(r->hdrs);
    curl_easy_cleanup(r->http);
    curl_global_cleanup();
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return status;
}
