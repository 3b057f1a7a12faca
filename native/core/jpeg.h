/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * jpg: checks and decodes the JPEG frames a webcam sends, with libturbojpeg.
 *
 * jpg_validate() accepts a frame only when it starts with SOI (FF D8), ends
 * with EOI (FF D9) -- followed by at most JPG_MAX_PADDING bytes of NUL, CR or
 * LF, which some cameras append -- and libturbojpeg can read its header with
 * dimensions of 1..JPG_MAX_DIMENSION. A truncated frame fails the EOI test
 * before libturbojpeg sees it.
 *
 * jpg_decode_into() and jpg_decode_alloc() validate, then decode with the
 * DCT scaling of libjpeg-turbo: of the factors 1/8, 1/4, 1/2 and 1/1 they use
 * the smallest whose output is still at least target_width x target_height
 * (1/1 when even the full size is smaller: never upscaled). Decoding at 1/4
 * is several times faster than decoding the full frame and resizing it.
 * Output is packed 3-byte RGB or BGR, rows of width * 3 bytes.
 *
 * Corrupt entropy-coded data that libjpeg-turbo can decode past (it reports
 * a warning, such as "premature end of data segment") still gives an image:
 * webcams send such frames now and then and they are usable. Progressive
 * frames with an absurd number of scans are refused (TJFLAG_LIMITSCANS).
 *
 * This file is plain C with no Python and no logging. A decoder is not
 * thread-safe; use one per thread.
 */
#ifndef TSD_JPEG_H
#define TSD_JPEG_H

#include <stddef.h>

enum jpg_result {
    JPG_OK = 0,
    JPG_ERR_INVALID,          /* bad argument */
    JPG_ERR_NOMEM,            /* allocation failed */
    JPG_ERR_LIBRARY,          /* libturbojpeg could not create a decompressor */
    JPG_ERR_EMPTY,            /* 0 bytes */
    JPG_ERR_INPUT_TOO_BIG,    /* more than JPG_MAX_INPUT bytes */
    JPG_ERR_NO_SOI,           /* does not start with FF D8 */
    JPG_ERR_NO_EOI,           /* does not end with FF D9: truncated */
    JPG_ERR_HEADER,           /* libturbojpeg cannot read the header */
    JPG_ERR_DIMENSIONS,       /* width or height outside 1..JPG_MAX_DIMENSION */
    JPG_ERR_DECODE,           /* decompression failed */
    JPG_ERR_BUFFER_TOO_SMALL, /* the caller's buffer cannot hold the output */
    JPG_ERR_OUTPUT_TOO_BIG,   /* the output is larger than allowed to allocate */
    JPG_RESULT_MAX
};

#define JPG_MAX_DIMENSION 8192
#define JPG_MAX_INPUT (64u * 1024u * 1024u)
#define JPG_MAX_PADDING 16u
/* The largest output any accepted frame can have (3 bytes a pixel). */
#define JPG_MAX_OUTPUT ((size_t)JPG_MAX_DIMENSION * JPG_MAX_DIMENSION * 3u)

enum jpg_format {
    JPG_FORMAT_RGB = 0,
    JPG_FORMAT_BGR,
    JPG_FORMAT_MAX
};

struct jpg_decoder;

struct jpg_info {
    int width;      /* as coded */
    int height;
    int subsamp;    /* TJSAMP_* */
    int colorspace; /* TJCS_* */
};

/* What a decode produces. */
struct jpg_output {
    struct jpg_info info;
    int scale_denom; /* 1, 2, 4 or 8 */
    int width;       /* scaled */
    int height;
    size_t stride;   /* width * 3 */
    size_t bytes;    /* stride * height */
};

/* (transfer full) from jpg_decode_alloc(); free with jpg_image_free(). */
struct jpg_image {
    struct jpg_output output;
    enum jpg_format format;
    unsigned char data[];  /* output.bytes bytes */
};

const char *jpg_result_str(enum jpg_result result);

/* (transfer full) */
enum jpg_result jpg_decoder_new(struct jpg_decoder **ret_decoder);

/* Accepts NULL; returns NULL. */
struct jpg_decoder *jpg_decoder_free(struct jpg_decoder *decoder);

/* Checks len bytes of data as described above; *ret_info (may be NULL) is
 * written only on JPG_OK. */
enum jpg_result jpg_validate(struct jpg_decoder *decoder, const void *data, size_t len,
                             struct jpg_info *ret_info);

/* The scale denominator (1, 2, 4 or 8) a decode of a width x height frame
 * for that target uses. Targets of 0 or less put no bound on that side. */
int jpg_choose_scale(int width, int height, int target_width, int target_height);

/* Validates and tells what a decode for that target would produce, so the
 * caller can size a buffer. *ret_output is written only on JPG_OK. */
enum jpg_result jpg_plan(struct jpg_decoder *decoder, const void *data, size_t len,
                         int target_width, int target_height, struct jpg_output *ret_output);

/* Decodes into the caller's buffer of buf_size bytes (at least the planned
 * output.bytes, else JPG_ERR_BUFFER_TOO_SMALL and nothing written).
 * *ret_output (may be NULL) is written only on JPG_OK. */
enum jpg_result jpg_decode_into(struct jpg_decoder *decoder, const void *data, size_t len,
                                int target_width, int target_height, enum jpg_format format,
                                void *buf, size_t buf_size, struct jpg_output *ret_output);

/* Decodes into a new image of at most max_bytes bytes of pixels (0 means
 * JPG_MAX_OUTPUT); JPG_ERR_OUTPUT_TOO_BIG when more would be needed.
 * *ret_image (transfer full) is written only on JPG_OK. */
enum jpg_result jpg_decode_alloc(struct jpg_decoder *decoder, const void *data, size_t len,
                                 int target_width, int target_height, enum jpg_format format,
                                 size_t max_bytes, struct jpg_image **ret_image);

/* Accepts NULL; returns NULL. */
struct jpg_image *jpg_image_free(struct jpg_image *image);

#endif
