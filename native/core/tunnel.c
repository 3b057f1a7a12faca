/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "tunnel_private.h"
#include "errtext.h"
#include "hostrule.h"

#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TUN_THREAD_NAME "tsd-tunnel"
#define TUN_PROTOCOL_NAME "tsd-dev"
#define TUN_LOG_MAX 512

static void wipe(void *data, size_t len)
{
    volatile unsigned char *p = data;

    while (len--)
        *p++ = 0;
}

static char *free_secret(char *secret)
{
    if (secret) {
        wipe(secret, strlen(secret));
        free(secret);
    }
    return NULL;
}

const char *tun_result_str(enum tun_result result)
{
    switch (result) {
    case TUN_OK: return "ok";
    case TUN_ERR_INVALID: return "invalid argument";
    case TUN_ERR_URL: return "the server URL cannot be used";
    case TUN_ERR_CLEARTEXT: return "unencrypted ws:// is only allowed to a loopback address, or a private LAN address when allowed";
    case TUN_ERR_CA_FILE: return "the CA file cannot be read";
    case TUN_ERR_NOMEM: return "out of memory";
    case TUN_ERR_CONTEXT: return "libwebsockets could not start";
    case TUN_ERR_THREAD: return "the tunnel thread could not start";
    case TUN_ERR_STATE: return "not allowed in the tunnel's current state";
    case TUN_ERR_FULL: return "outgoing message lane is full";
    case TUN_ERR_TOO_BIG: return "message too big";
    case TUN_RESULT_MAX: break;
    }
    return "unknown result";
}

static bool token_is_valid(const char *token)
{
    size_t len = token ? strlen(token) : 0;

    if (len == 0 || len > TUN_MAX_TOKEN)
        return false;
    /* Printable ASCII without spaces: nothing that could end a header. */
    for (size_t i = 0; i < len; i++)
        if (token[i] <= 0x20 || token[i] >= 0x7f)
            return false;
    return true;
}

void tun_push_event(struct tun *t, enum tun_event type, const char *text, size_t len)
{
    if (evq_push(t->events, (int)type, text, len) != EVQ_OK) {
        pthread_mutex_lock(&t->lock);
        t->stats.events_dropped++;
        pthread_mutex_unlock(&t->lock);
    }
}

void tun_push_log(struct tun *t, char level, const char *fmt, ...)
{
    char line[TUN_LOG_MAX];
    va_list args;
    int n;

    line[0] = level;
    line[1] = ' ';
    va_start(args, fmt);
    n = vsnprintf(line + 2, sizeof(line) - 2, fmt, args);
    va_end(args);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 3)
        n = (int)(sizeof(line) - 3);
    tun_push_event(t, TUN_EVENT_LOG, line, (size_t)n + 2);
}

/* ---- configuration ------------------------------------------------------ */

/* The URL and its cleartext rule are native/core/hostrule.c's: the same one
 * that linking and discovery use. */
static enum tun_result parse_url(struct tun *t, const char *url, bool allow_cleartext_lan,
                                 char *reterr, size_t reterr_len)
{
    struct hostrule_url parsed;

    if (!url || strlen(url) == 0 || strlen(url) > TUN_MAX_URL) {
        set_reason(reterr, reterr_len, "the server URL is empty or too long");
        return TUN_ERR_URL;
    }
    switch (hostrule_check_url(url, allow_cleartext_lan, &parsed, reterr, reterr_len)) {
    case HOSTRULE_OK:
        break;
    case HOSTRULE_ERR_CLEARTEXT:
        return TUN_ERR_CLEARTEXT;
    default:
        return TUN_ERR_URL;
    }
    if (strcmp(parsed.scheme, "wss") != 0 && strcmp(parsed.scheme, "ws") != 0) {
        set_reason(reterr, reterr_len, "the server URL must start with wss:// (or ws://)");
        return TUN_ERR_URL;
    }
    t->use_tls = parsed.tls;
    t->port = parsed.port ? parsed.port : parsed.tls ? 443 : 80;
    t->host = strdup(parsed.host);
    t->path = strdup(parsed.path[0] ? parsed.path : "/");
    if (!t->host || !t->path)
        return TUN_ERR_NOMEM;
    return TUN_OK;
}

enum tun_result tun_new(const struct tun_config *config, struct evq *events,
                        struct tun **ret_tunnel, char *reterr, size_t reterr_len)
{
    enum tun_result result = TUN_OK;
    struct tun *t = NULL;
    bool lock_ready = false;
    bool cond_ready = false;

    if (!config || !events || !ret_tunnel) {
        set_reason(reterr, reterr_len, "missing argument");
        result = TUN_ERR_INVALID;
        goto out;
    }
    if (!token_is_valid(config->token)) {
        set_reason(reterr, reterr_len, "the token must be 1 to %d printable characters", TUN_MAX_TOKEN);
        result = TUN_ERR_INVALID;
        goto out;
    }
    if (config->max_incoming > TUN_MAX_INCOMING_LIMIT) {
        set_reason(reterr, reterr_len, "max_incoming is above %u", TUN_MAX_INCOMING_LIMIT);
        result = TUN_ERR_INVALID;
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        result = TUN_ERR_NOMEM;
        goto out;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        result = TUN_ERR_NOMEM;
        goto out;
    }
    lock_ready = true;
    if (pthread_cond_init(&t->started_cond, NULL) != 0) {
        result = TUN_ERR_NOMEM;
        goto out;
    }
    cond_ready = true;
    result = parse_url(t, config->url, config->allow_cleartext_lan != 0, reterr, reterr_len);
    if (result != TUN_OK)
        goto out;
    if (config->ca_file && *config->ca_file) {
        if (!file_is_readable("CA file", config->ca_file, reterr, reterr_len)) {
            result = TUN_ERR_CA_FILE;
            goto out;
        }
        t->ca_file = strdup(config->ca_file);
        if (!t->ca_file) {
            result = TUN_ERR_NOMEM;
            goto out;
        }
    }
    t->url = strdup(config->url);
    t->token = strdup(config->token);
    if (!t->url || !t->token) {
        result = TUN_ERR_NOMEM;
        goto out;
    }
    t->max_incoming = config->max_incoming ? config->max_incoming : TUN_DEFAULT_MAX_INCOMING;
    t->lane_messages_max = config->lane_messages ? config->lane_messages : TUN_DEFAULT_LANE_MESSAGES;
    t->lane_bytes_max = config->lane_bytes ? config->lane_bytes : TUN_DEFAULT_LANE_BYTES;
    t->backoff_first_ms = config->backoff_first_ms ? config->backoff_first_ms : TUN_BACKOFF_FIRST_MS;
    t->backoff_cap_ms = config->backoff_cap_ms ? config->backoff_cap_ms : TUN_BACKOFF_CAP_MS;
    if (t->backoff_cap_ms < t->backoff_first_ms)
        t->backoff_cap_ms = t->backoff_first_ms;
    t->idle_policy = (lws_retry_bo_t){
        .secs_since_valid_ping = config->ping_after_s ? config->ping_after_s : 30,
        .secs_since_valid_hangup = config->hangup_after_s ? config->hangup_after_s : 60,
    };
    t->events = events;
    result = tun_remote_new(t, config, reterr, reterr_len);
    if (result != TUN_OK)
        goto out;
    *ret_tunnel = t;
    t = NULL;

out:
    if (t) {
        free(t->url);
        free(t->host);
        free(t->path);
        free(t->ca_file);
        t->token = free_secret(t->token);
        if (cond_ready)
            pthread_cond_destroy(&t->started_cond);
        if (lock_ready)
            pthread_mutex_destroy(&t->lock);
        free(t);
    }
    return result;
}

/* ---- outgoing lanes -------------------------------------------------------- */

static struct lane_item *lane_item_new(const char *json, size_t len)
{
    struct lane_item *item = malloc(sizeof(*item) + len);

    if (!item)
        return NULL;
    item->next = NULL;
    item->len = len;
    memcpy(item->data, json, len);
    return item;
}

void tun_wake_service(struct tun *t)
{
    /* The only lws call allowed from other threads. */
    if (t->context)
        lws_cancel_service(t->context);
}

enum tun_result tun_send_status(struct tun *tunnel, const char *json, size_t len)
{
    struct lane_item *item;
    struct lane_item *old;

    if (!tunnel || !json || len == 0)
        return TUN_ERR_INVALID;
    if (len > tunnel->lane_bytes_max)
        return TUN_ERR_TOO_BIG;
    item = lane_item_new(json, len);
    if (!item)
        return TUN_ERR_NOMEM;
    pthread_mutex_lock(&tunnel->lock);
    old = tunnel->status;
    tunnel->status = item;
    if (old)
        tunnel->stats.status_replaced++;
    tun_wake_service(tunnel);
    pthread_mutex_unlock(&tunnel->lock);
    free(old);
    return TUN_OK;
}

enum tun_result tun_send_message(struct tun *tunnel, const char *json, size_t len)
{
    enum tun_result result = TUN_OK;
    struct lane_item *item = NULL;

    if (!tunnel || !json || len == 0)
        return TUN_ERR_INVALID;
    if (len > tunnel->lane_bytes_max)
        return TUN_ERR_TOO_BIG;
    pthread_mutex_lock(&tunnel->lock);
    if (tunnel->lane_count >= tunnel->lane_messages_max ||
        len > tunnel->lane_bytes_max - tunnel->lane_bytes) {
        tunnel->stats.messages_dropped++;
        result = TUN_ERR_FULL;
        goto out;
    }
    item = lane_item_new(json, len);
    if (!item) {
        result = TUN_ERR_NOMEM;
        goto out;
    }
    if (tunnel->lane_tail)
        tunnel->lane_tail->next = item;
    else
        tunnel->lane_head = item;
    tunnel->lane_tail = item;
    tunnel->lane_count++;
    tunnel->lane_bytes += len;
    tun_wake_service(tunnel);

out:
    pthread_mutex_unlock(&tunnel->lock);
    return result;
}

/* Takes the next item to write: acks and events first, then the status. */
static struct lane_item *lane_take(struct tun *t, bool *ret_is_status)
{
    struct lane_item *item = NULL;

    pthread_mutex_lock(&t->lock);
    if (t->lane_head) {
        item = t->lane_head;
        t->lane_head = item->next;
        if (!t->lane_head)
            t->lane_tail = NULL;
        t->lane_count--;
        t->lane_bytes -= item->len;
        *ret_is_status = false;
    } else if (t->status) {
        item = t->status;
        t->status = NULL;
        *ret_is_status = true;
    }
    pthread_mutex_unlock(&t->lock);
    return item;
}

static bool lanes_pending(struct tun *t)
{
    bool pending;

    pthread_mutex_lock(&t->lock);
    pending = t->lane_head || t->status || t->bulk_head;
    pthread_mutex_unlock(&t->lock);
    return pending;
}

static void lanes_clear(struct tun *t)
{
    struct lane_item *item;
    struct lane_item *next;

    for (item = t->lane_head; item; item = next) {
        next = item->next;
        free(item);
    }
    t->lane_head = t->lane_tail = NULL;
    t->lane_count = 0;
    t->lane_bytes = 0;
    free(t->status);
    t->status = NULL;
}

/* ---- service thread ------------------------------------------------------- */

static void tun_connect(struct tun *t);

static void retry_cb(lws_sorted_usec_list_t *sul)
{
    struct tun *t = lws_container_of(sul, struct tun, retry_sul);

    pthread_mutex_lock(&t->lock);
    t->stats.next_retry_ms = 0;
    pthread_mutex_unlock(&t->lock);
    if (!atomic_load(&t->halt))
        tun_connect(t);
}

static void schedule_retry(struct tun *t, const char *why)
{
    uint32_t delay_ms = t->backoff_first_ms;
    uint32_t jitter = 0;

    if (atomic_load(&t->halt))
        return;
    for (unsigned i = 0; i < t->retry_attempt && delay_ms < t->backoff_cap_ms; i++)
        delay_ms *= 2;
    if (delay_ms > t->backoff_cap_ms)
        delay_ms = t->backoff_cap_ms;
    /* Jitter: wait between 75% and 100% of the step, so that many printers
     * cut off together (a server restart) do not all come back at once. */
    lws_get_random(t->context, &jitter, sizeof(jitter));
    delay_ms = delay_ms - (delay_ms / 4) + (delay_ms / 4 ? jitter % (delay_ms / 4 + 1) : 0);
    if (t->retry_attempt < 32)
        t->retry_attempt++;
    pthread_mutex_lock(&t->lock);
    t->stats.next_retry_ms = delay_ms;
    pthread_mutex_unlock(&t->lock);
    tun_push_log(t, 'W', "[tunnel] %s, retrying in %.1f s", why, delay_ms / 1000.0);
    {
        char reason[256];
        int n = snprintf(reason, sizeof(reason), "%s", why);
        tun_push_event(t, TUN_EVENT_DISCONNECTED, reason,
                   n < 0 ? 0 : ((size_t)n < sizeof(reason) ? (size_t)n : sizeof(reason) - 1));
    }
    lws_sul_schedule(t->context, 0, &t->retry_sul, retry_cb, (lws_usec_t)delay_ms * LWS_US_PER_MS);
}

static void tun_connect(struct tun *t)
{
    struct lws_client_connect_info info = {
        .context = t->context,
        .address = t->host,
        .port = t->port,
        .path = t->path,
        .host = t->host,
        .origin = t->host,
        /* A redirect would make lws dial the Location and send the token
         * there too (sec08): the token goes only to the configured server. */
        .ssl_connection = (t->use_tls ? LCCSCF_USE_SSL : 0) | LCCSCF_HTTP_NO_FOLLOW_REDIRECT,
        .protocol = NULL, /* Obico's /ws/dev/ takes no subprotocol */
        .local_protocol_name = TUN_PROTOCOL_NAME,
        .pwsi = &t->wsi,
        .retry_and_idle_policy = &t->idle_policy,
    };

    if (!lws_client_connect_via_info(&info)) {
        t->wsi = NULL;
        schedule_retry(t, "could not start a connection");
    }
}

static void fatal_stop(struct tun *t, enum tun_event why, const char *text)
{
    t->fatal = why;
    atomic_store(&t->halt, true);
    tun_push_log(t, 'E', "[tunnel] %s", text);
    tun_push_event(t, why, text, strlen(text));
}

static void deliver_message(struct tun *t, bool binary)
{
    json_t *root = NULL;
    json_error_t error;
    uint64_t count = 0;
    const char *problem = NULL;

    if (t->rx_discard) {
        pthread_mutex_lock(&t->lock);
        count = ++t->stats.oversized;
        pthread_mutex_unlock(&t->lock);
        problem = "a message larger than the limit";
        if (binary)
            tun_remote_oversized(t); /* a 413 where the ref can be read */
        goto out;
    }
    if (binary) {
        tun_remote_deliver(t);
        goto out;
    }
    root = json_loadb((const char *)t->rx, t->rx_len, JSON_REJECT_DUPLICATES, &error);
    if (!root || !json_is_object(root)) {
        pthread_mutex_lock(&t->lock);
        count = ++t->stats.malformed;
        pthread_mutex_unlock(&t->lock);
        problem = "a message that is not a JSON object";
        goto out;
    }
    pthread_mutex_lock(&t->lock);
    t->stats.received++;
    pthread_mutex_unlock(&t->lock);
    tun_push_event(t, TUN_EVENT_MESSAGE, (const char *)t->rx, t->rx_len);

out:
    /* Log the 1st, 2nd, 4th, 8th... occurrence: a flood cannot flood the log. */
    if (problem && (count & (count - 1)) == 0)
        tun_push_log(t, 'W', "[tunnel] ignored %s from the server (%llu so far)", problem,
                 (unsigned long long)count);
    json_decref(root);
    t->rx_len = 0;
    t->rx_discard = false;
}

static void receive_fragment(struct tun *t, struct lws *wsi, const void *in, size_t len)
{
    /* Binary frames carry tunnelled request bodies: their own, larger limit. */
    size_t limit = lws_frame_is_binary(wsi) ? tun_remote_max_frame(t) : t->max_incoming;

    if (!t->rx_discard) {
        if (len > limit - t->rx_len) {
            t->rx_discard = true; /* keep reading, drop the whole message */
        } else {
            if (t->rx_len + len > t->rx_cap) {
                size_t cap = t->rx_cap ? t->rx_cap : 4096;
                unsigned char *grown;
                while (cap < t->rx_len + len)
                    cap *= 2;
                if (cap > limit)
                    cap = limit;
                grown = realloc(t->rx, cap);
                if (!grown) {
                    t->rx_discard = true;
                    goto done;
                }
                t->rx = grown;
                t->rx_cap = cap;
            }
            memcpy(t->rx + t->rx_len, in, len);
            t->rx_len += len;
        }
    }
done:
    if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
        deliver_message(t, lws_frame_is_binary(wsi) != 0);
}

bool tun_reserve_tx(struct tun *t, size_t len)
{
    unsigned char *grown;

    if (LWS_PRE + len <= t->tx_cap)
        return true;
    grown = realloc(t->tx, LWS_PRE + len);
    if (!grown) {
        tun_push_log(t, 'E', "[tunnel] out of memory writing a message, dropped");
        return false;
    }
    t->tx = grown;
    t->tx_cap = LWS_PRE + len;
    return true;
}

/* A tunnel reply, once the status and message lanes are empty. */
static int write_bulk(struct tun *t, struct lws *wsi)
{
    struct bulk_item *item;
    int written;

    pthread_mutex_lock(&t->lock);
    item = tun_bulk_take_locked(t);
    pthread_mutex_unlock(&t->lock);
    if (!item)
        return 0;
    if (!tun_reserve_tx(t, item->len)) {
        free(item->data);
        free(item);
        return 0;
    }
    memcpy(t->tx + LWS_PRE, item->data, item->len);
    written = lws_write(wsi, t->tx + LWS_PRE, item->len, LWS_WRITE_BINARY);
    free(item->data);
    if (written < (int)item->len) {
        free(item);
        return -1;
    }
    pthread_mutex_lock(&t->lock);
    t->stats.bulk_sent++;
    pthread_mutex_unlock(&t->lock);
    free(item);
    if (lanes_pending(t))
        lws_callback_on_writable(wsi);
    return 0;
}

static int write_next(struct tun *t, struct lws *wsi)
{
    struct lane_item *item;
    bool is_status = false;
    int written;

    item = lane_take(t, &is_status);
    if (!item)
        return write_bulk(t, wsi);
    if (!tun_reserve_tx(t, item->len)) {
        free(item);
        return 0;
    }
    memcpy(t->tx + LWS_PRE, item->data, item->len);
    written = lws_write(wsi, t->tx + LWS_PRE, item->len, LWS_WRITE_TEXT);
    if (written < (int)item->len) {
        free(item);
        return -1; /* lws closes the connection; we reconnect */
    }
    pthread_mutex_lock(&t->lock);
    if (is_status)
        t->stats.status_sent++;
    else
        t->stats.messages_sent++;
    pthread_mutex_unlock(&t->lock);
    free(item);
    if (lanes_pending(t))
        lws_callback_on_writable(wsi);
    return 0;
}

static int append_auth_header(struct tun *t, struct lws *wsi, void *in, size_t len)
{
    unsigned char **p = (unsigned char **)in;
    unsigned char *end = *p + len;
    char value[TUN_MAX_TOKEN + 16];
    int n;
    int rc = 0;

    n = snprintf(value, sizeof(value), "bearer %s", t->token);
    if (n < 0 || (size_t)n >= sizeof(value) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:",
                                    (const unsigned char *)value, n, p, end))
        rc = -1;
    wipe(value, sizeof(value));
    return rc;
}

/* The server answered the upgrade with a redirect, which lws did not follow
 * (LCCSCF_HTTP_NO_FOLLOW_REDIRECT). Not fatal: a proxy in maintenance may
 * redirect for a while; the retries still dial only the configured server. */
static void refused_redirect(struct tun *t, int status)
{
    char why[300];

    snprintf(why, sizeof(why),
             "%s answered the websocket upgrade with a redirect (HTTP %d); redirects are "
             "refused so that the token is sent only to the configured server: check the "
             "server URL", t->host, status);
    schedule_retry(t, why);
}

static int tun_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                        void *in, size_t len)
{
    struct lws_context *context = lws_get_context(wsi);
    struct tun *t = context ? lws_context_user(context) : NULL;

    (void)user;
    if (!t)
        return lws_callback_http_dummy(wsi, reason, user, in, len);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return append_auth_header(t, wsi, in, len);

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        const char *text = in ? (const char *)in : "unknown error";
        int status = lws_http_client_http_response(wsi);
        char why[300];

        t->wsi = NULL;
        if (status == 401 || status == 403 || strstr(text, "unauthorized")) {
            fatal_stop(t, TUN_EVENT_UNAUTHORIZED,
                       "the server refused this printer's token (it was unlinked or deleted); "
                       "link the printer again");
            break;
        }
        if (status >= 300 && status < 400) {
            refused_redirect(t, status);
            break;
        }
        if (t->use_tls && (strstr(text, "SSL") || strstr(text, "ssl") || strstr(text, "certificate")))
            snprintf(why, sizeof(why),
                     "TLS handshake with %s failed (is its certificate trusted, and issued for "
                     "this host name?): %s", t->host, text);
        else
            snprintf(why, sizeof(why), "connection to %s failed: %s", t->host, text);
        schedule_retry(t, why);
        break;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        t->retry_attempt = 0;
        pthread_mutex_lock(&t->lock);
        t->stats.connects++;
        t->stats.connected = 1;
        pthread_mutex_unlock(&t->lock);
        tun_push_log(t, 'I', "[tunnel] connected to %s", t->host);
        tun_push_event(t, TUN_EVENT_CONNECTED, "", 0);
        if (lanes_pending(t))
            lws_callback_on_writable(wsi);
        break;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        receive_fragment(t, wsi, in, len);
        break;

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (atomic_load(&t->halt))
            return -1;
        return write_next(t, wsi);

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *code = in;
            if (((code[0] << 8) | code[1]) == TUN_CLOSE_REPLACED)
                fatal_stop(t, TUN_EVENT_REPLACED,
                           "another device connected with this printer's token; the tunnel "
                           "stopped (close code 4321)");
        }
        break;

    case LWS_CALLBACK_CLIENT_CLOSED:
        t->wsi = NULL;
        t->rx_len = 0;
        t->rx_discard = false;
        tun_bulk_clear(t);
        tun_ws_close_all(t); /* their browsers are cut off with the link */
        pthread_mutex_lock(&t->lock);
        t->stats.disconnects++;
        t->stats.connected = 0;
        pthread_mutex_unlock(&t->lock);
        if (!atomic_load(&t->halt))
            schedule_retry(t, "the server closed the connection");
        break;

    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Another thread queued something, or asked us to stop. */
        if (t->wsi && !atomic_load(&t->halt) && lanes_pending(t))
            lws_callback_on_writable(t->wsi);
        break;

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols tun_protocols[] = {
    {TUN_PROTOCOL_NAME, tun_callback, 0, 0, 0, NULL, 0},
    {TUN_WS_PROTOCOL_NAME, tun_ws_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void started(struct tun *t, int state, enum tun_result result, const char *error)
{
    pthread_mutex_lock(&t->lock);
    t->start_state = state;
    t->start_result = result;
    if (error)
        snprintf(t->start_error, sizeof(t->start_error), "%s", error);
    pthread_cond_broadcast(&t->started_cond);
    pthread_mutex_unlock(&t->lock);
}

static void *service_main(void *arg)
{
    struct tun *t = arg;
    struct lws_context_creation_info info = {
        .port = CONTEXT_PORT_NO_LISTEN,
        .protocols = tun_protocols,
        .options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT,
        .user = t,
        /* the link, the tunnelled websockets, lws's own */
        .fd_limit_per_thread = 8 + TUN_WS_MAX_SOCKETS,
        .timeout_secs = 20,
        .client_ssl_ca_filepath = t->ca_file,
    };
    struct lws_context *context;

    pthread_setname_np(pthread_self(), TUN_THREAD_NAME);
    if (t->ca_file) /* a self-hosted server's CA, and only that */
        info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    context = lws_create_context(&info);
    if (!context) {
        started(t, -1, TUN_ERR_CONTEXT, "lws_create_context failed");
        return NULL;
    }
    pthread_mutex_lock(&t->lock);
    t->context = context;
    pthread_mutex_unlock(&t->lock);
    started(t, 1, TUN_OK, NULL);

    tun_connect(t);
    while (!atomic_load(&t->halt)) {
        if (lws_service(context, 0) < 0)
            break;
    }
    lws_sul_cancel(&t->retry_sul);

    pthread_mutex_lock(&t->lock);
    t->context = NULL;
    t->stats.connected = 0;
    t->stats.stopped = 1;
    pthread_mutex_unlock(&t->lock);
    lws_context_destroy(context);
    t->wsi = NULL;
    tun_ws_free_all(t);
    tun_push_event(t, TUN_EVENT_STOPPED, "", 0);
    return NULL;
}

/* libwebsockets logs process-wide; its lines become debug events of the
 * tunnel that set the level last. */
static pthread_mutex_t log_sink_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tun *log_sink;

static void lws_log_emit(int level, const char *line)
{
    size_t len = strlen(line);

    (void)level;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    pthread_mutex_lock(&log_sink_lock);
    if (log_sink)
        tun_push_log(log_sink, 'D', "[lws] %.*s", (int)len, line);
    pthread_mutex_unlock(&log_sink_lock);
}

enum tun_result tun_start(struct tun *tunnel, char *reterr, size_t reterr_len)
{
    enum tun_result result = TUN_OK;
    pthread_attr_t attr;

    if (!tunnel)
        return TUN_ERR_INVALID;
    pthread_mutex_lock(&tunnel->lock);
    if (tunnel->thread_started) {
        pthread_mutex_unlock(&tunnel->lock);
        set_reason(reterr, reterr_len, "the tunnel was already started");
        return TUN_ERR_STATE;
    }
    tunnel->thread_started = true;
    pthread_mutex_unlock(&tunnel->lock);

    pthread_mutex_lock(&log_sink_lock);
    log_sink = tunnel;
    pthread_mutex_unlock(&log_sink_lock);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

    pthread_attr_init(&attr);
    if (pthread_create(&tunnel->thread, &attr, service_main, tunnel) != 0) {
        pthread_attr_destroy(&attr);
        pthread_mutex_lock(&tunnel->lock);
        tunnel->thread_started = false;
        pthread_mutex_unlock(&tunnel->lock);
        set_reason(reterr, reterr_len, "pthread_create failed");
        return TUN_ERR_THREAD;
    }
    pthread_attr_destroy(&attr);

    pthread_mutex_lock(&tunnel->lock);
    while (tunnel->start_state == 0)
        pthread_cond_wait(&tunnel->started_cond, &tunnel->lock);
    if (tunnel->start_state < 0) {
        result = tunnel->start_result;
        set_reason(reterr, reterr_len, "%s", tunnel->start_error);
    }
    pthread_mutex_unlock(&tunnel->lock);
    if (result != TUN_OK)
        tun_stop(tunnel);
    return result;
}

void tun_stop(struct tun *tunnel)
{
    bool join = false;

    if (!tunnel)
        return;
    atomic_store(&tunnel->halt, true);
    pthread_mutex_lock(&tunnel->lock);
    tun_wake_service(tunnel);
    pthread_cond_broadcast(&tunnel->bulk_room); /* a worker waiting for room gives up */
    if (tunnel->thread_started && !tunnel->thread_joined) {
        tunnel->thread_joined = true;
        join = true;
    }
    pthread_mutex_unlock(&tunnel->lock);
    if (join)
        pthread_join(tunnel->thread, NULL);
    /* After the join: the service thread was the only one submitting. */
    tunnel->http = htun_free(tunnel->http);
    pthread_mutex_lock(&log_sink_lock);
    if (log_sink == tunnel)
        log_sink = NULL;
    pthread_mutex_unlock(&log_sink_lock);
}

struct tun *tun_free(struct tun *tunnel)
{
    if (!tunnel)
        return NULL;
    tun_stop(tunnel);
    tun_remote_free(tunnel);
    lanes_clear(tunnel);
    free(tunnel->url);
    free(tunnel->host);
    free(tunnel->path);
    free(tunnel->ca_file);
    tunnel->token = free_secret(tunnel->token);
    if (tunnel->rx)
        wipe(tunnel->rx, tunnel->rx_cap);
    free(tunnel->rx);
    free(tunnel->tx);
    pthread_cond_destroy(&tunnel->started_cond);
    pthread_mutex_destroy(&tunnel->lock);
    free(tunnel);
    return NULL;
}

void tun_get_stats(struct tun *tunnel, struct tun_stats *ret_stats)
{
    if (!tunnel || !ret_stats)
        return;
    pthread_mutex_lock(&tunnel->lock);
    *ret_stats = tunnel->stats;
    pthread_mutex_unlock(&tunnel->lock);
}
