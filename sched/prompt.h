#ifndef BS_PROMPT_H
#define BS_PROMPT_H
/* The prompt sent to the agent, built from the bead with a template.
 * Placeholders: {{id}} {{title}} {{priority}} {{type}} {{description}}
 * {{acceptance_criteria}} {{dispatch_id}} {{attempt}} {{max_attempts}}
 * {{job_id}} (the scheduler's job id for the agent: the dispatch id) and
 * {{bd_db}} (the `bd --db` path). attempt is the attempt that may reach the
 * agent, never above max_attempts.
 * Bead text is untrusted: each field is capped (PROMPT_FIELD_MAX bytes,
 * UTF-8 safe, marked when cut); JSON escaping happens later, in jansson. */
#include <stddef.h>

#include "beads.h"

#define PROMPT_FIELD_MAX (64 * 1024)

extern const char prompt_default_template[];

/* Checks a template: every {{...}} names a known placeholder. Returns 0 or
 * BS_EINVAL with why naming the first unknown one. */
int prompt_template_check(const char *tmpl, char *why, size_t whylen);

/* Renders tmpl for bead b. Returns a malloc'd string, NULL on allocation
 * failure. Unknown placeholders are left as they are (checked earlier). */
char *prompt_render(const char *tmpl, const struct bead *b, const char *dispatch_id, int attempt,
                    int max_attempts, const char *bd_db);
#endif
