/*
 * api/api_int.h — internals of the HTTP API shared by its files:
 *   parse.c    request parsing and validation (pure: no libmicrohttpd, no store),
 *              unit-tested alone by tests/unit/test_api_parse.c
 *   api.c      the libmicrohttpd daemon: routing, auth, body limits, responses
 *   routes.c   the handlers (jobs, assets, predict, health, ready)
 *   metrics.c  GET /metrics (Prometheus text)
 *   sse.c      GET /v1/events (Server-Sent Events)
 *   ui.c       GET / and /ui/{file} (the web page), GET /openapi.json
 *
 * Threading: see api.c. Everything in parse.c is reentrant.
 */
#ifndef INFERD_API_API_INT_H
#define INFERD_API_API_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <stdint.h>

#include "api/api.h"
#include "store/store.h"

/* JSON request bodies are capped at this; raw image uploads at cfg->max_body. */
#define API_JSON_BODY_MAX ((size_t)1 << 20)
/* Connections served at once (one thread each) and their idle timeout. */
#define API_CONN_TIMEOUT_S 120 /* libmicrohttpd's inactivity timeout (a body, an idle stream) */
#define API_CONNS_RESERVED 16  /* connections of --max-connections kept for loopback */
#define API_THREAD_STACK (512 * 1024) /* per connection thread */
/* /health and /metrics read job counts from a cache refreshed this often. */
#define API_COUNTS_REFRESH_MS 500
/* The spool sweep (fetch_spool_sweep): how often, and how old an unreferenced upload must be;
 * in between the spool is only counted (for /metrics), every API_SPOOL_COUNT_MS. */
#define API_SPOOL_SWEEP_MS 60000
#define API_SPOOL_COUNT_MS 5000
#define API_SPOOL_MIN_AGE_MS 600000
/* SSE: comment line sent when nothing else was sent for this long. */
#define API_SSE_HEARTBEAT_MS 15000

/* --- parse.c: routes ------------------------------------------------------ */

typedef enum {
    API_R_NONE = 0, /* no such route: 404 */
    API_R_HEALTH,
    API_R_READY,
    API_R_METRICS,
    API_R_JOBS,          /* /v1/jobs */
    API_R_JOBS_BATCH,    /* POST /v1/jobs/batch */
    API_R_INFO,          /* GET /v1/info */
    API_R_ASSETS,        /* GET /v1/assets */
    API_R_THUMB,         /* GET /v1/assets/{id}/thumbnail */
    API_R_UI,            /* GET / and /ui/{file}: the web page (no token) */
    API_R_JOB,           /* /v1/jobs/{id} */
    API_R_ASSET,         /* /v1/assets/{asset_id} */
    API_R_PREDICT,       /* /v1/predict */
    API_R_EVENTS,        /* /v1/events */
    API_R_SEARCH_IMAGES, /* POST /v1/search/images */
    API_R_SEARCH_FACES,  /* POST /v1/search/faces */
    API_R_DUPLICATES,    /* GET /v1/assets/{id}/duplicates */
    API_R_PEOPLE,        /* GET /v1/people */
    API_R_PERSON,        /* GET, PATCH /v1/people/{id} */
    API_R_PERSON_MERGE,  /* POST /v1/people/{id}/merge */
    API_R_OPENAPI,       /* GET /openapi.json: the API's OpenAPI document (no token) */
} api_route_id;

typedef struct {
    api_route_id id;
    int64_t person_id;                     /* API_R_PERSON, API_R_PERSON_MERGE */
    int64_t job_id;                        /* API_R_JOB */
    char asset_id[STORE_ASSET_ID_MAX + 1]; /* API_R_ASSET, API_R_DUPLICATES */
    char bad_id[96]; /* non-empty: the route matched but its id is malformed (400), why */
    char file[64];   /* API_R_UI: the file asked for ("index.html" for /) */
} api_route;

/*
 * Matches an (already percent-decoded) request path. One trailing slash is
 * ignored ("/v1/jobs/" is "/v1/jobs"). An asset id is the whole rest of the
 * path, so it may contain '/'. Returns r->id (API_R_NONE when nothing matches);
 * a malformed id ("/v1/jobs/abc", "/v1/jobs/0", an asset id with a character
 * outside [A-Za-z0-9._:@/-]) still returns the route and fills r->bad_id.
 */
api_route_id api__route_match(const char *path, api_route *r);

/* Methods a route accepts, for the Allow header: "GET, POST". "" for API_R_NONE. */
const char *api__route_allow(api_route_id id);

/* Whether `method` is one of api__route_allow(id). */
int api__route_method_ok(api_route_id id, const char *method);

/* --- parse.c: values ------------------------------------------------------ */

/*
 * Parses a decimal integer in [lo, hi]. On failure writes "NAME: expected an
 * integer in LO..HI, got \"S\"" into msg and returns -1.
 */
int api__parse_int(const char *name, const char *s, long long lo, long long hi, long long *out,
                   char *msg, size_t msglen);

/*
 * Parses "image_embedding,faces" (comma-separated task names, no empties)
 * into JOB_TASK_* bits. -1 with a message naming `name` and the position on
 * an unknown or empty name.
 */
int api__parse_tasks_csv(const char *name, const char *s, unsigned *out, char *msg, size_t msglen);

/* A task name's bit (JOB_TASK_*), 0 when unknown. */
unsigned api__task_bit(const char *name);

/* --- parse.c: requests ---------------------------------------------------- */

/* POST /v1/jobs, validated. Strings are owned: api__job_req_clear(). */
typedef struct {
    char asset_id[STORE_ASSET_ID_MAX + 1];
    char *source;     /* compact JSON text {"path": P} or {"url": U} */
    unsigned tasks;   /* JOB_TASK_*; default both */
    int priority;     /* -1000..1000, default 0 */
    int max_attempts; /* 0 = store default, else 1..20 */
    char *payload;    /* compact JSON text of an object, or NULL */
} api_job_req;

void api__job_req_clear(api_job_req *r);

/*
 * Validates a JSON job request body of `len` bytes:
 *   {"asset_id": S, "source": {"path": P} | {"url": U}, "tasks": [..],
 *    "priority": N, "payload": {..}, "max_attempts": N}
 * asset_id and source are required; unknown fields are refused (a typo must
 * not silently run with defaults). On failure returns -1 and writes a message
 * that starts with the offending field ("tasks[1]: unknown task \"x\" ...")
 * into msg; `out` is then cleared. On success `out` owns its strings.
 */
int api__parse_job_json(const char *body, size_t len, api_job_req *out, char *msg, size_t msglen);

/*
 * POST /v1/jobs/batch: {"jobs": [job, ...]} with 1..STORE_ENQUEUE_MAX items,
 * each read as api__parse_job_json reads one job. -1 with a message when the
 * body is not such an object. On success *n items: (*errs)[i] is NULL for a
 * valid item, whose request is (*out)[i], or why item i is refused
 * ("jobs[3].source: required ..."). Free both with api__job_reqs_free(*out, *errs, *n).
 */
int api__parse_job_batch(const char *body, size_t len, api_job_req **out, char ***errs, int *n,
                         char *msg, size_t msglen);

/* Clears reqs[0..n), frees errs[0..n) and both arrays. */
void api__job_reqs_free(api_job_req *reqs, char **errs, int n);

/*
 * Validates the "source" member alone (used by /v1/predict's JSON form):
 * `src` must be an object with exactly one of "path" or "url", a non-empty
 * string. `*out` receives its compact JSON text (caller frees).
 */
int api__parse_source(const json_t *src, char **out, char *msg, size_t msglen);

/* GET /v1/jobs query. */
typedef struct {
    int state;      /* job_state or -1 = any */
    int limit;      /* 1..1000, default 50 */
    int64_t cursor; /* list ids below this; 0 = from the newest */
} api_list_query;

/* Each argument may be NULL (absent). -1 with a message naming the parameter. */
int api__parse_list_query(const char *state, const char *limit, const char *cursor,
                          api_list_query *out, char *msg, size_t msglen);

/* Whether a query flag such as ?vectors= is on: "1", "true", "yes" (NULL: off). */
int api__flag_on(const char *v);

/* A JSON body that must be an object: a new reference (json_decref), or NULL with the
 * reason ("body: invalid JSON at line ...") in msg. */
json_t *api__parse_body_object(const char *body, size_t len, char *msg, size_t msglen);

/*
 * POST /v1/search/images {asset_id | vector | text, limit, min_score, model, filter, ef}.
 * On success the strings and the filter in `*sq`, and `*text` (NULL unless a text
 * query), point into `root`; `*vec` (sq->vector, NULL unless a vector query) is a new
 * array the caller frees. -1 with a message naming the field.
 */
int api__parse_search_images(const json_t *root, search_image_query *sq, float **vec,
                             const char **text, char *msg, size_t msglen);

/* POST /v1/search/faces {face_id | vector, limit, min_score, model, ef}; as above. */
int api__parse_search_faces(const json_t *root, search_face_query *fq, float **vec, char *msg,
                            size_t msglen);

/* PATCH /v1/people/{id} {"name": S | null}: `*name` points into root (NULL = clear). */
int api__parse_person_patch(const json_t *root, const char **name, char *msg, size_t msglen);

/* POST /v1/people/{target}/merge {"from": [ids]}: 1..API_MERGE_MAX positive ids, none the
 * target, into `from`; their count in `*n`. */
#define API_MERGE_MAX 100
int api__parse_person_merge(const json_t *root, int64_t target, int64_t from[API_MERGE_MAX],
                            int *n, char *msg, size_t msglen);

/* --- parse.c: Immich's machine-learning API (immich.c) --------------------- */

#define IMMICH_MODEL_NAME_MAX 128 /* bytes of a modelName, with the NUL */

/* The tasks of a /predict "entries" field. */
typedef struct {
    int clip_visual, clip_textual, faces; /* which tasks were asked for */
    char visual_model[IMMICH_MODEL_NAME_MAX];
    char textual_model[IMMICH_MODEL_NAME_MAX];
    char detection_model[IMMICH_MODEL_NAME_MAX];
    char recognition_model[IMMICH_MODEL_NAME_MAX];
    float min_score; /* facial-recognition detection.options.minScore; 0 = not given */
} immich_entries;

/*
 * Parses the JSON text of "entries" (`len` bytes, not NUL-terminated):
 * {"clip": {"visual"|"textual": {"modelName": S, "options": {...}}},
 *  "facial-recognition": {"detection": {"modelName": S, "options": {"minScore": N}},
 *                         "recognition": {"modelName": S}}}.
 * Options other than minScore are accepted and ignored. Refused with a message in `msg`
 * (and -1): invalid JSON, no task, "ocr" (inferd has none), an unknown task or type, a
 * missing or over-long modelName, minScore outside (0, 1], facial-recognition without
 * both types, clip.textual together with an image task. 0 on success.
 */
int api__immich_parse_entries(const char *text, size_t len, immich_entries *out, char *msg,
                              size_t msglen);

/* --- conns.c: the connection guard ------------------------------------------ */

typedef struct {
    int max_connections;       /* all clients; the last API_CONNS_RESERVED for loopback */
    int max_per_ip;            /* one non-loopback address; 0 = no limit */
    int64_t header_timeout_ms; /* to deliver a request's headers; 0 = no limit */
} api_conns_opts;

typedef struct api_conns api_conns;

/* A guard with these limits; free with api_conns_free(). */
api_conns *api_conns_new(const api_conns_opts *o);
void api_conns_free(api_conns *g);

/* libmicrohttpd's accept policy callback (cls = the guard). */
enum MHD_Result api_conns_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback (cls = the guard). */
void api_conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

/* Marks the request of `c` as having its headers (begin 1) or as finished (begin 0). */
void api_conns_request(api_conns *g, struct MHD_Connection *c, int begin);

/* Shuts down connections past the header deadline; returns how many. Ticker thread. */
int api_conns_reap(api_conns *g);

/* Open connections, connections refused (per-address limit, reserve) and reaped so far. */
void api_conns_stats(api_conns *g, int *open, int64_t *refused, int64_t *reaped);

/* --- api.c: the server object and response helpers ------------------------ */

typedef struct {
    store_counts c;
    int valid;     /* 0 until the first successful read */
    int64_t at_ms; /* when c was read (store_now_ms) */
} api_counts_cache;

struct api {
    api_deps *deps;
    struct MHD_Daemon *mhd;
    int port;
    int64_t started_ms;
    atomic_int stopping;
    /* Protects `counts` and is what the ticker and SSE streams wait on. Never
     * held while calling the store or libmicrohttpd. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    api_counts_cache counts;
    pthread_t ticker;
    int ticker_started;
    atomic_int predicts; /* /v1/predict calls running; capped at cfg->slots */
    atomic_int streams;  /* /v1/events streams open; capped at cfg->max_event_streams */
    api_conns *conns;
    fetch_spool_stats spool; /* after the last sweep, under `lock` */
    int spool_valid;
    int64_t spool_next_ms; /* the ticker's next sweep or count (monotonic ms) */
    int64_t spool_sweeps;  /* ticker passes over the spool: every 12th sweeps */
};

/* A listening TCP socket on host:port (IPv6 too; port 0 picks one), or -1 with ERR_IO in `e`. */
int api__open_listener(const char *host, int port, err_t *e);

/*
 * A libmicrohttpd daemon on the listening socket `fd` (taken: closed with the daemon), one
 * thread per connection under `conns`' limits, calling `handler` and `completed` with
 * `cls`. NULL when libmicrohttpd cannot start (fd is then still the caller's).
 */
struct MHD_Daemon *api__start_daemon(int fd, api_conns *conns, int max_connections,
                                     MHD_AccessHandlerCallback handler,
                                     MHD_RequestCompletedCallback completed, void *cls);

/* A connection guard with the limits of --max-connections, --max-connections-per-ip and
 * --header-timeout-ms; the caller frees it with api_conns_free(). */
api_conns *api__conns_for(const config *cfg);

/* The port a listening socket is bound to, or -1. */
int api__bound_port(int fd);

/* The spool as the last sweep left it; 0 when none ran yet. Never touches the disk. */
int api__spool(api *a, fetch_spool_stats *out);

/* Queues `body` (stolen; NULL = empty body) with `status`; adds Location when not NULL. */
enum MHD_Result api__send_json(struct MHD_Connection *c, unsigned status, json_t *body,
                               const char *location);

/* Queues {"error": {"code", "message"}} with `status`. */
enum MHD_Result api__send_error(struct MHD_Connection *c, unsigned status, const char *code,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Maps an ERR_* code from the store/fetch/pipeline to an HTTP status and error code and sends
 * e->msg. */
enum MHD_Result api__send_err(struct MHD_Connection *c, const err_t *e);

/* Copies the cached job counts into `out`; 0 when never read yet. Never touches the store. */
int api__counts(api *a, store_counts *out, int64_t *age_ms);

/* A query argument, or NULL. */
const char *api__arg(struct MHD_Connection *c, const char *name);

/* --- routes.c / metrics.c / sse.c ------------------------------------------ */

typedef struct {
    api *a;
    struct MHD_Connection *conn;
    const char *method;
    const api_route *route;
    const char *body; /* a JSON body (NULL for an image or no body) */
    size_t len;       /* its length, or the image's */
    int raw; /* body is an image (Content-Type image/... or application/octet-stream) */
    /* raw: the spooled image. A handler that keeps it (commits it) sets *upload to
     * NULL; otherwise it is removed when the request completes. */
    fetch_upload **upload;
} api_call;

/* --- ui.c: the web page and the OpenAPI document --------------------------- */

/* One file of web/ or api/, compiled in (cmake/embed_web.cmake). */
typedef struct {
    const char *name; /* "index.html", "app.js", ... */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} api_web_file;

extern const api_web_file api__web_files[];
extern const int api__web_nfiles;
/* api/openapi.json (one file): GET /openapi.json. */
extern const api_web_file api__spec_files[];
extern const int api__spec_nfiles;

/* Sends `len` bytes at `data` (malloc'd; taken, also on failure) with the given
 * Content-Type and Cache-Control. */
enum MHD_Result api__send_bytes(struct MHD_Connection *c, unsigned status, void *data, size_t len,
                                const char *ctype, const char *cache);

enum MHD_Result api__handle_health(api_call *q);
enum MHD_Result api__handle_ready(api_call *q);
enum MHD_Result api__handle_info(api_call *q);
enum MHD_Result api__handle_assets(api_call *q);
enum MHD_Result api__handle_thumb(api_call *q);
enum MHD_Result api__handle_ui(api_call *q);
enum MHD_Result api__handle_openapi(api_call *q);
enum MHD_Result api__handle_jobs(api_call *q);
enum MHD_Result api__handle_jobs_batch(api_call *q);
enum MHD_Result api__handle_job(api_call *q);
enum MHD_Result api__handle_asset(api_call *q);
/* Search and people routes (routes.c), reached through api__handle_asset. */
/* Search and people routes (API_R_SEARCH_IMAGES .. API_R_PERSON_MERGE). */
enum MHD_Result api__handle_search(api_call *q);
enum MHD_Result api__handle_predict(api_call *q);
enum MHD_Result api__handle_metrics(api_call *q);
enum MHD_Result api__handle_events(api_call *q);

#endif
