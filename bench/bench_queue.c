/*
 * bench/bench_queue.c — queue overhead: claim + complete throughput with a
 * no-op pipeline, against SQLite or PostgreSQL, with K worker processes.
 *
 *   bench_queue --db URL [--jobs N] [--procs K] [--threads T] [--batch B] [--lease-ms MS]
 *               [--realistic] [--thumb JPEG]
 *
 * Enqueues N jobs (timed apart: enqueue_us is one enqueue's share, the cost
 * an API request pays; on SQLite it is mostly the commit's fsync unless the
 * URL asks for ?synchronous=normal), then forks K processes that each open the
 * store and loop: store_job_claim(up to B) -> complete them, until a claim
 * finds nothing. B = 1 completes with store_job_complete(); B > 1 with
 * store_job_complete_many(), one transaction for the claimed batch (what
 * a worker's group commit does when B slots finish together). --threads T
 * instead runs inferd's own scheduler (queue/sched.c) with T slots whose
 * job function completes each job with store_job_complete(), so the
 * completions that coincide meet in the store's group commit. The result
 * is empty by default (what is measured is the queue, the commit and its
 * outbox row), or with --realistic what a default pipeline stores: a
 * 1792-D image vector, NSFW scores and four faces with 128-D vectors; with
 * --thumb each job also stores that JPEG as its thumbnail (bench/ui fills a
 * store with 10k assets this way).
 * Prints one line: backend, procs, batch, result, jobs, seconds, jobs/s,
 * and per-job microseconds (wall / jobs). Run by bench/queue, which puts
 * the numbers side by side with the pipeline's own time. Not a test.
 *
 * Processes rather than threads: that is how inferd scales out (many
 * `inferd worker` processes), and each opens its own connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue/sched.h"
#include "store/store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --thumb FILE: a JPEG every job stores as its thumbnail (what a real job adds). */
static unsigned char *g_thumb;
static size_t g_thumb_len;

/* What one job stores: nothing, or (realistic) a default pipeline's output. */
static store_result make_result(int realistic)
{
    store_result r = {.width = 640, .height = 480, .timings = "{\"total\":38.0}"};
    r.thumb = g_thumb;
    r.thumb_len = g_thumb_len;
    r.thumb_w = 512;
    r.thumb_h = 384;
    if (!realistic)
        return r;
    static float image[1792], face[4][128];
    static store_face faces[4];
    for (int i = 0; i < 1792; i++)
        image[i] = (float)((i * 37 % 101) - 50) / 1000.0f;
    for (int f = 0; f < 4; f++) {
        for (int i = 0; i < 128; i++)
            face[f][i] = (float)(((i + f) * 13 % 29) - 14) / 100.0f;
        faces[f] = (store_face){.box = {10.0f + f * 100, 20, 90.0f + f * 100, 120}, .score = 0.9f};
        faces[f].vector = face[f];
    }
    r.image_model = "clip-vit-b32";
    r.image_dim = 1792;
    r.image_norm = 1.0f;
    r.image_vector = image;
    r.nsfw = "{\"nsfw\":0.01,\"sfw\":0.99}";
    r.detector_model = "blazeface";
    r.face_model = "dlib-resnet";
    r.face_dim = 128;
    r.nfaces = 4;
    r.faces = faces;
    return r;
}

/*
 * A worker's shape: inferd's own scheduler (queue/sched.c) with `slots`
 * slots whose job function completes the job with store_job_complete(), so
 * the completions that coincide meet in the store's group commit. Runs
 * until the queue is empty (polled every 20 ms).
 */
typedef struct {
    store *s;
    sched *sc;
    store_result r;
    pthread_mutex_t lock;
    int failed;
} sched_bench;

static void complete_job(void *arg, sched_slot *slot, const job *j)
{
    (void)slot;
    sched_bench *b = arg;
    err_t e = {0};
    int rc = store_job_complete(b->s, j, sched_owner(b->sc), &b->r, &e);
    if (rc != ERR_OK) {
        fprintf(stderr, "bench_queue: complete: %s\n", e.msg);
        pthread_mutex_lock(&b->lock);
        b->failed = 1;
        pthread_mutex_unlock(&b->lock);
    }
}

static int sched_loop(store *s, const char *owner, int slots, int64_t lease_ms, int realistic)
{
    sched_bench b = {.s = s, .r = make_result(realistic)};
    pthread_mutex_init(&b.lock, NULL);
    sched_opts o = {.st = s,
                    .owner = owner,
                    .slots = slots,
                    .lease_ms = lease_ms,
                    .poll_ms = 20,
                    .slot_nice = -1,
                    .run = complete_job,
                    .arg = &b};
    err_t e = {0};
    pthread_mutex_lock(&b.lock); /* complete_job reads b.sc */
    int rc = sched_start(&o, &b.sc, &e);
    pthread_mutex_unlock(&b.lock);
    if (rc != ERR_OK) {
        fprintf(stderr, "bench_queue: %s\n", e.msg);
        return 1;
    }
    int failed = 0;
    for (;;) {
        struct timespec ts = {.tv_nsec = 20 * 1000000};
        nanosleep(&ts, NULL);
        store_counts c;
        if (store_counts_get(s, &c, &e) != ERR_OK) {
            fprintf(stderr, "bench_queue: counts: %s\n", e.msg);
            failed = 1;
            break;
        }
        pthread_mutex_lock(&b.lock);
        failed = b.failed;
        pthread_mutex_unlock(&b.lock);
        if (failed || (c.queued == 0 && c.running == 0))
            break;
    }
    sched_free(b.sc);
    pthread_mutex_destroy(&b.lock);
    return failed;
}

static int claim_complete_loop(store *s, const char *owner, int batch, int64_t lease_ms,
                               int realistic);

/* One worker process: claims and completes until the queue is empty. Exit 0 on success. */
static int run_worker(const char *url, int idx, int batch, int64_t lease_ms, int realistic,
                      int threads)
{
    store *s = NULL;
    err_t e = {0};
    if (store_open(url, NULL, &s, &e) != ERR_OK) {
        fprintf(stderr, "bench_queue: worker %d: %s\n", idx, e.msg);
        return 1;
    }
    char owner[32];
    snprintf(owner, sizeof owner, "bench-%d-%ld", idx, (long)getpid());
    int failed = threads > 1 ? sched_loop(s, owner, threads, lease_ms, realistic)
                             : claim_complete_loop(s, owner, batch, lease_ms, realistic);
    store_close(s);
    return failed;
}

static int claim_complete_loop(store *s, const char *owner, int batch, int64_t lease_ms,
                               int realistic)
{
    err_t e = {0};
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
            return 1;
        }
        empty = n == 0 ? empty + 1 : 0;
        store_result r = make_result(realistic);
        if (batch > 1 && n > 0) {
            store_result rs[1000];
            int rcs[1000];
            for (int i = 0; i < n; i++)
                rs[i] = r;
            rc = store_job_complete_many(s, jobs, owner, rs, n, rcs, NULL);
            if (rc != ERR_OK) {
                fprintf(stderr, "bench_queue: complete_many: %s\n", err_name(rc));
                job_array_free(jobs, n);
                return 1;
            }
            done += n;
        }
        for (int i = 0; batch == 1 && i < n; i++) {
            rc = store_job_complete(s, &jobs[i], owner, &r, &e);
            if (rc != ERR_OK) {
                fprintf(stderr, "bench_queue: complete: %s\n", e.msg);
                job_array_free(jobs, n);
                return 1;
            }
            done++;
        }
        job_array_free(jobs, n);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    int njobs = 2000, procs = 1, batch = 1, realistic = 0, threads = 1;
    int64_t lease_ms = 60000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--realistic") == 0) {
            realistic = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "bench_queue: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--db") == 0) {
            url = v;
        } else if (strcmp(a, "--thumb") == 0) {
            FILE *f = fopen(v, "rb");
            static unsigned char buf[1 << 20];
            g_thumb_len = f != NULL ? fread(buf, 1, sizeof buf, f) : 0;
            if (f != NULL)
                fclose(f);
            if (g_thumb_len == 0) {
                fprintf(stderr, "bench_queue: --thumb %s: cannot read\n", v);
                return 2;
            }
            g_thumb = buf;
        } else if (strcmp(a, "--jobs") == 0)
            njobs = atoi(v);
        else if (strcmp(a, "--procs") == 0)
            procs = atoi(v);
        else if (strcmp(a, "--batch") == 0)
            batch = atoi(v);
        else if (strcmp(a, "--lease-ms") == 0)
            lease_ms = atoll(v);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else {
            fprintf(stderr, "usage: bench_queue --db URL [--jobs N] [--procs K] [--batch B]"
                            " [--realistic]\n");
            return 2;
        }
        i++;
    }
    if (url == NULL || njobs < 1 || njobs > 10000000 || procs < 1 || procs > 64 || batch < 1 ||
        batch > 1000 || threads < 1 || threads > 64) {
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
            _exit(run_worker(url, k, batch, lease_ms, realistic, threads));
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
    printf("backend=%s procs=%d threads=%d batch=%d result=%s jobs=%d seconds=%.3f "
           "jobs_per_s=%.0f us_per_job=%.1f enqueue_us=%.1f\n",
           backend_name, procs, threads, batch, realistic ? "realistic" : "empty", njobs, dt,
           njobs / dt, dt * 1e6 / njobs, enqueue_us);
    return 0;
}
