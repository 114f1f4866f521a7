#!/usr/bin/env python3
"""deaf_proxy.py: a TCP proxy that can make a Redis subscriber deaf, silently.

    python3 tests/helpers/deaf_proxy.py --target-port 6379

Forwards every connection to the target. A connection whose client has sent
SUBSCRIBE is a subscriber. SIGUSR1 makes every subscriber, present and
future, silent: bytes in both directions are dropped while its sockets stay
open, as on a dead network path (no FIN, no RST). SIGUSR2 ends that. Other
connections (a luacached instance's command link) always pass. Killing the
proxy closes every socket at once: Redis is gone for its clients only.

Standard library only. Port 0 (the default) picks a free port. Prints
"proxy listening on 127.0.0.1:PORT" when ready, then "deaf N" or
"hearing N" after each signal (N: the signal's sequence number), so a test
knows the mode took effect. Used by tests/integration/l1_spec.lua.
"""

import argparse
import asyncio
import signal
import sys

state = {"deaf": False, "seq": 0}


class Conn:
    def __init__(self):
        self.subscriber = False

    def silent(self):
        return self.subscriber and state["deaf"]


async def pump(reader, writer, conn, from_client):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if from_client and not conn.subscriber and b"SUBSCRIBE" in data.upper():
                conn.subscriber = True
            if conn.silent():
                continue
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def note(deaf):
    state["deaf"] = deaf
    state["seq"] += 1
    sys.stdout.write("%s %d\n" % ("deaf" if deaf else "hearing", state["seq"]))
    sys.stdout.flush()


async def main():
    ap = argparse.ArgumentParser(description="TCP proxy that can silence Redis subscribers")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--target-port", type=int, required=True)
    args = ap.parse_args()

    async def on_client(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection(args.target_host, args.target_port)
        except OSError:
            cwriter.close()
            return
        conn = Conn()
        await asyncio.gather(pump(creader, swriter, conn, True),
                             pump(sreader, cwriter, conn, False))

    server = await asyncio.start_server(on_client, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("proxy listening on %s:%d\n" % (args.host, port))
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, note, True)
    loop.add_signal_handler(signal.SIGUSR2, note, False)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
