/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "frame.h"
#include "lebytes.h"

#include <stdlib.h>
#include <string.h>

enum frame_state {
    STATE_HEADER = 0, /* collecting the 16 header bytes */
    STATE_PAYLOAD,    /* collecting header.length payload bytes */
    STATE_SKIP,       /* discarding the payload of an oversized frame */
    STATE_FAILED,     /* framing error; sticky */
};

struct frame_parser {
    enum frame_state state;
    enum frame_result failure; /* STATE_FAILED: what went wrong */
    size_t max_payload;
    unsigned char header_buf[FRAME_HEADER_LEN];
    size_t header_have;
    struct frame_header header;
    unsigned char *payload;
    size_t payload_cap;
    size_t payload_have; /* STATE_PAYLOAD: bytes collected */
    size_t skip_left;    /* STATE_SKIP: bytes still to discard */
};

const char *frame_result_str(enum frame_result result)
{
    switch (result) {
    case FRAME_OK: return "ok";
    case FRAME_ERR_INVALID: return "invalid argument";
    case FRAME_ERR_NOMEM: return "out of memory";
    case FRAME_ERR_MAGIC: return "bad frame magic";
    case FRAME_ERR_VERSION: return "unsupported frame version";
    case FRAME_ERR_RESERVED: return "reserved frame field is not zero";
    case FRAME_RESULT_MAX: break;
    }
    return "unknown result";
}

enum frame_result frame_header_parse(const unsigned char *buf, size_t len, const char *magic,
                                     struct frame_header *ret_header)
{
    enum frame_result result = FRAME_OK;
    struct frame_header header;

    if (!buf || len < FRAME_HEADER_LEN || !magic || strlen(magic) != 4 || !ret_header) {
        result = FRAME_ERR_INVALID;
        goto out;
    }
    if (memcmp(buf, magic, 4) != 0) {
        result = FRAME_ERR_MAGIC;
        goto out;
    }
    header.version = buf[4];
    header.type = buf[5];
    header.reserved = get_u16le(buf + 6);
    header.id = get_u32le(buf + 8);
    header.length = get_u32le(buf + 12);
    if (header.version != FRAME_VERSION) {
        result = FRAME_ERR_VERSION;
        goto out;
    }
    if (header.reserved != 0) {
        result = FRAME_ERR_RESERVED;
        goto out;
    }
    *ret_header = header;

out:
    return result;
}

void frame_header_encode(unsigned char out[FRAME_HEADER_LEN], const char *magic, uint8_t type,
                         uint32_t id, uint32_t length)
{
    memcpy(out, magic, 4);
    out[4] = (unsigned char)FRAME_VERSION;
    out[5] = type;
    put_u16le(out + 6, 0);
    put_u32le(out + 8, id);
    put_u32le(out + 12, length);
}

enum frame_result frame_parser_new(size_t max_payload, struct frame_parser **ret_parser)
{
    enum frame_result result = FRAME_OK;
    struct frame_parser *parser = NULL;

    if (!ret_parser || max_payload > FRAME_MAX_PAYLOAD_LIMIT) {
        result = FRAME_ERR_INVALID;
        goto out;
    }
    parser = calloc(1, sizeof(*parser));
    if (!parser) {
        result = FRAME_ERR_NOMEM;
        goto out;
    }
    parser->state = STATE_HEADER;
    parser->max_payload = max_payload;
    *ret_parser = parser;
    parser = NULL;

out:
    frame_parser_free(parser);
    return result;
}

struct frame_parser *frame_parser_free(struct frame_parser *parser)
{
    if (!parser)
        return NULL;
    free(parser->payload);
    free(parser);
    return NULL;
}

bool frame_parser_idle(const struct frame_parser *parser)
{
    return parser && parser->state == STATE_HEADER && parser->header_have == 0;
}

size_t frame_parser_buffered_capacity(const struct frame_parser *parser)
{
    return parser ? parser->payload_cap : 0;
}

/* Makes room for need bytes of payload (need <= max_payload). The buffer
 * grows geometrically and is kept for later frames, so a steady stream of
 * similar frames allocates nothing. */
static enum frame_result reserve_payload(struct frame_parser *parser, size_t need)
{
    enum frame_result result = FRAME_OK;
    unsigned char *grown;
    size_t cap;

    if (need <= parser->payload_cap)
        goto out;
    cap = parser->payload_cap ? parser->payload_cap : 4096u;
    while (cap < need)
        cap = cap > parser->max_payload / 2 ? parser->max_payload : cap * 2;
    grown = realloc(parser->payload, cap);
    if (!grown) {
        result = FRAME_ERR_NOMEM;
        goto out;
    }
    parser->payload = grown;
    parser->payload_cap = cap;

out:
    return result;
}

enum frame_result frame_parser_feed(struct frame_parser *parser, const void *data, size_t len,
                                    size_t *ret_consumed, struct frame_event *ret_event)
{
    enum frame_result result = FRAME_OK;
    const unsigned char *bytes = data;
    struct frame_event event = {.kind = FRAME_EVENT_NONE};
    size_t used = 0;
    size_t take;

    if (!parser || (!data && len > 0) || !ret_consumed || !ret_event) {
        result = FRAME_ERR_INVALID;
        goto out;
    }
    if (parser->state == STATE_FAILED) {
        result = parser->failure;
        goto out;
    }
    while (used < len && event.kind == FRAME_EVENT_NONE) {
        switch (parser->state) {
        case STATE_HEADER:
            take = FRAME_HEADER_LEN - parser->header_have;
            if (take > len - used)
                take = len - used;
            memcpy(parser->header_buf + parser->header_have, bytes + used, take);
            parser->header_have += take;
            used += take;
            if (parser->header_have < FRAME_HEADER_LEN)
                break;
            parser->header_have = 0;
            result = frame_header_parse(parser->header_buf, FRAME_HEADER_LEN,
                                        FRAME_REQUEST_MAGIC, &parser->header);
            if (result != FRAME_OK) {
                parser->state = STATE_FAILED;
                parser->failure = result;
                goto out;
            }
            if (parser->header.length > parser->max_payload) {
                event.kind = FRAME_EVENT_OVERSIZED;
                event.header = parser->header;
                parser->skip_left = parser->header.length;
                parser->state = STATE_SKIP;
            } else if (parser->header.length == 0) {
                event.kind = FRAME_EVENT_FRAME;
                event.header = parser->header;
                event.payload = NULL;
            } else {
                result = reserve_payload(parser, parser->header.length);
                if (result != FRAME_OK) {
                    /* Not a framing error, but the stream is lost all the same. */
                    parser->state = STATE_FAILED;
                    parser->failure = result;
                    goto out;
                }
                parser->payload_have = 0;
                parser->state = STATE_PAYLOAD;
            }
            break;
        case STATE_PAYLOAD:
            take = parser->header.length - parser->payload_have;
            if (take > len - used)
                take = len - used;
            memcpy(parser->payload + parser->payload_have, bytes + used, take);
            parser->payload_have += take;
            used += take;
            if (parser->payload_have == parser->header.length) {
                event.kind = FRAME_EVENT_FRAME;
                event.header = parser->header;
                event.payload = parser->payload;
                parser->state = STATE_HEADER;
            }
            break;
        case STATE_SKIP:
            take = parser->skip_left;
            if (take > len - used)
                take = len - used;
            parser->skip_left -= take;
            used += take;
            if (parser->skip_left == 0)
                parser->state = STATE_HEADER;
            break;
        case STATE_FAILED:
            result = parser->failure;
            goto out;
        }
    }
    *ret_consumed = used;
    *ret_event = event;

out:
    return result;
}

enum frame_hello_result frame_hello_parse(const unsigned char *payload, size_t len,
                                          uint32_t max_ms, struct frame_hello *ret_hello)
{
    size_t path_len;
    uint32_t deadline;
    uint32_t start;

    if (!payload || len < 9)
        return FRAME_HELLO_MALFORMED;
    path_len = len - 8;
    /* A NUL inside would make the path checked a shorter one than sent. */
    if (path_len >= sizeof(ret_hello->config_path) || memchr(payload + 8, '\0', path_len))
        return FRAME_HELLO_MALFORMED;
    deadline = get_u32le(payload);
    start = get_u32le(payload + 4);
    if (deadline == 0 || deadline > max_ms || start == 0 || start > max_ms)
        return FRAME_HELLO_OUT_OF_RANGE;
    ret_hello->deadline_ms = deadline;
    ret_hello->start_timeout_ms = start;
    memcpy(ret_hello->config_path, payload + 8, path_len);
    ret_hello->config_path[path_len] = '\0';
    return FRAME_HELLO_OK;
}
