/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * fdio: whole writes to a blocking file descriptor.
 */
#ifndef TSD_FDIO_H
#define TSD_FDIO_H

#include <stdbool.h>
#include <stddef.h>

/* Writes all of len bytes, retrying on EINTR and short writes; false with
 * errno on failure (EIO when the descriptor takes nothing). */
bool write_all(int fd, const void *data, size_t len);

#endif
