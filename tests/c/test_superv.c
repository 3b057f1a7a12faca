/* SPDX-License-Identifier: AGPL-3.0-or-later
 * Tests of native/core/superv.c: the supervisor of tsd-helper.
 *
 * Fake helpers are shell scripts written into a temporary folder: one that
 * exits 2 with a message (configuration error), one that hangs, ones that
 * exit or are killed at once, one that echoes its input (`cat`: the magic is
 * wrong), ones that answer with hand-made frames (printf), and a path that
 * does not exist. They check results, health counters, the backoff, deadline
 * kills without zombies, interruption from another thread, SIGPIPE, the
 * child's limits and descriptors, and descriptor leaks.
 *
 * meson passes TSD_HELPER (the built tsd-helper); with it, the real helper
 * runs with a missing model (configuration error) and with a tiny Darknet
 * model written here (a JPEG round trip). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "check.h"
#include "superv.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* A descriptor the test leaves open without O_CLOEXEC: the child must not
 * inherit it. */
#define STRAY_FD 77
#define LIMIT_BYTES (512ull * 1024 * 1024)

static char dir[128];
static int fds_before;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *entry;
    int count = 0;

    if (!d)
        return -1;
    while ((entry = readdir(d)) != NULL) {
        if (entry->d_name[0] != '.')
            count++;
    }
    closedir(d);
    return count - 1; /* the DIR's own descriptor */
}

static void path_in_dir(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static void write_file(const char *name, const void *data, size_t len, mode_t mode)
{
    char path[256];
    int fd;

    path_in_dir(path, sizeof(path), name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len)
        abort();
    close(fd);
}

static void write_script(const char *name, const char *body)
{
    char text[1024];
    int n = snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);

    if (n < 0 || (size_t)n >= sizeof(text))
        abort();
    write_file(name, text, (size_t)n, 0755);
}

static void write_scripts(void)
{
    char body[512];

    write_script("config.sh", "echo 'model: cannot open x' >&2\nexit 2");
    snprintf(body, sizeof(body), "echo $$ > %s/hung.pid\nexec sleep 1000", dir);
    write_script("hung.sh", body);
    write_script("crash.sh", "exit 1");
    write_script("signal.sh", "kill -9 $$");
    write_script("cat.sh", "exec cat");
    write_script("close_stdout.sh", "exec 1>&-\nexec sleep 1000");
    /* Answers one ping (id 1) with a pong, then exits. */
    write_script("pong_exit.sh",
                 "head -c 16 >/dev/null\n"
                 "printf 'TSDR\\001\\002\\000\\000\\001\\000\\000\\000\\000\\000\\000\\000'\n"
                 "exit 0");
    /* Answers request 1 (4 bytes of payload) with an error, then goes on. */
    write_script("refuse.sh",
                 "head -c 20 >/dev/null\n"
                 "printf 'TSDR\\001\\003\\000\\000\\001\\000\\000\\000\\016\\000\\000\\000"
                 "{\"id\":1,\"e\":1}'\n"
                 "exec cat >/dev/null");
    /* Answers request 1 with detections of 14 bytes. */
    write_script("detect14.sh",
                 "head -c 20 >/dev/null\n"
                 "printf 'TSDR\\001\\001\\000\\000\\001\\000\\000\\000\\016\\000\\000\\000"
                 "{\"id\":1,\"d\":1}'\n"
                 "exec cat >/dev/null");
    /* Answers a ping with a pong of the wrong id. */
    write_script("wrong_id.sh",
                 "head -c 16 >/dev/null\n"
                 "printf 'TSDR\\001\\002\\000\\000\\007\\000\\000\\000\\000\\000\\000\\000'\n"
                 "exec cat >/dev/null");
    /* Reports its nice value, address-space limit and the stray descriptor. */
    snprintf(body, sizeof(body),
             "echo \"nice=$(cut -d' ' -f19 /proc/$$/stat) as=$(ulimit -v) "
             "fd%d=$(if [ -e /proc/$$/fd/%d ]; then echo open; else echo closed; fi) "
             "args=$*\" >&2\nexit 2",
             STRAY_FD, STRAY_FD);
    write_script("limits.sh", body);
}

static struct superv *make(const char *script, int timeout_ms, int backoff_min_ms,
                           int backoff_max_ms)
{
    struct superv_config config;
    struct superv *superv = NULL;
    char helper[256];
    char cfg[256];
    char err[SUPERV_REASON_SIZE] = "";
    enum superv_result rc;

    path_in_dir(helper, sizeof(helper), script);
    path_in_dir(cfg, sizeof(cfg), "unused.yaml");
    superv_config_init(&config);
    config.helper_path = helper;
    config.config_path = cfg;
    config.start_timeout_ms = timeout_ms;
    config.deadline_ms = timeout_ms;
    config.backoff_min_ms = backoff_min_ms;
    config.backoff_max_ms = backoff_max_ms;
    rc = superv_new(&config, &superv, err, sizeof(err));
    CHECK(rc == SUPERV_OK);
    if (rc != SUPERV_OK) {
        printf("#   superv_new: %s\n", err);
        abort();
    }
    return superv;
}

static bool was_reaped(pid_t pid)
{
    char path[64];

    snprintf(path, sizeof(path), "/proc/%ld", (long)pid);
    /* Not our child any more, and gone from /proc (no zombie). */
    return waitpid(pid, NULL, WNOHANG) == -1 && errno == ECHILD && access(path, F_OK) != 0;
}

static pid_t read_pid_file(const char *name)
{
    char path[256];
    char text[32] = "";
    FILE *file;

    path_in_dir(path, sizeof(path), name);
    file = fopen(path, "re");
    if (!file)
        return -1;
    if (!fgets(text, sizeof(text), file))
        text[0] = '\0';
    fclose(file);
    return (pid_t)strtol(text, NULL, 10);
}

/* ---- the tests ------------------------------------------------------------------ */

static void test_strings_and_null(void)
{
    struct superv_config config;
    struct superv *superv = NULL;
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";

    for (int r = 0; r <= SUPERV_RESULT_MAX; r++)
        CHECK(superv_result_str((enum superv_result)r) != NULL);
    for (int s = 0; s <= SUPERV_STATE_MAX; s++)
        CHECK(superv_state_str((enum superv_state)s) != NULL);
    CHECK(superv_free(NULL) == NULL);
    superv_stop(NULL);
    superv_interrupt(NULL);
    superv_get_health(NULL, &health);
    CHECK(health.last_exit_status == -1);

    superv_config_init(&config);
    CHECK(config.nice_increment == -1);
    config.helper_path = "relative/tsd-helper";
    config.config_path = "x.yaml";
    CHECK(superv_new(&config, &superv, err, sizeof(err)) == SUPERV_ERR_INVALID);
    CHECK(superv == NULL && err[0] != '\0');
    config.helper_path = "/bin/true";
    config.backoff_min_ms = 500;
    config.backoff_max_ms = 100;
    CHECK(superv_new(&config, &superv, err, sizeof(err)) == SUPERV_ERR_INVALID);
    config.backoff_max_ms = 0;
    config.nice_increment = 20;
    CHECK(superv_new(&config, &superv, err, sizeof(err)) == SUPERV_ERR_INVALID);
    CHECK(superv == NULL);

    superv = make("crash.sh", 1000, 50, 1000);
    CHECK(superv_detect(superv, NULL, 0, NULL, NULL, err, sizeof(err)) == SUPERV_ERR_INVALID);
    superv_get_health(superv, &health);
    CHECK(health.state == SUPERV_STATE_IDLE && health.starts == 0 && health.pid == 0);
    CHECK(health.last_exit_status == -1 && health.last_error[0] == '\0');
    superv_stop(superv); /* nothing started: a no-op */
    superv = superv_free(superv);
}

static void test_config_error(void)
{
    struct superv *superv = make("config.sh", 5000, 50, 3000);
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";
    int64_t started = now_ms();

    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CONFIG);
    CHECK(now_ms() - started < 2000);
    CHECK(strcmp(err, "helper exited with status 2: model: cannot open x") == 0);
    superv_get_health(superv, &health);
    CHECK(health.config_errors == 1 && health.crashes == 0 && health.starts == 1);
    CHECK(health.last_exit_status == 2 && health.last_signal == 0);
    CHECK(health.state == SUPERV_STATE_BACKOFF);
    CHECK(health.backoff_left_ms > 2000 && health.backoff_left_ms <= 3000);
    CHECK(strstr(health.stderr_tail, "model: cannot open x\n") != NULL);
    CHECK(strcmp(health.last_error, err) == 0);
    /* A configuration error waits backoff_max_ms: still refused. */
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_BACKOFF);
    /* superv_stop() clears the backoff: the next call starts again. */
    superv_stop(superv);
    superv_get_health(superv, &health);
    CHECK(health.state == SUPERV_STATE_IDLE);
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CONFIG);
    superv_get_health(superv, &health);
    CHECK(health.config_errors == 2 && health.starts == 2);
    superv = superv_free(superv);
}

static void test_timeout_backoff_restart(void)
{
    struct superv *superv = make("hung.sh", 200, 50, 1000);
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";
    unsigned char jpeg[4] = {0xff, 0xd8, 0xff, 0xd9};
    char *json = NULL;
    size_t json_len = 0;
    int64_t started = now_ms();
    int64_t elapsed;
    pid_t pid;

    CHECK(superv_detect(superv, jpeg, sizeof(jpeg), &json, &json_len, err, sizeof(err)) ==
          SUPERV_ERR_TIMEOUT);
    elapsed = now_ms() - started;
    printf("# timeout after %lld ms: %s\n", (long long)elapsed, err);
    CHECK(elapsed >= 190 && elapsed < 350);
    CHECK(json == NULL);
    CHECK(strstr(err, "200 ms") != NULL);
    pid = read_pid_file("hung.pid");
    CHECK(pid > 0 && was_reaped(pid));
    superv_get_health(superv, &health);
    CHECK(health.timeouts == 1 && health.starts == 1 && health.pid == 0);
    CHECK(health.last_signal == SIGKILL && health.last_exit_status == -1);
    CHECK(health.state == SUPERV_STATE_BACKOFF);
    CHECK(health.backoff_left_ms > 0 && health.backoff_left_ms <= 50);

    /* During the backoff: refused at once, nothing started. */
    started = now_ms();
    CHECK(superv_detect(superv, jpeg, sizeof(jpeg), &json, &json_len, err, sizeof(err)) ==
          SUPERV_ERR_BACKOFF);
    CHECK(now_ms() - started < 50);
    superv_get_health(superv, &health);
    CHECK(health.starts == 1);

    /* After it: a new helper, which times out again; the backoff doubles. */
    sleep_ms(60);
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_TIMEOUT);
    superv_get_health(superv, &health);
    CHECK(health.starts == 2 && health.timeouts == 2);
    CHECK(health.backoff_left_ms > 50 && health.backoff_left_ms <= 100);
    pid = read_pid_file("hung.pid");
    CHECK(pid > 0 && was_reaped(pid));
    superv = superv_free(superv);
}

struct interrupter {
    struct superv *superv;
    int delay_ms;
};

static void *interrupt_later(void *arg)
{
    struct interrupter *in = arg;

    sleep_ms(in->delay_ms);
    superv_interrupt(in->superv);
    return NULL;
}

static void test_interrupt(void)
{
    struct superv *superv = make("hung.sh", 10000, 50, 1000);
    struct interrupter in = {.superv = superv, .delay_ms = 150};
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";
    pthread_t thread;
    int64_t started = now_ms();
    int64_t elapsed;
    pid_t pid;

    CHECK(pthread_create(&thread, NULL, interrupt_later, &in) == 0);
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CLOSED);
    elapsed = now_ms() - started;
    printf("# interrupted after %lld ms\n", (long long)elapsed);
    CHECK(elapsed >= 140 && elapsed < 1000);
    pthread_join(thread, NULL);
    pid = read_pid_file("hung.pid");
    CHECK(pid > 0 && was_reaped(pid));
    superv_get_health(superv, &health);
    CHECK(health.state == SUPERV_STATE_CLOSED && health.pid == 0);
    CHECK(health.timeouts == 0 && health.crashes == 0);
    /* Every later call: closed at once. */
    started = now_ms();
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CLOSED);
    CHECK(now_ms() - started < 50);
    superv = superv_free(superv);
}

static void test_crashes(void)
{
    struct superv *superv = make("crash.sh", 5000, 50, 1000);
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";
    int64_t started;
    int64_t elapsed;

    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CRASHED);
    CHECK(strcmp(err, "helper exited with status 1") == 0);
    superv_get_health(superv, &health);
    CHECK(health.crashes == 1 && health.last_exit_status == 1 && health.pid == 0);
    superv = superv_free(superv);

    superv = make("signal.sh", 5000, 50, 1000);
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CRASHED);
    CHECK(strcmp(err, "helper killed by signal 9") == 0);
    superv_get_health(superv, &health);
    CHECK(health.crashes == 1 && health.last_signal == 9 && health.last_exit_status == -1);
    superv = superv_free(superv);

    /* Closes stdout and stays: waited for until the deadline, then killed. */
    superv = make("close_stdout.sh", 300, 50, 1000);
    started = now_ms();
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CRASHED);
    elapsed = now_ms() - started;
    CHECK(elapsed >= 290 && elapsed < 450);
    CHECK(strcmp(err, "helper closed its output but did not exit; killed") == 0);
    superv_get_health(superv, &health);
    CHECK(health.crashes == 1 && health.timeouts == 0 && health.last_signal == SIGKILL);
    superv = superv_free(superv);
}

static void test_spawn_error(void)
{
    struct superv *superv = make("missing", 5000, 50, 1000);
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";

    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_SPAWN);
    CHECK(strstr(err, "cannot execute") != NULL && strstr(err, "status 127") != NULL);
    superv_get_health(superv, &health);
    CHECK(health.starts == 1 && health.crashes == 0 && health.last_exit_status == 127);
    CHECK(health.state == SUPERV_STATE_BACKOFF);
    superv = superv_free(superv);
}

static void test_protocol_errors(void)
{
    struct superv *superv = make("cat.sh", 5000, 50, 1000);
    struct superv_health health;
    struct superv_config config;
    char err[SUPERV_REASON_SIZE] = "";
    unsigned char jpeg[4] = {'a', 'b', 'c', 'd'};
    char *json = NULL;
    size_t json_len = 0;
    char helper[256];
    char cfg[256];

    /* cat echoes the request: magic TSDF, not TSDR. */
    CHECK(superv_detect(superv, jpeg, sizeof(jpeg), &json, &json_len, err, sizeof(err)) ==
          SUPERV_ERR_PROTOCOL);
    CHECK(strstr(err, "bad magic") != NULL);
    CHECK(json == NULL);
    superv_get_health(superv, &health);
    CHECK(health.protocol_errors == 1 && health.last_signal == SIGKILL && health.pid == 0);
    superv = superv_free(superv);

    superv = make("wrong_id.sh", 5000, 50, 1000);
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_PROTOCOL);
    CHECK(strstr(err, "request 7") != NULL);
    superv = superv_free(superv);

    /* An answer larger than max_reply. */
    path_in_dir(helper, sizeof(helper), "detect14.sh");
    path_in_dir(cfg, sizeof(cfg), "unused.yaml");
    superv_config_init(&config);
    config.helper_path = helper;
    config.config_path = cfg;
    config.max_reply = 8;
    CHECK(superv_new(&config, &superv, err, sizeof(err)) == SUPERV_OK);
    CHECK(superv_detect(superv, jpeg, sizeof(jpeg), &json, &json_len, err, sizeof(err)) ==
          SUPERV_ERR_PROTOCOL);
    CHECK(strstr(err, "larger than 8") != NULL);
    CHECK(json == NULL);
    superv = superv_free(superv);

    /* The same answer within max_reply: detections. */
    superv = make("detect14.sh", 5000, 50, 1000);
    CHECK(superv_detect(superv, jpeg, sizeof(jpeg), &json, &json_len, err, sizeof(err)) ==
          SUPERV_OK);
    CHECK(json && json_len == 14 && strcmp(json, "{\"id\":1,\"d\":1}") == 0);
    free(json);
    json = NULL;
    superv_get_health(superv, &health);
    CHECK(health.answers == 1 && health.state == SUPERV_STATE_RUNNING);
    superv = superv_free(superv);
}

static void test_refused(void)
{
    struct superv *superv = make("refuse.sh", 5000, 50, 1000);
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";
    unsigned char jpeg[4] = {'a', 'b', 'c', 'd'};
    char *json = NULL;
    size_t json_len = 0;
    pid_t pid;
    int64_t started;

    CHECK(superv_detect(superv, jpeg, sizeof(jpeg), &json, &json_len, err, sizeof(err)) ==
          SUPERV_ERR_REFUSED);
    CHECK(json && json_len == 14 && strcmp(json, "{\"id\":1,\"e\":1}") == 0);
    free(json);
    superv_get_health(superv, &health);
    CHECK(health.refused == 1 && health.answers == 0 && health.crashes == 0);
    CHECK(health.state == SUPERV_STATE_RUNNING && health.pid > 0);
    CHECK(health.last_answer_ms >= 0.0);
    pid = health.pid;
    CHECK(kill(pid, 0) == 0); /* it goes on running */

    /* Closing stdin makes it exit 0 (cat), well within the grace. */
    started = now_ms();
    superv_stop(superv);
    CHECK(now_ms() - started < 900);
    CHECK(was_reaped(pid));
    superv_get_health(superv, &health);
    CHECK(health.state == SUPERV_STATE_IDLE && health.pid == 0);
    CHECK(health.last_exit_status == 0 && health.crashes == 0);
    superv_stop(superv); /* idempotent */
    superv = superv_free(superv);
}

static void test_sigpipe(void)
{
    struct superv *superv = make("pong_exit.sh", 5000, 50, 1000);
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";
    size_t big = 1024 * 1024;
    unsigned char *jpeg = calloc(1, big);
    char *json = NULL;
    size_t json_len = 0;
    struct sigaction action;
    sigset_t pending;

    /* SIGPIPE must stay fatal here, so that raising it fails the test. */
    memset(&action, 0, sizeof(action));
    action.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &action, NULL);

    CHECK(jpeg != NULL);
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_OK);
    superv_get_health(superv, &health);
    CHECK(health.answers == 0 && health.last_error[0] == '\0');
    sleep_ms(200); /* the helper has exited by now */
    CHECK(superv_detect(superv, jpeg, big, &json, &json_len, err, sizeof(err)) ==
          SUPERV_ERR_CRASHED);
    CHECK(strcmp(err, "helper exited with status 0") == 0);
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    superv_get_health(superv, &health);
    CHECK(health.crashes == 1);
    free(jpeg);
    superv = superv_free(superv);
}

static void test_child_limits(void)
{
    struct superv_config config;
    struct superv *superv = NULL;
    struct superv_health health;
    char helper[256];
    char cfg[256];
    char expected[400];
    char err[SUPERV_REASON_SIZE] = "";
    int stray = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
    int parent_nice;

    CHECK(stray >= 0 && dup2(stray, STRAY_FD) == STRAY_FD);
    path_in_dir(helper, sizeof(helper), "limits.sh");
    path_in_dir(cfg, sizeof(cfg), "the config.yaml");
    superv_config_init(&config);
    config.helper_path = helper;
    config.config_path = cfg;
    config.nice_increment = 5;
    config.memory_limit_bytes = LIMIT_BYTES;
    CHECK(superv_new(&config, &superv, err, sizeof(err)) == SUPERV_OK);
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CONFIG);
    errno = 0;
    parent_nice = getpriority(PRIO_PROCESS, 0);
    snprintf(expected, sizeof(expected), "nice=%d as=%llu fd%d=closed args=--config %s",
             parent_nice + 5 > 19 ? 19 : parent_nice + 5, LIMIT_BYTES / 1024, STRAY_FD, cfg);
    superv_get_health(superv, &health);
    printf("# child: %s", health.stderr_tail);
    CHECK(strstr(health.stderr_tail, expected) != NULL);
    superv = superv_free(superv);
    close(STRAY_FD);
    close(stray);
}

/* ---- the real helper ------------------------------------------------------------ */

static const char tiny_cfg[] =
    "[net]\nbatch=1\nsubdivisions=1\nwidth=32\nheight=32\nchannels=3\n\n"
    "[convolutional]\nfilters=18\nsize=1\nstride=1\npad=0\nactivation=linear\n\n"
    "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=1\nnum=3\nthresh=0.01\n";

static void write_tiny_model(void)
{
    /* int32 major 0, minor 2, revision 0, uint64 seen, then 18 biases and
     * 18 x 3 weights: all zero. */
    unsigned char weights[20 + (18 + 18 * 3) * 4];
    static const char yaml[] =
        "model_type: darknet\nmodel_cfg: tiny.cfg\nmodel_weights: tiny.weights\n"
        "input_width: 32\ninput_height: 32\nclasses: [failure]\nbox_threshold: 0.1\n";
    static const char missing_yaml[] =
        "model_type: darknet\nmodel_cfg: missing.cfg\nmodel_weights: tiny.weights\n"
        "input_width: 32\ninput_height: 32\nclasses: [failure]\n";

    memset(weights, 0, sizeof(weights));
    weights[4] = 2;
    write_file("tiny.cfg", tiny_cfg, sizeof(tiny_cfg) - 1, 0644);
    write_file("tiny.weights", weights, sizeof(weights), 0644);
    write_file("tiny.yaml", yaml, sizeof(yaml) - 1, 0644);
    write_file("missing.yaml", missing_yaml, sizeof(missing_yaml) - 1, 0644);
}

static struct superv *make_real(const char *helper, const char *yaml_name)
{
    struct superv_config config;
    struct superv *superv = NULL;
    char cfg[256];
    char err[SUPERV_REASON_SIZE] = "";

    path_in_dir(cfg, sizeof(cfg), yaml_name);
    superv_config_init(&config);
    config.helper_path = helper;
    config.config_path = cfg;
    config.start_timeout_ms = 10000;
    config.deadline_ms = 5000;
    if (UNDER_ASAN)
        config.memory_limit_bytes = UINT64_MAX; /* ASan reserves terabytes */
    if (superv_new(&config, &superv, err, sizeof(err)) != SUPERV_OK) {
        printf("#   superv_new: %s\n", err);
        abort();
    }
    return superv;
}

static void test_real_helper_config_error(void)
{
    const char *helper = getenv("TSD_HELPER");
    struct superv *superv;
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";

    if (!helper || !*helper) {
        printf("# skipped: TSD_HELPER is not set\n");
        return;
    }
    superv = make_real(helper, "missing.yaml");
    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_ERR_CONFIG);
    printf("# %s\n", err);
    CHECK(strstr(err, "exited with status 2: ") != NULL);
    CHECK(strstr(err, "model_cfg") != NULL && strstr(err, "missing.cfg") != NULL);
    superv_get_health(superv, &health);
    CHECK(health.config_errors == 1 && health.last_exit_status == 2);
    CHECK(strstr(health.stderr_tail, "missing.cfg") != NULL);
    superv = superv_free(superv);
}

static void test_real_helper_round_trip(void)
{
    const char *helper = getenv("TSD_HELPER");
    struct superv *superv;
    struct superv_health health;
    char err[SUPERV_REASON_SIZE] = "";
    unsigned char pixels[64 * 48 * 3];
    unsigned char *jpeg = NULL;
    unsigned long jpeg_len = 0;
    tjhandle handle;
    char *json = NULL;
    size_t json_len = 0;
    unsigned char bad[4] = {'n', 'o', 'p', 'e'};
    enum superv_result rc;
    pid_t pid;

    if (!helper || !*helper) {
        printf("# skipped: TSD_HELPER is not set\n");
        return;
    }
    for (size_t i = 0; i < sizeof(pixels); i++)
        pixels[i] = (unsigned char)(i * 7u);
    handle = tjInitCompress();
    CHECK(handle != NULL);
    if (!handle || tjCompress2(handle, pixels, 64, 0, 48, TJPF_RGB, &jpeg, &jpeg_len,
                               TJSAMP_420, 85, 0) != 0)
        abort();
    tjDestroy(handle);

    superv = make_real(helper, "tiny.yaml");
    rc = superv_detect(superv, jpeg, jpeg_len, &json, &json_len, err, sizeof(err));
    CHECK(rc == SUPERV_OK);
    if (rc != SUPERV_OK) {
        superv_get_health(superv, &health);
        printf("#   %s: %s\n#   stderr: %s\n", superv_result_str(rc), err, health.stderr_tail);
    }
    CHECK(json && strncmp(json, "{\"id\":", 6) == 0 && strlen(json) == json_len);
    CHECK(json && strstr(json, "\"w\":64,\"h\":48") != NULL);
    if (json)
        printf("# %.200s\n", json);
    free(json);
    json = NULL;

    superv_get_health(superv, &health);
    CHECK(health.state == SUPERV_STATE_RUNNING && health.pid > 0);
    CHECK(health.answers == 1 && health.starts == 1 && health.last_answer_ms > 0.0);
    CHECK(health.rss_bytes > 0);
    CHECK(strstr(health.stderr_tail, "ready") != NULL);
    pid = health.pid;

    CHECK(superv_ping(superv, err, sizeof(err)) == SUPERV_OK);
    /* Not a JPEG: an error reply; the helper goes on. */
    CHECK(superv_detect(superv, bad, sizeof(bad), &json, &json_len, err, sizeof(err)) ==
          SUPERV_ERR_REFUSED);
    CHECK(json && strstr(json, "\"error\"") != NULL);
    free(json);
    json = NULL;
    CHECK(superv_detect(superv, jpeg, jpeg_len, &json, &json_len, err, sizeof(err)) ==
          SUPERV_OK);
    free(json);
    superv_get_health(superv, &health);
    CHECK(health.pid == pid && health.answers == 2 && health.refused == 1);

    superv_stop(superv);
    CHECK(was_reaped(pid));
    superv_get_health(superv, &health);
    CHECK(health.last_exit_status == 0 && health.state == SUPERV_STATE_IDLE);
    superv = superv_free(superv);
    tjFree(jpeg);
}

static void test_no_descriptor_leak(void)
{
    int fds_after = count_fds();

    printf("# descriptors: %d before, %d after\n", fds_before, fds_after);
    CHECK(fds_before > 0 && fds_before == fds_after);
}

int main(void)
{
    int64_t started = now_ms();

    snprintf(dir, sizeof(dir), "/tmp/tsd-superv-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    write_scripts();
    write_tiny_model();
    fds_before = count_fds();

    RUN_TEST(test_strings_and_null);
    RUN_TEST(test_config_error);
    RUN_TEST(test_timeout_backoff_restart);
    RUN_TEST(test_interrupt);
    RUN_TEST(test_crashes);
    RUN_TEST(test_spawn_error);
    RUN_TEST(test_protocol_errors);
    RUN_TEST(test_refused);
    RUN_TEST(test_sigpipe);
    RUN_TEST(test_child_limits);
    RUN_TEST(test_real_helper_config_error);
    RUN_TEST(test_real_helper_round_trip);

    RUN_TEST(test_no_descriptor_leak);
    printf("# %lld ms\n", (long long)(now_ms() - started));
    {
        char command[256];
        snprintf(command, sizeof(command), "rm -rf '%s'", dir);
        if (system(command) != 0)
            printf("# could not remove %s\n", dir);
    }
    return CHECK_DONE();
}
