#include "rules.h"

const char *rules_action_name(enum rules_action a)
{
    static const char *const names[] = {"wait", "retry", "block_stale", "block_hard_limit"};
    return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

int64_t rules_quiet_since(const struct rules_facts *f)
{
    return f->job_finished_ms > f->bead_updated_ms ? f->job_finished_ms : f->bead_updated_ms;
}

static int quiet(const struct rules_facts *f, const struct rules_limits *l)
{
    return f->now_ms - rules_quiet_since(f) >= l->stale_after_ms;
}

/* The agent can't say: the stale rule, once it has been silent long enough. */
static enum rules_action cant_say(const struct rules_facts *f, const struct rules_limits *l)
{
    if (f->missed_passes < l->min_missed_passes)
        return RA_WAIT;
    return quiet(f, l) ? RA_BLOCK_STALE : RA_WAIT;
}

enum rules_action rules_dispatched(const struct rules_facts *f, const struct rules_limits *l)
{
    switch (f->job) {
    case RJ_ANSWERED:
        switch (agent_job_meaning(f->status)) {
        case AJM_ALIVE:
            if (f->status == JOB_RUNNING && f->dispatched_ms &&
                f->now_ms - f->dispatched_ms > l->job_timeout_ms + l->stale_after_ms)
                return RA_BLOCK_HARD_LIMIT;
            return RA_WAIT;
        case AJM_EXITED:
            return RA_RETRY;
        case AJM_MAYBE_RUNNING:
            return quiet(f, l) ? RA_RETRY : RA_WAIT;
        }
        return RA_WAIT;
    case RJ_MISSING:
        if (f->seen_maybe_running)
            return quiet(f, l) ? RA_RETRY : RA_WAIT;
        return RA_RETRY;
    case RJ_UNREACHABLE:
    case RJ_UNUSABLE:
        return cant_say(f, l);
    case RJ_NONE:
    case RJ_UNAUTHORIZED:
        return RA_WAIT;
    }
    return RA_WAIT;
}

enum rules_action rules_no_job_id(const struct rules_facts *f, const struct rules_limits *l)
{
    return quiet(f, l) ? RA_RETRY : RA_WAIT;
}

enum rules_action rules_orphan(const struct rules_facts *f, const struct rules_limits *l)
{
    switch (f->job) {
    case RJ_ANSWERED:
        if (agent_job_meaning(f->status) == AJM_ALIVE)
            return RA_WAIT;
        return quiet(f, l) ? RA_BLOCK_STALE : RA_WAIT;
    case RJ_UNREACHABLE:
    case RJ_UNUSABLE:
        return cant_say(f, l);
    case RJ_UNAUTHORIZED:
        return RA_WAIT;
    case RJ_NONE:
    case RJ_MISSING:
        return quiet(f, l) ? RA_BLOCK_STALE : RA_WAIT;
    }
    return RA_WAIT;
}
