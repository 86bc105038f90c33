/*
 * queue/sched.h — the scheduler: the dispatcher thread, the slot threads and
 * the leases; it runs any job function and knows nothing of images or models.
 *
 * The dispatcher claims at most as many jobs as there are free slots (with a
 * lease), hands each to an idle slot, extends the leases of running jobs
 * (heartbeat) and puts back jobs whose worker died (rescue). It sleeps on a
 * condition variable: sched_notify() (a hint that jobs were enqueued), a slot
 * becoming free or the next due time (heartbeat, a retry's run_after through
 * sched_claim_by, the poll fallback) wakes it. There is no fixed sleep on the
 * hot path.
 *
 * A slot runs one job at a time by calling the job function, which ends the
 * job in the store itself (complete, retry or fail) or leaves it to its
 * lease. Slot threads run at lower scheduling priority (SCHED_BATCH + nice)
 * than the caller's other threads, so an API answers while every core runs
 * jobs.
 *
 * Helping: a job function may offer a shareable task (sched_offer) for the
 * time it has parts left; a slot with no job runs parts of it, one at a
 * time, through the sched_share_ops given at start. A helping slot counts as
 * free to the dispatcher and takes a job handed to it after the part it is
 * running, so new jobs come first and there are never more running threads
 * than slots.
 *
 * Shutdown (sched_stop): stop claiming, let running jobs finish within the
 * grace period, call on_release, then release the jobs still running back to
 * queued (sched_released() tells a late slot to skip its commit; the lease
 * check would refuse it too). sched_stop does not wait for a slot stuck in a
 * long job past the grace; sched_free joins every thread.
 *
 * Threading: sched_notify, sched_get_stats and the slot calls are safe from
 * any thread. One lock protects the slot table and the counters; it is never
 * held across a store call or a job function, so sched_notify and
 * sched_get_stats never wait for them.
 */
#ifndef INFERD_QUEUE_SCHED_H
#define INFERD_QUEUE_SCHED_H

#include <stdint.h>

#include "store/store.h"
#include "util/err.h"

typedef struct sched sched;
typedef struct sched_slot sched_slot;

/*
 * Runs claimed job `j` on slot `s`'s thread and ends it in the store under
 * sched_owner(). `j` belongs to the scheduler (valid during the call).
 */
typedef void (*sched_run_fn)(void *arg, sched_slot *s, const job *j);

/* How idle slots run parts of an offered task (see the file comment). */
typedef struct {
    int (*pending)(void *task);       /* parts not yet claimed (a hint) */
    int (*work)(void *task, int max); /* runs up to `max` parts; returns how many ran */
    void (*retain)(void *task);       /* called under the scheduler's lock while offered */
    void (*release)(void *task);
} sched_share_ops;

typedef struct {
    store *st;
    const char *owner;    /* stored as lease_owner; 1..STORE_OWNER_MAX characters */
    int slots;            /* >= 1 */
    int64_t lease_ms;     /* 0 = 30000 */
    int64_t heartbeat_ms; /* 0 = lease_ms / 3 */
    int64_t poll_ms;      /* fallback poll for jobs no notify announced; 0 = 1000 */
    int slot_nice;        /* nice increment of slot threads; 0 = 10, < 0 = unchanged */
    int slot_idle;        /* 1: slot threads run SCHED_IDLE instead of SCHED_BATCH + nice */
    sched_run_fn run;     /* required */
    void *arg;            /* passed to run and on_release */
    /* Called once by sched_stop after the grace, before the release: end what
     * the running jobs wait on (a download). NULL: none. */
    void (*on_release)(void *arg);
    const sched_share_ops *share; /* NULL: no helping */
} sched_opts;

/* Starts the dispatcher and the slot threads. `*out`: sched_free() it. */
int sched_start(const sched_opts *opts, sched **out, err_t *e);

/* Jobs may have been enqueued: claim now rather than at the next poll. NULL is a no-op. */
void sched_notify(sched *s);

/*
 * Graceful stop as described above: returns after the dispatcher and every
 * idle slot have exited and the remaining jobs were released; slots still
 * running are joined by sched_free(). A second call is a no-op.
 */
void sched_stop(sched *s, int64_t grace_ms);

/* Stops (grace 0) if needed, joins every thread and frees. NULL is a no-op. */
void sched_free(sched *s);

typedef struct {
    int slots;
    int busy;              /* slots running a job */
    int helping;           /* idle slots running parts of an offered task now */
    uint64_t helped_parts; /* parts idle slots ran for other slots' jobs */
    double busy_seconds;   /* job time plus help time, summed over slots since start */
    double help_seconds;   /* the part of busy_seconds spent helping */
} sched_stats;

/* Never stalls: copies counters under the scheduler's short lock. */
void sched_get_stats(sched *s, sched_stats *out);

/* The owner the scheduler claims under; owned by the scheduler. */
const char *sched_owner(const sched *s);

/* --- calls for a job function, on its slot ------------------------------ */

/* 1 once sched_stop released the running jobs: the job must not commit. */
int sched_released(sched_slot *s);

/* Claim again no later than `at` (monotonic ms): a retry's run_after. */
void sched_claim_by(sched_slot *s, int64_t at_mono_ms);

/* A uniform number in [0, 1) from the slot's own generator (jitter). */
double sched_rand01(sched_slot *s);

/* Publishes / withdraws the running job's shareable task (see sched_share_ops). */
void sched_offer(sched_slot *s, void *task);
void sched_withdraw(sched_slot *s, void *task);

#endif
