#!/usr/bin/env python3
"""GET load for deploy tests (tests/integration/reload_spec.lua).

    get_loop.py PORT NS STOPFILE [MIN]

On one connection, GETs NS:<prefix>-<i> (a new id each time, so every GET
runs the policy's fetch) one after the other, ~1 ms apart, until STOPFILE
exists and at least MIN (default 200) GETs were made, or 30 s passed.
Then prints one line "gets=N errors=E" and, per distinct value prefix (the
text before the first ':'), "value PREFIX COUNT", and the first errors as
"error TEXT".
"""
import os
import socket
import sys
import time


def read_reply(f):
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return ("nil", None)
        data = f.read(n + 2)[:-2]
        return ("bulk", data.decode("utf-8", "replace"))
    if kind == b"-":
        return ("error", rest.decode("utf-8", "replace"))
    return ("other", rest.decode("utf-8", "replace"))


def main():
    port, ns, stopfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    minimum = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    prefix = "g%d" % os.getpid()
    gets, errors, values = 0, [], {}
    deadline = time.time() + 30
    while time.time() < deadline:
        if gets >= minimum and os.path.exists(stopfile):
            break
        key = "%s:%s-%d" % (ns, prefix, gets)
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key.encode()))
        kind, v = read_reply(f)
        if gets == 0:
            print("started")
            sys.stdout.flush()
        gets += 1
        if kind == "bulk":
            tag = v.split(":", 1)[0]
            values[tag] = values.get(tag, 0) + 1
        else:
            errors.append("%s %s" % (kind, v))
        time.sleep(0.001)
    print("gets=%d errors=%d" % (gets, len(errors)))
    for tag, n in sorted(values.items()):
        print("value %s %d" % (tag, n))
    for e in errors[:5]:
        print("error " + e)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
