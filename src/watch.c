/* watch.c: hot reload of the policies folder (see watch.h, SPEC §4).
 *
 * Triggers, all ending in one scan at a time:
 *  - inotify events (uv_fs_event) on NAME.lua, debounced: the scan runs
 *    DEBOUNCE_MS after the last event of a burst (an editor saves in several
 *    writes), but at most BURST_MAX_MS after its first, so a steady stream
 *    of writes still gets picked up. These scans re-read every file.
 *  - a poll every POLL_MS: re-read only files whose stat signature (device,
 *    inode, size, mtime, ctime) changed since the last scan, or that were
 *    modified in the last RACY_MS (git's "racily clean" rule: a second write
 *    within the filesystem's timestamp granularity keeps the same mtime).
 *    This catches what inotify misses: NFS and other network filesystems,
 *    a policies folder swapped by symlink (the watch is re-armed on the new
 *    folder), an event queue overflow.
 *  - RELOAD [ns] and SIGHUP: re-read every file and compile the requested
 *    namespaces even if unchanged.
 *
 * A scan runs in the libuv threadpool (listing, stat, read and SHA-1: all
 * the disk I/O), and is applied on the loop: engine_apply per file (a no-op
 * when the sha1 equals the last attempt's, so a touch reloads nothing),
 * engine_remove per served namespace whose file is gone. Compiling a policy
 * happens on the loop; it is small and runs under the Lua budget.
 *
 * Files that are empty, or that change while being read, are taken as being
 * rewritten in place (an editor truncates first) and looked at again next
 * poll, not reported as failed reloads; RELOAD still loads them.
 * A folder that cannot be listed (deleted, unmounted, permissions) changes
 * nothing: namespaces keep their policies; the error is logged once. A
 * folder that the path stops naming during a scan (a symlink swapped) makes
 * the scan "unstable": it is thrown away and repeated shortly.
 *
 * Deploys (docs/POLICIES.md, "Deploys"):
 *  - a deleted file unloads its namespace only after the grace period
 *    (--reload-grace): `rm x.lua; cp new/x.lua .` must not answer "unknown
 *    namespace" in between. A file back within the grace is a plain
 *    reload; RELOAD and SIGHUP unload at once (the operator asked);
 *  - a Kubernetes ConfigMap volume holds `..data -> ..<timestamp>` and
 *    `x.lua -> ..data/x.lua`, and an update renames a new `..data` over the
 *    old one. A scan reads `..data` before and after listing; if it moved,
 *    the scan is unstable (some files may be old, some new) and repeated,
 *    so every file of the swap is applied in one scan, on the loop, with
 *    no request in between. Events on `..data` start a scan too (hidden
 *    names are otherwise ignored). */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "list.h"
#include "log.h"
#include "policy.h"
#include "util.h"

#define POLL_MS      500
#define DEBOUNCE_MS  100
#define BURST_MAX_MS 400
#define RACY_NS      (2 * 1000000000LL)
#define MAX_ERRLEN   1200
#define K8S_DATA     "..data" /* a ConfigMap volume's current version (a symlink) */

typedef struct file_sig {
    uint64_t dev, ino;
    int64_t size, mtime_ns, ctime_ns;
} file_sig_t;

typedef struct known_file {
    char *name;
    file_sig_t sig;
} known_file_t;

typedef struct scan_file {
    char *name;
    file_sig_t sig;
    bool bad_name; /* not [A-Za-z0-9_.-]+: skipped (logged once) */
    bool read;     /* src holds its content (or read error) as of this scan */
    bool changing; /* it changed while being read (EAGAIN): a writer is at work */
    bool deferred; /* empty or changing: being written, look again next poll */
    policy_src_t src;
    policy_apply_t result; /* when read and applied */
} scan_file_t;

typedef struct reload_req {
    list_node_t node; /* W.pending, or the scan's reqs, in arrival order */
    char *ns;         /* NULL: every namespace */
    watch_done_cb cb;
    void *priv;
} reload_req_t;

typedef struct scan {
    uv_work_t work;
    unsigned gen; /* of the watcher that started it */
    /* in (owned copies: the worker thread touches nothing else) */
    char *dir;
    bool read_all;
    known_file_t *known; /* sorted by name */
    size_t nknown;
    /* out */
    int dir_errno; /* the folder could not be listed */
    bool unstable; /* the path named another folder (or none) once listed, or ..data moved */
    file_sig_t dir_sig;
    scan_file_t *files; /* sorted by name */
    size_t nfiles, cap;
    /* answered once this scan is applied */
    list_t reqs;
} scan_t;

/* A served namespace whose file is gone since `since` (uv_now ms). */
typedef struct missing {
    char *name;
    uint64_t since;
} missing_t;

static struct watcher {
    bool started, stopping;
    uv_loop_t *loop;
    char *dir;
    uv_fs_event_t ev;
    uv_timer_t poll, debounce, grace;
    uint64_t grace_ms;  /* a deleted file's namespace serves this long (--reload-grace) */
    missing_t *missing; /* served namespaces whose file is gone, within the grace */
    size_t nmissing;
    int open_handles;
    bool ev_active, ev_warned;
    file_sig_t ev_dir; /* the folder the inotify watch is on */
    uint64_t burst_start;
    scan_t *running;
    bool rescan;         /* events came in while a scan ran */
    list_t pending;      /* reload_req_t, for the next scan */
    known_file_t *known; /* as of the last applied scan, sorted by name */
    size_t nknown;
    char **warned; /* bad file names already logged */
    size_t nwarned;
    bool scanned;  /* a scan was applied (engine_load_all logged bad names before) */
    int dir_errno; /* last folder error logged (0: none) */
} W;

/* Bumped by every watch_start/watch_stop: a scan that comes back from the
 * threadpool to another generation is discarded. Outside W, which
 * watch_start clears. */
static unsigned watch_gen;

static void scan_start(void);

/* ------------------------------------------------------------------------ */
/* The scan, in the threadpool                                              */
/* ------------------------------------------------------------------------ */

static bool ends_with_lua(const char *s, size_t len)
{
    return len > 4 && memcmp(s + len - 4, ".lua", 4) == 0;
}

static void sig_of(const struct stat *st, file_sig_t *s)
{
    s->dev = (uint64_t)st->st_dev;
    s->ino = (uint64_t)st->st_ino;
    s->size = (int64_t)st->st_size;
    s->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    s->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
}

static bool sig_eq(const file_sig_t *a, const file_sig_t *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

static int known_cmp(const void *a, const void *b)
{
    return strcmp(((const known_file_t *)a)->name, ((const known_file_t *)b)->name);
}

static int file_cmp(const void *a, const void *b)
{
    return strcmp(((const scan_file_t *)a)->name, ((const scan_file_t *)b)->name);
}

static scan_file_t *scan_find(const scan_t *s, const char *name)
{
    scan_file_t key = {.name = (char *)name};
    if (s->nfiles == 0) return NULL; /* files is NULL then: not for bsearch */
    return bsearch(&key, s->files, s->nfiles, sizeof(scan_file_t), file_cmp);
}

/* Does the file need reading this time? */
static bool must_read(const scan_t *s, const char *name, const file_sig_t *sig, int64_t now_ns)
{
    if (s->read_all) return true;
    known_file_t key = {.name = (char *)name};
    const known_file_t *k =
        s->nknown ? bsearch(&key, s->known, s->nknown, sizeof(known_file_t), known_cmp) : NULL;
    if (!k || !sig_eq(&k->sig, sig)) return true;
    /* Modified within the timestamp granularity of a slow filesystem (or in
     * the future: clock skew): the signature cannot be trusted yet. */
    return now_ns - sig->mtime_ns < RACY_NS || now_ns - sig->ctime_ns < RACY_NS;
}

/* In the threadpool: everything is looked up inside the folder opened
 * once (fstatat/openat), so a folder swapped or deleted meanwhile gives a
 * consistent view of one folder; and if the path no longer names the folder
 * listed at the end, the result is marked unstable and not applied (else a
 * deploy that swaps a symlink could look like every file deleted). */
static void scan_work(uv_work_t *w)
{
    scan_t *s = w->data;
    struct stat st;
    DIR *d = opendir(s->dir);
    if (!d) {
        s->dir_errno = errno;
        return;
    }
    int dfd = dirfd(d);
    if (fstat(dfd, &st) != 0) {
        s->dir_errno = errno;
        closedir(d);
        return;
    }
    sig_of(&st, &s->dir_sig);
    char data_before[PATH_MAX], data_after[PATH_MAX];
    ssize_t nb = readlinkat(dfd, K8S_DATA, data_before, sizeof(data_before));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ns = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *fn = de->d_name;
        size_t fl = strlen(fn);
        if (fn[0] == '.' || !ends_with_lua(fn, fl)) continue; /* hidden: editors' temp files */
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", s->dir, fn);
        if (n < 0 || (size_t)n >= sizeof(path)) continue;
        if (fstatat(dfd, fn, &st, 0) != 0) continue; /* deleted meanwhile, dangling link: absent */
        if (S_ISDIR(st.st_mode)) continue;           /* a folder named x.lua is not a policy */
        if (s->nfiles == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 16;
            s->files = xrealloc(s->files, s->cap * sizeof(scan_file_t));
        }
        scan_file_t *f = &s->files[s->nfiles];
        memset(f, 0, sizeof(*f));
        f->name = xmemdup(fn, fl - 4);
        sig_of(&st, &f->sig);
        if (!ns_name_valid(f->name, fl - 4)) {
            f->bad_name = true;
        } else if (!S_ISREG(st.st_mode)) {
            /* never open a FIFO or device: it could block this thread */
            f->read = true;
            snprintf(f->src.error, sizeof(f->src.error), "%.480s: not a regular file", path);
        } else if (must_read(s, f->name, &f->sig, now_ns)) {
            f->read = true;
            if (policy_src_read_at(dfd, fn, path, &f->src) != 0 && f->src.err_no == ENOENT) {
                free(f->name); /* deleted between stat and open: absent */
                continue;
            }
            f->changing = !f->src.data && f->src.err_no == EAGAIN;
        }
        s->nfiles++;
    }
    /* A ConfigMap swapped meanwhile: the files read may be of two versions. */
    ssize_t na = readlinkat(dfd, K8S_DATA, data_after, sizeof(data_after));
    if (na != nb || (nb > 0 && memcmp(data_before, data_after, (size_t)nb) != 0))
        s->unstable = true;
    closedir(d);
    if (s->nfiles) qsort(s->files, s->nfiles, sizeof(scan_file_t), file_cmp); /* NULL when empty */
    if (stat(s->dir, &st) != 0 || (uint64_t)st.st_dev != s->dir_sig.dev ||
        (uint64_t)st.st_ino != s->dir_sig.ino)
        s->unstable = true;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

static void req_answer(reload_req_t *r, const char *err)
{
    if (r->cb) r->cb(r->priv, err);
    free(r->ns);
    free(r);
}

static void reqs_answer_all(list_t *reqs, const char *err)
{
    /* Detached first: a callback may queue new requests meanwhile. */
    list_t batch = {0};
    list_splice_back(&batch, reqs);
    reload_req_t *r;
    while ((r = list_first_entry(&batch, reload_req_t, node))) {
        list_remove(&r->node);
        req_answer(r, err);
    }
}

/* Was ns (NULL: any) asked for by one of the scan's requests? */
static bool requested(const scan_t *s, const char *ns)
{
    for (const list_node_t *n = list_first(&s->reqs); n; n = list_next(&s->reqs, n)) {
        const reload_req_t *r = list_entry(n, reload_req_t, node);
        if (!r->ns || strcmp(r->ns, ns) == 0) return true;
    }
    return false;
}

static void req_result(const scan_t *s, const reload_req_t *r, char *err, size_t errlen)
{
    err[0] = '\0';
    if (r->ns) {
        ns_t *ns = ns_find(r->ns, strlen(r->ns));
        if (ns) {
            const scan_file_t *f = scan_find(s, r->ns);
            if (f && f->read && f->result == POLICY_FAILED)
                snprintf(err, errlen, "policy '%s': %s", ns->name, ns->last_error);
        } else if (!ns_find_any(r->ns, strlen(r->ns))) {
            snprintf(err, errlen, "unknown namespace '%s'", r->ns);
        } /* else: its file was deleted and it is removed, as asked */
        return;
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        const scan_file_t *f = &s->files[i];
        if (f->read && f->result == POLICY_FAILED) {
            ns_t *ns = ns_find(f->name, strlen(f->name));
            snprintf(err, errlen, "policy '%s': %s", f->name, ns ? ns->last_error : "");
            return;
        }
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        if (s->files[i].bad_name) {
            snprintf(err, errlen,
                     "%s/%s.lua: namespace name must match [A-Za-z0-9_.-]+; file skipped", s->dir,
                     s->files[i].name);
            return;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Applying a scan, on the loop                                             */
/* ------------------------------------------------------------------------ */

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status);

/* (Re-)arm the inotify watch when it is off or on another folder than the
 * one the path names now (a symlink swapped to a new release). */
static void watch_arm(const file_sig_t *dir)
{
    if (W.ev_active && W.ev_dir.dev == dir->dev && W.ev_dir.ino == dir->ino) return;
    if (W.ev_active) uv_fs_event_stop(&W.ev);
    W.ev_active = false;
    int rc = uv_fs_event_start(&W.ev, on_fs_event, W.dir, 0);
    if (rc != 0) {
        /* The usual causes are the kernel's inotify limits, shared by every
         * process of the user: say which one, so an operator can raise it. */
        const char *hint = rc == UV_EMFILE   ? " (inotify instances: sysctl fs.inotify."
                                               "max_user_instances, or the open files limit)"
                           : rc == UV_ENOSPC ? " (inotify watches: sysctl "
                                               "fs.inotify.max_user_watches)"
                                             : "";
        if (!W.ev_warned)
            log_warn("cannot watch policies folder %s: %s%s; polling it every %d ms", W.dir,
                     uv_strerror(rc), hint, POLL_MS);
        W.ev_warned = true;
        return;
    }
    if (W.ev_warned) log_info("watching policies folder %s again", W.dir);
    W.ev_warned = false;
    W.ev_active = true;
    W.ev_dir = *dir;
}

/* Log each bad file name once while it stays there. */
static void warn_bad_names(const scan_t *s)
{
    char **now = NULL;
    size_t n = 0;
    for (size_t i = 0; i < s->nfiles; i++) {
        if (!s->files[i].bad_name) continue;
        const char *name = s->files[i].name;
        bool seen = false;
        for (size_t j = 0; j < W.nwarned && !seen; j++)
            seen = strcmp(W.warned[j], name) == 0;
        if (!seen && W.scanned)
            log_error("%s/%s.lua: namespace name must match [A-Za-z0-9_.-]+; file skipped", s->dir,
                      name);
        now = xrealloc(now, (n + 1) * sizeof(char *));
        now[n++] = xstrdup(name);
    }
    for (size_t j = 0; j < W.nwarned; j++)
        free(W.warned[j]);
    free(W.warned);
    W.warned = now;
    W.nwarned = n;
}

/* ---- deleted files within the grace ---- */

static missing_t *missing_find(const char *name)
{
    for (size_t i = 0; i < W.nmissing; i++)
        if (strcmp(W.missing[i].name, name) == 0) return &W.missing[i];
    return NULL;
}

static void missing_add(const char *name, uint64_t now)
{
    W.missing = xrealloc(W.missing, (W.nmissing + 1) * sizeof(missing_t));
    W.missing[W.nmissing].name = xstrdup(name);
    W.missing[W.nmissing].since = now;
    W.nmissing++;
}

/* back: its file reappeared within the grace (said in the log) */
static void missing_forget(const char *name, bool back)
{
    missing_t *m = missing_find(name);
    if (!m) return;
    if (back) log_info("policy file of '%s' is back within the grace: served on", name);
    free(m->name);
    *m = W.missing[--W.nmissing];
}

static void missing_free(void)
{
    for (size_t i = 0; i < W.nmissing; i++)
        free(W.missing[i].name);
    free(W.missing);
    W.missing = NULL;
    W.nmissing = 0;
}

static void on_grace(uv_timer_t *t)
{
    LC_UNUSED(t);
    if (W.running)
        W.rescan = true; /* the scan after it unloads what expired */
    else
        scan_start();
}

/* A scan when the first grace ends (the poll would come later). */
static void grace_arm(void)
{
    if (W.nmissing == 0) {
        uv_timer_stop(&W.grace);
        return;
    }
    uint64_t now = uv_now(W.loop), next = UINT64_MAX;
    for (size_t i = 0; i < W.nmissing; i++) {
        uint64_t end = W.missing[i].since + W.grace_ms;
        uint64_t left = end > now ? end - now : 0;
        if (left < next) next = left;
    }
    uv_timer_start(&W.grace, on_grace, next, 0);
}

static void known_free(known_file_t *k, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(k[i].name);
    free(k);
}

static void scan_apply(scan_t *s)
{
    warn_bad_names(s);
    W.scanned = true;
    for (size_t i = 0; i < s->nfiles; i++) {
        scan_file_t *f = &s->files[i];
        if (f->bad_name || !f->read) continue; /* unchanged on disk */
        bool force = requested(s, f->name);
        if ((f->changing || (f->src.data && f->src.len == 0)) && !force) {
            /* An editor that rewrites in place truncates first: an empty
             * file, or one that changed while the scan read it, is one
             * being written (its write brings an event, and the poll looks
             * again). RELOAD still reports it. */
            f->deferred = true;
            continue;
        }
        f->result = engine_apply(f->name, &f->src, force);
        policy_src_free(&f->src); /* the error text stays for req_result */
    }
    /* Served namespaces whose file is gone: after the grace, or now when
     * RELOAD/SIGHUP asked. */
    uint64_t now = uv_now(W.loop);
    for (size_t i = ns_count(); i-- > 0;) {
        ns_t *ns = ns_at(i);
        const scan_file_t *f = scan_find(s, ns->name);
        if (f && !f->bad_name) {
            missing_forget(ns->name, true);
            continue;
        }
        missing_t *m = missing_find(ns->name);
        if (W.grace_ms == 0 || requested(s, ns->name) || (m && now - m->since >= W.grace_ms)) {
            missing_forget(ns->name, false);
            engine_remove(ns->name);
        } else if (!m) {
            missing_add(ns->name, now);
            log_info("policy file %s is gone: namespace '%s' serves its last version for %llu ms "
                     "more, then unloads unless the file is back (RELOAD unloads it now)",
                     ns->path, ns->name, (unsigned long long)W.grace_ms);
        }
    }
    grace_arm();
    /* What the next poll compares against. A file not served after this
     * (never read, e.g. it appeared between two listings) is left out, so
     * the next poll reads it. */
    known_free(W.known, W.nknown);
    W.known = xcalloc(s->nfiles ? s->nfiles : 1, sizeof(known_file_t));
    W.nknown = 0;
    for (size_t i = 0; i < s->nfiles; i++) {
        const scan_file_t *f = &s->files[i];
        if (f->bad_name || f->deferred || !ns_find(f->name, strlen(f->name))) continue;
        W.known[W.nknown].name = xstrdup(f->name);
        W.known[W.nknown].sig = f->sig;
        W.nknown++;
    }
}

static void scan_free(scan_t *s)
{
    for (size_t i = 0; i < s->nfiles; i++) {
        free(s->files[i].name);
        policy_src_free(&s->files[i].src);
    }
    free(s->files);
    known_free(s->known, s->nknown);
    free(s->dir);
    free(s);
}

static void kick_debounce(void);

static void scan_done(uv_work_t *w, int status)
{
    scan_t *s = w->data;
    if (s->gen != watch_gen || status != 0) {
        /* the watcher stopped meanwhile (its requests were answered then) */
        reqs_answer_all(&s->reqs, status == 0 ? "shutting down" : uv_strerror(status));
        scan_free(s);
        return;
    }
    W.running = NULL;
    char err[MAX_ERRLEN];
    if (s->unstable && !s->dir_errno) {
        /* The folder changed under the scan: look again shortly, and answer
         * its requests from that scan. */
        list_splice_front(&W.pending, &s->reqs);
        scan_free(s);
        W.rescan = true;
        kick_debounce();
        return;
    }
    if (s->dir_errno) {
        if (W.dir_errno != s->dir_errno)
            log_error("cannot read policies folder %s: %s (namespaces keep their policies)", s->dir,
                      strerror(s->dir_errno));
        W.dir_errno = s->dir_errno;
        snprintf(err, sizeof(err), "cannot read policies folder %s: %s", s->dir,
                 strerror(s->dir_errno));
        reqs_answer_all(&s->reqs, err);
    } else {
        if (W.dir_errno) log_info("policies folder %s is readable again", s->dir);
        W.dir_errno = 0;
        watch_arm(&s->dir_sig);
        scan_apply(s);
        reload_req_t *r;
        while ((r = list_first_entry(&s->reqs, reload_req_t, node))) {
            list_remove(&r->node);
            req_result(s, r, err, sizeof(err));
            req_answer(r, err[0] ? err : NULL);
        }
    }
    scan_free(s);
    if (!list_empty(&W.pending))
        scan_start(); /* requests that came during this scan: their files may have changed */
    else if (W.rescan)
        kick_debounce();
}

static void scan_start(void)
{
    scan_t *s = xcalloc(1, sizeof(*s));
    s->dir = xstrdup(W.dir);
    s->read_all = !list_empty(&W.pending) || W.rescan;
    list_splice_back(&s->reqs, &W.pending);
    W.rescan = false;
    s->known = xcalloc(W.nknown ? W.nknown : 1, sizeof(known_file_t));
    for (size_t i = 0; i < W.nknown; i++) {
        s->known[i].name = xstrdup(W.known[i].name);
        s->known[i].sig = W.known[i].sig;
    }
    s->nknown = W.nknown;
    s->work.data = s;
    s->gen = watch_gen;
    int rc = uv_queue_work(W.loop, &s->work, scan_work, scan_done);
    if (rc != 0) { /* cannot happen with a valid loop and callbacks */
        log_error("cannot queue a policies scan: %s", uv_strerror(rc));
        reqs_answer_all(&s->reqs, "cannot queue a policies scan");
        scan_free(s);
        return;
    }
    W.running = s;
}

/* ------------------------------------------------------------------------ */
/* Triggers                                                                 */
/* ------------------------------------------------------------------------ */

static void on_debounce(uv_timer_t *t)
{
    LC_UNUSED(t);
    W.rescan = true; /* read every file */
    if (!W.running) scan_start();
}

static void kick_debounce(void)
{
    uint64_t now = uv_now(W.loop);
    if (!uv_is_active((uv_handle_t *)&W.debounce)) {
        W.burst_start = now;
        uv_timer_start(&W.debounce, on_debounce, DEBOUNCE_MS, 0);
    } else if (now - W.burst_start + DEBOUNCE_MS <= BURST_MAX_MS) {
        uv_timer_start(&W.debounce, on_debounce, DEBOUNCE_MS, 0); /* push it back */
    }
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    LC_UNUSED(h);
    LC_UNUSED(events);
    if (W.stopping) return;
    if (status < 0) {
        log_warn("watching policies folder %s failed: %s; polling it every %d ms", W.dir,
                 uv_strerror(status), POLL_MS);
        uv_fs_event_stop(&W.ev);
        W.ev_active = false;
        W.ev_warned = true;
        return;
    }
    /* Editors' temporary and backup files (.x.swp, x.lua~, 4913) do not
     * matter; the final rename or write to NAME.lua does, and a ConfigMap's
     * ..data swapped. No name: the kernel dropped events, look at
     * everything. */
    if (filename && strcmp(filename, K8S_DATA) != 0 &&
        (filename[0] == '.' || !ends_with_lua(filename, strlen(filename))))
        return;
    kick_debounce();
}

static void on_poll(uv_timer_t *t)
{
    LC_UNUSED(t);
    if (!W.running) scan_start();
}

void watch_reload(const char *ns, size_t len, watch_done_cb cb, void *priv)
{
    reload_req_t *r = xcalloc(1, sizeof(*r));
    r->ns = ns ? xmemdup(ns, len) : NULL;
    r->cb = cb;
    r->priv = priv;
    if (!W.started || W.stopping) {
        /* still exactly one callback, here and now (watch.h says so):
         * nothing would run it later once the watcher is gone */
        req_answer(r, W.stopping ? "shutting down" : "policy watcher not running");
        return;
    }
    list_push_back(&W.pending, &r->node);
    if (!W.running) scan_start();
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

int watch_start(uv_loop_t *loop, const char *dir, uint64_t grace_ms)
{
    if (W.started || W.open_handles) return -1;
    memset(&W, 0, sizeof(W));
    W.loop = loop;
    W.dir = xstrdup(dir);
    W.grace_ms = grace_ms;
    uv_fs_event_init(loop, &W.ev);
    uv_timer_init(loop, &W.poll);
    uv_timer_init(loop, &W.debounce);
    uv_timer_init(loop, &W.grace);
    W.open_handles = 4;
    W.started = true;
    watch_gen++;
    /* Start-up may touch the disk synchronously: arm the watch now so no
     * edit is missed between the first load and the first scan. */
    struct stat st;
    if (stat(dir, &st) == 0) {
        file_sig_t ds;
        sig_of(&st, &ds);
        watch_arm(&ds);
    }
    uv_timer_start(&W.poll, on_poll, POLL_MS, POLL_MS);
    scan_start(); /* learn the files' signatures (nothing changed: no reload) */
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    LC_UNUSED(h);
    W.open_handles--;
}

void watch_stop(void)
{
    if (!W.started || W.stopping) return;
    W.stopping = true;
    watch_gen++;
    uv_close((uv_handle_t *)&W.ev, on_closed);
    uv_close((uv_handle_t *)&W.poll, on_closed);
    uv_close((uv_handle_t *)&W.debounce, on_closed);
    uv_close((uv_handle_t *)&W.grace, on_closed);
    missing_free();
    reqs_answer_all(&W.pending, "shutting down");
    if (W.running) { /* scan_done discards it; answer its requests now */
        reqs_answer_all(&W.running->reqs, "shutting down");
        W.running = NULL;
    }
    known_free(W.known, W.nknown);
    W.known = NULL;
    W.nknown = 0;
    for (size_t j = 0; j < W.nwarned; j++)
        free(W.warned[j]);
    free(W.warned);
    W.warned = NULL;
    W.nwarned = 0;
    free(W.dir);
    W.dir = NULL;
    W.started = false;
}
