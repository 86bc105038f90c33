/*
 * util/xalloc.h — small allocations that abort with file:line on OOM.
 *
 * For sizes that come from input, check against a limit first and use plain
 * malloc with an ERR_NOMEM / ERR_TOOBIG path instead.
 */
#ifndef INFERD_UTIL_XALLOC_H
#define INFERD_UTIL_XALLOC_H

#include <stddef.h>

#define xmalloc(n) xalloc__malloc((n), __FILE__, __LINE__)
#define xcalloc(n, m) xalloc__calloc((n), (m), __FILE__, __LINE__)
#define xrealloc(p, n) xalloc__realloc((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xalloc__strdup((s), __FILE__, __LINE__)

/* All return memory the caller frees with free(); never NULL. */
void *xalloc__malloc(size_t n, const char *file, int line);
void *xalloc__calloc(size_t n, size_t m, const char *file, int line);
void *xalloc__realloc(void *p, size_t n, const char *file, int line);
char *xalloc__strdup(const char *s, const char *file, int line);

#endif
