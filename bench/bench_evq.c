/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Benchmark of the bounded event queue: single-thread push+pop cost, and
 * cross-thread hand-off rate with a blocked consumer. Prints `bench` lines. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "evq.h"

enum { ROUNDS = 200000, PAYLOAD = 256 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *drain(void *arg)
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

int main(void)
{
    struct evq *queue = NULL;
    struct evq_event *event = NULL;
    unsigned char payload[PAYLOAD] = {0};
    pthread_t consumer;
    void *consumed = NULL;
    uint64_t accepted = 0;
    double start;
    double elapsed;

    if (evq_new(1024, 1 << 20, &queue) != EVQ_OK)
        return 1;
    start = now_s();
    for (int i = 0; i < ROUNDS; i++) {
        evq_push(queue, 1, payload, sizeof(payload));
        if (evq_pop(queue, 0, &event) == EVQ_OK)
            evq_event_free(event);
    }
    elapsed = now_s() - start;
    printf("bench evq_push_pop_same_thread %.1f ns\n", elapsed / ROUNDS * 1e9);
    evq_free(queue);

    if (evq_new(1024, 1 << 20, &queue) != EVQ_OK)
        return 1;
    if (pthread_create(&consumer, NULL, drain, queue) != 0)
        return 1;
    start = now_s();
    for (int i = 0; i < ROUNDS; i++)
        if (evq_push(queue, 1, payload, sizeof(payload)) == EVQ_OK)
            accepted++;
    evq_close(queue);
    pthread_join(consumer, &consumed);
    elapsed = now_s() - start;
    printf("bench evq_cross_thread_rate %.0f events/s\n", (double)(uintptr_t)consumed / elapsed);
    printf("bench evq_cross_thread_dropped %.2f percent\n",
           100.0 * (double)(ROUNDS - accepted) / ROUNDS);
    evq_free(queue);
    return 0;
}
