#ifndef BS_TEST_FAKEAGENT_H
#define BS_TEST_FAKEAGENT_H
/* Drives the fake agent service (tests/fake_agent, CONTRACTS.md section 2)
 * from tests: start it on an ephemeral loopback port, turn its /_fake/ knobs,
 * read its counters, stop it.
 *
 * The helpers are synchronous (libcurl easy; the caller has called
 * curl_global_init) and may be called from inside a uv callback: they block
 * the loop for one loopback round trip. */
#include <jansson.h>
#include <sys/types.h>

struct fake_agent {
    pid_t pid;
    unsigned port;
    char url[64];        /* base URL without trailing slash: "http://127.0.0.1:PORT" */
    char *dir;           /* private temp dir holding the files below; removed by stop */
    char *port_file;
    char *log_path;      /* --log: one JSON line per accepted POST /execute */
    char *out_path;      /* the fake's stdout and stderr */
};

/* Starts $BS_FAKE_AGENT with extra args (NULL-terminated, may be NULL), e.g.
 * {"--token", "t", "--capacity", "2", NULL}; --port 0, --port-file and --log
 * are added. Waits up to 10 s for the port file. Returns 0, or -1 with a
 * message on stderr (nothing left running). */
int fake_agent_start(struct fake_agent *fa, const char *const *args);

/* SIGTERM, waits up to 5 s (then SIGKILL), removes the temp dir and frees
 * the paths. Returns the fake's exit code (0 = clean exit), or -1 if it had
 * to be killed. Safe on a zeroed or already stopped struct (returns 0). */
int fake_agent_stop(struct fake_agent *fa);

/* One synchronous request: method "GET"/"POST", path such as "/health", body
 * (JSON text) or NULL, bearer token or NULL. Returns the HTTP status, or -1
 * on a transport error. When reply is not NULL it gets the parsed JSON body
 * (new reference; NULL when the body is not JSON). */
long fake_agent_call(const struct fake_agent *fa, const char *method, const char *path,
                     const char *body, const char *token, json_t **reply);

/* POST /_fake/config with the given JSON object text; returns 0, or -1 when
 * the fake rejected it (message on stderr). */
int fake_agent_config(const struct fake_agent *fa, const char *json_text);

/* POST /_fake/forget: the fake drops every job (an agent restart). */
int fake_agent_forget(const struct fake_agent *fa);

/* POST /_fake/jobs/{id} {"status": status}; returns the HTTP status. */
long fake_agent_set_job(const struct fake_agent *fa, const char *job_id, const char *status);

/* POST /_fake/complete-all {"status": status}; returns the number finished or -1. */
int fake_agent_complete_all(const struct fake_agent *fa, const char *status);

/* GET /_fake/stats: {"posts","by_bead","jobs","requests",...}; new reference
 * or NULL. */
json_t *fake_agent_stats(const struct fake_agent *fa);

/* Accepted POST /execute count for one bead (from /_fake/stats), or -1. */
long fake_agent_posts_for(const struct fake_agent *fa, const char *bead_id);

/* The most agent processes ever alive at once on one bead (from
 * /_fake/stats processes.max_alive_per_bead): more than 1 means two agents
 * worked on one bead together (a timed-out job's agent counts while it
 * runs). -1 on error. */
long fake_agent_max_alive_per_bead(const struct fake_agent *fa);

/* POST /execute {"prompt", "agent":"beads-task-runner", "metadata":{"bead_id"}}
 * with the token; on 202 copies the job id into job_id (13 bytes) when not
 * NULL. Returns the HTTP status or -1. */
long fake_agent_execute(const struct fake_agent *fa, const char *token, const char *bead_id,
                        char *job_id);
#endif
