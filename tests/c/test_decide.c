/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests of native/core/decide.c: the per-frame score, the EWM and the
 * two running means, the grace period, warn and pause, sensitivity, the
 * in-between band, top_n and the bending factor, prints and persistence,
 * invalid input and the time scaling for faster frame rates.
 *
 * The golden numbers were worked out by hand from the formulas in decide.h
 * (the arithmetic is in the comments) and are checked to 1e-9. Notation:
 * r = 1 - alpha = 11/13 at one frame every 10 s; "long count big" means the
 * long-term mean was imported with a count of 1e6, so its divisor is the
 * full window (7200) from the first frame on. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "decide.h"

#define BIG_COUNT 1000000u
#define TOL 1e-9

static const double ONE[] = {1.0};
static const double TWO[] = {1.0, 1.0}; /* p = 2 */

static bool near(double a, double b, double tolerance)
{
    double d = a - b;
    return d <= tolerance && -d <= tolerance;
}

static struct decide *make(double sensitivity, double bending, unsigned top_n, double interval)
{
    struct decide_params params = {
        .sensitivity = sensitivity,
        .bending_factor = bending,
        .top_n = top_n,
        .frame_interval_s = interval,
    };
    struct decide *decide = NULL;

    CHECK(decide_new(&params, &decide) == DECIDE_OK);
    return decide;
}

/* Feeds the same frame `times` times; *ret_last receives the last result. Counts
 * the verdicts other than ok into *ret_not_ok when it is not NULL. */
static void feed(struct decide *decide, const double *confidences, size_t n, unsigned times,
                 struct decide_frame_result *ret_last, unsigned *ret_not_ok)
{
    struct decide_frame_result result = {0};

    for (unsigned i = 0; i < times; i++) {
        CHECK(decide_add_frame(decide, confidences, n, &result) == DECIDE_OK);
        if (ret_not_ok && result.verdict != DECIDE_VERDICT_OK)
            (*ret_not_ok)++;
    }
    if (ret_last)
        *ret_last = result;
}

static bool results_equal(const struct decide_frame_result *a, const struct decide_frame_result *b)
{
    return a->p == b->p && a->ewm == b->ewm && a->short_mean == b->short_mean &&
           a->long_mean == b->long_mean && a->adjusted == b->adjusted && a->frame == b->frame &&
           a->verdict == b->verdict;
}

static void test_invalid_arguments(void)
{
    static const struct {
        double sensitivity, bending;
        unsigned top_n;
        double interval;
    } bad_params[] = {
        {0.0, 1.0, 0, 10.0},
        {-1.0, 1.0, 0, 10.0},
        {NAN, 1.0, 0, 10.0},
        {DECIDE_MAX_SENSITIVITY * 1.01, 1.0, 0, 10.0},
        {1.0, 0.0, 0, 10.0},
        {1.0, NAN, 0, 10.0},
        {1.0, INFINITY, 0, 10.0},
        {1.0, 1.0, DECIDE_MAX_DETECTIONS + 1, 10.0},
        {1.0, 1.0, 0, 0.0},
        {1.0, 1.0, 0, DECIDE_MIN_INTERVAL_S / 2},
        {1.0, 1.0, 0, -10.0},
        {1.0, 1.0, 0, NAN},
        {1.0, 1.0, 0, INFINITY},
        {1.0, 1.0, 0, DECIDE_MAX_INTERVAL_S + 1.0},
    };
    struct decide_params good = decide_params_default();
    struct decide_params bad;
    struct decide *decide = NULL;
    struct decide_frame_result result;
    struct decide_effective effective;
    struct decide_params params;
    double mean;
    uint64_t count;

    CHECK(decide_new(&good, NULL) == DECIDE_ERR_INVALID);
    for (size_t i = 0; i < sizeof(bad_params) / sizeof(bad_params[0]); i++) {
        bad = (struct decide_params){
            .sensitivity = bad_params[i].sensitivity,
            .bending_factor = bad_params[i].bending,
            .top_n = bad_params[i].top_n,
            .frame_interval_s = bad_params[i].interval,
        };
        if (decide_new(&bad, &decide) != DECIDE_ERR_INVALID) {
            printf("#   bad_params[%zu] accepted\n", i);
            check_failures++;
            decide = decide_free(decide);
        }
    }
    CHECK(decide == NULL);

    /* The bounds themselves are accepted. */
    bad = (struct decide_params){
        .sensitivity = DECIDE_MAX_SENSITIVITY,
        .bending_factor = DECIDE_MAX_BENDING_FACTOR,
        .top_n = DECIDE_MAX_DETECTIONS,
        .frame_interval_s = DECIDE_MIN_INTERVAL_S,
    };
    CHECK(decide_new(&bad, &decide) == DECIDE_OK);
    decide = decide_free(decide);
    bad.frame_interval_s = DECIDE_MAX_INTERVAL_S;
    CHECK(decide_new(&bad, &decide) == DECIDE_OK);
    decide = decide_free(decide);

    CHECK(decide_free(NULL) == NULL);
    CHECK(decide_print_start(NULL) == DECIDE_ERR_INVALID);
    CHECK(decide_add_frame(NULL, ONE, 1, &result) == DECIDE_ERR_INVALID);
    CHECK(decide_get_long_term(NULL, &mean, &count) == DECIDE_ERR_INVALID);
    CHECK(decide_set_long_term(NULL, 0.0, 0) == DECIDE_ERR_INVALID);
    CHECK(decide_set_params(NULL, &good) == DECIDE_ERR_INVALID);
    CHECK(decide_get_params(NULL, &params) == DECIDE_ERR_INVALID);
    CHECK(decide_get_effective(NULL, &effective) == DECIDE_ERR_INVALID);

    /* NULL params: the defaults. */
    CHECK(decide_new(NULL, &decide) == DECIDE_OK);
    CHECK(decide_add_frame(decide, ONE, 1, NULL) == DECIDE_ERR_INVALID);
    CHECK(decide_get_long_term(decide, NULL, &count) == DECIDE_ERR_INVALID);
    CHECK(decide_get_long_term(decide, &mean, NULL) == DECIDE_ERR_INVALID);
    CHECK(decide_set_params(decide, NULL) == DECIDE_ERR_INVALID);
    CHECK(decide_get_params(decide, NULL) == DECIDE_ERR_INVALID);
    CHECK(decide_get_effective(decide, NULL) == DECIDE_ERR_INVALID);
    CHECK(decide_get_params(decide, &params) == DECIDE_OK);
    CHECK(params.sensitivity == 1.0 && params.bending_factor == 1.0 && params.top_n == 0 &&
          params.frame_interval_s == 10.0);
    /* No detections at all is a valid frame: p = 0. */
    CHECK(decide_add_frame(decide, NULL, 0, &result) == DECIDE_OK);
    CHECK(result.p == 0.0 && result.frame == 1 && result.verdict == DECIDE_VERDICT_OK);
    decide_free(decide);
}

static void test_defaults_and_effective_constants(void)
{
    struct decide_params params = decide_params_default();
    struct decide_effective e;
    struct decide *decide;

    CHECK(params.sensitivity == 1.0);
    CHECK(params.bending_factor == 1.0);
    CHECK(params.top_n == 0);
    CHECK(params.frame_interval_s == 10.0);

    /* T = 10: the base constants. alpha = 2 / (12 + 1) = 2/13. */
    decide = make(1.0, 1.0, 0, 10.0);
    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(e.scale == 1.0 && e.span == 12.0 && e.alpha == 2.0 / 13.0);
    CHECK(e.short_window == 310 && e.long_window == 7200 && e.grace_frames == 30);
    decide_free(decide);

    /* T >= 10 is never scaled down. */
    decide = make(1.0, 1.0, 0, 20.0);
    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(e.scale == 1.0 && e.span == 12.0 && e.alpha == 2.0 / 13.0);
    CHECK(e.short_window == 310 && e.long_window == 7200 && e.grace_frames == 30);
    decide_free(decide);

    /* T = 5: s = 2, span 24, alpha = 2/25 = 0.08, 620, 14400, grace 60. */
    decide = make(1.0, 1.0, 0, 5.0);
    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(e.scale == 2.0 && e.span == 24.0 && e.alpha == 2.0 / 25.0);
    CHECK(e.short_window == 620 && e.long_window == 14400 && e.grace_frames == 60);
    decide_free(decide);

    /* T = 1: s = 10, span 120, alpha = 2/121, 3100, 72000, grace 300. */
    decide = make(1.0, 1.0, 0, 1.0);
    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(e.scale == 10.0 && e.span == 120.0 && e.alpha == 2.0 / 121.0);
    CHECK(e.short_window == 3100 && e.long_window == 72000 && e.grace_frames == 300);
    decide_free(decide);

    /* T = 3: s = 3.33..., 310 s = 1033.3 -> 1033, 7200 s = 24000, 30 s = 100. */
    decide = make(1.0, 1.0, 0, 3.0);
    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(e.short_window == 1033 && e.long_window == 24000 && e.grace_frames == 100);
    decide_free(decide);

    /* T = 8: s = 1.25, 310 s = 387.5 rounds half up to 388; 30 s = 37.5 -> 38. */
    decide = make(1.0, 1.0, 0, 8.0);
    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(e.short_window == 388 && e.long_window == 9000 && e.grace_frames == 38);
    decide_free(decide);

    /* T = 1.2: 30 * (10 / 1.2) is 250.00000000000003 in doubles; the slack in
     * the ceiling keeps the grace at 250 frames, not 251. */
    decide = make(1.0, 1.0, 0, 1.2);
    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(e.grace_frames == 250);
    decide_free(decide);
}

/* Frames 1..30 are ok however high the score; frame 31 is the first that
 * can warn. Long mean 0 with a big count, then p = 1 on every frame:
 *   frame 1:  ewm = p = 1, short = 1 (divisor 1), long = 1/7200 = 0.000138889,
 *             adjusted = 1 - 1/7200 = 0.999861 > 0.78, but in the grace.
 *   frame 31: ewm = 1, short = 1, long = 1 - (7199/7200)^31 = 0.00429660,
 *             adjusted = 0.995703 > 0.78: failing(1);
 *             adjusted / 1.75 = 0.568973 is in [0.38, 0.78] and below
 *             (1 - 0.0043) * 3.8 = 3.78: not failing(1.75) -> WARN. */
static void test_grace_period(void)
{
    struct decide *decide = make(1.0, 1.0, 0, 10.0);
    struct decide_frame_result result;

    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(result.frame == 1);
    CHECK(result.p == 1.0 && result.ewm == 1.0 && result.short_mean == 1.0);
    CHECK(near(result.long_mean, 1.0 / 7200.0, 1e-15));
    CHECK(near(result.adjusted, 0.999861111111111, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_OK);
    for (unsigned frame = 2; frame <= 30; frame++) {
        CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
        CHECK(result.frame == frame);
        CHECK(result.adjusted > DECIDE_THRESHOLD_HIGH);
        CHECK(result.verdict == DECIDE_VERDICT_OK);
    }
    CHECK(near(result.long_mean, 0.00415828633025896, TOL));
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(result.frame == 31);
    CHECK(near(result.ewm, 1.0, 1e-12) && near(result.short_mean, 1.0, 1e-12));
    CHECK(near(result.long_mean, 0.00429659767937976, TOL));
    CHECK(near(result.adjusted, 0.99570340232062, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_WARN);
    decide_free(decide);
}

/* A quiet print (30 frames with no detections: ewm = short = long = 0), then
 * p = 2 on every frame, long count big. With k frames of p = 2 so far:
 *   ewm = 2 * (1 - r^k), short = 2k / (30 + k), long ~ 2k / 7200.
 *   frame 31 (k=1): ewm = 2 * 2/13 = 0.307692, short = 2/31 = 0.0645161,
 *     long = 2/7200 = 0.000277778, adjusted = 0.307415 < 0.38 -> OK.
 *   frame 32 (k=2): ewm = 4/13 + 11/13 * 4/13 = 96/169 = 0.568047,
 *     short = 4/32 = 0.125, long = 0.000555517, adjusted = 0.567492:
 *     in the band and > (0.125 - 0.000556) * 3.8 = 0.472889 -> failing(1);
 *     / 1.75 = 0.324281 < 0.38 -> not failing(1.75) -> WARN.
 *   frame 36 (k=6): ewm = 2 * (1 - r^6) = 1.265949, short = 12/36,
 *     adjusted = 1.264283 > 0.78 -> failing(1); / 1.75 = 0.722448 in the
 *     band but < (0.333333 - 0.001666) * 3.8 = 1.260336 -> WARN.
 *   frame 37 (k=7): ewm = 2 * (1 - r^7) = 1.378880, adjusted = 1.376937,
 *     / 1.75 = 0.786821 > 0.78 -> PAUSE. */
static void test_jump_warns_then_pauses(void)
{
    static const struct {
        double ewm, short_mean, long_mean, adjusted;
        enum decide_verdict verdict;
    } expected[] = {
        /* frame 31 */ {0.307692307692308, 0.0645161290322581, 0.000277777777777778,
                        0.30741452991453, DECIDE_VERDICT_OK},
        /* frame 32 */ {0.568047337278107, 0.125, 0.000555516975308642, 0.567491820302798,
                        DECIDE_VERDICT_WARN},
        /* frame 33 */ {0.788347746927629, 0.181818181818182, 0.00083321759795096,
                        0.787514529329678, DECIDE_VERDICT_WARN},
        /* frame 34 */ {0.97475578586184, 0.235294117647059, 0.00111087965106236,
                        0.973644906210777, DECIDE_VERDICT_WARN},
        /* frame 35 */ {1.13248566496002, 0.285714285714286, 0.00138850313999971,
                        1.13109716182002, DECIDE_VERDICT_WARN},
        /* frame 36 */ {1.26594940881232, 0.333333333333333, 0.00166608807011915,
                        1.2642833207422, DECIDE_VERDICT_WARN},
        /* frame 37 */ {1.37888026899504, 0.378378378378378, 0.00194363444677608,
                        1.37693663454827, DECIDE_VERDICT_PAUSE},
        /* frame 38 */ {1.47443715068811, 0.421052631578947, 0.00222114227532514,
                        1.47221600841279, DECIDE_VERDICT_PAUSE},
    };
    struct decide *decide = make(1.0, 1.0, 0, 10.0);
    struct decide_frame_result result;
    unsigned not_ok = 0;

    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, NULL, 0, 30, &result, &not_ok);
    CHECK(not_ok == 0);
    CHECK(result.ewm == 0.0 && result.short_mean == 0.0 && result.long_mean == 0.0);
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
        CHECK(result.frame == 31 + i);
        CHECK(result.p == 2.0);
        CHECK(near(result.ewm, expected[i].ewm, TOL));
        CHECK(near(result.short_mean, expected[i].short_mean, TOL));
        CHECK(near(result.long_mean, expected[i].long_mean, TOL));
        CHECK(near(result.adjusted, expected[i].adjusted, TOL));
        CHECK(result.verdict == expected[i].verdict);
        if (result.verdict != expected[i].verdict)
            printf("#   frame %zu: got %s\n", 31 + i, decide_verdict_str(result.verdict));
    }
    decide_free(decide);
}

/* Frame 31 of the jump above (adjusted = 0.307415 at sensitivity 1, the
 * band test compares with (2/31 - 2/7200) * 3.8 = 0.244106):
 *   sensitivity 0.5: 0.153707 < 0.38                         -> OK
 *   sensitivity 1:   0.307415 < 0.38                         -> OK
 *   sensitivity 2:   0.614829 in band, > 0.244106 -> failing(1);
 *                    / 1.75 = 0.351331 < 0.38                -> WARN
 *   sensitivity 3:   0.922244 > 0.78; / 1.75 = 0.526997 in band,
 *                    > 0.244106 -> failing(1.75)             -> PAUSE */
static void test_sensitivity_scaling(void)
{
    static const struct {
        double sensitivity;
        double adjusted;
        enum decide_verdict verdict;
    } cases[] = {
        {0.5, 0.153707264957265, DECIDE_VERDICT_OK},
        {1.0, 0.30741452991453, DECIDE_VERDICT_OK},
        {2.0, 0.61482905982906, DECIDE_VERDICT_WARN},
        {3.0, 0.92224358974359, DECIDE_VERDICT_PAUSE},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct decide *decide = make(cases[i].sensitivity, 1.0, 0, 10.0);
        struct decide_frame_result result;

        CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
        feed(decide, NULL, 0, 30, NULL, NULL);
        CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
        /* The means do not depend on the sensitivity, only adjusted does. */
        CHECK(near(result.ewm, 4.0 / 13.0, 1e-15));
        CHECK(near(result.short_mean, 2.0 / 31.0, 1e-15));
        CHECK(near(result.adjusted, cases[i].adjusted, TOL));
        CHECK(result.verdict == cases[i].verdict);
        decide_free(decide);
    }
}

/* Between 0.38 and 0.78 the short-term mean decides.
 *   A: the quiet print of the jump test; frame 32: adjusted = 0.567492,
 *      short = 0.125: 0.567 > (0.125 - 0.000556) * 3.8 = 0.4729 -> WARN.
 *   B: the same two frames of p = 2 after a noisy start (20 frames of p = 1,
 *      10 of p = 0): ewm after 20 ones = 1, after 10 zeros r^10 = 0.188218;
 *      frame 31: ewm = 4/13 + r * 0.188218 = 0.466892; frame 32: ewm =
 *      4/13 + r * 0.466892 = 0.702755, short = (20 + 4) / 32 = 0.75,
 *      long = 0.003325, adjusted = 0.699430: higher than in A but below
 *      (0.75 - 0.003325) * 3.8 = 2.837 -> OK.
 *   C: A on a printer whose long-term mean is 1 (count big): after 30
 *      zeros long = (7199/7200)^30 = 0.995842; short - long < 0, so any
 *      adjusted in the band fails. Frames 31..36: adjusted < 0.38 -> OK;
 *      frame 37: ewm = 1.378880, long = 0.996818, adjusted = 0.382063
 *      -> WARN (the band, short - long < 0); frame 41: ewm = 1.681600,
 *      long = 0.997375, adjusted = 0.684226, / 1.75 = 0.390986 in the band
 *      -> PAUSE. */
static void test_band_uses_short_and_long_means(void)
{
    struct decide *decide;
    struct decide_frame_result result;
    unsigned not_ok = 0;

    decide = make(1.0, 1.0, 0, 10.0);
    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, NULL, 0, 30, NULL, NULL);
    feed(decide, TWO, 2, 2, &result, NULL);
    CHECK(near(result.adjusted, 0.567491820302798, TOL));
    CHECK(result.adjusted >= DECIDE_THRESHOLD_LOW && result.adjusted <= DECIDE_THRESHOLD_HIGH);
    CHECK(result.verdict == DECIDE_VERDICT_WARN);
    decide_free(decide);

    decide = make(1.0, 1.0, 0, 10.0);
    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, ONE, 1, 20, &result, NULL);
    CHECK(near(result.ewm, 1.0, 1e-12));
    feed(decide, NULL, 0, 10, NULL, NULL);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(near(result.ewm, 0.466892160317278, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_OK);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(result.frame == 32);
    CHECK(near(result.ewm, 0.702754904883851, TOL));
    CHECK(near(result.short_mean, 0.75, TOL));
    CHECK(near(result.long_mean, 0.0033250126861448, TOL));
    CHECK(near(result.adjusted, 0.699429892197706, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_OK);
    decide_free(decide);

    decide = make(1.0, 1.0, 0, 10.0);
    CHECK(decide_set_long_term(decide, 1.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, NULL, 0, 30, &result, NULL);
    CHECK(near(result.long_mean, 0.995841713669741, TOL));
    feed(decide, TWO, 2, 6, &result, &not_ok);
    CHECK(not_ok == 0);
    CHECK(near(result.adjusted, 0.269271187071899, TOL));
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(result.frame == 37);
    CHECK(near(result.long_mean, 0.996817571987405, TOL));
    CHECK(near(result.adjusted, 0.382062697007638, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_WARN);
    feed(decide, TWO, 2, 3, &result, NULL);
    CHECK(result.verdict == DECIDE_VERDICT_WARN);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(result.frame == 41);
    CHECK(near(result.adjusted, 0.684225515289862, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_PAUSE);
    decide_free(decide);
}

/* Confidences {0.2, 0.9, 0.5, 0.4}:
 *   all:                 0.2 + 0.9 + 0.5 + 0.4 = 2.0
 *   top 2:               0.9 + 0.5 = 1.4
 *   top 1:               0.9
 *   top 4, top 10:       all four, 2.0
 *   bending 0.5:         2.0 * 0.5 = 1.0
 *   top 2, bending 0.5:  (0.9 + 0.5) * 0.5 = 0.7
 *   top 3, bending 1.5:  (0.9 + 0.5 + 0.4) * 1.5 = 2.7
 * On the first frame ewm = short = p; long = p (count 0). */
static void test_top_n_and_bending_factor(void)
{
    static const double confidences[] = {0.2, 0.9, 0.5, 0.4};
    static const struct {
        unsigned top_n;
        double bending;
        double p;
    } cases[] = {
        {0, 1.0, 2.0}, {2, 1.0, 1.4}, {1, 1.0, 0.9}, {4, 1.0, 2.0},
        {10, 1.0, 2.0}, {0, 0.5, 1.0}, {2, 0.5, 0.7}, {3, 1.5, 2.7},
    };
    double copy[4];

    memcpy(copy, confidences, sizeof(copy));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct decide *decide = make(1.0, cases[i].bending, cases[i].top_n, 10.0);
        struct decide_frame_result result;

        CHECK(decide_add_frame(decide, copy, 4, &result) == DECIDE_OK);
        CHECK(near(result.p, cases[i].p, 1e-12));
        CHECK(result.ewm == result.p && result.short_mean == result.p &&
              result.long_mean == result.p && result.adjusted == 0.0);
        if (!near(result.p, cases[i].p, 1e-12))
            printf("#   case %zu: p = %.17g\n", i, result.p);
        decide_free(decide);
    }
    /* The caller's array is left as it was (top_n sorts a copy). */
    CHECK(memcmp(copy, confidences, sizeof(copy)) == 0);
}

/* Five frames of p = 0.5 (long = 0.5, count 5), a new print, then p = 1:
 *   frame 1 again, ewm = p = 1 (not blended with the old print),
 *   short = 1, long = 0.5 + (1 - 0.5) / 6 = 0.583333, adjusted = 0.416667. */
static void test_print_start_keeps_long_mean(void)
{
    static const double half[] = {0.5};
    struct decide *decide = make(1.0, 1.0, 0, 10.0);
    struct decide_frame_result result;
    double mean;
    uint64_t count;

    feed(decide, half, 1, 5, &result, NULL);
    CHECK(result.frame == 5);
    CHECK(decide_print_start(decide) == DECIDE_OK);
    CHECK(decide_get_long_term(decide, &mean, &count) == DECIDE_OK);
    CHECK(mean == 0.5 && count == 5);
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(result.frame == 1);
    CHECK(result.ewm == 1.0 && result.short_mean == 1.0);
    CHECK(near(result.long_mean, 0.583333333333333, TOL));
    CHECK(near(result.adjusted, 0.416666666666667, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_OK);
    CHECK(decide_get_long_term(decide, &mean, &count) == DECIDE_OK);
    CHECK(count == 6);
    decide_free(decide);
}

/* A deterministic, varied frame: 0..5 detections. */
static size_t varied_frame(unsigned i, double *ret_confidences)
{
    size_t n = (i * 7u + 3u) % 6u;

    for (size_t j = 0; j < n; j++)
        ret_confidences[j] = (double)((i * 13u + j * 29u) % 101u) / 100.0;
    return n;
}

static void test_persistence_round_trip(void)
{
    struct decide *first = make(1.2, 0.9, 3, 10.0);
    struct decide *second = make(1.2, 0.9, 3, 10.0);
    struct decide_frame_result a;
    struct decide_frame_result b;
    double confidences[8];
    double mean;
    double mean_again;
    uint64_t count;
    uint64_t count_again;
    bool same = true;

    for (unsigned i = 0; i < 50; i++) {
        size_t n = varied_frame(i, confidences);
        CHECK(decide_add_frame(first, confidences, n, &a) == DECIDE_OK);
    }
    /* Saved when the print ended, restored into a new decider (a restart). */
    CHECK(decide_get_long_term(first, &mean, &count) == DECIDE_OK);
    CHECK(count == 50);
    CHECK(decide_set_long_term(second, mean, count) == DECIDE_OK);
    CHECK(decide_get_long_term(second, &mean_again, &count_again) == DECIDE_OK);
    CHECK(mean_again == mean && count_again == count);
    CHECK(decide_print_start(first) == DECIDE_OK);
    for (unsigned i = 50; i < 400; i++) {
        size_t n = varied_frame(i, confidences);
        CHECK(decide_add_frame(first, confidences, n, &a) == DECIDE_OK);
        CHECK(decide_add_frame(second, confidences, n, &b) == DECIDE_OK);
        if (!results_equal(&a, &b))
            same = false;
    }
    CHECK(same);

    /* Bad values are refused and change nothing. */
    CHECK(decide_get_long_term(second, &mean, &count) == DECIDE_OK);
    CHECK(decide_set_long_term(second, NAN, 1) == DECIDE_ERR_INVALID);
    CHECK(decide_set_long_term(second, INFINITY, 1) == DECIDE_ERR_INVALID);
    CHECK(decide_set_long_term(second, -0.5, 1) == DECIDE_ERR_INVALID);
    CHECK(decide_get_long_term(second, &mean_again, &count_again) == DECIDE_OK);
    CHECK(mean_again == mean && count_again == count);

    /* The count saturates instead of wrapping; the divisor stays the window:
     * p = 1 * 0.9 (bending), long = 0.25 + (0.9 - 0.25) / 7200. */
    CHECK(decide_set_long_term(second, 0.25, UINT64_MAX) == DECIDE_OK);
    CHECK(decide_add_frame(second, ONE, 1, &b) == DECIDE_OK);
    CHECK(near(b.long_mean, 0.25 + 0.65 / 7200.0, 1e-15));
    CHECK(decide_get_long_term(second, &mean, &count) == DECIDE_OK);
    CHECK(count == UINT64_MAX);
    decide_free(first);
    decide_free(second);
}

static void test_invalid_frame_changes_nothing(void)
{
    static double many[DECIDE_MAX_DETECTIONS + 1];
    const double nan_one[] = {NAN};
    const double inf_one[] = {INFINITY};
    const double negative[] = {-0.1};
    const double too_big[] = {1.5};
    const double late_bad[] = {0.5, 0.7, NAN};
    struct decide *decide = make(1.0, 1.0, 2, 10.0);
    struct decide *twin = make(1.0, 1.0, 2, 10.0);
    struct decide_frame_result result;
    struct decide_frame_result untouched;
    struct decide_frame_result twin_result;
    double confidences[8];
    double mean;
    double twin_mean;
    uint64_t count;
    uint64_t twin_count;

    for (unsigned i = 0; i < 40; i++) {
        size_t n = varied_frame(i, confidences);
        CHECK(decide_add_frame(decide, confidences, n, &result) == DECIDE_OK);
        CHECK(decide_add_frame(twin, confidences, n, &twin_result) == DECIDE_OK);
    }
    untouched = (struct decide_frame_result){.p = -1.0, .verdict = DECIDE_VERDICT_MAX};
    result = untouched;
    CHECK(decide_add_frame(decide, nan_one, 1, &result) == DECIDE_ERR_INVALID);
    CHECK(decide_add_frame(decide, inf_one, 1, &result) == DECIDE_ERR_INVALID);
    CHECK(decide_add_frame(decide, negative, 1, &result) == DECIDE_ERR_INVALID);
    CHECK(decide_add_frame(decide, too_big, 1, &result) == DECIDE_ERR_INVALID);
    CHECK(decide_add_frame(decide, late_bad, 3, &result) == DECIDE_ERR_INVALID);
    CHECK(decide_add_frame(decide, NULL, 1, &result) == DECIDE_ERR_INVALID);
    for (size_t i = 0; i < DECIDE_MAX_DETECTIONS + 1; i++)
        many[i] = 0.001;
    CHECK(decide_add_frame(decide, many, DECIDE_MAX_DETECTIONS + 1, &result) ==
          DECIDE_ERR_INVALID);
    CHECK(result.p == -1.0 && result.verdict == DECIDE_VERDICT_MAX); /* not written */

    CHECK(decide_get_long_term(decide, &mean, &count) == DECIDE_OK);
    CHECK(decide_get_long_term(twin, &twin_mean, &twin_count) == DECIDE_OK);
    CHECK(mean == twin_mean && count == twin_count && count == 40);
    CHECK(decide_add_frame(decide, late_bad, 2, &result) == DECIDE_OK);
    CHECK(decide_add_frame(twin, late_bad, 2, &twin_result) == DECIDE_OK);
    CHECK(results_equal(&result, &twin_result));
    CHECK(result.frame == 41);

    /* The largest frame allowed: 4096 * 0.001 = 4.096 (top 2: 0.002). */
    CHECK(decide_add_frame(decide, many, DECIDE_MAX_DETECTIONS, &result) == DECIDE_OK);
    CHECK(near(result.p, 0.002, 1e-15));
    decide_free(decide);
    decide_free(twin);
}

static void test_set_params_keeps_state(void)
{
    struct decide *decide = make(1.0, 1.0, 0, 10.0);
    struct decide_params params = decide_params_default();
    struct decide_params got;
    struct decide_frame_result result;

    /* The sensitivity 3 case of test_sensitivity_scaling, changed just
     * before frame 31: same means, frame count kept, adjusted * 3. */
    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, NULL, 0, 30, NULL, NULL);
    params.sensitivity = 3.0;
    CHECK(decide_set_params(decide, &params) == DECIDE_OK);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(result.frame == 31);
    CHECK(near(result.adjusted, 0.92224358974359, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_PAUSE);

    params.frame_interval_s = 0.0;
    CHECK(decide_set_params(decide, &params) == DECIDE_ERR_INVALID);
    CHECK(decide_get_params(decide, &got) == DECIDE_OK);
    CHECK(got.sensitivity == 3.0 && got.frame_interval_s == 10.0);
    decide_free(decide);
}

/* The quiet-print jump of test_jump_warns_then_pauses at interval T: long
 * mean 0 with a big count, a grace period of zero scores, then p = 2. Gives
 * k, the number of p = 2 frames up to and including the first warn and the
 * first pause. */
static void jump_at_interval(double interval, unsigned *ret_warn_k, unsigned *ret_pause_k)
{
    struct decide *decide = make(1.0, 1.0, 0, interval);
    struct decide_effective e;
    struct decide_frame_result result;
    unsigned warn_k = 0;
    unsigned pause_k = 0;
    unsigned not_ok = 0;

    CHECK(decide_get_effective(decide, &e) == DECIDE_OK);
    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, NULL, 0, (unsigned)e.grace_frames, NULL, &not_ok);
    CHECK(not_ok == 0);
    for (unsigned k = 1; k <= 10000 && !pause_k; k++) {
        CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
        if (result.verdict == DECIDE_VERDICT_WARN && !warn_k)
            warn_k = k;
        if (result.verdict == DECIDE_VERDICT_PAUSE)
            pause_k = k;
    }
    *ret_warn_k = warn_k;
    *ret_pause_k = pause_k;
    decide_free(decide);
}

/* T = 5 (s = 2: alpha = 0.08, windows 620 and 14400, grace 60).
 *   Grace: 60 frames of p = 1 are ok (frame 1: adjusted = 1 - 1/14400 > 0.78),
 *   frame 61 warns.
 *   Jump after 60 quiet frames, p = 2:
 *     frame 61: ewm = 0.08 * 2 = 0.16, short = 2/61
 *     frame 62: ewm = 0.16 + 0.92 * 0.16 = 0.3072, short = 4/62 = 2/31
 *       (at T = 10, frame 31, the same 10 s after the jump: ewm 0.3077 and
 *       short 2/31), long = 2/14400 + (2 - 2/14400)/14400 = 0.000277768
 *     frame 63: ewm = 0.16 + 0.92 * 0.3072 = 0.442624, short = 6/63,
 *       adjusted = 0.442207 > (0.095238 - 0.000417) * 3.8 = 0.3603 -> WARN
 *   First warn after 3 frames (15 s; 20 s at T = 10), first pause after
 *   14 frames: 70 s, as at T = 10 (7 frames). */
static void test_time_scaling_t5(void)
{
    struct decide *decide = make(1.0, 1.0, 0, 5.0);
    struct decide_frame_result result;
    unsigned not_ok = 0;
    unsigned warn_k;
    unsigned pause_k;

    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(near(result.long_mean, 1.0 / 14400.0, 1e-15));
    CHECK(result.adjusted > DECIDE_THRESHOLD_HIGH && result.verdict == DECIDE_VERDICT_OK);
    feed(decide, ONE, 1, 59, &result, &not_ok);
    CHECK(not_ok == 0 && result.frame == 60);
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(result.verdict == DECIDE_VERDICT_WARN);
    decide_free(decide);

    decide = make(1.0, 1.0, 0, 5.0);
    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, NULL, 0, 60, NULL, NULL);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(near(result.ewm, 0.16, 1e-15) && near(result.short_mean, 2.0 / 61.0, 1e-15));
    CHECK(result.verdict == DECIDE_VERDICT_OK);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(near(result.ewm, 0.3072, 1e-15) && near(result.short_mean, 2.0 / 31.0, 1e-15));
    CHECK(near(result.long_mean, 0.000277768132716049, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_OK);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(near(result.ewm, 0.442624, 1e-15));
    CHECK(near(result.adjusted, 0.442207362267849, TOL));
    CHECK(result.verdict == DECIDE_VERDICT_WARN);
    decide_free(decide);

    jump_at_interval(10.0, &warn_k, &pause_k);
    CHECK(warn_k == 2 && pause_k == 7);
    jump_at_interval(5.0, &warn_k, &pause_k);
    CHECK(warn_k == 3 && pause_k == 14);
    jump_at_interval(2.0, &warn_k, &pause_k);
    CHECK(warn_k == 7 && pause_k == 35);
}

/* T = 1 (s = 10: alpha = 2/121, windows 3100 and 72000, grace 300).
 *   Grace: 300 frames of p = 1 are ok, frame 301 warns.
 *   Jump after 300 quiet frames, p = 2: frame 301: ewm = 2 * 2/121 =
 *   0.0330579, short = 2/301, long = 2/72000; frame 310 (10 s):
 *   ewm = 2 * (1 - (119/121)^10) = 0.307043, short = 20/310 = 2/31.
 *   First warn after 13 frames (13 s), first pause after 70 frames (70 s).
 *   The short window: once 3100 frames are in it, the divisor stays 3100. */
static void test_time_scaling_t1(void)
{
    struct decide *decide = make(1.0, 1.0, 0, 1.0);
    struct decide_frame_result result;
    unsigned not_ok = 0;
    unsigned warn_k;
    unsigned pause_k;

    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, ONE, 1, 300, &result, &not_ok);
    CHECK(not_ok == 0 && result.frame == 300);
    CHECK(result.adjusted > DECIDE_THRESHOLD_HIGH);
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(result.verdict == DECIDE_VERDICT_WARN);
    decide_free(decide);

    decide = make(1.0, 1.0, 0, 1.0);
    CHECK(decide_set_long_term(decide, 0.0, BIG_COUNT) == DECIDE_OK);
    feed(decide, NULL, 0, 300, NULL, NULL);
    CHECK(decide_add_frame(decide, TWO, 2, &result) == DECIDE_OK);
    CHECK(near(result.ewm, 4.0 / 121.0, 1e-15));
    CHECK(near(result.short_mean, 2.0 / 301.0, 1e-15));
    CHECK(near(result.long_mean, 2.0 / 72000.0, 1e-15));
    feed(decide, TWO, 2, 9, &result, &not_ok);
    CHECK(result.frame == 310);
    CHECK(near(result.ewm, 0.307043081973122, TOL));
    CHECK(near(result.short_mean, 2.0 / 31.0, 1e-12));
    CHECK(near(result.adjusted, 0.306765321555812, TOL));
    CHECK(not_ok == 0);
    decide_free(decide);

    jump_at_interval(1.0, &warn_k, &pause_k);
    CHECK(warn_k == 13 && pause_k == 70);

    /* The short window: 3100 quiet frames (the window is full: the divisor
     * is min(3100, 3100 + 1)), then p = 1: 0 + 1/3100. */
    decide = make(1.0, 1.0, 0, 1.0);
    feed(decide, NULL, 0, 3100, NULL, NULL);
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(result.short_mean == 1.0 / 3100.0);
    CHECK(result.long_mean == 1.0 / 3101.0); /* long window 72000 not full */
    decide_free(decide);

    /* T = 8 rounds the short window half up to 388: 388 quiet frames, then
     * p = 1 gives 1/388. */
    decide = make(1.0, 1.0, 0, 8.0);
    feed(decide, NULL, 0, 388, NULL, NULL);
    CHECK(decide_add_frame(decide, ONE, 1, &result) == DECIDE_OK);
    CHECK(result.short_mean == 1.0 / 388.0);
    decide_free(decide);
}

static void test_result_strings(void)
{
    for (int r = 0; r <= DECIDE_RESULT_MAX; r++)
        CHECK(decide_result_str((enum decide_result)r) != NULL);
    for (int v = 0; v <= DECIDE_VERDICT_MAX; v++)
        CHECK(decide_verdict_str((enum decide_verdict)v) != NULL);
    CHECK(strcmp(decide_result_str(DECIDE_ERR_INVALID), "invalid argument") == 0);
    CHECK(strcmp(decide_verdict_str(DECIDE_VERDICT_OK), "ok") == 0);
    CHECK(strcmp(decide_verdict_str(DECIDE_VERDICT_WARN), "warn") == 0);
    CHECK(strcmp(decide_verdict_str(DECIDE_VERDICT_PAUSE), "pause") == 0);
}

int main(void)
{
    RUN_TEST(test_invalid_arguments);
    RUN_TEST(test_defaults_and_effective_constants);
    RUN_TEST(test_grace_period);
    RUN_TEST(test_jump_warns_then_pauses);
    RUN_TEST(test_sensitivity_scaling);
    RUN_TEST(test_band_uses_short_and_long_means);
    RUN_TEST(test_top_n_and_bending_factor);
    RUN_TEST(test_print_start_keeps_long_mean);
    RUN_TEST(test_persistence_round_trip);
    RUN_TEST(test_invalid_frame_changes_nothing);
    RUN_TEST(test_set_params_keeps_state);
    RUN_TEST(test_time_scaling_t5);
    RUN_TEST(test_time_scaling_t1);
    RUN_TEST(test_result_strings);
    return CHECK_DONE();
}
