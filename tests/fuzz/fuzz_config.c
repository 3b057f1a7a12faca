/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the helper's YAML configuration (config_parse() in
 * helper/config.c, which config_load() runs on the file's bytes).
 *
 * Every input must give a clean error (a non-empty reason of printable
 * ASCII, the caller's struct untouched) or a configuration that keeps every
 * documented bound: sizes, counts and numbers in range and finite, class
 * names NUL-terminated printable ASCII, the model paths the model type
 * needs (and no others), resolved against the base directory.
 *
 * config.c is compiled into the libFuzzer build (tests/fuzz/meson.build) so
 * that coverage instrumentation reaches it. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE_DIR "/srv/tsd-model"

static void check_reason(const char *reason, size_t cap)
{
    size_t len = strnlen(reason, cap);

    if (len == 0 || len == cap)
        abort();
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)reason[i] < 0x20 || (unsigned char)reason[i] > 0x7e)
            abort();
    }
}

/* Empty, or an absolute path (base or given) NUL-terminated in its buffer. */
static bool path_ok(const char path[CONFIG_MAX_PATH], bool wanted)
{
    size_t len = strnlen(path, CONFIG_MAX_PATH);

    if (len == CONFIG_MAX_PATH)
        return false;
    if (!wanted)
        return len == 0;
    return len > 0 && path[0] == '/';
}

static bool within(double value, double min, double max)
{
    return isfinite(value) && value >= min && value <= max;
}

static void check_config(const struct helper_config *cfg)
{
    bool darknet = cfg->model_type == INFER_MODEL_DARKNET;
    bool crops = cfg->model_type == INFER_MODEL_ONNX_CROPS;
    int width = 0;
    int height = 0;

    if (cfg->model_type >= INFER_MODEL_TYPE_MAX || cfg->score >= INFER_SCORE_MAX ||
        cfg->box_units >= INFER_BOX_UNITS_MAX)
        abort();
    if (!path_ok(cfg->model_cfg, darknet) || !path_ok(cfg->model_weights, darknet) ||
        !path_ok(cfg->model_onnx, !darknet))
        abort();
    if (crops ? (cfg->crop_grid < 1 || cfg->crop_grid > CONFIG_MAX_CROP_GRID ||
                 cfg->num_classes != 1)
              : cfg->crop_grid != 0)
        abort();
    if (cfg->input_width < 8 || cfg->input_width > CONFIG_MAX_INPUT_SIDE ||
        cfg->input_height < 8 || cfg->input_height > CONFIG_MAX_INPUT_SIDE)
        abort();
    if (cfg->num_classes < 1 || cfg->num_classes > CONFIG_MAX_CLASSES)
        abort();
    for (size_t i = 0; i < cfg->num_classes; i++) {
        size_t len = strnlen(cfg->classes[i], CONFIG_MAX_CLASS_NAME + 1);

        if (len < 1 || len > CONFIG_MAX_CLASS_NAME)
            abort();
        for (size_t k = 0; k < len; k++) {
            if (cfg->classes[i][k] < 0x20 || cfg->classes[i][k] > 0x7e)
                abort();
        }
    }
    for (size_t i = 0; i < 3; i++) {
        if (!within(cfg->mean[i], -1e6, 1e6))
            abort();
    }
    /* The bounds of config.h; a float may round just past a bound given as
     * a double, never further. */
    if (!within(cfg->scale, 0.0, 1e6) || cfg->scale <= 0.0f ||
        !within(cfg->box_threshold, 0.0, 1.0) || !within(cfg->nms_threshold, 0.0, 1.0))
        abort();
    if (cfg->max_detections < 1 || cfg->max_detections > CONFIG_MAX_DETECTIONS ||
        cfg->max_frame_bytes < 1024 || cfg->max_frame_bytes > CONFIG_MAX_FRAME_BYTES ||
        cfg->threads < 1 || cfg->threads > CONFIG_MAX_THREADS)
        abort();
    config_decode_target(cfg, &width, &height);
    if (width < cfg->input_width || height < cfg->input_height)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct helper_config cfg;
    static struct helper_config untouched;
    char *text;
    char reason[512];
    enum config_result result;

    /* An exact-size copy, so that ASan sees a read past the end. */
    text = malloc(size ? size : 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    memset(&cfg, 0xa5, sizeof(cfg));
    memset(&untouched, 0xa5, sizeof(untouched));
    memset(reason, 0, sizeof(reason));
    result = config_parse(text, size, BASE_DIR, &cfg, reason, sizeof(reason));
    if (result >= CONFIG_RESULT_MAX || !config_result_str(result))
        abort();
    if (result == CONFIG_OK) {
        check_config(&cfg);
    } else {
        if (result == CONFIG_ERR_IO ||
            (result == CONFIG_ERR_INVALID && size <= CONFIG_MAX_FILE_BYTES))
            abort(); /* in memory, only the content can be wrong */
        if (memcmp(&cfg, &untouched, sizeof(cfg)) != 0)
            abort();
        check_reason(reason, sizeof(reason));
    }
    free(text);
    return 0;
}
