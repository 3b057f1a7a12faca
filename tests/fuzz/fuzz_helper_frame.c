/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Fuzz target for the helper's frame parser (helper/frame.c).
 *
 * Input: byte 0 picks max_payload, byte 1 seeds the chunk sizes, the rest is
 * the stream. The stream is parsed twice -- in one piece and in random
 * chunks -- and both parses must report the same events and the same final
 * result; every call must consume at least one byte and no more than given,
 * and no frame may carry more than max_payload bytes.
 *
 * frame.c is compiled into this file (not linked from a library) so that
 * the libFuzzer build instruments it; see tests/fuzz/meson.build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../helper/frame.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVENTS 4096u

struct trace {
    size_t count;
    uint64_t digest; /* over every event's kind, header and payload */
    enum frame_result result;
    bool idle;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

static void run(const uint8_t *data, size_t size, size_t max_payload, uint32_t seed,
                struct trace *trace)
{
    struct frame_parser *parser = NULL;
    size_t off = 0;

    memset(trace, 0, sizeof(*trace));
    if (frame_parser_new(max_payload, &parser) != FRAME_OK)
        abort();
    while (off < size) {
        size_t piece = size - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t want = 1 + (seed >> 16) % 64u;
            if (want < piece)
                piece = want;
        }
        size_t done = 0;
        while (done < piece) {
            struct frame_event event = {0};
            size_t used = 0;
            enum frame_result r =
                frame_parser_feed(parser, data + off + done, piece - done, &used, &event);
            if (r != FRAME_OK) {
                struct frame_event again = {0};
                /* Sticky. */
                if (frame_parser_feed(parser, data, size, &used, &again) != r)
                    abort();
                trace->result = r;
                goto out;
            }
            if (used == 0 || used > piece - done)
                abort();
            done += used;
            if (event.kind == FRAME_EVENT_NONE)
                continue;
            if (event.kind == FRAME_EVENT_FRAME) {
                if (event.header.length > max_payload)
                    abort();
                if ((event.payload != NULL) != (event.header.length > 0))
                    abort();
                for (uint32_t i = 0; i < event.header.length; i++)
                    trace->digest = mix(trace->digest, event.payload[i]);
            } else if (event.kind == FRAME_EVENT_OVERSIZED) {
                if (event.header.length <= max_payload)
                    abort();
            } else {
                abort();
            }
            if (event.header.version != FRAME_VERSION || event.header.reserved != 0)
                abort();
            trace->digest = mix(trace->digest, event.kind);
            trace->digest = mix(trace->digest, event.header.type);
            trace->digest = mix(trace->digest, event.header.id);
            trace->digest = mix(trace->digest, event.header.length);
            trace->count++;
        }
        off += piece;
    }
    trace->idle = frame_parser_idle(parser);
    if (frame_parser_buffered_capacity(parser) > (max_payload > 4096 ? max_payload : 4096))
        abort();
out:
    frame_parser_free(parser);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[] = {0, 16, 300, 65536};
    struct trace whole;
    struct trace chunked;
    size_t max_payload;
    uint32_t seed;

    if (size < 2)
        return 0;
    max_payload = limits[data[0] % 4u];
    seed = 1u + data[1];
    data += 2;
    size -= 2;
    run(data, size, max_payload, 0, &whole);
    run(data, size, max_payload, seed, &chunked);
    if (whole.count != chunked.count || whole.digest != chunked.digest ||
        whole.result != chunked.result || whole.idle != chunked.idle)
        abort();
    return 0;
}
