#ifndef BS_FUZZ_TARGETS_H
#define BS_FUZZ_TARGETS_H
/* The fuzz targets as plain functions, so the libFuzzer executables
 * (tests/fuzz/fuzz_*.c with their LLVMFuzzerTestOneInput) and the unit test
 * that replays tests/fuzz/regressions/ and the seed corpus run the same
 * code. Each takes arbitrary bytes, returns 0, and aborts when a property
 * the code promises does not hold (sanitizers catch memory errors). */
#include <stddef.h>
#include <stdint.h>

/* config_parse_duration, config_format_duration, config_parse_dolt_url and
 * config_load. The input is lines: "BEADS_SCHED_NAME=value" lines form the
 * environment, "--flag=value" (or "--flag" then a value line) form argv; a
 * line of anything else is parsed as a duration and as a Dolt URL. */
int fuzz_config_input(const uint8_t *data, size_t size);

/* agent_parse_health, agent_parse_execute, agent_parse_job,
 * agent_parse_beadboard_status on the whole input, and the request body
 * builders (agent_execute_body, agent_beadboard_body) on it as text. */
int fuzz_agent_input(const uint8_t *data, size_t size);
#endif
