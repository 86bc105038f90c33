/*
 * events/events.h — delivery of the outbox: the MQTT publisher thread and the
 * wake-up hub that Server-Sent Events readers wait on.
 *
 * The outbox rows are written by the store in the same transaction that
 * finishes a job (store.h). This module only reads and delivers them:
 *  - publisher (only with an MQTT URL): one thread with a libmosquitto client
 *    (QoS 1). It publishes unsent rows in id order to
 *    <prefix>/jobs/<job_id> and <prefix>/assets/<asset_id>, and marks a row
 *    sent only when the broker acknowledged both publishes (PUBACK). While the
 *    broker is down it reconnects with backoff; nothing is lost, delivery is
 *    only delayed, and after a reconnect unacknowledged rows are published
 *    again (at least once, in order per asset since rows go out in id order
 *    on one connection).
 *    With several processes on one database (PostgreSQL, `inferd api` and
 *    `inferd worker`), every process with an MQTT URL runs a publisher, but
 *    only the holder of the store's publisher lease (store_outbox_claim)
 *    gets rows: exactly one process delivers at a time, in id order; the
 *    others stand by and take over when the lease is released (clean stop)
 *    or expires (crash).
 *  - hub: events_notify() is called after each commit that wrote an outbox
 *    row; it wakes the publisher and every events_wait() caller (SSE). A
 *    listener thread (started by events_start) turns the store's outbox
 *    hints (store_wait_notify(STORE_CHANNEL_OUTBOX): commits of every
 *    process on PostgreSQL) into events_notify(), so SSE streams and the
 *    publisher of an `inferd api` process wake on workers' commits.
 *
 * Threading: events_notify, events_wait and events_get_stats may be called
 * from any thread. The publisher thread owns the mosquitto client (driven by
 * its own poll loop, no libmosquitto thread) and the in-flight window; `lock`
 * protects the notify generation counter, the stop flag and the stats; it is
 * never held while calling the store or libmosquitto.
 */
#ifndef INFERD_EVENTS_EVENTS_H
#define INFERD_EVENTS_EVENTS_H

#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

typedef struct events events;

typedef struct {
    const char *mqtt_url;     /* mqtt://host:port or mqtts:// (NULL or "": no publisher) */
    /* For mqtts:// only (NULL or "" = unset): the PEM file of CAs that sign the broker's
     * certificate (unset: the system's, /etc/ssl/certs), and a client certificate and its
     * key for brokers that ask for one. The broker's certificate must name its host. */
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *client_id;    /* MQTT client id; NULL = "inferd-<pid>" */
    const char *topic_prefix; /* NULL = "inferd" */
    int poll_ms;              /* fallback re-read of the outbox; 0 = 1000 */
    /* Publisher lease (store_outbox_claim): the owner name, unique per
     * process (NULL = client_id), and its length; renewed every lease_ms / 3
     * (0 = 10000). A standby takes over at most about lease_ms after the
     * holder died, at once after it stopped cleanly. */
    const char *lease_owner;
    int lease_ms;
} events_opts;

/* `*out` owned by the caller: events_free(). Does not start threads. */
int events_new(store *st, const events_opts *opts, events **out, err_t *e);

/* Starts the outbox listener thread, and the publisher thread when an MQTT URL is configured. */
int events_start(events *ev, err_t *e);

/* Stops the publisher (after trying to flush for up to `flush_ms`) and wakes waiters. */
void events_stop(events *ev, int flush_ms);

/* Frees (stops first if needed). NULL is a no-op. */
void events_free(events *ev);

/* Something was committed to the outbox: wake the publisher and SSE readers. */
void events_notify(events *ev);

/*
 * Blocks until events_notify() is called after this call began, events_stop()
 * runs, or `timeout_ms` passes. Returns 0 when woken, 1 on timeout, -1 when
 * stopping.
 */
int events_wait(events *ev, int timeout_ms);

typedef struct {
    int connected;        /* 1 while the broker connection is up */
    int64_t published;    /* rows acknowledged and marked sent */
    int64_t publish_errors;
    int64_t last_sent_id;
    int leader;           /* 1 while this process holds the publisher lease */
} events_stats;

void events_get_stats(events *ev, events_stats *out);

#endif
