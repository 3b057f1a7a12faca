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

const char *infer_result_str(enum infer_result result);

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

#ifdef __cplusplus
}
#endif

#endif
