/* warm.h: loading ids before anyone asks (SPEC §3 WARM, §4 warm/warm_every). */
#ifndef LC_WARM_H
#define LC_WARM_H

#include "policy.h"
#include "sink.h"

/* WARM ns [id ...]: fetch ids (taken over) and answer into sink how many
 * were fetched successfully (a value, a not-found, or a stale value served
 * for stale-if-error: anything but an error). */
void warm_command(sink_t *sink, ns_t *ns, str_list_t *ids);

/* Background runs (main.c drives them). */
void warm_init(void);
void warm_ns_served(ns_t *ns); /* a file appeared (or came back): warm it as at start */
void warm_stop(void);          /* start no new warm fetches; runs under way wind down */
void warm_shutdown(void);      /* and close the timer */

#endif
