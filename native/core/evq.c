/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "evq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct evq {
    pthread_mutex_t lock;
    pthread_cond_t readable;
    struct evq_event *head;
    struct evq_event *tail;
    size_t depth;
    size_t bytes;
    size_t max_events;
    size_t max_bytes;
    uint64_t pushed;
    uint64_t dropped;
    bool closed;
};

const char *evq_result_str(enum evq_result result)
{
    switch (result) {
    case EVQ_OK: return "ok";
    case EVQ_FULL: return "queue full";
    case EVQ_TIMEOUT: return "timed out";
    case EVQ_CLOSED: return "queue closed";
    case EVQ_NOMEM: return "out of memory";
    case EVQ_INVALID: return "invalid argument";
    case EVQ_RESULT_MAX: break;
    }
    return "unknown result";
}

enum evq_result evq_new(size_t max_events, size_t max_bytes, struct evq **ret_queue)
{
    enum evq_result result = EVQ_OK;
    struct evq *queue = NULL;
    pthread_condattr_t attr;
    bool attr_ready = false;
    bool lock_ready = false;

    if (!ret_queue || max_events == 0 || max_bytes == 0 ||
        max_events > EVQ_MAX_EVENTS_LIMIT || max_bytes > EVQ_MAX_BYTES_LIMIT) {
        result = EVQ_INVALID;
        goto out;
    }
    queue = calloc(1, sizeof(*queue));
    if (!queue) {
        result = EVQ_NOMEM;
        goto out;
    }
    queue->max_events = max_events;
    queue->max_bytes = max_bytes;
    if (pthread_mutex_init(&queue->lock, NULL) != 0) {
        result = EVQ_NOMEM;
        goto out;
    }
    lock_ready = true;
    if (pthread_condattr_init(&attr) != 0) {
        result = EVQ_NOMEM;
        goto out;
    }
    attr_ready = true;
    /* Deadlines use the monotonic clock: wall-clock jumps (NTP on a Pi that
     * boots without an RTC) must not stretch or cut a wait. */
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&queue->readable, &attr) != 0) {
        result = EVQ_NOMEM;
        goto out;
    }
    *ret_queue = queue;
    queue = NULL;

out:
    if (attr_ready)
        pthread_condattr_destroy(&attr);
    if (queue) {
        if (lock_ready)
            pthread_mutex_destroy(&queue->lock);
        free(queue);
    }
    return result;
}

struct evq_event *evq_event_free(struct evq_event *event)
{
    if (event) {
        /* Payloads can carry secrets in later modules: wipe before free. */
        memset(event->data, 0, event->len);
        free(event);
    }
    return NULL;
}

struct evq *evq_free(struct evq *queue)
{
    struct evq_event *event;
    struct evq_event *next;

    if (!queue)
        return NULL;
    for (event = queue->head; event; event = next) {
        next = event->next;
        evq_event_free(event);
    }
    pthread_cond_destroy(&queue->readable);
    pthread_mutex_destroy(&queue->lock);
    free(queue);
    return NULL;
}

enum evq_result evq_push(struct evq *queue, int type, const void *data, size_t len)
{
    enum evq_result result = EVQ_OK;
    struct evq_event *event = NULL;
    bool locked = false;

    if (!queue || (!data && len > 0)) {
        result = EVQ_INVALID;
        goto out;
    }
    pthread_mutex_lock(&queue->lock);
    locked = true;
    if (queue->closed) {
        result = EVQ_CLOSED;
        goto out;
    }
    /* Check limits before allocating: a flood must not cost memory. The byte
     * test is written so that it cannot overflow. */
    if (queue->depth >= queue->max_events || len > queue->max_bytes - queue->bytes) {
        queue->dropped++;
        result = EVQ_FULL;
        goto out;
    }
    event = malloc(sizeof(*event) + len + 1);
    if (!event) {
        queue->dropped++;
        result = EVQ_NOMEM;
        goto out;
    }
    event->next = NULL;
    event->type = type;
    event->len = len;
    if (len > 0)
        memcpy(event->data, data, len);
    event->data[len] = '\0';

    if (queue->tail)
        queue->tail->next = event;
    else
        queue->head = event;
    queue->tail = event;
    queue->depth++;
    queue->bytes += len;
    queue->pushed++;
    event = NULL;
    pthread_cond_signal(&queue->readable);

out:
    if (locked)
        pthread_mutex_unlock(&queue->lock);
    free(event);
    return result;
}

static void deadline_after_ms(struct timespec *ret_deadline, int timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ret_deadline);
    ret_deadline->tv_sec += timeout_ms / 1000;
    ret_deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ret_deadline->tv_nsec >= 1000000000L) {
        ret_deadline->tv_sec++;
        ret_deadline->tv_nsec -= 1000000000L;
    }
}

enum evq_result evq_pop(struct evq *queue, int timeout_ms, struct evq_event **ret_event)
{
    enum evq_result result = EVQ_OK;
    struct evq_event *event;
    struct timespec deadline;
    int rc = 0;

    if (!queue || !ret_event)
        return EVQ_INVALID;
    if (timeout_ms > 0)
        deadline_after_ms(&deadline, timeout_ms);

    pthread_mutex_lock(&queue->lock);
    while (!queue->head && !queue->closed) {
        if (timeout_ms == 0 || rc == ETIMEDOUT) {
            result = EVQ_TIMEOUT;
            goto out;
        }
        if (timeout_ms < 0)
            rc = pthread_cond_wait(&queue->readable, &queue->lock);
        else
            rc = pthread_cond_timedwait(&queue->readable, &queue->lock, &deadline);
    }
    if (!queue->head) {
        result = EVQ_CLOSED;
        goto out;
    }
    event = queue->head;
    queue->head = event->next;
    if (!queue->head)
        queue->tail = NULL;
    queue->depth--;
    queue->bytes -= event->len;
    event->next = NULL;
    *ret_event = event;

out:
    pthread_mutex_unlock(&queue->lock);
    return result;
}

void evq_close(struct evq *queue)
{
    if (!queue)
        return;
    pthread_mutex_lock(&queue->lock);
    queue->closed = true;
    pthread_cond_broadcast(&queue->readable);
    pthread_mutex_unlock(&queue->lock);
}

void evq_get_stats(struct evq *queue, struct evq_stats *ret_stats)
{
    if (!queue || !ret_stats)
        return;
    pthread_mutex_lock(&queue->lock);
    *ret_stats = (struct evq_stats){
        .depth = queue->depth,
        .bytes = queue->bytes,
        .pushed = queue->pushed,
        .dropped = queue->dropped,
        .max_events = queue->max_events,
        .max_bytes = queue->max_bytes,
        .closed = queue->closed,
    };
    pthread_mutex_unlock(&queue->lock);
}
