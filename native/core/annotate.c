/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "annotate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

/* Outline thickness in pixels of the annotated image. */
#define LINE 3

static void fill(struct jpg_image *image, int x0, int y0, int x1, int y1,
                 const unsigned char rgb[3])
{
    int width = image->output.width;
    int height = image->output.height;

    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if (x1 > width)
        x1 = width;
    if (y1 > height)
        y1 = height;
    for (int y = y0; y < y1; y++) {
        unsigned char *row = image->data + (size_t)y * image->output.stride;
        for (int x = x0; x < x1; x++)
            memcpy(row + (size_t)x * 3, rgb, 3);
    }
}

/* Clamps a coordinate in image pixels; NaN and infinities become 0. */
static int clamp_px(double value, int limit)
{
    if (!isfinite(value) || value < 0)
        return 0;
    if (value > limit)
        return limit;
    return (int)value;
}

static void outline(struct jpg_image *image, const struct annotate_box *box, double scale)
{
    int width = image->output.width;
    int height = image->output.height;
    int x0 = clamp_px(box->x * scale, width);
    int y0 = clamp_px(box->y * scale, height);
    int x1 = clamp_px((box->x + box->w) * scale, width);
    int y1 = clamp_px((box->y + box->h) * scale, height);
    double c = isfinite(box->confidence) ? fmin(1.0, fmax(0.0, box->confidence)) : 0.0;
    /* yellow for weak detections, red for strong ones */
    unsigned char rgb[3] = {255, (unsigned char)lround(220.0 * (1.0 - c)), 0};

    if (x1 <= x0 || y1 <= y0)
        return;
    fill(image, x0, y0, x1, y0 + LINE, rgb);
    fill(image, x0, y1 - LINE, x1, y1, rgb);
    fill(image, x0, y0, x0 + LINE, y1, rgb);
    fill(image, x1 - LINE, y0, x1, y1, rgb);
}

enum jpg_result annotate_jpeg(const void *jpeg, size_t len, const struct annotate_box *boxes,
                              size_t n_boxes, unsigned char **ret_jpeg, size_t *ret_len)
{
    enum jpg_result result;
    struct jpg_decoder *decoder = NULL;
    struct jpg_image *image = NULL;
    struct jpg_info info;
    tjhandle encoder = NULL;
    unsigned char *out_buf = NULL;
    unsigned long out_len = 0;
    int target_w = 0, target_h = 0;
    double scale;

    if (!jpeg || !ret_jpeg || !ret_len || (n_boxes && !boxes) || n_boxes > ANNOTATE_MAX_BOXES) {
        result = JPG_ERR_INVALID;
        goto out;
    }
    result = jpg_decoder_new(&decoder);
    if (result != JPG_OK)
        goto out;
    result = jpg_validate(decoder, jpeg, len, &info);
    if (result != JPG_OK)
        goto out;
    /* The smallest DCT scale still at least a quarter of the size limit,
     * or the full size for frames that already fit. */
    if (info.width > ANNOTATE_MAX_WIDTH || info.height > ANNOTATE_MAX_HEIGHT) {
        target_w = ANNOTATE_MAX_WIDTH / 2;
        target_h = ANNOTATE_MAX_HEIGHT / 2;
    } else {
        target_w = info.width;
        target_h = info.height;
    }
    result = jpg_decode_alloc(decoder, jpeg, len, target_w, target_h, JPG_FORMAT_RGB, 0, &image);
    if (result != JPG_OK)
        goto out;
    scale = (double)image->output.width / (double)info.width;
    for (size_t i = 0; i < n_boxes; i++)
        outline(image, &boxes[i], scale);
    encoder = tjInitCompress();
    if (!encoder) {
        result = JPG_ERR_LIBRARY;
        goto out;
    }
    if (tjCompress2(encoder, image->data, image->output.width, (int)image->output.stride,
                    image->output.height, TJPF_RGB, &out_buf, &out_len, TJSAMP_420,
                    ANNOTATE_QUALITY, 0) != 0) {
        result = JPG_ERR_LIBRARY;
        goto out;
    }
    *ret_jpeg = malloc(out_len);
    if (!*ret_jpeg) {
        result = JPG_ERR_NOMEM;
        goto out;
    }
    memcpy(*ret_jpeg, out_buf, out_len);
    *ret_len = out_len;
    result = JPG_OK;

out:
    if (out_buf)
        tjFree(out_buf);
    if (encoder)
        tjDestroy(encoder);
    jpg_image_free(image);
    jpg_decoder_free(decoder);
    return result;
}
