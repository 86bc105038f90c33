/*
 * queue/worker.h — image jobs on the scheduler: inferd's worker.
 *
 * worker_start starts a scheduler (queue/sched.h: dispatcher, slots, leases,
 * helping, stop) whose job function is the image job runner: fetch ->
 * pipeline (decode, image embedding, face detection, alignment, face
 * embedding) -> commit (store_job_complete), timing each stage. Transient
 * errors are retried with exponential backoff and jitter up to max_attempts;
 * permanent ones fail the job at once. Slot threads run at lower scheduling
 * priority (SCHED_BATCH + nice) than the API threads, so the API answers
 * while every core runs inference.
 *
 * Helping: a slot with no job runs views of another slot's face detection
 * (most of a job's time), so that one job uses every idle core and the last
 * jobs of a batch finish sooner. New jobs come first: a helping slot counts
 * as free to the dispatcher and takes a job handed to it after the one view
 * (~10 ms) it is running. Never more inference threads than slots. Helping
 * time counts in busy_seconds (it is inference on the slot's core), not in
 * `busy` (slots running a job); helped_views/help_seconds show it apart.
 *
 * Shutdown (worker_stop): stop claiming, let running jobs finish within the
 * grace period, abort downloads still running, then release the jobs still
 * running back to queued (a slot that finishes later skips its commit; the
 * lease check would refuse it too). worker_stop does not wait for a slot
 * stuck in a model run past the grace; worker_free joins every thread, so it
 * waits for that run to end. Callers free the store, pipeline and fetcher
 * only after worker_free.
 *
 * Threading: worker_notify and worker_get_stats are safe from any thread and
 * never wait for a store call or an inference run.
 */
#ifndef INFERD_QUEUE_WORKER_H
#define INFERD_QUEUE_WORKER_H

#include <stdint.h>

#include "fetch/fetch.h"
#include "pipeline/analyze.h"
#include "store/store.h"
#include "util/err.h"

typedef struct worker worker;

/* Longest side of the thumbnail each job stores with its results (store_thumb_get). */
#define WORKER_THUMB_SIDE 512

typedef struct {
    store *st;
    pipeline *pl;
    fetcher *fetch;
    const char *owner;     /* worker id stored as lease_owner */
    /* slots .. slot_nice: as sched_opts (queue/sched.h) */
    int slots;             /* >= 1 */
    int64_t lease_ms;      /* 0 = 30000 */
    int64_t heartbeat_ms;  /* 0 = lease_ms / 3 */
    int64_t poll_ms;       /* fallback poll for other processes' jobs; 0 = 1000 */
    int64_t retry_base_ms; /* first retry delay; 0 = 1000; doubles per attempt, +-25 % jitter */
    int64_t retry_max_ms;  /* cap; 0 = 60000 */
    int slot_nice;         /* nice increment of slot threads; 0 = 10 */
    int slot_idle;         /* 1: slot threads run SCHED_IDLE (--slot-priority idle) */
    int no_help;           /* 1: idle slots never run views of a busy slot's face detection */
    /*
     * A job's decode and models stop this long after it starts (its fetch
     * has its own timeout): the job ends failed with code "timeout", not
     * retried (the same image would take as long again), and frees its
     * slot. 0 = no deadline.
     */
    int64_t job_timeout_ms;
} worker_opts;

/* Starts the dispatcher and `slots` slot threads. `*out`: worker_free() after worker_stop(). */
int worker_start(const worker_opts *opts, worker **out, err_t *e);

/* A job was enqueued in this process: claim now rather than at the next poll. */
void worker_notify(worker *w);

/*
 * Graceful stop as described above: returns after the dispatcher and every
 * idle slot have exited and the remaining jobs were released; slots still in a
 * model run are joined by worker_free(). A second call is a no-op.
 */
void worker_stop(worker *w, int64_t grace_ms);

/* Stops (grace 0) if needed, joins every thread and frees. NULL is a no-op. */
void worker_free(worker *w);

#define WORKER_HIST_BUCKETS 14

/* Latency histogram in ms with fixed upper bounds (worker_hist_bounds). */
typedef struct {
    uint64_t count[WORKER_HIST_BUCKETS + 1]; /* last: +Inf */
    double sum_ms;
    uint64_t total;
} worker_hist;

/* Upper bounds (ms) of the histogram buckets; static storage. */
const double *worker_hist_bounds(void);

typedef struct {
    int slots;
    int busy;    /* slots running a job */
    int helping; /* idle slots running views of another slot's face detection now */
    uint64_t completed, failed, retried, cancelled;
    uint64_t helped_views; /* detector views idle slots ran for other slots' jobs */
    /* Summed over slots since start, job time plus help time (both are inference on a
     * slot's core): utilisation = busy_seconds / (slots * uptime). */
    double busy_seconds;
    double help_seconds;  /* the part of busy_seconds spent helping */
    worker_hist stage[8]; /* fetch, decode, image_embedding, face_detection, face_alignment,
                             face_embedding, commit, total */
} worker_stats;

/* Names of worker_stats.stage entries, in order; static storage. */
extern const char *const worker_stage_names[8];

/*
 * Never stalls: copies counters under the worker lock, which no thread holds
 * across a store call or an inference run.
 */
void worker_get_stats(worker *w, worker_stats *out);

/*
 * The retry delay (ms) before attempt `attempt` + 1, after attempt `attempt`
 * (>= 1; smaller counts as 1) failed transiently: min(cap, base * 2^(attempt-1))
 * scaled by a jitter factor 0.75 + 0.5 * u, with u in [0, 1) (values outside
 * are clamped). So the result lies in [0.75, 1.25] times the capped delay and
 * may exceed `cap` by up to 25 %. base <= 0 counts as 1, cap < base as base.
 * Pure function (src/queue/backoff.c), never less than 1.
 */
int64_t worker_backoff_ms(int attempt, int64_t base, int64_t cap, double u);

#endif
