/*
 * test_backoff.c — the worker's retry delay policy (worker_backoff_ms): growth
 * per attempt, the cap, the jitter bounds and hostile inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue/worker.h"

/* With u = 0.5 the jitter factor is exactly 1: the delay doubles per attempt. */
static void test_growth(void **state)
{
    (void)state;
    assert_int_equal(worker_backoff_ms(1, 1000, 60000, 0.5), 1000);
    assert_int_equal(worker_backoff_ms(2, 1000, 60000, 0.5), 2000);
    assert_int_equal(worker_backoff_ms(3, 1000, 60000, 0.5), 4000);
    assert_int_equal(worker_backoff_ms(4, 1000, 60000, 0.5), 8000);
    assert_int_equal(worker_backoff_ms(6, 1000, 60000, 0.5), 32000);
}

/* The doubled delay stops at the cap, even for absurd attempt counts. */
static void test_cap(void **state)
{
    (void)state;
    assert_int_equal(worker_backoff_ms(7, 1000, 60000, 0.5), 60000);
    assert_int_equal(worker_backoff_ms(100, 1000, 60000, 0.5), 60000);
    assert_int_equal(worker_backoff_ms(1 << 30, 1000, 60000, 0.5), 60000);
    assert_int_equal(worker_backoff_ms(64, INT64_C(1) << 40, INT64_C(1) << 41, 0.5), INT64_C(1)
                                                                                         << 41);
}

/* The jitter keeps every delay within [0.75, 1.25] of the capped delay. */
static void test_jitter_bounds(void **state)
{
    (void)state;
    for (int attempt = 1; attempt <= 10; attempt++) {
        int64_t nominal = worker_backoff_ms(attempt, 100, 5000, 0.5);
        for (int i = 0; i <= 1000; i++) {
            double u = i / 1000.0;
            int64_t d = worker_backoff_ms(attempt, 100, 5000, u);
            assert_true(d >= (int64_t)(nominal * 0.75));
            assert_true(d <= (int64_t)(nominal * 1.25));
        }
        assert_int_equal(worker_backoff_ms(attempt, 100, 5000, 0.0), (int64_t)(nominal * 0.75));
        assert_int_equal(worker_backoff_ms(attempt, 100, 5000, 1.0), (int64_t)(nominal * 1.25));
    }
}

/* Bad inputs are clamped, never produce zero, negative or overflowed delays. */
static void test_clamping(void **state)
{
    (void)state;
    assert_int_equal(worker_backoff_ms(0, 1000, 60000, 0.5), 1000);
    assert_int_equal(worker_backoff_ms(-5, 1000, 60000, 0.5), 1000);
    assert_int_equal(worker_backoff_ms(1, 1000, 60000, -3.0), 750);
    assert_int_equal(worker_backoff_ms(1, 1000, 60000, 7.0), 1250);
    assert_int_equal(worker_backoff_ms(1, 1000, 60000, NAN), 750);
    assert_int_equal(worker_backoff_ms(3, 1000, 10, 0.5), 1000); /* cap < base */
    assert_true(worker_backoff_ms(1, 0, 0, 0.0) >= 1);
    assert_true(worker_backoff_ms(1, -10, -10, 0.0) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_clamping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
