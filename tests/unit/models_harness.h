/*
 * tests/unit/models_harness.h — what test_models_fetch.c and test_models_hub.c
 * share: a temp dir, a local Python HTTP server started from it (it prints
 * "PORT N" and answers /_mode?... and /_log control requests), and running
 * the `inferd models` entry point in-process with its output captured.
 *
 * Header-only (static functions and state): each of the two test programs
 * includes it once, before its own code. The including file defines nothing
 * the harness defines; it sets `tmpdir` in its group setup (mh_setup) and
 * uses `base` (the server's http://127.0.0.1:PORT), `out_buf` (output of the
 * last run()) and the helpers below.
 */
#ifndef INFERD_TESTS_MODELS_HARNESS_H
#define INFERD_TESTS_MODELS_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "fetch/models_fetch.h"
#include "testsupport.h"

static char tmpdir[256];
static char base[64]; /* the server's URL */
static ts_server server = TS_SERVER_NONE;
static int port;
static int test_no;
static char out_buf[16384]; /* stdout + stderr of the last run() */

/* Malloc'd contents of `path` (NUL-terminated), `*n` its size; NULL when missing. */
static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = 0;
    fclose(f);
    if (n)
        *n = (size_t)len;
    return buf;
}

static int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int exists(const char *fmt, ...)
{
    char p[512];
    struct stat st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    return stat(p, &st) == 0;
}

/* A fresh temp dir (`prefix` names it), curl's global state; 0 on success. */
static int mh_setup(const char *prefix)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/%s-XXXXXX", prefix);
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

/* Stops the server, removes the temp dir. */
static int mh_teardown(void)
{
    char cmd[300];
    ts_server_stop(&server);
    curl_global_cleanup();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Starts the server script `py` serving TMPDIR/srv; it prints "PORT N\n". */
static int mh_start_server(const char *py, const char *who)
{
    char root[300];
    char line[128];
    snprintf(root, sizeof root, "%s/srv", tmpdir);
    char *argv[] = {"python3", "-u", (char *)py, root, NULL};
    if (ts_server_start(&server, who, argv, line, sizeof line) != 0)
        return -1;
    if (sscanf(line, "PORT %d", &port) != 1) {
        fprintf(stderr, "%s did not start: '%s'\n", py, line);
        ts_server_stop(&server);
        return -1;
    }
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    return 0;
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), n = size * nmemb;
    if (have + n >= 65536)
        return 0;
    memcpy(buf + have, ptr, n);
    buf[have + n] = '\0';
    return n;
}

/* GET `path` on the test server (a control request); the body in a static buffer. */
static const char *control(const char *path)
{
    static char body[65536];
    char url[256];
    CURL *h = curl_easy_init();
    CURLcode cc;

    assert_non_null(h);
    body[0] = '\0';
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    cc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    if (cc != CURLE_OK)
        fail_msg("control %s: %s", path, curl_easy_strerror(cc));
    return body;
}

static void set_mode(const char *query)
{
    char p[128];
    snprintf(p, sizeof p, "/_mode%s%s", query[0] ? "?" : "", query);
    assert_string_equal(control(p), "ok");
}

/* The requests the server saw since the last set_mode: new reference. */
static json_t *server_log(void)
{
    json_t *j = json_loads(control("/_log"), 0, NULL);
    assert_true(json_is_array(j));
    return j;
}

/*
 * Requests whose path is `path` (or, with `substring`, contains it), and the body bytes
 * sent for them into *sent (may be NULL).
 */
static int requests_for(json_t *log, const char *path, int substring, long *sent)
{
    size_t i;
    json_t *r;
    int n = 0;
    if (sent)
        *sent = 0;
    json_array_foreach(log, i, r)
    {
        const char *p = json_string_value(json_object_get(r, "path"));
        if (substring ? strstr(p, path) != NULL : strcmp(p, path) == 0) {
            n++;
            if (sent)
                *sent += (long)json_integer_value(json_object_get(r, "sent"));
        }
    }
    return n;
}

/*
 * Runs models_fetch_main with "models" and the given NULL-terminated
 * arguments, stdout and stderr captured into out_buf. Returns its exit status.
 */
static int run(const char *first, ...)
{
    char *argv[32];
    int argc = 0, rc, save1, save2, fd;
    char cap[300];
    const char *a;
    va_list ap;
    uint8_t *text;

    argv[argc++] = (char *)"models";
    va_start(ap, first);
    for (a = first; a != NULL && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    snprintf(cap, sizeof cap, "%s/out.txt", tmpdir);
    fflush(stdout);
    fflush(stderr);
    fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    save1 = dup(1);
    save2 = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    rc = models_fetch_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(save1, 1);
    dup2(save2, 2);
    close(save1);
    close(save2);
    text = read_file(cap, NULL);
    snprintf(out_buf, sizeof out_buf, "%s", text ? (char *)text : "");
    free(text);
    return rc;
}

/* A fresh models dir for the current test. */
static void new_models_dir(char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/m%d", tmpdir, ++test_no);
}

static void expect_rc(int got, int want)
{
    if (got != want)
        fail_msg("exit status %d, expected %d; output:\n%s", got, want, out_buf);
}

static void expect_out(const char *needle)
{
    if (strstr(out_buf, needle) == NULL)
        fail_msg("output lacks \"%s\":\n%s", needle, out_buf);
}

#endif
