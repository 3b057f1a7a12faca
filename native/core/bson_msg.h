/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * bson_msg: the BSON frames of OctoPrint remote access (obico-protocol.md
 * §2.4 (d)/(e), §2.5, §2.8), decoded and encoded with libbson.
 *
 * Server -> device:
 *   {"http.tunnelv2": {"ref", "method", "path", "headers": {str: str},
 *                      "data": <binary|str|null>, "timeout"?}}
 *   {"ws.tunnel": {"ref", "type": "connect"|"tunnel_message"|"tunnel_close",
 *                  "path"?, "data": <str|binary|null>}}
 * Device -> server:
 *   {"http.tunnelv2": {"ref", "response": {"status", "compressed", "content",
 *                                          "cookies": [str], "headers": {str: str}}}}
 *   {"ws.tunnel": {"ref", "type": "octoprint_message"|"octoprint_close", "data"}}
 *
 * Decoding is bounded like every other parser here: the document size
 * (the caller's limit), the nesting (only the known keys are descended into,
 * never deeper than BSONMSG_MAX_DEPTH; anything else is skipped by length
 * without being read), each string and binary length, and the header
 * count. Every string is valid UTF-8 without NUL; header names are HTTP
 * tokens and values carry no control characters, so that nothing a server
 * sends can end a header line early. Unknown keys are ignored (the server
 * adds "type" and "as_binary").
 *
 * Plain C, no Python, no logging, no threads of its own.
 */
#ifndef TSD_BSON_MSG_H
#define TSD_BSON_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BSONMSG_MAX_DEPTH 3          /* root -> message -> headers */
#define BSONMSG_MAX_REF 512
#define BSONMSG_MAX_PATH 8192
#define BSONMSG_MAX_HEADERS 100
#define BSONMSG_MAX_HEADER_NAME 256
#define BSONMSG_MAX_HEADER_VALUE 8192
#define BSONMSG_METHOD_SIZE 8        /* "OPTIONS" and its NUL */
#define BSONMSG_MAX_TIMEOUT_S 50     /* the server gives up after 55 s */
#define BSONMSG_DEFAULT_TIMEOUT_S 30

enum bsonmsg_result {
    BSONMSG_OK = 0,
    BSONMSG_ERR_INVALID,      /* bad argument */
    BSONMSG_ERR_NOMEM,
    BSONMSG_ERR_MALFORMED,    /* not a well-formed BSON document */
    BSONMSG_ERR_TOO_BIG,      /* the document or a body is over its limit */
    BSONMSG_ERR_KIND,         /* none, or more than one, of the tunnel keys */
    BSONMSG_ERR_FIELD,        /* a required field is missing or of the wrong type */
    BSONMSG_ERR_TOO_LONG,     /* a string over its limit */
    BSONMSG_ERR_TEXT,         /* not UTF-8, a NUL, or a character not allowed there */
    BSONMSG_ERR_METHOD,       /* not an HTTP method this tunnel replays */
    BSONMSG_ERR_UNSUPPORTED,  /* the legacy "http.tunnel" (v1) */
    BSONMSG_RESULT_MAX
};

enum bsonmsg_kind {
    BSONMSG_HTTP = 1,
    BSONMSG_WS,
};

enum bsonmsg_ws_type {
    BSONMSG_WS_CONNECT = 1,
    BSONMSG_WS_MESSAGE,
    BSONMSG_WS_CLOSE,
};

struct bsonmsg_header {
    char *name;
    char *value;
};

/* A decoded request; every pointer is owned by it (bsonmsg_request_free). */
struct bsonmsg_request {
    enum bsonmsg_kind kind;
    char *ref;                      /* always set */
    /* http.tunnelv2 */
    char method[BSONMSG_METHOD_SIZE]; /* upper case: GET, POST, ... */
    char *path;                     /* "/..." (ws: may be NULL) */
    struct bsonmsg_header *headers;
    size_t header_count;
    unsigned timeout_s;             /* 1..BSONMSG_MAX_TIMEOUT_S */
    /* both: the body (http) or the frame (ws); NULL with has_data false */
    bool has_data;
    bool data_is_text;              /* ws: a str frame (text), else binary */
    unsigned char *data;
    size_t data_len;
    /* ws.tunnel */
    enum bsonmsg_ws_type ws_type;
    /* for the error a rejected request is answered with */
    char error[160];
};

/* What bsonmsg_encode_http_reply() sends back. */
struct bsonmsg_http_reply {
    const char *ref;
    int status;
    bool compressed;
    const unsigned char *content;
    size_t content_len;
    const char *const *cookies;     /* raw Set-Cookie values */
    size_t cookie_count;
    const struct bsonmsg_header *headers;
    size_t header_count;
};

const char *bsonmsg_result_str(enum bsonmsg_result result);

/* Decodes one binary frame. max_doc bounds the whole document and
 * max_body the body (data). On BSONMSG_OK *ret_request is a new request.
 * On an error where the ref could be read, *ret_request is still set
 * (kind, ref and error filled) so that the caller can answer the server
 * with a clear error instead of leaving the browser waiting; otherwise it
 * is NULL. */
enum bsonmsg_result bsonmsg_decode(const unsigned char *data, size_t len, size_t max_doc,
                                   size_t max_body, struct bsonmsg_request **ret_request);

/* The ref of an http.tunnelv2 request from the first len bytes of a frame
 * too large to keep (the rest was never stored), so that the browser gets
 * a clear 413 rather than the server's timeout. Walks the prefix by hand,
 * bounded by len and never recursing; true with the ref (valid UTF-8, no
 * control character, shorter than ref_size) when it lies in the prefix. */
bool bsonmsg_peek_ref(const unsigned char *data, size_t len, char *ref, size_t ref_size);

/* Accepts NULL; returns NULL. */
struct bsonmsg_request *bsonmsg_request_free(struct bsonmsg_request *request);

/* Encodes a reply into a new buffer (free with free()). Strings that are
 * not valid UTF-8 (a header OctoPrint sent in Latin-1) are left out rather
 * than sent broken. */
enum bsonmsg_result bsonmsg_encode_http_reply(const struct bsonmsg_http_reply *reply,
                                              unsigned char **ret_data, size_t *ret_len);

/* {"ws.tunnel": {"ref", "type": octoprint_message|octoprint_close, "data"}};
 * data NULL encodes null. */
enum bsonmsg_result bsonmsg_encode_ws(const char *ref, bool close, const unsigned char *data,
                                      size_t len, bool is_text, unsigned char **ret_data,
                                      size_t *ret_len);

#endif
