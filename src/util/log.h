/*
 * util/log.h — one logging call: level, subsystem, key=value message, to stderr.
 *
 * Threading: log_msg may be called from any thread; each line is written with
 * one fprintf so lines from different threads do not interleave.
 */
#ifndef INFERD_UTIL_LOG_H
#define INFERD_UTIL_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level;

/* Messages below `level` are dropped. Set once at start (not thread-safe). */
void log_set_level(log_level level);

void log_msg(log_level level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(sub, ...) log_msg(LOG_DEBUG, sub, __VA_ARGS__)
#define log_info(sub, ...) log_msg(LOG_INFO, sub, __VA_ARGS__)
#define log_warn(sub, ...) log_msg(LOG_WARN, sub, __VA_ARGS__)
#define log_error(sub, ...) log_msg(LOG_ERROR, sub, __VA_ARGS__)

#endif
