/* fetch_log.h: one log line per failed fetch, rate-limited per namespace.
 *
 * A failing origin fails every request that reaches it, so an unbounded
 * line per failure would let it flood the log: each namespace gets at most
 * FETCH_LOG_PER_SEC lines per second, and the first line after a window
 * that held some back says how many (log_limit_t in log.h). */
#ifndef LC_FETCH_LOG_H
#define LC_FETCH_LOG_H

#include <stddef.h>

#include "policy.h"

#define FETCH_LOG_PER_SEC 5

/* Logs r when it is FETCH_ERROR or FETCH_TIMEOUT; nothing otherwise. ns is
 * the namespace name, id the binary id (escaped and cut in the line). */
void fetch_log_result(const char *ns, const char *id, size_t idlen, const fetch_result_t *r);

/* Frees the per-namespace state (at exit). */
void fetch_log_close(void);

#endif
