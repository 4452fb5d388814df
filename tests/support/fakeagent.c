#include "fakeagent.h"
#include "proc.h"
#include "util.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void fa_free_paths(struct fake_agent *fa)
{
    if (fa->dir)
        test_rmtree(fa->dir);
    free(fa->dir);
    free(fa->port_file);
    free(fa->log_path);
    free(fa->out_path);
    fa->dir = fa->port_file = fa->log_path = fa->out_path = NULL;
}

int fake_agent_start(struct fake_agent *fa, const char *const *args)
{
    memset(fa, 0, sizeof *fa);
    const char *bin = test_env("BS_FAKE_AGENT");
    fa->dir = test_tmpdir("fake-agent");
    fa->port_file = path_join(fa->dir, "port");
    fa->log_path = path_join(fa->dir, "posts.log");
    fa->out_path = path_join(fa->dir, "output.log");
    if (!fa->port_file || !fa->log_path || !fa->out_path) {
        fa_free_paths(fa);
        return -1;
    }

    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = fa->port_file;
    argv[n++] = "--log";
    argv[n++] = fa->log_path;
    for (; args && *args && n < 63; args++)
        argv[n++] = *args;
    argv[n] = NULL;

    struct proc_opts opts = {.stdout_path = fa->out_path, .stderr_path = fa->out_path};
    fa->pid = proc_spawn(argv, &opts);
    if (fa->pid < 0) {
        perror("fake-agent: spawn");
        fa_free_paths(fa);
        return -1;
    }
    if (proc_wait_file(fa->port_file, 10000) != 0) {
        char *out = test_read_file(fa->out_path, NULL);
        fprintf(stderr, "fake-agent did not start; its output:\n%s\n", out ? out : "");
        free(out);
        proc_kill(fa->pid);
        fa->pid = 0;
        fa_free_paths(fa);
        return -1;
    }
    char *text = test_read_file(fa->port_file, NULL);
    fa->port = text ? (unsigned)strtoul(text, NULL, 10) : 0;
    free(text);
    snprintf(fa->url, sizeof fa->url, "http://127.0.0.1:%u", fa->port);
    return 0;
}

int fake_agent_stop(struct fake_agent *fa)
{
    int rc = 0;
    if (fa->pid > 0) {
        int status = 0;
        int r = proc_stop(fa->pid, SIGTERM, 5000, &status);
        rc = r == 0 ? proc_exit_code(status) : -1;
        if (rc != 0) {
            char *out = test_read_file(fa->out_path, NULL);
            fprintf(stderr, "fake-agent exit %d; its output:\n%s\n", rc, out ? out : "");
            free(out);
        }
        fa->pid = 0;
    }
    fa_free_paths(fa);
    return rc;
}

struct buf {
    char *p;
    size_t len;
};

static size_t buf_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct buf *b = userdata;
    size_t n = size * nmemb;
    char *np = realloc(b->p, b->len + n + 1);
    if (!np)
        return 0;
    memcpy(np + b->len, ptr, n);
    b->p = np;
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

long fake_agent_call(const struct fake_agent *fa, const char *method, const char *path,
                     const char *body, const char *token, json_t **reply)
{
    char url[512], auth[512];
    struct buf b = {0};
    struct curl_slist *headers = NULL;
    long status = -1;
    if (reply)
        *reply = NULL;
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    snprintf(url, sizeof url, "%s%s", fa->url, path);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    }
    CURLcode rc = curl_easy_perform(e);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (reply && b.p)
            *reply = json_loads(b.p, 0, NULL);
    } else {
        fprintf(stderr, "fake-agent %s %s: %s\n", method, path, curl_easy_strerror(rc));
    }
    free(b.p);
    curl_slist_free_all(headers);
    curl_easy_cleanup(e);
    return status;
}

int fake_agent_config(const struct fake_agent *fa, const char *json_text)
{
    json_t *reply = NULL;
    long st = fake_agent_call(fa, "POST", "/_fake/config", json_text, NULL, &reply);
    if (st != 200) {
        const char *detail = json_string_value(json_object_get(reply, "detail"));
        fprintf(stderr, "fake-agent config %s: HTTP %ld %s\n", json_text, st, detail ? detail : "");
    }
    json_decref(reply);
    return st == 200 ? 0 : -1;
}

int fake_agent_forget(const struct fake_agent *fa)
{
    return fake_agent_call(fa, "POST", "/_fake/forget", "{}", NULL, NULL) == 200 ? 0 : -1;
}

long fake_agent_set_job(const struct fake_agent *fa, const char *job_id, const char *status)
{
    char path[256];
    snprintf(path, sizeof path, "/_fake/jobs/%s", job_id);
    json_t *body = json_pack("{s:s}", "status", status);
    char *text = json_dumps(body, JSON_COMPACT);
    long st = fake_agent_call(fa, "POST", path, text, NULL, NULL);
    free(text);
    json_decref(body);
    return st;
}

int fake_agent_complete_all(const struct fake_agent *fa, const char *status)
{
    json_t *body = json_pack("{s:s}", "status", status ? status : "completed");
    char *text = json_dumps(body, JSON_COMPACT);
    json_t *reply = NULL;
    long st = fake_agent_call(fa, "POST", "/_fake/complete-all", text, NULL, &reply);
    int n = st == 200 ? (int)json_integer_value(json_object_get(reply, "finished")) : -1;
    free(text);
    json_decref(body);
    json_decref(reply);
    return n;
}

json_t *fake_agent_stats(const struct fake_agent *fa)
{
    json_t *reply = NULL;
    if (fake_agent_call(fa, "GET", "/_fake/stats", NULL, NULL, &reply) != 200) {
        json_decref(reply);
        return NULL;
    }
    return reply;
}

long fake_agent_posts_for(const struct fake_agent *fa, const char *bead_id)
{
    json_t *stats = fake_agent_stats(fa);
    if (!stats)
        return -1;
    json_t *n = json_object_get(json_object_get(stats, "by_bead"), bead_id);
    long v = n ? (long)json_integer_value(n) : 0;
    json_decref(stats);
    return v;
}

long fake_agent_max_alive_per_bead(const struct fake_agent *fa)
{
    json_t *stats = fake_agent_stats(fa);
    json_t *n = json_object_get(json_object_get(stats, "processes"), "max_alive_per_bead");
    long v = json_is_integer(n) ? (long)json_integer_value(n) : -1;
    json_decref(stats);
    return v;
}

long fake_agent_execute(const struct fake_agent *fa, const char *token, const char *bead_id,
                        char *job_id)
{
    json_t *body = json_pack("{s:s, s:s, s:{s:s}}", "prompt", "fake prompt", "agent",
                             "beads-task-runner", "metadata", "bead_id", bead_id);
    char *text = json_dumps(body, JSON_COMPACT);
    json_t *reply = NULL;
    long st = fake_agent_call(fa, "POST", "/execute", text, token, &reply);
    if (st == 202 && job_id) {
        const char *id = json_string_value(json_object_get(reply, "job_id"));
        snprintf(job_id, 13, "%s", id ? id : "");
    }
    free(text);
    json_decref(body);
    json_decref(reply);
    return st;
}
