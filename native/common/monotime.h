/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * monotime: milliseconds on the monotonic clock, for deadlines and
 * durations (wall-clock jumps, e.g. NTP on a Pi that booted without a
 * clock, must not fire or stretch a timeout).
 */
#ifndef TSD_MONOTIME_H
#define TSD_MONOTIME_H

#include <stdint.h>

/* Whole milliseconds: deadlines. */
int64_t now_ms(void);

/* With the fraction: measured durations. */
double now_ms_precise(void);

#endif
