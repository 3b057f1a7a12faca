/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * Fuzz target for native/core/mjpeg.c (and jpg_validate() on its frames).
 *
 * Input layout:
 *   byte 0      flags: bit 0: the Content-Type is the first line of the
 *               rest of the input (up to '\n', at most 255 bytes) instead of
 *               "multipart/x-mixed-replace; boundary=frame"; bits 1-2: the
 *               frame size cap (64, 1000, 65536 or the default)
 *   bytes 1-4   chunk sizes, used in turn: 1 + (b & 0x7f), or with the top
 *               bit set, 1 + (b & 0x7f) * 97
 *   the rest    the multipart body
 * The body is fed in those chunks with a take after every feed, and in one
 * piece as a reference. Both must agree on every counter and on the newest
 * frame; frames must stay within the cap and memory within its bound.
 * Any disagreement aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jpeg.h"
#include "mjpeg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DEFAULT_CONTENT_TYPE "multipart/x-mixed-replace; boundary=frame"

static struct jpg_decoder *decoder;

static void check(int condition)
{
    if (!condition)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[4] = {64, 1000, 65536, 0};
    struct mjpeg *chunked = NULL;
    struct mjpeg *whole = NULL;
    struct mjpeg_frame *frame = NULL;
    struct mjpeg_frame *last = NULL;
    struct mjpeg_frame *whole_last = NULL;
    struct mjpeg_stats a;
    struct mjpeg_stats b;
    char content_type[256] = DEFAULT_CONTENT_TYPE;
    size_t chunks[4];
    size_t max_frame;
    size_t pos = 0;
    uint64_t last_seq = 0;
    enum mjpeg_result result;
    uint8_t flags;

    if (size < 5)
        return 0;
    if (!decoder && jpg_decoder_new(&decoder) != JPG_OK)
        abort();
    flags = data[0];
    for (int i = 0; i < 4; i++)
        chunks[i] = data[1 + i] & 0x80 ? 1 + (size_t)(data[1 + i] & 0x7f) * 97
                                       : 1 + (size_t)(data[1 + i] & 0x7f);
    max_frame = caps[(flags >> 1) & 3];
    data += 5;
    size -= 5;
    if (flags & 1) {
        const uint8_t *newline = memchr(data, '\n', size < 255 ? size : 255);
        size_t len = newline ? (size_t)(newline - data) : (size < 255 ? size : 255);
        memcpy(content_type, data, len);
        content_type[len] = '\0';
        data += newline ? len + 1 : len;
        size -= newline ? len + 1 : len;
    }

    result = mjpeg_new(content_type, max_frame, &chunked);
    if (result != MJPEG_OK) {
        check(chunked == NULL);
        check(result == MJPEG_ERR_NOT_MULTIPART || result == MJPEG_ERR_BOUNDARY);
        return 0;
    }
    if (mjpeg_new(content_type, max_frame, &whole) != MJPEG_OK)
        abort();
    mjpeg_get_stats(chunked, &a);
    max_frame = a.max_frame;

    for (int i = 0; pos < size; i = (i + 1) % 4) {
        size_t n = size - pos < chunks[i] ? size - pos : chunks[i];
        mjpeg_feed(chunked, data + pos, n);
        pos += n;
        mjpeg_get_stats(chunked, &a);
        /* One frame waiting plus one part arriving, each within the cap
         * plus the boundary slack. */
        check(a.memory <= 2 * (max_frame + 256));
        if (mjpeg_take_frame(chunked, &frame) == MJPEG_OK) {
            check(frame->len >= 1 && frame->len <= max_frame);
            check(frame->seq > last_seq);
            check(strlen(frame->content_type) < sizeof(frame->content_type));
            last_seq = frame->seq;
            if (frame->len <= 4096)
                jpg_validate(decoder, frame->data, frame->len, NULL);
            mjpeg_frame_free(last);
            last = frame;
            frame = NULL;
        }
    }
    mjpeg_feed(whole, data, size);
    mjpeg_get_stats(chunked, &a);
    mjpeg_get_stats(whole, &b);
    check(a.bytes == size && b.bytes == size);
    check(a.frames == b.frames);
    check(a.errors == b.errors);
    check(a.too_big == b.too_big);
    check(a.bad_headers == b.bad_headers);
    check(a.bad_delimiters == b.bad_delimiters);
    check(a.empty_parts == b.empty_parts);
    check(a.skipped_bytes == b.skipped_bytes);
    check(a.last_error == b.last_error);
    check(a.frames == a.frames_taken + a.frames_replaced);
    check(a.errors == a.too_big + a.bad_headers + a.bad_delimiters + a.empty_parts + a.nomem +
                          a.truncated);
    if (mjpeg_take_frame(whole, &whole_last) == MJPEG_OK) {
        check(last != NULL);
        check(last->seq == whole_last->seq);
        check(last->len == whole_last->len);
        check(memcmp(last->data, whole_last->data, last->len) == 0);
        check(strcmp(last->content_type, whole_last->content_type) == 0);
    } else {
        check(last == NULL);
    }
    result = mjpeg_finish(chunked);
    check(result == mjpeg_finish(whole));
    check(mjpeg_take_frame(chunked, &frame) == MJPEG_NO_FRAME);

    mjpeg_frame_free(whole_last);
    mjpeg_frame_free(last);
    mjpeg_free(whole);
    mjpeg_free(chunked);
    return 0;
}
