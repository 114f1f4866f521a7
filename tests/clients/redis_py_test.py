#!/usr/bin/python3
"""redis-py (Debian python3-redis) against a running luacached.

Usage: redis_py_test.py PORT. The server's namespace "widget" must be a
read-through policy (tests/integration/clients_spec.lua starts it). Exits 0
and prints "ok: N checks" when every check passed; otherwise prints the
first failure and exits 1. redis-py 4.3 (Debian 12) speaks RESP2 only, so
RESP3 is covered by the node-redis test.
"""
import sys
import threading
import time

import redis

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def eq(got, want, what):
    check(got == want, "%s: got %r, want %r" % (what, got, want))


def main(port):
    # 8 threads share 4 connections: each waits for a free one
    pool = redis.BlockingConnectionPool(host="127.0.0.1", port=port, max_connections=4,
                                        timeout=10, socket_timeout=5)
    r = redis.Redis(connection_pool=pool)
    eq(r.ping(), True, "PING")

    # plain SET/GET, and the SET options redis-py sends
    eq(r.set("widget:py1", "v1"), True, "SET")
    eq(r.get("widget:py1"), b"v1", "GET")
    eq(r.set("widget:py1", "v2", nx=True), None, "SET NX over a value")
    eq(r.set("widget:py1", "v2", xx=True), True, "SET XX over a value")
    eq(r.set("widget:py1", "v3", get=True), b"v2", "SET GET")
    eq(r.set("widget:py1", "v4", keepttl=True), True, "SET KEEPTTL")
    eq(r.set("widget:py2", "x", pxat=int(time.time() * 1000) + 60000), True, "SET PXAT")
    check(55000 < r.pttl("widget:py2") <= 60000, "PTTL after PXAT")
    eq(r.exists("widget:py1", "widget:py2", "widget:py-none"), 2, "EXISTS")

    # binary values: every byte value, and 1 MB
    allbytes = bytes(range(256))
    eq(r.set("widget:pybin", allbytes), True, "SET 256 bytes")
    eq(r.get("widget:pybin"), allbytes, "GET 256 bytes")
    big = bytes((i * 7 + 3) % 256 for i in range(1 << 20))
    eq(r.set("widget:pybig", big), True, "SET 1 MB")
    eq(r.get("widget:pybig"), big, "GET 1 MB")
    eq(r.set("widget:pybin", b"\x00", get=True), allbytes, "SET GET of binary")

    # a pipeline without a transaction: replies in order
    p = r.pipeline(transaction=False)
    for i in range(50):
        p.set("widget:pp%d" % i, "p%d" % i)
        p.get("widget:pp%d" % i)
    out = p.execute()
    eq(out, [x for i in range(50) for x in (True, b"p%d" % i)], "pipeline replies")

    # the default pipeline: MULTI ... EXEC
    p = r.pipeline()
    p.set("widget:tx1", "a")
    p.get("widget:tx1")
    p.set("widget:tx1", "b", get=True)
    p.exists("widget:tx1", "widget:tx-none")
    p.get("widget:py-fetched")  # a miss: filled from the origin inside EXEC
    out = p.execute()
    eq(out[:4], [True, b"a", b"a", 1], "transaction replies")
    check(isinstance(out[4], bytes) and b"py-fetched" in out[4], "fill inside EXEC: %r" % out[4])
    # an error at queue time aborts the whole batch
    p = r.pipeline()
    p.set("widget:tx2", "never")
    p.execute_command("NOSUCHCOMMAND")
    try:
        p.execute()
        check(False, "EXECABORT expected")
    except redis.exceptions.ResponseError as e:
        check("EXECABORT" in str(e) or "unknown command" in str(e), "abort error: %s" % e)
    eq(r.exists("widget:tx2"), 0, "nothing of an aborted batch ran")

    # the pool under threads: each its own keys, all answered right
    errors = []

    def worker(n):
        try:
            for i in range(40):
                k = "widget:th%d-%d" % (n, i)
                r.set(k, k)
                if r.get(k) != k.encode():
                    errors.append(k)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    eq(errors, [], "threads over the pool")
    check(len(pool._connections) <= 4, "pool stayed within max_connections")
    print("ok: %d checks" % checks)


if __name__ == "__main__":
    try:
        main(int(sys.argv[1]))
    except AssertionError as e:
        print("FAILED: %s" % e)
        sys.exit(1)
