/* SPDX-License-Identifier: AGPL-3.0-or-later
 * A tiny TAP producer for the C unit tests (meson test, protocol: 'tap'). */
#ifndef TSD_CHECK_H
#define TSD_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures;
static int check_test_number;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            printf("#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

/* Runs one test function and prints its TAP line. */
#define RUN_TEST(fn)                                                             \
    do {                                                                         \
        int before_ = check_failures;                                            \
        fn();                                                                    \
        check_test_number++;                                                     \
        printf("%s %d - %s\n", check_failures == before_ ? "ok" : "not ok",      \
               check_test_number, #fn);                                          \
        fflush(stdout);                                                          \
    } while (0)

#define CHECK_DONE() (printf("1..%d\n", check_test_number), check_failures ? 1 : 0)

#endif
