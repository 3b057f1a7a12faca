/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * sandbox: what the helper may do once its model is loaded.
 *
 * The helper decodes JPEGs that the camera sends, and anyone on the camera's
 * network controls those bytes. Code taken over through a decoder bug must
 * find nothing to do: it runs as OctoPrint's user, next to the printer token.
 *
 * 1. sandbox_restrict_process(), first thing in serve mode: no core dumps
 *    (RLIMIT_CORE 0, soft and hard: a dump would hold the frames and the
 *    heap) and PR_SET_NO_NEW_PRIVS (no set-uid or file-capability gain, and
 *    the seccomp filter may then be installed without privileges).
 * 2. The helper loads its model and runs one frame through the whole path
 *    (OpenCV starts its worker threads and libjpeg-turbo probes the CPU on
 *    first use, and both may read files then).
 * 3. sandbox_close_other_fds(): every descriptor but 0 (the requests), 1
 *    and 2 (stderr) and the protocol's stdout is closed, whatever the helper
 *    inherited or a library left open.
 * 4. sandbox_lock(): a seccomp filter on every thread (TSYNC) that allows
 *    only reading and writing descriptors it already has, memory management,
 *    futexes, clocks and sleeping, new threads (clone with CLONE_THREAD),
 *    signals to itself and exit. clone3 fails with ENOSYS (glibc then uses
 *    clone, whose flags the filter can check), ioctl with ENOTTY and the
 *    fstat family with EPERM (stdio asks them and copes). Anything else --
 *    open, openat, socket, connect, execve, fork, ptrace, ... -- kills the
 *    process (SECCOMP_RET_KILL_PROCESS, SIGSYS) before the call runs; the
 *    supervisor reports "killed by its sandbox". The filter checks the
 *    architecture first (x86_64 without x32, aarch64, arm: the wheels'
 *    architectures) and kills on any other.
 *
 * Builds with AddressSanitizer, ThreadSanitizer or UndefinedBehaviorSanitizer
 * (meson -Dsanitize=true) install no filter: their runtimes read /proc, start
 * a symbolizer and stop threads with ptrace when they report, which the
 * filter forbids. Steps 1 and 3 still apply. A build for an architecture
 * without a filter here also runs without one, and says so.
 */
#ifndef TSD_HELPER_SANDBOX_H
#define TSD_HELPER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

enum sandbox_filter {
    SANDBOX_FILTER_ON = 0,        /* the seccomp filter is installed */
    SANDBOX_FILTER_OFF_SANITIZER, /* sanitizer build: no filter, by design */
    SANDBOX_FILTER_OFF_ARCH,      /* no filter for this architecture */
    SANDBOX_FILTER_FAILED,        /* the kernel refused it; reterr says why */
    SANDBOX_FILTER_MAX
};

/* For the helper's "ready" line: "seccomp", "off (sanitizer build)", ... */
const char *sandbox_filter_str(enum sandbox_filter filter);

/* RLIMIT_CORE 0 and PR_SET_NO_NEW_PRIVS. False (reterr says why) when either
 * fails. */
bool sandbox_restrict_process(char *reterr, size_t reterr_len);

/* Closes every descriptor except 0, 1, 2 and keep_fd (> 2). */
bool sandbox_close_other_fds(int keep_fd, char *reterr, size_t reterr_len);

/* Installs the filter on every thread of the process. Needs
 * sandbox_restrict_process() first. */
enum sandbox_filter sandbox_lock(char *reterr, size_t reterr_len);

#endif
