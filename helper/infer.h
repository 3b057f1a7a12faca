/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * infer: a small C API over OpenCV's DNN module.
 *
 * Conventions (after LevelDB's c.h): opaque handles, pointer + length instead
 * of C++ types, every call returns an infer_result and, on failure, writes a
 * NUL-terminated reason into the caller's reterr buffer (left untouched on
 * success). No C++ exception ever crosses this boundary.
 */
#ifndef TSD_INFER_H
#define TSD_INFER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum infer_result {
    INFER_OK = 0,
    INFER_ERR_INVALID, /* bad argument */
    INFER_ERR_MODEL,   /* the model could not be read */
    INFER_ERR_RUNTIME, /* OpenCV failed while running the model */
    INFER_ERR_NOSPACE, /* the caller's output buffer is too small */
    INFER_ERR_NOMEM,
    INFER_RESULT_MAX
};

struct infer_net;

/* ---- detection -------------------------------------------------------------
 *
 * A detector is a loaded YOLO-style model plus its pre- and post-processing:
 *
 *   1. the caller's 8-bit BGR image (any size; the helper decodes JPEGs at
 *      the smallest DCT scale that is still >= the input size) is resized to
 *      input_width x input_height without letterboxing, and turned into an
 *      NCHW float blob by cv::dnn::blobFromImage: (pixel - mean) * scale,
 *      R and B swapped first when swap_rb is set;
 *   2. the net is run forward to every unconnected output layer;
 *   3. every output is read as rows of (cx, cy, w, h, objectness,
 *      class_0 .. class_{n-1}) -- what OpenCV's Region layer gives for
 *      Darknet [yolo] and [region] layers, and what YOLOv5-style ONNX exports
 *      give as [1, N, 5 + n]. A row's class is its best class column, and its
 *      confidence
 *        INFER_SCORE_CLASS:              that class column as it is. OpenCV's
 *                                        Region layer has already multiplied
 *                                        the objectness into it (and zeroed it
 *                                        below the cfg layer's thresh=, 0.2 by
 *                                        default for [yolo]: set thresh= in
 *                                        the .cfg to at most box_threshold);
 *        INFER_SCORE_OBJECTNESS_X_CLASS: objectness * that class column;
 *   4. rows with confidence > box_threshold are kept, and per class
 *      cv::dnn::NMSBoxes drops boxes whose IoU with a stronger one exceeds
 *      nms_threshold;
 *   5. at most max_detections remain, strongest first.
 *
 * The model is checked at load time with one forward pass on a blank image,
 * so a model whose outputs do not have 5 + num_classes columns is refused by
 * infer_detector_new() rather than by every frame.
 *
 * Boxes come back normalized to the image (0..1, clipped): multiply by the
 * width and height of any image the frame was scaled from.
 */

#define INFER_MAX_CLASSES 256
#define INFER_MAX_CLASS_NAME 63
#define INFER_MAX_DETECTIONS 4096
#define INFER_MAX_THREADS 64
#define INFER_MAX_INPUT_SIDE 4096
#define INFER_MAX_IMAGE_SIDE 16384

enum infer_model_type {
    INFER_MODEL_DARKNET = 0, /* cfg_path + weights_path */
    INFER_MODEL_ONNX,        /* onnx_path */
    INFER_MODEL_ONNX_CROPS,  /* onnx_path: a crop classifier (below) */
    INFER_MODEL_TYPE_MAX
};

/* ---- crop classifiers (INFER_MODEL_ONNX_CROPS) -----------------------------
 *
 * Instead of rows of boxes, the model scores crops of the image. The crops
 * are the whole image and a crop_grid x crop_grid grid of cells, each cell
 * 2 / (crop_grid + 1) of the image's width and height, so that neighbours
 * overlap by half: cell (i, j) spans [i / (n + 1), i / (n + 1) + 2 / (n + 1)]
 * of the width (n = crop_grid), and likewise of the height, in that order
 * (the whole image first, then row by row). Each crop's pixel bounds are
 * floor(fraction * size + 0.5). The crops go through blobFromImages (resized
 * to input_width x input_height, no letterbox, (pixel - mean) * scale) in
 * small batches (a few at a time: memory), and the model's output named
 * "score" must hold one value in [0, 1] per crop of a batch. A crop scoring above box_threshold is a detection of class 0
 * whose box is the crop; NMS and max_detections apply as below. An output
 * named "signature", when the model has one, gives each detection its
 * crop's signature (see struct infer_detection).
 * tools/train/train_crops.py trains such models and cuts the same crops. */
#define INFER_MAX_CROP_GRID 8

enum infer_score {
    INFER_SCORE_CLASS = 0,
    INFER_SCORE_OBJECTNESS_X_CLASS,
    INFER_SCORE_MAX
};

enum infer_box_units {
    INFER_BOXES_NORMALIZED = 0, /* cx, cy, w, h relative to the input: 0..1 */
    INFER_BOXES_INPUT_PIXELS,   /* in pixels of the input_width x input_height blob */
    INFER_BOX_UNITS_MAX
};

struct infer_detector_params {
    enum infer_model_type model_type;
    const char *cfg_path;     /* darknet */
    const char *weights_path; /* darknet */
    const char *onnx_path;    /* onnx, onnx_crops */
    int crop_grid;            /* onnx_crops: 1..INFER_MAX_CROP_GRID */
    int input_width;          /* 1..INFER_MAX_INPUT_SIDE */
    int input_height;
    int num_classes;          /* 1..INFER_MAX_CLASSES */
    float mean[3];
    float scale;
    int swap_rb;              /* nonzero: swap R and B (Darknet models take RGB) */
    float box_threshold;      /* [0, 1] */
    float nms_threshold;      /* [0, 1] */
    int max_detections;       /* 1..INFER_MAX_DETECTIONS */
    int threads;              /* 1..INFER_MAX_THREADS (cv::setNumThreads: process-wide) */
    enum infer_score score;
    enum infer_box_units box_units;
};

/* An appearance signature of a detection: onnx_crops models with an output
 * named "signature" (N x INFER_SIGNATURE_DIMS, one row per crop) give each
 * detection the row of its crop. The plugin compares signatures to recognise
 * what the owner already marked as fine on this printer. */
#define INFER_SIGNATURE_DIMS 32

struct infer_detection {
    int class_id;     /* 0..num_classes-1 */
    float confidence; /* (box_threshold, 1] */
    float x, y, w, h; /* top-left corner and size, normalized to the image */
    int signature_len; /* 0 (none) or INFER_SIGNATURE_DIMS */
    float signature[INFER_SIGNATURE_DIMS];
};

struct infer_detector;

const char *infer_result_str(enum infer_result result);

/* (transfer none) "darknet", "onnx" or "onnx_crops". */
const char *infer_model_type_str(enum infer_model_type type);

/* (transfer none) The OpenCV version the helper runs with. */
const char *infer_opencv_version(void);

/* Loads a Darknet model from memory. On INFER_OK, *ret_net is (transfer full)
 * and must be released with infer_net_free(). */
enum infer_result infer_net_load_darknet(const char *cfg, size_t cfg_len,
                                         const unsigned char *weights, size_t weights_len,
                                         struct infer_net **ret_net,
                                         char *reterr, size_t reterr_len);

/* Runs the net on one NCHW float image (batch 1) and copies the first output
 * blob into out. *ret_out_len receives the number of floats of that blob. */
enum infer_result infer_net_forward(struct infer_net *net, const float *input,
                                    int channels, int height, int width,
                                    float *out, size_t out_cap, size_t *ret_out_len,
                                    char *reterr, size_t reterr_len);

/* Accepts NULL; returns NULL. */
struct infer_net *infer_net_free(struct infer_net *net);

/* Loads the model and checks it (see above). On INFER_OK, *ret_detector is
 * (transfer full) and must be released with infer_detector_free(). */
enum infer_result infer_detector_new(const struct infer_detector_params *params,
                                     struct infer_detector **ret_detector,
                                     char *reterr, size_t reterr_len);

/* Runs the detector on one 8-bit BGR image of width x height pixels whose
 * rows are stride bytes apart (stride >= width * 3). Writes at most
 * out_cap detections (out_cap >= max_detections never truncates) and, on
 * INFER_OK, their number to *ret_count. Buffers are reused between calls. */
enum infer_result infer_detector_run(struct infer_detector *detector,
                                     const unsigned char *bgr, int width, int height,
                                     size_t stride,
                                     struct infer_detection *out, size_t out_cap,
                                     size_t *ret_count,
                                     char *reterr, size_t reterr_len);

/* The best confidence of any row or crop of the last infer_detector_run(),
 * whether or not it passed box_threshold, in [0, 1] (0 before any run, for
 * NULL, and when every score was NaN). tsd-helper --bench prints it, so
 * that a frame with no detection still shows what the model made of it. */
float infer_detector_top_score(const struct infer_detector *detector);

/* Accepts NULL; returns NULL. */
struct infer_detector *infer_detector_free(struct infer_detector *detector);

#ifdef __cplusplus
}
#endif

#endif
