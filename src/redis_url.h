/* redis_url.h: the --redis URL, parsed. Pure: no I/O, no allocation; the
 * fixed-size fields keep it so.
 *
 *   redis://[[user]:password@]host[:port][/db][?opts]         one server
 *   rediss://...                                               the same over TLS
 *   unix:/path/to/socket[?opts]   unix:///path/to/socket[?opts]
 *   redis+cluster://[[user]:password@]host:port[,host:port...][?opts]
 *                                 Redis Cluster: the nodes to learn the map from
 *   redis+sentinel://[[user]:password@]host:port[,host:port...]/master[/db][?opts]
 *                                 the sentinels, and the name of the master they watch
 *
 * IPv6 hosts go in brackets. opts: db=N, user=U, password=P (for unix
 * sockets, which have no userinfo), and for Sentinel sentinel_user=U and
 * sentinel_password=P, the sentinels' own credentials (the userinfo and
 * user/password authenticate to the data nodes). Userinfo and option values
 * are %-decoded, so a password may hold @ : / ?. As in redis-cli,
 * "redis://secret@host" means password "secret". A cluster has only db 0. */
#ifndef LC_REDIS_URL_H
#define LC_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_MAX_HOSTS    16
#define REDIS_URL_DEFAULT_PORT 6379

typedef enum redis_mode {
    REDIS_MODE_SINGLE,   /* redis://, rediss://, unix: */
    REDIS_MODE_CLUSTER,  /* redis+cluster:// */
    REDIS_MODE_SENTINEL, /* redis+sentinel:// */
} redis_mode_t;

typedef struct redis_addr {
    char host[256]; /* name or IP literal, IPv6 without brackets */
    int port;
} redis_addr_t;

typedef struct redis_url {
    redis_mode_t mode;
    bool tls; /* rediss:// */
    bool is_unix;
    char host[256]; /* TCP: the (first) host */
    int port;       /* TCP: its port, default 6379 */
    char path[108]; /* unix: socket path (sizeof sun_path on Linux) */
    int db;         /* SELECT after connecting when not 0 */
    char user[128]; /* ACL user for AUTH user pass; "" for AUTH pass */
    char pass[512]; /* "" for no AUTH */
    /* Every host of the URL, the first one included: the server, the
     * cluster's seed nodes or the sentinels. */
    size_t nhosts;
    redis_addr_t hosts[REDIS_URL_MAX_HOSTS];
    char master[128]; /* Sentinel: the master's name */
    char sentinel_user[128], sentinel_pass[512];
} redis_url_t;

/* 0 on success; -1 with "--redis: ..." in err and *out zeroed. The text
 * never echoes a password. */
int redis_url_parse(const char *url, redis_url_t *out, char *err, size_t errlen);

/* "cluster", "sentinel" or "single", for messages. */
const char *redis_mode_name(redis_mode_t mode);

#endif
