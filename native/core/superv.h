/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * superv: supervises the inference helper (helper/tsd-helper), a separate
 * process, so that a crash, a hang or an out-of-memory in OpenCV never takes
 * OctoPrint down and OctoPrint never waits on it longer than a deadline.
 *
 * The helper is started lazily, on the first superv_detect() or
 * superv_ping(), as `helper_path --config config_path` with pipes on its
 * stdin, stdout and stderr (every other descriptor closed), at a lower CPU
 * priority (nice_increment) and with an address-space limit
 * (memory_limit_bytes, RLIMIT_AS). The child does only async-signal-safe
 * calls between fork() and exec(). Its stdin/stdout speak the framing in
 * helper/README.md (16-byte headers 'TSDF' / 'TSDR').
 *
 * Every call waits at most its deadline: start_timeout_ms for the first
 * answer after a start (the model loads), deadline_ms afterwards. When the
 * helper does not answer in time it is killed (SIGKILL) and reaped; when it
 * dies or closes its stdout it is reaped. Either way the next start waits a
 * backoff that doubles from backoff_min_ms to backoff_max_ms and goes back to
 * backoff_min_ms after a successful answer; a call during the backoff returns
 * SUPERV_ERR_BACKOFF at once, without blocking. A helper that exits with
 * status 2 (its configuration or model is unusable) is SUPERV_ERR_CONFIG and
 * waits backoff_max_ms before it is tried again.
 *
 * The last bytes (at most SUPERV_STDERR_TAIL) the helper wrote on stderr are
 * kept for the health report; stderr is drained during every call so the
 * helper never blocks on it.
 *
 * Threading: superv_detect(), superv_ping() and superv_stop() belong to one
 * thread at a time. superv_get_health() and superv_interrupt() may be called
 * from any thread at any time between superv_new() and superv_free().
 * superv_interrupt() is a stop request: a blocked call returns
 * SUPERV_ERR_CLOSED at once and so do all later calls.
 *
 * The process must not die of SIGPIPE: writes use a descriptor on which
 * SIGPIPE cannot be raised (MSG_NOSIGNAL is not available on pipes, so the
 * signal is blocked and consumed around the write, or the pipe is a socket
 * pair).
 *
 * Shared mode (shared_dir set): instead of a child of its own, the superv
 * talks to the one tsd-helper-shared of the host (helper/shared.c) over the
 * unix socket shared_dir/helper.sock, and that process runs one tsd-helper
 * for every OctoPrint instance of the same user. The first call connects;
 * when nothing listens it starts tsd-helper-shared detached (setsid, its
 * stderr in shared_dir/helper.log) and waits for the socket until the start
 * timeout. shared_dir is created 0700 when missing and must be a directory
 * of this user's with no access for anyone else, the socket must be this
 * user's with mode 0600, and the process listening on it (SO_PEERCRED) must
 * run as this user: otherwise SUPERV_ERR_INSECURE and nothing is sent. The
 * rest is the same contract: deadlines (a frame the shared helper cannot
 * score in time is answered SUPERV_ERR_LATE), a connection that breaks is a
 * crash with the same backoff, and the next call connects again -- starting
 * a new tsd-helper-shared when the old one died. A timeout closes the
 * connection (the shared helper's own supervisor kills a hung tsd-helper);
 * superv_stop() only disconnects. health.pid is tsd-helper-shared's,
 * health.rss_bytes that of it and its tsd-helper, health.starts counts
 * connections.
 *
 * This file is plain C with no Python and no logging.
 */
#ifndef TSD_SUPERV_H
#define TSD_SUPERV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum superv_result {
    SUPERV_OK = 0,
    SUPERV_ERR_INVALID,  /* bad argument or configuration */
    SUPERV_ERR_NOMEM,    /* allocation failed */
    SUPERV_ERR_SYSTEM,   /* pipe, fork, poll, ... failed */
    SUPERV_ERR_SPAWN,    /* the helper could not be executed */
    SUPERV_ERR_BACKOFF,  /* waiting before the next start; nothing was sent */
    SUPERV_ERR_CONFIG,   /* the helper exited with status 2: configuration or model */
    SUPERV_ERR_TIMEOUT,  /* no answer within the deadline; the helper was killed */
    SUPERV_ERR_CRASHED,  /* the helper died or closed its stdout */
    SUPERV_ERR_PROTOCOL, /* a malformed or oversized answer; the helper was killed */
    SUPERV_ERR_REFUSED,  /* the helper answered with an error reply (bad frame, ...);
                          * it goes on running */
    SUPERV_ERR_CLOSED,   /* superv_interrupt() was called */
    SUPERV_ERR_LATE,     /* shared: the frame was dropped unscored (its deadline, or
                          * newer frames of this client); nothing is wrong */
    SUPERV_ERR_INSECURE, /* shared: the socket's folder, the socket or the process
                          * behind it is not this user's alone; nothing was sent */
    SUPERV_RESULT_MAX
};

enum superv_state {
    SUPERV_STATE_IDLE = 0, /* not started yet, or stopped */
    SUPERV_STATE_RUNNING,
    SUPERV_STATE_BACKOFF,  /* died, hung or unusable; waiting to restart */
    SUPERV_STATE_CLOSED,   /* interrupted */
    SUPERV_STATE_MAX
};

#define SUPERV_STDERR_TAIL 1024u
#define SUPERV_REASON_SIZE 256u
#define SUPERV_DEFAULT_NICE 10
#define SUPERV_DEFAULT_MEMORY_LIMIT (2048ull * 1024 * 1024)
#define SUPERV_DEFAULT_START_TIMEOUT_MS 30000
#define SUPERV_DEFAULT_DEADLINE_MS 10000
#define SUPERV_DEFAULT_BACKOFF_MIN_MS 1000
#define SUPERV_DEFAULT_BACKOFF_MAX_MS 60000
#define SUPERV_DEFAULT_MAX_REPLY (1024u * 1024u)
#define SUPERV_MAX_FRAME (64u * 1024u * 1024u)
#define SUPERV_MAX_TIMEOUT_MS (3600 * 1000)
#define SUPERV_SHARED_SERVER_NAME "tsd-helper-shared"
#define SUPERV_SHARED_SOCKET_NAME "helper.sock"
#define SUPERV_SHARED_LOCK_NAME "helper.lock"
#define SUPERV_SHARED_LOG_NAME "helper.log"
#define SUPERV_SHARED_DEFAULT_IDLE_EXIT_S 300
#define SUPERV_SHARED_MAX_DIR 95u /* sun_path: 108 bytes with "/helper.sock" and a NUL */

struct superv_config {
    const char *helper_path;      /* absolute path of tsd-helper */
    const char *config_path;      /* its YAML configuration */
    int nice_increment;           /* 0..19; -1: default */
    uint64_t memory_limit_bytes;  /* RLIMIT_AS of the child; 0: default; UINT64_MAX: none */
    int start_timeout_ms;         /* 0: default */
    int deadline_ms;              /* 0: default */
    int backoff_min_ms;           /* 0: default */
    int backoff_max_ms;           /* 0: default; >= backoff_min_ms */
    size_t max_reply;             /* largest reply payload; 0: default */
    const char *shared_dir;       /* NULL: a helper of its own (the default); else the
                                   * folder of the shared helper's socket (absolute) */
    const char *shared_server_path; /* tsd-helper-shared; NULL: next to helper_path */
    int shared_idle_exit_s;       /* a shared helper it starts exits after this long
                                   * without clients; 0: default */
};

struct superv_health {
    enum superv_state state;
    pid_t pid;                   /* 0 when not running */
    uint64_t starts;             /* helpers started */
    uint64_t crashes;            /* died or closed stdout unasked */
    uint64_t timeouts;           /* killed for missing a deadline */
    uint64_t protocol_errors;    /* killed for a malformed answer */
    uint64_t config_errors;      /* exited with status 2 */
    uint64_t answers;            /* detection answers received */
    uint64_t refused;            /* error replies received */
    int last_exit_status;        /* -1 when none */
    int last_signal;             /* 0 when none */
    int64_t backoff_left_ms;     /* > 0 in SUPERV_STATE_BACKOFF */
    double last_answer_ms;       /* wall time of the last successful call */
    uint64_t rss_bytes;          /* of the running helper (/proc), 0 when unknown */
    char last_error[SUPERV_REASON_SIZE];    /* "" when none */
    char stderr_tail[SUPERV_STDERR_TAIL + 1]; /* NUL-terminated */
};

struct superv;

const char *superv_result_str(enum superv_result result);
const char *superv_state_str(enum superv_state state);

/* Fills the defaults in (all fields 0 / NULL, nice_increment -1). */
void superv_config_init(struct superv_config *config);

/* (transfer full) Copies the configuration; starts nothing. */
enum superv_result superv_new(const struct superv_config *config, struct superv **ret_superv,
                              char *reterr, size_t reterr_len);

/* Sends one JPEG (1..SUPERV_MAX_FRAME bytes) and waits for the answer.
 * SUPERV_OK: *ret_json (transfer full, free()) is the helper's detections
 * payload, NUL-terminated, *ret_len bytes without the NUL.
 * SUPERV_ERR_REFUSED: *ret_json is the helper's error payload the same way.
 * Otherwise *ret_json is untouched and reterr says why. */
enum superv_result superv_detect(struct superv *superv, const unsigned char *jpeg, size_t len,
                                 char **ret_json, size_t *ret_len, char *reterr,
                                 size_t reterr_len);

/* Starts the helper when needed and waits for a pong. */
enum superv_result superv_ping(struct superv *superv, char *reterr, size_t reterr_len);

/* Any thread. */
void superv_get_health(struct superv *superv, struct superv_health *ret_health);

/* Any thread; async-signal-safe is not required. */
void superv_interrupt(struct superv *superv);

/* Closes the helper's stdin, waits up to 1 s for it to exit, then kills it;
 * reaps it. The next call starts a new one (no backoff). Idempotent. */
void superv_stop(struct superv *superv);

/* superv_stop() and frees. Accepts NULL; returns NULL. */
struct superv *superv_free(struct superv *superv);

#endif
