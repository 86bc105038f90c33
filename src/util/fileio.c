/*
 * util/fileio.c — helpers behind fileio.h.
 */
#include "util/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

int fileio_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int fileio_read_all(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    int rc = buf == NULL ? -1 : 0;
    while (rc == 0) {
        if (n == cap) {
            if (cap > max) {
                errno = EFBIG;
                rc = -1;
                break;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL) {
                rc = -1;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = -1;
        else if (r == 0)
            break;
        else
            n += (size_t)r;
    }
    if (rc == 0 && n > max) {
        errno = EFBIG;
        rc = -1;
    }
    int saved = errno;
    close(fd);
    if (rc != 0) {
        free(buf);
        errno = saved;
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int fileio_mkdir_p(const char *path, unsigned mode, char *failed)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return errno = ENAMETOOLONG, -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) {
            if (failed != NULL)
                memcpy(failed, buf, i + 1);
            return -1;
        }
        buf[i] = saved;
    }
    struct stat st;
    int bad = stat(path, &st) != 0 ? -1 : !S_ISDIR(st.st_mode);
    if (bad != 0 && failed != NULL)
        memcpy(failed, buf, n + 1);
    if (bad > 0)
        errno = ENOTDIR;
    return bad != 0 ? -1 : 0;
}
