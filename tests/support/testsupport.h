/*
 * tests/support/testsupport.h — helpers shared by test programs, kept out of
 * every one of them: running a reference subprocess (the node references of
 * tests/tokenizer/clip_js_diff.c and tests/models/parity.c), running a local
 * helper server for the length of a test (the Python HTTP servers of
 * tests/unit/test_fetch.c and tests/unit/test_models_fetch.c) and the store
 * URLs a store test runs against (tests/unit/test_store.c,
 * tests/unit/test_search_real.c). tests/CMakeLists.txt builds this into the
 * static library inferd_testsupport, linked into every unit test and into
 * the programs that include it; it is not a test itself.
 *
 * Nothing here asserts (no cmocka): callers decide what a failure means.
 */
#ifndef INFERD_TESTSUPPORT_H
#define INFERD_TESTSUPPORT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Runs argv (argv[0] looked up on PATH, the environment inherited) and waits
 * for it. Returns its exit status, or -1 when it could not be started or was
 * killed by a signal; either is reported on stderr prefixed by `who` (the
 * calling test's name).
 */
int ts_run_wait(const char *who, char *const argv[]);

/*
 * A helper server: a subprocess that prints one line saying where it listens
 * (its ports) and serves until its stdin reaches end of file. A plain value;
 * {.pid = 0, .stdin_fd = -1} (TS_SERVER_NONE) is "not running".
 */
typedef struct {
    int pid;      /* 0 when not running */
    int stdin_fd; /* write end of its stdin, -1 when not running */
} ts_server;

#define TS_SERVER_NONE ((ts_server){.pid = 0, .stdin_fd = -1})

/*
 * Starts argv (argv[0] looked up on PATH, the environment inherited) as
 * *srv, its stdin and stdout pipes to this process, and reads the first line
 * it writes on stdout into `line` (at most `size` bytes, NUL included; the
 * newline dropped): what came before a newline, end of file or 10 seconds,
 * whichever is first, possibly empty. The caller parses the line, and stops
 * the server when it does not say what it should. Returns 0 when it started;
 * -1 when it could not be started (reported on stderr prefixed by `who`),
 * *srv then being TS_SERVER_NONE. Both pipe ends kept here are close-on-exec,
 * so that no other child holds the server's stdin open.
 */
int ts_server_start(ts_server *srv, const char *who, char *const argv[], char *line, size_t size);

/*
 * Closes the server's stdin, which asks it to exit, and reaps it, killing it
 * (SIGKILL) when it is still running after 3 seconds. Leaves *srv
 * TS_SERVER_NONE; a no-op for a server that is not running.
 */
void ts_server_stop(ts_server *srv);

/*
 * Store URLs. INFERD_TEST_STORE_URLS lists them (separated by spaces, commas,
 * tabs or newlines); when it is unset or empty the list is one SQLite URL,
 * "sqlite:DIR/NAME-{n}.db", DIR being a fresh directory
 * $TMPDIR/inferd-NAME-XXXXXX (TMPDIR default /tmp). "{n}" in a URL stands
 * for a token unique to each store a test opens (ts_store_url_expand), so
 * that a backend can give each one a fresh file, database or schema.
 */

/*
 * Calls suite(url) for every store URL (see above) that starts with `only`,
 * or for every one when `only` is NULL, then removes DIR, which the suites
 * must have emptied. Returns the number of failures: the sum of what the
 * suites returned, plus 1 when `only` matched no URL (a filter that selects
 * nothing is a mistake, not a pass: said on stderr, prefixed by `who`), or
 * -1 when DIR cannot be made.
 */
int ts_store_urls_each(const char *who, const char *name, const char *only,
                       int (*suite)(const char *url));

/*
 * Writes url_template to out (at most `size` bytes, NUL included) with its
 * first "{n}" replaced by PREFIX<pid>_<k>, k counting the calls in this
 * process from 1; a template without "{n}" is copied as it is.
 */
void ts_store_url_expand(const char *url_template, const char *prefix, char *out, size_t size);

/*
 * The file path of `url` when it names an SQLite store, read as store_open()
 * reads it ("sqlite://PATH", "sqlite:PATH" or a bare PATH); NULL for any
 * other scheme. The result points into `url`.
 */
const char *ts_store_url_sqlite_path(const char *url);

/* Removes the SQLite database of `url` with its -wal and -shm files; nothing for other URLs. */
void ts_store_url_remove_sqlite(const char *url);

/* Monotonic clock in milliseconds. */
int64_t ts_now_ms(void);

/* Sleeps `ms` milliseconds, resuming after a signal. */
void ts_sleep_ms(long ms);

/*
 * The path of the build's tool `name` (mkclip, mkfaces) into out[0..cap): the variable
 * `env` when set, else the build directory above the test binary's (build/NAME for
 * build/tests/test_x). 0 when it is executable; -1 with a message naming the tool, the
 * target to build and the variable, printed for `who`.
 */
int ts_tool_path(const char *who, const char *name, const char *env, char *out, size_t cap);

#endif
