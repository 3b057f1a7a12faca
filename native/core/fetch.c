/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errtext.h"
#include "evq.h"
#include "hostrule.h"

struct fetch {
    struct grab_stream *session;
    struct evq *events;
    int fd;
    char *path;
    int progress_ms;
    pthread_t thread;
    bool started;
};

const char *fetch_result_code(enum grab_result result)
{
    switch (result) {
    case GRAB_OK: return "ok";
    case GRAB_ERR_REFUSED: return "refused";
    case GRAB_ERR_TOO_BIG: return "too_big";
    case GRAB_ERR_CLOSED: return "closed";
    case GRAB_ERR_TIMEOUT:
    case GRAB_ERR_CONNECT_TIMEOUT: return "timeout";
    case GRAB_ERR_WRITE: return "write";
    case GRAB_ERR_DIGEST: return "digest";
    case GRAB_ERR_CONTENT: return "content";
    case GRAB_ERR_INTERRUPTED: return "cancelled";
    case GRAB_ERR_HTTP_STATUS: return "http_status";
    case GRAB_ERR_REDIRECT: return "redirect";
    case GRAB_ERR_TLS:
    case GRAB_ERR_TLS_VERIFY: return "tls";
    case GRAB_ERR_URL: return "url";
    case GRAB_ERR_DNS: return "dns";
    default: return "error";
    }
}

static void hex(const unsigned char *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

/* Pushes a JSON event; a final one is retried while the queue is full (the
 * pump drains it), so the shim always hears how a download ended. */
static void push(struct fetch *f, int type, json_t *body, bool final)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};

    json_decref(body);
    if (!text)
        return;
    while (evq_push(f->events, type, text, strlen(text)) == EVQ_FULL && final)
        nanosleep(&pause, NULL);
    free(text);
}

static void *run(void *arg)
{
    struct fetch *f = arg;
    struct grab_download_info info;
    char why[GRAB_REASON_SIZE] = "";
    char md5[33];
    enum grab_result result;

    for (;;) {
        result = grab_download_poll(f->session, f->progress_ms, why, sizeof(why));
        grab_download_get_info(f->session, &info);
        if (result != GRAB_NO_FRAME)
            break;
        push(f, FETCH_EVENT_PROGRESS,
             json_pack("{s:I, s:I}", "bytes", (json_int_t)info.bytes, "expected",
                       (json_int_t)info.expected),
             false);
    }
    if (result == GRAB_OK) {
        hex(info.md5, sizeof(info.md5), md5);
        close(f->fd);
        f->fd = -1;
        push(f, FETCH_EVENT_DONE,
             json_pack("{s:I, s:s, s:b, s:i, s:I}", "bytes", (json_int_t)info.bytes, "md5", md5,
                       "md5_declared", info.md5_declared, "redirects", (int)info.redirects,
                       "lines", (json_int_t)info.lines),
             true);
        return NULL;
    }
    /* Nothing of a failed download stays on disk, and it is gone before the
     * shim hears of the failure. */
    close(f->fd);
    f->fd = -1;
    unlink(f->path);
    push(f, FETCH_EVENT_FAILED,
         json_pack("{s:s, s:s, s:I}", "code", fetch_result_code(result), "error", why, "bytes",
                   (json_int_t)info.bytes),
         true);
    return NULL;
}

enum grab_result fetch_start(const struct fetch_config *config, struct evq *events,
                             struct fetch **ret_fetch, char *reterr, size_t reterr_len)
{
    enum grab_result result = GRAB_OK;
    struct fetch *f = NULL;
    struct hostrule_fetch_policy policy;
    struct grab_download_config download;
    char text[128];
    int err;

    if (!config || !config->path || !*config->path || !events || !ret_fetch) {
        set_reason(reterr, reterr_len, "missing argument");
        return GRAB_ERR_INVALID;
    }
    f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(config->path))) {
        set_reason(reterr, reterr_len, "out of memory");
        result = GRAB_ERR_NOMEM;
        goto out;
    }
    f->fd = -1;
    f->events = events;
    f->progress_ms = config->progress_ms > 0 ? config->progress_ms : FETCH_DEFAULT_PROGRESS_MS;
    policy = (struct hostrule_fetch_policy){.server_host = config->server_host,
                                            .allow_cleartext_lan = config->allow_cleartext_lan};
    /* The URL is checked before the file exists: a refusal leaves nothing. */
    download = (struct grab_download_config){
        .url = config->url, .ca_file = config->ca_file, .policy = &policy, .fd = -1,
        .max_bytes = config->max_bytes, .max_line = config->max_line,
        .connect_timeout_ms = config->connect_timeout_ms,
        .read_timeout_ms = config->read_timeout_ms, .total_timeout_ms = config->total_timeout_ms,
    };
    result = grab_download_open(&download, &f->session, reterr, reterr_len);
    if (result != GRAB_OK)
        goto out;
    f->fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (f->fd < 0) {
        set_reason(reterr, reterr_len, "cannot create the file: %s",
                   errno_text(errno, text, sizeof(text)));
        result = GRAB_ERR_WRITE;
        goto out;
    }
    grab_download_set_fd(f->session, f->fd);
    err = pthread_create(&f->thread, NULL, run, f);
    if (err != 0) {
        close(f->fd);
        f->fd = -1;
        unlink(f->path);
        set_reason(reterr, reterr_len, "cannot start a thread: %s", errno_text(err, text, sizeof(text)));
        result = GRAB_ERR_SYSTEM;
        goto out;
    }
    f->started = true;
    *ret_fetch = f;
    f = NULL;

out:
    fetch_free(f);
    return result;
}

void fetch_cancel(struct fetch *fetch)
{
    if (fetch && fetch->session)
        grab_stream_interrupt(fetch->session);
}

struct fetch *fetch_free(struct fetch *fetch)
{
    if (!fetch)
        return NULL;
    if (fetch->started) {
        fetch_cancel(fetch);
        pthread_join(fetch->thread, NULL);
    }
    if (fetch->fd >= 0)
        close(fetch->fd);
    grab_stream_close(fetch->session);
    free(fetch->path);
    free(fetch);
    return NULL;
}
