/*
 * test_events.c — the outbox publisher against a real mosquitto broker that
 * the test starts on a random 127.0.0.1 port: every outbox row arrives on
 * inferd/jobs/<id> and inferd/assets/<asset> in order and is marked sent; a
 * broker stopped mid-run and restarted on the same port loses nothing; the
 * SSE hub (events_wait) wakes on notify, times out and returns at stop.
 *
 * The subscriber is a libmosquitto client with a persistent session (the
 * broker runs with persistence), so messages published while it is still
 * reconnecting after the broker restart are queued for it, not dropped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "events/events.h"
#include "store/store.h"
#include "testsupport.h"

#define MOSQUITTO_BIN "/usr/sbin/mosquitto"
#define MAX_MSGS 4096

typedef struct {
    char topic[256];
    char payload[2048];
} msg;

typedef struct {
    char dir[256];
    int port;
    pid_t broker;
    store *st;
    events *ev;
    struct mosquitto *sub;
    pthread_mutex_t lock;
    msg *msgs;
    int nmsgs;
    int sub_ready;
    int asset_seq;
} fixture;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void broker_start(fixture *f)
{
    char conf[300];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", f->dir);
    FILE *fp = fopen(conf, "w");
    assert_non_null(fp);
    fprintf(fp,
            "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
            "persistence_location %s/\nautosave_interval 0\nlog_type error\n",
            f->port, f->dir);
    if (geteuid() == 0)
        fprintf(fp, "user root\n"); /* do not drop to a user that cannot write the dir */
    fclose(fp);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(MOSQUITTO_BIN, "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    f->broker = pid;
    int64_t dl = ts_now_ms() + 10000;
    while (!port_open(f->port)) {
        assert_true(ts_now_ms() < dl);
        ts_sleep_ms(20);
    }
}

static void broker_stop(fixture *f)
{
    if (f->broker > 0) {
        kill(f->broker, SIGTERM);
        waitpid(f->broker, NULL, 0);
        f->broker = 0;
    }
}

/* --- subscriber ---------------------------------------------------------- */

static void sub_on_connect(struct mosquitto *m, void *obj, int rc)
{
    fixture *f = obj;
    if (rc == 0)
        mosquitto_subscribe(m, NULL, "inferd/#", 1);
    (void)f;
}

static void sub_on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *q)
{
    fixture *f = obj;
    (void)m, (void)mid, (void)n, (void)q;
    pthread_mutex_lock(&f->lock);
    f->sub_ready = 1;
    pthread_mutex_unlock(&f->lock);
}

static void sub_on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *mm)
{
    fixture *f = obj;
    (void)m;
    pthread_mutex_lock(&f->lock);
    if (f->nmsgs < MAX_MSGS) {
        msg *x = &f->msgs[f->nmsgs++];
        snprintf(x->topic, sizeof x->topic, "%s", mm->topic);
        snprintf(x->payload, sizeof x->payload, "%.*s", mm->payloadlen, (const char *)mm->payload);
    }
    pthread_mutex_unlock(&f->lock);
}

static void sub_start(fixture *f)
{
    f->sub = mosquitto_new("inferd-test-sub", false, f);
    assert_non_null(f->sub);
    mosquitto_connect_callback_set(f->sub, sub_on_connect);
    mosquitto_subscribe_callback_set(f->sub, sub_on_subscribe);
    mosquitto_message_callback_set(f->sub, sub_on_message);
    mosquitto_reconnect_delay_set(f->sub, 1, 1, false);
    assert_int_equal(mosquitto_connect(f->sub, "127.0.0.1", f->port, 30), MOSQ_ERR_SUCCESS);
    assert_int_equal(mosquitto_loop_start(f->sub), MOSQ_ERR_SUCCESS);
    int64_t dl = ts_now_ms() + 5000;
    for (;;) {
        pthread_mutex_lock(&f->lock);
        int ready = f->sub_ready;
        pthread_mutex_unlock(&f->lock);
        if (ready)
            break;
        assert_true(ts_now_ms() < dl);
        ts_sleep_ms(10);
    }
}

static int nmsgs(fixture *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->nmsgs;
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* --- outbox rows --------------------------------------------------------- */

/* Enqueues, claims and finishes one job (done or failed): exactly one outbox row. */
static int64_t make_row(fixture *f, int fail)
{
    char asset[64];
    snprintf(asset, sizeof asset, "asset-%d", ++f->asset_seq);
    job_spec spec = {.asset_id = asset, .tasks = JOB_TASK_ALL, .source = "{\"path\":\"x.jpg\"}"};
    job j = {0};
    err_t e = {0};
    assert_int_equal(store_job_enqueue(f->st, &spec, &j, NULL, &e), ERR_OK);
    int64_t id = j.id;
    job_clear(&j);
    job *jobs = NULL;
    int n = 0;
    assert_int_equal(store_job_claim(f->st, "test", 1, 30000, &jobs, &n, &e), ERR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(jobs[0].id, id);
    if (fail) {
        assert_int_equal(
            store_job_fail(f->st, &jobs[0], "test", ERR_DECODE, "decode: bad", NULL, &e), ERR_OK);
    } else {
        store_result r = {.width = 10, .height = 10, .timings = "{\"total\":1}"};
        assert_int_equal(store_job_complete(f->st, &jobs[0], "test", &r, &e), ERR_OK);
    }
    job_array_free(jobs, n);
    events_notify(f->ev);
    return id;
}

static int64_t pending(fixture *f)
{
    store_counts c;
    err_t e = {0};
    assert_int_equal(store_counts_get(f->st, &c, &e), ERR_OK);
    return c.outbox_pending;
}

/* Waits until the subscriber has `want` messages and the outbox is drained. */
static void wait_delivered(fixture *f, int want, int timeout_ms)
{
    int64_t dl = ts_now_ms() + timeout_ms;
    while (nmsgs(f) < want || pending(f) > 0) {
        if (ts_now_ms() >= dl)
            fail_msg("timeout: msgs=%d want=%d pending=%lld", nmsgs(f), want,
                     (long long)pending(f));
        ts_sleep_ms(20);
    }
}

/*
 * Checks that the messages hold each of the jobs [first, last] on both topics,
 * first arrivals in id order per topic kind; returns the number of duplicates.
 */
static int check_order(fixture *f, int64_t first, int64_t last)
{
    int dups = 0;
    int64_t next_job = first;
    int64_t seen_max = first - 1;
    int njobs_seen = 0, nassets_seen = 0;
    pthread_mutex_lock(&f->lock);
    for (int i = 0; i < f->nmsgs; i++) {
        const msg *m = &f->msgs[i];
        long long id = 0;
        if (sscanf(m->topic, "inferd/jobs/%lld", &id) == 1) {
            if (id < first || id > last)
                continue;
            if (id <= seen_max) {
                dups++; /* a redelivery after reconnect: allowed (at least once) */
                continue;
            }
            assert_int_equal(id, next_job);
            seen_max = id;
            next_job = id + 1;
            njobs_seen++;
            /* The payload names the job. */
            char key[64];
            snprintf(key, sizeof key, "%lld", id);
            assert_non_null(strstr(m->payload, key));
        } else if (strncmp(m->topic, "inferd/assets/asset-", 20) == 0) {
            nassets_seen++;
        } else {
            fail_msg("unexpected topic %s", m->topic);
        }
    }
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(njobs_seen, last - first + 1);
    assert_true(nassets_seen >= last - first + 1);
    return dups;
}

/* --- fixture ------------------------------------------------------------- */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/inferd-test-events-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    pthread_mutex_init(&f->lock, NULL);
    f->msgs = calloc(MAX_MSGS, sizeof *f->msgs);
    f->port = free_port();
    mosquitto_lib_init();
    broker_start(f);
    sub_start(f);

    char url[400];
    snprintf(url, sizeof url, "sqlite:%s/inferd.db", f->dir);
    err_t e = {0};
    assert_int_equal(store_open(url, NULL, &f->st, &e), ERR_OK);
    char mqtt[64];
    snprintf(mqtt, sizeof mqtt, "mqtt://127.0.0.1:%d", f->port);
    events_opts o = {.mqtt_url = mqtt, .client_id = "inferd-test-pub", .poll_ms = 200};
    assert_int_equal(events_new(f->st, &o, &f->ev, &e), ERR_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    events_free(f->ev);
    if (f->sub != NULL) {
        mosquitto_disconnect(f->sub);
        mosquitto_loop_stop(f->sub, false); /* force would cancel it holding a lock */
        mosquitto_destroy(f->sub);
    }
    broker_stop(f);
    store_close(f->st);
    mosquitto_lib_cleanup();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(f->msgs);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return 0;
}

/* --- tests --------------------------------------------------------------- */

/* More rows than the in-flight window: all arrive once, in order, and are marked sent. */
static void test_delivery_in_order(void **state)
{
    fixture *f = *state;
    err_t e = {0};
    /* Rows committed before the publisher starts are delivered too. */
    int64_t first = make_row(f, 0);
    for (int i = 1; i < 10; i++)
        make_row(f, i % 3 == 0);
    assert_int_equal(events_start(f->ev, &e), ERR_OK);
    int64_t last = 0;
    for (int i = 0; i < 70; i++)
        last = make_row(f, i % 4 == 0);
    int rows = (int)(last - first + 1);
    wait_delivered(f, 2 * rows, 20000);
    ts_sleep_ms(200); /* nothing extra may follow */
    assert_int_equal(nmsgs(f), 2 * rows);
    assert_int_equal(check_order(f, first, last), 0);

    outbox_event *ob = NULL;
    int n = 0;
    assert_int_equal(store_outbox_read(f->st, 0, 1, 100, &ob, &n, &e), ERR_OK);
    assert_int_equal(n, 0);
    outbox_event_array_free(ob, n);

    /* Each asset topic got exactly one message and its payload names the asset. */
    pthread_mutex_lock(&f->lock);
    for (int a = 1; a <= rows; a++) {
        char topic[64];
        snprintf(topic, sizeof topic, "inferd/assets/asset-%d", a);
        int seen = 0;
        for (int i = 0; i < f->nmsgs; i++)
            if (strcmp(f->msgs[i].topic, topic) == 0) {
                seen++;
                assert_non_null(strstr(f->msgs[i].payload, topic + 14));
            }
        assert_int_equal(seen, 1);
    }
    pthread_mutex_unlock(&f->lock);

    events_stats s;
    events_get_stats(f->ev, &s);
    assert_int_equal(s.connected, 1);
    assert_int_equal(s.published, rows);
    assert_int_equal(s.last_sent_id > 0, 1);
    assert_int_equal(s.publish_errors, 0);
}

/* Broker stopped mid-run, rows committed meanwhile stay pending, then all arrive. */
static void test_broker_outage(void **state)
{
    fixture *f = *state;
    err_t e = {0};
    assert_int_equal(events_start(f->ev, &e), ERR_OK);
    int64_t first = make_row(f, 0);
    for (int i = 0; i < 5; i++)
        make_row(f, 0);
    wait_delivered(f, 12, 10000);

    broker_stop(f);
    events_stats s;
    int64_t dl = ts_now_ms() + 10000;
    do {
        ts_sleep_ms(20);
        events_get_stats(f->ev, &s);
        assert_true(ts_now_ms() < dl);
    } while (s.connected);

    int64_t last = 0;
    for (int i = 0; i < 40; i++)
        last = make_row(f, i % 2);
    ts_sleep_ms(700);                    /* at least one reconnect attempt fails meanwhile */
    assert_int_equal(pending(f), 40); /* nothing marked sent without a PUBACK */

    broker_start(f);
    int rows = (int)(last - first + 1);
    wait_delivered(f, 2 * rows, 30000);
    int dups = check_order(f, first, last);
    assert_true(dups <= 32); /* at most the window is republished */
    events_get_stats(f->ev, &s);
    assert_int_equal(s.connected, 1);
    assert_int_equal(s.published, rows);
}

/* events_wait: woken by notify, times out without one, returns -1 once stopping. */
static void *notifier(void *arg)
{
    ts_sleep_ms(100);
    events_notify(arg);
    return NULL;
}

static void test_wait_hub(void **state)
{
    fixture *f = *state;
    assert_int_equal(events_wait(f->ev, 50), 1);
    pthread_t t;
    pthread_create(&t, NULL, notifier, f->ev);
    int64_t t0 = ts_now_ms();
    assert_int_equal(events_wait(f->ev, 5000), 0);
    assert_true(ts_now_ms() - t0 < 4000);
    pthread_join(t, NULL);
    events_stop(f->ev, 0);
    assert_int_equal(events_wait(f->ev, 1000), -1);
}

/* Bad URLs are refused at events_new with the URL named. */
static void test_bad_url(void **state)
{
    fixture *f = *state;
    const char *bad[] = {"http://x:1",  "mqtt://",     "mqtt://h:0", "mqtt://h:99999",
                         "mqtt://h:1x", "mqtt://[::1", "mqtts://",   "mqtts://h:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        events *ev = NULL;
        err_t e = {0};
        events_opts o = {.mqtt_url = bad[i]};
        assert_int_not_equal(events_new(f->st, &o, &ev, &e), ERR_OK);
        assert_null(ev);
        assert_non_null(strstr(e.msg, bad[i]));
    }
    const char *good[] = {"mqtt://h",           "mqtt://h:1883", "mqtt://u:p@h:1",
                          "mqtt://[::1]:1883/", "mqtts://h",     "mqtts://u:p@[::1]:8883"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        events *ev = NULL;
        err_t e = {0};
        events_opts o = {.mqtt_url = good[i]};
        assert_int_equal(events_new(f->st, &o, &ev, &e), ERR_OK);
        events_free(ev);
    }
    /* TLS files are checked at once, named in the error. */
    {
        events *ev = NULL;
        err_t e = {0};
        events_opts o = {.mqtt_url = "mqtts://h", .tls_ca_file = "/nonexistent/ca.pem"};
        assert_int_not_equal(events_new(f->st, &o, &ev, &e), ERR_OK);
        assert_non_null(strstr(e.msg, "/nonexistent/ca.pem"));
        o = (events_opts){.mqtt_url = "mqtts://h", .tls_cert_file = "/dev/null"};
        assert_int_not_equal(events_new(f->st, &o, &ev, &e), ERR_OK);
        assert_non_null(strstr(e.msg, "key"));
    }
    /* No URL: a hub without a publisher. */
    events *ev = NULL;
    err_t e = {0};
    assert_int_equal(events_new(f->st, NULL, &ev, &e), ERR_OK);
    assert_int_equal(events_start(ev, &e), ERR_OK);
    events_notify(ev);
    events_free(ev);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delivery_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_hub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_url, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
