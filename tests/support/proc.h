#ifndef BS_TEST_PROC_H
#define BS_TEST_PROC_H
/* Child processes for tests: start a binary with argv and extra environment,
 * wait for it with a timeout, signal it, kill and reap it.
 *
 * Ownership: the caller owns the child it spawned and must reap it (through
 * proc_wait returning 0, proc_stop or proc_kill); otherwise it stays a zombie
 * until the test process exits. By default a child is SIGKILLed when the test
 * process dies, so a crashed test leaves no fake or daemon behind. */
#include <sys/types.h>

struct proc_opts {
    const char *const *env;      /* extra "NAME=value" entries, NULL-terminated, may be
                                    NULL; they override inherited variables of that name */
    const char *stdout_path;     /* NULL: inherit the test's stdout */
    const char *stderr_path;     /* NULL: inherit; the same path as stdout_path sends
                                    both streams to one file */
    int append;                  /* open the output files with O_APPEND, not O_TRUNC */
    const char *cwd;             /* NULL: inherit */
    int keep_on_parent_death;    /* 0: the child gets SIGKILL if the test process dies */
    int new_process_group;       /* 1: the child leads a new process group (kill(-pid, sig)
                                    then reaches its own children too) */
};

/* Starts argv[0] (searched in PATH when it has no '/') with argv; opts may be
 * NULL. stdin is /dev/null and only fds 0-2 are inherited. Returns the pid, or
 * -1 with errno set when it could not fork or argv[0] was not found. A failed
 * exec in the child (or an unopenable output file) shows as exit code 127. */
pid_t proc_spawn(const char *const argv[], const struct proc_opts *opts);

/* Waits up to timeout_ms (< 0: forever) for pid to exit. Returns 0 and stores
 * the wait status in *status (may be NULL) when it exited and was reaped; -1
 * on timeout (still running, not reaped); -2 on error (errno set, e.g.
 * ECHILD: not our child or already reaped). */
int proc_wait(pid_t pid, int timeout_ms, int *status);

/* kill(pid, sig); returns 0 or -1 with errno set. */
int proc_signal(pid_t pid, int sig);

/* Sends sig, waits up to timeout_ms for the exit, then SIGKILLs and reaps.
 * Returns 0 when it exited by itself within the timeout, 1 when it had to be
 * killed, -2 on error. *status (may be NULL) gets the final wait status. */
int proc_stop(pid_t pid, int sig, int timeout_ms, int *status);

/* SIGKILL and reap; returns the wait status, or -1 on error. */
int proc_kill(pid_t pid);

/* Exit code of a wait status: the code passed to exit(), or 128 + signal
 * number for a child killed by a signal (shell convention). */
int proc_exit_code(int status);

/* Waits until path exists and is not empty. Returns 0, or -1 on timeout. */
int proc_wait_file(const char *path, int timeout_ms);

/* Sleeps ms milliseconds (restarting after signals). */
void proc_sleep_ms(int ms);
#endif
