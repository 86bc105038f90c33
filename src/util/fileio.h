/*
 * util/fileio.h — small POSIX file helpers shared by the modules that write
 * files (upload spool, model downloads).
 */
#ifndef INFERD_UTIL_FILEIO_H
#define INFERD_UTIL_FILEIO_H

#include <stddef.h>

/*
 * Writes all `n` bytes at `p` to `fd`, retrying short writes and EINTR.
 * Returns 0, or -1 with errno set by the failing write().
 */
int fileio_write_all(int fd, const void *p, size_t n);

#endif
