/* slowlog.h: the entries SLOWLOG GET shows (commands that held the loop
 * past --slowlog-slower-than, and fetches that took longer than that),
 * newest first, at most --slowlog-max-len of them.
 *
 * An entry is shaped as Redis's: id, unix time (s), duration (us), the
 * arguments (at most SLOWLOG_MAX_ARGS, the last one then saying how many
 * more there were; each at most SLOWLOG_MAX_ARG_LEN bytes, then how many
 * more bytes), the client's address and name. Each entry is one
 * allocation, made only when something was slow. */
#ifndef LC_SLOWLOG_H
#define LC_SLOWLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define SLOWLOG_MAX_ARGS    32
#define SLOWLOG_MAX_ARG_LEN 128

typedef struct slowlog_arg {
    const char *s;
    size_t len;
} slowlog_arg_t;

typedef struct slowlog_entry {
    uint64_t id;
    int64_t time_s;
    uint64_t duration_us;
    int argc;
    slowlog_arg_t *argv;
    const char *addr; /* "" when no client (a fetch) */
    const char *name;
} slowlog_entry_t;

/* Is a duration of ns nanoseconds slow? (--slowlog-slower-than, in us:
 * < 0 never, 0 always.) Inline: every command asks. */
static inline bool slowlog_is_slow_ns(uint64_t ns)
{
    return cfg.slowlog_slower_than >= 0 && ns >= (uint64_t)cfg.slowlog_slower_than * 1000;
}
/* Record one entry; argc is the full count (only the first are kept). */
void slowlog_push(int argc, const slowlog_arg_t *argv, uint64_t duration_us, const char *addr,
                  const char *name);
/* A fetch of ns:id that took that long: argv {"FETCH", "ns:id"}, no client. */
void slowlog_push_fetch(const char *ns, const char *id, size_t idlen, uint64_t duration_us);
size_t slowlog_len(void);
/* The i-th newest entry (0: the newest), i < slowlog_len(). */
const slowlog_entry_t *slowlog_at(size_t i);
void slowlog_reset(void);

#endif
