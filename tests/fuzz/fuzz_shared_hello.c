/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the hello that a client of tsd-helper-shared sends first
 * (frame_hello_parse() in helper/frame.c; helper/shared.c acts on it).
 *
 * Input: the hello's payload. Checked against the rule itself: it is
 * accepted exactly when it has both times and a path of 1..PATH_MAX-1
 * bytes without a NUL, and both times are 1..max; then the fields are the
 * payload's bytes, the path NUL-terminated. A refused hello leaves the
 * output untouched.
 *
 * frame.c is compiled into this file so that the libFuzzer build
 * instruments it; see tests/fuzz/meson.build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../helper/frame.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MS 3600000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct frame_hello hello;
    static struct frame_hello untouched;
    enum frame_hello_result result;
    uint32_t deadline = size >= 4 ? get_u32le(data) : 0;
    uint32_t start = size >= 8 ? get_u32le(data + 4) : 0;
    size_t path_len = size > 8 ? size - 8 : 0;
    int shaped = size >= 9 && path_len < PATH_MAX && !memchr(data + 8, '\0', path_len);
    int in_range = deadline >= 1 && deadline <= MAX_MS && start >= 1 && start <= MAX_MS;

    memset(&hello, 0xa5, sizeof(hello));
    memset(&untouched, 0xa5, sizeof(untouched));
    result = frame_hello_parse(data, size, MAX_MS, &hello);
    if (!shaped) {
        if (result != FRAME_HELLO_MALFORMED)
            abort();
    } else if (!in_range) {
        if (result != FRAME_HELLO_OUT_OF_RANGE)
            abort();
    } else if (result != FRAME_HELLO_OK) {
        abort();
    }
    if (result != FRAME_HELLO_OK) {
        if (memcmp(&hello, &untouched, sizeof(hello)) != 0)
            abort();
        return 0;
    }
    if (hello.deadline_ms != deadline || hello.start_timeout_ms != start ||
        strlen(hello.config_path) != path_len || memcmp(hello.config_path, data + 8, path_len) != 0)
        abort();
    return 0;
}
