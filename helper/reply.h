/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * reply: the JSON payloads of the helper's responses (see frame.h for the
 * framing around them). Compact, no spaces, one object each:
 *
 *   detections: {"id":7,"ms":12.5,"w":640,"h":480,"detections":[
 *                  {"class":"failure","confidence":0.53,"box":[x,y,w,h]},...]}
 *               A detection with a signature (infer.h) also has
 *               "sig":[v1,...,v32] after its box.
 *               ms is decode + inference time in milliseconds; w and h are
 *               the JPEG's own size; box is the top-left corner, width and
 *               height in pixels of that JPEG (integers). Detections come
 *               strongest first.
 *   error:      {"id":7,"error":"truncated JPEG (no EOI marker)"}
 *
 * Numbers are printed with at most 4 decimals and no trailing zeros. Error
 * texts are escaped (control characters as \u00XX; bytes above 0x7e, which
 * could be broken UTF-8, become '?') and cut at REPLY_MAX_ERROR bytes.
 *
 * This file is plain C with no I/O.
 */
#ifndef TSD_HELPER_REPLY_H
#define TSD_HELPER_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "infer.h"

enum reply_result {
    REPLY_OK = 0,
    REPLY_ERR_INVALID, /* bad argument */
    REPLY_ERR_NOSPACE, /* the buffer is too small */
    REPLY_RESULT_MAX
};

#define REPLY_MAX_ERROR 1024u
/* A buffer of this many bytes holds any detections reply of n detections
 * whose class names are printable ASCII of at most INFER_MAX_CLASS_NAME bytes. */
#define REPLY_DETECTIONS_BYTES(n) \
    (160u + (size_t)(n) * (2u * INFER_MAX_CLASS_NAME + 128u + 24u * INFER_SIGNATURE_DIMS))
/* ... and this many any error reply. */
#define REPLY_ERROR_BYTES (64u + 6u * REPLY_MAX_ERROR)

const char *reply_result_str(enum reply_result result);

/* Writes the detections object for a frame_width x frame_height JPEG into
 * buf (cap bytes; NUL-terminated); *ret_len (without the NUL) on REPLY_OK.
 * class_names has num_classes entries; every detection's class_id must be
 * below num_classes. */
enum reply_result reply_detections(char *buf, size_t cap, uint32_t id, double ms,
                                   int frame_width, int frame_height,
                                   const struct infer_detection *detections, size_t count,
                                   const char *const *class_names, size_t num_classes,
                                   size_t *ret_len);

/* Writes {"id":N,"error":"message"}; *ret_len on REPLY_OK. */
enum reply_result reply_error(char *buf, size_t cap, uint32_t id, const char *message,
                              size_t *ret_len);

#endif
