/*
 * util/fileio.h — small POSIX file helpers shared by the modules that read
 * and write whole files (upload spool, model downloads, manifests).
 */
#ifndef INFERD_UTIL_FILEIO_H
#define INFERD_UTIL_FILEIO_H

#include <stddef.h>

/*
 * Writes all `n` bytes at `p` to `fd`, retrying short writes and EINTR.
 * Returns 0, or -1 with errno set by the failing write().
 */
int fileio_write_all(int fd, const void *p, size_t n);

/*
 * Reads the whole file at `path`, at most `max` bytes, into `*out` (owned by the
 * caller: free(); NUL-terminated, `*len` excludes the NUL). Returns 0, or -1
 * with errno set (EFBIG when the file is longer than `max`).
 */
int fileio_read_all(const char *path, size_t max, char **out, size_t *len);

/*
 * mkdir -p: creates `path` and every missing directory above it with `mode`
 * (minus the umask); directories that exist are left as they are. Returns
 * 0, or -1 with errno set (ENOTDIR when `path` exists and is not a
 * directory, ENAMETOOLONG past PATH_MAX). `failed` (may be NULL, PATH_MAX
 * bytes) receives the directory that could not be made.
 */
int fileio_mkdir_p(const char *path, unsigned mode, char *failed);

#endif
