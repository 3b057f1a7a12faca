/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * Fuzz target for native/core/httpresp.c.
 *
 * Input: byte 0 picks the chunk size (0: everything at once, else 1..255),
 * the rest is a response head. The head is fed in those chunks and, as a
 * reference, in one piece: both must agree on the result and on where the
 * head ends. A complete head is then read through every accessor, and its
 * Content-Type (and the raw input, as a string) through the Content-Type
 * and Content-Length helpers. Any disagreement or broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "httpresp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int condition)
{
    if (!condition)
        abort();
}

static void check_string(const struct httpresp_info *info, const char *text)
{
    /* Every string lives in the head and is NUL-terminated inside it. */
    check(text != NULL);
    check(strlen(text) < info->head_len);
}

static void read_everything(struct httpresp *parser)
{
    struct httpresp_info info;
    char type[HTTPRESP_MEDIA_TYPE_SIZE];
    char boundary[HTTPRESP_BOUNDARY_SIZE];
    const char *name = NULL;
    const char *value = NULL;

    check(httpresp_get_info(parser, &info) == HTTPRESP_OK);
    check(info.head_len <= HTTPRESP_MAX_HEAD);
    check(info.header_count <= HTTPRESP_MAX_HEADERS);
    check(info.status >= 100 && info.status <= 999);
    check(info.version_minor >= 0 && info.version_minor <= 9);
    check_string(&info, info.reason);
    if (info.content_type) {
        check_string(&info, info.content_type);
        check(httpresp_header(parser, "content-type") == info.content_type);
        if (httpresp_content_type(info.content_type, type, sizeof(type), boundary,
                                  sizeof(boundary)) == HTTPRESP_OK) {
            check(strlen(type) >= 3 && strchr(type, '/') != NULL);
            check(strlen(boundary) <= HTTPRESP_MAX_BOUNDARY);
        }
    }
    if (info.location)
        check_string(&info, info.location);
    check(info.body != HTTPRESP_BODY_LENGTH || info.has_content_length);
    check(info.body != HTTPRESP_BODY_CHUNKED || info.chunked);
    for (size_t i = 0; i < info.header_count; i++) {
        check(httpresp_header_at(parser, i, &name, &value) == HTTPRESP_OK);
        check_string(&info, name);
        check_string(&info, value);
        check(name[0] != '\0');
        /* The first field of that name is found by lookup. */
        check(httpresp_header(parser, name) != NULL);
    }
    check(httpresp_header_at(parser, info.header_count, &name, &value) == HTTPRESP_ERR_INVALID);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct httpresp *chunked = NULL;
    struct httpresp *whole = NULL;
    enum httpresp_result chunked_result = HTTPRESP_NEED_MORE;
    enum httpresp_result whole_result;
    size_t chunk;
    size_t pos = 0;
    size_t whole_used = 0;
    size_t chunked_used = 0;
    char text[512];
    size_t text_len;
    uint64_t length = 0;

    if (size < 1)
        return 0;
    chunk = data[0] ? data[0] : size;
    data++;
    size--;

    if (httpresp_new(&chunked) != HTTPRESP_OK || httpresp_new(&whole) != HTTPRESP_OK)
        abort();
    whole_result = httpresp_feed(whole, data, size, &whole_used);
    while (pos < size || size == 0) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        size_t used = 0;
        chunked_result = httpresp_feed(chunked, data + pos, n, &used);
        if (chunked_result == HTTPRESP_NEED_MORE) {
            check(used == n);
        } else if (chunked_result == HTTPRESP_OK) {
            check(used <= n);
            chunked_used = pos + used;
            break;
        } else {
            break;
        }
        pos += n;
        if (size == 0)
            break;
    }
    check(chunked_result == whole_result);
    if (whole_result == HTTPRESP_OK) {
        check(chunked_used == whole_used);
        read_everything(whole);
        read_everything(chunked);
        /* Reuse after reset. */
        httpresp_reset(chunked);
        check(httpresp_feed(chunked, data, size, &chunked_used) == HTTPRESP_OK);
        check(chunked_used == whole_used);
    } else if (whole_result != HTTPRESP_NEED_MORE) {
        /* Errors stick. */
        check(httpresp_feed(whole, "\r\n\r\n", 4, NULL) == whole_result);
    }

    /* The helpers on the raw input as a string. */
    text_len = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, text_len);
    text[text_len] = '\0';
    {
        char type[HTTPRESP_MEDIA_TYPE_SIZE];
        char boundary[HTTPRESP_BOUNDARY_SIZE];
        char small_type[12];
        char small_boundary[6];
        if (httpresp_content_type(text, type, sizeof(type), boundary, sizeof(boundary)) ==
            HTTPRESP_OK) {
            check(strlen(boundary) <= HTTPRESP_MAX_BOUNDARY);
            check(strlen(type) < sizeof(type));
        }
        if (httpresp_content_type(text, small_type, sizeof(small_type), small_boundary,
                                  sizeof(small_boundary)) == HTTPRESP_OK)
            check(strlen(small_type) < sizeof(small_type) &&
                  strlen(small_boundary) < sizeof(small_boundary));
    }
    if (httpresp_parse_content_length(text, text_len, &length) == HTTPRESP_OK)
        check(text_len > 0);

    httpresp_free(chunked);
    httpresp_free(whole);
    return 0;
}
