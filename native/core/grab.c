/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The frame grabber (grab.h): connecting (through conn.c), the request
 * and the response head, the engine that drives a session until a frame or
 * a deadline, and the API. The body is grab_body.c's, the URLs grab_url.c's. */
#include "grab_session.h"
#include "errtext.h"
#include "monotime.h"

#include <errno.h>
#include <openssl/evp.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

const char *grab_result_str(enum grab_result result)
{
    switch (result) {
    case GRAB_OK: return "ok";
    case GRAB_NO_FRAME: return "no new frame yet";
    case GRAB_ERR_INVALID: return "invalid argument";
    case GRAB_ERR_NOMEM: return "out of memory";
    case GRAB_ERR_SYSTEM: return "system call failed";
    case GRAB_ERR_URL: return "the camera URL cannot be used";
    case GRAB_ERR_DNS: return "the camera's host name does not resolve";
    case GRAB_ERR_CONNECT_REFUSED: return "connection refused";
    case GRAB_ERR_CONNECT_TIMEOUT: return "connecting timed out";
    case GRAB_ERR_CONNECT: return "cannot connect";
    case GRAB_ERR_TLS: return "TLS failed";
    case GRAB_ERR_TLS_VERIFY: return "the camera's certificate is not trusted";
    case GRAB_ERR_IO: return "network error";
    case GRAB_ERR_TIMEOUT: return "timed out";
    case GRAB_ERR_CLOSED: return "the camera closed the connection";
    case GRAB_ERR_HTTP: return "malformed HTTP response";
    case GRAB_ERR_HTTP_STATUS: return "HTTP error status";
    case GRAB_ERR_REDIRECT: return "redirect not followed";
    case GRAB_ERR_NOT_MULTIPART: return "not an MJPEG stream";
    case GRAB_ERR_NO_BOUNDARY: return "MJPEG stream without a usable boundary";
    case GRAB_ERR_TOO_BIG: return "frame too large";
    case GRAB_ERR_INVALID_JPEG: return "not a valid JPEG";
    case GRAB_ERR_NO_FRAMES: return "the stream sends no usable frames";
    case GRAB_ERR_INTERRUPTED: return "interrupted";
    case GRAB_ERR_REFUSED: return "refused by the download rule";
    case GRAB_ERR_WRITE: return "the file could not be written";
    case GRAB_ERR_DIGEST: return "the MD5 is not the declared one";
    case GRAB_ERR_CONTENT: return "not a text G-code file";
    case GRAB_RESULT_MAX: break;
    }
    return "unknown result";
}

/* ---- frames ------------------------------------------------------------------ */

struct grab_frame *grab_frame_free(struct grab_frame *frame)
{
    if (frame) {
        free(frame->data);
        free(frame);
    }
    return NULL;
}

/* ---- the connection (conn.c does the work) ------------------------------- */

enum grab_result grab_fail(struct grab_stream *s, enum grab_result result, const char *fmt, ...)
{
    va_list args;

    if (s->state == CS_FAILED)
        return s->error;
    s->state = CS_FAILED;
    s->error = result;
    va_start(args, fmt);
    vsnprintf(s->error_text, sizeof(s->error_text), fmt, args);
    va_end(args);
    conn_close(&s->conn);
    return result;
}

/* Ends the session with the connection's own failure. */
static void conn_failed(struct grab_stream *s)
{
    grab_fail(s, s->conn.error, "%s", s->conn.error_text);
}

/* After conn_recv or conn_send: true when there is nothing to do but wait
 * (or the session has failed). */
static bool io_stopped(struct grab_stream *s, ssize_t n)
{
    if (n == CONN_IO_FAILED)
        conn_failed(s);
    return n < 0;
}

static void build_request(struct grab_stream *s)
{
    char host[GRAB_MAX_HOST + 16];
    bool default_port = s->url.port == (s->url.tls ? 443 : 80);
    int n;

    if (s->url.ipv6)
        snprintf(host, sizeof(host), default_port ? "[%s]" : "[%s]:%u", s->url.host,
                 (unsigned)s->url.port);
    else
        snprintf(host, sizeof(host), default_port ? "%s" : "%s:%u", s->url.host,
                 (unsigned)s->url.port);
    n = snprintf(s->request, sizeof(s->request),
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: " GRAB_USER_AGENT "\r\n"
                 "Accept: %s\r\n"
                 "Cache-Control: no-cache\r\n"
                 "Connection: close\r\n"
                 "\r\n",
                 s->url.target, host,
                 s->download   ? "*/*"
                 : s->snapshot ? "image/jpeg, */*;q=0.5"
                               : "multipart/x-mixed-replace, */*;q=0.5");
    /* Cannot be cut: the buffer holds the longest target and host. */
    s->request_len = n > 0 && (size_t)n < sizeof(s->request) ? (size_t)n : 0;
    s->request_sent = 0;
}

static void connected(struct grab_stream *s)
{
    build_request(s);
    if (s->request_len == 0) {
        grab_fail(s, GRAB_ERR_URL, "the request does not fit");
        return;
    }
    if (s->url.tls) {
        /* A download from another host than the linked server (a cloud
         * store) is verified against the system's CAs: the owner's CA file
         * vouches for the self-hosted server only. */
        const char *ca_file = s->download && !hostrule_fetch_is_server_host(&s->policy, s->url.host)
                                  ? NULL
                                  : s->ca_file;

        if (conn_tls_start(&s->conn, &s->url, ca_file) != CONN_DONE) {
            conn_failed(s);
            return;
        }
        s->state = CS_HANDSHAKE;
    } else {
        s->state = CS_SENDING;
    }
    s->conn.want = POLLOUT;
}

/* CS_IDLE and CS_RESOLVING: connects to the next address of the host
 * (once its lookup has answered); fails with the last address's error when
 * none is left. The lookup is bounded by connect_timeout_ms. */
static void start_connect(struct grab_stream *s)
{
    switch (conn_resolve(&s->conn, &s->url, s->connect_timeout_ms)) {
    case CONN_DONE:
        break;
    case CONN_WAIT:
        s->state = CS_RESOLVING;
        return;
    default:
        conn_failed(s);
        return;
    }
    switch (conn_connect(&s->conn, &s->url, s->connect_timeout_ms)) {
    case CONN_DONE:
        connected(s);
        break;
    case CONN_WAIT:
        s->state = CS_CONNECTING;
        break;
    default:
        conn_failed(s);
        break;
    }
}

static void finish_connect(struct grab_stream *s)
{
    if (conn_finish_connect(&s->conn) == CONN_DONE)
        connected(s);
    else
        s->state = CS_IDLE; /* the next address, if any */
}

static void do_handshake(struct grab_stream *s)
{
    switch (conn_handshake(&s->conn, s->url.host)) {
    case CONN_DONE:
        s->state = CS_SENDING;
        s->conn.want = POLLOUT;
        break;
    case CONN_WAIT:
        break;
    default:
        conn_failed(s);
        break;
    }
}

static void do_send(struct grab_stream *s)
{
    while (s->request_sent < s->request_len) {
        ssize_t n = conn_send(&s->conn, s->request + s->request_sent,
                              s->request_len - s->request_sent);
        if (io_stopped(s, n))
            return;
        s->request_sent += (size_t)n;
    }
    httpresp_reset(s->head);
    s->state = CS_HEAD;
    s->conn.want = POLLIN;
}

static void follow_redirect(struct grab_stream *s, const struct httpresp_info *info)
{
    struct grab_url next;
    char why[GRAB_REASON_SIZE];

    if (!info->location) {
        grab_fail(s, GRAB_ERR_HTTP_STATUS, "HTTP %d %.64s without a Location", info->status,
             info->reason);
        return;
    }
    if (s->redirects >= GRAB_MAX_REDIRECTS) {
        grab_fail(s, GRAB_ERR_REDIRECT, "more than %u redirects", GRAB_MAX_REDIRECTS);
        return;
    }
    if (grab_url_resolve(&s->url, info->location, &next, why, sizeof(why)) != GRAB_OK) {
        grab_fail(s, GRAB_ERR_REDIRECT, "%s", why);
        return;
    }
    if (s->download && hostrule_fetch_check_scheme(&s->policy, next.tls, next.host, why,
                                                   sizeof(why)) != HOSTRULE_OK) {
        grab_fail(s, GRAB_ERR_REFUSED, "redirect refused: %s", why);
        return;
    }
    s->redirects++;
    s->stats.redirects = s->redirects;
    s->download_info.redirects = s->redirects;
    conn_close(&s->conn);
    conn_forget_addresses(&s->conn);
    s->url = next;
    httpresp_reset(s->head);
    s->state = CS_IDLE;
}

/* A complete response head. Returns true for an interim (1xx) response,
 * after which the parser reads the next head. */
static bool on_head(struct grab_stream *s)
{
    struct httpresp_info info;

    if (httpresp_get_info(s->head, &info) != HTTPRESP_OK) {
        grab_fail(s, GRAB_ERR_HTTP, "the response head cannot be read");
        return false;
    }
    s->stats.http_status = info.status;
    if (info.status >= 100 && info.status < 200 && info.status != 101) {
        httpresp_reset(s->head);
        return true;
    }
    switch (info.status) {
    case 301: case 302: case 303: case 307: case 308:
        follow_redirect(s, &info);
        return false;
    default:
        break;
    }
    if (info.status < 200 || info.status > 299) {
        grab_fail(s, GRAB_ERR_HTTP_STATUS, "%s answered HTTP %d %.64s", s->url.host, info.status,
             info.reason);
        return false;
    }
    if (info.body == HTTPRESP_BODY_NONE || info.status == 204 || info.status == 205) {
        grab_fail(s, GRAB_ERR_HTTP_STATUS, "HTTP %d %.64s has no body", info.status, info.reason);
        return false;
    }
    grab_body_start(s, &info);
    return false;
}

static void do_head(struct grab_stream *s)
{
    for (;;) {
        ssize_t n = conn_recv(&s->conn, s->rx, sizeof(s->rx));
        unsigned char *data = s->rx;
        size_t len;

        if (io_stopped(s, n))
            return;
        if (n == 0) {
            grab_fail(s, GRAB_ERR_CLOSED, "%s closed the connection without a complete response",
                 s->conn.addr_text);
            return;
        }
        len = (size_t)n;
        while (len > 0) {
            size_t used = 0;
            enum httpresp_result parsed = httpresp_feed(s->head, data, len, &used);

            if (parsed == HTTPRESP_NEED_MORE)
                break;
            if (parsed != HTTPRESP_OK) {
                grab_fail(s, GRAB_ERR_HTTP, "malformed response head from %s: %s", s->conn.addr_text,
                     httpresp_result_str(parsed));
                return;
            }
            data += used;
            len -= used;
            if (on_head(s))
                continue;
            if (s->state == CS_BODY && len > 0)
                grab_body_bytes(s, data, len);
            return;
        }
    }
}

static void do_body(struct grab_stream *s)
{
    size_t total = 0;

    while (s->state == CS_BODY && total < GRAB_DRAIN_MAX) {
        ssize_t n = conn_recv(&s->conn, s->rx, sizeof(s->rx));

        if (io_stopped(s, n))
            return;
        if (n == 0) {
            bool truncated = (s->body_kind == HTTPRESP_BODY_LENGTH && s->body_left > 0) ||
                             (s->body_kind == HTTPRESP_BODY_CHUNKED && !dechunk_done(&s->chunk));
            grab_body_end(s, truncated);
            return;
        }
        total += (size_t)n;
        grab_body_bytes(s, s->rx, (size_t)n);
    }
    s->conn.want = POLLIN;
}

/* ---- the engine ----------------------------------------------------------- */

/* Does all the work possible without waiting. revents: what poll() said
 * about the socket. */
static void advance(struct grab_stream *s, short revents)
{
    for (;;) {
        enum conn_state before = s->state;

        switch (s->state) {
        case CS_IDLE:
        case CS_RESOLVING:
            start_connect(s);
            break;
        case CS_CONNECTING:
            if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
                return;
            revents = 0;
            finish_connect(s);
            break;
        case CS_HANDSHAKE:
            do_handshake(s);
            break;
        case CS_SENDING:
            do_send(s);
            break;
        case CS_HEAD:
            do_head(s);
            break;
        case CS_BODY:
            do_body(s);
            return;
        case CS_DONE:
        case CS_FAILED:
            return;
        }
        if (s->state == before)
            return; /* waiting for the socket */
    }
}

static void consider(int64_t *best, enum deadline_kind *best_kind, int64_t at,
                     enum deadline_kind kind)
{
    if (at < *best) {
        *best = at;
        *best_kind = kind;
    }
}

static int64_t next_deadline(const struct grab_stream *s, enum deadline_kind *ret_kind)
{
    int64_t best = INT64_MAX;
    enum deadline_kind kind = DL_NONE;

    switch (s->state) {
    case CS_RESOLVING:
        consider(&best, &kind, s->conn.lookup_deadline, DL_LOOKUP);
        consider(&best, &kind, s->head_deadline, DL_TOTAL);
        break;
    case CS_CONNECTING:
        consider(&best, &kind, s->conn.connect_deadline, DL_CONNECT);
        consider(&best, &kind, s->head_deadline, DL_TOTAL);
        break;
    case CS_HANDSHAKE:
    case CS_SENDING:
    case CS_HEAD:
        consider(&best, &kind, s->conn.last_io + s->read_timeout_ms, DL_READ);
        consider(&best, &kind, s->head_deadline, DL_TOTAL);
        break;
    case CS_BODY:
        consider(&best, &kind, s->conn.last_io + s->read_timeout_ms, DL_READ);
        if (s->snapshot || s->download)
            consider(&best, &kind, s->head_deadline, DL_TOTAL);
        if (s->multipart)
            consider(&best, &kind, s->last_frame_at + s->frame_timeout_ms, DL_FRAME);
        break;
    default:
        break;
    }
    *ret_kind = kind;
    return best;
}

static void on_deadline(struct grab_stream *s, enum deadline_kind kind)
{
    char when[64];

    switch (kind) {
    case DL_LOOKUP:
        conn_lookup_timed_out(&s->conn, s->url.host, s->connect_timeout_ms);
        conn_failed(s);
        break;
    case DL_CONNECT:
        conn_connect_timed_out(&s->conn, s->connect_timeout_ms);
        s->state = CS_IDLE; /* the next address, if any */
        break;
    case DL_TOTAL:
        if (s->state == CS_RESOLVING)
            grab_fail(s, GRAB_ERR_TIMEOUT, "resolving %s: no answer within %d ms", s->url.host,
                      s->total_timeout_ms);
        else if (s->state == CS_CONNECTING)
            grab_fail(s, GRAB_ERR_CONNECT_TIMEOUT, "connecting to %s: no answer within %d ms",
                 s->conn.addr_text, s->total_timeout_ms);
        else if (s->download)
            grab_fail(s, GRAB_ERR_TIMEOUT, "the download took more than %d ms", s->total_timeout_ms);
        else if (s->snapshot)
            grab_fail(s, GRAB_ERR_TIMEOUT, "the snapshot took more than %d ms", s->total_timeout_ms);
        else
            grab_fail(s, GRAB_ERR_TIMEOUT, "no complete response head within %d ms",
                 s->total_timeout_ms);
        break;
    case DL_READ:
        if (s->state == CS_BODY && s->multipart)
            grab_fail(s, GRAB_ERR_TIMEOUT, "the stream sent nothing for %d ms", s->read_timeout_ms);
        else if (s->state == CS_BODY && s->download)
            grab_fail(s, GRAB_ERR_TIMEOUT, "the download stopped arriving for %d ms (%llu bytes so far)",
                      s->read_timeout_ms, (unsigned long long)s->download_info.bytes);
        else if (s->state == CS_BODY)
            grab_fail(s, GRAB_ERR_TIMEOUT, "the snapshot stopped arriving for %d ms (%zu bytes so far)",
                 s->read_timeout_ms, s->body_len);
        else
            grab_fail(s, GRAB_ERR_TIMEOUT, "%s sent no response for %d ms", s->conn.addr_text,
                 s->read_timeout_ms);
        break;
    case DL_FRAME:
        snprintf(when, sizeof(when), "for %d ms", s->frame_timeout_ms);
        grab_fail_no_frames(s, when);
        break;
    case DL_NONE:
        break;
    }
}

static bool finished(const struct grab_stream *s)
{
    return s->state == CS_DONE || (!s->snapshot && !s->download && s->pending);
}

/* Runs until a frame is ready (GRAB_OK), until (GRAB_NO_FRAME; negative:
 * no limit), or the session fails. */
static enum grab_result run(struct grab_stream *s, int64_t until)
{
    short revents = 0;
    char text[128];

    if (!s->started) {
        s->started = true;
        s->head_deadline = now_ms() + s->total_timeout_ms;
    }
    for (;;) {
        struct pollfd fds[2];
        enum deadline_kind kind;
        int64_t now;
        int64_t deadline;
        int64_t wait_until;
        int timeout;
        int n;

        if (atomic_load(&s->interrupted))
            return grab_fail(s, GRAB_ERR_INTERRUPTED, "interrupted");
        advance(s, revents);
        revents = 0;
        if (finished(s))
            return GRAB_OK; /* a frame completed just before a failure comes first */
        if (s->state == CS_FAILED)
            return s->error;
        now = now_ms();
        deadline = next_deadline(s, &kind);
        if (deadline <= now) {
            on_deadline(s, kind);
            continue;
        }
        if (until >= 0 && now >= until)
            return GRAB_NO_FRAME;
        wait_until = deadline;
        if (until >= 0 && until < wait_until)
            wait_until = until;
        if (wait_until == INT64_MAX)
            timeout = -1;
        else if (wait_until - now > INT_MAX)
            timeout = INT_MAX;
        else
            timeout = (int)(wait_until - now);
        fds[0].fd = conn_poll_fd(&s->conn);
        fds[0].events = s->conn.want;
        fds[0].revents = 0;
        fds[1].fd = s->wake_fd;
        fds[1].events = POLLIN;
        fds[1].revents = 0;
        n = poll(fds, 2, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return grab_fail(s, GRAB_ERR_SYSTEM, "poll: %s", errno_text(errno, text, sizeof(text)));
        }
        revents = fds[0].revents;
    }
}

/* ---- public API -------------------------------------------------------------- */

/* run() for the API. A stop request wins over whatever happened before or
 * during the run (a frame that completed meanwhile stays pending); reterr
 * says why the session ended. */
static enum grab_result run_session(struct grab_stream *s, int64_t until, char *reterr,
                                    size_t reterr_len)
{
    enum grab_result result;

    if (atomic_load(&s->interrupted)) {
        grab_fail(s, GRAB_ERR_INTERRUPTED, "interrupted");
        set_reason(reterr, reterr_len, "interrupted");
        return GRAB_ERR_INTERRUPTED;
    }
    result = run(s, until);
    if (result == GRAB_ERR_INTERRUPTED || atomic_load(&s->interrupted)) {
        set_reason(reterr, reterr_len, "interrupted");
        return GRAB_ERR_INTERRUPTED;
    }
    if (result != GRAB_OK && result != GRAB_NO_FRAME)
        set_reason(reterr, reterr_len, "%s", s->error_text);
    return result;
}

static enum grab_result check_timeout(int value, int fallback, const char *name, int *ret_value,
                                      char *reterr, size_t reterr_len)
{
    if (value < 0 || value > GRAB_MAX_TIMEOUT_MS) {
        set_reason(reterr, reterr_len, "%s must be 0 (default) to %d", name, GRAB_MAX_TIMEOUT_MS);
        return GRAB_ERR_INVALID;
    }
    *ret_value = value ? value : fallback;
    return GRAB_OK;
}

static enum grab_result session_new(const struct grab_config *config, bool snapshot,
                                    struct grab_stream **ret_stream, char *reterr,
                                    size_t reterr_len)
{
    enum grab_result result = GRAB_OK;
    struct grab_stream *s = NULL;
    char text[128];

    if (!config || !ret_stream) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    if (config->max_frame > GRAB_MAX_FRAME_LIMIT) {
        set_reason(reterr, reterr_len, "max_frame must be at most %u", GRAB_MAX_FRAME_LIMIT);
        result = GRAB_ERR_INVALID;
        goto out;
    }
    if (config->max_bad_frames > GRAB_MAX_BAD_FRAMES_LIMIT) {
        set_reason(reterr, reterr_len, "max_bad_frames must be at most %u",
                   GRAB_MAX_BAD_FRAMES_LIMIT);
        result = GRAB_ERR_INVALID;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        set_reason(reterr, reterr_len, "out of memory");
        result = GRAB_ERR_NOMEM;
        goto out;
    }
    conn_init(&s->conn);
    s->wake_fd = -1;
    atomic_init(&s->interrupted, false);
    s->snapshot = snapshot;
    s->state = CS_IDLE;
    result = check_timeout(config->connect_timeout_ms, GRAB_DEFAULT_CONNECT_TIMEOUT_MS,
                           "connect_timeout_ms", &s->connect_timeout_ms, reterr, reterr_len);
    if (result == GRAB_OK)
        result = check_timeout(config->read_timeout_ms, GRAB_DEFAULT_READ_TIMEOUT_MS,
                               "read_timeout_ms", &s->read_timeout_ms, reterr, reterr_len);
    if (result == GRAB_OK)
        result = check_timeout(config->total_timeout_ms, GRAB_DEFAULT_TOTAL_TIMEOUT_MS,
                               "total_timeout_ms", &s->total_timeout_ms, reterr, reterr_len);
    if (result == GRAB_OK)
        result = check_timeout(config->frame_timeout_ms, GRAB_DEFAULT_FRAME_TIMEOUT_MS,
                               "frame_timeout_ms", &s->frame_timeout_ms, reterr, reterr_len);
    if (result != GRAB_OK)
        goto out;
    s->max_frame = config->max_frame ? config->max_frame : GRAB_DEFAULT_MAX_FRAME;
    s->max_bad_frames = config->max_bad_frames ? config->max_bad_frames
                                               : GRAB_DEFAULT_MAX_BAD_FRAMES;
    result = grab_url_parse(config->url, &s->url, reterr, reterr_len);
    if (result != GRAB_OK)
        goto out;
    if (config->ca_file && *config->ca_file) {
        if (!file_is_readable("CA file", config->ca_file, reterr, reterr_len)) {
            result = GRAB_ERR_INVALID;
            goto out;
        }
        s->ca_file = strdup(config->ca_file);
        if (!s->ca_file) {
            set_reason(reterr, reterr_len, "out of memory");
            result = GRAB_ERR_NOMEM;
            goto out;
        }
    }
    if (httpresp_new(&s->head) != HTTPRESP_OK || jpg_decoder_new(&s->decoder) != JPG_OK) {
        set_reason(reterr, reterr_len, "out of memory (parser or JPEG decoder)");
        result = GRAB_ERR_NOMEM;
        goto out;
    }
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) {
        set_reason(reterr, reterr_len, "eventfd: %s", errno_text(errno, text, sizeof(text)));
        result = GRAB_ERR_SYSTEM;
        goto out;
    }
    *ret_stream = s;
    s = NULL;

out:
    grab_stream_close(s);
    return result;
}

enum grab_result grab_snapshot_open(const struct grab_config *config,
                                    struct grab_stream **ret_session, char *reterr,
                                    size_t reterr_len)
{
    return session_new(config, true, ret_session, reterr, reterr_len);
}

enum grab_result grab_snapshot_run(struct grab_stream *session, struct grab_frame **ret_frame,
                                   char *reterr, size_t reterr_len)
{
    enum grab_result result;

    if (!session || !session->snapshot || !ret_frame) {
        set_reason(reterr, reterr_len, "missing argument");
        return GRAB_ERR_INVALID;
    }
    if (session->state == CS_DONE && !session->pending) {
        set_reason(reterr, reterr_len, "the snapshot was already taken");
        return GRAB_ERR_INVALID;
    }
    result = run_session(session, -1, reterr, reterr_len);
    if (result == GRAB_OK) {
        *ret_frame = session->pending;
        session->pending = NULL;
    }
    return result;
}

enum grab_result grab_snapshot(const struct grab_config *config, struct grab_frame **ret_frame,
                               char *reterr, size_t reterr_len)
{
    enum grab_result result;
    struct grab_stream *s = NULL;

    if (!ret_frame) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    result = grab_snapshot_open(config, &s, reterr, reterr_len);
    if (result == GRAB_OK)
        result = grab_snapshot_run(s, ret_frame, reterr, reterr_len);

out:
    grab_stream_close(s);
    return result;
}

enum grab_result grab_stream_open(const struct grab_config *config,
                                  struct grab_stream **ret_stream, char *reterr,
                                  size_t reterr_len)
{
    return session_new(config, false, ret_stream, reterr, reterr_len);
}

enum grab_result grab_stream_poll(struct grab_stream *stream, int timeout_ms, char *reterr,
                                  size_t reterr_len)
{
    if (!stream || stream->snapshot) {
        set_reason(reterr, reterr_len, "missing argument");
        return GRAB_ERR_INVALID;
    }
    if (stream->pending && !atomic_load(&stream->interrupted))
        return GRAB_OK;
    return run_session(stream, timeout_ms < 0 ? -1 : now_ms() + timeout_ms, reterr, reterr_len);
}

enum grab_result grab_stream_take_frame(struct grab_stream *stream,
                                        struct grab_frame **ret_frame)
{
    if (!stream || !ret_frame)
        return GRAB_ERR_INVALID;
    if (!stream->pending)
        return GRAB_NO_FRAME;
    *ret_frame = stream->pending;
    stream->pending = NULL;
    stream->stats.frames_taken++;
    return GRAB_OK;
}

void grab_stream_interrupt(struct grab_stream *stream)
{
    uint64_t one = 1;
    ssize_t n;

    if (!stream)
        return;
    atomic_store(&stream->interrupted, true);
    if (stream->wake_fd >= 0) {
        n = write(stream->wake_fd, &one, sizeof(one));
        (void)n; /* EAGAIN: the counter is already non-zero, poll wakes anyway */
    }
}

void grab_stream_get_stats(const struct grab_stream *stream, struct grab_stream_stats *ret_stats)
{
    struct mjpeg_stats parser;

    if (!stream || !ret_stats)
        return;
    *ret_stats = stream->stats;
    ret_stats->memory = stream->body_cap + (stream->pending ? stream->pending->len : 0);
    if (stream->parser) {
        mjpeg_get_stats(stream->parser, &parser);
        ret_stats->frames = parser.frames;
        ret_stats->frames_replaced += parser.frames_replaced;
        ret_stats->too_big = parser.too_big;
        ret_stats->skipped_bytes = parser.skipped_bytes;
        ret_stats->memory += parser.memory;
    }
}

struct grab_stream *grab_stream_close(struct grab_stream *stream)
{
    if (!stream)
        return NULL;
    conn_close(&stream->conn);
    conn_forget_addresses(&stream->conn);
    if (stream->wake_fd >= 0)
        close(stream->wake_fd);
    grab_frame_free(stream->pending);
    mjpeg_free(stream->parser);
    jpg_decoder_free(stream->decoder);
    httpresp_free(stream->head);
    free(stream->body);
    free(stream->ca_file);
    free(stream->server_host_copy);
    EVP_MD_CTX_free(stream->md5);
    free(stream);
    return NULL;
}

/* ---- downloads ------------------------------------------------------------------ */

static bool download_addr_allowed(void *ctx, const struct sockaddr *addr, size_t addr_len,
                                  char *why, size_t why_len)
{
    struct grab_stream *s = ctx;

    return hostrule_fetch_check_addr(&s->policy, s->url.tls, s->url.host, addr, addr_len, why,
                                     why_len) == HOSTRULE_OK;
}

enum grab_result grab_download_open(const struct grab_download_config *config,
                                    struct grab_stream **ret_session, char *reterr,
                                    size_t reterr_len)
{
    enum grab_result result;
    struct grab_stream *s = NULL;
    struct grab_config grab;
    char why[GRAB_REASON_SIZE];

    if (!config || !ret_session || !config->policy || config->max_bytes == 0) {
        set_reason(reterr, reterr_len, "missing argument");
        return GRAB_ERR_INVALID;
    }
    grab = (struct grab_config){
        .url = config->url, .ca_file = config->ca_file,
        .connect_timeout_ms = config->connect_timeout_ms,
        .read_timeout_ms = config->read_timeout_ms,
        .total_timeout_ms = config->total_timeout_ms ? config->total_timeout_ms
                                                     : GRAB_DEFAULT_DOWNLOAD_MS,
    };
    result = session_new(&grab, true, &s, reterr, reterr_len);
    if (result != GRAB_OK)
        goto out;
    s->snapshot = false;
    s->download = true;
    s->download_fd = config->fd;
    s->max_bytes = config->max_bytes;
    s->max_line = config->max_line;
    s->policy.allow_cleartext_lan = config->policy->allow_cleartext_lan;
    if (config->policy->server_host) {
        s->server_host_copy = strdup(config->policy->server_host);
        if (!s->server_host_copy) {
            set_reason(reterr, reterr_len, "out of memory");
            result = GRAB_ERR_NOMEM;
            goto out;
        }
        s->policy.server_host = s->server_host_copy;
    }
    s->md5 = EVP_MD_CTX_new();
    if (!s->md5 || EVP_DigestInit_ex(s->md5, EVP_md5(), NULL) != 1) {
        set_reason(reterr, reterr_len, "MD5 is not available");
        result = GRAB_ERR_NOMEM;
        goto out;
    }
    if (hostrule_fetch_check_scheme(&s->policy, s->url.tls, s->url.host, why, sizeof(why)) !=
        HOSTRULE_OK) {
        set_reason(reterr, reterr_len, "%s", why);
        result = GRAB_ERR_REFUSED;
        goto out;
    }
    s->conn.addr_check = download_addr_allowed;
    s->conn.addr_check_ctx = s;
    *ret_session = s;
    s = NULL;

out:
    grab_stream_close(s);
    return result;
}

enum grab_result grab_download_poll(struct grab_stream *session, int timeout_ms, char *reterr,
                                    size_t reterr_len)
{
    if (!session || !session->download || session->download_fd < 0) {
        set_reason(reterr, reterr_len, "missing argument");
        return GRAB_ERR_INVALID;
    }
    return run_session(session, timeout_ms < 0 ? -1 : now_ms() + timeout_ms, reterr, reterr_len);
}

void grab_download_set_fd(struct grab_stream *session, int fd)
{
    if (session && session->download)
        session->download_fd = fd;
}

void grab_download_get_info(const struct grab_stream *session, struct grab_download_info *ret_info)
{
    if (session && ret_info)
        *ret_info = session->download_info;
}
