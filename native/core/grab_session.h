/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * grab_session: the inside of a grab session (struct grab_stream), shared by
 * grab.c (connecting, the response head, the engine, the API) and
 * grab_body.c (the response body: a snapshot or MJPEG frames). Not part of
 * the API: only those two files include it.
 */
#ifndef TSD_GRAB_SESSION_H
#define TSD_GRAB_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "dechunk.h"
#include "grab.h"
#include "hostrule.h"
#include "httpresp.h"
#include "jpeg.h"
#include "mjpeg.h"

#define GRAB_RX_SIZE (64u * 1024u)
#define GRAB_REQUEST_SIZE (GRAB_MAX_URL + GRAB_MAX_HOST + 512u)
/* Body bytes one pass reads before it looks at the clock and the interrupt
 * again (and, once a frame is ready, before poll returns it). */
#define GRAB_DRAIN_MAX (4u * 1024u * 1024u)
#define GRAB_SNAPSHOT_INITIAL (64u * 1024u)
#define GRAB_USER_AGENT "TheSpaghettiDetective-grab/1"

enum conn_state {
    CS_IDLE = 0,   /* next: resolve (once per URL) and connect to the next address */
    CS_RESOLVING,  /* the host name's lookup runs (on its own thread) */
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
    DL_LOOKUP,
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

    /* the connection (conn.h) */
    struct conn conn;
    bool started;
    int64_t head_deadline; /* the response head; snapshot: everything */
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

    /* a download (grab_download_open): the body goes to download_fd */
    bool download;
    int download_fd;
    uint64_t max_bytes;
    size_t max_line;
    size_t line_len;                     /* of the line being received */
    struct hostrule_fetch_policy policy; /* server_host owned (server_host_copy) */
    char *server_host_copy;
    struct evp_md_ctx_st *md5;           /* EVP_MD_CTX */
    struct grab_download_info download_info;

    unsigned char rx[GRAB_RX_SIZE];
};

/* grab_body.c: a download's body. */
void grab_download_body_start(struct grab_stream *s, const struct httpresp_info *info);
void grab_download_body_bytes(struct grab_stream *s, const unsigned char *data, size_t len);
void grab_download_body_end(struct grab_stream *s, bool truncated);

/* Ends the session with result (the first failure wins); returns result. */
enum grab_result grab_fail(struct grab_stream *s, enum grab_result result, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- grab_body.c ---------------------------------------------------------- */

/* A 2xx head with a body: sets up the snapshot buffer or the MJPEG parser. */
void grab_body_start(struct grab_stream *s, const struct httpresp_info *info);

/* Body bytes as received (decoded in place when chunked). */
void grab_body_bytes(struct grab_stream *s, unsigned char *data, size_t len);

/* The connection closed in the body; truncated: before its announced end. */
void grab_body_end(struct grab_stream *s, bool truncated);

/* A stream gave no valid frame when: fails with the likeliest cause. */
void grab_fail_no_frames(struct grab_stream *s, const char *when);

#endif
