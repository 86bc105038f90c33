/*
 * bench/bench_queue.c — queue overhead: claim + complete throughput with a
 * no-op pipeline, against SQLite or PostgreSQL, with K worker processes.
 *
 *   bench_queue --db URL [--jobs N] [--procs K] [--batch B] [--lease-ms MS]
 *
 * Enqueues N jobs (timed apart: enqueue_us is one enqueue's share, the cost
 * an API request pays; on SQLite it is mostly the commit's fsync unless the
 * URL asks for ?synchronous=normal), then forks K processes that each open the
 * store and loop: store_job_claim(up to B) -> store_job_complete() with an
 * empty store_result (no vectors: what is measured is the queue, the commit
 * transaction and its outbox row, not result size), until a claim finds
 * nothing. Prints one line: backend, procs, batch, jobs, seconds, jobs/s,
 * and per-job microseconds (wall / jobs). Run by bench/queue, which puts
 * the numbers side by side with the pipeline's own time. Not a test.
 *
 * Processes rather than threads: that is how inferd scales out (many
 * `inferd worker` processes), and each opens its own connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One worker process: claims and completes until the queue is empty. Exit 0 on success. */
static int run_worker(const char *url, int idx, int batch, int64_t lease_ms)
{
    store *s = NULL;
    err_t e = {0};
    if (store_open(url, NULL, &s, &e) != ERR_OK) {
        fprintf(stderr, "bench_queue: worker %d: %s\n", idx, e.msg);
        return 1;
    }
    char owner[32];
    snprintf(owner, sizeof owner, "bench-%d-%ld", idx, (long)getpid());
    long done = 0;
    int empty = 0;
    while (empty < 3) {
        job *jobs = NULL;
        int n = 0;
        int rc = store_job_claim(s, owner, batch, lease_ms, &jobs, &n, &e);
        if (rc != ERR_OK) {
            if (err_is_transient(rc))
                continue;
            fprintf(stderr, "bench_queue: claim: %s\n", e.msg);
            store_close(s);
            return 1;
        }
        empty = n == 0 ? empty + 1 : 0;
        for (int i = 0; i < n; i++) {
            store_result r = {.timings = NULL};
            rc = store_job_complete(s, &jobs[i], owner, &r, &e);
            if (rc != ERR_OK) {
                fprintf(stderr, "bench_queue: complete: %s\n", e.msg);
                job_array_free(jobs, n);
                store_close(s);
                return 1;
            }
            done++;
        }
        job_array_free(jobs, n);
    }
    store_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    int njobs = 2000, procs = 1, batch = 1;
    int64_t lease_ms = 60000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "bench_queue: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--db") == 0)
            url = v;
        else if (strcmp(a, "--jobs") == 0)
            njobs = atoi(v);
        else if (strcmp(a, "--procs") == 0)
            procs = atoi(v);
        else if (strcmp(a, "--batch") == 0)
            batch = atoi(v);
        else if (strcmp(a, "--lease-ms") == 0)
            lease_ms = atoll(v);
        else {
            fprintf(stderr, "usage: bench_queue --db URL [--jobs N] [--procs K] [--batch B]\n");
            return 2;
        }
        i++;
    }
    if (url == NULL || njobs < 1 || njobs > 10000000 || procs < 1 || procs > 64 || batch < 1 ||
        batch > 1000) {
        fprintf(stderr, "usage: bench_queue --db URL [--jobs 1..1e7] [--procs 1..64] "
                        "[--batch 1..1000]\n");
        return 2;
    }
    store *s = NULL;
    err_t e = {0};
    if (store_open(url, NULL, &s, &e) != ERR_OK) {
        fprintf(stderr, "bench_queue: %s\n", e.msg);
        return 1;
    }
    const char *backend = store_backend(s);
    double te = now_s();
    for (int i = 0; i < njobs; i++) {
        char aid[64];
        snprintf(aid, sizeof aid, "bench-%d-%ld", i, (long)getpid());
        job_spec sp = {.asset_id = aid, .tasks = JOB_TASK_ALL, .source = "{\"path\":\"x.jpg\"}"};
        job j;
        if (store_job_enqueue(s, &sp, &j, NULL, &e) != ERR_OK) {
            fprintf(stderr, "bench_queue: enqueue: %s\n", e.msg);
            store_close(s);
            return 1;
        }
        job_clear(&j);
    }
    double enqueue_us = (now_s() - te) * 1e6 / njobs;
    char backend_name[16];
    snprintf(backend_name, sizeof backend_name, "%s", backend);
    store_close(s); /* no handle (no connection) crosses the fork */

    double t0 = now_s();
    pid_t *pids = calloc((size_t)procs, sizeof *pids);
    for (int k = 0; k < procs; k++) {
        pids[k] = fork();
        if (pids[k] == 0)
            _exit(run_worker(url, k, batch, lease_ms));
    }
    int failed = 0;
    for (int k = 0; k < procs; k++) {
        int st = 0;
        if (pids[k] < 0 || waitpid(pids[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
            failed = 1;
    }
    double dt = now_s() - t0;
    free(pids);
    if (store_open(url, NULL, &s, &e) != ERR_OK) {
        fprintf(stderr, "bench_queue: %s\n", e.msg);
        return 1;
    }
    store_counts c;
    int rc = store_counts_get(s, &c, &e);
    store_close(s);
    if (failed || rc != ERR_OK || c.queued != 0 || c.running != 0) {
        fprintf(stderr, "bench_queue: failed (queued=%lld running=%lld)\n", (long long)c.queued,
                (long long)c.running);
        return 1;
    }
    printf("backend=%s procs=%d batch=%d jobs=%d seconds=%.3f jobs_per_s=%.0f us_per_job=%.1f "
           "enqueue_us=%.1f\n",
           backend_name, procs, batch, njobs, dt, njobs / dt, dt * 1e6 / njobs, enqueue_us);
    return 0;
}
