/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * mjpeg: a streaming parser for multipart/x-mixed-replace bodies, the way
 * MJPEG webcams (mjpg-streamer, ustreamer, camera-streamer, IP cameras)
 * send their frames.
 *
 * Feed the body bytes as they arrive, in chunks of any size (one byte at a
 * time works and gives the same result as one big chunk). The parser finds
 * the boundary lines, reads each part's header fields and collects the part's
 * body. A part with a Content-Length is complete after exactly that many
 * bytes and is published at once (the caller should still validate it, e.g.
 * with jpg_validate()); a part without one is complete when the next
 * boundary line arrives, and the CRLF before that line is not part of it.
 *
 * Only the newest complete frame is kept. mjpeg_take_frame() hands it to
 * the caller (transfer full); a frame the caller did not take before a newer
 * one completed is freed and counted in frames_replaced. Nothing calls back
 * into the caller.
 *
 * The boundary comes from the response's Content-Type parameter, quoted or
 * not, with or without the leading "--" some cameras put into it:
 * boundary=frame and boundary=--frame both match the lines "--frame" and
 * "----frame". Parts are never required to start on a new line, and a part
 * whose headers are missing entirely (its first byte is 0xFF, a JPEG SOI) is
 * read as a body without headers.
 *
 * Problems in the stream are never fatal: a part larger than max_frame, bad
 * part headers, a boundary string followed by junk, or an empty part are
 * counted, the part is skipped and the parser looks for the next boundary
 * line. Bytes before the first boundary line (and after a close delimiter)
 * are skipped and counted. mjpeg_feed() returns the first such problem of the
 * call (MJPEG_ERR_FRAME_TOO_BIG, ...) but has still consumed every byte; the
 * stats count all of them. A frame is published only once all of its bytes
 * have arrived: a stream that stops mid-part publishes nothing for that part
 * (mjpeg_finish() reports it as MJPEG_ERR_TRUNCATED).
 *
 * Memory: the part being received is held in a buffer that grows (doubling,
 * or straight to the Content-Length) up to max_frame plus a few bytes; the
 * latest complete frame is a second such buffer until the caller takes it;
 * the part header buffer is MJPEG_MAX_PART_HEAD bytes. So the parser holds at
 * most max_frame + overhead while the caller takes every frame, and at most
 * 2 * max_frame + overhead while a frame waits to be taken.
 *
 * This file is plain C with no Python and no logging. A parser is not
 * thread-safe; use one per stream.
 */
#ifndef TSD_MJPEG_H
#define TSD_MJPEG_H

#include <stddef.h>
#include <stdint.h>

enum mjpeg_result {
    MJPEG_OK = 0,
    MJPEG_NO_FRAME,          /* mjpeg_take_frame(): no new complete frame */
    MJPEG_ERR_INVALID,       /* bad argument */
    MJPEG_ERR_NOMEM,         /* allocation failed (the part was skipped) */
    MJPEG_ERR_NOT_MULTIPART, /* the Content-Type is not multipart/... */
    MJPEG_ERR_BOUNDARY,      /* no usable boundary parameter */
    MJPEG_ERR_FRAME_TOO_BIG, /* a part larger than max_frame was skipped */
    MJPEG_ERR_PART_HEADER,   /* malformed or oversized part headers; skipped */
    MJPEG_ERR_DELIMITER,     /* the boundary string followed by junk; skipped */
    MJPEG_ERR_EMPTY_PART,    /* a part with no body bytes; skipped */
    MJPEG_ERR_TRUNCATED,     /* the stream ended inside a part */
    MJPEG_RESULT_MAX
};

#define MJPEG_DEFAULT_MAX_FRAME (5u * 1024u * 1024u)
#define MJPEG_MAX_FRAME_LIMIT (64u * 1024u * 1024u)
/* Part header fields, all lines together. */
#define MJPEG_MAX_PART_HEAD 4096u
#define MJPEG_CONTENT_TYPE_SIZE 64u

struct mjpeg;

/* (transfer full) from mjpeg_take_frame(); free with mjpeg_frame_free(). */
struct mjpeg_frame {
    uint64_t seq;           /* 1 for the first frame this parser completed */
    size_t len;             /* bytes in data, 1..max_frame */
    char content_type[MJPEG_CONTENT_TYPE_SIZE]; /* the part's media type,
                                                 * lower-cased; "" if none */
    unsigned char *data;    /* owned by the frame */
};

struct mjpeg_stats {
    uint64_t bytes;           /* bytes fed */
    uint64_t frames;          /* frames completed */
    uint64_t frames_taken;    /* frames handed out by mjpeg_take_frame() */
    uint64_t frames_replaced; /* completed frames freed before being taken */
    uint64_t skipped_bytes;   /* bytes skipped while looking for a boundary
                               * string (preamble, epilogue, skipped parts,
                               * what follows a Content-Length body), the
                               * strings themselves included */
    uint64_t errors;          /* all of the problems below */
    uint64_t too_big;
    uint64_t bad_headers;
    uint64_t bad_delimiters;
    uint64_t empty_parts;
    uint64_t nomem;
    uint64_t truncated;
    enum mjpeg_result last_error; /* MJPEG_OK while there was none */
    size_t max_frame;
    size_t memory;            /* bytes of frame buffers held now */
};

const char *mjpeg_result_str(enum mjpeg_result result);

/* (transfer full) A parser for a body whose Content-Type field value is
 * content_type (e.g. "multipart/x-mixed-replace;boundary=frame").
 * max_frame is the largest part body accepted: 0 means
 * MJPEG_DEFAULT_MAX_FRAME; at most MJPEG_MAX_FRAME_LIMIT. */
enum mjpeg_result mjpeg_new(const char *content_type, size_t max_frame,
                            struct mjpeg **ret_parser);

/* Accepts NULL; returns NULL. Frees a frame that was not taken. */
struct mjpeg *mjpeg_free(struct mjpeg *parser);

/* Consumes all len bytes (data may be NULL when len is 0). MJPEG_OK when
 * nothing went wrong in this call; otherwise the first stream problem it met
 * (parsing went on after it). MJPEG_ERR_INVALID consumes nothing. */
enum mjpeg_result mjpeg_feed(struct mjpeg *parser, const void *data, size_t len);

/* The stream has ended. Drops a part that was still arriving and returns
 * MJPEG_ERR_TRUNCATED for it (counted), or MJPEG_OK. The latest complete
 * frame can still be taken. Feeding again afterwards starts looking for a
 * boundary line, as at the start. */
enum mjpeg_result mjpeg_finish(struct mjpeg *parser);

/* MJPEG_OK and *ret_frame (transfer full) when a frame completed since the
 * last take; MJPEG_NO_FRAME (and *ret_frame untouched) otherwise. */
enum mjpeg_result mjpeg_take_frame(struct mjpeg *parser, struct mjpeg_frame **ret_frame);

void mjpeg_get_stats(const struct mjpeg *parser, struct mjpeg_stats *ret_stats);

/* (transfer none) The delimiter the parser looks for, "--" + boundary
 * without its own leading "--". */
const char *mjpeg_delimiter(const struct mjpeg *parser);

/* Accepts NULL; returns NULL. */
struct mjpeg_frame *mjpeg_frame_free(struct mjpeg_frame *frame);

#endif
