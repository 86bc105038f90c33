/*
 * util/sha256.c — SHA-256 through OpenSSL's EVP interface (sha256.h).
 */
#include "util/sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fprintf(stderr, "sha256: out of memory\n");
    abort();
}

void sha256_init(sha256_ctx *c)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        oom();
    c->md = md;
}

void sha256_update(sha256_ctx *c, const void *data, size_t n)
{
    if (n > 0 && EVP_DigestUpdate(c->md, data, n) != 1)
        oom(); /* only fails on a bad context or allocation */
}

void sha256_final(sha256_ctx *c, uint8_t out[32])
{
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(c->md, out, &len) != 1 || len != 32)
        oom();
    sha256_free(c);
}

void sha256_free(sha256_ctx *c)
{
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
}

static void to_hex(const uint8_t d[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

void sha256_hex(const void *data, size_t n, char out[65])
{
    sha256_ctx c;
    uint8_t d[32];
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_final(&c, d);
    to_hex(d, out);
}

int sha256_file_hex(const char *path, char out[65], err_t *e)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return err_set(e, errno == ENOENT ? ERR_NOENT : ERR_IO, "%s: %s", path, strerror(errno));
    sha256_ctx c;
    sha256_init(&c);
    static _Thread_local uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sha256_update(&c, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        sha256_free(&c);
        return err_set(e, ERR_IO, "%s: read error", path);
    }
    uint8_t d[32];
    sha256_final(&c, d);
    to_hex(d, out);
    return ERR_OK;
}
