/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "decide.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ceil() of a scaled frame count forgives this much, so that an interval
 * written in decimal does not add a frame through rounding: T = 1.2 gives
 * 30 * (10 / 1.2) = 250.00000000000003, and the grace is 250 frames. */
#define DECIDE_CEIL_SLACK 1e-9

struct decide {
    struct decide_params params;
    struct decide_effective effective;
    /* This print. */
    double ewm;
    double short_mean;
    uint64_t frames; /* frames folded in since the print started */
    /* The printer's lifetime. */
    double long_mean;
    uint64_t long_count;
    /* top_n selection works on a copy: the caller's array is const. */
    double scratch[DECIDE_MAX_DETECTIONS];
};

const char *decide_result_str(enum decide_result result)
{
    switch (result) {
    case DECIDE_OK: return "ok";
    case DECIDE_ERR_INVALID: return "invalid argument";
    case DECIDE_ERR_NOMEM: return "out of memory";
    case DECIDE_RESULT_MAX: break;
    }
    return "unknown result";
}

const char *decide_verdict_str(enum decide_verdict verdict)
{
    switch (verdict) {
    case DECIDE_VERDICT_OK: return "ok";
    case DECIDE_VERDICT_WARN: return "warn";
    case DECIDE_VERDICT_PAUSE: return "pause";
    case DECIDE_VERDICT_MAX: break;
    }
    return "unknown verdict";
}

struct decide_params decide_params_default(void)
{
    return (struct decide_params){
        .sensitivity = 1.0,
        .bending_factor = 1.0,
        .top_n = 0,
        .frame_interval_s = DECIDE_BASE_INTERVAL_S,
    };
}

static bool params_valid(const struct decide_params *params)
{
    /* Written so that NaN fails every test. */
    return params->sensitivity > 0.0 && params->sensitivity <= DECIDE_MAX_SENSITIVITY &&
           params->bending_factor > 0.0 && params->bending_factor <= DECIDE_MAX_BENDING_FACTOR &&
           params->top_n <= DECIDE_MAX_DETECTIONS &&
           params->frame_interval_s >= DECIDE_MIN_INTERVAL_S &&
           params->frame_interval_s <= DECIDE_MAX_INTERVAL_S;
}

/* x is positive and at most DECIDE_LONG_WINDOW * 10 / DECIDE_MIN_INTERVAL_S,
 * so the casts below are exact truncations and no libm is needed. */
static uint64_t round_half_up(double x)
{
    return (uint64_t)(x + 0.5);
}

static uint64_t ceil_with_slack(double x)
{
    double y = x - DECIDE_CEIL_SLACK;
    uint64_t whole = (uint64_t)y;

    if ((double)whole < y)
        whole++;
    return whole;
}

static void compute_effective(const struct decide_params *params,
                              struct decide_effective *ret_effective)
{
    double scale = 1.0;

    if (params->frame_interval_s < DECIDE_BASE_INTERVAL_S)
        scale = DECIDE_BASE_INTERVAL_S / params->frame_interval_s;
    ret_effective->scale = scale;
    ret_effective->span = DECIDE_EWM_SPAN * scale;
    ret_effective->alpha = 2.0 / (ret_effective->span + 1.0);
    ret_effective->short_window = round_half_up(DECIDE_SHORT_WINDOW * scale);
    ret_effective->long_window = round_half_up(DECIDE_LONG_WINDOW * scale);
    ret_effective->grace_frames = ceil_with_slack(DECIDE_GRACE_FRAMES * scale);
}

enum decide_result decide_new(const struct decide_params *params, struct decide **ret_decide)
{
    enum decide_result result = DECIDE_OK;
    struct decide_params chosen = params ? *params : decide_params_default();
    struct decide *decide = NULL;

    if (!ret_decide || !params_valid(&chosen)) {
        result = DECIDE_ERR_INVALID;
        goto out;
    }
    decide = calloc(1, sizeof(*decide));
    if (!decide) {
        result = DECIDE_ERR_NOMEM;
        goto out;
    }
    decide->params = chosen;
    compute_effective(&chosen, &decide->effective);
    *ret_decide = decide;
    decide = NULL;

out:
    free(decide);
    return result;
}

struct decide *decide_free(struct decide *decide)
{
    free(decide);
    return NULL;
}

enum decide_result decide_set_params(struct decide *decide, const struct decide_params *params)
{
    if (!decide || !params || !params_valid(params))
        return DECIDE_ERR_INVALID;
    decide->params = *params;
    compute_effective(params, &decide->effective);
    return DECIDE_OK;
}

enum decide_result decide_get_params(const struct decide *decide, struct decide_params *ret_params)
{
    if (!decide || !ret_params)
        return DECIDE_ERR_INVALID;
    *ret_params = decide->params;
    return DECIDE_OK;
}

enum decide_result decide_get_effective(const struct decide *decide,
                                        struct decide_effective *ret_effective)
{
    if (!decide || !ret_effective)
        return DECIDE_ERR_INVALID;
    *ret_effective = decide->effective;
    return DECIDE_OK;
}

enum decide_result decide_print_start(struct decide *decide)
{
    if (!decide)
        return DECIDE_ERR_INVALID;
    decide->ewm = 0.0;
    decide->short_mean = 0.0;
    decide->frames = 0;
    return DECIDE_OK;
}

static int compare_descending(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x < y) - (x > y);
}

/* The running mean after one more value; count values are already in it. */
static double next_mean(double mean, uint64_t count, uint64_t window, double p)
{
    uint64_t divisor = count >= window ? window : count + 1;

    return mean + (p - mean) / (double)divisor;
}

static bool failing(const struct decide *decide, double ewm, double short_mean, double long_mean,
                    double factor)
{
    double adjusted = (ewm - long_mean) * decide->params.sensitivity / factor;

    if (adjusted > DECIDE_THRESHOLD_HIGH)
        return true;
    if (adjusted < DECIDE_THRESHOLD_LOW)
        return false;
    return adjusted > (short_mean - long_mean) * DECIDE_SHORT_MULTIPLE;
}

enum decide_result decide_add_frame(struct decide *decide, const double *confidences, size_t n,
                                    struct decide_frame_result *ret_result)
{
    enum decide_result result = DECIDE_OK;
    const double *selected = confidences;
    size_t count = n;
    double p = 0.0;
    double ewm;
    double short_mean;
    double long_mean;
    uint64_t frame;
    enum decide_verdict verdict = DECIDE_VERDICT_OK;

    if (!decide || !ret_result || (!confidences && n > 0) || n > DECIDE_MAX_DETECTIONS) {
        result = DECIDE_ERR_INVALID;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        /* Also false for NaN; the upper bound rules out infinity. */
        if (!(confidences[i] >= 0.0 && confidences[i] <= DECIDE_MAX_CONFIDENCE)) {
            result = DECIDE_ERR_INVALID;
            goto out;
        }
    }

    if (decide->params.top_n > 0 && decide->params.top_n < n) {
        memcpy(decide->scratch, confidences, n * sizeof(*confidences));
        qsort(decide->scratch, n, sizeof(*decide->scratch), compare_descending);
        selected = decide->scratch;
        count = decide->params.top_n;
    }
    /* Summed in input order, or largest first with top_n. */
    for (size_t i = 0; i < count; i++)
        p += selected[i] * decide->params.bending_factor;

    if (decide->frames == 0)
        ewm = p;
    else
        ewm = decide->effective.alpha * p + (1.0 - decide->effective.alpha) * decide->ewm;
    short_mean = next_mean(decide->short_mean, decide->frames, decide->effective.short_window, p);
    long_mean = next_mean(decide->long_mean, decide->long_count, decide->effective.long_window, p);
    frame = decide->frames < UINT64_MAX ? decide->frames + 1 : UINT64_MAX;

    if (frame > decide->effective.grace_frames) {
        if (failing(decide, ewm, short_mean, long_mean, DECIDE_PAUSE_FACTOR))
            verdict = DECIDE_VERDICT_PAUSE;
        else if (failing(decide, ewm, short_mean, long_mean, 1.0))
            verdict = DECIDE_VERDICT_WARN;
    }

    decide->ewm = ewm;
    decide->short_mean = short_mean;
    decide->long_mean = long_mean;
    decide->frames = frame;
    if (decide->long_count < UINT64_MAX)
        decide->long_count++;
    *ret_result = (struct decide_frame_result){
        .p = p,
        .ewm = ewm,
        .short_mean = short_mean,
        .long_mean = long_mean,
        .adjusted = (ewm - long_mean) * decide->params.sensitivity,
        .frame = frame,
        .verdict = verdict,
    };

out:
    return result;
}

enum decide_result decide_get_long_term(const struct decide *decide, double *ret_mean,
                                        uint64_t *ret_count)
{
    if (!decide || !ret_mean || !ret_count)
        return DECIDE_ERR_INVALID;
    *ret_mean = decide->long_mean;
    *ret_count = decide->long_count;
    return DECIDE_OK;
}

enum decide_result decide_set_long_term(struct decide *decide, double mean, uint64_t count)
{
    if (!decide || !isfinite(mean) || mean < 0.0)
        return DECIDE_ERR_INVALID;
    decide->long_mean = mean;
    decide->long_count = count;
    return DECIDE_OK;
}
