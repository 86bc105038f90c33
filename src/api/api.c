/*
 * api/api.c — the libmicrohttpd daemon behind inferd's HTTP API: binding,
 * the access handler (routing, bearer token, body limits), JSON responses and
 * the counts ticker that keeps /health off the store (and sweeps the upload
 * spool once a minute).
 *
 * Request flow. libmicrohttpd calls the access handler several times per
 * request. The first call (no request state yet) decides everything that can
 * be decided from the request line and headers: 404 unknown route, 405 wrong
 * method (with Allow), 401 missing or wrong token, 400 malformed id, and 413
 * when Content-Length already exceeds the limit, so an oversized upload is
 * refused before a byte of it is read. Otherwise it allocates an `api_req`.
 * What a body may be follows the route, never the Content-Type alone: only
 * POST /v1/jobs and POST /v1/predict take an image (image/... or
 * application/octet-stream), which is written to a spool file as it arrives
 * (fetch_upload: never held in memory, up to cfg->max_body); every other
 * body is JSON, capped at 1 MiB in memory, and an image Content-Type there
 * is refused with 415 before the body is read. Past its limit the rest of a
 * body is drained and dropped, and the final call answers 413. The final
 * call (no more upload data) runs the handler.
 *
 * /health. Guarantee 1 says /health answers in milliseconds while every slot
 * runs inference. Reading job counts from the store on each request was
 * rejected: a SQLite read can wait behind a writer (a commit or a claim) for
 * up to the busy timeout. Instead a ticker thread refreshes a cached copy of
 * store_counts every API_COUNTS_REFRESH_MS; /health and /metrics copy that
 * cache under `lock`, which is only ever held for a memcpy. Slot numbers come
 * from worker_get_stats, which takes only the worker's own short lock.
 *
 * Threading: libmicrohttpd runs one thread per connection plus its listener
 * thread; the ticker is one more thread. `lock` protects `counts` and is the
 * mutex of `cond` (the ticker and SSE streams without an events hub sleep on
 * it; api_stop broadcasts it). Lock order: `lock` is a leaf — no store,
 * worker, events or libmicrohttpd call is made while holding it. `stopping`
 * is atomic. All signals should be blocked by the caller before api_start so
 * that libmicrohttpd's threads inherit the mask.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/api_int.h"
#include "util/log.h"
#include "util/xalloc.h"
#include "util/clock.h"

/* Per-request state, from the first access-handler call to the completion callback. */
typedef struct {
    api_route route;
    int raw;      /* image body, spooled to `upload` as it arrives */
    size_t limit; /* body cap */
    char *body;   /* JSON body (never an image) */
    size_t len, cap;
    fetch_upload *upload; /* raw: the spool file; the handler may take it (sets it NULL) */
    int too_large; /* body went past `limit`: drained, answered 413 at the end */
    err_t upload_err; /* raw: a write failed (ERR_IO): drained, answered at the end */
} api_req;

/* --- responses ------------------------------------------------------------- */

/*
 * Serialises `o` (reference consumed) with `flags` plus a final newline, which
 * makes curl output and line-based tests pleasant. Returns malloc'd text the
 * caller frees (or hands to MHD) and its length in *len; NULL on failure.
 */
static char *json_line(json_t *o, size_t flags, size_t *len)
{
    char *s = json_dumps(o, flags);
    json_decref(o);
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (t == NULL) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    *len = n + 1;
    return t;
}

static enum MHD_Result queue_buffer_cc(struct MHD_Connection *c, unsigned status, char *text,
                                       size_t len, const char *ctype, const char *location,
                                       const char *cache)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, text, text != NULL ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        free(text);
        return MHD_NO;
    }
    if (ctype != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (location != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cache);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result queue_buffer(struct MHD_Connection *c, unsigned status, char *text,
                                    size_t len, const char *ctype, const char *location)
{
    return queue_buffer_cc(c, status, text, len, ctype, location, "no-store");
}

enum MHD_Result api__send_bytes(struct MHD_Connection *c, unsigned status, void *data, size_t len,
                                const char *ctype, const char *cache)
{
    return queue_buffer_cc(c, status, data, len, ctype, NULL, cache);
}

enum MHD_Result api__send_json(struct MHD_Connection *c, unsigned status, json_t *body,
                               const char *location)
{
    if (body == NULL)
        return queue_buffer(c, status, NULL, 0, NULL, location);
    size_t n;
    char *t = json_line(body, JSON_COMPACT | JSON_REAL_PRECISION(7), &n);
    if (t == NULL)
        return MHD_NO;
    return queue_buffer(c, status, t, n, "application/json", location);
}

static enum MHD_Result send_errorv(struct MHD_Connection *c, unsigned status, const char *code,
                                   const char *allow, const char *fmt, va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    json_t *o = json_pack("{s{s:s,s:s}}", "error", "code", code, "message", msg);
    if (o == NULL) /* invalid UTF-8 in the message (it may echo the request) */
        o = json_pack("{s{s:s,s:s}}", "error", "code", code, "message", "(unprintable)");
    size_t n;
    char *t = json_line(o, JSON_COMPACT, &n);
    if (t == NULL)
        return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(n, t, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(t);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"inferd\"");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result api__send_error(struct MHD_Connection *c, unsigned status, const char *code,
                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result r = send_errorv(c, status, code, NULL, fmt, ap);
    va_end(ap);
    return r;
}

static enum MHD_Result send_error_allow(struct MHD_Connection *c, const char *allow,
                                        const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static enum MHD_Result send_error_allow(struct MHD_Connection *c, const char *allow,
                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result r =
        send_errorv(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", allow, fmt, ap);
    va_end(ap);
    return r;
}

enum MHD_Result api__send_err(struct MHD_Connection *c, const err_t *e)
{
    unsigned status;
    const char *code = err_name(e->code);
    switch (e->code) {
    case ERR_INVAL:
    case ERR_FORMAT:
        status = MHD_HTTP_BAD_REQUEST;
        break;
    case ERR_NOENT:
        status = MHD_HTTP_NOT_FOUND;
        break;
    case ERR_FORBIDDEN:
        status = MHD_HTTP_FORBIDDEN;
        break;
    case ERR_TOOBIG:
        status = MHD_HTTP_CONTENT_TOO_LARGE;
        break;
    case ERR_DECODE:
    case ERR_CHECKSUM:
        status = MHD_HTTP_UNPROCESSABLE_CONTENT;
        break;
    case ERR_UNSUPPORTED_FORMAT:
        status = MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
        break;
    case ERR_CONFLICT:
        status = MHD_HTTP_CONFLICT;
        break;
    case ERR_BUSY:
    case ERR_UNAVAILABLE:
    case ERR_TIMEOUT:
        status = MHD_HTTP_SERVICE_UNAVAILABLE;
        break;
    case ERR_FETCH:
        status = MHD_HTTP_BAD_GATEWAY;
        break;
    default:
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        break;
    }
    if (status >= 500)
        log_warn("api", "status=%u code=%s msg=\"%s\"", status, code, e->msg);
    return api__send_error(c, status, code, "%s",
                           e->msg[0] != '\0' ? e->msg : err_strerror(e->code));
}

const char *api__arg(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* --- counts cache ----------------------------------------------------------- */

int api__counts(api *a, store_counts *out, int64_t *age_ms)
{
    pthread_mutex_lock(&a->lock);
    int valid = a->counts.valid;
    *out = a->counts.c;
    int64_t at = a->counts.at_ms;
    pthread_mutex_unlock(&a->lock);
    if (age_ms != NULL)
        *age_ms = valid ? store_now_ms() - at : -1;
    return valid;
}

static void refresh_counts(api *a)
{
    store_counts c;
    err_t e;
    err_clear(&e);
    if (store_counts_get(a->deps->st, &c, &e) != ERR_OK) {
        log_debug("api", "counts refresh failed: %s", e.msg);
        return;
    }
    int64_t now = store_now_ms();
    pthread_mutex_lock(&a->lock);
    a->counts.c = c;
    a->counts.valid = 1;
    a->counts.at_ms = now;
    pthread_mutex_unlock(&a->lock);
}

int api__spool(api *a, fetch_spool_stats *out)
{
    pthread_mutex_lock(&a->lock);
    int valid = a->spool_valid;
    *out = a->spool;
    pthread_mutex_unlock(&a->lock);
    return valid;
}

/*
 * Removes spooled uploads that no queued or running job reads and that are
 * old enough not to belong to a request between spooling and queueing
 * (uploads normally go as their job ends; this catches what a crash or an
 * older inferd left), and records what remains for /metrics.
 */
static void sweep_spool(api *a, int count_only)
{
    api_deps *d = a->deps;
    char **keep = NULL;
    int n = 0;
    err_t e;
    err_clear(&e);
    if (!count_only && store_upload_shas(d->st, NULL, &keep, &n, &e) != ERR_OK) {
        log_debug("api", "spool sweep skipped: %s", e.msg);
        return;
    }
    fetch_spool_stats st;
    int rc = fetch_spool_sweep(d->fetch, keep, n, count_only ? -1 : API_SPOOL_MIN_AGE_MS, &st, &e);
    store_strings_free(keep, n);
    if (rc != ERR_OK) {
        log_warn("api", "spool sweep: %s", e.msg);
        return;
    }
    if (st.removed > 0)
        log_info("api", "spool sweep removed=%lld bytes=%lld kept=%lld", (long long)st.removed,
                 (long long)st.removed_bytes, (long long)st.files);
    pthread_mutex_lock(&a->lock);
    a->spool = st;
    a->spool_valid = 1;
    pthread_mutex_unlock(&a->lock);
}

static void *ticker_main(void *arg)
{
    api *a = arg;
    while (!atomic_load(&a->stopping)) {
        refresh_counts(a);
        if (a->conns != NULL)
            api_conns_reap(a->conns);
        /* The spool: swept once a minute, counted for /metrics every few seconds. */
        if (a->deps->fetch != NULL && !a->deps->health_only &&
            clock_mono_ms() >= a->spool_next_ms) {
            int sweep = a->spool_sweeps++ % (API_SPOOL_SWEEP_MS / API_SPOOL_COUNT_MS) == 0;
            sweep_spool(a, !sweep);
            a->spool_next_ms = clock_mono_ms() + API_SPOOL_COUNT_MS;
        }
        struct timespec ts;
        clock_deadline(&ts, API_COUNTS_REFRESH_MS);
        pthread_mutex_lock(&a->lock);
        if (!atomic_load(&a->stopping))
            pthread_cond_timedwait(&a->cond, &a->lock, &ts);
        pthread_mutex_unlock(&a->lock);
    }
    return NULL;
}

/* --- access handler ---------------------------------------------------------- */

/* Constant-time comparison of the bearer token, so its bytes cannot be timed out. */
static int token_ok(const char *want, const char *header)
{
    static const char prefix[] = "Bearer ";
    if (header == NULL || strncasecmp(header, prefix, sizeof prefix - 1) != 0)
        return 0;
    const char *got = header + sizeof prefix - 1;
    size_t wl = strlen(want), gl = strlen(got);
    unsigned char diff = (unsigned char)(wl != gl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < gl ? got[i] : 0);
    return diff == 0;
}

/* image/... or application/octet-stream (parameters ignored). */
static int content_is_raw(const char *ct)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    return strncasecmp(ct, "image/", 6) == 0 ||
           strncasecmp(ct, "application/octet-stream", 24) == 0;
}

/* Routes that take an image body: POST /v1/jobs (an upload job) and POST /v1/predict. */
static int route_takes_image(api_route_id id, const char *method)
{
    return (id == API_R_JOBS || id == API_R_PREDICT) && strcmp(method, "POST") == 0;
}

static enum MHD_Result dispatch(api *a, struct MHD_Connection *c, const char *method, api_req *rq)
{
    api_call q = {
        .a = a,
        .conn = c,
        .method = method,
        .route = &rq->route,
        .body = rq->body,
        .len = rq->raw ? fetch_upload_size(rq->upload) : rq->len,
        .raw = rq->raw,
        .upload = &rq->upload,
    };
    switch (rq->route.id) {
    case API_R_HEALTH:
        return api__handle_health(&q);
    case API_R_READY:
        return api__handle_ready(&q);
    case API_R_METRICS:
        return api__handle_metrics(&q);
    case API_R_JOBS:
        return api__handle_jobs(&q);
    case API_R_JOBS_BATCH:
        return api__handle_jobs_batch(&q);
    case API_R_INFO:
        return api__handle_info(&q);
    case API_R_ASSETS:
        return api__handle_assets(&q);
    case API_R_THUMB:
        return api__handle_thumb(&q);
    case API_R_UI:
        return api__handle_ui(&q);
    case API_R_OPENAPI:
        return api__handle_openapi(&q);
    case API_R_JOB:
        return api__handle_job(&q);
    case API_R_ASSET:
        return api__handle_asset(&q);
    case API_R_PREDICT:
        return api__handle_predict(&q);
    case API_R_EVENTS:
        return api__handle_events(&q);
    case API_R_SEARCH_IMAGES:
    case API_R_SEARCH_FACES:
    case API_R_DUPLICATES:
    case API_R_PEOPLE:
    case API_R_PERSON:
    case API_R_PERSON_MERGE:
        return api__handle_search(&q);
    case API_R_NONE:
        break;
    }
    return api__send_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no such route");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    api *a = cls;
    api_req *rq = *con_cls;
    if (rq == NULL) {
        api_conns_request(a->conns, c, 1); /* headers are in: no longer subject to the reaper */
        api_route route;
        api__route_match(url, &route);
        int health_only = a->deps->health_only;
        if (route.id == API_R_NONE || (health_only && route.id != API_R_HEALTH &&
                                       route.id != API_R_READY && route.id != API_R_METRICS))
            return api__send_error(c, MHD_HTTP_NOT_FOUND, "not_found", "no route for %.200s", url);
        if (!api__route_method_ok(route.id, method))
            return send_error_allow(c, api__route_allow(route.id),
                                    "method %.20s not allowed on %.200s (allowed: %s)", method, url,
                                    api__route_allow(route.id));
        const char *token = a->deps->cfg->token;
        /* The page itself is public: it asks for the token and sends it with each call. The
         * OpenAPI document is public like the page: it describes the API, it holds no data. */
        if (token[0] != '\0' && route.id != API_R_HEALTH && route.id != API_R_UI &&
            route.id != API_R_OPENAPI &&
            !token_ok(token, MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_AUTHORIZATION)))
            return api__send_error(c, MHD_HTTP_UNAUTHORIZED, "unauthorized",
                                   "missing or wrong bearer token");
        if (route.bad_id[0] != '\0')
            return api__send_error(c, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", route.bad_id);
        int raw = content_is_raw(
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE));
        if (raw && !route_takes_image(route.id, method))
            return api__send_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                                   "%.20s %.200s takes a JSON body (Content-Type "
                                   "application/json), not an image",
                                   method, url);
        fetch_upload *up = NULL;
        if (raw) {
            err_t ue;
            err_clear(&ue);
            if (a->deps->fetch == NULL)
                return api__send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not_ready",
                                       "uploads are not available in this process");
            if (fetch_upload_begin(a->deps->fetch, &up, &ue) != ERR_OK)
                return api__send_err(c, &ue);
        }
        rq = xcalloc(1, sizeof *rq);
        rq->route = route;
        rq->raw = raw;
        rq->upload = up;
        rq->limit = rq->raw ? a->deps->cfg->max_body : API_JSON_BODY_MAX;
        *con_cls = rq;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strcmp(method, "POST") == 0) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno != 0 || *end != '\0' || n > rq->limit)
                return api__send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                                       "body of %s bytes exceeds the limit of %zu bytes for %s", cl,
                                       rq->limit, rq->raw ? "image uploads" : "JSON bodies");
            if (n > 0 && !rq->raw) {
                rq->body = malloc((size_t)n + 1);
                if (rq->body == NULL)
                    return api__send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "nomem",
                                           "out of memory for a %s-byte body", cl);
                rq->cap = (size_t)n + 1;
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large || rq->upload_err.code != ERR_OK)
            return MHD_YES;
        if (rq->raw) {
            err_t ue;
            err_clear(&ue);
            if (fetch_upload_write(rq->upload, upload_data, n, &ue) != ERR_OK) {
                if (ue.code == ERR_TOOBIG)
                    rq->too_large = 1;
                else
                    rq->upload_err = ue;
                fetch_upload_abort(rq->upload);
                rq->upload = NULL;
            }
            return MHD_YES;
        }
        if (n > rq->limit - rq->len) {
            rq->too_large = 1;
            free(rq->body);
            rq->body = NULL;
            rq->len = rq->cap = 0;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap != 0 ? rq->cap : 4096;
            while (cap < rq->len + n + 1)
                cap *= 2;
            if (cap > rq->limit + 1)
                cap = rq->limit + 1;
            char *b = realloc(rq->body, cap);
            if (b == NULL) {
                rq->too_large = 1;
                free(rq->body);
                rq->body = NULL;
                rq->len = rq->cap = 0;
                return MHD_YES;
            }
            rq->body = b;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    if (rq->too_large)
        return api__send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
                               "body exceeds the limit of %zu bytes for %s", rq->limit,
                               rq->raw ? "image uploads" : "JSON bodies");
    if (rq->upload_err.code != ERR_OK)
        return api__send_err(c, &rq->upload_err);
    (void)version;
    return dispatch(a, c, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    api *a = cls;
    if (a->conns != NULL)
        api_conns_request(a->conns, c, 0); /* waiting for the next request's headers */
    api_req *rq = *con_cls;
    if (rq != NULL) {
        fetch_upload_abort(rq->upload); /* not taken by a handler: removed */
        free(rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    log_warn("api", "microhttpd: %s", buf);
}

/* --- lifecycle ------------------------------------------------------------- */

struct MHD_Daemon *api__start_daemon(int fd, api_conns *conns, int max_connections,
                                     MHD_AccessHandlerCallback handler,
                                     MHD_RequestCompletedCallback completed, void *cls)
{
    /* poll(), not select(): past FD_SETSIZE (1024) descriptors select() cannot watch a
     * socket, and --max-connections may go above it. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    return MHD_start_daemon(
        flags, 0, api_conns_accept, conns, handler, cls, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)API_CONN_TIMEOUT_S,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)API_THREAD_STACK, MHD_OPTION_NOTIFY_CONNECTION,
        api_conns_notify, conns, MHD_OPTION_NOTIFY_COMPLETED, completed, cls, MHD_OPTION_END);
}

/* Binds and listens on host:port; returns the socket or -1 with `e` set. */
api_conns *api__conns_for(const config *cfg)
{
    api_conns_opts co = {.max_connections = cfg->max_connections,
                         .max_per_ip = cfg->max_connections_per_ip,
                         .header_timeout_ms = cfg->header_timeout_ms};
    return api_conns_new(&co);
}

int api__open_listener(const char *host, int port, err_t *e)
{
    char pstr[16];
    snprintf(pstr, sizeof pstr, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host, pstr, &hints, &res);
    if (g != 0)
        return err_set(e, ERR_IO, "cannot listen on %s:%d: %s", host, port, gai_strerror(g)), -1;
    int fd = -1;
    int saved = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6) {
            /* "::" serves IPv4 too (dual stack); any other v6 address only itself. */
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ai->ai_addr;
            int any = memcmp(&s6->sin6_addr, &in6addr_any, sizeof in6addr_any) == 0;
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, any ? &zero : &one, sizeof one);
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        err_set(e, ERR_IO, "cannot listen on %s:%d: %s", host, port, strerror(saved));
    return fd;
}

int api__bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
    return -1;
}

int api_start(api_deps *deps, api **out, err_t *e)
{
    *out = NULL;
    const config *cfg = deps->cfg;
    int fd = api__open_listener(cfg->listen_host, cfg->listen_port, e);
    if (fd < 0)
        return e != NULL ? e->code : ERR_IO;
    api *a = xcalloc(1, sizeof *a);
    a->deps = deps;
    a->port = api__bound_port(fd);
    a->started_ms = store_now_ms();
    atomic_init(&a->stopping, 0);
    pthread_mutex_init(&a->lock, NULL);
    clock_cond_init(&a->cond);

    /* Before the ticker starts: it reaps through a->conns. */
    a->conns = api__conns_for(cfg);
    refresh_counts(a); /* so the first /health already has numbers */
    if (pthread_create(&a->ticker, NULL, ticker_main, a) != 0) {
        close(fd);
        api_free(a);
        return err_set(e, ERR_INTERNAL, "api: cannot start the counts ticker thread");
    }
    a->ticker_started = 1;

    a->mhd = api__start_daemon(fd, a->conns, cfg->max_connections, on_request, on_completed, a);
    if (a->mhd == NULL) {
        close(fd);
        api_stop(a);
        api_free(a);
        return err_set(e, ERR_IO, "cannot serve on %s:%d: libmicrohttpd failed to start",
                       cfg->listen_host, cfg->listen_port);
    }
    *out = a;
    return ERR_OK;
}

int api_port(const api *a)
{
    return a != NULL ? a->port : -1;
}

void api_stop(api *a)
{
    if (a == NULL)
        return;
    atomic_store(&a->stopping, 1);
    pthread_mutex_lock(&a->lock);
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    if (a->deps->ev != NULL)
        events_notify(a->deps->ev); /* wakes SSE streams sleeping in events_wait */
    if (a->ticker_started) {
        pthread_join(a->ticker, NULL);
        a->ticker_started = 0;
    }
    if (a->mhd != NULL) {
        MHD_stop_daemon(a->mhd); /* joins the connection threads; closes the listen socket */
        a->mhd = NULL;
    }
}

void api_free(api *a)
{
    if (a == NULL)
        return;
    api_stop(a);
    api_conns_free(a->conns);
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
