/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * evq: a bounded, thread-safe queue of events.
 *
 * The tunnel's service thread and the helper supervisor produce events; a
 * Python thread consumes them with the GIL released. The queue never grows
 * past its two limits (number of events and bytes of payload): a push into a
 * full queue fails with EVQ_FULL and is counted, it never blocks the producer
 * and never crashes.
 *
 * Closing the queue wakes every waiter. After evq_close() pushes fail with
 * EVQ_CLOSED; pops still drain what is left and then return EVQ_CLOSED.
 *
 * This file is plain C with no Python and no logging.
 */
#ifndef TSD_EVQ_H
#define TSD_EVQ_H

#include <stddef.h>
#include <stdint.h>

enum evq_result {
    EVQ_OK = 0,
    EVQ_FULL,     /* limit reached; the event was dropped and counted */
    EVQ_TIMEOUT,  /* nothing arrived before the deadline */
    EVQ_CLOSED,   /* queue closed (and, for pop, drained) */
    EVQ_NOMEM,    /* allocation failed */
    EVQ_INVALID,  /* bad argument */
    EVQ_RESULT_MAX
};

/* Hard upper bounds for any queue, whatever the caller asks for. */
#define EVQ_MAX_EVENTS_LIMIT 65536u
#define EVQ_MAX_BYTES_LIMIT (64u * 1024u * 1024u)

struct evq;

struct evq_event {
    struct evq_event *next; /* owned by the queue while queued */
    int type;
    size_t len;
    unsigned char data[];   /* len bytes of payload, then a NUL */
};

struct evq_stats {
    size_t depth;      /* events queued now */
    size_t bytes;      /* payload bytes queued now */
    uint64_t pushed;   /* events accepted since creation */
    uint64_t dropped;  /* events refused because a limit was reached */
    size_t max_events;
    size_t max_bytes;
    int closed;
};

const char *evq_result_str(enum evq_result result);

/* (transfer full) Creates a queue holding at most max_events events and
 * max_bytes payload bytes. Both must be > 0 and at most the *_LIMIT above. */
enum evq_result evq_new(size_t max_events, size_t max_bytes, struct evq **ret_queue);

/* Accepts NULL; returns NULL. Frees queued events. Must not be called while
 * another thread still uses the queue: close, join, then free. */
struct evq *evq_free(struct evq *queue);

/* Copies len bytes of data (data may be NULL when len is 0). Never blocks. */
enum evq_result evq_push(struct evq *queue, int type, const void *data, size_t len);

/* Waits up to timeout_ms (negative: forever, 0: poll) for an event.
 * On EVQ_OK, *ret_event is (transfer full) and must be freed with
 * evq_event_free(). On any other result *ret_event is left untouched. */
enum evq_result evq_pop(struct evq *queue, int timeout_ms, struct evq_event **ret_event);

/* Wakes all waiters; idempotent. */
void evq_close(struct evq *queue);

void evq_get_stats(struct evq *queue, struct evq_stats *ret_stats);

/* Accepts NULL; returns NULL. */
struct evq_event *evq_event_free(struct evq_event *event);

#endif
