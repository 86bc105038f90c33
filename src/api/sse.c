/*
 * api/sse.c — GET /v1/events: the outbox as a Server-Sent Events stream.
 *
 * Each outbox row is sent as
 *     id: <outbox id>\nevent: job\ndata: <payload JSON>\n\n
 * in id order. The stream starts after the Last-Event-ID header (a client
 * reconnecting resumes where it stopped) or ?after=ID; with neither it starts
 * at the current end of the outbox, i.e. only new events (?after=0 replays
 * everything). A comment line ": keepalive" goes out after
 * API_SSE_HEARTBEAT_MS of silence, which also detects a vanished client.
 *
 * The content callback runs on the connection's own thread (thread per
 * connection), so it may block: when it has nothing to send it waits on the
 * events hub (events_wait, woken by every outbox commit) or, without a hub,
 * on the api's condition variable, for at most SSE_WAIT_MS at a time, and
 * re-reads the outbox. The short bound covers a commit that lands between a
 * read and the wait (that notify is missed, so the event is at most
 * SSE_WAIT_MS late) and lets the stream end promptly when api_stop sets
 * `stopping`. Returning 0 bytes was rejected: with thread per connection
 * libmicrohttpd would call again at once, a busy loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_int.h"
#include "util/log.h"
#include "util/xalloc.h"
#include "util/clock.h"

#define SSE_WAIT_MS 500
#define SSE_BATCH 100

typedef struct {
    api *a;
    int64_t after; /* last outbox id sent */
    char *buf;     /* pending bytes */
    size_t len, off, cap;
    int64_t last_write_ms;
} sse_stream;

static void append(sse_stream *s, const char *text, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap != 0 ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        s->buf = xrealloc(s->buf, cap);
        s->cap = cap;
    }
    memcpy(s->buf + s->len, text, n);
    s->len += n;
}

/* Reads the next batch into the buffer; the number of events added. */
static int fill(sse_stream *s)
{
    outbox_event *ev = NULL;
    int n = 0;
    err_t e;
    err_clear(&e);
    if (store_outbox_read(s->a->deps->st, s->after, 0, SSE_BATCH, &ev, &n, &e) != ERR_OK) {
        log_warn("api", "sse outbox read failed after=%lld: %s", (long long)s->after, e.msg);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        char head[80];
        int hl = snprintf(head, sizeof head, "id: %lld\nevent: job\ndata: ", (long long)ev[i].id);
        append(s, head, (size_t)hl);
        /* The payload is compact JSON (one line); guard anyway, a newline would split it. */
        const char *p = ev[i].payload != NULL ? ev[i].payload : "{}";
        for (const char *q = p; *q != '\0'; q++) {
            char ch = (*q == '\n' || *q == '\r') ? ' ' : *q;
            append(s, &ch, 1);
        }
        append(s, "\n\n", 2);
        s->after = ev[i].id;
    }
    outbox_event_array_free(ev, n);
    return n;
}

/* Sleeps until an outbox commit, api_stop or `ms`. */
static void wait_for_events(sse_stream *s, int ms)
{
    api *a = s->a;
    if (a->deps->ev != NULL && events_wait(a->deps->ev, ms) != -1)
        return;
    /* No hub, or the hub is stopping (it returns at once then): sleep on our own cond. */
    struct timespec ts;
    clock_deadline(&ts, ms);
    pthread_mutex_lock(&a->lock);
    if (!atomic_load(&a->stopping))
        pthread_cond_timedwait(&a->cond, &a->lock, &ts);
    pthread_mutex_unlock(&a->lock);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
    sse_stream *s = cls;
    (void)pos;
    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off;
            if (n > max)
                n = max;
            memcpy(out, s->buf + s->off, n);
            s->off += n;
            if (s->off == s->len)
                s->off = s->len = 0;
            s->last_write_ms = clock_mono_ms();
            return (ssize_t)n;
        }
        if (atomic_load(&s->a->stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (fill(s) > 0)
            continue;
        int64_t idle = clock_mono_ms() - s->last_write_ms;
        if (idle >= API_SSE_HEARTBEAT_MS) {
            static const char hb[] = ": keepalive\n\n";
            append(s, hb, sizeof hb - 1);
            continue;
        }
        int64_t left = API_SSE_HEARTBEAT_MS - idle;
        wait_for_events(s, left < SSE_WAIT_MS ? (int)left : SSE_WAIT_MS);
    }
}

static void sse_free(void *cls)
{
    sse_stream *s = cls;
    atomic_fetch_sub(&s->a->streams, 1);
    free(s->buf);
    free(s);
}

enum MHD_Result api__handle_events(api_call *q)
{
    api *a = q->a;
    char msg[256];
    long long after = -1;
    const char *v = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *name = "Last-Event-ID";
    if (v == NULL) {
        v = api__arg(q->conn, "after");
        name = "after";
    }
    if (v != NULL && api__parse_int(name, v, 0, INT64_MAX, &after, msg, sizeof msg) != 0)
        return api__send_error(q->conn, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", msg);
    if (after < 0) {
        err_t e;
        err_clear(&e);
        int64_t tail;
        if (store_outbox_max_id(a->deps->st, &tail, &e) != ERR_OK)
            return api__send_err(q->conn, &e);
        after = tail;
    }
    /* Each stream holds a connection thread: a separate cap keeps them from crowding out the
     * rest of the API. */
    if (atomic_fetch_add(&a->streams, 1) >= a->deps->cfg->max_event_streams) {
        atomic_fetch_sub(&a->streams, 1);
        return api__send_error(q->conn, MHD_HTTP_SERVICE_UNAVAILABLE, "busy",
                               "%d event streams are open already (--max-event-streams)",
                               a->deps->cfg->max_event_streams);
    }
    sse_stream *s = xcalloc(1, sizeof *s);
    s->a = a;
    s->after = after;
    s->last_write_ms = clock_mono_ms();
    /* Tell the client at once that the stream is open (and which position it starts at). */
    char hello[64];
    int hl = snprintf(hello, sizeof hello, ": inferd events after %lld\n\n", after);
    append(s, hello, (size_t)hl);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
    if (r == NULL) {
        sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    enum MHD_Result ret = MHD_queue_response(q->conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}
