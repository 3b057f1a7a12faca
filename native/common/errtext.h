/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * errtext: the text of an errno value, thread-safe (never strerror()), and
 * the optional reterr buffers that carry a reason to the caller.
 */
#ifndef TSD_ERRTEXT_H
#define TSD_ERRTEXT_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* (transfer none) The text for err: static storage or buf. */
const char *errno_text(int err, char *buf, size_t len);

/* Writes a reason into an optional reterr buffer (NULL or 0 length: no-op). */
void set_reason(char *reterr, size_t reterr_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 if the file at path can be opened for reading; otherwise 0, with
 * "<label> <path>: <why>" in reterr. Used to refuse a CA file up front: TLS
 * libraries only fail later, and less clearly. */
int file_is_readable(const char *label, const char *path, char *reterr, size_t reterr_len);

#endif
