/* watch.h: hot reload of the policies folder (SPEC §4).
 *
 * The folder is watched with inotify (uv_fs_event) and, as a fallback for
 * replaced folders, network filesystems and lost events, stat-polled every
 * 500 ms. Either way a *scan* runs in the libuv threadpool: list the folder,
 * stat every NAME.lua, read and hash the ones that may have changed. Back
 * on the loop, each file is handed to engine_apply (which ignores content
 * whose sha1 did not change) and namespaces whose file is gone to
 * engine_remove (after a grace period: a deploy's rm + cp). RELOAD and
 * SIGHUP go through the same scan, forcing a fresh compile. The loop never touches the disk for a
 * reload. */
#ifndef LC_WATCH_H
#define LC_WATCH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* How one reload request ended: err NULL for success, else the text of the
 * error reply without "ERR " ("policy 'ns': <error>", "unknown namespace
 * 'ns'", "shutting down", ...). */
typedef void (*watch_done_cb)(void *priv, const char *err);

/* Start watching dir (the engine's policies folder) on loop. A deleted
 * file's namespace is unloaded grace_ms after the scan that found it gone
 * (0: at once), unless the file is back by then; RELOAD/SIGHUP unload at
 * once. Not fatal if inotify is unavailable: polling still runs. 0, or -1
 * if already started. */
int watch_start(uv_loop_t *loop, const char *dir, uint64_t grace_ms);
/* Close the handles; requests not yet answered get "shutting down". A scan
 * in the threadpool finishes on its own and is then discarded. Call before
 * engine_close. */
void watch_stop(void);

/* RELOAD [ns] / SIGHUP: read the folder now (off the loop) and apply it,
 * compiling ns (ns NULL: every namespace) afresh even if unchanged; then
 * cb(priv, err) runs once: later, or at once (before watch_reload returns)
 * when the watcher is not running or is stopping. For one ns:
 * success if it now serves its file's content, or if its file was deleted
 * (it is removed); "unknown namespace" if there never was such a file. For
 * all: the first namespace (by name) that failed, else success. cb may be
 * NULL. */
void watch_reload(const char *ns, size_t len, watch_done_cb cb, void *priv);

#endif
