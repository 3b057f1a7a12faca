/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "bson_msg.h"

#include <bson/bson.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *bsonmsg_result_str(enum bsonmsg_result result)
{
    switch (result) {
    case BSONMSG_OK: return "ok";
    case BSONMSG_ERR_INVALID: return "invalid argument";
    case BSONMSG_ERR_NOMEM: return "out of memory";
    case BSONMSG_ERR_MALFORMED: return "not a well-formed BSON document";
    case BSONMSG_ERR_TOO_BIG: return "larger than the tunnel allows";
    case BSONMSG_ERR_KIND: return "not exactly one of http.tunnelv2 and ws.tunnel";
    case BSONMSG_ERR_FIELD: return "a field is missing or has the wrong type";
    case BSONMSG_ERR_TOO_LONG: return "a string is longer than the tunnel allows";
    case BSONMSG_ERR_TEXT: return "a string is not valid text for its place";
    case BSONMSG_ERR_METHOD: return "an HTTP method the tunnel does not replay";
    case BSONMSG_ERR_UNSUPPORTED: return "the legacy http.tunnel (v1) is not supported";
    case BSONMSG_RESULT_MAX: break;
    }
    return "unknown result";
}

struct bsonmsg_request *bsonmsg_request_free(struct bsonmsg_request *request)
{
    if (!request)
        return NULL;
    free(request->ref);
    free(request->path);
    for (size_t i = 0; i < request->header_count; i++) {
        free(request->headers[i].name);
        free(request->headers[i].value);
    }
    free(request->headers);
    free(request->data);
    free(request);
    return NULL;
}

/* ---- decoding -------------------------------------------------------------- */

static enum bsonmsg_result fail(struct bsonmsg_request *request, enum bsonmsg_result result,
                                const char *field)
{
    snprintf(request->error, sizeof(request->error), "%s: %s", field, bsonmsg_result_str(result));
    return result;
}

/* A copy of the UTF-8 string the iterator stands on, at most max bytes. */
static enum bsonmsg_result take_string(const bson_iter_t *iter, size_t max, char **ret)
{
    uint32_t len = 0;
    const char *text;
    char *copy;

    if (!BSON_ITER_HOLDS_UTF8(iter))
        return BSONMSG_ERR_FIELD;
    text = bson_iter_utf8(iter, &len);
    if (len > max)
        return BSONMSG_ERR_TOO_LONG;
    if (!bson_utf8_validate(text, len, false))
        return BSONMSG_ERR_TEXT;
    copy = malloc((size_t)len + 1);
    if (!copy)
        return BSONMSG_ERR_NOMEM;
    memcpy(copy, text, len);
    copy[len] = '\0';
    *ret = copy;
    return BSONMSG_OK;
}

static bool is_token_char(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* No control character (so no CR, LF or NUL) may reach a header line. */
static bool is_field_value(const char *value)
{
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return false;
    return true;
}

/* A request target: "/" then visible ASCII (a browser percent-encodes the rest). */
static bool is_request_path(const char *path)
{
    if (path[0] != '/')
        return false;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return false;
    return true;
}

static enum bsonmsg_result take_headers(const bson_iter_t *iter, struct bsonmsg_request *request)
{
    bson_iter_t child;
    enum bsonmsg_result result;

    if (!BSON_ITER_HOLDS_DOCUMENT(iter) || !bson_iter_recurse(iter, &child))
        return fail(request, BSONMSG_ERR_FIELD, "headers");
    request->headers = calloc(BSONMSG_MAX_HEADERS, sizeof(*request->headers));
    if (!request->headers)
        return BSONMSG_ERR_NOMEM;
    while (bson_iter_next(&child)) {
        const char *name = bson_iter_key(&child);
        size_t name_len = strlen(name);
        struct bsonmsg_header *header;

        if (request->header_count == BSONMSG_MAX_HEADERS)
            return fail(request, BSONMSG_ERR_TOO_BIG, "headers");
        if (name_len == 0 || name_len > BSONMSG_MAX_HEADER_NAME)
            return fail(request, BSONMSG_ERR_TOO_LONG, "header name");
        for (size_t i = 0; i < name_len; i++)
            if (!is_token_char((unsigned char)name[i]))
                return fail(request, BSONMSG_ERR_TEXT, "header name");
        header = &request->headers[request->header_count];
        result = take_string(&child, BSONMSG_MAX_HEADER_VALUE, &header->value);
        if (result != BSONMSG_OK)
            return fail(request, result, "header value");
        request->header_count++;
        if (!is_field_value(header->value))
            return fail(request, BSONMSG_ERR_TEXT, "header value");
        header->name = strdup(name);
        if (!header->name)
            return BSONMSG_ERR_NOMEM;
    }
    if (child.err_off)
        return fail(request, BSONMSG_ERR_MALFORMED, "headers");
    return BSONMSG_OK;
}

static enum bsonmsg_result take_data(const bson_iter_t *iter, size_t max_body,
                                     struct bsonmsg_request *request)
{
    const uint8_t *bytes = NULL;
    uint32_t len = 0;

    if (BSON_ITER_HOLDS_NULL(iter))
        return BSONMSG_OK;
    if (BSON_ITER_HOLDS_BINARY(iter)) {
        bson_subtype_t subtype;
        bson_iter_binary(iter, &subtype, &len, &bytes);
    } else if (BSON_ITER_HOLDS_UTF8(iter)) {
        bytes = (const uint8_t *)bson_iter_utf8(iter, &len);
        if (!bson_utf8_validate((const char *)bytes, len, true))
            return fail(request, BSONMSG_ERR_TEXT, "data");
        request->data_is_text = true;
    } else {
        return fail(request, BSONMSG_ERR_FIELD, "data");
    }
    if (len > max_body)
        return fail(request, BSONMSG_ERR_TOO_BIG, "data");
    request->data = malloc(len ? len : 1);
    if (!request->data)
        return BSONMSG_ERR_NOMEM;
    if (len)
        memcpy(request->data, bytes, len);
    request->data_len = len;
    request->has_data = true;
    return BSONMSG_OK;
}

static enum bsonmsg_result take_method(const bson_iter_t *iter, struct bsonmsg_request *request)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                          "OPTIONS"};
    uint32_t len = 0;
    const char *text;

    if (!BSON_ITER_HOLDS_UTF8(iter))
        return fail(request, BSONMSG_ERR_FIELD, "method");
    text = bson_iter_utf8(iter, &len);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strlen(methods[i]) == len && strncasecmp(methods[i], text, len) == 0) {
            snprintf(request->method, sizeof(request->method), "%s", methods[i]);
            return BSONMSG_OK;
        }
    }
    return fail(request, BSONMSG_ERR_METHOD, "method");
}

static enum bsonmsg_result take_timeout(const bson_iter_t *iter, struct bsonmsg_request *request)
{
    double seconds;

    if (BSON_ITER_HOLDS_NULL(iter))
        return BSONMSG_OK;
    if (!BSON_ITER_HOLDS_NUMBER(iter))
        return fail(request, BSONMSG_ERR_FIELD, "timeout");
    seconds = bson_iter_as_double(iter);
    if (!(seconds >= 1.0))
        seconds = 1.0; /* NaN and below one second: the shortest wait */
    if (seconds > BSONMSG_MAX_TIMEOUT_S)
        seconds = BSONMSG_MAX_TIMEOUT_S;
    request->timeout_s = (unsigned)seconds;
    return BSONMSG_OK;
}

static enum bsonmsg_result take_ws_type(const bson_iter_t *iter, struct bsonmsg_request *request)
{
    static const struct { const char *name; enum bsonmsg_ws_type type; } types[] = {
        {"connect", BSONMSG_WS_CONNECT},
        {"tunnel_message", BSONMSG_WS_MESSAGE},
        {"tunnel_close", BSONMSG_WS_CLOSE},
    };
    uint32_t len = 0;
    const char *text;

    if (!BSON_ITER_HOLDS_UTF8(iter))
        return fail(request, BSONMSG_ERR_FIELD, "type");
    text = bson_iter_utf8(iter, &len);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strlen(types[i].name) == len && memcmp(types[i].name, text, len) == 0) {
            request->ws_type = types[i].type;
            return BSONMSG_OK;
        }
    }
    return fail(request, BSONMSG_ERR_FIELD, "type");
}

/* The fields of the message; the ref first, so that an error can name it. */
static enum bsonmsg_result take_fields(const bson_iter_t *message, size_t max_body,
                                       struct bsonmsg_request *request)
{
    bson_iter_t iter;
    enum bsonmsg_result result = BSONMSG_OK;
    bool http = request->kind == BSONMSG_HTTP;

    if (!BSON_ITER_HOLDS_DOCUMENT(message) || !bson_iter_recurse(message, &iter))
        return BSONMSG_ERR_FIELD;
    if (bson_iter_find(&iter, "ref")) {
        result = take_string(&iter, BSONMSG_MAX_REF, &request->ref);
        if (result != BSONMSG_OK)
            return result; /* no ref: nothing to answer */
        /* It goes into log lines; the server makes it from a path and a time. */
        if (!is_field_value(request->ref)) {
            request->ref = (free(request->ref), NULL);
            return BSONMSG_ERR_TEXT;
        }
    }
    if (!request->ref)
        return BSONMSG_ERR_FIELD;
    if (!bson_iter_recurse(message, &iter))
        return BSONMSG_ERR_MALFORMED;
    while (result == BSONMSG_OK && bson_iter_next(&iter)) {
        const char *key = bson_iter_key(&iter);

        if (strcmp(key, "path") == 0) {
            if (BSON_ITER_HOLDS_NULL(&iter) && !http)
                continue;
            if (request->path)
                return fail(request, BSONMSG_ERR_FIELD, "path");
            result = take_string(&iter, BSONMSG_MAX_PATH, &request->path);
            if (result != BSONMSG_OK)
                return fail(request, result, "path");
            if (!is_request_path(request->path))
                return fail(request, BSONMSG_ERR_TEXT, "path");
        } else if (strcmp(key, "data") == 0) {
            if (request->has_data)
                return fail(request, BSONMSG_ERR_FIELD, "data");
            result = take_data(&iter, max_body, request);
        } else if (http && strcmp(key, "method") == 0) {
            result = take_method(&iter, request);
        } else if (http && strcmp(key, "headers") == 0) {
            if (request->headers)
                return fail(request, BSONMSG_ERR_FIELD, "headers");
            result = take_headers(&iter, request);
        } else if (http && strcmp(key, "timeout") == 0) {
            result = take_timeout(&iter, request);
        } else if (!http && strcmp(key, "type") == 0) {
            result = take_ws_type(&iter, request);
        }
    }
    if (result != BSONMSG_OK)
        return result;
    if (iter.err_off)
        return fail(request, BSONMSG_ERR_MALFORMED, "message");
    if (http && (!request->method[0] || !request->path))
        return fail(request, BSONMSG_ERR_FIELD, request->path ? "method" : "path");
    if (!http && !request->ws_type)
        return fail(request, BSONMSG_ERR_FIELD, "type");
    if (!http && request->ws_type == BSONMSG_WS_CONNECT && !request->path)
        return fail(request, BSONMSG_ERR_FIELD, "path");
    return BSONMSG_OK;
}

enum bsonmsg_result bsonmsg_decode(const unsigned char *data, size_t len, size_t max_doc,
                                   size_t max_body, struct bsonmsg_request **ret_request)
{
    struct bsonmsg_request *request = NULL;
    enum bsonmsg_result result = BSONMSG_OK;
    bson_t doc;
    bson_iter_t iter;
    bson_iter_t message;
    int found = 0;

    if (!ret_request || (!data && len))
        return BSONMSG_ERR_INVALID;
    *ret_request = NULL;
    if (len > max_doc)
        return BSONMSG_ERR_TOO_BIG;
    /* libbson asserts on NULL data; 5 bytes is the empty document. */
    if (!data || len < 5 || !bson_init_static(&doc, data, len) || !bson_iter_init(&iter, &doc))
        return BSONMSG_ERR_MALFORMED;
    request = calloc(1, sizeof(*request));
    if (!request)
        return BSONMSG_ERR_NOMEM;
    request->timeout_s = BSONMSG_DEFAULT_TIMEOUT_S;
    while (bson_iter_next(&iter)) {
        const char *key = bson_iter_key(&iter);

        if (strcmp(key, "http.tunnelv2") == 0 || strcmp(key, "ws.tunnel") == 0) {
            request->kind = key[0] == 'h' ? BSONMSG_HTTP : BSONMSG_WS;
            message = iter;
            found++;
        } else if (strcmp(key, "http.tunnel") == 0) {
            result = BSONMSG_ERR_UNSUPPORTED;
        }
    }
    if (iter.err_off) {
        result = BSONMSG_ERR_MALFORMED;
        goto out;
    }
    if (found != 1) {
        result = found == 0 && result == BSONMSG_ERR_UNSUPPORTED ? result : BSONMSG_ERR_KIND;
        goto out;
    }
    result = take_fields(&message, max_body, request);
out:
    if (result == BSONMSG_OK || request->ref) {
        *ret_request = request;
        return result;
    }
    bsonmsg_request_free(request);
    return result;
}

/* ---- a prefix ---------------------------------------------------------------- */

static bool read_le32(const unsigned char *data, size_t len, size_t at, uint32_t *ret)
{
    if (at > len || len - at < 4)
        return false;
    *ret = (uint32_t)data[at] | (uint32_t)data[at + 1] << 8 | (uint32_t)data[at + 2] << 16 |
           (uint32_t)data[at + 3] << 24;
    return true;
}

/* The size of an element's value at data[at], for the types a tunnel
 * request holds; 0 for anything else (the walk stops there). */
static size_t value_size(const unsigned char *data, size_t len, size_t at, unsigned char type)
{
    uint32_t n = 0;

    switch (type) {
    case 0x08: return 1;                          /* bool */
    case 0x0a: return 0;                          /* null: no bytes, but valid */
    case 0x10: return 4;                          /* int32 */
    case 0x01: case 0x09: case 0x11: case 0x12: return 8;
    case 0x02: return read_le32(data, len, at, &n) && n > 0 ? 4 + (size_t)n : 0;
    case 0x03: case 0x04: return read_le32(data, len, at, &n) && n >= 5 ? (size_t)n : 0;
    case 0x05: return read_le32(data, len, at, &n) ? 5 + (size_t)n : 0;
    default: return 0;
    }
}

/* Finds the element called key in the document at data[at], within len:
 * its type and the offset of its value. */
static bool find_element(const unsigned char *data, size_t len, size_t at, const char *key,
                         unsigned char *ret_type, size_t *ret_value)
{
    size_t p = at + 4;

    while (p < len && data[p] != 0) {
        unsigned char type = data[p++];
        const unsigned char *end = memchr(data + p, 0, len - p);
        bool match;
        size_t size;

        if (!end)
            return false;
        match = strcmp((const char *)data + p, key) == 0;
        p = (size_t)(end - data) + 1;
        if (match) {
            *ret_type = type;
            *ret_value = p;
            return true;
        }
        size = value_size(data, len, p, type);
        if (size == 0 && type != 0x0a)
            return false;
        if (size > len - p)
            return false;
        p += size;
    }
    return false;
}

bool bsonmsg_peek_ref(const unsigned char *data, size_t len, char *ref, size_t ref_size)
{
    unsigned char type = 0;
    size_t message = 0;
    size_t value = 0;
    uint32_t n = 0;

    if (!data || !ref || ref_size == 0 ||
        !find_element(data, len, 0, "http.tunnelv2", &type, &message) || type != 0x03 ||
        !find_element(data, len, message, "ref", &type, &value) || type != 0x02 ||
        !read_le32(data, len, value, &n) || n == 0 || n > ref_size || n > len - value - 4 ||
        data[value + 4 + n - 1] != 0)
        return false;
    memcpy(ref, data + value + 4, n);
    if (!bson_utf8_validate(ref, n - 1, false) || !is_field_value(ref)) {
        ref[0] = '\0';
        return false;
    }
    return true;
}

/* ---- encoding -------------------------------------------------------------- */

static enum bsonmsg_result finish(bson_t *doc, bool ok, unsigned char **ret_data,
                                  size_t *ret_len)
{
    unsigned char *copy = NULL;

    if (ok) {
        copy = malloc(doc->len);
        if (copy)
            memcpy(copy, bson_get_data(doc), doc->len);
    }
    if (copy) {
        *ret_data = copy;
        *ret_len = doc->len;
    }
    bson_destroy(doc);
    if (!ok)
        return BSONMSG_ERR_TOO_BIG;
    return copy ? BSONMSG_OK : BSONMSG_ERR_NOMEM;
}

static bool is_text(const char *text)
{
    return text && bson_utf8_validate(text, strlen(text), false);
}

enum bsonmsg_result bsonmsg_encode_http_reply(const struct bsonmsg_http_reply *reply,
                                              unsigned char **ret_data, size_t *ret_len)
{
    bson_t *doc;
    bson_t message;
    bson_t response;
    bson_t list;
    bool ok;

    if (!reply || !is_text(reply->ref) || !ret_data || !ret_len ||
        (!reply->content && reply->content_len) || reply->content_len > INT32_MAX)
        return BSONMSG_ERR_INVALID;
    doc = bson_new();
    if (!doc)
        return BSONMSG_ERR_NOMEM;
    ok = bson_append_document_begin(doc, "http.tunnelv2", -1, &message) &&
         bson_append_utf8(&message, "ref", -1, reply->ref, -1) &&
         bson_append_document_begin(&message, "response", -1, &response) &&
         bson_append_int32(&response, "status", -1, reply->status) &&
         bson_append_bool(&response, "compressed", -1, reply->compressed) &&
         bson_append_binary(&response, "content", -1, BSON_SUBTYPE_BINARY,
                            reply->content ? reply->content : (const uint8_t *)"",
                            (uint32_t)reply->content_len) &&
         bson_append_array_begin(&response, "cookies", -1, &list);
    for (size_t i = 0, n = 0; ok && i < reply->cookie_count; i++) {
        char index[16];
        const char *key;
        size_t key_len;

        if (!is_text(reply->cookies[i]))
            continue;
        key_len = bson_uint32_to_string((uint32_t)n++, &key, index, sizeof(index));
        ok = bson_append_utf8(&list, key, (int)key_len, reply->cookies[i], -1);
    }
    ok = ok && bson_append_array_end(&response, &list) &&
         bson_append_document_begin(&response, "headers", -1, &list);
    for (size_t i = 0; ok && i < reply->header_count; i++) {
        if (is_text(reply->headers[i].name) && is_text(reply->headers[i].value))
            ok = bson_append_utf8(&list, reply->headers[i].name, -1, reply->headers[i].value, -1);
    }
    ok = ok && bson_append_document_end(&response, &list) &&
         bson_append_document_end(&message, &response) &&
         bson_append_document_end(doc, &message);
    return finish(doc, ok, ret_data, ret_len);
}

enum bsonmsg_result bsonmsg_encode_ws(const char *ref, bool close, const unsigned char *data,
                                      size_t len, bool is_text_frame, unsigned char **ret_data,
                                      size_t *ret_len)
{
    bson_t *doc;
    bson_t message;
    bool ok;

    if (!is_text(ref) || !ret_data || !ret_len || (!data && len) || len > INT32_MAX)
        return BSONMSG_ERR_INVALID;
    if (data && is_text_frame && !bson_utf8_validate((const char *)data, len, true))
        return BSONMSG_ERR_TEXT;
    doc = bson_new();
    if (!doc)
        return BSONMSG_ERR_NOMEM;
    ok = bson_append_document_begin(doc, "ws.tunnel", -1, &message) &&
         bson_append_utf8(&message, "ref", -1, ref, -1) &&
         bson_append_utf8(&message, "type", -1, close ? "octoprint_close" : "octoprint_message", -1);
    if (ok && !data)
        ok = bson_append_null(&message, "data", -1);
    else if (ok && is_text_frame)
        ok = bson_append_utf8(&message, "data", -1, (const char *)data, (int)len);
    else if (ok)
        ok = bson_append_binary(&message, "data", -1, BSON_SUBTYPE_BINARY, data, (uint32_t)len);
    ok = ok && bson_append_document_end(doc, &message);
    return finish(doc, ok, ret_data, ret_len);
}
