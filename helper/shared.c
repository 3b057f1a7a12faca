/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * tsd-helper-shared: one tsd-helper (one model in memory) for every
 * OctoPrint instance of one user on one host.
 *
 *   tsd-helper-shared --dir DIR --helper TSD_HELPER --config MODEL.yaml
 *       [--nice N] [--memory-bytes N] [--start-timeout-ms N] [--deadline-ms N]
 *       [--idle-exit-s N] [--queue N]
 *
 * The plugin's supervisor starts it in shared mode (native/core/superv.h:
 * detached, on the first frame of the first instance that needs it), or a
 * service manager runs it. It listens on DIR/helper.sock and runs tsd-helper
 * with native/core/superv.c exactly as a single instance does -- a child
 * with pipes, the seccomp sandbox of helper/sandbox.h, restarted after a
 * crash or a hang -- so untrusted JPEGs are still decoded only inside that
 * sandbox: this process parses the framing (helper/frame.c) and copies
 * bytes, it never decodes a frame.
 *
 * Trust: DIR must be this uid's with mode 0700; the socket is made 0600;
 * a connection from another uid (SO_PEERCRED) is closed unanswered. One
 * process per DIR: DIR/helper.lock is flock()ed for the whole life of the
 * process, so a second one started at the same time exits 0.
 *
 * Scheduling (native/core/fairq.h): each connection has a queue of --queue
 * frames (default 2; a new frame pushes the oldest out, answered LATE);
 * the helper scores one frame at a time, taking turns between connections;
 * a frame that cannot be scored before its client's deadline (told in the
 * hello) is answered LATE instead of scored late.
 *
 * Protocol: helper/README.md ("Sharing"). Exit: after --idle-exit-s
 * (default 300) without any connection, on SIGTERM/SIGINT/SIGHUP (status
 * 0), or status 2 on a usage, folder or socket error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "errtext.h"
#include "fairq.h"
#include "frame.h"
#include "lebytes.h"
#include "monotime.h"
#include "reply.h"
#include "superv.h"

#define SHARED_EXIT_USAGE 2
#define SHARED_READ_CHUNK (64u * 1024u)
/* Frames larger than this are refused (the helper's own default). */
#define SHARED_MAX_FRAME (8u * 1024u * 1024u)
/* Answers waiting for a client that does not read them. */
#define SHARED_MAX_OUTPUT (2u * 1024u * 1024u)
#define SHARED_DEFAULT_QUEUE 2u
/* How long a new process waits for the lock of one that is exiting. */
#define SHARED_LOCK_WAIT_MS 3000
#define SHARED_REASON 256u
#define SHARED_LOG_MAX (1024 * 1024)
/* How often the socket's file is checked (a cleaner may remove it). */
#define SHARED_SOCKET_CHECK_MS 5000

struct options {
    const char *dir;
    const char *helper;
    const char *config;
    int nice;
    uint64_t memory_bytes;
    int start_timeout_ms;
    int deadline_ms;
    int idle_exit_s;
    unsigned queue;
};

/* One connection; its index is its fairq slot. */
struct peer {
    int fd;                      /* -1: free */
    uint64_t serial;             /* tells a reused slot from the one a job was for */
    pid_t pid;
    struct frame_parser *parser;
    bool greeted;
    bool closing;                /* close once the output is sent */
    int deadline_ms;
    int start_timeout_ms;
    unsigned char *out;
    size_t out_len;
};

/* The request the worker thread scores, and its answer. Under hub.lock. */
struct job {
    bool pending;                /* handed to the worker */
    bool done;                   /* the answer is in */
    unsigned slot;
    uint64_t serial;
    struct fairq_item item;
    enum superv_result result;
    char *reply;
    size_t reply_len;
    char reason[SUPERV_REASON_SIZE];
    double took_ms;
};

struct hub {
    struct options opt;
    char config_real[PATH_MAX];
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int listen_fd;
    ino_t socket_ino;            /* of the file bound, to notice it replaced or gone */
    int signal_fd;
    int done_fd;                 /* eventfd: the worker has an answer */
    int lock_fd;
    struct superv *superv;
    struct fairq *queue;
    struct peer peers[FAIRQ_MAX_CLIENTS];
    unsigned peer_count;
    uint64_t next_serial;
    unsigned char *input;

    pthread_t worker;
    bool worker_started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;                   /* under lock */
    struct job job;              /* under lock */

    /* The main thread only. */
    bool busy;                   /* a job is with the worker */
    bool warm;                   /* the helper answered since it last failed */
    double estimate_ms;          /* moving average of one scoring */
    int64_t idle_since_ms;
};

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32] = "";

    if (localtime_r(&now, &tm))
        strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s tsd-helper-shared[%ld]: %s\n", stamp, (long)getpid(), line);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* ---- options ------------------------------------------------------------------- */

static bool parse_int(const char *text, long long min, long long max, long long *ret)
{
    char *end = NULL;
    long long value;

    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || !end || *end != '\0' || end == text || value < min || value > max)
        return false;
    *ret = value;
    return true;
}

static bool parse_options(int argc, char **argv, struct options *opt)
{
    *opt = (struct options){.nice = -1, .queue = SHARED_DEFAULT_QUEUE,
                            .idle_exit_s = SUPERV_SHARED_DEFAULT_IDLE_EXIT_S};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *name = argv[i];
        const char *value = argv[i + 1];
        long long n = 0;

        if (strcmp(name, "--dir") == 0)
            opt->dir = value;
        else if (strcmp(name, "--helper") == 0)
            opt->helper = value;
        else if (strcmp(name, "--config") == 0)
            opt->config = value;
        else if (strcmp(name, "--nice") == 0 && parse_int(value, -1, 19, &n))
            opt->nice = (int)n;
        else if (strcmp(name, "--memory-bytes") == 0) {
            char *end = NULL;
            errno = 0;
            opt->memory_bytes = strtoull(value, &end, 10);
            if (errno != 0 || !end || *end != '\0' || end == value)
                return false;
        } else if (strcmp(name, "--start-timeout-ms") == 0 &&
                   parse_int(value, 0, SUPERV_MAX_TIMEOUT_MS, &n))
            opt->start_timeout_ms = (int)n;
        else if (strcmp(name, "--deadline-ms") == 0 &&
                 parse_int(value, 0, SUPERV_MAX_TIMEOUT_MS, &n))
            opt->deadline_ms = (int)n;
        else if (strcmp(name, "--idle-exit-s") == 0 && parse_int(value, 1, 7 * 24 * 3600, &n))
            opt->idle_exit_s = (int)n;
        else if (strcmp(name, "--queue") == 0 && parse_int(value, 1, FAIRQ_MAX_DEPTH, &n))
            opt->queue = (unsigned)n;
        else
            return false;
    }
    return argc % 2 == 1 && opt->dir && opt->helper && opt->config && opt->dir[0] == '/' &&
           opt->helper[0] == '/' && strlen(opt->dir) <= SUPERV_SHARED_MAX_DIR;
}

/* ---- answers ---------------------------------------------------------------------- */

static void peer_close(struct hub *hub, unsigned slot)
{
    struct peer *peer = &hub->peers[slot];

    if (peer->fd < 0)
        return;
    close_fd(&peer->fd);
    peer->parser = frame_parser_free(peer->parser);
    free(peer->out);
    peer->out = NULL;
    peer->out_len = 0;
    fairq_remove_client(hub->queue, slot);
    hub->peer_count--;
    if (hub->peer_count == 0)
        hub->idle_since_ms = now_ms();
}

/* Sends what it can of the peer's output without blocking. */
static void peer_flush(struct hub *hub, unsigned slot)
{
    struct peer *peer = &hub->peers[slot];

    while (peer->fd >= 0 && peer->out_len > 0) {
        ssize_t n = send(peer->fd, peer->out, peer->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            peer_close(hub, slot);
            return;
        }
        memmove(peer->out, peer->out + n, peer->out_len - (size_t)n);
        peer->out_len -= (size_t)n;
    }
    if (peer->fd >= 0 && peer->closing && peer->out_len == 0)
        peer_close(hub, slot);
}

static void answer(struct hub *hub, unsigned slot, uint8_t type, uint32_t id, const void *payload,
                   size_t len)
{
    struct peer *peer = &hub->peers[slot];
    unsigned char *grown;

    if (peer->fd < 0)
        return;
    if (peer->out_len + FRAME_HEADER_LEN + len > SHARED_MAX_OUTPUT) {
        say("connection of pid %ld does not read its answers; closed", (long)peer->pid);
        peer_close(hub, slot);
        return;
    }
    grown = realloc(peer->out, peer->out_len + FRAME_HEADER_LEN + len);
    if (!grown) {
        peer_close(hub, slot);
        return;
    }
    peer->out = grown;
    frame_header_encode(peer->out + peer->out_len, FRAME_RESPONSE_MAGIC, type, id,
                        (uint32_t)len);
    if (len > 0)
        memcpy(peer->out + peer->out_len + FRAME_HEADER_LEN, payload, len);
    peer->out_len += FRAME_HEADER_LEN + len;
    peer_flush(hub, slot);
}

__attribute__((format(printf, 4, 5)))
static void answer_late(struct hub *hub, unsigned slot, uint32_t id, const char *fmt, ...)
{
    char why[SHARED_REASON];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    answer(hub, slot, FRAME_RESPONSE_LATE, id, why, strlen(why));
}

static void answer_failed(struct hub *hub, unsigned slot, uint32_t id,
                          enum superv_result result, const char *why)
{
    unsigned char payload[1 + SHARED_REASON];
    size_t len = strnlen(why, SHARED_REASON);

    payload[0] = (unsigned char)result;
    memcpy(payload + 1, why, len);
    answer(hub, slot, FRAME_RESPONSE_FAILED, id, payload, 1 + len);
}

/* A failure that ends the connection: marked closing first, so that the
 * flush which sends the answer also closes it (marked after, a connection
 * whose answer went out at once stayed open until its client hung up). */
static void refuse(struct hub *hub, unsigned slot, uint32_t id, enum superv_result result,
                   const char *why)
{
    hub->peers[slot].closing = true;
    answer_failed(hub, slot, id, result, why);
}

static void answer_error(struct hub *hub, unsigned slot, uint32_t id, const char *why)
{
    char json[REPLY_ERROR_BYTES];
    size_t len = 0;

    if (reply_error(json, sizeof(json), id, why, &len) == REPLY_OK)
        answer(hub, slot, FRAME_RESPONSE_ERROR, id, json, len);
}

/* ---- requests ----------------------------------------------------------------------- */

static void handle_hello(struct hub *hub, unsigned slot, uint32_t id,
                         const unsigned char *payload, size_t len)
{
    struct peer *peer = &hub->peers[slot];
    struct frame_hello hello;
    char asked_real[PATH_MAX];
    char why[SHARED_REASON];

    switch (frame_hello_parse(payload, len, SUPERV_MAX_TIMEOUT_MS, &hello)) {
    case FRAME_HELLO_OK:
        break;
    case FRAME_HELLO_OUT_OF_RANGE:
        refuse(hub, slot, id, SUPERV_ERR_INVALID, "deadlines out of range");
        return;
    case FRAME_HELLO_MALFORMED:
    default:
        refuse(hub, slot, id, SUPERV_ERR_PROTOCOL, "a malformed hello");
        return;
    }
    /* One model per shared helper: an instance that wants another one is
     * told so instead of being scored by the wrong model. */
    if (!realpath(hello.config_path, asked_real) || strcmp(asked_real, hub->config_real) != 0) {
        snprintf(why, sizeof(why), "this shared helper serves the model of %.100s, not %.100s",
                 hub->config_real, hello.config_path);
        refuse(hub, slot, id, SUPERV_ERR_CONFIG, why);
        return;
    }
    peer->deadline_ms = (int)hello.deadline_ms;
    peer->start_timeout_ms = (int)hello.start_timeout_ms;
    peer->greeted = true;
    answer(hub, slot, FRAME_RESPONSE_PONG, id, NULL, 0);
}

static void queue_request(struct hub *hub, unsigned slot, const struct frame_header *h,
                          const unsigned char *payload)
{
    struct peer *peer = &hub->peers[slot];
    struct fairq_item item = {.id = h->id, .type = h->type, .arrived_ms = now_ms()};
    struct fairq_item dropped;
    bool has_dropped = false;

    if (h->type == FRAME_REQUEST_JPEG) {
        int timeout = hub->warm ? peer->deadline_ms : peer->start_timeout_ms;
        /* Answer before the client gives up: a margin for the way back. */
        int margin = timeout / 20 > 20 ? timeout / 20 : 20;

        item.due_ms = item.arrived_ms + timeout - margin;
        item.payload = malloc(h->length);
        if (!item.payload) {
            answer_error(hub, slot, h->id, "out of memory for the frame");
            return;
        }
        memcpy(item.payload, payload, h->length);
        item.len = h->length;
    }
    if (fairq_push(hub->queue, slot, &item, &dropped, &has_dropped) != FAIRQ_OK) {
        fairq_item_clear(&item);
        answer_error(hub, slot, h->id, "cannot queue the request");
        return;
    }
    if (has_dropped) {
        answer_late(hub, slot, dropped.id, "dropped: newer frames of this instance came in");
        fairq_item_clear(&dropped);
    }
}

static void handle_event(struct hub *hub, unsigned slot, const struct frame_event *event)
{
    struct peer *peer = &hub->peers[slot];
    const struct frame_header *h = &event->header;

    if (event->kind == FRAME_EVENT_OVERSIZED) {
        answer_error(hub, slot, h->id, "frame larger than the shared helper takes");
        return;
    }
    if (event->kind != FRAME_EVENT_FRAME)
        return;
    if (!peer->greeted) {
        if (h->type == FRAME_REQUEST_HELLO) {
            handle_hello(hub, slot, h->id, event->payload, h->length);
        } else {
            refuse(hub, slot, h->id, SUPERV_ERR_PROTOCOL, "hello first");
        }
        return;
    }
    if (h->type == FRAME_REQUEST_JPEG || h->type == FRAME_REQUEST_PING)
        queue_request(hub, slot, h, event->payload);
    else
        answer_error(hub, slot, h->id, "unknown request type");
}

static void peer_read(struct hub *hub, unsigned slot)
{
    struct peer *peer = &hub->peers[slot];
    ssize_t n = read(peer->fd, hub->input, SHARED_READ_CHUNK);
    size_t off = 0;

    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        peer_close(hub, slot);
        return;
    }
    while (off < (size_t)n && peer->fd >= 0 && !peer->closing) {
        struct frame_event event;
        size_t used = 0;

        if (frame_parser_feed(peer->parser, hub->input + off, (size_t)n - off, &used, &event) !=
            FRAME_OK) {
            say("bad framing from pid %ld; connection closed", (long)peer->pid);
            peer_close(hub, slot);
            return;
        }
        off += used;
        handle_event(hub, slot, &event);
    }
}

static void accept_peers(struct hub *hub)
{
    for (;;) {
        int fd = accept4(hub->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
        socklen_t cred_len = sizeof(cred);
        unsigned slot = 0;
        struct peer *peer;

        if (fd < 0)
            return;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0 ||
            cred.uid != geteuid()) {
            say("refused a connection from uid %ld (this helper is uid %ld's)",
                (long)cred.uid, (long)geteuid());
            close(fd);
            continue;
        }
        if (fairq_add_client(hub->queue, &slot) != FAIRQ_OK) {
            say("too many connections; refused one from pid %ld", (long)cred.pid);
            close(fd);
            continue;
        }
        peer = &hub->peers[slot];
        *peer = (struct peer){.fd = fd, .serial = ++hub->next_serial, .pid = cred.pid};
        if (frame_parser_new(SHARED_MAX_FRAME, &peer->parser) != FRAME_OK) {
            close_fd(&peer->fd);
            fairq_remove_client(hub->queue, slot);
            continue;
        }
        hub->peer_count++;
    }
}

/* ---- the worker --------------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct hub *hub = arg;
    uint64_t one = 1;

    pthread_mutex_lock(&hub->lock);
    for (;;) {
        struct job *job = &hub->job;
        enum superv_result result;
        char *reply = NULL;
        size_t reply_len = 0;
        char reason[SUPERV_REASON_SIZE] = "";
        double started;

        while (!hub->stop && !(job->pending && !job->done))
            pthread_cond_wait(&hub->wake, &hub->lock);
        if (hub->stop)
            break;
        pthread_mutex_unlock(&hub->lock);
        started = now_ms_precise();
        if (job->item.type == FRAME_REQUEST_JPEG)
            result = superv_detect(hub->superv, job->item.payload, job->item.len, &reply,
                                   &reply_len, reason, sizeof(reason));
        else
            result = superv_ping(hub->superv, reason, sizeof(reason));
        pthread_mutex_lock(&hub->lock);
        job->result = result;
        job->reply = reply;
        job->reply_len = reply_len;
        memcpy(job->reason, reason, sizeof(reason));
        job->took_ms = now_ms_precise() - started;
        job->done = true;
        (void)!write(hub->done_fd, &one, sizeof(one));
    }
    pthread_mutex_unlock(&hub->lock);
    return NULL;
}

/* The worker's answer, to the connection it was for (if still there). */
static void collect(struct hub *hub)
{
    struct job job;
    uint64_t count;
    struct peer *peer;

    (void)!read(hub->done_fd, &count, sizeof(count));
    pthread_mutex_lock(&hub->lock);
    if (!hub->job.done) {
        pthread_mutex_unlock(&hub->lock);
        return;
    }
    job = hub->job;
    memset(&hub->job, 0, sizeof(hub->job));
    pthread_mutex_unlock(&hub->lock);
    hub->busy = false;

    if (job.result == SUPERV_OK || job.result == SUPERV_ERR_REFUSED) {
        if (job.item.type == FRAME_REQUEST_JPEG) {
            hub->estimate_ms = hub->estimate_ms == 0
                                   ? job.took_ms
                                   : 0.7 * hub->estimate_ms + 0.3 * job.took_ms;
        }
        hub->warm = true;
    } else if (job.result != SUPERV_ERR_CLOSED) {
        hub->warm = false;
        if (job.result != SUPERV_ERR_BACKOFF) /* said when it failed */
            say("helper: %s", job.reason);
    }
    peer = &hub->peers[job.slot];
    if (peer->fd >= 0 && peer->serial == job.serial) {
        if (job.result == SUPERV_OK && job.item.type == FRAME_REQUEST_JPEG)
            answer(hub, job.slot, FRAME_RESPONSE_DETECTIONS, job.item.id, job.reply,
                   job.reply_len);
        else if (job.result == SUPERV_OK)
            answer(hub, job.slot, FRAME_RESPONSE_PONG, job.item.id, NULL, 0);
        else if (job.result == SUPERV_ERR_REFUSED && job.reply)
            answer(hub, job.slot, FRAME_RESPONSE_ERROR, job.item.id, job.reply, job.reply_len);
        else
            answer_failed(hub, job.slot, job.item.id, job.result, job.reason);
    }
    free(job.reply);
    fairq_item_clear(&job.item);
}

/* Hands the next request, in turn, to the worker; answers the late ones. */
static void dispatch(struct hub *hub)
{
    int64_t estimate = hub->warm ? (int64_t)hub->estimate_ms : 0;
    struct fairq_item item;
    unsigned slot = 0;
    bool late = false;

    while (!hub->busy && fairq_next(hub->queue, now_ms(), estimate, &slot, &item, &late)) {
        if (late) {
            answer_late(hub, slot, item.id,
                        "late: it could not be scored within this instance's deadline "
                        "(one frame takes about %" PRId64 " ms)", estimate);
            fairq_item_clear(&item);
            continue;
        }
        pthread_mutex_lock(&hub->lock);
        hub->job = (struct job){.pending = true, .slot = slot,
                                .serial = hub->peers[slot].serial, .item = item};
        pthread_cond_signal(&hub->wake);
        pthread_mutex_unlock(&hub->lock);
        hub->busy = true;
    }
}

static void expire(struct hub *hub)
{
    int64_t estimate = hub->warm ? (int64_t)hub->estimate_ms : 0;
    struct fairq_item item;
    unsigned slot = 0;

    while (fairq_expire(hub->queue, now_ms(), estimate, &slot, &item)) {
        answer_late(hub, slot, item.id,
                    "late: waiting for its turn, it could not be scored within this "
                    "instance's deadline");
        fairq_item_clear(&item);
    }
}

/* ---- setting up ------------------------------------------------------------------- */

static bool check_dir(const char *dir)
{
    struct stat st;
    char text[128];

    if (lstat(dir, &st) != 0) {
        say("%s: %s", dir, errno_text(errno, text, sizeof(text)));
        return false;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        say("%s must be a directory of uid %ld with mode 0700 (uid %ld, mode %04o)", dir,
            (long)geteuid(), (long)st.st_uid, (unsigned)(st.st_mode & 07777));
        return false;
    }
    return true;
}

/* True when a process listens on DIR's socket. */
static bool someone_listens(const struct hub *hub)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool listening;

    if (fd < 0)
        return false;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", hub->opt.dir,
             SUPERV_SHARED_SOCKET_NAME);
    listening = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return listening;
}

enum lock_outcome {
    LOCK_TAKEN = 0,
    LOCK_HELD_ELSEWHERE, /* another process serves DIR */
    LOCK_FAILED,         /* the lock file cannot be opened or locked */
};

/* The lock of DIR: held elsewhere when another process holds it and
 * listens, or holds it for longer than one that is starting or exiting
 * would. */
static enum lock_outcome take_lock(struct hub *hub)
{
    char path[PATH_MAX];
    char text[128];
    int64_t until = now_ms() + SHARED_LOCK_WAIT_MS;

    snprintf(path, sizeof(path), "%s/%s", hub->opt.dir, SUPERV_SHARED_LOCK_NAME);
    hub->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (hub->lock_fd < 0) {
        say("%s: %s", path, errno_text(errno, text, sizeof(text)));
        return LOCK_FAILED;
    }
    while (flock(hub->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        struct timespec slice = {.tv_nsec = 50 * 1000000L};
        if (errno != EWOULDBLOCK && errno != EINTR) {
            say("flock %s: %s", path, errno_text(errno, text, sizeof(text)));
            return LOCK_FAILED;
        }
        if (now_ms() >= until || someone_listens(hub))
            return LOCK_HELD_ELSEWHERE;
        nanosleep(&slice, NULL);
    }
    return LOCK_TAKEN;
}

static ino_t socket_ino(const struct hub *hub);

static bool listen_on(struct hub *hub)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char text[128];

    snprintf(hub->socket_path, sizeof(hub->socket_path), "%s/%s", hub->opt.dir,
             SUPERV_SHARED_SOCKET_NAME);
    memcpy(addr.sun_path, hub->socket_path, sizeof(addr.sun_path));
    /* A socket left by a process that died: ours, since the lock is. */
    if (unlink(hub->socket_path) != 0 && errno != ENOENT) {
        say("unlink %s: %s", hub->socket_path, errno_text(errno, text, sizeof(text)));
        return false;
    }
    hub->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (hub->listen_fd < 0 ||
        bind(hub->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        chmod(hub->socket_path, 0600) != 0 || listen(hub->listen_fd, FAIRQ_MAX_CLIENTS) != 0) {
        say("cannot listen on %s: %s", hub->socket_path, errno_text(errno, text, sizeof(text)));
        return false;
    }
    hub->socket_ino = socket_ino(hub);
    return true;
}

/* The socket file's inode; 0 when it is gone or not a socket. */
static ino_t socket_ino(const struct hub *hub)
{
    struct stat st;

    if (lstat(hub->socket_path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return 0;
    return st.st_ino;
}

/* A socket file removed (a cleaner of /tmp) or replaced leaves new
 * instances unable to reach this process, which holds the lock, so no other
 * can take over: listen again on a new file. */
static bool keep_socket(struct hub *hub)
{
    ino_t ino = socket_ino(hub);

    if (ino != 0 && ino == hub->socket_ino)
        return true;
    say("%s was removed or replaced; listening on a new one", hub->socket_path);
    close_fd(&hub->listen_fd);
    return listen_on(hub);
}

static bool start_worker(struct hub *hub)
{
    struct superv_config config;
    char reason[SUPERV_REASON_SIZE] = "";

    superv_config_init(&config);
    config.helper_path = hub->opt.helper;
    config.config_path = hub->config_real;
    config.nice_increment = hub->opt.nice;
    config.memory_limit_bytes = hub->opt.memory_bytes;
    config.start_timeout_ms = hub->opt.start_timeout_ms;
    config.deadline_ms = hub->opt.deadline_ms;
    if (superv_new(&config, &hub->superv, reason, sizeof(reason)) != SUPERV_OK) {
        say("%s", reason);
        return false;
    }
    if (fairq_new(hub->opt.queue, &hub->queue) != FAIRQ_OK)
        return false;
    hub->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    hub->input = malloc(SHARED_READ_CHUNK);
    if (hub->done_fd < 0 || !hub->input)
        return false;
    if (pthread_create(&hub->worker, NULL, worker_main, hub) != 0)
        return false;
    hub->worker_started = true;
    return true;
}

static void stop_worker(struct hub *hub)
{
    if (!hub->worker_started)
        return;
    pthread_mutex_lock(&hub->lock);
    hub->stop = true;
    pthread_cond_signal(&hub->wake);
    pthread_mutex_unlock(&hub->lock);
    superv_interrupt(hub->superv); /* a call in progress returns at once */
    pthread_join(hub->worker, NULL);
    free(hub->job.reply);
    fairq_item_clear(&hub->job.item);
}

/* ---- the loop ------------------------------------------------------------------------- */

static void serve(struct hub *hub)
{
    int64_t next_check = now_ms() + SHARED_SOCKET_CHECK_MS;

    hub->idle_since_ms = now_ms();
    for (;;) {
        struct pollfd fds[3 + FAIRQ_MAX_CLIENTS];
        unsigned slots[FAIRQ_MAX_CLIENTS];
        nfds_t count = 3;
        int64_t now = now_ms();
        int64_t wait = -1;
        int64_t due = fairq_earliest_due(hub->queue);
        int ready;

        if (hub->peer_count == 0) {
            int64_t idle_end = hub->idle_since_ms + (int64_t)hub->opt.idle_exit_s * 1000;
            if (now >= idle_end) {
                say("no instance for %d s; exiting", hub->opt.idle_exit_s);
                return;
            }
            wait = idle_end - now;
        }
        if (now >= next_check) {
            if (!keep_socket(hub))
                return;
            next_check = now + SHARED_SOCKET_CHECK_MS;
        }
        if (wait < 0 || next_check - now < wait)
            wait = next_check - now;
        if (due != 0) {
            int64_t until = due - (hub->warm ? (int64_t)hub->estimate_ms : 0) - now;
            if (until < 0)
                until = 0;
            if (wait < 0 || until < wait)
                wait = until + 1;
        }
        fds[0] = (struct pollfd){.fd = hub->signal_fd, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = hub->done_fd, .events = POLLIN};
        fds[2] = (struct pollfd){.fd = hub->listen_fd, .events = POLLIN};
        for (unsigned slot = 0; slot < FAIRQ_MAX_CLIENTS; slot++) {
            struct peer *peer = &hub->peers[slot];
            if (peer->fd < 0)
                continue;
            fds[count] = (struct pollfd){
                .fd = peer->fd,
                .events = (short)((peer->closing ? 0 : POLLIN) | (peer->out_len ? POLLOUT : 0))};
            slots[count - 3] = slot;
            count++;
        }
        ready = poll(fds, count, wait > INT32_MAX ? INT32_MAX : (int)wait);
        if (ready < 0 && errno != EINTR) {
            say("poll failed; exiting");
            return;
        }
        if (ready > 0 && fds[0].revents) {
            say("signalled; exiting");
            return;
        }
        if (ready > 0 && fds[1].revents)
            collect(hub);
        if (ready > 0 && fds[2].revents)
            accept_peers(hub);
        for (nfds_t i = 3; ready > 0 && i < count; i++) {
            unsigned slot = slots[i - 3];
            if (fds[i].revents & POLLOUT)
                peer_flush(hub, slot);
            if (hub->peers[slot].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                peer_read(hub, slot);
        }
        expire(hub);
        dispatch(hub);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tsd-helper-shared --dir DIR --helper TSD_HELPER --config MODEL.yaml "
            "[--nice N] [--memory-bytes N] [--start-timeout-ms N] [--deadline-ms N] "
            "[--idle-exit-s N] [--queue N]\n");
}

int main(int argc, char **argv)
{
    static struct hub hub; /* large: keep it off the stack */
    int status = SHARED_EXIT_USAGE;
    sigset_t signals;
    struct sigaction ignore = {.sa_handler = SIG_IGN};

    hub.listen_fd = hub.signal_fd = hub.done_fd = hub.lock_fd = -1;
    for (unsigned i = 0; i < FAIRQ_MAX_CLIENTS; i++)
        hub.peers[i].fd = -1;
    pthread_mutex_init(&hub.lock, NULL);
    pthread_cond_init(&hub.wake, NULL);
    if (!parse_options(argc, argv, &hub.opt)) {
        usage();
        goto out;
    }
    umask(077);
    sigaction(SIGPIPE, &ignore, NULL);
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    /* Whatever the starter blocked, only these three wait in the signalfd;
     * the worker thread inherits the mask. */
    pthread_sigmask(SIG_SETMASK, &signals, NULL);
    hub.signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (hub.signal_fd < 0 || !check_dir(hub.opt.dir))
        goto out;
    switch (take_lock(&hub)) {
    case LOCK_TAKEN:
        break;
    case LOCK_HELD_ELSEWHERE:
        status = 0; /* another one serves DIR */
        goto out;
    case LOCK_FAILED:
        goto out;
    }
    /* Its log is appended to by every start: kept to the last run once it grows. */
    {
        struct stat st;
        if (fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > SHARED_LOG_MAX)
            (void)!ftruncate(STDERR_FILENO, 0);
    }
    if (!realpath(hub.opt.config, hub.config_real)) {
        say("the model configuration %s cannot be found", hub.opt.config);
        goto out;
    }
    if (!listen_on(&hub))
        goto out;
    if (!start_worker(&hub))
        goto out;
    say("listening on %s for uid %ld (model %s)", hub.socket_path, (long)geteuid(),
        hub.config_real);
    serve(&hub);
    status = 0;

out:
    if (hub.listen_fd >= 0) {
        /* Ours to remove: the lock is held. Then the lock goes, so that a
         * new process can take over while the helper below exits. */
        close_fd(&hub.listen_fd);
        unlink(hub.socket_path);
    }
    close_fd(&hub.lock_fd);
    stop_worker(&hub);
    for (unsigned slot = 0; slot < FAIRQ_MAX_CLIENTS; slot++)
        if (hub.queue)
            peer_close(&hub, slot);
    hub.superv = superv_free(hub.superv);
    hub.queue = fairq_free(hub.queue);
    free(hub.input);
    close_fd(&hub.done_fd);
    close_fd(&hub.signal_fd);
    return status;
}
