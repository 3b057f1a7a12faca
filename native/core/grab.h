/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * grab: gets JPEG frames from a webcam over HTTP/1.1 -- one snapshot, or a
 * multipart/x-mixed-replace (MJPEG) stream read over ONE long connection.
 *
 * URLs are http:// or https:// (TLS 1.2 or later, the certificate verified
 * against the system store -- or only against config->ca_file -- and against
 * the host name or IP address of the URL; there is no way to turn that off).
 * Credentials in the URL (user:pass@host) are refused.
 *
 * Every wait is bounded: the name lookup, connecting (per address), each read, the whole
 * response head (the whole transfer for a snapshot), and for a stream the
 * time and the bytes between two valid frames. Redirects (301, 302, 303,
 * 307, 308) are followed up to GRAB_MAX_REDIRECTS times, to the same scheme
 * only. Bodies may be delimited by Content-Length, by chunked transfer coding
 * or by the end of the connection. A frame is at most max_frame bytes and is
 * handed out only after jpg_validate() accepted it.
 *
 * Snapshot: grab_snapshot() does the whole GET and returns the JPEG. When the
 * snapshot URL answers with an MJPEG stream, the first valid frame of that
 * stream is the snapshot. grab_snapshot_open() and grab_snapshot_run() do the
 * same in two steps, so that another thread can interrupt the GET.
 *
 * Stream: grab_stream_open() checks the configuration and allocates; it does
 * no network I/O. grab_stream_poll() drives everything -- name resolution,
 * connecting, TLS, the request, the response head, then the frames -- and
 * returns as soon as a new valid frame is ready (GRAB_OK), or GRAB_NO_FRAME
 * when its timeout passed first. Only the newest valid frame is kept: one
 * that was not taken before a newer one arrived is freed and counted. Any
 * other result ends the session (it is sticky: later polls return it again);
 * close the session and open a new one to reconnect. There is no reconnect
 * and no request per frame inside a session.
 *
 * A stream session ends with
 *   GRAB_ERR_INVALID_JPEG after max_bad_frames invalid frames in a row;
 *   GRAB_ERR_TOO_BIG, GRAB_ERR_NO_BOUNDARY, GRAB_ERR_INVALID_JPEG,
 *     GRAB_ERR_TIMEOUT or GRAB_ERR_NO_FRAMES (whichever explains it) when no
 *     valid frame arrived for frame_timeout_ms, or for more than
 *     2 * max_frame + GRAB_BUDGET_SLACK bytes of body;
 *   GRAB_ERR_TIMEOUT when no byte arrived for read_timeout_ms;
 *   GRAB_ERR_CLOSED when the camera ended the stream (a frame completed just
 *     before that is still handed out first).
 * A single oversized or invalid part among good frames does not end it.
 *
 * Memory: a stream holds at most about 2 * max_frame (the part being received
 * and the newest valid frame) plus a 64 KiB read buffer; a snapshot about
 * 2 * max_frame. Everything is non-blocking I/O under poll(); a host name is
 * looked up on a short-lived thread of its own (getaddrinfo cannot be given a
 * deadline), which the session waits for at most connect_timeout_ms (and
 * total_timeout_ms) and abandons when it stops waiting -- a timeout, an
 * interrupt or close never wait for a name server (sec09 in
 * docs/security.md). IP literals need no lookup.
 *
 * Threading: a session (a stream's or a snapshot's) belongs to one thread at
 * a time; it may be handed between threads, never used by two at once --
 * grab_stream_get_stats() included. grab_stream_interrupt() is the only call
 * allowed from any other thread, at any time between open and close: it
 * wakes a blocked poll or snapshot run, which returns GRAB_ERR_INTERRUPTED,
 * and every later poll or run does too (it is a stop request, not a nudge).
 * The caller makes sure no thread can still call grab_stream_interrupt() when
 * it closes the session. grab_snapshot() cannot be interrupted (nobody else
 * sees its session); total_timeout_ms bounds it. Different sessions and
 * snapshots run in parallel freely.
 *
 * The process must not die of SIGPIPE: plain sockets write with
 * MSG_NOSIGNAL and TLS goes through a BIO that does the same.
 *
 * This file is plain C with no Python and no logging.
 */
#ifndef TSD_GRAB_H
#define TSD_GRAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum grab_result {
    GRAB_OK = 0,
    GRAB_NO_FRAME,            /* poll: no new frame before the timeout;
                               * take: nothing new. Not an error. */
    GRAB_ERR_INVALID,         /* bad argument, configuration or call */
    GRAB_ERR_NOMEM,           /* allocation failed */
    GRAB_ERR_SYSTEM,          /* a socket, eventfd or poll call failed */
    GRAB_ERR_URL,             /* the URL cannot be used */
    GRAB_ERR_DNS,             /* the host name does not resolve */
    GRAB_ERR_CONNECT_REFUSED, /* nothing listens there (RST) */
    GRAB_ERR_CONNECT_TIMEOUT, /* no answer to connecting in connect_timeout_ms */
    GRAB_ERR_CONNECT,         /* other connect failure (unreachable, ...) */
    GRAB_ERR_TLS,             /* TLS setup or handshake failed */
    GRAB_ERR_TLS_VERIFY,      /* certificate not trusted, or not for this host */
    GRAB_ERR_IO,              /* sending or receiving failed (reset, ...) */
    GRAB_ERR_TIMEOUT,         /* no data for read_timeout_ms, or the response
                               * (snapshot: the transfer) took longer than
                               * total_timeout_ms, or the host name's lookup
                               * took longer than connect_timeout_ms */
    GRAB_ERR_CLOSED,          /* the connection ended before a complete
                               * response / frame; a stream that ended */
    GRAB_ERR_HTTP,            /* malformed response head or chunked body */
    GRAB_ERR_HTTP_STATUS,     /* a status other than 2xx (the reason says
                               * which), or a response without a body */
    GRAB_ERR_REDIRECT,        /* too many redirects, or an unusable or
                               * cross-scheme Location */
    GRAB_ERR_NOT_MULTIPART,   /* stream: the Content-Type is not multipart */
    GRAB_ERR_NO_BOUNDARY,     /* stream: no usable boundary parameter, or the
                               * announced boundary never appears */
    GRAB_ERR_TOO_BIG,         /* a frame larger than max_frame */
    GRAB_ERR_INVALID_JPEG,    /* jpg_validate() refused the frame */
    GRAB_ERR_NO_FRAMES,       /* stream: data arrives, but no usable frame */
    GRAB_ERR_INTERRUPTED,     /* grab_stream_interrupt() was called (stream
                               * or snapshot session) */
    GRAB_ERR_REFUSED,         /* download: the URL or every address of its
                               * host is one the download rule refuses */
    GRAB_ERR_WRITE,           /* download: writing the file failed (disk full) */
    GRAB_ERR_DIGEST,          /* download: the body's MD5 is not the one
                               * the response declared */
    GRAB_ERR_CONTENT,         /* download: not text (a NUL byte), or a line
                               * longer than max_line */
    GRAB_RESULT_MAX
};

#define GRAB_MAX_URL 2048u
#define GRAB_MAX_HOST 253u
#define GRAB_MAX_REDIRECTS 3u
#define GRAB_DEFAULT_MAX_FRAME (5u * 1024u * 1024u)
#define GRAB_MAX_FRAME_LIMIT (64u * 1024u * 1024u)
#define GRAB_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define GRAB_DEFAULT_READ_TIMEOUT_MS 10000
#define GRAB_DEFAULT_TOTAL_TIMEOUT_MS 20000
#define GRAB_DEFAULT_FRAME_TIMEOUT_MS 20000
#define GRAB_MAX_TIMEOUT_MS (3600 * 1000)
#define GRAB_DEFAULT_MAX_BAD_FRAMES 10u
#define GRAB_MAX_BAD_FRAMES_LIMIT 10000u
/* Body bytes allowed between two valid frames beyond 2 * max_frame. */
#define GRAB_BUDGET_SLACK (64u * 1024u)
/* A reterr buffer of this size never truncates a reason. */
#define GRAB_REASON_SIZE 256u

struct grab_config {
    const char *url;          /* http://host[:port]/path?query or https:// */
    const char *ca_file;      /* https: NULL or "": the system store; else
                               * only the CAs in this PEM file */
    int connect_timeout_ms;   /* the name lookup, and each address; 0: default */
    int read_timeout_ms;      /* longest silence while a response is due; 0: default */
    int total_timeout_ms;     /* snapshot: the whole transfer; stream: until
                               * the response head (redirects included); 0: default */
    int frame_timeout_ms;     /* stream: longest time without a valid frame; 0: default */
    size_t max_frame;         /* largest frame in bytes; 0: default */
    unsigned max_bad_frames;  /* stream: invalid frames in a row that end it; 0: default */
};

/* (transfer full) from grab_snapshot() or grab_stream_take_frame();
 * free with grab_frame_free(). */
struct grab_frame {
    uint64_t seq;           /* stream: the part's number in the stream (1 for
                             * the first complete part; a gap means parts were
                             * replaced or invalid); snapshot: 1 */
    uint64_t received_ms;   /* CLOCK_MONOTONIC milliseconds at completion */
    int width;              /* from the JPEG header */
    int height;
    size_t len;             /* bytes in data, 1..max_frame */
    unsigned char *data;    /* the JPEG, owned by the frame */
};

struct grab_stream_stats {
    bool connected;          /* a stream response head was accepted */
    int http_status;         /* of the last response head; 0 before one */
    unsigned redirects;      /* followed so far */
    uint64_t bytes;          /* body bytes received (after de-chunking) */
    uint64_t frames;         /* complete parts received */
    uint64_t frames_taken;
    uint64_t frames_replaced; /* complete parts freed, unchecked or valid,
                               * because a newer one arrived before a take */
    uint64_t invalid_frames; /* complete parts jpg_validate() refused */
    uint64_t too_big;        /* parts larger than max_frame, skipped */
    uint64_t skipped_bytes;  /* bytes the MJPEG parser skipped */
    size_t memory;           /* frame bytes held now */
};

/* A parsed URL (exposed for tests and for checking a URL before use). */
struct grab_url {
    bool tls;                      /* https */
    bool ipv6;                     /* host is an IPv6 literal (sent in brackets) */
    uint16_t port;
    char host[GRAB_MAX_HOST + 1];  /* lower-cased, without brackets */
    char target[GRAB_MAX_URL + 1]; /* path and query, starts with '/' */
};

struct grab_stream;
struct hostrule_fetch_policy;

/* A download (cloud print): one GET whose body is streamed into a file the
 * caller opened, through a fixed 64 KiB buffer whatever its size. Where it
 * may connect is the download rule in hostrule.h: the scheme is checked
 * before connecting (and for each redirect), each resolved address right
 * before connecting to it. Redirects as for a snapshot (at most
 * GRAB_MAX_REDIRECTS, same scheme). */
struct grab_download_config {
    const char *url;
    const char *ca_file;     /* for the linked server's own host only; any other
                              * host is verified against the system's CAs */
    const struct hostrule_fetch_policy *policy; /* copied; NULL: refused */
    int fd;                  /* written from its current offset; not closed; -1: set
                              * later with grab_download_set_fd() (after the URL
                              * was checked), before the first poll */
    uint64_t max_bytes;      /* a longer body (announced or received) is GRAB_ERR_TOO_BIG */
    size_t max_line;         /* G-code sanity: no NUL byte and no line longer than
                              * this (GRAB_ERR_CONTENT); 0: no check */
    int connect_timeout_ms;  /* 0: default */
    int read_timeout_ms;     /* 0: default */
    int total_timeout_ms;    /* the whole transfer; 0: default (GRAB_DEFAULT_DOWNLOAD_MS) */
};

#define GRAB_DEFAULT_DOWNLOAD_MS (30 * 60 * 1000)

struct grab_download_info {
    uint64_t bytes;           /* body bytes written */
    uint64_t expected;        /* Content-Length; 0 when not announced */
    uint64_t lines;           /* line ends seen */
    unsigned redirects;
    bool done;                /* the whole body arrived and was written */
    bool md5_declared;        /* the response declared an MD5 (Content-MD5, x-goog-hash) */
    unsigned char md5[16];    /* of the bytes written; final when done */
    unsigned char declared_md5[16];
};

const char *grab_result_str(enum grab_result result);

/* Parses an absolute http:// or https:// URL. Refused (GRAB_ERR_URL): other
 * schemes, more than GRAB_MAX_URL bytes, spaces, control characters and
 * non-ASCII bytes, user info, an empty or malformed host, IPv6 zone ids,
 * ports outside 1..65535. A fragment is dropped; an empty path becomes "/".
 * *ret_url is written only on GRAB_OK. */
enum grab_result grab_url_parse(const char *text, struct grab_url *ret_url, char *reterr,
                                size_t reterr_len);

/* Resolves a Location field value against base: absolute (same scheme
 * only), scheme-relative ("//host/path"), absolute-path, query-only or
 * relative-path (dot segments are left to the server). GRAB_ERR_REDIRECT
 * when it cannot be used. *ret_url is written only on GRAB_OK. */
enum grab_result grab_url_resolve(const struct grab_url *base, const char *location,
                                  struct grab_url *ret_url, char *reterr, size_t reterr_len);

/* GETs one JPEG. *ret_frame (transfer full) is written only on GRAB_OK.
 * grab_snapshot_open(), grab_snapshot_run() and grab_stream_close() in one. */
enum grab_result grab_snapshot(const struct grab_config *config, struct grab_frame **ret_frame,
                               char *reterr, size_t reterr_len);

/* (transfer full) A snapshot session for config->url, which
 * grab_stream_interrupt() can stop from another thread; close it with
 * grab_stream_close(). Copies the configuration; does no network I/O. */
enum grab_result grab_snapshot_open(const struct grab_config *config,
                                    struct grab_stream **ret_session, char *reterr,
                                    size_t reterr_len);

/* Does the whole GET, bounded by total_timeout_ms, and returns the JPEG:
 * *ret_frame (transfer full) is written only on GRAB_OK. GRAB_ERR_INTERRUPTED
 * when grab_stream_interrupt() came before or during the run. A session
 * gives one snapshot: a failed run's result is final, and a run after the
 * frame was taken is GRAB_ERR_INVALID. */
enum grab_result grab_snapshot_run(struct grab_stream *session, struct grab_frame **ret_frame,
                                   char *reterr, size_t reterr_len);

/* (transfer full) A stream session for config->url (see above). Copies the
 * configuration; does no network I/O. */
enum grab_result grab_stream_open(const struct grab_config *config,
                                  struct grab_stream **ret_stream, char *reterr,
                                  size_t reterr_len);

/* Works for up to timeout_ms (negative: no limit, 0: only what needs no
 * waiting). GRAB_OK: a new valid frame is ready (at once when one already
 * was); GRAB_NO_FRAME: none yet, the session goes on; anything else: the
 * session has ended, with reterr saying why. */
enum grab_result grab_stream_poll(struct grab_stream *stream, int timeout_ms, char *reterr,
                                  size_t reterr_len);

/* GRAB_OK and *ret_frame (transfer full): the newest valid frame not taken
 * yet; GRAB_NO_FRAME (*ret_frame untouched) when there is none. */
enum grab_result grab_stream_take_frame(struct grab_stream *stream,
                                        struct grab_frame **ret_frame);

/* Any thread, any time between open and close; async-signal-safe. Stops a
 * stream or a snapshot session. */
void grab_stream_interrupt(struct grab_stream *stream);

/* The owning thread only, like poll and take: the counters read the live
 * session (the parser, the pending frame). A caller that shows them to other
 * threads copies them out under its own lock at points of its choosing
 * (native/py/camera.c publishes them after every poll); see sec05 in
 * docs/security.md. */
void grab_stream_get_stats(const struct grab_stream *stream,
                           struct grab_stream_stats *ret_stats);

/* Closes the connection and frees (a stream or a snapshot session).
 * Accepts NULL; returns NULL. */
struct grab_stream *grab_stream_close(struct grab_stream *stream);

/* Accepts NULL; returns NULL. */
struct grab_frame *grab_frame_free(struct grab_frame *frame);

/* (transfer full) A download session (see struct grab_download_config);
 * close it with grab_stream_close(). GRAB_ERR_REFUSED when the URL's scheme
 * is refused for its host. Does no network I/O. */
enum grab_result grab_download_open(const struct grab_download_config *config,
                                    struct grab_stream **ret_session, char *reterr,
                                    size_t reterr_len);
/* Works up to timeout_ms (negative: until the end). GRAB_OK: the whole
 * body is written (and matches a declared MD5); GRAB_NO_FRAME: it goes on;
 * anything else: it failed (final), reterr says why. grab_stream_interrupt()
 * stops it. */
enum grab_result grab_download_poll(struct grab_stream *session, int timeout_ms, char *reterr,
                                    size_t reterr_len);
void grab_download_set_fd(struct grab_stream *session, int fd);
/* The owning thread only. */
void grab_download_get_info(const struct grab_stream *session, struct grab_download_info *ret_info);

#endif
