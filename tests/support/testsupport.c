/*
 * tests/support/testsupport.c — the helpers of testsupport.h: running a
 * subprocess, and the store URLs of the store tests. Single-threaded: the
 * URL counter is a plain static, used from the test's main thread only.
 */
#include "testsupport.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
