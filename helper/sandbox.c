/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "sandbox.h"
#include "errtext.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sched.h> /* CLONE_THREAD */

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef SECCOMP_RET_KILL_THREAD
#define SECCOMP_RET_KILL_THREAD 0x00000000U /* SECCOMP_RET_KILL before Linux 4.14 */
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif
#ifndef SECCOMP_GET_ACTION_AVAIL
#define SECCOMP_GET_ACTION_AVAIL 2
#endif

#if defined(TSD_SANITIZED) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANDBOX_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SANDBOX_SANITIZED 1
#endif
#endif
#ifndef SANDBOX_SANITIZED
#define SANDBOX_SANITIZED 0
#endif

/* The architectures the wheels are built for; the arguments are read as the
 * low 32 bits of each 64-bit slot, which is where a little-endian machine
 * keeps them. */
#if defined(__x86_64__) && !defined(__ILP32__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__) && !defined(__ILP32__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__arm__)
#define SANDBOX_AUDIT_ARCH AUDIT_ARCH_ARM
#endif
#if defined(SANDBOX_AUDIT_ARCH) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#undef SANDBOX_AUDIT_ARCH
#endif

/* Without close_range(), descriptors are closed one by one up to this. */
#define SANDBOX_CLOSE_FALLBACK_MAX 65536u
#define SANDBOX_FILTER_INSNS 192u

const char *sandbox_filter_str(enum sandbox_filter filter)
{
    switch (filter) {
    case SANDBOX_FILTER_ON: return "seccomp";
    case SANDBOX_FILTER_OFF_SANITIZER: return "off (sanitizer build)";
    case SANDBOX_FILTER_OFF_ARCH: return "off (no seccomp filter for this architecture)";
    case SANDBOX_FILTER_FAILED: return "failed";
    case SANDBOX_FILTER_MAX: break;
    }
    return "unknown";
}

bool sandbox_restrict_process(char *reterr, size_t reterr_len)
{
    const struct rlimit no_core = {0, 0};
    char why[128];

    if (setrlimit(RLIMIT_CORE, &no_core) != 0) {
        set_reason(reterr, reterr_len, "setrlimit(RLIMIT_CORE): %s",
                   errno_text(errno, why, sizeof(why)));
        return false;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        set_reason(reterr, reterr_len, "prctl(PR_SET_NO_NEW_PRIVS): %s",
                   errno_text(errno, why, sizeof(why)));
        return false;
    }
    return true;
}

/* Closes first..last (inclusive). */
static void close_span(unsigned first, unsigned last)
{
    struct rlimit files;
    unsigned bound = SANDBOX_CLOSE_FALLBACK_MAX;

    if (first > last)
        return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, first, last, 0u) == 0)
        return;
#endif
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY &&
        files.rlim_cur < (rlim_t)bound)
        bound = (unsigned)files.rlim_cur;
    for (unsigned fd = first; fd <= last && fd < bound; fd++)
        close((int)fd);
}

bool sandbox_close_other_fds(int keep_fd, char *reterr, size_t reterr_len)
{
    if (keep_fd <= STDERR_FILENO) {
        set_reason(reterr, reterr_len, "descriptor %d to keep is not above stderr", keep_fd);
        return false;
    }
    close_span(STDERR_FILENO + 1, (unsigned)keep_fd - 1);
    close_span((unsigned)keep_fd + 1, ~0u);
    return true;
}

#ifdef SANDBOX_AUDIT_ARCH

/* What inference needs once the model is loaded and the first frame went
 * through: its descriptors, memory, threads, clocks, signals to itself and
 * exit. Names a kernel lacks on an architecture are left out there. */
static const long allowed_syscalls[] = {
    /* the pipes (descriptors it already holds; it cannot get new ones) */
    __NR_read, __NR_write, __NR_readv, __NR_writev, __NR_close,
    /* memory */
#ifdef __NR_mmap
    __NR_mmap,
#endif
#ifdef __NR_mmap2
    __NR_mmap2,
#endif
    __NR_munmap, __NR_mremap, __NR_mprotect, __NR_madvise, __NR_brk,
    /* threads: OpenCV's worker pool (created by clone, checked below) */
    __NR_futex,
#ifdef __NR_futex_time64
    __NR_futex_time64,
#endif
    __NR_set_robust_list,
#ifdef __NR_rseq
    __NR_rseq,
#endif
    __NR_sched_yield, __NR_sched_getaffinity, __NR_gettid, __NR_getpid,
    /* clocks and sleeping */
    __NR_clock_gettime, __NR_clock_getres, __NR_clock_nanosleep,
#ifdef __NR_clock_gettime64
    __NR_clock_gettime64,
#endif
#ifdef __NR_clock_getres_time64
    __NR_clock_getres_time64,
#endif
#ifdef __NR_clock_nanosleep_time64
    __NR_clock_nanosleep_time64,
#endif
#ifdef __NR_gettimeofday
    __NR_gettimeofday,
#endif
#ifdef __NR_nanosleep
    __NR_nanosleep,
#endif
    /* signals (abort() signals itself: tgkill, checked below) */
    __NR_rt_sigprocmask, __NR_rt_sigreturn,
#ifdef __NR_sigreturn
    __NR_sigreturn,
#endif
    __NR_getrandom,
    __NR_exit, __NR_exit_group,
};

/* Refused with an error that the caller copes with: clone3 (glibc then
 * falls back to clone, whose flags are checked), ioctl (stdio's isatty)
 * and the fstat family (stdio sizing its buffer). */
static const struct {
    long nr;
    uint32_t err;
} refused_syscalls[] = {
#ifdef __NR_clone3
    {__NR_clone3, ENOSYS},
#endif
    {__NR_ioctl, ENOTTY},
#ifdef __NR_fstat
    {__NR_fstat, EPERM},
#endif
#ifdef __NR_fstat64
    {__NR_fstat64, EPERM},
#endif
#ifdef __NR_newfstatat
    {__NR_newfstatat, EPERM},
#endif
#ifdef __NR_fstatat64
    {__NR_fstatat64, EPERM},
#endif
#ifdef __NR_statx
    {__NR_statx, EPERM},
#endif
};

struct filter {
    struct sock_filter insns[SANDBOX_FILTER_INSNS];
    unsigned short len;
    bool overflow;
};

static void emit(struct filter *f, struct sock_filter insn)
{
    if (f->len >= SANDBOX_FILTER_INSNS) {
        f->overflow = true;
        return;
    }
    f->insns[f->len++] = insn;
}

/* The accumulator holds the system call number: returns action for nr. */
static void emit_action_for(struct filter *f, long nr, uint32_t action)
{
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action));
}

/* For nr: allow when the low 32 bits of argument arg, masked, equal value;
 * kill otherwise. The accumulator is the call number again only on paths
 * that did not take this branch. */
static void emit_allow_when_arg(struct filter *f, long nr, unsigned arg, uint32_t mask,
                                uint32_t value, uint32_t kill)
{
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 5));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, args) +
                                             arg * sizeof(((struct seccomp_data *)0)->args[0])));
    emit(f, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, mask));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, value, 0, 1));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, kill));
}

static void build_filter(struct filter *f, uint32_t kill, pid_t self)
{
    f->len = 0;
    f->overflow = false;
    /* Another architecture's numbers mean other calls: kill. */
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, arch)));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SANDBOX_AUDIT_ARCH, 1, 0));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, kill));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, nr)));
#ifdef __x86_64__
    /* The x32 ABI shares AUDIT_ARCH_X86_64 with its own numbers. */
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, kill));
#endif
    for (size_t i = 0; i < sizeof(allowed_syscalls) / sizeof(allowed_syscalls[0]); i++)
        emit_action_for(f, allowed_syscalls[i], SECCOMP_RET_ALLOW);

    for (size_t i = 0; i < sizeof(refused_syscalls) / sizeof(refused_syscalls[0]); i++)
        emit_action_for(f, refused_syscalls[i].nr,
                        SECCOMP_RET_ERRNO | (refused_syscalls[i].err & SECCOMP_RET_DATA));

    /* Threads only: a clone without CLONE_THREAD is a new process. Both
     * branches return, so the order of these two blocks matters not. */
    emit_allow_when_arg(f, __NR_clone, 0, CLONE_THREAD, CLONE_THREAD, kill);
    /* Signals only to itself (abort, pthread_kill). */
    emit_allow_when_arg(f, __NR_tgkill, 0, 0xffffffffu, (uint32_t)self, kill);

    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, kill));
}

/* SECCOMP_RET_KILL_PROCESS where the kernel has it (4.14), else the thread:
 * the supervisor's deadline then ends the rest. */
static uint32_t kill_action(void)
{
    uint32_t action = SECCOMP_RET_KILL_PROCESS;

    if (syscall(__NR_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0)
        return SECCOMP_RET_KILL_PROCESS;
    return SECCOMP_RET_KILL_THREAD;
}

static enum sandbox_filter install_filter(char *reterr, size_t reterr_len)
{
    struct filter f;
    struct sock_fprog prog;
    char why[128];
    long rc;

    build_filter(&f, kill_action(), getpid());
    if (f.overflow) {
        set_reason(reterr, reterr_len, "the seccomp filter is longer than %u instructions",
                   SANDBOX_FILTER_INSNS);
        return SANDBOX_FILTER_FAILED;
    }
    prog.len = f.len;
    prog.filter = f.insns;
    /* TSYNC: the threads OpenCV already started get the filter too. */
    rc = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
    if (rc > 0) {
        set_reason(reterr, reterr_len, "seccomp: thread %ld could not take the filter", rc);
        return SANDBOX_FILTER_FAILED;
    }
    if (rc != 0) {
        set_reason(reterr, reterr_len, "seccomp: %s (a kernel without seccomp filters?)",
                   errno_text(errno, why, sizeof(why)));
        return SANDBOX_FILTER_FAILED;
    }
    return SANDBOX_FILTER_ON;
}

#endif /* SANDBOX_AUDIT_ARCH */

enum sandbox_filter sandbox_lock(char *reterr, size_t reterr_len)
{
    if (SANDBOX_SANITIZED)
        return SANDBOX_FILTER_OFF_SANITIZER;
#ifdef SANDBOX_AUDIT_ARCH
    return install_filter(reterr, reterr_len);
#else
    (void)reterr;
    (void)reterr_len;
    return SANDBOX_FILTER_OFF_ARCH;
#endif
}
