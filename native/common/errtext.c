/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "errtext.h"

/* strerror_r is the GNU variant (returns a char *, may ignore buf) under
 * _GNU_SOURCE on glibc and the XSI one (returns int, fills buf) elsewhere:
 * pick whichever this libc has. */
#define TSD_ERRNO_TEXT(err, buf, len)                                            \
    _Generic(strerror_r((err), (buf), (len)),                                    \
        char *: strerror_r((err), (buf), (len)),                                 \
        default: ((void)strerror_r((err), (buf), (len)), (const char *)(buf)))

const char *errno_text(int err, char *buf, size_t len)
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

void set_reason(char *reterr, size_t reterr_len, const char *fmt, ...)
{
    va_list args;

    if (!reterr || reterr_len == 0)
        return;
    va_start(args, fmt);
    vsnprintf(reterr, reterr_len, fmt, args);
    va_end(args);
}

int file_is_readable(const char *label, const char *path, char *reterr, size_t reterr_len)
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
