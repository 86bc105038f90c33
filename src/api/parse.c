/*
 * api/parse.c — request parsing and validation for the HTTP API: route
 * matching, query parameters, and the JSON bodies of POST /v1/jobs, the
 * searches and the people edits.
 *
 * Everything here is pure (no libmicrohttpd, no I/O) so that it can be unit
 * tested and fuzzed alone; the only store function used is job_state_parse
 * for state names. Every failure writes a message that begins with the name
 * of the offending field or parameter, because that message is what the
 * client sees in the 400 body.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/xalloc.h"

static int failf(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(char *msg, size_t msglen, const char *fmt, ...)
{
    if (msg != NULL && msglen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msglen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* --- routes --------------------------------------------------------------- */

static const struct {
    api_route_id id;
    const char *allow;
} route_methods[] = {
    {API_R_HEALTH, "GET"},        {API_R_READY, "GET"},          {API_R_METRICS, "GET"},
    {API_R_JOBS, "GET, POST"},    {API_R_JOBS_BATCH, "POST"},    {API_R_INFO, "GET"},
    {API_R_ASSETS, "GET"},        {API_R_THUMB, "GET"},          {API_R_UI, "GET"},
    {API_R_JOB, "GET, DELETE"},   {API_R_ASSET, "GET, DELETE"},  {API_R_PREDICT, "POST"},
    {API_R_EVENTS, "GET"},        {API_R_SEARCH_IMAGES, "POST"}, {API_R_SEARCH_FACES, "POST"},
    {API_R_DUPLICATES, "GET"},    {API_R_PEOPLE, "GET"},         {API_R_PERSON, "GET, PATCH"},
    {API_R_PERSON_MERGE, "POST"}, {API_R_OPENAPI, "GET"},
};

const char *api__route_allow(api_route_id id)
{
    for (size_t i = 0; i < sizeof route_methods / sizeof route_methods[0]; i++)
        if (route_methods[i].id == id)
            return route_methods[i].allow;
    return "";
}

int api__route_method_ok(api_route_id id, const char *method)
{
    const char *allow = api__route_allow(id);
    size_t ml = strlen(method);
    if (ml == 0)
        return 0;
    /* allow is "A, B": match whole words. */
    for (const char *p = allow; *p != '\0';) {
        size_t wl = strcspn(p, ",");
        if (wl == ml && strncmp(p, method, ml) == 0)
            return 1;
        p += wl;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* Whether path (length n) equals `lit`. */
static int path_is(const char *path, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(path, lit, n) == 0;
}

/*
 * Parses the `sl` bytes at `s` as a positive decimal id (at most 18 digits).
 * Returns it, or 0 after writing "WHAT: expected a positive integer, got ..."
 * into r->bad_id.
 */
static int64_t path_id(const char *s, size_t sl, const char *what, api_route *r)
{
    int64_t v = 0;
    int ok = sl > 0 && sl <= 18;
    for (size_t i = 0; ok && i < sl; i++) {
        if (s[i] < '0' || s[i] > '9')
            ok = 0;
        else
            v = v * 10 + (s[i] - '0');
    }
    if (ok && v > 0)
        return v;
    snprintf(r->bad_id, sizeof r->bad_id, "%s: expected a positive integer, got \"%.*s\"", what,
             sl > 40 ? 40 : (int)sl, s);
    return 0;
}

api_route_id api__route_match(const char *path, api_route *r)
{
    memset(r, 0, sizeof *r);
    size_t n = strlen(path);
    if (n > 1 && path[n - 1] == '/')
        n--;
    if (path_is(path, n, "/health"))
        return r->id = API_R_HEALTH;
    if (path_is(path, n, "/ready"))
        return r->id = API_R_READY;
    if (path_is(path, n, "/metrics"))
        return r->id = API_R_METRICS;
    if (path_is(path, n, "/v1/jobs"))
        return r->id = API_R_JOBS;
    if (path_is(path, n, "/v1/jobs/batch"))
        return r->id = API_R_JOBS_BATCH;
    if (path_is(path, n, "/v1/info"))
        return r->id = API_R_INFO;
    if (path_is(path, n, "/v1/assets"))
        return r->id = API_R_ASSETS;
    if (path_is(path, n, "/openapi.json"))
        return r->id = API_R_OPENAPI;
    if (strcmp(path, "/") == 0) {
        snprintf(r->file, sizeof r->file, "index.html");
        return r->id = API_R_UI;
    }
    static const char ui[] = "/ui/";
    if (strncmp(path, ui, sizeof ui - 1) == 0 && n - (sizeof ui - 1) < sizeof r->file &&
        n > sizeof ui - 1) {
        memcpy(r->file, path + sizeof ui - 1, n - (sizeof ui - 1));
        r->file[n - (sizeof ui - 1)] = '\0';
        return r->id = API_R_UI;
    }
    if (path_is(path, n, "/v1/predict"))
        return r->id = API_R_PREDICT;
    if (path_is(path, n, "/v1/events"))
        return r->id = API_R_EVENTS;

    if (path_is(path, n, "/v1/search/images"))
        return r->id = API_R_SEARCH_IMAGES;
    if (path_is(path, n, "/v1/search/faces"))
        return r->id = API_R_SEARCH_FACES;
    if (path_is(path, n, "/v1/people"))
        return r->id = API_R_PEOPLE;
    static const char people[] = "/v1/people/";
    if (n > sizeof people - 1 && strncmp(path, people, sizeof people - 1) == 0) {
        const char *s = path + sizeof people - 1;
        size_t sl = n - (sizeof people - 1);
        r->id = API_R_PERSON;
        static const char merge[] = "/merge";
        if (sl > sizeof merge - 1 &&
            strncmp(s + sl - (sizeof merge - 1), merge, sizeof merge - 1) == 0) {
            r->id = API_R_PERSON_MERGE;
            sl -= sizeof merge - 1;
        }
        r->person_id = path_id(s, sl, "person id", r);
        return r->id;
    }

    static const char jobs[] = "/v1/jobs/";
    if (n > sizeof jobs - 1 && strncmp(path, jobs, sizeof jobs - 1) == 0) {
        const char *s = path + sizeof jobs - 1;
        size_t sl = n - (sizeof jobs - 1);
        r->id = API_R_JOB;
        r->job_id = path_id(s, sl, "job id", r);
        return r->id;
    }
    static const char assets[] = "/v1/assets/";
    if (n > sizeof assets - 1 && strncmp(path, assets, sizeof assets - 1) == 0) {
        const char *s = path + sizeof assets - 1;
        size_t sl = n - (sizeof assets - 1);
        r->id = API_R_ASSET;
        /* {id}/duplicates: an asset id that itself ends in "/duplicates" cannot be addressed. */
        static const char dup[] = "/duplicates";
        static const char thumb[] = "/thumbnail";
        if (sl > sizeof dup - 1 && strncmp(s + sl - (sizeof dup - 1), dup, sizeof dup - 1) == 0) {
            r->id = API_R_DUPLICATES;
            sl -= sizeof dup - 1;
        } else if (sl > sizeof thumb - 1 &&
                   strncmp(s + sl - (sizeof thumb - 1), thumb, sizeof thumb - 1) == 0) {
            r->id = API_R_THUMB;
            sl -= sizeof thumb - 1;
        }
        if (sl > STORE_ASSET_ID_MAX) {
            snprintf(r->bad_id, sizeof r->bad_id, "asset id: longer than %d characters",
                     STORE_ASSET_ID_MAX);
            return r->id;
        }
        memcpy(r->asset_id, s, sl);
        r->asset_id[sl] = '\0';
        if (!store_asset_id_valid(r->asset_id)) {
            snprintf(r->bad_id, sizeof r->bad_id,
                     "asset id: expected 1..%d characters of [A-Za-z0-9._:@/-]",
                     STORE_ASSET_ID_MAX);
            r->asset_id[0] = '\0';
        }
        return r->id;
    }
    return r->id = API_R_NONE;
}

/* --- values --------------------------------------------------------------- */

int api__parse_int(const char *name, const char *s, long long lo, long long hi, long long *out,
                   char *msg, size_t msglen)
{
    char *end;
    errno = 0;
    long long v = s != NULL ? strtoll(s, &end, 10) : 0;
    if (s == NULL || *s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi || *s == ' ' ||
        *s == '+')
        return failf(msg, msglen, "%s: expected an integer in %lld..%lld, got \"%.40s\"", name, lo,
                     hi, s != NULL ? s : "");
    *out = v;
    return 0;
}

static const char *const task_names[] = {"image_embedding", "faces"};
static const unsigned task_bits[] = {JOB_TASK_IMAGE_EMBEDDING, JOB_TASK_FACES};
#define TASKS_EXPECTED "(expected image_embedding, faces)"

unsigned api__task_bit(const char *name)
{
    for (size_t i = 0; i < sizeof task_names / sizeof task_names[0]; i++)
        if (strcmp(name, task_names[i]) == 0)
            return task_bits[i];
    return 0;
}

int api__parse_tasks_csv(const char *name, const char *s, unsigned *out, char *msg, size_t msglen)
{
    unsigned bits = 0;
    int idx = 0;
    const char *p = s;
    for (;;) {
        size_t wl = strcspn(p, ",");
        char word[32];
        if (wl == 0)
            return failf(msg, msglen, "%s[%d]: empty task name " TASKS_EXPECTED, name, idx);
        if (wl >= sizeof word)
            return failf(msg, msglen, "%s[%d]: unknown task \"%.*s...\" " TASKS_EXPECTED, name, idx,
                         20, p);
        memcpy(word, p, wl);
        word[wl] = '\0';
        unsigned b = api__task_bit(word);
        if (b == 0)
            return failf(msg, msglen, "%s[%d]: unknown task \"%s\" " TASKS_EXPECTED, name, idx,
                         word);
        bits |= b;
        idx++;
        p += wl;
        if (*p == '\0')
            break;
        p++; /* the comma: "a," has an empty last name */
    }
    *out = bits;
    return 0;
}

int api__flag_on(const char *v)
{
    return v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
}

/* --- requests ------------------------------------------------------------- */

void api__job_req_clear(api_job_req *r)
{
    if (r == NULL)
        return;
    free(r->source);
    free(r->payload);
    memset(r, 0, sizeof *r);
}

int api__parse_source(const json_t *src, char **out, char *msg, size_t msglen)
{
    *out = NULL;
    if (src == NULL)
        return failf(msg, msglen, "source: required ({\"path\": ...} or {\"url\": ...})");
    if (!json_is_object(src))
        return failf(msg, msglen, "source: expected an object ({\"path\": ...} or {\"url\": ...})");
    if (json_object_size(src) != 1) {
        if (json_object_size(src) == 0)
            return failf(msg, msglen, "source: expected exactly one of \"path\", \"url\"");
        return failf(msg, msglen,
                     "source: expected exactly one of \"path\", \"url\", got %zu members",
                     json_object_size(src));
    }
    const char *key = json_object_iter_key(json_object_iter((json_t *)src));
    const json_t *v = json_object_iter_value(json_object_iter((json_t *)src));
    if (strcmp(key, "path") != 0 && strcmp(key, "url") != 0)
        return failf(msg, msglen, "source: unknown source type \"%.40s\" (expected path, url)",
                     key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return failf(msg, msglen, "source.%s: expected a non-empty string", key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return failf(msg, msglen, "source.%s: contains a NUL character", key);
    json_t *o = json_pack("{sO}", key, v);
    if (o == NULL)
        return failf(msg, msglen, "source: out of memory");
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (*out == NULL)
        return failf(msg, msglen, "source: out of memory");
    return 0;
}

static int json_int_in(const json_t *v, const char *name, long long lo, long long hi,
                       long long *out, char *msg, size_t msglen)
{
    if (!json_is_integer(v))
        return failf(msg, msglen, "%s: expected an integer in %lld..%lld", name, lo, hi);
    long long x = (long long)json_integer_value(v);
    if (x < lo || x > hi)
        return failf(msg, msglen, "%s: %lld is out of range %lld..%lld", name, x, lo, hi);
    *out = x;
    return 0;
}

/* One job request object (see api__parse_job_json); `root` stays the caller's. */
static int parse_job_obj(json_t *root, api_job_req *out, char *msg, size_t msglen)
{
    memset(out, 0, sizeof *out);
    out->tasks = JOB_TASK_ALL;
    int rc = -1;
    if (!json_is_object(root)) {
        failf(msg, msglen, "body: expected a JSON object");
        goto out;
    }

    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        static const char *const known[] = {"asset_id", "source",  "tasks",
                                            "priority", "payload", "max_attempts"};
        int found = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            found |= strcmp(key, known[i]) == 0;
        if (!found) {
            failf(msg, msglen,
                  "%.40s: unknown field (expected asset_id, source, tasks, priority, payload, "
                  "max_attempts)",
                  key);
            goto out;
        }
    }

    v = json_object_get(root, "asset_id");
    if (v == NULL) {
        failf(msg, msglen, "asset_id: required");
        goto out;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !store_asset_id_valid(json_string_value(v))) {
        failf(msg, msglen, "asset_id: expected a string of 1..%d characters of [A-Za-z0-9._:@/-]",
              STORE_ASSET_ID_MAX);
        goto out;
    }
    strcpy(out->asset_id, json_string_value(v));

    if (api__parse_source(json_object_get(root, "source"), &out->source, msg, msglen) != 0)
        goto out;

    v = json_object_get(root, "tasks");
    if (v != NULL) {
        if (!json_is_array(v)) {
            failf(msg, msglen, "tasks: expected an array of task names " TASKS_EXPECTED);
            goto out;
        }
        if (json_array_size(v) == 0) {
            failf(msg, msglen, "tasks: must not be empty " TASKS_EXPECTED);
            goto out;
        }
        unsigned bits = 0;
        size_t i;
        json_t *t;
        json_array_foreach(v, i, t)
        {
            if (!json_is_string(t)) {
                failf(msg, msglen, "tasks[%zu]: expected a string " TASKS_EXPECTED, i);
                goto out;
            }
            unsigned b = api__task_bit(json_string_value(t));
            if (b == 0) {
                failf(msg, msglen, "tasks[%zu]: unknown task \"%.40s\" " TASKS_EXPECTED, i,
                      json_string_value(t));
                goto out;
            }
            bits |= b;
        }
        out->tasks = bits;
    }

    long long x;
    v = json_object_get(root, "priority");
    if (v != NULL) {
        if (json_int_in(v, "priority", -1000, 1000, &x, msg, msglen) != 0)
            goto out;
        out->priority = (int)x;
    }
    v = json_object_get(root, "max_attempts");
    if (v != NULL) {
        if (json_int_in(v, "max_attempts", 1, 20, &x, msg, msglen) != 0)
            goto out;
        out->max_attempts = (int)x;
    }
    v = json_object_get(root, "payload");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            failf(msg, msglen, "payload: expected an object");
            goto out;
        }
        out->payload = json_dumps(v, JSON_COMPACT);
        if (out->payload == NULL) {
            failf(msg, msglen, "payload: could not be serialised");
            goto out;
        }
    }
    rc = 0;
out:
    if (rc != 0)
        api__job_req_clear(out);
    return rc;
}

int api__parse_job_json(const char *body, size_t len, api_job_req *out, char *msg, size_t msglen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(body != NULL ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return failf(msg, msglen, "body: invalid JSON at line %d column %d: %s", je.line, je.column,
                     je.text);
    int rc = parse_job_obj(root, out, msg, msglen);
    json_decref(root);
    return rc;
}

int api__parse_job_batch(const char *body, size_t len, api_job_req **out, char ***errs, int *n,
                         char *msg, size_t msglen)
{
    *out = NULL;
    *errs = NULL;
    *n = 0;
    json_error_t je;
    json_t *root = json_loadb(body != NULL ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return failf(msg, msglen, "body: invalid JSON at line %d column %d: %s", je.line, je.column,
                     je.text);
    int rc = -1;
    json_t *jobs = json_object_get(root, "jobs");
    if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(jobs)) {
        failf(msg, msglen, "body: expected {\"jobs\": [job, ...]}");
        goto out;
    }
    size_t cnt = json_array_size(jobs);
    if (cnt < 1 || cnt > STORE_ENQUEUE_MAX) {
        failf(msg, msglen, "jobs: expected 1..%d jobs, got %zu", STORE_ENQUEUE_MAX, cnt);
        goto out;
    }
    api_job_req *reqs = xcalloc(cnt, sizeof *reqs);
    char **bad = xcalloc(cnt, sizeof *bad);
    for (size_t i = 0; i < cnt; i++) {
        char m[512], full[600];
        json_t *item = json_array_get(jobs, i);
        if (!json_is_object(item)) {
            snprintf(full, sizeof full, "jobs[%zu]: expected a job object", i);
            bad[i] = xstrdup(full);
        } else if (parse_job_obj(item, &reqs[i], m, sizeof m) != 0) {
            snprintf(full, sizeof full, "jobs[%zu].%s", i, m);
            bad[i] = xstrdup(full);
        }
    }
    *out = reqs;
    *errs = bad;
    *n = (int)cnt;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void api__job_reqs_free(api_job_req *reqs, char **errs, int n)
{
    for (int i = 0; i < n; i++) {
        api__job_req_clear(&reqs[i]);
        free(errs[i]);
    }
    free(reqs);
    free(errs);
}

int api__parse_list_query(const char *state, const char *limit, const char *cursor,
                          api_list_query *out, char *msg, size_t msglen)
{
    out->state = -1;
    out->limit = 50;
    out->cursor = 0;
    long long x;
    if (state != NULL && state[0] != '\0') {
        int s = job_state_parse(state);
        if (s < 0)
            return failf(msg, msglen,
                         "state: unknown state \"%.40s\" (expected queued, running, done, failed, "
                         "cancelled)",
                         state);
        out->state = s;
    }
    if (limit != NULL) {
        if (api__parse_int("limit", limit, 1, 1000, &x, msg, msglen) != 0)
            return -1;
        out->limit = (int)x;
    }
    if (cursor != NULL) {
        if (api__parse_int("cursor", cursor, 1, INT64_MAX, &x, msg, msglen) != 0)
            return -1;
        out->cursor = (int64_t)x;
    }
    return 0;
}

/* --- JSON bodies of the search and people routes -------------------------- */

json_t *api__parse_body_object(const char *body, size_t len, char *msg, size_t msglen)
{
    json_error_t je;
    json_t *root = json_loadb(body != NULL ? body : "", len, 0, &je);
    if (root == NULL) {
        failf(msg, msglen, "body: invalid JSON at line %d column %d: %s", je.line, je.column,
              je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        failf(msg, msglen, "body: expected a JSON object");
        return NULL;
    }
    return root;
}

/* Reads "vector" (array of finite numbers, 1..65536) into a new array. */
static int parse_vector(const json_t *v, float **out, int *dim, char *msg, size_t msglen)
{
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0 || n > 65536)
        return failf(msg, msglen, "vector: expected an array of 1..65536 numbers");
    float *f = malloc(n * sizeof *f);
    if (f == NULL)
        return failf(msg, msglen, "vector: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        double d = json_number_value(x);
        if (!json_is_number(x) || !isfinite(d)) {
            free(f);
            return failf(msg, msglen, "vector[%zu]: expected a finite number", i);
        }
        f[i] = (float)d;
    }
    *out = f;
    *dim = (int)n;
    return 0;
}

/* Common fields: limit (1..1000, default 20), min_score (-1..1), ef (0..10000). */
static int parse_common(const json_t *root, int *limit, float *min_score, uint32_t *ef, char *msg,
                        size_t msglen)
{
    *limit = 20;
    *min_score = -2.0f;
    *ef = 0;
    json_t *v = json_object_get(root, "limit");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
            return failf(msg, msglen, "limit: expected an integer 1..1000");
        *limit = (int)json_integer_value(v);
    }
    v = json_object_get(root, "min_score");
    if (v != NULL) {
        double d = json_number_value(v);
        if (!json_is_number(v) || !(d >= -1.0 && d <= 1.0))
            return failf(msg, msglen, "min_score: expected a number -1..1");
        *min_score = (float)d;
    }
    v = json_object_get(root, "ef");
    if (v != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000)
            return failf(msg, msglen, "ef: expected an integer 0..10000");
        *ef = (uint32_t)json_integer_value(v);
    }
    return 0;
}

/* "model": absent, or a non-empty string. */
static int parse_model(const json_t *root, const char **model, char *msg, size_t msglen)
{
    json_t *mj = json_object_get(root, "model");
    if (mj != NULL && (!json_is_string(mj) || json_string_length(mj) == 0))
        return failf(msg, msglen, "model: expected a model name");
    *model = mj != NULL ? json_string_value(mj) : NULL;
    return 0;
}

int api__parse_search_images(const json_t *root, search_image_query *sq, float **vec,
                             const char **text, char *msg, size_t msglen)
{
    memset(sq, 0, sizeof *sq);
    *vec = NULL;
    *text = NULL;
    if (parse_common(root, &sq->limit, &sq->min_score, &sq->ef, msg, msglen) != 0)
        return -1;
    json_t *aid = json_object_get(root, "asset_id");
    json_t *vj = json_object_get(root, "vector");
    json_t *tj = json_object_get(root, "text");
    json_t *fj = json_object_get(root, "filter");
    if ((aid != NULL) + (vj != NULL) + (tj != NULL) != 1)
        return failf(msg, msglen, "body: expected exactly one of asset_id, vector, text");
    if (parse_model(root, &sq->model, msg, msglen) != 0)
        return -1;
    if (fj != NULL && !json_is_object(fj))
        return failf(msg, msglen, "filter: expected an object {payload key: value}");
    if (aid != NULL && (!json_is_string(aid) || !store_asset_id_valid(json_string_value(aid))))
        return failf(msg, msglen, "asset_id: expected 1..%d characters of [A-Za-z0-9._:@/-]",
                     STORE_ASSET_ID_MAX);
    if (tj != NULL &&
        (!json_is_string(tj) || json_string_length(tj) == 0 || json_string_length(tj) > 1000))
        return failf(msg, msglen, "text: expected a string of 1..1000 bytes");
    if (vj != NULL && parse_vector(vj, vec, &sq->dim, msg, msglen) != 0)
        return -1;
    sq->asset_id = aid != NULL ? json_string_value(aid) : NULL;
    sq->vector = *vec;
    sq->filter = fj;
    *text = tj != NULL ? json_string_value(tj) : NULL;
    return 0;
}

int api__parse_search_faces(const json_t *root, search_face_query *fq, float **vec, char *msg,
                            size_t msglen)
{
    memset(fq, 0, sizeof *fq);
    *vec = NULL;
    if (parse_common(root, &fq->limit, &fq->min_score, &fq->ef, msg, msglen) != 0)
        return -1;
    json_t *fid = json_object_get(root, "face_id");
    json_t *vj = json_object_get(root, "vector");
    if ((fid != NULL) + (vj != NULL) != 1)
        return failf(msg, msglen, "body: expected exactly one of face_id, vector");
    if (fid != NULL && (!json_is_integer(fid) || json_integer_value(fid) <= 0))
        return failf(msg, msglen, "face_id: expected a positive integer");
    if (parse_model(root, &fq->model, msg, msglen) != 0)
        return -1;
    if (vj != NULL && parse_vector(vj, vec, &fq->dim, msg, msglen) != 0)
        return -1;
    fq->face_id = fid != NULL ? (int64_t)json_integer_value(fid) : 0;
    fq->vector = *vec;
    return 0;
}

int api__parse_person_patch(const json_t *root, const char **name, char *msg, size_t msglen)
{
    json_t *nj = json_object_get(root, "name");
    *name = NULL;
    if (nj == NULL || !(json_is_string(nj) || json_is_null(nj)) ||
        (json_is_string(nj) && json_string_length(nj) > STORE_PERSON_NAME_MAX))
        return failf(msg, msglen, "name: expected a string of at most %d bytes, or null",
                     STORE_PERSON_NAME_MAX);
    *name = json_is_string(nj) ? json_string_value(nj) : NULL;
    return 0;
}

int api__parse_person_merge(const json_t *root, int64_t target, int64_t from[API_MERGE_MAX],
                            int *n, char *msg, size_t msglen)
{
    json_t *fj = json_object_get(root, "from");
    size_t k = json_array_size(fj);
    *n = 0;
    int bad = !json_is_array(fj) || k < 1 || k > API_MERGE_MAX;
    for (size_t i = 0; !bad && i < k; i++) {
        json_t *x = json_array_get(fj, i);
        bad = !json_is_integer(x) || json_integer_value(x) <= 0 ||
              json_integer_value(x) == target;
        if (!bad)
            from[i] = (int64_t)json_integer_value(x);
    }
    if (bad)
        return failf(msg, msglen, "from: expected an array of 1..%d person ids other than the "
                                  "target",
                     API_MERGE_MAX);
    *n = (int)k;
    return 0;
}

/* --- Immich's machine-learning API (api/immich.c) -------------------------- */

/* entry.modelName into out (1..IMMICH_MODEL_NAME_MAX bytes); `what` names it in errors. */
static int immich_model_name(const json_t *entry, const char *what, char *out, size_t cap,
                             char *msg, size_t msglen)
{
    if (!json_is_object(entry))
        return failf(msg, msglen, "entries: %s: expected an object with \"modelName\"", what);
    const json_t *n = json_object_get(entry, "modelName");
    if (!json_is_string(n) || json_string_length(n) == 0 || json_string_length(n) >= cap ||
        strlen(json_string_value(n)) != json_string_length(n))
        return failf(msg, msglen, "entries: %s.modelName: expected a model name of 1..%zu bytes",
                     what, cap - 1);
    const json_t *o = json_object_get(entry, "options");
    if (o != NULL && !json_is_object(o) && !json_is_null(o))
        return failf(msg, msglen, "entries: %s.options: expected an object", what);
    memcpy(out, json_string_value(n), json_string_length(n) + 1);
    return 0;
}

int api__immich_parse_entries(const char *text, size_t len, immich_entries *out, char *msg,
                              size_t msglen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(text != NULL ? text : "", len, 0, &je);
    if (root == NULL)
        return failf(msg, msglen, "entries: invalid JSON at line %d column %d: %s", je.line,
                     je.column, je.text);
    int rc = 0;
    if (!json_is_object(root) || json_object_size(root) == 0) {
        rc = failf(msg, msglen,
                   "entries: expected an object of tasks, such as "
                   "{\"clip\": {\"visual\": {\"modelName\": \"...\"}}}");
        goto out;
    }
    const char *task;
    json_t *types;
    json_object_foreach(root, task, types)
    {
        if (strcmp(task, "ocr") == 0) {
            rc = failf(msg, msglen,
                       "entries: ocr: inferd has no OCR model; turn OCR off in "
                       "Immich or send it to Immich's own machine-learning "
                       "service");
            goto out;
        }
        int clip = strcmp(task, "clip") == 0;
        int faces = strcmp(task, "facial-recognition") == 0;
        if (!clip && !faces) {
            rc = failf(msg, msglen,
                       "entries: unknown task \"%.64s\" (inferd answers clip and "
                       "facial-recognition)",
                       task);
            goto out;
        }
        if (!json_is_object(types) || json_object_size(types) == 0) {
            rc = failf(msg, msglen, "entries: %s: expected an object of model types", task);
            goto out;
        }
        const char *type;
        json_t *entry;
        json_object_foreach(types, type, entry)
        {
            char what[96];
            snprintf(what, sizeof what, "%s.%.40s", task, type);
            if (clip && strcmp(type, "visual") == 0) {
                out->clip_visual = 1;
                rc = immich_model_name(entry, what, out->visual_model, sizeof out->visual_model,
                                       msg, msglen);
            } else if (clip && strcmp(type, "textual") == 0) {
                out->clip_textual = 1;
                rc = immich_model_name(entry, what, out->textual_model, sizeof out->textual_model,
                                       msg, msglen);
            } else if (faces && strcmp(type, "detection") == 0) {
                rc = immich_model_name(entry, what, out->detection_model,
                                       sizeof out->detection_model, msg, msglen);
                const json_t *s = json_object_get(json_object_get(entry, "options"), "minScore");
                if (rc == 0 && s != NULL &&
                    (!json_is_number(s) || !(json_number_value(s) > 0) || json_number_value(s) > 1))
                    rc = failf(msg, msglen,
                               "entries: %s.options.minScore: expected a number in "
                               "(0, 1]",
                               what);
                if (rc == 0 && s != NULL)
                    out->min_score = (float)json_number_value(s);
            } else if (faces && strcmp(type, "recognition") == 0) {
                rc = immich_model_name(entry, what, out->recognition_model,
                                       sizeof out->recognition_model, msg, msglen);
            } else {
                rc = failf(msg, msglen, "entries: %s: unknown model type", what);
            }
            if (rc != 0)
                goto out;
        }
        if (faces) {
            if (out->detection_model[0] == '\0' || out->recognition_model[0] == '\0') {
                rc = failf(msg, msglen,
                           "entries: facial-recognition: needs both \"detection\" "
                           "and \"recognition\"");
                goto out;
            }
            out->faces = 1;
        }
    }
    if (out->clip_textual && (out->clip_visual || out->faces))
        rc = failf(msg, msglen,
                   "entries: clip.textual takes text, the other tasks an image: "
                   "send them in separate requests");
out:
    json_decref(root);
    if (rc != 0)
        memset(out, 0, sizeof *out);
    return rc;
}
