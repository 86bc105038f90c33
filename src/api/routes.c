/*
 * api/routes.c — the HTTP handlers for jobs, assets, predict, /health and
 * /ready. Each runs on its connection's thread after api.c has routed the
 * request, checked the method and token and read the body within its limit.
 *
 * Handlers only validate, call the store (short transactions: an enqueue's
 * commit is what wakes the worker, see docs/internals/threads.md) and the
 * fetcher's source check or spool; none waits on inference except
 * /v1/predict, which is synchronous by design and capped at cfg->slots
 * concurrent calls (more get 503 with Retry-After) so that it cannot starve
 * the worker slots of cores. /health never touches the store (api.c).
 *
 * Status codes (README "HTTP API"): 202 new job, 200 deduplicated job
 * (with "deduplicated": true), 400 bad JSON / parameter / source, 403 path
 * source outside the media root, 422 path source that does not exist or an
 * image that cannot be decoded, 413 body or image over a limit, 404 unknown
 * job or asset, 503 not ready or predict capacity full.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "infer/clip.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/xalloc.h"
#include "vision/vision.h"

#define MSG_MAX 512

static enum MHD_Result bad_request(api_call *q, const char *msg)
{
    return api__send_error(q->conn, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", msg);
}

/* --- /health, /ready ------------------------------------------------------ */

enum MHD_Result api__handle_health(api_call *q)
{
    api *a = q->a;
    api_deps *d = a->deps;
    worker *wk = atomic_load(&d->wk);
    store_counts c;
    int64_t age_ms;
    int valid = api__counts(a, &c, &age_ms);
    int slots = 0, busy = 0;
    if (wk != NULL) {
        worker_stats ws;
        worker_get_stats(wk, &ws);
        slots = ws.slots;
        busy = ws.busy;
    }
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("ok"));
    json_object_set_new(o, "role", json_string(d->role != NULL ? d->role : "serve"));
    json_object_set_new(o, "worker_id", json_string(d->cfg->worker_id));
    /* Whether the other endpoints want the token: the page asks for it up front. */
    json_object_set_new(o, "auth", json_boolean(d->cfg->token[0] != '\0'));
    json_object_set_new(o, "queue_size", valid ? json_integer(c.queued) : json_null());
    json_object_set_new(o, "running", valid ? json_integer(c.running) : json_null());
    json_object_set_new(o, "slots", json_integer(slots));
    json_object_set_new(o, "busy", json_integer(busy));
    json_object_set_new(o, "failed", valid ? json_integer(c.failed) : json_null());
    json_object_set_new(o, "done", valid ? json_integer(c.done) : json_null());
    json_object_set_new(o, "cancelled", valid ? json_integer(c.cancelled) : json_null());
    json_object_set_new(o, "uptime_s",
                        json_integer((json_int_t)((store_now_ms() - a->started_ms) / 1000)));
    json_object_set_new(o, "counts_age_ms", valid ? json_integer(age_ms) : json_null());
    if (d->ev != NULL) {
        events_stats es;
        events_get_stats(d->ev, &es);
        json_object_set_new(o, "publisher_leader", json_boolean(es.leader));
    }
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

/*
 * GET /v1/info: what a client needs to know about this inferd: version,
 * role, the media root path jobs resolve under (null: path jobs refused),
 * the upload and batch limits, the models loaded (null until they are, and
 * in the api role) and whether text search has a text encoder.
 */
enum MHD_Result api__handle_info(api_call *q)
{
    api_deps *d = q->a->deps;
    const config *c = d->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string(INFERD_VERSION));
    json_object_set_new(o, "role", json_string(d->role != NULL ? d->role : "serve"));
    json_object_set_new(o, "media_root",
                        c->media_root[0] ? json_string(c->media_root) : json_null());
    json_object_set_new(o, "max_upload_bytes", json_integer((json_int_t)c->max_body));
    json_object_set_new(o, "batch_max", json_integer(STORE_ENQUEUE_MAX));
    pipeline *pl = atomic_load(&d->pl);
    json_t *m = json_null();
    if (pl != NULL) {
        static const struct {
            const char *key;
            model_task task;
        } roles[] = {{"image_embedder", TASK_IMAGE_EMBEDDING},
                     {"detector", TASK_FACE_DETECTION},
                     {"face_embedder", TASK_FACE_EMBEDDING}};
        m = json_object();
        for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
            const model_manifest *mm = pipeline_model(pl, roles[i].task);
            json_object_set_new(m, roles[i].key, mm != NULL ? json_string(mm->name) : json_null());
        }
    }
    json_object_set_new(o, "models", m);
    json_object_set_new(o, "text_search", json_boolean(atomic_load(&d->clip) != NULL));
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

enum MHD_Result api__handle_ready(api_call *q)
{
    api_deps *d = q->a->deps;
    /* The api role loads no models: it is ready once the store is open. */
    int no_models = d->role != NULL && strcmp(d->role, "api") == 0;
    int models = no_models || atomic_load(&d->pl) != NULL;
    int st = d->st != NULL;
    /* Serve and api answer searches: ready once the indexes are loaded too. */
    int srch = d->health_only || atomic_load(&d->srch) != NULL;
    int ready = models && st && srch;
    json_t *o =
        json_pack("{sbsbsbsb}", "ready", ready, "models", models, "store", st, "search", srch);
    if (!ready) {
        json_object_set_new(o, "error",
                            json_pack("{ssss}", "code", "not_ready", "message",
                                      !models ? "models are still loading"
                                      : !st   ? "store not open"
                                              : "search indexes are still loading"));
        return api__send_json(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE, o, NULL);
    }
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

/* --- jobs ----------------------------------------------------------------- */

/*
 * fetch_check_source's verdict as a status and code: 400 invalid_source,
 * 403 forbidden, 422 source_not_found; 0 for another error (api__send_err's).
 */
static int source_error_status(const err_t *e, const char **code)
{
    switch (e->code) {
    case ERR_INVAL:
    case ERR_FORMAT:
        return *code = "invalid_source", MHD_HTTP_BAD_REQUEST;
    case ERR_FORBIDDEN:
        return *code = "forbidden", MHD_HTTP_FORBIDDEN;
    case ERR_NOENT:
        return *code = "source_not_found", MHD_HTTP_UNPROCESSABLE_CONTENT;
    default:
        return *code = err_name(e->code), 0;
    }
}

/* The fetcher's messages usually name the source already. */
static const char *source_prefix(const err_t *e)
{
    return strncmp(e->msg, "source", 6) == 0 ? "" : "source: ";
}

/* fetch_check_source's verdict as a response: 400/403/422/413. */
static enum MHD_Result send_source_error(api_call *q, const err_t *e)
{
    const char *code;
    int status = source_error_status(e, &code);
    if (status == 0)
        return api__send_err(q->conn, e);
    return api__send_error(q->conn, (unsigned)status, code, "%s%s", source_prefix(e), e->msg);
}

static int raw_job_req(api_call *q, api_job_req *r, char *msg, size_t msglen)
{
    memset(r, 0, sizeof *r);
    r->tasks = JOB_TASK_ALL;
    const char *v = api__arg(q->conn, "asset_id");
    if (v == NULL) {
        snprintf(msg, msglen, "asset_id: required as a query parameter with an image body");
        return -1;
    }
    if (!store_asset_id_valid(v)) {
        snprintf(msg, msglen, "asset_id: expected 1..%d characters of [A-Za-z0-9._:@/-]",
                 STORE_ASSET_ID_MAX);
        return -1;
    }
    strcpy(r->asset_id, v);
    long long x;
    if ((v = api__arg(q->conn, "priority")) != NULL) {
        if (api__parse_int("priority", v, -1000, 1000, &x, msg, msglen) != 0)
            return -1;
        r->priority = (int)x;
    }
    if ((v = api__arg(q->conn, "max_attempts")) != NULL) {
        if (api__parse_int("max_attempts", v, 1, 20, &x, msg, msglen) != 0)
            return -1;
        r->max_attempts = (int)x;
    }
    if ((v = api__arg(q->conn, "tasks")) != NULL &&
        api__parse_tasks_csv("tasks", v, &r->tasks, msg, msglen) != 0)
        return -1;
    if (q->len == 0) {
        snprintf(msg, msglen, "body: empty image upload");
        return -1;
    }
    return 0;
}

static enum MHD_Result jobs_post(api_call *q)
{
    api_deps *d = q->a->deps;
    char msg[MSG_MAX];
    api_job_req r;
    err_t e;
    err_clear(&e);
    enum MHD_Result ret;
    if (q->raw) {
        if (raw_job_req(q, &r, msg, sizeof msg) != 0)
            return bad_request(q, msg);
        if (d->fetch == NULL)
            return api__send_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not_ready",
                                   "uploads are not available in this process");
        char sha[65];
        fetch_upload *up = *q->upload;
        *q->upload = NULL; /* committed or removed by fetch_upload_commit */
        if (fetch_upload_commit(up, sha, &e) != ERR_OK)
            return api__send_err(q->conn, &e);
        json_t *src = json_pack("{sssI}", "upload", sha, "size", (json_int_t)q->len);
        r.source = json_dumps(src, JSON_COMPACT);
        json_decref(src);
    } else {
        if (api__parse_job_json(q->body, q->len, &r, msg, sizeof msg) != 0)
            return bad_request(q, msg);
        if (d->fetch != NULL && fetch_check_source(d->fetch, r.source, &e) != ERR_OK) {
            ret = send_source_error(q, &e);
            goto out;
        }
    }
    job_spec spec = {
        .asset_id = r.asset_id,
        .tasks = r.tasks,
        .priority = r.priority,
        .max_attempts = r.max_attempts != 0 ? r.max_attempts : d->cfg->max_attempts,
        .source = r.source,
        .payload = r.payload,
    };
    job j;
    memset(&j, 0, sizeof j);
    int existing = 0;
    if (store_job_enqueue(d->st, &spec, &j, &existing, &e) != ERR_OK) {
        ret = api__send_err(q->conn, &e);
        goto out;
    }
    log_debug("api", "job=%lld asset=%s enqueued%s", (long long)j.id, j.asset_id,
              existing ? " (deduplicated)" : "");
    char loc[48];
    snprintf(loc, sizeof loc, "/v1/jobs/%lld", (long long)j.id);
    json_t *o = job_to_json(&j);
    json_object_set_new(o, "deduplicated", json_boolean(existing));
    job_clear(&j);
    ret = api__send_json(q->conn, existing ? MHD_HTTP_OK : MHD_HTTP_ACCEPTED, o, loc);
out:
    api__job_req_clear(&r);
    return ret;
}

static enum MHD_Result jobs_list(api_call *q)
{
    char msg[MSG_MAX];
    api_list_query lq;
    if (api__parse_list_query(api__arg(q->conn, "state"), api__arg(q->conn, "limit"),
                              api__arg(q->conn, "cursor"), &lq, msg, sizeof msg) != 0)
        return bad_request(q, msg);
    job *jobs = NULL;
    int n = 0;
    err_t e;
    err_clear(&e);
    if (store_job_list(q->a->deps->st, lq.state, lq.cursor, lq.limit, &jobs, &n, &e) != ERR_OK)
        return api__send_err(q->conn, &e);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, job_to_json(&jobs[i]));
    json_t *next = n == lq.limit && n > 0 ? json_integer(jobs[n - 1].id) : json_null();
    job_array_free(jobs, n);
    json_t *o = json_object();
    json_object_set_new(o, "jobs", arr);
    json_object_set_new(o, "next_cursor", next);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

/* A refused batch item: {"error": {"code", "message"}}. */
static json_t *item_error(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static json_t *item_error(const char *code, const char *fmt, ...)
{
    char m[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    return json_pack("{s{ssss}}", "error", "code", code, "message", m);
}

/*
 * POST /v1/jobs/batch {"jobs": [job, ...]}: up to STORE_ENQUEUE_MAX path or
 * URL jobs (uploads go one at a time to POST /v1/jobs), each checked like
 * POST /v1/jobs. The valid ones are enqueued in one transaction; a refused
 * item does not hold up the others (a file that vanished between a folder
 * walk and its submit). The answer lists, in the request's order, each job
 * (with "deduplicated") or {"error": {code, message}}, and the counts
 * "queued" (new), "deduplicated" and "rejected". 202 when a job was queued,
 * 200 when every valid item was already queued or running; when no item is
 * valid, the first item's error as the whole answer (400, 403 or 422), as
 * POST /v1/jobs would have answered it.
 */
enum MHD_Result api__handle_jobs_batch(api_call *q)
{
    api_deps *d = q->a->deps;
    char msg[MSG_MAX];
    api_job_req *reqs = NULL;
    char **bad = NULL;
    int n = 0;
    if (api__parse_job_batch(q->body, q->len, &reqs, &bad, &n, msg, sizeof msg) != 0)
        return bad_request(q, msg);
    enum MHD_Result ret;
    err_t e;
    json_t **items = xcalloc((size_t)n, sizeof *items);
    job_spec *specs = xcalloc((size_t)n, sizeof *specs);
    int *which = xcalloc((size_t)n, sizeof *which); /* specs[k] is item which[k] */
    int nvalid = 0, first_bad = -1, first_status = 0;
    for (int i = 0; i < n; i++) {
        err_clear(&e);
        const char *code = "invalid_request";
        int status = MHD_HTTP_BAD_REQUEST;
        if (bad[i] != NULL) {
            items[i] = item_error(code, "%s", bad[i]);
        } else if (d->fetch != NULL && fetch_check_source(d->fetch, reqs[i].source, &e) != ERR_OK) {
            status = source_error_status(&e, &code);
            items[i] = item_error(code, "jobs[%d].%s%s", i, source_prefix(&e), e.msg);
        } else {
            which[nvalid] = i;
            specs[nvalid++] = (job_spec){
                .asset_id = reqs[i].asset_id,
                .tasks = reqs[i].tasks,
                .priority = reqs[i].priority,
                .max_attempts =
                    reqs[i].max_attempts != 0 ? reqs[i].max_attempts : d->cfg->max_attempts,
                .source = reqs[i].source,
                .payload = reqs[i].payload,
            };
            continue;
        }
        if (first_bad < 0) {
            first_bad = i;
            first_status = status != 0 ? status : MHD_HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    if (nvalid == 0) {
        json_t *er = json_object_get(items[first_bad], "error");
        ret = api__send_error(q->conn, (unsigned)first_status,
                              json_string_value(json_object_get(er, "code")), "%s",
                              json_string_value(json_object_get(er, "message")));
        goto out;
    }
    job *jobs = xcalloc((size_t)nvalid, sizeof *jobs);
    int *existing = xcalloc((size_t)nvalid, sizeof *existing);
    err_clear(&e);
    int rc = store_job_enqueue_many(d->st, specs, nvalid, jobs, existing, &e);
    int fresh = 0, dedup = 0;
    for (int k = 0; rc == ERR_OK && k < nvalid; k++) {
        json_t *o = job_to_json(&jobs[k]);
        json_object_set_new(o, "deduplicated", json_boolean(existing[k]));
        items[which[k]] = o;
        fresh += !existing[k];
        dedup += existing[k];
        job_clear(&jobs[k]);
    }
    free(jobs);
    free(existing);
    if (rc != ERR_OK) {
        ret = api__send_err(q->conn, &e);
        goto out;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(arr, items[i]);
        items[i] = NULL;
    }
    log_debug("api", "batch of %d: queued=%d deduplicated=%d rejected=%d", n, fresh, dedup,
              n - nvalid);
    ret = api__send_json(q->conn, fresh > 0 ? MHD_HTTP_ACCEPTED : MHD_HTTP_OK,
                         json_pack("{sosisisi}", "jobs", arr, "queued", fresh, "deduplicated",
                                   dedup, "rejected", n - nvalid),
                         NULL);
out:
    for (int i = 0; i < n; i++)
        json_decref(items[i]);
    free(items);
    free(which);
    free(specs);
    api__job_reqs_free(reqs, bad, n);
    return ret;
}

enum MHD_Result api__handle_jobs(api_call *q)
{
    if (strcmp(q->method, "POST") == 0)
        return jobs_post(q);
    return jobs_list(q);
}

/*
 * Removes spooled uploads nothing queued or running needs any more: those of
 * every job of `asset_id` (its asset was deleted), or of job `j` (cancelled
 * before it ran). Best effort: failures are logged, the spool sweep retries.
 */
static void release_uploads(api_call *q, const char *asset_id, const job *j)
{
    const api_deps *d = q->a->deps;
    err_t e;
    err_clear(&e);
    if (d->fetch == NULL)
        return;
    char **shas = NULL, one[65];
    int n = 0;
    if (j != NULL) {
        if (!fetch_upload_sha(j->source, one))
            return;
    } else if (store_upload_shas(d->st, asset_id, &shas, &n, &e) != ERR_OK) {
        log_warn("api", "asset=%s uploads left to the sweep: %s", asset_id, e.msg);
        return;
    }
    int64_t now = store_now_ms();
    for (int i = 0; i < (j != NULL ? 1 : n); i++) {
        const char *sha = j != NULL ? one : shas[i];
        int used = 1;
        if (store_upload_in_use(d->st, sha, &used, &e) == ERR_OK && !used &&
            fetch_spool_release(d->fetch, sha, j != NULL ? j->created_ms : now, &e) < 0)
            log_warn("api", "cannot remove upload %.12s: %s", sha, e.msg);
    }
    store_strings_free(shas, n);
}

enum MHD_Result api__handle_job(api_call *q)
{
    const api_deps *d = q->a->deps;
    job j;
    memset(&j, 0, sizeof j);
    err_t e;
    err_clear(&e);
    int64_t id = q->route->job_id;
    int rc = strcmp(q->method, "DELETE") == 0 ? store_job_cancel(d->st, id, &j, &e)
                                              : store_job_get(d->st, id, &j, &e);
    if (rc == ERR_NOENT)
        return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found", "job %lld not found",
                               (long long)id);
    if (rc != ERR_OK)
        return api__send_err(q->conn, &e);
    if (strcmp(q->method, "DELETE") == 0 && j.state == JOB_CANCELLED)
        release_uploads(q, NULL, &j);
    json_t *o = job_to_json(&j);
    job_clear(&j);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

/* --- assets --------------------------------------------------------------- */

enum MHD_Result api__handle_asset(api_call *q)
{
    const api_deps *d = q->a->deps;
    const char *id = q->route->asset_id;
    err_t e;
    err_clear(&e);
    if (strcmp(q->method, "GET") != 0 && strcmp(q->method, "DELETE") != 0)
        return api__send_error(q->conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                               "%s not allowed here (allowed: GET, DELETE)", q->method);
    if (strcmp(q->method, "DELETE") == 0) {
        int rc = store_asset_delete(d->st, id, &e);
        if (rc == ERR_NOENT)
            return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found",
                                   "asset \"%s\" not found", id);
        if (rc != ERR_OK)
            return api__send_err(q->conn, &e);
        release_uploads(q, id, NULL); /* the original photo goes with its asset */
        return api__send_json(q->conn, MHD_HTTP_NO_CONTENT, NULL, NULL);
    }
    json_t *o = NULL;
    int rc = store_asset_get(d->st, id, api__flag_on(api__arg(q->conn, "vectors")), &o, &e);
    if (rc == ERR_NOENT)
        return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found", "asset \"%s\" not found",
                               id);
    if (rc != ERR_OK)
        return api__send_err(q->conn, &e);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

/* GET /v1/assets?limit=N&cursor=ID: a page of assets in id order (store_assets_list). */
enum MHD_Result api__handle_assets(api_call *q)
{
    const api_deps *d = q->a->deps;
    char msg[MSG_MAX];
    long long limit = 100;
    const char *v = api__arg(q->conn, "limit");
    if (v != NULL && api__parse_int("limit", v, 1, 1000, &limit, msg, sizeof msg) != 0)
        return bad_request(q, msg);
    const char *cursor = api__arg(q->conn, "cursor");
    if (cursor != NULL && cursor[0] != '\0' && !store_asset_id_valid(cursor))
        return bad_request(q, "cursor: expected an asset id (the next_cursor of a page)");
    json_t *o = NULL;
    err_t e;
    err_clear(&e);
    if (store_assets_list(d->st, cursor, (int)limit, &o, &e) != ERR_OK)
        return api__send_err(q->conn, &e);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

/* The box of face `face_id` of asset JSON `a` in fractions of the image, widened by a third
 * on each side for context (the crop is clamped to the image); 0 if the asset has no such face. */
static int face_region(const json_t *a, long long face_id, float out[4])
{
    double w = (double)json_integer_value(json_object_get(a, "width"));
    double h = (double)json_integer_value(json_object_get(a, "height"));
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(a, "faces"), i, f)
    {
        if (json_integer_value(json_object_get(f, "id")) != face_id || w <= 0 || h <= 0)
            continue;
        json_t *b = json_object_get(f, "box");
        double x1 = json_number_value(json_array_get(b, 0)),
               y1 = json_number_value(json_array_get(b, 1));
        double x2 = json_number_value(json_array_get(b, 2)),
               y2 = json_number_value(json_array_get(b, 3));
        double mx = (x2 - x1) / 3.0, my = (y2 - y1) / 3.0;
        out[0] = (float)((x1 - mx) / w);
        out[1] = (float)((y1 - my) / h);
        out[2] = (float)((x2 + mx) / w);
        out[3] = (float)((y2 + my) / h);
        return 1;
    }
    return 0;
}

/*
 * GET /v1/assets/{id}/thumbnail: the JPEG stored with the asset's last job
 * (longest side WORKER_THUMB_SIDE); ?face=FACE_ID: that face cut out of it,
 * with some context, at most 160 pixels. 404 when the asset, its thumbnail
 * or the face is unknown. Pages never need the original.
 */
enum MHD_Result api__handle_thumb(api_call *q)
{
    const api_deps *d = q->a->deps;
    const char *id = q->route->asset_id;
    char msg[MSG_MAX];
    long long face = 0;
    const char *v = api__arg(q->conn, "face");
    if (v != NULL && api__parse_int("face", v, 1, INT64_MAX, &face, msg, sizeof msg) != 0)
        return bad_request(q, msg);
    unsigned char *jpeg = NULL;
    size_t len = 0;
    int w = 0, h = 0;
    err_t e;
    err_clear(&e);
    int rc = store_thumb_get(d->st, id, &jpeg, &len, &w, &h, &e);
    if (rc == ERR_NOENT)
        return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found",
                               "asset \"%s\" has no thumbnail", id);
    if (rc != ERR_OK)
        return api__send_err(q->conn, &e);
    if (face == 0)
        return api__send_bytes(q->conn, MHD_HTTP_OK, jpeg, len, "image/jpeg",
                               "private, max-age=60");
    json_t *a = NULL;
    float box[4];
    rc = store_asset_get(d->st, id, 0, &a, &e);
    if (rc == ERR_OK && !face_region(a, face, box))
        rc = err_set(&e, ERR_NOENT, "asset \"%s\" has no face %lld", id, face);
    json_decref(a);
    unsigned char *crop = NULL;
    size_t clen = 0;
    if (rc == ERR_OK)
        rc = vision_jpeg_crop(jpeg, len, box, 160, &crop, &clen, &e);
    free(jpeg);
    if (rc == ERR_NOENT)
        return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found", "%s", e.msg);
    if (rc != ERR_OK)
        return api__send_err(q->conn, &e);
    return api__send_bytes(q->conn, MHD_HTTP_OK, crop, clen, "image/jpeg", "private, max-age=60");
}

/* --- predict -------------------------------------------------------------- */

/* Pipeline failures: the image is the problem (422) unless the runtime failed (500). */
static enum MHD_Result send_analyze_error(api_call *q, const err_t *e)
{
    if (e->code == ERR_UNSUPPORTED_FORMAT)
        return api__send_error(q->conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, err_name(e->code), "%s",
                               e->msg);
    /* Past --job-timeout-ms: the image took too long, which retrying will not change. */
    if (e->code == ERR_DECODE || e->code == ERR_TOOBIG || e->code == ERR_FORMAT ||
        e->code == ERR_TIMEOUT)
        return api__send_error(q->conn, MHD_HTTP_UNPROCESSABLE_CONTENT, err_name(e->code), "%s",
                               e->msg);
    return api__send_err(q->conn, e);
}

static enum MHD_Result predict_run(api_call *q, pipeline *pl, unsigned tasks, int vectors)
{
    const api_deps *d = q->a->deps;
    /* The same deadline as a job: decode and models, not the upload or the fetch. */
    pipeline_call call = {.deadline_ms = clock_mono_ms() + d->cfg->job_timeout_ms};
    err_t e;
    err_clear(&e);
    analysis *an = NULL;
    char msg[MSG_MAX];
    if (q->raw) {
        if (q->len == 0)
            return bad_request(q, "body: empty image upload");
        /* Decoded in place from the spool file, which the request's end removes. */
        if (pipeline_analyze_file_ex(pl, fetch_upload_path(*q->upload), tasks, &call, &an,
                                     &e) != ERR_OK)
            return send_analyze_error(q, &e);
    } else {
        json_error_t je;
        json_t *root = json_loadb(q->body != NULL ? q->body : "", q->len, 0, &je);
        if (root == NULL) {
            snprintf(msg, sizeof msg, "body: invalid JSON at line %d column %d: %s", je.line,
                     je.column, je.text);
            return bad_request(q, msg);
        }
        char *src = NULL;
        int bad = !json_is_object(root);
        if (bad)
            snprintf(msg, sizeof msg,
                     "body: expected {\"source\": ...} or an image (Content-Type image/*)");
        else if (json_object_size(root) != 1 || json_object_get(root, "source") == NULL)
            bad = (snprintf(msg, sizeof msg, "body: expected exactly one field, \"source\""), 1);
        else
            bad = api__parse_source(json_object_get(root, "source"), &src, msg, sizeof msg) != 0;
        json_decref(root);
        if (bad)
            return bad_request(q, msg);
        fetch_result fr = {0};
        int rc = d->fetch != NULL ? fetch_check_source(d->fetch, src, &e)
                                  : err_set(&e, ERR_UNAVAILABLE, "no fetcher in this process");
        if (rc == ERR_OK)
            rc = fetch_source(d->fetch, src, &fr, &e);
        free(src);
        if (rc != ERR_OK)
            return send_source_error(q, &e);
        if (fr.path != NULL)
            rc = pipeline_analyze_file_ex(pl, fr.path, tasks, &call, &an, &e);
        else
            rc = pipeline_analyze_buffer_ex(pl, fr.data, fr.len, tasks, &call, &an, &e);
        fetch_result_clear(&fr);
        if (rc != ERR_OK)
            return send_analyze_error(q, &e);
    }
    json_t *o = analysis_to_json(an, vectors);
    analysis_free(an);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

enum MHD_Result api__handle_predict(api_call *q)
{
    api *a = q->a;
    pipeline *pl = atomic_load(&a->deps->pl);
    if (pl == NULL && a->deps->role != NULL && strcmp(a->deps->role, "api") == 0)
        return api__send_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "predict_unavailable",
                               "predict needs models; run serve (this inferd api process loads "
                               "none: submit a job to /v1/jobs instead)");
    if (pl == NULL)
        return api__send_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not_ready",
                               "models are still loading");
    char msg[MSG_MAX];
    unsigned tasks = PIPELINE_ALL;
    const char *v = api__arg(q->conn, "tasks");
    if (v != NULL && api__parse_tasks_csv("tasks", v, &tasks, msg, sizeof msg) != 0)
        return bad_request(q, msg);
    int vectors = api__flag_on(api__arg(q->conn, "vectors"));

    int cap = a->deps->cfg->slots > 0 ? a->deps->cfg->slots : 1;
    if (atomic_fetch_add(&a->predicts, 1) >= cap) {
        atomic_fetch_sub(&a->predicts, 1);
        return api__send_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
                               "%d predict calls are already running; retry later or submit a "
                               "job to /v1/jobs",
                               cap);
    }
    enum MHD_Result r = predict_run(q, pl, tasks, vectors);
    atomic_fetch_sub(&a->predicts, 1);
    return r;
}

/* --- search and people ------------------------------------------------------ */

static enum MHD_Result not_allowed(api_call *q, const char *allow)
{
    return api__send_error(q->conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                           "%s not allowed here (allowed: %s)", q->method, allow);
}

/* Store and search errors: unknown things 404, bad arguments 400, the rest as usual. */
static enum MHD_Result send_search_err(api_call *q, const err_t *e)
{
    if (e->code == ERR_NOENT)
        return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found", "%s", e->msg);
    if (e->code == ERR_INVAL)
        return bad_request(q, e->msg);
    return api__send_err(q->conn, e);
}

/* Parses the JSON object body; NULL after sending 400. */
static json_t *body_object(api_call *q, enum MHD_Result *ret)
{
    char msg[MSG_MAX];
    json_t *root = api__parse_body_object(q->body, q->len, msg, sizeof msg);
    if (root == NULL)
        *ret = bad_request(q, msg);
    return root;
}

static search *ready_search(api_call *q, enum MHD_Result *ret)
{
    search *s = atomic_load(&q->a->deps->srch);
    if (s == NULL)
        *ret = api__send_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not_ready",
                               "the search indexes are not loaded (yet)");
    return s;
}

static enum MHD_Result send_results(api_call *q, json_t *arr)
{
    json_t *o = json_object();
    json_object_set_new(o, "results", arr);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

static enum MHD_Result search_images_post(api_call *q)
{
    api_deps *d = q->a->deps;
    enum MHD_Result ret = MHD_NO;
    char msg[MSG_MAX];
    search *sv = ready_search(q, &ret);
    if (sv == NULL)
        return ret;
    json_t *root = body_object(q, &ret);
    if (root == NULL)
        return ret;
    search_image_query sq;
    float *vec = NULL;
    const char *text = NULL;
    if (api__parse_search_images(root, &sq, &vec, &text, msg, sizeof msg) != 0) {
        json_decref(root);
        return bad_request(q, msg);
    }
    err_t e;
    err_clear(&e);
    if (text != NULL) {
        clip_model *cm = atomic_load(&d->clip);
        if (cm == NULL) {
            const char *why = atomic_load(&d->clip_missing);
            json_decref(root);
            return api__send_error(q->conn, MHD_HTTP_BAD_REQUEST, "text_model_missing",
                                   "text queries need a CLIP text encoder: %s",
                                   why != NULL ? why : "none is loaded in this process");
        }
        int dim = clip_embedding_dim(cm);
        vec = malloc((size_t)(dim > 0 ? dim : 1) * sizeof *vec);
        if (vec == NULL || clip_encode_text(cm, text, vec, &e) != ERR_OK) {
            json_decref(root);
            free(vec);
            if (vec == NULL)
                err_set(&e, ERR_NOMEM, "text query: out of memory");
            return api__send_err(q->conn, &e);
        }
        double n2 = 0;
        for (int i = 0; i < dim; i++)
            n2 += (double)vec[i] * vec[i];
        if (n2 > 0)
            for (int i = 0; i < dim; i++)
                vec[i] = (float)(vec[i] / sqrt(n2));
        sq.dim = dim;
    }
    sq.vector = vec;
    json_t *res = NULL;
    int rc = search_images(sv, &sq, &res, &e);
    json_decref(root);
    free(vec);
    if (rc != ERR_OK)
        return send_search_err(q, &e);
    return send_results(q, res);
}

static enum MHD_Result search_faces_post(api_call *q)
{
    enum MHD_Result ret = MHD_NO;
    char msg[MSG_MAX];
    search *sv = ready_search(q, &ret);
    if (sv == NULL)
        return ret;
    json_t *root = body_object(q, &ret);
    if (root == NULL)
        return ret;
    search_face_query fq;
    float *vec = NULL;
    if (api__parse_search_faces(root, &fq, &vec, msg, sizeof msg) != 0) {
        json_decref(root);
        return bad_request(q, msg);
    }
    err_t e;
    err_clear(&e);
    json_t *res = NULL;
    int rc = search_faces(sv, &fq, &res, &e);
    json_decref(root);
    free(vec);
    if (rc != ERR_OK)
        return send_search_err(q, &e);
    return send_results(q, res);
}

/* GET /v1/assets/{id}/duplicates?threshold=T&limit=20; T defaults to --duplicates-threshold. */
static enum MHD_Result duplicates_get(api_call *q)
{
    enum MHD_Result ret = MHD_NO;
    search *sv = ready_search(q, &ret);
    if (sv == NULL)
        return ret;
    /* The flag is a float: rounded so that 0.95 answers as 0.95, not 0.949999988. */
    double threshold = round((double)q->a->deps->cfg->duplicates_threshold * 1e6) / 1e6;
    const char *t = api__arg(q->conn, "threshold");
    if (t != NULL) {
        char *end = NULL;
        threshold = strtod(t, &end);
        if (end == t || *end != '\0' || !(threshold >= -1.0 && threshold <= 1.0))
            return bad_request(q, "threshold: expected a number -1..1");
    }
    long long limit = 20;
    char msg[MSG_MAX];
    const char *l = api__arg(q->conn, "limit");
    if (l != NULL && api__parse_int("limit", l, 1, 1000, &limit, msg, sizeof msg) != 0)
        return bad_request(q, msg);
    search_image_query sq;
    memset(&sq, 0, sizeof sq);
    sq.asset_id = q->route->asset_id;
    sq.limit = (int)limit;
    sq.min_score = (float)threshold;
    err_t e;
    err_clear(&e);
    json_t *res = NULL;
    if (search_images(sv, &sq, &res, &e) != ERR_OK)
        return send_search_err(q, &e);
    json_t *o = json_object();
    json_object_set_new(o, "asset_id", json_string(q->route->asset_id));
    json_object_set_new(o, "threshold", json_real(threshold));
    json_object_set_new(o, "duplicates", res);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

static enum MHD_Result person_patch(api_call *q)
{
    const api_deps *d = q->a->deps;
    enum MHD_Result ret = MHD_NO;
    json_t *root = body_object(q, &ret);
    if (root == NULL)
        return ret;
    const char *name = NULL;
    char msg[MSG_MAX];
    if (api__parse_person_patch(root, &name, msg, sizeof msg) != 0) {
        json_decref(root);
        return bad_request(q, msg);
    }
    err_t e;
    err_clear(&e);
    int rc = store_person_rename(d->st, q->route->person_id, name, &e);
    json_decref(root);
    json_t *o = NULL;
    if (rc == ERR_OK)
        rc = store_person_get(d->st, q->route->person_id, &o, &e);
    if (rc != ERR_OK)
        return send_search_err(q, &e);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

static enum MHD_Result person_merge(api_call *q)
{
    api_deps *d = q->a->deps;
    enum MHD_Result ret = MHD_NO;
    json_t *root = body_object(q, &ret);
    if (root == NULL)
        return ret;
    int64_t from[API_MERGE_MAX];
    int n = 0;
    char msg[MSG_MAX];
    int bad = api__parse_person_merge(root, q->route->person_id, from, &n, msg, sizeof msg);
    json_decref(root);
    if (bad)
        return bad_request(q, msg);
    err_t e;
    err_clear(&e);
    int rc = store_people_merge(d->st, q->route->person_id, from, n, &e);
    json_t *o = NULL;
    if (rc == ERR_OK)
        rc = store_person_get(d->st, q->route->person_id, &o, &e);
    if (rc != ERR_OK)
        return send_search_err(q, &e);
    search *sv = atomic_load(&d->srch);
    err_t ignore;
    if (sv != NULL)
        search_refresh_people(sv, &ignore);
    return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
}

enum MHD_Result api__handle_search(api_call *q)
{
    const api_deps *d = q->a->deps;
    const char *m = q->method;
    err_t e;
    err_clear(&e);
    switch (q->route->id) {
    case API_R_SEARCH_IMAGES:
        return strcmp(m, "POST") == 0 ? search_images_post(q) : not_allowed(q, "POST");
    case API_R_SEARCH_FACES:
        return strcmp(m, "POST") == 0 ? search_faces_post(q) : not_allowed(q, "POST");
    case API_R_DUPLICATES:
        return strcmp(m, "GET") == 0 ? duplicates_get(q) : not_allowed(q, "GET");
    case API_R_PEOPLE: {
        if (strcmp(m, "GET") != 0)
            return not_allowed(q, "GET");
        json_t *arr = NULL;
        if (store_people_list(d->st, &arr, &e) != ERR_OK)
            return api__send_err(q->conn, &e);
        json_t *o = json_object();
        json_object_set_new(o, "people", arr);
        return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
    }
    case API_R_PERSON: {
        if (strcmp(m, "PATCH") == 0)
            return person_patch(q);
        if (strcmp(m, "GET") != 0)
            return not_allowed(q, "GET, PATCH");
        json_t *o = NULL;
        if (store_person_get(d->st, q->route->person_id, &o, &e) != ERR_OK)
            return send_search_err(q, &e);
        return api__send_json(q->conn, MHD_HTTP_OK, o, NULL);
    }
    case API_R_PERSON_MERGE:
        return strcmp(m, "POST") == 0 ? person_merge(q) : not_allowed(q, "POST");
    default:
        break;
    }
    return api__send_error(q->conn, MHD_HTTP_NOT_FOUND, "not_found", "no such route");
}
