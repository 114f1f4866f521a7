/* fetch_log.c: failed fetches in the log, bounded (see fetch_log.h). */
#include "fetch_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "log.h"
#include "redact.h"
#include "util.h"

#define ID_MAX_IN  64  /* id bytes shown; the rest is "...(N bytes)" */
#define MSG_MAX_IN 400 /* message bytes shown */

static dict_t limits; /* namespace name -> log_limit_t */
static bool limits_ready;

static log_limit_t *limit_of(const char *ns)
{
    if (!limits_ready) {
        dict_init(&limits);
        limits_ready = true;
    }
    size_t len = strlen(ns);
    log_limit_t *l = dict_get(&limits, ns, len);
    if (!l) {
        l = xcalloc(1, sizeof(*l));
        dict_set(&limits, ns, len, l);
    }
    return l;
}

void fetch_log_result(const char *ns, const char *id, size_t idlen, const fetch_result_t *r)
{
    if (r->kind != FETCH_ERROR && r->kind != FETCH_TIMEOUT) return;
    uint64_t report;
    if (!log_limit_allow(limit_of(ns), mono_ms(), FETCH_LOG_PER_SEC, 1000, &report)) return;
    if (report)
        log_warn("[%s] fetch failures: suppressed %llu similar messages (at most %d a second)", ns,
                 (unsigned long long)report, FETCH_LOG_PER_SEC);
    /* The message may quote an origin URL with credentials in it, and may
     * hold any byte a policy put in its error. Only its start is shown; the
     * cut goes back to a space so no URL is redacted half-seen. */
    const char *msg = r->error ? r->error : "unknown error";
    size_t mlen = strlen(msg), use = mlen;
    if (use > MSG_MAX_IN) {
        use = MSG_MAX_IN;
        while (use > 0 && msg[use - 1] != ' ')
            use--;
    }
    char clean[MSG_MAX_IN + 64], esc_msg[MSG_MAX_IN * 4 + 64], esc_id[ID_MAX_IN * 4 + 32];
    redact_text(msg, use, clean, sizeof(clean));
    size_t clen = strlen(clean);
    log_escape(esc_msg, sizeof(esc_msg), clean, clen > MSG_MAX_IN ? MSG_MAX_IN : clen, MSG_MAX_IN);
    if (use < mlen) {
        size_t o = strlen(esc_msg);
        snprintf(esc_msg + o, sizeof(esc_msg) - o, "...(%zu bytes)", mlen);
    }
    log_escape(esc_id, sizeof(esc_id), id, idlen, ID_MAX_IN);
    log_warn("[%s] fetch failed (%s) for id '%s': %s", ns,
             r->kind == FETCH_TIMEOUT ? "timeout" : "error", esc_id, esc_msg);
}

void fetch_log_close(void)
{
    if (!limits_ready) return;
    size_t i;
    for (dict_entry_t *e = dict_first(&limits, &i); e; e = dict_next(&limits, &i, e))
        free(e->value);
    dict_free(&limits);
    limits_ready = false;
}
