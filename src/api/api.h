/*
 * api/api.h — the HTTP API (libmicrohttpd + jansson), DESIGN.md "HTTP API".
 *
 * Routes: GET /v1/info, POST/GET /v1/jobs, POST /v1/jobs/batch, GET/DELETE /v1/jobs/{id},
 * GET/DELETE
 * /v1/assets/{id}, GET /v1/assets/{id}/duplicates, POST /v1/search/images,
 * POST /v1/search/faces, GET /v1/people, GET/PATCH /v1/people/{id},
 * POST /v1/people/{id}/merge, POST /v1/predict, GET /v1/events (SSE), GET /health,
 * GET /ready, GET /metrics. Errors are {"error": {"code", "message"}} with
 * the right status: unknown route 404, wrong method 405, bad JSON 400 naming
 * the field, body over the limit 413 (refused before it is read when
 * Content-Length says so).
 *
 * The API never waits on inference: handlers only validate, touch the store
 * (short transactions) and wake the worker. /v1/predict is the exception by
 * design (synchronous inference for one image) and runs on its own
 * connection thread, so it never holds up other requests.
 *
 * Threading: libmicrohttpd runs a thread per connection (so a long SSE stream
 * or a predict call cannot block /health); everything in api_deps must be
 * thread-safe (store, fetcher, worker_notify, events are).
 */
#ifndef INFERD_API_API_H
#define INFERD_API_API_H

#include <stdatomic.h>

#include "events/events.h"
#include "fetch/fetch.h"
#include "index/search.h"
#include "pipeline/analyze.h"
#include "queue/worker.h"
#include "store/store.h"
#include "util/config.h"
#include "util/err.h"

typedef struct api api;

typedef struct {
    const config *cfg;
    store *st;
    fetcher *fetch;
    events *ev;        /* may be NULL */
    /* Both published with atomic_store after api_start (models load and the
     * worker starts while the API already answers), read with atomic_load. */
    worker *_Atomic wk;   /* NULL in the api-only role and until the worker runs */
    pipeline *_Atomic pl; /* NULL until models are loaded: /ready is 503 until then */
    search *_Atomic srch; /* NULL until the indexes are loaded (search routes: 503) */
    /* Text encoder for {"text"} image queries (a clip_model *), published like `pl`;
     * NULL: 400 text_model_missing with `clip_missing` (static text) as the reason. */
    void *_Atomic clip;
    const char *_Atomic clip_missing;
    const char *role;  /* "serve", "api" or "worker" */
    int health_only;   /* worker role: only /health and /metrics */
} api_deps;

/*
 * Binds cfg->listen_host:listen_port and starts serving. `deps` must outlive
 * the api. `*out`: api_stop() then api_free(). ERR_IO naming the address when
 * it cannot bind.
 */
int api_start(api_deps *deps, api **out, err_t *e);

/* The port actually bound (useful with port 0). */
int api_port(const api *a);

/* Stops accepting and closes connections (SSE streams end). */
void api_stop(api *a);
void api_free(api *a);

#endif
