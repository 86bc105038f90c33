/*
 * fetch/fetch_int.h — internals of the fetch subsystem shared between its
 * files and its unit test; not for other subsystems.
 */
#ifndef INFERD_FETCH_FETCH_INT_H
#define INFERD_FETCH_FETCH_INT_H

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

#endif
