-- tests/integration/failopen_spec.lua -- failing open when Redis is down,
-- dies, or hangs (SPEC §6), against the real binary and redis-server.
--   busted --lua=lua5.4 tests/integration/failopen_spec.lua
local H = require "tests.helpers.harness"

local assert_clean_exit = H.assert_clean_exit

local BACKEND_TIMEOUT_MS = 1000

local function info_field(srv, name)
  local info = srv:call("INFO")
  assert.is_string(info)
  return info:match(name .. ":([^\r\n]*)")
end

local function backend_up(srv)
  return info_field(srv, "backend_up")
end

-- GET key; asserts it is answered with widget <id> within `limit` seconds.
local function timed_get(conn, key, limit)
  local t0 = H.now()
  local v, kind = conn:call("GET", key)
  local dt = H.now() - t0
  assert.equal("bulk", kind, key .. ": " .. tostring(type(v) == "table" and v.err or v))
  assert.equal("widget " .. key:match(":(.*)$"), H.json_decode(v).name)
  assert.is_true(dt < limit, string.format("GET %s took %.2f s", key, dt))
  return v, dt
end

-- True when a fill of `key` is stored in Redis again: GET it twice and the
-- origin is called only for the first (or not at all).
local function storing(origin, conn, key)
  local path = "/widgets/" .. key:match(":(.*)$")
  local before = origin:count(path)
  conn:call("GET", key)
  conn:call("GET", key)
  return origin:count(path) <= before + 1
end

describe("fail-open", function()
  local origin, policies

  setup(function()
    origin = H.start_origin()
    policies = H.write_policies{
      -- l1_ttl = 0: these tests are about the Redis path and fetching
      -- without it (the tier's own fail-open is in l1_spec.lua)
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, negative_ttl = 5, l1_ttl = 0"),
    }
  end)

  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  local function start_server(redis_port)
    return H.start_server{ redis_port = redis_port, policies_dir = policies,
                           extra_args = { "--backend-timeout", tostring(BACKEND_TIMEOUT_MS) } }
  end

  it("serves from the origin while Redis is down at start, and stores once it comes up", function()
    local port = H.free_port() -- nothing listens here yet
    local srv = start_server(port)
    local c = srv:client()
    assert.equal("0", backend_up(srv))

    -- every GET is answered by fetching
    for i = 1, 3 do
      timed_get(c, "widget:down1", 2)
      assert.equal(i, origin:count("/widgets/down1"))
    end
    assert.is_nil((c:call("GET", "widget:missing-down")))

    -- concurrent misses of one key still share one fetch
    origin:control("/widgets/down2", { delay = 0.3 })
    local conns = H.open_clients(srv.port, 10)
    for i = 1, #conns do conns[i]:send("GET", "widget:down2") end
    for i = 1, #conns do
      local v = conns[i]:read_reply()
      assert.equal("widget down2", H.json_decode(v).name)
    end
    H.close_clients(conns)
    assert.equal(1, origin:count("/widgets/down2"))

    -- SET cannot store and says so (never a dropped connection or a hang)
    local v = c:call("SET", "widget:down3", "x")
    assert.truthy(H.resp.is_err(v), "SET with Redis down: " .. tostring(v))
    assert.equal("PONG", (c:call("PING")))

    -- Redis comes up: within seconds entries get stored
    local redis = H.start_redis{ port = port }
    local t0 = H.now()
    H.wait_until(function() return backend_up(srv) == "1" end, 8, "backend_up:1 after Redis started")
    H.wait_until(function() return storing(origin, c, "widget:up1") end, 3, "second GET hits")
    assert.is_true(H.now() - t0 < 8)
    local before = origin:count("/widgets/up1")
    for _ = 1, 3 do timed_get(c, "widget:up1", 1) end
    assert.equal(before, origin:count("/widgets/up1"))
    assert.is_string((redis:call("GET", "lc:{widget:up1}")))
    assert_clean_exit(srv)
  end)

  it("keeps answering when Redis is killed mid-run, and recovers after a restart", function()
    local redis = H.start_redis()
    local srv = start_server(redis.port)
    local c = srv:client()
    H.wait_until(function() return backend_up(srv) == "1" end, 5, "backend up")
    timed_get(c, "widget:k1", 2)
    timed_get(c, "widget:k1", 2)
    assert.equal(1, origin:count("/widgets/k1"))

    redis:kill()
    -- every GET is answered within the backend timeout (+ a fast fetch)
    for i = 1, 6 do
      timed_get(c, "widget:k1", 2)
      timed_get(c, "widget:k" .. (i + 1), 2)
    end
    assert.equal("0", backend_up(srv))
    assert.truthy(tonumber(info_field(srv, "backend_outages_total")) >= 1)

    redis:restart()
    local t0 = H.now()
    H.wait_until(function() return backend_up(srv) == "1" end, 8, "backend_up:1 after restart")
    H.wait_until(function() return storing(origin, c, "widget:k20") end, 3, "second GET hits")
    assert.is_true(H.now() - t0 < 8)
    assert_clean_exit(srv)
  end)

  it("a hanging Redis delays a GET by at most the backend timeout", function()
    local redis = H.start_redis()
    local srv = start_server(redis.port)
    local c = srv:client()
    H.wait_until(function() return backend_up(srv) == "1" end, 5, "backend up")
    timed_get(c, "widget:h0", 2) -- the link works

    local errors_before = tonumber(info_field(srv, "backend_errors_total"))
    local rc = redis:client()
    assert.equal("OK", (rc:call("CLIENT", "PAUSE", "3000", "ALL")))
    local paused_at = H.now()
    -- backend timeout (1 s) + the fetch, not the 3 s pause
    local _, dt1 = timed_get(c, "widget:h1", 2)
    local _, dt2 = timed_get(c, "widget:h2", 2)
    assert.is_true(H.now() - paused_at < 2.8, "the GETs waited for the pause to end")
    assert.is_true(dt1 < 2 and dt2 < 2)
    -- the pause really held the lookup: it was counted as a backend timeout
    assert.is_true(tonumber(info_field(srv, "backend_errors_total")) > errors_before)
    rc:close()

    -- normal again within seconds of the pause ending
    H.wait_until(function() return backend_up(srv) == "1" end, 10, "backend_up:1 after the pause")
    H.wait_until(function() return storing(origin, c, "widget:h3") end, 5, "second GET hits")
    assert_clean_exit(srv)
  end)
end)
