/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * superv: see superv.h for the contract. This file starts, watches and
 * reaps the helper; superv_exchange.c sends one request and reads its
 * answer. Implementation notes:
 *
 * - The helper's stdin is one end of an AF_UNIX socket pair, not a pipe, so
 *   that every write is a send(MSG_NOSIGNAL): a helper that died makes the
 *   write fail with EPIPE and no SIGPIPE is ever raised, whatever the
 *   process's signal dispositions and whichever thread writes. The helper
 *   only read()s its stdin, which works the same on a socket.
 * - stdout and stderr are pipes (pipe2(O_CLOEXEC)); the parent's ends are
 *   non-blocking and every wait is a poll() against a CLOCK_MONOTONIC
 *   deadline, with the interrupt eventfd in the same poll.
 * - argv, the nice value, the RLIMIT_AS value and the descriptor limit are
 *   prepared before fork(); the child calls only dup2, close_range (or
 *   close), setpriority, setrlimit, execv and _exit. A failed exec exits 127,
 *   which a helper that has not answered yet reports as SUPERV_ERR_SPAWN.
 * - The helper is reaped with waitpid(pid) only (never -1), so other
 *   children of the process are left alone. health.pid is cleared before the
 *   reap so that superv_get_health() never reads /proc of a recycled pid.
 * - An interrupted call kills the helper (a request is outstanding and the
 *   superv is closed for good), so superv_free() after superv_interrupt()
 *   does not wait for a hung helper.
 */
#include "superv_private.h"
#include "errtext.h"
#include "monotime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses of the helper (helper/main.c) and of a failed exec. */
#define SUPERV_EXIT_CONFIG 2
#define SUPERV_EXIT_SPAWN 127
/* superv_stop(): how long a helper whose stdin was closed may take to exit. */
#define SUPERV_STOP_GRACE_MS 1000
/* While waiting for a dying helper, how often waitpid(WNOHANG) is tried. */
#define SUPERV_REAP_SLICE_MS 10
/* stderr is read in chunks of this size, at most this many per pass. */
#define SUPERV_STDERR_CHUNK 4096u
#define SUPERV_STDERR_CHUNKS_PER_PASS 16
/* Without close_range(), the child closes descriptors below this bound. */
#define SUPERV_CLOSE_FALLBACK_MAX 65536

/* ---- small things ------------------------------------------------------------ */

const char *superv_result_str(enum superv_result result)
{
    switch (result) {
    case SUPERV_OK: return "ok";
    case SUPERV_ERR_INVALID: return "invalid argument";
    case SUPERV_ERR_NOMEM: return "out of memory";
    case SUPERV_ERR_SYSTEM: return "system error";
    case SUPERV_ERR_SPAWN: return "helper could not be executed";
    case SUPERV_ERR_BACKOFF: return "waiting before restarting the helper";
    case SUPERV_ERR_CONFIG: return "helper configuration or model error";
    case SUPERV_ERR_TIMEOUT: return "helper timed out";
    case SUPERV_ERR_CRASHED: return "helper crashed";
    case SUPERV_ERR_PROTOCOL: return "helper protocol error";
    case SUPERV_ERR_REFUSED: return "helper refused the request";
    case SUPERV_ERR_CLOSED: return "closed";
    case SUPERV_ERR_LATE: return "frame dropped unscored by the shared helper";
    case SUPERV_ERR_INSECURE: return "shared helper socket is not this user's alone";
    case SUPERV_RESULT_MAX: break;
    }
    return "unknown result";
}

const char *superv_state_str(enum superv_state state)
{
    switch (state) {
    case SUPERV_STATE_IDLE: return "idle";
    case SUPERV_STATE_RUNNING: return "running";
    case SUPERV_STATE_BACKOFF: return "backoff";
    case SUPERV_STATE_CLOSED: return "closed";
    case SUPERV_STATE_MAX: break;
    }
    return "unknown state";
}

void superv_config_init(struct superv_config *config)
{
    if (!config)
        return;
    memset(config, 0, sizeof(*config));
    config->nice_increment = -1;
}

void superv_close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

enum superv_result superv_fail(struct superv *superv, enum superv_result result, char *reterr,
                               size_t reterr_len, const char *fmt, ...)
{
    char message[SUPERV_REASON_SIZE];
    va_list args;

    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    pthread_mutex_lock(&superv->lock);
    memcpy(superv->health.last_error, message, sizeof(message));
    pthread_mutex_unlock(&superv->lock);
    set_reason(reterr, reterr_len, "%s", message);
    return result;
}

/* ---- stderr -------------------------------------------------------------------- */

static void record_stderr(struct superv *superv, const char *data, size_t len)
{
    pthread_mutex_lock(&superv->lock);
    for (size_t i = 0; i < len; i++) {
        size_t end = (superv->tail_start + superv->tail_len) % SUPERV_STDERR_TAIL;
        superv->tail[end] = data[i];
        if (superv->tail_len < SUPERV_STDERR_TAIL)
            superv->tail_len++;
        else
            superv->tail_start = (superv->tail_start + 1) % SUPERV_STDERR_TAIL;
    }
    pthread_mutex_unlock(&superv->lock);

    /* The first non-empty line since the start or the last answer: the
     * reason a helper gives for exiting (during start-up: the configuration
     * or model error). */
    for (size_t i = 0; i < len && !superv->first_line_done; i++) {
        char c = data[i];
        if (c == '\n' || c == '\r') {
            if (superv->first_line_len > 0)
                superv->first_line_done = true;
        } else if (superv->first_line_len + 1 < sizeof(superv->first_line)) {
            superv->first_line[superv->first_line_len++] =
                (unsigned char)c < 0x20 ? ' ' : c;
            superv->first_line[superv->first_line_len] = '\0';
        }
    }
}

/* Reads what the helper wrote on stderr (a bounded amount per pass); closes
 * the descriptor at EOF. */
void superv_drain_stderr(struct superv *superv)
{
    char chunk[SUPERV_STDERR_CHUNK];

    for (int i = 0; i < SUPERV_STDERR_CHUNKS_PER_PASS && superv->stderr_fd >= 0; i++) {
        ssize_t n = read(superv->stderr_fd, chunk, sizeof(chunk));
        if (n > 0) {
            record_stderr(superv, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        superv_close_fd(&superv->stderr_fd); /* EOF or error */
    }
}

/* ---- reaping --------------------------------------------------------------------- */

/* "exited with status N" / "killed by signal N" */
static void describe_status(bool known, int status, char *buf, size_t len)
{
    if (!known)
        snprintf(buf, len, "exited (status unknown)");
    else if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
        /* The seccomp filter of helper/sandbox.h: a bug, or an exploit of
         * the decoder, tried something inference never needs. */
        snprintf(buf, len, "killed by its sandbox (SIGSYS: a forbidden system call)");
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "ended (wait status %d)", status);
}

/* Waits for the helper to exit until deadline (at once when kill_now),
 * draining stderr meanwhile; kills it (SIGKILL) when it is still there then,
 * or when interruptible and superv_interrupt() was called. Reaps it with
 * waitpid(pid), closes its descriptors and records how it ended.
 * *ret_known is false when the status could not be had (SIGCHLD ignored);
 * *ret_killed says whether it died of the SIGKILL sent here. */
void superv_reap_helper(struct superv *superv, bool kill_now, int64_t deadline,
                        bool interruptible, int *ret_status, bool *ret_known, bool *ret_killed)
{
    int status = 0;
    bool known = false;
    bool killed = false;

    if (superv->connected) {
        /* Shared mode: nothing of ours to reap; the connection is closed. */
        superv_shared_disconnect(superv);
        *ret_status = 0;
        *ret_known = false;
        *ret_killed = false;
        return;
    }
    pthread_mutex_lock(&superv->lock);
    superv->health.pid = 0;
    pthread_mutex_unlock(&superv->lock);

    for (;;) {
        pid_t got;

        if (!killed && (kill_now || now_ms() >= deadline ||
                        (interruptible && atomic_load(&superv->closed)))) {
            kill(superv->pid, SIGKILL);
            killed = true;
        }
        got = waitpid(superv->pid, &status, killed ? 0 : WNOHANG);
        if (got == superv->pid) {
            known = true;
            break;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break; /* ECHILD: reaped by the system (SIGCHLD ignored) */
        if (!killed) {
            struct pollfd fds[2] = {
                {.fd = superv->stderr_fd, .events = POLLIN},
                {.fd = interruptible ? superv->wake_fd : -1, .events = POLLIN},
            };
            int64_t left = deadline - now_ms();
            int wait_ms = left < SUPERV_REAP_SLICE_MS ? (int)(left > 0 ? left : 0)
                                                      : SUPERV_REAP_SLICE_MS;
            if (poll(fds, 2, wait_ms) > 0 && fds[0].revents)
                superv_drain_stderr(superv);
        }
    }
    /* What it wrote just before it ended is in the pipe now (a grandchild
     * holding the pipe open cannot hold us up: the reads do not block). */
    superv_drain_stderr(superv);

    superv_close_fd(&superv->stdin_fd);
    superv_close_fd(&superv->stdout_fd);
    superv_close_fd(&superv->stderr_fd);
    superv->pid = 0;

    pthread_mutex_lock(&superv->lock);
    superv->health.last_exit_status = known && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    superv->health.last_signal = known && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    pthread_mutex_unlock(&superv->lock);
    *ret_status = status;
    *ret_known = known;
    /* Not when it had exited on its own just before the signal. */
    *ret_killed = killed && !(known && WIFEXITED(status));
}

/* Starts the backoff: backoff_max_ms after a configuration error, otherwise
 * the current step, which then doubles. */
void superv_schedule_backoff(struct superv *superv, bool config_error)
{
    int wait_ms = config_error ? superv->config.backoff_max_ms : superv->backoff_ms;

    if (superv->backoff_ms > superv->config.backoff_max_ms / 2)
        superv->backoff_ms = superv->config.backoff_max_ms;
    else
        superv->backoff_ms *= 2;
    pthread_mutex_lock(&superv->lock);
    superv->backoff_until_ms = now_ms() + wait_ms;
    pthread_mutex_unlock(&superv->lock);
}

/* Kills the helper now, reaps it and starts the backoff. */
void superv_kill_helper(struct superv *superv)
{
    int status = 0;
    bool known = false;
    bool killed = false;

    superv_reap_helper(superv, true, 0, false, &status, &known, &killed);
    superv_schedule_backoff(superv, false);
}

/* The helper died or closed its stdout: waits for it until deadline (then
 * kills it), reaps it and says why it ended. */
enum superv_result superv_helper_ended(struct superv *superv, int64_t deadline, char *reterr,
                                       size_t reterr_len)
{
    enum superv_result result = SUPERV_ERR_CRASHED;
    char how[64];
    char why[SUPERV_REASON_SIZE + 2]; /* ": " and the first stderr line */
    int status = 0;
    bool known = false;
    bool killed = false;
    bool answered = superv->answered;
    bool shared = superv->connected;

    superv_reap_helper(superv, false, deadline, true, &status, &known, &killed);
    if (atomic_load(&superv->closed)) {
        set_reason(reterr, reterr_len, "interrupted");
        result = SUPERV_ERR_CLOSED;
        goto out;
    }
    if (shared) {
        pthread_mutex_lock(&superv->lock);
        superv->health.crashes++;
        pthread_mutex_unlock(&superv->lock);
        superv_schedule_backoff(superv, false);
        result = superv_fail(superv, SUPERV_ERR_CRASHED, reterr, reterr_len,
                             "the shared helper closed the connection (it ended; a later "
                             "call starts it again)");
        goto out;
    }
    describe_status(known, status, how, sizeof(how));
    if (superv->first_line_len > 0)
        snprintf(why, sizeof(why), ": %s", superv->first_line);
    else
        why[0] = '\0';

    if (known && WIFEXITED(status) && WEXITSTATUS(status) == SUPERV_EXIT_CONFIG) {
        pthread_mutex_lock(&superv->lock);
        superv->health.config_errors++;
        pthread_mutex_unlock(&superv->lock);
        superv_schedule_backoff(superv, true);
        result = superv_fail(superv, SUPERV_ERR_CONFIG, reterr, reterr_len, "helper %s%s", how,
                             why);
        goto out;
    }
    superv_schedule_backoff(superv, false);
    if (known && !answered && WIFEXITED(status) && WEXITSTATUS(status) == SUPERV_EXIT_SPAWN) {
        result = superv_fail(superv, SUPERV_ERR_SPAWN, reterr, reterr_len,
                      "cannot execute %s (helper %s%s)", superv->helper_path, how, why);
        goto out;
    }
    pthread_mutex_lock(&superv->lock);
    superv->health.crashes++;
    pthread_mutex_unlock(&superv->lock);
    if (killed)
        result = superv_fail(superv, SUPERV_ERR_CRASHED, reterr, reterr_len,
                      "helper closed its output but did not exit; killed");
    else if (known && WIFSIGNALED(status))
        result = superv_fail(superv, SUPERV_ERR_CRASHED, reterr, reterr_len, "helper %s", how);
    else
        result = superv_fail(superv, SUPERV_ERR_CRASHED, reterr, reterr_len, "helper %s%s", how,
                             why);

out:
    return result;
}

/* ---- starting ---------------------------------------------------------------------- */

/* Moves fd to a number >= 3 (so that dup2() onto 0..2 in the child always
 * copies, which clears FD_CLOEXEC). Returns the descriptor or -1. */
static int move_above_stdio(int fd)
{
    int moved;

    if (fd < 0 || fd > STDERR_FILENO)
        return fd;
    moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    close(fd);
    return moved;
}

static bool set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

void superv_close_above_stdio(int close_max)
{
    long closed_all = -1;

#ifdef SYS_close_range
    closed_all = syscall(SYS_close_range, 3u, ~0u, 0u);
#endif
    if (closed_all != 0) {
        for (int fd = STDERR_FILENO + 1; fd < close_max; fd++)
            close(fd);
    }
}

/* The child between fork() and exec(): async-signal-safe calls only. */
__attribute__((noreturn))
static void child_exec(char *const argv[], int in_fd, int out_fd, int err_fd, int nice_value,
                       bool limit_memory, const struct rlimit *memory, int close_max)
{
    if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
        dup2(err_fd, STDERR_FILENO) < 0)
        _exit(SUPERV_EXIT_SPAWN);
    superv_close_above_stdio(close_max);
    (void)setpriority(PRIO_PROCESS, 0, nice_value);
    if (limit_memory)
        (void)setrlimit(RLIMIT_AS, memory);
    execv(argv[0], argv);
    _exit(SUPERV_EXIT_SPAWN);
}

void superv_mark_started(struct superv *superv, pid_t pid)
{
    superv->answered = false;
    superv->first_line[0] = '\0';
    superv->first_line_len = 0;
    superv->first_line_done = false;
    pthread_mutex_lock(&superv->lock);
    superv->health.pid = pid;
    superv->health.starts++;
    superv->backoff_until_ms = 0;
    pthread_mutex_unlock(&superv->lock);
}

enum superv_result superv_start_helper(struct superv *superv, char *reterr, size_t reterr_len)
{
    enum superv_result result = SUPERV_OK;
    int stdin_pair[2] = {-1, -1};
    int stdout_pipe[2] = {-1, -1};
    int stderr_pipe[2] = {-1, -1};
    char text[SUPERV_ERRNO_TEXT];
    struct rlimit memory = {0};
    struct rlimit files = {0};
    bool limit_memory = false;
    int close_max = SUPERV_CLOSE_FALLBACK_MAX;
    int nice_value;
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, stdin_pair) != 0) {
        result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "socketpair: %s",
                      errno_text(errno, text, sizeof(text)));
        goto out;
    }
    if (pipe2(stdout_pipe, O_CLOEXEC) != 0 || pipe2(stderr_pipe, O_CLOEXEC) != 0) {
        result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "pipe2: %s",
                      errno_text(errno, text, sizeof(text)));
        goto out;
    }
    stdin_pair[1] = move_above_stdio(stdin_pair[1]);
    stdout_pipe[1] = move_above_stdio(stdout_pipe[1]);
    stderr_pipe[1] = move_above_stdio(stderr_pipe[1]);
    if (stdin_pair[1] < 0 || stdout_pipe[1] < 0 || stderr_pipe[1] < 0 ||
        !set_nonblocking(stdin_pair[0]) || !set_nonblocking(stdout_pipe[0]) ||
        !set_nonblocking(stderr_pipe[0])) {
        result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "fcntl: %s",
                      errno_text(errno, text, sizeof(text)));
        goto out;
    }

    /* Everything the child needs, computed here: after fork() it may only
     * make async-signal-safe calls. */
    errno = 0;
    nice_value = getpriority(PRIO_PROCESS, 0);
    if (nice_value == -1 && errno != 0)
        nice_value = 0;
    nice_value += superv->config.nice_increment;
    if (nice_value > 19)
        nice_value = 19;
    if (superv->config.memory_limit_bytes != UINT64_MAX && getrlimit(RLIMIT_AS, &memory) == 0) {
        uint64_t limit = superv->config.memory_limit_bytes;
        if (memory.rlim_max != RLIM_INFINITY && limit > (uint64_t)memory.rlim_max)
            limit = (uint64_t)memory.rlim_max;
        memory.rlim_cur = limit >= (uint64_t)RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)limit;
        memory.rlim_max = memory.rlim_cur;
        limit_memory = true;
    }
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
        files.rlim_cur < (rlim_t)SUPERV_CLOSE_FALLBACK_MAX)
        close_max = (int)files.rlim_cur;

    pid = fork();
    if (pid == 0)
        child_exec(superv->argv, stdin_pair[1], stdout_pipe[1], stderr_pipe[1], nice_value,
                   limit_memory, &memory, close_max);
    if (pid < 0) {
        result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "fork: %s",
                      errno_text(errno, text, sizeof(text)));
        goto out;
    }

    superv->pid = pid;
    superv->stdin_fd = stdin_pair[0];
    superv->stdout_fd = stdout_pipe[0];
    superv->stderr_fd = stderr_pipe[0];
    stdin_pair[0] = -1;
    stdout_pipe[0] = -1;
    stderr_pipe[0] = -1;
    superv_mark_started(superv, pid);

out:
    for (int i = 0; i < 2; i++) {
        superv_close_fd(&stdin_pair[i]);
        superv_close_fd(&stdout_pipe[i]);
        superv_close_fd(&stderr_pipe[i]);
    }
    return result;
}

/* ---- the API ----------------------------------------------------------------------- */

static bool timeout_ok(int value)
{
    return value >= 0 && value <= SUPERV_MAX_TIMEOUT_MS;
}

enum superv_result superv_new(const struct superv_config *config, struct superv **ret_superv,
                              char *reterr, size_t reterr_len)
{
    enum superv_result result = SUPERV_OK;
    struct superv *superv = NULL;
    struct superv_config c;
    char text[SUPERV_ERRNO_TEXT];

    if (!config || !ret_superv || !config->helper_path || config->helper_path[0] != '/' ||
        !config->config_path || !config->config_path[0]) {
        set_reason(reterr, reterr_len,
                   "an absolute helper_path and a config_path are required");
        result = SUPERV_ERR_INVALID;
        goto out;
    }
    c = *config;
    if (c.nice_increment == -1)
        c.nice_increment = SUPERV_DEFAULT_NICE;
    if (c.memory_limit_bytes == 0)
        c.memory_limit_bytes = SUPERV_DEFAULT_MEMORY_LIMIT;
    if (c.start_timeout_ms == 0)
        c.start_timeout_ms = SUPERV_DEFAULT_START_TIMEOUT_MS;
    if (c.deadline_ms == 0)
        c.deadline_ms = SUPERV_DEFAULT_DEADLINE_MS;
    if (c.backoff_min_ms == 0)
        c.backoff_min_ms = SUPERV_DEFAULT_BACKOFF_MIN_MS;
    if (c.backoff_max_ms == 0)
        c.backoff_max_ms = c.backoff_min_ms > SUPERV_DEFAULT_BACKOFF_MAX_MS
                               ? c.backoff_min_ms
                               : SUPERV_DEFAULT_BACKOFF_MAX_MS;
    if (c.max_reply == 0)
        c.max_reply = SUPERV_DEFAULT_MAX_REPLY;
    if (c.nice_increment < 0 || c.nice_increment > 19 || !timeout_ok(c.start_timeout_ms) ||
        !timeout_ok(c.deadline_ms) || !timeout_ok(c.backoff_min_ms) ||
        !timeout_ok(c.backoff_max_ms) || c.backoff_max_ms < c.backoff_min_ms ||
        c.max_reply > SUPERV_MAX_FRAME) {
        set_reason(reterr, reterr_len,
                   "nice_increment must be -1 or 0..19, the times 0..%d ms with "
                   "backoff_max_ms >= backoff_min_ms, max_reply at most %u bytes",
                   SUPERV_MAX_TIMEOUT_MS, SUPERV_MAX_FRAME);
        result = SUPERV_ERR_INVALID;
        goto out;
    }

    superv = calloc(1, sizeof(*superv));
    if (!superv) {
        result = SUPERV_ERR_NOMEM;
        set_reason(reterr, reterr_len, "out of memory");
        goto out;
    }
    superv->wake_fd = -1;
    superv->stdin_fd = -1;
    superv->stdout_fd = -1;
    superv->stderr_fd = -1;
    superv->next_id = 1;
    superv->backoff_ms = c.backoff_min_ms;
    superv->health.last_exit_status = -1;
    atomic_init(&superv->closed, false);
    if (pthread_mutex_init(&superv->lock, NULL) != 0) {
        free(superv);
        superv = NULL;
        result = SUPERV_ERR_SYSTEM;
        set_reason(reterr, reterr_len, "pthread_mutex_init failed");
        goto out;
    }
    superv->helper_path = strdup(c.helper_path);
    superv->config_path = strdup(c.config_path);
    if (!superv->helper_path || !superv->config_path) {
        result = SUPERV_ERR_NOMEM;
        set_reason(reterr, reterr_len, "out of memory");
        goto out;
    }
    c.helper_path = superv->helper_path;
    c.config_path = superv->config_path;
    superv->config = c;
    superv->argv[0] = superv->helper_path;
    superv->argv[1] = (char *)(uintptr_t)"--config";
    superv->argv[2] = superv->config_path;
    superv->argv[3] = NULL;
    result = superv_shared_init(superv, reterr, reterr_len);
    if (result != SUPERV_OK)
        goto out;
    superv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (superv->wake_fd < 0) {
        result = SUPERV_ERR_SYSTEM;
        set_reason(reterr, reterr_len, "eventfd: %s", errno_text(errno, text, sizeof(text)));
        goto out;
    }
    *ret_superv = superv;
    superv = NULL;

out:
    superv_free(superv);
    return result;
}

enum superv_result superv_detect(struct superv *superv, const unsigned char *jpeg, size_t len,
                                 char **ret_json, size_t *ret_len, char *reterr,
                                 size_t reterr_len)
{
    if (!superv || !jpeg || len == 0 || len > SUPERV_MAX_FRAME || !ret_json || !ret_len) {
        set_reason(reterr, reterr_len, "a JPEG of 1 to %u bytes and result pointers are required",
                   SUPERV_MAX_FRAME);
        return SUPERV_ERR_INVALID;
    }
    return superv_call(superv, FRAME_REQUEST_JPEG, jpeg, len, ret_json, ret_len, reterr,
                       reterr_len);
}

enum superv_result superv_ping(struct superv *superv, char *reterr, size_t reterr_len)
{
    enum superv_result result;
    char *reply = NULL;
    size_t reply_len = 0;

    if (!superv) {
        set_reason(reterr, reterr_len, "no superv");
        return SUPERV_ERR_INVALID;
    }
    result = superv_call(superv, FRAME_REQUEST_PING, NULL, 0, &reply, &reply_len, reterr,
                         reterr_len);
    free(reply);
    return result;
}

/* The RSS of pid from /proc/<pid>/statm; 0 when unknown. */
static uint64_t read_rss(pid_t pid)
{
    char path[64];
    char buf[128];
    unsigned long long pages = 0;
    long page_size = sysconf(_SC_PAGESIZE);
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%ld/statm", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0 || page_size <= 0)
        return 0;
    buf[n] = '\0';
    /* size resident shared text lib data dt */
    if (sscanf(buf, "%*u %llu", &pages) != 1)
        return 0;
    return (uint64_t)pages * (uint64_t)page_size;
}

/* Shared mode: tsd-helper-shared and its children (the one tsd-helper, forked
 * by its worker thread, so listed under that thread). */
static uint64_t read_shared_rss(pid_t pid)
{
    char path[64];
    uint64_t total = read_rss(pid);
    struct dirent *task;
    DIR *tasks;

    snprintf(path, sizeof(path), "/proc/%ld/task", (long)pid);
    tasks = opendir(path);
    if (!tasks)
        return total;
    while ((task = readdir(tasks)) != NULL) {
        char children[256];
        char *cursor = children;
        ssize_t n;
        int fd;

        if (task->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%ld/task/%.20s/children", (long)pid, task->d_name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        n = read(fd, children, sizeof(children) - 1);
        close(fd);
        if (n <= 0)
            continue;
        children[n] = '\0';
        for (;;) {
            char *end = NULL;
            long child = strtol(cursor, &end, 10);
            if (end == cursor || child <= 0)
                break;
            total += read_rss((pid_t)child);
            cursor = end;
        }
    }
    closedir(tasks);
    return total;
}

void superv_get_health(struct superv *superv, struct superv_health *ret_health)
{
    int64_t now = now_ms();

    if (!ret_health)
        return;
    memset(ret_health, 0, sizeof(*ret_health));
    if (!superv) {
        ret_health->last_exit_status = -1;
        return;
    }
    pthread_mutex_lock(&superv->lock);
    *ret_health = superv->health;
    if (atomic_load(&superv->closed)) {
        ret_health->state = SUPERV_STATE_CLOSED;
    } else if (superv->health.pid > 0) {
        ret_health->state = SUPERV_STATE_RUNNING;
    } else if (superv->backoff_until_ms > now) {
        ret_health->state = SUPERV_STATE_BACKOFF;
        ret_health->backoff_left_ms = superv->backoff_until_ms - now;
    } else {
        ret_health->state = SUPERV_STATE_IDLE;
    }
    /* Read under the lock: the pid is cleared before the helper is reaped,
     * so it cannot have been recycled. */
    ret_health->rss_bytes = superv->health.pid <= 0 ? 0
                            : superv->shared_dir ? read_shared_rss(superv->health.pid)
                                                 : read_rss(superv->health.pid);
    for (size_t i = 0; i < superv->tail_len; i++)
        ret_health->stderr_tail[i] = superv->tail[(superv->tail_start + i) % SUPERV_STDERR_TAIL];
    ret_health->stderr_tail[superv->tail_len] = '\0';
    pthread_mutex_unlock(&superv->lock);
}

void superv_interrupt(struct superv *superv)
{
    uint64_t one = 1;
    ssize_t n;

    if (!superv)
        return;
    atomic_store(&superv->closed, true);
    do {
        n = write(superv->wake_fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the counter is already non-zero, which is all poll() needs. */
}

void superv_stop(struct superv *superv)
{
    int status = 0;
    bool known = false;
    bool killed = false;

    if (!superv)
        return;
    if (superv->connected) {
        superv_shared_disconnect(superv); /* the shared helper serves others */
    } else if (superv->pid > 0) {
        /* EOF between frames: the helper exits 0. */
        superv_close_fd(&superv->stdin_fd);
        superv_reap_helper(superv, false, now_ms() + SUPERV_STOP_GRACE_MS, false, &status, &known,
                    &killed);
    }
    superv->backoff_ms = superv->config.backoff_min_ms;
    pthread_mutex_lock(&superv->lock);
    superv->backoff_until_ms = 0;
    pthread_mutex_unlock(&superv->lock);
}

struct superv *superv_free(struct superv *superv)
{
    if (!superv)
        return NULL;
    if (superv->helper_path && superv->config_path)
        superv_stop(superv); /* initialised far enough to have started one */
    superv_close_fd(&superv->wake_fd);
    pthread_mutex_destroy(&superv->lock);
    superv_shared_done(superv);
    free(superv->helper_path);
    free(superv->config_path);
    free(superv);
    return NULL;
}
