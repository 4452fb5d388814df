/* Fuzz target: the agent service's reply parsers and request builders
 * (sched/agent.c). Replies are untrusted bytes from the network.
 *
 * The whole input is given, as a reply body of exactly `size` bytes (no NUL
 * terminator: the parsers take a length), to agent_parse_health,
 * agent_parse_execute, agent_parse_job and agent_parse_beadboard_status.
 * The input as text (up to its first NUL) is also put into the bodies of
 * POST /execute and POST /api/agent-dispatch.
 *
 * Properties checked beyond memory safety (aborts when broken):
 *   - a parser that fails says why (non-empty, NUL-terminated, within the
 *     buffer it was given, also a tiny one);
 *   - /health counts are 0..1000000 and free slots are never negative;
 *   - an accepted job id is a valid job id (agent_job_id_valid) that fits;
 *   - a job status is one of the contract's, its error text NUL-terminated;
 *   - BeadBoard's busy is 0 or 1;
 *   - request bodies are JSON that parses back, with the text in them. */
#include "fuzz_targets.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "errors.h"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_agent: property broken: %s\n", what);
        abort();
    }
}

/* A reason buffer with a guard byte after the part the parser may use. */
struct why {
    char buf[257];
    size_t len;
};

static void why_init(struct why *w, size_t len)
{
    memset(w->buf, 0x5a, sizeof w->buf);
    w->len = len;
    w->buf[0] = '\0';
}

static void why_check(const struct why *w)
{
    check(w->buf[w->len] == 0x5a, "reason stays within its buffer");
    check(memchr(w->buf, '\0', w->len) != NULL, "reason is NUL-terminated");
    check(w->len < 2 || w->buf[0] != '\0', "a failing parser says why");
}

/* The parsers take (body, len): give them a heap copy of exactly len bytes,
 * so ASan catches a read past the end. */
static void fuzz_parsers(const uint8_t *data, size_t size, size_t whylen)
{
    char *body = malloc(size ? size : 1);
    if (!body)
        return;
    memcpy(body, data, size);
    struct why w;

    struct agent_health h;
    why_init(&w, whylen);
    if (agent_parse_health(body, size, &h, w.buf, w.len) == 0) {
        check(h.busy == 0 || h.busy == 1, "health busy is a boolean");
        check(h.active >= 0 && h.active <= 1000000 && h.queued >= 0 && h.queued <= 1000000 &&
              h.capacity >= 0 && h.capacity <= 1000000, "health counts in range");
        check(agent_free_slots(&h) >= 0, "free slots never negative");
    } else {
        why_check(&w);
    }

    char job_id[AGENT_JOB_ID_MAX + 1];
    memset(job_id, 0x5a, sizeof job_id);
    why_init(&w, whylen);
    if (agent_parse_execute(body, size, job_id, AGENT_JOB_ID_MAX, w.buf, w.len) == 0) {
        check(job_id[AGENT_JOB_ID_MAX] == 0x5a, "job id stays within its buffer");
        check(memchr(job_id, '\0', AGENT_JOB_ID_MAX) != NULL, "job id is NUL-terminated");
        check(agent_job_id_valid(job_id), "accepted job id is valid");
    } else {
        why_check(&w);
    }
    /* A caller with a small buffer: the id must fit or be refused. */
    char small[8];
    why_init(&w, whylen);
    if (agent_parse_execute(body, size, small, sizeof small, w.buf, w.len) == 0)
        check(strlen(small) < sizeof small && agent_job_id_valid(small), "small job id fits");

    struct agent_job job;
    why_init(&w, whylen);
    if (agent_parse_job(body, size, &job, w.buf, w.len) == 0) {
        check((int)job.status >= 0 && job.status < JOB_STATUS_COUNT, "job status known");
        check(memchr(job.error, '\0', sizeof job.error) != NULL, "job error NUL-terminated");
        check(strcmp(agent_job_status_name(job.status), "?") != 0, "job status has a name");
    } else {
        why_check(&w);
    }

    int busy = -1;
    why_init(&w, whylen);
    if (agent_parse_beadboard_status(body, size, &busy, w.buf, w.len) == 0)
        check(busy == 0 || busy == 1, "beadboard busy is a boolean");
    else
        why_check(&w);
    free(body);
}

/* The request bodies: valid JSON whatever the bytes. */
static void fuzz_builders(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';

    char *b = agent_execute_body(text, "beads-task-runner", 5.0, 2700, text, "dispatch-1", 1);
    if (b) {
        json_error_t e;
        json_t *o = json_loads(b, 0, &e);
        check(json_is_object(o), "execute body is a JSON object");
        check(json_is_string(json_object_get(o, "prompt")), "execute body has the prompt");
        json_t *meta = json_object_get(o, "metadata");
        check(json_is_string(json_object_get(meta, "bead_id")), "execute body has metadata.bead_id");
        /* Valid UTF-8 without NULs goes through unchanged. */
        json_t *as_is = json_string(text);
        if (as_is)
            check(strcmp(json_string_value(json_object_get(o, "prompt")), text) == 0,
                  "valid UTF-8 prompt kept as is");
        json_decref(as_is);
        json_decref(o);
        free(b);
    }
    b = agent_beadboard_body(text);
    if (b) {
        json_t *o = json_loads(b, 0, NULL);
        check(json_is_string(json_object_get(o, "taskId")), "beadboard body has taskId");
        json_decref(o);
        free(b);
    }
    free(text);
}

int fuzz_agent_input(const uint8_t *data, size_t size)
{
    if (size > (1u << 20))
        return 0;
    /* A generous reason buffer, and (by input length) a tiny one. */
    fuzz_parsers(data, size, 256);
    fuzz_parsers(data, size, 1 + size % 8);
    fuzz_builders(data, size);
    return 0;
}

#ifndef BS_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_agent_input(data, size); }
#endif
