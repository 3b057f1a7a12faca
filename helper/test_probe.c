/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "test_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define PROBE_ENV "TSD_HELPER_PROBE"

/* The attempt returned: the sandbox did not stop it. */
__attribute__((noreturn))
static void survived(const char *what, long rc, int err)
{
    fprintf(stderr, "tsd-helper: probe: %s returned %ld (%s): not stopped by the sandbox\n",
            what, rc, rc < 0 ? strerror(err) : "success");
    _exit(1);
}

void helper_test_probe(void)
{
    const char *probe = getenv(PROBE_ENV);

    if (!probe || !*probe)
        return;
    fprintf(stderr, "tsd-helper: probe: trying %s\n", probe);
    if (strncmp(probe, "open:", 5) == 0) {
        char buf[256];
        int fd = open(probe + 5, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
            survived("open", fd, errno);
        n = read(fd, buf, sizeof(buf));
        explicit_bzero(buf, sizeof(buf));
        survived("open and read", (long)n, errno);
    }
    if (strcmp(probe, "socket") == 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        survived("socket", fd, errno);
    }
    if (strncmp(probe, "exec:", 5) == 0) {
        execl(probe + 5, probe + 5, (char *)NULL);
        survived("exec", -1, errno);
    }
    if (strcmp(probe, "fork") == 0) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        survived("fork", (long)pid, errno);
    }
    fprintf(stderr, "tsd-helper: probe: unknown probe %s\n", probe);
    _exit(1);
}
