/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests of native/core/mjpeg.c: boundaries, part headers, chunking
 * (down to single bytes), oversized parts, garbage, truncation, memory
 * bounds, and real JPEG frames end to end. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "check.h"
#include "jpeg.h"
#include "mjpeg.h"

#define CT_FRAME "multipart/x-mixed-replace; boundary=frame"
#define MAX_TAKEN 64

/* ---- building streams ---------------------------------------------------- */

struct buf {
    unsigned char *data;
    size_t len;
    size_t cap;
};

static void buf_add(struct buf *buf, const void *data, size_t len)
{
    if (buf->len + len > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 1024;
        while (cap < buf->len + len)
            cap *= 2;
        buf->data = realloc(buf->data, cap);
        if (!buf->data)
            abort();
        buf->cap = cap;
    }
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
}

static void buf_str(struct buf *buf, const char *text)
{
    buf_add(buf, text, strlen(text));
}

static void buf_free(struct buf *buf)
{
    free(buf->data);
    *buf = (struct buf){0};
}

static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* A payload that looks like binary JPEG data: starts with FF D8, ends with
 * FF D9, random in between (a '-' now and then, never two in a row). */
static unsigned char *make_payload(size_t len, uint32_t seed)
{
    unsigned char *payload = malloc(len);
    uint32_t state = seed * 2654435761u + 1;

    if (!payload)
        abort();
    for (size_t i = 0; i < len; i++) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        payload[i] = (unsigned char)state;
        if (payload[i] == '-' && i > 0 && payload[i - 1] == '-')
            payload[i] = 'x';
    }
    if (len >= 4) {
        payload[0] = 0xff;
        payload[1] = 0xd8;
        payload[len - 2] = 0xff;
        payload[len - 1] = 0xd9;
    }
    return payload;
}

/* mjpg-streamer style: boundary line, headers, body, CRLF. */
static void add_part(struct buf *stream, const char *delimiter, const unsigned char *payload,
                     size_t len, bool with_length)
{
    char head[256];

    buf_str(stream, delimiter);
    buf_str(stream, "\r\nContent-Type: image/jpeg\r\n");
    if (with_length) {
        snprintf(head, sizeof(head), "Content-Length: %zu\r\n", len);
        buf_str(stream, head);
    }
    buf_str(stream, "X-Timestamp: 1234.5678\r\n\r\n");
    buf_add(stream, payload, len);
    buf_str(stream, "\r\n");
}

/* ---- running streams ----------------------------------------------------- */

struct run {
    struct mjpeg_frame *taken[MAX_TAKEN];
    size_t count;
    enum mjpeg_result first_error;
    struct mjpeg_stats stats;
};

static void run_free(struct run *run)
{
    for (size_t i = 0; i < run->count; i++)
        mjpeg_frame_free(run->taken[i]);
    run->count = 0;
}

static void take_all(struct mjpeg *parser, struct run *run)
{
    struct mjpeg_frame *frame = NULL;

    while (mjpeg_take_frame(parser, &frame) == MJPEG_OK) {
        if (run->count < MAX_TAKEN)
            run->taken[run->count++] = frame;
        else
            mjpeg_frame_free(frame);
    }
}

/* Feeds the stream in chunks: chunk 0 means random sizes 1..97, otherwise
 * that size. Takes frames after every feed. */
static void run_stream(const char *content_type, size_t max_frame, const struct buf *stream,
                       size_t chunk, struct run *run)
{
    struct mjpeg *parser = NULL;
    size_t pos = 0;

    *run = (struct run){0};
    if (mjpeg_new(content_type, max_frame, &parser) != MJPEG_OK) {
        run->first_error = MJPEG_ERR_INVALID;
        return;
    }
    while (pos < stream->len) {
        size_t n = chunk ? chunk : 1 + rng() % 97;
        enum mjpeg_result result;
        if (n > stream->len - pos)
            n = stream->len - pos;
        result = mjpeg_feed(parser, stream->data + pos, n);
        if (result != MJPEG_OK && run->first_error == MJPEG_OK)
            run->first_error = result;
        pos += n;
        take_all(parser, run);
    }
    mjpeg_get_stats(parser, &run->stats);
    mjpeg_free(parser);
}

static bool frame_is(const struct mjpeg_frame *frame, const unsigned char *payload, size_t len)
{
    return frame && frame->len == len && memcmp(frame->data, payload, len) == 0;
}

/* ---- tests --------------------------------------------------------------- */

static void test_new_and_boundaries(void)
{
    struct mjpeg *parser = NULL;
    struct mjpeg_frame *frame = NULL;
    struct mjpeg_stats stats;

    CHECK(mjpeg_new(NULL, 0, &parser) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_new(CT_FRAME, 0, NULL) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_new(CT_FRAME, (size_t)MJPEG_MAX_FRAME_LIMIT + 1, &parser) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_new("image/jpeg", 0, &parser) == MJPEG_ERR_NOT_MULTIPART);
    CHECK(mjpeg_new("text/html; boundary=x", 0, &parser) == MJPEG_ERR_NOT_MULTIPART);
    CHECK(mjpeg_new("garbage", 0, &parser) == MJPEG_ERR_NOT_MULTIPART);
    CHECK(mjpeg_new("multipart/x-mixed-replace", 0, &parser) == MJPEG_ERR_BOUNDARY);
    CHECK(mjpeg_new("multipart/x-mixed-replace; boundary=", 0, &parser) == MJPEG_ERR_BOUNDARY);
    CHECK(mjpeg_new("multipart/x-mixed-replace; boundary=--", 0, &parser) == MJPEG_ERR_BOUNDARY);
    CHECK(mjpeg_new(" Multipart/x-mixed-replace; boundary=\"open", 0, &parser) ==
          MJPEG_ERR_BOUNDARY);
    CHECK(parser == NULL);
    CHECK(mjpeg_free(NULL) == NULL);
    CHECK(mjpeg_frame_free(NULL) == NULL);
    CHECK(mjpeg_feed(NULL, "x", 1) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_finish(NULL) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_take_frame(NULL, &frame) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_delimiter(NULL) == NULL);
    mjpeg_get_stats(NULL, &stats);

    CHECK(mjpeg_new(CT_FRAME, 0, &parser) == MJPEG_OK);
    CHECK(strcmp(mjpeg_delimiter(parser), "--frame") == 0);
    CHECK(mjpeg_feed(parser, NULL, 1) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_feed(parser, NULL, 0) == MJPEG_OK);
    CHECK(mjpeg_take_frame(parser, NULL) == MJPEG_ERR_INVALID);
    CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_NO_FRAME);
    CHECK(frame == NULL);
    mjpeg_get_stats(parser, &stats);
    CHECK(stats.max_frame == MJPEG_DEFAULT_MAX_FRAME);
    CHECK(stats.memory == 0);
    parser = mjpeg_free(parser);

    CHECK(mjpeg_new("multipart/x-mixed-replace;boundary=--myboundary", 1000, &parser) == MJPEG_OK);
    CHECK(strcmp(mjpeg_delimiter(parser), "--myboundary") == 0);
    mjpeg_get_stats(parser, &stats);
    CHECK(stats.max_frame == 1000);
    parser = mjpeg_free(parser);

    CHECK(mjpeg_new("multipart/x-mixed-replace; boundary=\"--quoted b\"", 0, &parser) == MJPEG_OK);
    CHECK(strcmp(mjpeg_delimiter(parser), "--quoted b") == 0);
    parser = mjpeg_free(parser);

    CHECK(mjpeg_new("multipart/mixed; boundary=----x", 0, &parser) == MJPEG_OK);
    CHECK(strcmp(mjpeg_delimiter(parser), "----x") == 0);
    mjpeg_free(parser);
}

/* Three parts with Content-Length in one chunk: only the newest is kept. */
static void test_keeps_only_newest(void)
{
    struct buf stream = {0};
    unsigned char *payloads[3];
    size_t sizes[3] = {1000, 2345, 777};
    struct mjpeg *parser = NULL;
    struct mjpeg_frame *frame = NULL;
    struct mjpeg_stats stats;

    buf_str(&stream, "preamble garbage\r\n");
    for (int i = 0; i < 3; i++) {
        payloads[i] = make_payload(sizes[i], (uint32_t)i + 1);
        add_part(&stream, "--frame", payloads[i], sizes[i], true);
    }
    CHECK(mjpeg_new(CT_FRAME, 0, &parser) == MJPEG_OK);
    CHECK(mjpeg_feed(parser, stream.data, stream.len) == MJPEG_OK);
    CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_OK);
    CHECK(frame_is(frame, payloads[2], sizes[2]));
    CHECK(frame && frame->seq == 3);
    CHECK(frame && strcmp(frame->content_type, "image/jpeg") == 0);
    frame = mjpeg_frame_free(frame);
    CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_NO_FRAME);
    mjpeg_get_stats(parser, &stats);
    CHECK(stats.frames == 3);
    CHECK(stats.frames_taken == 1);
    CHECK(stats.frames_replaced == 2);
    CHECK(stats.errors == 0);
    CHECK(stats.bytes == stream.len);
    CHECK(stats.skipped_bytes >= strlen("preamble garbage\r\n"));
    CHECK(mjpeg_finish(parser) == MJPEG_OK); /* ended between parts */
    mjpeg_free(parser);
    for (int i = 0; i < 3; i++)
        free(payloads[i]);
    buf_free(&stream);
}

/* With and without Content-Length, one byte at a time and in odd chunks:
 * every frame arrives intact and in order. */
static void test_chunking(void)
{
    enum { PARTS = 6 };
    static const size_t chunks[] = {1, 2, 3, 7, 64, 4096, 0, 0, 0};
    unsigned char *payloads[PARTS];
    size_t sizes[PARTS] = {5000, 1, 2, 300, 65536 + 17, 4};

    for (int i = 0; i < PARTS; i++)
        payloads[i] = make_payload(sizes[i], (uint32_t)i + 100);
    for (int with_length = 0; with_length < 2; with_length++) {
        struct buf stream = {0};
        for (int i = 0; i < PARTS; i++)
            add_part(&stream, "--frame", payloads[i], sizes[i], with_length);
        if (!with_length)
            buf_str(&stream, "--frame\r\n"); /* the last part ends here */
        for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
            struct run run;
            bool all_equal = true;

            run_stream(CT_FRAME, 0, &stream, chunks[c], &run);
            CHECK(run.first_error == MJPEG_OK);
            CHECK(run.stats.frames == PARTS);
            CHECK(run.stats.errors == 0);
            CHECK(run.stats.bytes == stream.len);
            if (chunks[c] == 1) {
                /* Taken after every byte: none was replaced. */
                CHECK(run.count == PARTS);
                CHECK(run.stats.frames_replaced == 0);
            }
            CHECK(run.count + run.stats.frames_replaced == PARTS);
            /* What was taken is in order and matches the payload. */
            for (size_t t = 0; t < run.count; t++) {
                size_t seq = (size_t)run.taken[t]->seq;
                if (seq < 1 || seq > PARTS ||
                    !frame_is(run.taken[t], payloads[seq - 1], sizes[seq - 1]) ||
                    (t > 0 && run.taken[t - 1]->seq >= seq))
                    all_equal = false;
            }
            CHECK(all_equal);
            CHECK(run.count > 0 && run.taken[run.count - 1]->seq == PARTS);
            run_free(&run);
        }
        buf_free(&stream);
    }
    for (int i = 0; i < PARTS; i++)
        free(payloads[i]);
}

/* The same stream in one piece and in random chunks gives the same counts
 * and the same newest frame, whatever is wrong with the stream. */
static void test_chunking_does_not_change_results(void)
{
    for (int round = 0; round < 40; round++) {
        struct buf stream = {0};
        struct mjpeg *whole = NULL;
        struct mjpeg_frame *last = NULL;
        struct mjpeg_stats stats;
        struct run run;
        int parts = 3 + round % 5;

        rng_state = 777u + (uint32_t)round;
        if (round % 3 == 0)
            buf_str(&stream, "HTTP junk --fram --frame\r\n");
        for (int i = 0; i < parts; i++) {
            size_t len = 1 + rng() % 3000;
            unsigned char *payload = make_payload(len, rng());
            uint32_t fault = rng() % 10;
            if (fault == 0)
                buf_str(&stream, "--frame\r\nBroken header\r\n\r\nxx\r\n");
            else if (fault == 1)
                buf_str(&stream, "--frameX\r\n");
            else if (fault == 2)
                buf_str(&stream, "--frame\r\nContent-Length: 0\r\n\r\n");
            add_part(&stream, rng() % 2 ? "--frame" : "----frame", payload, len, rng() % 2);
            if (fault == 3)
                stream.len -= len / 2; /* cut inside the part */
            free(payload);
        }
        buf_str(&stream, "--frame\r\n");

        CHECK(mjpeg_new(CT_FRAME, 2000, &whole) == MJPEG_OK);
        mjpeg_feed(whole, stream.data, stream.len);
        mjpeg_get_stats(whole, &stats);
        mjpeg_take_frame(whole, &last);
        mjpeg_free(whole);

        run_stream(CT_FRAME, 2000, &stream, 0, &run);
        CHECK(run.stats.frames == stats.frames);
        CHECK(run.stats.errors == stats.errors);
        CHECK(run.stats.too_big == stats.too_big);
        CHECK(run.stats.bad_headers == stats.bad_headers);
        CHECK(run.stats.bad_delimiters == stats.bad_delimiters);
        CHECK(run.stats.empty_parts == stats.empty_parts);
        CHECK(run.stats.bytes == stats.bytes);
        CHECK((last == NULL) == (run.count == 0));
        if (last && run.count > 0) {
            CHECK(last->seq == run.taken[run.count - 1]->seq);
            CHECK(frame_is(run.taken[run.count - 1], last->data, last->len));
        }
        mjpeg_frame_free(last);
        run_free(&run);
        buf_free(&stream);
    }
}

static void test_scan_mode_needs_next_boundary(void)
{
    unsigned char *payload = make_payload(500, 9);
    struct buf stream = {0};
    struct mjpeg *parser = NULL;
    struct mjpeg_frame *frame = NULL;

    add_part(&stream, "--frame", payload, 500, false);
    CHECK(mjpeg_new(CT_FRAME, 0, &parser) == MJPEG_OK);
    CHECK(mjpeg_feed(parser, stream.data, stream.len) == MJPEG_OK);
    /* Without Content-Length the part is not known to be complete yet. */
    CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_NO_FRAME);
    CHECK(mjpeg_feed(parser, "--fra", 5) == MJPEG_OK);
    CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_NO_FRAME);
    CHECK(mjpeg_feed(parser, "me\r\n", 4) == MJPEG_OK);
    CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_OK);
    CHECK(frame_is(frame, payload, 500)); /* the CRLF before the boundary is cut */
    frame = mjpeg_frame_free(frame);
    mjpeg_free(parser);
    free(payload);
    buf_free(&stream);
}

static void test_boundary_forms(void)
{
    static const char *const content_types[] = {
        "multipart/x-mixed-replace;boundary=frame",
        "multipart/x-mixed-replace;boundary=--frame",
        "multipart/x-mixed-replace;boundary=\"frame\"",
        "multipart/x-mixed-replace;boundary=\"--frame\"",
    };
    static const char *const lines[] = {"--frame", "----frame"};
    unsigned char *payload = make_payload(321, 4);

    for (size_t c = 0; c < 4; c++) {
        for (size_t l = 0; l < 2; l++) {
            for (int with_length = 0; with_length < 2; with_length++) {
                struct buf stream = {0};
                struct run run;
                add_part(&stream, lines[l], payload, 321, with_length);
                add_part(&stream, lines[l], payload, 321, with_length);
                buf_str(&stream, lines[l]);
                buf_str(&stream, "--\r\nepilogue");
                run_stream(content_types[c], 0, &stream, 0, &run);
                CHECK(run.stats.frames == 2);
                CHECK(run.stats.errors == 0);
                CHECK(run.count >= 1 && frame_is(run.taken[run.count - 1], payload, 321));
                run_free(&run);
                buf_free(&stream);
            }
        }
    }
    free(payload);
}

static void test_variations_of_framing(void)
{
    unsigned char *payload = make_payload(200, 5);
    struct buf stream = {0};
    struct run run;

    /* LF-only lines, transport padding, no headers at all, no CRLF before
     * the next boundary, lower-case header names. */
    buf_str(&stream, "--frame  \t\n\n");
    buf_add(&stream, payload, 200);
    buf_str(&stream, "\n--frame\r\n");
    buf_add(&stream, payload, 200); /* starts with FF: a body without headers */
    buf_str(&stream, "--frame\ncontent-length:   200  \n\n");
    buf_add(&stream, payload, 200);
    buf_str(&stream, "--frame\r\n");
    for (size_t chunk = 1; chunk <= 3; chunk++) {
        run_stream(CT_FRAME, 0, &stream, chunk, &run);
        CHECK(run.stats.frames == 3);
        CHECK(run.stats.errors == 0);
        CHECK(run.count == 3);
        for (size_t i = 0; i < run.count; i++)
            CHECK(frame_is(run.taken[i], payload, 200));
        CHECK(run.count == 3 && run.taken[2]->content_type[0] == '\0');
        run_free(&run);
    }
    buf_free(&stream);
    free(payload);
}

static void test_garbage_and_wrong_boundary(void)
{
    unsigned char *payload = make_payload(4000, 6);
    unsigned char *noise = make_payload(100000, 7);
    struct buf stream = {0};
    struct run run;

    /* Garbage first, then good parts. */
    buf_add(&stream, noise, 100000);
    add_part(&stream, "--frame", payload, 4000, true);
    add_part(&stream, "--frame", payload, 4000, false);
    buf_str(&stream, "--frame\r\n");
    run_stream(CT_FRAME, 0, &stream, 0, &run);
    CHECK(run.stats.frames == 2);
    CHECK(run.count >= 1 && frame_is(run.taken[run.count - 1], payload, 4000));
    CHECK(run.stats.skipped_bytes >= 100000);
    run_free(&run);

    /* A boundary that never shows: no frames, no memory. */
    run_stream("multipart/x-mixed-replace; boundary=other", 0, &stream, 0, &run);
    CHECK(run.stats.frames == 0);
    CHECK(run.count == 0);
    CHECK(run.stats.memory == 0);
    CHECK(run.stats.skipped_bytes == stream.len);
    run_free(&run);

    /* Only garbage. */
    buf_free(&stream);
    buf_add(&stream, noise, 100000);
    run_stream(CT_FRAME, 0, &stream, 1000, &run);
    CHECK(run.stats.frames == 0 && run.stats.memory == 0);
    run_free(&run);
    buf_free(&stream);
    free(noise);
    free(payload);
}

static void test_too_big_parts_are_skipped(void)
{
    enum { PARTS = 7 };
    static const size_t sizes[PARTS] = {500, 2000, 600, 3000, 1000, 1001, 700};
    static const size_t good[] = {0, 2, 4, 6};
    unsigned char *payloads[PARTS];

    for (int i = 0; i < PARTS; i++)
        payloads[i] = make_payload(sizes[i], (uint32_t)i + 20);
    for (int with_length = 0; with_length < 2; with_length++) {
        struct buf stream = {0};
        struct mjpeg *parser = NULL;
        struct mjpeg_frame *frame = NULL;
        struct mjpeg_stats stats;
        size_t taken = 0;
        size_t too_big_results = 0;
        bool intact = true;
        bool memory_bounded = true;

        for (int i = 0; i < PARTS; i++)
            add_part(&stream, "--frame", payloads[i], sizes[i], with_length);
        buf_str(&stream, "--frame\r\n"); /* ends the last part without length */
        CHECK(mjpeg_new(CT_FRAME, 1000, &parser) == MJPEG_OK);
        /* 100-byte chunks, a take after each: parts are >= 500 bytes, so no
         * frame is replaced before it is taken. */
        for (size_t pos = 0; pos < stream.len; pos += 100) {
            size_t n = stream.len - pos < 100 ? stream.len - pos : 100;
            if (mjpeg_feed(parser, stream.data + pos, n) == MJPEG_ERR_FRAME_TOO_BIG)
                too_big_results++;
            mjpeg_get_stats(parser, &stats);
            /* One frame waiting, one part arriving: 2 * (max_frame + slack). */
            if (stats.memory > 2 * (1000 + 256))
                memory_bounded = false;
            if (mjpeg_take_frame(parser, &frame) == MJPEG_OK) {
                if (taken >= 4 || !frame_is(frame, payloads[good[taken]], sizes[good[taken]]))
                    intact = false;
                taken++;
                frame = mjpeg_frame_free(frame);
            }
        }
        mjpeg_get_stats(parser, &stats);
        CHECK(intact);
        CHECK(memory_bounded);
        CHECK(taken == 4);
        CHECK(stats.frames == 4);
        CHECK(stats.too_big == 3); /* 2000, 3000, 1001 */
        CHECK(stats.errors == 3);
        CHECK(too_big_results == 3);
        CHECK(stats.last_error == MJPEG_ERR_FRAME_TOO_BIG);
        mjpeg_free(parser);
        buf_free(&stream);
    }
    for (int i = 0; i < PARTS; i++)
        free(payloads[i]);
}

static void test_huge_part_keeps_memory_bounded(void)
{
    enum { MAX_FRAME = 64 * 1024, CHUNK = 4096 };
    unsigned char *noise = make_payload(CHUNK, 8);
    unsigned char *payload = make_payload(1234, 10);
    struct buf stream = {0};
    struct mjpeg *parser = NULL;
    struct mjpeg_frame *frame = NULL;
    struct mjpeg_stats stats;
    size_t peak = 0;

    CHECK(mjpeg_new(CT_FRAME, MAX_FRAME, &parser) == MJPEG_OK);
    /* 10 MiB of a part without length, then one with a huge length. */
    CHECK(mjpeg_feed(parser, "--frame\r\n\r\n", 11) == MJPEG_OK);
    for (int i = 0; i < 10 * 256; i++) {
        mjpeg_feed(parser, noise, CHUNK);
        mjpeg_get_stats(parser, &stats);
        if (stats.memory > peak)
            peak = stats.memory;
    }
    CHECK(mjpeg_feed(parser, "\r\n--frame\r\nContent-Length: 99999999999\r\n\r\n", 42) ==
          MJPEG_ERR_FRAME_TOO_BIG);
    for (int i = 0; i < 256; i++)
        mjpeg_feed(parser, noise, CHUNK);
    add_part(&stream, "\r\n--frame", payload, 1234, true);
    CHECK(mjpeg_feed(parser, stream.data, stream.len) == MJPEG_OK);
    CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_OK);
    CHECK(frame_is(frame, payload, 1234));
    mjpeg_frame_free(frame);
    mjpeg_get_stats(parser, &stats);
    CHECK(peak <= MAX_FRAME + 256);
    CHECK(stats.too_big == 2);
    CHECK(stats.frames == 1);
    mjpeg_free(parser);
    buf_free(&stream);
    free(payload);
    free(noise);
}

static void test_truncated_streams(void)
{
    unsigned char *payload = make_payload(3000, 11);

    for (int with_length = 0; with_length < 2; with_length++) {
        struct buf stream = {0};
        struct mjpeg *parser = NULL;
        struct mjpeg_frame *frame = NULL;
        struct mjpeg_stats stats;
        size_t full;

        add_part(&stream, "--frame", payload, 3000, with_length);
        full = stream.len;
        /* Every cut inside the part: no frame, ever. */
        for (size_t cut = 0; cut < full - 2; cut += 97) {
            CHECK(mjpeg_new(CT_FRAME, 0, &parser) == MJPEG_OK);
            mjpeg_feed(parser, stream.data, cut);
            CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_NO_FRAME);
            CHECK(mjpeg_finish(parser) == (cut > strlen("--frame\r\n") ? MJPEG_ERR_TRUNCATED
                                                                      : MJPEG_OK));
            CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_NO_FRAME);
            parser = mjpeg_free(parser);
        }
        /* After finish() the parser starts over and reads a new stream. */
        CHECK(mjpeg_new(CT_FRAME, 0, &parser) == MJPEG_OK);
        mjpeg_feed(parser, stream.data, full / 2);
        CHECK(mjpeg_finish(parser) == MJPEG_ERR_TRUNCATED);
        mjpeg_feed(parser, stream.data, full);
        mjpeg_feed(parser, "--frame\r\n", 9);
        CHECK(mjpeg_take_frame(parser, &frame) == MJPEG_OK);
        CHECK(frame_is(frame, payload, 3000));
        mjpeg_frame_free(frame);
        mjpeg_get_stats(parser, &stats);
        CHECK(stats.truncated == 1 && stats.frames == 1);
        mjpeg_free(parser);
        buf_free(&stream);
    }
    free(payload);
}

static void test_bad_parts_resync(void)
{
    static const char nul_header[] = "\r\n--frame\r\nX-B: a\0\r\n\r\n";
    unsigned char *payload = make_payload(800, 12);
    unsigned char *big_head = malloc(MJPEG_MAX_PART_HEAD + 100);
    struct buf stream = {0};
    struct run run;

    memset(big_head, 'h', MJPEG_MAX_PART_HEAD + 100);
    buf_str(&stream, "--frame\r\nNo colon here\r\n\r\n");
    buf_add(&stream, payload, 800);
    buf_str(&stream, "\r\n--frame\r\nX-Long: ");
    buf_add(&stream, big_head, MJPEG_MAX_PART_HEAD + 100);
    buf_str(&stream, "\r\n\r\n");
    buf_add(&stream, payload, 800);
    buf_str(&stream, "\r\n--frame\r\nContent-Length: 12x\r\n\r\n");
    buf_add(&stream, payload, 800);
    buf_str(&stream, "\r\n--frame\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
    buf_add(&stream, payload, 800);
    buf_str(&stream, "\r\n--frameJUNK\r\n");
    buf_str(&stream, "\r\n--frame-x\r\n");
    buf_add(&stream, nul_header, sizeof(nul_header) - 1);
    buf_str(&stream, "--frame\r\n"); /* then a boundary line: an empty part */
    add_part(&stream, "--frame", payload, 800, true);
    run_stream(CT_FRAME, 0, &stream, 0, &run);
    CHECK(run.stats.frames == 1);
    CHECK(run.count == 1 && frame_is(run.taken[0], payload, 800));
    CHECK(run.stats.bad_headers == 5);
    CHECK(run.stats.bad_delimiters == 2);
    CHECK(run.stats.empty_parts == 1);
    CHECK(run.stats.errors == 8);
    run_free(&run);
    buf_free(&stream);
    free(big_head);
    free(payload);
}

/* Content-Length shorter than the body: the frame is what the length says,
 * the rest is skipped, the next part is fine. */
static void test_wrong_content_length(void)
{
    unsigned char *payload = make_payload(1000, 13);
    struct buf stream = {0};
    struct run run;

    buf_str(&stream, "--frame\r\nContent-Length: 600\r\n\r\n");
    buf_add(&stream, payload, 1000);
    buf_str(&stream, "\r\n");
    add_part(&stream, "--frame", payload, 1000, true);
    run_stream(CT_FRAME, 0, &stream, 1, &run);
    CHECK(run.count == 2);
    CHECK(run.count == 2 && frame_is(run.taken[0], payload, 600));
    CHECK(run.count == 2 && frame_is(run.taken[1], payload, 1000));
    CHECK(run.stats.errors == 0);
    run_free(&run);
    buf_free(&stream);
    free(payload);
}

static void test_close_delimiter(void)
{
    unsigned char *payload = make_payload(100, 14);
    struct buf stream = {0};
    struct run run;

    add_part(&stream, "--frame", payload, 100, false);
    buf_str(&stream, "--frame--\r\nthe end, with --frame inside\r\n");
    run_stream(CT_FRAME, 0, &stream, 1, &run);
    CHECK(run.stats.frames == 1);
    CHECK(run.count == 1 && frame_is(run.taken[0], payload, 100));
    CHECK(run.stats.errors == 1); /* "--frame inside": junk after the string */
    run_free(&run);
    buf_free(&stream);
    free(payload);
}

/* A textured test image compressed with libturbojpeg. */
static unsigned char *make_jpeg(int width, int height, int seed, unsigned long *ret_size)
{
    unsigned char *pixels = malloc((size_t)width * (size_t)height * 3);
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    tjhandle handle = tjInitCompress();

    if (!pixels || !handle)
        abort();
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++)
            for (int c = 0; c < 3; c++)
                pixels[((size_t)y * (size_t)width + (size_t)x) * 3 + (size_t)c] =
                    (unsigned char)(x * 3 + y * c + seed * 40 + (int)(rng() % 32));
    if (tjCompress2(handle, pixels, width, 0, height, TJPF_RGB, &jpeg, &size, TJSAMP_420, 85, 0) != 0)
        abort();
    tjDestroy(handle);
    free(pixels);
    *ret_size = size;
    return jpeg;
}

static void test_real_jpeg_frames(void)
{
    struct buf stream = {0};
    struct jpg_decoder *decoder = NULL;
    unsigned char *jpegs[3];
    unsigned long sizes[3];
    struct run run;
    bool all_valid = true;

    CHECK(jpg_decoder_new(&decoder) == JPG_OK);
    for (int i = 0; i < 3; i++) {
        jpegs[i] = make_jpeg(64 + 16 * i, 48, i, &sizes[i]);
        add_part(&stream, "--boundarydonotcross", jpegs[i], sizes[i], i == 1);
    }
    buf_str(&stream, "--boundarydonotcross\r\n");
    run_stream("multipart/x-mixed-replace;boundary=boundarydonotcross", 0, &stream, 1, &run);
    CHECK(run.count == 3);
    for (size_t i = 0; i < run.count; i++) {
        struct jpg_info info;
        if (jpg_validate(decoder, run.taken[i]->data, run.taken[i]->len, &info) != JPG_OK ||
            info.width != 64 + 16 * (int)i || info.height != 48 ||
            !frame_is(run.taken[i], jpegs[i], sizes[i]))
            all_valid = false;
    }
    CHECK(all_valid);
    run_free(&run);
    for (int i = 0; i < 3; i++)
        tjFree(jpegs[i]);
    jpg_decoder_free(decoder);
    buf_free(&stream);
}

static void test_result_strings(void)
{
    for (int r = 0; r <= MJPEG_RESULT_MAX; r++)
        CHECK(mjpeg_result_str((enum mjpeg_result)r) != NULL);
    CHECK(strcmp(mjpeg_result_str(MJPEG_ERR_FRAME_TOO_BIG), "frame larger than the limit") == 0);
    CHECK(strcmp(mjpeg_result_str((enum mjpeg_result)999), "unknown result") == 0);
}

int main(void)
{
    RUN_TEST(test_new_and_boundaries);
    RUN_TEST(test_keeps_only_newest);
    RUN_TEST(test_chunking);
    RUN_TEST(test_chunking_does_not_change_results);
    RUN_TEST(test_scan_mode_needs_next_boundary);
    RUN_TEST(test_boundary_forms);
    RUN_TEST(test_variations_of_framing);
    RUN_TEST(test_garbage_and_wrong_boundary);
    RUN_TEST(test_too_big_parts_are_skipped);
    RUN_TEST(test_huge_part_keeps_memory_bounded);
    RUN_TEST(test_truncated_streams);
    RUN_TEST(test_bad_parts_resync);
    RUN_TEST(test_wrong_content_length);
    RUN_TEST(test_close_delimiter);
    RUN_TEST(test_real_jpeg_frames);
    RUN_TEST(test_result_strings);
    return CHECK_DONE();
}
