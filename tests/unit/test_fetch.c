/*
 * test_fetch.c — the fetch subsystem: the SSRF address table, media-root
 * containment (.., absolute paths, symlinks, the /media2 prefix trick), the
 * content-addressed upload spool, source JSON validation, and URL fetches
 * against a real HTTP server this test starts on 127.0.0.1 (tests/unit/
 * fetch_server.py): statuses, redirects, timeouts, size caps, and the guard
 * refusing loopback targets before any request reaches the server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "fetch/fetch.h"
#include "fetch/fetch_int.h"
#include "testsupport.h"
#include "util/sha256.h"

#define SERVER_PY INFERD_SRCDIR "/tests/unit/fetch_server.py"

static char tmpdir[256];
static char media[320], media2[320], spool[320];
static ts_server server = TS_SERVER_NONE;
static int port_a, port_b;

/* ------------------------------------------------------------ helpers */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static fetcher *make(int allow_private, size_t max_bytes, int timeout_ms, int max_redirects)
{
    fetch_opts o = {.media_root = media,
                    .spool_dir = spool,
                    .max_bytes = max_bytes,
                    .connect_timeout_ms = 2000,
                    .timeout_ms = timeout_ms,
                    .max_redirects = max_redirects,
                    .allow_private = allow_private};
    fetcher *f = NULL;
    err_t e;
    int rc = fetch_new(&o, &f, &e);
    if (rc)
        fail_msg("fetch_new: %s", e.msg);
    return f;
}

/* fetch_source of {"url": "http://<host>:<port><path>"}; returns the code. */
static int get_host(fetcher *f, const char *host, int port, const char *path, fetch_result *r,
                    err_t *e)
{
    char src[512];
    snprintf(src, sizeof src, "{\"url\": \"http://%s:%d%s\"}", host, port, path);
    int rc;
    err_clear(e);
    rc = fetch_source(f, src, r, e);
    if (rc && getenv("FETCH_TEST_VERBOSE"))
        print_message("  %s -> %s: %s\n", src, err_name(rc), e->msg);
    return rc;
}

static int get(fetcher *f, int port, const char *path, fetch_result *r, err_t *e)
{
    return get_host(f, "127.0.0.1", port, path, r, e);
}

/* Requests server `port` has counted so far (not counting /hits itself). */
static long hits(int port)
{
    fetcher *f = make(1, 0, 5000, 0);
    fetch_result r;
    err_t e;
    char buf[32];
    int rc = get(f, port, "/hits", &r, &e);
    if (rc)
        fail_msg("hits: %s", e.msg);
    assert_true(r.len < sizeof buf);
    memcpy(buf, r.data, r.len);
    buf[r.len] = '\0';
    fetch_result_clear(&r);
    fetch_free(f);
    return strtol(buf, NULL, 10);
}

static void check_pattern(const fetch_result *r, size_t n)
{
    assert_non_null(r->data);
    assert_null(r->path);
    assert_int_equal(r->len, n);
    for (size_t i = 0; i < n; i++)
        if (r->data[i] != (uint8_t)(i % 251))
            fail_msg("byte %zu differs", i);
}

/* Starts fetch_server.py, which prints "PORTS A B\n": two servers, A and B. */
static int start_server(void)
{
    char *argv[] = {"python3", "-u", SERVER_PY, NULL};
    char line[128];
    if (ts_server_start(&server, "test_fetch", argv, line, sizeof line) != 0)
        return -1;
    if (sscanf(line, "PORTS %d %d", &port_a, &port_b) != 2) {
        fprintf(stderr, "fetch_server.py did not start: '%s'\n", line);
        ts_server_stop(&server);
        return -1;
    }
    return 0;
}

static void make_tree(void);

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/inferd-fetch-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(media, sizeof media, "%s/media", tmpdir);
    snprintf(media2, sizeof media2, "%s/media2", tmpdir);
    snprintf(spool, sizeof spool, "%s/var/uploads", tmpdir);
    if (fetch_global_init(NULL) != ERR_OK)
        return -1;
    make_tree(); /* every fetcher here names the media root, so it must exist */
    return start_server();
}

static int group_teardown(void **state)
{
    (void)state;
    ts_server_stop(&server);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    fetch_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------ addresses */

static void test_addr_table(void **state)
{
    static const struct {
        const char *addr;
        int want;
    } cases[] = {
        /* IPv4: refused ranges, with their edges */
        {"0.0.0.0", 1},
        {"0.255.255.255", 1},
        {"10.0.0.1", 1},
        {"10.255.255.255", 1},
        {"100.63.255.255", 0},
        {"100.64.0.0", 1},
        {"100.127.255.255", 1},
        {"100.128.0.0", 0},
        {"127.0.0.1", 1},
        {"127.255.255.254", 1},
        {"169.254.169.254", 1},
        {"169.253.1.1", 0},
        {"169.255.1.1", 0},
        {"172.15.255.255", 0},
        {"172.16.0.0", 1},
        {"172.31.255.255", 1},
        {"172.32.0.0", 0},
        {"192.168.0.1", 1},
        {"192.169.0.1", 0},
        {"224.0.0.1", 1},
        {"239.255.255.255", 1},
        {"240.0.0.1", 1},
        {"255.255.255.255", 1},
        /* IPv4: public */
        {"1.1.1.1", 0},
        {"8.8.8.8", 0},
        {"11.0.0.1", 0},
        {"93.184.216.34", 0},
        {"126.255.255.255", 0},
        {"128.0.0.1", 0},
        {"223.255.255.255", 0},
        /* IPv6 */
        {"::", 1},
        {"::1", 1},
        {"fc00::1", 1},
        {"fd12:3456::1", 1},
        {"fe80::1", 1},
        {"febf::1", 1},
        {"fec0::1", 1},
        {"ff02::1", 1},
        {"ff0e::1", 1},
        {"2001:4860:4860::8888", 0},
        {"2606:4700::1111", 0},
        {"fbff::1", 0},
        {"fe00::1", 0},
        /* IPv6 carrying IPv4 */
        {"::ffff:127.0.0.1", 1},
        {"::ffff:10.1.2.3", 1},
        {"::ffff:169.254.169.254", 1},
        {"::ffff:8.8.8.8", 0},
        {"::ffff:7f00:1", 1},
        {"::127.0.0.1", 1},
        {"::8.8.8.8", 0},
        {"64:ff9b::10.0.0.1", 1},
        {"64:ff9b::8.8.8.8", 0},
        {"2002:c0a8:0101::1", 1}, /* 6to4 of 192.168.1.1 */
        {"2002:0808:0808::1", 0},
        /* IANA IPv4 special-purpose blocks, each with its edges and a neighbour */
        {"191.255.255.255", 0},
        {"192.0.0.0", 1}, /* 192.0.0.0/24 IETF protocol assignments */
        {"192.0.0.9", 1},
        {"192.0.0.255", 1},
        {"192.0.1.0", 0},
        {"192.0.2.0", 1}, /* TEST-NET-1 */
        {"192.0.2.255", 1},
        {"192.0.3.0", 0},
        {"192.88.98.255", 0},
        {"192.88.99.1", 1}, /* ex-6to4 relay anycast */
        {"192.88.100.0", 0},
        {"198.17.255.255", 0},
        {"198.18.0.0", 1}, /* 198.18.0.0/15 benchmarking */
        {"198.19.255.255", 1},
        {"198.20.0.0", 0},
        {"198.51.99.255", 0},
        {"198.51.100.0", 1}, /* TEST-NET-2 */
        {"198.51.100.255", 1},
        {"198.51.101.0", 0},
        {"203.0.112.255", 0},
        {"203.0.113.0", 1}, /* TEST-NET-3 */
        {"203.0.113.255", 1},
        {"203.0.114.0", 0},
        {"192.31.196.1", 0},  /* AS112: globally reachable */
        {"192.175.48.1", 0},  /* AS112 direct delegation: globally reachable */
        /* IANA IPv6 special-purpose blocks */
        {"64:ff9b:1::1", 1}, /* local-use NAT64 */
        {"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", 1},
        {"64:ff9b:2::1", 0},
        {"100::1", 1}, /* discard-only */
        {"100::ffff:ffff:ffff:ffff", 1},
        {"100:0:0:1::1", 1}, /* dummy prefix */
        {"100:0:0:2::1", 0},
        {"2001::1", 1}, /* Teredo */
        {"2001:0:4136:e378:8000:63bf:3fff:fdd2", 1},
        {"2001:2::1", 1},  /* benchmarking */
        {"2001:1ff:ffff::1", 1},
        {"2001:200::1", 0}, /* the first ordinary 2001: space */
        {"2001:db8::1", 1}, /* documentation */
        {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 1},
        {"2001:db9::1", 0},
        {"3fff::1", 1}, /* documentation (2024) */
        {"3fff:fff:ffff::1", 1},
        {"3fff:1000::1", 0},
        {"5f00::1", 1}, /* SRv6 SIDs */
        {"5f00:ffff::1", 1},
        {"5f01::1", 0},
        {"2620:4f:8000::1", 0}, /* AS112: globally reachable */
        /* not numeric addresses */
        {"", -1},
        {"localhost", -1},
        {"127.1", -1},
        {"0x7f.0.0.1", -1},
        {"[::1]", -1},
        {"1.2.3.4.5", -1},
        {"256.1.1.1", -1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = fetch_addr_is_private(cases[i].addr);
        if (got != cases[i].want)
            fail_msg("fetch_addr_is_private(\"%s\") = %d, want %d", cases[i].addr, got,
                     cases[i].want);
    }
    assert_int_equal(fetch_addr_is_private(NULL), -1);
}

static void test_addr_class_names(void **state)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    struct sockaddr un = {.sa_family = AF_UNIX};
    (void)state;

    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    assert_string_equal(fetch__addr_class((struct sockaddr *)&in), "loopback");
    inet_pton(AF_INET, "192.168.1.1", &in.sin_addr);
    assert_string_equal(fetch__addr_class((struct sockaddr *)&in), "private");
    inet_pton(AF_INET, "100.100.1.1", &in.sin_addr);
    assert_string_equal(fetch__addr_class((struct sockaddr *)&in), "cgnat");
    inet_pton(AF_INET, "8.8.4.4", &in.sin_addr);
    assert_null(fetch__addr_class((struct sockaddr *)&in));
    inet_pton(AF_INET6, "fe80::1", &in6.sin6_addr);
    assert_string_equal(fetch__addr_class((struct sockaddr *)&in6), "link-local");
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
    assert_string_equal(fetch__addr_class((struct sockaddr *)&in6), "loopback");
    assert_non_null(fetch__addr_class(&un));
}

static void test_classification(void **state)
{
    (void)state;
    assert_int_equal(fetch__classify_curl(CURLE_OPERATION_TIMEDOUT), ERR_TIMEOUT);
    assert_int_equal(fetch__classify_curl(CURLE_COULDNT_CONNECT), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_curl(CURLE_COULDNT_RESOLVE_HOST), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_curl(CURLE_RECV_ERROR), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_curl(CURLE_GOT_NOTHING), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_curl(CURLE_FILESIZE_EXCEEDED), ERR_TOOBIG);
    assert_int_equal(fetch__classify_curl(CURLE_TOO_MANY_REDIRECTS), ERR_FETCH);
    assert_int_equal(fetch__classify_curl(CURLE_PEER_FAILED_VERIFICATION), ERR_FETCH);
    assert_int_equal(fetch__classify_curl(CURLE_UNSUPPORTED_PROTOCOL), ERR_FORBIDDEN);
    assert_int_equal(fetch__classify_http(404), ERR_NOENT);
    assert_int_equal(fetch__classify_http(410), ERR_NOENT);
    assert_int_equal(fetch__classify_http(408), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_http(429), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_http(500), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_http(503), ERR_UNAVAILABLE);
    assert_int_equal(fetch__classify_http(400), ERR_FETCH);
    assert_int_equal(fetch__classify_http(403), ERR_FETCH);
    assert_int_equal(fetch__classify_http(302), ERR_FETCH);
    assert_true(err_is_transient(fetch__classify_http(503)));
    assert_false(err_is_transient(fetch__classify_http(404)));
    assert_false(err_is_transient(fetch__classify_http(403)));
}

/* ------------------------------------------------------------ paths */

/* media/{a.jpg, sub/b.jpg, big.jpg, link-in -> sub/b.jpg, link-out -> ../media2/secret,
 * dirlink -> ../media2}; media2/secret; rootlink -> media */
static void make_tree(void)
{
    char p[512], t[512];
    static int done;
    uint8_t big[2048] = {0};

    if (done)
        return;
    done = 1;
    assert_int_equal(mkdir(media, 0700), 0);
    assert_int_equal(mkdir(media2, 0700), 0);
    snprintf(p, sizeof p, "%s/sub", media);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/a.jpg", media);
    write_file(p, "A", 1);
    snprintf(p, sizeof p, "%s/sub/b.jpg", media);
    write_file(p, "BB", 2);
    snprintf(p, sizeof p, "%s/big.jpg", media);
    write_file(p, big, sizeof big);
    snprintf(p, sizeof p, "%s/secret", media2);
    write_file(p, "S", 1);
    snprintf(p, sizeof p, "%s/link-in", media);
    assert_int_equal(symlink("sub/b.jpg", p), 0);
    snprintf(p, sizeof p, "%s/link-out", media);
    assert_int_equal(symlink("../media2/secret", p), 0);
    snprintf(p, sizeof p, "%s/dirlink", media);
    assert_int_equal(symlink("../media2", p), 0);
    snprintf(p, sizeof p, "%s/rootlink", tmpdir);
    snprintf(t, sizeof t, "%s", media);
    assert_int_equal(symlink(t, p), 0);
}

static int path_rc(fetcher *f, const char *path, char **resolved, err_t *e)
{
    char src[1024];
    fetch_result r;
    int rc;

    snprintf(src, sizeof src, "{\"path\": \"%s\"}", path);
    err_clear(e);
    rc = fetch_source(f, src, &r, e);
    if (rc == ERR_OK) {
        assert_non_null(r.path);
        assert_null(r.data);
        if (resolved)
            *resolved = strdup(r.path);
    } else {
        assert_null(r.path);
    }
    /* the cheap check agrees with the fetch */
    assert_int_equal(fetch_check_source(f, src, NULL), rc);
    fetch_result_clear(&r);
    return rc;
}

static void test_path_containment(void **state)
{
    fetcher *f;
    char p[512], want[512];
    char *res = NULL;
    err_t e;
    (void)state;

    make_tree();
    f = make(0, 1024, 0, 0);
    assert_int_equal(path_rc(f, "a.jpg", &res, &e), ERR_OK);
    snprintf(want, sizeof want, "%s/a.jpg", media);
    assert_string_equal(res, want);
    free(res);
    assert_int_equal(path_rc(f, "sub/b.jpg", NULL, &e), ERR_OK);
    assert_int_equal(path_rc(f, "./sub/../a.jpg", NULL, &e), ERR_OK);
    assert_int_equal(path_rc(f, "sub//b.jpg", NULL, &e), ERR_OK);
    assert_int_equal(path_rc(f, "link-in", &res, &e), ERR_OK);
    snprintf(want, sizeof want, "%s/sub/b.jpg", media);
    assert_string_equal(res, want);
    free(res);
    snprintf(p, sizeof p, "%s/sub/b.jpg", media);
    assert_int_equal(path_rc(f, p, NULL, &e), ERR_OK); /* absolute, inside */

    /* escapes */
    assert_int_equal(path_rc(f, "../media2/secret", NULL, &e), ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "outside the media root"));
    assert_int_equal(path_rc(f, "sub/../../media2/secret", NULL, &e), ERR_FORBIDDEN);
    assert_int_equal(path_rc(f, "../media2/does-not-exist", NULL, &e), ERR_FORBIDDEN);
    assert_int_equal(path_rc(f, "../../../../../../etc/passwd", NULL, &e), ERR_FORBIDDEN);
    assert_int_equal(path_rc(f, "/etc/passwd", NULL, &e), ERR_FORBIDDEN);
    snprintf(p, sizeof p, "%s/secret", media2); /* the /media vs /media2 prefix trick */
    assert_int_equal(path_rc(f, p, NULL, &e), ERR_FORBIDDEN);
    snprintf(p, sizeof p, "%s/../media2/secret", media);
    assert_int_equal(path_rc(f, p, NULL, &e), ERR_FORBIDDEN);
    assert_int_equal(path_rc(f, "link-out", NULL, &e), ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "resolves outside"));
    assert_int_equal(path_rc(f, "dirlink/secret", NULL, &e), ERR_FORBIDDEN);

    /* other failures */
    assert_int_equal(path_rc(f, "missing.jpg", NULL, &e), ERR_NOENT);
    assert_int_equal(path_rc(f, "a.jpg/x", NULL, &e), ERR_NOENT);
    assert_int_equal(path_rc(f, "sub", NULL, &e), ERR_INVAL);
    assert_int_equal(path_rc(f, ".", NULL, &e), ERR_INVAL);
    assert_int_equal(path_rc(f, "", NULL, &e), ERR_INVAL);
    assert_int_equal(path_rc(f, "big.jpg", NULL, &e), ERR_TOOBIG);
    assert_int_equal(fetch_source(f, "{\"path\": \"a.jpg\\u0000../x\"}", &(fetch_result){0}, &e),
                     ERR_INVAL);
    fetch_free(f);

    /* a root given through a symlink and with a trailing slash still works */
    {
        fetch_opts o = {.media_root = NULL};
        char root[512];
        snprintf(root, sizeof root, "%s/rootlink/", tmpdir);
        o.media_root = root;
        assert_int_equal(fetch_new(&o, &f, &e), ERR_OK);
        assert_int_equal(path_rc(f, "a.jpg", NULL, &e), ERR_OK);
        snprintf(p, sizeof p, "%s/rootlink/sub/b.jpg", tmpdir);
        assert_int_equal(path_rc(f, p, NULL, &e), ERR_OK);
        assert_int_equal(path_rc(f, "../media2/secret", NULL, &e), ERR_FORBIDDEN);
        assert_int_equal(path_rc(f, "link-out", NULL, &e), ERR_FORBIDDEN);
        fetch_free(f);
    }
}

static void test_path_no_root(void **state)
{
    fetch_opts o = {.media_root = NULL};
    fetcher *f;
    err_t e;
    (void)state;

    make_tree();
    assert_int_equal(fetch_new(&o, &f, &e), ERR_OK);
    assert_int_equal(path_rc(f, "a.jpg", NULL, &e), ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "--media-root is not set"));
    fetch_free(f);
    o.media_root = ""; /* config.h's "not set" */
    assert_int_equal(fetch_new(&o, &f, &e), ERR_OK);
    assert_int_equal(path_rc(f, "a.jpg", NULL, &e), ERR_FORBIDDEN);
    fetch_free(f);
    o.media_root = "/nonexistent/inferd-media";
    assert_int_equal(fetch_new(&o, &f, &e), ERR_NOENT);
    assert_null(f);
    fetch_free(NULL);
}

/* ------------------------------------------------------------ spool */

static int count_entries(const char *dir)
{
    char cmd[600];
    FILE *p;
    int n = -1;
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static void test_spool(void **state)
{
    static const char img[] = "not really a jpeg, but bytes all the same";
    char sha[65], sha2[65], want[65], src[256], path[512];
    fetch_result r;
    fetcher *f;
    struct stat st;
    err_t e;
    (void)state;

    make_tree();
    f = make(0, 64, 0, 0);
    assert_int_equal(stat(spool, &st), 0); /* created by fetch_new, parents too */
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fetch_spool(f, img, sizeof img - 1, sha, &e), ERR_OK);
    sha256_hex(img, sizeof img - 1, want);
    assert_string_equal(sha, want);
    snprintf(path, sizeof path, "%s/%s", spool, sha);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, sizeof img - 1);
    assert_int_equal(count_entries(spool), 1);

    /* idempotent: same name, no temp files, the file is not rewritten */
    {
        struct stat st2;
        ino_t ino = st.st_ino;
        assert_int_equal(fetch_spool(f, img, sizeof img - 1, sha2, &e), ERR_OK);
        assert_string_equal(sha2, sha);
        assert_int_equal(stat(path, &st2), 0);
        assert_int_equal(st2.st_ino, ino);
        assert_int_equal(count_entries(spool), 1);
    }
    /* empty upload is fine; over the cap is not, and leaves nothing */
    assert_int_equal(fetch_spool(f, NULL, 0, sha2, &e), ERR_OK);
    assert_string_equal(sha2, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(count_entries(spool), 2);
    {
        char big[65];
        memset(big, 'x', sizeof big);
        assert_int_equal(fetch_spool(f, big, sizeof big, sha2, &e), ERR_TOOBIG);
        assert_int_equal(count_entries(spool), 2);
        assert_int_equal(fetch_spool(f, big, 64, sha2, &e), ERR_OK); /* exactly the cap */
    }

    /* the spooled upload as a source */
    snprintf(src, sizeof src, "{\"upload\": \"%s\", \"size\": %zu}", sha, sizeof img - 1);
    assert_int_equal(fetch_check_source(f, src, &e), ERR_OK);
    assert_int_equal(fetch_source(f, src, &r, &e), ERR_OK);
    assert_string_equal(r.path, path);
    assert_null(r.data);
    assert_int_equal(r.http_status, 0);
    assert_string_equal(r.upload, sha); /* what the source said, read once */
    assert_int_equal(strncmp(r.shown, "upload ", 7), 0);
    assert_int_equal(strncmp(r.shown + 7, sha, 12), 0);
    fetch_result_clear(&r);
    assert_null(r.path);
    snprintf(src, sizeof src, "{\"upload\": \"%s\"}", sha);
    assert_int_equal(fetch_source(f, src, &r, &e), ERR_OK);
    fetch_result_clear(&r);
    snprintf(src, sizeof src, "{\"upload\": \"%s\", \"size\": 3}", sha);
    assert_int_equal(fetch_check_source(f, src, &e), ERR_CHECKSUM);
    snprintf(src, sizeof src, "{\"upload\": \"%s\"}", want + 0);
    src[14] = src[14] == '0' ? '1' : '0'; /* another, absent digest */
    assert_int_equal(fetch_check_source(f, src, &e), ERR_NOENT);
    /* corrupted spool file: the name no longer matches the content */
    {
        char bad[sizeof img];
        memcpy(bad, img, sizeof img);
        bad[0] ^= 1;
        write_file(path, bad, sizeof img - 1);
    }
    snprintf(src, sizeof src, "{\"upload\": \"%s\"}", sha);
    assert_int_equal(fetch_check_source(f, src, &e), ERR_OK);
    assert_int_equal(fetch_source(f, src, &r, &e), ERR_CHECKSUM);
    assert_null(r.path);
    assert_string_equal(r.upload, sha); /* a failed fetch still names its upload */
    fetch_free(f);

    /* no spool configured */
    {
        fetch_opts o = {.media_root = NULL, .spool_dir = NULL};
        assert_int_equal(fetch_new(&o, &f, &e), ERR_OK);
        assert_int_equal(fetch_spool(f, img, 3, sha2, &e), ERR_FORBIDDEN);
        snprintf(src, sizeof src, "{\"upload\": \"%s\"}", sha);
        assert_int_equal(fetch_check_source(f, src, &e), ERR_FORBIDDEN);
        fetch_free(f);
    }
}

/* ------------------------------------------------------------ source JSON */

static void test_source_validation(void **state)
{
    static const struct {
        const char *json;
        int want;
    } cases[] = {
        {NULL, ERR_INVAL},
        {"", ERR_INVAL},
        {"not json", ERR_INVAL},
        {"[\"a.jpg\"]", ERR_INVAL},
        {"\"a.jpg\"", ERR_INVAL},
        {"{}", ERR_INVAL},
        {"{\"path\": \"a.jpg\", \"url\": \"http://example.com/x\"}", ERR_INVAL},
        {"{\"path\": \"a.jpg\", \"path\": \"a.jpg\"}", ERR_INVAL},
        {"{\"path\": \"a.jpg\", \"extra\": 1}", ERR_INVAL},
        {"{\"path\": 5}", ERR_INVAL},
        {"{\"path\": null}", ERR_INVAL},
        {"{\"path\": \"a.jpg\", \"size\": 1}", ERR_INVAL},
        {"{\"path\": \"a.jpg\"}", ERR_OK},
        {"{\"url\": \"\"}", ERR_INVAL},
        {"{\"url\": \"example.com/x.jpg\"}", ERR_INVAL},
        {"{\"url\": \"ftp://example.com/x.jpg\"}", ERR_INVAL},
        {"{\"url\": \"file:///etc/passwd\"}", ERR_INVAL},
        {"{\"url\": \"gopher://example.com/\"}", ERR_INVAL},
        {"{\"url\": \"http://\"}", ERR_INVAL},
        {"{\"url\": \"http://:8080/x.jpg\"}", ERR_INVAL},
        {"{\"url\": \"http://exa mple.com/\"}", ERR_INVAL},
        {"{\"url\": \"http://example.com/\\u0000x\"}", ERR_INVAL},
        {"{\"url\": \"http://example.com/x.jpg\"}", ERR_OK},
        {"{\"url\": \"HTTPS://example.com/x.jpg?sig=abc\"}", ERR_OK},
        {"{\"url\": \"http://user:pw@example.com:8080/x.jpg\"}", ERR_OK},
        {"{\"url\": \"http://127.0.0.1/x.jpg\"}", ERR_FORBIDDEN},
        {"{\"url\": \"http://10.1.2.3:8080/x.jpg\"}", ERR_FORBIDDEN},
        {"{\"url\": \"http://169.254.169.254/latest/meta-data\"}", ERR_FORBIDDEN},
        {"{\"url\": \"http://[::1]:8080/\"}", ERR_FORBIDDEN},
        {"{\"url\": \"http://[::ffff:127.0.0.1]/\"}", ERR_FORBIDDEN},
        {"{\"url\": \"http://[fe80::1]/\"}", ERR_FORBIDDEN},
        {"{\"url\": \"http://8.8.8.8/\"}", ERR_OK},
        {"{\"upload\": \"abc\"}", ERR_INVAL},
        {"{\"upload\": \"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\"}",
         ERR_INVAL},
        {"{\"upload\": \"../../../../../../../../../../../../../../../../../etc/passwd0000\"}",
         ERR_INVAL},
        {"{\"upload\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\", "
         "\"size\": -1}",
         ERR_INVAL},
        {"{\"upload\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\", "
         "\"size\": \"0\"}",
         ERR_INVAL},
        {"{\"upload\": \"0000000000000000000000000000000000000000000000000000000000000000\"}",
         ERR_NOENT},
    };
    fetcher *f, *fp;
    err_t e;
    (void)state;

    make_tree();
    f = make(0, 0, 0, 0);
    fp = make(1, 0, 0, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got;
        err_clear(&e);
        got = fetch_check_source(f, cases[i].json, &e);
        if (got != cases[i].want)
            fail_msg("case %zu %s: got %s (%s), want %s", i, cases[i].json ? cases[i].json : "NULL",
                     err_name(got), e.msg, err_name(cases[i].want));
        if (got != ERR_OK)
            assert_true(e.msg[0] != '\0');
    }
    err_clear(&e);
    assert_int_equal(fetch_check_source(f, "{\"url\": \"http://127.0.0.1/x\"}", &e), ERR_FORBIDDEN);
    assert_string_equal(e.msg,
                        "address 127.0.0.1 is loopback; refused (allow with --allow-private-urls)");
    /* the same literal addresses pass when private targets are allowed */
    assert_int_equal(fetch_check_source(fp, "{\"url\": \"http://127.0.0.1/x\"}", &e), ERR_OK);
    assert_int_equal(fetch_check_source(fp, "{\"url\": \"http://[::1]:8080/\"}", &e), ERR_OK);
    fetch_free(f);
    fetch_free(fp);
}

/* ------------------------------------------------------------ HTTP */

static void test_http_ok(void **state)
{
    fetcher *f = make(1, 1 << 20, 5000, 0);
    fetch_result r;
    err_t e;
    (void)state;

    assert_int_equal(get(f, port_a, "/bytes?n=100000", &r, &e), ERR_OK);
    check_pattern(&r, 100000);
    assert_int_equal(r.http_status, 200);
    fetch_result_clear(&r);
    assert_int_equal(get(f, port_a, "/nolength?n=5000", &r, &e), ERR_OK);
    check_pattern(&r, 5000);
    fetch_result_clear(&r);
    assert_int_equal(get(f, port_a, "/empty", &r, &e), ERR_OK);
    assert_non_null(r.data);
    assert_int_equal(r.len, 0);
    fetch_result_clear(&r);
    assert_int_equal(get(f, port_a, "/ua", &r, &e), ERR_OK);
    assert_int_equal(r.len, strlen("inferd/" INFERD_VERSION));
    assert_memory_equal(r.data, "inferd/" INFERD_VERSION, r.len);
    fetch_result_clear(&r);
    fetch_free(f);
}

static void test_http_status(void **state)
{
    static const struct {
        int status;
        int want;
    } cases[] = {{404, ERR_NOENT},       {410, ERR_NOENT},       {400, ERR_FETCH},
                 {403, ERR_FETCH},       {408, ERR_UNAVAILABLE}, {429, ERR_UNAVAILABLE},
                 {500, ERR_UNAVAILABLE}, {503, ERR_UNAVAILABLE}};
    fetcher *f = make(1, 1000, 5000, 0);
    fetch_result r;
    err_t e;
    char path[64], needle[64];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "/status/%d", cases[i].status);
        assert_int_equal(get(f, port_a, path, &r, &e), cases[i].want);
        assert_null(r.data);
        snprintf(needle, sizeof needle, "HTTP %d", cases[i].status);
        assert_non_null(strstr(e.msg, needle));
        assert_non_null(strstr(e.msg, path));
    }
    /* an error page bigger than the cap is still the error, not "too big" */
    assert_int_equal(get(f, port_a, "/status/500?n=50000", &r, &e), ERR_UNAVAILABLE);
    assert_int_equal(get(f, port_a, "/status/404?n=50000", &r, &e), ERR_NOENT);
    assert_true(err_is_transient(ERR_UNAVAILABLE));
    assert_false(err_is_transient(ERR_NOENT));

    /* credentials never reach a message */
    {
        char src[256];
        snprintf(src, sizeof src, "{\"url\": \"http://bob:hunter2@127.0.0.1:%d/status/404\"}",
                 port_a);
        assert_int_equal(fetch_source(f, src, &r, &e), ERR_NOENT);
        assert_null(strstr(e.msg, "hunter2"));
        assert_null(strstr(e.msg, "bob"));
        assert_non_null(strstr(e.msg, "/status/404"));
    }
    fetch_free(f);
}

static void test_http_redirects(void **state)
{
    fetcher *f = make(1, 0, 5000, 0); /* default: 5 redirects */
    fetcher *f2 = make(1, 0, 5000, 2);
    fetcher *none = make(1, 0, 5000, -1);
    fetch_result r;
    err_t e;
    (void)state;

    assert_int_equal(get(f, port_a, "/redirect/5", &r, &e), ERR_OK);
    check_pattern(&r, 100);
    fetch_result_clear(&r);
    assert_int_equal(get(f, port_a, "/redirect/6", &r, &e), ERR_FETCH);
    assert_false(err_is_transient(e.code));
    assert_int_equal(get(f2, port_a, "/redirect/2", &r, &e), ERR_OK);
    fetch_result_clear(&r);
    assert_int_equal(get(f2, port_a, "/redirect/3", &r, &e), ERR_FETCH);
    assert_int_equal(get(none, port_a, "/bytes?n=10", &r, &e), ERR_OK);
    fetch_result_clear(&r);
    assert_int_equal(get(none, port_a, "/redirect/1", &r, &e), ERR_FETCH);
    assert_non_null(strstr(e.msg, "HTTP 302"));
    /* a redirect to a non-http scheme is refused */
    assert_int_equal(get(f, port_a, "/to-file", &r, &e), ERR_FORBIDDEN);
    assert_null(r.data);
    /* with private targets allowed, a redirect to the other server works */
    {
        long b0 = hits(port_b);
        assert_int_equal(get(f, port_a, "/to-other", &r, &e), ERR_OK);
        check_pattern(&r, 10);
        fetch_result_clear(&r);
        assert_int_equal(hits(port_b), b0 + 1);
    }
    fetch_free(f);
    fetch_free(f2);
    fetch_free(none);
}

static void test_http_size_cap(void **state)
{
    fetcher *f = make(1, 1000, 5000, 0);
    fetch_result r;
    err_t e;
    (void)state;

    assert_int_equal(get(f, port_a, "/bytes?n=1000", &r, &e), ERR_OK); /* exactly the cap */
    check_pattern(&r, 1000);
    fetch_result_clear(&r);
    assert_int_equal(get(f, port_a, "/bytes?n=1001", &r, &e), ERR_TOOBIG); /* Content-Length */
    assert_null(r.data);
    assert_int_equal(get(f, port_a, "/bytes?n=10000000", &r, &e), ERR_TOOBIG);
    assert_int_equal(get(f, port_a, "/nolength?n=5000", &r, &e), ERR_TOOBIG); /* streamed */
    assert_false(err_is_transient(ERR_TOOBIG));
    fetch_free(f);
}

static void test_http_timeouts(void **state)
{
    fetcher *f = make(1, 0, 600, 0);
    fetch_result r;
    err_t e;
    double t0;
    (void)state;

    t0 = now_ms();
    assert_int_equal(get(f, port_a, "/slow?ms=3000", &r, &e), ERR_TIMEOUT);
    assert_true(now_ms() - t0 < 2500);
    assert_true(err_is_transient(e.code));
    assert_null(r.data);
    t0 = now_ms();
    assert_int_equal(get(f, port_a, "/slowbody?ms=3000", &r, &e), ERR_TIMEOUT);
    assert_true(now_ms() - t0 < 2500);
    assert_int_equal(get(f, port_a, "/slow?ms=100", &r, &e), ERR_OK);
    fetch_result_clear(&r);
    fetch_free(f);
}

static void *abort_later(void *arg)
{
    usleep(300 * 1000);
    fetch_abort(arg);
    return NULL;
}

/* fetch_abort() ends a slow transfer at once (shutdown), as a transient error. */
static void test_http_abort(void **state)
{
    fetcher *f = make(1, 0, 20000, 0);
    fetch_result r;
    err_t e;
    pthread_t t;
    (void)state;

    double t0 = now_ms();
    assert_int_equal(pthread_create(&t, NULL, abort_later, f), 0);
    assert_int_equal(get(f, port_a, "/slowbody?ms=8000", &r, &e), ERR_UNAVAILABLE);
    pthread_join(t, NULL);
    assert_true(now_ms() - t0 < 3000);
    assert_non_null(strstr(e.msg, "shutting down"));
    assert_true(err_is_transient(e.code));
    /* and every later transfer on that fetcher */
    assert_int_equal(get(f, port_a, "/bytes?n=10", &r, &e), ERR_UNAVAILABLE);
    fetch_free(f);
}

static void test_http_refused_connection(void **state)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    fetcher *f = make(1, 0, 5000, 0);
    fetch_result r;
    err_t e;
    int port;
    (void)state;

    /* a port that was free a moment ago: nobody listens there */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(s);
    assert_int_equal(get(f, port, "/", &r, &e), ERR_UNAVAILABLE);
    assert_true(err_is_transient(e.code));
    fetch_free(f);
}

static void test_ssrf_guard(void **state)
{
    fetcher *f = make(0, 0, 5000, 0);
    fetch_result r;
    err_t e;
    char src[256];
    long a0 = hits(port_a), b0 = hits(port_b);
    (void)state;

    /* literal loopback: refused before any connection */
    assert_int_equal(get(f, port_a, "/bytes?n=10", &r, &e), ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "address 127.0.0.1 is loopback; refused (allow with "
                                  "--allow-private-urls)"));
    assert_null(r.data);
    /* a DNS name resolving to loopback: refused at connect time */
    snprintf(src, sizeof src, "{\"url\": \"http://localhost:%d/bytes?n=10\"}", port_a);
    assert_int_equal(fetch_source(f, src, &r, &e), ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "is loopback; refused"));
    assert_false(err_is_transient(e.code));
    /* other spellings of 127.0.0.1 */
    snprintf(src, sizeof src, "{\"url\": \"http://2130706433:%d/bytes\"}", port_a);
    assert_int_equal(fetch_source(f, src, &r, &e), ERR_FORBIDDEN);
    snprintf(src, sizeof src, "{\"url\": \"http://0x7f.1:%d/bytes\"}", port_a);
    assert_int_equal(fetch_source(f, src, &r, &e), ERR_FORBIDDEN);
    snprintf(src, sizeof src, "{\"url\": \"http://[::ffff:127.0.0.1]:%d/bytes\"}", port_a);
    assert_int_equal(fetch_source(f, src, &r, &e), ERR_FORBIDDEN);
    /* the servers saw nothing */
    assert_int_equal(hits(port_a), a0);
    assert_int_equal(hits(port_b), b0);
    fetch_free(f);

    /*
     * A first hop that passes (port A exempt; named "localhost" so that the
     * literal-address check does not stop it first), redirected to loopback
     * B: refused at connect time, and B never sees the request.
     */
    f = make(0, 0, 5000, 0);
    fetch__test_exempt_port(f, port_a);
    assert_int_equal(get_host(f, "localhost", port_a, "/bytes?n=10", &r, &e), ERR_OK);
    fetch_result_clear(&r);
    assert_int_equal(get_host(f, "localhost", port_a, "/redirect/2", &r, &e), ERR_OK);
    fetch_result_clear(&r);
    assert_int_equal(get_host(f, "localhost", port_a, "/to-other", &r, &e), ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "address 127.0.0.1 is loopback; refused"));
    assert_null(r.data);
    assert_int_equal(get_host(f, "localhost", port_a, "/to-localhost", &r, &e), ERR_FORBIDDEN);
    assert_non_null(strstr(e.msg, "is loopback; refused"));
    assert_int_equal(hits(port_b), b0);
    assert_int_equal(hits(port_a), a0 + 6); /* 1 + 3 (redirect chain) + 1 + 1 */
    fetch_free(f);
}

typedef struct {
    int port;
    int failures;
} thread_arg;

static void *fetch_thread(void *p)
{
    thread_arg *a = p;
    fetcher *f = make(1, 0, 5000, 0);
    for (int i = 0; i < 10; i++) {
        fetch_result r;
        err_t e;
        int rc = get(f, a->port, "/bytes?n=200000", &r, &e);
        if (rc != ERR_OK || r.len != 200000 || r.data[199999] != (uint8_t)(199999 % 251))
            a->failures++;
        fetch_result_clear(&r);
    }
    fetch_free(f);
    return NULL;
}

static void test_http_concurrent(void **state)
{
    pthread_t t[4];
    thread_arg a[4];
    (void)state;

    for (int i = 0; i < 4; i++) {
        a[i] = (thread_arg){.port = port_a};
        assert_int_equal(pthread_create(&t[i], NULL, fetch_thread, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_table),
        cmocka_unit_test(test_addr_class_names),
        cmocka_unit_test(test_classification),
        cmocka_unit_test(test_path_containment),
        cmocka_unit_test(test_path_no_root),
        cmocka_unit_test(test_spool),
        cmocka_unit_test(test_source_validation),
        cmocka_unit_test(test_http_ok),
        cmocka_unit_test(test_http_status),
        cmocka_unit_test(test_http_redirects),
        cmocka_unit_test(test_http_size_cap),
        cmocka_unit_test(test_http_timeouts),
        cmocka_unit_test(test_http_abort),
        cmocka_unit_test(test_http_refused_connection),
        cmocka_unit_test(test_ssrf_guard),
        cmocka_unit_test(test_http_concurrent),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
