/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * superv_exchange: one request to the helper and its answer (see superv.h
 * for the contract, superv.c for the supervisor around it). The request is
 * written with sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT) and the answer read from
 * the non-blocking stdout pipe, every wait a poll() against one
 * CLOCK_MONOTONIC deadline with the interrupt eventfd and stderr in the same
 * poll. An answer that breaks the framing of helper/frame.h, or none within
 * the deadline, kills the helper.
 */
#include "superv_private.h"
#include "errtext.h"
#include "lebytes.h"
#include "monotime.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* The exchange of one request and its response. */
struct exchange {
    unsigned char request_header[FRAME_HEADER_LEN];
    const unsigned char *payload;
    size_t payload_len;
    size_t sent;                 /* of FRAME_HEADER_LEN + payload_len */
    uint32_t id;
    uint8_t request_type;
    unsigned char reply_header[FRAME_HEADER_LEN];
    size_t header_got;
    uint8_t reply_type;
    uint32_t reply_len;
    char *reply;                 /* reply_len + 1 bytes once the header is read */
    size_t reply_got;
    bool reply_done;
};

enum io_step {
    IO_PROGRESS = 0, /* nothing final happened */
    IO_GONE,         /* the helper closed its end */
    IO_BAD_REPLY,    /* protocol violation; the reason is in the buffer */
    IO_NOMEM,
};

static enum io_step send_some(struct superv *superv, struct exchange *ex)
{
    struct iovec iov[2];
    struct msghdr msg;
    size_t count = 0;
    ssize_t n;

    memset(&msg, 0, sizeof(msg));
    if (ex->sent < FRAME_HEADER_LEN) {
        iov[count].iov_base = ex->request_header + ex->sent;
        iov[count].iov_len = FRAME_HEADER_LEN - ex->sent;
        count++;
    }
    if (ex->payload_len > 0) {
        size_t done = ex->sent > FRAME_HEADER_LEN ? ex->sent - FRAME_HEADER_LEN : 0;
        iov[count].iov_base = (void *)(uintptr_t)(ex->payload + done);
        iov[count].iov_len = ex->payload_len - done;
        count++;
    }
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    n = sendmsg(superv->stdin_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
        ex->sent += (size_t)n;
        return IO_PROGRESS;
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
        return IO_PROGRESS;
    return IO_GONE; /* EPIPE, ECONNRESET: the helper's end is closed */
}

static enum io_step check_reply_header(struct superv *superv, struct exchange *ex,
                                       char *why, size_t why_len)
{
    const unsigned char *h = ex->reply_header;
    uint32_t id = get_u32le(h + 8);

    ex->reply_type = h[5];
    ex->reply_len = get_u32le(h + 12);
    if (memcmp(h, FRAME_RESPONSE_MAGIC, 4) != 0) {
        snprintf(why, why_len, "bad magic %02x %02x %02x %02x in the helper's answer", h[0],
                 h[1], h[2], h[3]);
        return IO_BAD_REPLY;
    }
    if (h[4] != FRAME_VERSION || h[6] != 0 || h[7] != 0) {
        snprintf(why, why_len, "bad version %u or reserved field in the helper's answer",
                 (unsigned)h[4]);
        return IO_BAD_REPLY;
    }
    if (id != ex->id) {
        snprintf(why, why_len, "answer to request %" PRIu32 " while waiting for %" PRIu32, id,
                 ex->id);
        return IO_BAD_REPLY;
    }
    if (ex->reply_type != FRAME_RESPONSE_ERROR &&
        !(ex->request_type == FRAME_REQUEST_JPEG &&
          ex->reply_type == FRAME_RESPONSE_DETECTIONS) &&
        !(ex->request_type == FRAME_REQUEST_PING && ex->reply_type == FRAME_RESPONSE_PONG) &&
        !(superv->connected &&
          ((ex->request_type == FRAME_REQUEST_HELLO && ex->reply_type == FRAME_RESPONSE_PONG) ||
           (ex->request_type == FRAME_REQUEST_JPEG && ex->reply_type == FRAME_RESPONSE_LATE) ||
           (ex->reply_type == FRAME_RESPONSE_FAILED && ex->reply_len >= 1)))) {
        snprintf(why, why_len, "answer of type %u to a request of type %u",
                 (unsigned)ex->reply_type, (unsigned)ex->request_type);
        return IO_BAD_REPLY;
    }
    if (ex->reply_len > superv->config.max_reply) {
        snprintf(why, why_len, "answer of %" PRIu32 " bytes is larger than %zu", ex->reply_len,
                 superv->config.max_reply);
        return IO_BAD_REPLY;
    }
    ex->reply = malloc((size_t)ex->reply_len + 1);
    if (!ex->reply)
        return IO_NOMEM;
    ex->reply[ex->reply_len] = '\0';
    ex->reply_done = ex->reply_len == 0;
    return IO_PROGRESS;
}

static enum io_step receive_some(struct superv *superv, struct exchange *ex, char *why,
                                 size_t why_len)
{
    ssize_t n;

    if (ex->header_got < FRAME_HEADER_LEN)
        n = read(superv->stdout_fd, ex->reply_header + ex->header_got,
                 FRAME_HEADER_LEN - ex->header_got);
    else
        n = read(superv->stdout_fd, ex->reply + ex->reply_got, ex->reply_len - ex->reply_got);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? IO_PROGRESS : IO_GONE;
    if (n == 0)
        return IO_GONE;
    if (ex->header_got < FRAME_HEADER_LEN) {
        ex->header_got += (size_t)n;
        if (ex->header_got == FRAME_HEADER_LEN)
            return check_reply_header(superv, ex, why, why_len);
        return IO_PROGRESS;
    }
    ex->reply_got += (size_t)n;
    ex->reply_done = ex->reply_got == ex->reply_len;
    return IO_PROGRESS;
}

/* Sends the request of ex and reads its response until deadline. */
static enum superv_result exchange_run(struct superv *superv, struct exchange *ex,
                                       int64_t deadline, int timeout_ms, char *reterr,
                                       size_t reterr_len)
{
    enum superv_result result = SUPERV_OK;
    char why[SUPERV_REASON_SIZE] = "";
    char text[SUPERV_ERRNO_TEXT];
    size_t total = FRAME_HEADER_LEN + ex->payload_len;

    while (ex->sent < total || !ex->reply_done) {
        struct pollfd fds[4];
        enum io_step step = IO_PROGRESS;
        int64_t left = deadline - now_ms();
        int ready;

        if (left <= 0) {
            superv_kill_helper(superv);
            pthread_mutex_lock(&superv->lock);
            superv->health.timeouts++;
            pthread_mutex_unlock(&superv->lock);
            result = superv_fail(superv, SUPERV_ERR_TIMEOUT, reterr, reterr_len,
                          "no answer from the helper within %d ms; killed", timeout_ms);
            goto out;
        }
        fds[0] = (struct pollfd){.fd = superv->wake_fd, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = ex->sent < total ? superv->stdin_fd : -1,
                                 .events = POLLOUT};
        fds[2] = (struct pollfd){.fd = ex->reply_done ? -1 : superv->stdout_fd,
                                 .events = POLLIN};
        fds[3] = (struct pollfd){.fd = superv->stderr_fd, .events = POLLIN};
        ready = poll(fds, 4, (int)left);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0) {
            int err = errno;
            superv_kill_helper(superv);
            result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "poll: %s",
                          errno_text(err, text, sizeof(text)));
            goto out;
        }
        if (fds[0].revents || atomic_load(&superv->closed)) {
            /* A request is outstanding and the superv is closed for good. */
            int status = 0;
            bool known = false;
            bool killed = false;
            superv_reap_helper(superv, true, 0, false, &status, &known, &killed);
            set_reason(reterr, reterr_len, "interrupted");
            result = SUPERV_ERR_CLOSED;
            goto out;
        }
        if (fds[3].revents)
            superv_drain_stderr(superv);
        if (fds[1].revents)
            step = send_some(superv, ex);
        if (step == IO_PROGRESS && fds[2].revents)
            step = receive_some(superv, ex, why, sizeof(why));
        if (step == IO_GONE) {
            result = superv_helper_ended(superv, deadline, reterr, reterr_len);
            goto out;
        }
        if (step == IO_BAD_REPLY) {
            superv_kill_helper(superv);
            pthread_mutex_lock(&superv->lock);
            superv->health.protocol_errors++;
            pthread_mutex_unlock(&superv->lock);
            result = superv_fail(superv, SUPERV_ERR_PROTOCOL, reterr, reterr_len, "%s; killed",
                                 why);
            goto out;
        }
        if (step == IO_NOMEM) {
            superv_kill_helper(superv); /* the stream is in the middle of a response */
            result = superv_fail(superv, SUPERV_ERR_NOMEM, reterr, reterr_len,
                          "out of memory for an answer of %" PRIu32 " bytes", ex->reply_len);
            goto out;
        }
    }

out:
    return result;
}

/* Prepares ex for one request of type with payload. */
static void exchange_init(struct superv *superv, struct exchange *ex, uint8_t type,
                          const unsigned char *payload, size_t len)
{
    memset(ex, 0, sizeof(*ex));
    ex->id = superv->next_id;
    superv->next_id = superv->next_id == UINT32_MAX ? 1 : superv->next_id + 1;
    ex->request_type = type;
    ex->payload = payload;
    ex->payload_len = len;
    memcpy(ex->request_header, FRAME_REQUEST_MAGIC, 4);
    ex->request_header[4] = FRAME_VERSION;
    ex->request_header[5] = type;
    ex->request_header[6] = 0;
    ex->request_header[7] = 0;
    put_u32le(ex->request_header + 8, ex->id);
    put_u32le(ex->request_header + 12, (uint32_t)len);
}

/* A FAILED answer of the shared helper: its supervisor's result (a failure
 * it knows, else SUPERV_ERR_PROTOCOL) and its reason. */
static enum superv_result shared_failure(struct superv *superv, const struct exchange *ex,
                                         char *reterr, size_t reterr_len)
{
    unsigned code = (unsigned char)ex->reply[0];
    enum superv_result result = code > SUPERV_OK && code < SUPERV_RESULT_MAX
                                    ? (enum superv_result)code
                                    : SUPERV_ERR_PROTOCOL;

    return superv_fail(superv, result, reterr, reterr_len, "shared helper: %.200s",
                       ex->reply + 1);
}

/* Shared mode: connects (starting the shared helper when needed) and says
 * hello, within the start timeout. */
static enum superv_result shared_open(struct superv *superv, char *reterr, size_t reterr_len)
{
    enum superv_result result;
    unsigned char hello[8 + PATH_MAX];
    size_t hello_len = superv_shared_hello(superv, hello, sizeof(hello));
    int64_t deadline = now_ms() + superv->config.start_timeout_ms;
    struct exchange ex;

    if (hello_len == 0)
        return superv_fail(superv, SUPERV_ERR_INVALID, reterr, reterr_len,
                           "the model configuration's path is too long");
    result = superv_shared_connect(superv, deadline, reterr, reterr_len);
    if (result != SUPERV_OK) {
        /* Not again at the next frame: a shared helper that does not start
         * would hold every frame for the start timeout. */
        if (result != SUPERV_ERR_CLOSED)
            superv_schedule_backoff(superv, result == SUPERV_ERR_INSECURE);
        return result;
    }
    exchange_init(superv, &ex, FRAME_REQUEST_HELLO, hello, hello_len);
    result = exchange_run(superv, &ex, deadline, superv->config.start_timeout_ms, reterr,
                          reterr_len);
    if (result == SUPERV_OK && ex.reply_type != FRAME_RESPONSE_PONG) {
        result = ex.reply_type == FRAME_RESPONSE_FAILED
                     ? shared_failure(superv, &ex, reterr, reterr_len)
                     : superv_fail(superv, SUPERV_ERR_PROTOCOL, reterr, reterr_len,
                                   "the shared helper refused the hello: %.200s", ex.reply);
        superv_shared_disconnect(superv);
        if (result == SUPERV_ERR_CONFIG) {
            pthread_mutex_lock(&superv->lock);
            superv->health.config_errors++;
            pthread_mutex_unlock(&superv->lock);
        }
        superv_schedule_backoff(superv, result == SUPERV_ERR_CONFIG ||
                                            result == SUPERV_ERR_PROTOCOL);
    }
    free(ex.reply);
    return result;
}

/* One request and its response: starts the helper when needed. On SUPERV_OK
 * and SUPERV_ERR_REFUSED, *ret_reply (transfer full) is the payload. */
enum superv_result superv_call(struct superv *superv, uint8_t type, const unsigned char *payload,
                               size_t len, char **ret_reply, size_t *ret_len, char *reterr,
                               size_t reterr_len)
{
    enum superv_result result = SUPERV_OK;
    struct exchange ex;
    double started = now_ms_precise();
    int64_t deadline;
    int timeout_ms;

    memset(&ex, 0, sizeof(ex));
    if (atomic_load(&superv->closed)) {
        set_reason(reterr, reterr_len, "interrupted");
        result = SUPERV_ERR_CLOSED;
        goto out;
    }
    if (superv->pid == 0 && !superv->connected) {
        int64_t until;
        int64_t now = now_ms();

        pthread_mutex_lock(&superv->lock);
        until = superv->backoff_until_ms;
        pthread_mutex_unlock(&superv->lock);
        if (until > now) {
            set_reason(reterr, reterr_len, "restarting the helper in %" PRId64 " ms",
                       until - now);
            result = SUPERV_ERR_BACKOFF;
            goto out;
        }
        if (superv->shared_dir)
            result = shared_open(superv, reterr, reterr_len);
        else
            result = superv_start_helper(superv, reterr, reterr_len);
        if (result != SUPERV_OK)
            goto out;
    }

    timeout_ms = superv->answered ? superv->config.deadline_ms : superv->config.start_timeout_ms;
    deadline = now_ms() + timeout_ms;
    exchange_init(superv, &ex, type, payload, len);
    result = exchange_run(superv, &ex, deadline, timeout_ms, reterr, reterr_len);
    if (result != SUPERV_OK)
        goto out;
    if (ex.reply_type == FRAME_RESPONSE_LATE) {
        /* Nothing is wrong: the frame was not scored. */
        set_reason(reterr, reterr_len, "%.200s", ex.reply);
        result = SUPERV_ERR_LATE;
        goto out;
    }
    if (ex.reply_type == FRAME_RESPONSE_FAILED) {
        result = shared_failure(superv, &ex, reterr, reterr_len);
        goto out;
    }

    superv->answered = true;
    superv->backoff_ms = superv->config.backoff_min_ms;
    /* A later death is explained by what the helper writes after this. */
    superv->first_line[0] = '\0';
    superv->first_line_len = 0;
    superv->first_line_done = false;
    pthread_mutex_lock(&superv->lock);
    if (ex.reply_type == FRAME_RESPONSE_ERROR)
        superv->health.refused++;
    else if (ex.reply_type == FRAME_RESPONSE_DETECTIONS)
        superv->health.answers++;
    superv->health.last_answer_ms = now_ms_precise() - started;
    pthread_mutex_unlock(&superv->lock);
    if (ex.reply_type == FRAME_RESPONSE_ERROR) {
        result = superv_fail(superv, SUPERV_ERR_REFUSED, reterr, reterr_len,
                      "the helper refused the request: %.200s", ex.reply);
    }
    if (ret_reply) {
        *ret_reply = ex.reply;
        *ret_len = ex.reply_len;
        ex.reply = NULL;
    }

out:
    free(ex.reply);
    return result;
}
