/*
 * queue/listen.h — cross-process wake-ups for the dispatcher.
 *
 * A job enqueued by another process (an `inferd api`, another worker's retry
 * or rescue) does not reach this process's worker_notify(). The listener is
 * one thread that waits in store_wait_notify(STORE_CHANNEL_JOBS) and calls
 * worker_notify() whenever the store hints that a job became claimable, so
 * a worker claims within milliseconds instead of at its next poll.
 *
 * PostgreSQL: the hints are LISTEN/NOTIFY, sent by the committing
 * transaction of every process on the database. SQLite: only writes through
 * this same store handle hint (the API of a `serve` process already calls
 * worker_notify itself), so the listener adds nothing and the dispatcher's
 * poll (--poll-ms) remains the way jobs of other processes are found: the
 * degradation is to polling, never to a lost job.
 *
 * Threading: the listener thread owns its loop; queue_listen_stop may be
 * called from any one thread. The store and the worker must outlive it.
 */
#ifndef INFERD_QUEUE_LISTEN_H
#define INFERD_QUEUE_LISTEN_H

#include <stdint.h>

#include "queue/worker.h"
#include "store/store.h"
#include "util/err.h"

typedef struct queue_listen queue_listen;

/*
 * Starts the listener thread for `w` on `st`. `slice_ms` bounds each wait
 * (and so how long queue_listen_stop may take); 0 = 500. Each time the wait
 * returns with a hint (or after the store reconnected, when hints may have
 * been lost) the worker is notified. Store errors are logged (once per
 * outage) and the loop goes on; the store itself sleeps between reconnect
 * attempts. `*out`: queue_listen_stop(). ERR_INTERNAL when the thread cannot
 * be created.
 */
int queue_listen_start(store *st, worker *w, int slice_ms, queue_listen **out, err_t *e);

/* Stops and joins the thread (within about slice_ms) and frees. NULL is a no-op. */
void queue_listen_stop(queue_listen *l);

#endif
