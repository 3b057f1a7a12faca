/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * superv_private: the inside of a supervisor (struct superv), shared by
 * superv.c (starting, reaping, stderr, backoff, the API) and
 * superv_exchange.c (one request and its answer, with deadlines). Not part
 * of the API: only those two files include it.
 */
#ifndef TSD_SUPERV_PRIVATE_H
#define TSD_SUPERV_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "superv.h"
/* Only the framing constants (plain C, no dependencies); frame.c is not
 * linked into the core. */
#include "../../helper/frame.h"

#define SUPERV_ERRNO_TEXT 128u

struct superv {
    /* Immutable after superv_new(). */
    struct superv_config config; /* defaults filled in; the paths point at the copies */
    char *helper_path;
    char *config_path;
    char *argv[4];               /* helper_path, "--config", config_path, NULL */
    int wake_fd;                 /* eventfd written by superv_interrupt() */
    /* Shared mode (superv_shared.c): NULL shared_dir when off. */
    char *shared_dir;
    char *shared_server_path;
    char *server_argv[20];       /* tsd-helper-shared and its options */
    char server_args[8][32];     /* the numbers in server_argv */
    atomic_bool closed;

    /* The owner thread only (superv_detect, superv_ping, superv_stop). */
    pid_t pid;                   /* 0 when no helper runs */
    bool connected;              /* shared mode: stdin_fd/stdout_fd are the socket */
    int stdin_fd;                /* socket; -1 when none */
    int stdout_fd;               /* -1 when none */
    int stderr_fd;               /* -1 when none or at EOF */
    bool answered;               /* the helper answered since it was started */
    uint32_t next_id;            /* never 0 */
    int backoff_ms;              /* the backoff after the next failure */
    char first_line[SUPERV_REASON_SIZE]; /* first stderr line since the start
                                          * or the last answer */
    size_t first_line_len;
    bool first_line_done;

    /* Under lock. */
    pthread_mutex_t lock;
    struct superv_health health; /* state, backoff_left_ms, rss_bytes and
                                  * stderr_tail are computed by get_health */
    int64_t backoff_until_ms;    /* CLOCK_MONOTONIC; 0: no backoff */
    char tail[SUPERV_STDERR_TAIL]; /* ring of the last stderr bytes */
    size_t tail_start;
    size_t tail_len;
};

/* superv.c */

/* Closes *fd when open and sets it to -1. */
void superv_close_fd(int *fd);

/* After fork(): closes every descriptor above 2 (close_range, or each one
 * below close_max). Async-signal-safe. */
void superv_close_above_stdio(int close_max);

/* A helper (or, shared, a connection) was started: health and state. */
void superv_mark_started(struct superv *superv, pid_t pid);

/* Records the formatted message as the health's last error and copies it
 * into reterr; returns result. */
enum superv_result superv_fail(struct superv *superv, enum superv_result result, char *reterr,
                               size_t reterr_len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Reads what the helper wrote on stderr (a bounded amount per pass). */
void superv_drain_stderr(struct superv *superv);

/* Waits for the helper to exit until deadline (at once when kill_now), then
 * kills and reaps it; see superv.c. */
void superv_reap_helper(struct superv *superv, bool kill_now, int64_t deadline,
                        bool interruptible, int *ret_status, bool *ret_known, bool *ret_killed);

/* Starts the backoff: backoff_max_ms after a configuration error (or
 * anything else that will not mend by itself), otherwise the current step,
 * which then doubles. */
void superv_schedule_backoff(struct superv *superv, bool config_error);

/* Kills the helper now, reaps it and starts the backoff. */
void superv_kill_helper(struct superv *superv);

/* The helper died or closed its stdout: reaps it (killing it at deadline)
 * and returns, with the reason in reterr, why it ended. */
enum superv_result superv_helper_ended(struct superv *superv, int64_t deadline, char *reterr,
                                       size_t reterr_len);

/* Starts the helper: its pipes, limits, fork and exec. */
enum superv_result superv_start_helper(struct superv *superv, char *reterr, size_t reterr_len);

/* superv_shared.c */

/* Copies the shared-mode paths and prepares tsd-helper-shared's argv. */
enum superv_result superv_shared_init(struct superv *superv, char *reterr, size_t reterr_len);

/* Frees what superv_shared_init() allocated. */
void superv_shared_done(struct superv *superv);

/* Connects to the shared helper, starting it when nothing listens, and
 * checks the folder, the socket and the peer; interruptible. */
enum superv_result superv_shared_connect(struct superv *superv, int64_t deadline, char *reterr,
                                         size_t reterr_len);

/* Closes the connection (the shared helper goes on). */
void superv_shared_disconnect(struct superv *superv);

/* The hello's payload (helper/frame.h) into buf; its length, 0 when it
 * does not fit. */
size_t superv_shared_hello(const struct superv *superv, unsigned char *buf, size_t cap);

/* superv_exchange.c */

/* One request of type with payload and its answer: starts the helper when
 * needed. On SUPERV_OK and SUPERV_ERR_REFUSED, *ret_reply (transfer full,
 * NUL-terminated) is the answer's payload of *ret_len bytes. */
enum superv_result superv_call(struct superv *superv, uint8_t type, const unsigned char *payload,
                               size_t len, char **ret_reply, size_t *ret_len, char *reterr,
                               size_t reterr_len);

#endif
