/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * decide: turns the detector's output into a per-frame verdict (ok, warn,
 * pause), the same decision the Obico server makes, with its constants.
 *
 * For every frame the caller passes the confidences of the detections the
 * model found (0..DECIDE_MAX_DETECTIONS values, each in [0, 1]):
 *
 *   p       = sum of the confidences, each times bending_factor; with
 *             top_n > 0 only the top_n largest confidences count.
 *   ewm     = p on the first frame of a print, then alpha * p + (1 - alpha) * ewm
 *             with alpha = 2 / (span + 1), span 12.
 *   short   += (p - short) / min(310, count + 1)     (reset for each print)
 *   long    += (p - long) / min(7200, count + 1)     (printer lifetime)
 *             where count is the number of frames already in that mean.
 *   adjusted(f) = (ewm - long) * sensitivity / f
 *   failing(f)  = adjusted(f) > 0.78, or, when 0.38 <= adjusted(f) <= 0.78,
 *                 adjusted(f) > (short - long) * 3.8
 *
 * The first 30 frames of a print are always ok. After that the verdict is
 * pause when failing(1.75), warn when failing(1) only, ok otherwise.
 *
 * The constants were tuned for one frame every 10 s. With a frame every
 * T < 10 seconds, the span, both windows and the grace period are scaled by
 * s = 10 / T so that decisions take the same time (see docs/decisions.md):
 *   span = 12 * s, windows = floor(310 * s + 0.5) and floor(7200 * s + 0.5),
 *   grace = ceil(30 * s - 1e-9) frames.
 * T >= 10 uses the base constants. decide_get_effective() reports them.
 *
 * The long-term mean outlives prints and restarts: decide_print_start()
 * keeps it, and the caller saves it with decide_get_long_term() and restores
 * it with decide_set_long_term().
 *
 * A call that fails (DECIDE_ERR_INVALID) changes nothing. A decider is not
 * thread-safe; use one per printer. This file is plain C with no Python and
 * no logging.
 */
#ifndef TSD_DECIDE_H
#define TSD_DECIDE_H

#include <stddef.h>
#include <stdint.h>

enum decide_result {
    DECIDE_OK = 0,
    DECIDE_ERR_INVALID, /* bad argument; nothing was changed */
    DECIDE_ERR_NOMEM,   /* allocation failed */
    DECIDE_RESULT_MAX
};

enum decide_verdict {
    DECIDE_VERDICT_OK = 0,
    DECIDE_VERDICT_WARN,  /* failing at factor 1 but not at 1.75 */
    DECIDE_VERDICT_PAUSE, /* failing at factor 1.75 */
    DECIDE_VERDICT_MAX
};

/* The model (the Obico server's constants, for one frame every 10 s). */
#define DECIDE_BASE_INTERVAL_S 10.0
#define DECIDE_EWM_SPAN 12.0
#define DECIDE_SHORT_WINDOW 310.0
#define DECIDE_LONG_WINDOW 7200.0
#define DECIDE_GRACE_FRAMES 30.0
#define DECIDE_THRESHOLD_LOW 0.38
#define DECIDE_THRESHOLD_HIGH 0.78
#define DECIDE_SHORT_MULTIPLE 3.8
#define DECIDE_PAUSE_FACTOR 1.75

/* Input limits. */
#define DECIDE_MAX_DETECTIONS 4096u
#define DECIDE_MAX_CONFIDENCE 1.0
#define DECIDE_MIN_INTERVAL_S 0.1
#define DECIDE_MAX_INTERVAL_S 3600.0
#define DECIDE_MAX_SENSITIVITY 100.0
#define DECIDE_MAX_BENDING_FACTOR 100.0

struct decide;

struct decide_params {
    double sensitivity;      /* (0, DECIDE_MAX_SENSITIVITY]; default 1.0 */
    double bending_factor;   /* (0, DECIDE_MAX_BENDING_FACTOR]; default 1.0 */
    unsigned top_n;          /* 0: all detections; at most DECIDE_MAX_DETECTIONS */
    double frame_interval_s; /* nominal seconds between frames,
                              * [DECIDE_MIN_INTERVAL_S, DECIDE_MAX_INTERVAL_S];
                              * default 10.0 */
};

/* The constants in use after time scaling. */
struct decide_effective {
    double scale;         /* 10 / T for T < 10, else 1 */
    double span;          /* EWM span in frames */
    double alpha;         /* 2 / (span + 1) */
    uint64_t short_window;
    uint64_t long_window;
    uint64_t grace_frames; /* frames 1..grace_frames of a print are ok */
};

struct decide_frame_result {
    double p;          /* this frame's score */
    double ewm;
    double short_mean;
    double long_mean;
    double adjusted;   /* (ewm - long_mean) * sensitivity, i.e. factor 1 */
    uint64_t frame;    /* 1 for the first frame of the print */
    enum decide_verdict verdict;
};

const char *decide_result_str(enum decide_result result);

/* "ok", "warn" or "pause". */
const char *decide_verdict_str(enum decide_verdict verdict);

/* sensitivity 1, bending factor 1, all detections, one frame every 10 s. */
struct decide_params decide_params_default(void);

/* (transfer full) A decider at the start of a print, long-term mean 0 with
 * count 0. params NULL means decide_params_default(). */
enum decide_result decide_new(const struct decide_params *params, struct decide **ret_decide);

/* Accepts NULL; returns NULL. */
struct decide *decide_free(struct decide *decide);

/* Changes the parameters from the next frame on; the means, the EWM and the
 * frame count are kept (a new interval does not restart the grace period). */
enum decide_result decide_set_params(struct decide *decide, const struct decide_params *params);

enum decide_result decide_get_params(const struct decide *decide, struct decide_params *ret_params);

enum decide_result decide_get_effective(const struct decide *decide,
                                        struct decide_effective *ret_effective);

/* A new print: resets the EWM, the short-term mean and the frame count;
 * keeps the long-term mean and its count. */
enum decide_result decide_print_start(struct decide *decide);

/* Folds one frame in. confidences may be NULL when n is 0. Every confidence
 * must be finite and in [0, DECIDE_MAX_CONFIDENCE], and n at most
 * DECIDE_MAX_DETECTIONS; otherwise DECIDE_ERR_INVALID and nothing changes.
 * The confidences are not modified. */
enum decide_result decide_add_frame(struct decide *decide, const double *confidences, size_t n,
                                    struct decide_frame_result *ret_result);

/* The long-term mean and the number of frames folded into it (saturates at
 * UINT64_MAX), for the caller to persist. */
enum decide_result decide_get_long_term(const struct decide *decide, double *ret_mean,
                                        uint64_t *ret_count);

/* Restores a saved long-term mean: mean finite and >= 0. */
enum decide_result decide_set_long_term(struct decide *decide, double mean, uint64_t count);

#endif
