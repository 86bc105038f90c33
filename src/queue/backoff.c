/*
 * queue/backoff.c — the retry delay policy of the worker, as a pure function
 * kept apart from the threads in worker.c so that it is tested alone
 * (tests/unit/test_backoff.c) and linked without the store or the pipeline.
 */
#include "queue/worker.h"

int64_t worker_backoff_ms(int attempt, int64_t base, int64_t cap, double u)
{
    if (attempt < 1)
        attempt = 1;
    if (base < 1)
        base = 1;
    if (cap < base)
        cap = base;
    if (!(u >= 0.0)) /* also catches NaN */
        u = 0.0;
    if (u > 1.0)
        u = 1.0;
    /* Double step by step so that a large attempt count cannot overflow. */
    int64_t d = base;
    for (int i = 1; i < attempt && d < cap; i++)
        d = d > cap / 2 ? cap : d * 2;
    if (d > cap)
        d = cap;
    int64_t out = (int64_t)((double)d * (0.75 + 0.5 * u));
    return out < 1 ? 1 : out;
}
