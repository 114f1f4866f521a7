/* reply_arena.h: hiredis reply objects built in one arena per reply.
 *
 * hiredis's default reader allocates a redisReply and a copy of the string
 * for every element of a reply, and frees them one by one: for an MGET of
 * 16 entries that is 34 allocations and as many frees. These functions,
 * installed on a reader (redisReader.fn), build the very same redisReply
 * tree (so every consumer, hiredis's async layer included, reads it as
 * usual) inside one block per reply, grown by chaining more blocks, and
 * freed in one go when hiredis frees the reply. Only freeObject of a whole
 * reply is supported, which is all hiredis (0.14) ever calls; never call
 * freeReplyObject() on such a reply. */
#ifndef LC_REPLY_ARENA_H
#define LC_REPLY_ARENA_H

#include <hiredis/read.h>

extern redisReplyObjectFunctions reply_arena_fns;

#endif
