/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * frame: the framing of the helper's stdin/stdout protocol.
 *
 * Every message is a 16-byte header followed by a payload; all integers are
 * little-endian:
 *
 *   offset size  field
 *        0    4  magic: "TSDF" for requests, "TSDR" for responses
 *        4    1  version: FRAME_VERSION (1)
 *        5    1  type (enum frame_request_type / enum frame_response_type)
 *        6    2  reserved, must be 0
 *        8    4  request id (a response echoes the id of its request)
 *       12    4  payload length in bytes
 *       16    -  payload
 *
 * The parser is a push parser: the caller feeds whatever bytes it has (any
 * chunking, down to one byte at a time) and gets one event at a time:
 *
 *   FRAME_EVENT_NONE       every byte given was consumed; feed more
 *   FRAME_EVENT_FRAME      a whole request: header and payload (at most the
 *                          parser's max_payload bytes). The payload pointer
 *                          stays valid until the next call on the parser.
 *   FRAME_EVENT_OVERSIZED  a header announcing more than max_payload bytes.
 *                          It is reported as soon as the header is complete;
 *                          the parser then reads and discards that many bytes
 *                          (never buffering them), so the stream stays in
 *                          sync and the next frame is parsed normally.
 *
 * A bad magic, version or reserved field is a framing error: the stream
 * cannot be resynchronised, so frame_parser_feed() returns FRAME_ERR_MAGIC,
 * FRAME_ERR_VERSION or FRAME_ERR_RESERVED and keeps returning it for every
 * later call. The request type is not checked here: an unknown type is a
 * well-framed request the caller answers with an error.
 *
 * Every event is produced by a call that consumed at least one byte, so a
 * loop that feeds until all bytes are consumed always terminates.
 *
 * This file is plain C with no I/O and no logging. A parser is not
 * thread-safe.
 */
#ifndef TSD_FRAME_H
#define TSD_FRAME_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum frame_result {
    FRAME_OK = 0,
    FRAME_ERR_INVALID,  /* bad argument */
    FRAME_ERR_NOMEM,    /* the payload buffer could not be allocated */
    FRAME_ERR_MAGIC,    /* the header does not start with "TSDF" */
    FRAME_ERR_VERSION,  /* the version byte is not FRAME_VERSION */
    FRAME_ERR_RESERVED, /* the reserved field is not 0 */
    FRAME_RESULT_MAX
};

#define FRAME_HEADER_LEN 16u
#define FRAME_VERSION 1u
#define FRAME_REQUEST_MAGIC "TSDF"
#define FRAME_RESPONSE_MAGIC "TSDR"
/* The largest max_payload a parser accepts (the configured limit is lower). */
#define FRAME_MAX_PAYLOAD_LIMIT (256u * 1024u * 1024u)

enum frame_request_type {
    FRAME_REQUEST_JPEG = 1, /* payload: one JPEG image */
    FRAME_REQUEST_PING = 2, /* payload: ignored (normally empty) */
    /* tsd-helper-shared only, the first request of a connection: u32 the
     * client's deadline in ms, u32 its start timeout in ms, then the path
     * of its model configuration (helper/README.md, "Sharing") */
    FRAME_REQUEST_HELLO = 3,
};

enum frame_response_type {
    FRAME_RESPONSE_DETECTIONS = 1, /* payload: JSON object with detections */
    FRAME_RESPONSE_PONG = 2,       /* payload: empty */
    FRAME_RESPONSE_ERROR = 3,      /* payload: JSON object {"id":N,"error":"..."} */
    /* tsd-helper-shared only: */
    FRAME_RESPONSE_LATE = 4,       /* the frame was dropped unscored: it could not be
                                    * scored before its deadline, or newer frames of the
                                    * same client pushed it out; payload: why (text) */
    FRAME_RESPONSE_FAILED = 5,     /* the shared helper's own supervisor failed: one
                                    * byte, an enum superv_result, then why (text) */
};

enum frame_event_kind {
    FRAME_EVENT_NONE = 0,
    FRAME_EVENT_FRAME,
    FRAME_EVENT_OVERSIZED,
    FRAME_EVENT_MAX
};

struct frame_header {
    uint8_t version;
    uint8_t type;
    uint16_t reserved;
    uint32_t id;
    uint32_t length;
};

struct frame_event {
    enum frame_event_kind kind;
    struct frame_header header;   /* FRAME and OVERSIZED */
    const unsigned char *payload; /* FRAME: header.length bytes (NULL when 0) */
};

struct frame_parser;

const char *frame_result_str(enum frame_result result);

/* max_payload: 0..FRAME_MAX_PAYLOAD_LIMIT. (transfer full) */
enum frame_result frame_parser_new(size_t max_payload, struct frame_parser **ret_parser);

/* Accepts NULL; returns NULL. */
struct frame_parser *frame_parser_free(struct frame_parser *parser);

/* Consumes bytes of data up to the end of the next event (or all of them).
 * On FRAME_OK, *ret_consumed (1..len when len > 0, 0 when len is 0) and
 * *ret_event are written. data may be NULL when len is 0. */
enum frame_result frame_parser_feed(struct frame_parser *parser, const void *data, size_t len,
                                    size_t *ret_consumed, struct frame_event *ret_event);

/* True when the parser stands between frames (nothing of a frame has been
 * read yet): EOF there is a clean end, anywhere else a truncated frame. */
bool frame_parser_idle(const struct frame_parser *parser);

/* Bytes of payload buffer the parser holds now (for tests). */
size_t frame_parser_buffered_capacity(const struct frame_parser *parser);

/* Parses a 16-byte header with the given magic ("TSDF" or "TSDR"). On
 * FRAME_OK *ret_header is written. The type is not checked. */
enum frame_result frame_header_parse(const unsigned char *buf, size_t len, const char *magic,
                                     struct frame_header *ret_header);

/* Writes a FRAME_HEADER_LEN-byte header with the given magic into out. */
void frame_header_encode(unsigned char out[FRAME_HEADER_LEN], const char *magic,
                         uint8_t type, uint32_t id, uint32_t length);

/* A FRAME_REQUEST_HELLO's payload (tsd-helper-shared): u32 the client's
 * deadline and u32 its start timeout, in ms, then its model configuration's
 * path, 1..PATH_MAX-1 bytes without a NUL. */
struct frame_hello {
    uint32_t deadline_ms;
    uint32_t start_timeout_ms;
    char config_path[PATH_MAX]; /* NUL-terminated */
};

enum frame_hello_result {
    FRAME_HELLO_OK = 0,
    FRAME_HELLO_MALFORMED,    /* too short, a path too long or holding a NUL */
    FRAME_HELLO_OUT_OF_RANGE, /* a time of 0 or over max_ms */
};

/* Parses a hello's payload; *ret_hello is written on FRAME_HELLO_OK only. */
enum frame_hello_result frame_hello_parse(const unsigned char *payload, size_t len,
                                          uint32_t max_ms, struct frame_hello *ret_hello);

#endif
