/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * superv_shared: the supervisor's shared mode (superv.h): the connection to
 * the host's one tsd-helper-shared (helper/shared.c), started here when
 * nothing listens.
 *
 * - Trust: the folder must be a directory of this effective uid with no
 *   group or other permission bits (it is created 0700 when missing), the
 *   socket a socket of this uid with mode 0600 exactly, and the process that
 *   listens on it must run as this uid (SO_PEERCRED). Anything else is
 *   SUPERV_ERR_INSECURE before a byte is sent: a frame, and the answers the
 *   plugin acts on, go only to a process of the same user.
 * - Starting: tsd-helper-shared is double-forked and setsid()ed so that it
 *   outlives this process and is never its child (nothing here reaps it). Two
 *   instances that start it at once start two; the second finds the lock
 *   file taken (flock, held by the first for its whole life) and exits 0,
 *   and both connect to the first. Between fork and exec: only dup2,
 *   setsid, fork, close_range/close, execv and _exit.
 * - Its stderr goes to shared_dir/helper.log (append).
 */
#include "superv_private.h"
#include "errtext.h"
#include "lebytes.h"
#include "monotime.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* How often connect() is tried while tsd-helper-shared starts. */
#define SHARED_CONNECT_SLICE_MS 20
#define SHARED_CLOSE_FALLBACK_MAX 65536

static char *join_path(const char *dir, const char *name)
{
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    char *path = malloc(len);

    if (path)
        snprintf(path, len, "%s/%s", dir, name);
    return path;
}

enum superv_result superv_shared_init(struct superv *superv, char *reterr, size_t reterr_len)
{
    const struct superv_config *c = &superv->config;
    size_t dir_len;
    int n = 0;
    int a = 0;

    if (!c->shared_dir)
        return SUPERV_OK;
    dir_len = strlen(c->shared_dir);
    if (c->shared_dir[0] != '/' || dir_len > SUPERV_SHARED_MAX_DIR ||
        (c->shared_server_path && c->shared_server_path[0] != '/') ||
        c->shared_idle_exit_s < 0 || c->shared_idle_exit_s > 7 * 24 * 3600) {
        set_reason(reterr, reterr_len,
                   "shared_dir must be an absolute path of at most %u bytes, "
                   "shared_server_path absolute, shared_idle_exit_s 0..604800",
                   SUPERV_SHARED_MAX_DIR);
        return SUPERV_ERR_INVALID;
    }
    superv->shared_dir = strdup(c->shared_dir);
    if (c->shared_server_path) {
        superv->shared_server_path = strdup(c->shared_server_path);
    } else {
        /* Installed next to tsd-helper. */
        const char *slash = strrchr(superv->helper_path, '/');
        size_t base = (size_t)(slash - superv->helper_path);
        size_t len = base + 1 + sizeof(SUPERV_SHARED_SERVER_NAME);
        superv->shared_server_path = malloc(len);
        if (superv->shared_server_path)
            snprintf(superv->shared_server_path, len, "%.*s/%s", (int)base,
                     superv->helper_path, SUPERV_SHARED_SERVER_NAME);
    }
    if (!superv->shared_dir || !superv->shared_server_path) {
        set_reason(reterr, reterr_len, "out of memory");
        return SUPERV_ERR_NOMEM;
    }
    superv->config.shared_dir = superv->shared_dir;
    superv->config.shared_server_path = superv->shared_server_path;
    if (superv->config.shared_idle_exit_s == 0)
        superv->config.shared_idle_exit_s = SUPERV_SHARED_DEFAULT_IDLE_EXIT_S;

    snprintf(superv->server_args[0], sizeof(superv->server_args[0]), "%d", c->nice_increment);
    snprintf(superv->server_args[1], sizeof(superv->server_args[1]), "%" PRIu64,
             c->memory_limit_bytes);
    snprintf(superv->server_args[2], sizeof(superv->server_args[2]), "%d", c->start_timeout_ms);
    snprintf(superv->server_args[3], sizeof(superv->server_args[3]), "%d", c->deadline_ms);
    snprintf(superv->server_args[4], sizeof(superv->server_args[4]), "%d",
             superv->config.shared_idle_exit_s);
    superv->server_argv[n++] = superv->shared_server_path;
    superv->server_argv[n++] = (char *)(uintptr_t)"--dir";
    superv->server_argv[n++] = superv->shared_dir;
    superv->server_argv[n++] = (char *)(uintptr_t)"--helper";
    superv->server_argv[n++] = superv->helper_path;
    superv->server_argv[n++] = (char *)(uintptr_t)"--config";
    superv->server_argv[n++] = superv->config_path;
    superv->server_argv[n++] = (char *)(uintptr_t)"--nice";
    superv->server_argv[n++] = superv->server_args[a++];
    superv->server_argv[n++] = (char *)(uintptr_t)"--memory-bytes";
    superv->server_argv[n++] = superv->server_args[a++];
    superv->server_argv[n++] = (char *)(uintptr_t)"--start-timeout-ms";
    superv->server_argv[n++] = superv->server_args[a++];
    superv->server_argv[n++] = (char *)(uintptr_t)"--deadline-ms";
    superv->server_argv[n++] = superv->server_args[a++];
    superv->server_argv[n++] = (char *)(uintptr_t)"--idle-exit-s";
    superv->server_argv[n++] = superv->server_args[a++];
    superv->server_argv[n] = NULL;
    return SUPERV_OK;
}

void superv_shared_done(struct superv *superv)
{
    free(superv->shared_dir);
    free(superv->shared_server_path);
    superv->shared_dir = NULL;
    superv->shared_server_path = NULL;
}

size_t superv_shared_hello(const struct superv *superv, unsigned char *buf, size_t cap)
{
    size_t path_len = strlen(superv->config_path);

    if (cap < 8 + path_len)
        return 0;
    put_u32le(buf, (uint32_t)superv->config.deadline_ms);
    put_u32le(buf + 4, (uint32_t)superv->config.start_timeout_ms);
    memcpy(buf + 8, superv->config_path, path_len);
    return 8 + path_len;
}

/* The folder: created 0700 when missing; this uid's, no access for others. */
static enum superv_result check_dir(struct superv *superv, char *reterr, size_t reterr_len)
{
    char text[SUPERV_ERRNO_TEXT];
    struct stat st;

    if (mkdir(superv->shared_dir, 0700) != 0 && errno != EEXIST)
        return superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len,
                           "cannot create the shared helper's folder %s: %s",
                           superv->shared_dir, errno_text(errno, text, sizeof(text)));
    if (lstat(superv->shared_dir, &st) != 0)
        return superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "%s: %s",
                           superv->shared_dir, errno_text(errno, text, sizeof(text)));
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0)
        return superv_fail(superv, SUPERV_ERR_INSECURE, reterr, reterr_len,
                           "the shared helper's folder %s must be a directory of uid %ld "
                           "with mode 0700 (it is %s, uid %ld, mode %04o)",
                           superv->shared_dir, (long)geteuid(),
                           S_ISDIR(st.st_mode) ? "a directory" : "not a directory",
                           (long)st.st_uid, (unsigned)(st.st_mode & 07777));
    return SUPERV_OK;
}

/* The socket connected to must be this uid's with mode 0600, and the
 * process behind it must run as this uid. */
static enum superv_result check_peer(struct superv *superv, const char *path, int fd,
                                     pid_t *ret_pid, char *reterr, size_t reterr_len)
{
    char text[SUPERV_ERRNO_TEXT];
    struct ucred cred;
    socklen_t cred_len = sizeof(cred);
    struct stat st;

    if (lstat(path, &st) != 0)
        return superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "%s: %s", path,
                           errno_text(errno, text, sizeof(text)));
    if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0777) != 0600)
        return superv_fail(superv, SUPERV_ERR_INSECURE, reterr, reterr_len,
                           "the shared helper's socket %s must be a socket of uid %ld with "
                           "mode 0600 (it is uid %ld, mode %04o); not used",
                           path, (long)geteuid(), (long)st.st_uid,
                           (unsigned)(st.st_mode & 07777));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0)
        return superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "SO_PEERCRED: %s",
                           errno_text(errno, text, sizeof(text)));
    if (cred.uid != geteuid())
        return superv_fail(superv, SUPERV_ERR_INSECURE, reterr, reterr_len,
                           "the process listening on %s runs as uid %ld, not %ld; not used",
                           path, (long)cred.uid, (long)geteuid());
    *ret_pid = cred.pid;
    return SUPERV_OK;
}

/* The grandchild between fork() and exec(): async-signal-safe calls only. */
__attribute__((noreturn))
static void server_exec(char *const argv[], int null_fd, int log_fd, int close_max)
{
    if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(null_fd, STDOUT_FILENO) < 0 ||
        dup2(log_fd, STDERR_FILENO) < 0)
        _exit(127);
    superv_close_above_stdio(close_max);
    execv(argv[0], argv);
    _exit(127);
}

/* Starts tsd-helper-shared detached: it is the child of a child that exits
 * at once, in a session of its own. */
static enum superv_result spawn_server(struct superv *superv, char *reterr, size_t reterr_len)
{
    enum superv_result result = SUPERV_OK;
    char text[SUPERV_ERRNO_TEXT];
    char *log_path = join_path(superv->shared_dir, SUPERV_SHARED_LOG_NAME);
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    int log_fd = -1;
    int status = 0;
    pid_t pid;

    if (!log_path) {
        result = superv_fail(superv, SUPERV_ERR_NOMEM, reterr, reterr_len, "out of memory");
        goto out;
    }
    if (access(superv->shared_server_path, X_OK) != 0) {
        result = superv_fail(superv, SUPERV_ERR_SPAWN, reterr, reterr_len,
                             "cannot execute %s: %s", superv->shared_server_path,
                             errno_text(errno, text, sizeof(text)));
        goto out;
    }
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (null_fd < 0 || log_fd < 0) {
        result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "open %s: %s",
                             null_fd < 0 ? "/dev/null" : log_path,
                             errno_text(errno, text, sizeof(text)));
        goto out;
    }
    pid = fork();
    if (pid == 0) {
        pid_t grandchild;

        (void)setsid();
        grandchild = fork();
        if (grandchild == 0)
            server_exec(superv->server_argv, null_fd, log_fd, SHARED_CLOSE_FALLBACK_MAX);
        _exit(grandchild < 0 ? 127 : 0);
    }
    if (pid < 0) {
        result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "fork: %s",
                             errno_text(errno, text, sizeof(text)));
        goto out;
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }

out:
    superv_close_fd(&null_fd);
    superv_close_fd(&log_fd);
    free(log_path);
    return result;
}

/* A connected socket in *ret_fd, or -1 and the errno. */
static int try_connect(const char *path, int *ret_fd)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    /* Non-blocking: a full backlog is EAGAIN, tried again, not a wait
     * without a deadline. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int err;

    *ret_fd = -1;
    if (fd < 0)
        return errno;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
        *ret_fd = fd;
        return 0;
    }
    err = errno;
    close(fd);
    return err;
}

enum superv_result superv_shared_connect(struct superv *superv, int64_t deadline, char *reterr,
                                         size_t reterr_len)
{
    enum superv_result result;
    char text[SUPERV_ERRNO_TEXT];
    char *path = join_path(superv->shared_dir, SUPERV_SHARED_SOCKET_NAME);
    bool spawned = false;
    pid_t peer = 0;
    int fd = -1;

    if (!path)
        return superv_fail(superv, SUPERV_ERR_NOMEM, reterr, reterr_len, "out of memory");
    result = check_dir(superv, reterr, reterr_len);
    if (result != SUPERV_OK)
        goto out;
    for (;;) {
        struct pollfd wake = {.fd = superv->wake_fd, .events = POLLIN};
        int err = try_connect(path, &fd);
        int64_t left;

        if (fd >= 0)
            break;
        if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN && err != EINTR) {
            result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len,
                                 "connect %s: %s", path, errno_text(err, text, sizeof(text)));
            goto out;
        }
        if (!spawned) {
            result = spawn_server(superv, reterr, reterr_len);
            if (result != SUPERV_OK)
                goto out;
            spawned = true;
        }
        left = deadline - now_ms();
        if (left <= 0) {
            result = superv_fail(superv, SUPERV_ERR_TIMEOUT, reterr, reterr_len,
                                 "the shared helper did not listen on %s in time (see %s/%s)",
                                 path, superv->shared_dir, SUPERV_SHARED_LOG_NAME);
            goto out;
        }
        if (poll(&wake, 1, left < SHARED_CONNECT_SLICE_MS ? (int)left : SHARED_CONNECT_SLICE_MS) >
                0 ||
            atomic_load(&superv->closed)) {
            set_reason(reterr, reterr_len, "interrupted");
            result = SUPERV_ERR_CLOSED;
            goto out;
        }
    }
    result = check_peer(superv, path, fd, &peer, reterr, reterr_len);
    if (result != SUPERV_OK)
        goto out;
    superv->stdout_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (superv->stdout_fd < 0) {
        result = superv_fail(superv, SUPERV_ERR_SYSTEM, reterr, reterr_len, "fcntl: %s",
                             errno_text(errno, text, sizeof(text)));
        superv_close_fd(&superv->stdout_fd);
        goto out;
    }
    /* Non-blocking, as the pipes of a helper of its own: the two
     * descriptors share the open file. */
    superv->stdin_fd = fd;
    fd = -1;
    superv->connected = true;
    superv_mark_started(superv, peer);

out:
    superv_close_fd(&fd);
    free(path);
    return result;
}

void superv_shared_disconnect(struct superv *superv)
{
    pthread_mutex_lock(&superv->lock);
    superv->health.pid = 0;
    pthread_mutex_unlock(&superv->lock);
    superv_close_fd(&superv->stdin_fd);
    superv_close_fd(&superv->stdout_fd);
    superv->connected = false;
}
