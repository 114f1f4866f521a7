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
      cold = H.simple_policy(origin.url .. "/widgets/", "ttl = 30"),
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

  it("keeps a namespace without l1_ttl on Redis", function()
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
    assert.is_true(rc:call("CLIENT", "KILL", "TYPE", "pubsub") >= 2)
    -- b is deaf now (it reconnects after a backoff of 100 ms or more)
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
