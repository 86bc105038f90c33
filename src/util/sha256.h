/*
 * util/sha256.h — SHA-256 (FIPS 180-4) for checking model and download files.
 */
#ifndef INFERD_UTIL_SHA256_H
#define INFERD_UTIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
/* Writes the 32-byte digest into `out`. */
void sha256_final(sha256_ctx *c, uint8_t out[32]);

/* Writes the lower-case hex digest (64 chars + NUL) of `n` bytes at `data`. */
void sha256_hex(const void *data, size_t n, char out[65]);

/* Hex digest of the file at `path`; ERR_IO with errno text when unreadable. */
int sha256_file_hex(const char *path, char out[65], err_t *e);

#endif
