/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "grab.h"
#include "errtext.h"
#include "httpresp.h"
#include "jpeg.h"
#include "mjpeg.h"
#include "monotime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define GRAB_RX_SIZE (64u * 1024u)
#define GRAB_REQUEST_SIZE (GRAB_MAX_URL + GRAB_MAX_HOST + 512u)
/* Body bytes one pass reads before it looks at the clock and the interrupt
 * again (and, once a frame is ready, before poll returns it). */
#define GRAB_DRAIN_MAX (4u * 1024u * 1024u)
#define GRAB_CHUNK_LINE_MAX 4096u
#define GRAB_TRAILER_MAX (16u * 1024u)
#define GRAB_SNAPSHOT_INITIAL (64u * 1024u)
#define GRAB_ADDR_TEXT 64u
#define GRAB_USER_AGENT "TheSpaghettiDetective-grab/1"

/* ---- chunked transfer coding (RFC 9112 section 7.1) ---------------------- */

enum chunk_state {
    CH_SIZE = 0, /* hex digits of the chunk size */
    CH_EXT,      /* chunk extensions, ignored, up to LF */
    CH_SIZE_LF,  /* CR seen after the size */
    CH_DATA,
    CH_DATA_CR,  /* the CRLF after the chunk data */
    CH_DATA_LF,
    CH_TRAILER,  /* trailer fields, ignored, up to an empty line */
    CH_DONE,
};

struct dechunk {
    enum chunk_state state;
    uint64_t left;
    unsigned digits;
    size_t line_len;
    size_t trailer_len;
};

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void chunk_start(struct dechunk *d)
{
    d->state = CH_SIZE;
    d->left = 0;
    d->digits = 0;
    d->line_len = 0;
}

static void chunk_size_done(struct dechunk *d)
{
    if (d->left == 0) {
        d->state = CH_TRAILER;
        d->line_len = 0;
        d->trailer_len = 0;
    } else {
        d->state = CH_DATA;
    }
}

/* Decodes len bytes in place: the chunk data moves to the start of data,
 * *ret_out bytes of it. Bytes after the last chunk are ignored. Returns false
 * on malformed input (*ret_out untouched). */
static bool dechunk_feed(struct dechunk *d, unsigned char *data, size_t len, size_t *ret_out)
{
    size_t in = 0;
    size_t out = 0;

    while (in < len) {
        unsigned char c = data[in];
        int value;
        size_t n;

        switch (d->state) {
        case CH_SIZE:
            value = hex_value(c);
            in++;
            if (value >= 0) {
                if (d->digits >= 15)
                    return false;
                d->left = d->left * 16u + (uint64_t)value;
                d->digits++;
            } else if (d->digits == 0) {
                return false;
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = CH_EXT;
            } else if (c == '\r') {
                d->state = CH_SIZE_LF;
            } else if (c == '\n') {
                chunk_size_done(d);
            } else {
                return false;
            }
            break;
        case CH_EXT:
            in++;
            if (c == '\n')
                chunk_size_done(d);
            else if (++d->line_len > GRAB_CHUNK_LINE_MAX || (c < 0x20 && c != '\t' && c != '\r'))
                return false;
            break;
        case CH_SIZE_LF:
            in++;
            if (c != '\n')
                return false;
            chunk_size_done(d);
            break;
        case CH_DATA:
            n = len - in;
            if (n > d->left)
                n = (size_t)d->left;
            memmove(data + out, data + in, n);
            out += n;
            in += n;
            d->left -= n;
            if (d->left == 0)
                d->state = CH_DATA_CR;
            break;
        case CH_DATA_CR:
            in++;
            if (c == '\r')
                d->state = CH_DATA_LF;
            else if (c == '\n')
                chunk_start(d);
            else
                return false;
            break;
        case CH_DATA_LF:
            in++;
            if (c != '\n')
                return false;
            chunk_start(d);
            break;
        case CH_TRAILER:
            in++;
            if (++d->trailer_len > GRAB_TRAILER_MAX)
                return false;
            if (c == '\n') {
                if (d->line_len == 0)
                    d->state = CH_DONE;
                d->line_len = 0;
            } else if (c != '\r') {
                d->line_len++;
            }
            break;
        case CH_DONE:
            in = len;
            break;
        }
    }
    *ret_out = out;
    return true;
}

/* ---- the session ----------------------------------------------------------- */

enum conn_state {
    CS_IDLE = 0,   /* next: resolve (once per URL) and connect to the next address */
    CS_CONNECTING, /* non-blocking connect in progress */
    CS_HANDSHAKE,  /* TLS handshake */
    CS_SENDING,    /* the request */
    CS_HEAD,       /* the response head */
    CS_BODY,
    CS_DONE,       /* snapshot complete: the frame is in pending */
    CS_FAILED,     /* error and error_text are final */
};

enum deadline_kind {
    DL_NONE = 0,
    DL_CONNECT,
    DL_READ,
    DL_TOTAL,
    DL_FRAME,
};

struct grab_stream {
    /* configuration, fixed at open */
    bool snapshot;
    int connect_timeout_ms;
    int read_timeout_ms;
    int total_timeout_ms;
    int frame_timeout_ms;
    size_t max_frame;
    unsigned max_bad_frames;
    char *ca_file;

    /* the only fields other threads touch */
    int wake_fd;
    atomic_bool interrupted;

    struct grab_url url; /* after the redirects so far */
    unsigned redirects;
    enum conn_state state;
    enum grab_result error;
    char error_text[GRAB_REASON_SIZE];

    /* the connection */
    int fd;
    short want; /* poll events the pending operation waits for */
    struct addrinfo *addrs;
    struct addrinfo *next_addr;
    char addr_text[GRAB_ADDR_TEXT];
    enum grab_result connect_error; /* why the last address failed */
    char connect_text[GRAB_REASON_SIZE];
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    BIO_METHOD *bio_method;
    int io_errno; /* the last socket error seen by the TLS BIO */
    bool started;
    int64_t head_deadline; /* the response head; snapshot: everything */
    int64_t connect_deadline;
    int64_t last_io;       /* connected, or the last byte received */
    char request[GRAB_REQUEST_SIZE];
    size_t request_len;
    size_t request_sent;

    /* the response */
    struct httpresp *head;
    enum httpresp_body body_kind;
    uint64_t body_left;    /* HTTPRESP_BODY_LENGTH: bytes still to come */
    uint64_t body_length;
    struct dechunk chunk;
    bool multipart;        /* the body goes to the MJPEG parser */
    unsigned char *body;   /* a snapshot that is not multipart */
    size_t body_len;
    size_t body_cap;

    /* frames */
    struct mjpeg *parser;
    struct jpg_decoder *decoder;
    struct grab_frame *pending; /* the newest valid frame, not taken yet */
    int64_t last_frame_at;
    uint64_t bytes_since_frame;
    uint64_t too_big_mark;      /* parser too_big count at the last frame */
    uint64_t invalid_since_frame;
    unsigned bad_in_row;
    enum jpg_result last_jpg_error;
    struct grab_stream_stats stats;

    unsigned char rx[GRAB_RX_SIZE];
};

const char *grab_result_str(enum grab_result result)
{
    switch (result) {
    case GRAB_OK: return "ok";
    case GRAB_NO_FRAME: return "no new frame yet";
    case GRAB_ERR_INVALID: return "invalid argument";
    case GRAB_ERR_NOMEM: return "out of memory";
    case GRAB_ERR_SYSTEM: return "system call failed";
    case GRAB_ERR_URL: return "the camera URL cannot be used";
    case GRAB_ERR_DNS: return "the camera's host name does not resolve";
    case GRAB_ERR_CONNECT_REFUSED: return "connection refused";
    case GRAB_ERR_CONNECT_TIMEOUT: return "connecting timed out";
    case GRAB_ERR_CONNECT: return "cannot connect";
    case GRAB_ERR_TLS: return "TLS failed";
    case GRAB_ERR_TLS_VERIFY: return "the camera's certificate is not trusted";
    case GRAB_ERR_IO: return "network error";
    case GRAB_ERR_TIMEOUT: return "timed out";
    case GRAB_ERR_CLOSED: return "the camera closed the connection";
    case GRAB_ERR_HTTP: return "malformed HTTP response";
    case GRAB_ERR_HTTP_STATUS: return "HTTP error status";
    case GRAB_ERR_REDIRECT: return "redirect not followed";
    case GRAB_ERR_NOT_MULTIPART: return "not an MJPEG stream";
    case GRAB_ERR_NO_BOUNDARY: return "MJPEG stream without a usable boundary";
    case GRAB_ERR_TOO_BIG: return "frame too large";
    case GRAB_ERR_INVALID_JPEG: return "not a valid JPEG";
    case GRAB_ERR_NO_FRAMES: return "the stream sends no usable frames";
    case GRAB_ERR_INTERRUPTED: return "interrupted";
    case GRAB_RESULT_MAX: break;
    }
    return "unknown result";
}

/* ---- URLs ------------------------------------------------------------------ */

static bool is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static bool has_bad_char(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f)
            return true;
    return false;
}

/* A registered name: dot-separated labels of 1..63 host characters; one
 * trailing dot allowed. */
static bool host_name_ok(const char *host, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > GRAB_MAX_HOST)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!is_host_char(c))
            return false;
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (++label > 63) {
            return false;
        }
    }
    return true;
}

enum grab_result grab_url_parse(const char *text, struct grab_url *ret_url, char *reterr,
                                size_t reterr_len)
{
    enum grab_result result = GRAB_OK;
    struct grab_url url;
    const char *authority;
    const char *authority_end;
    const char *host_end;
    const char *port_start = NULL;
    const char *rest;
    size_t len;
    size_t host_len;
    size_t target_len;

    memset(&url, 0, sizeof(url));
    if (!text || !ret_url) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    len = strnlen(text, GRAB_MAX_URL + 1);
    if (len == 0 || len > GRAB_MAX_URL) {
        set_reason(reterr, reterr_len, "the URL is empty or longer than %u bytes", GRAB_MAX_URL);
        result = GRAB_ERR_URL;
        goto out;
    }
    if (has_bad_char(text, len)) {
        set_reason(reterr, reterr_len,
                   "the URL contains spaces, control characters or non-ASCII bytes");
        result = GRAB_ERR_URL;
        goto out;
    }
    if (strncasecmp(text, "http://", 7) == 0) {
        authority = text + 7;
    } else if (strncasecmp(text, "https://", 8) == 0) {
        url.tls = true;
        authority = text + 8;
    } else {
        set_reason(reterr, reterr_len, "the URL must start with http:// or https://");
        result = GRAB_ERR_URL;
        goto out;
    }
    authority_end = authority + strcspn(authority, "/?#");
    if (memchr(authority, '@', (size_t)(authority_end - authority))) {
        set_reason(reterr, reterr_len,
                   "user names and passwords in the URL (user:password@host) are not supported");
        result = GRAB_ERR_URL;
        goto out;
    }
    if (authority == authority_end) {
        set_reason(reterr, reterr_len, "the URL has no host");
        result = GRAB_ERR_URL;
        goto out;
    }
    if (*authority == '[') {
        const char *close = memchr(authority, ']', (size_t)(authority_end - authority));
        struct in6_addr addr;

        if (!close) {
            set_reason(reterr, reterr_len, "unterminated IPv6 address in the URL");
            result = GRAB_ERR_URL;
            goto out;
        }
        host_len = (size_t)(close - authority - 1);
        if (host_len == 0 || host_len >= INET6_ADDRSTRLEN) {
            set_reason(reterr, reterr_len, "malformed IPv6 address in the URL");
            result = GRAB_ERR_URL;
            goto out;
        }
        memcpy(url.host, authority + 1, host_len);
        url.host[host_len] = '\0';
        if (strchr(url.host, '%')) {
            set_reason(reterr, reterr_len, "IPv6 zone ids (%%...) are not supported");
            result = GRAB_ERR_URL;
            goto out;
        }
        if (inet_pton(AF_INET6, url.host, &addr) != 1) {
            set_reason(reterr, reterr_len, "malformed IPv6 address in the URL");
            result = GRAB_ERR_URL;
            goto out;
        }
        url.ipv6 = true;
        host_end = close + 1;
        if (host_end < authority_end) {
            if (*host_end != ':') {
                set_reason(reterr, reterr_len, "unexpected characters after the IPv6 address");
                result = GRAB_ERR_URL;
                goto out;
            }
            port_start = host_end + 1;
        }
    } else {
        const char *colon = memchr(authority, ':', (size_t)(authority_end - authority));

        host_end = colon ? colon : authority_end;
        host_len = (size_t)(host_end - authority);
        if (!host_name_ok(authority, host_len)) {
            set_reason(reterr, reterr_len, "the host name in the URL is empty or malformed");
            result = GRAB_ERR_URL;
            goto out;
        }
        for (size_t i = 0; i < host_len; i++) {
            char c = authority[i];
            url.host[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        url.host[host_len] = '\0';
        if (colon)
            port_start = colon + 1;
    }
    url.port = url.tls ? 443 : 80;
    if (port_start && port_start < authority_end) {
        unsigned long port = 0;
        size_t digits = (size_t)(authority_end - port_start);

        if (digits > 5) {
            set_reason(reterr, reterr_len, "the port in the URL is out of range");
            result = GRAB_ERR_URL;
            goto out;
        }
        for (size_t i = 0; i < digits; i++) {
            if (port_start[i] < '0' || port_start[i] > '9') {
                set_reason(reterr, reterr_len, "the port in the URL is not a number");
                result = GRAB_ERR_URL;
                goto out;
            }
            port = port * 10 + (unsigned long)(port_start[i] - '0');
        }
        if (port < 1 || port > 65535) {
            set_reason(reterr, reterr_len, "the port in the URL is out of range");
            result = GRAB_ERR_URL;
            goto out;
        }
        url.port = (uint16_t)port;
    }
    rest = authority_end;
    target_len = strcspn(rest, "#");
    if (target_len == 0) {
        memcpy(url.target, "/", 2);
    } else if (rest[0] == '?') {
        if (target_len + 1 > GRAB_MAX_URL) {
            set_reason(reterr, reterr_len, "the URL is too long");
            result = GRAB_ERR_URL;
            goto out;
        }
        url.target[0] = '/';
        memcpy(url.target + 1, rest, target_len);
        url.target[target_len + 1] = '\0';
    } else {
        memcpy(url.target, rest, target_len);
        url.target[target_len] = '\0';
    }
    *ret_url = url;

out:
    return result;
}

static bool has_scheme(const char *text)
{
    const char *p = text;

    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
           *p == '+' || *p == '-' || *p == '.')
        p++;
    return *p == ':';
}

enum grab_result grab_url_resolve(const struct grab_url *base, const char *location,
                                  struct grab_url *ret_url, char *reterr, size_t reterr_len)
{
    enum grab_result result = GRAB_OK;
    struct grab_url next;
    char why[GRAB_REASON_SIZE];
    char absolute[GRAB_MAX_URL + 8];
    size_t len;

    if (!base || !location || !ret_url) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    len = strnlen(location, GRAB_MAX_URL + 1);
    if (len == 0 || len > GRAB_MAX_URL || has_bad_char(location, len)) {
        set_reason(reterr, reterr_len,
                   "the redirect's Location is empty, too long or has invalid characters");
        result = GRAB_ERR_REDIRECT;
        goto out;
    }
    if (has_scheme(location) || strncmp(location, "//", 2) == 0) {
        const char *text = location;

        if (location[0] == '/') {
            snprintf(absolute, sizeof(absolute), "%s:%s", base->tls ? "https" : "http", location);
            text = absolute;
        }
        if (grab_url_parse(text, &next, why, sizeof(why)) != GRAB_OK) {
            set_reason(reterr, reterr_len, "the redirect's Location cannot be used: %s", why);
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
        if (next.tls != base->tls) {
            set_reason(reterr, reterr_len, "a redirect from %s to %s is not followed",
                       base->tls ? "https" : "http", next.tls ? "https" : "http");
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
    } else {
        size_t keep = 0; /* bytes of the base target kept in front */
        size_t add = strcspn(location, "#");

        next = *base;
        if (location[0] == '/') {
            keep = 0;
        } else if (location[0] == '?') {
            keep = strcspn(base->target, "?");
        } else if (add > 0) {
            size_t path_len = strcspn(base->target, "?");
            const char *slash = NULL;
            for (size_t i = 0; i < path_len; i++)
                if (base->target[i] == '/')
                    slash = base->target + i;
            keep = slash ? (size_t)(slash - base->target) + 1 : 0;
        } else {
            keep = strlen(base->target); /* "#fragment" only: the same resource */
        }
        if (keep + add > GRAB_MAX_URL) {
            set_reason(reterr, reterr_len, "the redirect's Location makes the URL too long");
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
        memcpy(next.target, base->target, keep);
        memcpy(next.target + keep, location, add);
        next.target[keep + add] = '\0';
        if (next.target[0] != '/') {
            set_reason(reterr, reterr_len, "the redirect's Location cannot be resolved");
            result = GRAB_ERR_REDIRECT;
            goto out;
        }
    }
    *ret_url = next;

out:
    return result;
}

/* ---- frames ------------------------------------------------------------------ */

struct grab_frame *grab_frame_free(struct grab_frame *frame)
{
    if (frame) {
        free(frame->data);
        free(frame);
    }
    return NULL;
}

/* ---- connection plumbing ---------------------------------------------------- */

static void conn_close(struct grab_stream *s)
{
    if (s->ssl) {
        SSL_free(s->ssl); /* frees the BIO */
        s->ssl = NULL;
    }
    if (s->ssl_ctx) {
        SSL_CTX_free(s->ssl_ctx);
        s->ssl_ctx = NULL;
    }
    if (s->bio_method) {
        BIO_meth_free(s->bio_method);
        s->bio_method = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->want = 0;
    ERR_clear_error(); /* leave nothing in this thread's OpenSSL error queue */
}

static enum grab_result fail(struct grab_stream *s, enum grab_result result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the session with result (the first failure wins). */
static enum grab_result fail(struct grab_stream *s, enum grab_result result, const char *fmt, ...)
{
    va_list args;

    if (s->state == CS_FAILED)
        return s->error;
    s->state = CS_FAILED;
    s->error = result;
    va_start(args, fmt);
    vsnprintf(s->error_text, sizeof(s->error_text), fmt, args);
    va_end(args);
    conn_close(s);
    return result;
}

static const char *ssl_error_text(char *buf, size_t len)
{
    unsigned long err = ERR_get_error();

    if (err == 0)
        return "unknown TLS error";
    ERR_error_string_n(err, buf, len);
    return buf;
}

/* A socket BIO that never raises SIGPIPE and remembers errno. */
static int bio_write(BIO *bio, const char *data, int len)
{
    struct grab_stream *s = BIO_get_data(bio);
    ssize_t n;

    BIO_clear_retry_flags(bio);
    do
        n = send(s->fd, data, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(bio);
        else
            s->io_errno = errno;
        return -1;
    }
    return (int)n;
}

static int bio_read(BIO *bio, char *buf, int len)
{
    struct grab_stream *s = BIO_get_data(bio);
    ssize_t n;

    BIO_clear_retry_flags(bio);
    do
        n = recv(s->fd, buf, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(bio);
        else
            s->io_errno = errno;
        return -1;
    }
    if (n > 0)
        s->last_io = now_ms();
    return (int)n;
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

/* > 0: bytes received; 0: the peer closed; -1: would block (s->want set);
 * -2: failed (the session has failed). */
static ssize_t conn_recv(struct grab_stream *s, void *buf, size_t len)
{
    char text[128];
    ssize_t n;

    if (s->ssl) {
        int err;

        ERR_clear_error();
        s->io_errno = 0;
        n = SSL_read(s->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
        if (n > 0)
            return n;
        err = SSL_get_error(s->ssl, (int)n);
        switch (err) {
        case SSL_ERROR_WANT_READ:
            s->want = POLLIN;
            return -1;
        case SSL_ERROR_WANT_WRITE:
            s->want = POLLOUT;
            return -1;
        case SSL_ERROR_ZERO_RETURN:
            return 0;
        case SSL_ERROR_SYSCALL:
            if (s->io_errno == 0)
                return 0; /* closed without close_notify */
            fail(s, GRAB_ERR_IO, "receiving from %s failed: %s", s->addr_text,
                 errno_text(s->io_errno, text, sizeof(text)));
            return -2;
        default:
            fail(s, GRAB_ERR_TLS, "TLS error receiving from %s: %s", s->addr_text,
                 ssl_error_text(text, sizeof(text)));
            return -2;
        }
    }
    for (;;) {
        n = recv(s->fd, buf, len, 0);
        if (n > 0)
            s->last_io = now_ms();
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->want = POLLIN;
            return -1;
        }
        fail(s, GRAB_ERR_IO, "receiving from %s failed: %s", s->addr_text,
             errno_text(errno, text, sizeof(text)));
        return -2;
    }
}

/* Like conn_recv, without the 0. */
static ssize_t conn_send(struct grab_stream *s, const void *buf, size_t len)
{
    char text[128];
    ssize_t n;

    if (s->ssl) {
        int err;

        ERR_clear_error();
        s->io_errno = 0;
        n = SSL_write(s->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
        if (n > 0)
            return n;
        err = SSL_get_error(s->ssl, (int)n);
        if (err == SSL_ERROR_WANT_READ) {
            s->want = POLLIN;
            return -1;
        }
        if (err == SSL_ERROR_WANT_WRITE) {
            s->want = POLLOUT;
            return -1;
        }
        if (err == SSL_ERROR_SYSCALL && s->io_errno != 0)
            fail(s, GRAB_ERR_IO, "sending to %s failed: %s", s->addr_text,
                 errno_text(s->io_errno, text, sizeof(text)));
        else
            fail(s, GRAB_ERR_TLS, "TLS error sending to %s: %s", s->addr_text,
                 ssl_error_text(text, sizeof(text)));
        return -2;
    }
    for (;;) {
        n = send(s->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->want = POLLOUT;
            return -1;
        }
        fail(s, GRAB_ERR_IO, "sending to %s failed: %s", s->addr_text,
             errno_text(errno, text, sizeof(text)));
        return -2;
    }
}

static bool host_is_ip_literal(const struct grab_url *url)
{
    struct in_addr v4;

    return url->ipv6 || inet_pton(AF_INET, url->host, &v4) == 1;
}

static void tls_setup(struct grab_stream *s)
{
    char text[160];
    X509_VERIFY_PARAM *param;
    BIO *bio;

    ERR_clear_error();
    s->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!s->ssl_ctx) {
        fail(s, GRAB_ERR_TLS, "cannot create a TLS context: %s", ssl_error_text(text, sizeof(text)));
        return;
    }
    SSL_CTX_set_min_proto_version(s->ssl_ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(s->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_verify(s->ssl_ctx, SSL_VERIFY_PEER, NULL);
    if (s->ca_file) {
        if (SSL_CTX_load_verify_locations(s->ssl_ctx, s->ca_file, NULL) != 1) {
            fail(s, GRAB_ERR_TLS, "cannot load the CA file %s: %s", s->ca_file,
                 ssl_error_text(text, sizeof(text)));
            return;
        }
    } else if (SSL_CTX_set_default_verify_paths(s->ssl_ctx) != 1) {
        fail(s, GRAB_ERR_TLS, "cannot load the system's CA certificates: %s",
             ssl_error_text(text, sizeof(text)));
        return;
    }
    s->ssl = SSL_new(s->ssl_ctx);
    if (!s->ssl) {
        fail(s, GRAB_ERR_TLS, "cannot create a TLS connection: %s",
             ssl_error_text(text, sizeof(text)));
        return;
    }
    param = SSL_get0_param(s->ssl);
    if (host_is_ip_literal(&s->url)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, s->url.host) != 1) {
            fail(s, GRAB_ERR_TLS, "cannot check the certificate against %s", s->url.host);
            return;
        }
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set_tlsext_host_name(s->ssl, s->url.host) != 1 ||
            SSL_set1_host(s->ssl, s->url.host) != 1) {
            fail(s, GRAB_ERR_TLS, "cannot check the certificate against %s", s->url.host);
            return;
        }
    }
    s->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tsd-grab-socket");
    if (!s->bio_method || BIO_meth_set_write(s->bio_method, bio_write) != 1 ||
        BIO_meth_set_read(s->bio_method, bio_read) != 1 ||
        BIO_meth_set_ctrl(s->bio_method, bio_ctrl) != 1 ||
        BIO_meth_set_create(s->bio_method, bio_create) != 1) {
        fail(s, GRAB_ERR_NOMEM, "cannot create a TLS socket BIO");
        return;
    }
    bio = BIO_new(s->bio_method);
    if (!bio) {
        fail(s, GRAB_ERR_NOMEM, "cannot create a TLS socket BIO");
        return;
    }
    BIO_set_data(bio, s);
    SSL_set_bio(s->ssl, bio, bio); /* one reference, owned by the SSL */
    SSL_set_connect_state(s->ssl);
}

/* ---- connecting ------------------------------------------------------------ */

static void build_request(struct grab_stream *s)
{
    char host[GRAB_MAX_HOST + 16];
    bool default_port = s->url.port == (s->url.tls ? 443 : 80);
    int n;

    if (s->url.ipv6)
        snprintf(host, sizeof(host), default_port ? "[%s]" : "[%s]:%u", s->url.host,
                 (unsigned)s->url.port);
    else
        snprintf(host, sizeof(host), default_port ? "%s" : "%s:%u", s->url.host,
                 (unsigned)s->url.port);
    n = snprintf(s->request, sizeof(s->request),
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: " GRAB_USER_AGENT "\r\n"
                 "Accept: %s\r\n"
                 "Cache-Control: no-cache\r\n"
                 "Connection: close\r\n"
                 "\r\n",
                 s->url.target, host,
                 s->snapshot ? "image/jpeg, */*;q=0.5" : "multipart/x-mixed-replace, */*;q=0.5");
    /* Cannot be cut: the buffer holds the longest target and host. */
    s->request_len = n > 0 && (size_t)n < sizeof(s->request) ? (size_t)n : 0;
    s->request_sent = 0;
}

static void connected(struct grab_stream *s)
{
    s->last_io = now_ms();
    build_request(s);
    if (s->request_len == 0) {
        fail(s, GRAB_ERR_URL, "the request does not fit");
        return;
    }
    if (s->url.tls) {
        tls_setup(s);
        if (s->state == CS_FAILED)
            return;
        s->state = CS_HANDSHAKE;
    } else {
        s->state = CS_SENDING;
    }
    s->want = POLLOUT;
}

static void connect_failed(struct grab_stream *s, int err)
{
    char text[128];

    if (err == ECONNREFUSED) {
        s->connect_error = GRAB_ERR_CONNECT_REFUSED;
        set_reason(s->connect_text, sizeof(s->connect_text), "%s refused the connection",
                   s->addr_text);
    } else if (err == ETIMEDOUT) {
        s->connect_error = GRAB_ERR_CONNECT_TIMEOUT;
        set_reason(s->connect_text, sizeof(s->connect_text), "connecting to %s timed out",
                   s->addr_text);
    } else {
        s->connect_error = GRAB_ERR_CONNECT;
        set_reason(s->connect_text, sizeof(s->connect_text), "cannot connect to %s: %s",
                   s->addr_text, errno_text(err, text, sizeof(text)));
    }
    conn_close(s);
    s->state = CS_IDLE;
}

static void describe_address(struct grab_stream *s, const struct addrinfo *ai)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)(const void *)ai->ai_addr;
        inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof(ip));
        snprintf(s->addr_text, sizeof(s->addr_text), "[%s]:%u", ip, (unsigned)s->url.port);
    } else {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)(const void *)ai->ai_addr;
        inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
        snprintf(s->addr_text, sizeof(s->addr_text), "%s:%u", ip, (unsigned)s->url.port);
    }
}

/* CS_IDLE: resolves if needed, then starts connecting to the next address;
 * fails with the last address's error when none is left. */
static void start_connect(struct grab_stream *s)
{
    char text[128];

    if (!s->addrs) {
        struct addrinfo hints;
        char port[8];
        int rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_family = s->url.ipv6 ? AF_INET6 : AF_UNSPEC;
        hints.ai_flags = AI_NUMERICSERV | (s->url.ipv6 ? AI_NUMERICHOST : 0);
        snprintf(port, sizeof(port), "%u", (unsigned)s->url.port);
        rc = getaddrinfo(s->url.host, port, &hints, &s->addrs);
        if (rc != 0 || !s->addrs) {
            if (rc == EAI_SYSTEM)
                fail(s, GRAB_ERR_DNS, "cannot resolve %s: %s", s->url.host,
                     errno_text(errno, text, sizeof(text)));
            else
                fail(s, GRAB_ERR_DNS, "cannot resolve %s: %s", s->url.host,
                     rc ? gai_strerror(rc) : "no address");
            s->addrs = NULL;
            return;
        }
        s->next_addr = s->addrs;
        s->connect_error = GRAB_ERR_CONNECT;
        set_reason(s->connect_text, sizeof(s->connect_text), "%s has no usable address",
                   s->url.host);
    }
    while (s->next_addr) {
        const struct addrinfo *ai = s->next_addr;

        s->next_addr = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        describe_address(s, ai);
        s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (s->fd < 0) {
            fail(s, GRAB_ERR_SYSTEM, "socket: %s", errno_text(errno, text, sizeof(text)));
            return;
        }
        if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            connected(s);
            return;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            s->state = CS_CONNECTING;
            s->want = POLLOUT;
            s->connect_deadline = now_ms() + s->connect_timeout_ms;
            return;
        }
        connect_failed(s, errno);
    }
    fail(s, s->connect_error, "%s", s->connect_text);
}

static void finish_connect(struct grab_stream *s)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0)
        connected(s);
    else
        connect_failed(s, err);
}

static void do_handshake(struct grab_stream *s)
{
    char text[160];
    long verify;
    int rc;
    int err;

    ERR_clear_error();
    s->io_errno = 0;
    rc = SSL_connect(s->ssl);
    if (rc == 1) {
        s->state = CS_SENDING;
        s->want = POLLOUT;
        return;
    }
    err = SSL_get_error(s->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        s->want = POLLIN;
        return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        s->want = POLLOUT;
        return;
    }
    verify = SSL_get_verify_result(s->ssl);
    if (verify != X509_V_OK)
        fail(s, GRAB_ERR_TLS_VERIFY, "the certificate of %s is not accepted: %s", s->url.host,
             X509_verify_cert_error_string(verify));
    else if (err == SSL_ERROR_SYSCALL && s->io_errno != 0)
        fail(s, GRAB_ERR_TLS, "TLS handshake with %s failed: %s", s->addr_text,
             errno_text(s->io_errno, text, sizeof(text)));
    else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN)
        fail(s, GRAB_ERR_TLS, "%s closed the connection during the TLS handshake (is it https?)",
             s->addr_text);
    else
        fail(s, GRAB_ERR_TLS, "TLS handshake with %s failed: %s", s->addr_text,
             ssl_error_text(text, sizeof(text)));
}

static void do_send(struct grab_stream *s)
{
    while (s->request_sent < s->request_len) {
        ssize_t n = conn_send(s, s->request + s->request_sent, s->request_len - s->request_sent);
        if (n < 0)
            return;
        s->request_sent += (size_t)n;
    }
    httpresp_reset(s->head);
    s->state = CS_HEAD;
    s->want = POLLIN;
}

/* ---- frames and bodies ------------------------------------------------------- */

static void fail_no_frames(struct grab_stream *s, const char *when)
{
    struct mjpeg_stats stats;

    mjpeg_get_stats(s->parser, &stats);
    if (stats.too_big > s->too_big_mark)
        fail(s, GRAB_ERR_TOO_BIG, "no valid frame %s: parts larger than %zu bytes were skipped",
             when, s->max_frame);
    else if (s->invalid_since_frame > 0)
        fail(s, GRAB_ERR_INVALID_JPEG, "no valid frame %s: %llu invalid JPEG frames (%s)", when,
             (unsigned long long)s->invalid_since_frame, jpg_result_str(s->last_jpg_error));
    else if (stats.frames == 0 && stats.bytes > 0 && stats.skipped_bytes == stats.bytes)
        fail(s, GRAB_ERR_NO_BOUNDARY,
             "no valid frame %s: the delimiter \"%.140s\" announced in the Content-Type never "
             "appeared",
             when, mjpeg_delimiter(s->parser));
    else if (s->bytes_since_frame == 0)
        fail(s, GRAB_ERR_TIMEOUT, "no data %s", when);
    else
        fail(s, GRAB_ERR_NO_FRAMES, "no valid frame %s (%llu bytes received)", when,
             (unsigned long long)s->bytes_since_frame);
}

static void publish(struct grab_stream *s, unsigned char *data, size_t len, uint64_t seq,
                    const struct jpg_info *info)
{
    struct grab_frame *frame = calloc(1, sizeof(*frame));

    if (!frame) {
        free(data);
        fail(s, GRAB_ERR_NOMEM, "out of memory for a frame");
        return;
    }
    frame->data = data;
    frame->len = len;
    frame->seq = seq;
    frame->width = info->width;
    frame->height = info->height;
    frame->received_ms = (uint64_t)now_ms();
    if (s->pending) {
        grab_frame_free(s->pending);
        s->stats.frames_replaced++;
    }
    s->pending = frame;
    s->stats.frames++; /* snapshots; streams take the parser's count */
    s->bad_in_row = 0;
    s->invalid_since_frame = 0;
    s->bytes_since_frame = 0;
    s->last_frame_at = now_ms();
    if (s->parser) {
        struct mjpeg_stats stats;
        mjpeg_get_stats(s->parser, &stats);
        s->too_big_mark = stats.too_big;
    }
    if (s->snapshot) {
        conn_close(s);
        s->state = CS_DONE;
    }
}

/* Takes the parser's newest frame, validates it, keeps it if valid. */
static void collect_frames(struct grab_stream *s)
{
    struct mjpeg_frame *part = NULL;

    while (s->state == CS_BODY && mjpeg_take_frame(s->parser, &part) == MJPEG_OK) {
        struct jpg_info info;
        enum jpg_result valid = jpg_validate(s->decoder, part->data, part->len, &info);
        unsigned char *data;
        size_t len;
        uint64_t seq;

        if (valid != JPG_OK) {
            mjpeg_frame_free(part);
            part = NULL;
            s->stats.invalid_frames++;
            s->invalid_since_frame++;
            s->bad_in_row++;
            s->last_jpg_error = valid;
            if (s->bad_in_row >= s->max_bad_frames)
                fail(s, GRAB_ERR_INVALID_JPEG, "%u frames in a row are not valid JPEG (%s)",
                     s->bad_in_row, jpg_result_str(valid));
            continue;
        }
        data = part->data;
        len = part->len;
        seq = part->seq;
        part->data = NULL;
        mjpeg_frame_free(part);
        part = NULL;
        publish(s, data, len, seq, &info);
    }
}

static uint64_t frame_budget(const struct grab_stream *s)
{
    return 2u * (uint64_t)s->max_frame + GRAB_BUDGET_SLACK;
}

static void feed_parser(struct grab_stream *s, const unsigned char *data, size_t len)
{
    char when[64];

    mjpeg_feed(s->parser, data, len); /* stream problems are counted, not fatal */
    s->bytes_since_frame += len;
    collect_frames(s);
    if (s->state != CS_BODY || s->bytes_since_frame <= frame_budget(s))
        return;
    snprintf(when, sizeof(when), "in %llu bytes", (unsigned long long)s->bytes_since_frame);
    fail_no_frames(s, when);
}

static void append_body(struct grab_stream *s, const unsigned char *data, size_t len)
{
    if (len > s->max_frame - s->body_len) {
        fail(s, GRAB_ERR_TOO_BIG, "the snapshot is larger than %zu bytes", s->max_frame);
        return;
    }
    if (s->body_len + len > s->body_cap) {
        size_t cap = s->body_cap ? s->body_cap * 2 : GRAB_SNAPSHOT_INITIAL;
        unsigned char *grown;

        if (cap > s->max_frame)
            cap = s->max_frame;
        if (cap < s->body_len + len)
            cap = s->body_len + len;
        grown = realloc(s->body, cap);
        if (!grown) {
            fail(s, GRAB_ERR_NOMEM, "out of memory for the snapshot");
            return;
        }
        s->body = grown;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += len;
}

static void finish_snapshot(struct grab_stream *s)
{
    struct jpg_info info;
    enum jpg_result valid = jpg_validate(s->decoder, s->body, s->body_len, &info);
    unsigned char *data;

    if (valid != JPG_OK) {
        fail(s, GRAB_ERR_INVALID_JPEG, "the snapshot (%zu bytes) is not a valid JPEG: %s",
             s->body_len, jpg_result_str(valid));
        return;
    }
    data = s->body;
    s->body = NULL;
    s->body_cap = 0;
    publish(s, data, s->body_len, 1, &info);
}

/* The body ended: the connection closed (truncated says whether the framing
 * expected more) or the framing said so. */
static void body_end(struct grab_stream *s, bool truncated)
{
    conn_close(s);
    if (s->multipart) {
        bool mid_frame = mjpeg_finish(s->parser) == MJPEG_ERR_TRUNCATED;

        collect_frames(s);
        if (s->state != CS_BODY)
            return;
        fail(s, GRAB_ERR_CLOSED, "the camera ended the stream%s",
             mid_frame || truncated ? " in the middle of a frame" : "");
        return;
    }
    if (truncated) {
        if (s->body_kind == HTTPRESP_BODY_LENGTH)
            fail(s, GRAB_ERR_CLOSED,
                 "the connection closed after %zu of the %llu bytes of the snapshot",
                 s->body_len, (unsigned long long)s->body_length);
        else
            fail(s, GRAB_ERR_CLOSED, "the connection closed in the middle of the chunked snapshot");
        return;
    }
    finish_snapshot(s);
}

static void body_bytes(struct grab_stream *s, unsigned char *data, size_t len)
{
    bool end = false;

    if (s->body_kind == HTTPRESP_BODY_CHUNKED) {
        size_t out = 0;
        if (!dechunk_feed(&s->chunk, data, len, &out)) {
            fail(s, GRAB_ERR_HTTP, "malformed chunked body");
            return;
        }
        len = out;
        end = s->chunk.state == CH_DONE;
    } else if (s->body_kind == HTTPRESP_BODY_LENGTH) {
        if (len > s->body_left)
            len = (size_t)s->body_left;
        s->body_left -= len;
        end = s->body_left == 0;
    }
    s->stats.bytes += len;
    if (len > 0) {
        if (s->multipart)
            feed_parser(s, data, len);
        else
            append_body(s, data, len);
    }
    if (end && s->state == CS_BODY)
        body_end(s, false);
}

static void start_body(struct grab_stream *s, const struct httpresp_info *info)
{
    const char *type = info->content_type;
    bool multipart = false;
    enum mjpeg_result made;

    if (type) {
        while (httpresp_is_ows((unsigned char)*type))
            type++;
        multipart = strncasecmp(type, "multipart/", 10) == 0;
    }
    s->body_kind = info->body;
    s->body_length = info->content_length;
    s->body_left = info->content_length;
    memset(&s->chunk, 0, sizeof(s->chunk));
    chunk_start(&s->chunk);
    s->last_frame_at = now_ms();
    s->bytes_since_frame = 0;
    if (!s->snapshot && !multipart) {
        fail(s, GRAB_ERR_NOT_MULTIPART,
             "the Content-Type is \"%.80s\", not multipart/x-mixed-replace: is this the "
             "stream URL?",
             type ? type : "(none)");
        return;
    }
    if (multipart) {
        made = mjpeg_new(type, s->max_frame, &s->parser);
        if (made == MJPEG_ERR_NOMEM) {
            fail(s, GRAB_ERR_NOMEM, "out of memory for the MJPEG parser");
            return;
        }
        if (made == MJPEG_ERR_NOT_MULTIPART) {
            fail(s, GRAB_ERR_NOT_MULTIPART, "the Content-Type \"%.80s\" is not multipart", type);
            return;
        }
        if (made != MJPEG_OK) {
            fail(s, GRAB_ERR_NO_BOUNDARY, "the Content-Type \"%.80s\" has no usable boundary",
                 type);
            return;
        }
        s->multipart = true;
        s->stats.connected = !s->snapshot;
    } else if (info->body == HTTPRESP_BODY_LENGTH) {
        if (info->content_length > s->max_frame) {
            fail(s, GRAB_ERR_TOO_BIG, "the snapshot is %llu bytes, more than the %zu allowed",
                 (unsigned long long)info->content_length, s->max_frame);
            return;
        }
        if (info->content_length == 0) {
            fail(s, GRAB_ERR_INVALID_JPEG, "the snapshot is empty (Content-Length: 0)");
            return;
        }
        s->body = malloc((size_t)info->content_length);
        if (!s->body) {
            fail(s, GRAB_ERR_NOMEM, "out of memory for the snapshot");
            return;
        }
        s->body_cap = (size_t)info->content_length;
    }
    s->state = CS_BODY;
    s->want = POLLIN;
}

static void follow_redirect(struct grab_stream *s, const struct httpresp_info *info)
{
    struct grab_url next;
    char why[GRAB_REASON_SIZE];

    if (!info->location) {
        fail(s, GRAB_ERR_HTTP_STATUS, "HTTP %d %.64s without a Location", info->status,
             info->reason);
        return;
    }
    if (s->redirects >= GRAB_MAX_REDIRECTS) {
        fail(s, GRAB_ERR_REDIRECT, "more than %u redirects", GRAB_MAX_REDIRECTS);
        return;
    }
    if (grab_url_resolve(&s->url, info->location, &next, why, sizeof(why)) != GRAB_OK) {
        fail(s, GRAB_ERR_REDIRECT, "%s", why);
        return;
    }
    s->redirects++;
    s->stats.redirects = s->redirects;
    conn_close(s);
    freeaddrinfo(s->addrs);
    s->addrs = NULL;
    s->next_addr = NULL;
    s->url = next;
    httpresp_reset(s->head);
    s->state = CS_IDLE;
}

/* A complete response head. Returns true for an interim (1xx) response,
 * after which the parser reads the next head. */
static bool on_head(struct grab_stream *s)
{
    struct httpresp_info info;

    if (httpresp_get_info(s->head, &info) != HTTPRESP_OK) {
        fail(s, GRAB_ERR_HTTP, "the response head cannot be read");
        return false;
    }
    s->stats.http_status = info.status;
    if (info.status >= 100 && info.status < 200 && info.status != 101) {
        httpresp_reset(s->head);
        return true;
    }
    switch (info.status) {
    case 301: case 302: case 303: case 307: case 308:
        follow_redirect(s, &info);
        return false;
    default:
        break;
    }
    if (info.status < 200 || info.status > 299) {
        fail(s, GRAB_ERR_HTTP_STATUS, "%s answered HTTP %d %.64s", s->url.host, info.status,
             info.reason);
        return false;
    }
    if (info.body == HTTPRESP_BODY_NONE || info.status == 204 || info.status == 205) {
        fail(s, GRAB_ERR_HTTP_STATUS, "HTTP %d %.64s has no body", info.status, info.reason);
        return false;
    }
    start_body(s, &info);
    return false;
}

static void do_head(struct grab_stream *s)
{
    for (;;) {
        ssize_t n = conn_recv(s, s->rx, sizeof(s->rx));
        unsigned char *data = s->rx;
        size_t len;

        if (n < 0)
            return;
        if (n == 0) {
            fail(s, GRAB_ERR_CLOSED, "%s closed the connection without a complete response",
                 s->addr_text);
            return;
        }
        len = (size_t)n;
        while (len > 0) {
            size_t used = 0;
            enum httpresp_result parsed = httpresp_feed(s->head, data, len, &used);

            if (parsed == HTTPRESP_NEED_MORE)
                break;
            if (parsed != HTTPRESP_OK) {
                fail(s, GRAB_ERR_HTTP, "malformed response head from %s: %s", s->addr_text,
                     httpresp_result_str(parsed));
                return;
            }
            data += used;
            len -= used;
            if (on_head(s))
                continue;
            if (s->state == CS_BODY && len > 0)
                body_bytes(s, data, len);
            return;
        }
    }
}

static void do_body(struct grab_stream *s)
{
    size_t total = 0;

    while (s->state == CS_BODY && total < GRAB_DRAIN_MAX) {
        ssize_t n = conn_recv(s, s->rx, sizeof(s->rx));

        if (n < 0)
            return;
        if (n == 0) {
            bool truncated = (s->body_kind == HTTPRESP_BODY_LENGTH && s->body_left > 0) ||
                             (s->body_kind == HTTPRESP_BODY_CHUNKED && s->chunk.state != CH_DONE);
            body_end(s, truncated);
            return;
        }
        total += (size_t)n;
        body_bytes(s, s->rx, (size_t)n);
    }
    s->want = POLLIN;
}

/* ---- the engine ----------------------------------------------------------- */

/* Does all the work possible without waiting. revents: what poll() said
 * about the socket. */
static void advance(struct grab_stream *s, short revents)
{
    for (;;) {
        enum conn_state before = s->state;

        switch (s->state) {
        case CS_IDLE:
            start_connect(s);
            break;
        case CS_CONNECTING:
            if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
                return;
            revents = 0;
            finish_connect(s);
            break;
        case CS_HANDSHAKE:
            do_handshake(s);
            break;
        case CS_SENDING:
            do_send(s);
            break;
        case CS_HEAD:
            do_head(s);
            break;
        case CS_BODY:
            do_body(s);
            return;
        case CS_DONE:
        case CS_FAILED:
            return;
        }
        if (s->state == before)
            return; /* waiting for the socket */
    }
}

static void consider(int64_t *best, enum deadline_kind *best_kind, int64_t at,
                     enum deadline_kind kind)
{
    if (at < *best) {
        *best = at;
        *best_kind = kind;
    }
}

static int64_t next_deadline(const struct grab_stream *s, enum deadline_kind *ret_kind)
{
    int64_t best = INT64_MAX;
    enum deadline_kind kind = DL_NONE;

    switch (s->state) {
    case CS_CONNECTING:
        consider(&best, &kind, s->connect_deadline, DL_CONNECT);
        consider(&best, &kind, s->head_deadline, DL_TOTAL);
        break;
    case CS_HANDSHAKE:
    case CS_SENDING:
    case CS_HEAD:
        consider(&best, &kind, s->last_io + s->read_timeout_ms, DL_READ);
        consider(&best, &kind, s->head_deadline, DL_TOTAL);
        break;
    case CS_BODY:
        consider(&best, &kind, s->last_io + s->read_timeout_ms, DL_READ);
        if (s->snapshot)
            consider(&best, &kind, s->head_deadline, DL_TOTAL);
        if (s->multipart)
            consider(&best, &kind, s->last_frame_at + s->frame_timeout_ms, DL_FRAME);
        break;
    default:
        break;
    }
    *ret_kind = kind;
    return best;
}

static void on_deadline(struct grab_stream *s, enum deadline_kind kind)
{
    char when[64];

    switch (kind) {
    case DL_CONNECT:
        s->connect_error = GRAB_ERR_CONNECT_TIMEOUT;
        set_reason(s->connect_text, sizeof(s->connect_text), "connecting to %s took more than %d ms",
                   s->addr_text, s->connect_timeout_ms);
        conn_close(s);
        s->state = CS_IDLE; /* the next address, if any */
        break;
    case DL_TOTAL:
        if (s->state == CS_CONNECTING)
            fail(s, GRAB_ERR_CONNECT_TIMEOUT, "connecting to %s: no answer within %d ms",
                 s->addr_text, s->total_timeout_ms);
        else if (s->snapshot)
            fail(s, GRAB_ERR_TIMEOUT, "the snapshot took more than %d ms", s->total_timeout_ms);
        else
            fail(s, GRAB_ERR_TIMEOUT, "no complete response head within %d ms",
                 s->total_timeout_ms);
        break;
    case DL_READ:
        if (s->state == CS_BODY && s->multipart)
            fail(s, GRAB_ERR_TIMEOUT, "the stream sent nothing for %d ms", s->read_timeout_ms);
        else if (s->state == CS_BODY)
            fail(s, GRAB_ERR_TIMEOUT, "the snapshot stopped arriving for %d ms (%zu bytes so far)",
                 s->read_timeout_ms, s->body_len);
        else
            fail(s, GRAB_ERR_TIMEOUT, "%s sent no response for %d ms", s->addr_text,
                 s->read_timeout_ms);
        break;
    case DL_FRAME:
        snprintf(when, sizeof(when), "for %d ms", s->frame_timeout_ms);
        fail_no_frames(s, when);
        break;
    case DL_NONE:
        break;
    }
}

static bool finished(const struct grab_stream *s)
{
    return s->state == CS_DONE || (!s->snapshot && s->pending);
}

/* Runs until a frame is ready (GRAB_OK), until (GRAB_NO_FRAME; negative:
 * no limit), or the session fails. */
static enum grab_result run(struct grab_stream *s, int64_t until)
{
    short revents = 0;
    char text[128];

    if (!s->started) {
        s->started = true;
        s->head_deadline = now_ms() + s->total_timeout_ms;
    }
    for (;;) {
        struct pollfd fds[2];
        enum deadline_kind kind;
        int64_t now;
        int64_t deadline;
        int64_t wait_until;
        int timeout;
        int n;

        if (atomic_load(&s->interrupted))
            return fail(s, GRAB_ERR_INTERRUPTED, "interrupted");
        advance(s, revents);
        revents = 0;
        if (finished(s))
            return GRAB_OK; /* a frame completed just before a failure comes first */
        if (s->state == CS_FAILED)
            return s->error;
        now = now_ms();
        deadline = next_deadline(s, &kind);
        if (deadline <= now) {
            on_deadline(s, kind);
            continue;
        }
        if (until >= 0 && now >= until)
            return GRAB_NO_FRAME;
        wait_until = deadline;
        if (until >= 0 && until < wait_until)
            wait_until = until;
        if (wait_until == INT64_MAX)
            timeout = -1;
        else if (wait_until - now > INT_MAX)
            timeout = INT_MAX;
        else
            timeout = (int)(wait_until - now);
        fds[0].fd = s->fd;
        fds[0].events = s->want;
        fds[0].revents = 0;
        fds[1].fd = s->wake_fd;
        fds[1].events = POLLIN;
        fds[1].revents = 0;
        n = poll(fds, 2, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(s, GRAB_ERR_SYSTEM, "poll: %s", errno_text(errno, text, sizeof(text)));
        }
        revents = fds[0].revents;
    }
}

/* ---- public API -------------------------------------------------------------- */

static enum grab_result check_timeout(int value, int fallback, const char *name, int *ret_value,
                                      char *reterr, size_t reterr_len)
{
    if (value < 0 || value > GRAB_MAX_TIMEOUT_MS) {
        set_reason(reterr, reterr_len, "%s must be 0 (default) to %d", name, GRAB_MAX_TIMEOUT_MS);
        return GRAB_ERR_INVALID;
    }
    *ret_value = value ? value : fallback;
    return GRAB_OK;
}

static enum grab_result session_new(const struct grab_config *config, bool snapshot,
                                    struct grab_stream **ret_stream, char *reterr,
                                    size_t reterr_len)
{
    enum grab_result result = GRAB_OK;
    struct grab_stream *s = NULL;
    char text[128];

    if (!config || !ret_stream) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    if (config->max_frame > GRAB_MAX_FRAME_LIMIT) {
        set_reason(reterr, reterr_len, "max_frame must be at most %u", GRAB_MAX_FRAME_LIMIT);
        result = GRAB_ERR_INVALID;
        goto out;
    }
    if (config->max_bad_frames > GRAB_MAX_BAD_FRAMES_LIMIT) {
        set_reason(reterr, reterr_len, "max_bad_frames must be at most %u",
                   GRAB_MAX_BAD_FRAMES_LIMIT);
        result = GRAB_ERR_INVALID;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        set_reason(reterr, reterr_len, "out of memory");
        result = GRAB_ERR_NOMEM;
        goto out;
    }
    s->fd = -1;
    s->wake_fd = -1;
    atomic_init(&s->interrupted, false);
    s->snapshot = snapshot;
    s->state = CS_IDLE;
    result = check_timeout(config->connect_timeout_ms, GRAB_DEFAULT_CONNECT_TIMEOUT_MS,
                           "connect_timeout_ms", &s->connect_timeout_ms, reterr, reterr_len);
    if (result == GRAB_OK)
        result = check_timeout(config->read_timeout_ms, GRAB_DEFAULT_READ_TIMEOUT_MS,
                               "read_timeout_ms", &s->read_timeout_ms, reterr, reterr_len);
    if (result == GRAB_OK)
        result = check_timeout(config->total_timeout_ms, GRAB_DEFAULT_TOTAL_TIMEOUT_MS,
                               "total_timeout_ms", &s->total_timeout_ms, reterr, reterr_len);
    if (result == GRAB_OK)
        result = check_timeout(config->frame_timeout_ms, GRAB_DEFAULT_FRAME_TIMEOUT_MS,
                               "frame_timeout_ms", &s->frame_timeout_ms, reterr, reterr_len);
    if (result != GRAB_OK)
        goto out;
    s->max_frame = config->max_frame ? config->max_frame : GRAB_DEFAULT_MAX_FRAME;
    s->max_bad_frames = config->max_bad_frames ? config->max_bad_frames
                                               : GRAB_DEFAULT_MAX_BAD_FRAMES;
    result = grab_url_parse(config->url, &s->url, reterr, reterr_len);
    if (result != GRAB_OK)
        goto out;
    if (config->ca_file && *config->ca_file) {
        if (!file_is_readable("CA file", config->ca_file, reterr, reterr_len)) {
            result = GRAB_ERR_INVALID;
            goto out;
        }
        s->ca_file = strdup(config->ca_file);
        if (!s->ca_file) {
            set_reason(reterr, reterr_len, "out of memory");
            result = GRAB_ERR_NOMEM;
            goto out;
        }
    }
    if (httpresp_new(&s->head) != HTTPRESP_OK || jpg_decoder_new(&s->decoder) != JPG_OK) {
        set_reason(reterr, reterr_len, "out of memory (parser or JPEG decoder)");
        result = GRAB_ERR_NOMEM;
        goto out;
    }
    if (!snapshot) {
        s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->wake_fd < 0) {
            set_reason(reterr, reterr_len, "eventfd: %s", errno_text(errno, text, sizeof(text)));
            result = GRAB_ERR_SYSTEM;
            goto out;
        }
    }
    *ret_stream = s;
    s = NULL;

out:
    grab_stream_close(s);
    return result;
}

enum grab_result grab_snapshot(const struct grab_config *config, struct grab_frame **ret_frame,
                               char *reterr, size_t reterr_len)
{
    enum grab_result result;
    struct grab_stream *s = NULL;

    if (!ret_frame) {
        set_reason(reterr, reterr_len, "missing argument");
        result = GRAB_ERR_INVALID;
        goto out;
    }
    result = session_new(config, true, &s, reterr, reterr_len);
    if (result != GRAB_OK)
        goto out;
    result = run(s, -1);
    if (result != GRAB_OK) {
        set_reason(reterr, reterr_len, "%s", s->error_text);
        goto out;
    }
    *ret_frame = s->pending;
    s->pending = NULL;

out:
    grab_stream_close(s);
    return result;
}

enum grab_result grab_stream_open(const struct grab_config *config,
                                  struct grab_stream **ret_stream, char *reterr,
                                  size_t reterr_len)
{
    return session_new(config, false, ret_stream, reterr, reterr_len);
}

enum grab_result grab_stream_poll(struct grab_stream *stream, int timeout_ms, char *reterr,
                                  size_t reterr_len)
{
    enum grab_result result;

    if (!stream || stream->snapshot) {
        set_reason(reterr, reterr_len, "missing argument");
        return GRAB_ERR_INVALID;
    }
    if (atomic_load(&stream->interrupted)) {
        /* Whatever happened before: the caller asked to stop. */
        fail(stream, GRAB_ERR_INTERRUPTED, "interrupted");
        set_reason(reterr, reterr_len, "interrupted");
        return GRAB_ERR_INTERRUPTED;
    }
    if (stream->pending)
        return GRAB_OK;
    if (stream->state == CS_FAILED) {
        set_reason(reterr, reterr_len, "%s", stream->error_text);
        return stream->error;
    }
    result = run(stream, timeout_ms < 0 ? -1 : now_ms() + timeout_ms);
    if (result == GRAB_ERR_INTERRUPTED || atomic_load(&stream->interrupted)) {
        set_reason(reterr, reterr_len, "interrupted");
        return GRAB_ERR_INTERRUPTED;
    }
    if (result != GRAB_OK && result != GRAB_NO_FRAME)
        set_reason(reterr, reterr_len, "%s", stream->error_text);
    return result;
}

enum grab_result grab_stream_take_frame(struct grab_stream *stream,
                                        struct grab_frame **ret_frame)
{
    if (!stream || !ret_frame)
        return GRAB_ERR_INVALID;
    if (!stream->pending)
        return GRAB_NO_FRAME;
    *ret_frame = stream->pending;
    stream->pending = NULL;
    stream->stats.frames_taken++;
    return GRAB_OK;
}

void grab_stream_interrupt(struct grab_stream *stream)
{
    uint64_t one = 1;
    ssize_t n;

    if (!stream)
        return;
    atomic_store(&stream->interrupted, true);
    if (stream->wake_fd >= 0) {
        n = write(stream->wake_fd, &one, sizeof(one));
        (void)n; /* EAGAIN: the counter is already non-zero, poll wakes anyway */
    }
}

void grab_stream_get_stats(const struct grab_stream *stream, struct grab_stream_stats *ret_stats)
{
    struct mjpeg_stats parser;

    if (!stream || !ret_stats)
        return;
    *ret_stats = stream->stats;
    ret_stats->memory = stream->body_cap + (stream->pending ? stream->pending->len : 0);
    if (stream->parser) {
        mjpeg_get_stats(stream->parser, &parser);
        ret_stats->frames = parser.frames;
        ret_stats->frames_replaced += parser.frames_replaced;
        ret_stats->too_big = parser.too_big;
        ret_stats->skipped_bytes = parser.skipped_bytes;
        ret_stats->memory += parser.memory;
    }
}

struct grab_stream *grab_stream_close(struct grab_stream *stream)
{
    if (!stream)
        return NULL;
    conn_close(stream);
    if (stream->addrs)
        freeaddrinfo(stream->addrs);
    if (stream->wake_fd >= 0)
        close(stream->wake_fd);
    grab_frame_free(stream->pending);
    mjpeg_free(stream->parser);
    jpg_decoder_free(stream->decoder);
    httpresp_free(stream->head);
    free(stream->body);
    free(stream->ca_file);
    free(stream);
    return NULL;
}
