#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void proc_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Resolves argv0 against PATH like execvp, before forking (the child may only
 * make async-signal-safe calls). Returns a malloc'd path or NULL. */
static char *find_program(const char *argv0)
{
    if (strchr(argv0, '/'))
        return strdup(argv0);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    size_t n = strlen(argv0);
    while (*path) {
        const char *end = strchr(path, ':');
        size_t dl = end ? (size_t)(end - path) : strlen(path);
        char *cand = malloc(dl + n + 2);
        if (!cand)
            return NULL;
        memcpy(cand, path, dl);
        cand[dl] = '/';
        memcpy(cand + dl + 1, argv0, n + 1);
        if (access(cand, X_OK) == 0)
            return cand;
        free(cand);
        path += dl;
        if (*path == ':')
            path++;
    }
    errno = ENOENT;
    return NULL;
}

/* environ minus the names set in extra, plus extra. The strings are borrowed. */
static char **build_env(const char *const *extra)
{
    size_t ne = 0, nx = 0;
    while (environ && environ[ne])
        ne++;
    while (extra && extra[nx])
        nx++;
    char **env = calloc(ne + nx + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;
        for (size_t j = 0; j < nx && !overridden; j++)
            overridden = strncmp(extra[j], environ[i], nl) == 0 && extra[j][nl] == '=';
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < nx; j++)
        env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}

/* In the child: opens path as fd target. Returns 0 or -1. */
static int redirect(const char *path, int append, int target)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd < 0)
        return -1;
    if (dup2(fd, target) < 0)
        return -1;
    close(fd);
    return 0;
}

pid_t proc_spawn(const char *const argv[], const struct proc_opts *opts)
{
    static const struct proc_opts none;
    if (!opts)
        opts = &none;
    if (!argv || !argv[0]) {
        errno = EINVAL;
        return -1;
    }
    char *prog = find_program(argv[0]);
    if (!prog)
        return -1;
    char **env = build_env(opts->env);
    if (!env) {
        free(prog);
        errno = ENOMEM;
        return -1;
    }
    int same = opts->stdout_path && opts->stderr_path &&
               strcmp(opts->stdout_path, opts->stderr_path) == 0;
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: async-signal-safe calls only. */
        if (!opts->keep_on_parent_death) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
        }
        if (opts->new_process_group)
            setpgid(0, 0);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            if (devnull > 2)
                close(devnull);
        }
        if (opts->stdout_path && redirect(opts->stdout_path, opts->append, 1) < 0)
            _exit(127);
        if (same) {
            if (dup2(1, 2) < 0)
                _exit(127);
        } else if (opts->stderr_path && redirect(opts->stderr_path, opts->append, 2) < 0) {
            _exit(127);
        }
        if (opts->cwd && chdir(opts->cwd) < 0)
            _exit(127);
        if (close_range(3, ~0U, 0) < 0) {
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        }
        execve(prog, (char *const *)argv, env);
        _exit(127);
    }
    int saved = errno;
    free(prog);
    free(env);
    errno = saved;
    return pid < 0 ? -1 : pid;
}

int proc_wait(pid_t pid, int timeout_ms, int *status)
{
    long long deadline = mono_ms() + timeout_ms;
    int delay = 1;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, timeout_ms < 0 ? 0 : WNOHANG);
        if (r == pid) {
            if (status)
                *status = st;
            return 0;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -2;
        }
        long long left = deadline - mono_ms();
        if (left <= 0)
            return -1;
        proc_sleep_ms(delay < left ? delay : (int)left);
        if (delay < 20)
            delay *= 2;
    }
}

int proc_signal(pid_t pid, int sig)
{
    return kill(pid, sig);
}

int proc_kill(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    return proc_wait(pid, -1, &st) == 0 ? st : -1;
}

int proc_stop(pid_t pid, int sig, int timeout_ms, int *status)
{
    int st;
    if (kill(pid, sig) < 0 && errno != ESRCH)
        return -2;
    int r = proc_wait(pid, timeout_ms, &st);
    if (r == -2)
        return -2;
    if (r == -1) {
        st = proc_kill(pid);
        if (st == -1)
            return -2;
    }
    if (status)
        *status = st;
    return r == 0 ? 0 : 1;
}

int proc_exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int proc_wait_file(const char *path, int timeout_ms)
{
    long long deadline = mono_ms() + timeout_ms;
    for (;;) {
        struct stat sb;
        if (stat(path, &sb) == 0 && sb.st_size > 0)
            return 0;
        if (mono_ms() >= deadline)
            return -1;
        proc_sleep_ms(5);
    }
}
