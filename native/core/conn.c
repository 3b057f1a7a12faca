/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "conn.h"
#include "errtext.h"
#include "monotime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static conn_resolver_fn *resolver = getaddrinfo;

void conn_set_resolver(conn_resolver_fn *replacement)
{
    resolver = replacement ? replacement : getaddrinfo;
}

void conn_init(struct conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl); /* frees the BIO */
        c->ssl = NULL;
    }
    if (c->ssl_ctx) {
        SSL_CTX_free(c->ssl_ctx);
        c->ssl_ctx = NULL;
    }
    if (c->bio_method) {
        BIO_meth_free(c->bio_method);
        c->bio_method = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->want = 0;
    ERR_clear_error(); /* leave nothing in this thread's OpenSSL error queue */
}

static void lookup_release(struct conn_lookup *lookup);

void conn_forget_addresses(struct conn *c)
{
    if (c->addrs)
        freeaddrinfo(c->addrs);
    c->addrs = NULL;
    c->next_addr = NULL;
    lookup_release(c->lookup);
    c->lookup = NULL;
}

static enum conn_status conn_fail(struct conn *c, enum grab_result result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records why the connection failed; returns CONN_FAILED. */
static enum conn_status conn_fail(struct conn *c, enum grab_result result, const char *fmt, ...)
{
    va_list args;

    c->error = result;
    va_start(args, fmt);
    vsnprintf(c->error_text, sizeof(c->error_text), fmt, args);
    va_end(args);
    return CONN_FAILED;
}

static const char *ssl_error_text(char *buf, size_t len)
{
    unsigned long err = ERR_get_error();

    if (err == 0)
        return "unknown TLS error";
    ERR_error_string_n(err, buf, len);
    return buf;
}

/* ---- recv and send ------------------------------------------------------- */

/* One recv() or send() (never raising SIGPIPE), retried on EINTR. */
static ssize_t socket_io(int fd, void *buf, size_t len, bool reading)
{
    ssize_t n;

    do
        n = reading ? recv(fd, buf, len, 0) : send(fd, buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

/* The TLS socket BIO: remembers errno for the error messages, and counts a
 * received byte as life on the connection. */
static int bio_io(BIO *bio, void *buf, int len, bool reading)
{
    struct conn *c = BIO_get_data(bio);
    ssize_t n;

    BIO_clear_retry_flags(bio);
    n = socket_io(c->fd, buf, (size_t)len, reading);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            c->io_errno = errno;
        else if (reading)
            BIO_set_retry_read(bio);
        else
            BIO_set_retry_write(bio);
        return -1;
    }
    if (n > 0 && reading)
        c->last_io = now_ms();
    return (int)n;
}

static int bio_write(BIO *bio, const char *data, int len)
{
    return bio_io(bio, (void *)data, len, false); /* send() only reads it */
}

static int bio_read(BIO *bio, char *buf, int len)
{
    return bio_io(bio, buf, len, true);
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)bio;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static ssize_t io_failed(struct conn *c, int err, const char *direction)
{
    char text[128];

    conn_fail(c, GRAB_ERR_IO, "%s %s failed: %s", direction, c->addr_text,
              errno_text(err, text, sizeof(text)));
    return CONN_IO_FAILED;
}

/* What an SSL_read or SSL_write that returned n <= 0 means. */
static ssize_t tls_io_result(struct conn *c, int n, bool reading)
{
    const char *direction = reading ? "receiving from" : "sending to";
    int err = SSL_get_error(c->ssl, n);
    char text[128];

    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        c->want = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return CONN_IO_WAIT;
    }
    if (reading && (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && c->io_errno == 0)))
        return 0; /* closed, with or without close_notify */
    if (err == SSL_ERROR_SYSCALL && c->io_errno != 0)
        return io_failed(c, c->io_errno, direction);
    conn_fail(c, GRAB_ERR_TLS, "TLS error %s %s: %s", direction, c->addr_text,
              ssl_error_text(text, sizeof(text)));
    return CONN_IO_FAILED;
}

static ssize_t conn_io(struct conn *c, void *buf, size_t len, bool reading)
{
    ssize_t n;

    if (c->ssl) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;

        ERR_clear_error();
        c->io_errno = 0;
        n = reading ? SSL_read(c->ssl, buf, chunk) : SSL_write(c->ssl, buf, chunk);
        return n > 0 ? n : tls_io_result(c, (int)n, reading);
    }
    n = socket_io(c->fd, buf, len, reading);
    if (n > 0 && reading)
        c->last_io = now_ms();
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->want = reading ? POLLIN : POLLOUT;
        return CONN_IO_WAIT;
    }
    return io_failed(c, errno, reading ? "receiving from" : "sending to");
}

ssize_t conn_recv(struct conn *c, void *buf, size_t len)
{
    return conn_io(c, buf, len, true);
}

ssize_t conn_send(struct conn *c, const void *buf, size_t len)
{
    return conn_io(c, (void *)buf, len, false); /* send() only reads it */
}

/* ---- TLS ------------------------------------------------------------------ */

static bool host_is_ip_literal(const struct grab_url *url)
{
    struct in_addr v4;

    return url->ipv6 || inet_pton(AF_INET, url->host, &v4) == 1;
}

enum conn_status conn_tls_start(struct conn *c, const struct grab_url *url, const char *ca_file)
{
    char text[160];
    X509_VERIFY_PARAM *param;
    BIO *bio;

    ERR_clear_error();
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ssl_ctx)
        return conn_fail(c, GRAB_ERR_TLS, "cannot create a TLS context: %s",
                         ssl_error_text(text, sizeof(text)));
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(c->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(c->ssl_ctx, ca_file, NULL) != 1)
            return conn_fail(c, GRAB_ERR_TLS, "cannot load the CA file %s: %s", ca_file,
                             ssl_error_text(text, sizeof(text)));
    } else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
        return conn_fail(c, GRAB_ERR_TLS, "cannot load the system's CA certificates: %s",
                         ssl_error_text(text, sizeof(text)));
    }
    c->ssl = SSL_new(c->ssl_ctx);
    if (!c->ssl)
        return conn_fail(c, GRAB_ERR_TLS, "cannot create a TLS connection: %s",
                         ssl_error_text(text, sizeof(text)));
    param = SSL_get0_param(c->ssl);
    if (host_is_ip_literal(url)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, url->host) != 1)
            return conn_fail(c, GRAB_ERR_TLS, "cannot check the certificate against %s",
                             url->host);
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set_tlsext_host_name(c->ssl, url->host) != 1 ||
            SSL_set1_host(c->ssl, url->host) != 1)
            return conn_fail(c, GRAB_ERR_TLS, "cannot check the certificate against %s",
                             url->host);
    }
    c->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tsd-grab-socket");
    if (!c->bio_method || BIO_meth_set_write(c->bio_method, bio_write) != 1 ||
        BIO_meth_set_read(c->bio_method, bio_read) != 1 ||
        BIO_meth_set_ctrl(c->bio_method, bio_ctrl) != 1 ||
        BIO_meth_set_create(c->bio_method, bio_create) != 1)
        return conn_fail(c, GRAB_ERR_NOMEM, "cannot create a TLS socket BIO");
    bio = BIO_new(c->bio_method);
    if (!bio)
        return conn_fail(c, GRAB_ERR_NOMEM, "cannot create a TLS socket BIO");
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio); /* one reference, owned by the SSL */
    SSL_set_connect_state(c->ssl);
    return CONN_DONE;
}

enum conn_status conn_handshake(struct conn *c, const char *host)
{
    char text[160];
    long verify;
    int rc;
    int err;

    ERR_clear_error();
    c->io_errno = 0;
    rc = SSL_connect(c->ssl);
    if (rc == 1)
        return CONN_DONE;
    err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        c->want = err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return CONN_WAIT;
    }
    verify = SSL_get_verify_result(c->ssl);
    if (verify != X509_V_OK)
        return conn_fail(c, GRAB_ERR_TLS_VERIFY, "the certificate of %s is not accepted: %s",
                         host, X509_verify_cert_error_string(verify));
    if (err == SSL_ERROR_SYSCALL && c->io_errno != 0)
        return conn_fail(c, GRAB_ERR_TLS, "TLS handshake with %s failed: %s", c->addr_text,
                         errno_text(c->io_errno, text, sizeof(text)));
    if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN)
        return conn_fail(c, GRAB_ERR_TLS,
                         "%s closed the connection during the TLS handshake (is it https?)",
                         c->addr_text);
    return conn_fail(c, GRAB_ERR_TLS, "TLS handshake with %s failed: %s", c->addr_text,
                     ssl_error_text(text, sizeof(text)));
}

/* ---- connecting ------------------------------------------------------------ */

/* This address failed: remember why (reported if no address is left). */
static void connect_failed(struct conn *c, int err)
{
    char text[128];

    if (err == ECONNREFUSED) {
        c->connect_error = GRAB_ERR_CONNECT_REFUSED;
        set_reason(c->connect_text, sizeof(c->connect_text), "%s refused the connection",
                   c->addr_text);
    } else if (err == ETIMEDOUT) {
        c->connect_error = GRAB_ERR_CONNECT_TIMEOUT;
        set_reason(c->connect_text, sizeof(c->connect_text), "connecting to %s timed out",
                   c->addr_text);
    } else {
        c->connect_error = GRAB_ERR_CONNECT;
        set_reason(c->connect_text, sizeof(c->connect_text), "cannot connect to %s: %s",
                   c->addr_text, errno_text(err, text, sizeof(text)));
    }
    conn_close(c);
}

void conn_connect_timed_out(struct conn *c, int connect_timeout_ms)
{
    c->connect_error = GRAB_ERR_CONNECT_TIMEOUT;
    set_reason(c->connect_text, sizeof(c->connect_text), "connecting to %s took more than %d ms",
               c->addr_text, connect_timeout_ms);
    conn_close(c);
}

static void describe_address(struct conn *c, const struct addrinfo *ai, unsigned port)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)(const void *)ai->ai_addr;
        inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof(ip));
        snprintf(c->addr_text, sizeof(c->addr_text), "[%s]:%u", ip, port);
    } else {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)(const void *)ai->ai_addr;
        inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
        snprintf(c->addr_text, sizeof(c->addr_text), "%s:%u", ip, port);
    }
}

/* ---- name lookups ------------------------------------------------------------ */

/* At most this many lookups run at once in the process; a name server that
 * never answers holds a thread until getaddrinfo gives up by itself
 * (resolv.conf's timeout and attempts), and a camera that is retried must
 * not pile them up. */
#define CONN_MAX_LOOKUPS 8

static atomic_int lookups_running;

/* One getaddrinfo on a thread of its own. Two owners, the connection and the
 * thread; whichever lets go last frees it, so the connection can abandon it
 * at any moment without waiting. */
struct conn_lookup {
    atomic_int owners;
    atomic_bool done;        /* the fields below are final (release/acquire) */
    int done_fd;             /* eventfd, readable once done */
    int rc;                  /* resolver()'s result */
    int err;                 /* errno, for EAI_SYSTEM */
    struct addrinfo *addrs;  /* the thread's until done, then the taker's */
    struct addrinfo hints;
    char host[GRAB_MAX_HOST + 1];
    char port[8];
};

static void lookup_release(struct conn_lookup *lookup)
{
    if (!lookup || atomic_fetch_sub(&lookup->owners, 1) != 1)
        return;
    if (lookup->addrs)
        freeaddrinfo(lookup->addrs);
    if (lookup->done_fd >= 0)
        close(lookup->done_fd);
    free(lookup);
}

static void *lookup_thread(void *arg)
{
    struct conn_lookup *lookup = arg;
    uint64_t one = 1;
    ssize_t n;

    lookup->rc = resolver(lookup->host, lookup->port, &lookup->hints, &lookup->addrs);
    lookup->err = errno;
    atomic_store_explicit(&lookup->done, true, memory_order_release);
    n = write(lookup->done_fd, &one, sizeof(one));
    (void)n; /* cannot fail: the counter is far from full */
    lookup_release(lookup);
    atomic_fetch_sub(&lookups_running, 1);
    return NULL;
}

/* Starts a lookup of url's host on its own thread (signals blocked there:
 * they belong to the threads of the program). */
static enum conn_status lookup_start(struct conn *c, const struct grab_url *url,
                                     const struct addrinfo *hints, const char *port)
{
    struct conn_lookup *lookup = NULL;
    enum conn_status status = CONN_WAIT;
    pthread_attr_t attr;
    sigset_t all;
    sigset_t old;
    pthread_t thread;
    char text[128];
    int err;

    if (atomic_fetch_add(&lookups_running, 1) >= CONN_MAX_LOOKUPS) {
        atomic_fetch_sub(&lookups_running, 1);
        return conn_fail(c, GRAB_ERR_DNS, "cannot resolve %s: %d lookups are still unanswered",
                         url->host, CONN_MAX_LOOKUPS);
    }
    lookup = calloc(1, sizeof(*lookup));
    if (!lookup) {
        status = conn_fail(c, GRAB_ERR_NOMEM, "out of memory");
        goto out;
    }
    atomic_init(&lookup->owners, 2);
    atomic_init(&lookup->done, false);
    lookup->hints = *hints;
    snprintf(lookup->host, sizeof(lookup->host), "%s", url->host);
    snprintf(lookup->port, sizeof(lookup->port), "%s", port);
    lookup->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lookup->done_fd < 0) {
        status = conn_fail(c, GRAB_ERR_SYSTEM, "eventfd: %s",
                           errno_text(errno, text, sizeof(text)));
        goto out;
    }
    sigfillset(&all);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&thread, &attr, lookup_thread, lookup);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        status = conn_fail(c, GRAB_ERR_SYSTEM, "cannot start a name lookup: %s",
                           errno_text(err, text, sizeof(text)));
        goto out;
    }
    c->lookup = lookup;
    lookup = NULL;

out:
    if (lookup) {
        atomic_init(&lookup->owners, 1); /* no thread took its share */
        lookup_release(lookup);
        atomic_fetch_sub(&lookups_running, 1);
    }
    return status;
}

/* The addresses (or the failure) a finished lookup found. */
static enum conn_status lookup_finish(struct conn *c, int rc, int err, struct addrinfo *addrs,
                                      const char *host)
{
    char text[128];

    if (rc != 0 || !addrs) {
        if (addrs)
            freeaddrinfo(addrs);
        if (rc == EAI_SYSTEM)
            return conn_fail(c, GRAB_ERR_DNS, "cannot resolve %s: %s", host,
                             errno_text(err, text, sizeof(text)));
        return conn_fail(c, GRAB_ERR_DNS, "cannot resolve %s: %s", host,
                         rc ? gai_strerror(rc) : "no address");
    }
    c->addrs = addrs;
    c->next_addr = addrs;
    c->connect_error = GRAB_ERR_CONNECT;
    set_reason(c->connect_text, sizeof(c->connect_text), "%s has no usable address", host);
    return CONN_DONE;
}

int conn_poll_fd(const struct conn *c)
{
    if (c->fd < 0 && c->lookup)
        return c->lookup->done_fd;
    return c->fd;
}

enum conn_status conn_resolve(struct conn *c, const struct grab_url *url, int timeout_ms)
{
    struct conn_lookup *lookup = c->lookup;
    struct addrinfo hints;
    struct addrinfo *addrs = NULL;
    enum conn_status status;
    char port[8];
    int rc;

    if (c->addrs)
        return CONN_DONE;
    if (lookup) {
        if (!atomic_load_explicit(&lookup->done, memory_order_acquire)) {
            c->want = POLLIN;
            return CONN_WAIT;
        }
        addrs = lookup->addrs;
        lookup->addrs = NULL;
        status = lookup_finish(c, lookup->rc, lookup->err, addrs, url->host);
        lookup_release(lookup);
        c->lookup = NULL;
        return status;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = url->ipv6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", (unsigned)url->port);
    if (host_is_ip_literal(url)) {
        /* Nothing to look up: getaddrinfo only converts, without waiting. */
        hints.ai_flags |= AI_NUMERICHOST;
        rc = getaddrinfo(url->host, port, &hints, &addrs);
        return lookup_finish(c, rc, errno, rc == 0 ? addrs : NULL, url->host);
    }
    status = lookup_start(c, url, &hints, port);
    if (status == CONN_WAIT) {
        c->lookup_deadline = now_ms() + timeout_ms;
        c->want = POLLIN;
    }
    return status;
}

void conn_lookup_timed_out(struct conn *c, const char *host, int timeout_ms)
{
    lookup_release(c->lookup);
    c->lookup = NULL;
    conn_fail(c, GRAB_ERR_TIMEOUT, "resolving %s took more than %d ms", host, timeout_ms);
}

enum conn_status conn_connect(struct conn *c, const struct grab_url *url, int connect_timeout_ms)
{
    char text[128];

    while (c->next_addr) {
        const struct addrinfo *ai = c->next_addr;

        c->next_addr = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        describe_address(c, ai, url->port);
        if (c->addr_check && !c->addr_check(c->addr_check_ctx, ai->ai_addr, ai->ai_addrlen,
                                            c->connect_text, sizeof(c->connect_text))) {
            c->connect_error = GRAB_ERR_REFUSED;
            continue;
        }
        c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd < 0)
            return conn_fail(c, GRAB_ERR_SYSTEM, "socket: %s",
                             errno_text(errno, text, sizeof(text)));
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            c->last_io = now_ms();
            return CONN_DONE;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            c->want = POLLOUT;
            c->connect_deadline = now_ms() + connect_timeout_ms;
            return CONN_WAIT;
        }
        connect_failed(c, errno);
    }
    return conn_fail(c, c->connect_error, "%s", c->connect_text);
}

enum conn_status conn_finish_connect(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        connect_failed(c, err);
        return CONN_NEXT;
    }
    c->last_io = now_ms();
    return CONN_DONE;
}
