#!/usr/bin/env python3
"""delay_proxy.py: a TCP proxy that holds every byte a client sends for a
fixed time before passing it on (what it sends back is not held). Put it
between a luacached instance and Redis to give that instance a slow link:
its commands reach Redis late, in order, as over a long network path.

    python3 tests/helpers/delay_proxy.py --target-port 6379 --delay-ms 5

Standard library only. Port 0 (the default) picks a free port; when ready it
prints exactly one line to stdout:

    proxy listening on 127.0.0.1:PORT
"""

import argparse
import asyncio
import signal
import sys


async def pump(reader, writer, delay):
    """Copy reader to writer, each chunk `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def send():
        try:
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((loop.time() + delay, data))
    except (ConnectionError, OSError):
        pass
    finally:
        queue.put_nowait((0, None))
        await sender


async def main():
    ap = argparse.ArgumentParser(description="TCP proxy delaying client-to-server bytes")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--target-host", default="127.0.0.1")
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    args = ap.parse_args()
    delay = args.delay_ms / 1000.0

    async def on_client(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection(args.target_host, args.target_port)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pump(creader, swriter, delay), pump(sreader, cwriter, 0))

    server = await asyncio.start_server(on_client, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("proxy listening on %s:%d\n" % (args.host, port))
    sys.stdout.flush()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
