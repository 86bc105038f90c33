/*
 * client/index.h — `inferd index DIR...`: a client of a running inferd that
 * submits a photo folder as path jobs and follows them to their end.
 *
 * It walks each DIR, picks image files by their first bytes, maps each to an
 * asset id (its path relative to the media root), skips files whose size
 * and modification time match what the state file remembers, submits the
 * rest through POST /v1/jobs/batch (or POST /v1/jobs one by one with
 * --batch 1), and counts their ends from GET /v1/events. Progress goes to
 * stderr (a live line on a terminal, periodic lines otherwise), the summary
 * to stdout. --watch keeps submitting what inotify reports until Ctrl-C.
 */
#ifndef INFERD_CLIENT_INDEX_H
#define INFERD_CLIENT_INDEX_H

#include <stddef.h>

/*
 * Runs the command: argv[0] is its name in messages. Returns the exit
 * status (see `inferd help index`): 0 every file done, 1 a file failed or
 * was refused, 2 usage, 3 the server could not be reached, 130 interrupted.
 */
int index_main(int argc, char **argv);

/*
 * What the first bytes of a file say it is: "jpeg", "png", "webp", "gif",
 * "tiff", "heif", "avif", or NULL for anything else. `n` bytes at `head`
 * (32 are enough). Static storage.
 */
const char *index_sniff(const unsigned char *head, size_t n);

#endif
