/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * fetch: a cloud-print download (grab_download_*) on a thread of its own.
 *
 * fetch_start() checks the URL against the download rule (hostrule.h),
 * creates the file (it must not exist) and starts the thread, which
 * streams the body into it through a fixed buffer and reports through the
 * caller's event queue:
 *
 *   FETCH_EVENT_PROGRESS  {"bytes":N,"expected":N}   at most every progress_ms
 *   FETCH_EVENT_DONE      {"bytes":N,"md5":"<hex>","md5_declared":bool,"redirects":N}
 *   FETCH_EVENT_FAILED    {"code":"<code>","error":"<why>","bytes":N}
 *
 * exactly one of DONE or FAILED last. On FAILED (a cancel included) the file
 * has been removed before the event is pushed: a failed download leaves
 * nothing behind. After DONE the file is the caller's.
 *
 * The thread never calls into Python and never blocks on the queue (a full
 * queue drops a progress event; the final event is retried until it fits or
 * the queue closes). fetch_cancel() may be called from any thread;
 * fetch_free() cancels, joins and frees.
 *
 * This file is plain C with no Python and no logging.
 */
#ifndef TSD_FETCH_H
#define TSD_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grab.h"

struct evq;
struct fetch;

enum fetch_event {
    FETCH_EVENT_PROGRESS = 30,
    FETCH_EVENT_DONE = 31,
    FETCH_EVENT_FAILED = 32,
};

#define FETCH_DEFAULT_PROGRESS_MS 500

struct fetch_config {
    const char *url;
    const char *ca_file;       /* NULL or "": the system's CAs */
    const char *server_host;   /* the linked server's host (hostrule_url.host) */
    bool allow_cleartext_lan;
    const char *path;          /* the file to create (O_EXCL, mode 0644) */
    uint64_t max_bytes;
    size_t max_line;           /* G-code sanity (grab_download_config); 0: none */
    int connect_timeout_ms;    /* 0: defaults (grab.h) */
    int read_timeout_ms;
    int total_timeout_ms;
    int progress_ms;           /* 0: FETCH_DEFAULT_PROGRESS_MS */
};

/* The short code of a failure in FETCH_EVENT_FAILED ("refused", "too_big",
 * "closed", "timeout", "write", "digest", "content", "cancelled", ...). */
const char *fetch_result_code(enum grab_result result);

/* (transfer full) Starts the download; events go to events (which must
 * outlive the fetch). Fails without creating anything: GRAB_ERR_REFUSED
 * (the URL's scheme for its host), GRAB_ERR_URL, GRAB_ERR_WRITE (the file
 * exists or cannot be created), ... */
enum grab_result fetch_start(const struct fetch_config *config, struct evq *events,
                             struct fetch **ret_fetch, char *reterr, size_t reterr_len);

/* Any thread: stops the download (it ends with FAILED "cancelled"). */
void fetch_cancel(struct fetch *fetch);

/* Cancels, waits for the thread and frees. Accepts NULL; returns NULL. */
struct fetch *fetch_free(struct fetch *fetch);

#endif
