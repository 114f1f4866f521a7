/* keys.c: Redis key names (see keys.h). */
#include "keys.h"

#include <string.h>

#include "config.h"
#include "glob.h"

void keys_entry(buf_t *out, const char *ns, size_t nslen, const char *id, size_t idlen)
{
    /* In one reservation: this runs on every hit. */
    size_t pl = strlen(cfg.prefix);
    buf_reserve(out, pl + nslen + idlen + 4);
    char *p = out->data + out->len;
    memcpy(p, cfg.prefix, pl);
    p += pl;
    *p++ = ':';
    *p++ = '{';
    memcpy(p, ns, nslen);
    p += nslen;
    *p++ = ':';
    if (idlen) memcpy(p, id, idlen);
    p += idlen;
    *p++ = '}';
    out->len = (size_t)(p - out->data);
}

size_t keys_entry_id_offset(size_t nslen)
{
    return strlen(cfg.prefix) + 2 + nslen + 1;
}

void keys_lock(buf_t *out, const char *entry_key, size_t len)
{
    buf_append(out, entry_key, len);
    buf_append(out, ":lock", 5);
}

void keys_tag(buf_t *out, const char *tag, size_t len)
{
    buf_append_str(out, cfg.prefix);
    buf_append(out, ":#tag:", 6);
    buf_append(out, tag, len);
}

void keys_gen(buf_t *out, const char *ns)
{
    buf_printf(out, "%s:#gen:%s", cfg.prefix, ns);
}

/* '#' cannot start a namespace name, so {#wb:NS} is no entry's hash tag. */
void keys_wb_queue(buf_t *out, const char *ns)
{
    buf_printf(out, "%s:{#wb:%s}:q", cfg.prefix, ns);
}

void keys_wb_dead(buf_t *out, const char *ns)
{
    buf_printf(out, "%s:{#wb:%s}:dead", cfg.prefix, ns);
}

void keys_channel(buf_t *out)
{
    buf_printf(out, "%s:#events", cfg.prefix);
}

void keys_entry_glob(buf_t *out, const char *ns, const char *idglob, size_t idlen)
{
    glob_escape(out, cfg.prefix, strlen(cfg.prefix));
    buf_append(out, ":{", 2);
    glob_escape(out, ns, strlen(ns));
    buf_append(out, ":", 1);
    buf_append(out, idglob, idlen);
    buf_append(out, "}", 1);
}

bool keys_parse_entry(const char *key, size_t len, const char **ns, size_t *nslen, const char **id,
                      size_t *idlen)
{
    size_t plen = strlen(cfg.prefix);
    if (len < plen + 5 || memcmp(key, cfg.prefix, plen) != 0 || key[plen] != ':' ||
        key[plen + 1] != '{' || key[len - 1] != '}')
        return false;
    const char *n = key + plen + 2;
    const char *colon = memchr(n, ':', len - plen - 3);
    if (!colon) return false;
    *ns = n;
    *nslen = (size_t)(colon - n);
    *id = colon + 1;
    *idlen = (size_t)(key + len - 1 - *id);
    return true;
}
