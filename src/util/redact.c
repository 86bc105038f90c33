/*
 * util/redact.c — see redact.h. Plain string surgery: the URL is never
 * parsed by a library that might normalise or reject it, because what is
 * logged must be what the operator wrote, minus the secrets.
 */
#include "util/redact.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/xalloc.h"

static const char *const redact__names[] = {
    "password", "passwd", "pass",         "pwd",     "sslpassword", "secret",
    "token",    "access_token", "api_key", "apikey", "auth",
};

static int redact__secret(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof redact__names / sizeof redact__names[0]; i++)
        if (strlen(redact__names[i]) == len && strncasecmp(name, redact__names[i], len) == 0)
            return 1;
    return 0;
}

char *redact_url(const char *url)
{
    if (url == NULL)
        return NULL;
    size_t n = strlen(url);
    /* Every redaction shortens or keeps the text but for "***" on an empty value. */
    char *out = xmalloc(n * 2 + 16);
    size_t o = 0;
    const char *p = url;
    const char *auth = strstr(url, "://");
    if (auth != NULL) {
        auth += 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *q = auth; q < auth + alen; q++)
            if (*q == '@')
                at = q; /* the last '@' ends the user info */
        const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon != NULL) {
            memcpy(out, url, (size_t)(colon + 1 - url));
            o = (size_t)(colon + 1 - url);
            memcpy(out + o, "***", 3);
            o += 3;
            p = at;
        }
    }
    const char *query = strchr(p, '?');
    if (query == NULL) {
        memcpy(out + o, p, strlen(p) + 1);
        return out;
    }
    memcpy(out + o, p, (size_t)(query + 1 - p));
    o += (size_t)(query + 1 - p);
    p = query + 1;
    while (*p != '\0') {
        size_t plen = strcspn(p, "&#");
        const char *eq = memchr(p, '=', plen);
        if (eq != NULL && redact__secret(p, (size_t)(eq - p))) {
            memcpy(out + o, p, (size_t)(eq + 1 - p));
            o += (size_t)(eq + 1 - p);
            memcpy(out + o, "***", 3);
            o += 3;
        } else {
            memcpy(out + o, p, plen);
            o += plen;
        }
        p += plen;
        if (*p == '#') {
            memcpy(out + o, p, strlen(p));
            o += strlen(p);
            break;
        }
        if (*p == '&')
            out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}
