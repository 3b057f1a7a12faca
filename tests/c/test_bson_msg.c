/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for the tunnel's BSON frames (native/core/bson_msg.c). The
 * frames are built with libbson the way the server's py-bson builds them. */
#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bson_msg.h"
#include "check.h"

#define MAX_DOC (1024u * 1024u)
#define MAX_BODY (64u * 1024u)

static enum bsonmsg_result decode(const bson_t *doc, struct bsonmsg_request **ret)
{
    return bsonmsg_decode(bson_get_data(doc), doc->len, MAX_DOC, MAX_BODY, ret);
}

/* {"http.tunnelv2": {ref, method, path, headers: {...}, data}} */
static bson_t *http_frame(const char *method, const char *path, const char *header_name,
                          const char *header_value, const void *body, size_t body_len)
{
    bson_t *doc = bson_new();
    bson_t message;
    bson_t headers;

    bson_append_utf8(doc, "type", -1, "printer.message", -1);
    bson_append_document_begin(doc, "http.tunnelv2", -1, &message);
    bson_append_utf8(&message, "ref", -1, "v2.7.get.1714650000.0./api/version", -1);
    if (method)
        bson_append_utf8(&message, "method", -1, method, -1);
    if (path)
        bson_append_utf8(&message, "path", -1, path, -1);
    bson_append_document_begin(&message, "headers", -1, &headers);
    bson_append_utf8(&headers, "Accept", -1, "application/json", -1);
    if (header_name)
        bson_append_utf8(&headers, header_name, -1, header_value, -1);
    bson_append_document_end(&message, &headers);
    if (body)
        bson_append_binary(&message, "data", -1, BSON_SUBTYPE_BINARY, body, (uint32_t)body_len);
    else
        bson_append_null(&message, "data", -1);
    bson_append_document_end(doc, &message);
    bson_append_bool(doc, "as_binary", -1, true);
    return doc;
}

static void test_http_request(void)
{
    bson_t *doc = http_frame("post", "/api/login?x=1", "Cookie", "session_P5000=abc", "{\"a\":1}", 7);
    struct bsonmsg_request *request = NULL;

    CHECK(decode(doc, &request) == BSONMSG_OK);
    CHECK(request && request->kind == BSONMSG_HTTP);
    CHECK(request && strcmp(request->ref, "v2.7.get.1714650000.0./api/version") == 0);
    CHECK(request && strcmp(request->method, "POST") == 0);
    CHECK(request && strcmp(request->path, "/api/login?x=1") == 0);
    CHECK(request && request->header_count == 2);
    CHECK(request && strcmp(request->headers[1].name, "Cookie") == 0 &&
          strcmp(request->headers[1].value, "session_P5000=abc") == 0);
    CHECK(request && request->has_data && request->data_len == 7 &&
          memcmp(request->data, "{\"a\":1}", 7) == 0);
    CHECK(request && request->timeout_s == BSONMSG_DEFAULT_TIMEOUT_S);
    bsonmsg_request_free(request);
    bson_destroy(doc);

    doc = http_frame("GET", "/", NULL, NULL, NULL, 0);
    CHECK(decode(doc, &request) == BSONMSG_OK && request && !request->has_data);
    bsonmsg_request_free(request);
    bson_destroy(doc);
}

/* A request the device refuses still names its ref, so that the browser
 * gets an error page instead of waiting for the server's timeout. */
static void expect_refused(bson_t *doc, enum bsonmsg_result expected, bool has_ref)
{
    struct bsonmsg_request *request = NULL;
    enum bsonmsg_result result = decode(doc, &request);

    if (result != expected)
        printf("#   got %s, expected %s\n", bsonmsg_result_str(result), bsonmsg_result_str(expected));
    CHECK(result == expected);
    CHECK(has_ref ? request != NULL && request->ref && request->error[0] : request == NULL);
    bsonmsg_request_free(request);
    bson_destroy(doc);
}

static void test_http_refused(void)
{
    static unsigned char big[MAX_BODY + 1];

    expect_refused(http_frame("CONNECT", "/", NULL, NULL, NULL, 0), BSONMSG_ERR_METHOD, true);
    expect_refused(http_frame("TRACE", "/", NULL, NULL, NULL, 0), BSONMSG_ERR_METHOD, true);
    expect_refused(http_frame(NULL, "/", NULL, NULL, NULL, 0), BSONMSG_ERR_FIELD, true);
    expect_refused(http_frame("GET", NULL, NULL, NULL, NULL, 0), BSONMSG_ERR_FIELD, true);
    expect_refused(http_frame("GET", "api", NULL, NULL, NULL, 0), BSONMSG_ERR_TEXT, true);
    expect_refused(http_frame("GET", "/a b", NULL, NULL, NULL, 0), BSONMSG_ERR_TEXT, true);
    expect_refused(http_frame("GET", "/\r\nX-Forwarded-For: 10.0.0.1", NULL, NULL, NULL, 0),
                   BSONMSG_ERR_TEXT, true);
    /* Header injection, by name and by value. */
    expect_refused(http_frame("GET", "/", "X-A\r\nX-Forwarded-For", "1", NULL, 0),
                   BSONMSG_ERR_TEXT, true);
    expect_refused(http_frame("GET", "/", "X-A:", "1", NULL, 0), BSONMSG_ERR_TEXT, true);
    expect_refused(http_frame("GET", "/", "X-A", "1\r\nX-Forwarded-For: 10.0.0.1", NULL, 0),
                   BSONMSG_ERR_TEXT, true);
    expect_refused(http_frame("GET", "/", "X-A", "\xff\xfe", NULL, 0), BSONMSG_ERR_TEXT, true);
    expect_refused(http_frame("POST", "/", NULL, NULL, big, sizeof(big)), BSONMSG_ERR_TOO_BIG, true);
}

static void test_header_count_bounded(void)
{
    bson_t *doc = bson_new();
    bson_t message;
    bson_t headers;

    bson_append_document_begin(doc, "http.tunnelv2", -1, &message);
    bson_append_utf8(&message, "ref", -1, "r", -1);
    bson_append_utf8(&message, "method", -1, "get", -1);
    bson_append_utf8(&message, "path", -1, "/", -1);
    bson_append_document_begin(&message, "headers", -1, &headers);
    for (int i = 0; i <= BSONMSG_MAX_HEADERS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "X-H%d", i);
        bson_append_utf8(&headers, name, -1, "v", -1);
    }
    bson_append_document_end(&message, &headers);
    bson_append_document_end(doc, &message);
    expect_refused(doc, BSONMSG_ERR_TOO_BIG, true);
}

static void test_kind(void)
{
    bson_t *doc = bson_new();
    bson_t message;

    bson_append_utf8(doc, "type", -1, "printer.message", -1);
    expect_refused(doc, BSONMSG_ERR_KIND, false);

    doc = bson_new();
    bson_append_document_begin(doc, "http.tunnel", -1, &message);
    bson_append_utf8(&message, "ref", -1, "r", -1);
    bson_append_document_end(doc, &message);
    expect_refused(doc, BSONMSG_ERR_UNSUPPORTED, false);

    doc = bson_new();
    bson_append_document_begin(doc, "ws.tunnel", -1, &message);
    bson_append_utf8(&message, "ref", -1, "r", -1);
    bson_append_document_end(doc, &message);
    bson_append_document_begin(doc, "http.tunnelv2", -1, &message);
    bson_append_utf8(&message, "ref", -1, "r", -1);
    bson_append_document_end(doc, &message);
    expect_refused(doc, BSONMSG_ERR_KIND, false);

    /* No ref, or a ref that is not a string: nothing can be answered. */
    doc = bson_new();
    bson_append_document_begin(doc, "http.tunnelv2", -1, &message);
    bson_append_int32(&message, "ref", -1, 5);
    bson_append_document_end(doc, &message);
    expect_refused(doc, BSONMSG_ERR_FIELD, false);

    /* A control character in the ref (found by the fuzzer): it goes into log lines. */
    doc = bson_new();
    bson_append_document_begin(doc, "ws.tunnel", -1, &message);
    bson_append_utf8(&message, "ref", -1, "1714\n650", -1);
    bson_append_utf8(&message, "type", -1, "tunnel_close", -1);
    bson_append_document_end(doc, &message);
    expect_refused(doc, BSONMSG_ERR_TEXT, false);

    doc = bson_new();
    bson_append_utf8(doc, "http.tunnelv2", -1, "x", -1);
    expect_refused(doc, BSONMSG_ERR_FIELD, false);
}

static void test_malformed(void)
{
    bson_t *doc = http_frame("GET", "/", NULL, NULL, "abc", 3);
    struct bsonmsg_request *request = NULL;
    unsigned char *copy = malloc(doc->len);

    memcpy(copy, bson_get_data(doc), doc->len);
    /* Truncated at every length. */
    for (uint32_t len = 0; len < doc->len; len++) {
        CHECK(bsonmsg_decode(copy, len, MAX_DOC, MAX_BODY, &request) != BSONMSG_OK);
        request = bsonmsg_request_free(request);
    }
    /* An inner length that points past the document. */
    for (uint32_t at = 4; at + 4 < doc->len; at++) {
        unsigned char saved[4];
        memcpy(saved, copy + at, 4);
        memcpy(copy + at, "\xff\xff\xff\x7f", 4);
        (void)bsonmsg_decode(copy, doc->len, MAX_DOC, MAX_BODY, &request);
        request = bsonmsg_request_free(request);
        memcpy(copy + at, saved, 4);
    }
    CHECK(bsonmsg_decode(copy, doc->len, 16, MAX_BODY, &request) == BSONMSG_ERR_TOO_BIG);
    CHECK(request == NULL);
    CHECK(bsonmsg_decode(copy, doc->len, MAX_DOC, MAX_BODY, &request) == BSONMSG_OK);
    bsonmsg_request_free(request);
    CHECK(bsonmsg_decode(NULL, 0, MAX_DOC, MAX_BODY, &request) == BSONMSG_ERR_MALFORMED);
    free(copy);
    bson_destroy(doc);
}

/* Deep nesting under a key the tunnel does not know is skipped by length,
 * never walked: no recursion a server could drive. */
static void test_deep_nesting_skipped(void)
{
    enum { DEPTH = 2000 };
    bson_t *levels = calloc(DEPTH + 1, sizeof(bson_t));
    bson_t *doc = http_frame("GET", "/", NULL, NULL, NULL, 0);
    struct bsonmsg_request *request = NULL;
    bson_t *outer = bson_new();

    bson_init(&levels[0]);
    for (int i = 0; i < DEPTH; i++)
        bson_append_document_begin(&levels[i], "x", -1, &levels[i + 1]);
    for (int i = DEPTH - 1; i >= 0; i--)
        bson_append_document_end(&levels[i], &levels[i + 1]);
    bson_concat(outer, doc);
    bson_append_document(outer, "junk", -1, &levels[0]);
    CHECK(decode(outer, &request) == BSONMSG_OK);
    bsonmsg_request_free(request);
    bson_destroy(&levels[0]);
    bson_destroy(outer);
    bson_destroy(doc);
    free(levels);
}

static bson_t *ws_frame(const char *type, const char *path, const char *text,
                        const void *binary, size_t len)
{
    bson_t *doc = bson_new();
    bson_t message;

    bson_append_document_begin(doc, "ws.tunnel", -1, &message);
    bson_append_utf8(&message, "ref", -1, "1714650000.5", -1);
    if (type)
        bson_append_utf8(&message, "type", -1, type, -1);
    if (path)
        bson_append_utf8(&message, "path", -1, path, -1);
    if (text)
        bson_append_utf8(&message, "data", -1, text, -1);
    else if (binary)
        bson_append_binary(&message, "data", -1, BSON_SUBTYPE_BINARY, binary, (uint32_t)len);
    else
        bson_append_null(&message, "data", -1);
    bson_append_document_end(doc, &message);
    return doc;
}

static void test_ws_requests(void)
{
    struct bsonmsg_request *request = NULL;
    bson_t *doc = ws_frame("connect", "/sockjs/123/abc/websocket", NULL, NULL, 0);

    CHECK(decode(doc, &request) == BSONMSG_OK);
    CHECK(request && request->kind == BSONMSG_WS && request->ws_type == BSONMSG_WS_CONNECT);
    CHECK(request && strcmp(request->path, "/sockjs/123/abc/websocket") == 0 && !request->has_data);
    bsonmsg_request_free(request);
    bson_destroy(doc);

    doc = ws_frame("tunnel_message", NULL, "[\"{}\"]", NULL, 0);
    CHECK(decode(doc, &request) == BSONMSG_OK);
    CHECK(request && request->ws_type == BSONMSG_WS_MESSAGE && request->data_is_text &&
          request->data_len == 6);
    bsonmsg_request_free(request);
    bson_destroy(doc);

    doc = ws_frame("tunnel_message", NULL, NULL, "\x00\x01\x02", 3);
    CHECK(decode(doc, &request) == BSONMSG_OK);
    CHECK(request && !request->data_is_text && request->data_len == 3 && request->data[2] == 2);
    bsonmsg_request_free(request);
    bson_destroy(doc);

    doc = ws_frame("tunnel_close", NULL, NULL, NULL, 0);
    CHECK(decode(doc, &request) == BSONMSG_OK && request && request->ws_type == BSONMSG_WS_CLOSE);
    bsonmsg_request_free(request);
    bson_destroy(doc);

    expect_refused(ws_frame("connect", NULL, NULL, NULL, 0), BSONMSG_ERR_FIELD, true);
    expect_refused(ws_frame("open", "/websocket", NULL, NULL, 0), BSONMSG_ERR_FIELD, true);
    expect_refused(ws_frame(NULL, "/websocket", NULL, NULL, 0), BSONMSG_ERR_FIELD, true);
}

/* bson_iter_find_descendant() splits at dots, and "http.tunnelv2" has one:
 * the top-level key first, then the dotted path under it. */
static bool find_in(const bson_t *doc, const char *top, const char *dotted, bson_iter_t *ret)
{
    bson_iter_t iter;
    bson_iter_t message;

    return bson_iter_init_find(&iter, doc, top) && bson_iter_recurse(&iter, &message) &&
           bson_iter_find_descendant(&message, dotted, ret);
}

static void test_encode_http_reply(void)
{
    const char *cookies[] = {"session_P5000=x; Path=/; HttpOnly", "bad\xff"};
    struct bsonmsg_header headers[] = {{"Content-Type", "text/html"}, {"X-Latin", "\xe9"}};
    struct bsonmsg_http_reply reply = {
        .ref = "v2.1", .status = 302, .compressed = true,
        .content = (const unsigned char *)"\x78\x9c", .content_len = 2,
        .cookies = cookies, .cookie_count = 2, .headers = headers, .header_count = 2,
    };
    unsigned char *data = NULL;
    size_t len = 0;
    bson_t doc;
    bson_iter_t child;
    const uint8_t *bytes = NULL;
    uint32_t n;
    bson_subtype_t subtype = BSON_SUBTYPE_USER;

    CHECK(bsonmsg_encode_http_reply(&reply, &data, &len) == BSONMSG_OK);
    CHECK(bson_init_static(&doc, data, len));
    CHECK(find_in(&doc, "http.tunnelv2", "ref", &child) &&
          strcmp(bson_iter_utf8(&child, NULL), "v2.1") == 0);
    CHECK(find_in(&doc, "http.tunnelv2", "response.status", &child) &&
          bson_iter_int32(&child) == 302);
    CHECK(find_in(&doc, "http.tunnelv2", "response.compressed", &child) &&
          bson_iter_bool(&child));
    n = 0;
    if (find_in(&doc, "http.tunnelv2", "response.content", &child) && BSON_ITER_HOLDS_BINARY(&child))
        bson_iter_binary(&child, &subtype, &n, &bytes);
    CHECK(n == 2 && subtype == BSON_SUBTYPE_BINARY && memcmp(bytes, "\x78\x9c", 2) == 0);
    CHECK(find_in(&doc, "http.tunnelv2", "response.cookies.0", &child) &&
          strcmp(bson_iter_utf8(&child, NULL), cookies[0]) == 0);
    /* Not UTF-8: left out, never sent broken. */
    CHECK(!find_in(&doc, "http.tunnelv2", "response.cookies.1", &child));
    CHECK(find_in(&doc, "http.tunnelv2", "response.headers.Content-Type", &child));
    CHECK(!find_in(&doc, "http.tunnelv2", "response.headers.X-Latin", &child));
    CHECK(bson_validate(&doc, BSON_VALIDATE_UTF8, NULL));
    free(data);

    reply.ref = "\xff";
    CHECK(bsonmsg_encode_http_reply(&reply, &data, &len) == BSONMSG_ERR_INVALID);
}

static void test_encode_ws(void)
{
    unsigned char *data = NULL;
    size_t len = 0;
    bson_t doc;
    bson_iter_t child;

    CHECK(bsonmsg_encode_ws("r1", false, (const unsigned char *)"o", 1, true, &data, &len) == BSONMSG_OK);
    CHECK(bson_init_static(&doc, data, len) && find_in(&doc, "ws.tunnel", "data", &child) && BSON_ITER_HOLDS_UTF8(&child));
    CHECK(find_in(&doc, "ws.tunnel", "type", &child) &&
          strcmp(bson_iter_utf8(&child, NULL), "octoprint_message") == 0);
    free(data);

    CHECK(bsonmsg_encode_ws("r1", false, (const unsigned char *)"\xff\x00", 2, false, &data, &len) == BSONMSG_OK);
    CHECK(bson_init_static(&doc, data, len) && find_in(&doc, "ws.tunnel", "data", &child) && BSON_ITER_HOLDS_BINARY(&child));
    free(data);

    CHECK(bsonmsg_encode_ws("r1", true, NULL, 0, false, &data, &len) == BSONMSG_OK);
    CHECK(bson_init_static(&doc, data, len) && find_in(&doc, "ws.tunnel", "data", &child) && BSON_ITER_HOLDS_NULL(&child));
    CHECK(find_in(&doc, "ws.tunnel", "type", &child) &&
          strcmp(bson_iter_utf8(&child, NULL), "octoprint_close") == 0);
    free(data);

    /* A text frame that is not UTF-8 is refused, not sent as broken text. */
    CHECK(bsonmsg_encode_ws("r1", false, (const unsigned char *)"\xff", 1, true, &data, &len) == BSONMSG_ERR_TEXT);
}

/* The ref of a frame too large to keep, from its stored prefix. */
static void test_peek_ref(void)
{
    static unsigned char body[64 * 1024];
    bson_t *doc = http_frame("POST", "/api/files/local", "Cookie", "x=1", body, sizeof(body));
    const unsigned char *data = bson_get_data(doc);
    char ref[BSONMSG_MAX_REF + 1];
    bson_t *other;

    CHECK(bsonmsg_peek_ref(data, doc->len, ref, sizeof(ref)));
    CHECK(strcmp(ref, "v2.7.get.1714650000.0./api/version") == 0);
    /* Any prefix that holds the ref will do; one that cuts it off will not. */
    CHECK(bsonmsg_peek_ref(data, 300, ref, sizeof(ref)));
    for (size_t len = 0; len < 60; len++)
        CHECK(!bsonmsg_peek_ref(data, len, ref, sizeof(ref)));
    CHECK(!bsonmsg_peek_ref(data, doc->len, ref, 8)); /* no room: no truncated ref */
    bson_destroy(doc);

    other = ws_frame("connect", "/sockjs/websocket", NULL, NULL, 0);
    CHECK(!bsonmsg_peek_ref(bson_get_data(other), other->len, ref, sizeof(ref)));
    bson_destroy(other);
    CHECK(!bsonmsg_peek_ref((const unsigned char *)"garbage-garbage-garbage", 23, ref, sizeof(ref)));
    CHECK(!bsonmsg_peek_ref(NULL, 0, ref, sizeof(ref)));
}

int main(void)
{
    RUN_TEST(test_http_request);
    RUN_TEST(test_http_refused);
    RUN_TEST(test_header_count_bounded);
    RUN_TEST(test_kind);
    RUN_TEST(test_malformed);
    RUN_TEST(test_deep_nesting_skipped);
    RUN_TEST(test_ws_requests);
    RUN_TEST(test_encode_http_reply);
    RUN_TEST(test_encode_ws);
    RUN_TEST(test_peek_ref);
    return CHECK_DONE();
}
