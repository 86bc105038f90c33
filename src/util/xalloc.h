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

/*
 * Makes freed memory stay with the process for the next allocation instead
 * of going back to the kernel: blocks up to 32 MB come from malloc's heaps
 * (not each its own mmap), and the heaps are not trimmed below 512 MB. Call
 * once at start, before any thread. Why: every job allocates and frees the
 * same few big buffers (a 12 MP photo decoded at half size is 8 MB, and
 * libvips, the pyramid and the tensors as much again), and glibc's dynamic
 * threshold returned them to the kernel each time, so the next job touched
 * them page by page. A page fault costs ~10 us on the virtual machines we
 * run on: 48 % of a 12 MP decode went to faults and the copies that took
 * them (perf, 2-core VM). The price is that the resident size stays at its
 * high-water mark (a few tens of MB per slot). A no-op where glibc's
 * mallopt() is not there (and under the sanitizers, which ignore it).
 */
void xalloc_keep_freed(void);

#endif
