/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests of native/core/evq.c: limits, order, wake-up, timeouts, shutdown
 * and many producers at once. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "evq.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_invalid_arguments(void)
{
    struct evq *queue = NULL;
    struct evq_event *event = NULL;

    CHECK(evq_new(0, 10, &queue) == EVQ_INVALID);
    CHECK(evq_new(10, 0, &queue) == EVQ_INVALID);
    CHECK(evq_new(EVQ_MAX_EVENTS_LIMIT + 1, 10, &queue) == EVQ_INVALID);
    CHECK(evq_new(10, (size_t)EVQ_MAX_BYTES_LIMIT + 1, &queue) == EVQ_INVALID);
    CHECK(evq_new(10, 10, NULL) == EVQ_INVALID);
    CHECK(queue == NULL);
    CHECK(evq_push(NULL, 1, "x", 1) == EVQ_INVALID);
    CHECK(evq_pop(NULL, 0, &event) == EVQ_INVALID);
    CHECK(evq_free(NULL) == NULL);
    CHECK(evq_event_free(NULL) == NULL);
    evq_close(NULL);

    CHECK(evq_new(4, 64, &queue) == EVQ_OK);
    CHECK(evq_push(queue, 1, NULL, 3) == EVQ_INVALID);
    CHECK(evq_push(queue, 1, NULL, 0) == EVQ_OK);
    CHECK(evq_pop(queue, 0, &event) == EVQ_OK);
    CHECK(event && event->len == 0 && event->data[0] == '\0');
    evq_event_free(event);
    evq_free(queue);
}

static void test_fifo_order_and_payload(void)
{
    struct evq *queue = NULL;
    struct evq_event *event = NULL;
    char text[16];

    CHECK(evq_new(16, 1024, &queue) == EVQ_OK);
    for (int i = 0; i < 10; i++) {
        int len = snprintf(text, sizeof(text), "event-%d", i);
        CHECK(evq_push(queue, 100 + i, text, (size_t)len) == EVQ_OK);
    }
    for (int i = 0; i < 10; i++) {
        int len = snprintf(text, sizeof(text), "event-%d", i);
        event = NULL;
        CHECK(evq_pop(queue, 0, &event) == EVQ_OK);
        CHECK(event != NULL);
        if (!event)
            continue;
        CHECK(event->type == 100 + i);
        CHECK(event->len == (size_t)len);
        CHECK(memcmp(event->data, text, (size_t)len) == 0);
        CHECK(event->data[event->len] == '\0');
        evq_event_free(event);
    }
    event = NULL;
    CHECK(evq_pop(queue, 0, &event) == EVQ_TIMEOUT);
    CHECK(event == NULL);
    evq_free(queue);
}

static void test_full_by_count(void)
{
    struct evq *queue = NULL;
    struct evq_event *event = NULL;
    struct evq_stats stats;

    CHECK(evq_new(3, 1024, &queue) == EVQ_OK);
    CHECK(evq_push(queue, 1, "a", 1) == EVQ_OK);
    CHECK(evq_push(queue, 2, "b", 1) == EVQ_OK);
    CHECK(evq_push(queue, 3, "c", 1) == EVQ_OK);
    CHECK(evq_push(queue, 4, "d", 1) == EVQ_FULL);
    CHECK(evq_push(queue, 5, "e", 1) == EVQ_FULL);
    evq_get_stats(queue, &stats);
    CHECK(stats.depth == 3);
    CHECK(stats.pushed == 3);
    CHECK(stats.dropped == 2);

    /* Room again after one pop; the oldest events were kept. */
    CHECK(evq_pop(queue, 0, &event) == EVQ_OK);
    CHECK(event && event->type == 1);
    evq_event_free(event);
    CHECK(evq_push(queue, 6, "f", 1) == EVQ_OK);
    evq_get_stats(queue, &stats);
    CHECK(stats.depth == 3);
    CHECK(stats.dropped == 2);
    evq_free(queue); /* frees the events still queued */
}

static void test_full_by_bytes(void)
{
    struct evq *queue = NULL;
    struct evq_event *event = NULL;
    struct evq_stats stats;
    unsigned char big[100];

    memset(big, 0xab, sizeof(big));
    CHECK(evq_new(100, 250, &queue) == EVQ_OK);
    CHECK(evq_push(queue, 1, big, 100) == EVQ_OK);
    CHECK(evq_push(queue, 1, big, 100) == EVQ_OK);
    CHECK(evq_push(queue, 1, big, 100) == EVQ_FULL);   /* 300 > 250 */
    CHECK(evq_push(queue, 1, big, 50) == EVQ_OK);      /* exactly 250 */
    CHECK(evq_push(queue, 1, NULL, 0) == EVQ_OK);      /* empty payloads fit */
    CHECK(evq_push(queue, 1, big, 1) == EVQ_FULL);
    /* A single event larger than the whole queue can never fit. */
    CHECK(evq_pop(queue, 0, &event) == EVQ_OK);
    evq_event_free(event);
    evq_get_stats(queue, &stats);
    CHECK(stats.bytes == 150);
    CHECK(stats.dropped == 2);
    evq_free(queue);

    CHECK(evq_new(4, 10, &queue) == EVQ_OK);
    CHECK(evq_push(queue, 1, big, 11) == EVQ_FULL);
    evq_free(queue);
}

static void test_pop_timeout(void)
{
    struct evq *queue = NULL;
    struct evq_event *event = NULL;
    double start;
    double elapsed;

    CHECK(evq_new(4, 64, &queue) == EVQ_OK);
    start = now_ms();
    CHECK(evq_pop(queue, 80, &event) == EVQ_TIMEOUT);
    elapsed = now_ms() - start;
    CHECK(elapsed >= 79.0);
    CHECK(elapsed < 2000.0);
    CHECK(event == NULL);
    evq_free(queue);
}

struct consumer {
    struct evq *queue;
    int timeout_ms;
    enum evq_result result;
    int type;
    double woke_at_ms;
};

static void *consumer_main(void *arg)
{
    struct consumer *consumer = arg;
    struct evq_event *event = NULL;

    consumer->result = evq_pop(consumer->queue, consumer->timeout_ms, &event);
    consumer->woke_at_ms = now_ms();
    if (consumer->result == EVQ_OK) {
        consumer->type = event->type;
        evq_event_free(event);
    }
    return NULL;
}

static void test_push_wakes_blocked_consumer(void)
{
    struct evq *queue = NULL;
    struct consumer consumer = {0};
    pthread_t thread;
    double pushed_at;

    CHECK(evq_new(4, 64, &queue) == EVQ_OK);
    consumer.queue = queue;
    consumer.timeout_ms = -1; /* wait forever: only the push can wake it */
    CHECK(pthread_create(&thread, NULL, consumer_main, &consumer) == 0);
    sleep_ms(50);
    pushed_at = now_ms();
    CHECK(evq_push(queue, 42, "wake", 4) == EVQ_OK);
    pthread_join(thread, NULL);
    CHECK(consumer.result == EVQ_OK);
    CHECK(consumer.type == 42);
    /* Woken by the signal, not by a polling interval. */
    CHECK(consumer.woke_at_ms - pushed_at < 500.0);
    evq_free(queue);
}

static void test_close_wakes_all_waiters(void)
{
    enum { WAITERS = 4 };
    struct evq *queue = NULL;
    struct consumer consumers[WAITERS];
    pthread_t threads[WAITERS];
    double closed_at;

    CHECK(evq_new(4, 64, &queue) == EVQ_OK);
    for (int i = 0; i < WAITERS; i++) {
        consumers[i] = (struct consumer){.queue = queue, .timeout_ms = i % 2 ? -1 : 60000};
        CHECK(pthread_create(&threads[i], NULL, consumer_main, &consumers[i]) == 0);
    }
    sleep_ms(50);
    closed_at = now_ms();
    evq_close(queue);
    evq_close(queue); /* idempotent */
    for (int i = 0; i < WAITERS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(consumers[i].result == EVQ_CLOSED);
        CHECK(consumers[i].woke_at_ms - closed_at < 500.0);
    }
    evq_free(queue);
}

static void test_close_drains_then_refuses(void)
{
    struct evq *queue = NULL;
    struct evq_event *event = NULL;
    struct evq_stats stats;

    CHECK(evq_new(4, 64, &queue) == EVQ_OK);
    CHECK(evq_push(queue, 1, "x", 1) == EVQ_OK);
    CHECK(evq_push(queue, 2, "y", 1) == EVQ_OK);
    evq_close(queue);
    CHECK(evq_push(queue, 3, "z", 1) == EVQ_CLOSED);
    CHECK(evq_pop(queue, -1, &event) == EVQ_OK); /* already queued: delivered */
    CHECK(event && event->type == 1);
    evq_event_free(event);
    CHECK(evq_pop(queue, -1, &event) == EVQ_OK);
    CHECK(event && event->type == 2);
    evq_event_free(event);
    event = NULL;
    CHECK(evq_pop(queue, -1, &event) == EVQ_CLOSED); /* no hang after close */
    CHECK(event == NULL);
    evq_get_stats(queue, &stats);
    CHECK(stats.closed);
    CHECK(stats.depth == 0);
    evq_free(queue);
}

enum { PRODUCERS = 4, PER_PRODUCER = 20000 };

struct producer {
    struct evq *queue;
    int id;
    uint64_t accepted;
    uint64_t refused;
};

static void *producer_main(void *arg)
{
    struct producer *producer = arg;

    for (int i = 0; i < PER_PRODUCER; i++) {
        uint32_t payload[2] = {(uint32_t)producer->id, (uint32_t)i};
        enum evq_result result = evq_push(producer->queue, producer->id, payload, sizeof(payload));
        if (result == EVQ_OK)
            producer->accepted++;
        else
            producer->refused++;
    }
    return NULL;
}

static void test_many_producers_one_consumer(void)
{
    struct evq *queue = NULL;
    struct producer producers[PRODUCERS];
    pthread_t threads[PRODUCERS];
    struct evq_event *event = NULL;
    struct evq_stats stats;
    uint64_t received = 0;
    uint64_t accepted = 0;
    uint64_t refused = 0;
    int64_t last_seq[PRODUCERS];
    bool in_order = true;
    bool bounded = true;

    CHECK(evq_new(64, 64 * 8, &queue) == EVQ_OK);
    for (int p = 0; p < PRODUCERS; p++) {
        last_seq[p] = -1;
        producers[p] = (struct producer){.queue = queue, .id = p};
        CHECK(pthread_create(&threads[p], NULL, producer_main, &producers[p]) == 0);
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(threads[p], NULL);
    evq_close(queue);
    /* A slow consumer that starts late: the queue must have stayed bounded. */
    evq_get_stats(queue, &stats);
    if (stats.depth > 64 || stats.bytes > 64 * 8)
        bounded = false;
    while (evq_pop(queue, 1000, &event) == EVQ_OK) {
        uint32_t payload[2];
        memcpy(payload, event->data, sizeof(payload));
        if ((int64_t)payload[1] <= last_seq[payload[0]])
            in_order = false; /* per-producer order is kept */
        last_seq[payload[0]] = payload[1];
        received++;
        evq_event_free(event);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        accepted += producers[p].accepted;
        refused += producers[p].refused;
    }
    evq_get_stats(queue, &stats);
    CHECK(bounded);
    CHECK(in_order);
    CHECK(accepted + refused == (uint64_t)PRODUCERS * PER_PRODUCER);
    CHECK(received == accepted);
    CHECK(stats.pushed == accepted);
    CHECK(stats.dropped == refused);
    CHECK(refused > 0); /* nobody drained: the limit really bit */
    evq_free(queue);
}

static void *concurrent_consumer_main(void *arg)
{
    struct evq *queue = arg;
    struct evq_event *event = NULL;
    uintptr_t count = 0;

    while (evq_pop(queue, -1, &event) == EVQ_OK) {
        count++;
        evq_event_free(event);
    }
    return (void *)count;
}

static void test_concurrent_drain_loses_nothing(void)
{
    struct evq *queue = NULL;
    struct producer producers[PRODUCERS];
    pthread_t threads[PRODUCERS];
    pthread_t consumer;
    void *consumed = NULL;
    uint64_t accepted = 0;

    CHECK(evq_new(256, 1 << 20, &queue) == EVQ_OK);
    CHECK(pthread_create(&consumer, NULL, concurrent_consumer_main, queue) == 0);
    for (int p = 0; p < PRODUCERS; p++) {
        producers[p] = (struct producer){.queue = queue, .id = p};
        CHECK(pthread_create(&threads[p], NULL, producer_main, &producers[p]) == 0);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        pthread_join(threads[p], NULL);
        accepted += producers[p].accepted;
    }
    evq_close(queue);
    pthread_join(consumer, &consumed);
    CHECK((uint64_t)(uintptr_t)consumed == accepted);
    evq_free(queue);
}

static void test_result_strings(void)
{
    for (int r = 0; r <= EVQ_RESULT_MAX; r++)
        CHECK(evq_result_str((enum evq_result)r) != NULL);
    CHECK(strcmp(evq_result_str(EVQ_FULL), "queue full") == 0);
}

int main(void)
{
    RUN_TEST(test_invalid_arguments);
    RUN_TEST(test_fifo_order_and_payload);
    RUN_TEST(test_full_by_count);
    RUN_TEST(test_full_by_bytes);
    RUN_TEST(test_pop_timeout);
    RUN_TEST(test_push_wakes_blocked_consumer);
    RUN_TEST(test_close_wakes_all_waiters);
    RUN_TEST(test_close_drains_then_refuses);
    RUN_TEST(test_many_producers_one_consumer);
    RUN_TEST(test_concurrent_drain_loses_nothing);
    RUN_TEST(test_result_strings);
    return CHECK_DONE();
}
