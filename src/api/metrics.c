/*
 * api/metrics.c — GET /metrics in the Prometheus text exposition format.
 *
 * Job gauges come from the counts cache (api.c), never from a store read on
 * the request, so a scrape cannot stall behind a writer. Worker counters and
 * stage histograms come from worker_get_stats, delivery counters from
 * events_get_stats, index gauges from search_index_stats (a read lock held
 * for a loop over the indexes). Histogram buckets are reported cumulatively, as
 * Prometheus requires; worker_hist counts are per bucket.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/xalloc.h"

typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n;
        b->s = xrealloc(b->s, b->cap);
    }
}

/* Appends `v` as a Prometheus label value: backslash, quote and newline escaped. */
static void sb_label(sbuf *b, const char *v)
{
    for (; v != NULL && *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            sb_printf(b, "\\%c", *v);
        else if (*v == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *v);
    }
}

static void gauge(sbuf *b, const char *name, const char *help, double v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void counter(sbuf *b, const char *name, const char *help, double v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %.17g\n", name, help, name, name, v);
}

enum MHD_Result api__handle_metrics(api_call *q)
{
    api *a = q->a;
    api_deps *d = a->deps;
    worker *wk = atomic_load(&d->wk);
    sbuf b = {xmalloc(8192), 0, 8192};
    b.s[0] = '\0';
    double uptime = (double)(store_now_ms() - a->started_ms) / 1000.0;

    store_counts c;
    if (api__counts(a, &c, NULL)) {
        sb_printf(&b, "# HELP inferd_jobs Jobs in the store by state.\n# TYPE inferd_jobs gauge\n");
        const struct {
            const char *state;
            int64_t n;
        } st[] = {{"queued", c.queued},
                  {"running", c.running},
                  {"done", c.done},
                  {"failed", c.failed},
                  {"cancelled", c.cancelled}};
        for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
            sb_printf(&b, "inferd_jobs{state=\"%s\"} %lld\n", st[i].state, (long long)st[i].n);
        gauge(&b, "inferd_outbox_pending", "Outbox events not yet delivered to MQTT.",
              (double)c.outbox_pending);
    }
    if (a->conns != NULL) {
        int open = 0;
        int64_t refused = 0, reaped = 0;
        api_conns_stats(a->conns, &open, &refused, &reaped);
        gauge(&b, "inferd_http_connections", "HTTP connections open.", open);
        counter(&b, "inferd_http_connections_refused_total",
                "Connections refused: past the per-address limit or into the loopback reserve.",
                (double)refused);
        counter(&b, "inferd_http_connections_reaped_total",
                "Connections closed for not sending their request headers in time.",
                (double)reaped);
        gauge(&b, "inferd_event_streams", "GET /v1/events streams open.",
              atomic_load(&a->streams));
    }
    fetch_spool_stats sp;
    if (api__spool(a, &sp)) {
        gauge(&b, "inferd_spool_bytes",
              "Bytes of spooled uploads on disk (jobs not yet ended), as of the last sweep.",
              (double)sp.bytes);
        gauge(&b, "inferd_spool_files", "Spooled upload files on disk, as of the last sweep.",
              (double)sp.files);
    }

    if (wk != NULL) {
        worker_stats ws;
        worker_get_stats(wk, &ws);
        counter(&b, "inferd_jobs_completed_total", "Jobs this process completed.",
                (double)ws.completed);
        counter(&b, "inferd_jobs_failed_total", "Jobs this process failed permanently.",
                (double)ws.failed);
        counter(&b, "inferd_jobs_retried_total", "Job attempts this process scheduled for retry.",
                (double)ws.retried);
        counter(&b, "inferd_jobs_cancelled_total", "Jobs this process ended as cancelled.",
                (double)ws.cancelled);
        gauge(&b, "inferd_slots", "Worker slots.", ws.slots);
        gauge(&b, "inferd_slots_busy", "Worker slots running a job now.", ws.busy);
        double util = ws.slots > 0 && uptime > 0 ? ws.busy_seconds / (ws.slots * uptime) : 0;
        gauge(&b, "inferd_slot_utilisation", "Busy slot-seconds over slot-seconds since start.",
              util);
        /* Base units (Prometheus conventions): the ms buckets and sums as seconds. */
        const double *bounds = worker_hist_bounds();
        sb_printf(&b, "# HELP inferd_stage_duration_seconds Duration of each job stage.\n"
                      "# TYPE inferd_stage_duration_seconds histogram\n");
        for (int s = 0; s < 8; s++) {
            const worker_hist *h = &ws.stage[s];
            const char *name = worker_stage_names[s];
            uint64_t cum = 0;
            for (int i = 0; i < WORKER_HIST_BUCKETS; i++) {
                cum += h->count[i];
                sb_printf(&b, "inferd_stage_duration_seconds_bucket{stage=\"%s\",le=\"%g\"} %llu\n",
                          name, bounds[i] / 1000.0, (unsigned long long)cum);
            }
            cum += h->count[WORKER_HIST_BUCKETS];
            sb_printf(&b, "inferd_stage_duration_seconds_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n",
                      name, (unsigned long long)cum);
            sb_printf(&b, "inferd_stage_duration_seconds_sum{stage=\"%s\"} %.17g\n", name,
                      h->sum_ms / 1000.0);
            sb_printf(&b, "inferd_stage_duration_seconds_count{stage=\"%s\"} %llu\n", name,
                      (unsigned long long)h->total);
        }
    }

    if (d->ev != NULL) {
        events_stats es;
        events_get_stats(d->ev, &es);
        counter(&b, "inferd_events_published_total", "Outbox events acknowledged by the broker.",
                (double)es.published);
        counter(&b, "inferd_events_publish_errors_total", "Failed publish attempts.",
                (double)es.publish_errors);
        gauge(&b, "inferd_mqtt_connected", "1 while the MQTT connection is up.", es.connected);
        gauge(&b, "inferd_publisher_leader",
              "1 while this process holds the MQTT publisher lease (one process at a time).",
              es.leader);
    }
    search *srch = atomic_load(&d->srch);
    if (srch != NULL) {
        json_t *ix = search_index_stats(srch);
        static const char *const help[3][2] = {
            {"inferd_index_vectors", "Vectors in the search index of a (collection, model)."},
            {"inferd_index_hnsw", "1 while the index searches with HNSW, 0 with the exact scan."},
            {"inferd_index_building", "1 while a background HNSW build of the index is pending."},
        };
        static const char *const key[3] = {"vectors", "hnsw", "building"};
        for (int m = 0; m < 3; m++) {
            sb_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", help[m][0], help[m][1], help[m][0]);
            size_t i;
            json_t *o;
            json_array_foreach(ix, i, o)
            {
                json_t *v = json_object_get(o, key[m]);
                sb_printf(&b, "%s{collection=\"%s\",model=\"", help[m][0],
                          json_string_value(json_object_get(o, "collection")));
                sb_label(&b, json_string_value(json_object_get(o, "model")));
                sb_printf(&b, "\"} %lld\n",
                          json_is_boolean(v) ? (long long)json_is_true(v)
                                             : (long long)json_integer_value(v));
            }
        }
        json_decref(ix);
    }
    gauge(&b, "inferd_predict_running", "Synchronous /v1/predict calls running now.",
          atomic_load(&a->predicts));
    gauge(&b, "inferd_uptime_seconds", "Seconds since the API started.", uptime);

    struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.s, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(b.s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    enum MHD_Result ret = MHD_queue_response(q->conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}
