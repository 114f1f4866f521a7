-- tests/integration/corrupt_spec.lua -- corrupt or foreign data in Redis
-- (docs/STORAGE.md, "Entries that fail validation", "Namespace generation"):
-- entries with extreme or inconsistent fields, a stored_at in the future,
-- other Redis types, and poisoned namespace generations, written straight
-- into the real redis-server. Every one must be answered as absent (a miss
-- that refetches and overwrites it), logged once per kind, and never crash
-- the server (the suite also runs under ASan+UBSan).
--   busted --lua=lua5.4 tests/integration/corrupt_spec.lua
local H = require "tests.helpers.harness"

local NOW_MS = function() return math.floor(H.now() * 1000) end
local FAR = "9223372036854775000" -- parses as an integer, 19 digits

-- The header of an entry of policy version 1, generation 0 (fields in
-- docs/STORAGE.md order), followed by a foreign value.
local function entry(kind, gen, fresh, stale, err, fetch_ms, stored_at)
  return string.format("LC1 %s 1 %s %s %s %s %s %s\nforeign value", kind, gen, fresh, stale, err,
                       fetch_ms, stored_at)
end

local function count_lines(text, needle)
  local n, pos = 0, 1
  while true do
    local s, e = text:find(needle, pos, true)
    if not s then return n end
    n, pos = n + 1, e + 1
  end
end

local function is_origin_value(v, id)
  return type(v) == "string" and v:find('"widget ' .. id .. '"', 1, true) ~= nil
end

describe("corrupt data in Redis", function()
  local redis, origin, srv, policies

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    policies = H.write_policies{
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, stale_ttl = 30, early_refresh = 1"),
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = policies }
  end)

  teardown(function()
    if srv then H.assert_clean_exit(srv) end
    H.cleanup()
  end)

  before_each(function() origin:reset() end)

  -- Every read command treats the entry at widget:<id> as absent; GET then
  -- fetches and overwrites it with a valid entry.
  local function assert_absent_then_repaired(id)
    local c = srv:client()
    local key = "widget:" .. id
    assert.is_nil((c:call("PEEK", key)), "PEEK " .. key)
    assert.equal(-2, (c:call("TTL", key)), "TTL " .. key)
    assert.equal(-2, (c:call("PTTL", key)), "PTTL " .. key)
    local v = c:call("GET", key)
    assert.is_true(is_origin_value(v, id), "GET " .. key .. " answered " .. tostring(v))
    assert.equal(1, origin:count("/widgets/" .. id))
    -- overwritten by the fill: now a valid entry, a hit
    local stored = redis:call("GET", "lc:{" .. key .. "}")
    assert.is_string(stored)
    assert.truthy(stored:match("^LC1 v 1 0 %d+ %d+ %d+ %d+ %d+\n"), "stored: " .. stored:sub(1, 80))
    assert.is_true(is_origin_value(c:call("GET", key), id))
    local peek = c:call("PEEK", key)
    assert.equal("fresh", peek[1])
    assert.is_true(peek[2] > 50000 and peek[2] <= 60000, "PEEK ttl " .. tostring(peek[2]))
    assert.equal(60, (c:call("TTL", key)))
    assert.equal(1, origin:count("/widgets/" .. id))
    assert.equal("PONG", (c:call("PING")))
    c:close()
  end

  it("treats entries with extreme or inconsistent numbers as absent", function()
    local now = NOW_MS()
    local fresh, stale = now + 60000, now + 90000
    local cases = { -- in order: the generation case last, it would poison the namespace
      -- deadlines at the ends of the int64 range (signed overflow in the TTL math)
      { "xneg", entry("v", 0, "-" .. FAR, FAR, FAR, 0, now) },
      { "xmax", entry("v", 0, FAR, FAR, FAR, FAR, now) },
      { "xneg2", entry("v", 0, "-" .. FAR, "-" .. FAR, "-" .. FAR, "-" .. FAR, "-" .. FAR) },
      -- stale_until before fresh_until
      { "xorder", entry("v", 0, fresh, now, fresh, 0, now) },
      -- a fetch time out of range (early refresh math)
      { "xfetch", entry("v", 0, fresh, stale, stale, FAR, now) },
      -- not an entry at all, truncated header
      { "xjunk", "hello, not ours" },
      { "xtrunc", "LC1 v 1 0 " .. fresh },
      -- a generation out of range (would be learned: every later entry absent)
      { "xgenneg", entry("v", -5, fresh, stale, stale, 0, now) },
      { "xgen", entry("v", FAR, fresh, stale, stale, 0, now) },
    }
    for _, case in ipairs(cases) do
      assert.equal("OK", redis:call("SET", "lc:{widget:" .. case[1] .. "}", case[2]))
    end
    for _, case in ipairs(cases) do assert_absent_then_repaired(case[1]) end
    assert.is_true(srv:alive())
  end)

  it("treats a key of another Redis type as absent and overwrites it", function()
    redis:call("HSET", "lc:{widget:xhash}", "f", "v")
    redis:call("RPUSH", "lc:{widget:xlist}", "a", "b")
    assert_absent_then_repaired("xhash")
    assert_absent_then_repaired("xlist")
  end)

  it("does not let a stored_at in the future answer REFRESH", function()
    local now = NOW_MS()
    local day = 86400000
    local foreign = entry("v", 0, now + day, now + day, now + day, 0, now + day)
    redis:call("SET", "lc:{widget:xfuture}", foreign)
    local c = srv:client()
    local v = c:call("REFRESH", "widget:xfuture")
    assert.is_true(is_origin_value(v, "xfuture"), "REFRESH answered " .. tostring(v))
    assert.equal(1, origin:count("/widgets/xfuture"))
    -- and GET/PEEK ignore it too
    redis:call("SET", "lc:{widget:xfuture2}", foreign)
    assert_absent_then_repaired("xfuture2")
    -- a stored_at within the clock-skew allowance is valid
    redis:call("SET", "lc:{widget:xskew}", entry("v", 0, now + 60000, now + 60000, now + 60000, 0, now + 2000))
    assert.equal("foreign value", (c:call("GET", "widget:xskew")))
    assert.equal(0, origin:count("/widgets/xskew"))
    c:close()
  end)

  it("logs bad entries once per kind, naming the key", function()
    local now = NOW_MS()
    for i = 1, 5 do
      redis:call("SET", "lc:{widget:xlog" .. i .. "}", entry("v", 0, now + 60000, now, now + 60000, 0, now))
    end
    local c = srv:client()
    for i = 1, 5 do assert.is_true(is_origin_value(c:call("GET", "widget:xlog" .. i), "xlog" .. i)) end
    c:close()
    local log = srv:log()
    -- the first test already reported this kind: nothing more within a minute
    assert.equal(1, count_lines(log, "deadlines out of order"), H.tail(log, 3000))
    assert.equal(0, count_lines(log, "lc:{widget:xlog"))
    assert.equal(1, count_lines(log, "ignoring the entry at lc:{widget:xorder} in Redis: deadlines out of order"))
    assert.equal(1, count_lines(log, "generation out of range"))
    assert.equal(1, count_lines(log, "stored_at in the future"))
    assert.equal(1, count_lines(log, "not an entry (header does not parse)"))
  end)

  it("repairs a generation poisoned while running at the next FLUSHNS", function()
    local c = srv:client()
    assert.is_true(is_origin_value(c:call("GET", "widget:g1"), "g1"))
    local gen = H.ns_stats(srv, "widget").generation
    for _, poison in ipairs{ "garbage", FAR, "-3", "1.5", "99999999999999999999", "" } do
      redis:call("SET", "lc:#gen:widget", poison)
      assert.equal("OK", (c:call("FLUSHNS", "widget")), "FLUSHNS over " .. poison)
      gen = gen + 1
      assert.equal(tostring(gen), redis:call("GET", "lc:#gen:widget"))
      assert.equal(gen, H.ns_stats(srv, "widget").generation)
    end
    redis:call("DEL", "lc:#gen:widget")
    redis:call("SADD", "lc:#gen:widget", "x")
    assert.equal("OK", (c:call("FLUSHNS", "widget")))
    gen = gen + 1
    assert.equal(tostring(gen), redis:call("GET", "lc:#gen:widget"))
    -- and the namespace works: flushed, refetched once, then hits
    assert.is_true(is_origin_value(c:call("GET", "widget:g1"), "g1"))
    assert.is_true(is_origin_value(c:call("GET", "widget:g1"), "g1"))
    assert.equal(2, origin:count("/widgets/g1"))
    c:close()
  end)
end)

describe("a poisoned namespace generation at start-up", function()
  local POISON = {
    pgarbage = "garbage",
    phuge = FAR,
    pmax = "9223372036854775807",
    pover = "99999999999999999999",
    pneg = "-7",
    pfrac = "2.5",
    pempty = "",
    plist = false, -- a list, written below
  }

  teardown(H.cleanup)

  it("is treated as generation 0, repaired, and the namespace keeps working", function()
    local redis = H.start_redis()
    local origin = H.start_origin()
    local tbl = {}
    for ns, poison in pairs(POISON) do
      tbl[ns] = H.simple_policy(origin.url .. "/widgets/", "ttl = 60")
      if poison then
        redis:call("SET", "lc:#gen:" .. ns, poison)
      else
        redis:call("RPUSH", "lc:#gen:" .. ns, "a")
      end
    end
    local srv = H.start_server{ redis_port = redis.port, policies_dir = H.write_policies(tbl) }
    local c = srv:client()
    for ns in pairs(POISON) do
      -- the start-up sync rewrites the key with the generation it knows
      H.wait_until(function() return redis:call("GET", "lc:#gen:" .. ns) == "0" end, 5,
                   ns .. ": generation key repaired")
      assert.equal(0, H.ns_stats(srv, ns).generation)
      local key = ns .. ":a"
      assert.is_true(is_origin_value(c:call("GET", key), "a"))
      assert.is_true(is_origin_value(c:call("GET", key), "a")) -- a hit: entries are usable
      assert.equal("fresh", c:call("PEEK", key)[1])
      assert.equal("OK", (c:call("FLUSHNS", ns)))
      assert.equal("1", redis:call("GET", "lc:#gen:" .. ns))
      assert.equal(1, H.ns_stats(srv, ns).generation)
      assert.is_nil((c:call("PEEK", key)))
    end
    -- two GETs per namespace before the flush, one fetch each
    assert.equal(#(function() local t = {} for k in pairs(POISON) do t[#t + 1] = k end return t end)(),
                 origin:count("/widgets/a"))
    c:close()
    H.assert_clean_exit(srv)
  end)
end)
