/*
 * events/events.c — the outbox publisher (libmosquitto, QoS 1) and the
 * wake-up hub for Server-Sent Events readers.
 *
 * Loop model. The publisher thread drives libmosquitto itself: it polls the
 * client's socket together with an eventfd that events_notify() writes, then
 * calls mosquitto_loop_read / _write / _misc. So every libmosquitto call and
 * every callback (on_connect, on_disconnect, on_publish) runs on this one
 * thread, and the in-flight window needs no lock. The rejected alternative,
 * mosquitto_loop_start(), adds a network thread that reconnects and resends
 * in-flight messages on its own: the library's resend and ours would then
 * race, and waking the publisher would need a second hand-off.
 *
 * Delivery. Rows are read from the store in id order (unsent only) into a
 * window of at most EVENTS__WINDOW rows; each row is published twice (jobs
 * and assets topic). When both PUBACKs arrived for the oldest rows of the
 * window, those rows are marked sent in order (so the sent rows of this
 * publisher are always a prefix) and the window refills. On any connection
 * loss the client is destroyed (dropping libmosquitto's own queue), a new one
 * connects after a backoff (0.5 s doubling to 10 s) and the whole window is
 * published again from its oldest row: at least once, in id order. A row that
 * the broker can never take (a topic with '+' or '#', an oversized payload)
 * is counted in publish_errors and treated as delivered, so one bad row does
 * not stall the outbox forever.
 *
 * Read cursor. Rows come from store_outbox_claim(): the oldest unsent rows,
 * and only while this process holds the publisher lease. The oldest of them
 * are the window's own (unsent until acknowledged), so a read keeps only
 * rows newer than the window's newest. The PostgreSQL backend commits
 * outbox ids in order, so no row can appear later below that cursor.
 *
 * Publisher lease. Every read renews the lease; the loop reads at least
 * every lease_ms / 3, even with nothing to publish, so a live publisher
 * never loses it. ERR_LEASE means another process publishes: the window
 * is dropped (its rows are unsent, the holder delivers them) and this
 * publisher stands by, asking again every lease_ms / 3 and on every outbox
 * hint. A store error (database down) keeps the window and retries at the
 * next poll: if the lease expired meanwhile, the next read says so. At stop
 * the lease is released so that a standby takes over at once. Rejected:
 * a lease renewed by a timer thread of its own, which could keep the lease
 * alive for a publisher thread that is stuck.
 *
 * Outbox listener. A second thread waits in store_wait_notify(OUTBOX) and
 * calls events_notify() on each hint, so that SSE readers and the
 * publisher of this process wake on commits made by other processes.
 *
 * TLS. An mqtts:// URL connects with TLS: the broker's certificate must chain
 * to the CA file given (else the system's CAs) and name the host of the URL
 * (libmosquitto checks both; nothing here turns either check off). What
 * OpenSSL said about a failed handshake comes through libmosquitto's log
 * callback and is logged as a warning once per distinct failure, so that a
 * wrong CA or host name is visible rather than a silent reconnect loop.
 *
 * Threading: events_notify, events_wait and events_get_stats may be called
 * from any thread. `lock` protects the generation counter, the stop flag and
 * the stats; `cond` is broadcast on each notify and at stop. The publisher
 * thread alone owns the mosquitto client, the window and the lease state;
 * the listener thread only reads the stop flag and calls events_notify.
 * The lock is never
 * held while calling the store or libmosquitto. Lock order: events lock, then
 * nothing.
 */
#include "events/events.h"

#include <errno.h>
#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/redact.h"
#include "util/xalloc.h"
#include "util/clock.h"

#define EVENTS__WINDOW 32
#define EVENTS__BACKOFF_MIN_MS 500
#define EVENTS__BACKOFF_MAX_MS 10000
#define EVENTS__KEEPALIVE_S 30

typedef struct {
    outbox_event row; /* payload owned */
    int mid[2];       /* message ids of the jobs / assets publish; 0 = not published */
    int acked[2];
} events__slot;

struct events {
    store *st;
    char *host;
    int port;
    char *user, *pass;
    int tls;                               /* mqtts:// */
    char *ca_file, *cert_file, *key_file;  /* NULL = unset */
    char *client_id;
    char *prefix;
    int poll_ms;
    int has_mqtt;
    char *owner;      /* publisher lease owner */
    int64_t lease_ms; /* publisher lease length */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t gen;
    int stopping;
    int64_t flush_deadline; /* monotonic ms; valid while stopping */
    events_stats stats;

    int efd; /* eventfd: wakes the publisher's poll */
    pthread_t thread;
    int started;
    pthread_t lthread; /* outbox listener */
    int lstarted;

    /* Publisher thread only. */
    struct mosquitto *mosq;
    int connected; /* CONNACK accepted on the current client */
    int closing;   /* our own disconnect at stop: not worth a warning */
    int conn_lost; /* the current client failed: destroy and reconnect */
    events__slot win[EVENTS__WINDOW];
    int nwin;
    int64_t next_connect; /* monotonic ms */
    int64_t backoff_ms;
    int leader;      /* the last read got rows or renewed the lease */
    int store_down;  /* the last read failed: logged once per outage */
    char lib_err[256];    /* libmosquitto's last error message on this client */
    char logged_err[256]; /* the last one logged as a warning; cleared on connect */
};

static pthread_once_t events__once = PTHREAD_ONCE_INIT;

static void events__lib_init(void)
{
    mosquitto_lib_init();
}

/*
 * Parses "mqtt://[user[:pass]@]host[:port]" (port 1883 by default; an IPv6
 * host in brackets), or the same with mqtts:// (TLS, port 8883 by default).
 * ERR_INVAL on anything else.
 */
static int parse_url__do(events *ev, const char *url, const char *shown, err_t *e)
{
    const char *p;
    if (strncmp(url, "mqtts://", 8) == 0) {
        ev->tls = 1;
        p = url + 8;
    } else if (strncmp(url, "mqtt://", 7) == 0) {
        p = url + 7;
    } else {
        return err_set(e, ERR_INVAL, "mqtt url %s: expected mqtt://host[:port] or mqtts://",
                       shown);
    }
    const char *at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon != NULL) {
            ev->user = strndup(p, (size_t)(colon - p));
            ev->pass = strndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            ev->user = strndup(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    const char *end = p + strcspn(p, "/?");
    const char *portp = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL)
            return err_set(e, ERR_INVAL, "mqtt url %s: unclosed '['", shown);
        ev->host = strndup(p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < end && rb[1] == ':')
            portp = rb + 2;
        else if (rb + 1 != end)
            return err_set(e, ERR_INVAL, "mqtt url %s: bad host", shown);
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        ev->host = strndup(p, (size_t)((colon ? colon : end) - p));
        if (colon != NULL)
            portp = colon + 1;
    }
    if (ev->host == NULL || ev->host[0] == '\0')
        return err_set(e, ERR_INVAL, "mqtt url %s: missing host", shown);
    ev->port = ev->tls ? 8883 : 1883;
    if (portp != NULL) {
        char *q = NULL;
        long port = strtol(portp, &q, 10);
        if (q == portp || q != end || port < 1 || port > 65535)
            return err_set(e, ERR_INVAL, "mqtt url %s: bad port", shown);
        ev->port = (int)port;
    }
    if (*end != '\0' && strcmp(end, "/") != 0)
        return err_set(e, ERR_INVAL, "mqtt url %s: unexpected path or query", shown);
    return ERR_OK;
}

/* Parses `url` into ev's broker fields; errors show the URL without its password. */
static int parse_url(events *ev, const char *url, err_t *e)
{
    char *shown = redact_url(url);
    int rc = parse_url__do(ev, url, shown, e);
    free(shown);
    return rc;
}

/* Checks and keeps the TLS files: a missing or unreadable one is an error now, not a
 * reconnect loop later. */
static int tls_files(events *ev, const events_opts *o, err_t *e)
{
    const char *files[3] = {o->tls_ca_file, o->tls_cert_file, o->tls_key_file};
    char **dst[3] = {&ev->ca_file, &ev->cert_file, &ev->key_file};
    static const char *what[3] = {"CA file", "client certificate", "client key"};
    for (int i = 0; i < 3; i++) {
        if (files[i] == NULL || files[i][0] == '\0')
            continue;
        FILE *f = fopen(files[i], "r");
        if (f == NULL)
            return err_set(e, ERR_INVAL, "mqtt %s %s: %s", what[i], files[i], strerror(errno));
        fclose(f);
        *dst[i] = xstrdup(files[i]);
    }
    if ((ev->cert_file == NULL) != (ev->key_file == NULL))
        return err_set(e, ERR_INVAL, "mqtt: a client certificate needs its key, and a key its "
                                     "certificate");
    return ERR_OK;
}

int events_new(store *st, const events_opts *opts, events **out, err_t *e)
{
    *out = NULL;
    events *ev = xcalloc(1, sizeof *ev);
    ev->st = st;
    ev->efd = -1;
    ev->poll_ms = opts && opts->poll_ms > 0 ? opts->poll_ms : 1000;
    ev->lease_ms = opts && opts->lease_ms > 0 ? opts->lease_ms : 10000;
    ev->prefix = xstrdup(opts && opts->topic_prefix ? opts->topic_prefix : "inferd");
    if (opts && opts->client_id && opts->client_id[0]) {
        ev->client_id = xstrdup(opts->client_id);
    } else {
        char id[64];
        snprintf(id, sizeof id, "inferd-%ld", (long)getpid());
        ev->client_id = xstrdup(id);
    }
    ev->owner = xstrdup(opts && opts->lease_owner && opts->lease_owner[0] ? opts->lease_owner
                                                                           : ev->client_id);
    clock_cond_init(&ev->cond);
    pthread_mutex_init(&ev->lock, NULL);
    ev->stats.last_sent_id = 0;

    int rc = ERR_OK;
    if (opts && opts->mqtt_url && opts->mqtt_url[0]) {
        ev->has_mqtt = 1;
        if ((rc = parse_url(ev, opts->mqtt_url, e)) != ERR_OK)
            goto out;
        if (ev->tls && (rc = tls_files(ev, opts, e)) != ERR_OK)
            goto out;
        ev->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (ev->efd < 0) {
            rc = err_set(e, ERR_IO, "eventfd: %s", strerror(errno));
            goto out;
        }
        pthread_once(&events__once, events__lib_init);
    }
out:
    if (rc != ERR_OK) {
        events_free(ev);
        return rc;
    }
    *out = ev;
    return ERR_OK;
}

/* --- publisher thread --------------------------------------------------- */

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    events *ev = obj;
    (void)m;
    if (rc == 0) {
        ev->connected = 1;
        ev->backoff_ms = EVENTS__BACKOFF_MIN_MS;
        ev->logged_err[0] = '\0';
        log_info("events", "connected broker=%s:%d%s", ev->host, ev->port, ev->tls ? " tls" : "");
    } else {
        log_warn("events", "broker=%s:%d refused connection: %s", ev->host, ev->port,
                 mosquitto_connack_string(rc));
        ev->conn_lost = 1;
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    events *ev = obj;
    (void)m;
    if (ev->connected && !ev->closing)
        log_warn("events", "disconnected broker=%s:%d rc=%d", ev->host, ev->port, rc);
    ev->connected = 0;
    ev->conn_lost = 1;
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    events *ev = obj;
    (void)m;
    for (int i = 0; i < ev->nwin; i++)
        for (int k = 0; k < 2; k++)
            if (ev->win[i].mid[k] == mid && !ev->win[i].acked[k]) {
                ev->win[i].acked[k] = 1;
                return;
            }
}

static void set_connected(events *ev, int c)
{
    pthread_mutex_lock(&ev->lock);
    ev->stats.connected = c;
    pthread_mutex_unlock(&ev->lock);
}

static void drop_client(events *ev)
{
    if (ev->mosq != NULL) {
        mosquitto_destroy(ev->mosq);
        ev->mosq = NULL;
    }
    ev->connected = 0;
    ev->conn_lost = 0;
    for (int i = 0; i < ev->nwin; i++)
        for (int k = 0; k < 2; k++)
            if (!ev->win[i].acked[k])
                ev->win[i].mid[k] = 0; /* publish again on the next connection */
    set_connected(ev, 0);
}

/* libmosquitto's log: errors (a TLS handshake's among them) are kept for
 * report_lib_err; the rest is debug output. */
static void on_log(struct mosquitto *m, void *obj, int level, const char *msg)
{
    events *ev = obj;
    (void)m;
    if (level == MOSQ_LOG_ERR) {
        snprintf(ev->lib_err, sizeof ev->lib_err, "%s", msg);
        return;
    }
    log_debug("events", "libmosquitto: %s", msg);
}

/* The client failed: say why once per distinct reason (a broker that is down is
 * routine and stays at debug level; a certificate that does not verify is not). */
static void report_lib_err(events *ev)
{
    if (ev->lib_err[0] == '\0' || strcmp(ev->lib_err, ev->logged_err) == 0)
        return;
    log_warn("events", "broker=%s:%d: %s", ev->host, ev->port, ev->lib_err);
    memcpy(ev->logged_err, ev->lib_err, sizeof ev->logged_err);
}

/* Sets up TLS on a new client. Returns 0, or -1 with the reason in lib_err. */
static int setup_tls(events *ev)
{
    const char *capath = ev->ca_file == NULL ? "/etc/ssl/certs" : NULL;
    int rc = mosquitto_tls_set(ev->mosq, ev->ca_file, capath, ev->cert_file, ev->key_file, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_tls_opts_set(ev->mosq, 1 /* SSL_VERIFY_PEER */, NULL, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_tls_insecure_set(ev->mosq, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(ev->lib_err, sizeof ev->lib_err, "TLS setup: %s",
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

static void start_connect(events *ev)
{
    ev->mosq = mosquitto_new(ev->client_id, true, ev);
    if (ev->mosq == NULL) {
        log_error("events", "mosquitto_new failed: %s", strerror(errno));
        return;
    }
    ev->lib_err[0] = '\0';
    mosquitto_log_callback_set(ev->mosq, on_log);
    mosquitto_connect_callback_set(ev->mosq, on_connect);
    mosquitto_disconnect_callback_set(ev->mosq, on_disconnect);
    mosquitto_publish_callback_set(ev->mosq, on_publish);
    /* Our window bounds what is in flight; let the library send all of it. */
    mosquitto_max_inflight_messages_set(ev->mosq, 2 * EVENTS__WINDOW);
    if (ev->user != NULL)
        mosquitto_username_pw_set(ev->mosq, ev->user, ev->pass);
    if (ev->tls && setup_tls(ev) != 0) {
        report_lib_err(ev);
        ev->conn_lost = 1;
        return;
    }
    int rc = mosquitto_connect_async(ev->mosq, ev->host, ev->port, EVENTS__KEEPALIVE_S);
    if (rc != MOSQ_ERR_SUCCESS) {
        log_debug("events", "connect broker=%s:%d failed: %s", ev->host, ev->port,
                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        ev->conn_lost = 1;
    }
}

/* Publishes the window rows not yet published on this connection, in order. */
static void publish_window(events *ev)
{
    char topic[64 + STORE_ASSET_ID_MAX + 256];
    for (int i = 0; i < ev->nwin && ev->connected && !ev->conn_lost; i++) {
        events__slot *s = &ev->win[i];
        for (int k = 0; k < 2; k++) {
            if (s->acked[k] || s->mid[k] != 0)
                continue;
            if (k == 0)
                snprintf(topic, sizeof topic, "%s/jobs/%lld", ev->prefix, (long long)s->row.job_id);
            else
                snprintf(topic, sizeof topic, "%s/assets/%s", ev->prefix, s->row.asset_id);
            const char *payload = s->row.payload ? s->row.payload : "{}";
            int mid = 0;
            int rc =
                mosquitto_publish(ev->mosq, &mid, topic, (int)strlen(payload), payload, 1, false);
            if (rc == MOSQ_ERR_SUCCESS) {
                s->mid[k] = mid;
            } else if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_PAYLOAD_SIZE ||
                       rc == MOSQ_ERR_MALFORMED_UTF8 || rc == MOSQ_ERR_OVERSIZE_PACKET) {
                /* The broker can never take it: count it and move on. */
                log_error("events", "outbox=%lld topic=%s cannot be published: %s",
                          (long long)s->row.id, topic, mosquitto_strerror(rc));
                s->acked[k] = 1;
                pthread_mutex_lock(&ev->lock);
                ev->stats.publish_errors++;
                pthread_mutex_unlock(&ev->lock);
            } else {
                log_debug("events", "publish outbox=%lld failed: %s", (long long)s->row.id,
                          mosquitto_strerror(rc));
                ev->conn_lost = 1;
                return;
            }
        }
    }
}

/* Marks the fully acknowledged prefix of the window sent and drops it. */
static void retire_acked(events *ev)
{
    int n = 0;
    while (n < ev->nwin && ev->win[n].acked[0] && ev->win[n].acked[1]) {
        err_t e = {0};
        int rc = store_outbox_mark_sent(ev->st, ev->win[n].row.id, &e);
        if (rc != ERR_OK) {
            /* Keep it; retried on the next pass. Redelivery is allowed, loss is not. */
            log_warn("events", "outbox=%lld mark sent: %s", (long long)ev->win[n].row.id, e.msg);
            break;
        }
        pthread_mutex_lock(&ev->lock);
        ev->stats.published++;
        ev->stats.last_sent_id = ev->win[n].row.id;
        pthread_mutex_unlock(&ev->lock);
        free(ev->win[n].row.payload);
        n++;
    }
    if (n > 0) {
        memmove(ev->win, ev->win + n, (size_t)(ev->nwin - n) * sizeof ev->win[0]);
        ev->nwin -= n;
    }
}

static void set_leader(events *ev, int leader)
{
    ev->leader = leader;
    pthread_mutex_lock(&ev->lock);
    ev->stats.leader = leader;
    pthread_mutex_unlock(&ev->lock);
}

/* Forgets the window's rows (not sent by us: the lease holder delivers them). */
static void drop_window(events *ev)
{
    for (int i = 0; i < ev->nwin; i++)
        free(ev->win[i].row.payload);
    ev->nwin = 0;
}

/*
 * Renews the publisher lease and reads unsent rows newer than the window
 * into its free part. Returns how many were added; 0 when standing by or
 * when the store failed.
 */
static int refill(events *ev)
{
    int room = EVENTS__WINDOW - ev->nwin;
    int64_t after = ev->nwin > 0 ? ev->win[ev->nwin - 1].row.id : 0;
    outbox_event *rows = NULL;
    int n = 0;
    err_t e = {0};
    int rc = store_outbox_claim(ev->st, ev->owner, EVENTS__WINDOW, ev->lease_ms, &rows, &n, &e);
    if (rc == ERR_LEASE) {
        if (ev->leader || ev->store_down)
            log_info("events", "standing by: %s", e.msg);
        else if (ev->nwin == 0 && ev->stats.published == 0)
            log_debug("events", "standing by: %s", e.msg);
        ev->store_down = 0;
        drop_window(ev);
        set_leader(ev, 0);
        return 0;
    }
    if (rc != ERR_OK) {
        if (!ev->store_down)
            log_warn("events", "outbox read: %s", e.msg);
        ev->store_down = 1;
        return 0;
    }
    if (ev->store_down)
        log_info("events", "outbox reads restored");
    ev->store_down = 0;
    if (!ev->leader) {
        log_info("events", "publisher lease acquired owner=%s", ev->owner);
        set_leader(ev, 1);
    }
    int added = 0;
    for (int i = 0; i < n && added < room; i++) {
        if (rows[i].id <= after)
            continue; /* already in the window */
        events__slot *s = &ev->win[ev->nwin++];
        memset(s, 0, sizeof *s);
        s->row = rows[i];
        rows[i].payload = NULL; /* moved */
        added++;
    }
    outbox_event_array_free(rows, n);
    return added;
}

/* At stop: lets a standby take over now rather than after the lease expires. */
static void release_lease(events *ev)
{
    if (!ev->leader)
        return;
    err_t e = {0};
    if (store_leader_release(ev->st, STORE_LEADER_PUBLISHER, ev->owner, &e) != ERR_OK)
        log_warn("events", "releasing publisher lease: %s", e.msg);
    set_leader(ev, 0);
}

static void drain_eventfd(events *ev)
{
    uint64_t v;
    while (read(ev->efd, &v, sizeof v) > 0) {
    }
}

static void *publisher_main(void *arg)
{
    events *ev = arg;
    ev->backoff_ms = EVENTS__BACKOFF_MIN_MS;
    ev->next_connect = 0;
    int64_t next_read = 0;
    int64_t next_renew = 0; /* read at least this often, to keep (or ask for) the lease */
    int64_t renew_ms = ev->lease_ms / 3 > 0 ? ev->lease_ms / 3 : 1;
    int more = 0; /* the last read filled the window: read again as soon as room frees */
    for (;;) {
        pthread_mutex_lock(&ev->lock);
        int stopping = ev->stopping;
        int64_t flush_deadline = ev->flush_deadline;
        pthread_mutex_unlock(&ev->lock);
        int64_t now = clock_mono_ms();
        if (stopping && now >= flush_deadline)
            break;

        if (ev->conn_lost) {
            report_lib_err(ev);
            drop_client(ev);
            ev->next_connect = now + ev->backoff_ms;
            ev->backoff_ms = ev->backoff_ms * 2 > EVENTS__BACKOFF_MAX_MS ? EVENTS__BACKOFF_MAX_MS
                                                                         : ev->backoff_ms * 2;
        }
        if (ev->mosq == NULL && now >= ev->next_connect) {
            start_connect(ev);
            if (ev->conn_lost)
                continue; /* scheduled with backoff at the top */
        }
        if (ev->connected)
            set_connected(ev, 1);

        retire_acked(ev);
        int added = 0;
        int do_read = now >= next_read || now >= next_renew ||
                      (more && ev->nwin < EVENTS__WINDOW) || (stopping && ev->nwin == 0);
        if (do_read) {
            int room = EVENTS__WINDOW - ev->nwin;
            added = refill(ev);
            more = ev->leader && room > 0 && added == room;
            next_read = now + ev->poll_ms;
            next_renew = now + renew_ms;
        }
        if (ev->connected)
            publish_window(ev);
        if (stopping && ev->nwin == 0 && added == 0)
            break; /* flushed */

        /* Sleep on the socket, the eventfd and the next due time. */
        struct pollfd pfd[2];
        int npfd = 0;
        pfd[npfd++] = (struct pollfd){.fd = ev->efd, .events = POLLIN};
        int sock = ev->mosq ? mosquitto_socket(ev->mosq) : -1;
        if (sock >= 0) {
            short evs = POLLIN;
            if (mosquitto_want_write(ev->mosq))
                evs |= POLLOUT;
            pfd[npfd++] = (struct pollfd){.fd = sock, .events = evs};
        }
        int64_t wake = next_read < next_renew ? next_read : next_renew;
        if (ev->mosq == NULL && ev->next_connect < wake)
            wake = ev->next_connect;
        if (ev->mosq != NULL && now + 1000 < wake)
            wake = now + 1000; /* keepalive bookkeeping in mosquitto_loop_misc */
        if (stopping && flush_deadline < wake)
            wake = flush_deadline;
        int timeout = wake > now ? (int)(wake - now) : 0;
        int pr = poll(pfd, (nfds_t)npfd, timeout);
        if (pr < 0 && errno != EINTR) {
            log_error("events", "poll: %s", strerror(errno));
            usleep(100000);
            continue;
        }
        if (pfd[0].revents & POLLIN) {
            drain_eventfd(ev);
            next_read = 0; /* something committed: read now */
        }
        if (ev->mosq != NULL && !ev->conn_lost) {
            int rc = MOSQ_ERR_SUCCESS;
            if (npfd > 1 && (pfd[1].revents & (POLLIN | POLLERR | POLLHUP)))
                rc = mosquitto_loop_read(ev->mosq, 8);
            if (rc == MOSQ_ERR_SUCCESS && npfd > 1 && (pfd[1].revents & POLLOUT))
                rc = mosquitto_loop_write(ev->mosq, 8);
            if (rc == MOSQ_ERR_SUCCESS)
                rc = mosquitto_loop_misc(ev->mosq);
            if (rc != MOSQ_ERR_SUCCESS || mosquitto_socket(ev->mosq) < 0) {
                /*
                 * A TLS broker that wants a client certificate rejects it
                 * after the handshake (TLS 1.3): whether OpenSSL's alert
                 * reaches libmosquitto's log before the socket closes is a
                 * race, and without it nothing said why. A refused TCP
                 * connection (a broker that is down, MOSQ_ERR_ERRNO) stays
                 * at debug level.
                 */
                if (ev->tls && !ev->connected && ev->lib_err[0] == '\0' && rc != MOSQ_ERR_SUCCESS &&
                    rc != MOSQ_ERR_ERRNO)
                    snprintf(ev->lib_err, sizeof ev->lib_err,
                             "the broker closed the TLS connection before accepting this client "
                             "(%s); a broker that requires a client certificate does that "
                             "(--mqtt-cert-file)",
                             mosquitto_strerror(rc));
                ev->conn_lost = 1;
            }
        }
    }
    ev->closing = 1;
    if (ev->mosq != NULL && ev->connected) {
        mosquitto_disconnect(ev->mosq);
        mosquitto_loop_write(ev->mosq, 1);
    }
    drop_client(ev);
    drop_window(ev);
    release_lease(ev);
    return NULL;
}

/* --- outbox listener thread ------------------------------------------------ */

#define EVENTS__LISTEN_SLICE_MS 500

static int is_stopping(events *ev)
{
    pthread_mutex_lock(&ev->lock);
    int s = ev->stopping;
    pthread_mutex_unlock(&ev->lock);
    return s;
}

static void *listener_main(void *arg)
{
    events *ev = arg;
    int down = 0;
    while (!is_stopping(ev)) {
        err_t e = {0};
        int64_t t0 = clock_mono_ms();
        int rc = store_wait_notify(ev->st, STORE_CHANNEL_OUTBOX, EVENTS__LISTEN_SLICE_MS, &e);
        if (rc == 1)
            continue;
        if (rc < 0) {
            if (!down)
                log_warn("events", "outbox wake-ups unavailable, polling meanwhile: %s", e.msg);
            down = 1;
            if (clock_mono_ms() - t0 < 50)
                usleep(100000); /* never spin on an error that returns at once */
            continue;
        }
        if (down)
            log_info("events", "outbox wake-ups restored");
        down = 0;
        events_notify(ev);
    }
    return NULL;
}

/* --- public ------------------------------------------------------------- */

int events_start(events *ev, err_t *e)
{
    if (!ev->lstarted) {
        err_t first = {0};
        if (store_wait_notify(ev->st, STORE_CHANNEL_OUTBOX, 0, &first) < 0) /* listen from now */
            log_warn("events", "outbox wake-ups not available yet: %s", first.msg);
        int rc = pthread_create(&ev->lthread, NULL, listener_main, ev);
        if (rc != 0)
            return err_set(e, ERR_INTERNAL, "events: pthread_create: %s", strerror(rc));
        ev->lstarted = 1;
    }
    if (!ev->has_mqtt || ev->started)
        return ERR_OK;
    int rc = pthread_create(&ev->thread, NULL, publisher_main, ev);
    if (rc != 0)
        return err_set(e, ERR_INTERNAL, "events: pthread_create: %s", strerror(rc));
    ev->started = 1;
    return ERR_OK;
}

static void wake_publisher(events *ev)
{
    if (ev->efd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(ev->efd, &one, sizeof one);
        (void)w; /* EAGAIN: the counter is already non-zero, the wake-up is pending */
    }
}

void events_stop(events *ev, int flush_ms)
{
    if (ev == NULL)
        return;
    pthread_mutex_lock(&ev->lock);
    if (!ev->stopping) {
        ev->stopping = 1;
        ev->flush_deadline = clock_mono_ms() + (flush_ms > 0 ? flush_ms : 0);
    }
    pthread_cond_broadcast(&ev->cond);
    pthread_mutex_unlock(&ev->lock);
    wake_publisher(ev);
    if (ev->started) {
        pthread_join(ev->thread, NULL);
        ev->started = 0;
    }
    if (ev->lstarted) {
        pthread_join(ev->lthread, NULL);
        ev->lstarted = 0;
    }
    set_connected(ev, 0);
}

void events_free(events *ev)
{
    if (ev == NULL)
        return;
    events_stop(ev, 0);
    if (ev->efd >= 0)
        close(ev->efd);
    pthread_cond_destroy(&ev->cond);
    pthread_mutex_destroy(&ev->lock);
    free(ev->host);
    free(ev->user);
    free(ev->pass);
    free(ev->ca_file);
    free(ev->cert_file);
    free(ev->key_file);
    free(ev->client_id);
    free(ev->owner);
    free(ev->prefix);
    free(ev);
}

void events_notify(events *ev)
{
    if (ev == NULL)
        return;
    pthread_mutex_lock(&ev->lock);
    ev->gen++;
    pthread_cond_broadcast(&ev->cond);
    pthread_mutex_unlock(&ev->lock);
    wake_publisher(ev);
}

int events_wait(events *ev, int timeout_ms)
{
    struct timespec dl;
    clock_deadline(&dl, timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&ev->lock);
    uint64_t gen0 = ev->gen;
    int rc = 1;
    while (!ev->stopping && ev->gen == gen0) {
        if (pthread_cond_timedwait(&ev->cond, &ev->lock, &dl) == ETIMEDOUT)
            break;
    }
    if (ev->stopping)
        rc = -1;
    else if (ev->gen != gen0)
        rc = 0;
    pthread_mutex_unlock(&ev->lock);
    return rc;
}

void events_get_stats(events *ev, events_stats *out)
{
    pthread_mutex_lock(&ev->lock);
    *out = ev->stats;
    pthread_mutex_unlock(&ev->lock);
}
