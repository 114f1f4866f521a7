/* resp.h: resumable RESP2 request parser (multibulk and inline).
 *
 * The parser is fed whatever bytes a read returned, in any split, and keeps
 * all partial state itself (request type, remaining multibulk count, pending
 * bulk length, a partial inline line), so the caller keeps no query buffer.
 * Arguments are copied into one arena per command: no malloc per argument.
 * Every length is capped; exceeding a cap is a protocol error whose message
 * is Redis's own text ("Protocol error: invalid bulk length", ...). */
#ifndef LC_RESP_H
#define LC_RESP_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

typedef struct resp_limits {
    size_t max_inline;  /* longest inline request line, bytes (Redis: 64 KiB) */
    size_t max_bulk;    /* longest single bulk argument, bytes */
    long max_args;      /* most arguments in one command */
    size_t max_request; /* all argument bytes of one command; 0: no cap beyond the others */
    /* Before AUTH, Redis 7's tighter caps: at most 10 arguments of 16 KiB,
     * with its "unauthenticated ..." error texts. */
    bool unauthenticated;
} resp_limits_t;

enum resp_status {
    RESP_NEED_MORE = 0, /* all input consumed, command not complete yet */
    RESP_DONE = 1,      /* a whole command is ready in argc/argv */
    RESP_ERROR = 2,     /* protocol error: errmsg says why; caller replies and closes */
};

typedef struct resp_parser {
    resp_limits_t lim;
    /* state of the command being parsed */
    int reqtype;        /* 0 none yet, 1 inline, 2 multibulk */
    long mb_left;       /* multibulk: arguments still to read */
    long bulk_len;      /* multibulk: length of the bulk being read, -1 if reading its header */
    buf_t line;         /* partial header or inline line carried across feeds */
    buf_t arena;        /* argument bytes of the current command, each NUL-terminated */
    size_t *arg_off;    /* offsets of the arguments in arena */
    size_t *arg_len;    /* their lengths */
    long argc;          /* arguments complete so far / in the finished command */
    long arg_cap;       /* allocated size of arg_off/arg_len */
    const char *errmsg; /* set when RESP_ERROR is returned; stays set (sticky) */
    char errbuf[48];    /* backs errmsg when it names a byte ("expected '$', got 'X'") */
} resp_parser_t;

/* lim may be NULL, and any zero field means Redis's default: 64 KiB inline,
 * 512 MiB bulk, 1M arguments. */
void resp_parser_init(resp_parser_t *p, const resp_limits_t *lim);
void resp_parser_free(resp_parser_t *p);

/* Consume bytes from in[0..len). Sets *used to how many were consumed; stops
 * right after a complete command (RESP_DONE) so the caller can run it and
 * call again with the rest. Empty inline lines and "*0"/"*-1" are skipped,
 * as Redis does. On RESP_NEED_MORE all of in was consumed. After RESP_ERROR
 * the stream cannot be resynchronised: every later call returns RESP_ERROR
 * again with *used = 0, and errmsg (Redis's "Protocol error: ..." text,
 * without "ERR ") must be copied by the caller before resp_parser_free. */
int resp_feed(resp_parser_t *p, const char *in, size_t len, size_t *used);

/* Argument i of the finished command, NULL if i is out of range. Valid until
 * resp_next_command or the next resp_feed that starts a new command. The
 * bytes are NUL-terminated for convenience but may contain NULs. */
const char *resp_arg(const resp_parser_t *p, long i, size_t *len);

/* Forget the finished command and get ready for the next one. */
void resp_next_command(resp_parser_t *p);

#endif
