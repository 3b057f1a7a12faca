/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * annotate: draws detection boxes on a frame for a failure notification.
 *
 * The JPEG is decoded (DCT-scaled so that it fits ANNOTATE_MAX_WIDTH x
 * ANNOTATE_MAX_HEIGHT when it is larger: the server shrinks pictures to
 * 1280 x 960 anyway), each box is outlined in a colour that says how
 * confident the detector is, and the image is encoded again at
 * ANNOTATE_QUALITY. Boxes are in the original frame's pixels and are clipped
 * to the image; at most ANNOTATE_MAX_BOXES are drawn.
 *
 * This file is plain C with no Python and no logging.
 */
#ifndef TSD_ANNOTATE_H
#define TSD_ANNOTATE_H

#include <stddef.h>

#include "jpeg.h"

#define ANNOTATE_MAX_WIDTH 1280
#define ANNOTATE_MAX_HEIGHT 960
#define ANNOTATE_MAX_BOXES 256u
#define ANNOTATE_QUALITY 85

struct annotate_box {
    double x, y, w, h;   /* top-left corner and size, original pixels */
    double confidence;   /* 0..1 */
};

/* *ret_jpeg (transfer full, free()) and *ret_len are written only on JPG_OK.
 * JPG_ERR_INVALID for more than ANNOTATE_MAX_BOXES boxes or a NULL argument;
 * the decode errors of jpg_decode_alloc() otherwise; JPG_ERR_LIBRARY when
 * encoding fails. */
enum jpg_result annotate_jpeg(const void *jpeg, size_t len, const struct annotate_box *boxes,
                              size_t n_boxes, unsigned char **ret_jpeg, size_t *ret_len);

#endif
