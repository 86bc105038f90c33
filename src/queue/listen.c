/*
 * queue/listen.c — the wake-up thread of queue/listen.h: store_wait_notify
 * (STORE_CHANNEL_JOBS) in a loop, worker_notify on each hint.
 *
 * Why a thread of its own rather than a wait inside the dispatcher: the
 * dispatcher sleeps on its condition variable (slot freed, heartbeat,
 * in-process enqueue), and a PostgreSQL notification arrives on a socket;
 * one thread cannot block on both. The rejected alternative, having the
 * dispatcher poll the listen socket, would put libpq inside worker.c, which
 * knows nothing of backends.
 *
 * Threading: `stop` is atomic; the thread reads it between waits. Each
 * wait lasts at most slice_ms, so a stop is seen within that.
 */
#include "queue/listen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/xalloc.h"

struct queue_listen {
    store *st;
    worker *w;
    int slice_ms;
    atomic_int stop;
    pthread_t thread;
};

static void *listen_main(void *arg)
{
    queue_listen *l = arg;
    int down = 0; /* the store is failing: logged once per outage */
    uint64_t hints = 0;
    while (!atomic_load(&l->stop)) {
        err_t e;
        err_clear(&e);
        int64_t t0 = store_now_ms();
        int rc = store_wait_notify(l->st, STORE_CHANNEL_JOBS, l->slice_ms, &e);
        if (rc == 1)
            continue; /* no news within the slice */
        if (rc < 0) {
            if (!down)
                log_warn("listen", "job wake-ups unavailable, polling meanwhile: %s", e.msg);
            down = 1;
            /* The store sleeps its reconnect backoff; never spin should it return at once. */
            if (store_now_ms() - t0 < 50) {
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        if (down)
            log_info("listen", "job wake-ups restored");
        down = 0;
        hints++;
        worker_notify(l->w);
    }
    log_debug("listen", "stopped hints=%llu", (unsigned long long)hints);
    return NULL;
}

int queue_listen_start(store *st, worker *w, int slice_ms, queue_listen **out, err_t *e)
{
    *out = NULL;
    if (st == NULL || w == NULL)
        return err_set(e, ERR_INVAL, "listen: missing store or worker");
    queue_listen *l = xcalloc(1, sizeof *l);
    l->st = st;
    l->w = w;
    l->slice_ms = slice_ms > 0 ? slice_ms : 500;
    atomic_init(&l->stop, 0);
    /* Start listening now, so that hints sent from here on are kept. */
    err_t first;
    err_clear(&first);
    if (store_wait_notify(st, STORE_CHANNEL_JOBS, 0, &first) < 0)
        log_warn("listen", "job wake-ups not available yet: %s", first.msg);
    int rc = pthread_create(&l->thread, NULL, listen_main, l);
    if (rc != 0) {
        free(l);
        return err_set(e, ERR_INTERNAL, "listen: pthread_create: %s", strerror(rc));
    }
    *out = l;
    return ERR_OK;
}

void queue_listen_stop(queue_listen *l)
{
    if (l == NULL)
        return;
    atomic_store(&l->stop, 1);
    pthread_join(l->thread, NULL);
    free(l);
}
