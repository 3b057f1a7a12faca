/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * fairq: see fairq.h. Each client is a ring of `depth` items; the cursor is
 * the slot served last, so the search for the next turn starts after it.
 * Within one client the items are in arrival order and share one deadline
 * length, so their due times only grow: fairq_expire() looks at heads only.
 */
#include "fairq.h"

#include <stdlib.h>
#include <string.h>

struct fairq_client {
    bool used;
    struct fairq_item *ring; /* depth items */
    unsigned head;
    unsigned count;
};

struct fairq {
    unsigned depth;
    unsigned cursor; /* the slot served last */
    struct fairq_client clients[FAIRQ_MAX_CLIENTS];
};

const char *fairq_result_str(enum fairq_result result)
{
    switch (result) {
    case FAIRQ_OK: return "ok";
    case FAIRQ_ERR_INVALID: return "invalid argument";
    case FAIRQ_ERR_NOMEM: return "out of memory";
    case FAIRQ_ERR_FULL: return "too many clients";
    case FAIRQ_RESULT_MAX: break;
    }
    return "unknown result";
}

enum fairq_result fairq_new(unsigned depth, struct fairq **ret_queue)
{
    struct fairq *queue;

    if (!ret_queue || depth == 0 || depth > FAIRQ_MAX_DEPTH)
        return FAIRQ_ERR_INVALID;
    queue = calloc(1, sizeof(*queue));
    if (!queue)
        return FAIRQ_ERR_NOMEM;
    queue->depth = depth;
    queue->cursor = FAIRQ_MAX_CLIENTS - 1; /* the first turn goes to slot 0 */
    *ret_queue = queue;
    return FAIRQ_OK;
}

void fairq_item_clear(struct fairq_item *item)
{
    if (!item)
        return;
    free(item->payload);
    memset(item, 0, sizeof(*item));
}

static bool slot_ok(const struct fairq *queue, unsigned slot)
{
    return queue && slot < FAIRQ_MAX_CLIENTS && queue->clients[slot].used;
}

/* Moves the head of a non-empty client to *ret_item. */
static void pop_head(struct fairq *queue, struct fairq_client *client,
                     struct fairq_item *ret_item)
{
    *ret_item = client->ring[client->head];
    memset(&client->ring[client->head], 0, sizeof(client->ring[client->head]));
    client->head = (client->head + 1) % queue->depth;
    client->count--;
}

void fairq_remove_client(struct fairq *queue, unsigned slot)
{
    struct fairq_client *client;

    if (!slot_ok(queue, slot))
        return;
    client = &queue->clients[slot];
    while (client->count > 0) {
        struct fairq_item item;
        pop_head(queue, client, &item);
        fairq_item_clear(&item);
    }
    free(client->ring);
    memset(client, 0, sizeof(*client));
}

struct fairq *fairq_free(struct fairq *queue)
{
    if (!queue)
        return NULL;
    for (unsigned slot = 0; slot < FAIRQ_MAX_CLIENTS; slot++)
        fairq_remove_client(queue, slot);
    free(queue);
    return NULL;
}

enum fairq_result fairq_add_client(struct fairq *queue, unsigned *ret_slot)
{
    if (!queue || !ret_slot)
        return FAIRQ_ERR_INVALID;
    for (unsigned slot = 0; slot < FAIRQ_MAX_CLIENTS; slot++) {
        struct fairq_client *client = &queue->clients[slot];
        if (client->used)
            continue;
        client->ring = calloc(queue->depth, sizeof(*client->ring));
        if (!client->ring)
            return FAIRQ_ERR_NOMEM;
        client->used = true;
        client->head = 0;
        client->count = 0;
        *ret_slot = slot;
        return FAIRQ_OK;
    }
    return FAIRQ_ERR_FULL;
}

enum fairq_result fairq_push(struct fairq *queue, unsigned slot, struct fairq_item *item,
                             struct fairq_item *ret_dropped, bool *ret_has_dropped)
{
    struct fairq_client *client;

    if (!slot_ok(queue, slot) || !item || !ret_dropped || !ret_has_dropped)
        return FAIRQ_ERR_INVALID;
    client = &queue->clients[slot];
    *ret_has_dropped = false;
    if (client->count == queue->depth) {
        pop_head(queue, client, ret_dropped);
        *ret_has_dropped = true;
    }
    client->ring[(client->head + client->count) % queue->depth] = *item;
    client->count++;
    memset(item, 0, sizeof(*item));
    return FAIRQ_OK;
}

static bool is_late(const struct fairq_item *item, int64_t now_ms, int64_t estimate_ms)
{
    return item->due_ms != 0 && now_ms + (estimate_ms > 0 ? estimate_ms : 0) > item->due_ms;
}

bool fairq_next(struct fairq *queue, int64_t now_ms, int64_t estimate_ms, unsigned *ret_slot,
                struct fairq_item *ret_item, bool *ret_late)
{
    if (!queue || !ret_slot || !ret_item || !ret_late)
        return false;
    for (unsigned step = 1; step <= FAIRQ_MAX_CLIENTS; step++) {
        unsigned slot = (queue->cursor + step) % FAIRQ_MAX_CLIENTS;
        struct fairq_client *client = &queue->clients[slot];

        if (!client->used || client->count == 0)
            continue;
        pop_head(queue, client, ret_item);
        /* A late item uses up no turn: the client keeps its place. */
        *ret_late = is_late(ret_item, now_ms, estimate_ms);
        if (!*ret_late)
            queue->cursor = slot;
        *ret_slot = slot;
        return true;
    }
    return false;
}

bool fairq_expire(struct fairq *queue, int64_t now_ms, int64_t estimate_ms, unsigned *ret_slot,
                  struct fairq_item *ret_item)
{
    if (!queue || !ret_slot || !ret_item)
        return false;
    for (unsigned slot = 0; slot < FAIRQ_MAX_CLIENTS; slot++) {
        struct fairq_client *client = &queue->clients[slot];

        if (!client->used || client->count == 0 ||
            !is_late(&client->ring[client->head], now_ms, estimate_ms))
            continue;
        pop_head(queue, client, ret_item);
        *ret_slot = slot;
        return true;
    }
    return false;
}

int64_t fairq_earliest_due(const struct fairq *queue)
{
    int64_t earliest = 0;

    if (!queue)
        return 0;
    for (unsigned slot = 0; slot < FAIRQ_MAX_CLIENTS; slot++) {
        const struct fairq_client *client = &queue->clients[slot];

        /* Due times grow within a client, but a ping (0) may stand first. */
        for (unsigned i = 0; client->used && i < client->count; i++) {
            int64_t due = client->ring[(client->head + i) % queue->depth].due_ms;
            if (due != 0 && (earliest == 0 || due < earliest))
                earliest = due;
            if (due != 0)
                break;
        }
    }
    return earliest;
}

size_t fairq_queued(const struct fairq *queue, unsigned slot)
{
    return slot_ok(queue, slot) ? queue->clients[slot].count : 0;
}

size_t fairq_total(const struct fairq *queue)
{
    size_t total = 0;

    for (unsigned slot = 0; queue && slot < FAIRQ_MAX_CLIENTS; slot++)
        total += queue->clients[slot].count;
    return total;
}
