#include "promtool.h"
#include "proc.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int test_promtool_check(const char *text, char **output)
{
    if (output)
        *output = NULL;
    const char *promtool = getenv("PROMTOOL");
    if (!promtool || !*promtool)
        promtool = "/usr/bin/promtool";
    char *dir = test_tmpdir("promtool");
    char in[4096], out[4096];
    snprintf(in, sizeof in, "%s/metrics.txt", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    int code = -1;
    if (test_write_file(in, text, strlen(text)) == 0) {
        /* proc_spawn gives children /dev/null as stdin; a shell redirects
         * the file instead. */
        const char *const argv[] = {"sh", "-c", "exec \"$0\" check metrics < \"$1\"", promtool, in,
                                    NULL};
        struct proc_opts opts = {.stdout_path = out, .stderr_path = out};
        pid_t pid = proc_spawn(argv, &opts);
        int status;
        if (pid > 0) {
            if (proc_wait(pid, 30000, &status) == 0)
                code = proc_exit_code(status);
            else
                proc_kill(pid);
        }
        if (output)
            *output = test_read_file(out, NULL);
    }
    test_rmtree(dir);
    free(dir);
    return code;
}
