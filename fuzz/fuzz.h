/*
 * fuzz/fuzz.h — shared by the libFuzzer targets in fuzz/: FUZZ_CHECK, an
 * assertion that stays on in every build type and makes libFuzzer save the
 * input (abort() is a crash to it).
 */
#ifndef INFERD_FUZZ_H
#define INFERD_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif
