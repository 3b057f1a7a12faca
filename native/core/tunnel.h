/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * tunnel: the device websocket to an Obico-compatible server (/ws/dev/).
 *
 * One named service thread ("tsd-tunnel") owns the libwebsockets context and
 * is the only thread that calls lws, apart from lws_cancel_service(). Other
 * threads hand it outgoing messages under a mutex:
 *   - the status lane holds one message, and a newer status replaces an
 *     unsent one (never a backlog of stale statuses);
 *   - the message lane (acks, events) is a bounded FIFO; overflow is counted.
 * Everything the service thread learns (connected, message, closed, refused)
 * becomes an event in a bounded evq that the caller drains: this code never
 * calls back into its caller.
 *
 * Binary frames are OctoPrint remote access (BSON, bson_msg.h): requests
 * for the local OctoPrint go to a fixed pool of HTTP workers
 * (httptunnel.h) when the config names OctoPrint's port; their replies
 * wait in a third, bounded lane that is written only when the status and
 * message lanes are empty, so that an ack or a status never waits behind
 * tunnel traffic. The owner can turn remote access off at any time
 * (tun_set_remote_access); requests are then answered 403 with the reason.
 *
 * TLS is always verified: against the system CAs, or only against the CA
 * file the caller names. ws:// (no TLS) is refused unless the server is on
 * loopback, or the caller explicitly allows cleartext for a LAN server.
 *
 * Reconnects back off exponentially with jitter (capped). A refused
 * handshake (401/403) and close code 4321 (another device uses the same
 * token) stop the tunnel for good and are reported as events.
 */
#ifndef TSD_TUNNEL_H
#define TSD_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "evq.h"

enum tun_result {
    TUN_OK = 0,
    TUN_ERR_INVALID,   /* bad argument */
    TUN_ERR_URL,       /* the server URL cannot be used */
    TUN_ERR_CLEARTEXT, /* ws:// to a non-loopback server without permission */
    TUN_ERR_CA_FILE,   /* the configured CA file is missing or unreadable */
    TUN_ERR_NOMEM,
    TUN_ERR_CONTEXT,   /* libwebsockets could not create its context */
    TUN_ERR_THREAD,    /* the service thread could not start */
    TUN_ERR_STATE,     /* wrong state for the call (already started, stopped) */
    TUN_ERR_FULL,      /* the outgoing message lane is full; counted */
    TUN_ERR_TOO_BIG,   /* the message is larger than the lane allows */
    TUN_RESULT_MAX
};

/* Event types pushed into the caller's evq. Payloads are UTF-8 text. */
enum tun_event {
    TUN_EVENT_LOG = 1,          /* "<level letter> <text>"; E W I D */
    TUN_EVENT_CONNECTED = 10,   /* handshake done; payload empty */
    TUN_EVENT_DISCONNECTED,     /* lost or failed; will retry; payload: reason */
    TUN_EVENT_MESSAGE,          /* a JSON object from the server, as received */
    TUN_EVENT_UNAUTHORIZED,     /* the server refused the token; stopped */
    TUN_EVENT_REPLACED,         /* close code 4321: same token elsewhere; stopped */
    TUN_EVENT_STOPPED,          /* the service thread has ended */
    TUN_EVENT_REMOTE_LOGIN,     /* a login through remote access: {"status": N, "user": "name"} */
    TUN_EVENT_MAX
};

#define TUN_CLOSE_REPLACED 4321

#define TUN_MAX_TOKEN 256
#define TUN_MAX_URL 2048
#define TUN_DEFAULT_MAX_INCOMING (1024u * 1024u)
#define TUN_MAX_INCOMING_LIMIT (16u * 1024u * 1024u)
#define TUN_DEFAULT_LANE_MESSAGES 256u
#define TUN_DEFAULT_LANE_BYTES (2u * 1024u * 1024u)
#define TUN_DEFAULT_MAX_TUNNEL_BODY (32u * 1024u * 1024u)
#define TUN_MAX_TUNNEL_BODY_LIMIT (256u * 1024u * 1024u)
#define TUN_DEFAULT_BULK_BYTES (48u * 1024u * 1024u)
#define TUN_DEFAULT_BULK_MESSAGES 1024u
#define TUN_BACKOFF_FIRST_MS 1000u
#define TUN_BACKOFF_CAP_MS 60000u

struct tun_config {
    const char *url;          /* wss://host[:port]/ws/dev/ (or ws:// per policy) */
    const char *token;        /* (secret) sent as "authorization: bearer <token>" */
    const char *ca_file;      /* NULL or "": system CAs; else only this CA bundle */
    int allow_cleartext_lan;  /* permit ws:// to a private LAN address (hostrule.h) */
    size_t max_incoming;      /* largest accepted server message; 0: default */
    size_t lane_messages;     /* message-lane depth; 0: default */
    size_t lane_bytes;        /* message-lane bytes; 0: default */
    uint32_t backoff_first_ms;/* 0: default */
    uint32_t backoff_cap_ms;  /* 0: default */
    uint16_t ping_after_s;    /* idle seconds before we ping; 0: 30 */
    uint16_t hangup_after_s;  /* idle seconds before we drop the link; 0: 60 */
    /* OctoPrint remote access (binary frames) */
    uint16_t octoprint_port;  /* 0: no remote access; requests are answered 403 */
    const char *octoprint_host; /* numeric; NULL: "127.0.0.1" */
    const char *remote_address; /* X-Forwarded-For of tunnelled requests (httptunnel.h);
                                   numeric; NULL: HTUN_DEFAULT_FORWARDED_FOR */
    int remote_access;        /* the owner's switch at start (tun_set_remote_access) */
    size_t max_tunnel_body;   /* largest request body; 0: default */
    size_t bulk_bytes;        /* replies waiting to be written; 0: default */
};

struct tun_stats {
    uint64_t connects;          /* handshakes completed */
    uint64_t disconnects;
    uint64_t received;          /* messages delivered as events */
    uint64_t malformed;         /* not JSON, or not an object */
    uint64_t oversized;         /* larger than max_incoming; dropped */
    uint64_t binary_ignored;    /* binary frames that are no tunnel request (malformed BSON) */
    uint64_t remote_requests;   /* http.tunnelv2 requests handed to the workers */
    uint64_t remote_refused;    /* answered with an error: off, malformed, too big, busy */
    uint64_t remote_ws_messages;/* ws.tunnel messages from the server */
    uint64_t remote_ws_refused; /* ws.tunnel messages answered with octoprint_close */
    size_t remote_ws_open;      /* tunnelled websockets open now */
    uint64_t bulk_sent;         /* tunnel replies written */
    uint64_t bulk_dropped;      /* tunnel replies dropped: the bulk lane stayed full */
    size_t bulk_bytes;          /* tunnel replies waiting */
    uint64_t events_dropped;    /* the caller's evq was full */
    uint64_t status_sent;
    uint64_t status_replaced;   /* a newer status replaced an unsent one */
    uint64_t messages_sent;
    uint64_t messages_dropped;  /* message lane full */
    int connected;
    int stopped;
    uint32_t next_retry_ms;     /* delay before the pending reconnect, or 0 */
};

struct tun;

const char *tun_result_str(enum tun_result result);

/* Validates the configuration and copies it (the token too). Does not
 * connect. events must outlive the tunnel. reterr, if given, receives a
 * reason on failure. */
enum tun_result tun_new(const struct tun_config *config, struct evq *events,
                        struct tun **ret_tunnel, char *reterr, size_t reterr_len);

/* Starts the service thread, which connects and keeps reconnecting. */
enum tun_result tun_start(struct tun *tunnel, char *reterr, size_t reterr_len);

/* Idempotent; joins the service thread. No thread or socket remains after. */
void tun_stop(struct tun *tunnel);

/* Stops if needed, wipes the token, frees. Accepts NULL; returns NULL. */
struct tun *tun_free(struct tun *tunnel);

/* Replaces any unsent status with this one (a JSON object text). */
enum tun_result tun_send_status(struct tun *tunnel, const char *json, size_t len);

/* Queues a message (ack, event) on the bounded FIFO lane. */
enum tun_result tun_send_message(struct tun *tunnel, const char *json, size_t len);

void tun_get_stats(struct tun *tunnel, struct tun_stats *ret_stats);

/* The owner's remote-access switch; takes effect for the next request. */
void tun_set_remote_access(struct tun *tunnel, int enabled);

#endif
