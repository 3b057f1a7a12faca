/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * dechunk: the chunked transfer coding of HTTP/1.1 (RFC 9112 section 7.1),
 * decoded in place as the bytes arrive. Extensions and trailers are read
 * and ignored, each bounded.
 */
#ifndef TSD_DECHUNK_H
#define TSD_DECHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DECHUNK_LINE_MAX 4096u           /* a chunk-size line with its extensions */
#define DECHUNK_TRAILER_MAX (16u * 1024u) /* all trailer fields */

enum chunk_state {
    CH_SIZE = 0, /* hex digits of the chunk size */
    CH_EXT,      /* chunk extensions, ignored, up to LF */
    CH_SIZE_LF,  /* CR seen after the size */
    CH_DATA,
    CH_DATA_CR,  /* the CRLF after the chunk data */
    CH_DATA_LF,
    CH_TRAILER,  /* trailer fields, ignored, up to an empty line */
    CH_DONE,
};

struct dechunk {
    enum chunk_state state;
    uint64_t left;
    unsigned digits;
    size_t line_len;
    size_t trailer_len;
};

/* Ready for the first chunk-size line (after zeroing the struct). */
void dechunk_start(struct dechunk *d);

/* Decodes len bytes in place: the chunk data moves to the start of data,
 * *ret_out bytes of it. Bytes after the last chunk are ignored. Returns false
 * on malformed input (*ret_out untouched). */
bool dechunk_feed(struct dechunk *d, unsigned char *data, size_t len, size_t *ret_out);

/* The last chunk and the trailer have been read. */
bool dechunk_done(const struct dechunk *d);

#endif
