/*
 * queue/sched.c — the dispatcher thread and the slot threads (sched.h).
 *
 * The dispatcher is the only thread that claims jobs. It claims at most as
 * many as there are idle slots, so a claimed job never waits in memory for a
 * slot while its lease runs; it hands each job to an idle slot through that
 * slot's mailbox (one job + a condition variable). A slot runs the job
 * function on its own and, when done, marks itself idle and wakes the
 * dispatcher. The dispatcher sleeps on its condition variable until the next
 * due time: heartbeat (heartbeat_ms), rescue (lease_ms / 2), a claim
 * (immediately while the last claim filled every free slot; when it
 * returned fewer, the earliest due time a retry asked for with
 * sched_claim_by that is still ahead, else the poll fallback) — or until
 * sched_notify() or a freed slot wakes it.
 *
 * A lost wake-up between a claim that found nothing and a concurrent
 * sched_notify() is avoided with a notify sequence number: the dispatcher
 * samples it before claiming and claims again at once if it moved.
 *
 * Stop. sched_stop() stops claiming, waits up to the grace period for the
 * running slots, then releases the jobs still running under our owner back to
 * queued (store_job_release) and returns without waiting for slots stuck in a
 * long job; such a slot sees sched_released() and skips its commit (the store
 * would refuse it anyway: ERR_LEASE). sched_free() joins every thread, so it
 * may block until a stuck slot's job ends. Detaching the slots was rejected:
 * their job function uses the caller's objects, which the caller frees after
 * sched_free(), so a detached slot could touch freed memory.
 *
 * Helping. A slot running a job publishes its shareable task in its slot
 * entry (`offer`) until every part has been claimed. A slot with an empty
 * mailbox looks for an offered task with parts left before it sleeps; it
 * takes a reference (share->retain) under the lock, so the task outlives the
 * owner's withdraw, and runs one part at a time with the lock dropped,
 * rechecking its mailbox and the stopping flag in between. Offering signals
 * every idle slot. The dispatcher counts a helping slot as free (claims
 * happen at once, new jobs take precedence) and the slot leaves the task
 * after its current part. Helping time counts as busy time (busy_seconds)
 * but not in `busy`, which stays "slots running a job".
 *
 * Threading: `lock` protects the slot table (mailboxes, busy and helping
 * flags, offers), the stopping flag, the due times and the statistics. It is
 * never held across a store call or a job function. Lock order: scheduler
 * lock, then nothing (a shared task's own lock is only taken by its work
 * and release, which run with the scheduler lock released, and by retain).
 */
#include "queue/sched.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/xalloc.h"

/* Retry due times remembered; more than this fall back to the poll. */
#define SCHED_DUE_MAX 64

struct sched_slot {
    struct sched *s;
    pthread_t thread;
    int thread_ok;
    pthread_cond_t cond; /* mailbox: signalled when `has_job` is set or at stop */
    int has_job;
    job mail;
    int busy;           /* running a job (mailbox taken) */
    int64_t busy_since; /* monotonic ms */
    unsigned rng;       /* jitter state, slot thread only */
    void *offer;        /* the running job's shareable task (offer..withdraw) */
    int helping;        /* idle, running parts of another slot's offer */
    int64_t help_since; /* monotonic ms */
};

struct sched {
    sched_opts o;
    char owner[STORE_OWNER_MAX + 1];

    pthread_mutex_t lock;
    pthread_cond_t cond;      /* dispatcher: notify, slot freed, stop */
    pthread_cond_t idle_cond; /* sched_stop: a slot became idle */
    int stopping;
    int released; /* sched_stop released our jobs: a late slot must not commit */
    uint64_t notify_seq;
    int64_t next_claim; /* monotonic ms */
    /* Due times asked for by sched_claim_by that are still ahead (unordered): a
     * claim that finds nothing sleeps until the earliest, not the poll. */
    int64_t due[SCHED_DUE_MAX];
    int ndue;

    sched_slot *slots;
    pthread_t dispatcher;
    int dispatcher_ok;
    int stopped;

    uint64_t helped_parts;
    double busy_done_s; /* busy seconds of finished runs and finished help */
    double help_done_s; /* of which helping */
};

static void wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_mono_ms)
{
    struct timespec ts = {.tv_sec = deadline_mono_ms / 1000,
                          .tv_nsec = (long)(deadline_mono_ms % 1000) * 1000000};
    pthread_cond_timedwait(c, m, &ts);
}

/* --- calls from a job function ------------------------------------------- */

int sched_released(sched_slot *sl)
{
    sched *s = sl->s;
    pthread_mutex_lock(&s->lock);
    int r = s->released;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void sched_claim_by(sched_slot *sl, int64_t at)
{
    sched *s = sl->s;
    pthread_mutex_lock(&s->lock);
    if (at < s->next_claim)
        s->next_claim = at;
    if (s->ndue < SCHED_DUE_MAX)
        s->due[s->ndue++] = at;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

double sched_rand01(sched_slot *sl)
{
    /* xorshift32: per-slot state, no shared rand() lock. */
    unsigned x = sl->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    sl->rng = x;
    return (double)(x >> 8) / (double)(1u << 24);
}

void sched_offer(sched_slot *sl, void *task)
{
    sched *s = sl->s;
    if (s->o.share == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    sl->offer = task;
    for (int i = 0; i < s->o.slots; i++) {
        sched_slot *o = &s->slots[i];
        if (o != sl && !o->busy && !o->has_job && !o->helping)
            pthread_cond_signal(&o->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

void sched_withdraw(sched_slot *sl, void *task)
{
    sched *s = sl->s;
    pthread_mutex_lock(&s->lock);
    if (sl->offer == task)
        sl->offer = NULL;
    pthread_mutex_unlock(&s->lock);
}

/* --- slot ---------------------------------------------------------------- */

/*
 * Lowers this thread's priority (Linux: per thread; libvips' workers and
 * ONNX Runtime's pool threads it starts inherit it): SCHED_BATCH and a
 * higher nice value, or SCHED_IDLE. With every core busy, a woken HTTP
 * thread (or a local client) waits for a CPU behind the slots: measured
 * with two spinning threads and nothing of inferd, /health's p99 was
 * 7.1 ms behind SCHED_BATCH + nice 10, 5.9 behind nice 19 and 5.1 behind
 * SCHED_IDLE, against 3.0 on idle cores (2-core VM, Linux 6.18's EEVDF).
 * SCHED_IDLE is not the default: other processes at normal priority then
 * leave the slots almost nothing (a weight of 3 against 1024).
 */
static void slot_lower_priority(int nice_incr, int idle)
{
    struct sched_param sp = {.sched_priority = 0};
    int rc = pthread_setschedparam(pthread_self(), idle ? SCHED_IDLE : SCHED_BATCH, &sp);
    if (rc != 0 && rc != EPERM)
        log_debug("sched", "%s: %s", idle ? "SCHED_IDLE" : "SCHED_BATCH", strerror(rc));
    if (idle && rc == 0)
        return; /* nice means nothing to SCHED_IDLE */
    pid_t tid = gettid();
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)tid);
    if (cur == -1 && errno != 0)
        cur = 0;
    int want = cur + nice_incr;
    if (want > 19)
        want = 19;
    if (setpriority(PRIO_PROCESS, (id_t)tid, want) != 0)
        log_debug("sched", "setpriority(%d): %s", want, strerror(errno));
}

/* The offered task with the most unclaimed parts, or NULL. Lock held. */
static void *find_offer(sched *s)
{
    void *best = NULL;
    int most = 0;
    for (int i = 0; i < s->o.slots; i++) {
        void *t = s->slots[i].offer;
        int left = t != NULL ? s->o.share->pending(t) : 0;
        if (left > most) {
            most = left;
            best = t;
        }
    }
    return best;
}

/*
 * Idle slot `sl` runs parts of `t` one at a time until none is left, a job
 * arrives in its mailbox or the scheduler stops, so a new job waits for at
 * most the one part in progress. Called and returns with the lock held;
 * drops it around each part. The reference taken here (under the lock,
 * while `t` is still offered and so alive) keeps the task valid until we
 * leave.
 */
static void help(sched *s, sched_slot *sl, void *t)
{
    const sched_share_ops *ops = s->o.share;
    ops->retain(t);
    sl->helping = 1;
    sl->help_since = clock_mono_ms();
    int parts = 0;
    while (!sl->has_job && !s->stopping) {
        pthread_mutex_unlock(&s->lock);
        int n = ops->work(t, 1);
        pthread_mutex_lock(&s->lock);
        if (n == 0)
            break;
        parts += n;
    }
    sl->helping = 0;
    double sec = (double)(clock_mono_ms() - sl->help_since) / 1000.0;
    s->busy_done_s += sec;
    s->help_done_s += sec;
    s->helped_parts += (uint64_t)parts;
    pthread_mutex_unlock(&s->lock);
    ops->release(t);
    pthread_mutex_lock(&s->lock);
}

static void *slot_main(void *arg)
{
    sched_slot *sl = arg;
    sched *s = sl->s;
    if (s->o.slot_nice > 0 || s->o.slot_idle)
        slot_lower_priority(s->o.slot_nice, s->o.slot_idle);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!sl->has_job && !s->stopping) {
            void *t = s->o.share != NULL ? find_offer(s) : NULL;
            if (t != NULL)
                help(s, sl, t);
            else
                pthread_cond_wait(&sl->cond, &s->lock);
        }
        if (s->stopping) {
            /* A job handed over just before the stop was never started: the release
             * at stop puts it back to queued. */
            if (sl->has_job) {
                job_clear(&sl->mail);
                sl->has_job = 0;
            }
            break;
        }
        job j = sl->mail;
        memset(&sl->mail, 0, sizeof sl->mail);
        sl->has_job = 0;
        sl->busy = 1;
        sl->busy_since = clock_mono_ms();
        pthread_mutex_unlock(&s->lock);

        s->o.run(s->o.arg, sl, &j);
        job_clear(&j);

        pthread_mutex_lock(&s->lock);
        sl->busy = 0;
        sl->offer = NULL; /* a job function that forgot its withdraw */
        s->busy_done_s += (double)(clock_mono_ms() - sl->busy_since) / 1000.0;
        pthread_cond_signal(&s->cond);
        pthread_cond_broadcast(&s->idle_cond);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* --- dispatcher ---------------------------------------------------------- */

/* Hands claimed jobs to idle slots; returns how many it handed. Lock held. */
static int hand_out(sched *s, job *jobs, int n)
{
    int k = 0;
    for (int i = 0; i < s->o.slots && k < n; i++) {
        sched_slot *sl = &s->slots[i];
        if (sl->busy || sl->has_job)
            continue;
        sl->mail = jobs[k];
        memset(&jobs[k], 0, sizeof jobs[k]); /* moved */
        k++;
        sl->has_job = 1;
        pthread_cond_signal(&sl->cond);
    }
    return k;
}

/*
 * When to claim after a claim at `now` found fewer jobs than free slots: the
 * earliest due time still ahead, or the poll. Forgets the due times passed
 * (that claim covered them). Lock held.
 */
static int64_t next_due(sched *s, int64_t now)
{
    int64_t at = now + s->o.poll_ms;
    int k = 0;
    for (int i = 0; i < s->ndue; i++) {
        if (s->due[i] <= now)
            continue;
        s->due[k++] = s->due[i];
        if (s->due[i] < at)
            at = s->due[i];
    }
    s->ndue = k;
    return at;
}

static void *dispatcher_main(void *arg)
{
    sched *s = arg;
    int64_t now = clock_mono_ms();
    int64_t next_hb = now + s->o.heartbeat_ms;
    int64_t next_rescue = now; /* rescue once at start: a previous run may have died */
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        now = clock_mono_ms();
        if (now >= next_hb) {
            next_hb = now + s->o.heartbeat_ms;
            pthread_mutex_unlock(&s->lock);
            err_t e = {0};
            if (store_job_heartbeat(s->o.st, s->owner, s->o.lease_ms, &e) != ERR_OK)
                log_warn("sched", "heartbeat: %s", e.msg);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        if (now >= next_rescue) {
            next_rescue = now + s->o.lease_ms / 2;
            pthread_mutex_unlock(&s->lock);
            err_t e = {0};
            int n = 0;
            if (store_job_rescue(s->o.st, &n, &e) != ERR_OK)
                log_warn("sched", "rescue: %s", e.msg);
            else if (n > 0)
                log_info("sched", "rescued=%d jobs with expired leases", n);
            pthread_mutex_lock(&s->lock);
            if (n > 0 && s->next_claim > now)
                s->next_claim = now;
            continue;
        }
        int nfree = 0;
        for (int i = 0; i < s->o.slots; i++)
            if (!s->slots[i].busy && !s->slots[i].has_job)
                nfree++;
        if (nfree > 0 && now >= s->next_claim) {
            uint64_t seq = s->notify_seq;
            pthread_mutex_unlock(&s->lock);
            job *jobs = NULL;
            int n = 0;
            err_t e = {0};
            int rc = store_job_claim(s->o.st, s->owner, nfree, s->o.lease_ms, &jobs, &n, &e);
            if (rc != ERR_OK)
                log_warn("sched", "claim: %s", e.msg);
            pthread_mutex_lock(&s->lock);
            now = clock_mono_ms();
            if (s->stopping) {
                /* Not started: sched_stop releases them with the rest. */
                pthread_mutex_unlock(&s->lock);
                job_array_free(jobs, n);
                pthread_mutex_lock(&s->lock);
                break;
            }
            hand_out(s, jobs, n); /* all n: only this thread fills mailboxes */
            if (rc == ERR_OK && n >= nfree)
                s->next_claim = now; /* maybe more waiting: claim when a slot frees */
            else if (s->notify_seq != seq)
                s->next_claim = now; /* enqueued while we claimed */
            else
                s->next_claim = next_due(s, now);
            pthread_mutex_unlock(&s->lock);
            job_array_free(jobs, n);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        int64_t wake = next_hb < next_rescue ? next_hb : next_rescue;
        if (nfree > 0 && s->next_claim < wake)
            wake = s->next_claim;
        wait_until(&s->cond, &s->lock, wake);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* --- public -------------------------------------------------------------- */

static void sched_free_mem(sched *s)
{
    if (s->slots != NULL) {
        for (int i = 0; i < s->o.slots; i++) {
            job_clear(&s->slots[i].mail);
            pthread_cond_destroy(&s->slots[i].cond);
        }
        free(s->slots);
    }
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->idle_cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int sched_start(const sched_opts *opts, sched **out, err_t *e)
{
    *out = NULL;
    if (opts == NULL || opts->st == NULL || opts->run == NULL)
        return err_set(e, ERR_INVAL, "scheduler: a store and a job function are required");
    if (opts->slots < 1)
        return err_set(e, ERR_INVAL, "scheduler: slots must be >= 1 (got %d)", opts->slots);
    if (opts->owner == NULL || opts->owner[0] == '\0' || strlen(opts->owner) > STORE_OWNER_MAX)
        return err_set(e, ERR_INVAL, "scheduler: owner must be 1..%d characters", STORE_OWNER_MAX);
    const sched_share_ops *sh = opts->share;
    if (sh != NULL && (!sh->pending || !sh->work || !sh->retain || !sh->release))
        return err_set(e, ERR_INVAL, "scheduler: share needs pending, work, retain and release");

    sched *s = xcalloc(1, sizeof *s);
    s->o = *opts;
    snprintf(s->owner, sizeof s->owner, "%s", opts->owner);
    s->o.owner = s->owner;
    if (s->o.lease_ms <= 0)
        s->o.lease_ms = 30000;
    if (s->o.lease_ms / 2 < 1)
        s->o.lease_ms = 2;
    if (s->o.heartbeat_ms <= 0)
        s->o.heartbeat_ms = s->o.lease_ms / 3 > 0 ? s->o.lease_ms / 3 : 1;
    if (s->o.poll_ms <= 0)
        s->o.poll_ms = 1000;
    if (s->o.slot_nice == 0)
        s->o.slot_nice = 10;

    pthread_mutex_init(&s->lock, NULL);
    clock_cond_init(&s->cond);
    clock_cond_init(&s->idle_cond);
    s->slots = xcalloc((size_t)s->o.slots, sizeof *s->slots);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    for (int i = 0; i < s->o.slots; i++) {
        s->slots[i].s = s;
        s->slots[i].rng = (seed + 0x9e3779b9u * (unsigned)(i + 1)) | 1u;
        clock_cond_init(&s->slots[i].cond);
    }

    int rc = ERR_OK;
    for (int i = 0; i < s->o.slots; i++) {
        int prc = pthread_create(&s->slots[i].thread, NULL, slot_main, &s->slots[i]);
        if (prc != 0) {
            rc = err_set(e, ERR_INTERNAL, "scheduler: pthread_create: %s", strerror(prc));
            break;
        }
        s->slots[i].thread_ok = 1;
    }
    if (rc == ERR_OK) {
        int prc = pthread_create(&s->dispatcher, NULL, dispatcher_main, s);
        if (prc != 0)
            rc = err_set(e, ERR_INTERNAL, "scheduler: pthread_create: %s", strerror(prc));
        else
            s->dispatcher_ok = 1;
    }
    if (rc != ERR_OK) {
        sched_free(s);
        return rc;
    }
    log_info("sched", "started owner=%s slots=%d lease_ms=%lld", s->owner, s->o.slots,
             (long long)s->o.lease_ms);
    *out = s;
    return ERR_OK;
}

const char *sched_owner(const sched *s)
{
    return s->owner;
}

void sched_notify(sched *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->notify_seq++;
    s->next_claim = 0;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void sched_stop(sched *s, int64_t grace_ms)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->stopped) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    s->stopped = 1;
    s->stopping = 1;
    pthread_cond_broadcast(&s->cond);
    for (int i = 0; i < s->o.slots; i++)
        pthread_cond_broadcast(&s->slots[i].cond);
    pthread_mutex_unlock(&s->lock);

    if (s->dispatcher_ok) {
        pthread_join(s->dispatcher, NULL);
        s->dispatcher_ok = 0;
    }

    int64_t deadline = clock_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        int busy = 0;
        for (int i = 0; i < s->o.slots; i++)
            busy += s->slots[i].busy;
        if (busy == 0 || clock_mono_ms() >= deadline) {
            if (busy > 0)
                log_warn("sched", "grace over with busy=%d slots; releasing their jobs", busy);
            break;
        }
        wait_until(&s->idle_cond, &s->lock, deadline);
    }
    s->released = 1;
    pthread_mutex_unlock(&s->lock);
    if (s->o.on_release != NULL)
        s->o.on_release(s->o.arg);

    err_t e = {0};
    int n = 0;
    if (store_job_release(s->o.st, s->owner, &n, &e) != ERR_OK)
        log_error("sched", "release at stop: %s (leases will expire)", e.msg);
    else if (n > 0)
        log_info("sched", "released=%d running jobs back to queued", n);

    /* Join the slots that are idle now; a slot still running is joined by sched_free(). */
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->o.slots; i++) {
        sched_slot *sl = &s->slots[i];
        if (!sl->thread_ok || sl->busy)
            continue;
        pthread_mutex_unlock(&s->lock);
        pthread_join(sl->thread, NULL);
        pthread_mutex_lock(&s->lock);
        sl->thread_ok = 0;
    }
    pthread_mutex_unlock(&s->lock);
    log_info("sched", "stopped owner=%s", s->owner);
}

void sched_free(sched *s)
{
    if (s == NULL)
        return;
    sched_stop(s, 0);
    for (int i = 0; i < s->o.slots; i++) {
        if (s->slots[i].thread_ok) {
            pthread_join(s->slots[i].thread, NULL);
            s->slots[i].thread_ok = 0;
        }
    }
    sched_free_mem(s);
}

void sched_get_stats(sched *s, sched_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    int64_t now = clock_mono_ms();
    double busy_s = s->busy_done_s, help_s = s->help_done_s;
    for (int i = 0; i < s->o.slots; i++) {
        const sched_slot *sl = &s->slots[i];
        if (sl->busy) {
            out->busy++;
            busy_s += (double)(now - sl->busy_since) / 1000.0;
        }
        if (sl->helping) {
            out->helping++;
            busy_s += (double)(now - sl->help_since) / 1000.0;
            help_s += (double)(now - sl->help_since) / 1000.0;
        }
    }
    out->slots = s->o.slots;
    out->helped_parts = s->helped_parts;
    out->busy_seconds = busy_s;
    out->help_seconds = help_s;
    pthread_mutex_unlock(&s->lock);
}
