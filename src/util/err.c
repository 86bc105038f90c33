/*
 * util/err.c — string tables and helpers for the error type in err.h.
 */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *err_strerror(int code)
{
    switch (code) {
#define ERR__TEXT(name, num, api, text)                                                            \
    case num:                                                                                      \
        return text;
        ERR_MAP(ERR__TEXT)
#undef ERR__TEXT
    }
    return "unknown error";
}

const char *err_name(int code)
{
    switch (code) {
#define ERR__NAME(name, num, api, text)                                                            \
    case num:                                                                                      \
        return api;
        ERR_MAP(ERR__NAME)
#undef ERR__NAME
    }
    return "unknown";
}

int err_is_transient(int code)
{
    return code == ERR_IO || code == ERR_BUSY || code == ERR_TIMEOUT || code == ERR_UNAVAILABLE ||
           code == ERR_NOMEM;
}

int err_set(err_t *e, int code, const char *fmt, ...)
{
    if (e == NULL)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

void err_replace(err_t *e, const char *from, const char *to)
{
    if (e == NULL || from == NULL || from[0] == '\0')
        return;
    char out[sizeof e->msg];
    size_t n = 0, flen = strlen(from), tlen = strlen(to);
    const char *p = e->msg;
    while (*p != '\0' && n + 1 < sizeof out) {
        if (strncmp(p, from, flen) == 0) {
            size_t take = tlen < sizeof out - 1 - n ? tlen : sizeof out - 1 - n;
            memcpy(out + n, to, take);
            n += take;
            p += flen;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    memcpy(e->msg, out, n + 1);
}

void err_clear(err_t *e)
{
    if (e == NULL)
        return;
    e->code = ERR_OK;
    e->msg[0] = '\0';
}
