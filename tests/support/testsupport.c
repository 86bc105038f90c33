/*
 * tests/support/testsupport.c — the helpers of testsupport.h: running a
 * subprocess, a local helper server, and the store URLs of the store tests. Single-threaded: the
 * URL counter is a plain static, used from the test's main thread only.
 */
#include "testsupport.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int ts_run_wait(const char *who, char *const argv[])
{
    pid_t pid;
    int st;
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot run %s: %s\n", who, argv[0], strerror(rc));
        return -1;
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    fprintf(stderr, "%s: %s killed by signal %d\n", who, argv[0], WTERMSIG(st));
    return -1;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* pipe() with both ends close-on-exec: the child gets its ends by dup2 only. */
static int pipe_cloexec(int fd[2])
{
    if (pipe(fd) != 0)
        return -1;
    fcntl(fd[0], F_SETFD, FD_CLOEXEC);
    fcntl(fd[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

int ts_server_start(ts_server *srv, const char *who, char *const argv[], char *line, size_t size)
{
    int in[2], out[2];
    size_t n = 0;
    *srv = TS_SERVER_NONE;
    if (size > 0)
        line[0] = '\0';
    if (pipe_cloexec(in) != 0) {
        fprintf(stderr, "%s: pipe: %s\n", who, strerror(errno));
        return -1;
    }
    if (pipe_cloexec(out) != 0) {
        fprintf(stderr, "%s: pipe: %s\n", who, strerror(errno));
        close(in[0]);
        close(in[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot run %s: %s\n", who, argv[0], strerror(rc));
        close(in[1]);
        close(out[0]);
        return -1;
    }
    srv->pid = (int)pid;
    srv->stdin_fd = in[1];
    /* One byte at a time, so that nothing after the line is consumed. */
    double t0 = now_ms();
    while (n + 1 < size && now_ms() - t0 < 10000) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        if (read(out[0], line + n, 1) <= 0 || line[n] == '\n')
            break;
        n++;
    }
    if (size > 0)
        line[n] = '\0';
    close(out[0]);
    return 0;
}

void ts_server_stop(ts_server *srv)
{
    if (srv->stdin_fd >= 0)
        close(srv->stdin_fd);
    if (srv->pid > 0) {
        int status;
        double t0 = now_ms();
        while (waitpid(srv->pid, &status, WNOHANG) == 0) {
            if (now_ms() - t0 > 3000) {
                kill(srv->pid, SIGKILL);
                waitpid(srv->pid, &status, 0);
                break;
            }
            usleep(20000);
        }
    }
    *srv = TS_SERVER_NONE;
}

int ts_store_urls_each(const char *who, const char *name, const char *only,
                       int (*suite)(const char *url))
{
    char dir[256], def[400];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/inferd-%s-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp",
             name);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "%s: mkdtemp %s: %s\n", who, dir, strerror(errno));
        return -1;
    }
    snprintf(def, sizeof def, "sqlite:%s/%s-{n}.db", dir, name);
    const char *env = getenv("INFERD_TEST_STORE_URLS");
    const char *urls = env != NULL && env[0] != '\0' ? env : def;
    char *list = strdup(urls);
    if (list == NULL) {
        fprintf(stderr, "%s: out of memory\n", who);
        rmdir(dir);
        return -1;
    }
    int failed = 0, ran = 0;
    char *save = NULL;
    for (char *u = strtok_r(list, " ,\t\n", &save); u != NULL;
         u = strtok_r(NULL, " ,\t\n", &save)) {
        if (only != NULL && strncmp(u, only, strlen(only)) != 0)
            continue;
        ran++;
        failed += suite(u);
    }
    free(list);
    rmdir(dir);
    if (only != NULL && ran == 0) {
        fprintf(stderr, "%s: no store URL of backend \"%s\" in %s\n", who, only, urls);
        failed++;
    }
    return failed;
}

void ts_store_url_expand(const char *url_template, const char *prefix, char *out, size_t size)
{
    static int counter;
    char token[64];
    snprintf(token, sizeof token, "%s%d_%d", prefix, (int)getpid(), ++counter);
    const char *p = strstr(url_template, "{n}");
    if (p == NULL)
        snprintf(out, size, "%s", url_template);
    else
        snprintf(out, size, "%.*s%s%s", (int)(p - url_template), url_template, token, p + 3);
}

const char *ts_store_url_sqlite_path(const char *url)
{
    if (strncmp(url, "sqlite://", 9) == 0)
        return url + 9;
    if (strncmp(url, "sqlite:", 7) == 0)
        return url + 7;
    if (strstr(url, "://") == NULL)
        return url;
    return NULL;
}

void ts_store_url_remove_sqlite(const char *url)
{
    const char *path = ts_store_url_sqlite_path(url);
    if (path == NULL)
        return;
    char buf[600];
    unlink(path);
    snprintf(buf, sizeof buf, "%s-wal", path);
    unlink(buf);
    snprintf(buf, sizeof buf, "%s-shm", path);
    unlink(buf);
}

int64_t ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ts_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int ts_tool_path(const char *who, const char *name, const char *env, char *out, size_t cap)
{
    const char *given = getenv(env);
    if (given != NULL) {
        snprintf(out, cap, "%s", given);
    } else {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            return -1;
        self[n] = '\0';
        snprintf(out, cap, "%s/../%s", dirname(self), name);
    }
    if (access(out, X_OK) == 0)
        return 0;
    fprintf(stderr, "%s: %s not found (build the %s target or set %s)\n", who, out, name, env);
    return -1;
}
