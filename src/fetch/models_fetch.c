/*
 * fetch/models_fetch.c — `inferd models fetch|list`: installs a model
 * directory described by a catalogue entry or an Immich repository on a
 * Hugging Face compatible hub (formats in models_fetch.h) and lists
 * installed models. This file calls libcurl for model downloads with
 * the same rules as fetch.c (http/https only, redirects capped, no proxy,
 * the SSRF guard on every connect) and translates its codes the same way.
 *
 * Design notes.
 * - Resume. Each file is downloaded to MODELS_DIR/.partial/NAME/PATH.part
 *   with write(2) straight to the file, so whatever arrived before a cut
 *   connection, a crash or ^C is on disk. The next attempt (an automatic
 *   retry of a transient error, or the next run) asks for the rest with a
 *   Range request ("Range: bytes=OFFSET-", see mf_get). A 206 must start at our
 *   offset (Content-Range) or the part is dropped; a server that ignores
 *   Range answers 200 and the part is truncated and written again from byte
 *   0. A file that fails its SHA-256 after a resumed download is downloaded
 *   once more from zero before giving up: the old part may have come from
 *   another version of the file. A file that fails it otherwise is deleted
 *   and the fetch fails, naming both hashes: nothing is installed.
 * - Hashing reads the finished file back instead of hashing the stream:
 *   with resume, the stream is only the tail, and a second read costs less
 *   than the download did.
 * - Install. The staging directory becomes MODELS_DIR/NAME with one
 *   rename(2); replacing an existing directory uses renameat2
 *   RENAME_EXCHANGE, so at every moment MODELS_DIR/NAME is either the whole
 *   old model or the whole new one, and the old one is deleted only after
 *   the swap. Where the filesystem lacks RENAME_EXCHANGE the old directory
 *   is first moved aside (a short window with no MODELS_DIR/NAME).
 * - Ownership. fetch.json, written beside the files, records the catalogue
 *   entry an install came from. An installed directory that fails its check
 *   is repaired without --force only when fetch.json names the same files
 *   and hashes as the catalogue: a directory the user put there (or another
 *   version) is replaced only with --force. Files of the old install that
 *   still verify are hard-linked into the staging directory instead of
 *   downloaded again.
 * - One fetch per MODELS_DIR at a time: flock(2) on the directory itself,
 *   so no lock file is left behind.
 * - Hub source (immich/MODEL, format in models_fetch.h). The listing becomes
 *   an mf_model like a catalogue entry, so the download, resume, check and
 *   install code is shared. A file outside LFS has no sha256 on the hub, only
 *   its git blob id: its mf_file keeps sha256 "" until a check by git id
 *   (file_check) fills it in from the checked bytes, and fetch.json records
 *   it, so that `models list` checks every file the same way. A hub install
 *   counts as ours (repaired or updated without --force) when its fetch.json
 *   names the same repository, whatever the revision.
 *
 * Threading: single-threaded CLI code; libcurl's global state is set up and
 * released by models_fetch_main (curl counts init/cleanup pairs).
 */
#include "fetch/models_fetch.h"
#include "fetch/fetch.h"
#include "fetch/fetch_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "util/config.h"
#include "util/err.h"
#include "util/fileio.h"
#include "util/sha256.h"
#include "util/xalloc.h"

#ifndef INFERD_VERSION
#define INFERD_VERSION "0"
#endif

#define MF_MAX_FILE_SIZE ((uint64_t)64 << 30) /* 64 GiB: any size above is a typo */
#define MF_MAX_CATALOG ((size_t)16 << 20)     /* a catalogue fetched by URL */
#define MF_MAX_FILES 256
#define MF_MAX_PATH 512
#define MF_MAX_NAME 128
#define MF_MAX_REDIRECTS 5L
#define MF_PARTIAL ".partial"
#define MF_RECORD "fetch.json"
#define MF_MANIFEST "manifest.json"
#define MF_MAX_TREE ((size_t)8 << 20) /* one page of a hub's file listing */
#define MF_MAX_TREE_PAGES 64
#define HUB_PREFIX "immich/" /* `models fetch immich/MODEL` */
#define HUB_ORG "immich-app" /* ... is the hub repository immich-app/MODEL */

typedef struct {
    const char *models_dir;
    const char *catalog;
    const char *base_url;
    const char *hub_url;  /* immich/MODEL: the hub, or NULL */
    const char *revision; /* immich/MODEL: branch, tag or commit */
    int force;
    int allow_private;
    int quiet;
    int retries;
    long connect_timeout_s;
    long stall_timeout_s;
    long timeout_s;
    int progress_tty; /* stderr is a terminal: progress redraws one line */
} mf_opts;

typedef struct {
    char *path; /* relative to the model directory */
    char *url;  /* {base} expanded, or the hub's resolve URL */
    char sha256[65]; /* "" for a hub file outside LFS until it is checked */
    uint64_t size;
    char git_oid[41]; /* a hub file outside LFS: its git blob id, else "" */
} mf_file;

typedef struct {
    const char *name;
    mf_file *files;
    size_t nfiles;
    json_t *manifest; /* borrowed from the catalogue, or NULL */
    const char *source; /* "catalogue" or "hub", in messages */
    char *repo;         /* hub: "immich-app/MODEL" (owned), else NULL */
    const char *layout; /* hub: "clip" or "face" */
} mf_model;

static void mf_model_clear(mf_model *m)
{
    for (size_t i = 0; i < m->nfiles; i++) {
        free(m->files[i].path);
        free(m->files[i].url);
    }
    free(m->files);
    free(m->repo);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- helpers */

static int is_hex64(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return i == 64;
}

/* A model name usable as one path component. */
static int name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MF_MAX_NAME || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/*
 * A file path from the catalogue: relative, '/'-separated components of
 * [A-Za-z0-9._+=@-], none empty, "." or "..", none starting with '.' (our
 * own names start with one), not ending in ".part" (the name of another
 * file's partial download). Returns NULL when fine, else why not.
 */
static const char *path_problem(const char *p)
{
    size_t n = strlen(p);
    const char *seg = p;

    if (n == 0)
        return "is empty";
    if (n > MF_MAX_PATH)
        return "is too long";
    if (p[0] == '/')
        return "is absolute";
    if (n >= 5 && strcmp(p + n - 5, ".part") == 0)
        return "ends in .part";
    for (size_t i = 0; i <= n; i++) {
        char c = p[i];
        if (c == '/' || c == '\0') {
            size_t len = (size_t)(p + i - seg);
            if (len == 0)
                return "has an empty component";
            if (seg[0] == '.')
                return "has a component starting with '.' (\".\", \"..\" or hidden)";
            seg = p + i + 1;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '+' || c == '=' || c == '@'))
            return "has a character outside [A-Za-z0-9._+=@-/]";
    }
    return NULL;
}

/* malloc'd "a/b" (abort on OOM). */
static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *s = xmalloc(na + nb + 2);

    memcpy(s, a, na);
    s[na] = '/';
    memcpy(s + na + 1, b, nb + 1);
    return s;
}

/* malloc'd `s` with `suffix` appended. */
static char *concat(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    char *r = xmalloc(n + m + 1);

    memcpy(r, s, n);
    memcpy(r + n, suffix, m + 1);
    return r;
}

/* mkdir -p of `dir`, mode 0755. */
static int mkdir_p(const char *dir, err_t *e)
{
    char failed[PATH_MAX];
    if (fileio_mkdir_p(dir, 0755, failed) != 0)
        return err_set(e, ERR_IO, "mkdir %s: %s", failed, strerror(errno));
    return ERR_OK;
}

/* mkdir -p of the directory holding `path`. */
static int mkparents(const char *path, err_t *e)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path)
        return ERR_OK;
    char *dir = xstrdup(path);
    dir[slash - path] = '\0';
    int rc = mkdir_p(dir, e);
    free(dir);
    return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* rm -rf `path`; a missing path is fine. Does not follow symlinks. */
static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int rmdir_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path); /* fails, harmlessly, while anything is left inside */
    return 0;
}

/* Removes the empty directories under and including `path`; files stay. */
static void prune_empty_dirs(const char *path)
{
    nftw(path, rmdir_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int is_http_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static void human_size(uint64_t n, char *buf, size_t cap)
{
    if (n >= (uint64_t)1 << 30)
        snprintf(buf, cap, "%.2f GiB", (double)n / (double)((uint64_t)1 << 30));
    else if (n >= (uint64_t)1 << 20)
        snprintf(buf, cap, "%.1f MiB", (double)n / (double)((uint64_t)1 << 20));
    else if (n >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)n / 1024.0);
    else
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------- transfers */

/*
 * One HTTP GET, owned by the calling function. The body goes to `fd` from
 * `offset` on (a file download) or, when fd < 0, into a growing buffer
 * capped at `cap` (the catalogue).
 */
typedef struct {
    CURL *h;
    const mf_opts *o;
    int fd;
    uint64_t offset; /* bytes already in the file when the request was made */
    uint64_t cap;    /* the declared size (file) or the buffer limit */
    uint64_t got;    /* body bytes written by this request */
    uint8_t *buf;    /* memory mode */
    size_t len, bufcap;
    int started;    /* the status was looked at (first body bytes) */
    int restarted;  /* 200 to a Range request: the file was truncated */
    int http_error; /* status outside 2xx */
    int bad_range;  /* a 206 that does not start at our offset */
    int toobig;
    int ioerr;
    int nomem;
    long status; /* final HTTP status, set by mf_get */
    fetch__guard g;
    char content_range[128]; /* of the last response */
    char link_next[2048];    /* the last response's Link rel="next" URL, or "" */
    char range[32];          /* "OFFSET-" for CURLOPT_RANGE */
    const char *label;       /* for progress: "NAME/PATH" */
    double last_progress;
    int progress_shown;
    int last_decile;
} mf_xfer;

/*
 * Finds the rel="next" target in a Link header value (`v`, `n` bytes, not
 * NUL-terminated): "<URL>; rel=\"next\", <URL2>; rel=\"last\"". Copies it
 * into `out` when it fits; leaves `out` alone otherwise.
 */
static void link_next(const char *v, size_t n, char *out, size_t cap)
{
    size_t i = 0;

    while (i < n) {
        size_t lt, gt, end;
        while (i < n && v[i] != '<')
            i++;
        if (i >= n)
            return;
        lt = i + 1;
        gt = lt;
        while (gt < n && v[gt] != '>')
            gt++;
        if (gt >= n)
            return;
        end = gt + 1;
        while (end < n && v[end] != ',' && v[end] != '<')
            end++;
        /* The parameters between '>' and the next link. */
        for (size_t k = gt + 1; k + 8 <= end; k++)
            if ((k + 10 <= end && strncasecmp(v + k, "rel=\"next\"", 10) == 0) ||
                strncasecmp(v + k, "rel=next", 8) == 0) {
                if (gt - lt < cap) {
                    memcpy(out, v + lt, gt - lt);
                    out[gt - lt] = '\0';
                }
                return;
            }
        i = end;
    }
}

static size_t mf_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    mf_xfer *x = ud;
    size_t n = size * nmemb;

    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        x->content_range[0] = '\0'; /* a new response (after a redirect or 100) */
        x->link_next[0] = '\0';
    } else if (n > 5 && strncasecmp(ptr, "Link:", 5) == 0) {
        link_next(ptr + 5, n - 5, x->link_next, sizeof x->link_next);
    } else if (n > 14 && strncasecmp(ptr, "Content-Range:", 14) == 0) {
        size_t m = n - 14;
        const char *v = ptr + 14;
        while (m > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            m--;
        }
        while (m > 0 && (v[m - 1] == '\r' || v[m - 1] == '\n' || v[m - 1] == ' '))
            m--;
        if (m >= sizeof x->content_range)
            m = sizeof x->content_range - 1;
        memcpy(x->content_range, v, m);
        x->content_range[m] = '\0';
    }
    return n;
}

/* Whether Content-Range "bytes A-B/T" starts at `offset` and T, when given, is `total`. */
static int range_ok(const char *cr, uint64_t offset, uint64_t total)
{
    unsigned long long a, b;
    char t[32];

    if (sscanf(cr, "bytes %llu-%llu/%31s", &a, &b, t) != 3)
        return 0;
    if (a != offset || b < a)
        return 0;
    if (strcmp(t, "*") != 0 && strtoull(t, NULL, 10) != total)
        return 0;
    return 1;
}

static size_t mf_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    mf_xfer *x = ud;
    size_t n = size * nmemb;

    if (!x->started) {
        long status = 0;
        x->started = 1;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status > 299) {
            x->http_error = 1; /* an error page is not worth downloading */
            return 0;
        }
        if (x->fd >= 0 && x->offset > 0) {
            if (status == 200) {
                /* The server ignored Range: what it sends is the whole file. */
                if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
                    x->ioerr = errno;
                    return 0;
                }
                x->offset = 0;
                x->restarted = 1;
            } else if (status != 206 || !range_ok(x->content_range, x->offset, x->cap)) {
                x->bad_range = 1;
                return 0;
            }
        } else if (status == 206) {
            x->bad_range = 1; /* we asked for no range */
            return 0;
        }
    }
    if ((uint64_t)n > x->cap - x->offset - x->got) {
        x->toobig = 1;
        return 0;
    }
    if (x->fd >= 0) {
        if (fileio_write_all(x->fd, ptr, n) != 0) {
            x->ioerr = errno;
            return 0;
        }
    } else {
        if (x->len + n > x->bufcap) {
            size_t c = x->bufcap ? x->bufcap : 64 * 1024;
            uint8_t *nb;
            while (c < x->len + n)
                c *= 2;
            nb = realloc(x->buf, c);
            if (nb == NULL) {
                x->nomem = 1;
                return 0;
            }
            x->buf = nb;
            x->bufcap = c;
        }
        memcpy(x->buf + x->len, ptr, n);
        x->len += n;
    }
    x->got += n;
    return n;
}

static int mf_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    mf_xfer *x = ud;
    uint64_t done = x->offset + (uint64_t)(dlnow > 0 ? dlnow : 0);
    double t = now_s();
    char a[32], b[32];
    int pct;

    (void)dltotal;
    (void)ultotal;
    (void)ulnow;
    if (x->o->quiet || x->fd < 0 || x->label == NULL)
        return 0;
    pct = x->cap ? (int)(done * 100 / x->cap) : 100;
    if (x->o->progress_tty) {
        if (t - x->last_progress < 0.2)
            return 0;
        x->last_progress = t;
        human_size(done, a, sizeof a);
        human_size(x->cap, b, sizeof b);
        fprintf(stderr, "\r  %s  %s / %s  %3d%%  ", x->label, a, b, pct);
        x->progress_shown = 1;
    } else if (pct / 10 > x->last_decile && dlnow > 0) {
        /* Not a terminal (a log): a line at each 10 %. */
        x->last_decile = pct / 10;
        human_size(done, a, sizeof a);
        human_size(x->cap, b, sizeof b);
        fprintf(stderr, "  %s  %s / %s  %d%%\n", x->label, a, b, pct);
    }
    return 0;
}

/*
 * Performs the GET of `url` described by `x` (fd, offset, cap set by the
 * caller). Errors: ERR_FORBIDDEN for a refused address or scheme, the
 * fetch.c classes for HTTP statuses and curl codes (ERR_UNAVAILABLE and
 * ERR_TIMEOUT are worth a retry), ERR_TOOBIG when the body passes the cap,
 * ERR_FETCH for a 206 at the wrong offset, ERR_IO for a failed write.
 */
static int mf_get(mf_xfer *x, const char *url, err_t *e)
{
    char errbuf[CURL_ERROR_SIZE];
    char *shown = fetch__url_redacted(url);
    const char *u = shown ? shown : "(unparsable URL)";
    CURLcode cc;
    long status = 0;
    int rc = ERR_OK;
    const mf_opts *o = x->o;

    x->g.allow_private = o->allow_private;
    void *h = NULL;
    rc = fetch__curl_new(url, &x->g, mf_write, x, errbuf, &h, e);
    if (rc) {
        curl_free(shown);
        return rc;
    }
    x->h = h;
    /* curl checks Content-Length against this before any body byte: the whole size. */
    if (x->cap > 0 && x->cap <= (uint64_t)INT64_MAX)
        curl_easy_setopt(x->h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->cap);
    /*
     * CURLOPT_RANGE rather than CURLOPT_RESUME_FROM_LARGE: with the latter
     * curl fails a 200 answer with CURLE_RANGE_ERROR before any body byte,
     * which would cost a second request to a server that ignores Range; here
     * mf_write sees the status and starts the file over in the same request.
     */
    if (x->fd >= 0 && x->offset > 0) {
        snprintf(x->range, sizeof x->range, "%llu-", (unsigned long long)x->offset);
        curl_easy_setopt(x->h, CURLOPT_RANGE, x->range);
    }
    curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, mf_header);
    curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(x->h, CURLOPT_MAXREDIRS, MF_MAX_REDIRECTS);
    curl_easy_setopt(x->h, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_s);
    curl_easy_setopt(x->h, CURLOPT_TIMEOUT, o->timeout_s);
    curl_easy_setopt(x->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(x->h, CURLOPT_LOW_SPEED_TIME, o->stall_timeout_s);
    curl_easy_setopt(x->h, CURLOPT_XFERINFOFUNCTION, mf_progress);
    curl_easy_setopt(x->h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(x->h, CURLOPT_NOPROGRESS, 0L);

    cc = curl_easy_perform(x->h);
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    x->status = status;
    if (x->progress_shown) {
        fputc('\n', stderr);
        x->progress_shown = 0;
    }

    /* Same order as fetch.c: the guard, then statuses, then the body checks. */
    if (cc != CURLE_OK && x->g.refused) {
        rc = fetch__refused(&x->g, u, NULL, e);
    } else if (x->http_error || status >= 400 ||
               (cc == CURLE_OK && (status < 200 || status > 299))) {
        rc = err_set(e, fetch__classify_http(status), "GET %s: HTTP %ld", u, status);
    } else if (x->bad_range) {
        rc = err_set(e, ERR_FETCH, "GET %s: asked for bytes from %llu, got HTTP %ld \"%s\"", u,
                     (unsigned long long)x->offset, status, x->content_range);
    } else if (x->toobig || cc == CURLE_FILESIZE_EXCEEDED) {
        rc = err_set(e, ERR_TOOBIG, "GET %s: body is larger than the %s %llu bytes", u,
                     x->fd >= 0 ? "declared" : "limit of", (unsigned long long)x->cap);
    } else if (x->ioerr) {
        rc = err_set(e, ERR_IO, "GET %s: writing the download: %s", u, strerror(x->ioerr));
    } else if (x->nomem) {
        rc = err_set(e, ERR_NOMEM, "GET %s: out of memory", u);
    } else if (cc != CURLE_OK) {
        rc = err_set(e, fetch__classify_curl(cc), "GET %s: %s", u,
                     errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
    curl_easy_cleanup(x->h);
    x->h = NULL;
    curl_free(shown);
    return rc;
}

/* ---------------------------------------------------------------- catalogue */

/*
 * Loads the catalogue named by o->catalog (a file, or an http(s) URL fetched
 * through the guard). `*out` is a new reference the caller decrefs; it is an
 * object whose "models" is an object (ERR_FORMAT otherwise).
 */
static int catalog_load(const mf_opts *o, json_t **out, err_t *e)
{
    json_error_t je;
    json_t *root;

    *out = NULL;
    if (is_http_url(o->catalog)) {
        mf_xfer x;
        int rc;
        memset(&x, 0, sizeof x);
        x.o = o;
        x.fd = -1;
        x.cap = MF_MAX_CATALOG;
        rc = mf_get(&x, o->catalog, e);
        if (rc) {
            free(x.buf);
            return rc;
        }
        root = json_loadb((const char *)x.buf, x.len, JSON_REJECT_DUPLICATES, &je);
        free(x.buf);
    } else {
        root = json_load_file(o->catalog, JSON_REJECT_DUPLICATES, &je);
        if (root == NULL && access(o->catalog, R_OK) != 0)
            return err_set(e, ERR_NOENT, "catalogue %s: %s (see --catalog)", o->catalog,
                           strerror(errno));
    }
    if (root == NULL)
        return err_set(e, ERR_FORMAT, "catalogue %s:%d:%d: %s", o->catalog, je.line, je.column,
                       je.text);
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "models"))) {
        json_decref(root);
        return err_set(e, ERR_FORMAT, "catalogue %s: expected an object with a \"models\" object",
                       o->catalog);
    }
    *out = root;
    return ERR_OK;
}

/*
 * Expands "{base}" in `tmpl` with `base` (trailing slashes dropped). The
 * result (malloc'd, in `*out`) must be an http(s) URL.
 */
static int url_expand(const char *tmpl, const char *base, const char *what, char **out, err_t *e)
{
    const char *hit = strstr(tmpl, "{base}");
    size_t bl;
    char *s;

    *out = NULL;
    if (hit == NULL) {
        s = xstrdup(tmpl);
    } else {
        if (base == NULL || base[0] == '\0')
            return err_set(e, ERR_INVAL,
                           "%s: the URL is a template (%s): point --base-url at a mirror of the "
                           "model files",
                           what, tmpl);
        bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
            bl--;
        s = xmalloc(strlen(tmpl) + bl + 1);
        memcpy(s, tmpl, (size_t)(hit - tmpl));
        memcpy(s + (hit - tmpl), base, bl);
        strcpy(s + (hit - tmpl) + bl, hit + 6);
        if (strstr(s + (hit - tmpl) + bl, "{base}") != NULL) {
            free(s);
            return err_set(e, ERR_FORMAT, "%s: \"{base}\" may appear once, at the start", what);
        }
    }
    if (!is_http_url(s)) {
        free(s);
        return err_set(e, ERR_INVAL, "%s: URL must be http:// or https:// (%s)", what, tmpl);
    }
    *out = s;
    return ERR_OK;
}

/*
 * Fills `m` from catalogue entry `name`. Strings in `m` are owned by `m`
 * (mf_model_clear) except `manifest`, borrowed from `cat`. Errors name the
 * entry and the key: ERR_NOENT for an unknown name, ERR_FORMAT for a bad
 * entry, ERR_INVAL for a template URL without --base-url.
 */
static int model_parse(json_t *cat, const char *name, const char *base, mf_model *m, err_t *e)
{
    json_t *models = json_object_get(cat, "models");
    json_t *ent = json_object_get(models, name);
    json_t *files, *man;
    size_t i, j;
    int rc = ERR_OK;

    memset(m, 0, sizeof *m);
    m->name = name;
    m->source = "catalogue";
    if (!name_ok(name))
        return err_set(e, ERR_INVAL,
                       "model name \"%.*s\" must be 1-%d characters of [A-Za-z0-9._-], not "
                       "starting with '.'",
                       MF_MAX_NAME, name, MF_MAX_NAME);
    if (ent == NULL) {
        char known[256];
        size_t n = 0;
        const char *k;
        json_t *v;
        known[0] = '\0';
        json_object_foreach(models, k, v)
        {
            int w = snprintf(known + n, sizeof known - n, "%s%s", n ? ", " : "", k);
            if (w < 0 || (size_t)w >= sizeof known - n)
                break;
            n += (size_t)w;
            (void)v;
        }
        return err_set(e, ERR_NOENT, "model \"%s\" is not in the catalogue (it has: %s)", name,
                       n ? known : "nothing");
    }
    if (!json_is_object(ent))
        return err_set(e, ERR_FORMAT, "catalogue models.%s: must be an object", name);
    files = json_object_get(ent, "files");
    if (!json_is_array(files) || json_array_size(files) == 0 ||
        json_array_size(files) > MF_MAX_FILES)
        return err_set(e, ERR_FORMAT, "catalogue models.%s.files: must be an array of 1-%d files",
                       name, MF_MAX_FILES);
    man = json_object_get(ent, "manifest");
    if (man != NULL && !json_is_object(man))
        return err_set(e, ERR_FORMAT, "catalogue models.%s.manifest: must be an object", name);
    m->manifest = man;
    m->files = xcalloc(json_array_size(files), sizeof *m->files);
    for (i = 0; i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i);
        json_t *p = json_object_get(f, "path");
        json_t *u = json_object_get(f, "url");
        json_t *h = json_object_get(f, "sha256");
        json_t *s = json_object_get(f, "size");
        char what[MF_MAX_PATH + MF_MAX_NAME + 64];
        mf_file *mf = &m->files[i];
        const char *why;

        if (!json_is_object(f) || !json_is_string(p) || !json_is_string(u) || !json_is_string(h) ||
            !json_is_integer(s)) {
            rc = err_set(e, ERR_FORMAT,
                         "catalogue models.%s.files[%zu]: needs \"path\", \"url\", \"sha256\" "
                         "(strings) and \"size\" (integer)",
                         name, i);
            goto fail;
        }
        why = path_problem(json_string_value(p));
        if (why != NULL) {
            rc = err_set(e, ERR_FORMAT, "catalogue models.%s.files[%zu].path \"%.200s\" %s", name,
                         i, json_string_value(p), why);
            goto fail;
        }
        if (strcmp(json_string_value(p), MF_RECORD) == 0 ||
            (man != NULL && strcmp(json_string_value(p), MF_MANIFEST) == 0)) {
            rc = err_set(e, ERR_FORMAT, "catalogue models.%s.files[%zu].path \"%s\" is reserved",
                         name, i, json_string_value(p));
            goto fail;
        }
        for (j = 0; j < i; j++)
            if (strcmp(m->files[j].path, json_string_value(p)) == 0) {
                rc = err_set(e, ERR_FORMAT, "catalogue models.%s: file \"%s\" is listed twice",
                             name, m->files[j].path);
                goto fail;
            }
        if (json_string_length(h) != 64) {
            rc = err_set(e, ERR_FORMAT, "catalogue models.%s.files[%zu].sha256: 64 hex digits",
                         name, i);
            goto fail;
        }
        for (j = 0; j < 64; j++) {
            char c = json_string_value(h)[j];
            mf->sha256[j] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
        }
        mf->sha256[64] = '\0';
        if (!is_hex64(mf->sha256)) {
            rc = err_set(e, ERR_FORMAT, "catalogue models.%s.files[%zu].sha256: 64 hex digits",
                         name, i);
            goto fail;
        }
        if (json_integer_value(s) < 0 || (uint64_t)json_integer_value(s) > MF_MAX_FILE_SIZE) {
            rc = err_set(e, ERR_FORMAT, "catalogue models.%s.files[%zu].size: 0..%llu bytes", name,
                         i, (unsigned long long)MF_MAX_FILE_SIZE);
            goto fail;
        }
        mf->size = (uint64_t)json_integer_value(s);
        mf->path = xstrdup(json_string_value(p));
        m->nfiles = i + 1;
        snprintf(what, sizeof what, "catalogue models.%s.files[%zu].url", name, i);
        rc = url_expand(json_string_value(u), base, what, &mf->url, e);
        if (rc)
            goto fail;
    }
    return ERR_OK;
fail:
    mf_model_clear(m);
    return rc;
}

/* ---------------------------------------------------------------- checks */

/*
 * Checks `dir`/`f->path` against its size and hash. Returns ERR_OK, or
 * ERR_NOENT (missing), ERR_CHECKSUM (size or hash differ) with a message
 * that names the file and, for the hash, both values; ERR_IO when unreadable.
 */
static int file_verify(const char *dir, const char *path, const char *sha, uint64_t size, err_t *e)
{
    char *full = join(dir, path);
    char hex[65];
    struct stat st;
    int rc = ERR_OK;

    if (lstat(full, &st) != 0) {
        rc = err_set(e, errno == ENOENT ? ERR_NOENT : ERR_IO, "%s: %s", full, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = err_set(e, ERR_CHECKSUM, "%s is not a regular file", full);
    } else if ((uint64_t)st.st_size != size) {
        rc = err_set(e, ERR_CHECKSUM, "%s is %lld bytes, expected %llu", full,
                     (long long)st.st_size, (unsigned long long)size);
    } else {
        rc = sha256_file_hex(full, hex, e);
        if (rc == ERR_OK && strcmp(hex, sha) != 0)
            rc = err_set(e, ERR_CHECKSUM, "%s has sha256 %s, expected %s", full, hex, sha);
    }
    free(full);
    return rc;
}

/*
 * The git blob id of file `path` (SHA-1 of "blob SIZE\0" and the contents),
 * as 40 lowercase hex digits into `out`. ERR_NOENT / ERR_IO when unreadable.
 */
static int git_blob_oid_file(const char *path, char out[41], err_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    EVP_MD_CTX *c = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char hdr[40];
    uint8_t buf[65536];
    int rc = ERR_OK, hl;

    if (fd < 0)
        return err_set(e, errno == ENOENT ? ERR_NOENT : ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    hl = snprintf(hdr, sizeof hdr, "blob %lld", (long long)st.st_size);
    c = EVP_MD_CTX_new();
    if (c == NULL || EVP_DigestInit_ex(c, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(c, hdr, (size_t)hl + 1) != 1) { /* the NUL is hashed too */
        rc = err_set(e, ERR_NOMEM, "%s: SHA-1 unavailable", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (EVP_DigestUpdate(c, buf, (size_t)n) != 1) {
            rc = err_set(e, ERR_NOMEM, "%s: SHA-1 failed", path);
            goto out;
        }
    }
    if (EVP_DigestFinal_ex(c, md, &mdlen) != 1 || mdlen != 20) {
        rc = err_set(e, ERR_NOMEM, "%s: SHA-1 failed", path);
        goto out;
    }
    for (unsigned i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
out:
    EVP_MD_CTX_free(c);
    close(fd);
    return rc;
}

/*
 * file_verify for model file `f` in `dir`: by its sha256, or, for a hub file
 * outside LFS whose sha256 is not known yet, by its size and git blob id;
 * that check then fills in f->sha256 (recorded in fetch.json).
 */
static int file_check(const char *dir, mf_file *f, err_t *e)
{
    char *full;
    char oid[41], hex[65];
    struct stat st;
    int rc;

    if (f->sha256[0] != '\0' || f->git_oid[0] == '\0')
        return file_verify(dir, f->path, f->sha256, f->size, e);
    full = join(dir, f->path);
    if (lstat(full, &st) != 0) {
        rc = err_set(e, errno == ENOENT ? ERR_NOENT : ERR_IO, "%s: %s", full, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = err_set(e, ERR_CHECKSUM, "%s is not a regular file", full);
    } else if ((uint64_t)st.st_size != f->size) {
        rc = err_set(e, ERR_CHECKSUM, "%s is %lld bytes, expected %llu", full,
                     (long long)st.st_size, (unsigned long long)f->size);
    } else {
        rc = git_blob_oid_file(full, oid, e);
        if (rc == ERR_OK && strcmp(oid, f->git_oid) != 0)
            rc = err_set(e, ERR_CHECKSUM, "%s has git id %s, expected %s", full, oid, f->git_oid);
        if (rc == ERR_OK)
            rc = sha256_file_hex(full, hex, e);
        if (rc == ERR_OK)
            memcpy(f->sha256, hex, sizeof hex);
    }
    free(full);
    return rc;
}

/*
 * Whether installed directory `dir` holds model `m`: every file verifies and,
 * when the catalogue gives a manifest, manifest.json equals it. `good[i]` (may
 * be NULL) is set for each file that verified. Returns ERR_OK or the first
 * failure (message in `e`).
 */
static int install_verify(const char *dir, mf_model *m, int *good, err_t *e)
{
    int rc = ERR_OK;
    err_t fe;

    for (size_t i = 0; i < m->nfiles; i++) {
        int r = file_check(dir, &m->files[i], &fe);
        if (good)
            good[i] = r == ERR_OK;
        if (r && rc == ERR_OK) {
            rc = r;
            if (e)
                *e = fe;
        }
    }
    if (rc == ERR_OK && m->manifest != NULL) {
        char *p = join(dir, MF_MANIFEST);
        json_t *have = json_load_file(p, 0, NULL);
        if (have == NULL || !json_equal(have, m->manifest))
            rc = err_set(e, ERR_CHECKSUM, "%s %s", p,
                         have ? "differs from the catalogue's" : "is missing or unreadable");
        json_decref(have);
        free(p);
    }
    return rc;
}

/*
 * Whether `dir`/fetch.json records exactly the files and hashes of `m`: the
 * directory was installed by this command from this catalogue entry. For a
 * hub model: installed by this command from the same repository (any
 * revision: fetching it again updates it).
 */
static int install_is_ours(const char *dir, const mf_model *m)
{
    char *p = join(dir, MF_RECORD);
    json_t *rec = json_load_file(p, 0, NULL);
    json_t *files = json_object_get(rec, "files");
    int ours = json_is_array(files) && json_array_size(files) == m->nfiles;

    if (m->repo != NULL) {
        const char *r = json_string_value(json_object_get(rec, "repo"));
        ours = json_is_array(files) && r != NULL && strcmp(r, m->repo) == 0;
        json_decref(rec);
        free(p);
        return ours;
    }

    for (size_t i = 0; ours && i < m->nfiles; i++) {
        json_t *f = json_array_get(files, i);
        const char *fp = json_string_value(json_object_get(f, "path"));
        const char *fh = json_string_value(json_object_get(f, "sha256"));
        ours = fp && fh && strcmp(fp, m->files[i].path) == 0 && strcmp(fh, m->files[i].sha256) == 0;
    }
    json_decref(rec);
    free(p);
    return ours;
}

/* ---------------------------------------------------------------- fetch */

/*
 * The stage sweep's arguments: nftw passes no user data, and this is
 * single-threaded CLI code, so they live here for the length of one walk.
 */
static const mf_model *sweep_model;
static size_t sweep_root_len;

static int sweep_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    const char *rel = path + sweep_root_len + 1;

    (void)st;
    (void)ftw;
    if ((flag != FTW_F && flag != FTW_SL) || strlen(path) <= sweep_root_len)
        return 0;
    for (size_t i = 0; i < sweep_model->nfiles; i++) {
        size_t n = strlen(sweep_model->files[i].path);
        if (strncmp(rel, sweep_model->files[i].path, n) == 0 &&
            (rel[n] == '\0' || strcmp(rel + n, ".part") == 0))
            return 0;
    }
    unlink(path);
    return 0;
}

/*
 * Deletes from the staging directory every file that is neither one of the
 * model's files nor its partial download: leftovers of a fetch of another
 * version of the entry must not be installed with this one.
 */
static void stage_sweep(const char *stage, const mf_model *m)
{
    sweep_model = m;
    sweep_root_len = strlen(stage);
    nftw(stage, sweep_entry, 16, FTW_PHYS); /* a missing stage is fine */
    sweep_model = NULL;
}

/* Writes `j` as `path` (indented JSON, fsync'd). */
static int write_json(const char *path, json_t *j, err_t *e)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    int fd, rc = ERR_OK;

    if (s == NULL)
        return err_set(e, ERR_NOMEM, "%s: cannot serialise", path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || fileio_write_all(fd, s, strlen(s)) != 0 || fileio_write_all(fd, "\n", 1) != 0 ||
        fsync(fd) != 0)
        rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && rc == ERR_OK)
        rc = err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    free(s);
    return rc;
}

/*
 * Downloads file `f` of model `m` into `stage`/PATH (via PATH.part), with
 * retries of transient errors that resume the part. On success the file is
 * in place, complete and verified. On a checksum or size mismatch the part is
 * deleted and ERR_CHECKSUM names the file and both hashes.
 */
static int file_fetch(const mf_opts *o, const mf_model *m, mf_file *f, const char *stage, err_t *e)
{
    char *final = join(stage, f->path);
    char *part = concat(final, ".part");
    char label[MF_MAX_PATH + MF_MAX_NAME + 2];
    char hex[65], oid[41];
    const char *got, *want, *kind;
    int attempt = 0, from_zero_again = 0, resumed = 0, by_git;
    int rc;

    snprintf(label, sizeof label, "%s/%s", m->name, f->path);
    rc = mkparents(final, e);
    if (rc)
        goto out;

    for (;;) {
        mf_xfer x;
        struct stat st;
        int fd = open(part, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

        if (fd < 0) {
            rc = err_set(e, ERR_IO, "%s: %s", part, strerror(errno));
            goto out;
        }
        if (fstat(fd, &st) != 0) {
            rc = err_set(e, ERR_IO, "%s: %s", part, strerror(errno));
            close(fd);
            goto out;
        }
        if ((uint64_t)st.st_size > f->size) {
            /* Longer than the file can be: from another version. */
            if (ftruncate(fd, 0) != 0) {
                rc = err_set(e, ERR_IO, "%s: %s", part, strerror(errno));
                close(fd);
                goto out;
            }
            st.st_size = 0;
        }
        memset(&x, 0, sizeof x);
        x.o = o;
        x.fd = fd;
        x.offset = (uint64_t)st.st_size;
        x.cap = f->size;
        x.label = label;
        x.last_decile = (int)(f->size ? x.offset * 10 / f->size : 0);
        if (x.offset > 0)
            resumed = 1;
        if (x.offset == f->size) {
            rc = ERR_OK; /* complete already: only the check is left */
        } else {
            if (!o->quiet && x.offset > 0)
                fprintf(stderr, "%s: resuming at byte %llu of %llu\n", label,
                        (unsigned long long)x.offset, (unsigned long long)f->size);
            rc = mf_get(&x, f->url, e);
            if (x.restarted)
                resumed = 0; /* the whole file came in this request */
            if (x.restarted && !o->quiet)
                fprintf(stderr,
                        "%s: the server ignored the Range request; downloaded from the "
                        "start\n",
                        label);
        }
        if (rc == ERR_OK && fsync(fd) != 0)
            rc = err_set(e, ERR_IO, "%s: fsync: %s", part, strerror(errno));
        if (close(fd) != 0 && rc == ERR_OK)
            rc = err_set(e, ERR_IO, "%s: close: %s", part, strerror(errno));
        if ((rc == ERR_FETCH && x.bad_range) || (rc != ERR_OK && x.status == 416)) {
            /*
             * A server whose ranges we cannot trust, or one whose file is no
             * longer than our part (416): start again without a range.
             */
            unlink(part);
            if (!from_zero_again) {
                from_zero_again = 1;
                continue;
            }
        }
        if (rc != ERR_OK) {
            if ((rc == ERR_UNAVAILABLE || rc == ERR_TIMEOUT) && attempt < o->retries) {
                unsigned ms = 500u << (attempt < 4 ? attempt : 4);
                attempt++;
                if (!o->quiet)
                    fprintf(stderr, "%s: %s; retry %d of %d in %.1f s\n", label, e->msg, attempt,
                            o->retries, ms / 1000.0);
                usleep(ms * 1000u);
                continue;
            }
            if (rc == ERR_UNAVAILABLE || rc == ERR_TIMEOUT)
                snprintf(e->msg + strlen(e->msg), sizeof e->msg - strlen(e->msg),
                         " (the partial download is kept: run again to resume)");
            goto out;
        }

        /* Complete: check size and hash of the whole file. */
        if (stat(part, &st) != 0) {
            rc = err_set(e, ERR_IO, "%s: %s", part, strerror(errno));
            goto out;
        }
        if ((uint64_t)st.st_size != f->size) {
            unlink(part);
            rc = err_set(e, ERR_CHECKSUM,
                         "%s: the server sent %lld bytes, the %s says %llu; deleted the "
                         "download, nothing installed",
                         label, (long long)st.st_size, m->source, (unsigned long long)f->size);
            goto out;
        }
        rc = sha256_file_hex(part, hex, e);
        if (rc)
            goto out;
        /* A hub file outside LFS has only its git blob id to be checked against. */
        by_git = f->sha256[0] == '\0';
        if (by_git) {
            rc = git_blob_oid_file(part, oid, e);
            if (rc)
                goto out;
        }
        got = by_git ? oid : hex;
        want = by_git ? f->git_oid : f->sha256;
        kind = by_git ? "git id" : "sha256";
        if (strcmp(got, want) != 0) {
            unlink(part);
            if (resumed && !from_zero_again) {
                from_zero_again = 1;
                resumed = 0;
                if (!o->quiet)
                    fprintf(stderr,
                            "%s: %s %s after resuming, expected %s; downloading it "
                            "again from the start\n",
                            label, kind, got, want);
                continue;
            }
            rc = err_set(e, ERR_CHECKSUM,
                         "%s: %s mismatch: downloaded %s, %s says %s; deleted the "
                         "download, nothing installed",
                         label, kind, got, m->source, want);
            goto out;
        }
        if (by_git)
            memcpy(f->sha256, hex, sizeof hex);
        break;
    }
    if (rename(part, final) != 0) {
        rc = err_set(e, ERR_IO, "rename %s: %s", part, strerror(errno));
        goto out;
    }
    if (!o->quiet) {
        char sz[32];
        human_size(f->size, sz, sizeof sz);
        fprintf(stderr, "%s: %s, %s ok\n", label, sz, f->git_oid[0] ? "git id" : "sha256");
    }
out:
    if (rc != ERR_OK) {
        struct stat st;
        if (stat(part, &st) == 0 && st.st_size == 0)
            unlink(part); /* nothing to resume */
    }
    free(final);
    free(part);
    return rc;
}

/* The fetch.json record of model `m`: new reference. */
static json_t *record_new(const mf_opts *o, const mf_model *m)
{
    json_t *files = json_array();
    json_t *rec;
    char *shown;

    for (size_t i = 0; i < m->nfiles; i++) {
        json_t *f = json_pack("{s:s, s:s, s:I}", "path", m->files[i].path, "sha256",
                              m->files[i].sha256, "size", (json_int_t)m->files[i].size);
        if (m->files[i].git_oid[0] != '\0')
            json_object_set_new(f, "git_oid", json_string(m->files[i].git_oid));
        else if (m->repo != NULL)
            json_object_set_new(f, "lfs", json_true());
        json_array_append_new(files, f);
    }
    if (m->repo != NULL) {
        /* From a hub: the repository and revision instead of a catalogue. */
        shown = fetch__url_redacted(o->hub_url);
        rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o}", "name", m->name, "hub_url",
                        shown ? shown : "?", "repo", m->repo, "revision", o->revision, "layout",
                        m->layout, "fetched_at", (json_int_t)time(NULL), "files", files);
        curl_free(shown);
        return rec;
    }
    shown = is_http_url(o->catalog) ? fetch__url_redacted(o->catalog) : NULL;
    /* The catalogue as shown in messages: a URL without user and password. */
    rec = json_pack("{s:s, s:s, s:I, s:o}", "name", m->name, "catalog", shown ? shown : o->catalog,
                    "fetched_at", (json_int_t)time(NULL), "files", files);
    curl_free(shown);
    return rec;
}

/*
 * Puts `stage` in place as `dest`. When `dest` exists it is swapped out in
 * one step (RENAME_EXCHANGE) and deleted afterwards; `aside` is where it
 * goes on a filesystem without that.
 */
static int install_swap(const char *stage, const char *dest, const char *aside, err_t *e)
{
    struct stat st;

    if (lstat(dest, &st) != 0) {
        if (rename(stage, dest) != 0)
            return err_set(e, ERR_IO, "rename %s to %s: %s", stage, dest, strerror(errno));
        return ERR_OK;
    }
    if (renameat2(AT_FDCWD, stage, AT_FDCWD, dest, RENAME_EXCHANGE) == 0) {
        rm_rf(stage); /* now the old install */
        return ERR_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return err_set(e, ERR_IO, "exchange %s and %s: %s", stage, dest, strerror(errno));
    rm_rf(aside);
    if (rename(dest, aside) != 0)
        return err_set(e, ERR_IO, "rename %s to %s: %s", dest, aside, strerror(errno));
    if (rename(stage, dest) != 0) {
        int err = errno;
        rename(aside, dest); /* put the old one back */
        return err_set(e, ERR_IO, "rename %s to %s: %s", stage, dest, strerror(err));
    }
    rm_rf(aside);
    return ERR_OK;
}

/* ---------------------------------------------------------------- hub */

/*
 * The files inferd takes from an Immich repository, by layout: all of
 * `need` must be listed, `opt` are taken when listed; anything else (other
 * runtimes' exports: *.armnn, *.rknn, openvino/, rknpu/, READMEs) is skipped.
 */
typedef struct {
    const char *name; /* "clip", "face": fetch.json's "layout" */
    const char *const *need;
    const char *const *opt;
} hub_layout;

static const char *const clip_need[] = {"visual/model.onnx", "textual/model.onnx",
                                        "textual/tokenizer.json", NULL};
static const char *const clip_opt[] = {"visual/preprocess_cfg.json",
                                       "textual/tokenizer_config.json", "config.json", NULL};
static const char *const face_need[] = {"detection/model.onnx", "recognition/model.onnx", NULL};
static const char *const face_opt[] = {NULL};
static const hub_layout hub_layouts[] = {
    {"clip", clip_need, clip_opt},
    {"face", face_need, face_opt},
};

/* The file entry for `path` in a tree listing (an array), or NULL. */
static json_t *tree_find(json_t *tree, const char *path)
{
    size_t i;
    json_t *ent;

    json_array_foreach(tree, i, ent)
    {
        const char *p = json_string_value(json_object_get(ent, "path"));
        const char *t = json_string_value(json_object_get(ent, "type"));
        if (p != NULL && strcmp(p, path) == 0 && (t == NULL || strcmp(t, "file") == 0))
            return ent;
    }
    return NULL;
}

/*
 * Fills `f` from tree entry `ent` for `path`: size, and the LFS sha256
 * (lfs.oid) or else the git blob id (oid); the URL is
 * HUB/REPO/resolve/REV/PATH. ERR_FORMAT naming the file when the entry lacks them.
 */
static int hub_file(const char *hub, const char *repo, const char *rev, json_t *ent,
                    const char *path, mf_file *f, err_t *e)
{
    json_t *size = json_object_get(ent, "size");
    json_t *lfs = json_object_get(ent, "lfs");
    size_t hl = strlen(hub);

    memset(f, 0, sizeof *f);
    if (!json_is_integer(size) || json_integer_value(size) < 0 ||
        (uint64_t)json_integer_value(size) > MF_MAX_FILE_SIZE)
        return err_set(e, ERR_FORMAT, "%s: the hub lists %s without a usable \"size\"", repo, path);
    f->size = (uint64_t)json_integer_value(size);
    if (json_is_object(lfs)) {
        const char *oid = json_string_value(json_object_get(lfs, "oid"));
        json_t *ls = json_object_get(lfs, "size");
        size_t j;
        if (oid != NULL && strncmp(oid, "sha256:", 7) == 0)
            oid += 7;
        if (oid == NULL || strlen(oid) != 64)
            return err_set(e, ERR_FORMAT, "%s: the hub lists %s without a sha256 lfs.oid", repo,
                           path);
        for (j = 0; j < 64; j++)
            f->sha256[j] = (char)(oid[j] >= 'A' && oid[j] <= 'F' ? oid[j] - 'A' + 'a' : oid[j]);
        f->sha256[64] = '\0';
        if (!is_hex64(f->sha256))
            return err_set(e, ERR_FORMAT, "%s: %s: lfs.oid is not 64 hex digits", repo, path);
        if (ls != NULL && (!json_is_integer(ls) || (uint64_t)json_integer_value(ls) != f->size))
            return err_set(e, ERR_FORMAT, "%s: %s: lfs.size differs from size", repo, path);
    } else {
        const char *oid = json_string_value(json_object_get(ent, "oid"));
        size_t j;
        if (oid == NULL || strlen(oid) != 40)
            return err_set(e, ERR_FORMAT, "%s: the hub lists %s without a git \"oid\"", repo, path);
        for (j = 0; j < 40; j++) {
            char c = (char)(oid[j] >= 'A' && oid[j] <= 'F' ? oid[j] - 'A' + 'a' : oid[j]);
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return err_set(e, ERR_FORMAT, "%s: %s: oid is not 40 hex digits", repo, path);
            f->git_oid[j] = c;
        }
        f->git_oid[40] = '\0';
    }
    while (hl > 0 && hub[hl - 1] == '/')
        hl--;
    f->path = xstrdup(path);
    f->url = xmalloc(hl + strlen(repo) + strlen(rev) + strlen(path) + 16);
    sprintf(f->url, "%.*s/%s/resolve/%s/%s", (int)hl, hub, repo, rev, path);
    return ERR_OK;
}

/*
 * Lists repository `repo` at o->revision: GET HUB/api/models/REPO/tree/REV
 * ?recursive=true, following Link rel="next" pages. `*out` is a new array
 * of the entries (caller decrefs). A 401/404 becomes ERR_NOENT naming the
 * repository and revision.
 */
static int hub_tree(const mf_opts *o, const char *repo, json_t **out, err_t *e)
{
    size_t hl = strlen(o->hub_url);
    char *url;
    json_t *all = json_array();
    int rc = ERR_OK;

    *out = NULL;
    while (hl > 0 && o->hub_url[hl - 1] == '/')
        hl--;
    url = xmalloc(hl + strlen(repo) + strlen(o->revision) + 64);
    sprintf(url, "%.*s/api/models/%s/tree/%s?recursive=true", (int)hl, o->hub_url, repo,
            o->revision);
    for (int page = 0;; page++) {
        mf_xfer x;
        json_error_t je;
        json_t *arr;

        if (page == MF_MAX_TREE_PAGES) {
            rc = err_set(e, ERR_TOOBIG, "%s: the file listing has more than %d pages", repo,
                         MF_MAX_TREE_PAGES);
            break;
        }
        memset(&x, 0, sizeof x);
        x.o = o;
        x.fd = -1;
        x.cap = MF_MAX_TREE;
        rc = mf_get(&x, url, e);
        if (rc != ERR_OK) {
            free(x.buf);
            if (x.status == 404 || x.status == 401) {
                char *shown = fetch__url_redacted(o->hub_url);
                rc = err_set(e, ERR_NOENT,
                             "%s: no such repository or revision \"%s\" on %s (HTTP %ld; "
                             "see the names Immich's machine-learning service uses)",
                             repo, o->revision, shown ? shown : "the hub", x.status);
                curl_free(shown);
            }
            break;
        }
        arr = json_loadb((const char *)x.buf, x.len, 0, &je);
        free(x.buf);
        if (!json_is_array(arr)) {
            json_decref(arr);
            rc = err_set(e, ERR_FORMAT,
                         "%s: the hub's file listing is not a JSON array (is --hub-url a "
                         "Hugging Face compatible hub?)",
                         repo);
            break;
        }
        json_array_extend(all, arr);
        json_decref(arr);
        if (x.link_next[0] == '\0')
            break;
        if (!is_http_url(x.link_next)) {
            rc = err_set(e, ERR_FORMAT, "%s: the listing's next page is not an http(s) URL", repo);
            break;
        }
        free(url);
        url = xstrdup(x.link_next);
    }
    free(url);
    if (rc != ERR_OK) {
        json_decref(all);
        return rc;
    }
    *out = all;
    return ERR_OK;
}

/*
 * Fills `m` for `models fetch immich/MODEL` (`model` is MODEL, which `m`
 * borrows as its name): lists the hub repository immich-app/MODEL, picks
 * the layout and its files. Owned by `m` (mf_model_clear). ERR_INVAL for a
 * bad name, revision or missing --hub-url, ERR_NOENT for an unknown
 * repository, ERR_FORMAT for one with neither layout.
 */
static int hub_model_build(const mf_opts *o, const char *model, mf_model *m, err_t *e)
{
    json_t *tree = NULL;
    const hub_layout *lay = NULL;
    char missing[2][512];
    size_t n = 0;
    int rc;

    memset(m, 0, sizeof *m);
    m->name = model;
    m->source = "hub";
    if (!name_ok(model))
        return err_set(e, ERR_INVAL,
                       "model name \"%.*s\" (after " HUB_PREFIX ") must be 1-%d characters of "
                       "[A-Za-z0-9._-], not starting with '.'",
                       MF_MAX_NAME, model, MF_MAX_NAME);
    if (o->hub_url == NULL)
        return err_set(e, ERR_INVAL,
                       HUB_PREFIX "%s: point --hub-url (or INFERD_HUB_URL) at the Hugging Face "
                                  "hub or a mirror of it",
                       model);
    if (!is_http_url(o->hub_url))
        return err_set(e, ERR_INVAL, "--hub-url must start with http:// or https://");
    if (!name_ok(o->revision))
        return err_set(e, ERR_INVAL,
                       "--revision \"%.*s\" must be a branch, tag or commit of [A-Za-z0-9._-], "
                       "not starting with '.'",
                       MF_MAX_NAME, o->revision);
    m->repo = xmalloc(strlen(HUB_ORG) + strlen(model) + 2);
    sprintf(m->repo, "%s/%s", HUB_ORG, model);
    rc = hub_tree(o, m->repo, &tree, e);
    if (rc)
        goto fail;

    for (size_t l = 0; l < sizeof hub_layouts / sizeof hub_layouts[0] && lay == NULL; l++) {
        size_t k = 0;
        missing[l][0] = '\0';
        int lacks = 0;
        for (size_t i = 0; hub_layouts[l].need[i] != NULL; i++) {
            if (tree_find(tree, hub_layouts[l].need[i]) != NULL)
                continue;
            lacks = 1;
            if (k < sizeof missing[l])
                k += (size_t)snprintf(missing[l] + k, sizeof missing[l] - k, "%s%s", k ? ", " : "",
                                      hub_layouts[l].need[i]);
        }
        if (!lacks)
            lay = &hub_layouts[l];
    }
    if (lay == NULL) {
        rc = err_set(e, ERR_FORMAT,
                     "%s (revision %s) has neither layout inferd loads: a CLIP model lacks %s; "
                     "a face model lacks %s",
                     m->repo, o->revision, missing[0], missing[1]);
        goto fail;
    }
    m->layout = lay->name;
    {
        size_t cap = 0;
        while (lay->need[cap] != NULL)
            cap++;
        for (size_t i = 0; lay->opt[i] != NULL; i++)
            cap++;
        m->files = xcalloc(cap, sizeof *m->files);
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass == 0 ? lay->need : lay->opt;
        for (size_t i = 0; list[i] != NULL; i++) {
            json_t *ent = tree_find(tree, list[i]);
            if (ent == NULL)
                continue;
            rc = hub_file(o->hub_url, m->repo, o->revision, ent, list[i], &m->files[n], e);
            if (rc)
                goto fail;
            m->nfiles = ++n;
        }
    }
    if (!o->quiet) {
        uint64_t total = 0;
        size_t listed = 0, i;
        json_t *ent;
        char sz[32];
        for (i = 0; i < n; i++)
            total += m->files[i].size;
        json_array_foreach(tree, i, ent)
        {
            const char *t = json_string_value(json_object_get(ent, "type"));
            listed += t == NULL || strcmp(t, "file") == 0;
        }
        human_size(total, sz, sizeof sz);
        fprintf(stderr, "%s@%s: %s model, %zu of its %zu files (%s); the others skipped\n", m->repo,
                o->revision, lay->name, n, listed, sz);
    }
    json_decref(tree);
    return ERR_OK;
fail:
    json_decref(tree);
    mf_model_clear(m);
    return rc;
}

static int cmd_fetch(const mf_opts *o, const char *spec, err_t *e)
{
    json_t *cat = NULL;
    mf_model m;
    const char *name;
    char *dest = NULL, *partial = NULL, *stage = NULL, *aside = NULL;
    int *good = NULL;
    int lockfd = -1;
    int exists, rc;
    struct stat st;
    err_t ve;

    memset(&m, 0, sizeof m);
    if (strncmp(spec, HUB_PREFIX, strlen(HUB_PREFIX)) == 0) {
        rc = hub_model_build(o, spec + strlen(HUB_PREFIX), &m, e);
    } else {
        rc = catalog_load(o, &cat, e);
        if (rc)
            return rc;
        rc = model_parse(cat, spec, o->base_url, &m, e);
    }
    if (rc)
        goto out;
    name = m.name;
    rc = mkdir_p(o->models_dir, e);
    if (rc)
        goto out;
    lockfd = open(o->models_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lockfd < 0) {
        rc = err_set(e, ERR_IO, "%s: %s", o->models_dir, strerror(errno));
        goto out;
    }
    if (flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        rc = err_set(e, ERR_BUSY, "another inferd models fetch is running in %s", o->models_dir);
        goto out;
    }
    dest = join(o->models_dir, name);
    partial = join(o->models_dir, MF_PARTIAL);
    stage = join(partial, name);
    {
        /* Not a possible stage name: model names do not start with '.'. */
        char *dot = concat(".old-", name);
        aside = join(partial, dot);
        free(dot);
    }
    good = xcalloc(m.nfiles, sizeof *good);

    exists = lstat(dest, &st) == 0;
    if (exists) {
        err_clear(&ve);
        if (!S_ISDIR(st.st_mode) && !o->force) {
            rc = err_set(e, ERR_CONFLICT, "%s exists and is not a directory; --force replaces it",
                         dest);
            goto out;
        }
        if (S_ISDIR(st.st_mode) && install_verify(dest, &m, good, &ve) == ERR_OK) {
            printf("%s: present in %s (%zu file%s verified)\n", name, dest, m.nfiles,
                   m.nfiles == 1 ? "" : "s");
            rc = ERR_OK;
            goto out;
        }
        if (!S_ISDIR(st.st_mode) || !install_is_ours(dest, &m)) {
            if (!o->force) {
                rc = err_set(e, ERR_CONFLICT,
                             "%s exists but does not match the %s's files (%s) and was not "
                             "installed from %s; --force replaces it",
                             dest, m.source, ve.msg, m.repo ? m.repo : "this catalogue entry");
                goto out;
            }
        }
        if (!o->quiet && S_ISDIR(st.st_mode))
            fprintf(stderr, "%s: installed copy fails its check (%s); fetching again\n", name,
                    ve.msg);
    }

    stage_sweep(stage, &m);
    prune_empty_dirs(stage);
    rc = mkdir_p(stage, e);
    if (rc)
        goto out;
    for (size_t i = 0; i < m.nfiles; i++) {
        mf_file *f = &m.files[i];
        char *final = join(stage, f->path);
        int have = file_check(stage, f, NULL) == ERR_OK;

        if (!have) {
            unlink(final);
            /* A good file of the old install is reused, not downloaded again. */
            if (exists && good[i]) {
                char *old = join(dest, f->path);
                rc = mkparents(final, e);
                if (rc == ERR_OK && link(old, final) == 0)
                    have = 1;
                free(old);
                if (rc) {
                    free(final);
                    goto out;
                }
            }
        }
        free(final);
        if (have) {
            if (!o->quiet)
                fprintf(stderr, "%s/%s: already here, %s ok\n", name, f->path,
                        f->git_oid[0] ? "git id" : "sha256");
            continue;
        }
        rc = file_fetch(o, &m, f, stage, e);
        if (rc)
            goto out;
    }

    if (m.manifest != NULL) {
        char *p = join(stage, MF_MANIFEST);
        rc = write_json(p, m.manifest, e);
        free(p);
        if (rc)
            goto out;
    }
    {
        json_t *rec = record_new(o, &m);
        char *p = join(stage, MF_RECORD);
        rc = write_json(p, rec, e);
        free(p);
        json_decref(rec);
        if (rc)
            goto out;
    }
    fsync_dir(stage);
    rc = install_swap(stage, dest, aside, e);
    if (rc)
        goto out;
    fsync_dir(o->models_dir);
    rmdir(partial); /* only when no other partial download is left */
    printf("%s: installed in %s (%zu file%s, sha256 ok)\n", name, dest, m.nfiles,
           m.nfiles == 1 ? "" : "s");
out:
    if (rc != ERR_OK && stage != NULL) {
        /* Keep what can be resumed, not the empty directories around it. */
        prune_empty_dirs(stage);
        rmdir(partial);
    }
    if (lockfd >= 0)
        close(lockfd);
    free(good);
    free(dest);
    free(partial);
    free(stage);
    free(aside);
    mf_model_clear(&m);
    json_decref(cat);
    return rc;
}

/* ---------------------------------------------------------------- list */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The SHA column for model directory `dir`: "ok", "-" (nothing to check
 * against, or --no-verify), or what is wrong. Returns 1 when wrong.
 */
static int list_check(const char *dir, json_t *man, int verify, char *out, size_t cap)
{
    char *rp = join(dir, MF_RECORD);
    json_t *rec = json_load_file(rp, 0, NULL);
    json_t *files = json_object_get(rec, "files");
    err_t e;
    int bad = 0, checked = 0;

    free(rp);
    snprintf(out, cap, "-");
    if (!verify) {
        json_decref(rec);
        return 0;
    }
    if (json_is_array(files)) {
        /* Installed by `models fetch`: every file it recorded. */
        size_t i;
        json_t *f;
        json_array_foreach(files, i, f)
        {
            const char *p = json_string_value(json_object_get(f, "path"));
            const char *h = json_string_value(json_object_get(f, "sha256"));
            json_t *s = json_object_get(f, "size");
            if (p == NULL || h == NULL || !json_is_integer(s) || path_problem(p) != NULL) {
                snprintf(out, cap, "bad %s", MF_RECORD);
                bad = 1;
                break;
            }
            checked++;
            if (file_verify(dir, p, h, (uint64_t)json_integer_value(s), &e) != ERR_OK) {
                snprintf(out, cap, "%s %s", e.code == ERR_NOENT ? "MISSING" : "MISMATCH", p);
                bad = 1;
                break;
            }
        }
    } else {
        /* Provisioned otherwise: the model file the manifest names, by its sha256. */
        const char *file = json_string_value(json_object_get(man, "file"));
        const char *h = json_string_value(json_object_get(man, "sha256"));
        if (file == NULL)
            file = "model.onnx";
        if (h != NULL && path_problem(file) == NULL) {
            char *p = join(dir, file);
            char hex[65];
            checked++;
            if (sha256_file_hex(p, hex, &e) != ERR_OK) {
                snprintf(out, cap, "MISSING %s", file);
                bad = 1;
            } else if (strcmp(hex, h) != 0) {
                snprintf(out, cap, "MISMATCH %s", file);
                bad = 1;
            }
            free(p);
        }
    }
    if (!bad && checked)
        snprintf(out, cap, "ok");
    json_decref(rec);
    return bad;
}

/*
 * The layout of a model directory without manifest.json: "clip" (Immich /
 * OpenCLIP: visual/model.onnx), "face" (Immich: detection/ and recognition/
 * model.onnx), or NULL. For "clip", `*dim` is config.json's embed_dim when given.
 */
static const char *dir_layout(const char *dir, long long *dim)
{
    static const char *const probe[] = {"visual/model.onnx", "detection/model.onnx",
                                        "recognition/model.onnx"};
    int has[3];
    struct stat st;

    *dim = 0;
    for (int i = 0; i < 3; i++) {
        char *p = join(dir, probe[i]);
        has[i] = stat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
    }
    if (has[0]) {
        char *p = join(dir, "config.json");
        json_t *cfg = json_load_file(p, 0, NULL);
        json_t *d = json_object_get(cfg, "embed_dim");
        if (json_is_integer(d))
            *dim = (long long)json_integer_value(d);
        json_decref(cfg);
        free(p);
        return "clip";
    }
    if (has[1] && has[2])
        return "face";
    return NULL;
}

static int cmd_list(const mf_opts *o, int verify, err_t *e)
{
    DIR *d = opendir(o->models_dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int bad = 0;

    if (d == NULL) {
        if (errno == ENOENT) {
            printf("no models in %s\n", o->models_dir);
            return ERR_OK;
        }
        return err_set(e, ERR_IO, "%s: %s", o->models_dir, strerror(errno));
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        char *p;
        if (de->d_name[0] == '.')
            continue; /* ".", "..", .partial */
        p = join(o->models_dir, de->d_name);
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                names = xrealloc(names, cap * sizeof *names);
            }
            names[n++] = xstrdup(de->d_name);
        }
        free(p);
    }
    closedir(d);
    if (n == 0) {
        printf("no models in %s\n", o->models_dir);
        free(names);
        return ERR_OK;
    }
    qsort(names, n, sizeof *names, name_cmp);
    printf("%-28s %-16s %5s  %-14s %s\n", "NAME", "TASK", "DIM", "LICENCE", "SHA");
    for (size_t i = 0; i < n; i++) {
        char *dir = join(o->models_dir, names[i]);
        char *mp = join(dir, MF_MANIFEST);
        json_t *man = json_load_file(mp, 0, NULL);
        const char *task = json_string_value(json_object_get(man, "task"));
        const char *lic = json_string_value(json_object_get(man, "licence"));
        json_t *dim = json_object_get(man, "embedding_dim");
        char dims[24], sha[MF_MAX_PATH + 16];
        const char *layout = NULL;
        long long ldim = 0;

        if (man == NULL) {
            layout = dir_layout(dir, &ldim);
            if (layout != NULL)
                task = strcmp(layout, "clip") == 0 ? "clip" : "face (det+rec)";
        }
        if (json_is_integer(dim))
            snprintf(dims, sizeof dims, "%lld", (long long)json_integer_value(dim));
        else if (ldim > 0)
            snprintf(dims, sizeof dims, "%lld", ldim);
        else
            snprintf(dims, sizeof dims, "-");
        bad |= list_check(dir, man, verify, sha, sizeof sha);
        printf("%-28s %-16s %5s  %-14s %s\n", names[i],
               man == NULL && layout == NULL ? "(no manifest)" : (task ? task : "-"), dims,
               lic ? lic : "-", sha);
        json_decref(man);
        free(mp);
        free(dir);
        free(names[i]);
    }
    free(names);
    if (bad)
        return err_set(e, ERR_CHECKSUM, "some models fail their check (see the SHA column)");
    return ERR_OK;
}

/* ---------------------------------------------------------------- CLI */

/* `inferd models help`: the two commands' --help texts (util/config.c's table). */
static void models_usage(FILE *f)
{
    fputs(config_usage_role(CONFIG_ROLE_MODELS_FETCH), f);
    fputs("\n", f);
    fputs(config_usage_role(CONFIG_ROLE_MODELS_LIST), f);
}

int models_fetch_main(int argc, char **argv)
{
    if (argc < 2) {
        models_usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        models_usage(stdout);
        return 0;
    }
    config_role role;
    const char *cmd;
    if (strcmp(sub, "fetch") == 0) {
        role = CONFIG_ROLE_MODELS_FETCH;
        cmd = "inferd models fetch";
    } else if (strcmp(sub, "list") == 0) {
        role = CONFIG_ROLE_MODELS_LIST;
        cmd = "inferd models list";
    } else {
        fprintf(stderr, "inferd models: unknown subcommand \"%s\"\n", sub);
        models_usage(stderr);
        return 2;
    }
    config cfg;
    char msg[600];
    argv[1] = (char *)cmd; /* the command name in messages */
    int prc = config_parse_role(&cfg, role, argc - 1, argv + 1, msg, sizeof msg);
    argv[1] = (char *)sub;
    if (prc == 1)
        return 0;
    if (prc != 0) {
        config_print_error(cmd, msg);
        fputs("(see inferd models help)\n", stderr);
        return 2;
    }
    mf_opts o = {
        .models_dir = cfg.models_dir,
        .catalog = cfg.catalog,
        .base_url = cfg.base_url[0] != '\0' ? cfg.base_url : NULL,
        .hub_url = cfg.hub_url[0] != '\0' ? cfg.hub_url : NULL,
        .revision = cfg.revision,
        .force = cfg.force,
        .allow_private = cfg.allow_private_urls,
        .quiet = cfg.quiet,
        .retries = cfg.retries,
        .connect_timeout_s = (long)cfg.connect_timeout_s,
        .stall_timeout_s = (long)cfg.stall_timeout_s,
        .timeout_s = (long)cfg.timeout_s,
        .progress_tty = isatty(2),
    };
    err_t e;
    err_clear(&e);
    int rc;
    if (role == CONFIG_ROLE_MODELS_LIST) {
        rc = cmd_list(&o, !cfg.no_verify, &e);
    } else {
        if (o.base_url != NULL && !is_http_url(o.base_url)) {
            fprintf(stderr, "%s: --base-url must start with http:// or https://\n", cmd);
            return 2;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            fprintf(stderr, "%s: error: curl_global_init failed\n", cmd);
            return 1;
        }
        rc = cmd_fetch(&o, cfg.args[0], &e);
        curl_global_cleanup();
    }
    fflush(stdout);
    if (rc != ERR_OK) {
        fprintf(stderr, "%s: error: %s\n", cmd, e.msg);
        return 1;
    }
    return 0;
}
