/* sentinel.h: where the master is, as Redis Sentinel says (backend
 * internal).
 *
 * One command link to a sentinel asks SENTINEL MASTER when it comes up,
 * every SENTINEL_POLL_MS, and when asked to (sentinel_refresh: the data
 * link failed, or found a replica); a subscriber to the same sentinels
 * follows +switch-master the moment a failover ends. Both move on to the
 * next sentinel of the URL when one fails. An answer whose config-epoch
 * is behind the configuration followed (a sentinel cut off from the
 * others during a failover) is ignored, and the next sentinel asked.
 * on_master runs whenever the answer names another address than before
 * (the first answer included). */
#ifndef LC_SENTINEL_H
#define LC_SENTINEL_H

#include <stdbool.h>

#include <uv.h>

#include "redis_url.h"

#define SENTINEL_POLL_MS 1000

void sentinel_start(uv_loop_t *loop, const redis_url_t *url, long timeout_ms,
                    void (*on_master)(const char *host, int port));
void sentinel_refresh(void);

/* Whether an answer of config-epoch epoch may move us, following the
 * configuration of epoch followed (-1: none), switched past it since by a
 * +switch-master or not. */
bool sentinel_answer_current(long long followed, bool switched, long long epoch);
void sentinel_close(void);

#endif
