/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errtext.h"

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

enum fdio_read_result read_file_whole(const char *path, size_t max_bytes, char **ret_data,
                                      size_t *ret_len, char *reterr, size_t reterr_len)
{
    enum fdio_read_result result = FDIO_READ_ERR_IO;
    char errbuf[128];
    char *data = NULL;
    struct stat st;
    size_t have = 0;
    size_t room;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0 || fstat(fd, &st) != 0) {
        set_reason(reterr, reterr_len, "cannot read %s: %s", path,
                   errno_text(errno, errbuf, sizeof(errbuf)));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 0) {
        set_reason(reterr, reterr_len, "%s is not a regular file", path);
        goto out;
    }
    if ((unsigned long long)st.st_size > (unsigned long long)max_bytes) {
        set_reason(reterr, reterr_len, "%s is %llu bytes, more than the %zu allowed", path,
                   (unsigned long long)st.st_size, max_bytes);
        result = FDIO_READ_ERR_TOO_BIG;
        goto out;
    }
    /* Its size now and one byte more, to see whether it grew. */
    room = (size_t)st.st_size + 1;
    data = malloc(room + 1);
    if (!data) {
        set_reason(reterr, reterr_len, "out of memory for %s", path);
        result = FDIO_READ_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n;
        char *bigger;

        if (have == room) {
            if (room > max_bytes)
                break; /* have > max_bytes: refused below */
            room = room > max_bytes - room ? max_bytes + 1 : room * 2;
            bigger = realloc(data, room + 1);
            if (!bigger) {
                set_reason(reterr, reterr_len, "out of memory for %s", path);
                result = FDIO_READ_ERR_NOMEM;
                goto out;
            }
            data = bigger;
        }
        n = read(fd, data + have, room - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            set_reason(reterr, reterr_len, "cannot read %s: %s", path,
                       errno_text(errno, errbuf, sizeof(errbuf)));
            goto out;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    if (have > max_bytes) {
        set_reason(reterr, reterr_len, "%s grew past the %zu bytes allowed while it was read", path,
                   max_bytes);
        result = FDIO_READ_ERR_TOO_BIG;
        goto out;
    }
    data[have] = '\0';
    *ret_data = data;
    *ret_len = have;
    data = NULL;
    result = FDIO_READ_OK;

out:
    if (fd >= 0)
        close(fd);
    free(data);
    return result;
}
