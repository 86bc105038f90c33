/*
 * test_sched.c — the scheduler (queue/sched.h) with job functions that need
 * no models, on a real store (SQLite by default; every URL of
 * INFERD_TEST_STORE_URLS). Covers: every job runs exactly once and never more
 * at a time than there are slots; a notify wakes the dispatcher long before
 * its poll; a retry's sched_claim_by brings the job back when due; the
 * heartbeat keeps a job that runs past its lease from being rescued; a stop
 * releases running jobs, which the late job function sees, and a second
 * scheduler finishes them; idle slots help an offered task; stats answer
 * while every slot is busy; slot threads run SCHED_BATCH + nice or
 * SCHED_IDLE as asked; bad options are refused.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue/sched.h"
#include "store/store.h"
#include "testsupport.h"

static const char *g_template;

#define MAXJOBS 64

typedef struct {
    char url[512];
    store *st;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int runs[MAXJOBS + 1]; /* by job id */
    int running, max_running, finished;
    int sleep_ms;
    int block;        /* job functions wait while set */
    int saw_released; /* job functions that found their job released */
    int retry_first;  /* first attempts retry in 200 ms */
    int offer_parts;  /* > 0: the job offers a task of that many parts */
    sched *sc;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    ts_store_url_expand(g_template, "s", f->url, sizeof f->url);
    ts_store_url_remove_sqlite(f->url);
    err_t e = {0};
    if (store_open(f->url, NULL, &f->st, &e) != ERR_OK) {
        fprintf(stderr, "store_open %s: %s\n", f->url, e.msg);
        free(f);
        return -1;
    }
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sched_free(f->sc);
    store_close(f->st);
    ts_store_url_remove_sqlite(f->url);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
    return 0;
}

static int64_t enqueue(fixture *f, int i)
{
    char aid[32];
    snprintf(aid, sizeof aid, "a%d", i);
    job_spec sp = {.asset_id = aid, .tasks = JOB_TASK_ALL, .source = "{\"path\":\"x.jpg\"}"};
    job j;
    err_t e = {0};
    assert_int_equal(store_job_enqueue(f->st, &sp, &j, NULL, &e), ERR_OK);
    int64_t id = j.id;
    job_clear(&j);
    assert_true(id >= 1 && id <= MAXJOBS);
    return id;
}

/* --- a shareable task: `parts` sleeps of 5 ms, counted by who ran them ---- */

typedef struct {
    pthread_mutex_t lock;
    int refs, next, parts, done;
} task;

static int t_pending(void *p)
{
    task *t = p;
    pthread_mutex_lock(&t->lock);
    int left = t->parts - t->next;
    pthread_mutex_unlock(&t->lock);
    return left;
}

static int t_work(void *p, int max)
{
    task *t = p;
    int ran = 0;
    while (max <= 0 || ran < max) {
        pthread_mutex_lock(&t->lock);
        int mine = t->next < t->parts ? t->next++ : -1;
        pthread_mutex_unlock(&t->lock);
        if (mine < 0)
            break;
        ts_sleep_ms(5);
        pthread_mutex_lock(&t->lock);
        t->done++;
        pthread_mutex_unlock(&t->lock);
        ran++;
    }
    return ran;
}

static void t_retain(void *p)
{
    task *t = p;
    pthread_mutex_lock(&t->lock);
    t->refs++;
    pthread_mutex_unlock(&t->lock);
}

static void t_release(void *p)
{
    task *t = p;
    pthread_mutex_lock(&t->lock);
    int last = --t->refs == 0;
    pthread_mutex_unlock(&t->lock);
    if (last) {
        pthread_mutex_destroy(&t->lock);
        free(t);
    }
}

static const sched_share_ops task_ops = {
    .pending = t_pending, .work = t_work, .retain = t_retain, .release = t_release};

/* Offers a task, runs parts until none is left, waits for the helpers' parts. */
static void run_shared(fixture *f, sched_slot *s)
{
    task *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    t->refs = 1;
    t->parts = f->offer_parts;
    sched_offer(s, t);
    t_work(t, 0);
    sched_withdraw(s, t);
    for (;;) {
        pthread_mutex_lock(&t->lock);
        int done = t->done == t->parts;
        pthread_mutex_unlock(&t->lock);
        if (done)
            break;
        ts_sleep_ms(1);
    }
    t_release(t);
}

/* --- the job function ------------------------------------------------------ */

static void job_fn(void *arg, sched_slot *s, const job *j)
{
    fixture *f = arg;
    pthread_mutex_lock(&f->lock);
    f->runs[j->id]++;
    f->running++;
    if (f->running > f->max_running)
        f->max_running = f->running;
    while (f->block)
        pthread_cond_wait(&f->cond, &f->lock);
    pthread_mutex_unlock(&f->lock);

    if (f->sleep_ms > 0)
        ts_sleep_ms(f->sleep_ms);
    if (f->offer_parts > 0)
        run_shared(f, s);
    err_t e = {0};
    int rc;
    if (sched_released(s)) {
        rc = ERR_LEASE;
        pthread_mutex_lock(&f->lock);
        f->saw_released++;
        pthread_mutex_unlock(&f->lock);
    } else if (f->retry_first && j->attempts == 1) {
        rc = store_job_retry(f->st, j, sched_owner(f->sc), 200, ERR_IO, "try again", &e);
        sched_claim_by(s, ts_now_ms() + 200);
    } else {
        store_result r = {.timings = "{}"};
        rc = store_job_complete(f->st, j, sched_owner(f->sc), &r, &e);
    }
    if (rc != ERR_OK && rc != ERR_LEASE)
        fprintf(stderr, "job %lld: %s\n", (long long)j->id, e.msg);
    pthread_mutex_lock(&f->lock);
    f->running--;
    f->finished++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void start(fixture *f, int slots, int64_t lease_ms, int64_t poll_ms, int share)
{
    sched_opts o = {.st = f->st,
                    .owner = "test-sched",
                    .slots = slots,
                    .lease_ms = lease_ms,
                    .poll_ms = poll_ms,
                    .slot_nice = -1,
                    .run = job_fn,
                    .arg = f,
                    .share = share ? &task_ops : NULL};
    err_t e = {0};
    /* The job function reads f->sc: set it before a slot can run. */
    pthread_mutex_lock(&f->lock);
    int rc = sched_start(&o, &f->sc, &e);
    pthread_mutex_unlock(&f->lock);
    if (rc != ERR_OK)
        fail_msg("sched_start: %s", e.msg);
}

/* Waits until no job is queued or running; fails after `ms`. */
static void wait_drained(fixture *f, int ms)
{
    int64_t end = ts_now_ms() + ms;
    for (;;) {
        store_counts c;
        err_t e = {0};
        assert_int_equal(store_counts_get(f->st, &c, &e), ERR_OK);
        if (c.queued == 0 && c.running == 0)
            return;
        if (ts_now_ms() > end)
            fail_msg("not drained after %d ms: queued=%lld running=%lld", ms, (long long)c.queued,
                     (long long)c.running);
        ts_sleep_ms(10);
    }
}

static job_state state_of(fixture *f, int64_t id, int *attempts)
{
    job j;
    err_t e = {0};
    assert_int_equal(store_job_get(f->st, id, &j, &e), ERR_OK);
    job_state st = j.state;
    if (attempts != NULL)
        *attempts = j.attempts;
    job_clear(&j);
    return st;
}

/* --- tests ----------------------------------------------------------------- */

static void test_each_job_once(void **state)
{
    fixture *f = *state;
    enum { N = 40, SLOTS = 4 };
    for (int i = 0; i < N; i++)
        enqueue(f, i);
    f->sleep_ms = 20;
    start(f, SLOTS, 0, 0, 0);
    wait_drained(f, 20000);
    sched_stop(f->sc, 1000);
    for (int id = 1; id <= N; id++) {
        assert_int_equal(f->runs[id], 1);
        assert_int_equal(state_of(f, id, NULL), JOB_DONE);
    }
    /* 40 jobs of 20 ms on 4 slots: the slots ran side by side, never more than 4. */
    assert_true(f->max_running >= 2);
    assert_true(f->max_running <= SLOTS);
    sched_stats ss;
    sched_get_stats(f->sc, &ss);
    assert_int_equal(ss.slots, SLOTS);
    assert_int_equal(ss.busy, 0);
    assert_true(ss.busy_seconds >= N * 0.02 * 0.9);
}

static void test_notify_wakes(void **state)
{
    fixture *f = *state;
    start(f, 2, 0, 60000, 0); /* the poll alone would wait a minute */
    ts_sleep_ms(100);         /* the first claim found nothing */
    int64_t id = enqueue(f, 0);
    int64_t t0 = ts_now_ms();
    sched_notify(f->sc);
    wait_drained(f, 5000);
    assert_true(ts_now_ms() - t0 < 5000);
    assert_int_equal(state_of(f, id, NULL), JOB_DONE);
}

static void test_retry_claimed_back(void **state)
{
    fixture *f = *state;
    f->retry_first = 1;
    int64_t id = enqueue(f, 0);
    start(f, 1, 0, 60000, 0);
    int64_t t0 = ts_now_ms();
    wait_drained(f, 10000);
    int64_t took = ts_now_ms() - t0;
    int attempts = 0;
    assert_int_equal(state_of(f, id, &attempts), JOB_DONE);
    assert_int_equal(attempts, 2);
    assert_int_equal(f->runs[id], 2);
    assert_true(took >= 150); /* waited for run_after, then claimed without the poll */
}

static void test_heartbeat_keeps_lease(void **state)
{
    fixture *f = *state;
    int64_t id = enqueue(f, 0);
    f->sleep_ms = 1600; /* four leases long; rescue runs every 200 ms */
    start(f, 1, 400, 0, 0);
    wait_drained(f, 10000);
    int attempts = 0;
    assert_int_equal(state_of(f, id, &attempts), JOB_DONE);
    assert_int_equal(attempts, 1);
    assert_int_equal(f->runs[id], 1);
}

static void test_stop_releases(void **state)
{
    fixture *f = *state;
    enum { N = 5 };
    for (int i = 0; i < N; i++)
        enqueue(f, i);
    f->block = 1;
    start(f, 2, 0, 0, 0);
    int64_t end = ts_now_ms() + 5000;
    pthread_mutex_lock(&f->lock);
    while (f->running < 2 && ts_now_ms() < end) {
        pthread_mutex_unlock(&f->lock);
        ts_sleep_ms(5);
        pthread_mutex_lock(&f->lock);
    }
    assert_int_equal(f->running, 2);
    pthread_mutex_unlock(&f->lock);

    sched_stop(f->sc, 50); /* the two blocked jobs outlive the grace */
    store_counts c;
    err_t e = {0};
    assert_int_equal(store_counts_get(f->st, &c, &e), ERR_OK);
    assert_int_equal(c.running, 0);
    assert_int_equal(c.queued, N);

    pthread_mutex_lock(&f->lock);
    f->block = 0;
    pthread_cond_broadcast(&f->cond);
    while (f->finished < 2)
        pthread_cond_wait(&f->cond, &f->lock);
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(f->saw_released, 2);
    sched_free(f->sc);
    f->sc = NULL;

    start(f, 2, 0, 0, 0); /* a second worker finishes every job */
    wait_drained(f, 10000);
    for (int id = 1; id <= N; id++)
        assert_int_equal(state_of(f, id, NULL), JOB_DONE);
}

static void test_idle_slots_help(void **state)
{
    fixture *f = *state;
    f->offer_parts = 40;
    int64_t id = enqueue(f, 0);
    start(f, 3, 0, 0, 1);
    wait_drained(f, 10000);
    assert_int_equal(state_of(f, id, NULL), JOB_DONE);
    sched_stats ss;
    sched_get_stats(f->sc, &ss);
    assert_true(ss.helped_parts > 0);
    assert_true(ss.helped_parts < 40);
    assert_true(ss.help_seconds > 0);
    assert_int_equal(ss.helping, 0);
}

static void test_stats_while_busy(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 2; i++)
        enqueue(f, i);
    f->block = 1;
    start(f, 2, 0, 0, 0);
    int busy = 0;
    double worst = 0;
    for (int k = 0; k < 200 && busy < 2; k++) {
        sched_stats ss;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        sched_get_stats(f->sc, &ss);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        if (ms > worst)
            worst = ms;
        busy = ss.busy;
        ts_sleep_ms(5);
    }
    assert_int_equal(busy, 2);
    assert_true(worst < 50);
    pthread_mutex_lock(&f->lock);
    f->block = 0;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
    wait_drained(f, 5000);
}

static void fn_nothing(void *arg, sched_slot *s, const job *j)
{
    (void)arg, (void)s, (void)j;
}

/* The policy and nice value a slot thread ran its job with. */
static int seen_policy = -1, seen_nice = -100;

static void fn_policy(void *arg, sched_slot *s, const job *j)
{
    (void)s;
    fixture *f = arg;
    int pol = sched_getscheduler(0); /* Linux: the calling thread's */
    errno = 0;
    int ni = getpriority(PRIO_PROCESS, (id_t)gettid());
    err_t e = {0};
    store_result r = {.timings = "{}"};
    store_job_complete(f->st, j, sched_owner(f->sc), &r, &e);
    pthread_mutex_lock(&f->lock);
    seen_policy = pol;
    seen_nice = ni;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

/*
 * Slot threads give way to everything else: SCHED_BATCH with nice raised by
 * slot_nice (10 by default), or SCHED_IDLE with slot_idle
 * (--slot-priority idle).
 */
static void test_slot_priority(void **state)
{
    fixture *f = *state;
    errno = 0;
    int base = getpriority(PRIO_PROCESS, (id_t)gettid());
    for (int idle = 0; idle <= 1; idle++) {
        seen_policy = -1;
        enqueue(f, idle);
        sched_opts o = {.st = f->st,
                        .owner = "test-sched",
                        .slots = 1,
                        .slot_idle = idle,
                        .run = fn_policy,
                        .arg = f};
        err_t e = {0};
        pthread_mutex_lock(&f->lock);
        assert_int_equal(sched_start(&o, &f->sc, &e), ERR_OK);
        pthread_mutex_unlock(&f->lock);
        wait_drained(f, 10000);
        sched_stop(f->sc, 1000);
        sched_free(f->sc);
        f->sc = NULL;
        pthread_mutex_lock(&f->lock);
        int pol = seen_policy, ni = seen_nice;
        pthread_mutex_unlock(&f->lock);
        if (idle) {
            assert_int_equal(pol, SCHED_IDLE);
        } else {
            assert_int_equal(pol, SCHED_BATCH);
            assert_int_equal(ni, base + 10 > 19 ? 19 : base + 10);
        }
    }
    /* This thread, which started them, is as it was. */
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
}

static void test_bad_opts(void **state)
{
    fixture *f = *state;
    sched *s = NULL;
    err_t e = {0};
    sched_opts o = {.st = f->st, .owner = "x", .slots = 1, .run = fn_nothing};
    o.slots = 0;
    assert_int_equal(sched_start(&o, &s, &e), ERR_INVAL);
    o.slots = 1;
    o.owner = "";
    assert_int_equal(sched_start(&o, &s, &e), ERR_INVAL);
    o.owner = "x";
    o.run = NULL;
    assert_int_equal(sched_start(&o, &s, &e), ERR_INVAL);
    o.run = fn_nothing;
    sched_share_ops half = {.pending = t_pending};
    o.share = &half;
    assert_int_equal(sched_start(&o, &s, &e), ERR_INVAL);
    assert_null(s);
    sched_notify(NULL);
    sched_stop(NULL, 0);
    sched_free(NULL);
}

static int run_suite(const char *url_template)
{
    g_template = url_template;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_each_job_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_wakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_claimed_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_keeps_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_slots_help, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_while_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_priority, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_opts, setup, teardown),
    };
    char name[600];
    snprintf(name, sizeof name, "sched[%s]", url_template);
    return _cmocka_run_group_tests(name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
}

int main(void)
{
    return ts_store_urls_each("test_sched", "sched", NULL, run_suite) != 0;
}
