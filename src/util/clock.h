/*
 * util/clock.h — the monotonic clock in the units inferd uses: milliseconds
 * for timeouts and leases, fractional milliseconds for stage timings, and
 * absolute CLOCK_MONOTONIC deadlines for pthread_cond_timedwait on condition
 * variables made by clock_cond_init.
 * Nothing here allocates.
 */
#ifndef INFERD_UTIL_CLOCK_H
#define INFERD_UTIL_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC (arbitrary origin). */
int64_t clock_mono_ms(void);

/* The same, with sub-millisecond precision, for durations. */
double clock_mono_msf(void);

/* *ts = now + ms_from_now (>= 0) on CLOCK_MONOTONIC, normalised. */
void clock_deadline(struct timespec *ts, int64_t ms_from_now);

/* Initialises `c` so that pthread_cond_timedwait takes CLOCK_MONOTONIC deadlines (immune to
 * wall-clock steps); destroy it with pthread_cond_destroy. */
void clock_cond_init(pthread_cond_t *c);

#endif
