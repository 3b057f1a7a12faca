/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * errtext: the text of an errno value, thread-safe (never strerror()).
 */
#ifndef TSD_ERRTEXT_H
#define TSD_ERRTEXT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* strerror_r is the GNU variant (returns a char *, may ignore buf) under
 * _GNU_SOURCE on glibc and the XSI one (returns int, fills buf) elsewhere:
 * pick whichever this libc has. */
#define TSD_ERRNO_TEXT(err, buf, len)                                            \
    _Generic(strerror_r((err), (buf), (len)),                                    \
        char *: strerror_r((err), (buf), (len)),                                 \
        default: ((void)strerror_r((err), (buf), (len)), (const char *)(buf)))

/* (transfer none) The text for err: static storage or buf. */
static inline const char *errno_text(int err, char *buf, size_t len)
{
    const char *text;

    buf[0] = '\0';
    text = TSD_ERRNO_TEXT(err, buf, len);
    if (!text || !*text) {
        snprintf(buf, len, "error %d", err);
        text = buf;
    }
    return text;
}

/* Writes a reason into an optional reterr buffer (NULL or 0 length: no-op). */
static inline void set_reason(char *reterr, size_t reterr_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void set_reason(char *reterr, size_t reterr_len, const char *fmt, ...)
{
    va_list args;

    if (!reterr || reterr_len == 0)
        return;
    va_start(args, fmt);
    vsnprintf(reterr, reterr_len, fmt, args);
    va_end(args);
}

/* 1 if the file at path can be opened for reading; otherwise 0, with
 * "<label> <path>: <why>" in reterr. Used to refuse a CA file up front: TLS
 * libraries only fail later, and less clearly. */
static inline int file_is_readable(const char *label, const char *path,
                                   char *reterr, size_t reterr_len)
{
    char why[128];
    FILE *file = fopen(path, "re");

    if (!file) {
        set_reason(reterr, reterr_len, "%s %s: %s", label, path,
                   errno_text(errno, why, sizeof(why)));
        return 0;
    }
    fclose(file);
    return 1;
}

#endif
