/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * config: the helper's YAML configuration (read with libyaml).
 *
 * The file is one YAML mapping with these keys (every other key is an error,
 * so that a typo is reported instead of silently ignored):
 *
 *   model_type      darknet | onnx | onnx_crops                     (required)
 *   model_cfg       Darknet .cfg file           (required for darknet)
 *   model_weights   Darknet .weights file       (required for darknet)
 *   model_onnx      ONNX file                   (required for onnx, onnx_crops)
 *   crop_grid       onnx_crops: cells per side of the crop grid, 1..CONFIG_MAX_CROP_GRID;
 *                   default 3 (see infer.h)
 *   input_width     network input width, 8..CONFIG_MAX_INPUT_SIDE   (required)
 *   input_height    network input height, 8..CONFIG_MAX_INPUT_SIDE  (required)
 *   classes         list of 1..CONFIG_MAX_CLASSES class names       (required)
 *   mean            list of 3 numbers subtracted from the channels, in the
 *                   network's channel order (after swap_rb); default [0, 0, 0]
 *   scale           multiplier applied after the mean; default 1/255
 *   swap_rb         true: the network takes RGB (Darknet); default true
 *   box_threshold   minimum confidence, 0..1; default 0.08
 *   nms_threshold   IoU above which the weaker box is dropped, 0..1; default 0.45
 *   max_detections  detections reported per frame at most, 1..CONFIG_MAX_DETECTIONS;
 *                   default 100
 *   max_frame_bytes largest JPEG accepted, 1024..CONFIG_MAX_FRAME_BYTES;
 *                   default 8 MiB
 *   threads         OpenCV threads, 1..CONFIG_MAX_THREADS; default 1
 *   score           class | objectness_x_class: how a row's confidence is
 *                   computed; default class for darknet (OpenCV's region
 *                   layer already multiplies objectness into the class
 *                   columns), objectness_x_class for onnx
 *   box_units       normalized | input_pixels: the units of a row's cx, cy,
 *                   w, h; default normalized for darknet, input_pixels for
 *                   onnx (YOLOv5-style exports)
 *
 * Relative model paths are resolved against the directory of the config
 * file. Class names are 1..CONFIG_MAX_CLASS_NAME bytes without control
 * characters. Numbers must be finite and parse completely. Booleans are
 * true/false (also yes/no, on/off, 1/0). The file is read by the bounded YAML
 * reader of native/common/yamlfield.h: one document, no aliases, no nesting
 * deeper than a list inside the mapping (CONFIG_MAX_DEPTH).
 *
 * This file is plain C with no logging: every error is a result code plus a
 * message in the caller's buffer that names the offending field.
 */
#ifndef TSD_HELPER_CONFIG_H
#define TSD_HELPER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "infer.h"

enum config_result {
    CONFIG_OK = 0,
    CONFIG_ERR_INVALID, /* bad argument */
    CONFIG_ERR_IO,      /* the file could not be read */
    CONFIG_ERR_SYNTAX,  /* not valid YAML, or not a mapping at the top */
    CONFIG_ERR_FIELD,   /* a missing, unknown, repeated or invalid field */
    CONFIG_ERR_NOMEM,
    CONFIG_RESULT_MAX
};

#define CONFIG_MAX_FILE_BYTES (64u * 1024u)
/* Collections inside one another: the mapping and a list in it. */
#define CONFIG_MAX_DEPTH 2u
#define CONFIG_MAX_PATH 4096u
#define CONFIG_MAX_INPUT_SIDE 4096
#define CONFIG_MAX_CLASSES INFER_MAX_CLASSES
#define CONFIG_MAX_CLASS_NAME INFER_MAX_CLASS_NAME
#define CONFIG_MAX_DETECTIONS 4096
#define CONFIG_MAX_THREADS 64
#define CONFIG_MAX_FRAME_BYTES (64u * 1024u * 1024u)
#define CONFIG_DEFAULT_FRAME_BYTES (8u * 1024u * 1024u)
#define CONFIG_MAX_CROP_GRID INFER_MAX_CROP_GRID
#define CONFIG_DEFAULT_CROP_GRID 3

struct helper_config {
    enum infer_model_type model_type;
    char model_cfg[CONFIG_MAX_PATH];     /* "" when not given */
    char model_weights[CONFIG_MAX_PATH];
    char model_onnx[CONFIG_MAX_PATH];
    int crop_grid;                       /* onnx_crops; 0 otherwise */
    int input_width;
    int input_height;
    size_t num_classes;
    char classes[CONFIG_MAX_CLASSES][CONFIG_MAX_CLASS_NAME + 1];
    float mean[3];
    float scale;
    bool swap_rb;
    float box_threshold;
    float nms_threshold;
    size_t max_detections;
    size_t max_frame_bytes;
    int threads;
    enum infer_score score;
    enum infer_box_units box_units;
};

const char *config_result_str(enum config_result result);

/* The smallest decoded frame size the model wants: the input size, or for
 * onnx_crops the size at which a grid cell is at least the input size. */
void config_decode_target(const struct helper_config *cfg, int *ret_width, int *ret_height);

/* Reads and checks the file at path. On CONFIG_OK, *ret_config (which the
 * caller allocates; it is large) is filled in; on failure it is untouched and
 * reterr names the field and the problem. */
enum config_result config_load(const char *path, struct helper_config *ret_config,
                               char *reterr, size_t reterr_len);

/* Same, for YAML text already in memory; relative paths are resolved
 * against base_dir (NULL or "" for the current directory). */
enum config_result config_parse(const char *text, size_t len, const char *base_dir,
                                struct helper_config *ret_config,
                                char *reterr, size_t reterr_len);

#endif
