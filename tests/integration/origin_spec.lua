-- tests/lua/origin_spec.lua -- the example origin, the harness and the RESP
-- test client work. Run from the repo root:
--   busted --lua=lua5.4 tests/lua/origin_spec.lua
local socket = require "socket"
local H = require "tests.helpers.harness"
local resp = require "tests.helpers.resp"

-- raw HTTP/1.1 on one luasocket connection: returns status, headers, body
local function read_http_response(sock)
  local line = assert(sock:receive("*l"))
  local status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  while true do
    local h = assert(sock:receive("*l"))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    headers[k:lower()] = v
  end
  local n = tonumber(headers["content-length"])
  local body = n > 0 and assert(sock:receive(n)) or ""
  return status, headers, body
end

describe("harness basics", function()
  teardown(H.cleanup)

  it("finds the repo root", function()
    assert.truthy(H.read_file(H.root .. "/examples/origin.py"))
  end)

  it("free_port returns a bindable port", function()
    local p = H.free_port()
    assert.is_true(p > 0 and p < 65536)
    local s = assert(socket.bind("127.0.0.1", p))
    s:close()
  end)

  it("wait_until returns the value or raises with the message at the deadline", function()
    local n = 0
    assert.equal(3, H.wait_until(function() n = n + 1; return n >= 3 and n end, 1, "count"))
    local t0 = H.now()
    local ok, err = pcall(H.wait_until, function() error("not yet") end, 0.2, "never true")
    assert.is_false(ok)
    assert.matches("timeout after 0.2s: never true", err, 1, true)
    assert.matches("not yet", err, 1, true)
    assert.is_true(H.now() - t0 < 1)
  end)

  it("spawn records pid and exit status; stop kills", function()
    local p = H.spawn{ argv = { "sh", "-c", "echo hello; exit 7" }, name = "t" }
    assert.equal(7, p:wait(5))
    assert.matches("hello", p:log())
    local s = H.spawn{ argv = { "sleep", "30" }, name = "sleeper" }
    assert.is_true(s:alive())
    local rc = s:stop("TERM", 2)
    assert.equal(128 + 15, rc)
    assert.is_false(s:alive())
  end)

  it("run captures output and status", function()
    local rc, out = H.run({ "sh", "-c", "echo out; echo err >&2; exit 3" }, 5)
    assert.equal(3, rc)
    assert.matches("out", out)
    assert.matches("err", out)
  end)

  it("write_policies writes NS.lua files", function()
    local dir = H.write_policies{ a = "return {}", b = H.simple_policy("http://x/", "ttl = 5") }
    assert.equal("return {}", H.read_file(dir .. "/a.lua"))
    assert.truthy(load(H.read_file(dir .. "/b.lua")))
  end)

  it("pattern_bytes contains NUL and CRLF", function()
    local b = H.pattern_bytes(600)
    assert.equal(600, #b)
    assert.equal("\0\r\n\0\1\2", b:sub(1, 6))
    assert.equal(b:sub(1, 258), b:sub(259, 516))
  end)
end)

describe("example origin", function()
  local origin
  setup(function() origin = H.start_origin() end)
  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  it("serves widgets as JSON", function()
    local st, body, hdr = origin:get("/widgets/42")
    assert.equal(200, st)
    assert.equal("application/json", hdr["content-type"])
    local w = H.json_decode(body)
    assert.same({ id = 42, name = "widget 42", owner_id = 2, price = 53.49 }, w)
    w = H.json_decode(select(2, origin:get("/widgets/abc")))
    assert.equal("abc", w.id)
    assert.equal(1, w.owner_id)
  end)

  it("404s ids starting with missing", function()
    assert.equal(404, (origin:get("/widgets/missing-7")))
    assert.equal(404, (origin:get("/users/missing")))
    assert.equal(404, (origin:get("/nowhere")))
  end)

  it("serves users and includes ?version", function()
    local st, body = origin:get("/users/10?version=3")
    assert.equal(200, st)
    local u = H.json_decode(body)
    assert.equal("vip", u.tier)
    assert.equal(3, u.version)
    assert.equal("standard", H.json_decode(select(2, origin:get("/users/11"))).tier)
  end)

  it("slow values take ?delay (default 0.3 s)", function()
    local t0 = H.now()
    local st, body = origin:get("/slow/4")
    local dt = H.now() - t0
    assert.equal(200, st)
    assert.equal(10, H.json_decode(body).sum)
    assert.is_true(dt >= 0.28 and dt < 2, "took " .. dt)
    t0 = H.now()
    origin:get("/slow/4?delay=0")
    assert.is_true(H.now() - t0 < 0.25)
  end)

  it("query controls: delay, status, body, bytes", function()
    local t0 = H.now()
    assert.equal(200, (origin:get("/widgets/1?delay=0.3")))
    assert.is_true(H.now() - t0 >= 0.28)
    local st, body = origin:get("/widgets/1?status=500")
    assert.equal(500, st)
    assert.equal("origin error", body)
    st, body = origin:get("/anything?body=hello%20world")
    assert.equal(200, st)
    assert.equal("hello world", body)
    st, body = origin:get("/bin?bytes=1000")
    assert.equal(200, st)
    assert.equal(H.pattern_bytes(1000), body)
  end)

  it("counts requests per path in /_stats, excluding control endpoints", function()
    origin:get("/widgets/7")
    origin:get("/widgets/7?version=2")
    origin:get("/widgets/8")
    origin:stats()
    local s = origin:stats()
    assert.equal(3, s.total)
    assert.equal(2, s.paths["/widgets/7"])
    assert.equal(1, origin:count("/widgets/8"))
    assert.equal(0, origin:count("/_stats"))
    origin:reset()
    assert.equal(0, origin:stats().total)
  end)

  it("/_control overrides one exact path until cleared", function()
    origin:control("/widgets/7", { status = 500, body = "down" })
    local st, body = origin:get("/widgets/7")
    assert.equal(500, st)
    assert.equal("down", body)
    assert.equal(200, (origin:get("/widgets/70")))
    origin:control("/widgets/7", { delay = 0.3, body = "late" })
    local t0 = H.now()
    st, body = origin:get("/widgets/7")
    assert.equal(200, st)
    assert.equal("late", body)
    assert.is_true(H.now() - t0 >= 0.28)
    origin:clear_control("/widgets/7")
    assert.equal("widget 7", H.json_decode(select(2, origin:get("/widgets/7"))).name)
  end)

  it("/_control times = N applies to the next N requests", function()
    origin:control("/widgets/9", { status = 503, times = 2 })
    assert.equal(503, (origin:get("/widgets/9")))
    assert.equal(503, (origin:get("/widgets/9")))
    assert.equal(200, (origin:get("/widgets/9")))
  end)

  it("/_reset clears overrides", function()
    origin:control("/widgets/5", { status = 500 })
    origin:reset()
    assert.equal(200, (origin:get("/widgets/5")))
  end)

  it("drop closes the connection without an answer", function()
    origin:control("/widgets/6", { drop = true })
    assert.has_error(function() origin:get("/widgets/6") end)
  end)

  it("/chaos/<ns>/<id> hands out a new version per answer and logs it in /_chaos", function()
    local t0 = H.now()
    local st, body = origin:get("/chaos/c/7")
    assert.equal(200, st)
    assert.equal("key=c:7 v=1", body)
    assert.equal("key=c:7 v=2", select(2, origin:get("/chaos/c/7")))
    assert.equal("key=d:7 v=1", select(2, origin:get("/chaos/d/7")))
    assert.equal(404, (origin:get("/chaos/c/missing1")))
    local ch = H.json_decode(select(2, origin:get("/_chaos")))
    assert.equal(2, #ch.versions["c:7"])
    assert.equal(2, ch.versions["c:7"][2][1])
    local t = ch.versions["c:7"][1][2]
    assert.is_true(t >= t0 - 0.05 and t <= H.now() + 0.05, "version time " .. t)
    assert.same({ arrived = 3, ok = 2, not_found = 1, error = 0, hang = 0, reset = 0 }, ch.counts.c)
    origin:reset()
    assert.same({}, H.json_decode(select(2, origin:get("/_chaos"))).versions)
  end)

  it("/_mode switches every path under its prefix to 500, hang or reset at run time", function()
    local function mode(m, extra)
      local spec = { mode = m, hang = 0.3 }
      for k, v in pairs(extra or {}) do spec[k] = v end
      local st = H.http{ url = origin.url .. "/_mode", method = "POST", body = H.json_encode(spec) }
      return st
    end
    assert.equal(200, mode("error"))
    assert.equal(500, (origin:get("/chaos/c/1")))
    assert.equal(200, (origin:get("/widgets/1"))) -- outside the prefix
    assert.equal(200, mode("hang"))
    local t0 = H.now()
    assert.equal("key=c:1 v=1", select(2, origin:get("/chaos/c/1")))
    assert.is_true(H.now() - t0 >= 0.28, "did not hang")
    assert.equal(200, mode("reset"))
    -- an RST, not an orderly close (luasocket reports both as "closed")
    local rc, out = H.run({ "python3", "-c", string.format([[
import socket
s = socket.create_connection(("127.0.0.1", %d), 5)
s.sendall(b"GET /chaos/c/1 HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    print("eof" if s.recv(100) == b"" else "data")
except ConnectionResetError:
    print("reset")
]], origin.port) }, 10)
    assert.equal(0, rc, out)
    assert.equal("reset", out:match("%a+"))
    assert.equal(200, mode("error", { prefix = "/widgets/" }))
    assert.equal(200, (origin:get("/chaos/c/1")))
    assert.equal(500, (origin:get("/widgets/1")))
    assert.equal(400, mode("bogus"))
    assert.equal(200, mode("ok"))
    assert.equal(200, (origin:get("/widgets/1")))
    local c = H.json_decode(select(2, origin:get("/_chaos"))).counts.c
    assert.same({ arrived = 4, ok = 2, not_found = 0, error = 1, hang = 1, reset = 1 }, c)
    origin:reset()
  end)

  it("echoes method, path, headers and body", function()
    local st, body = H.http{ url = origin.url .. "/echo/x?a=1", method = "PUT", body = "payload",
                             headers = { ["x-test"] = "yes" } }
    assert.equal(200, st)
    local e = H.json_decode(body)
    assert.equal("PUT", e.method)
    assert.equal("/echo/x", e.path)
    assert.equal("1", e.query.a)
    assert.equal("payload", e.body)
    local found
    for k, v in pairs(e.headers) do if k:lower() == "x-test" then found = v end end
    assert.equal("yes", found)
  end)

  it("keeps HTTP/1.1 connections alive", function()
    local s = socket.tcp()
    s:settimeout(5)
    assert(s:connect("127.0.0.1", origin.port))
    assert(s:send("GET /widgets/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /bin?bytes=300 HTTP/1.1\r\nHost: x\r\n\r\n"))
    local st1, _, b1 = read_http_response(s)
    local st2, h2, b2 = read_http_response(s)
    s:close()
    assert.equal(200, st1)
    assert.equal(1, H.json_decode(b1).id)
    assert.equal(200, st2)
    assert.equal("300", h2["content-length"])
    assert.equal(H.pattern_bytes(300), b2)
  end)

  it("answers 250 concurrent slow requests in parallel", function()
    local n = 250
    local socks = {}
    for i = 1, n do
      local s = socket.tcp()
      s:settimeout(5)
      assert(s:connect("127.0.0.1", origin.port))
      socks[i] = s
    end
    local t0 = H.now()
    for i, s in ipairs(socks) do
      assert(s:send("GET /widgets/" .. (i % 10) .. "?delay=0.5 HTTP/1.1\r\nHost: x\r\n\r\n"))
    end
    for i, s in ipairs(socks) do
      local st, _, body = read_http_response(s)
      assert.equal(200, st)
      assert.equal(i % 10, H.json_decode(body).id)
      s:close()
    end
    local dt = H.now() - t0
    assert.is_true(dt < 4, "250 x 0.5 s took " .. dt)
    local s = origin:stats()
    assert.equal(n, s.total)
    assert.equal(25, s.paths["/widgets/1"])
    assert.is_true(s.max_inflight["/widgets/1"] >= 2)
    -- a handler thread counts itself out just after its response is sent
    H.wait_until(function() return origin:stats().inflight == 0 end, 2, "inflight back to 0")
  end)
end)

describe("RESP client against redis-server", function()
  local redis, c
  setup(function()
    redis = H.start_redis()
    c = redis:client()
  end)
  teardown(H.cleanup)

  it("PING, status and bulk replies", function()
    assert.same({ "PONG", "status" }, { c:call("PING") })
    assert.same({ "hi", "bulk" }, { c:call("PING", "hi") })
    assert.equal("OK", c:call("SET", "k", "v"))
    assert.equal("v", c:call("GET", "k"))
  end)

  it("binary-safe values with NUL and CRLF", function()
    local v = H.pattern_bytes(100000) .. "\r\n$3\r\n\0"
    assert.equal("OK", c:call("SET", "bin", v))
    local got, kind = c:call("GET", "bin")
    assert.equal("bulk", kind)
    assert.equal(#v, #got)
    assert.is_true(v == got)
    assert.equal("OK", c:call("SET", "empty", ""))
    assert.equal("", c:call("GET", "empty"))
  end)

  it("nil, integer, error and array replies", function()
    assert.same({ nil, "nil" }, { c:call("GET", "does-not-exist") })
    assert.same({ 5, "integer" }, { c:call("INCRBY", "ctr", 5) })
    assert.same({ 1, "integer" }, { c:call("DEL", "ctr") })
    local e, kind = c:call("NOSUCHCOMMAND", "x")
    assert.equal("error", kind)
    assert.is_true(resp.is_err(e))
    assert.matches("^ERR unknown command", e.err)
    c:call("SET", "a", "1")
    local arr = c:call("MGET", "a", "nope", "a")
    assert.equal(3, arr.n)
    assert.equal("1", arr[1])
    assert.is_nil(arr[2])
    assert.equal("1", arr[3])
    assert.same({ { n = 0 }, "array" }, { c:call("KEYS", "no-match-*") })
  end)

  it("pipelines 100 commands and reads replies in order", function()
    for i = 1, 100 do c:send("SET", "p" .. i, "v" .. i) end
    for _ = 1, 100 do assert.equal("OK", c:read_reply()) end
    local cmds = {}
    for i = 1, 100 do cmds[i] = { "GET", "p" .. i } end
    local replies = c:pipeline(cmds)
    for i = 1, 100 do assert.same({ "v" .. i, "bulk" }, replies[i]) end
  end)

  it("inline commands and raw replies", function()
    assert.equal("PONG", c:inline("PING"))
    c:send_raw("GET k\r\n")
    assert.equal("$1\r\nv\r\n", c:read_raw_reply())
    c:send("GET", "does-not-exist")
    assert.equal("$-1\r\n", c:read_raw_reply())
  end)

  it("a read that gets no reply times out with a clear error", function()
    local c2 = redis:client(0.3)
    local t0 = H.now()
    c2:send("BLPOP", "empty-list", 5)
    local ok, err = pcall(c2.read_reply, c2)
    assert.is_false(ok)
    assert.matches("resp: timeout", err, 1, true)
    assert.is_true(H.now() - t0 < 1.5)
    c2:close()
  end)

  it("notices a closed connection", function()
    local c2 = redis:client(1)
    assert.equal("OK", c2:call("QUIT"))
    assert.is_true(c2:closed_within(1))
    local c3 = redis:client(1)
    assert.is_false(c3:closed_within(0.1))
    c3:close()
  end)

  it("connect to a closed port fails clearly", function()
    local ok, err = pcall(resp.connect, "127.0.0.1", H.free_port(), 1)
    assert.is_false(ok)
    assert.matches("cannot connect", err, 1, true)
  end)

  it("opens many clients", function()
    local list = H.open_clients(redis.port, 20)
    for i, cl in ipairs(list) do assert.equal("PONG", cl:call("PING")) ; list[i] = cl end
    H.close_clients(list)
  end)

  it("restarts redis on the same port", function()
    local port = redis.port
    redis:restart()
    assert.equal(port, redis.port)
    assert.equal("PONG", redis:call("PING"))
    assert.is_nil(redis:call("GET", "k"))   -- no persistence
    c = redis:client()
  end)
end)

describe("start_server", function()
  teardown(H.cleanup)

  it("waits for a RESP server and passes the contract flags", function()
    -- a stand-in for build/luacached: logs its args and serves RESP via redis-server
    local dir = H.tmpdir()
    local fake = dir .. "/fake-luacached"
    H.write_file(fake, '#!/bin/sh\necho "args: $*"\nsleep 0.2\nexec redis-server --port "$2" --bind 127.0.0.1 --save "" --appendonly no\n')
    os.execute("chmod +x " .. fake)
    local srv = H.start_server{ bin = fake, redis_port = 6399, policies_dir = dir }
    assert.equal("PONG", srv:call("PING"))
    assert.matches("args: --port " .. srv.port .. " --redis redis://127.0.0.1:6399/0 --policies " .. dir
                   .. " --metrics-port 0", srv:log(), 1, true)
    assert.equal(0, srv:stop("TERM", 5))
    assert.is_false(srv:alive())
  end)

  it("reports a server that dies at start with its log tail", function()
    local dir = H.tmpdir()
    local fake = dir .. "/bad-luacached"
    H.write_file(fake, "#!/bin/sh\necho 'fatal: something broke' >&2\nexit 2\n")
    os.execute("chmod +x " .. fake)
    local t0 = H.now()
    local ok, err = pcall(H.start_server, { bin = fake, redis_port = 6399, policies_dir = dir })
    assert.is_false(ok)
    assert.matches("fatal: something broke", err, 1, true)
    assert.matches("exited", err, 1, true)
    assert.is_true(H.now() - t0 < 5)
  end)

  it("explains a missing binary", function()
    local ok, err = pcall(H.start_server, { bin = "/nonexistent/luacached", redis_port = 6399 })
    assert.is_false(ok)
    assert.matches("binary not found", err, 1, true)
  end)
end)
