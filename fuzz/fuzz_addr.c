/*
 * fuzz/fuzz_addr.c — libFuzzer target for the SSRF guard's address
 * classification and for URL redaction.
 *
 * The input is read three ways: as address text (fetch_addr_is_private, which
 * parses IPv4 and IPv6 literals), as the raw bytes of an IPv4 or IPv6 socket
 * address (fetch__addr_class, fetch__addr_text), and as a URL whose secrets
 * redact_url masks. The checks: an IPv4 address and its IPv4-mapped IPv6
 * form are classified alike, and a redacted URL never contains the password
 * it hid.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/fetch.h"
#include "fetch/fetch_int.h"
#include "fuzz.h"
#include "util/redact.h"

static int same_class(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    fetch_addr_is_private(text);

    char *shown = redact_url(text);
    FUZZ_CHECK(shown != NULL);
    /* A password in user info ("scheme://user:PASS@host") must not survive. */
    const char *scheme = strstr(text, "://");
    if (scheme != NULL) {
        const char *auth = scheme + 3;
        const char *at = strchr(auth, '@');
        const char *colon = strchr(auth, ':');
        size_t hostpart = strcspn(auth, "/?#");
        if (at != NULL && colon != NULL && colon < at && (size_t)(at - auth) < hostpart &&
            at - colon > 8 && memchr(colon + 1, '*', (size_t)(at - colon - 1)) == NULL) {
            char pass[64];
            size_t n = (size_t)(at - colon - 1) < sizeof pass - 1 ? (size_t)(at - colon - 1)
                                                                   : sizeof pass - 1;
            memcpy(pass, colon + 1, n);
            pass[n] = '\0';
            /* Only when the password text occurs nowhere else in the URL. */
            const char *first = strstr(text, pass);
            if (first != NULL && strstr(first + 1, pass) == NULL)
                FUZZ_CHECK(strstr(shown, pass) == NULL);
        }
    }
    free(shown);
    free(text);

    if (size >= 4) {
        struct sockaddr_in in = {.sin_family = AF_INET};
        memcpy(&in.sin_addr, data, 4);
        struct sockaddr_in6 m = {.sin6_family = AF_INET6};
        m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&m.sin6_addr.s6_addr[12], data, 4);
        FUZZ_CHECK(same_class(fetch__addr_class((struct sockaddr *)&in),
                              fetch__addr_class((struct sockaddr *)&m)));
        char buf[INET6_ADDRSTRLEN + 8];
        fetch__addr_text((struct sockaddr *)&in, buf, sizeof buf);
        /* The text form classifies as the address does. */
        FUZZ_CHECK(fetch_addr_is_private(buf) ==
                   (fetch__addr_class((struct sockaddr *)&in) != NULL));
    }
    if (size >= 16) {
        struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
        memcpy(&in6.sin6_addr, data, 16);
        const char *cls = fetch__addr_class((struct sockaddr *)&in6);
        char buf[INET6_ADDRSTRLEN + 8];
        fetch__addr_text((struct sockaddr *)&in6, buf, sizeof buf);
        FUZZ_CHECK(fetch_addr_is_private(buf) == (cls != NULL));
    }
    return 0;
}
