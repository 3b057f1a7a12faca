/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * httptunnel: OctoPrint remote access, the HTTP half (`http.tunnelv2`,
 * obico-protocol.md §2.5 and §2.8). A request the server relays from a
 * browser is replayed against the local OctoPrint over plain HTTP/1.1 and
 * the answer goes back as a BSON reply: redirects are not followed (the
 * browser follows them), the raw Set-Cookie fields go back as `cookies`, a
 * body of 1000 bytes or more is zlib-compressed, and every request is
 * answered within its deadline (at most 50 s, under the server's 55 s) or
 * with a clear error status.
 *
 * A fixed pool of worker threads serves a bounded queue: never a thread
 * per request. When the queue (requests or body bytes) is full, the caller
 * answers the request at once with 503. Per-request limits: the request body (the
 * decoder's), the response body (max_response; over it: 502).
 *
 * Never treated as local: every replayed request carries
 * "X-Forwarded-For: <forwarded_for>" (by default HTUN_DEFAULT_FORWARDED_FOR,
 * a TEST-NET-2 address, RFC 5737; the shim picks one that is in none of the
 * printer's networks), and every forwarding or proxy header the browser or
 * server sent is removed first. OctoPrint trusts X-Forwarded-For
 * from loopback (server.reverseProxy.trustLocalhostProxies, on by
 * default), so it sees the tunnelled browser as that outside address: the
 * autologin for local networks and the other loopback trust do not apply.
 * The shim checks OctoPrint's settings and turns remote access off where
 * they would make the request local after all (docs/security.md).
 *
 * Threads never call Python: replies and login notices go out through the
 * caller's callbacks, which must be thread-safe and must not block for long.
 */
#ifndef TSD_HTTPTUNNEL_H
#define TSD_HTTPTUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include "bson_msg.h"

#define HTUN_DEFAULT_FORWARDED_FOR "198.51.100.1"
#define HTUN_ADDRESS_SIZE 64
#define HTUN_COMPRESS_AT 1000u
#define HTUN_DEFAULT_WORKERS 4u
#define HTUN_MAX_WORKERS 16u
#define HTUN_DEFAULT_QUEUE 64u
#define HTUN_DEFAULT_QUEUE_BYTES (64u * 1024u * 1024u)
#define HTUN_DEFAULT_MAX_RESPONSE (32u * 1024u * 1024u)

enum htun_result {
    HTUN_OK = 0,
    HTUN_ERR_INVALID,
    HTUN_ERR_NOMEM,
    HTUN_ERR_THREAD,
    HTUN_ERR_FULL,    /* the queue is full; the request was answered with 503 */
    HTUN_RESULT_MAX
};

/* Takes a BSON reply frame (malloc'd; the callee owns it from now on). */
typedef void htun_reply_fn(void *user, unsigned char *frame, size_t len);

/* A login through the tunnel (POST /api/login that is not passive):
 * OctoPrint's answer status, and the user name it reported ("" on failure).
 * Never the password or a cookie. */
typedef void htun_login_fn(void *user, int status, const char *name);

struct htun_config {
    const char *host;       /* OctoPrint's address, numeric: "127.0.0.1" or "::1" */
    uint16_t port;          /* OctoPrint's HTTP port */
    const char *forwarded_for; /* numeric IPv4 or IPv6; NULL: the default */
    unsigned workers;       /* 0: HTUN_DEFAULT_WORKERS */
    size_t queue_requests;  /* 0: HTUN_DEFAULT_QUEUE */
    size_t queue_bytes;     /* request bodies waiting, all together; 0: default */
    size_t max_response;    /* largest response body replayed; 0: default */
    htun_reply_fn *reply;
    htun_login_fn *login;   /* may be NULL */
    void *user;
};

struct htun_stats {
    uint64_t requests;      /* accepted into the queue */
    uint64_t answered;      /* replies from OctoPrint, any status */
    uint64_t failed;        /* answered with an error of our own (502, 504) */
    uint64_t refused_busy;  /* answered with 503: the queue was full */
    uint64_t bytes_in;      /* response bodies from OctoPrint */
    uint64_t bytes_out;     /* request bodies to OctoPrint */
    size_t queued;
    size_t queued_bytes;
};

struct htun;

const char *htun_result_str(enum htun_result result);

enum htun_result htun_new(const struct htun_config *config, struct htun **ret_pool);

/* HTUN_OK: the request is queued and belongs to the pool now.
 * HTUN_ERR_FULL (the queue, its bytes, or stopping): the request stays the
 * caller's, to answer with 503 (the reply callback is never called on the
 * caller's thread). */
enum htun_result htun_submit(struct htun *pool, struct bsonmsg_request *request);

/* Answers a request that will not be replayed with status and a plain-text
 * explanation, through the reply callback, on this thread. */
void htun_answer_error(htun_reply_fn *reply, void *user, const char *ref, int status,
                       const char *text);

/* Stops the workers (a request in progress ends at its deadline at the
 * latest; queued ones are dropped) and frees. Accepts NULL; returns NULL. */
struct htun *htun_free(struct htun *pool);

void htun_get_stats(struct htun *pool, struct htun_stats *ret_stats);

#endif
