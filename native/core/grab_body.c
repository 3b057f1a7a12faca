/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * The body of a grab session's response: a snapshot collected whole, or a
 * multipart stream cut into JPEG frames, each validated before it is
 * published as the pending frame.
 */
#include "grab_session.h"
#include "monotime.h"

#include <errno.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "errtext.h"

void grab_fail_no_frames(struct grab_stream *s, const char *when)
{
    struct mjpeg_stats stats;

    mjpeg_get_stats(s->parser, &stats);
    if (stats.too_big > s->too_big_mark)
        grab_fail(s, GRAB_ERR_TOO_BIG, "no valid frame %s: parts larger than %zu bytes were skipped",
             when, s->max_frame);
    else if (s->invalid_since_frame > 0)
        grab_fail(s, GRAB_ERR_INVALID_JPEG, "no valid frame %s: %llu invalid JPEG frames (%s)", when,
             (unsigned long long)s->invalid_since_frame, jpg_result_str(s->last_jpg_error));
    else if (stats.frames == 0 && stats.bytes > 0 && stats.skipped_bytes == stats.bytes)
        grab_fail(s, GRAB_ERR_NO_BOUNDARY,
             "no valid frame %s: the delimiter \"%.140s\" announced in the Content-Type never "
             "appeared",
             when, mjpeg_delimiter(s->parser));
    else if (s->bytes_since_frame == 0)
        grab_fail(s, GRAB_ERR_TIMEOUT, "no data %s", when);
    else
        grab_fail(s, GRAB_ERR_NO_FRAMES, "no valid frame %s (%llu bytes received)", when,
             (unsigned long long)s->bytes_since_frame);
}

static void publish(struct grab_stream *s, unsigned char *data, size_t len, uint64_t seq,
                    const struct jpg_info *info)
{
    struct grab_frame *frame = calloc(1, sizeof(*frame));

    if (!frame) {
        free(data);
        grab_fail(s, GRAB_ERR_NOMEM, "out of memory for a frame");
        return;
    }
    frame->data = data;
    frame->len = len;
    frame->seq = seq;
    frame->width = info->width;
    frame->height = info->height;
    frame->received_ms = (uint64_t)now_ms();
    if (s->pending) {
        grab_frame_free(s->pending);
        s->stats.frames_replaced++;
    }
    s->pending = frame;
    s->stats.frames++; /* snapshots; streams take the parser's count */
    s->bad_in_row = 0;
    s->invalid_since_frame = 0;
    s->bytes_since_frame = 0;
    s->last_frame_at = now_ms();
    if (s->parser) {
        struct mjpeg_stats stats;
        mjpeg_get_stats(s->parser, &stats);
        s->too_big_mark = stats.too_big;
    }
    if (s->snapshot) {
        conn_close(&s->conn);
        s->state = CS_DONE;
    }
}

/* Takes the parser's newest frame, validates it, keeps it if valid. */
static void collect_frames(struct grab_stream *s)
{
    struct mjpeg_frame *part = NULL;

    while (s->state == CS_BODY && mjpeg_take_frame(s->parser, &part) == MJPEG_OK) {
        struct jpg_info info;
        enum jpg_result valid = jpg_validate(s->decoder, part->data, part->len, &info);
        unsigned char *data;
        size_t len;
        uint64_t seq;

        if (valid != JPG_OK) {
            mjpeg_frame_free(part);
            part = NULL;
            s->stats.invalid_frames++;
            s->invalid_since_frame++;
            s->bad_in_row++;
            s->last_jpg_error = valid;
            if (s->bad_in_row >= s->max_bad_frames)
                grab_fail(s, GRAB_ERR_INVALID_JPEG, "%u frames in a row are not valid JPEG (%s)",
                     s->bad_in_row, jpg_result_str(valid));
            continue;
        }
        data = part->data;
        len = part->len;
        seq = part->seq;
        part->data = NULL;
        mjpeg_frame_free(part);
        part = NULL;
        publish(s, data, len, seq, &info);
    }
}

static uint64_t frame_budget(const struct grab_stream *s)
{
    return 2u * (uint64_t)s->max_frame + GRAB_BUDGET_SLACK;
}

static void feed_parser(struct grab_stream *s, const unsigned char *data, size_t len)
{
    char when[64];

    mjpeg_feed(s->parser, data, len); /* stream problems are counted, not fatal */
    s->bytes_since_frame += len;
    collect_frames(s);
    if (s->state != CS_BODY || s->bytes_since_frame <= frame_budget(s))
        return;
    snprintf(when, sizeof(when), "in %llu bytes", (unsigned long long)s->bytes_since_frame);
    grab_fail_no_frames(s, when);
}

static void append_body(struct grab_stream *s, const unsigned char *data, size_t len)
{
    if (len > s->max_frame - s->body_len) {
        grab_fail(s, GRAB_ERR_TOO_BIG, "the snapshot is larger than %zu bytes", s->max_frame);
        return;
    }
    if (s->body_len + len > s->body_cap) {
        size_t cap = s->body_cap ? s->body_cap * 2 : GRAB_SNAPSHOT_INITIAL;
        unsigned char *grown;

        if (cap > s->max_frame)
            cap = s->max_frame;
        if (cap < s->body_len + len)
            cap = s->body_len + len;
        grown = realloc(s->body, cap);
        if (!grown) {
            grab_fail(s, GRAB_ERR_NOMEM, "out of memory for the snapshot");
            return;
        }
        s->body = grown;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
}

static void finish_snapshot(struct grab_stream *s)
{
    struct jpg_info info;
    enum jpg_result valid = jpg_validate(s->decoder, s->body, s->body_len, &info);
    unsigned char *data;

    if (valid != JPG_OK) {
        grab_fail(s, GRAB_ERR_INVALID_JPEG, "the snapshot (%zu bytes) is not a valid JPEG: %s",
             s->body_len, jpg_result_str(valid));
        return;
    }
    data = s->body;
    s->body = NULL;
    s->body_cap = 0;
    publish(s, data, s->body_len, 1, &info);
}

/* The body ended: the connection closed (truncated says whether the framing
 * expected more) or the framing said so. */
void grab_body_end(struct grab_stream *s, bool truncated)
{
    conn_close(&s->conn);
    if (s->download) {
        grab_download_body_end(s, truncated);
        return;
    }
    if (s->multipart) {
        bool mid_frame = mjpeg_finish(s->parser) == MJPEG_ERR_TRUNCATED;

        collect_frames(s);
        if (s->state != CS_BODY)
            return;
        grab_fail(s, GRAB_ERR_CLOSED, "the camera ended the stream%s",
             mid_frame || truncated ? " in the middle of a frame" : "");
        return;
    }
    if (truncated) {
        if (s->body_kind == HTTPRESP_BODY_LENGTH)
            grab_fail(s, GRAB_ERR_CLOSED,
                 "the connection closed after %zu of the %llu bytes of the snapshot",
                 s->body_len, (unsigned long long)s->body_length);
        else
            grab_fail(s, GRAB_ERR_CLOSED, "the connection closed in the middle of the chunked snapshot");
        return;
    }
    finish_snapshot(s);
}

void grab_body_bytes(struct grab_stream *s, unsigned char *data, size_t len)
{
    bool end = false;

    if (s->body_kind == HTTPRESP_BODY_CHUNKED) {
        size_t out = 0;
        if (!dechunk_feed(&s->chunk, data, len, &out)) {
            grab_fail(s, GRAB_ERR_HTTP, "malformed chunked body");
            return;
        }
        len = out;
        end = dechunk_done(&s->chunk);
    } else if (s->body_kind == HTTPRESP_BODY_LENGTH) {
        if (len > s->body_left)
            len = (size_t)s->body_left;
        s->body_left -= len;
        end = s->body_left == 0;
    }
    s->stats.bytes += len;
    if (len > 0) {
        if (s->download)
            grab_download_body_bytes(s, data, len);
        else if (s->multipart)
            feed_parser(s, data, len);
        else
            append_body(s, data, len);
    }
    if (end && s->state == CS_BODY)
        grab_body_end(s, false);
}

void grab_body_start(struct grab_stream *s, const struct httpresp_info *info)
{
    const char *type = info->content_type;
    bool multipart = false;
    enum mjpeg_result made;

    if (type) {
        while (httpresp_is_ows((unsigned char)*type))
            type++;
        multipart = strncasecmp(type, "multipart/", 10) == 0;
    }
    s->body_kind = info->body;
    s->body_length = info->content_length;
    s->body_left = info->content_length;
    memset(&s->chunk, 0, sizeof(s->chunk));
    dechunk_start(&s->chunk);
    s->last_frame_at = now_ms();
    s->bytes_since_frame = 0;
    if (s->download) {
        grab_download_body_start(s, info);
        return;
    }
    if (!s->snapshot && !multipart) {
        grab_fail(s, GRAB_ERR_NOT_MULTIPART,
             "the Content-Type is \"%.80s\", not multipart/x-mixed-replace: is this the "
             "stream URL?",
             type ? type : "(none)");
        return;
    }
    if (multipart) {
        made = mjpeg_new(type, s->max_frame, &s->parser);
        if (made == MJPEG_ERR_NOMEM) {
            grab_fail(s, GRAB_ERR_NOMEM, "out of memory for the MJPEG parser");
            return;
        }
        if (made == MJPEG_ERR_NOT_MULTIPART) {
            grab_fail(s, GRAB_ERR_NOT_MULTIPART, "the Content-Type \"%.80s\" is not multipart", type);
            return;
        }
        if (made != MJPEG_OK) {
            grab_fail(s, GRAB_ERR_NO_BOUNDARY, "the Content-Type \"%.80s\" has no usable boundary",
                 type);
            return;
        }
        s->multipart = true;
        s->stats.connected = !s->snapshot;
    } else if (info->body == HTTPRESP_BODY_LENGTH) {
        if (info->content_length > s->max_frame) {
            grab_fail(s, GRAB_ERR_TOO_BIG, "the snapshot is %llu bytes, more than the %zu allowed",
                 (unsigned long long)info->content_length, s->max_frame);
            return;
        }
        if (info->content_length == 0) {
            grab_fail(s, GRAB_ERR_INVALID_JPEG, "the snapshot is empty (Content-Length: 0)");
            return;
        }
        s->body = malloc((size_t)info->content_length);
        if (!s->body) {
            grab_fail(s, GRAB_ERR_NOMEM, "out of memory for the snapshot");
            return;
        }
        s->body_cap = (size_t)info->content_length;
    }
    s->state = CS_BODY;
    s->conn.want = POLLIN;
}

/* ---- a download: the body streamed into a file ------------------------------------ */

/* The 16 bytes of a base64 MD5 (24 characters, "==" at the end) at the start
 * of text, ended by the end, ',', ';' or whitespace. */
static bool decode_md5(const char *text, unsigned char *ret_md5)
{
    unsigned char decoded[20];
    size_t len = strcspn(text, ",; \t");

    if (len != 24 || text[22] != '=' || text[23] != '=')
        return false;
    if (EVP_DecodeBlock(decoded, (const unsigned char *)text, 24) != 18)
        return false;
    memcpy(ret_md5, decoded, 16);
    return true;
}

void grab_download_body_start(struct grab_stream *s, const struct httpresp_info *info)
{
    struct grab_download_info *d = &s->download_info;
    const char *goog = info->goog_hash ? strstr(info->goog_hash, "md5=") : NULL;

    if (info->body == HTTPRESP_BODY_LENGTH) {
        if (info->content_length > s->max_bytes) {
            grab_fail(s, GRAB_ERR_TOO_BIG, "the file is %llu bytes, more than the %llu allowed",
                      (unsigned long long)info->content_length, (unsigned long long)s->max_bytes);
            return;
        }
        if (info->content_length == 0) {
            grab_fail(s, GRAB_ERR_HTTP_STATUS, "the file is empty (Content-Length: 0)");
            return;
        }
        d->expected = info->content_length;
    }
    /* A declared MD5 that cannot be read is a broken response, not "none". */
    if (info->content_md5 || goog) {
        if (!decode_md5(info->content_md5 ? info->content_md5 : goog + 4, d->declared_md5)) {
            grab_fail(s, GRAB_ERR_HTTP, "the response's MD5 (%.40s) cannot be read",
                      info->content_md5 ? info->content_md5 : goog);
            return;
        }
        d->md5_declared = true;
    }
    s->state = CS_BODY;
    s->conn.want = POLLIN;
}

/* G-code is text in lines: refuses a NUL byte (a binary file) and a line
 * longer than max_line, before any of it is written. */
static bool content_ok(struct grab_stream *s, const unsigned char *data, size_t len)
{
    struct grab_download_info *d = &s->download_info;
    const unsigned char *p = data;
    const unsigned char *end = data + len;

    if (s->max_line == 0)
        return true;
    if (memchr(data, 0, len)) {
        grab_fail(s, GRAB_ERR_CONTENT, "not a text G-code file: a NUL byte after %llu bytes",
                  (unsigned long long)d->bytes);
        return false;
    }
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t part = (size_t)((nl ? nl : end) - p);

        s->line_len += part;
        if (s->line_len > s->max_line) {
            grab_fail(s, GRAB_ERR_CONTENT, "not a G-code file: line %llu is longer than %zu bytes",
                      (unsigned long long)d->lines + 1, s->max_line);
            return false;
        }
        if (!nl)
            break;
        d->lines++;
        s->line_len = 0;
        p = nl + 1;
    }
    return true;
}

void grab_download_body_bytes(struct grab_stream *s, const unsigned char *data, size_t len)
{
    struct grab_download_info *d = &s->download_info;
    char text[128];

    if (len > s->max_bytes - d->bytes) {
        grab_fail(s, GRAB_ERR_TOO_BIG, "the file is larger than the %llu bytes allowed",
                  (unsigned long long)s->max_bytes);
        return;
    }
    if (!content_ok(s, data, len))
        return;
    while (len > 0) {
        ssize_t n = write(s->download_fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            grab_fail(s, GRAB_ERR_WRITE, "writing the file after %llu bytes: %s",
                      (unsigned long long)d->bytes,
                      n < 0 ? errno_text(errno, text, sizeof(text)) : "nothing written");
            return;
        }
        if (EVP_DigestUpdate(s->md5, data, (size_t)n) != 1) {
            grab_fail(s, GRAB_ERR_NOMEM, "MD5 failed");
            return;
        }
        d->bytes += (uint64_t)n;
        data += n;
        len -= (size_t)n;
    }
}

void grab_download_body_end(struct grab_stream *s, bool truncated)
{
    struct grab_download_info *d = &s->download_info;
    unsigned int md5_len = 0;

    if (truncated) {
        if (s->body_kind == HTTPRESP_BODY_LENGTH)
            grab_fail(s, GRAB_ERR_CLOSED, "the connection closed after %llu of the %llu bytes",
                      (unsigned long long)d->bytes, (unsigned long long)s->body_length);
        else
            grab_fail(s, GRAB_ERR_CLOSED,
                      "the connection closed in the middle of the chunked file (%llu bytes)",
                      (unsigned long long)d->bytes);
        return;
    }
    if (d->bytes == 0) {
        grab_fail(s, GRAB_ERR_HTTP_STATUS, "the file is empty");
        return;
    }
    if (EVP_DigestFinal_ex(s->md5, d->md5, &md5_len) != 1 || md5_len != sizeof(d->md5)) {
        grab_fail(s, GRAB_ERR_NOMEM, "MD5 failed");
        return;
    }
    if (d->md5_declared && memcmp(d->md5, d->declared_md5, sizeof(d->md5)) != 0) {
        grab_fail(s, GRAB_ERR_DIGEST, "the file's MD5 is not the one the server declared "
                                      "(%llu bytes received)",
                  (unsigned long long)d->bytes);
        return;
    }
    d->done = true;
    s->state = CS_DONE;
}
