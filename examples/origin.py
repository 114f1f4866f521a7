#!/usr/bin/env python3
"""Example HTTP origin for the luacached demo and integration tests.

Standard library only.  Run:

    python3 examples/origin.py [--host 127.0.0.1] [--port 8080] [--verbose]

Port 0 picks a free port.  When ready it prints exactly one line to stdout:

    origin listening on 127.0.0.1:PORT

Endpoints
---------
GET /widgets/<id>   200 {"id":..,"name":"widget <id>","owner_id":..,"price":..}
                    ids starting with "missing" -> 404
GET /users/<id>     200 {"id":..,"name":"user <id>","email":..,"tier":..}
                    ids starting with "missing" -> 404; tier is "vip" when a
                    numeric id is a multiple of 5, else "standard"
GET /slow/<id>      a slow computed value: sleeps ?delay= seconds (default 0.3)
GET /seq/<id>       200 "<id>:<n>", n = how many requests this path has had,
                    this one included: a value that changes on every fetch
GET /chaos/<ns>/<id>
                    200 "key=<ns>:<id> v=<N>", text/plain: N counts the 200
                    answers of that key from 1, so every answer is a new
                    version (the chaos test tells them apart; see /_chaos);
                    ids starting with "missing" -> 404
ANY /echo[/...]     200 JSON {"method","path","query","headers","body"}
GET /kv/<id>        a writable store, for write-through policies: 200 with the
                    body last PUT there, 404 when none (or after DELETE); read
                    when the request arrives, before any ?delay (a slow read
                    answers what was there when it began, as a database would)
PUT /kv/<id>        store the body; 200 with it (?upper=1: answers and stores
                    it upper-cased, a "canonical form" for tests)
DELETE /kv/<id>     remove it; 200 (404 when there was none)
POST /kv/_batch     write-behind batches: a JSON list of {"op":"set"|"del","id":..,
                    "value":..}, applied to the /kv store in order; 200 {"applied":n}
                    (400 on a malformed list, nothing applied)
GET /_kv            {"values":{id: body},"writes":[[method, id, body], ...],
                    "batches":[[item, ...], ...]}: every PUT/DELETE of /kv (a batch's
                    items as PUT/DELETE too) and every batch, in arrival order

"id" is an integer when the id is all digits (optionally signed), else the
string.  owner_id is int(id) % 10 for numeric ids, 1 otherwise.

Test controls, in the query string of any path (not /_ endpoints):
    ?delay=0.5      sleep this many seconds before answering
    ?status=500     answer this status, body "origin error" (or ?body/?bytes)
    ?body=TEXT      answer exactly this body (200 unless ?status)
    ?bytes=N        answer N bytes of a deterministic binary pattern:
                    byte i is BLOCK[i % 258] where
                    BLOCK = b"\\x00\\r\\n" + bytes(range(0, 255))
                    (tests/helpers/harness.lua pattern_bytes(n) matches)
    ?version=K      included as "version" in the JSON of widgets/users/slow
    ?ctype=TYPE     Content-Type of the answer
    ?header=N:V     an extra response header (repeatable)
    ?drop=1         close the connection without answering (transport error)

Programmable per-path overrides (for policies whose URL a test can't change):
    POST   /_control {"path":"/widgets/7","status":500,"delay":0.5,"body":"..",
                      "bytes":N,"version":K,"ctype":"..","headers":{..},
                      "drop":true,"times":N}
           override for that exact path (query string ignored when matching);
           fields override the query-string controls; "times" makes it apply
           to the next N requests only.  Re-POSTing a path replaces it.
    DELETE /_control            drop all overrides
    DELETE /_control?path=/x    drop the override of one path
    GET    /_control            list the overrides
    GET    /_stats   {"total":N,"paths":{"/widgets/7":3,..},
                      "inflight":N,"max_inflight":{"/widgets/7":1,..}}
                     counts requests per path on arrival (before any delay),
                     excluding /_ endpoints; max_inflight is the highest
                     number of concurrent requests seen per path.
    POST   /_reset   clear counts, overrides, chaos versions and the fault mode

Run-time fault mode (the chaos test), for every non-/_ path under a prefix:
    POST   /_mode {"mode":"ok"|"error"|"hang"|"reset","hang":1.5,
                   "prefix":"/chaos/"}
           error: 500 "origin error"; hang: sleep "hang" seconds (default
           1.5), then answer as usual; reset: read the request, then abort
           the connection with a TCP RST (SO_LINGER 0), no answer.
           Applies to requests arriving from then on; /_control overrides
           of a path win over the mode.
    GET    /_mode   the current mode
    GET    /_chaos  {"versions":{"<ns>:<id>":[[N,t],..]},
                     "counts":{"<ns>":{"arrived":..,"ok":..,"not_found":..,
                                        "error":..,"hang":..,"reset":..}}}
                    every version of /chaos/ handed out, with the wall-clock
                    time t (seconds, time.time()) it was made, just before
                    its answer was written; counts per namespace by outcome.
"""

import argparse
import json
import re
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BLOCK = b"\x00\r\n" + bytes(range(0, 255))  # 258 bytes, contains \0 and \r\n


def pattern_bytes(n):
    reps = n // len(BLOCK) + 1
    return (BLOCK * reps)[:n]


NUMERIC = re.compile(r"^-?[0-9]+$")


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.paths = {}
        self.inflight = {}
        self.max_inflight = {}
        self.overrides = {}
        self.mode = {"mode": "ok", "hang": 1.5, "prefix": "/chaos/"}
        self.versions = {}  # "<ns>:<id>" -> [[N, t], ...]
        self.chaos_counts = {}  # ns -> {"arrived": n, "ok": n, ...}
        self.kv = {}  # /kv/<id> -> body (str)
        self.kv_writes = []  # [method, id, body]
        self.kv_batches = []  # each POST /kv/_batch's list

    def reset(self):
        with self.lock:
            self.total = 0
            self.paths = {}
            self.max_inflight = {p: n for p, n in self.inflight.items() if n > 0}
            self.overrides = {}
            self.mode = {"mode": "ok", "hang": 1.5, "prefix": "/chaos/"}
            self.versions = {}
            self.chaos_counts = {}
            self.kv = {}
            self.kv_writes = []
            self.kv_batches = []

    def fault_for(self, path):
        """The run-time fault mode that applies to path, or None."""
        with self.lock:
            m = self.mode
            if m["mode"] == "ok" or not path.startswith(m["prefix"]):
                return None
            return dict(m)

    def chaos_count(self, ns, what):
        with self.lock:
            c = self.chaos_counts.setdefault(
                ns, {"arrived": 0, "ok": 0, "not_found": 0, "error": 0, "hang": 0, "reset": 0})
            c[what] += 1

    def new_version(self, key):
        """The next version of key, recorded with the time it was made."""
        with self.lock:
            lst = self.versions.setdefault(key, [])
            n = len(lst) + 1
            lst.append([n, time.time()])
            return n

    def chaos(self):
        with self.lock:
            return {"versions": {k: list(v) for k, v in self.versions.items()},
                    "counts": {k: dict(v) for k, v in self.chaos_counts.items()}}

    def arrive(self, path):
        """Count a request; return a copy of the override to apply (if any)
        and the path's count, this request included."""
        with self.lock:
            self.total += 1
            self.paths[path] = self.paths.get(path, 0) + 1
            count = self.paths[path]
            n = self.inflight.get(path, 0) + 1
            self.inflight[path] = n
            if n > self.max_inflight.get(path, 0):
                self.max_inflight[path] = n
            ov = self.overrides.get(path)
            if ov is None:
                return None, count
            if "times" in ov:
                ov["times"] -= 1
                if ov["times"] <= 0:
                    del self.overrides[path]
            return dict(ov), count

    def leave(self, path):
        with self.lock:
            self.inflight[path] = self.inflight.get(path, 1) - 1

    def stats(self):
        with self.lock:
            return {
                "total": self.total,
                "paths": dict(self.paths),
                "inflight": sum(v for v in self.inflight.values() if v > 0),
                "max_inflight": dict(self.max_inflight),
            }


STATE = State()
VERBOSE = False


def json_id(raw):
    return int(raw) if NUMERIC.match(raw) else raw


def chaos_ns(path):
    """The namespace of a /chaos/<ns>/<id> path, else None."""
    segs = path.split("/")
    if len(segs) == 4 and segs[1] == "chaos" and segs[2] and segs[3]:
        return segs[2]
    return None


def owner_of(raw):
    return int(raw) % 10 if NUMERIC.match(raw) else 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "luacached-origin/1.0"
    # Headers and body go out in two writes: with Nagle on, the body of a
    # kept-alive connection's second answer waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("origin: %s - %s\n" % (self.address_string(), fmt % args))

    # -- plumbing ---------------------------------------------------------

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until empty line
                    while True:
                        t = self.rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body, ctype="application/json", headers=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj, headers=None):
        self.send(status, json.dumps(obj, separators=(",", ":")), headers=headers)

    # -- dispatch ---------------------------------------------------------

    def handle_any(self):
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path.startswith("/_"):
                self.handle_admin(path, query, body)
            else:
                self.handle_origin(path, query, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

    def handle_admin(self, path, query, body):
        m = self.command
        if path == "/_stats" and m in ("GET", "HEAD"):
            self.send_json(200, STATE.stats())
        elif path == "/_reset" and m in ("POST", "GET"):
            STATE.reset()
            self.send_json(200, {"ok": True})
        elif path == "/_control" and m == "POST":
            try:
                spec = json.loads(body.decode("utf-8") or "{}")
                target = spec.pop("path")
                if not isinstance(target, str) or not target.startswith("/"):
                    raise ValueError("path must start with /")
                if "times" in spec:
                    spec["times"] = int(spec["times"])
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                self.send_json(400, {"error": "bad control: %s" % e})
                return
            with STATE.lock:
                STATE.overrides[target] = spec
            self.send_json(200, {"ok": True})
        elif path == "/_control" and m == "DELETE":
            target = query.get("path", [None])[0]
            if target is None and body:
                try:
                    target = json.loads(body.decode("utf-8")).get("path")
                except (ValueError, AttributeError):
                    target = None
            with STATE.lock:
                if target is None:
                    STATE.overrides = {}
                else:
                    STATE.overrides.pop(target, None)
            self.send_json(200, {"ok": True})
        elif path == "/_control" and m == "GET":
            with STATE.lock:
                self.send_json(200, dict(STATE.overrides))
        elif path == "/_mode" and m == "POST":
            try:
                spec = json.loads(body.decode("utf-8") or "{}")
                mode = {"mode": spec.get("mode", "ok"), "hang": float(spec.get("hang", 1.5)),
                        "prefix": spec.get("prefix", "/chaos/")}
                if mode["mode"] not in ("ok", "error", "hang", "reset"):
                    raise ValueError("mode must be ok, error, hang or reset")
                if not isinstance(mode["prefix"], str) or not mode["prefix"].startswith("/"):
                    raise ValueError("prefix must start with /")
            except (ValueError, TypeError, AttributeError) as e:
                self.send_json(400, {"error": "bad mode: %s" % e})
                return
            with STATE.lock:
                STATE.mode = mode
            self.send_json(200, {"ok": True})
        elif path == "/_mode" and m == "GET":
            with STATE.lock:
                self.send_json(200, dict(STATE.mode))
        elif path == "/_kv" and m == "GET":
            with STATE.lock:
                self.send_json(200, {"values": dict(STATE.kv), "writes": list(STATE.kv_writes),
                                     "batches": list(STATE.kv_batches)})
        elif path == "/_chaos" and m == "GET":
            self.send_json(200, STATE.chaos())
        else:
            self.send_json(404, {"error": "unknown control endpoint"})

    def handle_origin(self, path, query, body):
        ctl = {}
        for k in ("delay", "status", "body", "bytes", "version", "ctype", "drop"):
            if k in query:
                ctl[k] = query[k][-1]
        extra_headers = {}
        for h in query.get("header", []):
            if ":" in h:
                n, v = h.split(":", 1)
                extra_headers[n.strip()] = v.strip()

        ov, count = STATE.arrive(path)
        self.kv_snapshot = None
        if path.startswith("/kv/") and self.command == "GET":
            with STATE.lock:
                rid = path[len("/kv/"):]
                self.kv_snapshot = (rid in STATE.kv, STATE.kv.get(rid, ""))
        ns = chaos_ns(path)
        if ns is not None:
            STATE.chaos_count(ns, "arrived")
        try:
            if ov:
                ov.pop("times", None)
                extra_headers.update(ov.pop("headers", None) or {})
                ctl.update(ov)
            elif self.apply_fault(ns, STATE.fault_for(path)):
                return
            self.answer(path, query, body, ctl, extra_headers, count)
        finally:
            STATE.leave(path)

    def apply_fault(self, ns, fault):
        """Apply the run-time fault mode (ns: the /chaos/ namespace, for its
        counts, or None); True when the request is done."""
        if fault is None:
            return False
        if ns is not None:
            STATE.chaos_count(ns, fault["mode"])
        if fault["mode"] == "error":
            self.send(500, "origin error", "text/plain; charset=utf-8")
            return True
        if fault["mode"] == "reset":
            # SO_LINGER 0 then close: the kernel answers with RST, not FIN.
            # detach() first, so the handler's later close is a no-op and
            # never closes a descriptor number another thread reused.
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                socket.socket(fileno=self.connection.detach()).close()
            except OSError:
                pass
            return True
        time.sleep(max(0.0, fault["hang"]))  # hang, then answer as usual
        return False

    def answer(self, path, query, body, ctl, extra_headers, count):
        if ctl.get("drop") not in (None, False, "", "0", 0):
            self.close_connection = True
            try:
                import socket as _s
                self.connection.shutdown(_s.SHUT_RDWR)
            except OSError:
                pass
            return

        segs = path.split("/")
        kind = segs[1] if len(segs) > 1 else ""
        rid = "/".join(segs[2:]) if len(segs) > 2 else ""

        delay = ctl.get("delay")
        if delay is None and kind == "slow":
            delay = 0.3
        if delay is not None:
            time.sleep(max(0.0, float(delay)))

        ctype = ctl.get("ctype")
        explicit = None
        if "bytes" in ctl:
            explicit = pattern_bytes(int(ctl["bytes"]))
            ctype = ctype or "application/octet-stream"
        elif "body" in ctl:
            explicit = ctl["body"]
            ctype = ctype or "text/plain; charset=utf-8"

        if "status" in ctl:
            status = int(ctl["status"])
            if explicit is None:
                explicit = "origin error"
                ctype = ctype or "text/plain; charset=utf-8"
            self.send(status, explicit, ctype, extra_headers)
            return
        if explicit is not None:
            self.send(200, explicit, ctype, extra_headers)
            return

        version = ctl.get("version")
        if version is not None:
            version = json_id(str(version))

        if kind == "chaos" and len(segs) == 4 and segs[2] and segs[3]:
            ns, cid = segs[2], segs[3]
            key = ns + ":" + cid
            if cid.startswith("missing"):
                STATE.chaos_count(ns, "not_found")
                self.send(404, "not found", "text/plain; charset=utf-8", extra_headers)
                return
            STATE.chaos_count(ns, "ok")
            n = STATE.new_version(key)
            self.send(200, "key=%s v=%d" % (key, n), "text/plain; charset=utf-8", extra_headers)
            return

        if kind == "echo":
            self.send_json(200, {
                "method": self.command,
                "path": path,
                "query": {k: v[-1] for k, v in query.items()},
                "headers": {k: v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }, extra_headers)
            return

        if kind == "kv" and rid == "_batch" and self.command == "POST":
            try:
                items = json.loads(body.decode("utf-8"))
                if not isinstance(items, list) or not all(
                        isinstance(i, dict) and i.get("op") in ("set", "del")
                        and isinstance(i.get("id"), str) for i in items):
                    raise ValueError("want a list of {op, id, value}")
            except ValueError as e:
                self.send_json(400, {"error": "bad batch: %s" % e}, extra_headers)
                return
            with STATE.lock:
                for i in items:
                    if i["op"] == "set":
                        STATE.kv[i["id"]] = str(i.get("value", ""))
                        STATE.kv_writes.append(["PUT", i["id"], STATE.kv[i["id"]]])
                    else:
                        STATE.kv.pop(i["id"], None)
                        STATE.kv_writes.append(["DELETE", i["id"], None])
                STATE.kv_batches.append(items)
            self.send_json(200, {"applied": len(items)}, extra_headers)
            return

        if kind == "kv" and rid and "/" not in rid:
            text = body.decode("utf-8", "replace")
            m = self.command
            with STATE.lock:
                if m == "PUT":
                    if query.get("upper", ["0"])[-1] == "1":
                        text = text.upper()
                    STATE.kv[rid] = text
                    STATE.kv_writes.append(["PUT", rid, text])
                    found = True
                elif m == "DELETE":
                    found = STATE.kv.pop(rid, None) is not None
                    STATE.kv_writes.append(["DELETE", rid, None])
                    text = ""
                elif self.kv_snapshot is not None:
                    found, text = self.kv_snapshot
                else:
                    found = rid in STATE.kv
                    text = STATE.kv.get(rid, "")
            if not found:
                self.send(404, "not found", "text/plain; charset=utf-8", extra_headers)
            else:
                self.send(200, text, "text/plain; charset=utf-8", extra_headers)
            return

        if kind == "seq" and rid:
            self.send(200, "%s:%d" % (rid, count), "text/plain; charset=utf-8", extra_headers)
            return

        if kind in ("widgets", "users", "slow") and rid and "/" not in rid:
            if rid.startswith("missing"):
                self.send_json(404, {"error": "not found"}, extra_headers)
                return
            if kind == "widgets":
                obj = {
                    "id": json_id(rid),
                    "name": "widget " + rid,
                    "owner_id": owner_of(rid),
                    "price": round(int(rid) * 1.25 + 0.99, 2) if NUMERIC.match(rid) else 9.99,
                }
            elif kind == "users":
                numeric = NUMERIC.match(rid) is not None
                obj = {
                    "id": json_id(rid),
                    "name": "user " + rid,
                    "email": "user%s@example.com" % rid,
                    "tier": "vip" if numeric and int(rid) % 5 == 0 else "standard",
                }
            else:
                n = abs(int(rid)) if NUMERIC.match(rid) else len(rid)
                obj = {
                    "id": json_id(rid),
                    "report": "sum of 1..%d" % n,
                    "sum": n * (n + 1) // 2,
                    "computed_at_ms": int(time.time() * 1000),
                }
            if version is not None:
                obj["version"] = version
            self.send_json(200, obj, extra_headers)
            return

        self.send(404, "not found", "text/plain; charset=utf-8", extra_headers)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if VERBOSE:
            super().handle_error(request, client_address)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description="example origin for luacached")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose

    srv = Server((args.host, args.port), Handler)
    port = srv.server_address[1]
    sys.stdout.write("origin listening on %s:%d\n" % (args.host, port))
    sys.stdout.flush()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
