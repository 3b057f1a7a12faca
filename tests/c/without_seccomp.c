/* SPDX-License-Identifier: AGPL-3.0-or-later
 *
 * without-seccomp PROGRAM [ARG...]: runs PROGRAM where seccomp() answers
 * ENOSYS and prctl(PR_SET_SECCOMP) EINVAL, as under qemu-user (which does
 * not emulate seccomp) or on a kernel without seccomp filters. Everything
 * else is allowed. tests/py/test_helper_bench.py uses it to check, on this
 * machine, that tsd-helper refuses to serve when it cannot lock its sandbox
 * and that --bench says it runs unsandboxed.
 *
 * Exit status: PROGRAM's (exec), 77 on an architecture this file has no
 * audit number for (the test skips), 1 when the filter cannot be installed.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__x86_64__) && !defined(__ILP32__)
#define WITHOUT_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__) && !defined(__ILP32__)
#define WITHOUT_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__arm__)
#define WITHOUT_AUDIT_ARCH AUDIT_ARCH_ARM
#endif

int main(int argc, char **argv)
{
#ifdef WITHOUT_AUDIT_ARCH
    struct sock_filter insns[] = {
        /* Another architecture's numbers: not ours to change. */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, WITHOUT_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_seccomp, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prctl, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_SECCOMP, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(insns) / sizeof(insns[0]), .filter = insns};

    if (argc < 2) {
        fprintf(stderr, "usage: without-seccomp PROGRAM [ARG...]\n");
        return 2;
    }
    /* The filter is ours to install without privileges once no new
     * privileges can be gained; the helper sets the same flag itself. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
        fprintf(stderr, "without-seccomp: cannot install the filter: %s\n", strerror(errno));
        return 1;
    }
    execv(argv[1], argv + 1);
    fprintf(stderr, "without-seccomp: cannot run %s: %s\n", argv[1], strerror(errno));
    return 1;
#else
    (void)argc;
    (void)argv;
    fprintf(stderr, "without-seccomp: no audit architecture for this machine\n");
    return 77;
#endif
}
