-- tests/integration/stampede_spec.lua -- one origin fetch per stampede across
-- instances, bounded lock waits, stale-while-revalidate, stale-if-error,
-- early refresh and invalidations racing a fill (SPEC §3, §5, §7), against
-- the real binary, a real redis-server and the example origin.
--   busted --lua=lua5.4 tests/integration/stampede_spec.lua
-- Two luacached instances (A and B) share one Redis. Every test uses its own
-- namespace, so the per-namespace counters of STATS can be asserted exactly,
-- and its own origin paths; the origin's counters are reset before each test.
local H = require "tests.helpers.harness"

local assert_clean_exit = H.assert_clean_exit

-- Counters of one namespace from STATS ns (or from INFO when from_info).
local stats = H.ns_stats
local total = H.ns_total


local function errtext(v)
  return type(v) == "table" and v.err or tostring(v)
end

-- Read one reply per connection (in order); each must be a bulk string.
local function read_all(conns, timeout)
  local out = {}
  for i, c in ipairs(conns) do
    local v, kind = c:read_reply(timeout)
    assert.equal("bulk", kind, "reply " .. i .. ": " .. errtext(v))
    out[i] = v
  end
  return out
end

-- GET key on every connection at once; the values (read as by read_all) and
-- the seconds they took. The connections are closed.
local function get_all(conns, key)
  local t0 = H.now()
  for i = 1, #conns do conns[i]:send("GET", key) end
  local values = read_all(conns, 5)
  local dt = H.now() - t0
  H.close_clients(conns)
  return values, dt
end

-- A policy that GETs url_prefix .. id .. suffix (404: nil, non-200: error).
local function policy(url_prefix, suffix, fields)
  return H.simple_policy(url_prefix, fields, suffix)
end

local function peek(srv, key)
  local p, kind = srv:call("PEEK", key)
  if kind == "nil" then return nil end
  assert.equal("array", kind, "PEEK " .. key .. ": " .. errtext(p))
  return p
end

local function wait_state(srv, key, state, timeout)
  return H.wait_until(function()
    local p = peek(srv, key)
    return p and p[1] == state and p
  end, timeout or 3, key .. " turns " .. state)
end

describe("stampede protection across two instances", function()
  local redis, origin, A, B

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local u = origin.url
    local w = u .. "/widgets/"
    local policies = {
      -- a cold key behind a 500 ms origin
      herd = policy(u .. "/slow/", "?delay=0.5", "ttl = 30"),
      -- many keys behind a fast origin, each missed on both instances at once
      many = policy(w, nil, "ttl = 30, lock_timeout = 3"),
      -- stale-while-revalidate: fresh 1 s, then served stale for 30 s
      -- (l1_ttl = 0: the hits counted below are Redis's)
      swr = policy(w, nil, "ttl = 1, stale_ttl = 30, l1_ttl = 0"),
      swr2 = policy(w, nil, "ttl = 1, stale_ttl = 30, l1_ttl = 0"),
      -- stale-if-error: no stale_ttl, so an expired entry is only served when the fetch fails
      sie = policy(w, nil, "ttl = 1, stale_if_error = 30"),
      siet = policy(w, nil, "ttl = 1, stale_if_error = 30, fetch_timeout = 0.5"),
      -- XFetch with a large beta: with a ~300 ms fetch, a GET every 100 ms
      -- triggers the refresh well before a 2 s TTL runs out (the chance it
      -- does not by 400 ms before expiry is ~1e-6). The refreshed value lives
      -- 30 s, so no second early refresh is due within the test.
      early = string.format([[
return {
  ttl = 2, early_refresh = 6,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body, { ttl = res.body:find("v1", 1, true) and 2 or 30 }
  end,
}
]], w),
      -- invalidations racing a fill (delays set per path with origin:control)
      rdel = policy(w, nil, "ttl = 30"),
      rdel2 = policy(w, nil, "ttl = 30"),
      rdelx = policy(w, nil, "ttl = 30"),
      rset = policy(w, nil, "ttl = 30"),
      rsetx = policy(w, nil, "ttl = 30"),
      rref = policy(w, nil, "ttl = 30"),
    }
    local dir = H.write_policies(policies)
    A = H.start_server{ redis_port = redis.port, policies_dir = dir }
    B = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)

  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  it("200 concurrent GETs of a cold key over two instances: one origin request, one value", function()
    local n = 200
    local conns = {}
    for i = 1, n do conns[i] = H.connect((i % 2 == 1 and A or B).port, 10) end
    local values, dt = get_all(conns, "herd:42")
    -- computed_at_ms differs between fetches: one value means one fetch
    for i = 2, n do assert.equal(values[1], values[i], "reply " .. i) end
    local obj = H.json_decode(values[1])
    assert.equal(42, obj.id)
    assert.equal(42 * 43 // 2, obj.sum)
    assert.equal(1, origin:count("/slow/42"))
    assert.equal(1, origin:stats().total)
    assert.is_true(dt < 0.5 + 1.5, string.format("200 GETs of a 500 ms origin took %.2f s", dt))
    -- one fetch in all; each instance coalesced its other 99 GETs into its
    -- one fill; the instance that lost the lock waited once, never took over
    assert.equal(1, total({ A, B }, "herd", "fetches_ok"))
    assert.equal(198, total({ A, B }, "herd", "coalesced"))
    assert.equal(1, total({ A, B }, "herd", "lock_waits"))
    assert.equal(0, total({ A, B }, "herd", "lock_takeovers"))
    assert.equal(1, total({ A, B }, "herd", "stores"))
    -- the entry is in Redis and its lock is gone
    assert.equal(values[1], peek(B, "herd:42")[3])
    assert.equal(0, (redis:call("EXISTS", "lc:{herd:42}:lock")))
  end)

  it("many keys missed on both instances at once: one fetch each, no waiter left behind", function()
    -- The lock holder's "F" broadcast comes over another connection than the
    -- replies to the waiter's SET NX + GET, and can arrive first; a waiter
    -- must not then sleep until lock_timeout (here 3 s) and fetch again.
    local per, rounds = 50, 10
    local ca, cb = H.open_clients(A.port, per, 10), H.open_clients(B.port, per, 10)
    local worst = 0
    for r = 1, rounds do
      local t0 = H.now()
      for i = 1, per do
        local key = "many:" .. r .. "-" .. i
        ca[i]:send("GET", key)
        cb[i]:send("GET", key)
      end
      for i = 1, per do
        local id = r .. "-" .. i
        local va = read_all({ ca[i] }, 5)[1]
        local vb = read_all({ cb[i] }, 5)[1]
        assert.equal("widget " .. id, H.json_decode(va).name)
        assert.equal(va, vb)
      end
      worst = math.max(worst, H.now() - t0)
    end
    H.close_clients(ca)
    H.close_clients(cb)
    assert.equal(per * rounds, origin:stats().total)
    assert.equal(per * rounds, total({ A, B }, "many", "fetches_ok"))
    assert.equal(0, total({ A, B }, "many", "lock_takeovers"))
    assert.is_true(worst < 2, string.format("a round of %d keys took %.2f s", per, worst))
  end)

  describe("stale-while-revalidate", function()
    it("50 concurrent GETs of a stale key: answered stale at once, one refresh", function()
      local c = A:client()
      origin:control("/widgets/s1", { body = "swr v1" })
      assert.equal("swr v1", (c:call("GET", "swr:s1")))
      wait_state(A, "swr:s1", "stale")
      origin:control("/widgets/s1", { body = "swr v2", delay = 1 })
      local n = 50
      local conns = H.open_clients(A.port, n, 5)
      local values, dt = get_all(conns, "swr:s1")
      for i = 1, n do assert.equal("swr v1", values[i], "reply " .. i) end
      assert.is_true(dt < 0.4, string.format("50 stale GETs took %.2f s (origin delay 1 s)", dt))
      -- one background refresh; once it lands, GET answers the new value
      local p = wait_state(A, "swr:s1", "fresh", 3)
      assert.equal("swr v2", p[3])
      assert.equal(2, origin:count("/widgets/s1"))
      assert.equal("swr v2", (c:call("GET", "swr:s1")))
      assert.equal(2, origin:count("/widgets/s1"))
      local s = stats(A, "swr")
      assert.equal(n, s.stale_revalidate)
      assert.equal(2, s.fetches_ok)
      assert.equal(1, s.misses)
      assert.equal(1, s.hits_redis)
      assert.equal(0, s.coalesced)
      c:close()
    end)

    it("stale GETs on both instances cause exactly one refresh", function()
      origin:control("/widgets/s2", { body = "swr2 v1" })
      assert.equal("swr2 v1", (A:call("GET", "swr2:s2")))
      wait_state(B, "swr2:s2", "stale")
      origin:control("/widgets/s2", { body = "swr2 v2", delay = 1 })
      local n = 50
      local conns = {}
      for i = 1, n do conns[i] = H.connect((i % 2 == 1 and A or B).port, 5) end
      local values, dt = get_all(conns, "swr2:s2")
      for i = 1, n do assert.equal("swr2 v1", values[i], "reply " .. i) end
      assert.is_true(dt < 0.4, string.format("50 stale GETs took %.2f s (origin delay 1 s)", dt))
      local p = wait_state(A, "swr2:s2", "fresh", 3)
      assert.equal("swr2 v2", p[3])
      assert.equal("swr2 v2", (B:call("GET", "swr2:s2")))
      assert.equal("swr2 v2", (A:call("GET", "swr2:s2")))
      assert.equal(2, origin:count("/widgets/s2"))
      assert.equal(n, total({ A, B }, "swr2", "stale_revalidate"))
      assert.equal(2, total({ A, B }, "swr2", "fetches_ok"))
      assert.equal(0, (redis:call("EXISTS", "lc:{swr2:s2}:lock")))
    end)
  end)

  describe("stale-if-error", function()
    it("an origin answering 500: the expired value is answered, and counted", function()
      local c = B:client()
      origin:control("/widgets/e1", { body = "sie v1" })
      assert.equal("sie v1", (c:call("GET", "sie:e1")))
      wait_state(B, "sie:e1", "stale")
      assert.equal(0, (c:call("PTTL", "sie:e1")))
      origin:control("/widgets/e1", { status = 500 })
      local t0 = H.now()
      assert.equal("sie v1", (c:call("GET", "sie:e1")))
      assert.is_true(H.now() - t0 < 0.5)
      assert.equal(2, origin:count("/widgets/e1"))
      -- the failure was not stored: the entry is still the old one
      assert.equal("sie v1", peek(B, "sie:e1")[3])
      local s = stats(B, "sie")
      assert.equal(1, s.stale_error)
      assert.equal(1, s.fetches_error)
      assert.equal(0, s.stale_revalidate)
      -- INFO shows the same counters
      assert.equal(1, stats(B, "sie", true).stale_error)
      -- the origin recovers: the next GET stores the new value
      origin:control("/widgets/e1", { body = "sie v2" })
      assert.equal("sie v2", (c:call("GET", "sie:e1")))
      assert.equal("sie v2", (A:call("GET", "sie:e1")))
      assert.equal(3, origin:count("/widgets/e1"))
      c:close()
    end)

    it("an origin slower than fetch_timeout: the expired value is answered at the timeout", function()
      local c = A:client()
      origin:control("/widgets/t1", { body = "siet v1" })
      assert.equal("siet v1", (c:call("GET", "siet:t1")))
      wait_state(A, "siet:t1", "stale")
      origin:control("/widgets/t1", { body = "too late", delay = 2 })
      local t0 = H.now()
      assert.equal("siet v1", (c:call("GET", "siet:t1")))
      local dt = H.now() - t0
      assert.is_true(dt >= 0.4 and dt < 1.2, string.format("answered after %.2f s (fetch_timeout 0.5 s)", dt))
      assert.equal(2, origin:count("/widgets/t1"))
      assert.equal("siet v1", peek(A, "siet:t1")[3])
      local s = stats(A, "siet")
      assert.equal(1, s.stale_error)
      -- the HTTP call ran into the fetch's deadline: a timeout, not an error
      assert.equal(1, s.fetches_timeout, "fetches_timeout (fetches_error=" .. s.fetches_error .. ")")
      assert.equal(0, s.fetches_error)
      assert.equal(1, s.fetches_ok)
      assert.equal(1, stats(A, "siet", true).stale_error)
      c:close()
    end)
  end)

  it("early refresh renews a hot key before it expires, and no GET waits on the origin", function()
    local c = A:client()
    origin:control("/widgets/x1", { body = "early v1", delay = 0.3 })
    assert.equal("early v1", (c:call("GET", "early:x1")))
    local pttl = c:call("PTTL", "early:x1")
    local fresh_until = H.now() + pttl / 1000
    assert.is_true(pttl > 1500 and pttl <= 2000, "PTTL " .. pttl)
    origin:control("/widgets/x1", { body = "early v2", delay = 0.3 })
    local landed_at, last_pttl
    local tick = H.now()
    -- a GET every 100 ms from now until half a second past the first TTL
    while H.now() < fresh_until + 0.5 do
      local t0 = H.now()
      local v, kind = c:call("GET", "early:x1")
      local dt = H.now() - t0
      assert.equal("bulk", kind, errtext(v))
      assert.is_true(dt < 0.1, string.format("a GET took %.3f s", dt))
      if landed_at then
        assert.equal("early v2", v)
      else
        assert.is_true(v == "early v1" or v == "early v2", v)
        local p = peek(A, "early:x1")
        if p[3] == "early v2" then
          landed_at = H.now()
          assert.equal("fresh", p[1])
        else
          last_pttl = p[2]
        end
      end
      tick = tick + 0.1
      if tick > H.now() then H.sleep(tick - H.now()) end
    end
    assert.truthy(landed_at, "no early refresh landed")
    assert.is_true(landed_at < fresh_until,
      string.format("refresh landed %.3f s after the first TTL ran out", landed_at - fresh_until))
    assert.is_true(last_pttl == nil or last_pttl < 2000)
    -- PTTL jumped back up to the new value's 30 s
    local pttl2 = c:call("PTTL", "early:x1")
    assert.is_true(pttl2 > 25000, "PTTL after the refresh " .. pttl2)
    assert.equal(2, origin:count("/widgets/x1"))
    local s = stats(A, "early")
    assert.equal(1, s.early_refreshes)
    assert.equal(2, s.fetches_ok)
    assert.equal(1, s.misses)
    assert.equal(0, s.stale_revalidate)
    c:close()
  end)

  describe("an invalidation during a fill", function()
    -- GET key on srv from a new connection (reply read later) with the
    -- origin path answering body after delay seconds, once; returns the
    -- connection once the fetch is under way.
    local function slow_get(srv, key, path, body, delay)
      origin:control(path, { body = body, delay = delay, times = 1 })
      local conn = srv:client(5)
      conn:send("GET", key)
      H.wait_until(function() return origin:count(path) == 1 end, 3, "fetch of " .. key .. " under way")
      return conn
    end

    it("DEL on the same instance: the waiter gets the value, it is not stored", function()
      local c1 = slow_get(A, "rdel:1", "/widgets/1", "rdel old", 1)
      assert.equal(0, (A:call("DEL", "rdel:1")))
      origin:control("/widgets/1", { body = "rdel new" })
      assert.equal("rdel old", (c1:read_reply(3)))
      c1:close()
      assert.is_nil(peek(A, "rdel:1"))
      assert.equal("nil", select(2, redis:call("GET", "lc:{rdel:1}")))
      assert.equal("rdel new", (A:call("GET", "rdel:1")))
      assert.equal(2, origin:count("/widgets/1"))
      assert.equal("rdel new", (A:call("GET", "rdel:1")))
      assert.equal(2, origin:count("/widgets/1"))
      local s = stats(A, "rdel")
      assert.equal(1, s.invalidations_race)
      assert.equal(1, s.stores)
    end)

    it("DEL on another instance: the waiter gets the value, it is stored nowhere", function()
      local c1 = slow_get(A, "rdelx:1", "/widgets/1", "rdelx old", 1)
      assert.equal(0, (B:call("DEL", "rdelx:1")))
      origin:control("/widgets/1", { body = "rdelx new" })
      assert.equal("rdelx old", (c1:read_reply(3)))
      c1:close()
      assert.is_nil(peek(A, "rdelx:1"))
      assert.is_nil(peek(B, "rdelx:1"))
      assert.equal("rdelx new", (B:call("GET", "rdelx:1")))
      assert.equal("rdelx new", (A:call("GET", "rdelx:1")))
      assert.equal(2, origin:count("/widgets/1"))
      assert.equal(1, stats(A, "rdelx").invalidations_race)
      assert.equal(1, total({ A, B }, "rdelx", "stores"))
    end)

    it("a GET after the DEL is not answered by the fetch the DEL overtook", function()
      local c1 = slow_get(A, "rdel2:1", "/widgets/1", "rdel2 old", 1)
      origin:control("/widgets/1", { body = "rdel2 new", delay = 0.2 })
      assert.equal(0, (A:call("DEL", "rdel2:1")))
      -- the old fetch is still under way
      local t0 = H.now()
      assert.equal("rdel2 new", (A:call("GET", "rdel2:1")))
      assert.is_true(H.now() - t0 < 0.6)
      assert.equal("rdel2 old", (c1:read_reply(3)))
      c1:close()
      assert.equal("rdel2 new", peek(A, "rdel2:1")[3])
      assert.equal("rdel2 new", (B:call("GET", "rdel2:1")))
      assert.equal(2, origin:count("/widgets/1"))
      assert.equal(1, stats(A, "rdel2").invalidations_race)
    end)

    it("SET on the same instance wins over the fetched value, at once and afterwards", function()
      local c1 = slow_get(A, "rset:1", "/widgets/1", "rset fetched", 1)
      assert.equal("OK", (A:call("SET", "rset:1", "rset set")))
      -- while the fetch is still under way
      local t0 = H.now()
      assert.equal("rset set", (A:call("GET", "rset:1")))
      assert.is_true(H.now() - t0 < 0.5)
      assert.equal("rset fetched", (c1:read_reply(3)))
      c1:close()
      assert.equal("rset set", (A:call("GET", "rset:1")))
      assert.equal("rset set", (B:call("GET", "rset:1")))
      assert.equal(1, origin:count("/widgets/1"))
      assert.equal(1, stats(A, "rset").invalidations_race)
    end)

    it("SET on another instance wins over the fetched value, at once and afterwards", function()
      local c1 = slow_get(A, "rsetx:1", "/widgets/1", "rsetx fetched", 1)
      assert.equal("OK", (B:call("SET", "rsetx:1", "rsetx set")))
      -- invalidations reach every instance within 100 ms (SPEC §3)
      H.sleep(0.15)
      local t0 = H.now()
      assert.equal("rsetx set", (A:call("GET", "rsetx:1")))
      assert.is_true(H.now() - t0 < 0.5)
      assert.equal("rsetx fetched", (c1:read_reply(3)))
      c1:close()
      assert.equal("rsetx set", (A:call("GET", "rsetx:1")))
      assert.equal("rsetx set", (B:call("GET", "rsetx:1")))
      assert.equal("rsetx set", peek(A, "rsetx:1")[3])
      assert.equal(1, origin:count("/widgets/1"))
      assert.equal(1, stats(A, "rsetx").invalidations_race)
    end)
  end)

  it("REFRESH on B while A's fill is in flight waits for it, then fetches anew", function()
    -- A's fetch started before the REFRESH: its value may predate what the
    -- REFRESH asks for, so B waits on A's lock (no second fetch at once)
    -- and then fetches itself (docs/STAMPEDE.md).
    origin:control("/widgets/9", { body = "rref v1", delay = 1, times = 1 })
    local ca = A:client(5)
    ca:send("GET", "rref:9")
    H.wait_until(function() return origin:count("/widgets/9") == 1 end, 3, "fetch under way")
    local t0 = H.now()
    local v, kind = B:call("REFRESH", "rref:9")
    assert.equal("bulk", kind, errtext(v))
    assert.equal(9, H.json_decode(v).id)
    assert.is_true(H.now() - t0 > 0.5, "B did not wait for A's fetch")
    assert.is_true(H.now() - t0 < 1.5)
    assert.equal("rref v1", (ca:read_reply(3)))
    ca:close()
    assert.equal(v, (A:call("GET", "rref:9")))
    assert.equal(2, origin:count("/widgets/9"))
    assert.equal(1, origin:stats().max_inflight["/widgets/9"])
    assert.equal(1, stats(B, "rref").lock_waits)
    assert.equal(0, stats(B, "rref").lock_takeovers)
    assert.equal(1, stats(B, "rref").fetches_ok)
  end)

  it("both instances are healthy after all of the above and shut down cleanly", function()
    assert.equal("PONG", (A:call("PING")))
    assert.equal("PONG", (B:call("PING")))
    assert_clean_exit(A)
    assert_clean_exit(B)
  end)
end)

describe("an instance killed while it holds the fill lock", function()
  local redis, origin, A, B

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local dir = H.write_policies{
      lk = policy(origin.url .. "/slow/", "?delay=1", "ttl = 30, lock_timeout = 2"),
    }
    A = H.start_server{ redis_port = redis.port, policies_dir = dir }
    B = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)

  teardown(H.cleanup)

  it("the other instance's waiters take the fill over within lock_timeout + origin delay", function()
    local ca = A:client(5)
    ca:send("GET", "lk:7")
    H.wait_until(function() return origin:count("/slow/7") == 1 end, 3, "A's fetch under way")
    assert.equal(1, (redis:call("EXISTS", "lc:{lk:7}:lock")))
    local n = 10
    local conns = H.open_clients(B.port, n, 10)
    local t0 = H.now()
    for i = 1, n do conns[i]:send("GET", "lk:7") end
    -- B's GETs wait on A's lock
    H.wait_until(function() return stats(B, "lk").lock_waits == 1 end, 2, "B waits on the lock")
    assert.equal(1, (redis:call("EXISTS", "lc:{lk:7}:lock")))
    local rc = A:kill()
    assert.equal(128 + 9, rc)
    ca:close()
    local values = read_all(conns, 5)
    local dt = H.now() - t0
    H.close_clients(conns)
    for i = 2, n do assert.equal(values[1], values[i], "reply " .. i) end
    local obj = H.json_decode(values[1])
    assert.equal(7, obj.id)
    assert.equal(28, obj.sum)
    assert.is_true(dt < 2 + 1 + 0.8, string.format("B's waiters answered after %.2f s", dt))
    -- they waited out the lease before fetching themselves
    assert.is_true(dt > 2.5, string.format("B took over after only %.2f s", dt))
    assert.equal(2, origin:count("/slow/7"))
    local s = stats(B, "lk")
    assert.equal(1, s.lock_waits)
    assert.equal(1, s.lock_takeovers)
    assert.equal(1, s.fetches_ok)
    assert.equal(n - 1, s.coalesced)
    -- B stored what it fetched
    local p = peek(B, "lk:7")
    assert.equal("fresh", p[1])
    assert.equal(values[1], p[3])
    assert.equal(values[1], (B:call("GET", "lk:7")))
    assert.equal(2, origin:count("/slow/7"))
    local log = A:log()
    assert.falsy(log:find("Sanitizer", 1, true), "sanitizer report:\n" .. H.tail(log, 6000))
    assert.falsy(log:find("runtime error:", 1, true), "UBSan report:\n" .. H.tail(log, 6000))
  end)

  it("the surviving instance shuts down cleanly", function()
    assert.equal("PONG", (B:call("PING")))
    assert_clean_exit(B)
  end)
end)
