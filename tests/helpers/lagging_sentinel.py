#!/usr/bin/env python3
"""lagging_sentinel.py: a Redis Sentinel cut off from the others, frozen in time.

    python3 tests/helpers/lagging_sentinel.py --master mymaster \
        --ip 127.0.0.1 --port 6379 --epoch 0

Answers SENTINEL MASTER <name> (and GET-MASTER-ADDR-BY-NAME) with the
address and config-epoch it was given, for ever: what a sentinel on the
wrong side of a partition says after the others failed the master over.
SUBSCRIBE is acknowledged and then silent (it never sees +switch-master),
PING answers PONG, anything else +OK. Standard library only. Port 0 (the
default --listen) picks a free port; prints "sentinel listening on
127.0.0.1:PORT" when ready and "asked N" after each SENTINEL MASTER.
Used by tests/integration/sentinel_spec.lua.
"""

import argparse
import asyncio
import sys

asked = {"n": 0}


def bulk(s):
    b = s.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def array(items):
    return b"*%d\r\n" % len(items) + b"".join(bulk(i) for i in items)


async def read_command(reader):
    """One RESP array of bulk strings, or an inline command; None at EOF."""
    line = await reader.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.decode(errors="replace").split()
    args = []
    for _ in range(int(line[1:])):
        head = await reader.readline()
        n = int(head[1:])
        data = await reader.readexactly(n + 2)
        args.append(data[:-2].decode(errors="replace"))
    return args


def answer(args, o):
    cmd = [a.lower() for a in args[:2]]
    if not cmd:
        return b""
    if cmd[0] == "ping":
        return b"+PONG\r\n"
    if cmd[0] == "subscribe":
        return b"".join(b"*3\r\n" + bulk("subscribe") + bulk(ch) + b":%d\r\n" % (i + 1)
                        for i, ch in enumerate(args[1:]))
    if cmd[0] == "sentinel" and len(args) >= 3 and args[2] == o.master:
        asked["n"] += 1
        print("asked %d" % asked["n"], flush=True)
        if cmd[1] == "master":
            return array(["name", o.master, "ip", o.ip, "port", str(o.port), "flags", "master",
                          "config-epoch", str(o.epoch)])
        if cmd[1] == "get-master-addr-by-name":
            return array([o.ip, str(o.port)])
    if cmd[0] == "sentinel":
        return b"-ERR No such master with that name\r\n"
    return b"+OK\r\n"


async def serve(reader, writer, o):
    try:
        while True:
            args = await read_command(reader)
            if args is None:
                break
            writer.write(answer(args, o))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", type=int, default=0)
    p.add_argument("--master", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--epoch", type=int, default=0)
    o = p.parse_args()
    server = await asyncio.start_server(lambda r, w: serve(r, w, o), "127.0.0.1", o.listen)
    port = server.sockets[0].getsockname()[1]
    print("sentinel listening on 127.0.0.1:%d" % port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
