/*
 * fetch/fetch.h — gets the bytes of a job's source: an upload spooled to disk,
 * a file under the media root, or an http(s) URL.
 *
 * Uploads are spooled by the API under <data>/uploads/<sha256> (content
 * addressed: the same image uploaded twice is stored once) before the job is
 * accepted, so an accepted job never depends on the client again. Paths are
 * resolved (realpath) and must lie under the configured media root, so
 * neither "..", an absolute path elsewhere nor a symlink can escape it. URLs
 * are fetched with libcurl: connect and total timeouts, a size cap, at most
 * `max_redirects` redirects, http/https only, and every address the name
 * resolves to is checked before connecting: loopback, private (RFC 1918,
 * fc00::/7), link-local, CGNAT, multicast and unspecified addresses are
 * refused unless allow_private is set.
 *
 * Errors are classified for the retry policy (err_is_transient): a timeout,
 * a refused or reset connection, HTTP 408/429/5xx are transient (ERR_TIMEOUT,
 * ERR_UNAVAILABLE); HTTP 404/410 is ERR_NOENT, other 4xx ERR_FETCH, a
 * refused address ERR_FORBIDDEN, an oversized body ERR_TOOBIG — permanent.
 *
 * Threading: a fetcher is immutable after fetch_new; fetch_* may run
 * concurrently from any thread (each call uses its own curl easy handle).
 */
#ifndef INFERD_FETCH_FETCH_H
#define INFERD_FETCH_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct fetcher fetcher;

typedef struct {
    const char *media_root;  /* NULL: path sources are refused */
    const char *spool_dir;   /* where uploads live (created when missing) */
    size_t max_bytes;        /* size cap for any source; 0 = 64 MiB */
    int connect_timeout_ms;  /* 0 = 5000 */
    int timeout_ms;          /* whole transfer; 0 = 30000 */
    int max_redirects;       /* 0 = 5; negative = none followed */
    int allow_private;       /* allow loopback/private/link-local URL targets */
} fetch_opts;

/* Whether the process-wide libcurl init has run; call once at start. */
int fetch_global_init(err_t *e);
void fetch_global_cleanup(void);

/* `*out` owned by the caller: fetch_free(). Creates spool_dir. */
int fetch_new(const fetch_opts *opts, fetcher **out, err_t *e);
void fetch_free(fetcher *f);

/*
 * The fetched bytes. Exactly one of `path` (a file to read: media-root file
 * or spooled upload) or `data` (downloaded bytes) is set. Owned by the
 * struct: release with fetch_result_clear().
 */
typedef struct {
    char *path;
    uint8_t *data;
    size_t len;
    long http_status; /* for URLs; 0 otherwise */
} fetch_result;

void fetch_result_clear(fetch_result *r);

/*
 * Validates a job source object (JSON text, see store.h job.source) without
 * fetching: exactly one of "path", "url", "upload"; a path resolvable under
 * the media root (ERR_FORBIDDEN when it escapes or no root is configured,
 * ERR_NOENT when missing); a URL with http/https scheme and a host
 * (ERR_INVAL). Used by the API to reject bad requests with 4xx at once.
 */
int fetch_check_source(fetcher *f, const char *source_json, err_t *e);

/* Fetches a job source (JSON text) into `out`. Errors classified as above. */
int fetch_source(fetcher *f, const char *source_json, fetch_result *out, err_t *e);

/*
 * Spools `len` bytes of an upload: writes <spool>/<sha256> atomically (temp
 * file + rename; nothing when it exists) and writes the hex digest to
 * `sha_out`. ERR_TOOBIG beyond max_bytes, ERR_IO on disk errors.
 */
int fetch_spool(fetcher *f, const void *data, size_t len, char sha_out[65], err_t *e);

/* Whether a numeric address (IPv4 or IPv6 text) is one the guard refuses by default. */
int fetch_addr_is_private(const char *addr);

#endif
