/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "jpeg.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

struct jpg_decoder {
    tjhandle handle;
};

const char *jpg_result_str(enum jpg_result result)
{
    switch (result) {
    case JPG_OK: return "ok";
    case JPG_ERR_INVALID: return "invalid argument";
    case JPG_ERR_NOMEM: return "out of memory";
    case JPG_ERR_LIBRARY: return "libturbojpeg could not create a decompressor";
    case JPG_ERR_EMPTY: return "empty JPEG";
    case JPG_ERR_INPUT_TOO_BIG: return "JPEG too large";
    case JPG_ERR_NO_SOI: return "not a JPEG (no SOI marker)";
    case JPG_ERR_NO_EOI: return "truncated JPEG (no EOI marker)";
    case JPG_ERR_HEADER: return "unreadable JPEG header";
    case JPG_ERR_DIMENSIONS: return "JPEG dimensions out of range";
    case JPG_ERR_DECODE: return "JPEG decoding failed";
    case JPG_ERR_BUFFER_TOO_SMALL: return "output buffer too small";
    case JPG_ERR_OUTPUT_TOO_BIG: return "decoded image larger than allowed";
    case JPG_RESULT_MAX: break;
    }
    return "unknown result";
}

enum jpg_result jpg_decoder_new(struct jpg_decoder **ret_decoder)
{
    enum jpg_result result = JPG_OK;
    struct jpg_decoder *decoder = NULL;

    if (!ret_decoder) {
        result = JPG_ERR_INVALID;
        goto out;
    }
    decoder = calloc(1, sizeof(*decoder));
    if (!decoder) {
        result = JPG_ERR_NOMEM;
        goto out;
    }
    decoder->handle = tjInitDecompress();
    if (!decoder->handle) {
        result = JPG_ERR_LIBRARY;
        goto out;
    }
    *ret_decoder = decoder;
    decoder = NULL;

out:
    jpg_decoder_free(decoder);
    return result;
}

struct jpg_decoder *jpg_decoder_free(struct jpg_decoder *decoder)
{
    if (decoder) {
        if (decoder->handle)
            tjDestroy(decoder->handle);
        free(decoder);
    }
    return NULL;
}

/* libturbojpeg 2.x leaves a handle in the middle of a header after
 * tjDecompressHeader3() fails (the next call then reports "two SOI
 * markers"): start again with a fresh one. */
static void renew_handle(struct jpg_decoder *decoder)
{
    if (decoder->handle)
        tjDestroy(decoder->handle);
    decoder->handle = tjInitDecompress();
}

static bool is_padding(unsigned char c)
{
    return c == '\0' || c == '\r' || c == '\n';
}

enum jpg_result jpg_validate(struct jpg_decoder *decoder, const void *data, size_t len,
                             struct jpg_info *ret_info)
{
    const unsigned char *bytes = data;
    struct jpg_info info = {0};
    size_t end = len;

    if (!decoder || (!data && len > 0))
        return JPG_ERR_INVALID;
    if (len == 0)
        return JPG_ERR_EMPTY;
    if (len > JPG_MAX_INPUT)
        return JPG_ERR_INPUT_TOO_BIG;
    if (len < 2 || bytes[0] != 0xff || bytes[1] != 0xd8)
        return JPG_ERR_NO_SOI;
    while (end > 2 && len - end < JPG_MAX_PADDING && is_padding(bytes[end - 1]))
        end--;
    /* SOI, at least one more marker, EOI. */
    if (end < 6 || bytes[end - 2] != 0xff || bytes[end - 1] != 0xd9)
        return JPG_ERR_NO_EOI;
    if (!decoder->handle) {
        renew_handle(decoder); /* after a failed renewal */
        if (!decoder->handle)
            return JPG_ERR_LIBRARY;
    }
    if (tjDecompressHeader3(decoder->handle, bytes, (unsigned long)len, &info.width,
                            &info.height, &info.subsamp, &info.colorspace) != 0) {
        renew_handle(decoder);
        return JPG_ERR_HEADER;
    }
    /* A tables-only stream "succeeds" without dimensions. */
    if (info.width < 1 || info.height < 1)
        return JPG_ERR_HEADER;
    if (info.width > JPG_MAX_DIMENSION || info.height > JPG_MAX_DIMENSION)
        return JPG_ERR_DIMENSIONS;
    if (ret_info)
        *ret_info = info;
    return JPG_OK;
}

static int scaled(int dimension, int denom)
{
    tjscalingfactor factor = {1, denom};
    return TJSCALED(dimension, factor);
}

int jpg_choose_scale(int width, int height, int target_width, int target_height)
{
    static const int denoms[] = {8, 4, 2};

    for (size_t i = 0; i < sizeof(denoms) / sizeof(denoms[0]); i++)
        if (scaled(width, denoms[i]) >= target_width && scaled(height, denoms[i]) >= target_height)
            return denoms[i];
    return 1;
}

enum jpg_result jpg_plan(struct jpg_decoder *decoder, const void *data, size_t len,
                         int target_width, int target_height, struct jpg_output *ret_output)
{
    enum jpg_result result;
    struct jpg_output output = {0};

    if (!ret_output)
        return JPG_ERR_INVALID;
    result = jpg_validate(decoder, data, len, &output.info);
    if (result != JPG_OK)
        return result;
    output.scale_denom = jpg_choose_scale(output.info.width, output.info.height, target_width,
                                          target_height);
    output.width = scaled(output.info.width, output.scale_denom);
    output.height = scaled(output.info.height, output.scale_denom);
    output.stride = (size_t)output.width * 3u;
    output.bytes = output.stride * (size_t)output.height;
    *ret_output = output;
    return JPG_OK;
}

/* Decodes the planned output into buf (at least output->bytes bytes). */
static enum jpg_result decode(struct jpg_decoder *decoder, const void *data, size_t len,
                              const struct jpg_output *output, enum jpg_format format,
                              unsigned char *buf)
{
    int flags = 0;

#ifdef TJFLAG_LIMITSCANS
    flags |= TJFLAG_LIMITSCANS;
#endif
    if (tjDecompress2(decoder->handle, data, (unsigned long)len, buf, output->width,
                      (int)output->stride, output->height,
                      format == JPG_FORMAT_BGR ? TJPF_BGR : TJPF_RGB, flags) != 0 &&
        tjGetErrorCode(decoder->handle) != TJERR_WARNING)
        return JPG_ERR_DECODE;
    return JPG_OK;
}

enum jpg_result jpg_decode_into(struct jpg_decoder *decoder, const void *data, size_t len,
                                int target_width, int target_height, enum jpg_format format,
                                void *buf, size_t buf_size, struct jpg_output *ret_output)
{
    enum jpg_result result;
    struct jpg_output output;

    if (!buf || (unsigned)format >= JPG_FORMAT_MAX)
        return JPG_ERR_INVALID;
    result = jpg_plan(decoder, data, len, target_width, target_height, &output);
    if (result != JPG_OK)
        return result;
    if (buf_size < output.bytes)
        return JPG_ERR_BUFFER_TOO_SMALL;
    result = decode(decoder, data, len, &output, format, buf);
    if (result == JPG_OK && ret_output)
        *ret_output = output;
    return result;
}

enum jpg_result jpg_decode_alloc(struct jpg_decoder *decoder, const void *data, size_t len,
                                 int target_width, int target_height, enum jpg_format format,
                                 size_t max_bytes, struct jpg_image **ret_image)
{
    enum jpg_result result;
    struct jpg_image *image = NULL;
    struct jpg_output output;

    if (!ret_image || (unsigned)format >= JPG_FORMAT_MAX) {
        result = JPG_ERR_INVALID;
        goto out;
    }
    if (max_bytes == 0 || max_bytes > JPG_MAX_OUTPUT)
        max_bytes = JPG_MAX_OUTPUT;
    result = jpg_plan(decoder, data, len, target_width, target_height, &output);
    if (result != JPG_OK)
        goto out;
    if (output.bytes > max_bytes) {
        result = JPG_ERR_OUTPUT_TOO_BIG;
        goto out;
    }
    image = malloc(sizeof(*image) + output.bytes);
    if (!image) {
        result = JPG_ERR_NOMEM;
        goto out;
    }
    image->output = output;
    image->format = format;
    result = decode(decoder, data, len, &output, format, image->data);
    if (result != JPG_OK)
        goto out;
    *ret_image = image;
    image = NULL;

out:
    jpg_image_free(image);
    return result;
}

struct jpg_image *jpg_image_free(struct jpg_image *image)
{
    free(image);
    return NULL;
}
