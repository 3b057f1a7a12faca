/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * httpresp: an incremental parser for the head of an HTTP/1.x response
 * (status line and header fields), as a webcam or snapshot URL sends it.
 *
 * Feed the bytes as they arrive, in chunks of any size (one byte at a time
 * works). httpresp_feed() says HTTPRESP_NEED_MORE until the empty line that
 * ends the head has been seen, then HTTPRESP_OK together with how many bytes
 * of the last chunk belonged to the head: the rest of that chunk is the start
 * of the body and is never looked at.
 *
 * The head is held in a fixed buffer of HTTPRESP_MAX_HEAD bytes; no line may
 * be longer than HTTPRESP_MAX_LINE and there may be at most
 * HTTPRESP_MAX_HEADERS header fields. Exceeding any limit is an error, never
 * a reallocation. Rejected outright: NUL bytes, obsolete line folding
 * (a header line starting with a space or tab), a CR not followed by LF,
 * other control characters, whitespace between a field name and its colon,
 * and a malformed or conflicting Content-Length. A bare LF is accepted as a
 * line ending (RFC 9112 section 2.2). Errors are sticky: once a feed failed,
 * every later feed returns the same result until httpresp_reset().
 *
 * 1xx responses are reported like any other status; the caller decides.
 *
 * This file is plain C with no Python and no logging. A parser is not
 * thread-safe; use one per connection.
 */
#ifndef TSD_HTTPRESP_H
#define TSD_HTTPRESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum httpresp_result {
    HTTPRESP_OK = 0,
    HTTPRESP_NEED_MORE,            /* the head is not complete yet: feed more */
    HTTPRESP_ERR_INVALID,          /* bad argument, or wrong state for the call */
    HTTPRESP_ERR_NOMEM,            /* allocation failed */
    HTTPRESP_ERR_STATUS_LINE,      /* not "HTTP/1.x NNN reason" */
    HTTPRESP_ERR_HEADER,           /* malformed header field line */
    HTTPRESP_ERR_OBS_FOLD,         /* obsolete line folding */
    HTTPRESP_ERR_NUL,              /* a NUL byte in the head */
    HTTPRESP_ERR_BARE_CR,          /* a CR not followed by LF */
    HTTPRESP_ERR_LINE_TOO_LONG,    /* a line longer than HTTPRESP_MAX_LINE */
    HTTPRESP_ERR_HEAD_TOO_BIG,     /* the head is longer than HTTPRESP_MAX_HEAD */
    HTTPRESP_ERR_TOO_MANY_HEADERS, /* more than HTTPRESP_MAX_HEADERS fields */
    HTTPRESP_ERR_CONTENT_LENGTH,   /* invalid, too large or conflicting */
    HTTPRESP_ERR_CONTENT_TYPE,     /* malformed media type or parameter */
    HTTPRESP_ERR_TOO_SMALL,        /* an output buffer is too small */
    HTTPRESP_RESULT_MAX
};

/* Limits. The head limit counts every byte up to and including the empty
 * line; the line limit counts the bytes of one line without its CRLF. */
#define HTTPRESP_MAX_HEAD (16u * 1024u)
#define HTTPRESP_MAX_LINE (8u * 1024u)
#define HTTPRESP_MAX_HEADERS 64u
/* RFC 2046 allows 70 characters; a few cameras add "--" or more. */
#define HTTPRESP_MAX_BOUNDARY 128u
/* Sizes of the buffers httpresp_content_type() needs for any input it
 * accepts: the media type and the boundary, each with its NUL. */
#define HTTPRESP_MEDIA_TYPE_SIZE 128u
#define HTTPRESP_BOUNDARY_SIZE (HTTPRESP_MAX_BOUNDARY + 1u)

/* How the body that follows the head is delimited (RFC 9112 section 6.3). */
enum httpresp_body {
    HTTPRESP_BODY_NONE = 0, /* 1xx, 204, 304: no body */
    HTTPRESP_BODY_LENGTH,   /* exactly content_length bytes */
    HTTPRESP_BODY_CHUNKED,  /* chunked transfer coding (overrides any length) */
    HTTPRESP_BODY_CLOSE,    /* until the connection closes */
};

struct httpresp;

/* Filled by httpresp_get_info() once the head is complete. Every string is
 * (transfer none): it lives in the parser until httpresp_reset() or
 * httpresp_free(), and is NUL-terminated. */
struct httpresp_info {
    int version_minor;        /* HTTP/1.<version_minor> */
    int status;               /* 100..999 */
    const char *reason;       /* may be "" */
    const char *content_type; /* raw field value, NULL when absent */
    const char *location;     /* raw field value, NULL when absent */
    const char *content_md5;  /* Content-MD5 (RFC 1864, base64), NULL when absent */
    const char *goog_hash;    /* the x-goog-hash field that holds "md5=", NULL when none */
    bool has_content_length;
    uint64_t content_length;  /* valid when has_content_length */
    bool has_transfer_encoding;
    bool chunked;             /* the last transfer coding is "chunked" */
    enum httpresp_body body;
    size_t header_count;
    size_t head_len;          /* bytes of the head, empty line included */
};

const char *httpresp_result_str(enum httpresp_result result);

/* (transfer full) A parser ready for the first byte of a response. */
enum httpresp_result httpresp_new(struct httpresp **ret_parser);

/* Accepts NULL; returns NULL. */
struct httpresp *httpresp_free(struct httpresp *parser);

/* Forgets everything, for the next response (after a redirect, say). */
void httpresp_reset(struct httpresp *parser);

/* Consumes up to len bytes of data (data may be NULL when len is 0).
 *   HTTPRESP_NEED_MORE: all len bytes were part of the head; *ret_used = len.
 *   HTTPRESP_OK: the head is complete; *ret_used is the number of bytes of
 *     this chunk that belonged to it (the body starts at data + *ret_used).
 *     Feeding a complete parser again returns HTTPRESP_OK with *ret_used = 0.
 *   any error: *ret_used is untouched; the parser stays failed.
 * ret_used may be NULL when the caller does not need it. */
enum httpresp_result httpresp_feed(struct httpresp *parser, const void *data, size_t len,
                                   size_t *ret_used);

/* HTTPRESP_OK and *ret_info filled once the head is complete;
 * HTTPRESP_ERR_INVALID before that. */
enum httpresp_result httpresp_get_info(const struct httpresp *parser,
                                       struct httpresp_info *ret_info);

/* (transfer none) The value of the first field called name (ASCII
 * case-insensitive), with surrounding whitespace removed; NULL when the field
 * is absent or the head is not complete. */
const char *httpresp_header(const struct httpresp *parser, const char *name);

/* (transfer none) Field number index (0-based, in the order received).
 * HTTPRESP_ERR_INVALID when index >= header_count or the head is not
 * complete. */
enum httpresp_result httpresp_header_at(const struct httpresp *parser, size_t index,
                                        const char **ret_name, const char **ret_value);

/* Parses a Content-Type field value such as
 *     multipart/x-mixed-replace; boundary="--frame"
 * into the lower-cased media type ("multipart/x-mixed-replace") and the
 * boundary parameter, unquoted but otherwise as sent ("--frame"; "" when
 * there is none). Parameter names are case-insensitive; the first boundary
 * wins; unquoted values may hold any visible character but ';' and '"'.
 * Sizes include the NUL; HTTPRESP_MEDIA_TYPE_SIZE and HTTPRESP_BOUNDARY_SIZE
 * always suffice. HTTPRESP_ERR_TOO_SMALL when a result does not fit,
 * HTTPRESP_ERR_CONTENT_TYPE when the value is malformed or the boundary is
 * longer than HTTPRESP_MAX_BOUNDARY. Outputs are written only on success. */
enum httpresp_result httpresp_content_type(const char *value, char *ret_media_type,
                                           size_t media_type_size, char *ret_boundary,
                                           size_t boundary_size);

/* Parses a Content-Length value of len bytes: 1 to 19 decimal digits,
 * optionally surrounded by spaces or tabs. HTTPRESP_ERR_CONTENT_LENGTH
 * otherwise. *ret_length is written only on success. */
enum httpresp_result httpresp_parse_content_length(const char *value, size_t len,
                                                   uint64_t *ret_length);

/* Character classes of RFC 9110, shared with the multipart parser. */
bool httpresp_is_tchar(unsigned char c);
bool httpresp_is_ows(unsigned char c);

#endif
