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
 * `max_redirects` redirects, http/https only (redirects too), no proxy (the
 * *_proxy environment variables are ignored, so the guard below sees the real
 * target), and the address of every connection curl opens — each address it
 * tries, for the first request and after every redirect — is checked just
 * before the connect: loopback, private (RFC 1918, fc00::/7), link-local,
 * CGNAT, multicast, reserved and unspecified addresses (also when embedded
 * in IPv6: ::ffff:a.b.c.d, 64:ff9b::/96, 2002::/16) are refused unless
 * allow_private is set. Checking at connect time rather than after our own
 * DNS lookup closes the DNS-rebinding gap (curl resolves again).
 *
 * Errors are classified for the retry policy (err_is_transient): a timeout,
 * a refused or reset connection, a failed DNS lookup, HTTP 408/429/5xx are
 * transient (ERR_TIMEOUT, ERR_UNAVAILABLE); HTTP 404/410 is ERR_NOENT, other
 * 4xx, an unfollowed 3xx or too many redirects ERR_FETCH, a refused address
 * or scheme ERR_FORBIDDEN, an oversized body ERR_TOOBIG — permanent.
 * Messages name the URL with any user:password removed.
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
    const char *media_root; /* NULL or "": path sources are refused (ERR_FORBIDDEN) */
    const char *spool_dir;  /* where uploads live (created, mode 0700, when missing);
                               NULL or "": upload sources and fetch_spool are refused */
    size_t max_bytes;       /* size cap for any source (URL body, file, upload); 0 = 64 MiB */
    int connect_timeout_ms; /* 0 = 5000 */
    int timeout_ms;         /* whole transfer; 0 = 30000 */
    int max_redirects;      /* 0 = 5; negative = none followed */
    int allow_private;      /* allow loopback/private/link-local URL targets */
} fetch_opts;

/*
 * Initialises libcurl for the process. Call once at start, before threads
 * use fetchers; later calls are no-ops (fetch_new also calls it). Returns
 * ERR_OK, or ERR_INTERNAL when libcurl cannot be initialised.
 * fetch_global_cleanup releases libcurl; call it once at exit, after every
 * fetcher is freed. Both are serialised by a lock.
 */
int fetch_global_init(err_t *e);
void fetch_global_cleanup(void);

/*
 * `*out` owned by the caller: fetch_free(). Resolves media_root (ERR_NOENT
 * when missing, ERR_INVAL when not a directory) and creates spool_dir
 * (ERR_IO). On failure `*out` is NULL. fetch_free(NULL) is a no-op.
 */
int fetch_new(const fetch_opts *opts, fetcher **out, err_t *e);
void fetch_free(fetcher *f);

/*
 * The fetched bytes. Exactly one of `path` (a file to read: the resolved
 * media-root file or the spooled upload) or `data` (downloaded bytes; not
 * NULL even when len is 0) is set. Owned by the struct: release with
 * fetch_result_clear(), which zeroes it (NULL is a no-op).
 */
typedef struct {
    char *path;
    uint8_t *data;
    size_t len;
    long http_status; /* for URLs; 0 otherwise */
    /*
     * What the source said, filled as soon as it parsed (also when the
     * fetch then fails), so that callers need not parse it again: the
     * upload's sha256 ("" for other kinds) and how to name the image to the
     * client in messages (its path, its URL, or "upload <sha prefix>").
     */
    char upload[65];
    char shown[320];
} fetch_result;

void fetch_result_clear(fetch_result *r);

/*
 * Validates a job source object (JSON text, see store.h job.source) without
 * fetching or any network use: an object with exactly one of "path", "url",
 * "upload" and nothing else but "size" beside "upload" (ERR_INVAL otherwise);
 * a path resolvable under the media root (ERR_FORBIDDEN when it escapes or
 * no root is configured, ERR_NOENT when missing, ERR_INVAL when not a
 * regular file, ERR_TOOBIG beyond max_bytes); a URL with http/https scheme
 * and a host (ERR_INVAL), whose host, when it is a literal IP address, is not
 * refused by the guard (ERR_FORBIDDEN); an upload of 64 lower-case hex
 * digits (ERR_INVAL) present in the spool (ERR_NOENT) whose "size", when
 * given, is its size (ERR_CHECKSUM). Used by the API to reject bad requests
 * with 4xx at once.
 */
int fetch_check_source(fetcher *f, const char *source_json, err_t *e);

/*
 * Fetches a job source (JSON text) into `out`, which is zeroed first; on
 * failure only its `upload` and `shown` stay set (once the source parsed).
 * Runs the checks of fetch_check_source, then: a path is
 * returned resolved; an upload is re-hashed and must match its name
 * (ERR_CHECKSUM); a URL is downloaded into memory. Errors classified as
 * above.
 */
int fetch_source(fetcher *f, const char *source_json, fetch_result *out, err_t *e);

/*
 * Spools `len` bytes of an upload: writes <spool>/<sha256> atomically (temp
 * file in the spool dir, fsync, rename, fsync of the dir; nothing when a file
 * of that name and size exists) and writes the hex digest to `sha_out`.
 * ERR_TOOBIG beyond max_bytes, ERR_FORBIDDEN without a spool dir, ERR_IO on
 * disk errors (no temp file is left behind). fetch_upload_* below do the
 * same for a body that arrives in pieces.
 */
int fetch_spool(fetcher *f, const void *data, size_t len, char sha_out[65], err_t *e);

/*
 * An upload spooled as it arrives, so that a request body is never held in
 * memory: begin creates a temp file in the spool dir (ERR_FORBIDDEN without
 * one, ERR_IO), write appends and hashes (ERR_TOOBIG once max_bytes would be
 * passed, ERR_IO; either way the upload is useless and must be aborted),
 * commit makes it <spool>/<sha256> as fetch_spool does and writes the digest
 * into sha_out, abort removes the temp file. commit and abort free the
 * upload whatever happens; abort(NULL) is a no-op. One thread at a time.
 */
typedef struct fetch_upload fetch_upload;
int fetch_upload_begin(fetcher *f, fetch_upload **out, err_t *e);
int fetch_upload_write(fetch_upload *u, const void *data, size_t n, err_t *e);
size_t fetch_upload_size(const fetch_upload *u);
/* The temp file holding the bytes so far, until commit or abort (for a decode in place). */
const char *fetch_upload_path(const fetch_upload *u);
int fetch_upload_commit(fetch_upload *u, char sha_out[65], err_t *e);
void fetch_upload_abort(fetch_upload *u);

/*
 * Spooled uploads are deleted when nothing needs them any more: when the
 * last queued or running job that reads one ends (the worker, after its
 * final commit), with its asset (DELETE /v1/assets/{id}), and by a sweep for
 * whatever a crash left behind.
 */

/* The upload digest of a job source {"upload": SHA, ...} into sha[65]; 0 for other sources. */
int fetch_upload_sha(const char *source_json, char sha[65]);

/*
 * Removes <spool>/<sha> unless it was spooled again after `not_after_ms`
 * (epoch ms; the end of the job that used it, or the creation of that job:
 * an identical upload committed since belongs to a job about to be queued).
 * Returns 1 removed, 0 kept or absent (or no spool dir), ERR_INVAL for a bad
 * digest, ERR_IO.
 */
int fetch_spool_release(fetcher *f, const char *sha, int64_t not_after_ms, err_t *e);

#define FETCH_SPOOL_TEMP_AGE_MS (6 * 3600 * 1000) /* an upload in flight for longer is dead */

typedef struct {
    int64_t files, bytes;           /* what the spool holds after the sweep */
    int64_t removed, removed_bytes; /* what the sweep deleted */
} fetch_spool_stats;

/*
 * Sweeps the spool dir: removes every upload whose digest is not in
 * keep[0..nkeep) (sorted, as store_upload_shas gives them) and whose file is
 * at least `min_age_ms` old (younger ones may belong to a request between
 * spooling and queueing its job), and temp files older than
 * FETCH_SPOOL_TEMP_AGE_MS. With min_age_ms < 0 nothing is removed: `st`
 * only counts. Fills `st`. ERR_IO when the dir cannot be read.
 */
int fetch_spool_sweep(fetcher *f, char *const *keep, int nkeep, int64_t min_age_ms,
                      fetch_spool_stats *st, err_t *e);

/*
 * Makes every URL transfer in flight on `f` end at once with ERR_UNAVAILABLE
 * ("aborted: inferd is shutting down"), and every later one too: called at
 * shutdown when the grace period is over, so that a slot stuck in a slow
 * download does not hold the process. Irreversible; thread-safe.
 */
void fetch_abort(fetcher *f);

/*
 * Whether a numeric address (IPv4 dotted quad or IPv6 text, no brackets or
 * zone) is one the guard refuses by default: 1 refused, 0 public, -1 when
 * `addr` is not a numeric address (so `if (fetch_addr_is_private(a))` fails
 * safe).
 */
int fetch_addr_is_private(const char *addr);

#endif
