-- tests/integration/l1_spec.lua -- the in-process tier (policy l1_ttl):
-- hits without Redis, invalidation locally and across instances (SPEC §3:
-- within 100 ms), and serving while Redis is down (SPEC §6).
--   busted --lua=lua5.4 tests/integration/l1_spec.lua
local H = require "tests.helpers.harness"

local assert_clean_exit = H.assert_clean_exit

local function stat(srv, ns, field)
  local info = srv:call("STATS", ns)
  return tonumber(info:match(field .. "=(%d+)"))
end

-- Overwrite the stored entry behind luacached's back, keeping its header.
local function poke_value(redis, key, value)
  -- the store is sent right after the reply: wait for it to land
  H.wait_until(function() return type(redis:call("GET", key)) == "string" end, 2, key .. " stored")
  local raw = redis:call("GET", key)
  local header = raw:match("^(LC1 [^\n]*\n)")
  assert.is_string(header)
  redis:call("SET", key, header .. value, "PX", 60000)
end

describe("in-process tier", function()
  local redis, origin, a, b, dir

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    dir = H.write_policies{
      hot = H.simple_policy(origin.url .. "/widgets/", "ttl = 30, l1_ttl = 2, negative_ttl = 30"),
      cold = H.simple_policy(origin.url .. "/widgets/", "ttl = 30, l1_ttl = 0"),
      ver = H.simple_policy(origin.url .. "/chaos/ver/", "ttl = 30, l1_ttl = 30"),
    }
    a = H.start_server{ policies_dir = dir, redis_port = redis.port }
    b = H.start_server{ policies_dir = dir, redis_port = redis.port }
  end)

  teardown(function()
    if a then assert_clean_exit(a) end
    if b then assert_clean_exit(b) end
    H.cleanup()
  end)

  before_each(function() origin:reset() end)

  it("answers repeated GETs from the tier, not from Redis, for l1_ttl", function()
    local c = a:client()
    local v = c:call("GET", "hot:1")
    assert.is_string(v)
    assert.equal(1, origin:count("/widgets/1"))
    local hits_before = stat(a, "hot", "hits_l1")
    -- Change the stored value behind luacached's back: the tier still
    -- answers the old one until l1_ttl (2 s) has passed.
    poke_value(redis, "lc:{hot:1}", "changed")
    for _ = 1, 5 do assert.equal(v, c:call("GET", "hot:1")) end
    assert.equal(hits_before + 5, stat(a, "hot", "hits_l1"))
    H.wait_until(function() return c:call("GET", "hot:1") == "changed" end, 4,
      "the tier item expires after l1_ttl")
    assert.equal(1, origin:count("/widgets/1"))
    c:close()
  end)

  it("keeps a namespace with l1_ttl = 0 on Redis", function()
    local c = a:client()
    assert.is_string(c:call("GET", "cold:2"))
    poke_value(redis, "lc:{cold:2}", "changed")
    assert.equal("changed", c:call("GET", "cold:2"))
    assert.equal(0, stat(a, "cold", "hits_l1"))
    c:close()
  end)

  it("drops the item at once on a local DEL or SET", function()
    local c = a:client()
    assert.is_string(c:call("GET", "hot:3"))
    assert.equal("OK", c:call("SET", "hot:3", "mine"))
    assert.equal("mine", c:call("GET", "hot:3"))
    assert.equal(1, c:call("DEL", "hot:3"))
    assert.is_string(c:call("GET", "hot:3"))
    assert.equal(2, origin:count("/widgets/3"))
    c:close()
  end)

  -- Found by the chaos test: a GET whose Redis read was in flight when a
  -- SET or DEL of the key came put the old value into the tier after the
  -- invalidation, and the next GETs answered it for l1_ttl.
  it("a read in flight during a SET or DEL does not put the old value back", function()
    local c = a:client()
    for round = 1, 20 do
      local key = "hot:inflight" .. round
      assert.equal("OK", c:call("SET", key, "old"))
      -- the GET's read goes to Redis first; the SET drops the tier's item
      -- before that read answers with the old entry
      local r = c:pipeline{ { "GET", key }, { "SET", key, "new" } }
      assert.equal("old", r[1][1])
      assert.equal("OK", r[2][1])
      assert.equal("new", c:call("GET", key), "round " .. round)
      assert.equal("new", c:call("GET", key), "round " .. round)
      r = c:pipeline{ { "GET", key }, { "DEL", key } }
      assert.equal("new", r[1][1])
      assert.equal(1, r[2][1])
      local v = c:call("GET", key) -- refetched from the origin
      assert.is_string(v)
      assert.not_equal("new", v, "round " .. round)
    end
    c:close()
  end)

  -- Found by the chaos test: an instance whose subscription was down when
  -- another one invalidated a key kept serving the key from its tier, also
  -- after it had subscribed again (Redis itself stayed up).
  it("skips the tier while its subscription is down, and drops the tier on resubscribe", function()
    local ca, cb, rc = a:client(), b:client(), redis:client()
    local function numsub()
      local r = rc:call("PUBSUB", "NUMSUB", "lc:#events")
      return r[2]
    end
    H.wait_until(function() return numsub() == 2 end, 5, "both instances subscribed")
    for _, id in ipairs{ "1", "2" } do
      assert.equal("key=ver:" .. id .. " v=1", cb:call("GET", "ver:" .. id))
      assert.equal("key=ver:" .. id .. " v=1", cb:call("GET", "ver:" .. id)) -- in b's tier
    end
    local function sub_outages()
      return tonumber(cb:call("INFO"):match("backend_subscriber_outages_total:(%d+)"))
    end
    local outages0 = sub_outages()
    assert.is_true(rc:call("CLIENT", "KILL", "TYPE", "pubsub") >= 2)
    -- b is deaf now (it reconnects after a backoff of 100 ms or more). Wait
    -- until b has seen it: an invalidation published before that is within
    -- the tier's documented staleness (the broadcast delay), not a bug.
    H.wait_until(function() return sub_outages() > outages0 end, 5, "b sees its subscription lost")
    assert.equal(1, ca:call("DEL", "ver:1"))
    assert.equal(1, ca:call("DEL", "ver:2"))
    assert.equal("key=ver:1 v=2", cb:call("GET", "ver:1"))
    H.wait_until(function() return numsub() == 2 end, 5, "both instances subscribed again")
    assert.equal("key=ver:2 v=2", cb:call("GET", "ver:2"))
    ca:close()
    cb:close()
    rc:close()
  end)

  it("drops the item on another instance within 100 ms of an invalidation", function()
    local ca, cb = a:client(), b:client()
    local v = cb:call("GET", "hot:4")
    assert.is_string(v)
    assert.equal(v, cb:call("GET", "hot:4")) -- now in b's tier
    assert.equal("OK", ca:call("SET", "hot:4", "new on a"))
    local t0 = H.now()
    H.wait_until(function() return cb:call("GET", "hot:4") == "new on a" end, 1,
      "b sees a's SET")
    assert.is_true(H.now() - t0 < 0.1, "took " .. (H.now() - t0) .. " s")
    -- and a DEL on a makes b fetch again
    assert.equal(1, ca:call("DEL", "hot:4"))
    t0 = H.now()
    H.wait_until(function() return cb:call("GET", "hot:4") == v end, 1, "b refetches")
    assert.is_true(H.now() - t0 < 0.1, "took " .. (H.now() - t0) .. " s")
    ca:close()
    cb:close()
  end)

  it("applies each broadcast of a batch envelope (B), and ignores a malformed one", function()
    -- the store script publishes a batch's F messages as one
    -- "B <len>:<message>..." (docs/STORAGE.md); I messages in one here,
    -- so what each did shows: the tier drops the item
    local c = a:client()
    for _, id in ipairs{ "hot:7", "hot:8" } do
      assert.is_string(c:call("GET", id))
      poke_value(redis, "lc:{" .. id .. "}", "changed " .. id)
      assert.is_not.equal("changed " .. id, c:call("GET", id)) -- from a's tier
    end
    local rc = redis:client()
    local function envelope(msgs)
      local parts = {}
      for i, m in ipairs(msgs) do parts[i] = #m .. ":" .. m end
      return "B " .. table.concat(parts)
    end
    -- malformed ones first: a's tier keeps both items, a keeps answering
    for _, bad in ipairs{ "B 999:I x lc:{hot:7}", "B x:I x lc:{hot:7}", "B -1:",
      envelope{ envelope{ "I other lc:{hot:7}" } }, "B ", "B 0:" } do
      rc:call("PUBLISH", "lc:#events", bad)
    end
    assert.equal("PONG", c:call("PING"))
    assert.is_not.equal("changed hot:7", c:call("GET", "hot:7"))
    rc:call("PUBLISH", "lc:#events", envelope{ "I other lc:{hot:7}", "I other lc:{hot:8}" })
    for _, id in ipairs{ "hot:7", "hot:8" } do
      -- well before the item's l1_ttl (2 s) would drop it anyway
      H.wait_until(function() return c:call("GET", id) == "changed " .. id end, 0.5,
        id .. " dropped from a's tier by the envelope")
    end
    rc:close()
    c:close()
  end)

  it("caches not-found answers in the tier too", function()
    local c = a:client()
    assert.is_nil(c:call("GET", "hot:missing-5"))
    assert.is_nil(c:call("GET", "hot:missing-5"))
    assert.equal(1, origin:count("/widgets/missing-5"))
    c:close()
  end)
end)

describe("in-process tier while Redis is down", function()
  it("keeps serving what it holds, for the entry's freshness", function()
    local redis = H.start_redis()
    local origin = H.start_origin()
    local dir = H.write_policies{
      hot = H.simple_policy(origin.url .. "/widgets/", "ttl = 30, l1_ttl = 1"),
    }
    local srv = H.start_server{ policies_dir = dir, redis_port = redis.port,
      extra_args = { "--backend-timeout", "300" } }
    local c = srv:client()
    local v = c:call("GET", "hot:6")
    assert.is_string(v)
    redis:kill()
    H.wait_until(function() return srv:call("INFO"):find("backend_up:0", 1, true) end, 5,
      "backend down")
    -- well past l1_ttl: still answered from the tier, the origin not asked
    H.sleep(1.5)
    for _ = 1, 3 do
      local t0 = H.now()
      assert.equal(v, c:call("GET", "hot:6"))
      assert.is_true(H.now() - t0 < 0.2)
    end
    assert.equal(1, origin:count("/widgets/6"))
    -- a miss while down is fetched once and then served from the tier
    assert.is_string(c:call("GET", "hot:7"))
    assert.is_string(c:call("GET", "hot:7"))
    assert.equal(1, origin:count("/widgets/7"))
    c:close()
    assert_clean_exit(srv)
    H.cleanup()
  end)
end)

-- The tier is safe only while the instance hears the others' invalidations
-- (src/l1_link.h). B reaches Redis through tests/helpers/deaf_proxy.py,
-- which can silence B's subscriber (SIGUSR1) without closing it, and whose
-- death cuts B off from a Redis that A still uses.
describe("in-process tier when the subscription is lost", function()
  local redis, origin, dir, a, rc

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    dir = H.write_policies{
      ver = H.simple_policy(origin.url .. "/chaos/ver/", "ttl = 30, l1_ttl = 30"),
    }
    a = H.start_server{ policies_dir = dir, redis_port = redis.port }
    rc = redis:client()
  end)

  teardown(function()
    if rc then rc:close() end
    if a then assert_clean_exit(a) end
    H.cleanup()
  end)

  before_each(function() origin:reset() end)

  local function numsub()
    return rc:call("PUBSUB", "NUMSUB", "lc:#events")[2]
  end

  -- B behind a fresh proxy: { b =, proxy =, deaf = fn() }
  local function start_b()
    local proxy = H.spawn{ name = "deafproxy", argv = { "python3", "-u",
      H.root .. "/tests/helpers/deaf_proxy.py", "--target-port", redis.port } }
    local pport = H.wait_until(function()
      return proxy:log():match("proxy listening on [%d.]+:(%d+)")
    end, 10, "the proxy is listening")
    local b = H.start_server{ policies_dir = dir, metrics_port = true,
      redis_url = "redis://127.0.0.1:" .. pport .. "/0", extra_args = { "--backend-timeout", "300" } }
    local t = { b = b, proxy = proxy, seq = 0 }
    function t.deaf(on)
      t.seq = t.seq + 1
      proxy:signal(on and "USR1" or "USR2")
      local want = (on and "deaf " or "hearing ") .. t.seq
      H.wait_until(function() return proxy:log():find(want, 1, true) end, 5, want)
    end
    function t.l1_entries()
      return tonumber(b:metrics():match("\nluacached_l1_entries (%d+)"))
    end
    function t.cut() -- Redis is gone for B only
      proxy:stop("KILL", 3)
      H.wait_until(function() return b:call("INFO"):find("backend_up:0", 1, true) end, 5,
        "b's command link down")
    end
    H.wait_until(function() return numsub() == 2 end, 5, "a and b subscribed")
    return t
  end

  local function v1(id) return "key=ver:" .. id .. " v=1" end

  it("drops the whole tier when the subscription is lost while Redis answers, and serves none of it later", function()
    local t = start_b()
    local cb, ca = t.b:client(), a:client()
    for _, id in ipairs{ "k1", "k2" } do
      assert.equal(v1(id), cb:call("GET", "ver:" .. id))
      assert.equal(v1(id), cb:call("GET", "ver:" .. id)) -- in b's tier
    end
    assert.equal(2, t.l1_entries())
    t.deaf(true) -- b's reconnects will not get their SUBSCRIBE through
    assert.is_true(rc:call("CLIENT", "KILL", "TYPE", "pubsub") >= 2)
    -- b knows at once (the socket closed) and Redis answers its PING: the
    -- tier goes now, not on resubscribe
    H.wait_until(function() return t.l1_entries() == 0 end, 2, "b's tier dropped")
    H.wait_until(function() return numsub() == 1 end, 5, "a subscribed again, b deaf")
    -- a's invalidation goes unheard by b
    assert.equal(1, ca:call("DEL", "ver:k1"))
    t.cut()
    -- Redis is gone for b: fail-open serves what the tier holds, which is
    -- nothing read before the loss; the origin answers (v=2)
    assert.equal("key=ver:k1 v=2", cb:call("GET", "ver:k1"))
    assert.equal("key=ver:k2 v=2", cb:call("GET", "ver:k2"))
    assert.equal("key=ver:k1 v=2", cb:call("GET", "ver:k1")) -- fail-open fills the tier again
    assert.equal(2, origin:count("/chaos/ver/k1"))
    cb:close()
    ca:close()
    assert_clean_exit(t.b)
  end)

  -- The bound of docs/DECISIONS.md: a subscriber that dies silently is found
  -- within the 1 s probe + --backend-timeout (300 ms here); until then b may
  -- serve an item invalidated on a (never longer than l1_ttl, 30 s here).
  it("serves a value invalidated behind a silently dead subscription for at most 1 s + backend timeout", function()
    local t = start_b()
    local cb, ca = t.b:client(), a:client()
    assert.equal(v1("s1"), cb:call("GET", "ver:s1"))
    assert.equal(v1("s1"), cb:call("GET", "ver:s1"))
    t.deaf(true)
    local t0 = H.now()
    assert.equal("OK", ca:call("SET", "ver:s1", "new on a"))
    local stale = 0
    H.wait_until(function()
      local v = cb:call("GET", "ver:s1")
      if v == v1("s1") then stale = stale + 1 end
      return v == "new on a"
    end, 5, "b sees a's SET")
    local took = H.now() - t0
    print(string.format("\n  silent subscriber loss: b served the old value for %.3f s (%d reads)",
      took, stale))
    assert.is_true(took < 1.0 + 0.3 + 0.4, "took " .. took .. " s")
    -- deaf now: read from Redis, nothing kept, so nothing to serve later
    -- (the tier goes once a PING shows Redis answers: 100 ms + a round trip)
    H.wait_until(function() return t.l1_entries() == 0 end, 1, "b's tier dropped")
    t.cut()
    assert.equal("key=ver:s1 v=2", cb:call("GET", "ver:s1"))
    cb:close()
    ca:close()
    assert_clean_exit(t.b)
  end)

  it("does not serve, once Redis is gone, what it held before Redis came back without the subscriber", function()
    local t = start_b()
    local cb, ca = t.b:client(), a:client()
    assert.equal(v1("r1"), cb:call("GET", "ver:r1"))
    assert.equal(v1("r1"), cb:call("GET", "ver:r1"))
    t.deaf(true)
    redis:kill() -- both of b's links go: fail-open keeps the tier
    H.wait_until(function() return t.b:call("INFO"):find("backend_up:0", 1, true) end, 5,
      "b's command link down")
    assert.equal(v1("r1"), cb:call("GET", "ver:r1"))
    redis:restart()
    rc:close()
    rc = redis:client()
    -- b's command link comes back, its subscriber does not (deaf)
    H.wait_until(function() return t.b:call("INFO"):find("backend_up:1", 1, true) end, 10,
      "b's command link up")
    H.wait_until(function() return numsub() == 1 end, 10, "a subscribed again, b deaf")
    H.wait_until(function() return pcall(ca.call, ca, "DEL", "ver:r1") end, 5, "a's DEL")
    t.cut()
    assert.equal("key=ver:r1 v=2", cb:call("GET", "ver:r1"), H.tail(t.b:log(), 3000))
    cb:close()
    ca:close()
    assert_clean_exit(t.b)
  end)

  -- SPEC §6 as before: Redis itself going away is seen on both links, in
  -- either order; the tier keeps serving (the subscriber's loss seen first
  -- must not drop it).
  it("keeps serving from the tier when Redis dies, round after round", function()
    local srv = H.start_server{ policies_dir = dir, redis_port = redis.port,
      extra_args = { "--backend-timeout", "300" } }
    local c = srv:client()
    for round = 1, 5 do
      H.wait_until(function() return srv:call("INFO"):find("backend_up:1", 1, true) end, 10,
        "backend up")
      H.wait_until(function() return numsub() >= 2 end, 10, "subscribed")
      local key = "ver:d" .. round
      assert.equal(v1("d" .. round), c:call("GET", key))
      assert.equal(v1("d" .. round), c:call("GET", key))
      redis:kill()
      H.wait_until(function() return srv:call("INFO"):find("backend_up:0", 1, true) end, 5,
        "backend down")
      assert.equal(v1("d" .. round), c:call("GET", key), "round " .. round)
      assert.equal(1, origin:count("/chaos/ver/d" .. round), "round " .. round)
      redis:restart()
      rc:close()
      rc = redis:client()
    end
    c:close()
    assert_clean_exit(srv)
  end)
end)
