-- tests/integration/slowio_spec.lua -- slow readers and large values (issue
-- 6, items 5 and 6): back-pressure keeps a slow reader's memory bounded and
-- the loop responsive, and a large reply is not mistaken for a dead Redis.
--   busted --lua=lua5.4 tests/integration/slowio_spec.lua
-- (LUACACHED_BIN=build-asan/luacached for the sanitizer build.)
local socket = require "socket"
local H = require "tests.helpers.harness"
local resp = require "tests.helpers.resp"

local MiB = 1024 * 1024

local function status_kb(pid, field)
  local s = assert(H.read_file("/proc/" .. pid .. "/status"), "no /proc entry for " .. pid)
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local function info_field(srv, name)
  local info = srv:call("INFO")
  return info:match("\n" .. name .. ":([^\r\n]*)")
end

-- ASan keeps freed memory in a quarantine (256 MB by default), which would
-- hide what this measures; a small one keeps RSS meaningful. Harmless
-- without ASan.
local function asan_env()
  local o = os.getenv("ASAN_OPTIONS")
  return { ASAN_OPTIONS = (o and o ~= "" and (o .. ":") or "") .. "quarantine_size_mb=4" }
end

local function raw_connect(port)
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  return s
end

-- Read exactly n bytes (into a table of chunks: no quadratic concatenation).
local function read_exactly(sock, n, timeout)
  local parts, got = {}, 0
  local deadline = H.now() + timeout
  while got < n do
    assert(H.now() < deadline, string.format("read %d of %d bytes in %g s: %q", got, n, timeout,
      table.concat(parts):sub(1, 200)))
    sock:settimeout(math.max(0.01, deadline - H.now()))
    local data, err, partial = sock:receive(math.min(n - got, 4 * MiB))
    local chunk = data or partial
    if chunk and #chunk > 0 then
      parts[#parts + 1] = chunk
      got = got + #chunk
    end
    assert(not err or err == "timeout", string.format("after %d of %d bytes: %s", got, n, tostring(err)))
  end
  return table.concat(parts)
end

---------------------------------------------------------------------------

describe("a slow reader", function()
  local OUTPUT_LIMIT = 8 * MiB   -- back-pressure from 4 MiB
  local VALUE = 256 * 1024
  local redis, origin, srv

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local dir = H.write_policies{
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 600"),
      hot = H.simple_policy(origin.url .. "/widgets/", "ttl = 600, l1_ttl = 600"),
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir, env = asan_env(),
                          extra_args = { "--output-limit", tostring(OUTPUT_LIMIT),
                                         "--backend-timeout", "500",
                                         -- paused, yet not idle while it takes its output
                                         "--timeout", "1" } }
    H.wait_until(function() return info_field(srv, "backend_up") == "1" end, 5, "backend up")
  end)
  teardown(H.cleanup)

  -- Pipeline n GETs of key (a VALUE-byte value), read the replies at `rate`
  -- bytes/s, and meanwhile PING on another connection. Returns the worst
  -- PING time, the growth of the server's peak RSS, and the bytes read.
  local function slow_read(key, n, rate)
    local value = H.pattern_bytes(VALUE)
    local good = srv:client()
    assert.equal("OK", good:call("SET", key, value))
    assert.equal(value, good:call("GET", key))
    local base_hwm = status_kb(srv.pid, "VmHWM")

    local slow = raw_connect(srv.port)
    assert(slow:send(string.rep(resp.encode("GET", key), n)))
    local one = "$" .. VALUE .. "\r\n" .. value .. "\r\n"
    local want = n * #one
    local parts, got = {}, 0
    local worst_ping, t0 = 0, H.now()
    local next_ping = t0
    local deadline = t0 + want / rate + 20
    while got < want do
      assert(H.now() < deadline, string.format("slow reader got %d of %d bytes", got, want))
      local now = H.now()
      if now >= next_ping then
        local p0 = H.now()
        assert.equal("PONG", good:call("PING"))
        worst_ping = math.max(worst_ping, H.now() - p0)
        next_ping = H.now() + 0.02
      end
      local allowed = math.floor(rate * (H.now() - t0)) - got
      if allowed >= 16384 then
        slow:settimeout(0.01)
        local data, err, partial = slow:receive(math.min(allowed, 65536, want - got))
        local chunk = data or partial
        if chunk and #chunk > 0 then
          parts[#parts + 1] = chunk
          got = got + #chunk
        end
        assert(not err or err == "timeout",
          string.format("slow reader: %s after %d of %d bytes", tostring(err), got, want))
      else
        socket.sleep(0.005)
      end
    end
    slow:close()
    -- every reply whole, in order
    assert.is_true(table.concat(parts) == one:rep(n), "the replies are not the value, n times")
    local grown = (status_kb(srv.pid, "VmHWM") - base_hwm) * 1024
    io.stderr:write(string.format("\n  [%s x %d at %.0f MiB/s: %.1f s, worst PING %.1f ms, peak RSS +%.1f MiB]\n",
      key, n, rate / MiB, H.now() - t0, worst_ping * 1000, grown / MiB))
    return worst_ping, grown
  end

  local function check_after(key)
    assert.equal("1", info_field(srv, "backend_up"))
    assert.equal("0", info_field(srv, "backend_outages_total"))
    assert.equal(0, origin:count("/widgets/" .. key:match(":(.*)$")))
    assert.is_nil(srv:log():find("output%-limit"), "a client was closed:\n" .. H.tail(srv:log()))
  end

  it("of replies from Redis is paused, not dropped, and others stay fast", function()
    local n = 160   -- 40 MiB of replies, five times the output limit
    local worst, grown = slow_read("widget:big", n, 8 * MiB)
    assert.is_true(grown < OUTPUT_LIMIT + 16 * MiB,
      string.format("server peak RSS grew by %.1f MiB", grown / MiB))
    assert.is_true(worst < 0.1, string.format("PING took %.3f s", worst))
    check_after("widget:big")
    local st = H.ns_stats(srv, "widget")
    assert.equal(0, st.misses)
  end)

  it("of replies answered at once (in-process tier) is paused too", function()
    -- slower: each write of its backlog outlasts --timeout
    local worst, grown = slow_read("hot:big", 40, 2 * MiB)
    assert.is_true(grown < OUTPUT_LIMIT + 16 * MiB,
      string.format("server peak RSS grew by %.1f MiB", grown / MiB))
    assert.is_true(worst < 0.1, string.format("PING took %.3f s", worst))
    check_after("hot:big")
  end)

  it("leaves a clean log after a graceful stop", function()
    H.assert_clean_exit(srv)
  end)
end)

---------------------------------------------------------------------------

describe("the largest value", function()
  local BIG = 64 * MiB   -- the default --max-value and --max-bulk
  local origin, srv

  setup(function()
    local redis = H.start_redis()
    origin = H.start_origin()
    local dir = H.write_policies{
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 600"),
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
    H.wait_until(function() return info_field(srv, "backend_up") == "1" end, 5, "backend up")
  end)
  teardown(H.cleanup)

  it("of --max-value bytes is SET and then GET back exactly, Redis staying up", function()
    local value = H.pattern_bytes(BIG)
    local c = raw_connect(srv.port)
    c:settimeout(30)
    assert(c:send(resp.encode("SET", "widget:huge", value)))
    assert.equal("+OK\r\n", read_exactly(c, 5, 30))
    local hdr = "$" .. BIG .. "\r\n"
    for _ = 1, 2 do
      assert(c:send(resp.encode("GET", "widget:huge")))
      local ok, got = pcall(read_exactly, c, #hdr + BIG + 2, 30)
      assert(ok, tostring(got) .. "\n" .. H.tail(srv:log()))
      assert.is_true(got == hdr .. value .. "\r\n", "GET did not answer the value SET")
    end
    c:close()
    assert.equal("1", info_field(srv, "backend_up"))
    assert.equal("0", info_field(srv, "backend_outages_total"))
    assert.equal(0, origin:count("/widgets/huge"))
  end)

  it("one byte over is refused at the header, before the body is sent", function()
    local c = H.connect(srv.port)
    c:send_raw("*3\r\n$3\r\nSET\r\n$11\r\nwidget:over\r\n$" .. (BIG + 1) .. "\r\n")
    H.assert_proto_error(c, "invalid bulk length")
    assert.equal("PONG", srv:call("PING"))
  end)

  it("leaves a clean log after a graceful stop", function()
    H.assert_clean_exit(srv)
  end)
end)

---------------------------------------------------------------------------

-- Redis behind a proxy that passes its replies at RATE bytes/s: a large
-- reply takes several backend timeouts to arrive, but bytes keep coming.
describe("a large reply over a slow link", function()
  local RATE = 4 * MiB
  local VALUE = 8 * MiB   -- two seconds on the wire, the timeout is 300 ms
  local origin, srv

  setup(function()
    local redis = H.start_redis()
    origin = H.start_origin()
    local pport = H.free_port()
    local proxy = H.spawn{ name = "proxy", argv = { "python3", "-u", H.root .. "/tests/helpers/throttle_proxy.py",
      "--port", pport, "--to", "127.0.0.1:" .. redis.port, "--rate", RATE } }
    H.wait_until(function() return proxy:log():find("proxy listening", 1, true) end, 10, "proxy up")
    local dir = H.write_policies{
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 600"),
    }
    srv = H.start_server{ redis_port = pport, policies_dir = dir,
                          extra_args = { "--backend-timeout", "300" } }
    H.wait_until(function() return info_field(srv, "backend_up") == "1" end, 5, "backend up")
  end)
  teardown(H.cleanup)

  it("is not a dead Redis: the GET answers the value SET, and Redis stays up", function()
    local value = H.pattern_bytes(VALUE)
    local c = raw_connect(srv.port)
    c:settimeout(30)
    assert(c:send(resp.encode("SET", "widget:slowbig", value)))
    assert.equal("+OK\r\n", read_exactly(c, 5, 30))
    local t0 = H.now()
    assert(c:send(resp.encode("GET", "widget:slowbig")))
    local hdr = "$" .. VALUE .. "\r\n"
    local ok, got = pcall(read_exactly, c, #hdr + VALUE + 2, 30)
    assert(ok, tostring(got) .. "\n" .. H.tail(srv:log()))
    assert.is_true(got == hdr .. value .. "\r\n", "GET did not answer the value SET: "
      .. string.format("%q", got:sub(1, 80)))
    assert.is_true(H.now() - t0 > 1, "the link was not slow")
    c:close()
    assert.equal("1", info_field(srv, "backend_up"))
    assert.equal("0", info_field(srv, "backend_outages_total"))
    assert.equal(0, origin:count("/widgets/slowbig"))
    assert.equal(0, H.ns_stats(srv, "widget").misses)
  end)

  it("leaves a clean log after a graceful stop", function()
    H.assert_clean_exit(srv)
  end)
end)

---------------------------------------------------------------------------

-- A lookup that Redis never answers (paused) fails open: the GET is
-- answered from the origin. But nothing was read, so a value may be there:
-- the fetch must not replace it once Redis is back.
describe("a lookup lost to a hung Redis", function()
  local redis, origin, srv

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local dir = H.write_policies{
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 600"),
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir,
                          extra_args = { "--backend-timeout", "300" } }
    H.wait_until(function() return info_field(srv, "backend_up") == "1" end, 5, "backend up")
  end)
  teardown(H.cleanup)

  it("answers from the origin but does not overwrite the value SET", function()
    local c = srv:client(10)
    assert.equal("OK", c:call("SET", "widget:mine", "my value"))
    -- the fetch outlives the pause, so Redis is back when it stores
    origin:control("/widgets/mine", { delay = 1.2 })
    local rc = redis:client()
    assert.equal("OK", (rc:call("CLIENT", "PAUSE", "600", "ALL")))
    local v = c:call("GET", "widget:mine")
    assert.equal("widget mine", H.json_decode(v).name)  -- failed open
    assert.equal(1, origin:count("/widgets/mine"))
    H.wait_until(function() return info_field(srv, "backend_up") == "1" end, 5, "backend back")
    -- the user's value is still there, in Redis and through luacached
    local stored = rc:call("GET", "lc:{widget:mine}")
    assert.is_string(stored)
    assert.truthy(stored:find("my value", 1, true), "Redis holds: " .. stored:sub(1, 200))
    assert.equal("my value", c:call("GET", "widget:mine"))
    assert.equal(1, origin:count("/widgets/mine"))
    rc:close()
  end)

  it("leaves a clean log after a graceful stop", function()
    H.assert_clean_exit(srv)
  end)
end)
