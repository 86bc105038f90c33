/*
 * util/err.h — the one error type of inferd.
 *
 * Every fallible function returns an int: ERR_OK (0) on success or a negative
 * code from the X-macro table below. Codes never change meaning once
 * released. Where the caller needs the detail (the failing op, the library's
 * own message), the function also fills an `err_t` passed by the caller:
 * foreign codes (OrtStatus, libvips, errno, jansson, protobuf-c) are
 * translated into a code plus message in the one adapter file that calls the
 * library, and the message is kept.
 */
#ifndef INFERD_UTIL_ERR_H
#define INFERD_UTIL_ERR_H

#include <stddef.h>

/*
 * X(name, number, API name, short text). Numbers and API names (err_name:
 * the "code" of JSON errors and job errors) are stable: append, never
 * renumber or rename.
 */
#define ERR_MAP(X)                                                                                 \
    X(OK, 0, "ok", "ok")                                                                           \
    X(NOMEM, -1, "nomem", "out of memory")                                                         \
    X(INVAL, -2, "invalid", "invalid argument")                                                    \
    X(IO, -3, "io", "input/output error")                                                          \
    X(NOENT, -4, "not_found", "not found")                                                         \
    X(DECODE, -5, "decode", "image could not be decoded")                                          \
    X(TOOBIG, -6, "too_big", "input exceeds a limit")                                              \
    X(MODEL, -7, "model", "model error")                                                           \
    X(MANIFEST, -8, "manifest", "bad model manifest")                                              \
    X(RUNTIME, -9, "runtime", "inference runtime error")                                           \
    X(UNSUPPORTED, -10, "unsupported", "unsupported")                                              \
    X(FORMAT, -11, "format", "malformed input")                                                    \
    X(CHECKSUM, -12, "checksum", "checksum mismatch")                                              \
    X(INTERNAL, -13, "internal", "internal error")                                                 \
    X(LEASE, -14, "lease_lost", "job lease lost")                                                  \
    X(CONFLICT, -15, "conflict", "conflict with the current state")                                \
    X(BUSY, -16, "busy", "resource busy")                                                          \
    X(TIMEOUT, -17, "timeout", "timed out")                                                        \
    X(UNAVAILABLE, -18, "unavailable", "temporarily unavailable")                                  \
    X(FORBIDDEN, -19, "forbidden", "forbidden")                                                    \
    X(FETCH, -20, "fetch", "source could not be fetched")                                          \
    X(UNSUPPORTED_FORMAT, -21, "unsupported_format", "image format not accepted")

typedef enum {
#define ERR__ENUM(name, num, api, text) ERR_##name = (num),
    ERR_MAP(ERR__ENUM)
#undef ERR__ENUM
} err_code;

/* Detail of the last failure: a code and a human-readable message. */
typedef struct {
    int code;
    char msg[512];
} err_t;

/* Returns a static string describing `code`; "unknown error" for others. */
const char *err_strerror(int code);

/* Returns a stable lower-case identifier such as "decode" for JSON output. */
const char *err_name(int code);

/*
 * Fills `e` (which may be NULL) with `code` and a printf-style message and
 * returns `code`, so that a failure reads `return err_set(e, ERR_IO, "...")`.
 */
int err_set(err_t *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Whether a failure with `code` may succeed when retried later: I/O errors,
 * timeouts, a busy database or an unavailable server. Everything else (bad
 * image, missing file, 404, bad request) is permanent.
 */
int err_is_transient(int code);

/*
 * Replaces every occurrence of `from` in e->msg by `to` (truncating at the
 * buffer's size). Used to keep server paths out of messages shown to
 * clients. NULL `e` or empty `from` is a no-op.
 */
void err_replace(err_t *e, const char *from, const char *to);

/* Clears `e` to ERR_OK with an empty message. NULL is a no-op. */
void err_clear(err_t *e);

#endif
