/* tags.h: tags purged recently, so a fetch in flight that returns one of
 * them does not store its result (tags.c, purge.c). The clock counts the
 * purges this process has noted (its own and other instances' "T", both
 * BUS_TAG_PURGED), so "since" is exact: no two events share a tick, as two
 * in one millisecond would. */
#ifndef LC_TAGS_H
#define LC_TAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Note every BUS_TAG_PURGED. oldest_fetch: tag_clock() when the oldest
 * fetch in flight started (fills_oldest_fetch); purges older than that are
 * forgotten. */
int tags_listen(uint64_t (*oldest_fetch)(void));
uint64_t tag_clock(void);
void tag_note_purged(const char *tag, size_t len);
bool tag_purged_since(const char *tag, size_t len, uint64_t since_clock);
void tags_close(void);

#endif
