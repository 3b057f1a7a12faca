/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * conn: the frame grabber's client connection, apart from the grabbing.
 * TCP to each address of a name in turn, TLS (1.2 or later, the peer's
 * certificate and name checked), the connection's deadlines (connecting,
 * the last byte received), and recv/send.
 *
 * Nothing here blocks: a step that has to wait sets want (the poll events)
 * and returns CONN_WAIT; the caller polls conn_poll_fd() and calls it again.
 * Names are looked up on a thread of their own (getaddrinfo cannot be
 * interrupted or given a deadline), which the connection abandons when it
 * stops waiting; the thread frees what it holds when its lookup returns. A step that
 * fails sets error and error_text and returns CONN_FAILED; the caller ends
 * its session with them and closes the connection. Not thread-safe: one
 * thread drives a connection.
 */
#ifndef TSD_CONN_H
#define TSD_CONN_H

#include <netdb.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "grab.h"

#define CONN_ADDR_TEXT 64u

enum conn_status {
    CONN_DONE = 0, /* the step is complete */
    CONN_WAIT,     /* poll fd for want, then call the step again */
    CONN_NEXT,     /* this address failed (connect_error says why): connect to the next */
    CONN_FAILED,   /* error and error_text say why */
};

/* What conn_recv and conn_send return besides a byte count. */
#define CONN_IO_WAIT ((ssize_t)-1)   /* want is set */
#define CONN_IO_FAILED ((ssize_t)-2) /* error and error_text are set */

struct conn_lookup;

/* Decides whether the connection may go to one resolved address (NULL: any).
 * Called right before connecting to exactly that address, so nothing can
 * change between the check and the connect. false: skipped, with why (a
 * GRAB_REASON_SIZE buffer) as the address's reason. */
typedef bool conn_addr_check_fn(void *ctx, const struct sockaddr *addr, size_t addr_len,
                                char *why, size_t why_len);

struct conn {
    int fd;     /* -1: none */
    short want; /* poll events the pending step waits for */
    struct addrinfo *addrs;
    struct addrinfo *next_addr;
    struct conn_lookup *lookup; /* a name lookup in progress */
    int64_t lookup_deadline;    /* now_ms() clock */
    char addr_text[CONN_ADDR_TEXT];    /* the address being tried, for messages */
    enum grab_result connect_error;    /* why the last address failed */
    char connect_text[GRAB_REASON_SIZE];
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    BIO_METHOD *bio_method;
    int io_errno;             /* the last socket error seen by the TLS BIO */
    int64_t connect_deadline; /* now_ms() clock */
    int64_t last_io;          /* connected, or the last byte received */
    enum grab_result error;
    char error_text[GRAB_REASON_SIZE];
    conn_addr_check_fn *addr_check; /* NULL: every address */
    void *addr_check_ctx;
};

/* How names are resolved: getaddrinfo(3) unless a test put another in its
 * place (tests/c/test_grab_dns.c: a resolver that never answers). Set it
 * before any session starts; NULL restores getaddrinfo. */
typedef int conn_resolver_fn(const char *host, const char *port, const struct addrinfo *hints,
                             struct addrinfo **ret_addrs);
void conn_set_resolver(conn_resolver_fn *resolver);

void conn_init(struct conn *c);

/* Closes the socket and the TLS state; keeps the resolved addresses. */
void conn_close(struct conn *c);

/* Drops the resolved addresses, and abandons a lookup in progress (a
 * redirect to another host; the end). Never waits. */
void conn_forget_addresses(struct conn *c);

/* What to poll for want: the socket, or while a lookup runs, its signal. */
int conn_poll_fd(const struct conn *c);

/* Resolves url's host (once): CONN_DONE (the addresses are there),
 * CONN_WAIT (a lookup runs: poll, then call again; at lookup_deadline,
 * which is timeout_ms after the start, call conn_lookup_timed_out) or
 * CONN_FAILED (the name does not resolve). An IP literal needs no lookup. */
enum conn_status conn_resolve(struct conn *c, const struct grab_url *url, int timeout_ms);

/* The lookup took longer than timeout_ms: abandons it; sets error
 * (GRAB_ERR_TIMEOUT) and error_text. */
void conn_lookup_timed_out(struct conn *c, const char *host, int timeout_ms);

/* Starts connecting to the next resolved address: CONN_DONE (connected),
 * CONN_WAIT (in progress: call conn_finish_connect once fd is writable, or
 * conn_connect_timed_out at connect_deadline) or CONN_FAILED (no address is
 * left: the last address's reason). After conn_resolve said CONN_DONE. */
enum conn_status conn_connect(struct conn *c, const struct grab_url *url,
                              int connect_timeout_ms);

/* A connect in progress has an answer: CONN_DONE or CONN_NEXT. */
enum conn_status conn_finish_connect(struct conn *c);

/* A connect in progress took longer than connect_timeout_ms: recorded as
 * the address's reason, and the socket is closed (connect to the next). */
void conn_connect_timed_out(struct conn *c, int connect_timeout_ms);

/* Sets up TLS on a connected socket for url's host, checking the peer
 * against ca_file (NULL: the system's CAs): CONN_DONE or CONN_FAILED. */
enum conn_status conn_tls_start(struct conn *c, const struct grab_url *url,
                                const char *ca_file);

/* Drives the TLS handshake: CONN_DONE, CONN_WAIT or CONN_FAILED. */
enum conn_status conn_handshake(struct conn *c, const char *host);

/* > 0: bytes received; 0: the peer closed; CONN_IO_WAIT; CONN_IO_FAILED. */
ssize_t conn_recv(struct conn *c, void *buf, size_t len);

/* > 0 (or 0): bytes sent; CONN_IO_WAIT; CONN_IO_FAILED. */
ssize_t conn_send(struct conn *c, const void *buf, size_t len);

#endif
