/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * fdio: whole writes to a blocking file descriptor, and whole reads of a
 * regular file with a size limit (the helper's configuration, the farm
 * file and tsd-helper --bench's frame all read through it).
 */
#ifndef TSD_FDIO_H
#define TSD_FDIO_H

#include <stdbool.h>
#include <stddef.h>

/* Writes all of len bytes, retrying on EINTR and short writes; false with
 * errno on failure (EIO when the descriptor takes nothing). */
bool write_all(int fd, const void *data, size_t len);

enum fdio_read_result {
    FDIO_READ_OK = 0,
    FDIO_READ_ERR_IO,      /* cannot be opened or read, or not a regular file */
    FDIO_READ_ERR_TOO_BIG, /* larger than the limit */
    FDIO_READ_ERR_NOMEM,
};

/* Reads all of the regular file at path, at most max_bytes, into a
 * malloc()ed buffer: *ret_data holds *ret_len bytes and a NUL after them
 * (text can be used as a string). Otherwise the reason, naming path, is in
 * reterr ("cannot read PATH: ...", "PATH is not a regular file", "PATH is N
 * bytes, more than the M allowed"). A file that grows while it is read is
 * read to its new end, within the limit. */
enum fdio_read_result read_file_whole(const char *path, size_t max_bytes, char **ret_data,
                                      size_t *ret_len, char *reterr, size_t reterr_len);

#endif
