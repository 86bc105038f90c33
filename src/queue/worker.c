/*
 * queue/worker.c — the job runner (worker.h): what a slot of the scheduler
 * (queue/sched.c) does with one image job.
 *
 * A run: fetch the job's source (read once: its upload, if any, is known from
 * then on) -> pipeline (decode, models) -> build the store's result ->
 * store_job_complete. A failed stage ends the job through the store's queue
 * policy: store_job_retry for a transient error (the delay from
 * worker_backoff_ms, and sched_claim_by so that this process claims it back
 * when it is due), store_job_fail otherwise. A job that ended for good lets
 * its spooled upload go unless another job reads it. sched_released() is
 * checked before each commit: after a stop released the job, its result is
 * dropped.
 *
 * Timings. The job's timings JSON holds fetch, decode, image_embedding,
 * face_detection, face_alignment, face_embedding and total, measured up to
 * the moment before the commit: the commit writes that JSON, so it cannot
 * contain its own duration. The commit time and the total including it go to
 * the `commit` and `total` histograms of worker_get_stats().
 *
 * Helping: the job's face detection (vision_detect_task) is the scheduler's
 * shareable task; pipeline_share hooks publish it through sched_offer and
 * sched_withdraw. Known limit: the owner waits for the views helpers claimed,
 * so a helper starved by other processes (slots run at low priority) delays
 * the job by up to one of its views; on a machine shared with busy processes
 * the gain shrinks to nothing (measured), it does not reverse much.
 *
 * Threading: `lock` protects the counters and histograms only; it is never
 * held across a store call, a fetch or an inference run.
 */
#include "queue/worker.h"

#include <jansson.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/sched.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/xalloc.h"

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

/* One run of a job on a slot: what its end needs. */
typedef struct {
    worker *w;
    sched_slot *s;
    char upload[65]; /* the job's upload sha256 from its fetch ("" none) */
} run;

struct worker {
    worker_opts o;
    sched *sc;
    pthread_mutex_t lock; /* st's counters and histograms */
    worker_stats st;
};
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
static void finish_error_as(run *r, const job *j, const char *stage, int code, const err_t *e,
                            const double t[ST_COUNT], int transient)
{
    worker *w = r->w;
    const char *owner = sched_owner(w->sc);
    char msg[sizeof e->msg + 64];
    snprintf(msg, sizeof msg, "%s: %s", stage, e->msg[0] ? e->msg : err_strerror(code));
    if (sched_released(r->s))
        return;
    err_t se = {0};
    int rc;
    if (transient) {
        int64_t delay = worker_backoff_ms(j->attempts, w->o.retry_base_ms, w->o.retry_max_ms,
                                          sched_rand01(r->s));
        rc = store_job_retry(w->o.st, j, owner, delay, code, msg, &se);
        if (rc == ERR_OK && j->attempts >= j->max_attempts) {
            log_warn("worker", "job=%lld failed after attempts=%d: %s", (long long)j->id,
                     j->attempts, msg);
            count(w, &w->st.failed);
            release_upload(w, j, r->upload);
        } else if (rc == ERR_OK) {
            log_info("worker", "job=%lld attempt=%d retry_in_ms=%lld: %s", (long long)j->id,
                     j->attempts, (long long)delay, msg);
            count(w, &w->st.retried);
            sched_claim_by(r->s, clock_mono_ms() + delay);
        }
    } else {
        char *tj = timings_json(t);
        rc = store_job_fail(w->o.st, j, owner, code, msg, tj, &se);
        free(tj);
        if (rc == ERR_OK) {
            log_warn("worker", "job=%lld failed: %s", (long long)j->id, msg);
            count(w, &w->st.failed);
            release_upload(w, j, r->upload);
        }
    }
    if (rc == ERR_LEASE)
        log_warn("worker", "job=%lld lease lost before recording failure; dropped",
                 (long long)j->id);
    else if (rc != ERR_OK)
        log_error("worker", "job=%lld recording failure: %s (lease will expire)", (long long)j->id,
                  se.msg);
}

static void finish_error(run *r, const job *j, const char *stage, int code, const err_t *e,
                         const double t[ST_COUNT])
{
    finish_error_as(r, j, stage, code, e, t, err_is_transient(code));
}

/* Ends a run that must not be retried whatever its code says. */
static void finish_error_permanent(run *r, const job *j, const char *stage, int code,
                                   const err_t *e, const double t[ST_COUNT])
{
    finish_error_as(r, j, stage, code, e, t, 0);
}

/* Builds the store's view of an analysis. `faces` (a->nfaces entries) and `*nsfw` are the
 * caller's to free. */
static void build_result(worker *w, const job *j, const analysis *a, store_face *faces, char **nsfw,
                         store_result *r)
{
    memset(r, 0, sizeof *r);
    r->width = a->width;
    r->height = a->height;
    r->thumb = a->thumb;
    r->thumb_len = a->thumb_len;
    r->thumb_w = a->thumb_w;
    r->thumb_h = a->thumb_h;
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
            faces[i].nkps = vision_face_nkps(&f->det);
            faces[i].vector = f->embedding;
        }
        r->nfaces = a->nfaces;
        r->faces = faces;
    }
}

/* --- helping: the face detection as the scheduler's shareable task ----- */

static int share_pending(void *t)
{
    return vision_detect_pending(t);
}

static int share_work(void *t, int max)
{
    return vision_detect_work(t, max);
}

static void share_retain(void *t)
{
    vision_detect_retain(t);
}

static void share_release(void *t)
{
    vision_detect_release(t);
}

static const sched_share_ops detect_share = {
    .pending = share_pending, .work = share_work, .retain = share_retain, .release = share_release};

/* pipeline_share hooks, on the slot running the job. */
static void slot_offer(void *ctx, vision_detect_task *t)
{
    sched_offer(ctx, t);
}

static void slot_withdraw(void *ctx, vision_detect_task *t)
{
    sched_withdraw(ctx, t);
}

/* Fetch -> pipeline -> commit of job `j` (not cancelled); ends it in the store. */
static void analyze_job(run *rn, const job *j)
{
    worker *w = rn->w;
    double t[ST_COUNT] = {0};
    double t0 = clock_mono_msf();
    err_t e = {0};
    fetch_result fr = {0};
    analysis *a = NULL;
    int ran = 0, committed = 0;

    int64_t deadline = w->o.job_timeout_ms > 0 ? clock_mono_ms() + w->o.job_timeout_ms : 0;
    int rc = fetch_source(w->o.fetch, j->source ? j->source : "{}", &fr, &e);
    memcpy(rn->upload, fr.upload, sizeof rn->upload); /* the one reading of the source */
    t[ST_FETCH] = clock_mono_msf() - t0;
    if (rc != ERR_OK) {
        t[ST_TOTAL] = clock_mono_msf() - t0;
        finish_error(rn, j, "fetch", rc, &e, t);
        goto out;
    }
    if (sched_released(rn->s))
        goto out;

    unsigned tasks = j->tasks & PIPELINE_ALL;
    pipeline_share share = {.ctx = rn->s, .offer = slot_offer, .withdraw = slot_withdraw};
    pipeline_call call = {.share = w->o.slots > 1 && !w->o.no_help ? &share : NULL,
                          .deadline_ms = deadline,
                          .thumb_side = WORKER_THUMB_SIDE};
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
            finish_error_permanent(rn, j, "deadline", rc, &e, t);
        } else {
            finish_error(rn, j, stage, rc, &e, t);
        }
        goto out;
    }
    ran = 1;
    for (int i = 0; i < STAGE_COUNT; i++)
        t[ST_DECODE + i] = a->timings_ms[i];

    store_face *faces = xcalloc((size_t)(a->nfaces > 0 ? a->nfaces : 1), sizeof *faces);
    char *nsfw = NULL;
    store_result res;
    build_result(w, j, a, faces, &nsfw, &res);
    t[ST_TOTAL] = clock_mono_msf() - t0;
    char *tj = timings_json(t);
    res.timings = tj;

    if (sched_released(rn->s)) {
        rc = ERR_LEASE;
    } else {
        double tc = clock_mono_msf();
        rc = store_job_complete(w->o.st, j, sched_owner(w->sc), &res, &e);
        t[ST_COMMIT] = clock_mono_msf() - tc;
        t[ST_TOTAL] = clock_mono_msf() - t0;
    }
    free(tj);
    free(nsfw);
    free(faces);
    if (rc == ERR_OK) {
        committed = 1;
        count(w, &w->st.completed);
        release_upload(w, j, rn->upload);
        log_debug("worker", "job=%lld done faces=%d total_ms=%.1f", (long long)j->id, a->nfaces,
                  t[ST_TOTAL]);
    } else if (rc == ERR_LEASE) {
        log_warn("worker", "job=%lld lease lost (released or taken over); result dropped",
                 (long long)j->id);
    } else {
        finish_error(rn, j, "commit", rc, &e, t);
    }
out:
    fetch_result_clear(&fr);
    analysis_free(a);
    record(w, t, ran, committed);
}

/* sched_run_fn: one claimed job on a slot. */
static void run_job(void *arg, sched_slot *s, const job *j)
{
    run rn = {.w = arg, .s = s};
    worker *w = rn.w;
    if (!j->cancel_requested) {
        analyze_job(&rn, j);
        return;
    }
    /* Cancelled before it started: an empty commit ends it cancelled. */
    store_result r = {.timings = "{}"};
    err_t e = {0};
    if (store_job_complete(w->o.st, j, sched_owner(w->sc), &r, &e) == ERR_OK) {
        count(w, &w->st.cancelled);
        release_upload(w, j, NULL);
    }
}

/* sched_opts.on_release: a slot still downloading after the grace would hold
 * the process for up to the fetch timeout; end its transfer now. */
static void abort_fetches(void *arg)
{
    worker *w = arg;
    fetch_abort(w->o.fetch);
}

/* --- public -------------------------------------------------------------- */

int worker_start(const worker_opts *opts, worker **out, err_t *e)
{
    *out = NULL;
    if (opts == NULL || opts->st == NULL || opts->pl == NULL || opts->fetch == NULL)
        return err_set(e, ERR_INVAL, "worker: store, pipeline and fetcher are required");
    worker *w = xcalloc(1, sizeof *w);
    w->o = *opts;
    if (w->o.retry_base_ms <= 0)
        w->o.retry_base_ms = 1000;
    if (w->o.retry_max_ms <= 0)
        w->o.retry_max_ms = 60000;
    pthread_mutex_init(&w->lock, NULL);
    sched_opts so = {
        .st = opts->st,
        .owner = opts->owner,
        .slots = opts->slots,
        .lease_ms = opts->lease_ms,
        .heartbeat_ms = opts->heartbeat_ms,
        .poll_ms = opts->poll_ms,
        .slot_nice = opts->slot_nice,
        .slot_idle = opts->slot_idle,
        .run = run_job,
        .arg = w,
        .on_release = abort_fetches,
        .share = opts->slots > 1 && !opts->no_help ? &detect_share : NULL,
    };
    int rc = sched_start(&so, &w->sc, e);
    if (rc != ERR_OK) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return rc;
    }
    *out = w;
    return ERR_OK;
}

void worker_notify(worker *w)
{
    if (w != NULL)
        sched_notify(w->sc);
}

void worker_stop(worker *w, int64_t grace_ms)
{
    if (w != NULL)
        sched_stop(w->sc, grace_ms);
}

void worker_free(worker *w)
{
    if (w == NULL)
        return;
    sched_free(w->sc); /* joins every slot: no job function runs after this */
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void worker_get_stats(worker *w, worker_stats *out)
{
    sched_stats ss;
    sched_get_stats(w->sc, &ss);
    pthread_mutex_lock(&w->lock);
    *out = w->st;
    pthread_mutex_unlock(&w->lock);
    out->slots = ss.slots;
    out->busy = ss.busy;
    out->helping = ss.helping;
    out->helped_views = ss.helped_parts;
    out->busy_seconds = ss.busy_seconds;
    out->help_seconds = ss.help_seconds;
}
