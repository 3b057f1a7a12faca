/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Tests of native/core/grab.c against the simulated webcam
 * (tests/webcam_sim.py, run as a child process): URL parsing and redirect
 * resolution, snapshots, one-connection streams, every misbehaviour switch
 * of the simulator, connect errors, timeouts, interruption, memory bounds,
 * and TLS (certificate and host name verification).
 *
 * meson passes TSD_PYTHON (the Python meson found) and TSD_WEBCAM_SIM (the
 * script); without them the tests that need the simulator are skipped. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "grab.h"

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

struct sim {
    pid_t pid;
    int stdin_fd;  /* closing it makes the simulator exit (--watch-stdin) */
    int stdout_fd;
    unsigned port;
};

static struct sim plain_sim = {.pid = -1, .stdin_fd = -1, .stdout_fd = -1};
static struct sim tls_sim = {.pid = -1, .stdin_fd = -1, .stdout_fd = -1};
static char tls_dir[256];
static char ca_file[300];

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the simulator ---------------------------------------------------------- */

/* Starts tests/webcam_sim.py with extra arguments (NULL-terminated) and
 * reads its "PORT <n>" line. */
static bool sim_start(struct sim *sim, const char *const *extra)
{
    const char *python = getenv("TSD_PYTHON");
    const char *script = getenv("TSD_WEBCAM_SIM");
    const char *argv[32];
    posix_spawn_file_actions_t actions;
    int in_pipe[2] = {-1, -1};
    int out_pipe[2] = {-1, -1};
    char line[256];
    size_t used = 0;
    size_t argc = 0;
    int64_t deadline;
    bool ok = false;

    if (!python || !script)
        return false;
    argv[argc++] = python;
    argv[argc++] = script;
    argv[argc++] = "--port";
    argv[argc++] = "0";
    argv[argc++] = "--watch-stdin";
    argv[argc++] = "--fps";
    argv[argc++] = "20";
    for (size_t i = 0; extra && extra[i] && argc < 30; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0)
        goto out;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
    if (posix_spawn(&sim->pid, python, &actions, NULL, (char *const *)argv, environ) != 0) {
        sim->pid = -1;
        posix_spawn_file_actions_destroy(&actions);
        goto out;
    }
    posix_spawn_file_actions_destroy(&actions);
    close(in_pipe[0]);
    in_pipe[0] = -1;
    close(out_pipe[1]);
    out_pipe[1] = -1;
    sim->stdin_fd = in_pipe[1];
    in_pipe[1] = -1;
    sim->stdout_fd = out_pipe[0];
    out_pipe[0] = -1;

    deadline = now_ms() + 30000;
    while (now_ms() < deadline && used < sizeof(line) - 1) {
        struct pollfd pfd = {.fd = sim->stdout_fd, .events = POLLIN};
        char *port_line;
        ssize_t n;

        if (poll(&pfd, 1, 1000) <= 0)
            continue;
        n = read(sim->stdout_fd, line + used, sizeof(line) - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        line[used] = '\0';
        port_line = strstr(line, "PORT ");
        if (port_line && strchr(port_line, '\n')) {
            sim->port = (unsigned)strtoul(port_line + 5, NULL, 10);
            ok = sim->port > 0 && sim->port < 65536;
            break;
        }
    }

out:
    for (int i = 0; i < 2; i++) {
        if (in_pipe[i] >= 0)
            close(in_pipe[i]);
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
    }
    return ok;
}

static void sim_stop(struct sim *sim)
{
    int status;

    if (sim->stdin_fd >= 0)
        close(sim->stdin_fd);
    sim->stdin_fd = -1;
    if (sim->pid > 0) {
        int64_t deadline = now_ms() + 10000;
        while (waitpid(sim->pid, &status, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(sim->pid, SIGKILL);
                waitpid(sim->pid, &status, 0);
                break;
            }
            usleep(20000);
        }
    }
    sim->pid = -1;
    if (sim->stdout_fd >= 0)
        close(sim->stdout_fd);
    sim->stdout_fd = -1;
}

/* GET path from the simulator; the body into buf. */
static bool http_get(unsigned port, const char *path, char *buf, size_t len)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char request[512];
    size_t used = 0;
    char *body;
    int fd;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return false;
    }
    snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) {
        close(fd);
        return false;
    }
    while (used < len - 1) {
        ssize_t n = recv(fd, buf + used, len - 1 - used, 0);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    buf[used] = '\0';
    body = strstr(buf, "\r\n\r\n");
    if (!body)
        return false;
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return true;
}

static uint64_t json_counter(const char *body, const char *name)
{
    char key[64];
    const char *at;

    snprintf(key, sizeof(key), "\"%s\": ", name);
    at = strstr(body, key);
    return at ? strtoull(at + strlen(key), NULL, 10) : UINT64_MAX;
}

/* The simulator's stream requests and TCP connections so far (this /stats
 * request's connection included); UINT64_MAX on failure. */
static void sim_stats(uint64_t *ret_streams, uint64_t *ret_connections)
{
    char body[2048];

    *ret_streams = UINT64_MAX;
    *ret_connections = UINT64_MAX;
    if (!http_get(plain_sim.port, "/stats", body, sizeof(body)))
        return;
    *ret_streams = json_counter(body, "streams");
    *ret_connections = json_counter(body, "connections");
}

static void sim_url(char *buf, size_t len, const char *path)
{
    snprintf(buf, len, "http://127.0.0.1:%u%s", plain_sim.port, path);
}

static long maxrss_kb(void)
{
    struct rusage usage;

    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

/* ---- helpers ----------------------------------------------------------------- */

static enum grab_result snapshot_of(const char *path, const struct grab_config *base,
                                    char *reason, size_t reason_len)
{
    struct grab_config config = base ? *base : (struct grab_config){0};
    struct grab_frame *frame = NULL;
    char url[512];
    enum grab_result result;

    sim_url(url, sizeof(url), path);
    config.url = url;
    reason[0] = '\0';
    result = grab_snapshot(&config, &frame, reason, reason_len);
    if (result == GRAB_OK) {
        CHECK(frame != NULL);
        CHECK(frame->len > 4 && frame->data[0] == 0xff && frame->data[1] == 0xd8);
        CHECK(frame->width > 0 && frame->height > 0);
    }
    if (result != GRAB_OK && reason[0] == '\0')
        printf("#   no reason for %s\n", grab_result_str(result));
    printf("#   snapshot %s -> %s (%s)\n", path, grab_result_str(result), reason);
    grab_frame_free(frame);
    return result;
}

/* Polls until a session ends or total_ms passes; counts the frames. */
static enum grab_result stream_until_end(struct grab_stream *stream, int total_ms,
                                         unsigned *ret_frames, char *reason, size_t reason_len)
{
    int64_t deadline = now_ms() + total_ms;
    enum grab_result result = GRAB_NO_FRAME;
    unsigned frames = 0;

    reason[0] = '\0';
    while (now_ms() < deadline) {
        struct grab_frame *frame = NULL;

        result = grab_stream_poll(stream, 200, reason, reason_len);
        if (result == GRAB_OK) {
            CHECK(grab_stream_take_frame(stream, &frame) == GRAB_OK);
            frames++;
            grab_frame_free(frame);
            result = GRAB_NO_FRAME; /* what the deadline reports: still going */
            continue;
        }
        if (result != GRAB_NO_FRAME)
            break;
    }
    *ret_frames = frames;
    return result;
}

static enum grab_result stream_of(const char *path, const struct grab_config *base, int total_ms,
                                  unsigned *ret_frames, char *reason, size_t reason_len)
{
    struct grab_config config = base ? *base : (struct grab_config){0};
    struct grab_stream *stream = NULL;
    char url[512];
    enum grab_result result;

    sim_url(url, sizeof(url), path);
    config.url = url;
    result = grab_stream_open(&config, &stream, reason, reason_len);
    CHECK(result == GRAB_OK);
    if (result != GRAB_OK)
        return result;
    result = stream_until_end(stream, total_ms, ret_frames, reason, reason_len);
    printf("#   stream %s -> %s after %u frames (%s)\n", path, grab_result_str(result),
           *ret_frames, reason);
    grab_stream_close(stream);
    return result;
}

/* ---- URL parsing ------------------------------------------------------------- */

static void test_result_strings(void)
{
    for (int r = 0; r < GRAB_RESULT_MAX; r++)
        CHECK(strcmp(grab_result_str((enum grab_result)r), "unknown result") != 0);
    CHECK(strcmp(grab_result_str(GRAB_RESULT_MAX), "unknown result") == 0);
}

static void test_url_parse(void)
{
    struct grab_url url;
    char reason[GRAB_REASON_SIZE];
    char long_url[GRAB_MAX_URL + 16];
    static const char *const bad[] = {
        "", "ftp://cam/", "cam:8080/", "http://", "http:///path", "http://user:pw@cam/",
        "http://user@cam/", "http://cam:0/", "http://cam:65536/", "http://cam:123456/",
        "http://cam:8o/", "http://ca m/", "http://cam/a b", "http://cam/\x01", "http://cam/\x7f",
        "http://cam\xc3\xa9/", "http://[::1/", "http://[]/", "http://[fe80::1%25eth0]/",
        "http://[::1]x/", "http://[not:v6]/", "http://a..b/", "http://.cam/", "http://c$m/",
        "http://cam\r\nHost: evil/",
    };

    CHECK(grab_url_parse("http://cam.local:8080/?action=stream", &url, NULL, 0) == GRAB_OK);
    CHECK(!url.tls && !url.ipv6 && url.port == 8080);
    CHECK(strcmp(url.host, "cam.local") == 0 && strcmp(url.target, "/?action=stream") == 0);

    CHECK(grab_url_parse("HTTP://Example.COM", &url, NULL, 0) == GRAB_OK);
    CHECK(strcmp(url.host, "example.com") == 0 && url.port == 80 && strcmp(url.target, "/") == 0);

    CHECK(grab_url_parse("https://[::1]:8443/x/y?z=1#frag", &url, NULL, 0) == GRAB_OK);
    CHECK(url.tls && url.ipv6 && url.port == 8443);
    CHECK(strcmp(url.host, "::1") == 0 && strcmp(url.target, "/x/y?z=1") == 0);

    CHECK(grab_url_parse("https://cam", &url, NULL, 0) == GRAB_OK);
    CHECK(url.tls && url.port == 443);
    CHECK(grab_url_parse("http://cam?action=snapshot", &url, NULL, 0) == GRAB_OK);
    CHECK(strcmp(url.target, "/?action=snapshot") == 0);
    CHECK(grab_url_parse("http://cam:/", &url, NULL, 0) == GRAB_OK && url.port == 80);
    CHECK(grab_url_parse("http://192.168.1.20:8080/webcam/?action=stream", &url, NULL, 0) ==
          GRAB_OK);
    CHECK(strcmp(url.host, "192.168.1.20") == 0);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum grab_result result;

        reason[0] = '\0';
        url.port = 4242;
        result = grab_url_parse(bad[i], &url, reason, sizeof(reason));
        if (result != GRAB_ERR_URL)
            printf("#   accepted: %s\n", bad[i]);
        CHECK(result == GRAB_ERR_URL);
        CHECK(reason[0] != '\0');
        CHECK(url.port == 4242); /* untouched on failure */
    }

    memcpy(long_url, "http://cam/", 11);
    memset(long_url + 11, 'a', sizeof(long_url) - 12);
    long_url[sizeof(long_url) - 1] = '\0';
    CHECK(grab_url_parse(long_url, &url, NULL, 0) == GRAB_ERR_URL);
    long_url[GRAB_MAX_URL] = '\0';
    CHECK(grab_url_parse(long_url, &url, NULL, 0) == GRAB_OK);

    CHECK(grab_url_parse(NULL, &url, NULL, 0) == GRAB_ERR_INVALID);
    CHECK(grab_url_parse("http://cam/", NULL, NULL, 0) == GRAB_ERR_INVALID);
}

static void test_url_resolve(void)
{
    struct grab_url base;
    struct grab_url next;
    char reason[GRAB_REASON_SIZE];

    CHECK(grab_url_parse("http://cam:8080/a/b?x=1", &base, NULL, 0) == GRAB_OK);

    CHECK(grab_url_resolve(&base, "/snap", &next, NULL, 0) == GRAB_OK);
    CHECK(strcmp(next.host, "cam") == 0 && next.port == 8080 && strcmp(next.target, "/snap") == 0);
    CHECK(grab_url_resolve(&base, "c?y=2", &next, NULL, 0) == GRAB_OK);
    CHECK(strcmp(next.target, "/a/c?y=2") == 0);
    CHECK(grab_url_resolve(&base, "?z", &next, NULL, 0) == GRAB_OK);
    CHECK(strcmp(next.target, "/a/b?z") == 0);
    CHECK(grab_url_resolve(&base, "/p#frag", &next, NULL, 0) == GRAB_OK);
    CHECK(strcmp(next.target, "/p") == 0);
    CHECK(grab_url_resolve(&base, "http://other/p", &next, NULL, 0) == GRAB_OK);
    CHECK(strcmp(next.host, "other") == 0 && next.port == 80 && strcmp(next.target, "/p") == 0);
    CHECK(grab_url_resolve(&base, "//other:81/q", &next, NULL, 0) == GRAB_OK);
    CHECK(!next.tls && next.port == 81 && strcmp(next.target, "/q") == 0);

    next.port = 4242;
    CHECK(grab_url_resolve(&base, "https://other/", &next, reason, sizeof(reason)) ==
          GRAB_ERR_REDIRECT);
    CHECK(strstr(reason, "https") != NULL);
    CHECK(grab_url_resolve(&base, "ftp://other/", &next, NULL, 0) == GRAB_ERR_REDIRECT);
    CHECK(grab_url_resolve(&base, "", &next, NULL, 0) == GRAB_ERR_REDIRECT);
    CHECK(grab_url_resolve(&base, "/a b", &next, NULL, 0) == GRAB_ERR_REDIRECT);
    CHECK(grab_url_resolve(&base, "http://u:p@other/", &next, NULL, 0) == GRAB_ERR_REDIRECT);
    CHECK(next.port == 4242);

    CHECK(grab_url_parse("https://cam/x", &base, NULL, 0) == GRAB_OK);
    CHECK(grab_url_resolve(&base, "http://cam/x", &next, NULL, 0) == GRAB_ERR_REDIRECT);
    CHECK(grab_url_resolve(&base, "//cam2/y", &next, NULL, 0) == GRAB_OK && next.tls);
}

static void test_config_checks(void)
{
    struct grab_config config = {.url = "http://127.0.0.1:1/"};
    struct grab_stream *stream = NULL;
    struct grab_frame *frame = NULL;
    char reason[GRAB_REASON_SIZE];

    config.max_frame = GRAB_MAX_FRAME_LIMIT + 1u;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_ERR_INVALID);
    CHECK(stream == NULL);
    config.max_frame = 0;
    config.read_timeout_ms = -1;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_ERR_INVALID);
    config.read_timeout_ms = 0;
    config.ca_file = "/nonexistent/ca.pem";
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_ERR_INVALID);
    CHECK(strstr(reason, "ca.pem") != NULL);
    config.ca_file = NULL;
    config.url = "gopher://cam/";
    CHECK(grab_snapshot(&config, &frame, reason, sizeof(reason)) == GRAB_ERR_URL);
    CHECK(frame == NULL);
    CHECK(grab_snapshot(NULL, &frame, NULL, 0) == GRAB_ERR_INVALID);
    CHECK(grab_stream_open(NULL, &stream, NULL, 0) == GRAB_ERR_INVALID);
    CHECK(grab_stream_poll(NULL, 0, NULL, 0) == GRAB_ERR_INVALID);
    CHECK(grab_stream_take_frame(NULL, &frame) == GRAB_ERR_INVALID);
    CHECK(grab_stream_close(NULL) == NULL);
    CHECK(grab_frame_free(NULL) == NULL);
    grab_stream_interrupt(NULL);
}

/* ---- connecting ------------------------------------------------------------- */

static void test_connect_errors(void)
{
    struct grab_config config = {.connect_timeout_ms = 300};
    struct grab_frame *frame = NULL;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t addr_len = sizeof(addr);
    char reason[GRAB_REASON_SIZE];
    char url[128];
    int fillers[4] = {-1, -1, -1, -1};
    enum grab_result refused;
    enum grab_result timed_out;
    int64_t started;
    int lfd;

    /* Refused: a port that was free a moment ago. */
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&addr, &addr_len) == 0);
    close(lfd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", (unsigned)ntohs(addr.sin_port));
    config.url = url;
    refused = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   refused: %s (%s)\n", grab_result_str(refused), reason);
    CHECK(refused == GRAB_ERR_CONNECT_REFUSED);
    CHECK(frame == NULL);

    /* Timeout: a listener whose accept queue is full drops further SYNs. */
    addr.sin_port = 0;
    addr_len = sizeof(addr);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    CHECK(listen(lfd, 0) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&addr, &addr_len) == 0);
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fillers[i], (struct sockaddr *)&addr, sizeof(addr));
    }
    usleep(100000);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", (unsigned)ntohs(addr.sin_port));
    started = now_ms();
    timed_out = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   full backlog: %s after %lld ms (%s)\n", grab_result_str(timed_out),
           (long long)(now_ms() - started), reason);
    CHECK(timed_out == GRAB_ERR_CONNECT_TIMEOUT);
    CHECK(now_ms() - started < 3000);
    CHECK(refused != timed_out);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);

    /* A name that cannot resolve. */
    config.url = "http://nonexistent.invalid/";
    CHECK(grab_snapshot(&config, &frame, reason, sizeof(reason)) == GRAB_ERR_DNS);
    printf("#   dns: %s\n", reason);

    /* The same through a stream session: errors come from poll. */
    {
        struct grab_stream *stream = NULL;
        config.url = "http://nonexistent.invalid/";
        CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
        CHECK(grab_stream_poll(stream, 2000, reason, sizeof(reason)) == GRAB_ERR_DNS);
        /* Sticky. */
        CHECK(grab_stream_poll(stream, 0, reason, sizeof(reason)) == GRAB_ERR_DNS);
        CHECK(strstr(reason, "nonexistent.invalid") != NULL);
        grab_stream_close(stream);
    }
}

/* ---- snapshots ---------------------------------------------------------------- */

static void test_snapshot(void)
{
    struct grab_config config = {0};
    struct grab_frame *frame = NULL;
    char reason[GRAB_REASON_SIZE];
    char url[256];

    CHECK(snapshot_of("/?action=snapshot", NULL, reason, sizeof(reason)) == GRAB_OK);
    CHECK(snapshot_of("/snapshot?chunked=1", NULL, reason, sizeof(reason)) == GRAB_OK);
    /* A stream URL used as snapshot URL: its first frame. */
    CHECK(snapshot_of("/?action=stream", NULL, reason, sizeof(reason)) == GRAB_OK);

    snprintf(url, sizeof(url), "http://localhost:%u/?action=snapshot", plain_sim.port);
    config.url = url;
    CHECK(grab_snapshot(&config, &frame, reason, sizeof(reason)) == GRAB_OK);
    CHECK(frame && frame->width == 320 && frame->height == 240 && frame->seq == 1);
    frame = grab_frame_free(frame);
}

static void test_snapshot_misbehaviour(void)
{
    struct grab_config config = {0};
    char reason[GRAB_REASON_SIZE];
    long rss_before;
    int64_t started;

    CHECK(snapshot_of("/?action=snapshot&snapshot_status=404", NULL, reason, sizeof(reason)) ==
          GRAB_ERR_HTTP_STATUS);
    CHECK(strstr(reason, "404") != NULL);
    CHECK(snapshot_of("/?action=snapshot&snapshot_status=500", NULL, reason, sizeof(reason)) ==
          GRAB_ERR_HTTP_STATUS);
    CHECK(strstr(reason, "500") != NULL);
    CHECK(snapshot_of("/no/such/page", NULL, reason, sizeof(reason)) == GRAB_ERR_HTTP_STATUS);
    CHECK(snapshot_of("/?action=snapshot&truncate=1", NULL, reason, sizeof(reason)) ==
          GRAB_ERR_INVALID_JPEG);
    CHECK(snapshot_of("/?action=snapshot&wrong_content_type=1", NULL, reason, sizeof(reason)) ==
          GRAB_ERR_INVALID_JPEG);
    CHECK(snapshot_of("/?action=snapshot&close_mid_frame=1", NULL, reason, sizeof(reason)) ==
          GRAB_ERR_CLOSED);
    CHECK(snapshot_of("/?action=snapshot&close_mid_frame=1&chunked=1", NULL, reason,
                      sizeof(reason)) == GRAB_ERR_CLOSED);

    /* A stall longer than the read timeout. */
    config.read_timeout_ms = 400;
    started = now_ms();
    CHECK(snapshot_of("/?action=snapshot&stall=3", &config, reason, sizeof(reason)) ==
          GRAB_ERR_TIMEOUT);
    CHECK(now_ms() - started < 2000);
    /* A stall shorter than it: fine. */
    config.read_timeout_ms = 3000;
    CHECK(snapshot_of("/?action=snapshot&stall=0.5", &config, reason, sizeof(reason)) == GRAB_OK);
    /* No answer at all. */
    config.read_timeout_ms = 300;
    CHECK(snapshot_of("/hang?seconds=5", &config, reason, sizeof(reason)) == GRAB_ERR_TIMEOUT);
    /* Slow but steady is bounded by the total timeout. */
    config.read_timeout_ms = 5000;
    config.total_timeout_ms = 500;
    started = now_ms();
    CHECK(snapshot_of("/?action=snapshot&stall=3", &config, reason, sizeof(reason)) ==
          GRAB_ERR_TIMEOUT);
    CHECK(now_ms() - started < 2000);
    CHECK(strstr(reason, "500 ms") != NULL);

    /* 50 MiB of random bytes: refused at the cap, memory stays bounded. */
    rss_before = maxrss_kb();
    CHECK(snapshot_of("/?action=snapshot&garbage=50", NULL, reason, sizeof(reason)) ==
          GRAB_ERR_TOO_BIG);
    CHECK(snapshot_of("/?action=snapshot&garbage=50&garbage_length=1", NULL, reason,
                      sizeof(reason)) == GRAB_ERR_TOO_BIG);
    printf("#   maxrss %ld KiB, grew by %ld KiB\n", maxrss_kb(), maxrss_kb() - rss_before);
    CHECK(UNDER_ASAN || maxrss_kb() - rss_before < 30 * 1024);
    /* A small cap. */
    config = (struct grab_config){.max_frame = 1000};
    CHECK(snapshot_of("/?action=snapshot", &config, reason, sizeof(reason)) == GRAB_ERR_TOO_BIG);
}

static void test_redirects(void)
{
    char reason[GRAB_REASON_SIZE];
    char path[256];
    struct grab_config config = {0};
    struct grab_stream *stream = NULL;
    struct grab_stream_stats stats;
    char url[256];

    CHECK(snapshot_of("/redirect?hops=1", NULL, reason, sizeof(reason)) == GRAB_OK);
    CHECK(snapshot_of("/redirect?hops=3", NULL, reason, sizeof(reason)) == GRAB_OK);
    CHECK(snapshot_of("/redirect?hops=3&absolute=1", NULL, reason, sizeof(reason)) == GRAB_OK);
    CHECK(snapshot_of("/redirect?hops=4", NULL, reason, sizeof(reason)) == GRAB_ERR_REDIRECT);
    CHECK(strstr(reason, "redirects") != NULL);
    snprintf(path, sizeof(path), "/redirect?hops=1&to=https://127.0.0.1:%u/", plain_sim.port);
    CHECK(snapshot_of(path, NULL, reason, sizeof(reason)) == GRAB_ERR_REDIRECT);
    CHECK(snapshot_of("/redirect?hops=1&to=ftp://127.0.0.1/", NULL, reason, sizeof(reason)) ==
          GRAB_ERR_REDIRECT);

    /* A stream behind a redirect. */
    sim_url(url, sizeof(url), "/redirect?hops=2&to=/?action=stream");
    config.url = url;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    CHECK(grab_stream_poll(stream, 5000, reason, sizeof(reason)) == GRAB_OK);
    grab_stream_get_stats(stream, &stats);
    CHECK(stats.redirects == 2 && stats.http_status == 200 && stats.connected);
    grab_stream_close(stream);
}

/* ---- streams ---------------------------------------------------------------- */

static void test_stream_one_connection(void)
{
    struct grab_config config = {0};
    struct grab_stream *stream = NULL;
    struct grab_stream_stats stats;
    struct grab_frame *previous = NULL;
    char reason[GRAB_REASON_SIZE];
    char url[256];
    uint64_t streams_before;
    uint64_t connections_before;
    uint64_t streams_after;
    uint64_t connections_after;
    unsigned frames = 0;
    int64_t deadline;

    sim_stats(&streams_before, &connections_before);
    sim_url(url, sizeof(url), "/?action=stream");
    config.url = url;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    /* poll(0) does not wait: still connecting. */
    CHECK(grab_stream_poll(stream, 0, reason, sizeof(reason)) == GRAB_NO_FRAME);
    CHECK(grab_stream_take_frame(stream, &previous) == GRAB_NO_FRAME && previous == NULL);
    deadline = now_ms() + 10000;
    while (frames < 10 && now_ms() < deadline) {
        struct grab_frame *frame = NULL;
        enum grab_result result = grab_stream_poll(stream, 1000, reason, sizeof(reason));

        CHECK(result == GRAB_OK || result == GRAB_NO_FRAME);
        if (result != GRAB_OK)
            continue;
        CHECK(grab_stream_take_frame(stream, &frame) == GRAB_OK);
        CHECK(frame->width == 320 && frame->height == 240);
        CHECK(frame->len > 100 && frame->data[0] == 0xff && frame->data[1] == 0xd8);
        if (previous) {
            CHECK(frame->seq > previous->seq);
            CHECK(frame->len != previous->len ||
                  memcmp(frame->data, previous->data, frame->len) != 0);
        }
        grab_frame_free(previous);
        previous = frame;
        frames++;
    }
    CHECK(frames == 10);

    /* Not taking for a while: only the newest frame is held. */
    usleep(600000);
    CHECK(grab_stream_poll(stream, 1000, reason, sizeof(reason)) == GRAB_OK);
    {
        struct grab_frame *frame = NULL;
        CHECK(grab_stream_take_frame(stream, &frame) == GRAB_OK);
        CHECK(frame && previous && frame->seq > previous->seq + 3);
        grab_frame_free(frame);
    }
    grab_stream_get_stats(stream, &stats);
    CHECK(stats.connected && stats.http_status == 200);
    printf("#   frames %llu taken %llu replaced %llu memory %zu\n",
           (unsigned long long)stats.frames, (unsigned long long)stats.frames_taken,
           (unsigned long long)stats.frames_replaced, stats.memory);
    CHECK(stats.frames >= 14 && stats.frames_taken == 11 && stats.frames_replaced >= 3);
    CHECK(stats.invalid_frames == 0 && stats.too_big == 0);
    CHECK(stats.memory < 2 * GRAB_DEFAULT_MAX_FRAME);
    grab_frame_free(previous);
    grab_stream_close(stream);

    /* One stream request and one TCP connection for all of it (plus the
     * /stats request that reads the counters). */
    sim_stats(&streams_after, &connections_after);
    CHECK(streams_after - streams_before == 1);
    CHECK(connections_after - connections_before == 2);
}

static void test_stream_chunked(void)
{
    char reason[GRAB_REASON_SIZE];
    unsigned frames = 0;

    CHECK(stream_of("/stream?chunked=1", NULL, 1000, &frames, reason, sizeof(reason)) ==
          GRAB_NO_FRAME);
    CHECK(frames >= 5);
}

static void test_stream_misbehaviour(void)
{
    struct grab_config config = {.frame_timeout_ms = 1000, .max_bad_frames = 3};
    char reason[GRAB_REASON_SIZE];
    unsigned frames = 0;

    CHECK(stream_of("/?action=stream&wrong_content_type=1", &config, 3000, &frames, reason,
                    sizeof(reason)) == GRAB_ERR_NOT_MULTIPART);
    CHECK(frames == 0);
    CHECK(stream_of("/?action=stream&wrong_boundary=1", &config, 5000, &frames, reason,
                    sizeof(reason)) == GRAB_ERR_NO_BOUNDARY);
    CHECK(frames == 0 && strstr(reason, "--boundarydonotcross") != NULL);
    CHECK(stream_of("/?action=stream&truncate=1", &config, 5000, &frames, reason,
                    sizeof(reason)) == GRAB_ERR_INVALID_JPEG);
    CHECK(frames == 0);
    CHECK(stream_of("/?action=stream&close_mid_frame=1", &config, 5000, &frames, reason,
                    sizeof(reason)) == GRAB_ERR_CLOSED);
    CHECK(frames == 2 && strstr(reason, "middle of a frame") != NULL);
    CHECK(stream_of("/?action=snapshot", &config, 3000, &frames, reason, sizeof(reason)) ==
          GRAB_ERR_NOT_MULTIPART);
    CHECK(stream_of("/?action=stream&snapshot_status=500", &config, 2000, &frames, reason,
                    sizeof(reason)) == GRAB_NO_FRAME); /* snapshot-only switch */
    CHECK(stream_of("/nothing-here", &config, 3000, &frames, reason, sizeof(reason)) ==
          GRAB_ERR_HTTP_STATUS);
    CHECK(strstr(reason, "404") != NULL);
    config.read_timeout_ms = 300;
    CHECK(stream_of("/hang?seconds=5", &config, 3000, &frames, reason, sizeof(reason)) ==
          GRAB_ERR_TIMEOUT);
}

static void test_stream_stall_recovers(void)
{
    struct grab_config config = {.read_timeout_ms = 3000};
    struct grab_stream *stream = NULL;
    char reason[GRAB_REASON_SIZE];
    char url[256];
    uint64_t streams_before;
    uint64_t streams_after;
    uint64_t connections;
    unsigned frames_before_gap = 0;
    unsigned frames_after_gap = 0;
    unsigned empty_polls = 0;
    int64_t deadline = now_ms() + 6000;

    /* A 1 s stall, shorter than the read timeout: the same connection goes
     * on after it. */
    sim_stats(&streams_before, &connections);
    sim_url(url, sizeof(url), "/?action=stream&stall=1");
    config.url = url;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    while (now_ms() < deadline && frames_after_gap < 5) {
        struct grab_frame *frame = NULL;
        enum grab_result result = grab_stream_poll(stream, 200, reason, sizeof(reason));

        CHECK(result == GRAB_OK || result == GRAB_NO_FRAME);
        if (result == GRAB_NO_FRAME) {
            if (frames_before_gap > 0)
                empty_polls++;
            continue;
        }
        if (result != GRAB_OK)
            break;
        grab_stream_take_frame(stream, &frame);
        grab_frame_free(frame);
        if (empty_polls >= 3)
            frames_after_gap++;
        else
            frames_before_gap++;
    }
    printf("#   stall: %u frames, %u empty polls, %u frames after\n", frames_before_gap,
           empty_polls, frames_after_gap);
    CHECK(frames_before_gap >= 2 && empty_polls >= 3 && frames_after_gap >= 5);
    grab_stream_close(stream);
    sim_stats(&streams_after, &connections);
    CHECK(streams_after - streams_before == 1);

    /* A stall longer than the read timeout ends the session; a new one
     * recovers. */
    {
        unsigned frames = 0;
        config.read_timeout_ms = 500;
        CHECK(stream_of("/?action=stream&stall=3", &config, 5000, &frames, reason,
                        sizeof(reason)) == GRAB_ERR_TIMEOUT);
        CHECK(frames == 2);
        CHECK(stream_of("/?action=stream", &config, 1000, &frames, reason, sizeof(reason)) ==
              GRAB_NO_FRAME);
        CHECK(frames >= 5);
    }
}

static void test_stream_garbage(void)
{
    struct grab_config config = {0};
    struct grab_stream *stream = NULL;
    struct grab_stream_stats stats;
    char reason[GRAB_REASON_SIZE];
    char url[256];
    long rss_before = maxrss_kb();
    unsigned frames = 0;
    enum grab_result result;

    /* 50 MiB in one part: ended once 2 * max_frame + slack bytes brought no
     * frame. */
    sim_url(url, sizeof(url), "/?action=stream&garbage=50");
    config.url = url;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    result = stream_until_end(stream, 15000, &frames, reason, sizeof(reason));
    printf("#   garbage 50 MiB: %s after %u frames (%s)\n", grab_result_str(result), frames, reason);
    CHECK(result == GRAB_ERR_TOO_BIG);
    CHECK(frames == 2);
    grab_stream_get_stats(stream, &stats);
    CHECK(stats.too_big >= 1);
    CHECK(stats.bytes < 3 * (uint64_t)GRAB_DEFAULT_MAX_FRAME);
    grab_stream_close(stream);
    printf("#   maxrss grew by %ld KiB\n", maxrss_kb() - rss_before);
    CHECK(UNDER_ASAN || maxrss_kb() - rss_before < 30 * 1024);

    /* One oversized part among good frames is skipped, not fatal. */
    sim_url(url, sizeof(url), "/?action=stream&garbage=6");
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    result = stream_until_end(stream, 2500, &frames, reason, sizeof(reason));
    grab_stream_get_stats(stream, &stats);
    printf("#   garbage 6 MiB: %s after %u frames, too_big %llu\n", grab_result_str(result),
           frames, (unsigned long long)stats.too_big);
    CHECK(result == GRAB_NO_FRAME);
    CHECK(frames >= 10 && stats.too_big == 1);
    grab_stream_close(stream);

    /* A small cap makes every frame too big. */
    config.max_frame = 1000;
    config.frame_timeout_ms = 1000;
    CHECK(stream_of("/?action=stream", &config, 5000, &frames, reason, sizeof(reason)) ==
          GRAB_ERR_TOO_BIG);
}

struct interrupter {
    struct grab_stream *stream;
    int delay_ms;
};

static void *interrupt_later(void *arg)
{
    struct interrupter *job = arg;

    usleep((useconds_t)job->delay_ms * 1000u);
    grab_stream_interrupt(job->stream);
    return NULL;
}

static void test_interrupt(void)
{
    struct grab_config config = {0};
    struct grab_stream *stream = NULL;
    struct interrupter job;
    char reason[GRAB_REASON_SIZE];
    char url[256];
    pthread_t thread;
    int64_t started;

    /* Blocked waiting for a response head that never comes. */
    sim_url(url, sizeof(url), "/hang?seconds=10");
    config.url = url;
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    job = (struct interrupter){.stream = stream, .delay_ms = 300};
    CHECK(pthread_create(&thread, NULL, interrupt_later, &job) == 0);
    started = now_ms();
    CHECK(grab_stream_poll(stream, -1, reason, sizeof(reason)) == GRAB_ERR_INTERRUPTED);
    CHECK(now_ms() - started < 2000);
    pthread_join(thread, NULL);
    CHECK(grab_stream_poll(stream, 0, reason, sizeof(reason)) == GRAB_ERR_INTERRUPTED);
    grab_stream_close(stream);

    /* In the middle of a healthy stream, with a frame waiting. */
    sim_url(url, sizeof(url), "/?action=stream");
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    CHECK(grab_stream_poll(stream, 5000, reason, sizeof(reason)) == GRAB_OK);
    grab_stream_interrupt(stream);
    CHECK(grab_stream_poll(stream, 5000, reason, sizeof(reason)) == GRAB_ERR_INTERRUPTED);
    grab_stream_close(stream);
}

/* A snapshot session: grab_stream_interrupt() from another thread ends a
 * GET that waits for the head or for the rest of the body (sec09). */
static void test_snapshot_interrupt(void)
{
    static const char *const paths[] = {"/hang?seconds=10", "/?action=snapshot&stall=10"};
    struct grab_config config = {.total_timeout_ms = 10000, .read_timeout_ms = 10000};
    struct grab_stream *session = NULL;
    struct grab_frame *frame = NULL;
    struct interrupter job;
    char reason[GRAB_REASON_SIZE];
    char url[256];
    pthread_t thread;
    int64_t started;
    size_t i;

    config.url = url;
    for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        sim_url(url, sizeof(url), paths[i]);
        CHECK(grab_snapshot_open(&config, &session, reason, sizeof(reason)) == GRAB_OK);
        job = (struct interrupter){.stream = session, .delay_ms = 300};
        CHECK(pthread_create(&thread, NULL, interrupt_later, &job) == 0);
        started = now_ms();
        CHECK(grab_snapshot_run(session, &frame, reason, sizeof(reason)) ==
              GRAB_ERR_INTERRUPTED);
        CHECK(now_ms() - started < 2000);
        CHECK(frame == NULL);
        CHECK(strcmp(reason, "interrupted") == 0);
        pthread_join(thread, NULL);
        CHECK(grab_snapshot_run(session, &frame, reason, sizeof(reason)) ==
              GRAB_ERR_INTERRUPTED);
        session = grab_stream_close(session);
    }

    /* Interrupted before it ran: no request is sent. */
    sim_url(url, sizeof(url), "/?action=snapshot");
    CHECK(grab_snapshot_open(&config, &session, reason, sizeof(reason)) == GRAB_OK);
    grab_stream_interrupt(session);
    CHECK(grab_snapshot_run(session, &frame, reason, sizeof(reason)) == GRAB_ERR_INTERRUPTED);
    session = grab_stream_close(session);

    /* Not interrupted: one frame, then the session is spent. */
    CHECK(grab_snapshot_open(&config, &session, reason, sizeof(reason)) == GRAB_OK);
    CHECK(grab_snapshot_run(session, &frame, reason, sizeof(reason)) == GRAB_OK);
    CHECK(frame != NULL && frame->len > 4 && frame->data[0] == 0xff);
    frame = grab_frame_free(frame);
    CHECK(grab_snapshot_run(session, &frame, reason, sizeof(reason)) == GRAB_ERR_INVALID);
    CHECK(frame == NULL);
    session = grab_stream_close(session);

    /* Not a snapshot session, or no frame pointer. */
    CHECK(grab_stream_open(&config, &session, reason, sizeof(reason)) == GRAB_OK);
    CHECK(grab_snapshot_run(session, &frame, reason, sizeof(reason)) == GRAB_ERR_INVALID);
    session = grab_stream_close(session);
    CHECK(grab_snapshot_run(NULL, &frame, reason, sizeof(reason)) == GRAB_ERR_INVALID);
    CHECK(grab_snapshot_open(&config, &session, reason, sizeof(reason)) == GRAB_OK);
    CHECK(grab_snapshot_run(session, NULL, reason, sizeof(reason)) == GRAB_ERR_INVALID);
    session = grab_stream_close(session);
}

/* ---- TLS ------------------------------------------------------------------------ */

static void test_tls(void)
{
    struct grab_config config = {0};
    struct grab_frame *frame = NULL;
    struct grab_stream *stream = NULL;
    char reason[GRAB_REASON_SIZE];
    char url[256];
    enum grab_result result;

    if (tls_sim.pid <= 0) {
        printf("#   skipped: the TLS simulator did not start (openssl CLI missing?)\n");
        return;
    }
    /* Trusted CA, matching name. */
    snprintf(url, sizeof(url), "https://localhost:%u/?action=snapshot", tls_sim.port);
    config.url = url;
    config.ca_file = ca_file;
    result = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   https snapshot: %s (%s)\n", grab_result_str(result), reason);
    CHECK(result == GRAB_OK && frame && frame->width == 320);
    frame = grab_frame_free(frame);

    /* A stream over TLS. */
    snprintf(url, sizeof(url), "https://localhost:%u/?action=stream", tls_sim.port);
    CHECK(grab_stream_open(&config, &stream, reason, sizeof(reason)) == GRAB_OK);
    for (int i = 0; i < 5; i++) {
        CHECK(grab_stream_poll(stream, 3000, reason, sizeof(reason)) == GRAB_OK);
        CHECK(grab_stream_take_frame(stream, &frame) == GRAB_OK);
        frame = grab_frame_free(frame);
    }
    grab_stream_close(stream);

    /* The system store does not know the test CA. */
    snprintf(url, sizeof(url), "https://localhost:%u/?action=snapshot", tls_sim.port);
    config.ca_file = NULL;
    result = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   unknown CA: %s (%s)\n", grab_result_str(result), reason);
    CHECK(result == GRAB_ERR_TLS_VERIFY);

    /* Right CA, wrong name: the certificate is for localhost only. */
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/?action=snapshot", tls_sim.port);
    config.ca_file = ca_file;
    result = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   wrong name: %s (%s)\n", grab_result_str(result), reason);
    CHECK(result == GRAB_ERR_TLS_VERIFY);

    /* https to a plain HTTP server, http to a TLS server. */
    snprintf(url, sizeof(url), "https://localhost:%u/?action=snapshot", plain_sim.port);
    config.read_timeout_ms = 2000;
    result = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   https to http: %s (%s)\n", grab_result_str(result), reason);
    CHECK(result == GRAB_ERR_TLS);
    snprintf(url, sizeof(url), "http://localhost:%u/?action=snapshot", tls_sim.port);
    result = grab_snapshot(&config, &frame, reason, sizeof(reason));
    printf("#   http to https: %s (%s)\n", grab_result_str(result), reason);
    CHECK(result != GRAB_OK && frame == NULL);
}

int main(void)
{
    bool have_sim;
    bool have_tls = false;

    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN_TEST(test_result_strings);
    RUN_TEST(test_url_parse);
    RUN_TEST(test_url_resolve);
    RUN_TEST(test_config_checks);
    RUN_TEST(test_connect_errors);

    have_sim = sim_start(&plain_sim, NULL);
    if (!have_sim) {
        printf("# the simulator did not start (TSD_PYTHON=%s TSD_WEBCAM_SIM=%s)\n",
               getenv("TSD_PYTHON") ? getenv("TSD_PYTHON") : "(unset)",
               getenv("TSD_WEBCAM_SIM") ? getenv("TSD_WEBCAM_SIM") : "(unset)");
        CHECK(getenv("TSD_PYTHON") == NULL); /* set but broken: a failure */
        sim_stop(&plain_sim);
        return CHECK_DONE();
    }
    snprintf(tls_dir, sizeof(tls_dir), "/tmp/tsd-grab-tls-XXXXXX");
    if (mkdtemp(tls_dir)) {
        const char *const tls_args[] = {"--tls-dir", tls_dir, NULL};
        snprintf(ca_file, sizeof(ca_file), "%s/ca.pem", tls_dir);
        have_tls = sim_start(&tls_sim, tls_args);
        if (!have_tls)
            sim_stop(&tls_sim);
    }

    RUN_TEST(test_snapshot);
    RUN_TEST(test_snapshot_misbehaviour);
    RUN_TEST(test_redirects);
    RUN_TEST(test_stream_one_connection);
    RUN_TEST(test_stream_chunked);
    RUN_TEST(test_stream_misbehaviour);
    RUN_TEST(test_stream_stall_recovers);
    RUN_TEST(test_stream_garbage);
    RUN_TEST(test_interrupt);
    RUN_TEST(test_snapshot_interrupt);
    RUN_TEST(test_tls);

    sim_stop(&tls_sim);
    sim_stop(&plain_sim);
    if (tls_dir[0]) {
        static const char *const names[] = {"ca.pem", "ca.key", "ca.srl", "server.pem",
                                            "server.key", "server.csr", "ext.cnf"};
        char path[400];
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", tls_dir, names[i]);
            unlink(path);
        }
        rmdir(tls_dir);
    }
    return CHECK_DONE();
}
