/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the tunnel's BSON frames (native/core/bson_msg.c). Every
 * input must give a clean error or a request that keeps every bound: the
 * strings within their limits and free of anything that could end a header
 * line, the body within its limit; and the reply to it must encode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bson_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_BODY 4096u

static void check_line_safe(const char *text, size_t max)
{
    size_t len = strnlen(text, max + 1);

    if (len > max)
        abort();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 && text[i] != '\t')
            abort();
}

static void check_request(const struct bsonmsg_request *request)
{
    unsigned char *reply = NULL;
    size_t reply_len = 0;
    struct bsonmsg_http_reply http = {.ref = request->ref, .status = 502};

    check_line_safe(request->ref, BSONMSG_MAX_REF);
    if (request->kind == BSONMSG_HTTP) {
        if (!request->path || request->path[0] != '/' || !request->method[0])
            abort();
        check_line_safe(request->path, BSONMSG_MAX_PATH);
        if (request->timeout_s < 1 || request->timeout_s > BSONMSG_MAX_TIMEOUT_S)
            abort();
    }
    if (request->header_count > BSONMSG_MAX_HEADERS)
        abort();
    for (size_t i = 0; i < request->header_count; i++) {
        check_line_safe(request->headers[i].name, BSONMSG_MAX_HEADER_NAME);
        check_line_safe(request->headers[i].value, BSONMSG_MAX_HEADER_VALUE);
        if (strchr(request->headers[i].name, ':') || strchr(request->headers[i].name, ' '))
            abort();
    }
    if (request->has_data != (request->data != NULL) || request->data_len > FUZZ_MAX_BODY)
        abort();
    if (bsonmsg_encode_http_reply(&http, &reply, &reply_len) != BSONMSG_OK)
        abort();
    free(reply);
    if (bsonmsg_encode_ws(request->ref, false, request->data, request->data_len,
                          request->data_is_text, &reply, &reply_len) != BSONMSG_OK)
        abort();
    free(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bsonmsg_request *request = NULL;
    enum bsonmsg_result result = bsonmsg_decode(data, size, 1u << 20, FUZZ_MAX_BODY, &request);
    char ref[BSONMSG_MAX_REF + 1];

    /* The prefix walk of a frame too large to keep. */
    if (bsonmsg_peek_ref(data, size, ref, sizeof(ref)))
        check_line_safe(ref, BSONMSG_MAX_REF);

    if (result >= BSONMSG_RESULT_MAX || !bsonmsg_result_str(result))
        abort();
    if (result == BSONMSG_OK) {
        if (!request)
            abort();
        check_request(request);
    } else if (request && (!request->ref || !request->error[0])) {
        abort();
    }
    bsonmsg_request_free(request);
    return 0;
}
