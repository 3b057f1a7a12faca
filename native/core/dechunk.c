/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "dechunk.h"

#include <string.h>

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void dechunk_start(struct dechunk *d)
{
    d->state = CH_SIZE;
    d->left = 0;
    d->digits = 0;
    d->line_len = 0;
}

static void chunk_size_done(struct dechunk *d)
{
    if (d->left == 0) {
        d->state = CH_TRAILER;
        d->line_len = 0;
        d->trailer_len = 0;
    } else {
        d->state = CH_DATA;
    }
}

bool dechunk_feed(struct dechunk *d, unsigned char *data, size_t len, size_t *ret_out)
{
    size_t in = 0;
    size_t out = 0;

    while (in < len) {
        unsigned char c = data[in];
        int value;
        size_t n;

        switch (d->state) {
        case CH_SIZE:
            value = hex_value(c);
            in++;
            if (value >= 0) {
                if (d->digits >= 15)
                    return false;
                d->left = d->left * 16u + (uint64_t)value;
                d->digits++;
            } else if (d->digits == 0) {
                return false;
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = CH_EXT;
            } else if (c == '\r') {
                d->state = CH_SIZE_LF;
            } else if (c == '\n') {
                chunk_size_done(d);
            } else {
                return false;
            }
            break;
        case CH_EXT:
            in++;
            if (c == '\n')
                chunk_size_done(d);
            else if (++d->line_len > DECHUNK_LINE_MAX || (c < 0x20 && c != '\t' && c != '\r'))
                return false;
            break;
        case CH_SIZE_LF:
            in++;
            if (c != '\n')
                return false;
            chunk_size_done(d);
            break;
        case CH_DATA:
            n = len - in;
            if (n > d->left)
                n = (size_t)d->left;
            memmove(data + out, data + in, n);
            out += n;
            in += n;
            d->left -= n;
            if (d->left == 0)
                d->state = CH_DATA_CR;
            break;
        case CH_DATA_CR:
            in++;
            if (c == '\r')
                d->state = CH_DATA_LF;
            else if (c == '\n')
                dechunk_start(d);
            else
                return false;
            break;
        case CH_DATA_LF:
            in++;
            if (c != '\n')
                return false;
            dechunk_start(d);
            break;
        case CH_TRAILER:
            in++;
            if (++d->trailer_len > DECHUNK_TRAILER_MAX)
                return false;
            if (c == '\n') {
                if (d->line_len == 0)
                    d->state = CH_DONE;
                d->line_len = 0;
            } else if (c != '\r') {
                d->line_len++;
            }
            break;
        case CH_DONE:
            in = len;
            break;
        }
    }
    *ret_out = out;
    return true;
}

bool dechunk_done(const struct dechunk *d)
{
    return d->state == CH_DONE;
}
