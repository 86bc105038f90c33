/*
 * queue/worker.c — the dispatcher thread and the slot threads (worker.h).
 *
 * The dispatcher is the only thread that claims jobs. It claims at most as
 * many as there are idle slots, so a claimed job never waits in memory for a
 * slot while its lease runs; it hands each job to an idle slot through that
 * slot's mailbox (one job + a condition variable). A slot runs fetch ->
 * pipeline -> commit on its own and, when done, marks itself idle and wakes
 * the dispatcher. The dispatcher sleeps on its condition variable until the
 * next due time: heartbeat (heartbeat_ms), rescue (lease_ms / 2), a claim
 * (immediately while the last claim filled every free slot; the poll fallback
 * or an in-process retry's run_after when it returned fewer) — or until
 * worker_notify() or a freed slot wakes it.
 *
 * A lost wake-up between a claim that found nothing and a concurrent
 * worker_notify() is avoided with a notify sequence number: the dispatcher
 * samples it before claiming and claims again at once if it moved.
 *
 * Timings. The job's timings JSON holds fetch, decode, image_embedding,
 * face_detection, face_alignment, face_embedding and total, measured up to
 * the moment before the commit: the commit writes that JSON, so it cannot
 * contain its own duration. The commit time and the total including it go to
 * the `commit` and `total` histograms of worker_get_stats().
 *
 * Stop. worker_stop() stops claiming, waits up to the grace period for the
 * running slots, then releases the jobs still running under our owner back to
 * queued (store_job_release) and returns without waiting for slots stuck in a
 * long inference; such a slot skips its commit when it finishes (and the
 * store would refuse it anyway: ERR_LEASE). worker_free() joins every thread,
 * so it may block until a stuck slot's current model run ends. Detaching the
 * slots was rejected: they use the caller's store, pipeline and fetcher, which
 * the caller frees after worker_free(), so a detached slot could touch freed
 * memory; the process exits right after worker_free() in practice.
 *
 * Helping. A slot running a job publishes its face detection task in its
 * slot entry (`offer`, through the pipeline_share hooks) from the moment the
 * task is set up until every view has been claimed. A slot with an empty
 * mailbox looks for an offered task with views left before it sleeps; it
 * takes a reference (vision_detect_retain) under the lock, so the task
 * outlives the owner's withdraw, and runs one view at a time with the lock
 * dropped, rechecking its mailbox and the stopping flag in between. Offering
 * signals every idle slot. The dispatcher counts a helping slot as free
 * (claims happen at once, new jobs take precedence) and the slot leaves the
 * task after its current view; the owner waits in vision_detect_finish for
 * the views helpers claimed, never for the helpers to leave. Helping only
 * ever uses a slot that would otherwise sleep, so there are never more
 * inference threads than slots, and with every slot busy nothing changes.
 * A job's detection alone is offered: its other stages are short or serial.
 * Helping time counts as busy time (busy_seconds: utilisation stays the
 * share of slot time spent on inference) but not in `busy`, which stays
 * "slots running a job" (the API's /health, the stop's abandon count).
 * worker_stop joins a helping slot like an idle one: it leaves within one
 * view. Known limit: the owner waits for the views helpers claimed, so a
 * helper starved by other processes (slots run at low priority) delays the
 * job by up to one of its views; on a machine shared with busy processes the
 * gain shrinks to nothing (measured), it does not reverse much.
 *
 * Threading: `lock` protects the slot table (mailboxes, busy and helping
 * flags, offers), the stopping flag, the due times and the statistics. It is
 * never held across a store call, a fetch or an inference run, so
 * worker_notify() and worker_get_stats() never wait for them. Lock order:
 * worker lock, then nothing (a detection task's own lock is only taken by
 * vision_detect_work/finish, which run with the worker lock released).
 */
#include "queue/worker.h"

#include <jansson.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/xalloc.h"
#include "util/clock.h"

enum {
    ST_FETCH = 0,
    ST_DECODE,
    ST_IMAGE_EMBEDDING,
    ST_FACE_DETECTION,
    ST_FACE_ALIGNMENT,
    ST_FACE_EMBEDDING,
    ST_COMMIT,
    ST_TOTAL,
    ST_COUNT
};

const char *const worker_stage_names[8] = {
    "fetch",          "decode",         "image_embedding", "face_detection",
    "face_alignment", "face_embedding", "commit",          "total",
};

static const double hist_bounds[WORKER_HIST_BUCKETS] = {1,   2,   5,    10,   20,   50,    100,
                                                        200, 500, 1000, 2000, 5000, 10000, 30000};

const double *worker_hist_bounds(void)
{
    return hist_bounds;
}

typedef struct slot {
    struct worker *w;
    int idx;
    pthread_t thread;
    int thread_ok;
    pthread_cond_t cond; /* mailbox: signalled when `has_job` is set or at stop */
    int has_job;
    job mail;
    int busy;           /* running a job (mailbox taken) */
    int64_t busy_since; /* monotonic ms */
    unsigned rng;       /* jitter state, slot thread only */
    /* The running job's upload sha256 from its fetch ("" none; slot thread only). */
    char upload[65];
    /* The running job's face detection while other slots may join it (offer..withdraw). */
    vision_detect_task *offer;
    int helping;        /* idle, running views of another slot's offer */
    int64_t help_since; /* monotonic ms */
} slot;

struct worker {
    worker_opts o;
    char owner[STORE_OWNER_MAX + 1];

    pthread_mutex_t lock;
    pthread_cond_t cond;      /* dispatcher: notify, slot freed, stop */
    pthread_cond_t idle_cond; /* worker_stop: a slot became idle */
    int stopping;
    int released; /* worker_stop released our jobs: a late slot must not commit */
    uint64_t notify_seq;
    int64_t next_claim; /* monotonic ms */

    slot *slots;
    pthread_t dispatcher;
    int dispatcher_ok;
    int stopped;

    worker_stats st;    /* counters + histograms (busy/busy_seconds computed on read) */
    double busy_done_s; /* busy seconds of finished runs and finished help */
    double help_done_s; /* of which helping */
};

static void wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_mono_ms)
{
    struct timespec ts = {.tv_sec = deadline_mono_ms / 1000,
                          .tv_nsec = (long)(deadline_mono_ms % 1000) * 1000000};
    pthread_cond_timedwait(c, m, &ts);
}

static void hist_add(worker_hist *h, double ms)
{
    int i = 0;
    while (i < WORKER_HIST_BUCKETS && ms > hist_bounds[i])
        i++;
    h->count[i]++;
    h->sum_ms += ms;
    h->total++;
}

/* --- slot ---------------------------------------------------------------- */

/* Lowers this thread's priority: SCHED_BATCH and a higher nice value (Linux: per thread). */
static void slot_lower_priority(int nice_incr)
{
    struct sched_param sp = {.sched_priority = 0};
    int rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    if (rc != 0 && rc != EPERM)
        log_debug("worker", "SCHED_BATCH: %s", strerror(rc));
    pid_t tid = gettid();
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)tid);
    if (cur == -1 && errno != 0)
        cur = 0;
    int want = cur + nice_incr;
    if (want > 19)
        want = 19;
    if (setpriority(PRIO_PROCESS, (id_t)tid, want) != 0)
        log_debug("worker", "setpriority(%d): %s", want, strerror(errno));
}

static double rand01(unsigned *state)
{
    /* xorshift32: per-slot state, no shared rand() lock. */
    unsigned x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (double)(x >> 8) / (double)(1u << 24);
}

static double round1(double v)
{
    return floor(v * 10.0 + 0.5) / 10.0;
}

static char *timings_json(const double t[ST_COUNT])
{
    json_t *o = json_object();
    for (int i = 0; i < ST_COUNT; i++) {
        if (i == ST_COMMIT)
            continue; /* not known before the commit that stores this JSON */
        json_object_set_new(o, worker_stage_names[i], json_real(round1(t[i])));
    }
    /* 9 significant digits: a rounded 0.1 ms is written 0.1, not 0.10000000000000001. */
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}

static void record(worker *w, const double t[ST_COUNT], int ran_pipeline, int committed)
{
    pthread_mutex_lock(&w->lock);
    hist_add(&w->st.stage[ST_FETCH], t[ST_FETCH]);
    if (ran_pipeline)
        for (int i = ST_DECODE; i <= ST_FACE_EMBEDDING; i++)
            hist_add(&w->st.stage[i], t[i]);
    if (committed)
        hist_add(&w->st.stage[ST_COMMIT], t[ST_COMMIT]);
    hist_add(&w->st.stage[ST_TOTAL], t[ST_TOTAL]);
    pthread_mutex_unlock(&w->lock);
}

static void count(worker *w, uint64_t *ctr)
{
    pthread_mutex_lock(&w->lock);
    (*ctr)++;
    pthread_mutex_unlock(&w->lock);
}

/* Asks the dispatcher to claim again no later than `at` (monotonic ms). */
static void claim_by(worker *w, int64_t at)
{
    pthread_mutex_lock(&w->lock);
    if (at < w->next_claim)
        w->next_claim = at;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static int was_released(worker *w)
{
    pthread_mutex_lock(&w->lock);
    int r = w->released;
    pthread_mutex_unlock(&w->lock);
    return r;
}

/*
 * Keeps server paths out of job errors: libvips names the file it failed on,
 * which for a path source is under the media root and for an upload under
 * the data dir. The client sees its own path, or "upload <sha256 prefix>"
 * (fetch_result.shown, from the fetch's own reading of the source).
 */
static void redact_source_path(err_t *e, const fetch_result *fr)
{
    err_replace(e, fr->path, fr->shown[0] ? fr->shown : "the image");
}

/*
 * After job `j` ended for good (done, failed or cancelled): its spooled
 * upload (`upload` when its fetch read the source, else read from the job;
 * "" for none), if it had one, goes unless another queued or running job reads it
 * (or it was spooled again since `j` was created, for a job about to be
 * queued). Best effort: the API's spool sweep removes what is left.
 */
static void release_upload(worker *w, const job *j, const char *upload)
{
    char sha[65];
    int used = 1;
    err_t e = {0};
    if (w->o.fetch == NULL)
        return;
    if (upload != NULL) /* what the job's fetch read from its source */
        snprintf(sha, sizeof sha, "%s", upload);
    else if (!fetch_upload_sha(j->source, sha)) /* a job that never fetched */
        return;
    if (sha[0] == '\0')
        return;
    if (store_upload_in_use(w->o.st, sha, &used, &e) != ERR_OK) {
        log_debug("worker", "job=%lld upload %.12s left to the sweep: %s", (long long)j->id, sha,
                  e.msg);
        return;
    }
    if (!used && fetch_spool_release(w->o.fetch, sha, j->created_ms, &e) < 0)
        log_warn("worker", "job=%lld cannot remove its upload: %s", (long long)j->id, e.msg);
}

/*
 * Ends a failed run: retry with backoff for a transient error, fail at once
 * otherwise. `stage` prefixes the message ("fetch: ...").
 */
static void finish_error_as(worker *w, slot *s, const job *j, const char *stage, int code,
                            const err_t *e, const double t[ST_COUNT], int transient)
{
    char msg[sizeof e->msg + 64];
    snprintf(msg, sizeof msg, "%s: %s", stage, e->msg[0] ? e->msg : err_strerror(code));
    if (was_released(w))
        return;
    err_t se = {0};
    int rc;
    if (transient) {
        int64_t delay =
            worker_backoff_ms(j->attempts, w->o.retry_base_ms, w->o.retry_max_ms, rand01(&s->rng));
        rc = store_job_retry(w->o.st, j, w->owner, delay, code, msg, &se);
        if (rc == ERR_OK && j->attempts >= j->max_attempts) {
            log_warn("worker", "job=%lld failed after attempts=%d: %s", (long long)j->id,
                     j->attempts, msg);
            count(w, &w->st.failed);
            release_upload(w, j, s->upload);
        } else if (rc == ERR_OK) {
            log_info("worker", "job=%lld attempt=%d retry_in_ms=%lld: %s", (long long)j->id,
                     j->attempts, (long long)delay, msg);
            count(w, &w->st.retried);
            claim_by(w, clock_mono_ms() + delay);
        }
    } else {
        char *tj = timings_json(t);
        rc = store_job_fail(w->o.st, j, w->owner, code, msg, tj, &se);
        free(tj);
        if (rc == ERR_OK) {
            log_warn("worker", "job=%lld failed: %s", (long long)j->id, msg);
            count(w, &w->st.failed);
            release_upload(w, j, s->upload);
        }
    }
    if (rc == ERR_LEASE)
        log_warn("worker", "job=%lld lease lost before recording failure; dropped",
                 (long long)j->id);
    else if (rc != ERR_OK)
        log_error("worker", "job=%lld recording failure: %s (lease will expire)", (long long)j->id,
                  se.msg);
}

static void finish_error(worker *w, slot *s, const job *j, const char *stage, int code,
                         const err_t *e, const double t[ST_COUNT])
{
    finish_error_as(w, s, j, stage, code, e, t, err_is_transient(code));
}

/* Ends a run that must not be retried whatever its code says. */
static void finish_error_permanent(worker *w, slot *s, const job *j, const char *stage, int code,
                                   const err_t *e, const double t[ST_COUNT])
{
    finish_error_as(w, s, j, stage, code, e, t, 0);
}

/* Builds the store's view of an analysis. `faces` (a->nfaces entries) and `*nsfw` are the
 * caller's to free. */
static void build_result(worker *w, const job *j, const analysis *a, store_face *faces, char **nsfw,
                         store_result *r)
{
    memset(r, 0, sizeof *r);
    r->width = a->width;
    r->height = a->height;
    if (a->image_model != NULL && a->image_embedding != NULL) {
        r->image_model = a->image_model;
        r->image_dim = a->image_dim;
        r->image_norm = a->image_norm;
        r->image_vector = a->image_embedding;
        if (a->nnsfw > 0) {
            json_t *o = json_object();
            for (int i = 0; i < a->nnsfw; i++)
                json_object_set_new(o, a->nsfw_labels[i], json_real(a->nsfw[i]));
            *nsfw = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            json_decref(o);
            r->nsfw = *nsfw;
        }
    }
    /* The analysis names the face model only when it embedded a face; a run that found no
     * face still counts (it replaces older faces), so take the names from the pipeline. */
    const model_manifest *det = pipeline_model(w->o.pl, TASK_FACE_DETECTION);
    const model_manifest *emb = pipeline_model(w->o.pl, TASK_FACE_EMBEDDING);
    if ((j->tasks & JOB_TASK_FACES) && det != NULL) {
        r->detector_model = det->name;
        r->face_model = emb ? emb->name : det->name;
        r->face_dim = emb ? emb->embedding_dim : 0;
        for (int i = 0; i < a->nfaces; i++) {
            const analysis_face *f = &a->faces[i];
            faces[i].box[0] = f->det.box.x1;
            faces[i].box[1] = f->det.box.y1;
            faces[i].box[2] = f->det.box.x2;
            faces[i].box[3] = f->det.box.y2;
            faces[i].score = f->det.score;
            for (int k = 0; k < 6 && k < VISION_FACE_KPS; k++) {
                faces[i].kps[k][0] = f->det.kps[k][0];
                faces[i].kps[k][1] = f->det.kps[k][1];
            }
            faces[i].vector = f->embedding;
        }
        r->nfaces = a->nfaces;
        r->faces = faces;
    }
}

/* --- helping ------------------------------------------------------------- */

/* pipeline_share.offer, on the slot running the job: publish, wake the idle slots. */
static void slot_offer(void *ctx, vision_detect_task *t)
{
    slot *s = ctx;
    worker *w = s->w;
    pthread_mutex_lock(&w->lock);
    s->offer = t;
    for (int i = 0; i < w->o.slots; i++) {
        slot *o = &w->slots[i];
        if (o != s && !o->busy && !o->has_job && !o->helping)
            pthread_cond_signal(&o->cond);
    }
    pthread_mutex_unlock(&w->lock);
}

/* pipeline_share.withdraw: every view is claimed; no slot may join from now on. */
static void slot_withdraw(void *ctx, vision_detect_task *t)
{
    slot *s = ctx;
    worker *w = s->w;
    pthread_mutex_lock(&w->lock);
    if (s->offer == t)
        s->offer = NULL;
    pthread_mutex_unlock(&w->lock);
}

/* The offered task with the most unclaimed views, or NULL. Worker lock held. */
static vision_detect_task *find_offer(worker *w)
{
    vision_detect_task *best = NULL;
    int most = 0;
    for (int i = 0; i < w->o.slots; i++) {
        vision_detect_task *t = w->slots[i].offer;
        int left = t != NULL ? vision_detect_pending(t) : 0;
        if (left > most) {
            most = left;
            best = t;
        }
    }
    return best;
}

/*
 * Idle slot `s` runs views of `t` one at a time until none is left, a job
 * arrives in its mailbox or the worker stops, so a new job waits for at most
 * the one view in progress. Called and returns with the worker lock held;
 * drops it around each view. The reference taken here (under the lock, while
 * `t` is still offered and so alive) keeps the task valid until we leave.
 */
static void help(worker *w, slot *s, vision_detect_task *t)
{
    vision_detect_retain(t);
    s->helping = 1;
    s->help_since = clock_mono_ms();
    int views = 0;
    while (!s->has_job && !w->stopping) {
        pthread_mutex_unlock(&w->lock);
        int n = vision_detect_work(t, 1);
        pthread_mutex_lock(&w->lock);
        if (n == 0)
            break;
        views += n;
    }
    s->helping = 0;
    double sec = (double)(clock_mono_ms() - s->help_since) / 1000.0;
    w->busy_done_s += sec;
    w->help_done_s += sec;
    w->st.helped_views += (uint64_t)views;
    pthread_mutex_unlock(&w->lock);
    vision_detect_release(t);
    pthread_mutex_lock(&w->lock);
}

static void run_job(worker *w, slot *s, const job *j)
{
    double t[ST_COUNT] = {0};
    double t0 = clock_mono_msf();
    err_t e = {0};
    fetch_result fr = {0};
    analysis *a = NULL;
    int ran = 0, committed = 0;

    int64_t deadline = w->o.job_timeout_ms > 0 ? clock_mono_ms() + w->o.job_timeout_ms : 0;
    int rc = fetch_source(w->o.fetch, j->source ? j->source : "{}", &fr, &e);
    memcpy(s->upload, fr.upload, sizeof s->upload); /* the one reading of the source */
    t[ST_FETCH] = clock_mono_msf() - t0;
    if (rc != ERR_OK) {
        t[ST_TOTAL] = clock_mono_msf() - t0;
        finish_error(w, s, j, "fetch", rc, &e, t);
        goto out;
    }
    if (was_released(w))
        goto out;

    unsigned tasks = j->tasks & PIPELINE_ALL;
    pipeline_share share = {.ctx = s, .offer = slot_offer, .withdraw = slot_withdraw};
    pipeline_call call = {.share = w->o.slots > 1 && !w->o.no_help ? &share : NULL,
                          .deadline_ms = deadline};
    if (fr.path != NULL)
        rc = pipeline_analyze_file_ex(w->o.pl, fr.path, tasks, &call, &a, &e);
    else
        rc = pipeline_analyze_buffer_ex(w->o.pl, fr.data, fr.len, tasks, &call, &a, &e);
    if (rc != ERR_OK && fr.path != NULL)
        redact_source_path(&e, &fr);
    fetch_result_clear(&fr);
    if (rc != ERR_OK) {
        t[ST_TOTAL] = clock_mono_msf() - t0;
        const char *stage =
            rc == ERR_DECODE || rc == ERR_TOOBIG || rc == ERR_UNSUPPORTED_FORMAT ? "decode"
                                                                                 : "analyze";
        if (rc == ERR_TIMEOUT) {
            /* Past the job's deadline: permanent, the same image would take as long again. */
            char msg[sizeof e.msg];
            snprintf(msg, sizeof msg, "stopped after --job-timeout-ms %lld ms: %.400s",
                     (long long)w->o.job_timeout_ms, e.msg);
            snprintf(e.msg, sizeof e.msg, "%s", msg);
            finish_error_permanent(w, s, j, "deadline", rc, &e, t);
        } else {
            finish_error(w, s, j, stage, rc, &e, t);
        }
        goto out;
    }
    ran = 1;
    for (int i = 0; i < STAGE_COUNT; i++)
        t[ST_DECODE + i] = a->timings_ms[i];

    store_face *faces = xcalloc((size_t)(a->nfaces > 0 ? a->nfaces : 1), sizeof *faces);
    char *nsfw = NULL;
    store_result r;
    build_result(w, j, a, faces, &nsfw, &r);
    t[ST_TOTAL] = clock_mono_msf() - t0;
    char *tj = timings_json(t);
    r.timings = tj;

    if (was_released(w)) {
        rc = ERR_LEASE;
    } else {
        double tc = clock_mono_msf();
        rc = store_job_complete(w->o.st, j, w->owner, &r, &e);
        t[ST_COMMIT] = clock_mono_msf() - tc;
        t[ST_TOTAL] = clock_mono_msf() - t0;
    }
    free(tj);
    free(nsfw);
    free(faces);
    if (rc == ERR_OK) {
        committed = 1;
        count(w, &w->st.completed);
        release_upload(w, j, s->upload);
        log_debug("worker", "job=%lld done faces=%d total_ms=%.1f", (long long)j->id, a->nfaces,
                  t[ST_TOTAL]);
    } else if (rc == ERR_LEASE) {
        log_warn("worker", "job=%lld lease lost (released or taken over); result dropped",
                 (long long)j->id);
    } else {
        finish_error(w, s, j, "commit", rc, &e, t);
    }
out:
    fetch_result_clear(&fr);
    analysis_free(a);
    record(w, t, ran, committed);
}

static void *slot_main(void *arg)
{
    slot *s = arg;
    worker *w = s->w;
    slot_lower_priority(w->o.slot_nice);
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!s->has_job && !w->stopping) {
            vision_detect_task *t = w->o.no_help ? NULL : find_offer(w);
            if (t != NULL)
                help(w, s, t);
            else
                pthread_cond_wait(&s->cond, &w->lock);
        }
        if (w->stopping) {
            /* A job handed over just before the stop was never started: the release
             * at stop puts it back to queued. */
            if (s->has_job) {
                job_clear(&s->mail);
                s->has_job = 0;
            }
            break;
        }
        job j = s->mail;
        memset(&s->mail, 0, sizeof s->mail);
        s->has_job = 0;
        s->busy = 1;
        s->busy_since = clock_mono_ms();
        pthread_mutex_unlock(&w->lock);

        if (j.cancel_requested) {
            /* Cancelled before it started: an empty commit ends it cancelled. */
            store_result r = {.timings = "{}"};
            err_t e = {0};
            if (store_job_complete(w->o.st, &j, w->owner, &r, &e) == ERR_OK) {
                count(w, &w->st.cancelled);
                release_upload(w, &j, NULL);
            }
        } else {
            run_job(w, s, &j);
        }
        job_clear(&j);

        pthread_mutex_lock(&w->lock);
        s->busy = 0;
        w->busy_done_s += (double)(clock_mono_ms() - s->busy_since) / 1000.0;
        pthread_cond_signal(&w->cond);
        pthread_cond_broadcast(&w->idle_cond);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* --- dispatcher ---------------------------------------------------------- */

static void *dispatcher_main(void *arg)
{
    worker *w = arg;
    int64_t now = clock_mono_ms();
    int64_t next_hb = now + w->o.heartbeat_ms;
    int64_t next_rescue = now; /* rescue once at start: a previous run may have died */
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        now = clock_mono_ms();
        if (now >= next_hb) {
            next_hb = now + w->o.heartbeat_ms;
            pthread_mutex_unlock(&w->lock);
            err_t e = {0};
            if (store_job_heartbeat(w->o.st, w->owner, w->o.lease_ms, &e) != ERR_OK)
                log_warn("worker", "heartbeat: %s", e.msg);
            pthread_mutex_lock(&w->lock);
            continue;
        }
        if (now >= next_rescue) {
            next_rescue = now + w->o.lease_ms / 2;
            pthread_mutex_unlock(&w->lock);
            err_t e = {0};
            int n = 0;
            if (store_job_rescue(w->o.st, &n, &e) != ERR_OK)
                log_warn("worker", "rescue: %s", e.msg);
            else if (n > 0)
                log_info("worker", "rescued=%d jobs with expired leases", n);
            pthread_mutex_lock(&w->lock);
            if (n > 0 && w->next_claim > now)
                w->next_claim = now;
            continue;
        }
        int nfree = 0;
        for (int i = 0; i < w->o.slots; i++)
            if (!w->slots[i].busy && !w->slots[i].has_job)
                nfree++;
        if (nfree > 0 && now >= w->next_claim) {
            uint64_t seq = w->notify_seq;
            pthread_mutex_unlock(&w->lock);
            job *jobs = NULL;
            int n = 0;
            err_t e = {0};
            int rc = store_job_claim(w->o.st, w->owner, nfree, w->o.lease_ms, &jobs, &n, &e);
            if (rc != ERR_OK)
                log_warn("worker", "claim: %s", e.msg);
            pthread_mutex_lock(&w->lock);
            now = clock_mono_ms();
            if (w->stopping) {
                /* Not started: worker_stop releases them with the rest. */
                pthread_mutex_unlock(&w->lock);
                job_array_free(jobs, n);
                pthread_mutex_lock(&w->lock);
                break;
            }
            int k = 0;
            for (int i = 0; i < w->o.slots && k < n; i++) {
                slot *s = &w->slots[i];
                if (s->busy || s->has_job)
                    continue;
                s->mail = jobs[k];
                memset(&jobs[k], 0, sizeof jobs[k]); /* moved */
                k++;
                s->has_job = 1;
                pthread_cond_signal(&s->cond);
            }
            if (rc == ERR_OK && n >= nfree)
                w->next_claim = now; /* maybe more waiting: claim when a slot frees */
            else if (w->notify_seq != seq)
                w->next_claim = now; /* enqueued while we claimed */
            else
                w->next_claim = now + w->o.poll_ms;
            pthread_mutex_unlock(&w->lock);
            job_array_free(jobs, n); /* k == n: every slot was idle when counted */
            pthread_mutex_lock(&w->lock);
            continue;
        }
        int64_t wake = next_hb < next_rescue ? next_hb : next_rescue;
        if (nfree > 0 && w->next_claim < wake)
            wake = w->next_claim;
        wait_until(&w->cond, &w->lock, wake);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* --- public -------------------------------------------------------------- */

static void worker_free_mem(worker *w)
{
    if (w->slots != NULL) {
        for (int i = 0; i < w->o.slots; i++) {
            job_clear(&w->slots[i].mail);
            pthread_cond_destroy(&w->slots[i].cond);
        }
        free(w->slots);
    }
    pthread_cond_destroy(&w->cond);
    pthread_cond_destroy(&w->idle_cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

int worker_start(const worker_opts *opts, worker **out, err_t *e)
{
    *out = NULL;
    if (opts == NULL || opts->st == NULL || opts->pl == NULL || opts->fetch == NULL)
        return err_set(e, ERR_INVAL, "worker: store, pipeline and fetcher are required");
    if (opts->slots < 1)
        return err_set(e, ERR_INVAL, "worker: slots must be >= 1 (got %d)", opts->slots);
    if (opts->owner == NULL || opts->owner[0] == '\0' || strlen(opts->owner) > STORE_OWNER_MAX)
        return err_set(e, ERR_INVAL, "worker: owner must be 1..%d characters", STORE_OWNER_MAX);

    worker *w = xcalloc(1, sizeof *w);
    w->o = *opts;
    snprintf(w->owner, sizeof w->owner, "%s", opts->owner);
    w->o.owner = w->owner;
    if (w->o.lease_ms <= 0)
        w->o.lease_ms = 30000;
    if (w->o.heartbeat_ms <= 0)
        w->o.heartbeat_ms = w->o.lease_ms / 3 > 0 ? w->o.lease_ms / 3 : 1;
    if (w->o.poll_ms <= 0)
        w->o.poll_ms = 1000;
    if (w->o.retry_base_ms <= 0)
        w->o.retry_base_ms = 1000;
    if (w->o.retry_max_ms <= 0)
        w->o.retry_max_ms = 60000;
    if (w->o.slot_nice == 0)
        w->o.slot_nice = 10;
    if (w->o.lease_ms / 2 < 1)
        w->o.lease_ms = 2;

    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_cond_init(&w->idle_cond, &ca);
    w->slots = xcalloc((size_t)w->o.slots, sizeof *w->slots);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    for (int i = 0; i < w->o.slots; i++) {
        w->slots[i].w = w;
        w->slots[i].idx = i;
        w->slots[i].rng = (seed + 0x9e3779b9u * (unsigned)(i + 1)) | 1u;
        pthread_cond_init(&w->slots[i].cond, &ca);
    }
    pthread_condattr_destroy(&ca);
    w->st.slots = w->o.slots;
    w->next_claim = 0;

    int rc = ERR_OK;
    for (int i = 0; i < w->o.slots; i++) {
        int prc = pthread_create(&w->slots[i].thread, NULL, slot_main, &w->slots[i]);
        if (prc != 0) {
            rc = err_set(e, ERR_INTERNAL, "worker: pthread_create: %s", strerror(prc));
            break;
        }
        w->slots[i].thread_ok = 1;
    }
    if (rc == ERR_OK) {
        int prc = pthread_create(&w->dispatcher, NULL, dispatcher_main, w);
        if (prc != 0)
            rc = err_set(e, ERR_INTERNAL, "worker: pthread_create: %s", strerror(prc));
        else
            w->dispatcher_ok = 1;
    }
    if (rc != ERR_OK) {
        worker_stop(w, 0);
        worker_free(w);
        return rc;
    }
    log_info("worker", "started owner=%s slots=%d lease_ms=%lld", w->owner, w->o.slots,
             (long long)w->o.lease_ms);
    *out = w;
    return ERR_OK;
}

void worker_notify(worker *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->notify_seq++;
    w->next_claim = 0;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void worker_stop(worker *w, int64_t grace_ms)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    if (w->stopped) {
        pthread_mutex_unlock(&w->lock);
        return;
    }
    w->stopped = 1;
    w->stopping = 1;
    pthread_cond_broadcast(&w->cond);
    for (int i = 0; i < w->o.slots; i++)
        pthread_cond_broadcast(&w->slots[i].cond);
    pthread_mutex_unlock(&w->lock);

    if (w->dispatcher_ok) {
        pthread_join(w->dispatcher, NULL);
        w->dispatcher_ok = 0;
    }

    int64_t deadline = clock_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    pthread_mutex_lock(&w->lock);
    for (;;) {
        int busy = 0;
        for (int i = 0; i < w->o.slots; i++)
            busy += w->slots[i].busy;
        if (busy == 0 || clock_mono_ms() >= deadline) {
            if (busy > 0)
                log_warn("worker", "grace over with busy=%d slots; releasing their jobs", busy);
            break;
        }
        wait_until(&w->idle_cond, &w->lock, deadline);
    }
    w->released = 1;
    pthread_mutex_unlock(&w->lock);
    /* A slot still downloading after the grace would hold the process for up
     * to the fetch timeout: end its transfer now (its job is released below). */
    fetch_abort(w->o.fetch);

    err_t e = {0};
    int n = 0;
    if (store_job_release(w->o.st, w->owner, &n, &e) != ERR_OK)
        log_error("worker", "release at stop: %s (leases will expire)", e.msg);
    else if (n > 0)
        log_info("worker", "released=%d running jobs back to queued", n);

    /* Join the slots that are idle now; a slot still in a model run is joined by
     * worker_free() (see the file comment). */
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->o.slots; i++) {
        slot *s = &w->slots[i];
        if (!s->thread_ok || s->busy)
            continue;
        pthread_mutex_unlock(&w->lock);
        pthread_join(s->thread, NULL);
        pthread_mutex_lock(&w->lock);
        s->thread_ok = 0;
    }
    pthread_mutex_unlock(&w->lock);
    log_info("worker", "stopped owner=%s", w->owner);
}

void worker_free(worker *w)
{
    if (w == NULL)
        return;
    worker_stop(w, 0);
    for (int i = 0; i < w->o.slots; i++) {
        if (w->slots[i].thread_ok) {
            pthread_join(w->slots[i].thread, NULL);
            w->slots[i].thread_ok = 0;
        }
    }
    worker_free_mem(w);
}

void worker_get_stats(worker *w, worker_stats *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->st;
    int64_t now = clock_mono_ms();
    double busy_s = w->busy_done_s, help_s = w->help_done_s;
    int busy = 0, helping = 0;
    for (int i = 0; i < w->o.slots; i++) {
        if (w->slots[i].busy) {
            busy++;
            busy_s += (double)(now - w->slots[i].busy_since) / 1000.0;
        }
        if (w->slots[i].helping) {
            helping++;
            busy_s += (double)(now - w->slots[i].help_since) / 1000.0;
            help_s += (double)(now - w->slots[i].help_since) / 1000.0;
        }
    }
    out->busy = busy;
    out->helping = helping;
    out->busy_seconds = busy_s;
    out->help_seconds = help_s;
    out->slots = w->o.slots;
    pthread_mutex_unlock(&w->lock);
}
