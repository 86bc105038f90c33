/*
 * fetch/fetch_int.h — internals of the fetch subsystem shared between its
 * files and its unit test; not for other subsystems.
 */
#ifndef INFERD_FETCH_FETCH_INT_H
#define INFERD_FETCH_FETCH_INT_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "fetch/fetch.h"

/*
 * Why the SSRF guard refuses the address `sa` (AF_INET or AF_INET6): a short
 * static name such as "loopback" or "private", or NULL when it is public.
 * Other families are "unsupported family". Pure; no I/O.
 */
const char *fetch__addr_class(const struct sockaddr *sa);

/* The err code for a libcurl CURLcode (passed as int to keep curl.h out). */
int fetch__classify_curl(int curlcode);

/* The err code for a final HTTP status that is not 2xx. */
int fetch__classify_http(long status);

/*
 * Tests only: connections to TCP port `port` on any address pass the guard,
 * so a test can reach a first hop on 127.0.0.1 and still see the guard
 * refuse a redirect to another port. Call before the fetcher is shared;
 * 0 turns it off.
 */
void fetch__test_exempt_port(fetcher *f, int port);

/*
 * Writes the numeric text of the IPv4 or IPv6 socket address `sa` ("10.0.0.1",
 * "::1") into buf[size]; an empty string for other families.
 */
void fetch__addr_text(const struct sockaddr *sa, char *buf, size_t size);

/*
 * `url` for messages: normalised by curl, without user, password and login
 * options. Caller frees with curl_free(). NULL when curl cannot parse it.
 */
char *fetch__url_redacted(const char *url);

/*
 * The SSRF guard of one transfer (guard.c): what it lets through, and the
 * first address it refused. Owned by the caller, alive for the transfer.
 */
typedef struct {
    int allow_private; /* --allow-private-urls */
    int exempt_port;   /* tests only (fetch__test_exempt_port); 0 = none */
    int refused;       /* set by the guard: a connect was refused */
    const char *refused_class;
    char refused_addr[INET6_ADDRSTRLEN];
} fetch__guard;

/* libcurl's write callback (curl_write_callback), spelled out to keep curl.h out. */
typedef size_t (*fetch__write_fn)(char *ptr, size_t size, size_t nmemb, void *ud);

/*
 * A new libcurl easy handle (`*out`, a CURL *: curl_easy_cleanup() it) for
 * a GET of `url` with the guard `g` in its socket callback, http and https
 * only (redirects too), no proxy from the environment, no signals, inferd's
 * user agent, error text in `errbuf` (CURL_ERROR_SIZE bytes) and the body
 * handed to `write` with `wdata`. The caller adds redirects, timeouts and
 * limits. ERR_NOMEM, or ERR_INTERNAL when libcurl refused an option the
 * guard depends on.
 */
int fetch__curl_new(const char *url, fetch__guard *g, fetch__write_fn write, void *wdata,
                    char *errbuf, void **out, err_t *e);

/*
 * Sets `e` to the ERR_FORBIDDEN of a connect the guard refused, naming the
 * (redacted) URL, the address and its class, and `at` (the redirect hop
 * where it happened; may be NULL). Returns ERR_FORBIDDEN.
 */
int fetch__refused(const fetch__guard *g, const char *shown_url, const char *at, err_t *e);

#endif
