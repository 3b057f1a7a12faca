/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "mjpeg.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpresp.h"

/* "--" + the boundary without its own leading "--". */
#define MJPEG_MAX_NEEDLE (HTTPRESP_MAX_BOUNDARY + 2u)
/* A part without Content-Length is collected together with what may precede
 * the next boundary string (CRLF and, for "----frame" lines, two dashes)
 * and that string itself, before they are cut off again. */
#define MJPEG_SCAN_SLACK (4u + MJPEG_MAX_NEEDLE)
#define MJPEG_INITIAL_BUFFER (64u * 1024u)

enum mjpeg_state {
    ST_SEEK,        /* looking for the boundary string; bytes are skipped */
    ST_AFTER_DELIM, /* right after the boundary string */
    ST_PADDING,     /* transport padding after it */
    ST_AFTER_DASH,  /* one '-' after it: a close delimiter? */
    ST_DELIM_CR,    /* CR after it; LF must follow */
    ST_PART_HEAD,   /* the part's header lines */
    ST_BODY_LENGTH, /* a body of known length */
    ST_BODY_SCAN,   /* a body that ends at the next boundary string */
};

struct mjpeg {
    enum mjpeg_state state;
    size_t max_frame;
    size_t scan_limit; /* max_frame + MJPEG_SCAN_SLACK */

    /* The boundary string and its KMP failure function. */
    unsigned char needle[MJPEG_MAX_NEEDLE + 1];
    size_t needle_len;
    size_t fail[MJPEG_MAX_NEEDLE];
    size_t match; /* bytes of needle matched so far */

    /* The part being received. */
    char head[MJPEG_MAX_PART_HEAD];
    size_t head_len;
    size_t line_start;
    bool have_length;
    uint64_t length;
    char part_type[MJPEG_CONTENT_TYPE_SIZE];
    unsigned char *work;
    size_t work_len;
    size_t work_cap;
    size_t remaining; /* ST_BODY_LENGTH: bytes still to come */

    /* The newest complete frame, until taken. */
    struct mjpeg_frame *latest;
    size_t latest_cap;

    uint64_t seq;
    enum mjpeg_result call_result; /* first problem of the current call */
    struct mjpeg_stats stats;
};

const char *mjpeg_result_str(enum mjpeg_result result)
{
    switch (result) {
    case MJPEG_OK: return "ok";
    case MJPEG_NO_FRAME: return "no new frame";
    case MJPEG_ERR_INVALID: return "invalid argument";
    case MJPEG_ERR_NOMEM: return "out of memory";
    case MJPEG_ERR_NOT_MULTIPART: return "not a multipart content type";
    case MJPEG_ERR_BOUNDARY: return "missing or invalid multipart boundary";
    case MJPEG_ERR_FRAME_TOO_BIG: return "frame larger than the limit";
    case MJPEG_ERR_PART_HEADER: return "malformed part header";
    case MJPEG_ERR_DELIMITER: return "malformed boundary line";
    case MJPEG_ERR_EMPTY_PART: return "empty part";
    case MJPEG_ERR_TRUNCATED: return "stream ended inside a part";
    case MJPEG_RESULT_MAX: break;
    }
    return "unknown result";
}

static void note_error(struct mjpeg *parser, enum mjpeg_result error)
{
    struct mjpeg_stats *stats = &parser->stats;

    stats->errors++;
    stats->last_error = error;
    switch (error) {
    case MJPEG_ERR_FRAME_TOO_BIG: stats->too_big++; break;
    case MJPEG_ERR_PART_HEADER: stats->bad_headers++; break;
    case MJPEG_ERR_DELIMITER: stats->bad_delimiters++; break;
    case MJPEG_ERR_EMPTY_PART: stats->empty_parts++; break;
    case MJPEG_ERR_NOMEM: stats->nomem++; break;
    case MJPEG_ERR_TRUNCATED: stats->truncated++; break;
    default: break;
    }
    if (parser->call_result == MJPEG_OK)
        parser->call_result = error;
}


enum mjpeg_result mjpeg_new(const char *content_type, size_t max_frame,
                            struct mjpeg **ret_parser)
{
    enum mjpeg_result result = MJPEG_OK;
    struct mjpeg *parser = NULL;
    char media_type[HTTPRESP_MEDIA_TYPE_SIZE];
    char boundary[HTTPRESP_BOUNDARY_SIZE];
    const char *core;
    size_t core_len;
    size_t k;

    if (!content_type || !ret_parser || max_frame > MJPEG_MAX_FRAME_LIMIT) {
        result = MJPEG_ERR_INVALID;
        goto out;
    }
    if (max_frame == 0)
        max_frame = MJPEG_DEFAULT_MAX_FRAME;
    if (httpresp_content_type(content_type, media_type, sizeof(media_type), boundary,
                              sizeof(boundary)) != HTTPRESP_OK) {
        /* Tell "not multipart at all" from "multipart with a bad boundary". */
        while (httpresp_is_ows((unsigned char)*content_type))
            content_type++;
        result = strncasecmp(content_type, "multipart/", 10) == 0 ? MJPEG_ERR_BOUNDARY
                                                                   : MJPEG_ERR_NOT_MULTIPART;
        goto out;
    }
    if (strncmp(media_type, "multipart/", 10) != 0) {
        result = MJPEG_ERR_NOT_MULTIPART;
        goto out;
    }
    core = boundary;
    if (strncmp(core, "--", 2) == 0)
        core += 2;
    core_len = strlen(core);
    if (core_len == 0) {
        result = MJPEG_ERR_BOUNDARY;
        goto out;
    }

    parser = calloc(1, sizeof(*parser));
    if (!parser) {
        result = MJPEG_ERR_NOMEM;
        goto out;
    }
    parser->state = ST_SEEK;
    parser->max_frame = max_frame;
    parser->scan_limit = max_frame + MJPEG_SCAN_SLACK;
    parser->needle[0] = '-';
    parser->needle[1] = '-';
    memcpy(parser->needle + 2, core, core_len + 1);
    parser->needle_len = core_len + 2;
    /* fail[i]: length of the longest proper prefix of needle[0..i] that is
     * also a suffix of it. */
    parser->fail[0] = 0;
    k = 0;
    for (size_t i = 1; i < parser->needle_len; i++) {
        while (k > 0 && parser->needle[i] != parser->needle[k])
            k = parser->fail[k - 1];
        if (parser->needle[i] == parser->needle[k])
            k++;
        parser->fail[i] = k;
    }
    parser->stats.max_frame = max_frame;
    *ret_parser = parser;
    parser = NULL;

out:
    free(parser);
    return result;
}

struct mjpeg_frame *mjpeg_frame_free(struct mjpeg_frame *frame)
{
    if (frame) {
        free(frame->data);
        free(frame);
    }
    return NULL;
}

struct mjpeg *mjpeg_free(struct mjpeg *parser)
{
    if (!parser)
        return NULL;
    mjpeg_frame_free(parser->latest);
    free(parser->work);
    free(parser);
    return NULL;
}

/* Runs the matcher over data until the boundary string is complete or data
 * ends. Returns the bytes consumed (up to and including the end of the
 * string when *ret_found). */
static size_t scan(struct mjpeg *parser, const unsigned char *data, size_t len, bool *ret_found)
{
    const unsigned char *needle = parser->needle;
    size_t match = parser->match;
    size_t i = 0;

    *ret_found = false;
    while (i < len) {
        if (match == 0) {
            /* Fast path: nothing matched yet, jump to the next '-'. */
            const unsigned char *hit = memchr(data + i, needle[0], len - i);
            if (!hit) {
                i = len;
                break;
            }
            i = (size_t)(hit - data) + 1;
            match = 1;
            continue; /* needle_len >= 3: one byte never completes it */
        }
        while (match > 0 && needle[match] != data[i])
            match = parser->fail[match - 1];
        if (needle[match] == data[i])
            match++;
        i++;
        if (match == parser->needle_len) {
            *ret_found = true;
            match = 0;
            break;
        }
    }
    parser->match = match;
    return i;
}

/* Makes room for needed bytes of part body (needed <= scan_limit). */
static bool reserve(struct mjpeg *parser, size_t needed)
{
    unsigned char *grown;
    size_t cap;

    if (needed <= parser->work_cap)
        return true;
    cap = parser->work_cap ? parser->work_cap * 2 : MJPEG_INITIAL_BUFFER;
    if (cap > parser->scan_limit)
        cap = parser->scan_limit;
    if (cap < needed)
        cap = needed;
    grown = realloc(parser->work, cap);
    if (!grown)
        return false;
    parser->work = grown;
    parser->work_cap = cap;
    return true;
}

/* The part in work[0, len) is complete: make it the latest frame. */
static void publish(struct mjpeg *parser, size_t len)
{
    struct mjpeg_frame *frame;
    size_t cap = parser->work_cap;

    frame = malloc(sizeof(*frame));
    if (!frame) {
        note_error(parser, MJPEG_ERR_NOMEM);
        return;
    }
    frame->seq = ++parser->seq;
    frame->len = len;
    memcpy(frame->content_type, parser->part_type, sizeof(frame->content_type));
    frame->data = parser->work;
    parser->work = NULL;
    parser->work_cap = 0;
    if (parser->latest) {
        /* Not taken in time: recycle its buffer for the next part. */
        parser->stats.frames_replaced++;
        parser->work = parser->latest->data;
        parser->work_cap = parser->latest_cap;
        free(parser->latest);
    }
    parser->latest = frame;
    parser->latest_cap = cap;
    parser->stats.frames++;
}

static void start_seek(struct mjpeg *parser)
{
    parser->state = ST_SEEK;
    parser->match = 0;
    parser->work_len = 0;
}

static void start_part(struct mjpeg *parser)
{
    parser->state = ST_PART_HEAD;
    parser->head_len = 0;
    parser->line_start = 0;
    parser->have_length = false;
    parser->length = 0;
    parser->part_type[0] = '\0';
    parser->work_len = 0;
}

static void start_body(struct mjpeg *parser)
{
    parser->work_len = 0;
    parser->match = 0;
    if (!parser->have_length) {
        parser->state = ST_BODY_SCAN;
        return;
    }
    if (parser->length == 0) {
        note_error(parser, MJPEG_ERR_EMPTY_PART);
        start_seek(parser);
        return;
    }
    if (parser->length > parser->max_frame) {
        note_error(parser, MJPEG_ERR_FRAME_TOO_BIG);
        start_seek(parser);
        return;
    }
    if (!reserve(parser, (size_t)parser->length)) {
        note_error(parser, MJPEG_ERR_NOMEM);
        start_seek(parser);
        return;
    }
    parser->remaining = (size_t)parser->length;
    parser->state = ST_BODY_LENGTH;
}

/* Does line (len bytes) hold the boundary string, in either form, followed
 * by transport padding? Sets *ret_close for a close delimiter. */
static bool is_delimiter_line(const struct mjpeg *parser, const char *line, size_t len,
                              bool *ret_close)
{
    size_t at = 0;

    if (len >= 2 + parser->needle_len && memcmp(line, "--", 2) == 0 &&
        memcmp(line + 2, parser->needle, parser->needle_len) == 0)
        at = 2 + parser->needle_len;
    else if (len >= parser->needle_len && memcmp(line, parser->needle, parser->needle_len) == 0)
        at = parser->needle_len;
    else
        return false;
    *ret_close = len - at >= 2 && line[at] == '-' && line[at + 1] == '-';
    if (*ret_close)
        at += 2;
    while (at < len && httpresp_is_ows((unsigned char)line[at]))
        at++;
    return at == len;
}

/* One complete part header line, without its CRLF, NUL-terminated. */
static enum mjpeg_result part_header_line(struct mjpeg *parser, char *line, size_t len)
{
    size_t colon;
    char *value;
    size_t value_len;

    for (colon = 0; colon < len && line[colon] != ':'; colon++)
        if (!httpresp_is_tchar((unsigned char)line[colon]))
            return MJPEG_ERR_PART_HEADER;
    if (colon == 0 || colon == len)
        return MJPEG_ERR_PART_HEADER;
    line[colon] = '\0';
    value = line + colon + 1;
    value_len = len - colon - 1;
    while (value_len > 0 && httpresp_is_ows((unsigned char)value[0])) {
        value++;
        value_len--;
    }
    while (value_len > 0 && httpresp_is_ows((unsigned char)value[value_len - 1]))
        value_len--;
    value[value_len] = '\0';

    if (strcasecmp(line, "Content-Length") == 0) {
        uint64_t length = 0;
        if (httpresp_parse_content_length(value, value_len, &length) != HTTPRESP_OK)
            return MJPEG_ERR_PART_HEADER;
        if (parser->have_length && parser->length != length)
            return MJPEG_ERR_PART_HEADER;
        parser->have_length = true;
        parser->length = length;
    } else if (strcasecmp(line, "Content-Type") == 0 && parser->part_type[0] == '\0') {
        char media_type[HTTPRESP_MEDIA_TYPE_SIZE];
        char boundary[HTTPRESP_BOUNDARY_SIZE];
        /* A part type we cannot read is not worth dropping the frame for. */
        if (httpresp_content_type(value, media_type, sizeof(media_type), boundary,
                                  sizeof(boundary)) == HTTPRESP_OK &&
            strlen(media_type) < sizeof(parser->part_type))
            memcpy(parser->part_type, media_type, strlen(media_type) + 1);
    }
    return MJPEG_OK;
}

/* Part header bytes; returns the bytes consumed. Leaves ST_PART_HEAD when
 * the headers end or turn out to be bad. */
static size_t feed_part_head(struct mjpeg *parser, const unsigned char *data, size_t len)
{
    size_t i;

    for (i = 0; i < len && parser->state == ST_PART_HEAD; i++) {
        unsigned char c = data[i];
        size_t end;
        bool close = false;
        enum mjpeg_result result;

        if (parser->head_len == 0 && c == 0xff) {
            /* No headers at all: this is the body (a JPEG SOI). */
            start_body(parser);
            return i; /* the body state takes this byte */
        }
        if (c == '\0' || parser->head_len >= MJPEG_MAX_PART_HEAD) {
            note_error(parser, MJPEG_ERR_PART_HEADER);
            start_seek(parser);
            return i;
        }
        parser->head[parser->head_len++] = (char)c;
        if (c != '\n')
            continue;
        end = parser->head_len - 1;
        if (end > parser->line_start && parser->head[end - 1] == '\r')
            end--;
        parser->head[end] = '\0';
        if (end == parser->line_start) {
            start_body(parser);
            return i + 1;
        }
        if (is_delimiter_line(parser, parser->head + parser->line_start,
                              end - parser->line_start, &close)) {
            /* A boundary line where headers were expected: the part was
             * empty. Start over with the part that follows. */
            note_error(parser, MJPEG_ERR_EMPTY_PART);
            if (close)
                start_seek(parser);
            else
                start_part(parser);
            return i + 1;
        }
        result = part_header_line(parser, parser->head + parser->line_start,
                                  end - parser->line_start);
        if (result != MJPEG_OK) {
            note_error(parser, result);
            start_seek(parser);
            return i + 1;
        }
        parser->line_start = parser->head_len;
    }
    return i;
}

/* Drops the part being collected (too big, or no memory) after used more
 * bytes of it. The matcher keeps its state: the boundary may already be
 * half seen. Returns used. */
static size_t drop_scanned_part(struct mjpeg *parser, size_t used, bool found)
{
    parser->stats.skipped_bytes += parser->work_len + used;
    parser->work_len = 0;
    parser->state = found ? ST_AFTER_DELIM : ST_SEEK;
    return used;
}

/* A body without Content-Length; returns the bytes consumed. */
static size_t feed_body_scan(struct mjpeg *parser, const unsigned char *data, size_t len)
{
    bool found = false;
    size_t used = scan(parser, data, len, &found);
    size_t body;

    if (parser->work_len + used > parser->scan_limit) {
        note_error(parser, MJPEG_ERR_FRAME_TOO_BIG);
        return drop_scanned_part(parser, used, found);
    }
    if (!reserve(parser, parser->work_len + used)) {
        note_error(parser, MJPEG_ERR_NOMEM);
        return drop_scanned_part(parser, used, found);
    }
    memcpy(parser->work + parser->work_len, data, used);
    parser->work_len += used;
    if (!found)
        return used;

    /* Cut off the boundary string, the "--" of a "----frame" line and the
     * line break before them. */
    body = parser->work_len - parser->needle_len;
    if (body >= 2 && parser->work[body - 1] == '-' && parser->work[body - 2] == '-' &&
        (body == 2 || parser->work[body - 3] == '\n'))
        body -= 2;
    if (body >= 1 && parser->work[body - 1] == '\n') {
        body--;
        if (body >= 1 && parser->work[body - 1] == '\r')
            body--;
    }
    if (body == 0)
        note_error(parser, MJPEG_ERR_EMPTY_PART);
    else if (body > parser->max_frame)
        note_error(parser, MJPEG_ERR_FRAME_TOO_BIG);
    else
        publish(parser, body);
    parser->work_len = 0;
    parser->state = ST_AFTER_DELIM;
    return used;
}

/* One byte after the boundary string. Returns the bytes consumed: 0 when
 * the byte must be looked at again in ST_SEEK. */
static size_t feed_delimiter_tail(struct mjpeg *parser, unsigned char c)
{
    switch (parser->state) {
    case ST_AFTER_DELIM:
        if (c == '-') {
            parser->state = ST_AFTER_DASH;
            return 1;
        }
        /* fall through */
    case ST_PADDING:
        if (httpresp_is_ows(c)) {
            parser->state = ST_PADDING;
            return 1;
        }
        if (c == '\r') {
            parser->state = ST_DELIM_CR;
            return 1;
        }
        if (c == '\n') {
            start_part(parser);
            return 1;
        }
        break;
    case ST_AFTER_DASH:
        if (c == '-') {
            /* Close delimiter: what follows is epilogue, skipped until a
             * boundary string shows up again. */
            start_seek(parser);
            return 1;
        }
        break;
    case ST_DELIM_CR:
        if (c == '\n') {
            start_part(parser);
            return 1;
        }
        break;
    default:
        break;
    }
    note_error(parser, MJPEG_ERR_DELIMITER);
    start_seek(parser);
    return 0;
}

enum mjpeg_result mjpeg_feed(struct mjpeg *parser, const void *data, size_t len)
{
    const unsigned char *bytes = data;
    size_t pos = 0;

    if (!parser || (!data && len > 0))
        return MJPEG_ERR_INVALID;
    parser->call_result = MJPEG_OK;
    parser->stats.bytes += len;
    while (pos < len) {
        const unsigned char *rest = bytes + pos;
        size_t left = len - pos;
        size_t used;
        bool found = false;

        switch (parser->state) {
        case ST_SEEK:
            used = scan(parser, rest, left, &found);
            parser->stats.skipped_bytes += used;
            if (found)
                parser->state = ST_AFTER_DELIM;
            break;
        case ST_AFTER_DELIM:
        case ST_PADDING:
        case ST_AFTER_DASH:
        case ST_DELIM_CR:
            used = feed_delimiter_tail(parser, rest[0]);
            break;
        case ST_PART_HEAD:
            used = feed_part_head(parser, rest, left);
            break;
        case ST_BODY_LENGTH:
            used = left < parser->remaining ? left : parser->remaining;
            memcpy(parser->work + parser->work_len, rest, used);
            parser->work_len += used;
            parser->remaining -= used;
            if (parser->remaining == 0) {
                publish(parser, parser->work_len);
                start_seek(parser);
            }
            break;
        case ST_BODY_SCAN:
            used = feed_body_scan(parser, rest, left);
            break;
        default:
            used = left; /* unreachable */
            break;
        }
        pos += used;
    }
    return parser->call_result;
}

enum mjpeg_result mjpeg_finish(struct mjpeg *parser)
{
    enum mjpeg_result result = MJPEG_OK;

    if (!parser)
        return MJPEG_ERR_INVALID;
    parser->call_result = MJPEG_OK;
    if (parser->state == ST_BODY_LENGTH || parser->state == ST_BODY_SCAN ||
        (parser->state == ST_PART_HEAD && parser->head_len > 0)) {
        note_error(parser, MJPEG_ERR_TRUNCATED);
        result = MJPEG_ERR_TRUNCATED;
    }
    start_seek(parser);
    return result;
}

enum mjpeg_result mjpeg_take_frame(struct mjpeg *parser, struct mjpeg_frame **ret_frame)
{
    if (!parser || !ret_frame)
        return MJPEG_ERR_INVALID;
    if (!parser->latest)
        return MJPEG_NO_FRAME;
    *ret_frame = parser->latest;
    parser->latest = NULL;
    parser->latest_cap = 0;
    parser->stats.frames_taken++;
    return MJPEG_OK;
}

void mjpeg_get_stats(const struct mjpeg *parser, struct mjpeg_stats *ret_stats)
{
    if (!parser || !ret_stats)
        return;
    *ret_stats = parser->stats;
    ret_stats->memory = parser->work_cap + parser->latest_cap;
}

const char *mjpeg_delimiter(const struct mjpeg *parser)
{
    return parser ? (const char *)parser->needle : NULL;
}
