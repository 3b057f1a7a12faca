/* SPDX-License-Identifier: AGPL-3.0-or-later
 * The helper's frame parser (helper/frame.c) and reply payloads
 * (helper/reply.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "frame.h"
#include "reply.h"

#define STREAM_MAX 65536u

struct stream {
    unsigned char bytes[STREAM_MAX];
    size_t len;
};

static void add_raw(struct stream *s, const void *data, size_t len)
{
    if (s->len + len > STREAM_MAX)
        abort();
    memcpy(s->bytes + s->len, data, len);
    s->len += len;
}

static void add_frame(struct stream *s, uint8_t type, uint32_t id, const void *payload,
                      uint32_t len)
{
    unsigned char header[FRAME_HEADER_LEN];

    frame_header_encode(header, FRAME_REQUEST_MAGIC, type, id, len);
    add_raw(s, header, sizeof(header));
    if (len)
        add_raw(s, payload, len);
}

/* What a parse of a stream produced. */
#define MAX_SEEN 64
struct seen {
    size_t count;
    enum frame_event_kind kind[MAX_SEEN];
    struct frame_header header[MAX_SEEN];
    unsigned char payload_sum[MAX_SEEN]; /* XOR of the payload bytes */
    size_t payload_len[MAX_SEEN];
    enum frame_result last_result;
};

static unsigned char xor_bytes(const unsigned char *p, size_t len)
{
    unsigned char x = 0;
    for (size_t i = 0; i < len; i++)
        x ^= p[i];
    return x;
}

/* Feeds s in chunks: chunk 0 means random sizes from 1 to 37. */
static void parse_stream(const struct stream *s, size_t max_payload, size_t chunk,
                         struct seen *seen)
{
    struct frame_parser *parser = NULL;
    uint32_t rng = 12345;
    size_t off = 0;

    memset(seen, 0, sizeof(*seen));
    CHECK(frame_parser_new(max_payload, &parser) == FRAME_OK);
    if (!parser)
        return;
    while (off < s->len) {
        size_t piece = chunk;
        if (piece == 0) {
            rng = rng * 1103515245u + 12345u;
            piece = 1 + (rng >> 16) % 37u;
        }
        if (piece > s->len - off)
            piece = s->len - off;
        size_t done = 0;
        while (done < piece) {
            struct frame_event event;
            size_t used = 0;
            enum frame_result r =
                frame_parser_feed(parser, s->bytes + off + done, piece - done, &used, &event);
            seen->last_result = r;
            if (r != FRAME_OK)
                goto out;
            CHECK(used >= 1 && used <= piece - done);
            done += used;
            if (event.kind != FRAME_EVENT_NONE && seen->count < MAX_SEEN) {
                seen->kind[seen->count] = event.kind;
                seen->header[seen->count] = event.header;
                if (event.kind == FRAME_EVENT_FRAME) {
                    seen->payload_len[seen->count] = event.header.length;
                    CHECK(event.header.length <= max_payload);
                    CHECK((event.payload != NULL) == (event.header.length > 0));
                    if (event.payload)
                        seen->payload_sum[seen->count] =
                            xor_bytes(event.payload, event.header.length);
                }
                seen->count++;
            }
        }
        off += piece;
    }
    CHECK(frame_parser_idle(parser));
out:
    frame_parser_free(parser);
}

static void test_header_round_trip(void)
{
    unsigned char buf[FRAME_HEADER_LEN];
    struct frame_header h;

    frame_header_encode(buf, FRAME_RESPONSE_MAGIC, FRAME_RESPONSE_ERROR, 0xdeadbeefu, 258u);
    CHECK(memcmp(buf, "TSDR\x01\x03\x00\x00\xef\xbe\xad\xde\x02\x01\x00\x00", 16) == 0);
    CHECK(frame_header_parse(buf, sizeof(buf), FRAME_RESPONSE_MAGIC, &h) == FRAME_OK);
    CHECK(h.version == 1 && h.type == 3 && h.reserved == 0 && h.id == 0xdeadbeefu &&
          h.length == 258u);
    CHECK(frame_header_parse(buf, sizeof(buf), FRAME_REQUEST_MAGIC, &h) == FRAME_ERR_MAGIC);
    CHECK(frame_header_parse(buf, 15, FRAME_RESPONSE_MAGIC, &h) == FRAME_ERR_INVALID);
    CHECK(frame_header_parse(NULL, 16, FRAME_RESPONSE_MAGIC, &h) == FRAME_ERR_INVALID);
}

static struct stream stream;

static void build_mixed_stream(void)
{
    unsigned char payload[3000];

    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (unsigned char)(i * 7u + 3u);
    stream.len = 0;
    add_frame(&stream, FRAME_REQUEST_JPEG, 1, payload, 3000);
    add_frame(&stream, FRAME_REQUEST_PING, 2, NULL, 0);
    add_frame(&stream, FRAME_REQUEST_JPEG, 3, payload, 1);
    add_frame(&stream, 77, 4, payload + 5, 200); /* unknown type: still a frame */
    add_frame(&stream, FRAME_REQUEST_JPEG, 0xffffffffu, payload + 1, 2999);
}

static void check_mixed(const struct seen *seen)
{
    unsigned char payload[3000];

    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (unsigned char)(i * 7u + 3u);
    CHECK(seen->last_result == FRAME_OK);
    CHECK(seen->count == 5);
    for (size_t i = 0; i < 5 && i < seen->count; i++)
        CHECK(seen->kind[i] == FRAME_EVENT_FRAME);
    CHECK(seen->header[0].id == 1 && seen->header[0].type == 1 && seen->payload_len[0] == 3000);
    CHECK(seen->payload_sum[0] == xor_bytes(payload, 3000));
    CHECK(seen->header[1].id == 2 && seen->header[1].type == 2 && seen->payload_len[1] == 0);
    CHECK(seen->header[2].id == 3 && seen->payload_len[2] == 1 &&
          seen->payload_sum[2] == payload[0]);
    CHECK(seen->header[3].type == 77 && seen->payload_sum[3] == xor_bytes(payload + 5, 200));
    CHECK(seen->header[4].id == 0xffffffffu &&
          seen->payload_sum[4] == xor_bytes(payload + 1, 2999));
}

static void test_whole_stream(void)
{
    struct seen seen;

    build_mixed_stream();
    parse_stream(&stream, 4096, stream.len, &seen);
    check_mixed(&seen);
}

static void test_byte_at_a_time(void)
{
    struct seen seen;

    build_mixed_stream();
    parse_stream(&stream, 4096, 1, &seen);
    check_mixed(&seen);
}

static void test_random_chunks(void)
{
    struct seen seen;

    build_mixed_stream();
    parse_stream(&stream, 4096, 0, &seen);
    check_mixed(&seen);
    parse_stream(&stream, 4096, 16, &seen);
    check_mixed(&seen);
    parse_stream(&stream, 4096, 17, &seen);
    check_mixed(&seen);
}

static void test_oversized_skipped(void)
{
    unsigned char big[5000];
    unsigned char small[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct frame_parser *parser = NULL;
    struct seen seen;
    size_t chunks[] = {0, 1, 3, 4096, STREAM_MAX};

    memset(big, 0xab, sizeof(big));
    stream.len = 0;
    add_frame(&stream, FRAME_REQUEST_JPEG, 10, big, sizeof(big));
    add_frame(&stream, FRAME_REQUEST_PING, 11, NULL, 0);
    add_frame(&stream, FRAME_REQUEST_JPEG, 12, small, sizeof(small));
    add_frame(&stream, FRAME_REQUEST_JPEG, 13, big, 101); /* max + 1 */
    add_frame(&stream, FRAME_REQUEST_JPEG, 14, big, 100); /* exactly max */
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        parse_stream(&stream, 100, chunks[c], &seen);
        CHECK(seen.last_result == FRAME_OK);
        CHECK(seen.count == 5);
        CHECK(seen.kind[0] == FRAME_EVENT_OVERSIZED && seen.header[0].id == 10 &&
              seen.header[0].length == sizeof(big));
        CHECK(seen.kind[1] == FRAME_EVENT_FRAME && seen.header[1].id == 11);
        CHECK(seen.kind[2] == FRAME_EVENT_FRAME && seen.header[2].id == 12 &&
              seen.payload_sum[2] == xor_bytes(small, 10));
        CHECK(seen.kind[3] == FRAME_EVENT_OVERSIZED && seen.header[3].id == 13);
        CHECK(seen.kind[4] == FRAME_EVENT_FRAME && seen.header[4].id == 14 &&
              seen.payload_len[4] == 100);
    }

    /* An oversized frame is never buffered, and the report comes with the
     * header, before any of its payload. */
    CHECK(frame_parser_new(100, &parser) == FRAME_OK);
    if (parser) {
        struct frame_event event;
        size_t used = 0;
        CHECK(frame_parser_feed(parser, stream.bytes, FRAME_HEADER_LEN + 50, &used, &event) ==
              FRAME_OK);
        CHECK(used == FRAME_HEADER_LEN && event.kind == FRAME_EVENT_OVERSIZED);
        CHECK(!frame_parser_idle(parser));
        CHECK(frame_parser_feed(parser, stream.bytes + used, 50, &used, &event) == FRAME_OK);
        CHECK(used == 50 && event.kind == FRAME_EVENT_NONE);
        CHECK(frame_parser_buffered_capacity(parser) == 0);
    }
    frame_parser_free(parser);
}

static void test_zero_max_payload(void)
{
    struct seen seen;

    stream.len = 0;
    add_frame(&stream, FRAME_REQUEST_PING, 1, NULL, 0);
    add_frame(&stream, FRAME_REQUEST_JPEG, 2, "x", 1);
    add_frame(&stream, FRAME_REQUEST_PING, 3, NULL, 0);
    parse_stream(&stream, 0, 1, &seen);
    CHECK(seen.count == 3);
    CHECK(seen.kind[0] == FRAME_EVENT_FRAME && seen.kind[1] == FRAME_EVENT_OVERSIZED &&
          seen.kind[2] == FRAME_EVENT_FRAME && seen.header[2].id == 3);
}

/* Feeds data in one call and returns the result. */
static enum frame_result feed_all(struct frame_parser *parser, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t off = 0;

    while (off < len) {
        struct frame_event event;
        size_t used = 0;
        enum frame_result r = frame_parser_feed(parser, p + off, len - off, &used, &event);
        if (r != FRAME_OK)
            return r;
        off += used;
    }
    return FRAME_OK;
}

static void test_bad_magic(void)
{
    struct frame_parser *parser = NULL;
    unsigned char header[FRAME_HEADER_LEN];
    struct frame_event event = {.kind = FRAME_EVENT_MAX};
    size_t used = 12345;

    CHECK(frame_parser_new(1024, &parser) == FRAME_OK);
    if (!parser)
        return;
    frame_header_encode(header, "TSDX", FRAME_REQUEST_PING, 1, 0);
    CHECK(feed_all(parser, header, sizeof(header)) == FRAME_ERR_MAGIC);
    /* Sticky: even a good header is refused now, outputs untouched. */
    frame_header_encode(header, FRAME_REQUEST_MAGIC, FRAME_REQUEST_PING, 1, 0);
    CHECK(frame_parser_feed(parser, header, sizeof(header), &used, &event) == FRAME_ERR_MAGIC);
    CHECK(used == 12345 && event.kind == FRAME_EVENT_MAX);
    CHECK(!frame_parser_idle(parser));
    parser = frame_parser_free(parser);

    /* Garbage text. */
    CHECK(frame_parser_new(1024, &parser) == FRAME_OK);
    if (parser)
        CHECK(feed_all(parser, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27) == FRAME_ERR_MAGIC);
    parser = frame_parser_free(parser);

    /* A response magic is not a request. */
    CHECK(frame_parser_new(1024, &parser) == FRAME_OK);
    frame_header_encode(header, FRAME_RESPONSE_MAGIC, FRAME_REQUEST_PING, 1, 0);
    if (parser)
        CHECK(feed_all(parser, header, sizeof(header)) == FRAME_ERR_MAGIC);
    parser = frame_parser_free(parser);

    /* The bad magic is found after a good frame too. */
    stream.len = 0;
    add_frame(&stream, FRAME_REQUEST_PING, 1, NULL, 0);
    add_raw(&stream, "TSDG", 4);
    add_raw(&stream, "\x01\x02\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00", 12);
    CHECK(frame_parser_new(1024, &parser) == FRAME_OK);
    if (parser)
        CHECK(feed_all(parser, stream.bytes, stream.len) == FRAME_ERR_MAGIC);
    parser = frame_parser_free(parser);
}

static void test_bad_version_and_reserved(void)
{
    struct frame_parser *parser = NULL;
    unsigned char header[FRAME_HEADER_LEN];

    frame_header_encode(header, FRAME_REQUEST_MAGIC, FRAME_REQUEST_PING, 1, 0);
    header[4] = 2;
    CHECK(frame_parser_new(1024, &parser) == FRAME_OK);
    if (parser)
        CHECK(feed_all(parser, header, sizeof(header)) == FRAME_ERR_VERSION);
    parser = frame_parser_free(parser);

    frame_header_encode(header, FRAME_REQUEST_MAGIC, FRAME_REQUEST_PING, 1, 0);
    header[7] = 1;
    CHECK(frame_parser_new(1024, &parser) == FRAME_OK);
    if (parser)
        CHECK(feed_all(parser, header, sizeof(header)) == FRAME_ERR_RESERVED);
    parser = frame_parser_free(parser);
}

static void test_truncated(void)
{
    struct frame_parser *parser = NULL;
    unsigned char header[FRAME_HEADER_LEN];
    struct frame_event event;
    size_t used = 0;

    CHECK(frame_parser_new(1024, &parser) == FRAME_OK);
    if (!parser)
        return;
    CHECK(frame_parser_idle(parser));
    /* Truncated header: consumed, no event, not idle (EOF now = truncated). */
    frame_header_encode(header, FRAME_REQUEST_MAGIC, FRAME_REQUEST_JPEG, 9, 20);
    CHECK(frame_parser_feed(parser, header, 10, &used, &event) == FRAME_OK);
    CHECK(used == 10 && event.kind == FRAME_EVENT_NONE);
    CHECK(!frame_parser_idle(parser));
    /* Rest of the header and part of the payload. */
    CHECK(frame_parser_feed(parser, header + 10, 6, &used, &event) == FRAME_OK);
    CHECK(used == 6 && event.kind == FRAME_EVENT_NONE);
    CHECK(frame_parser_feed(parser, "0123456789", 10, &used, &event) == FRAME_OK);
    CHECK(used == 10 && event.kind == FRAME_EVENT_NONE && !frame_parser_idle(parser));
    /* The end of the payload and the start of the next frame: one event,
     * the next frame's bytes left for the next call. */
    CHECK(frame_parser_feed(parser, "abcdefghijTSDF", 14, &used, &event) == FRAME_OK);
    CHECK(used == 10 && event.kind == FRAME_EVENT_FRAME && event.header.id == 9);
    CHECK(event.payload && memcmp(event.payload, "0123456789abcdefghij", 20) == 0);
    CHECK(frame_parser_idle(parser));
    /* Nothing fed: nothing consumed. */
    CHECK(frame_parser_feed(parser, NULL, 0, &used, &event) == FRAME_OK);
    CHECK(used == 0 && event.kind == FRAME_EVENT_NONE);
    frame_parser_free(parser);
}

static void test_invalid_arguments(void)
{
    struct frame_parser *parser = NULL;
    struct frame_event event;
    size_t used;

    CHECK(frame_parser_new(FRAME_MAX_PAYLOAD_LIMIT + 1u, &parser) == FRAME_ERR_INVALID);
    CHECK(parser == NULL);
    CHECK(frame_parser_new(10, NULL) == FRAME_ERR_INVALID);
    CHECK(frame_parser_feed(NULL, "x", 1, &used, &event) == FRAME_ERR_INVALID);
    CHECK(frame_parser_new(10, &parser) == FRAME_OK);
    CHECK(frame_parser_feed(parser, NULL, 1, &used, &event) == FRAME_ERR_INVALID);
    CHECK(frame_parser_feed(parser, "x", 1, NULL, &event) == FRAME_ERR_INVALID);
    CHECK(frame_parser_feed(parser, "x", 1, &used, NULL) == FRAME_ERR_INVALID);
    CHECK(frame_parser_free(parser) == NULL);
    CHECK(frame_parser_free(NULL) == NULL);
    CHECK(!frame_parser_idle(NULL));
    for (int r = 0; r <= FRAME_RESULT_MAX; r++)
        CHECK(frame_result_str((enum frame_result)r) != NULL);
    CHECK(strcmp(frame_result_str(FRAME_ERR_MAGIC), "bad frame magic") == 0);
}

static void test_payload_buffer_reused(void)
{
    unsigned char payload[3000] = {0};
    struct frame_parser *parser = NULL;
    size_t cap;

    CHECK(frame_parser_new(1u << 20, &parser) == FRAME_OK);
    if (!parser)
        return;
    stream.len = 0;
    add_frame(&stream, FRAME_REQUEST_JPEG, 1, payload, sizeof(payload));
    CHECK(feed_all(parser, stream.bytes, stream.len) == FRAME_OK);
    cap = frame_parser_buffered_capacity(parser);
    CHECK(cap >= sizeof(payload) && cap <= 2 * 4096);
    for (int i = 0; i < 100; i++)
        CHECK(feed_all(parser, stream.bytes, stream.len) == FRAME_OK);
    CHECK(frame_parser_buffered_capacity(parser) == cap);
    frame_parser_free(parser);
}

static void test_reply_detections(void)
{
    static const char *const names[] = {"failure", "say \"hi\"\\"};
    const struct infer_detection dets[] = {
        {.class_id = 0, .confidence = 0.53f, .x = 0.25f, .y = 0.5f, .w = 0.5f, .h = 0.25f},
        {.class_id = 1, .confidence = 1.0f, .x = 0.0f, .y = 0.0f, .w = 1.0f, .h = 1.0f},
    };
    char buf[512];
    size_t len = 0;

    CHECK(reply_detections(buf, sizeof(buf), 42, 12.5, 640, 480, dets, 2, names, 2, &len) ==
          REPLY_OK);
    CHECK(strcmp(buf, "{\"id\":42,\"ms\":12.5,\"w\":640,\"h\":480,\"detections\":["
                      "{\"class\":\"failure\",\"confidence\":0.53,\"box\":[160,240,320,120]},"
                      "{\"class\":\"say \\\"hi\\\"\\\\\",\"confidence\":1,\"box\":[0,0,640,480]}"
                      "]}") == 0);
    CHECK(len == strlen(buf));
    CHECK(reply_detections(buf, sizeof(buf), 1, 0.0, 64, 64, dets, 0, names, 2, &len) ==
          REPLY_OK);
    CHECK(strcmp(buf, "{\"id\":1,\"ms\":0,\"w\":64,\"h\":64,\"detections\":[]}") == 0);
    /* Too small: an error, *ret_len untouched. */
    len = 999;
    CHECK(reply_detections(buf, 40, 42, 12.5, 640, 480, dets, 2, names, 2, &len) ==
          REPLY_ERR_NOSPACE);
    CHECK(len == 999);
    /* A class id outside the names. */
    CHECK(reply_detections(buf, sizeof(buf), 1, 0.0, 64, 64, dets, 2, names, 1, &len) ==
          REPLY_ERR_INVALID);
}

static void test_reply_error(void)
{
    char buf[REPLY_ERROR_BYTES];
    char long_message[REPLY_MAX_ERROR * 2];
    size_t len = 0;

    CHECK(reply_error(buf, sizeof(buf), 7, "bad \"x\"\n\x01\xc3\xa9", &len) == REPLY_OK);
    CHECK(strcmp(buf, "{\"id\":7,\"error\":\"bad \\\"x\\\"\\n\\u0001??\"}") == 0);
    memset(long_message, '"', sizeof(long_message) - 1);
    long_message[sizeof(long_message) - 1] = '\0';
    CHECK(reply_error(buf, sizeof(buf), 4294967295u, long_message, &len) == REPLY_OK);
    CHECK(len == strlen("{\"id\":4294967295,\"error\":\"\"}") + 2 * REPLY_MAX_ERROR);
    CHECK(reply_error(buf, 10, 7, "x", &len) == REPLY_ERR_NOSPACE);
    CHECK(reply_error(NULL, 10, 7, "x", &len) == REPLY_ERR_INVALID);
    for (int r = 0; r <= REPLY_RESULT_MAX; r++)
        CHECK(reply_result_str((enum reply_result)r) != NULL);
}

int main(void)
{
    RUN_TEST(test_header_round_trip);
    RUN_TEST(test_whole_stream);
    RUN_TEST(test_byte_at_a_time);
    RUN_TEST(test_random_chunks);
    RUN_TEST(test_oversized_skipped);
    RUN_TEST(test_zero_max_payload);
    RUN_TEST(test_bad_magic);
    RUN_TEST(test_bad_version_and_reserved);
    RUN_TEST(test_truncated);
    RUN_TEST(test_invalid_arguments);
    RUN_TEST(test_payload_buffer_reused);
    RUN_TEST(test_reply_detections);
    RUN_TEST(test_reply_error);
    return CHECK_DONE();
}
