/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests of native/core/jpeg.c: validation of good, truncated, garbage
 * and oversized frames; choice of the DCT scale; decoding into caller
 * buffers and bounded allocations. Test images are made with tjCompress2. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "check.h"
#include "jpeg.h"

struct jpeg_blob {
    unsigned char *data; /* tjAlloc'd */
    size_t len;
};

static uint32_t rng_state = 2024;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Gradients plus noise, so the image is not flat. */
static unsigned char *make_pixels(int width, int height)
{
    unsigned char *pixels = malloc((size_t)width * (size_t)height * 3);

    if (!pixels)
        abort();
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            unsigned char *p = pixels + ((size_t)y * (size_t)width + (size_t)x) * 3;
            int noise = (int)(rng() % 24);
            p[0] = (unsigned char)((x * 255 / width + noise) & 0xff);  /* red: left to right */
            p[1] = (unsigned char)((y * 255 / height + noise) & 0xff); /* green: top down */
            p[2] = (unsigned char)(40 + noise);                        /* blue: low */
        }
    }
    return pixels;
}

static struct jpeg_blob make_jpeg(int width, int height, int subsamp)
{
    struct jpeg_blob blob = {0};
    unsigned char *pixels = make_pixels(width, height);
    unsigned long size = 0;
    tjhandle handle = tjInitCompress();

    if (!handle || tjCompress2(handle, pixels, width, 0, height, TJPF_RGB, &blob.data, &size,
                               subsamp, 85, 0) != 0)
        abort();
    blob.len = size;
    tjDestroy(handle);
    free(pixels);
    return blob;
}

/* Offset of the first SOF0 marker segment. */
static size_t find_sof(const struct jpeg_blob *blob)
{
    for (size_t i = 2; i + 9 < blob->len; i++)
        if (blob->data[i] == 0xff && blob->data[i + 1] == 0xc0)
            return i;
    return 0;
}

static void test_invalid_arguments(void)
{
    struct jpg_decoder *decoder = NULL;
    struct jpg_image *image = NULL;
    struct jpg_output output;
    unsigned char buf[16];

    CHECK(jpg_decoder_new(NULL) == JPG_ERR_INVALID);
    CHECK(jpg_decoder_free(NULL) == NULL);
    CHECK(jpg_image_free(NULL) == NULL);
    CHECK(jpg_validate(NULL, "x", 1, NULL) == JPG_ERR_INVALID);
    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    CHECK(jpg_validate(decoder, NULL, 5, NULL) == JPG_ERR_INVALID);
    CHECK(jpg_plan(decoder, "x", 1, 0, 0, NULL) == JPG_ERR_INVALID);
    CHECK(jpg_decode_into(decoder, "x", 1, 0, 0, JPG_FORMAT_RGB, NULL, 0, &output) ==
          JPG_ERR_INVALID);
    CHECK(jpg_decode_into(decoder, "x", 1, 0, 0, JPG_FORMAT_MAX, buf, sizeof(buf), &output) ==
          JPG_ERR_INVALID);
    CHECK(jpg_decode_alloc(decoder, "x", 1, 0, 0, JPG_FORMAT_RGB, 0, NULL) == JPG_ERR_INVALID);
    CHECK(jpg_decode_alloc(decoder, "x", 1, 0, 0, (enum jpg_format)7, 0, &image) ==
          JPG_ERR_INVALID);
    CHECK(image == NULL);
    jpg_decoder_free(decoder);
}

static void test_validate(void)
{
    static const unsigned char only_markers[] = {0xff, 0xd8, 0xff, 0xd9};
    static const unsigned char fake[] = {0xff, 0xd8, 'g', 'a', 'r', 'b', 'a', 'g', 'e', 0xff, 0xd9};
    struct jpg_decoder *decoder = NULL;
    struct jpeg_blob blob = make_jpeg(320, 240, TJSAMP_420);
    struct jpg_info info = {.width = -1};
    unsigned char *copy = malloc(blob.len + 64);

    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    CHECK(jpg_validate(decoder, blob.data, blob.len, &info) == JPG_OK);
    CHECK(info.width == 320 && info.height == 240);
    CHECK(info.subsamp == TJSAMP_420);
    CHECK(jpg_validate(decoder, blob.data, blob.len, NULL) == JPG_OK);

    CHECK(jpg_validate(decoder, NULL, 0, NULL) == JPG_ERR_EMPTY);
    CHECK(jpg_validate(decoder, "", 0, NULL) == JPG_ERR_EMPTY);
    CHECK(jpg_validate(decoder, "\xff", 1, NULL) == JPG_ERR_NO_SOI);
    CHECK(jpg_validate(decoder, "GIF89a....", 10, NULL) == JPG_ERR_NO_SOI);
    CHECK(jpg_validate(decoder, blob.data + 1, blob.len - 1, NULL) == JPG_ERR_NO_SOI);
    CHECK(jpg_validate(decoder, only_markers, sizeof(only_markers), NULL) == JPG_ERR_NO_EOI);
    CHECK(jpg_validate(decoder, fake, sizeof(fake), NULL) == JPG_ERR_HEADER);
    CHECK(jpg_validate(decoder, blob.data, (size_t)JPG_MAX_INPUT + 1, NULL) ==
          JPG_ERR_INPUT_TOO_BIG);

    /* Truncated anywhere: no EOI. */
    for (size_t cut = 2; cut < blob.len; cut += blob.len / 50 + 1)
        CHECK(jpg_validate(decoder, blob.data, cut, NULL) == JPG_ERR_NO_EOI);
    CHECK(jpg_validate(decoder, blob.data, blob.len - 1, NULL) == JPG_ERR_NO_EOI);

    /* Padding after EOI: a little is fine, too much or the wrong kind not. */
    memcpy(copy, blob.data, blob.len);
    memcpy(copy + blob.len, "\r\n\0\0", 4);
    CHECK(jpg_validate(decoder, copy, blob.len + 4, NULL) == JPG_OK);
    memset(copy + blob.len, 0, 64);
    CHECK(jpg_validate(decoder, copy, blob.len + JPG_MAX_PADDING, NULL) == JPG_OK);
    CHECK(jpg_validate(decoder, copy, blob.len + JPG_MAX_PADDING + 1, NULL) == JPG_ERR_NO_EOI);
    copy[blob.len] = 'x';
    CHECK(jpg_validate(decoder, copy, blob.len + 1, NULL) == JPG_ERR_NO_EOI);

    /* Garbage between the markers. */
    memcpy(copy, blob.data, blob.len);
    for (size_t i = 2; i < 200; i++)
        copy[i] = (unsigned char)rng();
    CHECK(jpg_validate(decoder, copy, blob.len, NULL) == JPG_ERR_HEADER);

    free(copy);
    tjFree(blob.data);
    jpg_decoder_free(decoder);
}

static void test_huge_declared_dimensions(void)
{
    struct jpg_decoder *decoder = NULL;
    struct jpeg_blob blob = make_jpeg(64, 48, TJSAMP_420);
    struct jpg_image *image = NULL;
    size_t sof = find_sof(&blob);
    unsigned char buf[64];

    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    CHECK(sof > 0);
    /* SOF0: FF C0, length (2), precision (1), height (2), width (2). */
    blob.data[sof + 5] = 20000 >> 8;
    blob.data[sof + 6] = 20000 & 0xff;
    blob.data[sof + 7] = 20000 >> 8;
    blob.data[sof + 8] = 20000 & 0xff;
    CHECK(jpg_validate(decoder, blob.data, blob.len, NULL) == JPG_ERR_DIMENSIONS);
    CHECK(jpg_decode_alloc(decoder, blob.data, blob.len, 0, 0, JPG_FORMAT_RGB, 0, &image) ==
          JPG_ERR_DIMENSIONS);
    CHECK(image == NULL);
    /* Beyond libjpeg's own limit of 65500: its header reader refuses. */
    blob.data[sof + 5] = 0xff;
    blob.data[sof + 6] = 0xff;
    blob.data[sof + 7] = 0xff;
    blob.data[sof + 8] = 0xff;
    CHECK(jpg_validate(decoder, blob.data, blob.len, NULL) == JPG_ERR_HEADER);
    /* Just over the limit in one direction. */
    blob.data[sof + 5] = 0x00;
    blob.data[sof + 6] = 0x30; /* height 48 */
    blob.data[sof + 7] = (JPG_MAX_DIMENSION + 1) >> 8;
    blob.data[sof + 8] = (JPG_MAX_DIMENSION + 1) & 0xff;
    CHECK(jpg_validate(decoder, blob.data, blob.len, NULL) == JPG_ERR_DIMENSIONS);
    /* At the limit: accepted by validation; decoding this lie must fail or
     * give an image, never crash, and never write past the buffer. */
    blob.data[sof + 7] = JPG_MAX_DIMENSION >> 8;
    blob.data[sof + 8] = JPG_MAX_DIMENSION & 0xff;
    CHECK(jpg_validate(decoder, blob.data, blob.len, NULL) == JPG_OK);
    CHECK(jpg_decode_into(decoder, blob.data, blob.len, 0, 0, JPG_FORMAT_RGB, buf, sizeof(buf),
                          NULL) == JPG_ERR_BUFFER_TOO_SMALL);
    /* Zero height. */
    blob.data[sof + 5] = 0;
    blob.data[sof + 6] = 0;
    CHECK(jpg_validate(decoder, blob.data, blob.len, NULL) != JPG_OK);
    tjFree(blob.data);
    jpg_decoder_free(decoder);
}

/* A header error must not spoil the decoder for the next frame. */
static void test_recovers_after_header_errors(void)
{
    static const unsigned char fake[] = {0xff, 0xd8, 0xff, 0xc0, 0x00, 0x03, 0x08, 0xff, 0xd9};
    struct jpg_decoder *decoder = NULL;
    struct jpeg_blob blob = make_jpeg(96, 64, TJSAMP_420);
    struct jpeg_blob bad = make_jpeg(96, 64, TJSAMP_420);
    size_t sof = find_sof(&bad);
    struct jpg_info info = {0};
    bool all_ok = true;

    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    bad.data[sof + 5] = 0; /* height 0: "Empty JPEG image" */
    bad.data[sof + 6] = 0;
    for (int i = 0; i < 20; i++) {
        CHECK(jpg_validate(decoder, bad.data, bad.len, NULL) == JPG_ERR_HEADER);
        CHECK(jpg_validate(decoder, fake, sizeof(fake), NULL) == JPG_ERR_HEADER);
        if (jpg_validate(decoder, blob.data, blob.len, &info) != JPG_OK || info.width != 96)
            all_ok = false;
    }
    CHECK(all_ok);
    tjFree(bad.data);
    tjFree(blob.data);
    jpg_decoder_free(decoder);
}

static void test_choose_scale(void)
{
    CHECK(jpg_choose_scale(1920, 1080, 480, 270) == 4);
    CHECK(jpg_choose_scale(1920, 1080, 481, 270) == 2);
    CHECK(jpg_choose_scale(1920, 1080, 480, 271) == 2);
    CHECK(jpg_choose_scale(1920, 1080, 240, 135) == 8);
    CHECK(jpg_choose_scale(1920, 1080, 0, 0) == 8);
    CHECK(jpg_choose_scale(1920, 1080, -5, -5) == 8);
    CHECK(jpg_choose_scale(1920, 1080, 960, 540) == 2);
    CHECK(jpg_choose_scale(1920, 1080, 961, 1) == 1);
    CHECK(jpg_choose_scale(1920, 1080, 1920, 1080) == 1);
    CHECK(jpg_choose_scale(1920, 1080, 4000, 3000) == 1); /* never upscaled */
    CHECK(jpg_choose_scale(1280, 720, 320, 180) == 4);
    CHECK(jpg_choose_scale(1280, 720, 300, 300) == 2);
    /* Odd sizes round up like TJSCALED: 641 / 8 -> 81, 481 / 8 -> 61. */
    CHECK(jpg_choose_scale(641, 481, 81, 61) == 8);
    CHECK(jpg_choose_scale(641, 481, 82, 61) == 4);
    CHECK(jpg_choose_scale(1, 1, 1, 1) == 8);
}

static void test_decode_into(void)
{
    struct jpg_decoder *decoder = NULL;
    struct jpeg_blob blob = make_jpeg(640, 480, TJSAMP_420);
    struct jpg_output output = {0};
    struct jpg_output planned = {0};
    size_t full_bytes = 640u * 480u * 3u;
    unsigned char *full = malloc(full_bytes);
    unsigned char *quarter = malloc(160u * 120u * 3u);
    unsigned char *bgr = malloc(160u * 120u * 3u);
    bool untouched = true;
    bool swapped = true;
    double diff = 0;

    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    CHECK(jpg_plan(decoder, blob.data, blob.len, 160, 120, &planned) == JPG_OK);
    CHECK(planned.scale_denom == 4 && planned.width == 160 && planned.height == 120);
    CHECK(planned.stride == 480 && planned.bytes == 160u * 120u * 3u);

    /* Too small a buffer: refused, nothing written. */
    memset(quarter, 0x5a, 160u * 120u * 3u);
    CHECK(jpg_decode_into(decoder, blob.data, blob.len, 160, 120, JPG_FORMAT_RGB, quarter,
                          160u * 120u * 3u - 1, &output) == JPG_ERR_BUFFER_TOO_SMALL);
    for (size_t i = 0; i < 160u * 120u * 3u; i++)
        if (quarter[i] != 0x5a)
            untouched = false;
    CHECK(untouched);
    CHECK(output.width == 0);

    CHECK(jpg_decode_into(decoder, blob.data, blob.len, 160, 120, JPG_FORMAT_RGB, quarter,
                          160u * 120u * 3u, &output) == JPG_OK);
    CHECK(output.width == 160 && output.height == 120 && output.scale_denom == 4);
    CHECK(output.info.width == 640 && output.info.height == 480);
    CHECK(jpg_decode_into(decoder, blob.data, blob.len, 160, 120, JPG_FORMAT_BGR, bgr,
                          160u * 120u * 3u, NULL) == JPG_OK);
    for (size_t i = 0; i < 160u * 120u; i++)
        if (quarter[i * 3] != bgr[i * 3 + 2] || quarter[i * 3 + 2] != bgr[i * 3] ||
            quarter[i * 3 + 1] != bgr[i * 3 + 1])
            swapped = false;
    CHECK(swapped);

    /* The gradients survived: red grows left to right, green top down. */
    CHECK(quarter[(60 * 160 + 150) * 3] > quarter[(60 * 160 + 10) * 3] + 150);
    CHECK(quarter[(110 * 160 + 80) * 3 + 1] > quarter[(10 * 160 + 80) * 3 + 1] + 150);

    /* Full size for a target at or above it; close to the 4x4 average. */
    CHECK(jpg_decode_into(decoder, blob.data, blob.len, 100000, 100000, JPG_FORMAT_RGB, full,
                          full_bytes, &output) == JPG_OK);
    CHECK(output.scale_denom == 1 && output.width == 640 && output.height == 480);
    for (int y = 0; y < 120; y++) {
        for (int x = 0; x < 160; x++) {
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int dy = 0; dy < 4; dy++)
                    for (int dx = 0; dx < 4; dx++)
                        sum += full[((size_t)(y * 4 + dy) * 640 + (size_t)(x * 4 + dx)) * 3 +
                                    (size_t)c];
                diff += abs(sum / 16 - quarter[((size_t)y * 160 + (size_t)x) * 3 + (size_t)c]);
            }
        }
    }
    diff /= 160.0 * 120.0 * 3.0;
    printf("#   mean |quarter decode - 4x4 average of full decode| = %.2f\n", diff);
    CHECK(diff < 4.0);

    free(bgr);
    free(quarter);
    free(full);
    tjFree(blob.data);
    jpg_decoder_free(decoder);
}

static void test_decode_alloc(void)
{
    struct jpg_decoder *decoder = NULL;
    struct jpeg_blob blob = make_jpeg(1280, 720, TJSAMP_420);
    struct jpeg_blob gray = make_jpeg(100, 75, TJSAMP_GRAY);
    struct jpeg_blob odd = make_jpeg(333, 201, TJSAMP_422);
    struct jpg_image *image = NULL;

    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    CHECK(jpg_decode_alloc(decoder, blob.data, blob.len, 320, 180, JPG_FORMAT_BGR, 0, &image) ==
          JPG_OK);
    CHECK(image && image->output.width == 320 && image->output.height == 180);
    CHECK(image && image->output.bytes == 320u * 180u * 3u && image->format == JPG_FORMAT_BGR);
    image = jpg_image_free(image);

    /* The allocation bound. */
    CHECK(jpg_decode_alloc(decoder, blob.data, blob.len, 320, 180, JPG_FORMAT_RGB,
                           320u * 180u * 3u - 1, &image) == JPG_ERR_OUTPUT_TOO_BIG);
    CHECK(image == NULL);
    CHECK(jpg_decode_alloc(decoder, blob.data, blob.len, 320, 180, JPG_FORMAT_RGB,
                           320u * 180u * 3u, &image) == JPG_OK);
    image = jpg_image_free(image);
    CHECK(jpg_decode_alloc(decoder, blob.data, blob.len, 1280, 720, JPG_FORMAT_RGB,
                           320u * 180u * 3u, &image) == JPG_ERR_OUTPUT_TOO_BIG);

    /* Grayscale input still gives RGB. */
    CHECK(jpg_decode_alloc(decoder, gray.data, gray.len, 0, 0, JPG_FORMAT_RGB, 0, &image) ==
          JPG_OK);
    CHECK(image && image->output.width == 13 && image->output.height == 10);
    CHECK(image && image->output.info.subsamp == TJSAMP_GRAY);
    CHECK(image && image->data[0] == image->data[1] && image->data[1] == image->data[2]);
    image = jpg_image_free(image);

    /* Odd sizes: TJSCALED rounds up. */
    CHECK(jpg_decode_alloc(decoder, odd.data, odd.len, 84, 26, JPG_FORMAT_RGB, 0, &image) ==
          JPG_OK);
    CHECK(image && image->output.width == 84 && image->output.height == 51);
    CHECK(image && image->output.scale_denom == 4);
    image = jpg_image_free(image);

    /* Bad input through the decode path. */
    CHECK(jpg_decode_alloc(decoder, blob.data, blob.len / 2, 0, 0, JPG_FORMAT_RGB, 0, &image) ==
          JPG_ERR_NO_EOI);
    CHECK(jpg_decode_alloc(decoder, "", 0, 0, 0, JPG_FORMAT_RGB, 0, &image) == JPG_ERR_EMPTY);
    CHECK(image == NULL);

    tjFree(odd.data);
    tjFree(gray.data);
    tjFree(blob.data);
    jpg_decoder_free(decoder);
}

/* Damaged entropy-coded data: a result, never a crash. */
static void test_corrupt_scan_data(void)
{
    struct jpg_decoder *decoder = NULL;
    struct jpeg_blob blob = make_jpeg(320, 240, TJSAMP_420);
    unsigned char *copy = malloc(blob.len);
    unsigned char *out = malloc(320u * 240u * 3u);
    int decoded = 0;
    int refused = 0;

    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    for (int round = 0; round < 50; round++) {
        enum jpg_result result;
        memcpy(copy, blob.data, blob.len);
        for (int k = 0; k < 1 + round; k++) {
            size_t at = blob.len / 2 + rng() % (blob.len / 2 - 2);
            copy[at] = (unsigned char)rng();
        }
        result = jpg_decode_into(decoder, copy, blob.len, 0, 0, JPG_FORMAT_RGB, out,
                                 320u * 240u * 3u, NULL);
        if (result == JPG_OK)
            decoded++;
        else if (result == JPG_ERR_DECODE || result == JPG_ERR_NO_EOI)
            refused++;
    }
    CHECK(decoded + refused == 50);
    printf("#   corrupt scans: %d decoded with warnings, %d refused\n", decoded, refused);
    /* The decoder is still fine afterwards. */
    CHECK(jpg_decode_into(decoder, blob.data, blob.len, 0, 0, JPG_FORMAT_RGB, out,
                          320u * 240u * 3u, NULL) == JPG_OK);
    free(out);
    free(copy);
    tjFree(blob.data);
    jpg_decoder_free(decoder);
}

static void test_result_strings(void)
{
    for (int r = 0; r <= JPG_RESULT_MAX; r++)
        CHECK(jpg_result_str((enum jpg_result)r) != NULL);
    CHECK(strcmp(jpg_result_str(JPG_ERR_NO_EOI), "truncated JPEG (no EOI marker)") == 0);
    CHECK(strcmp(jpg_result_str((enum jpg_result)999), "unknown result") == 0);
}

int main(void)
{
    RUN_TEST(test_invalid_arguments);
    RUN_TEST(test_validate);
    RUN_TEST(test_huge_declared_dimensions);
    RUN_TEST(test_recovers_after_header_errors);
    RUN_TEST(test_choose_scale);
    RUN_TEST(test_decode_into);
    RUN_TEST(test_decode_alloc);
    RUN_TEST(test_corrupt_scan_data);
    RUN_TEST(test_result_strings);
    return CHECK_DONE();
}
