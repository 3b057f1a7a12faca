/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the layer rule (native/core/layers.c): the bytes are a
 * G-code file, fed line by line as OctoPrint sends them and counted whole
 * as layers_count_file() reads it; both must agree, and a layer number
 * never falls. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct layer_counter counter;
    const char *p = (const char *)data;
    const char *end = p + size;
    char path[] = "/tmp/tsd-fuzz-layers-XXXXXX";
    char reason[256];
    long last = 0;
    long counted = -1;
    int fd;

    layer_counter_init(&counter);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        /* the file reader skips lines longer than this; so must we here */
        long layer = len <= LAYERS_MAX_LINE ? layer_counter_feed(&counter, p, len) : last;

        if (layer < last)
            abort();
        last = layer;
        p += len + (nl ? 1 : 0);
    }
    fd = mkstemp(path);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        unlink(path);
        return 0;
    }
    close(fd);
    if (layers_count_file(path, size + 1, &counted, reason, sizeof(reason)) != LAYERS_OK ||
        counted != last)
        abort();
    unlink(path);
    return 0;
}
