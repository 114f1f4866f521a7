#!/usr/bin/env python3
"""throttle_proxy.py: a TCP proxy whose server-to-client direction is slow.

    throttle_proxy.py --port P --to HOST:PORT --rate BYTES_PER_S

Every connection to 127.0.0.1:P is forwarded to HOST:PORT. Bytes from the
client go through at once; bytes back are paced to --rate in small chunks,
so a large reply arrives steadily but slowly, as over a thin link. Prints
"proxy listening on 127.0.0.1:P" once ready. Used by the slow-link tests
(tests/integration/slowio_spec.lua)."""
import argparse
import socket
import threading
import time

CHUNK = 16 * 1024


def pump(src, dst, rate):
    start = time.monotonic()
    sent = 0
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
            if rate:
                sent += len(data)
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client, target, rate):
    try:
        upstream = socket.create_connection(target)
    except OSError:
        client.close()
        return
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Small receive buffers: the pacing, not the kernel, decides the speed.
    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    threading.Thread(target=pump, args=(client, upstream, 0), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client, rate), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--rate", type=float, required=True)
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(64)
    print("proxy listening on 127.0.0.1:%d" % a.port, flush=True)
    while True:
        c, _ = ls.accept()
        serve(c, (host, int(port)), a.rate)


if __name__ == "__main__":
    main()
