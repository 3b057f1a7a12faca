/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "httptunnel.h"
#include "dechunk.h"
#include "httpresp.h"
#include "monotime.h"

#include <errno.h>
#include <jansson.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define HTUN_THREAD_NAME "tsd-httptun"
#define HTUN_READ_CHUNK (64u * 1024u)
#define HTUN_ERROR_TEXT 400
#define HTUN_MAX_REPLY_HEADERS HTTPRESP_MAX_HEADERS

struct job {
    struct job *next;
    struct bsonmsg_request *request;
};

struct htun {
    char host[HTUN_ADDRESS_SIZE];
    char port[8];
    char forwarded_for[HTUN_ADDRESS_SIZE];
    size_t queue_max;
    size_t queue_bytes_max;
    size_t max_response;
    htun_reply_fn *reply;
    htun_login_fn *login;
    void *user;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job *head;
    struct job *tail;
    struct htun_stats stats;
    bool stopping;
    int stop_fd;           /* an eventfd: readable once stopping, wakes every poll */
    pthread_t threads[HTUN_MAX_WORKERS];
    unsigned thread_count;
};

/* What one replay collected. */
struct exchange {
    const struct bsonmsg_request *request;
    int64_t deadline;
    int fd;
    struct httpresp *parser;
    unsigned char *body;
    size_t body_len;
    size_t body_cap;
    int status;
    char error[HTUN_ERROR_TEXT]; /* set: answer with error_status and this text */
    int error_status;
};

const char *htun_result_str(enum htun_result result)
{
    switch (result) {
    case HTUN_OK: return "ok";
    case HTUN_ERR_INVALID: return "invalid argument";
    case HTUN_ERR_NOMEM: return "out of memory";
    case HTUN_ERR_THREAD: return "a tunnel worker could not start";
    case HTUN_ERR_FULL: return "the tunnel's queue is full";
    case HTUN_RESULT_MAX: break;
    }
    return "unknown result";
}

static void set_error(struct exchange *x, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct exchange *x, int status, const char *fmt, ...)
{
    va_list args;

    if (x->error[0])
        return; /* the first reason is the one that matters */
    va_start(args, fmt);
    vsnprintf(x->error, sizeof(x->error), fmt, args);
    va_end(args);
    x->error_status = status;
}

/* ---- the replies ----------------------------------------------------------- */

void htun_answer_error(htun_reply_fn *reply, void *user, const char *ref, int status,
                       const char *text)
{
    static const struct bsonmsg_header plain[] = {
        {(char *)"Content-Type", (char *)"text/plain; charset=utf-8"},
        {(char *)"Cache-Control", (char *)"no-store"},
    };
    struct bsonmsg_http_reply answer = {
        .ref = ref, .status = status,
        .content = (const unsigned char *)text, .content_len = strlen(text),
        .headers = plain, .header_count = 2,
    };
    unsigned char *frame = NULL;
    size_t len = 0;

    if (bsonmsg_encode_http_reply(&answer, &frame, &len) == BSONMSG_OK)
        reply(user, frame, len);
}

/* Hop-by-hop fields and the body's framing are this connection's, not the
 * browser's; Set-Cookie travels in `cookies`. */
static bool reply_header_dropped(const char *name)
{
    static const char *const dropped[] = {
        "connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
        "upgrade", "proxy-authenticate", "proxy-connection", "set-cookie",
    };

    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        if (strcasecmp(name, dropped[i]) == 0)
            return true;
    return false;
}

static void send_reply(struct htun *pool, struct exchange *x)
{
    const char *cookies[HTUN_MAX_REPLY_HEADERS];
    struct bsonmsg_header headers[HTUN_MAX_REPLY_HEADERS];
    char *joined[HTUN_MAX_REPLY_HEADERS] = {0};
    struct bsonmsg_http_reply answer = {.ref = x->request->ref, .status = x->status};
    struct httpresp_info info;
    unsigned char *packed = NULL;
    unsigned char *frame = NULL;
    size_t frame_len = 0;
    size_t n_headers = 0;
    size_t n_cookies = 0;

    if (httpresp_get_info(x->parser, &info) != HTTPRESP_OK)
        return;
    for (size_t i = 0; i < info.header_count; i++) {
        const char *name;
        const char *value;
        size_t j;

        if (httpresp_header_at(x->parser, i, &name, &value) != HTTPRESP_OK)
            continue;
        if (strcasecmp(name, "set-cookie") == 0) {
            cookies[n_cookies++] = value;
            continue;
        }
        if (reply_header_dropped(name))
            continue;
        for (j = 0; j < n_headers && strcasecmp(headers[j].name, name) != 0; j++)
            ;
        if (j == n_headers) {
            headers[n_headers++] = (struct bsonmsg_header){(char *)name, (char *)value};
        } else {
            /* A repeated field is one list (RFC 9110 section 5.3). */
            size_t len = strlen(headers[j].value) + 2 + strlen(value) + 1;
            char *both = malloc(len);
            if (!both)
                continue;
            snprintf(both, len, "%s, %s", headers[j].value, value);
            free(joined[j]);
            joined[j] = both;
            headers[j].value = both;
        }
    }
    answer.cookies = cookies;
    answer.cookie_count = n_cookies;
    answer.headers = headers;
    answer.header_count = n_headers;
    answer.content = x->body;
    answer.content_len = x->body_len;
    if (x->body_len >= HTUN_COMPRESS_AT) {
        uLongf packed_len = compressBound((uLong)x->body_len);
        packed = malloc(packed_len);
        if (packed && compress2(packed, &packed_len, x->body, (uLong)x->body_len,
                                Z_DEFAULT_COMPRESSION) == Z_OK) {
            answer.content = packed;
            answer.content_len = packed_len;
            answer.compressed = true;
        } else {
            set_error(x, 502, "the printer ran out of memory compressing OctoPrint's answer");
        }
    }
    if (!x->error[0] && bsonmsg_encode_http_reply(&answer, &frame, &frame_len) == BSONMSG_OK)
        pool->reply(pool->user, frame, frame_len);
    else
        set_error(x, 502, "the printer could not encode OctoPrint's answer");
    free(packed);
    for (size_t i = 0; i < n_headers; i++)
        free(joined[i]);
}

/* ---- the request ---------------------------------------------------------------- */

/* Dropped from what the browser sent: the connection's own fields (this
 * hop sets them), the encodings (OctoPrint's answer is relayed as is), and
 * every forwarding field, so that nothing the browser claims about where
 * it is reaches OctoPrint (the one X-Forwarded-For is ours). */
static bool request_header_dropped(const char *name)
{
    static const char *const dropped[] = {
        "host", "connection", "keep-alive", "proxy-connection", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "content-length", "upgrade", "expect",
        "accept-encoding", "forwarded", "via", "x-real-ip", "x-client-ip", "true-client-ip",
        "cf-connecting-ip", "x-cluster-client-ip", "x-scheme", "x-script-name",
    };

    if (strncasecmp(name, "x-forwarded", 11) == 0)
        return true;
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        if (strcasecmp(name, dropped[i]) == 0)
            return true;
    return false;
}

static bool append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static bool append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list args;
    int n;

    for (;;) {
        va_start(args, fmt);
        n = vsnprintf(*buf + *len, *cap - *len, fmt, args);
        va_end(args);
        if (n < 0)
            return false;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return true;
        }
        char *grown = realloc(*buf, *cap * 2 + (size_t)n);
        if (!grown)
            return false;
        *buf = grown;
        *cap = *cap * 2 + (size_t)n;
    }
}

static char *build_head(const struct htun *pool, const struct bsonmsg_request *request,
                        size_t *ret_len)
{
    size_t cap = 4096;
    size_t len = 0;
    char *head = malloc(cap);
    bool ok = head != NULL;

    /* An IPv6 address goes in brackets in a Host field (RFC 9110 section 7.2). */
    bool v6 = strchr(pool->host, ':') != NULL;

    ok = ok && append(&head, &len, &cap, "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\n"
                      "Connection: close\r\nX-Forwarded-For: %s\r\n",
                      request->method, request->path, v6 ? "[" : "", pool->host, v6 ? "]" : "",
                      pool->port, pool->forwarded_for);
    for (size_t i = 0; ok && i < request->header_count; i++) {
        if (!request_header_dropped(request->headers[i].name))
            ok = append(&head, &len, &cap, "%s: %s\r\n", request->headers[i].name,
                        request->headers[i].value);
    }
    if (ok && (request->has_data || strcmp(request->method, "POST") == 0 ||
               strcmp(request->method, "PUT") == 0 || strcmp(request->method, "PATCH") == 0))
        ok = append(&head, &len, &cap, "Content-Length: %zu\r\n", request->data_len);
    ok = ok && append(&head, &len, &cap, "\r\n");
    if (!ok) {
        free(head);
        return NULL;
    }
    *ret_len = len;
    return head;
}

/* ---- the socket ------------------------------------------------------------ */

/* Waits for events on the socket, or the stop signal, until the deadline:
 * 1 ready, 0 timed out or stopping (the error says which), -1 failed. */
static int wait_for(struct htun *pool, struct exchange *x, short events)
{
    struct pollfd fds[2] = {{x->fd, events, 0}, {pool->stop_fd, POLLIN, 0}};

    for (;;) {
        int64_t left = x->deadline - now_ms();
        int rc;

        if (left <= 0) {
            set_error(x, 504, "OctoPrint did not answer within %u s", x->request->timeout_s);
            return 0;
        }
        rc = poll(fds, 2, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0) {
            set_error(x, 502, "waiting for OctoPrint failed (errno %d)", errno);
            return -1;
        }
        if (fds[1].revents) {
            set_error(x, 503, "the printer's tunnel is stopping");
            return 0;
        }
        if (fds[0].revents)
            return 1;
    }
}

static bool connect_local(struct htun *pool, struct exchange *x)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *addr = NULL;
    int err = 0;
    socklen_t err_len = sizeof(err);
    bool ok = false;

    if (getaddrinfo(pool->host, pool->port, &hints, &addr) != 0 || !addr) {
        set_error(x, 502, "OctoPrint's address %s:%s cannot be used", pool->host, pool->port);
        goto out;
    }
    x->fd = socket(addr->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (x->fd < 0) {
        set_error(x, 502, "the printer could not open a socket (errno %d)", errno);
        goto out;
    }
    if (connect(x->fd, addr->ai_addr, addr->ai_addrlen) == 0) {
        ok = true;
        goto out;
    }
    if (errno != EINPROGRESS) {
        err = errno;
    } else if (wait_for(pool, x, POLLOUT) == 1) {
        if (getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
            err = errno;
    } else {
        goto out;
    }
    if (err)
        set_error(x, 502, "OctoPrint does not answer on %s:%s (%s)", pool->host, pool->port,
                  err == ECONNREFUSED ? "connection refused" : "connection failed");
    ok = err == 0;
out:
    if (addr)
        freeaddrinfo(addr);
    return ok;
}

static bool send_all(struct htun *pool, struct exchange *x, const void *data, size_t len)
{
    const unsigned char *p = data;

    while (len > 0) {
        ssize_t n = send(x->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_for(pool, x, POLLOUT) != 1)
                return false;
        } else {
            set_error(x, 502, "OctoPrint closed the connection while the request was sent");
            return false;
        }
    }
    return true;
}

/* > 0 bytes, 0 the peer closed, -1 failed (error set). */
static ssize_t receive(struct htun *pool, struct exchange *x, unsigned char *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(x->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR) {
            set_error(x, 502, "reading OctoPrint's answer failed (errno %d)", errno);
            return -1;
        }
        if (wait_for(pool, x, POLLIN) != 1)
            return -1;
    }
}

static bool keep_body(struct htun *pool, struct exchange *x, const unsigned char *data, size_t len)
{
    if (len == 0)
        return true; /* x->body may still be NULL: no memcpy() to it */
    if (len > pool->max_response - x->body_len) {
        set_error(x, 502, "OctoPrint's answer is larger than the %zu MiB the tunnel carries",
                  pool->max_response / (1024 * 1024));
        return false;
    }
    if (x->body_len + len > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : HTUN_READ_CHUNK;
        unsigned char *grown;
        while (cap < x->body_len + len)
            cap *= 2;
        grown = realloc(x->body, cap);
        if (!grown) {
            set_error(x, 502, "the printer ran out of memory reading OctoPrint's answer");
            return false;
        }
        x->body = grown;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, len);
    x->body_len += len;
    return true;
}

/* Reads the head and the body. */
static bool read_response(struct htun *pool, struct exchange *x, unsigned char *buf)
{
    struct httpresp_info info;
    struct dechunk chunks;
    size_t used = 0;
    size_t avail = 0;
    ssize_t n;
    enum httpresp_result parsed = HTTPRESP_NEED_MORE;

    while (parsed == HTTPRESP_NEED_MORE) {
        if (avail == 0) {
            n = receive(pool, x, buf, HTUN_READ_CHUNK);
            if (n <= 0) {
                if (n == 0)
                    set_error(x, 502, "OctoPrint closed the connection without an answer");
                return false;
            }
            avail = (size_t)n;
        }
        parsed = httpresp_feed(x->parser, buf, avail, &used);
        if (parsed == HTTPRESP_NEED_MORE) {
            avail = 0;
        } else if (parsed == HTTPRESP_OK && httpresp_get_info(x->parser, &info) == HTTPRESP_OK &&
                   info.status < 200) {
            /* 1xx: the real answer follows */
            httpresp_reset(x->parser);
            memmove(buf, buf + used, avail - used);
            avail -= used;
            parsed = HTTPRESP_NEED_MORE;
        }
    }
    if (parsed != HTTPRESP_OK) {
        set_error(x, 502, "OctoPrint's answer is not valid HTTP (%s)", httpresp_result_str(parsed));
        return false;
    }
    httpresp_get_info(x->parser, &info);
    x->status = info.status;
    if (info.body == HTTPRESP_BODY_NONE || strcmp(x->request->method, "HEAD") == 0)
        return true;
    if (info.body == HTTPRESP_BODY_LENGTH && info.content_length > pool->max_response) {
        set_error(x, 502, "OctoPrint's answer is larger than the %zu MiB the tunnel carries",
                  pool->max_response / (1024 * 1024));
        return false;
    }
    memset(&chunks, 0, sizeof(chunks));
    dechunk_start(&chunks);
    memmove(buf, buf + used, avail - used);
    n = (ssize_t)(avail - used);
    for (;;) {
        size_t out = (size_t)n;
        if (info.body == HTTPRESP_BODY_CHUNKED && !dechunk_feed(&chunks, buf, (size_t)n, &out)) {
            set_error(x, 502, "OctoPrint's chunked answer is malformed");
            return false;
        }
        if (info.body == HTTPRESP_BODY_LENGTH && out > info.content_length - x->body_len)
            out = (size_t)(info.content_length - x->body_len);
        if (!keep_body(pool, x, buf, out))
            return false;
        if ((info.body == HTTPRESP_BODY_CHUNKED && dechunk_done(&chunks)) ||
            (info.body == HTTPRESP_BODY_LENGTH && x->body_len == info.content_length))
            return true;
        n = receive(pool, x, buf, HTUN_READ_CHUNK);
        if (n < 0)
            return false;
        if (n == 0) {
            if (info.body == HTTPRESP_BODY_CLOSE)
                return true;
            set_error(x, 502, "OctoPrint closed the connection in the middle of its answer");
            return false;
        }
    }
}

/* ---- logins ---------------------------------------------------------------- */

static bool is_login(const struct bsonmsg_request *request)
{
    return strcmp(request->method, "POST") == 0 &&
           (strcmp(request->path, "/api/login") == 0 || strncmp(request->path, "/api/login?", 11) == 0);
}

/* OctoPrint's UI asks {"passive": true} on every page load: not a login. */
static bool is_passive_login(const struct bsonmsg_request *request)
{
    json_t *body = request->has_data ? json_loadb((const char *)request->data,
                                                  request->data_len, 0, NULL) : NULL;
    bool passive = body && json_is_true(json_object_get(body, "passive"));

    json_decref(body);
    return passive;
}

static void report_login(struct htun *pool, struct exchange *x)
{
    json_t *answer = NULL;
    const char *name = "";

    if (x->status == 200 && x->body_len)
        answer = json_loadb((const char *)x->body, x->body_len, 0, NULL);
    if (answer && json_is_string(json_object_get(answer, "name")))
        name = json_string_value(json_object_get(answer, "name"));
    pool->login(pool->user, x->status, name);
    json_decref(answer);
}

/* ---- the workers ----------------------------------------------------------- */

static void replay(struct htun *pool, const struct bsonmsg_request *request)
{
    struct exchange x = {.request = request, .fd = -1};
    unsigned char *buf = malloc(HTUN_READ_CHUNK);
    char *head = NULL;
    size_t head_len = 0;
    bool login = is_login(request) && !is_passive_login(request);

    x.deadline = now_ms() + (int64_t)request->timeout_s * 1000;
    if (!buf || httpresp_new(&x.parser) != HTTPRESP_OK) {
        set_error(&x, 502, "the printer ran out of memory");
        goto out;
    }
    head = build_head(pool, request, &head_len);
    if (!head) {
        set_error(&x, 502, "the printer ran out of memory");
        goto out;
    }
    if (!connect_local(pool, &x) || !send_all(pool, &x, head, head_len) ||
        (request->data_len && !send_all(pool, &x, request->data, request->data_len)) ||
        !read_response(pool, &x, buf))
        goto out;
    send_reply(pool, &x);
out:
    pthread_mutex_lock(&pool->lock);
    if (x.error[0]) {
        pool->stats.failed++;
    } else {
        pool->stats.answered++;
        pool->stats.bytes_in += x.body_len;
        pool->stats.bytes_out += request->data_len;
    }
    pthread_mutex_unlock(&pool->lock);
    if (x.error[0])
        htun_answer_error(pool->reply, pool->user, request->ref, x.error_status, x.error);
    else if (login && pool->login)
        report_login(pool, &x);
    if (x.fd >= 0)
        close(x.fd);
    httpresp_free(x.parser);
    free(x.body);
    free(head);
    free(buf);
}

static void *worker_main(void *arg)
{
    struct htun *pool = arg;

    pthread_setname_np(pthread_self(), HTUN_THREAD_NAME);
    for (;;) {
        struct job *job;

        pthread_mutex_lock(&pool->lock);
        while (!pool->head && !pool->stopping)
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->stopping) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        job = pool->head;
        pool->head = job->next;
        if (!pool->head)
            pool->tail = NULL;
        pool->stats.queued--;
        pool->stats.queued_bytes -= job->request->data_len;
        pthread_mutex_unlock(&pool->lock);
        replay(pool, job->request);
        bsonmsg_request_free(job->request);
        free(job);
    }
}

enum htun_result htun_new(const struct htun_config *config, struct htun **ret_pool)
{
    struct htun *pool;
    unsigned workers;
    const char *forwarded_for = config && config->forwarded_for ? config->forwarded_for
                                                                : HTUN_DEFAULT_FORWARDED_FOR;
    unsigned char address[sizeof(struct in6_addr)];

    if (!config || !ret_pool || !config->host || !config->port || !config->reply ||
        strlen(config->host) >= sizeof(pool->host) || config->workers > HTUN_MAX_WORKERS)
        return HTUN_ERR_INVALID;
    /* A numeric address and nothing else goes into the header line. */
    if (strlen(forwarded_for) >= HTUN_ADDRESS_SIZE ||
        (inet_pton(AF_INET, forwarded_for, address) != 1 &&
         inet_pton(AF_INET6, forwarded_for, address) != 1))
        return HTUN_ERR_INVALID;
    pool = calloc(1, sizeof(*pool));
    if (!pool)
        return HTUN_ERR_NOMEM;
    snprintf(pool->host, sizeof(pool->host), "%s", config->host);
    snprintf(pool->port, sizeof(pool->port), "%u", (unsigned)config->port);
    snprintf(pool->forwarded_for, sizeof(pool->forwarded_for), "%s", forwarded_for);
    pool->queue_max = config->queue_requests ? config->queue_requests : HTUN_DEFAULT_QUEUE;
    pool->queue_bytes_max = config->queue_bytes ? config->queue_bytes : HTUN_DEFAULT_QUEUE_BYTES;
    pool->max_response = config->max_response ? config->max_response : HTUN_DEFAULT_MAX_RESPONSE;
    pool->reply = config->reply;
    pool->login = config->login;
    pool->user = config->user;
    pool->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pool->stop_fd < 0) {
        free(pool);
        return HTUN_ERR_NOMEM;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    workers = config->workers ? config->workers : HTUN_DEFAULT_WORKERS;
    for (unsigned i = 0; i < workers; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
            htun_free(pool);
            return HTUN_ERR_THREAD;
        }
        pool->thread_count++;
    }
    *ret_pool = pool;
    return HTUN_OK;
}

enum htun_result htun_submit(struct htun *pool, struct bsonmsg_request *request)
{
    struct job *job = NULL;
    bool full;

    if (!pool || !request)
        return HTUN_ERR_INVALID;
    pthread_mutex_lock(&pool->lock);
    full = pool->stopping || pool->stats.queued >= pool->queue_max ||
           request->data_len > pool->queue_bytes_max - pool->stats.queued_bytes;
    if (!full)
        job = malloc(sizeof(*job));
    if (job) {
        job->next = NULL;
        job->request = request;
        if (pool->tail)
            pool->tail->next = job;
        else
            pool->head = job;
        pool->tail = job;
        pool->stats.queued++;
        pool->stats.queued_bytes += request->data_len;
        pool->stats.requests++;
        pthread_cond_signal(&pool->wake);
    } else {
        pool->stats.refused_busy++;
    }
    pthread_mutex_unlock(&pool->lock);
    return job ? HTUN_OK : HTUN_ERR_FULL;
}

struct htun *htun_free(struct htun *pool)
{
    struct job *job;
    uint64_t one = 1;

    if (!pool)
        return NULL;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    if (write(pool->stop_fd, &one, sizeof(one)) < 0) {
        /* Cannot fail for a fresh eventfd; the workers still end at their deadline. */
    }
    for (unsigned i = 0; i < pool->thread_count; i++)
        pthread_join(pool->threads[i], NULL);
    while ((job = pool->head)) {
        pool->head = job->next;
        bsonmsg_request_free(job->request);
        free(job);
    }
    close(pool->stop_fd);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
    return NULL;
}

void htun_get_stats(struct htun *pool, struct htun_stats *ret_stats)
{
    if (!pool || !ret_stats)
        return;
    pthread_mutex_lock(&pool->lock);
    *ret_stats = pool->stats;
    pthread_mutex_unlock(&pool->lock);
}
