/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "reply.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct out {
    char *buf;
    size_t cap;
    size_t len;
    bool full; /* something did not fit */
};

const char *reply_result_str(enum reply_result result)
{
    switch (result) {
    case REPLY_OK: return "ok";
    case REPLY_ERR_INVALID: return "invalid argument";
    case REPLY_ERR_NOSPACE: return "reply buffer too small";
    case REPLY_RESULT_MAX: break;
    }
    return "unknown result";
}

static void put_raw(struct out *o, const char *text, size_t len)
{
    if (o->full || len >= o->cap - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, text, len);
    o->len += len;
    o->buf[o->len] = '\0';
}

static void put_str(struct out *o, const char *text)
{
    put_raw(o, text, strlen(text));
}

__attribute__((format(printf, 2, 3)))
static void put_fmt(struct out *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        o->full = true;
        return;
    }
    put_raw(o, tmp, (size_t)n);
}

/* A number with at most 4 decimals and no trailing zeros ("0.53", "12", "-1.5"). */
static void put_number(struct out *o, double value)
{
    char tmp[64];
    int n;

    if (!isfinite(value))
        value = 0.0;
    n = snprintf(tmp, sizeof(tmp), "%.4f", value);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        o->full = true;
        return;
    }
    if (strchr(tmp, '.')) {
        while (n > 0 && tmp[n - 1] == '0')
            n--;
        if (n > 0 && tmp[n - 1] == '.')
            n--;
    }
    tmp[n] = '\0';
    if (strcmp(tmp, "-0") == 0)
        put_str(o, "0");
    else
        put_raw(o, tmp, (size_t)n);
}

/* A JSON string of at most max_bytes input bytes (cut there). */
static void put_json_string(struct out *o, const char *text, size_t max_bytes)
{
    static const char hex[] = "0123456789abcdef";
    char esc[7];

    put_raw(o, "\"", 1);
    for (size_t i = 0; text[i] != '\0' && i < max_bytes; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put_raw(o, esc, 2);
        } else if (c == '\n') {
            put_raw(o, "\\n", 2);
        } else if (c == '\t') {
            put_raw(o, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xfu];
            put_raw(o, esc, 6);
        } else if (c > 0x7e) {
            put_raw(o, "?", 1);
        } else {
            put_raw(o, (const char *)&c, 1);
        }
    }
    put_raw(o, "\"", 1);
}

static long to_pixels(float fraction, int side)
{
    double value = floor((double)fraction * side + 0.5);
    if (!(value >= 0.0))
        return 0;
    if (value > side)
        return side;
    return (long)value;
}

enum reply_result reply_detections(char *buf, size_t cap, uint32_t id, double ms,
                                   int frame_width, int frame_height,
                                   const struct infer_detection *detections, size_t count,
                                   const char *const *class_names, size_t num_classes,
                                   size_t *ret_len)
{
    enum reply_result result = REPLY_OK;
    struct out o = {.buf = buf, .cap = cap};

    if (!buf || cap == 0 || (!detections && count > 0) || !class_names || !ret_len ||
        frame_width < 0 || frame_height < 0) {
        result = REPLY_ERR_INVALID;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        if (detections[i].class_id < 0 || (size_t)detections[i].class_id >= num_classes ||
            !class_names[detections[i].class_id]) {
            result = REPLY_ERR_INVALID;
            goto out;
        }
    }
    buf[0] = '\0';
    put_fmt(&o, "{\"id\":%lu,\"ms\":", (unsigned long)id);
    put_number(&o, ms);
    put_fmt(&o, ",\"w\":%d,\"h\":%d,\"detections\":[", frame_width, frame_height);
    for (size_t i = 0; i < count; i++) {
        const struct infer_detection *d = &detections[i];
        long x = to_pixels(d->x, frame_width);
        long y = to_pixels(d->y, frame_height);
        long x1 = to_pixels(d->x + d->w, frame_width);
        long y1 = to_pixels(d->y + d->h, frame_height);
        put_str(&o, i ? ",{\"class\":" : "{\"class\":");
        put_json_string(&o, class_names[d->class_id], INFER_MAX_CLASS_NAME);
        put_str(&o, ",\"confidence\":");
        put_number(&o, d->confidence);
        put_fmt(&o, ",\"box\":[%ld,%ld,%ld,%ld]", x, y, x1 - x, y1 - y);
        if (d->signature_len > 0) {
            put_str(&o, ",\"sig\":[");
            for (int k = 0; k < d->signature_len && k < INFER_SIGNATURE_DIMS; k++) {
                put_str(&o, k ? "," : "");
                put_number(&o, d->signature[k]);
            }
            put_str(&o, "]");
        }
        put_str(&o, "}");
    }
    put_str(&o, "]}");
    if (o.full) {
        result = REPLY_ERR_NOSPACE;
        goto out;
    }
    *ret_len = o.len;

out:
    return result;
}

enum reply_result reply_error(char *buf, size_t cap, uint32_t id, const char *message,
                              size_t *ret_len)
{
    enum reply_result result = REPLY_OK;
    struct out o = {.buf = buf, .cap = cap};

    if (!buf || cap == 0 || !message || !ret_len) {
        result = REPLY_ERR_INVALID;
        goto out;
    }
    buf[0] = '\0';
    put_fmt(&o, "{\"id\":%lu,\"error\":", (unsigned long)id);
    put_json_string(&o, message, REPLY_MAX_ERROR);
    put_str(&o, "}");
    if (o.full) {
        result = REPLY_ERR_NOSPACE;
        goto out;
    }
    *ret_len = o.len;

out:
    return result;
}
