/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Unit tests for cloud-print downloads (grab_download_* in native/core/grab.c
 * and grab_body.c, fetch.c): streamed to a file, bounded, checked against
 * the download rule before every connect and redirect, MD5 checked, and a
 * failed download leaves no file. A server on a loopback thread plays each
 * response; no network is used. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "evq.h"
#include "fetch.h"
#include "grab.h"
#include "hostrule.h"

/* One scripted response: the head (with %u for the server's port), then
 * body_len bytes of the file (stopping after send_len bytes when it is
 * smaller: the server closes mid-way), or stall_ms of silence first. */
struct reply {
    const char *head;
    size_t body_len;
    size_t send_len;
    int stall_ms;
    size_t nul_at; /* 1 + the index of a NUL byte in the body; 0: none */
};

struct server {
    int fd;
    unsigned port;
    const struct reply *replies;
    size_t count;
    size_t served; /* connections accepted */
    pthread_t thread;
};

/* text with its "%u" (at most one) replaced by port. */
static void with_port(char *out, size_t size, const char *text, unsigned port)
{
    const char *mark = strstr(text, "%u");

    if (!mark) {
        snprintf(out, size, "%s", text);
        return;
    }
    snprintf(out, size, "%.*s%u%s", (int)(mark - text), text, port, mark + 2);
}

static unsigned char body_byte(size_t i)
{
    /* G-code-like text, so the same bytes serve the shim's tests too. */
    static const char line[] = "G1 X10.5 Y20.25 E0.4\n";
    return (unsigned char)line[i % (sizeof(line) - 1)];
}

static void body_md5(size_t len, unsigned char *ret_md5)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[4096];
    unsigned int out = 0;

    EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    for (size_t done = 0; done < len;) {
        size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = body_byte(done + i);
        EVP_DigestUpdate(ctx, buf, n);
        done += n;
    }
    EVP_DigestFinal_ex(ctx, ret_md5, &out);
    EVP_MD_CTX_free(ctx);
}

static void *serve(void *arg)
{
    struct server *srv = arg;

    for (size_t k = 0; k < srv->count; k++) {
        const struct reply *r = &srv->replies[k];
        char request[8192];
        char head[1024];
        unsigned char buf[65536];
        size_t got = 0;
        size_t limit;
        int c = accept(srv->fd, NULL, NULL);

        if (c < 0)
            return NULL;
        srv->served++;
        while (got < sizeof(request) - 1) {
            ssize_t n = recv(c, request + got, sizeof(request) - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
            request[got] = '\0';
            if (strstr(request, "\r\n\r\n"))
                break;
        }
        if (r->stall_ms > 0)
            usleep((useconds_t)r->stall_ms * 1000u);
        with_port(head, sizeof(head), r->head, srv->port);
        if (send(c, head, strlen(head), MSG_NOSIGNAL) < 0) {
            close(c);
            continue;
        }
        limit = r->send_len && r->send_len < r->body_len ? r->send_len : r->body_len;
        for (size_t done = 0; done < limit;) {
            size_t n = limit - done < sizeof(buf) ? limit - done : sizeof(buf);
            for (size_t i = 0; i < n; i++)
                buf[i] = done + i + 1 == r->nul_at ? 0 : body_byte(done + i);
            if (send(c, buf, n, MSG_NOSIGNAL) < 0)
                break;
            done += n;
        }
        close(c);
    }
    return NULL;
}

static bool server_start(struct server *srv, const struct reply *replies, size_t count)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);

    memset(srv, 0, sizeof(*srv));
    srv->replies = replies;
    srv->count = count;
    srv->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv->fd < 0 || bind(srv->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        listen(srv->fd, 8) != 0 || getsockname(srv->fd, (struct sockaddr *)&addr, &len) != 0)
        return false;
    srv->port = ntohs(addr.sin_port);
    return pthread_create(&srv->thread, NULL, serve, srv) == 0;
}

static void server_stop(struct server *srv)
{
    shutdown(srv->fd, SHUT_RDWR);
    close(srv->fd);
    pthread_join(srv->thread, NULL);
}

/* Downloads url (with %u for the port) into a fresh file through the
 * grab_download API; returns the result, with the file's size. */
static enum grab_result download_with(const struct server *srv, const char *server_host,
                                      const char *url_format, uint64_t max_bytes, int total_ms,
                                      size_t max_line, struct grab_download_info *ret_info,
                                      char *why, size_t why_len)
{
    struct hostrule_fetch_policy policy = {.server_host = server_host};
    char url[256];
    char path[] = "/tmp/tsd-test-fetch-XXXXXX";
    int fd = mkstemp(path);
    struct grab_download_config config;
    struct grab_stream *session = NULL;
    enum grab_result result;

    with_port(url, sizeof(url), url_format, srv ? srv->port : 1u);
    config = (struct grab_download_config){.url = url, .policy = &policy, .fd = fd,
                                           .max_bytes = max_bytes, .total_timeout_ms = total_ms,
                                           .read_timeout_ms = total_ms, .max_line = max_line};
    result = grab_download_open(&config, &session, why, why_len);
    if (result == GRAB_OK)
        result = grab_download_poll(session, -1, why, why_len);
    memset(ret_info, 0, sizeof(*ret_info));
    grab_download_get_info(session, ret_info);
    grab_stream_close(session);
    close(fd);
    unlink(path);
    return result;
}

static enum grab_result download(const struct server *srv, const char *server_host,
                                 const char *url_format, uint64_t max_bytes, int total_ms,
                                 struct grab_download_info *ret_info, char *why, size_t why_len)
{
    return download_with(srv, server_host, url_format, max_bytes, total_ms, 0, ret_info, why,
                         why_len);
}

/* With the G-code sanity check on. */
static enum grab_result download_checked(const struct server *srv, size_t max_line, char *why,
                                         size_t why_len)
{
    struct grab_download_info info;

    return download_with(srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000000, 10000, max_line,
                         &info, why, why_len);
}

static void test_cloudprint_download_streams_and_hashes(void)
{
    static const struct reply replies[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n", 3000000, 0, 0, 0},
        /* chunked is de-chunked before it is written */
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "15\r\nG1 X10.5 Y20.25 E0.4\n\r\n0\r\n\r\n", 0, 0, 0, 0},
    };
    struct server srv;
    struct grab_download_info info;
    unsigned char md5[16];
    char why[GRAB_REASON_SIZE] = "";

    CHECK(server_start(&srv, replies, 2));
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/file.gcode", 10000000, 10000, &info,
                   why, sizeof(why)) == GRAB_OK);
    body_md5(3000000, md5);
    CHECK(info.done && info.bytes == 3000000 && info.expected == 3000000);
    CHECK(memcmp(info.md5, md5, 16) == 0);
    CHECK(!info.md5_declared);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/c", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_OK);
    body_md5(21, md5);
    CHECK(info.bytes == 21 && memcmp(info.md5, md5, 16) == 0);
    server_stop(&srv);
}

static void test_cloudprint_download_declared_md5(void)
{
    /* MD5 of 21 bytes of the pattern, base64: computed below into the heads. */
    static char good[256];
    static char goog[256];
    static char bad[256];
    struct reply replies[3];
    struct server srv;
    struct grab_download_info info;
    unsigned char md5[16];
    unsigned char b64[32];
    char why[GRAB_REASON_SIZE] = "";

    body_md5(21, md5);
    EVP_EncodeBlock(b64, md5, 16);
    snprintf(good, sizeof(good), "HTTP/1.1 200 OK\r\nContent-Length: 21\r\nContent-MD5: %s\r\n\r\n", b64);
    snprintf(goog, sizeof(goog),
             "HTTP/1.1 200 OK\r\nContent-Length: 21\r\nx-goog-hash: crc32c=AAAAAA==\r\n"
             "x-goog-hash: md5=%s\r\n\r\n", b64);
    md5[0] ^= 1;
    EVP_EncodeBlock(b64, md5, 16);
    snprintf(bad, sizeof(bad), "HTTP/1.1 200 OK\r\nContent-Length: 21\r\nContent-MD5: %s\r\n\r\n", b64);
    replies[0] = (struct reply){good, 21, 0, 0, 0};
    replies[1] = (struct reply){goog, 21, 0, 0, 0};
    replies[2] = (struct reply){bad, 21, 0, 0, 0};
    CHECK(server_start(&srv, replies, 3));
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_OK);
    CHECK(info.md5_declared);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_OK);
    CHECK(info.md5_declared);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_DIGEST);
    CHECK(strstr(why, "MD5") != NULL);
    server_stop(&srv);
}

static void test_cloudprint_download_bounds(void)
{
    static const struct reply replies[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", 5000, 0, 0, 0},   /* announced too big */
        {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 5000, 0, 0, 0},       /* too big as it comes */
        {"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", 5000, 1200, 0, 0}, /* closes mid-way */
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 10, 0, 3000, 0},    /* too slow */
    };
    struct server srv;
    struct grab_download_info info;
    char why[GRAB_REASON_SIZE] = "";

    CHECK(server_start(&srv, replies, 5));
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 4000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_TOO_BIG);
    CHECK(info.bytes == 0);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 4000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_TOO_BIG);
    CHECK(info.bytes <= 4000);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 10000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_CLOSED);
    CHECK(info.bytes == 1200 && !info.done);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 10000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_HTTP_STATUS);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 10000, 500, &info, why,
                   sizeof(why)) == GRAB_ERR_TIMEOUT);
    server_stop(&srv);
}

static void test_cloudprint_download_gcode_sanity(void)
{
    static const struct reply replies[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 63\r\n\r\n", 63, 0, 0, 30},
        {"HTTP/1.1 200 OK\r\nContent-Length: 63\r\n\r\n", 63, 0, 0, 0}, /* lines of 20 + LF */
        {"HTTP/1.1 200 OK\r\nContent-Length: 63\r\n\r\n", 63, 0, 0, 0},
    };
    struct server srv;
    char why[GRAB_REASON_SIZE] = "";

    CHECK(server_start(&srv, replies, 3));
    CHECK(download_checked(&srv, 100, why, sizeof(why)) == GRAB_ERR_CONTENT);
    CHECK(strstr(why, "NUL") != NULL);
    CHECK(download_checked(&srv, 19, why, sizeof(why)) == GRAB_ERR_CONTENT);
    CHECK(strstr(why, "line 1 ") != NULL);
    CHECK(download_checked(&srv, 20, why, sizeof(why)) == GRAB_OK);
    server_stop(&srv);
}

static void test_cloudprint_download_disk_full(void)
{
    static const struct reply replies[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 100000, 0, 0, 0},
    };
    struct hostrule_fetch_policy policy = {.server_host = "127.0.0.1"};
    struct server srv;
    struct grab_download_config config;
    struct grab_stream *session = NULL;
    char url[128];
    char why[GRAB_REASON_SIZE] = "";
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);

    CHECK(fd >= 0);
    CHECK(server_start(&srv, replies, 1));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/f", srv.port);
    config = (struct grab_download_config){.url = url, .policy = &policy, .fd = fd,
                                           .max_bytes = 1000000};
    CHECK(grab_download_open(&config, &session, why, sizeof(why)) == GRAB_OK);
    CHECK(grab_download_poll(session, -1, why, sizeof(why)) == GRAB_ERR_WRITE);
    CHECK(strstr(why, "No space left") != NULL);
    grab_stream_close(session);
    close(fd);
    server_stop(&srv);
}

static void test_cloudprint_download_rule(void)
{
    static const struct reply replies[] = {
        /* redirect to the same server host: followed */
        {"HTTP/1.1 302 Found\r\nLocation: /real.gcode\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n", 21, 0, 0, 0},
        /* redirect by name to this machine: another host, over http: refused */
        {"HTTP/1.1 302 Found\r\nLocation: http://localhost:%u/x\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
        /* redirect into the LAN */
        {"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://192.168.1.20/x\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
        /* more than 3 redirects */
        {"HTTP/1.1 302 Found\r\nLocation: /1\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
        {"HTTP/1.1 302 Found\r\nLocation: /2\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
        {"HTTP/1.1 302 Found\r\nLocation: /3\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
        {"HTTP/1.1 302 Found\r\nLocation: /4\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0},
    };
    struct server srv;
    struct grab_download_info info;
    char why[GRAB_REASON_SIZE] = "";

    CHECK(server_start(&srv, replies, sizeof(replies) / sizeof(replies[0])));
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_OK);
    CHECK(info.redirects == 1 && info.bytes == 21);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_REFUSED);
    CHECK(strstr(why, "redirect refused") != NULL);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_REFUSED);
    CHECK(download(&srv, "127.0.0.1", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_REDIRECT);
    CHECK(srv.served == sizeof(replies) / sizeof(replies[0]));
    /* Refused before any connection: http to a host that is not the
     * server's; https to a loopback or LAN address that is not it. */
    CHECK(download(&srv, "127.0.0.1", "http://localhost:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_REFUSED);
    CHECK(download(&srv, "127.0.0.1", "https://127.0.0.2:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_REFUSED);
    CHECK(strstr(why, "loopback") != NULL);
    CHECK(download(&srv, "obico.example", "https://10.1.2.3:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_REFUSED);
    CHECK(download(&srv, "localhost", "http://127.0.0.1:%u/f", 1000, 10000, &info, why,
                   sizeof(why)) == GRAB_ERR_REFUSED);
    CHECK(srv.served == sizeof(replies) / sizeof(replies[0])); /* nothing more connected */
    server_stop(&srv);
}

/* Waits for the final event of a fetch; returns its type and JSON body. */
static int final_event(struct evq *events, json_t **ret_body, unsigned *ret_progress)
{
    *ret_progress = 0;
    for (;;) {
        struct evq_event *event = NULL;
        int type;

        if (evq_pop(events, 20000, &event) != EVQ_OK)
            return -1;
        type = event->type;
        if (type == FETCH_EVENT_PROGRESS) {
            (*ret_progress)++;
            evq_event_free(event);
            continue;
        }
        *ret_body = json_loadb((const char *)event->data, event->len, 0, NULL);
        evq_event_free(event);
        return type;
    }
}

static void test_cloudprint_fetch_thread(void)
{
    static const struct reply replies[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", 2000000, 0, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", 5000, 2000, 0, 0},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 10, 0, 3000, 0},
    };
    struct server srv;
    struct evq *events = NULL;
    struct fetch *fetch = NULL;
    struct fetch_config config;
    struct stat st;
    json_t *body = NULL;
    unsigned progress;
    char url[128];
    char path[] = "/tmp/tsd-test-fetch-thread-XXXXXX";
    char why[GRAB_REASON_SIZE] = "";
    int fd = mkstemp(path);

    close(fd);
    unlink(path); /* fetch creates it */
    CHECK(evq_new(64, 65536, &events) == EVQ_OK);
    CHECK(server_start(&srv, replies, 3));
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/f", srv.port);
    config = (struct fetch_config){.url = url, .server_host = "127.0.0.1", .path = path,
                                   .max_bytes = 10000000, .progress_ms = 1};
    /* A whole file: DONE, the file is there and has every byte. */
    CHECK(fetch_start(&config, events, &fetch, why, sizeof(why)) == GRAB_OK);
    CHECK(final_event(events, &body, &progress) == FETCH_EVENT_DONE);
    CHECK(json_integer_value(json_object_get(body, "bytes")) == 2000000);
    CHECK(strlen(json_string_value(json_object_get(body, "md5"))) == 32);
    json_decref(body);
    fetch = fetch_free(fetch);
    CHECK(stat(path, &st) == 0 && st.st_size == 2000000);
    /* The file exists: refused, and the file is untouched. */
    CHECK(fetch_start(&config, events, &fetch, why, sizeof(why)) == GRAB_ERR_WRITE);
    CHECK(stat(path, &st) == 0 && st.st_size == 2000000);
    unlink(path);
    /* Closed mid-way: FAILED, no file. */
    CHECK(fetch_start(&config, events, &fetch, why, sizeof(why)) == GRAB_OK);
    CHECK(final_event(events, &body, &progress) == FETCH_EVENT_FAILED);
    CHECK(strcmp(json_string_value(json_object_get(body, "code")), "closed") == 0);
    json_decref(body);
    fetch = fetch_free(fetch);
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    /* Cancelled while waiting: FAILED "cancelled", no file. */
    CHECK(fetch_start(&config, events, &fetch, why, sizeof(why)) == GRAB_OK);
    usleep(200 * 1000);
    fetch_cancel(fetch);
    CHECK(final_event(events, &body, &progress) == FETCH_EVENT_FAILED);
    CHECK(strcmp(json_string_value(json_object_get(body, "code")), "cancelled") == 0);
    json_decref(body);
    fetch = fetch_free(fetch);
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    /* A refused URL creates nothing. */
    config.url = "http://192.168.1.1/f";
    CHECK(fetch_start(&config, events, &fetch, why, sizeof(why)) == GRAB_ERR_REFUSED);
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    server_stop(&srv);
    evq_free(events);
}

int main(void)
{
    RUN_TEST(test_cloudprint_download_streams_and_hashes);
    RUN_TEST(test_cloudprint_download_declared_md5);
    RUN_TEST(test_cloudprint_download_bounds);
    RUN_TEST(test_cloudprint_download_gcode_sanity);
    RUN_TEST(test_cloudprint_download_disk_full);
    RUN_TEST(test_cloudprint_download_rule);
    RUN_TEST(test_cloudprint_fetch_thread);
    return CHECK_DONE();
}
