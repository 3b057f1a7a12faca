/* SPDX-License-Identifier: AGPL-3.0-or-later
 * sec09: name resolution in the frame grabber has a deadline, and
 * grab_stream_interrupt() / grab_stream_close() do not wait for it.
 *
 * The resolver is replaced (conn_set_resolver) by one that never answers
 * until the test lets it go -- the behaviour of a DNS server that drops
 * queries, without any network: nothing here leaves the process except one
 * loopback connect. As a watchdog, a lookup held for WATCHDOG_MS returns
 * EAI_AGAIN by itself, so a grabber that waits for the resolver fails these
 * checks instead of hanging. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "conn.h"
#include "grab.h"

#define WATCHDOG_MS 4000
/* A deadline is kept when the call returns within this much after it. */
#define SLACK_MS 700
/* close() and interrupt() return within this. */
#define PROMPT_MS 100

enum lookup_mode {
    LOOKUP_NEVER,         /* holds until released (or the watchdog) */
    LOOKUP_SLOW_LOOPBACK, /* 100 ms, then 127.0.0.1 */
};

static pthread_mutex_t lookup_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lookup_changed = PTHREAD_COND_INITIALIZER;
static enum lookup_mode lookup_mode;
static bool lookups_released;
static int lookups_running;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int test_resolver(const char *host, const char *port, const struct addrinfo *hints,
                         struct addrinfo **ret_addrs)
{
    struct addrinfo numeric = *hints;
    struct timespec until;
    bool answer;
    int rc = 0;

    (void)host;
    clock_gettime(CLOCK_REALTIME, &until);
    pthread_mutex_lock(&lookup_lock);
    lookups_running++;
    answer = lookup_mode == LOOKUP_SLOW_LOOPBACK;
    until.tv_sec += answer ? 0 : WATCHDOG_MS / 1000;
    until.tv_nsec += answer ? 100 * 1000000L : 0;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!lookups_released && rc == 0)
        rc = pthread_cond_timedwait(&lookup_changed, &lookup_lock, &until);
    pthread_mutex_unlock(&lookup_lock);
    if (answer) {
        numeric.ai_flags |= AI_NUMERICHOST;
        rc = getaddrinfo("127.0.0.1", port, &numeric, ret_addrs);
    } else {
        rc = EAI_AGAIN;
    }
    pthread_mutex_lock(&lookup_lock);
    lookups_running--;
    pthread_cond_broadcast(&lookup_changed);
    pthread_mutex_unlock(&lookup_lock);
    return rc;
}

/* Lets every held lookup return and waits until they all have. */
static void release_lookups(void)
{
    pthread_mutex_lock(&lookup_lock);
    lookups_released = true;
    pthread_cond_broadcast(&lookup_changed);
    while (lookups_running > 0)
        pthread_cond_wait(&lookup_changed, &lookup_lock);
    lookups_released = false;
    pthread_mutex_unlock(&lookup_lock);
    usleep(50 * 1000); /* the resolver threads free what they hold */
}

/* Opens a stream session for config and polls it with no limit of its own;
 * *ret_took: how long the poll took. */
static enum grab_result poll_new_stream(const struct grab_config *config,
                                        struct grab_stream **ret_stream, int64_t *ret_took,
                                        char *reason, size_t reason_len)
{
    enum grab_result result;
    int64_t started;

    lookup_mode = LOOKUP_NEVER;
    CHECK(grab_stream_open(config, ret_stream, reason, reason_len) == GRAB_OK);
    started = now_ms();
    result = grab_stream_poll(*ret_stream, -1, reason, reason_len);
    *ret_took = now_ms() - started;
    printf("#   %s after %lld ms: %s\n", grab_result_str(result), (long long)*ret_took, reason);
    return result;
}

static void test_stream_lookup_times_out(void)
{
    struct grab_config config = {.url = "http://camera.never-answers.test:8080/?action=stream",
                                 .connect_timeout_ms = 300};
    struct grab_stream *stream = NULL;
    char reason[GRAB_REASON_SIZE] = "";
    enum grab_result result;
    int64_t started;
    int64_t took;

    result = poll_new_stream(&config, &stream, &took, reason, sizeof(reason));
    CHECK(result == GRAB_ERR_TIMEOUT);
    CHECK(took >= 250 && took < 300 + SLACK_MS);
    CHECK(strstr(reason, "camera.never-answers.test") != NULL);
    /* Sticky, like every other end of a session. */
    CHECK(grab_stream_poll(stream, 0, reason, sizeof(reason)) == GRAB_ERR_TIMEOUT);
    started = now_ms();
    grab_stream_close(stream);
    took = now_ms() - started;
    printf("#   close took %lld ms\n", (long long)took);
    CHECK(took < PROMPT_MS);
    release_lookups();
}

static void test_total_timeout_bounds_the_lookup(void)
{
    struct grab_config config = {.url = "http://camera.never-answers.test/",
                                 .connect_timeout_ms = 5000, .total_timeout_ms = 400};
    struct grab_stream *stream = NULL;
    char reason[GRAB_REASON_SIZE] = "";
    int64_t took;

    CHECK(poll_new_stream(&config, &stream, &took, reason, sizeof(reason)) == GRAB_ERR_TIMEOUT);
    CHECK(took < 400 + SLACK_MS);
    grab_stream_close(stream);
    release_lookups();
}

struct interrupter {
    struct grab_stream *stream;
    int delay_ms;
    int64_t took_ms; /* grab_stream_interrupt() itself */
};

static void *interrupt_later(void *arg)
{
    struct interrupter *job = arg;
    int64_t started;

    usleep((useconds_t)job->delay_ms * 1000u);
    started = now_ms();
    grab_stream_interrupt(job->stream);
    job->took_ms = now_ms() - started;
    return NULL;
}

static void test_interrupt_during_lookup(void)
{
    struct grab_config config = {.url = "http://camera.never-answers.test/?action=stream",
                                 .connect_timeout_ms = 30000, .total_timeout_ms = 30000};
    struct grab_stream *stream = NULL;
    struct interrupter job;
    char reason[GRAB_REASON_SIZE] = "";
    enum grab_result result;
    pthread_t thread;
    int64_t started;
    int64_t took;

    lookup_mode = LOOKUP_NEVER;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    job = (struct interrupter){.stream = stream, .delay_ms = 200};
    CHECK(pthread_create(&thread, NULL, interrupt_later, &job) == 0);
    started = now_ms();
    result = grab_stream_poll(stream, -1, reason, sizeof(reason));
    took = now_ms() - started;
    pthread_join(thread, NULL);
    printf("#   %s after %lld ms (interrupt took %lld ms)\n", grab_result_str(result),
           (long long)took, (long long)job.took_ms);
    CHECK(result == GRAB_ERR_INTERRUPTED);
    CHECK(took < 200 + SLACK_MS);
    CHECK(job.took_ms < PROMPT_MS);
    started = now_ms();
    grab_stream_close(stream);
    CHECK(now_ms() - started < PROMPT_MS);
    release_lookups();
}

static void test_snapshot_lookup_times_out(void)
{
    struct grab_config config = {.url = "http://camera.never-answers.test/snapshot",
                                 .connect_timeout_ms = 300};
    struct grab_frame *frame = NULL;
    char reason[GRAB_REASON_SIZE] = "";
    enum grab_result result;
    int64_t started;
    int64_t took;

    lookup_mode = LOOKUP_NEVER;
    started = now_ms();
    result = grab_snapshot(&config, &frame, reason, sizeof(reason));
    took = now_ms() - started;
    printf("#   %s after %lld ms: %s\n", grab_result_str(result), (long long)took, reason);
    CHECK(result == GRAB_ERR_TIMEOUT);
    CHECK(frame == NULL);
    CHECK(took < 300 + SLACK_MS);
    release_lookups();
}

/* A lookup that answers within its deadline is used: the connection goes
 * to the address it gave (a loopback port nobody listens on). */
static void test_slow_answer_is_used(void)
{
    struct grab_config config = {.connect_timeout_ms = 2000};
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t addr_len = sizeof(addr);
    struct grab_frame *frame = NULL;
    char reason[GRAB_REASON_SIZE] = "";
    enum grab_result result;
    char url[128];
    int fd;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0);
    close(fd); /* free a moment ago: refused */
    snprintf(url, sizeof(url), "http://camera.slow-dns.test:%u/", (unsigned)ntohs(addr.sin_port));
    config.url = url;
    lookup_mode = LOOKUP_SLOW_LOOPBACK;
    result = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   %s: %s\n", grab_result_str(result), reason);
    CHECK(result == GRAB_ERR_CONNECT_REFUSED);
    CHECK(strstr(reason, "127.0.0.1") != NULL);
    release_lookups();
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    conn_set_resolver(test_resolver);
    RUN_TEST(test_stream_lookup_times_out);
    RUN_TEST(test_total_timeout_bounds_the_lookup);
    RUN_TEST(test_interrupt_during_lookup);
    RUN_TEST(test_snapshot_lookup_times_out);
    RUN_TEST(test_slow_answer_is_used);
    conn_set_resolver(NULL);
    return CHECK_DONE();
}
