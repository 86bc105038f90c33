/*
 * fetch/fetch.c — the fetch subsystem: parses a job's source object and gets
 * its bytes from the upload spool, the media root or an http(s) URL. This is
 * the one file that calls libcurl; CURLcodes and HTTP statuses are
 * translated into err codes here, with the detail kept in the message.
 *
 * Design notes.
 * - SSRF guard. Resolving the name ourselves and checking the answers before
 *   handing the URL to curl was rejected: curl resolves again (a rebinding
 *   DNS server answers differently the second time) and redirects would need
 *   the same dance per hop. Instead CURLOPT_OPENSOCKETFUNCTION sees the
 *   sockaddr of every connect curl attempts, for every hop, and refuses
 *   guarded ones by returning CURL_SOCKET_BAD; the refusal is recorded so
 *   that the resulting CURLE_COULDNT_CONNECT is reported as ERR_FORBIDDEN.
 *   Proxies are switched off so that the checked address is the target.
 * - Paths. The path is first normalised lexically and must lie under the
 *   root, so that probing outside the root ("../x") answers ERR_FORBIDDEN
 *   whether or not the file exists; then realpath() resolves symlinks and the
 *   result must lie under the resolved root, with a component boundary
 *   (/media does not contain /media2). The resolved path is returned; a
 *   symlink swapped in between this check and the decoder's open() is not
 *   defended against — the media root is trusted to its owner.
 * - Spool. Content addressed: the name is the SHA-256 of the bytes, written
 *   through a temp file + fsync + rename so a reader never sees a partial
 *   file and two concurrent spools of the same bytes are harmless.
 *
 * Threading: struct fetcher is read-only after fetch_new. Each URL fetch
 * owns its easy handle and its xfer state; nothing else is shared. The only
 * lock is fetch__global_lock around curl_global_init/cleanup.
 */
#include "fetch/fetch.h"
#include "fetch/fetch_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "util/fileio.h"
#include "util/sha256.h"
#include "util/xalloc.h"

#ifndef INFERD_VERSION
#define INFERD_VERSION "0"
#endif

#define FETCH_DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define FETCH_DEFAULT_CONNECT_MS 5000
#define FETCH_DEFAULT_TIMEOUT_MS 30000
#define FETCH_DEFAULT_REDIRECTS 5
#define FETCH_URL_MAX 8192

struct fetcher {
    char *media_root;     /* realpath of the root, or NULL when none */
    char *media_root_cfg; /* the root as configured, normalised lexically */
    char *spool_dir;      /* NULL when none */
    size_t max_bytes;
    long connect_timeout_ms;
    long timeout_ms;
    int max_redirects; /* -1: none followed */
    int allow_private;
    int exempt_port; /* tests only, see fetch__test_exempt_port */
    atomic_int aborting; /* set by fetch_abort: in-flight transfers end at once */
};

static pthread_mutex_t fetch__global_lock = PTHREAD_MUTEX_INITIALIZER;
static int fetch__global_ready;

int fetch_global_init(err_t *e)
{
    int rc = ERR_OK;

    pthread_mutex_lock(&fetch__global_lock);
    if (!fetch__global_ready) {
        CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (c != CURLE_OK)
            rc = err_set(e, ERR_INTERNAL, "curl_global_init: %s", curl_easy_strerror(c));
        else
            fetch__global_ready = 1;
    }
    pthread_mutex_unlock(&fetch__global_lock);
    return rc;
}

void fetch_global_cleanup(void)
{
    pthread_mutex_lock(&fetch__global_lock);
    if (fetch__global_ready) {
        curl_global_cleanup();
        fetch__global_ready = 0;
    }
    pthread_mutex_unlock(&fetch__global_lock);
}

/* ---------------------------------------------------------------- paths */

/*
 * Writes into `out` (at least strlen(abs)+1 bytes) the absolute path `abs`
 * with "//", "." and ".." folded lexically; ".." at the root stays there.
 */
static void path_normalise(const char *abs, char *out)
{
    size_t n = 0;
    const char *p = abs;

    out[n++] = '/';
    while (*p) {
        const char *seg;
        size_t len;
        while (*p == '/')
            p++;
        seg = p;
        while (*p && *p != '/')
            p++;
        len = (size_t)(p - seg);
        if (len == 0 || (len == 1 && seg[0] == '.'))
            continue;
        if (len == 2 && seg[0] == '.' && seg[1] == '.') {
            while (n > 1 && out[n - 1] != '/')
                n--;
            if (n > 1)
                n--; /* drop the slash before the removed segment */
            continue;
        }
        if (n > 1)
            out[n++] = '/';
        memcpy(out + n, seg, len);
        n += len;
    }
    out[n] = '\0';
}

/* Whether `path` is `root` or lies below it, on a path-component boundary. */
static int path_under(const char *path, const char *root)
{
    size_t n = strlen(root);

    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/*
 * Resolves the source path `p` (`plen` bytes, may hold a NUL from JSON) under
 * the media root. On success `*out` is the malloc'd resolved path of a
 * regular file no larger than max_bytes.
 */
static int resolve_path(const fetcher *f, const char *p, size_t plen, char **out, err_t *e)
{
    char joined[PATH_MAX * 2 + 2];
    char norm[sizeof joined];
    char *real;
    struct stat st;

    *out = NULL;
    if (f->media_root == NULL)
        return err_set(e, ERR_FORBIDDEN, "path sources are disabled: --media-root is not set");
    if (plen == 0)
        return err_set(e, ERR_INVAL, "source.path is empty");
    if (memchr(p, '\0', plen) != NULL)
        return err_set(e, ERR_INVAL, "source.path contains a NUL byte");
    if (plen >= PATH_MAX)
        return err_set(e, ERR_INVAL, "source.path is longer than %d bytes", PATH_MAX - 1);

    if (p[0] == '/')
        snprintf(joined, sizeof joined, "%s", p);
    else
        snprintf(joined, sizeof joined, "%s/%s", f->media_root, p);
    path_normalise(joined, norm);
    if (!path_under(norm, f->media_root) && !path_under(norm, f->media_root_cfg))
        return err_set(e, ERR_FORBIDDEN, "path %s is outside the media root", p);

    real = realpath(joined, NULL);
    if (real == NULL) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR)
            return err_set(e, ERR_NOENT, "path %s: no such file under the media root", p);
        if (err == EACCES)
            return err_set(e, ERR_FORBIDDEN, "path %s: permission denied", p);
        if (err == ELOOP || err == ENAMETOOLONG)
            return err_set(e, ERR_INVAL, "path %s: %s", p, strerror(err));
        return err_set(e, ERR_IO, "path %s: %s", p, strerror(err));
    }
    if (!path_under(real, f->media_root)) {
        free(real);
        return err_set(e, ERR_FORBIDDEN, "path %s resolves outside the media root", p);
    }
    if (stat(real, &st) != 0) {
        int err = errno;
        free(real);
        return err_set(e, err == ENOENT ? ERR_NOENT : ERR_IO, "path %s: %s", p, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        free(real);
        return err_set(e, ERR_INVAL, "path %s is not a regular file", p);
    }
    if ((unsigned long long)st.st_size > (unsigned long long)f->max_bytes) {
        free(real);
        return err_set(e, ERR_TOOBIG, "path %s is %lld bytes, more than the limit of %zu", p,
                       (long long)st.st_size, f->max_bytes);
    }
    *out = real;
    return ERR_OK;
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdirs(const char *dir, err_t *e)
{
    char failed[PATH_MAX];
    if (fileio_mkdir_p(dir, 0700, failed) != 0)
        return err_set(e, ERR_IO, "mkdir %s: %s", failed, strerror(errno));
    return ERR_OK;
}

/* ---------------------------------------------------------------- lifecycle */

int fetch_new(const fetch_opts *opts, fetcher **out, err_t *e)
{
    fetcher *f;
    int rc;

    *out = NULL;
    if (opts == NULL)
        return err_set(e, ERR_INVAL, "fetch_new: no options");
    rc = fetch_global_init(e);
    if (rc)
        return rc;
    f = xcalloc(1, sizeof *f);
    f->max_bytes = opts->max_bytes ? opts->max_bytes : FETCH_DEFAULT_MAX_BYTES;
    f->connect_timeout_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : FETCH_DEFAULT_CONNECT_MS;
    f->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : FETCH_DEFAULT_TIMEOUT_MS;
    f->max_redirects = opts->max_redirects == 0  ? FETCH_DEFAULT_REDIRECTS
                       : opts->max_redirects < 0 ? -1
                                                 : opts->max_redirects;
    f->allow_private = opts->allow_private != 0;

    if (opts->media_root != NULL && opts->media_root[0] != '\0') {
        char cwd[PATH_MAX];
        char joined[PATH_MAX * 2 + 2];
        struct stat st;
        const char *root = opts->media_root;

        f->media_root = realpath(root, NULL);
        if (f->media_root == NULL) {
            rc = err_set(e, errno == ENOENT ? ERR_NOENT : ERR_IO, "media root %s: %s", root,
                         strerror(errno));
            goto fail;
        }
        if (stat(f->media_root, &st) != 0 || !S_ISDIR(st.st_mode)) {
            rc = err_set(e, ERR_INVAL, "media root %s is not a directory", root);
            goto fail;
        }
        if (root[0] == '/')
            snprintf(joined, sizeof joined, "%s", root);
        else if (getcwd(cwd, sizeof cwd) != NULL)
            snprintf(joined, sizeof joined, "%s/%s", cwd, root);
        else
            snprintf(joined, sizeof joined, "%s", f->media_root);
        f->media_root_cfg = xmalloc(strlen(joined) + 1);
        path_normalise(joined, f->media_root_cfg);
    }
    if (opts->spool_dir != NULL && opts->spool_dir[0] != '\0') {
        rc = mkdirs(opts->spool_dir, e);
        if (rc)
            goto fail;
        f->spool_dir = xstrdup(opts->spool_dir);
    }
    *out = f;
    return ERR_OK;
fail:
    fetch_free(f);
    return rc;
}

void fetch_free(fetcher *f)
{
    if (f == NULL)
        return;
    free(f->media_root);
    free(f->media_root_cfg);
    free(f->spool_dir);
    free(f);
}

void fetch__test_exempt_port(fetcher *f, int port)
{
    f->exempt_port = port;
}

void fetch_result_clear(fetch_result *r)
{
    if (r == NULL)
        return;
    free(r->path);
    free(r->data);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- spool */

static int is_sha_hex(const char *s, size_t n)
{
    if (n != 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

/*
 * An upload being spooled: a temp file ".upload.XXXXXX" in the spool dir,
 * hashed as it is written, renamed to its content address at commit.
 */
struct fetch_upload {
    fetcher *f;
    int fd;
    size_t size;
    sha256_ctx sha;
    char tmp[PATH_MAX];
};

int fetch_upload_begin(fetcher *f, fetch_upload **out, err_t *e)
{
    *out = NULL;
    if (f->spool_dir == NULL)
        return err_set(e, ERR_FORBIDDEN, "uploads are disabled: no spool directory");
    fetch_upload *u = xcalloc(1, sizeof *u);
    u->f = f;
    sha256_init(&u->sha);
    if (snprintf(u->tmp, sizeof u->tmp, "%s/.upload.XXXXXX", f->spool_dir) >= (int)sizeof u->tmp) {
        sha256_free(&u->sha);
        free(u);
        return err_set(e, ERR_INVAL, "spool dir %s: path too long", f->spool_dir);
    }
    u->fd = mkostemp(u->tmp, O_CLOEXEC);
    if (u->fd < 0) {
        int rc = err_set(e, ERR_IO, "spool: create temp file in %s: %s", f->spool_dir,
                         strerror(errno));
        sha256_free(&u->sha);
        free(u);
        return rc;
    }
    *out = u;
    return ERR_OK;
}

int fetch_upload_write(fetch_upload *u, const void *data, size_t n, err_t *e)
{
    if (n > u->f->max_bytes - u->size)
        return err_set(e, ERR_TOOBIG, "upload of more than %zu bytes is over the limit",
                       u->f->max_bytes);
    if (fileio_write_all(u->fd, data, n) != 0)
        return err_set(e, ERR_IO, "spool: write %s: %s", u->tmp, strerror(errno));
    sha256_update(&u->sha, data, n);
    u->size += n;
    return ERR_OK;
}

size_t fetch_upload_size(const fetch_upload *u)
{
    return u->size;
}

const char *fetch_upload_path(const fetch_upload *u)
{
    return u->tmp;
}

void fetch_upload_abort(fetch_upload *u)
{
    if (u == NULL)
        return;
    close(u->fd);
    unlink(u->tmp);
    sha256_free(&u->sha);
    free(u);
}

int fetch_upload_commit(fetch_upload *u, char sha_out[65], err_t *e)
{
    char final[PATH_MAX], hex[65];
    uint8_t d[32];
    struct stat st;
    int rc = ERR_OK, dfd;
    const char *dir = u->f->spool_dir;

    sha_out[0] = '\0';
    sha256_final(&u->sha, d);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    if (snprintf(final, sizeof final, "%s/%s", dir, hex) >= (int)sizeof final) {
        rc = err_set(e, ERR_INVAL, "spool dir %s: path too long", dir);
        goto fail;
    }
    /*
     * Same name and size: the same bytes are there already (content addressed).
     * Its mtime moves to now, so that a job which ends meanwhile and releases
     * the file (fetch_spool_release) leaves it to the job about to be queued.
     */
    if (stat(final, &st) == 0 && S_ISREG(st.st_mode) && (unsigned long long)st.st_size == u->size) {
        utimensat(AT_FDCWD, final, NULL, 0);
        fetch_upload_abort(u);
        memcpy(sha_out, hex, 65);
        return ERR_OK;
    }
    if (fsync(u->fd) != 0) {
        rc = err_set(e, ERR_IO, "spool: fsync %s: %s", u->tmp, strerror(errno));
        goto fail;
    }
    if (rename(u->tmp, final) != 0) {
        rc = err_set(e, ERR_IO, "spool: rename to %s: %s", final, strerror(errno));
        goto fail;
    }
    close(u->fd);
    free(u);
    /* Make the rename itself durable: the job row will point at this name. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        int ok = fsync(dfd) == 0;
        int err = errno;
        close(dfd);
        if (!ok)
            return err_set(e, ERR_IO, "spool: fsync %s: %s", dir, strerror(err));
    }
    memcpy(sha_out, hex, 65);
    return ERR_OK;
fail:
    fetch_upload_abort(u);
    return rc;
}

int fetch_upload_sha(const char *source_json, char sha[65])
{
    json_t *o = source_json != NULL ? json_loads(source_json, 0, NULL) : NULL;
    const char *v = json_string_value(json_object_get(o, "upload"));
    int ok = v != NULL && is_sha_hex(v, strlen(v));
    if (ok)
        memcpy(sha, v, 65);
    json_decref(o);
    return ok;
}

int fetch_spool_release(fetcher *f, const char *sha, int64_t not_after_ms, err_t *e)
{
    char path[PATH_MAX];
    struct stat st;
    if (f->spool_dir == NULL)
        return 0;
    if (sha == NULL || !is_sha_hex(sha, strlen(sha)))
        return err_set(e, ERR_INVAL, "spool: not an upload digest");
    snprintf(path, sizeof path, "%s/%s", f->spool_dir, sha);
    if (stat(path, &st) != 0)
        return 0;
    int64_t mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    if (mtime_ms > not_after_ms)
        return 0; /* spooled again since: another job is about to use it */
    if (unlink(path) != 0 && errno != ENOENT)
        return err_set(e, ERR_IO, "spool: remove %s: %s", path, strerror(errno));
    return 1;
}

static int cmp_sha(const void *a, const void *b)
{
    return strcmp((const char *)a, *(char *const *)b);
}

int fetch_spool_sweep(fetcher *f, char *const *keep, int nkeep, int64_t min_age_ms,
                      fetch_spool_stats *st, err_t *e)
{
    memset(st, 0, sizeof *st);
    if (f->spool_dir == NULL)
        return ERR_OK;
    DIR *d = opendir(f->spool_dir);
    if (d == NULL)
        return err_set(e, ERR_IO, "spool: open %s: %s", f->spool_dir, strerror(errno));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat fs;
        size_t nl = strlen(de->d_name);
        int upload = is_sha_hex(de->d_name, nl);
        int temp = strncmp(de->d_name, ".upload.", 8) == 0 || de->d_name[0] == '.';
        if ((!upload && !temp) || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", f->spool_dir, de->d_name);
        if (lstat(path, &fs) != 0 || !S_ISREG(fs.st_mode))
            continue;
        int64_t age = now_ms - ((int64_t)fs.st_mtim.tv_sec * 1000 + fs.st_mtim.tv_nsec / 1000000);
        /* A temp file is an upload in flight for as long as a request may take. */
        int64_t need = upload ? min_age_ms : FETCH_SPOOL_TEMP_AGE_MS;
        int kept = upload && nkeep > 0 &&
                   bsearch(de->d_name, keep, (size_t)nkeep, sizeof *keep, cmp_sha) != NULL;
        if (min_age_ms >= 0 && !kept && age >= need && unlink(path) == 0) {
            st->removed++;
            st->removed_bytes += (int64_t)fs.st_size;
            continue;
        }
        st->files++;
        st->bytes += (int64_t)fs.st_size;
    }
    closedir(d);
    return ERR_OK;
}

int fetch_spool(fetcher *f, const void *data, size_t len, char sha_out[65], err_t *e)
{
    fetch_upload *u = NULL;
    sha_out[0] = '\0';
    if (data == NULL && len > 0)
        return err_set(e, ERR_INVAL, "fetch_spool: no data");
    if (f->spool_dir != NULL && len > f->max_bytes)
        return err_set(e, ERR_TOOBIG, "upload of %zu bytes is more than the limit of %zu", len,
                       f->max_bytes);
    int rc = fetch_upload_begin(f, &u, e);
    if (rc == ERR_OK && len > 0 && (rc = fetch_upload_write(u, data, len, e)) != ERR_OK) {
        fetch_upload_abort(u);
        return rc;
    }
    return rc == ERR_OK ? fetch_upload_commit(u, sha_out, e) : rc;
}

/* ---------------------------------------------------------------- source JSON */

typedef enum { SRC_PATH, SRC_URL, SRC_UPLOAD } src_kind;

typedef struct {
    json_t *root; /* owns the strings below */
    src_kind kind;
    const char *val;
    size_t vlen;
    int has_size;
    json_int_t size;
} source;

static void source_clear(source *s)
{
    json_decref(s->root);
    memset(s, 0, sizeof *s);
}

/*
 * Parses and checks the shape of a source object. On success `s` owns a json
 * root that its strings live in (source_clear); on failure `s` is cleared.
 */
static int source_parse(const char *text, source *s, err_t *e)
{
    json_error_t je;
    const char *key;
    json_t *v;
    int n = 0;
    int rc = ERR_OK;

    memset(s, 0, sizeof *s);
    if (text == NULL)
        return err_set(e, ERR_INVAL, "source is missing");
    s->root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (s->root == NULL)
        return err_set(e, ERR_INVAL, "source is not valid JSON: %s (column %d)", je.text,
                       je.column);
    if (!json_is_object(s->root)) {
        rc = err_set(e, ERR_INVAL, "source must be an object with path, url or upload");
        goto out;
    }
    json_object_foreach(s->root, key, v)
    {
        src_kind k;
        if (strcmp(key, "path") == 0) {
            k = SRC_PATH;
        } else if (strcmp(key, "url") == 0) {
            k = SRC_URL;
        } else if (strcmp(key, "upload") == 0) {
            k = SRC_UPLOAD;
        } else if (strcmp(key, "size") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                rc = err_set(e, ERR_INVAL, "source.size must be a non-negative integer");
                goto out;
            }
            s->has_size = 1;
            s->size = json_integer_value(v);
            continue;
        } else {
            rc = err_set(e, ERR_INVAL, "source has an unknown key \"%.64s\"", key);
            goto out;
        }
        if (!json_is_string(v)) {
            rc = err_set(e, ERR_INVAL, "source.%s must be a string", key);
            goto out;
        }
        s->kind = k;
        s->val = json_string_value(v);
        s->vlen = json_string_length(v);
        n++;
    }
    if (n != 1)
        rc = err_set(e, ERR_INVAL, "source must have exactly one of path, url, upload");
    else if (s->has_size && s->kind != SRC_UPLOAD)
        rc = err_set(e, ERR_INVAL, "source.size is only allowed with upload");
out:
    if (rc)
        source_clear(s);
    return rc;
}

/* ---------------------------------------------------------------- URLs */

/* See fetch_int.h. */
char *fetch__url_redacted(const char *url)
{
    CURLU *u = curl_url();
    char *s = NULL;

    if (u == NULL)
        return NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        curl_url_set(u, CURLUPART_USER, NULL, 0);
        curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
        curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
        if (curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
            s = NULL;
    }
    curl_url_cleanup(u);
    return s;
}

/* Scheme http(s), a host, and a literal IP host the guard allows. */
static int url_check(const fetcher *f, const char *url, size_t n, err_t *e)
{
    CURLU *u;
    CURLUcode uc;
    char *scheme = NULL, *host = NULL;
    int rc = ERR_OK;

    if (n == 0)
        return err_set(e, ERR_INVAL, "source.url is empty");
    if (memchr(url, '\0', n) != NULL)
        return err_set(e, ERR_INVAL, "source.url contains a NUL byte");
    if (n > FETCH_URL_MAX)
        return err_set(e, ERR_INVAL, "source.url is longer than %d bytes", FETCH_URL_MAX);
    u = curl_url();
    if (u == NULL)
        return err_set(e, ERR_NOMEM, "curl_url: out of memory");
    uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
        rc = err_set(e, ERR_INVAL, "source.url is not a valid URL: %s", curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        rc = err_set(e, ERR_INVAL, "source.url scheme must be http or https");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
        rc = err_set(e, ERR_INVAL, "source.url has no host");
        goto out;
    }
    if (!f->allow_private) {
        /* A literal address can be judged now, so the API answers 4xx at once. */
        char lit[64];
        size_t hl = strlen(host);
        if (host[0] == '[' && hl >= 2 && hl - 2 < sizeof lit) {
            memcpy(lit, host + 1, hl - 2);
            lit[hl - 2] = '\0';
        } else {
            snprintf(lit, sizeof lit, "%s", host);
        }
        if (fetch_addr_is_private(lit) == 1) {
            struct sockaddr_storage ss;
            const char *cls = "private";
            memset(&ss, 0, sizeof ss);
            if (inet_pton(AF_INET, lit, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
                ss.ss_family = AF_INET;
                cls = fetch__addr_class((struct sockaddr *)&ss);
            } else if (inet_pton(AF_INET6, lit, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
                ss.ss_family = AF_INET6;
                cls = fetch__addr_class((struct sockaddr *)&ss);
            }
            rc = err_set(e, ERR_FORBIDDEN,
                         "address %s is %s; refused (allow with --allow-private-urls)", lit,
                         cls ? cls : "private");
        }
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

int fetch__classify_http(long status)
{
    if (status == 408 || status == 429 || (status >= 500 && status <= 599))
        return ERR_UNAVAILABLE;
    if (status == 404 || status == 410)
        return ERR_NOENT;
    return ERR_FETCH;
}

int fetch__classify_curl(int curlcode)
{
    switch ((CURLcode)curlcode) {
    case CURLE_OK:
        return ERR_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return ERR_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_AGAIN:
        return ERR_UNAVAILABLE;
    case CURLE_FILESIZE_EXCEEDED:
        return ERR_TOOBIG;
    case CURLE_UNSUPPORTED_PROTOCOL:
        return ERR_FORBIDDEN;
    case CURLE_URL_MALFORMAT:
        return ERR_INVAL;
    case CURLE_OUT_OF_MEMORY:
        return ERR_NOMEM;
    default:
        return ERR_FETCH; /* TLS verification, too many redirects, protocol errors */
    }
}

/* State of one URL transfer; owned by the calling thread. */
typedef struct {
    const fetcher *f;
    CURL *h;
    uint8_t *buf;
    size_t len, cap;
    int toobig;     /* body passed max_bytes */
    int nomem;      /* growing the buffer failed */
    int http_error; /* status >= 300 on the first body bytes: not collected */
    fetch__guard g;
} xfer;

/* Ends the transfer (CURLE_ABORTED_BY_CALLBACK) once fetch_abort() was called. */
static int xfer_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow)
{
    const fetcher *f = ud;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return atomic_load(&f->aborting) ? 1 : 0;
}

void fetch_abort(fetcher *f)
{
    if (f != NULL)
        atomic_store(&f->aborting, 1);
}

static size_t xfer_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;

    if (x->len == 0 && x->buf == NULL) {
        /* First body bytes: an error page is not worth downloading. */
        long status = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 300) {
            x->http_error = 1;
            return 0;
        }
    }
    if (n > x->f->max_bytes - x->len) {
        x->toobig = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 64 * 1024;
        uint8_t *nb;
        while (cap < x->len + n)
            cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        if (cap > x->f->max_bytes)
            cap = x->f->max_bytes;
        nb = realloc(x->buf, cap);
        if (nb == NULL) {
            x->nomem = 1;
            return 0;
        }
        x->buf = nb;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, ptr, n);
    x->len += n;
    return n;
}

static int fetch_url(fetcher *f, const char *url, fetch_result *out, err_t *e)
{
    char errbuf[CURL_ERROR_SIZE];
    char *shown = fetch__url_redacted(url);
    const char *u = shown ? shown : "(unparsable URL)";
    char *eff = NULL;
    const char *effective = NULL;
    xfer x;
    CURLcode cc;
    long status = 0;
    int rc = ERR_OK;

    /* 0 = no curl-side limit; the write callback enforces the cap in any case. */
    curl_off_t max_size = f->max_bytes > (size_t)INT64_MAX ? 0 : (curl_off_t)f->max_bytes;

    memset(&x, 0, sizeof x);
    x.f = f;
    x.g.allow_private = f->allow_private;
    x.g.exempt_port = f->exempt_port;
    void *h = NULL;
    rc = fetch__curl_new(url, &x.g, xfer_write, &x, errbuf, &h, e);
    if (rc) {
        curl_free(shown);
        return rc;
    }
    x.h = h;
    if (curl_easy_setopt(x.h, CURLOPT_MAXFILESIZE_LARGE, max_size) != CURLE_OK) {
        curl_easy_cleanup(x.h);
        curl_free(shown);
        return err_set(e, ERR_INTERNAL, "libcurl refused a required option");
    }
    curl_easy_setopt(x.h, CURLOPT_FOLLOWLOCATION, f->max_redirects >= 0 ? 1L : 0L);
    curl_easy_setopt(x.h, CURLOPT_MAXREDIRS, (long)(f->max_redirects >= 0 ? f->max_redirects : 0));
    curl_easy_setopt(x.h, CURLOPT_CONNECTTIMEOUT_MS, f->connect_timeout_ms);
    curl_easy_setopt(x.h, CURLOPT_TIMEOUT_MS, f->timeout_ms);
    curl_easy_setopt(x.h, CURLOPT_XFERINFOFUNCTION, xfer_progress);
    curl_easy_setopt(x.h, CURLOPT_XFERINFODATA, f);
    curl_easy_setopt(x.h, CURLOPT_NOPROGRESS, 0L);

    cc = curl_easy_perform(x.h);
    curl_easy_getinfo(x.h, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_getinfo(x.h, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK && effective &&
        strcmp(effective, url) != 0)
        eff = fetch__url_redacted(effective);

    /*
     * Order matters: a refused connect surfaces as CURLE_COULDNT_CONNECT; an
     * error status wins over the size cap (curl checks Content-Length against
     * MAXFILESIZE even on a 500, which must stay transient).
     */
    if (cc != CURLE_OK && x.g.refused) {
        rc = fetch__refused(&x.g, u, eff, e);
    } else if (x.http_error || status >= 400 ||
               (cc == CURLE_OK && (status < 200 || status > 299))) {
        const char *why = status >= 300 && status <= 399 ? " redirect not followed" : "";
        rc = err_set(e, fetch__classify_http(status), "GET %s: HTTP %ld%s%s%s%s", u, status, why,
                     eff ? " (at " : "", eff ? eff : "", eff ? ")" : "");
    } else if (x.toobig || cc == CURLE_FILESIZE_EXCEEDED) {
        rc = err_set(e, ERR_TOOBIG, "GET %s: body is more than the limit of %zu bytes", u,
                     f->max_bytes);
    } else if (x.nomem) {
        rc = err_set(e, ERR_NOMEM, "GET %s: out of memory for the body", u);
    } else if (cc == CURLE_ABORTED_BY_CALLBACK && atomic_load(&f->aborting)) {
        rc = err_set(e, ERR_UNAVAILABLE, "GET %s: aborted: inferd is shutting down", u);
    } else if (cc != CURLE_OK) {
        rc = err_set(e, fetch__classify_curl(cc), "GET %s: %s%s%s%s", u,
                     errbuf[0] ? errbuf : curl_easy_strerror(cc), eff ? " (at " : "",
                     eff ? eff : "", eff ? ")" : "");
    }

    if (rc == ERR_OK) {
        if (x.buf == NULL)
            x.buf = xmalloc(1); /* "data is set" even for an empty body */
        out->data = x.buf;
        out->len = x.len;
        out->http_status = status;
    } else {
        free(x.buf);
    }
    curl_easy_cleanup(x.h);
    curl_free(shown);
    curl_free(eff);
    return rc;
}

/* ---------------------------------------------------------------- sources */

static int upload_check(const fetcher *f, const source *s, char path[PATH_MAX], err_t *e)
{
    struct stat st;

    if (f->spool_dir == NULL)
        return err_set(e, ERR_FORBIDDEN, "uploads are disabled: no spool directory");
    if (!is_sha_hex(s->val, s->vlen))
        return err_set(e, ERR_INVAL, "source.upload must be 64 lower-case hex digits");
    if (snprintf(path, PATH_MAX, "%s/%s", f->spool_dir, s->val) >= PATH_MAX)
        return err_set(e, ERR_INVAL, "spool dir %s: path too long", f->spool_dir);
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_NOENT, "upload %s is not in the spool", s->val);
        return err_set(e, ERR_IO, "upload %s: %s", s->val, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return err_set(e, ERR_INVAL, "upload %s is not a regular file", s->val);
    if ((unsigned long long)st.st_size > (unsigned long long)f->max_bytes)
        return err_set(e, ERR_TOOBIG, "upload %s is %lld bytes, more than the limit of %zu", s->val,
                       (long long)st.st_size, f->max_bytes);
    if (s->has_size && (long long)s->size != (long long)st.st_size)
        return err_set(e, ERR_CHECKSUM, "upload %s is %lld bytes, the source says %lld", s->val,
                       (long long)st.st_size, (long long)s->size);
    return ERR_OK;
}

int fetch_check_source(fetcher *f, const char *source_json, err_t *e)
{
    char path[PATH_MAX];
    char *real = NULL;
    source s;
    int rc = source_parse(source_json, &s, e);

    if (rc)
        return rc;
    switch (s.kind) {
    case SRC_PATH:
        rc = resolve_path(f, s.val, s.vlen, &real, e);
        free(real);
        break;
    case SRC_URL:
        rc = url_check(f, s.val, s.vlen, e);
        break;
    case SRC_UPLOAD:
        rc = upload_check(f, &s, path, e);
        break;
    }
    source_clear(&s);
    return rc;
}

int fetch_source(fetcher *f, const char *source_json, fetch_result *out, err_t *e)
{
    char path[PATH_MAX];
    char hex[65];
    source s;
    int rc;

    memset(out, 0, sizeof *out);
    rc = source_parse(source_json, &s, e);
    if (rc)
        return rc;
    if (s.kind == SRC_UPLOAD && is_sha_hex(s.val, s.vlen)) {
        memcpy(out->upload, s.val, 65);
        snprintf(out->shown, sizeof out->shown, "upload %.12s", s.val);
    } else if (s.kind == SRC_PATH) {
        snprintf(out->shown, sizeof out->shown, "%.*s", (int)s.vlen, s.val);
    } else {
        snprintf(out->shown, sizeof out->shown, "the image"); /* a URL may carry credentials */
    }
    switch (s.kind) {
    case SRC_PATH:
        rc = resolve_path(f, s.val, s.vlen, &out->path, e);
        break;
    case SRC_URL:
        rc = url_check(f, s.val, s.vlen, e);
        if (rc == ERR_OK)
            rc = fetch_url(f, s.val, out, e);
        break;
    case SRC_UPLOAD:
        rc = upload_check(f, &s, path, e);
        if (rc)
            break;
        rc = sha256_file_hex(path, hex, e);
        if (rc)
            break;
        if (strcmp(hex, s.val) != 0) {
            rc = err_set(e, ERR_CHECKSUM, "upload %s: content has sha256 %s", s.val, hex);
            break;
        }
        out->path = xstrdup(path);
        break;
    }
    source_clear(&s);
    if (rc) {
        /* The bytes go; what the source said stays (the caller names it, releases its upload). */
        free(out->path);
        free(out->data);
        out->path = NULL;
        out->data = NULL;
        out->len = 0;
        out->http_status = 0;
    }
    return rc;
}
