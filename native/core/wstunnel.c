/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * OctoPrint remote access, the websocket half (`ws.tunnel`, obico-protocol.md
 * §2.5 and §2.8): each browser socket the server relays (a `ref`) becomes a
 * websocket to OctoPrint's own SockJS endpoint, on the tunnel's service
 * thread and lws context, so that nothing here needs a lock of its own:
 *   connect / tunnel_message  -> open (an unknown ref), then forward the data
 *   tunnel_close               -> close (ref "ALL": every socket)
 *   OctoPrint's frames         -> octoprint_message, text as text, binary as binary
 *   OctoPrint closes, or fails -> octoprint_close
 * Bounded: TUN_WS_MAX_SOCKETS sockets, TUN_WS_MAX_PENDING bytes waiting for
 * OctoPrint per socket, TUN_WS_MAX_MESSAGE bytes per message from OctoPrint;
 * past a bound the socket is closed and the server told, never silently
 * dropped data inside a stream. The device link going down closes them all.
 * Like the HTTP half, the handshake carries the outside X-Forwarded-For.
 */
#include "tunnel_private.h"
#include "bson_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ws_chunk {
    struct ws_chunk *next;
    bool is_text;
    size_t len;
    unsigned char data[];
};

struct wst_conn {
    struct wst_conn *next;
    struct tun *tunnel;
    struct lws *wsi;
    char *ref;
    struct ws_chunk *out_head;     /* browser -> OctoPrint, waiting */
    struct ws_chunk *out_tail;
    size_t out_bytes;
    unsigned char *rx;             /* OctoPrint -> browser, one message */
    size_t rx_len;
    bool rx_too_big;
    bool open;
    bool closing;                  /* closed by us: tell the server nothing more */
    bool in_connect;               /* inside lws_client_connect_via_info() */
    bool failed;                   /* the connect failed while in_connect */
};

/* ---- to the server ---------------------------------------------------------- */

static void tell_server(struct tun *t, const char *ref, bool close, const unsigned char *data,
                        size_t len, bool is_text)
{
    unsigned char *frame = NULL;
    size_t frame_len = 0;

    if (bsonmsg_encode_ws(ref, close, data, len, is_text, &frame, &frame_len) == BSONMSG_OK)
        tun_bulk_push_nowait(t, frame, frame_len);
}

/* ---- the sockets --------------------------------------------------------------- */

static struct wst_conn *find(struct tun *t, const char *ref)
{
    for (struct wst_conn *c = t->ws_conns; c; c = c->next)
        if (strcmp(c->ref, ref) == 0)
            return c;
    return NULL;
}

static void free_conn(struct tun *t, struct wst_conn *conn)
{
    struct ws_chunk *chunk;

    for (struct wst_conn **p = &t->ws_conns; *p; p = &(*p)->next) {
        if (*p == conn) {
            *p = conn->next;
            t->ws_count--;
            break;
        }
    }
    pthread_mutex_lock(&t->lock);
    t->stats.remote_ws_open = t->ws_count;
    pthread_mutex_unlock(&t->lock);
    while ((chunk = conn->out_head)) {
        conn->out_head = chunk->next;
        free(chunk);
    }
    free(conn->rx);
    free(conn->ref);
    free(conn);
}

/* The socket is gone (closed or never opened): the server hears of it
 * unless it asked for the close itself. */
static void ended(struct tun *t, struct wst_conn *conn)
{
    if (!conn->closing)
        tell_server(t, conn->ref, true, NULL, 0, false);
    free_conn(t, conn);
}

/* Closes from our side: lws calls back with CLIENT_CLOSED later. */
static void close_conn(struct wst_conn *conn, bool tell)
{
    if (conn->closing)
        return;
    if (tell)
        tell_server(conn->tunnel, conn->ref, true, NULL, 0, false);
    conn->closing = true;
    if (conn->wsi)
        lws_callback_on_writable(conn->wsi); /* WRITEABLE returns -1: lws closes */
}

static bool queue_data(struct wst_conn *conn, const struct bsonmsg_request *request)
{
    struct ws_chunk *chunk;

    if (!request->has_data)
        return true;
    if (request->data_len > TUN_WS_MAX_PENDING - conn->out_bytes)
        return false;
    chunk = malloc(sizeof(*chunk) + request->data_len);
    if (!chunk)
        return false;
    chunk->next = NULL;
    chunk->is_text = request->data_is_text;
    chunk->len = request->data_len;
    memcpy(chunk->data, request->data, request->data_len);
    if (conn->out_tail)
        conn->out_tail->next = chunk;
    else
        conn->out_head = chunk;
    conn->out_tail = chunk;
    conn->out_bytes += chunk->len;
    if (conn->open && conn->wsi)
        lws_callback_on_writable(conn->wsi);
    return true;
}

static struct wst_conn *open_conn(struct tun *t, const struct bsonmsg_request *request)
{
    struct wst_conn *conn;
    char host[HTUN_ADDRESS_SIZE + 10];
    struct lws_client_connect_info info = {
        .context = t->context,
        .address = t->octoprint_host,
        .port = t->octoprint_port,
        .path = request->path,
        .host = host,
        .origin = NULL, /* none: OctoPrint checks an Origin against its own host */
        .protocol = NULL,
        .local_protocol_name = TUN_WS_PROTOCOL_NAME,
        .ssl_connection = LCCSCF_HTTP_NO_FOLLOW_REDIRECT,
    };

    if (t->ws_count >= TUN_WS_MAX_SOCKETS) {
        tun_push_log(t, 'W', "[remote access] refused a websocket: %u are open already",
                     TUN_WS_MAX_SOCKETS);
        return NULL;
    }
    conn = calloc(1, sizeof(*conn));
    if (!conn || !(conn->ref = strdup(request->ref))) {
        free(conn);
        return NULL;
    }
    conn->tunnel = t;
    conn->next = t->ws_conns;
    t->ws_conns = conn;
    t->ws_count++;
    pthread_mutex_lock(&t->lock);
    t->stats.remote_ws_open = t->ws_count;
    pthread_mutex_unlock(&t->lock);
    snprintf(host, sizeof(host), strchr(t->octoprint_host, ':') ? "[%s]:%u" : "%s:%u",
             t->octoprint_host, (unsigned)t->octoprint_port);
    info.userdata = conn;
    info.pwsi = &conn->wsi;
    conn->in_connect = true;
    if (!lws_client_connect_via_info(&info))
        conn->failed = true;
    conn->in_connect = false;
    if (conn->failed) {
        conn->wsi = NULL;
        free_conn(t, conn);
        return NULL;
    }
    return conn;
}

void tun_ws_deliver(struct tun *t, const struct bsonmsg_request *request)
{
    struct wst_conn *conn;
    bool allowed = atomic_load(&t->remote_access) && t->octoprint_port;

    pthread_mutex_lock(&t->lock);
    t->stats.remote_ws_messages++;
    pthread_mutex_unlock(&t->lock);
    if (request->ws_type == BSONMSG_WS_CLOSE) {
        if (strcmp(request->ref, "ALL") == 0)
            tun_ws_close_all(t);
        else if ((conn = find(t, request->ref)))
            close_conn(conn, false);
        return;
    }
    conn = find(t, request->ref);
    if (!conn && allowed && request->path)
        conn = open_conn(t, request);
    if (!conn || !allowed) {
        if (conn)
            close_conn(conn, false);
        pthread_mutex_lock(&t->lock);
        t->stats.remote_ws_refused++;
        pthread_mutex_unlock(&t->lock);
        tell_server(t, request->ref, true, NULL, 0, false);
        return;
    }
    if (!queue_data(conn, request)) {
        tun_push_log(t, 'W', "[remote access] closed a websocket: more than %u bytes waited for "
                     "OctoPrint", TUN_WS_MAX_PENDING);
        close_conn(conn, true);
    }
}

void tun_ws_close_all(struct tun *t)
{
    for (struct wst_conn *c = t->ws_conns; c; c = c->next)
        close_conn(c, false);
}

void tun_ws_free_all(struct tun *t)
{
    while (t->ws_conns)
        free_conn(t, t->ws_conns);
}

/* ---- lws ------------------------------------------------------------------------ */

static int write_one(struct wst_conn *conn, struct lws *wsi)
{
    struct tun *t = conn->tunnel;
    struct ws_chunk *chunk = conn->out_head;
    int written;

    if (!chunk)
        return 0;
    if (!tun_reserve_tx(t, chunk->len))
        return -1;
    memcpy(t->tx + LWS_PRE, chunk->data, chunk->len);
    written = lws_write(wsi, t->tx + LWS_PRE, chunk->len,
                        chunk->is_text ? LWS_WRITE_TEXT : LWS_WRITE_BINARY);
    if (written < (int)chunk->len)
        return -1;
    conn->out_head = chunk->next;
    if (!conn->out_head)
        conn->out_tail = NULL;
    conn->out_bytes -= chunk->len;
    free(chunk);
    if (conn->out_head)
        lws_callback_on_writable(wsi);
    return 0;
}

static void receive(struct wst_conn *conn, struct lws *wsi, const void *in, size_t len)
{
    struct tun *t = conn->tunnel;

    if (!conn->rx_too_big) {
        if (len > TUN_WS_MAX_MESSAGE - conn->rx_len) {
            conn->rx_too_big = true;
        } else {
            unsigned char *grown = realloc(conn->rx, conn->rx_len + len + 1);
            if (!grown) {
                conn->rx_too_big = true;
            } else {
                conn->rx = grown;
                memcpy(conn->rx + conn->rx_len, in, len);
                conn->rx_len += len;
            }
        }
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return;
    if (conn->rx_too_big) {
        tun_push_log(t, 'W', "[remote access] closed a websocket: OctoPrint sent a message over "
                     "%u bytes", TUN_WS_MAX_MESSAGE);
        close_conn(conn, true);
    } else {
        unsigned char *frame = NULL;
        size_t frame_len = 0;
        bool is_text = !lws_frame_is_binary(wsi);

        if (bsonmsg_encode_ws(conn->ref, false, conn->rx ? conn->rx : (const unsigned char *)"",
                              conn->rx_len, is_text, &frame, &frame_len) != BSONMSG_OK ||
            !tun_bulk_push_nowait(t, frame, frame_len))
            close_conn(conn, true); /* a stream with a hole is worse than a closed one */
    }
    conn->rx_len = 0;
    conn->rx_too_big = false;
}

static int append_forwarded_for(struct tun *t, struct lws *wsi, void *in, size_t len)
{
    unsigned char **p = (unsigned char **)in;

    return lws_add_http_header_by_name(wsi, (const unsigned char *)"x-forwarded-for:",
                                       (const unsigned char *)t->remote_address,
                                       (int)strlen(t->remote_address), p, *p + len) ? -1 : 0;
}

int tun_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct wst_conn *conn = user;

    if (!conn)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return append_forwarded_for(conn->tunnel, wsi, in, len);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        conn->wsi = NULL;
        if (conn->in_connect)
            conn->failed = true; /* open_conn() frees it */
        else
            ended(conn->tunnel, conn);
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        conn->open = true;
        if (conn->out_head || conn->closing)
            lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!conn->closing)
            receive(conn, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (conn->closing || atomic_load(&conn->tunnel->halt))
            return -1;
        return write_one(conn, wsi);
    case LWS_CALLBACK_CLIENT_CLOSED:
        conn->wsi = NULL;
        ended(conn->tunnel, conn);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}
