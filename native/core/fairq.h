/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * fairq: the shared helper's queue of requests from several clients (the
 * OctoPrint instances of one host), served one at a time by one model.
 *
 * Fairness: each client has its own bounded FIFO; fairq_next() takes the
 * head of the next client after the one served last (round robin over the
 * clients that have something queued), so a client that floods its queue
 * still gets one turn in N, never more.
 *
 * Bounded: a client's FIFO holds at most `depth` items. Pushing onto a full
 * one drops that client's OLDEST item (a camera's newest frame is the one
 * worth scoring) and hands it back to the caller, who answers it "dropped".
 *
 * Deadlines: an item carries due_ms (CLOCK_MONOTONIC), the time after which
 * its client no longer wants an answer; 0 means none (pings). An item that
 * cannot be scored before it is due -- now + the caller's estimate of one
 * scoring is past due_ms -- is handed back as late instead of being scored
 * (fairq_next(), fairq_expire()).
 *
 * Plain C: no I/O, no threads (the caller holds whatever lock it needs), no
 * logging.
 */
#ifndef TSD_FAIRQ_H
#define TSD_FAIRQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FAIRQ_MAX_CLIENTS 64u
#define FAIRQ_MAX_DEPTH 64u

enum fairq_result {
    FAIRQ_OK = 0,
    FAIRQ_ERR_INVALID, /* bad argument: depth, slot out of range or free */
    FAIRQ_ERR_NOMEM,
    FAIRQ_ERR_FULL,    /* every client slot is taken */
    FAIRQ_RESULT_MAX
};

struct fairq_item {
    uint32_t id;            /* the client's request id */
    uint8_t type;           /* its request type (helper/frame.h) */
    unsigned char *payload; /* owned by the item: fairq_item_clear() frees it */
    size_t len;
    int64_t arrived_ms;     /* CLOCK_MONOTONIC */
    int64_t due_ms;         /* answer late rather than after this; 0: no deadline */
};

struct fairq;

const char *fairq_result_str(enum fairq_result result);

/* (transfer full) depth: 1..FAIRQ_MAX_DEPTH items per client. */
enum fairq_result fairq_new(unsigned depth, struct fairq **ret_queue);

/* Frees every queued item. Accepts NULL; returns NULL. */
struct fairq *fairq_free(struct fairq *queue);

/* Frees the payload; the item can be reused. Accepts NULL. */
void fairq_item_clear(struct fairq_item *item);

/* A slot for a new client (0..FAIRQ_MAX_CLIENTS-1). */
enum fairq_result fairq_add_client(struct fairq *queue, unsigned *ret_slot);

/* Frees what the client has queued and frees its slot. */
void fairq_remove_client(struct fairq *queue, unsigned slot);

/* Queues *item (its payload now belongs to the queue; *item is cleared).
 * When the client's FIFO was full, its oldest item is moved to *ret_dropped
 * and *ret_has_dropped is true; the caller answers and clears it. */
enum fairq_result fairq_push(struct fairq *queue, unsigned slot, struct fairq_item *item,
                             struct fairq_item *ret_dropped, bool *ret_has_dropped);

/* The next item in round-robin order, moved to *ret_item, with its client
 * in *ret_slot; *ret_late is true when it cannot be scored before it is due
 * (now_ms + estimate_ms > due_ms): answer it late and call again. False
 * when nothing is queued. */
bool fairq_next(struct fairq *queue, int64_t now_ms, int64_t estimate_ms, unsigned *ret_slot,
                struct fairq_item *ret_item, bool *ret_late);

/* One queued item, of any client, that can no longer be scored in time,
 * moved to *ret_item. False when there is none. Call until false. */
bool fairq_expire(struct fairq *queue, int64_t now_ms, int64_t estimate_ms, unsigned *ret_slot,
                  struct fairq_item *ret_item);

/* The earliest due_ms of a queued item (0 when none has a deadline): the
 * caller wakes up then minus its estimate to call fairq_expire(). */
int64_t fairq_earliest_due(const struct fairq *queue);

/* Items queued for one client, and for all. */
size_t fairq_queued(const struct fairq *queue, unsigned slot);
size_t fairq_total(const struct fairq *queue);

#endif
