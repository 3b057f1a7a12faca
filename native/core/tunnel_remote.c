/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * OctoPrint remote access on the device websocket: binary (BSON) frames in,
 * the HTTP workers, and the bulk lane their replies wait in.
 */
#include "tunnel_private.h"
#include "bson_msg.h"
#include "errtext.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A worker waits this long for room in the bulk lane, then drops its reply
 * (the server has given up on it by then: 55 s after the request). */
#define TUN_BULK_WAIT_MS 20000
/* A tunnel request's fields besides its body: path, headers, ref. */
#define TUN_TUNNEL_FRAME_SLACK (1024u * 1024u)

#define REMOTE_OFF_TEXT \
    "Remote access to OctoPrint is turned off on this printer (TSD plugin settings, " \
    "\"OctoPrint remote access\")."

/* Log the 1st, 2nd, 4th, 8th... occurrence: a flood cannot flood the log. */
static bool worth_logging(uint64_t count)
{
    return (count & (count - 1)) == 0;
}

size_t tun_remote_max_frame(const struct tun *t)
{
    return t->max_tunnel_body + TUN_TUNNEL_FRAME_SLACK;
}

/* ---- the bulk lane ------------------------------------------------------------- */

static bool bulk_has_room(const struct tun *t, size_t len)
{
    return t->bulk_count < TUN_DEFAULT_BULK_MESSAGES && len <= t->bulk_bytes_max - t->stats.bulk_bytes;
}

/* Queues a reply frame (taking it). wait: a worker, which may wait for
 * room; the service thread never waits (it is the one that makes room). */
static bool bulk_push(struct tun *t, unsigned char *frame, size_t len, bool wait)
{
    struct bulk_item *item = NULL;
    struct timespec until;
    uint64_t dropped = 0;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += TUN_BULK_WAIT_MS / 1000;
    pthread_mutex_lock(&t->lock);
    while (wait && len <= t->bulk_bytes_max && !bulk_has_room(t, len) && !atomic_load(&t->halt)) {
        if (pthread_cond_timedwait(&t->bulk_room, &t->lock, &until) != 0)
            break;
    }
    if (!atomic_load(&t->halt) && bulk_has_room(t, len))
        item = malloc(sizeof(*item));
    if (item) {
        *item = (struct bulk_item){.len = len, .data = frame};
        if (t->bulk_tail)
            t->bulk_tail->next = item;
        else
            t->bulk_head = item;
        t->bulk_tail = item;
        t->bulk_count++;
        t->stats.bulk_bytes += len;
        tun_wake_service(t);
    } else {
        dropped = ++t->stats.bulk_dropped;
    }
    pthread_mutex_unlock(&t->lock);
    if (item)
        return true;
    free(frame);
    if (worth_logging(dropped))
        tun_push_log(t, 'W', "[remote access] dropped a %zu-byte reply: the link to the server "
                     "is too slow or down (%llu so far)", len, (unsigned long long)dropped);
    return false;
}

static void reply_from_worker(void *user, unsigned char *frame, size_t len)
{
    bulk_push(user, frame, len, true);
}

static void reply_from_service(void *user, unsigned char *frame, size_t len)
{
    bulk_push(user, frame, len, false);
}

bool tun_bulk_push_nowait(struct tun *t, unsigned char *frame, size_t len)
{
    return bulk_push(t, frame, len, false);
}

struct bulk_item *tun_bulk_take_locked(struct tun *t)
{
    struct bulk_item *item = t->bulk_head;

    if (!item)
        return NULL;
    t->bulk_head = item->next;
    if (!t->bulk_head)
        t->bulk_tail = NULL;
    t->bulk_count--;
    t->stats.bulk_bytes -= item->len;
    pthread_cond_broadcast(&t->bulk_room);
    return item;
}

void tun_bulk_clear(struct tun *t)
{
    struct bulk_item *item;

    pthread_mutex_lock(&t->lock);
    while ((item = tun_bulk_take_locked(t))) {
        free(item->data);
        free(item);
    }
    pthread_mutex_unlock(&t->lock);
}

/* ---- logins ----------------------------------------------------------------- */

static void login_seen(void *user, int status, const char *name)
{
    struct tun *t = user;
    json_t *event = json_pack("{s:i,s:s}", "status", status, "user", name);
    char *text = event ? json_dumps(event, JSON_COMPACT) : NULL;

    if (text)
        tun_push_event(t, TUN_EVENT_REMOTE_LOGIN, text, strlen(text));
    free(text);
    json_decref(event);
}

/* ---- incoming frames ----------------------------------------------------------- */

static void count_refused(struct tun *t)
{
    pthread_mutex_lock(&t->lock);
    t->stats.remote_refused++;
    pthread_mutex_unlock(&t->lock);
}

/* A ws.tunnel message that cannot be read: its socket is closed at once. */
static void refuse_ws(struct tun *t, const struct bsonmsg_request *request)
{
    unsigned char *frame = NULL;
    size_t len = 0;

    pthread_mutex_lock(&t->lock);
    t->stats.remote_ws_refused++;
    pthread_mutex_unlock(&t->lock);
    if (request->ws_type == BSONMSG_WS_CLOSE)
        return;
    if (bsonmsg_encode_ws(request->ref, true, NULL, 0, false, &frame, &len) == BSONMSG_OK)
        reply_from_service(t, frame, len);
}

void tun_remote_oversized(struct tun *t)
{
    char ref[BSONMSG_MAX_REF + 1];
    char text[160];

    if (!bsonmsg_peek_ref(t->rx, t->rx_len, ref, sizeof(ref)))
        return; /* nothing names it: the server times out on it */
    count_refused(t);
    snprintf(text, sizeof(text), "The printer refused this request: its body is larger than "
             "the %zu MiB remote access carries.", t->max_tunnel_body / (1024 * 1024));
    htun_answer_error(reply_from_service, t, ref, 413, text);
}

void tun_remote_deliver(struct tun *t)
{
    struct bsonmsg_request *request = NULL;
    enum bsonmsg_result result;
    uint64_t count;
    char text[256];

    result = bsonmsg_decode(t->rx, t->rx_len, tun_remote_max_frame(t), t->max_tunnel_body,
                            &request);
    if (result != BSONMSG_OK && !request) {
        pthread_mutex_lock(&t->lock);
        count = ++t->stats.binary_ignored;
        pthread_mutex_unlock(&t->lock);
        if (worth_logging(count))
            tun_push_log(t, 'W', "[remote access] ignored a binary frame from the server: %s "
                         "(%llu so far)", bsonmsg_result_str(result), (unsigned long long)count);
        return;
    }
    if (request->kind == BSONMSG_WS) {
        if (result == BSONMSG_OK)
            tun_ws_deliver(t, request);
        else
            refuse_ws(t, request);
    } else if (result != BSONMSG_OK) {
        count_refused(t);
        snprintf(text, sizeof(text), "The printer refused this request: %s.", request->error);
        htun_answer_error(reply_from_service, t, request->ref,
                          result == BSONMSG_ERR_TOO_BIG ? 413 : 400, text);
    } else if (!atomic_load(&t->remote_access) || !t->http) {
        count_refused(t);
        htun_answer_error(reply_from_service, t, request->ref, 403, REMOTE_OFF_TEXT);
    } else if (htun_submit(t->http, request) == HTUN_OK) {
        pthread_mutex_lock(&t->lock);
        t->stats.remote_requests++;
        pthread_mutex_unlock(&t->lock);
        request = NULL; /* the workers' now */
    } else {
        count_refused(t);
        htun_answer_error(reply_from_service, t, request->ref, 503,
                          "The printer is busy with other remote-access requests; try again.");
    }
    bsonmsg_request_free(request);
}

/* ---- set-up ---------------------------------------------------------------- */

enum tun_result tun_remote_new(struct tun *t, const struct tun_config *config, char *reterr,
                               size_t reterr_len)
{
    pthread_condattr_t attr;
    struct htun_config http;
    size_t max_body = config->max_tunnel_body ? config->max_tunnel_body : TUN_DEFAULT_MAX_TUNNEL_BODY;
    const char *host = config->octoprint_host ? config->octoprint_host : "127.0.0.1";

    if (max_body > TUN_MAX_TUNNEL_BODY_LIMIT || strlen(host) >= sizeof(t->octoprint_host)) {
        set_reason(reterr, reterr_len, "max_tunnel_body is above %u, or octoprint_host is too long",
                   TUN_MAX_TUNNEL_BODY_LIMIT);
        return TUN_ERR_INVALID;
    }
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&t->bulk_room, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        return TUN_ERR_NOMEM;
    }
    pthread_condattr_destroy(&attr);
    t->max_tunnel_body = max_body;
    t->bulk_bytes_max = config->bulk_bytes ? config->bulk_bytes : TUN_DEFAULT_BULK_BYTES;
    t->octoprint_port = config->octoprint_port;
    snprintf(t->octoprint_host, sizeof(t->octoprint_host), "%s", host);
    /* htun_new() checks it is a numeric address before anything uses it. */
    snprintf(t->remote_address, sizeof(t->remote_address), "%s",
             config->remote_address ? config->remote_address : HTUN_DEFAULT_FORWARDED_FOR);
    atomic_store(&t->remote_access, config->remote_access != 0);
    if (!config->octoprint_port)
        return TUN_OK;
    http = (struct htun_config){
        .host = t->octoprint_host,
        .port = t->octoprint_port,
        .forwarded_for = config->remote_address,
        .queue_bytes = HTUN_DEFAULT_QUEUE_BYTES > 2 * max_body ? HTUN_DEFAULT_QUEUE_BYTES : 2 * max_body,
        .reply = reply_from_worker,
        .login = login_seen,
        .user = t,
    };
    switch (htun_new(&http, &t->http)) {
    case HTUN_OK:
        return TUN_OK;
    case HTUN_ERR_INVALID:
        /* Neither is echoed: either may be what was refused. */
        set_reason(reterr, reterr_len, "OctoPrint's address or the remote address cannot be "
                   "used (numeric addresses only)");
        pthread_cond_destroy(&t->bulk_room);
        return TUN_ERR_INVALID;
    default:
        set_reason(reterr, reterr_len, "the remote-access workers could not start");
        pthread_cond_destroy(&t->bulk_room);
        return TUN_ERR_THREAD;
    }
}

void tun_remote_free(struct tun *t)
{
    t->http = htun_free(t->http);
    tun_bulk_clear(t);
    pthread_cond_destroy(&t->bulk_room);
}

void tun_set_remote_access(struct tun *tunnel, int enabled)
{
    if (tunnel)
        atomic_store(&tunnel->remote_access, enabled != 0);
}
