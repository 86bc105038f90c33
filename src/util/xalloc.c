/*
 * util/xalloc.c — aborting allocators behind xalloc.h.
 */
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static void oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "inferd: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *xalloc__malloc(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n, file, line);
    return p;
}

void *xalloc__calloc(size_t n, size_t m, const char *file, int line)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (p == NULL)
        oom(n * m, file, line);
    return p;
}

void *xalloc__realloc(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n, file, line);
    return q;
}

char *xalloc__strdup(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = xalloc__malloc(n, file, line);
    memcpy(p, s, n);
    return p;
}

void xalloc_keep_freed(void)
{
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
    /* 32 MB is glibc's largest mmap threshold on 64-bit; setting it turns the dynamic one off. */
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 512 * 1024 * 1024);
#endif
}
