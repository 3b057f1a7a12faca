/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "errtext.h"
#include "yamlfield.h"

enum config_key {
    KEY_MODEL_TYPE = 0,
    KEY_MODEL_CFG,
    KEY_MODEL_WEIGHTS,
    KEY_MODEL_ONNX,
    KEY_CROP_GRID,
    KEY_INPUT_WIDTH,
    KEY_INPUT_HEIGHT,
    KEY_CLASSES,
    KEY_MEAN,
    KEY_SCALE,
    KEY_SWAP_RB,
    KEY_BOX_THRESHOLD,
    KEY_NMS_THRESHOLD,
    KEY_MAX_DETECTIONS,
    KEY_MAX_FRAME_BYTES,
    KEY_THREADS,
    KEY_SCORE,
    KEY_BOX_UNITS,
    KEY_MAX
};

static const char *const key_names[KEY_MAX] = {
    [KEY_MODEL_TYPE] = "model_type",
    [KEY_MODEL_CFG] = "model_cfg",
    [KEY_MODEL_WEIGHTS] = "model_weights",
    [KEY_MODEL_ONNX] = "model_onnx",
    [KEY_CROP_GRID] = "crop_grid",
    [KEY_INPUT_WIDTH] = "input_width",
    [KEY_INPUT_HEIGHT] = "input_height",
    [KEY_CLASSES] = "classes",
    [KEY_MEAN] = "mean",
    [KEY_SCALE] = "scale",
    [KEY_SWAP_RB] = "swap_rb",
    [KEY_BOX_THRESHOLD] = "box_threshold",
    [KEY_NMS_THRESHOLD] = "nms_threshold",
    [KEY_MAX_DETECTIONS] = "max_detections",
    [KEY_MAX_FRAME_BYTES] = "max_frame_bytes",
    [KEY_THREADS] = "threads",
    [KEY_SCORE] = "score",
    [KEY_BOX_UNITS] = "box_units",
};

#define CONFIG_MIN_INPUT_SIDE 8
#define CONFIG_MIN_FRAME_BYTES 1024u
/* What a field handler needs. */
struct parse_ctx {
    struct yamlfield_ctx yaml;
    const char *base_dir;
    struct helper_config *cfg;
};

/* The field readers are yamlfield's (native/common/yamlfield.h); these
 * turn their answer into a config_result. */
#define field_error(ctx, name, node, ...) \
    (yamlfield_error(&(ctx)->yaml, (name), (node), __VA_ARGS__), CONFIG_ERR_FIELD)

void config_decode_target(const struct helper_config *cfg, int *ret_width, int *ret_height)
{
    /* A cell of an n x n grid spans 2 / (n + 1) of the frame. */
    const int times_two = cfg->model_type == INFER_MODEL_ONNX_CROPS ? cfg->crop_grid + 1 : 2;

    *ret_width = cfg->input_width * times_two / 2;
    *ret_height = cfg->input_height * times_two / 2;
}

const char *config_result_str(enum config_result result)
{
    switch (result) {
    case CONFIG_OK: return "ok";
    case CONFIG_ERR_INVALID: return "invalid argument";
    case CONFIG_ERR_IO: return "configuration file could not be read";
    case CONFIG_ERR_SYNTAX: return "configuration is not valid YAML";
    case CONFIG_ERR_FIELD: return "invalid configuration field";
    case CONFIG_ERR_NOMEM: return "out of memory";
    case CONFIG_RESULT_MAX: break;
    }
    return "unknown result";
}

static enum config_result from_yamlfield(enum yamlfield_result result)
{
    switch (result) {
    case YAMLFIELD_OK: return CONFIG_OK;
    case YAMLFIELD_ERR_IO: return CONFIG_ERR_IO;
    case YAMLFIELD_ERR_SYNTAX: return CONFIG_ERR_SYNTAX;
    case YAMLFIELD_ERR_NOMEM: return CONFIG_ERR_NOMEM;
    }
    return CONFIG_ERR_INVALID;
}

static const char *scalar_text(const struct parse_ctx *ctx, const char *name,
                               const yaml_node_t *node, enum config_result *ret_result)
{
    const char *text = yamlfield_text(&ctx->yaml, name, node, 0);

    if (!text)
        *ret_result = CONFIG_ERR_FIELD;
    return text;
}

static enum config_result get_long(const struct parse_ctx *ctx, const char *name,
                                   const yaml_node_t *node, long min, long max, long *ret_value)
{
    double value;

    if (!yamlfield_number(&ctx->yaml, name, node, true, (double)min, (double)max, &value))
        return CONFIG_ERR_FIELD;
    *ret_value = (long)value;
    return CONFIG_OK;
}

static enum config_result get_float(const struct parse_ctx *ctx, const char *name,
                                    const yaml_node_t *node, double min, double max,
                                    float *ret_value)
{
    double value;

    if (!yamlfield_number(&ctx->yaml, name, node, false, min, max, &value))
        return CONFIG_ERR_FIELD;
    *ret_value = (float)value;
    return CONFIG_OK;
}

static enum config_result get_bool(const struct parse_ctx *ctx, const char *name,
                                   const yaml_node_t *node, bool *ret_value)
{
    return yamlfield_bool(&ctx->yaml, name, node, ret_value) ? CONFIG_OK : CONFIG_ERR_FIELD;
}

static enum config_result get_choice(const struct parse_ctx *ctx, const char *name,
                                     const yaml_node_t *node, const char *const *choices,
                                     size_t count, size_t *ret_index)
{
    return yamlfield_choice(&ctx->yaml, name, node, choices, count, ret_index)
               ? CONFIG_OK
               : CONFIG_ERR_FIELD;
}

/* A model path, resolved against base_dir when relative, into out. */
static enum config_result get_path(const struct parse_ctx *ctx, const char *name,
                                   const yaml_node_t *node, char out[CONFIG_MAX_PATH])
{
    enum config_result result = CONFIG_OK;
    const char *text = scalar_text(ctx, name, node, &result);
    const char *base = ctx->base_dir && *ctx->base_dir ? ctx->base_dir : NULL;
    int n;

    if (!text)
        goto out;
    if (*text == '\0') {
        result = field_error(ctx, name, node, "must not be empty");
        goto out;
    }
    if (text[0] == '/' || !base)
        n = snprintf(out, CONFIG_MAX_PATH, "%s", text);
    else
        n = snprintf(out, CONFIG_MAX_PATH, "%s/%s", base, text);
    if (n < 0 || (size_t)n >= CONFIG_MAX_PATH) {
        out[0] = '\0';
        result = field_error(ctx, name, node, "path longer than %u bytes", CONFIG_MAX_PATH - 1);
        goto out;
    }

out:
    return result;
}

static enum config_result get_classes(const struct parse_ctx *ctx, const char *name,
                                      const yaml_node_t *node)
{
    enum config_result result = CONFIG_OK;
    struct helper_config *cfg = ctx->cfg;
    size_t count;

    if (!node || node->type != YAML_SEQUENCE_NODE) {
        result = field_error(ctx, name, node, "must be a list of class names");
        goto out;
    }
    count = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (count < 1 || count > CONFIG_MAX_CLASSES) {
        result = field_error(ctx, name, node, "must list 1 to %d class names (got %zu)",
                             CONFIG_MAX_CLASSES, count);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        const yaml_node_t *item =
            yaml_document_get_node(ctx->yaml.doc, node->data.sequence.items.start[i]);
        const char *text = scalar_text(ctx, name, item, &result);
        size_t len;

        if (!text)
            goto out;
        len = strlen(text);
        if (len < 1 || len > CONFIG_MAX_CLASS_NAME) {
            result = field_error(ctx, name, item, "class name %zu must be 1 to %d bytes", i + 1,
                                 CONFIG_MAX_CLASS_NAME);
            goto out;
        }
        for (size_t k = 0; k < len; k++) {
            if (text[k] < 0x20 || text[k] > 0x7e) {
                result = field_error(ctx, name, item,
                                     "class name %zu must be printable ASCII", i + 1);
                goto out;
            }
        }
        memcpy(cfg->classes[i], text, len + 1);
    }
    cfg->num_classes = count;

out:
    return result;
}

static enum config_result get_mean(const struct parse_ctx *ctx, const char *name,
                                   const yaml_node_t *node)
{
    enum config_result result = CONFIG_OK;
    float mean[3];

    if (!node || node->type != YAML_SEQUENCE_NODE ||
        node->data.sequence.items.top - node->data.sequence.items.start != 3) {
        result = field_error(ctx, name, node, "must be a list of 3 numbers");
        goto out;
    }
    for (size_t i = 0; i < 3; i++) {
        const yaml_node_t *item =
            yaml_document_get_node(ctx->yaml.doc, node->data.sequence.items.start[i]);
        result = get_float(ctx, name, item, -1e6, 1e6, &mean[i]);
        if (result != CONFIG_OK)
            goto out;
    }
    memcpy(ctx->cfg->mean, mean, sizeof(mean));

out:
    return result;
}

static enum config_result set_field(const struct parse_ctx *ctx, enum config_key key,
                                    const yaml_node_t *node)
{
    static const char *const model_types[] = {"darknet", "onnx", "onnx_crops"};
    static const enum infer_model_type model_type_values[] = {
        INFER_MODEL_DARKNET, INFER_MODEL_ONNX, INFER_MODEL_ONNX_CROPS};
    static const char *const scores[] = {"class", "objectness_x_class"};
    static const char *const units[] = {"normalized", "input_pixels"};
    struct helper_config *cfg = ctx->cfg;
    const char *name = key_names[key];
    enum config_result result = CONFIG_OK;
    size_t index = 0;
    long value = 0;

    switch (key) {
    case KEY_MODEL_TYPE:
        result = get_choice(ctx, name, node, model_types, 3, &index);
        if (result == CONFIG_OK)
            cfg->model_type = model_type_values[index];
        break;
    case KEY_MODEL_CFG:
        result = get_path(ctx, name, node, cfg->model_cfg);
        break;
    case KEY_MODEL_WEIGHTS:
        result = get_path(ctx, name, node, cfg->model_weights);
        break;
    case KEY_MODEL_ONNX:
        result = get_path(ctx, name, node, cfg->model_onnx);
        break;
    case KEY_CROP_GRID:
        result = get_long(ctx, name, node, 1, CONFIG_MAX_CROP_GRID, &value);
        if (result == CONFIG_OK)
            cfg->crop_grid = (int)value;
        break;
    case KEY_INPUT_WIDTH:
    case KEY_INPUT_HEIGHT:
        result = get_long(ctx, name, node, CONFIG_MIN_INPUT_SIDE, CONFIG_MAX_INPUT_SIDE, &value);
        if (result == CONFIG_OK && key == KEY_INPUT_WIDTH)
            cfg->input_width = (int)value;
        else if (result == CONFIG_OK)
            cfg->input_height = (int)value;
        break;
    case KEY_CLASSES:
        result = get_classes(ctx, name, node);
        break;
    case KEY_MEAN:
        result = get_mean(ctx, name, node);
        break;
    case KEY_SCALE:
        result = get_float(ctx, name, node, 1e-9, 1e6, &cfg->scale);
        break;
    case KEY_SWAP_RB:
        result = get_bool(ctx, name, node, &cfg->swap_rb);
        break;
    case KEY_BOX_THRESHOLD:
        result = get_float(ctx, name, node, 0.0, 1.0, &cfg->box_threshold);
        break;
    case KEY_NMS_THRESHOLD:
        result = get_float(ctx, name, node, 0.0, 1.0, &cfg->nms_threshold);
        break;
    case KEY_MAX_DETECTIONS:
        result = get_long(ctx, name, node, 1, CONFIG_MAX_DETECTIONS, &value);
        if (result == CONFIG_OK)
            cfg->max_detections = (size_t)value;
        break;
    case KEY_MAX_FRAME_BYTES:
        result = get_long(ctx, name, node, CONFIG_MIN_FRAME_BYTES, CONFIG_MAX_FRAME_BYTES,
                          &value);
        if (result == CONFIG_OK)
            cfg->max_frame_bytes = (size_t)value;
        break;
    case KEY_THREADS:
        result = get_long(ctx, name, node, 1, CONFIG_MAX_THREADS, &value);
        if (result == CONFIG_OK)
            cfg->threads = (int)value;
        break;
    case KEY_SCORE:
        result = get_choice(ctx, name, node, scores, 2, &index);
        if (result == CONFIG_OK)
            cfg->score = index == 0 ? INFER_SCORE_CLASS : INFER_SCORE_OBJECTNESS_X_CLASS;
        break;
    case KEY_BOX_UNITS:
        result = get_choice(ctx, name, node, units, 2, &index);
        if (result == CONFIG_OK)
            cfg->box_units = index == 0 ? INFER_BOXES_NORMALIZED : INFER_BOXES_INPUT_PIXELS;
        break;
    case KEY_MAX:
        result = CONFIG_ERR_INVALID;
        break;
    }
    return result;
}

static void set_defaults(struct helper_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->model_type = INFER_MODEL_TYPE_MAX; /* required */
    cfg->scale = 1.0f / 255.0f;
    cfg->swap_rb = true;
    cfg->box_threshold = 0.08f;
    cfg->nms_threshold = 0.45f;
    cfg->max_detections = 100;
    cfg->max_frame_bytes = CONFIG_DEFAULT_FRAME_BYTES;
    cfg->threads = 1;
}

/* Checks that the fields fit together, and fills in the per-model defaults. */
static enum config_result finish(const struct parse_ctx *ctx, const bool seen[KEY_MAX])
{
    static const enum config_key required[] = {KEY_MODEL_TYPE, KEY_INPUT_WIDTH,
                                               KEY_INPUT_HEIGHT, KEY_CLASSES};
    struct helper_config *cfg = ctx->cfg;
    enum config_result result = CONFIG_OK;

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (!seen[required[i]]) {
            result = field_error(ctx, key_names[required[i]], NULL, "is required");
            goto out;
        }
    }
    if (cfg->model_type == INFER_MODEL_DARKNET) {
        if (!seen[KEY_MODEL_CFG]) {
            result = field_error(ctx, "model_cfg", NULL, "is required for model_type darknet");
            goto out;
        }
        if (!seen[KEY_MODEL_WEIGHTS]) {
            result = field_error(ctx, "model_weights", NULL,
                                 "is required for model_type darknet");
            goto out;
        }
        if (seen[KEY_MODEL_ONNX]) {
            result = field_error(ctx, "model_onnx", NULL, "is only for model_type onnx");
            goto out;
        }
    } else {
        if (!seen[KEY_MODEL_ONNX]) {
            result = field_error(ctx, "model_onnx", NULL, "is required for model_type onnx");
            goto out;
        }
        if (cfg->model_type == INFER_MODEL_ONNX_CROPS && cfg->num_classes != 1) {
            result = field_error(ctx, "classes", NULL, "must be one class for model_type onnx_crops");
            goto out;
        }
        if (seen[KEY_MODEL_CFG] || seen[KEY_MODEL_WEIGHTS]) {
            result = field_error(ctx, seen[KEY_MODEL_CFG] ? "model_cfg" : "model_weights",
                                 NULL, "is only for model_type darknet");
            goto out;
        }
    }
    if (seen[KEY_CROP_GRID] && cfg->model_type != INFER_MODEL_ONNX_CROPS) {
        result = field_error(ctx, "crop_grid", NULL, "is only for model_type onnx_crops");
        goto out;
    }
    if (cfg->model_type == INFER_MODEL_ONNX_CROPS && !seen[KEY_CROP_GRID])
        cfg->crop_grid = CONFIG_DEFAULT_CROP_GRID;
    if (!seen[KEY_SCORE])
        cfg->score = cfg->model_type == INFER_MODEL_DARKNET ? INFER_SCORE_CLASS
                                                             : INFER_SCORE_OBJECTNESS_X_CLASS;
    if (!seen[KEY_BOX_UNITS])
        cfg->box_units = cfg->model_type == INFER_MODEL_DARKNET ? INFER_BOXES_NORMALIZED
                                                                 : INFER_BOXES_INPUT_PIXELS;

out:
    return result;
}

enum config_result config_parse(const char *text, size_t len, const char *base_dir,
                                struct helper_config *ret_config,
                                char *reterr, size_t reterr_len)
{
    enum config_result result = CONFIG_OK;
    struct helper_config *cfg = NULL;
    yaml_document_t doc;
    bool doc_ready = false;
    bool seen[KEY_MAX] = {false};
    struct parse_ctx ctx = {
        .yaml = {.doc = &doc, .reterr = reterr, .reterr_len = reterr_len},
        .base_dir = base_dir,
    };
    const yaml_node_t *root;

    if (!text || !ret_config || len > CONFIG_MAX_FILE_BYTES) {
        set_reason(reterr, reterr_len, "configuration missing or larger than %u bytes",
                   CONFIG_MAX_FILE_BYTES);
        result = CONFIG_ERR_INVALID;
        goto out;
    }
    cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        set_reason(reterr, reterr_len, "out of memory");
        result = CONFIG_ERR_NOMEM;
        goto out;
    }
    set_defaults(cfg);
    ctx.cfg = cfg;
    result = from_yamlfield(yamlfield_load(text, len, CONFIG_MAX_DEPTH, &doc, reterr, reterr_len));
    if (result != CONFIG_OK)
        goto out;
    doc_ready = true;
    root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        if (reterr && reterr_len > 0)
            snprintf(reterr, reterr_len, "the configuration must be a YAML mapping of fields");
        result = CONFIG_ERR_SYNTAX;
        goto out;
    }
    for (const yaml_node_pair_t *pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        const yaml_node_t *key_node = yaml_document_get_node(&doc, pair->key);
        const yaml_node_t *value_node = yaml_document_get_node(&doc, pair->value);
        const char *key_text = scalar_text(&ctx, "(key)", key_node, &result);
        char quoted[YAMLFIELD_QUOTE_MAX + 1];
        enum config_key key = KEY_MAX;

        if (!key_text)
            goto out;
        for (int k = 0; k < KEY_MAX; k++) {
            if (strcmp(key_text, key_names[k]) == 0) {
                key = (enum config_key)k;
                break;
            }
        }
        if (key == KEY_MAX) {
            result = field_error(&ctx, yamlfield_quote(key_text, quoted, sizeof(quoted)), key_node,
                                 "unknown field");
            goto out;
        }
        if (seen[key]) {
            result = field_error(&ctx, key_names[key], key_node, "given twice");
            goto out;
        }
        seen[key] = true;
        result = set_field(&ctx, key, value_node);
        if (result != CONFIG_OK)
            goto out;
    }
    result = finish(&ctx, seen);
    if (result != CONFIG_OK)
        goto out;
    memcpy(ret_config, cfg, sizeof(*cfg));

out:
    if (doc_ready)
        yaml_document_delete(&doc);
    free(cfg);
    return result;
}

enum config_result config_load(const char *path, struct helper_config *ret_config,
                               char *reterr, size_t reterr_len)
{
    enum config_result result = CONFIG_OK;
    char base_dir[CONFIG_MAX_PATH];
    char *text = NULL;
    const char *slash;
    size_t have = 0;

    if (!path || !*path || !ret_config) {
        set_reason(reterr, reterr_len, "no configuration file given");
        result = CONFIG_ERR_INVALID;
        goto out;
    }
    result = from_yamlfield(yamlfield_read_file(path, CONFIG_MAX_FILE_BYTES, &text, &have,
                                                reterr, reterr_len));
    if (result != CONFIG_OK)
        goto out;
    slash = strrchr(path, '/');
    if (!slash) {
        base_dir[0] = '\0';
    } else if (slash == path) {
        snprintf(base_dir, sizeof(base_dir), "/");
    } else if ((size_t)(slash - path) < sizeof(base_dir)) {
        memcpy(base_dir, path, (size_t)(slash - path));
        base_dir[slash - path] = '\0';
    } else {
        set_reason(reterr, reterr_len, "configuration path too long");
        result = CONFIG_ERR_INVALID;
        goto out;
    }
    result = config_parse(text, have, base_dir, ret_config, reterr, reterr_len);

out:
    free(text);
    return result;
}
