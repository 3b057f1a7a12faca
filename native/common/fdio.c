/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "fdio.h"

#include <errno.h>
#include <unistd.h>

bool write_all(int fd, const void *data, size_t len)
{
    const unsigned char *next = data;

    while (len > 0) {
        ssize_t n = write(fd, next, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (n == 0) {
            errno = EIO;
            return false;
        }
        next += n;
        len -= (size_t)n;
    }
    return true;
}
