// failstop HAL for the unix port: the unix binary behaves like a board.
//  - retained RAM: a file-backed shared mapping ($FAILSTOP_RETAINED), which
//    outlives the process as RAM outlives a reset;
//  - reset: re-execute the same binary with the same arguments;
//  - watchdog: a one-shot interval timer (SIGALRM) whose handler is the early warning;
//  - hard faults: SIGSEGV/SIGBUS/SIGILL/SIGFPE on an alternate signal stack;
//  - $FAILSTOP_MAX_BOOTS bounds the boots of one run, so tests cannot loop forever;
//  - $FAILSTOP_UPTIME_MS starts the uptime clock at that many ms (months of uptime
//    without waiting for them).
// The main program's bracket (a --wrap of MicroPython's lexer) is in failstop_glue.c.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "py/runtime.h"
#include "failstop.h"

#define FS_EXIT_BOOT_LIMIT (75) // EX_TEMPFAIL: the boot cap stopped a reset
#define FS_WDT_MAX_MS (3600000)

static char **fs_argv;
static char **fs_envp_next; // environment of the next boot: FAILSTOP_CHAIN + 1
static char fs_chain_var[48];
static long fs_chain; // boots before this one in the current run
static long fs_max_boots;
static struct timespec fs_t0;
static uint64_t fs_uptime0;
static uint32_t fs_wdt_ms;
// Every asynchronous signal (built at start-up: the fault path only hands it to the kernel).
static sigset_t fs_async_signals;
static failstop_region_t fs_fallback; // when no file can be mapped
static uint8_t fs_altstack[64 * 1024];

static void fs_hardfault_handler(int sig, siginfo_t *info, void *uctx);
static void fs_wdt_handler(int sig);

// glibc passes argc/argv/envp to constructors: keep what a reset needs.
__attribute__((constructor)) static void fs_unix_init(int argc, char **argv, char **envp) {
    (void)argc;
    clock_gettime(CLOCK_MONOTONIC, &fs_t0);
    fs_argv = argv;
    const char *s = getenv("FAILSTOP_CHAIN");
    fs_chain = s ? strtol(s, NULL, 10) : 0;
    s = getenv("FAILSTOP_UPTIME_MS");
    fs_uptime0 = s ? strtoull(s, NULL, 10) : 0;
    s = getenv("FAILSTOP_MAX_BOOTS");
    fs_max_boots = s ? strtol(s, NULL, 10) : 0;
    size_t n = 0;
    while (envp[n] != NULL) {
        ++n;
    }
    fs_envp_next = malloc((n + 2) * sizeof(char *));
    if (fs_envp_next != NULL) {
        size_t j = 0;
        for (size_t i = 0; i < n; ++i) {
            if (strncmp(envp[i], "FAILSTOP_CHAIN=", 15) != 0) {
                fs_envp_next[j++] = envp[i];
            }
        }
        snprintf(fs_chain_var, sizeof(fs_chain_var), "FAILSTOP_CHAIN=%ld", fs_chain + 1);
        fs_envp_next[j++] = fs_chain_var;
        fs_envp_next[j] = NULL;
    }

    sigfillset(&fs_async_signals);
    sigdelset(&fs_async_signals, SIGSEGV);
    sigdelset(&fs_async_signals, SIGBUS);
    sigdelset(&fs_async_signals, SIGILL);
    sigdelset(&fs_async_signals, SIGFPE);

    stack_t ss = { .ss_sp = fs_altstack, .ss_size = sizeof(fs_altstack), .ss_flags = 0 };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = fs_hardfault_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
}

uint8_t *failstop_hal_retained(size_t *len) {
    *len = sizeof(failstop_region_t);
    char path[256];
    const char *p = getenv("FAILSTOP_RETAINED");
    if (p == NULL || *p == '\0') {
        const char *dir = getenv("XDG_RUNTIME_DIR");
        snprintf(path, sizeof(path), "%s/failstop-%u.ram", dir && *dir ? dir : "/tmp", (unsigned)getuid());
        p = path;
    }
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0
        || (st.st_size < (off_t)sizeof(failstop_region_t) && ftruncate(fd, sizeof(failstop_region_t)) != 0)) {
        fprintf(stderr, "failstop: cannot use retained file %s (%s); records will not survive a reset\n", p, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return (uint8_t *)&fs_fallback;
    }
    void *m = mmap(NULL, sizeof(failstop_region_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        fprintf(stderr, "failstop: cannot map retained file %s (%s)\n", p, strerror(errno));
        return (uint8_t *)&fs_fallback;
    }
    return m;
}

uint8_t failstop_hal_reset_cause(void) {
    // A run started by the user is a power-on; a re-executed one says why in the region.
    return fs_chain == 0 ? FAILSTOP_RC_POWER_ON : FAILSTOP_RC_UNKNOWN;
}

uint32_t failstop_hal_uptime_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t ms = fs_uptime0 + (uint64_t)((t.tv_sec - fs_t0.tv_sec) * 1000 + (t.tv_nsec - fs_t0.tv_nsec) / 1000000);
    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

void failstop_hal_write(const char *str, size_t len) {
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, str, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return;
        }
        str += n;
        len -= n;
    }
}

// Every asynchronous signal off; the synchronous fault signals stay deliverable, so a
// fault inside the fault path is a double fault (blocked, the kernel would kill us).
void failstop_hal_irq_disable(void) {
    sigprocmask(SIG_BLOCK, &fs_async_signals, NULL);
}

uint32_t failstop_hal_context(void) {
    return (uint32_t)syscall(SYS_gettid);
}

uint32_t failstop_hal_cas(volatile uint32_t *p, uint32_t expect, uint32_t desired) {
    __atomic_compare_exchange_n(p, &expect, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expect;
}

// A thread told to stop parks here, with every signal blocked, until the re-exec (or
// the owner's halt) ends it.
static void fs_park_handler(int sig) {
    (void)sig;
    sigset_t all;
    sigfillset(&all);
    for (;;) {
        sigsuspend(&all);
    }
}

// Every other thread of the process parks before the record is written: nothing of the
// program runs meanwhile. Threads are found in /proc/self/task with raw syscalls (no
// allocation); the owner waits (bounded) until each has taken the signal.
void failstop_hal_stop_others(void) {
    #if MICROPY_PY_THREAD
    if (!failstop_unix_threads_started) {
        return; // the program never started a thread
    }
    #endif
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fs_park_handler;
    sa.sa_flags = SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    int sig = SIGRTMIN + 6; // MicroPython's unix threads use SIGRTMIN + 5 for the GC
    sigaction(sig, &sa, NULL);
    pid_t me = (pid_t)syscall(SYS_gettid), pid = getpid();
    int fd = (int)syscall(SYS_open, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    char buf[128]; // a few entries a call: the fault path keeps its stack small
    long n;
    bool sent = false;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < n;) {
            struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + off);
            off += d->reclen;
            pid_t tid = 0;
            for (const char *c = d->name; *c >= '0' && *c <= '9'; ++c) {
                tid = tid * 10 + (*c - '0');
            }
            if (tid > 0 && tid != me) {
                syscall(SYS_tgkill, pid, tid, sig);
                sent = true;
            }
        }
    }
    syscall(SYS_close, fd);
    if (sent) {
        // Give them a moment to take it (a thread inside a system call takes it on return).
        struct timespec ts = { 0, 2000000 };
        nanosleep(&ts, NULL);
    }
}

// No hardware to bite: with the asynchronous signals blocked the unix fault path
// cannot be interrupted, and it does not wait on anything.
void failstop_hal_wdt_budget(uint32_t ms) {
    (void)ms;
}

static void fs_wdt_stop(void) {
    struct itimerval off;
    memset(&off, 0, sizeof(off));
    setitimer(ITIMER_REAL, &off, NULL);
}

void failstop_hal_reset(uint8_t cause) {
    (void)cause;
    fs_wdt_stop(); // an interval timer would survive execve
    if (fs_max_boots > 0 && fs_chain + 1 >= fs_max_boots) {
        static const char msg[] = "failstop: boot limit reached (FAILSTOP_MAX_BOOTS), not resetting\r\n";
        failstop_hal_write(msg, sizeof(msg) - 1);
        _exit(FS_EXIT_BOOT_LIMIT);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); // the signal mask would survive execve too
    if (fs_envp_next != NULL) {
        execve("/proc/self/exe", fs_argv, fs_envp_next);
    }
    static const char msg[] = "failstop: reset failed (execve)\r\n";
    failstop_hal_write(msg, sizeof(msg) - 1);
    _exit(70);
}

void failstop_hal_halt(void) {
    fs_wdt_stop();
    failstop_hal_irq_disable();
    for (;;) {
        pause(); // only SIGKILL/SIGSTOP get through: attach a debugger or kill it
    }
}

static void fs_wdt_start(void) {
    struct itimerval t;
    memset(&t, 0, sizeof(t));
    t.it_value.tv_sec = fs_wdt_ms / 1000;
    t.it_value.tv_usec = (fs_wdt_ms % 1000) * 1000;
    setitimer(ITIMER_REAL, &t, NULL);
}

void failstop_hal_wdt_arm(uint32_t timeout_ms) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fs_wdt_handler;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    fs_wdt_ms = timeout_ms;
    fs_wdt_start();
}

void failstop_hal_wdt_feed(void) {
    if (fs_wdt_ms != 0) {
        fs_wdt_start();
    }
}

uint32_t failstop_hal_wdt_max_ms(void) {
    return FS_WDT_MAX_MS;
}

// Watchdog early warning: record where the program hung, then reset.
static void fs_wdt_handler(int sig) {
    (void)sig;
    failstop_watchdog_timeout();
}

static void fs_hardfault_handler(int sig, siginfo_t *info, void *uctx) {
    char msg[48];
    int len = snprintf(msg, sizeof(msg), "signal %d (%s) at address %p", sig, sigabbrev_np(sig), info->si_addr);
    failstop_fault_t f = { .kind = FAILSTOP_KIND_HARDFAULT, .msg = msg, .msg_len = len > 0 ? (size_t)len : 0 };
    #if defined(__x86_64__)
    ucontext_t *uc = uctx;
    f.pc = (uint32_t)uc->uc_mcontext.gregs[REG_RIP];
    #else
    (void)uctx;
    #endif
    failstop_fault(&f);
    _exit(128 + sig); // not reached
}
