/* sentinel.h: where the master is, as Redis Sentinel says (backend
 * internal).
 *
 * One command link to a sentinel asks SENTINEL GET-MASTER-ADDR-BY-NAME
 * when it comes up, every SENTINEL_POLL_MS, and when asked to
 * (sentinel_refresh: the data link failed, or found a replica); a
 * subscriber to the same sentinels follows +switch-master the moment a
 * failover ends. Both move on to the next sentinel of the URL when one
 * fails. on_master runs whenever the answer names another address than
 * before (the first answer included). */
#ifndef LC_SENTINEL_H
#define LC_SENTINEL_H

#include <uv.h>

#include "redis_url.h"

#define SENTINEL_POLL_MS 1000

void sentinel_start(uv_loop_t *loop, const redis_url_t *url, long timeout_ms,
                    void (*on_master)(const char *host, int port));
void sentinel_refresh(void);
void sentinel_close(void);

#endif
