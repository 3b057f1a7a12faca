/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Benchmark of the frame path: MJPEG stream parsing against a plain memcpy
 * of the same bytes, and JPEG decoding at 1/4 scale against a full decode
 * followed by a plain C area-average resize to the same size.
 *
 * The stream is 100 different 1280x720 frames (synthetic texture: gradients,
 * shapes and noise; quality 85, 4:2:0) in mjpg-streamer's format, fed again
 * and again in 4 KiB chunks until about 200 MB have gone through. Every
 * figure is the median of several runs. Prints `bench` lines only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <turbojpeg.h>

#include "jpeg.h"
#include "mjpeg.h"

enum {
    STREAM_FRAMES = 100,
    STREAM_WIDTH = 1280,
    STREAM_HEIGHT = 720,
    CHUNK = 4096,
    THROUGHPUT_RUNS = 5,
    DECODE_RUNS = 25,
};

#define TARGET_BYTES (200.0 * 1000.0 * 1000.0)
#define BOUNDARY "boundarydonotcross"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, size_t count)
{
    qsort(values, count, sizeof(values[0]), compare_double);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2.0;
}

static uint32_t rng_state = 0x9e3779b9u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static unsigned char clamp(int v)
{
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Not flat: diagonal gradients, a few rectangles (a print bed, a part),
 * and per-pixel sensor noise. Different for every seed. */
static unsigned char *make_texture(int width, int height, int seed)
{
    unsigned char *pixels = malloc((size_t)width * (size_t)height * 3);

    if (!pixels)
        return NULL;
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            unsigned char *p = pixels + ((size_t)y * (size_t)width + (size_t)x) * 3;
            int base_r = (x + seed * 7) * 200 / width + 20;
            int base_g = (y + seed * 3) * 180 / height + 30;
            int base_b = ((x + y) / 4 + seed) % 160 + 40;
            int noise = (int)(rng() % 25) - 12;
            if (x > width / 4 && x < width * 3 / 4 && y > height / 2) { /* bed */
                base_r = 90;
                base_g = 90;
                base_b = 100;
            }
            if (x > width / 2 - 60 + seed % 20 && x < width / 2 + 60 && y > height / 2 - 80 &&
                y < height / 2 + 40) { /* the print */
                base_r = 200;
                base_g = 60 + (x * 13 + y * 7) % 40;
                base_b = 40;
            }
            p[0] = clamp(base_r + noise);
            p[1] = clamp(base_g + noise);
            p[2] = clamp(base_b + noise / 2);
        }
    }
    return pixels;
}

static unsigned char *compress(tjhandle handle, int width, int height, int seed,
                               unsigned long *ret_size)
{
    unsigned char *pixels = make_texture(width, height, seed);
    unsigned char *jpeg = NULL;
    unsigned long size = 0;

    if (!pixels)
        return NULL;
    if (tjCompress2(handle, pixels, width, 0, height, TJPF_RGB, &jpeg, &size, TJSAMP_420, 85,
                    0) != 0) {
        free(pixels);
        return NULL;
    }
    free(pixels);
    *ret_size = size;
    return jpeg;
}

struct stream {
    unsigned char *data;
    size_t len;
    size_t largest_frame;
};

static int build_stream(tjhandle handle, struct stream *ret_stream)
{
    struct stream stream = {0};
    size_t cap = 0;

    for (int i = 0; i < STREAM_FRAMES; i++) {
        unsigned long size = 0;
        unsigned char *jpeg = compress(handle, STREAM_WIDTH, STREAM_HEIGHT, i, &size);
        char head[256];
        int head_len;

        if (!jpeg)
            return -1;
        head_len = snprintf(head, sizeof(head),
                            "--" BOUNDARY "\r\nContent-Type: image/jpeg\r\nContent-Length: %lu\r\n"
                            "X-Timestamp: %d.%06d\r\n\r\n", size, 1000 + i, i * 33333);
        if (stream.len + (size_t)head_len + size + 2 > cap) {
            unsigned char *grown;
            cap = (cap + (size_t)head_len + size + 2) * 2;
            grown = realloc(stream.data, cap);
            if (!grown) {
                tjFree(jpeg);
                free(stream.data);
                return -1;
            }
            stream.data = grown;
        }
        memcpy(stream.data + stream.len, head, (size_t)head_len);
        stream.len += (size_t)head_len;
        memcpy(stream.data + stream.len, jpeg, size);
        stream.len += size;
        memcpy(stream.data + stream.len, "\r\n", 2);
        stream.len += 2;
        if (size > stream.largest_frame)
            stream.largest_frame = size;
        tjFree(jpeg);
    }
    *ret_stream = stream;
    return 0;
}

/* Parses the stream repeats times, taking (and freeing) every frame as a
 * consumer would. Returns the seconds taken, or -1. */
static double parse_run(const struct stream *stream, size_t repeats, uint64_t *ret_frames)
{
    struct mjpeg *parser = NULL;
    struct mjpeg_frame *frame = NULL;
    uint64_t frames = 0;
    double start;
    double elapsed;

    if (mjpeg_new("multipart/x-mixed-replace;boundary=" BOUNDARY, 0, &parser) != MJPEG_OK)
        return -1;
    start = now_s();
    for (size_t r = 0; r < repeats; r++) {
        for (size_t pos = 0; pos < stream->len; pos += CHUNK) {
            size_t n = stream->len - pos < CHUNK ? stream->len - pos : CHUNK;
            mjpeg_feed(parser, stream->data + pos, n);
            if (mjpeg_take_frame(parser, &frame) == MJPEG_OK) {
                frames++;
                frame = mjpeg_frame_free(frame);
            }
        }
    }
    elapsed = now_s() - start;
    mjpeg_free(parser);
    *ret_frames = frames;
    return elapsed;
}

/* The same bytes in the same chunks, copied into a frame-sized buffer. */
static double memcpy_run(const struct stream *stream, size_t repeats, unsigned char *dst,
                         size_t dst_size)
{
    volatile unsigned char sink = 0;
    size_t at = 0;
    double start = now_s();

    for (size_t r = 0; r < repeats; r++) {
        for (size_t pos = 0; pos < stream->len; pos += CHUNK) {
            size_t n = stream->len - pos < CHUNK ? stream->len - pos : CHUNK;
            if (at + n > dst_size)
                at = 0;
            memcpy(dst + at, stream->data + pos, n);
            at += n;
        }
        sink = (unsigned char)(sink + dst[r % dst_size]);
    }
    (void)sink;
    return now_s() - start;
}

/* Plain C area average (box filter over the source pixels each output pixel
 * covers), packed 3-byte pixels. */
static void area_resize(const unsigned char *src, int src_w, int src_h, unsigned char *dst,
                        int dst_w, int dst_h)
{
    for (int y = 0; y < dst_h; y++) {
        int y0 = (int)((long)y * src_h / dst_h);
        int y1 = (int)((long)(y + 1) * src_h / dst_h);
        if (y1 <= y0)
            y1 = y0 + 1;
        for (int x = 0; x < dst_w; x++) {
            int x0 = (int)((long)x * src_w / dst_w);
            int x1 = (int)((long)(x + 1) * src_w / dst_w);
            uint32_t sum[3] = {0, 0, 0};
            uint32_t count;
            if (x1 <= x0)
                x1 = x0 + 1;
            for (int sy = y0; sy < y1; sy++) {
                const unsigned char *row = src + ((size_t)sy * (size_t)src_w + (size_t)x0) * 3;
                for (int sx = x0; sx < x1; sx++, row += 3) {
                    sum[0] += row[0];
                    sum[1] += row[1];
                    sum[2] += row[2];
                }
            }
            count = (uint32_t)((y1 - y0) * (x1 - x0));
            for (int c = 0; c < 3; c++)
                dst[((size_t)y * (size_t)dst_w + (size_t)x) * 3 + (size_t)c] =
                    (unsigned char)((sum[c] + count / 2) / count);
        }
    }
}

/* Median milliseconds of a 1/4-scale decode and of a full decode + resize. */
static int decode_bench(tjhandle compressor, struct jpg_decoder *decoder, int width, int height,
                        double *ret_quarter_ms, double *ret_full_ms)
{
    unsigned long size = 0;
    unsigned char *jpeg = compress(compressor, width, height, 42, &size);
    int quarter_w = width / 4;
    int quarter_h = height / 4;
    unsigned char *full = malloc((size_t)width * (size_t)height * 3);
    unsigned char *small = malloc((size_t)quarter_w * (size_t)quarter_h * 3);
    double quarter_ms[DECODE_RUNS];
    double full_ms[DECODE_RUNS];
    struct jpg_output output;
    int result = -1;

    if (!jpeg || !full || !small)
        goto out;
    /* Warm-up, and a check that the quarter decode is what we think. */
    if (jpg_decode_into(decoder, jpeg, size, quarter_w, quarter_h, JPG_FORMAT_BGR, small,
                        (size_t)quarter_w * (size_t)quarter_h * 3, &output) != JPG_OK ||
        output.width != quarter_w || output.height != quarter_h || output.scale_denom != 4)
        goto out;
    for (int i = 0; i < DECODE_RUNS; i++) {
        double start = now_s();
        if (jpg_decode_into(decoder, jpeg, size, quarter_w, quarter_h, JPG_FORMAT_BGR, small,
                            (size_t)quarter_w * (size_t)quarter_h * 3, NULL) != JPG_OK)
            goto out;
        quarter_ms[i] = (now_s() - start) * 1000.0;

        start = now_s();
        if (jpg_decode_into(decoder, jpeg, size, width, height, JPG_FORMAT_BGR, full,
                            (size_t)width * (size_t)height * 3, &output) != JPG_OK ||
            output.scale_denom != 1)
            goto out;
        area_resize(full, width, height, small, quarter_w, quarter_h);
        full_ms[i] = (now_s() - start) * 1000.0;
    }
    *ret_quarter_ms = median(quarter_ms, DECODE_RUNS);
    *ret_full_ms = median(full_ms, DECODE_RUNS);
    result = 0;

out:
    free(small);
    free(full);
    tjFree(jpeg);
    return result;
}

int main(void)
{
    tjhandle compressor = tjInitCompress();
    struct jpg_decoder *decoder = NULL;
    struct stream stream = {0};
    double parse_s[THROUGHPUT_RUNS];
    double copy_s[THROUGHPUT_RUNS];
    unsigned char *dst = NULL;
    size_t repeats;
    double total_mb;
    double parse_mb_s;
    double memcpy_mb_s;
    double q1080 = 0, f1080 = 0, q720 = 0, f720 = 0;
    int rc = 1;

    if (!compressor || jpg_decoder_new(&decoder) != JPG_OK || build_stream(compressor, &stream)) {
        fprintf(stderr, "bench_frames: setup failed\n");
        goto out;
    }
    repeats = (size_t)(TARGET_BYTES / (double)stream.len + 0.5);
    if (repeats == 0)
        repeats = 1;
    total_mb = (double)stream.len * (double)repeats / 1e6;
    dst = malloc(stream.largest_frame + CHUNK);
    if (!dst)
        goto out;
    memset(dst, 0, stream.largest_frame + CHUNK);

    for (int i = 0; i < THROUGHPUT_RUNS; i++) {
        uint64_t frames = 0;
        parse_s[i] = parse_run(&stream, repeats, &frames);
        if (parse_s[i] < 0 || frames != (uint64_t)STREAM_FRAMES * repeats) {
            fprintf(stderr, "bench_frames: parsed %llu frames, expected %llu\n",
                    (unsigned long long)frames, (unsigned long long)STREAM_FRAMES * repeats);
            goto out;
        }
        copy_s[i] = memcpy_run(&stream, repeats, dst, stream.largest_frame + CHUNK);
    }
    parse_mb_s = total_mb / median(parse_s, THROUGHPUT_RUNS);
    memcpy_mb_s = total_mb / median(copy_s, THROUGHPUT_RUNS);

    if (decode_bench(compressor, decoder, 1920, 1080, &q1080, &f1080) != 0 ||
        decode_bench(compressor, decoder, 1280, 720, &q720, &f720) != 0) {
        fprintf(stderr, "bench_frames: decode failed\n");
        goto out;
    }

    printf("bench mjpeg_parse_mb_s %.0f MB/s\n", parse_mb_s);
    printf("bench memcpy_mb_s %.0f MB/s\n", memcpy_mb_s);
    printf("bench mjpeg_parse_vs_memcpy_ratio %.2f x\n", memcpy_mb_s / parse_mb_s);
    printf("bench decode_quarter_ms_1080p %.2f ms\n", q1080);
    printf("bench decode_full_resize_ms_1080p %.2f ms\n", f1080);
    printf("bench decode_quarter_ms_720p %.2f ms\n", q720);
    printf("bench decode_full_resize_ms_720p %.2f ms\n", f720);
    rc = 0;

out:
    free(dst);
    free(stream.data);
    jpg_decoder_free(decoder);
    if (compressor)
        tjDestroy(compressor);
    return rc;
}
