/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * tunnel_private: the inside of a device websocket (struct tun), shared by
 * tunnel.c (the link, its lanes and its service thread) and tunnel_remote.c
 * (OctoPrint remote access: binary frames, the workers, the bulk lane). Not
 * part of the API: only those two files include it.
 */
#ifndef TSD_TUNNEL_PRIVATE_H
#define TSD_TUNNEL_PRIVATE_H

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httptunnel.h"
#include "tunnel.h"

#define TUN_WS_PROTOCOL_NAME "tsd-octoprint-ws"
#define TUN_WS_MAX_SOCKETS 16u             /* tunnelled websockets at once */
#define TUN_WS_MAX_PENDING (1024u * 1024u)  /* bytes waiting for OctoPrint, per socket */
#define TUN_WS_MAX_MESSAGE (1024u * 1024u)  /* one message from OctoPrint */

struct wst_conn;

struct bulk_item {
    struct bulk_item *next;
    size_t len;
    unsigned char *data;   /* a BSON frame */
};

struct lane_item {
    struct lane_item *next;
    size_t len;
    char data[];
};

struct tun {
    /* configuration, immutable after tun_new() */
    char *url;
    char *host;
    char *path;
    int port;
    bool use_tls;
    char *token;
    char *ca_file;
    size_t max_incoming;
    size_t lane_messages_max;
    size_t lane_bytes_max;
    uint32_t backoff_first_ms;
    uint32_t backoff_cap_ms;
    lws_retry_bo_t idle_policy;
    struct evq *events;
    uint16_t octoprint_port;
    char octoprint_host[64];
    size_t max_tunnel_body;
    size_t bulk_bytes_max;
    struct htun *http;             /* the HTTP workers; NULL without remote access */
    atomic_bool remote_access;     /* the owner's switch */
    char remote_address[HTUN_ADDRESS_SIZE]; /* X-Forwarded-For of tunnelled requests */

    /* shared with other threads, under lock */
    pthread_mutex_t lock;
    pthread_cond_t started_cond;
    struct lane_item *status;      /* latest-wins slot */
    struct lane_item *lane_head;   /* FIFO */
    struct lane_item *lane_tail;
    size_t lane_count;
    size_t lane_bytes;
    struct bulk_item *bulk_head;   /* tunnel replies, FIFO, written last */
    struct bulk_item *bulk_tail;
    size_t bulk_count;
    pthread_cond_t bulk_room;      /* a worker waits here while the bulk lane is full */
    struct tun_stats stats;
    int start_state;               /* 0 starting, 1 running, -1 failed */
    enum tun_result start_result;
    char start_error[256];
    bool thread_started;
    bool thread_joined;
    atomic_bool halt;              /* set by tun_stop() or a fatal close */
    struct lws_context *context;   /* valid while the thread runs */

    /* service-thread only */
    pthread_t thread;
    struct lws *wsi;
    lws_sorted_usec_list_t retry_sul;
    unsigned retry_attempt;
    enum tun_event fatal;          /* 0, UNAUTHORIZED or REPLACED */
    unsigned char *rx;
    size_t rx_len;
    size_t rx_cap;
    bool rx_discard;
    unsigned char *tx;
    size_t tx_cap;
    struct wst_conn *ws_conns;     /* tunnelled websockets (wstunnel.c) */
    size_t ws_count;
};

/* tunnel.c */
/* Service thread: room for len bytes after LWS_PRE in t->tx. */
bool tun_reserve_tx(struct tun *t, size_t len);
void tun_push_event(struct tun *t, enum tun_event type, const char *text, size_t len);
void tun_push_log(struct tun *t, char level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The only lws call allowed from other threads; call with t->lock held. */
void tun_wake_service(struct tun *t);

/* tunnel_remote.c */
/* Sets up remote access from the config (the workers when a port is named). */
enum tun_result tun_remote_new(struct tun *t, const struct tun_config *config, char *reterr,
                               size_t reterr_len);
/* Stops the workers and drops the waiting replies. */
void tun_remote_free(struct tun *t);
/* Service thread: a complete binary frame (t->rx). */
void tun_remote_deliver(struct tun *t);
/* Service thread: a binary frame over the limit, t->rx its stored prefix. */
void tun_remote_oversized(struct tun *t);
/* Service thread: the next tunnel reply to write, or NULL. Under t->lock. */
struct bulk_item *tun_bulk_take_locked(struct tun *t);
/* Drops every waiting reply (the link went down: their browsers are gone). */
void tun_bulk_clear(struct tun *t);
/* Service thread: queues a reply frame (taking it) unless the lane is full. */
bool tun_bulk_push_nowait(struct tun *t, unsigned char *frame, size_t len);
/* The largest binary frame accepted. */
size_t tun_remote_max_frame(const struct tun *t);

/* wstunnel.c, all on the service thread */
struct bsonmsg_request;
void tun_ws_deliver(struct tun *t, const struct bsonmsg_request *request);
/* Closes every tunnelled websocket (ref "ALL", the device link went down). */
void tun_ws_close_all(struct tun *t);
/* Frees what is left once the lws context is gone. */
void tun_ws_free_all(struct tun *t);
int tun_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len);

#endif
