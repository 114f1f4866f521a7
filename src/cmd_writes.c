/* cmd_writes.c: WRITES ns [RETRY], the write-behind queue of a namespace
 * for operators (docs/POLICIES.md, "Write-behind"): its depth, pending
 * writes, the age of the oldest, and the dead letters; RETRY moves the
 * dead letters back to the queue. */
#include "commands.h"
#include "reply.h"
#include "util.h"
#include "write_behind.h"

void cmd_writes(client_t *c)
{
    long argc = client_argc(c);
    size_t len = 0;
    const char *sub = argc == 3 ? client_arg(c, 2, &len) : NULL;
    if (argc > 3 || (sub && !eq_nocase(sub, len, "retry"))) {
        reply_error(client_reply_buf(c), "syntax error (WRITES ns [RETRY])");
        return;
    }
    ns_t *ns = ns_arg_or_reply(c, 1, true);
    if (!ns) return;
    if (!ns->cur->conf.has_write_behind) {
        reply_error(client_reply_buf(c), "namespace '%s' has no write_behind", ns->name);
        return;
    }
    ns->stats.requests_other++;
    if (sub)
        write_behind_retry(slot_sink(client_defer(c)), ns);
    else
        write_behind_status(slot_sink(client_defer(c)), ns);
}
