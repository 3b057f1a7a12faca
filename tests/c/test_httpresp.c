/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests of native/core/httpresp.c: status line, header fields, framing,
 * limits, malformed heads, incremental feeding and Content-Type parameters. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "httpresp.h"

static enum httpresp_result parse_text(const char *text, struct httpresp **ret_parser)
{
    struct httpresp *parser = NULL;
    enum httpresp_result result;
    size_t used = 0;

    if (httpresp_new(&parser) != HTTPRESP_OK)
        return HTTPRESP_ERR_NOMEM;
    result = httpresp_feed(parser, text, strlen(text), &used);
    *ret_parser = parser;
    return result;
}

/* The result of parsing text, with the parser freed. */
static enum httpresp_result parse_result(const char *text)
{
    struct httpresp *parser = NULL;
    enum httpresp_result result = parse_text(text, &parser);

    httpresp_free(parser);
    return result;
}

static void test_invalid_arguments(void)
{
    struct httpresp *parser = NULL;
    struct httpresp_info info;
    const char *name = NULL;
    const char *value = NULL;
    uint64_t length = 0;
    char type[HTTPRESP_MEDIA_TYPE_SIZE];
    char boundary[HTTPRESP_BOUNDARY_SIZE];

    CHECK(httpresp_new(NULL) == HTTPRESP_ERR_INVALID);
    CHECK(httpresp_free(NULL) == NULL);
    httpresp_reset(NULL);
    CHECK(httpresp_feed(NULL, "x", 1, NULL) == HTTPRESP_ERR_INVALID);
    CHECK(httpresp_get_info(NULL, &info) == HTTPRESP_ERR_INVALID);
    CHECK(httpresp_header(NULL, "a") == NULL);
    CHECK(httpresp_parse_content_length(NULL, 0, &length) == HTTPRESP_ERR_INVALID);
    CHECK(httpresp_content_type(NULL, type, sizeof(type), boundary, sizeof(boundary)) ==
          HTTPRESP_ERR_INVALID);
    CHECK(httpresp_content_type("a/b", NULL, 0, boundary, sizeof(boundary)) ==
          HTTPRESP_ERR_INVALID);

    CHECK(httpresp_new(&parser) == HTTPRESP_OK);
    CHECK(httpresp_feed(parser, NULL, 1, NULL) == HTTPRESP_ERR_INVALID);
    CHECK(httpresp_feed(parser, NULL, 0, NULL) == HTTPRESP_NEED_MORE);
    /* Nothing to read before the head is complete. */
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_ERR_INVALID);
    CHECK(httpresp_header(parser, "Content-Type") == NULL);
    CHECK(httpresp_header_at(parser, 0, &name, &value) == HTTPRESP_ERR_INVALID);
    httpresp_free(parser);
}

static const char mjpg_streamer_head[] =
    "HTTP/1.0 200 OK\r\n"
    "Connection: close\r\n"
    "Server: MJPG-Streamer/0.2\r\n"
    "Cache-Control: no-store, no-cache, must-revalidate, pre-check=0, post-check=0, max-age=0\r\n"
    "Pragma: no-cache\r\n"
    "Expires: Mon, 3 Apr 1972 12:34:56 GMT\r\n"
    "Content-Type: multipart/x-mixed-replace;boundary=boundarydonotcross\r\n"
    "\r\n";

static void test_complete_head_in_one_chunk(void)
{
    struct httpresp *parser = NULL;
    struct httpresp_info info;
    char data[sizeof(mjpg_streamer_head) + 16];
    size_t head_len = strlen(mjpg_streamer_head);
    size_t used = 0;
    const char *name = NULL;
    const char *value = NULL;

    /* The head followed by the start of the body. */
    memcpy(data, mjpg_streamer_head, head_len);
    memcpy(data + head_len, "--boundary", 10);
    CHECK(httpresp_new(&parser) == HTTPRESP_OK);
    CHECK(httpresp_feed(parser, data, head_len + 10, &used) == HTTPRESP_OK);
    CHECK(used == head_len);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.version_minor == 0);
    CHECK(info.status == 200);
    CHECK(strcmp(info.reason, "OK") == 0);
    CHECK(info.content_type &&
          strcmp(info.content_type, "multipart/x-mixed-replace;boundary=boundarydonotcross") == 0);
    CHECK(info.location == NULL);
    CHECK(!info.has_content_length);
    CHECK(!info.has_transfer_encoding);
    CHECK(!info.chunked);
    CHECK(info.body == HTTPRESP_BODY_CLOSE);
    CHECK(info.header_count == 6);
    CHECK(info.head_len == head_len);

    /* Lookup is case-insensitive and returns trimmed values. */
    CHECK(httpresp_header(parser, "server") &&
          strcmp(httpresp_header(parser, "server"), "MJPG-Streamer/0.2") == 0);
    CHECK(httpresp_header(parser, "PRAGMA") &&
          strcmp(httpresp_header(parser, "PRAGMA"), "no-cache") == 0);
    CHECK(httpresp_header(parser, "X-Missing") == NULL);
    CHECK(httpresp_header(parser, "Serve") == NULL);
    CHECK(httpresp_header_at(parser, 0, &name, &value) == HTTPRESP_OK);
    CHECK(strcmp(name, "Connection") == 0 && strcmp(value, "close") == 0);
    CHECK(httpresp_header_at(parser, 5, &name, &value) == HTTPRESP_OK);
    CHECK(strcmp(name, "Content-Type") == 0);
    CHECK(httpresp_header_at(parser, 6, &name, &value) == HTTPRESP_ERR_INVALID);

    /* A complete parser takes nothing more. */
    used = 99;
    CHECK(httpresp_feed(parser, "more", 4, &used) == HTTPRESP_OK);
    CHECK(used == 0);
    httpresp_free(parser);
}

static void test_one_byte_at_a_time(void)
{
    struct httpresp *parser = NULL;
    struct httpresp_info info;
    size_t len = strlen(mjpg_streamer_head);
    bool need_more_until_last = true;
    size_t used = 0;

    CHECK(httpresp_new(&parser) == HTTPRESP_OK);
    for (size_t i = 0; i + 1 < len; i++) {
        if (httpresp_feed(parser, mjpg_streamer_head + i, 1, &used) != HTTPRESP_NEED_MORE ||
            used != 1)
            need_more_until_last = false;
    }
    CHECK(need_more_until_last);
    CHECK(httpresp_feed(parser, mjpg_streamer_head + len - 1, 1, &used) == HTTPRESP_OK);
    CHECK(used == 1);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.status == 200 && info.header_count == 6 && info.head_len == len);
    CHECK(strcmp(httpresp_header(parser, "content-type"),
                 "multipart/x-mixed-replace;boundary=boundarydonotcross") == 0);

    /* Reset: the same parser reads the next response. */
    httpresp_reset(parser);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_ERR_INVALID);
    CHECK(httpresp_feed(parser, "HTTP/1.1 404 Not Found\r\n\r\n", 26, &used) == HTTPRESP_OK);
    CHECK(used == 26);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.status == 404 && strcmp(info.reason, "Not Found") == 0);
    CHECK(info.header_count == 0);
    httpresp_free(parser);
}

static void test_body_framing(void)
{
    struct httpresp *parser = NULL;
    struct httpresp_info info;

    CHECK(parse_text("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.version_minor == 1);
    CHECK(info.has_content_length && info.content_length == 1234);
    CHECK(info.body == HTTPRESP_BODY_LENGTH);
    parser = httpresp_free(parser);

    /* Repeated equal lengths are fine. */
    CHECK(parse_text("HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length:7\r\n\r\n",
                     &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.content_length == 7);
    parser = httpresp_free(parser);

    CHECK(parse_text("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", &parser) ==
          HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.has_transfer_encoding && info.chunked);
    CHECK(info.body == HTTPRESP_BODY_CHUNKED);
    parser = httpresp_free(parser);

    /* Transfer-Encoding overrides Content-Length (RFC 9112 6.3). */
    CHECK(parse_text("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                     &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.has_content_length && info.body == HTTPRESP_BODY_CHUNKED);
    parser = httpresp_free(parser);

    /* A final coding other than chunked: read until close. */
    CHECK(parse_text("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n"
                     "Content-Length: 5\r\n\r\n", &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(!info.chunked && info.body == HTTPRESP_BODY_CLOSE);
    parser = httpresp_free(parser);

    CHECK(parse_text("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", &parser) ==
          HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.body == HTTPRESP_BODY_NONE);
    parser = httpresp_free(parser);

    CHECK(parse_text("HTTP/1.1 304 Not Modified\r\n\r\n", &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.body == HTTPRESP_BODY_NONE);
    parser = httpresp_free(parser);

    CHECK(parse_text("HTTP/1.1 100 Continue\r\n\r\n", &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.status == 100 && info.body == HTTPRESP_BODY_NONE);
    parser = httpresp_free(parser);

    CHECK(parse_text("HTTP/1.1 302 Found\r\nLocation:  http://cam.local/?action=stream \r\n"
                     "Location: /second\r\n\r\n", &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.status == 302);
    CHECK(info.location && strcmp(info.location, "http://cam.local/?action=stream") == 0);
    httpresp_free(parser);
}

static void test_lenient_forms(void)
{
    struct httpresp *parser = NULL;
    struct httpresp_info info;

    /* Bare LF line endings, no reason phrase, empty values, obs-text. */
    CHECK(parse_text("HTTP/1.0 200\nX-Empty:\nX-Text: caf\xc3\xa9\t ok\n\n", &parser) ==
          HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.status == 200 && strcmp(info.reason, "") == 0);
    CHECK(httpresp_header(parser, "x-empty") && strcmp(httpresp_header(parser, "x-empty"), "") == 0);
    CHECK(strcmp(httpresp_header(parser, "x-text"), "caf\xc3\xa9\t ok") == 0);
    parser = httpresp_free(parser);

    CHECK(parse_text("HTTP/1.1 200 \r\n\r\n", &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(strcmp(info.reason, "") == 0);
    parser = httpresp_free(parser);

    CHECK(parse_text("HTTP/1.1 503 Service  Unavailable\r\n\r\n", &parser) == HTTPRESP_OK);
    CHECK(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    CHECK(info.status == 503 && strcmp(info.reason, "Service  Unavailable") == 0);
    httpresp_free(parser);
}

static void test_malformed_heads(void)
{
    static const char nul_head[] = "HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n";
    struct httpresp *parser = NULL;
    size_t used = 12345;

    CHECK(parse_result("HTTP/2 200 OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("HTTP/1.1 20 OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("HTTP/1.1 2000 OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("HTTP/1.1 099 Low\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("HTTP/1.1 200OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("HTTP/1.1  200 OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("ICY 200 OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("http/1.1 200 OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("\r\nHTTP/1.1 200 OK\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("HTTP/1.1 200 O\x01K\r\n\r\n") == HTTPRESP_ERR_STATUS_LINE);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nX-A: 1\r\n continued\r\n\r\n") == HTTPRESP_ERR_OBS_FOLD);
    CHECK(parse_result("HTTP/1.1 200 OK\r\n\tX-A: 1\r\n\r\n") == HTTPRESP_ERR_OBS_FOLD);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n") == HTTPRESP_ERR_HEADER);
    CHECK(parse_result("HTTP/1.1 200 OK\r\n: 1\r\n\r\n") == HTTPRESP_ERR_HEADER);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n") == HTTPRESP_ERR_HEADER);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nX(A): 1\r\n\r\n") == HTTPRESP_ERR_HEADER);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nX-A: a\x7f\r\n\r\n") == HTTPRESP_ERR_HEADER);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n") == HTTPRESP_ERR_BARE_CR);
    CHECK(parse_result("HTTP/1.1 200 OK\r\r\n\r\n") == HTTPRESP_ERR_BARE_CR);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n") ==
          HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n") ==
          HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n") ==
          HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n") == HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") ==
          HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n") ==
          HTTPRESP_ERR_CONTENT_LENGTH);

    /* NUL: fails at once, and the failure sticks. */
    CHECK(httpresp_new(&parser) == HTTPRESP_OK);
    CHECK(httpresp_feed(parser, nul_head, sizeof(nul_head) - 1, &used) == HTTPRESP_ERR_NUL);
    CHECK(used == 12345);
    CHECK(httpresp_feed(parser, "\r\n", 2, &used) == HTTPRESP_ERR_NUL);
    httpresp_reset(parser);
    CHECK(httpresp_feed(parser, "HTTP/1.1 200 OK\r\n\r\n", 19, &used) == HTTPRESP_OK);
    httpresp_free(parser);

    /* Errors show as soon as the bad line is complete, before the head is. */
    CHECK(parse_result("HTTP/1.1 200 OK\r\nBad Header\r\n") == HTTPRESP_ERR_HEADER);
    CHECK(parse_result("HTTP/1.1 200 OK\r\nGood: 1\r\n") == HTTPRESP_NEED_MORE);
}

static void test_limits(void)
{
    static char text[HTTPRESP_MAX_HEAD * 2];
    struct httpresp *parser = NULL;
    size_t len;
    size_t used = 0;

    /* A reason phrase of exactly the line limit fits; one byte more fails. */
    len = (size_t)snprintf(text, sizeof(text), "HTTP/1.1 200 ");
    memset(text + len, 'r', HTTPRESP_MAX_LINE - len);
    len = HTTPRESP_MAX_LINE;
    memcpy(text + len, "\r\n\r\n", 5);
    CHECK(parse_result(text) == HTTPRESP_OK);
    memmove(text + len + 1, text + len, 5);
    text[len] = 'r';
    CHECK(parse_result(text) == HTTPRESP_ERR_LINE_TOO_LONG);
    /* ... and fails before the line ends: no need to wait for the CRLF. */
    text[len + 1] = '\0';
    CHECK(parse_result(text) == HTTPRESP_ERR_LINE_TOO_LONG);

    /* Header fields: 64 are fine, 65 are too many. */
    len = (size_t)snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n");
    for (unsigned i = 0; i < HTTPRESP_MAX_HEADERS; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "X-%u: %u\r\n", i, i);
    memcpy(text + len, "\r\n", 3);
    CHECK(parse_result(text) == HTTPRESP_OK);
    len += (size_t)snprintf(text + len, sizeof(text) - len, "X-last: 1\r\n\r\n");
    CHECK(parse_result(text) == HTTPRESP_ERR_TOO_MANY_HEADERS);

    /* The whole head: at most HTTPRESP_MAX_HEAD bytes, empty line included. */
    len = (size_t)snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n");
    while (len < HTTPRESP_MAX_HEAD + 100) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "X-Fill: ");
        memset(text + len, 'v', 4000);
        len += 4000;
        memcpy(text + len, "\r\n", 3);
        len += 2;
    }
    memcpy(text + len, "\r\n", 3);
    CHECK(parse_result(text) == HTTPRESP_ERR_HEAD_TOO_BIG);

    /* Exactly HTTPRESP_MAX_HEAD bytes fit. */
    len = (size_t)snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n");
    while (HTTPRESP_MAX_HEAD - len > 4000 + 12) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "X-Fill: ");
        memset(text + len, 'v', 4000);
        len += 4000;
        memcpy(text + len, "\r\n", 2);
        len += 2;
    }
    {
        size_t fill = HTTPRESP_MAX_HEAD - len - strlen("X-End: ") - 4;
        len += (size_t)snprintf(text + len, sizeof(text) - len, "X-End: ");
        memset(text + len, 'e', fill);
        len += fill;
        memcpy(text + len, "\r\n\r\n", 5);
        len += 4;
    }
    CHECK(len == HTTPRESP_MAX_HEAD);
    CHECK(httpresp_new(&parser) == HTTPRESP_OK);
    CHECK(httpresp_feed(parser, text, len, &used) == HTTPRESP_OK);
    CHECK(used == HTTPRESP_MAX_HEAD);
    httpresp_free(parser);
}

static void test_content_length_helper(void)
{
    uint64_t length = 42;

    CHECK(httpresp_parse_content_length("0", 1, &length) == HTTPRESP_OK && length == 0);
    CHECK(httpresp_parse_content_length(" \t123 ", 6, &length) == HTTPRESP_OK && length == 123);
    CHECK(httpresp_parse_content_length("9999999999999999999", 19, &length) == HTTPRESP_OK);
    CHECK(length == 9999999999999999999ull);
    length = 42;
    CHECK(httpresp_parse_content_length("12345678901234567890", 20, &length) ==
          HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(httpresp_parse_content_length("+5", 2, &length) == HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(httpresp_parse_content_length("5,5", 3, &length) == HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(httpresp_parse_content_length("   ", 3, &length) == HTTPRESP_ERR_CONTENT_LENGTH);
    CHECK(httpresp_parse_content_length("0x10", 4, &length) == HTTPRESP_ERR_CONTENT_LENGTH);
    /* Only len bytes count. */
    CHECK(httpresp_parse_content_length("12abc", 2, &length) == HTTPRESP_OK && length == 12);
}

static enum httpresp_result content_type(const char *value, char *type, char *boundary)
{
    return httpresp_content_type(value, type, HTTPRESP_MEDIA_TYPE_SIZE, boundary,
                                 HTTPRESP_BOUNDARY_SIZE);
}

static void test_content_type_helper(void)
{
    char type[HTTPRESP_MEDIA_TYPE_SIZE];
    char boundary[HTTPRESP_BOUNDARY_SIZE];
    char small[8];
    char long_value[300];

    CHECK(content_type("multipart/x-mixed-replace;boundary=boundarydonotcross", type, boundary) ==
          HTTPRESP_OK);
    CHECK(strcmp(type, "multipart/x-mixed-replace") == 0);
    CHECK(strcmp(boundary, "boundarydonotcross") == 0);

    CHECK(content_type("  Multipart/X-Mixed-Replace ; charset=utf-8 ;BOUNDARY=\"--my frame\" ",
                       type, boundary) == HTTPRESP_OK);
    CHECK(strcmp(type, "multipart/x-mixed-replace") == 0);
    CHECK(strcmp(boundary, "--my frame") == 0); /* quotes removed, dashes kept */

    CHECK(content_type("multipart/x-mixed-replace; boundary=--ThisRandomString", type, boundary) ==
          HTTPRESP_OK);
    CHECK(strcmp(boundary, "--ThisRandomString") == 0);

    CHECK(content_type("multipart/x-mixed-replace; boundary = frame;", type, boundary) ==
          HTTPRESP_OK);
    CHECK(strcmp(boundary, "frame") == 0);

    CHECK(content_type("multipart/x-mixed-replace; boundary=\"a\\\"b\\\\c\"", type, boundary) ==
          HTTPRESP_OK);
    CHECK(strcmp(boundary, "a\"b\\c") == 0);

    /* The first boundary wins; other parameters may be long. */
    memset(long_value, 'x', 250);
    long_value[250] = '\0';
    {
        char value[400];
        snprintf(value, sizeof(value), "multipart/mixed; boundary=one; boundary=two; x=%s",
                 long_value);
        CHECK(content_type(value, type, boundary) == HTTPRESP_OK);
        CHECK(strcmp(type, "multipart/mixed") == 0 && strcmp(boundary, "one") == 0);
    }

    CHECK(content_type("image/jpeg", type, boundary) == HTTPRESP_OK);
    CHECK(strcmp(type, "image/jpeg") == 0 && strcmp(boundary, "") == 0);

    /* Malformed. */
    CHECK(content_type("", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("multipart", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("/jpeg", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("image/", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("image/jpeg junk", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("a/b; =x", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("a/b; boundary", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("a/b; boundary=", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("a/b; boundary=\"\"", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("a/b; boundary=\"open", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("a/b; boundary=x y", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    CHECK(content_type("a/b; boundary=\"x\x01y\"", type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);

    /* Boundary length: HTTPRESP_MAX_BOUNDARY fits, one more does not. */
    {
        char value[400];
        int prefix = snprintf(value, sizeof(value), "multipart/x-mixed-replace; boundary=");
        memset(value + prefix, 'b', HTTPRESP_MAX_BOUNDARY);
        value[prefix + (int)HTTPRESP_MAX_BOUNDARY] = '\0';
        CHECK(content_type(value, type, boundary) == HTTPRESP_OK);
        CHECK(strlen(boundary) == HTTPRESP_MAX_BOUNDARY);
        value[prefix + (int)HTTPRESP_MAX_BOUNDARY] = 'b';
        value[prefix + (int)HTTPRESP_MAX_BOUNDARY + 1] = '\0';
        CHECK(content_type(value, type, boundary) == HTTPRESP_ERR_CONTENT_TYPE);
    }

    /* Small output buffers: an error, and nothing written. */
    memcpy(small, "unset", 6);
    CHECK(httpresp_content_type("multipart/x-mixed-replace; boundary=x", small, sizeof(small),
                                boundary, sizeof(boundary)) == HTTPRESP_ERR_TOO_SMALL);
    CHECK(strcmp(small, "unset") == 0);
    CHECK(httpresp_content_type("a/b; boundary=123456789", type, sizeof(type), small,
                                sizeof(small)) == HTTPRESP_ERR_TOO_SMALL);
    CHECK(strcmp(small, "unset") == 0);
    CHECK(httpresp_content_type("a/b; boundary=1234567", type, sizeof(type), small,
                                sizeof(small)) == HTTPRESP_OK);
    CHECK(strcmp(small, "1234567") == 0);
}

static void test_result_strings(void)
{
    for (int r = 0; r <= HTTPRESP_RESULT_MAX; r++)
        CHECK(httpresp_result_str((enum httpresp_result)r) != NULL);
    CHECK(strcmp(httpresp_result_str(HTTPRESP_ERR_OBS_FOLD), "obsolete header line folding") == 0);
    CHECK(strcmp(httpresp_result_str((enum httpresp_result)999), "unknown result") == 0);
}

int main(void)
{
    RUN_TEST(test_invalid_arguments);
    RUN_TEST(test_complete_head_in_one_chunk);
    RUN_TEST(test_one_byte_at_a_time);
    RUN_TEST(test_body_framing);
    RUN_TEST(test_lenient_forms);
    RUN_TEST(test_malformed_heads);
    RUN_TEST(test_limits);
    RUN_TEST(test_content_length_helper);
    RUN_TEST(test_content_type_helper);
    RUN_TEST(test_result_strings);
    return CHECK_DONE();
}
