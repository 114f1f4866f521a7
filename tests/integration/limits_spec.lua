-- tests/integration/limits_spec.lua -- every input a client can send has a
-- bound and a clear answer (SPEC §8), authentication, graceful shutdown and
-- --check (SPEC §1), against the real binary, redis-server and the example
-- origin. Run from the repo root:
--   busted --lua=lua5.4 tests/integration/limits_spec.lua
-- (LUACACHED_BIN=build-asan/luacached for the sanitizer build.)
local socket = require "socket"
local H = require "tests.helpers.harness"
local resp = require "tests.helpers.resp"

local assert_err = H.assert_err
local assert_proto_error = H.assert_proto_error

local assert_clean_stop = H.assert_clean_exit

local function info_field(srv_or_conn, name)
  local info = srv_or_conn:call("INFO")
  return tonumber(info:match("\n" .. name .. ":(%d+)"))
end

local function start(extra_args, fields, env)
  local redis = H.start_redis()
  local origin = H.start_origin()
  local dir = H.write_policies{
    widget = H.simple_policy(origin.url .. "/widgets/", fields or "ttl = 60"),
    slow = H.simple_policy(origin.url .. "/slow/", "ttl = 60"),
  }
  local srv = H.start_server{ redis_port = redis.port, policies_dir = dir, extra_args = extra_args,
                              env = env }
  return redis, origin, srv, dir
end

---------------------------------------------------------------------------

describe("request size limits", function()
  local srv
  setup(function()
    _, _, srv = start{ "--max-inline", "1024", "--max-bulk", "4096", "--max-args", "16",
                          "--max-value", "2048" }
  end)
  teardown(H.cleanup)

  it("an inline request up to --max-inline is served", function()
    local c = srv:client()
    local arg = string.rep("i", 1024 - #"ECHO ")
    assert.equal(arg, c:inline("ECHO " .. arg))
  end)

  it("an inline request over --max-inline is a protocol error", function()
    local c = srv:client()
    c:send_raw("ECHO " .. string.rep("x", 2000))            -- no newline yet
    assert_proto_error(c, "too big inline request")
    c = srv:client()
    c:send_raw("ECHO " .. string.rep("x", 1100) .. "\r\n")   -- a whole line, too long
    assert_proto_error(c, "too big inline request")
    assert.equal("PONG", srv:call("PING"))
  end)

  it("a multibulk or bulk header line over the limit is a protocol error", function()
    local c = srv:client()
    c:send_raw("*" .. string.rep("1", 2000))
    assert_proto_error(c, "too big mbulk count string")
    c = srv:client()
    c:send_raw("*1\r\n$" .. string.rep("1", 2000))
    assert_proto_error(c, "too big bulk count string")
    assert.equal("PONG", srv:call("PING"))
  end)

  it("a bulk up to --max-bulk is served, one byte more is a protocol error", function()
    local c = srv:client()
    local v = H.pattern_bytes(4096)
    assert.equal(v, c:call("ECHO", v))
    c:send_raw("*2\r\n$4\r\nECHO\r\n$4097\r\n")
    assert_proto_error(c, "invalid bulk length")
    -- refused at the header: the server does not wait for (or buffer) the body
    c = srv:client()
    c:send_raw("*2\r\n$4\r\nECHO\r\n$1073741824\r\nabc")
    assert_proto_error(c, "invalid bulk length")
    assert.equal("PONG", srv:call("PING"))
  end)

  it("up to --max-args arguments are served, more is a protocol error", function()
    local c = srv:client()
    local keys = {}
    for i = 1, 15 do keys[i] = "widget:missing-" .. i end
    local arr = c:call("MGET", table.unpack(keys))
    assert.equal(15, arr.n)
    c:send_raw("*17\r\n")
    assert_proto_error(c, "invalid multibulk length")
    c = srv:client()
    c:send_raw("ECHO" .. string.rep(" a", 16) .. "\r\n")   -- 17 inline arguments
    assert_proto_error(c, "invalid multibulk length")
    c = srv:client()
    c:send_raw("*1048577\r\n")
    assert_proto_error(c, "invalid multibulk length")
  end)

  it("a SET value over --max-value is refused with a clear error", function()
    local c = srv:client()
    assert_err("ERR value of 3000 bytes exceeds --max-value (2048)",
      c:call("SET", "widget:v", string.rep("v", 3000)))
    assert.equal("OK", c:call("SET", "widget:v", string.rep("v", 2048)))
    assert.equal(2048, #c:call("GET", "widget:v"))
  end)

  it("other clients are served while one sends a protocol error", function()
    local other = srv:client()
    assert.equal("PONG", other:call("PING"))
    local bad = srv:client()
    bad:send_raw("*1\r\nX\r\n")
    assert_proto_error(bad, "expected '$', got 'X'")
    assert.equal("PONG", other:call("PING"))
    assert.equal("still here", other:call("ECHO", "still here"))
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)

---------------------------------------------------------------------------

describe("--maxclients", function()
  local srv
  setup(function() _, _, srv = start{ "--maxclients", "3" } end)
  teardown(H.cleanup)

  it("the N+1th connection gets -ERR max number of clients reached", function()
    local c1 = srv:client()
    -- the harness's readiness probe may not be counted off yet
    H.wait_until(function() return info_field(c1, "connected_clients") == 1 end, 3,
      "one connected client")
    local c2, c3 = srv:client(), srv:client()
    assert.equal("PONG", c2:call("PING"))
    assert.equal("PONG", c3:call("PING"))
    local c4 = srv:client()
    assert.equal("-ERR max number of clients reached\r\n", c4:read_raw_reply(3))
    assert.is_true(c4:closed_within(3))
    assert.equal(3, info_field(c1, "connected_clients"))
    -- many rejections in a row leave the count and the server intact
    for _ = 1, 20 do
      local r = srv:client()
      assert.equal("-ERR max number of clients reached\r\n", r:read_raw_reply(3))
      r:close()
    end
    assert.equal(3, info_field(c1, "connected_clients"))
    -- a freed place is available again
    c3:close()
    H.wait_until(function()
      local c = H.connect(srv.port, 2)
      local v = c:call("PING")
      c:close()
      return v == "PONG"
    end, 3, "a connection after one closed")
    assert.equal("PONG", c1:call("PING"))
    assert.equal("PONG", c2:call("PING"))
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)

---------------------------------------------------------------------------

describe("--timeout", function()
  local srv
  setup(function() _, _, srv = start{ "--timeout", "1" } end)
  teardown(H.cleanup)

  it("closes an idle client within ~2-3 s but not one that keeps sending", function()
    local idle = srv:client()
    assert.equal("PONG", idle:call("PING"))
    local busy = srv:client()
    local t0 = H.now()
    local closed_at
    while H.now() - t0 < 4 do
      assert.equal("PONG", busy:call("PING"))
      if not closed_at and idle:closed_within(0.3) then closed_at = H.now() - t0 end
    end
    assert.truthy(closed_at, "idle client was not closed within 4 s")
    assert.is_true(closed_at >= 0.9 and closed_at <= 3.3, "idle client closed after " .. closed_at .. " s")
    assert.equal("", idle:pending())
    assert.equal("PONG", busy:call("PING"))
  end)

  it("a client waiting on its own slow reply is not idle", function()
    local c = srv:client(10)
    c:send("GET", "slow:5?delay=2.5")
    local v, kind = c:read_reply()
    assert.equal("bulk", kind)
    assert.equal(5, H.json_decode(v).id)
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)

---------------------------------------------------------------------------

describe("--output-limit and a slow or stalled reader", function()
  local srv
  local function peak_kb()
    local f = assert(io.open("/proc/" .. srv.pid .. "/status"))
    local kb = tonumber(f:read("a"):match("VmHWM:%s*(%d+)"))
    f:close()
    return kb
  end
  -- ASan keeps freed memory in a 256 MB quarantine, which would hide what
  -- the peak-memory checks measure; a small one keeps them meaningful.
  local asan = os.getenv("ASAN_OPTIONS")
  local env = { ASAN_OPTIONS = (asan and asan ~= "" and (asan .. ":") or "") .. "quarantine_size_mb=4" }
  setup(function() _, _, srv = start({ "--output-limit", "1048576" }, nil, env) end)
  teardown(H.cleanup)

  local big = H.pattern_bytes(512 * 1024)
  local big_reply = "$" .. #big .. "\r\n" .. big .. "\r\n"

  -- Read n bulk replies of exactly `expect` (the raw bytes), in order.
  local function read_replies(c, n, expect, timeout)
    local deadline = H.now() + timeout
    for k = 1, n do
      assert.is_true(c:read_bytes(#expect, deadline) == expect, "reply " .. k .. " differs")
    end
  end

  it("a client that never reads is paused, not dropped, and does not disturb others", function()
    local good = srv:client()
    assert.equal("OK", good:call("SET", "widget:big", big))
    assert.equal(#big, #good:call("GET", "widget:big"))
    local base = peak_kb()

    local hog = srv:client(10)
    hog:send_raw(string.rep(resp.encode("GET", "widget:big"), 100)) -- 50 MB of replies
    -- meanwhile, another client's PING stays fast
    local worst = 0
    local t_end = H.now() + 2
    while H.now() < t_end do
      local t0 = H.now()
      assert.equal("PONG", good:call("PING"))
      worst = math.max(worst, H.now() - t0)
      socket.sleep(0.02)
    end
    assert.is_true(worst < 0.25, "PING took " .. worst .. " s while another client hogged output")
    -- the hog is held at about half the limit (that it is still connected
    -- shows below: it gets every reply; a count of connected clients would
    -- also see earlier tests' connections closing meanwhile)
    local grown = (peak_kb() - base) // 1024
    assert.is_true(grown < 8, "server peak memory grew by " .. grown .. " MiB")
    -- once it reads, it gets every reply
    read_replies(hog, 100, big_reply, 20)
    assert.equal("PONG", hog:call("PING"))
    assert.is_nil(srv:log():find("output%-limit"))
  end)

  -- Finished replies waiting behind an unfinished one count too: otherwise
  -- one slow reply at the head of a pipeline lets the server hold
  -- max_pending x value size bytes for that client.
  it("finished replies queued behind a slow one count toward back-pressure", function()
    local base = peak_kb()
    local hog = srv:client(10)
    hog:send_raw(resp.encode("GET", "slow:hol?delay=1") .. string.rep(resp.encode("GET", "widget:big"), 100))
    local v, kind = hog:read_reply(5)
    assert.equal("bulk", kind)
    assert.equal("hol", H.json_decode(v).id)
    read_replies(hog, 100, big_reply, 20)
    local grown = (peak_kb() - base) // 1024
    assert.is_true(grown < 8, "server peak memory grew by " .. grown .. " MiB")
  end)

  -- Send req while reading replies: the server stops reading from a client
  -- whose output is backed up, so a blocking send could wait for ever.
  -- Returns the n replies (bulk strings), in order.
  local function pump(c, req, n, timeout)
    local i, replies = 1, {}
    local deadline = H.now() + timeout
    while #replies < n do
      assert(H.now() < deadline, #replies .. " of " .. n .. " replies in " .. timeout .. " s")
      if i <= #req then
        c.sock:settimeout(0)
        local last, _, partial = c.sock:send(req, i)
        i = (last or partial or i - 1) + 1
      end
      c.sock:settimeout(0.01)
      local data, err, partial = c.sock:receive(1048576)
      local chunk = data or partial
      if chunk and #chunk > 0 then c.buf = c.buf .. chunk end
      assert(not err or err == "timeout", "connection: " .. tostring(err))
      while true do -- every whole bulk reply buffered (a part stays for later)
        local e = c.buf:find("\r\n", c.pos, true)
        local len = e and math.tointeger(tonumber(c.buf:match("^%$(%d+)", c.pos)))
        assert(not e or len, "not a bulk reply: " .. c.buf:sub(c.pos, c.pos + 40))
        if not e or #c.buf < e + 1 + len + 2 then break end
        replies[#replies + 1] = c.buf:sub(e + 2, e + 1 + len)
        c.pos = e + 2 + len + 2
      end
      if c.pos > 1048576 then c.buf, c.pos = c.buf:sub(c.pos), 1 end
    end
    return replies
  end

  it("replies answered at once but queued behind a slow one pause the client", function()
    -- ECHO answers without waiting, but behind the slow GET it cannot be
    -- sent: the server stops reading (back-pressure) instead of holding
    -- 100 x 256 KiB, or dropping a client that does read in the end
    local hog = srv:client(5)
    local payload = string.rep("e", 256 * 1024)
    local echo = resp.encode("ECHO", payload)
    local base = peak_kb()
    local replies = pump(hog, resp.encode("GET", "slow:hol2?delay=1") .. string.rep(echo, 100), 101, 20)
    assert.equal("hol2", H.json_decode(replies[1]).id)
    for k = 2, 101 do assert.is_true(replies[k] == payload, "reply " .. k) end
    local grown = (peak_kb() - base) // 1024
    assert.is_true(grown < 12, "server peak memory grew by " .. grown .. " MiB")
    assert.equal("PONG", hog:call("PING"))
  end)

  -- The hard limit: only when the estimate of what is coming was wrong.
  it("a client whose replies outgrow the estimate is dropped at the limit", function()
    local good = srv:client()
    assert.equal("OK", good:call("SET", "widget:tiny", "t"))
    assert.equal("OK", good:call("SET", "widget:big2", big))
    local base = peak_kb()
    local hog = srv:client(5)
    -- small replies first make the big ones that follow look cheap
    pcall(hog.send_raw, hog, string.rep(resp.encode("GET", "widget:tiny"), 100)
      .. string.rep(resp.encode("GET", "widget:big2"), 200)) -- 100 MB of replies
    assert.is_true(hog:closed_within(5), "hog not dropped")
    local grown = (peak_kb() - base) // 1024
    assert.is_true(grown < 40, "server peak memory grew by " .. grown .. " MiB")
    assert.matches("output%-limit", srv:log())
    assert.equal("PONG", good:call("PING"))
  end)

  it("a single reply larger than the limit drops the client", function()
    local good = srv:client()
    assert.equal("OK", good:call("SET", "widget:toobig", H.pattern_bytes(1536 * 1024)))
    local c = srv:client(5)
    c:send("GET", "widget:toobig")
    assert.is_true(c:closed_within(5), "client not dropped")
    assert.equal("PONG", good:call("PING"))
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)

---------------------------------------------------------------------------

describe("--requirepass", function()
  local srv, origin
  setup(function() _, origin, srv = start{ "--requirepass", "s3cret" } end)
  teardown(H.cleanup)

  local NOAUTH = "NOAUTH Authentication required."
  local WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."

  it("nothing but AUTH, HELLO and QUIT is served before AUTH", function()
    local c = srv:client()
    assert_err(NOAUTH, c:call("PING"))
    assert_err(NOAUTH, c:call("GET", "widget:1"))
    assert_err(NOAUTH, c:call("SET", "widget:1", "x"))
    assert_err(NOAUTH, c:call("COMMAND"))
    assert_err(NOAUTH, c:call("INFO"))
    assert_err(NOAUTH, c:call("POLICIES"))
    assert_err(NOAUTH, c:call("CLIENT", "SETNAME", "x"))
    assert_err(NOAUTH, c:call("SELECT", "0"))
    assert_err(NOAUTH, c:call("FOO", "bar"))
    assert_err(NOAUTH, c:call("GET"))
    assert_err(NOAUTH, c:inline("PING"))
    c:send_raw("PING\r\n")
    assert.equal("-NOAUTH Authentication required.\r\n", c:read_raw_reply())
    assert.equal(0, origin:count("/widgets/1"))
    assert.equal("OK", c:call("QUIT"))
    assert.is_true(c:closed_within(3))
  end)

  it("before AUTH, requests are capped as Redis 7 caps them", function()
    local c = srv:client()
    c:send_raw("*11\r\n")
    assert_proto_error(c, "unauthenticated multibulk length")
    c = srv:client()
    c:send_raw("*2\r\n$4\r\nAUTH\r\n$16385\r\n")
    assert_proto_error(c, "unauthenticated bulk length")
    -- after AUTH the ordinary limits apply
    c = srv:client()
    assert.equal("OK", c:call("AUTH", "s3cret"))
    local v = c:call("ECHO", string.rep("a", 20000))
    assert.equal(20000, #v)
  end)

  it("HELLO SETNAME before AUTH names nobody", function()
    local c = srv:client()
    assert_err("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
      c:call("HELLO", "2", "SETNAME", "sneaky"))
    assert.equal("OK", c:call("AUTH", "s3cret"))
    assert.is_nil(c:call("CLIENT", "GETNAME"))
  end)

  it("a wrong password is -WRONGPASS and does not authenticate", function()
    local c = srv:client()
    assert_err(WRONGPASS, c:call("AUTH", "nope"))
    assert_err(WRONGPASS, c:call("AUTH", "s3cre"))
    assert_err(WRONGPASS, c:call("AUTH", "s3cret!"))
    assert_err(WRONGPASS, c:call("AUTH", ""))
    assert_err(WRONGPASS, c:call("AUTH", "bob", "s3cret"))
    assert_err(WRONGPASS, c:call("AUTH", "default", "nope"))
    assert_err(NOAUTH, c:call("PING"))
    assert_err("ERR wrong number of arguments for 'auth' command", c:call("AUTH"))
    assert_err("ERR syntax error", c:call("AUTH", "a", "b", "c"))
  end)

  it("after AUTH pass, or AUTH default pass, commands work", function()
    local c = srv:client()
    assert.same({ "OK", "status" }, { c:call("AUTH", "s3cret") })
    assert.equal("PONG", c:call("PING"))
    local _, body = origin:get("/widgets/1")
    assert.equal(body, c:call("GET", "widget:1"))
    local c2 = srv:client()
    assert.same({ "OK", "status" }, { c2:call("AUTH", "default", "s3cret") })
    assert.equal("PONG", c2:call("PING"))
    local c3 = srv:client()
    assert.same({ "OK", "status" }, { c3:call("auth", "DEFAULT", "s3cret") })
    assert.equal("PONG", c3:call("PING"))
    -- a later wrong AUTH keeps the connection authenticated, as in Redis
    assert_err(WRONGPASS, c:call("AUTH", "nope"))
    assert.equal("PONG", c:call("PING"))
  end)

  it("HELLO needs auth first, or authenticates with its AUTH option", function()
    local c = srv:client()
    local v, kind = c:call("HELLO", "2")
    assert.equal("error", kind)
    assert.matches("^NOAUTH HELLO must be called with the client already authenticated", v.err)
    assert_err(WRONGPASS, c:call("HELLO", "2", "AUTH", "default", "wrong"))
    assert_err(NOAUTH, c:call("PING"))
    local m
    m, kind = c:call("HELLO", "2", "AUTH", "default", "s3cret")
    assert.equal("array", kind)
    assert.equal(14, m.n)
    assert.equal("PONG", c:call("PING"))
  end)

  it("HELLO 3 AUTH SETNAME authenticates, names and switches at once; a wrong password switches nothing", function()
    local c = srv:client()
    assert_err(WRONGPASS, c:call("HELLO", "3", "AUTH", "default", "wrong", "SETNAME", "n3"))
    c:send("GET", "widget:missing-auth3")
    assert.equal("-NOAUTH Authentication required.\r\n", c:read_raw_reply())
    local m, kind = c:call("HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "n3")
    assert.equal("map", kind)
    assert.equal(3, m.proto)
    c:send("CLIENT", "GETNAME")
    assert.equal("$2\r\nn3\r\n", c:read_raw_reply())
    c:close()
  end)

  it("redis-cli with -a works", function()
    assert.same({ 0, "PONG\n" }, { H.run({ "redis-cli", "-p", srv.port, "--no-auth-warning", "-a", "s3cret", "PING" }, 10) })
    local rc, out = H.run({ "redis-cli", "-p", srv.port, "--no-raw", "PING" }, 10)
    assert.equal(0, rc)
    assert.equal("(error) NOAUTH Authentication required.\n", out)
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)

---------------------------------------------------------------------------

describe("SIGTERM", function()
  local srv, origin
  setup(function() _, origin, srv = start() end)
  teardown(H.cleanup)

  it("stops accepting, lets a slow fetch in flight answer, exits 0", function()
    origin:reset()
    local c = srv:client(10)
    c:send("GET", "slow:9?delay=1.2")
    H.wait_until(function() return origin:stats().inflight >= 1 end, 3, "fetch reached the origin")
    local t0 = H.now()
    srv:signal("TERM")
    -- no new connections once shutdown began
    H.wait_until(function() return resp.try_connect("127.0.0.1", srv.port, 0.5) == nil end, 1,
      "listener closed")
    local v, kind = c:read_reply()
    assert.equal("bulk", kind)
    assert.equal(9, H.json_decode(v).id)
    local rc = srv:wait_exit(10)
    assert.equal(0, rc)
    assert.is_true(H.now() - t0 < 6, "shutdown took " .. (H.now() - t0) .. " s")
    local log = srv:log()
    assert.is_nil(log:find("ERROR: %a+Sanitizer"), H.tail(log, 6000))
    assert.is_nil(log:find("runtime error:", 1, true), H.tail(log, 6000))
    assert.equal(1, origin:count("/slow/9"))
  end)

  it("an idle server exits 0 at once", function()
    local s = H.start_server{ redis_port = H.start_redis().port, policies_dir = srv.policies_dir }
    local c = s:client()
    assert.equal("PONG", c:call("PING"))
    local t0 = H.now()
    assert.equal(0, s:stop("TERM", 10))
    assert.is_true(H.now() - t0 < 2, "took " .. (H.now() - t0) .. " s")
    assert.is_true(c:closed_within(2))
    -- SIGINT likewise
    local s2 = H.start_server{ redis_port = H.start_redis().port, policies_dir = srv.policies_dir }
    assert.equal("PONG", s2:call("PING"))
    assert.equal(0, s2:stop("INT", 10))
    assert.is_nil(s2:log():find("ERROR: %a+Sanitizer"), H.tail(s2:log(), 6000))
  end)
end)

---------------------------------------------------------------------------

describe("--check", function()
  teardown(H.cleanup)

  it("exits 0 and prints OK for a good folder", function()
    local dir = H.write_policies{
      widget = H.simple_policy("http://127.0.0.1:1/widgets/", "ttl = 60"),
      other = H.simple_policy("http://127.0.0.1:1/x/"),
    }
    local rc, out = H.run_luacached({ "--check", "--policies", dir }, 20)
    assert.equal(0, rc, out)
    assert.matches("OK", out)
    assert.is_nil(out:find("ERROR: %a+Sanitizer"), out)
  end)

  it("exits non-zero with file:line: errors for a bad folder", function()
    local dir = H.write_policies{
      widget = H.simple_policy("http://127.0.0.1:1/widgets/", "ttl = 60"),
      broken = "return {\n  ttl = 5,\n  fetch = function(id, ctx)\n",
    }
    local rc, out = H.run_luacached({ "--check", "--policies", dir }, 20)
    assert.is_true(rc ~= 0 and rc ~= 124, "status " .. tostring(rc) .. ": " .. out)
    assert.matches("broken%.lua:%d+:", out)
    assert.is_nil(out:find("ERROR: %a+Sanitizer"), out)
  end)
end)
