-- tests/integration/invalidate_spec.lua -- PURGE, PURGETAG, FLUSHNS and EVENT
-- (SPEC §3, §4): what they remove, what they leave, their counts, their
-- errors, reaching a second instance's in-process tier within 100 ms, and
-- winning over a fill in flight on another instance.
--   busted --lua=lua5.4 tests/integration/invalidate_spec.lua
-- Two luacached instances (A and B) share one Redis. Tests use their own
-- namespaces (so STATS counters can be asserted exactly) and origin paths;
-- the origin's counters are reset before each test.
local H = require "tests.helpers.harness"

local assert_clean_exit = H.assert_clean_exit
local tagged = H.tagged_policy

-- Counters of one namespace from STATS ns: {name = number}.
local stats = H.ns_stats

local errtext = H.errtext

-- Sorted entry keys of Redis matching a glob.
local function keys(redis, glob)
  local list = {}
  for i, k in ipairs(redis:call("KEYS", glob)) do list[i] = k end
  table.sort(list)
  return list
end

-- calls of one Redis command so far (INFO commandstats).
local function redis_calls(redis, cmd)
  local info = redis:call("INFO", "commandstats")
  return tonumber(info:match("cmdstat_" .. cmd .. ":calls=(%d+)")) or 0
end

-- SET many keys through a server, pipelined in chunks.
local function set_many(srv, list)
  local c = srv:client(30)
  for i = 1, #list, 500 do
    local cmds = {}
    for j = i, math.min(i + 499, #list) do cmds[#cmds + 1] = { "SET", list[j], "v" } end
    for n, r in ipairs(c:pipeline(cmds)) do assert.equal("OK", r[1], "SET #" .. (i + n - 1)) end
  end
  c:close()
end

local function range(fmt, n)
  local t = {}
  for i = 1, n do t[i] = string.format(fmt, i) end
  return t
end

-- A policy that GETs url_prefix .. id .. suffix (404: nil, non-200: error),
-- ttl 60; extra Lua source in `fields`, e.g. on_event.
local function policy(url_prefix, fields, suffix)
  return H.simple_policy(url_prefix, "ttl = 60" .. (fields and (",\n  " .. fields) or ""), suffix)
end


describe("invalidation", function()
  local redis, origin, A, B

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local w = origin.url .. "/widgets/"
    local slow = origin.url .. "/slow/"
    local policies = {
      pg = policy(w), pg2 = policy(w),
      pl1 = policy(w, "l1_ttl = 30"),
      tga = tagged(w), tgb = tagged(w),
      fl = policy(w), fl2 = policy(w), flbig = policy(w),
      fll1 = policy(w, "l1_ttl = 30"),
      -- the SPEC §4 example
      widget = tagged(w, [[
  on_event = function(name, data, ctx)
    if name == "updated" then
      return { keys = { "widget:" .. data.id, "widget_count:global" },
               patterns = { "user_widgets:" .. data.owner_id .. ":*" },
               tags = {}, flush = false }
    elseif name == "owner" then
      return { tags = { "owner:" .. data.owner_id } }
    elseif name == "raw" then
      assert(type(data) == "string", "data is a " .. type(data))
      return { keys = { "widget:" .. data } }
    elseif name == "none" then
      assert(data == nil, "data is not nil")
      return nil
    elseif name == "flush" then
      return { keys = { "widget:" .. data.id }, flush = true }
    end
    error("unexpected event " .. name)
  end]]),
      widget_count = policy(origin.url .. "/echo/"),
      user_widgets = policy(w),
      evbad = policy(w, [[
  on_event = function(name, data, ctx)
    if name == "boom" then error("boom") end
    if name == "loop" then while true do end end
    if name == "http" then ctx.http.get("http://127.0.0.1:1/") end
    if name == "badkeys" then return { keys = "evbad:1" } end
    if name == "unknownns" then return { keys = { "evbad:1", "nope:1" } } end
    if name == "badpattern" then return { patterns = { "*:1" } } end
    if name == "typo" then return { kyes = {} } end
    return { keys = { "evbad:1" } }
  end]]),
      noevent = policy(w),
      -- fills of 0.8 s, to be overtaken (each invalidation its own namespace)
      racep = policy(slow, nil, "?delay=0.8"),
      racef = policy(slow, nil, "?delay=0.8"),
      racee = policy(slow, [[
  on_event = function(name, data, ctx) return { keys = { "racee:" .. data } } end]], "?delay=0.8"),
      racet = string.format([[
return {
  ttl = 60,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id .. "?delay=0.8")
    return res.body, { tags = { "rt:" .. id } }
  end,
}
]], slow),
    }
    local dir = H.write_policies(policies)
    A = H.start_server{ redis_port = redis.port, policies_dir = dir }
    B = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)

  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  describe("PURGE", function()
    it("removes exactly the matching entries over several SCAN batches, and counts them", function()
      set_many(A, range("pg:a:%d", 1000))
      set_many(A, range("pg:b:%d", 1000))
      set_many(A, range("pg2:a:%d", 50))
      assert.equal(1000, #keys(redis, "lc:{pg:a:*}"))
      local scans = redis_calls(redis, "scan")
      assert.equal(1000, A:call("PURGE", "pg:a:*"))
      -- ~2050 keys with COUNT 1000: the walk took several SCAN calls
      assert.is_true(redis_calls(redis, "scan") - scans >= 3, "SCAN calls")
      assert.same({}, keys(redis, "lc:{pg:a:*}"))
      assert.equal(1000, #keys(redis, "lc:{pg:b:*}"))
      assert.equal(50, #keys(redis, "lc:{pg2:a:*}"))
      assert.equal(1000, stats(A, "pg").invalidations_purge)
      assert.equal(1, stats(A, "pg").requests_other)
      -- the next GET of a purged key fetches; a kept one is a hit
      assert.is_string(A:call("GET", "pg:a:5"))
      assert.equal(1, origin:count("/widgets/a:5"))
      assert.equal("v", A:call("GET", "pg:b:5"))
      assert.equal(0, origin:count("/widgets/b:5"))
    end)

    it("matches ids with Redis glob syntax and leaves lookalikes alone", function()
      set_many(A, { "pg:x1", "pg:x2", "pg:x10", "pg:y1", "pg:x", "pg:[x]1" })
      assert.equal(2, A:call("PURGE", "pg:x?"))
      assert.same({ "lc:{pg:[x]1}", "lc:{pg:x10}", "lc:{pg:x}", "lc:{pg:y1}" },
        keys(redis, "lc:{pg:[xy[]*"))
      assert.equal(1, A:call("PURGE", "pg:\\[x\\]1"))
      assert.equal(0, A:call("PURGE", "pg:x2"))
      assert.equal(1, A:call("PURGE", "pg:x10"))
    end)

    it("refuses a pattern without a literal, known namespace", function()
      local literal = "ERR PURGE pattern must start with a literal namespace, e.g. PURGE user_widgets:5:*"
      assert.equal(literal, errtext(A:call("PURGE", "*:1")))
      assert.equal(literal, errtext(A:call("PURGE", "p?:1")))
      assert.equal(literal, errtext(A:call("PURGE", "pg")))
      assert.equal(literal, errtext(A:call("PURGE", ":1")))
      assert.equal("ERR unknown namespace 'nope'", errtext(A:call("PURGE", "nope:*")))
      assert.equal("ERR wrong number of arguments for 'purge' command", errtext(A:call("PURGE")))
    end)

    it("reaches the other instance's in-process tier within 100 ms", function()
      assert.is_string(B:call("GET", "pl1:1"))
      assert.is_string(B:call("GET", "pl1:1")) -- from B's tier now
      assert.equal(1, origin:count("/widgets/1"))
      assert.equal(1, A:call("PURGE", "pl1:*"))
      -- B keeps answering from its tier until the broadcast lands: then it refetches
      H.wait_until(function()
        assert.is_string(B:call("GET", "pl1:1"))
        return origin:count("/widgets/1") == 2
      end, 0.1, "B dropped pl1:1 within 100 ms")
    end)
  end)

  describe("PURGETAG", function()
    it("removes exactly the tagged entries of every namespace; the next GET refetches", function()
      -- owner_id is id % 10
      for _, id in ipairs({ "1", "11", "21", "2" }) do
        assert.is_string(A:call("GET", "tga:" .. id))
        assert.is_string(B:call("GET", "tgb:" .. id))
      end
      H.wait_until(function() return redis:call("SCARD", "lc:#tag:owner:1") == 6 end, 2,
        "6 entries indexed under owner:1")
      assert.equal(2, redis:call("SCARD", "lc:#tag:owner:2"))
      -- the index lives at least as long as its entries
      local entry_ttl = redis:call("PTTL", "lc:{tga:2}")
      assert.is_true(redis:call("PTTL", "lc:#tag:owner:2") >= entry_ttl - 1000)

      origin:reset()
      assert.equal(6, A:call("PURGETAG", "owner:1"))
      assert.same({ "lc:{tga:2}" }, keys(redis, "lc:{tga:*}"))
      assert.same({ "lc:{tgb:2}" }, keys(redis, "lc:{tgb:*}"))
      assert.equal(0, redis:call("EXISTS", "lc:#tag:owner:1"))
      assert.equal(3, stats(A, "tga").invalidations_tag)
      assert.equal(3, stats(A, "tgb").invalidations_tag)
      assert.is_string(B:call("GET", "tga:11"))
      assert.equal(1, origin:count("/widgets/11"))
      assert.is_string(B:call("GET", "tga:2"))
      assert.equal(0, origin:count("/widgets/2"))
      -- an unknown tag removes nothing
      assert.equal(0, A:call("PURGETAG", "owner:none"))
    end)

    it("walks a large tag set in batches", function()
      -- 1200 members: hashtable-encoded, so SSCAN returns ~500 at a time
      local cmds = { "SADD", "lc:#tag:big" }
      for i = 1, 1200 do cmds[#cmds + 1] = "lc:{tga:big" .. i .. "}" end
      redis:call(table.unpack(cmds))
      set_many(A, range("tga:big%d", 1000)) -- 200 members without an entry
      local before = redis_calls(redis, "sscan")
      assert.equal(1000, A:call("PURGETAG", "big"))
      assert.is_true(redis_calls(redis, "sscan") - before >= 2, "SSCAN calls")
      assert.same({}, keys(redis, "lc:{tga:big*"))
      assert.equal(0, redis:call("EXISTS", "lc:#tag:big"))
    end)
  end)

  describe("FLUSHNS", function()
    it("makes every key of the namespace refetch, and leaves other namespaces alone", function()
      for _, k in ipairs({ "fl:1", "fl:2", "fl2:3" }) do assert.is_string(A:call("GET", k)) end
      assert.equal("OK", A:call("FLUSHNS", "fl"))
      assert.is_string(A:call("GET", "fl:1"))
      assert.is_string(B:call("GET", "fl:2"))
      assert.is_string(A:call("GET", "fl2:3"))
      assert.equal(2, origin:count("/widgets/1"))
      assert.equal(2, origin:count("/widgets/2"))
      assert.equal(1, origin:count("/widgets/3")) -- fl2:3 was a hit
      assert.equal("1", redis:call("GET", "lc:#gen:fl"))
      assert.equal(1, stats(A, "fl").generation)
      assert.equal(1, stats(A, "fl").invalidations_flush)
      assert.equal(0, stats(A, "fl2").generation)
      -- a second flush, and entries of the newest generation serve again
      assert.equal("OK", B:call("FLUSHNS", "fl"))
      assert.equal("2", redis:call("GET", "lc:#gen:fl"))
      assert.is_string(A:call("GET", "fl:1"))
      assert.is_string(A:call("GET", "fl:1"))
      assert.equal(3, origin:count("/widgets/1"))
    end)

    it("is O(1): 5000 entries, one Redis command, no per-key work", function()
      set_many(A, range("flbig:%d", 5000))
      H.sleep(0.2) -- let the SETs' trailing lock deletions land
      local size = redis:call("DBSIZE")
      local scans, unlinks, dels = redis_calls(redis, "scan"), redis_calls(redis, "unlink"),
        redis_calls(redis, "del")
      local t0 = H.now()
      assert.equal("OK", A:call("FLUSHNS", "flbig"))
      assert.is_true(H.now() - t0 < 0.5, "FLUSHNS took " .. (H.now() - t0) .. " s")
      assert.equal(size + 1, redis:call("DBSIZE")) -- the new lc:#gen:flbig, nothing else
      assert.equal(scans, redis_calls(redis, "scan"))
      assert.equal(unlinks, redis_calls(redis, "unlink"))
      assert.equal(dels, redis_calls(redis, "del"))
      assert.is_string(A:call("GET", "flbig:4321"))
      assert.equal(1, origin:count("/widgets/4321"))
    end)

    it("reaches the other instance, its in-process tier included, within 100 ms", function()
      assert.is_string(B:call("GET", "fll1:7"))
      assert.is_string(B:call("GET", "fll1:7"))
      assert.equal(1, stats(B, "fll1").hits_l1)
      assert.equal("OK", A:call("FLUSHNS", "fll1"))
      H.wait_until(function() return stats(B, "fll1").generation == 1 end, 0.1,
        "B learned the new generation within 100 ms")
      assert.is_string(B:call("GET", "fll1:7"))
      assert.equal(2, origin:count("/widgets/7"))
      assert.equal(1, stats(B, "fll1").hits_l1)
    end)

    it("answers errors for unknown namespaces and wrong arity", function()
      assert.equal("ERR unknown namespace 'nope'", errtext(A:call("FLUSHNS", "nope")))
      assert.equal("ERR wrong number of arguments for 'flushns' command",
        errtext(A:call("FLUSHNS", "fl", "fl2")))
    end)
  end)

  describe("EVENT", function()
    it("removes exactly what the SPEC §4 example returns, and counts it", function()
      for _, k in ipairs({ "widget:42", "widget:43", "widget_count:global", "user_widgets:5:1",
                           "user_widgets:5:2", "user_widgets:50:1", "user_widgets:6:1" }) do
        assert.is_string(A:call("GET", k), k)
      end
      -- "widget:" .. data.id is widget:42 (JSON integers arrive as integers)
      assert.equal(4, A:call("EVENT", "widget", "updated", '{"id":42,"owner_id":5}'))
      assert.same({ "lc:{widget:43}" }, keys(redis, "lc:{widget:*}"))
      assert.same({}, keys(redis, "lc:{widget_count:*}"))
      assert.same({ "lc:{user_widgets:50:1}", "lc:{user_widgets:6:1}" },
        keys(redis, "lc:{user_widgets:*}"))
      local s = stats(A, "widget")
      assert.equal(4, s.invalidations_event)
      assert.equal(0, s.invalidations_del)
      assert.equal(1, s.requests_other)
      assert.equal(0, stats(A, "user_widgets").invalidations_purge)
      -- the same event again finds nothing left to remove
      assert.equal(0, A:call("EVENT", "widget", "updated", '{"id":42,"owner_id":5}'))
    end)

    it("invalidates tags an event returns", function()
      for _, id in ipairs({ "7", "17", "4" }) do assert.is_string(A:call("GET", "widget:" .. id)) end
      H.wait_until(function() return redis:call("SCARD", "lc:#tag:owner:7") == 2 end, 2)
      assert.equal(2, B:call("EVENT", "widget", "owner", '{"owner_id":7}'))
      assert.same({}, keys(redis, "lc:{widget:*7}"))
      assert.equal(1, redis:call("EXISTS", "lc:{widget:4}"))
    end)

    it("hands a payload that is not JSON over as a string, and no payload as nil", function()
      assert.equal("OK", A:call("SET", "widget:hello world", "x"))
      assert.equal(1, A:call("EVENT", "widget", "raw", "hello world"))
      assert.equal(0, redis:call("EXISTS", "lc:{widget:hello world}"))
      assert.equal(0, A:call("EVENT", "widget", "none"))
    end)

    it("flushes the namespace when the result says so", function()
      assert.is_string(A:call("GET", "widget:8"))
      assert.is_string(A:call("GET", "widget:9"))
      local gen = stats(A, "widget").generation
      assert.equal(1, A:call("EVENT", "widget", "flush", '{"id":8}'))
      assert.equal(gen + 1, stats(A, "widget").generation)
      assert.equal(1, stats(A, "widget").invalidations_flush)
      assert.is_string(A:call("GET", "widget:9"))
      assert.equal(2, origin:count("/widgets/9"))
    end)

    it("fails with -ERR when on_event fails, runs away or returns nonsense; nothing is removed", function()
      assert.equal("OK", A:call("SET", "evbad:1", "x"))
      local function err(name)
        return errtext(A:call("EVENT", "evbad", name, "{}"))
      end
      assert.matches("^ERR on_event failed: .*evbad%.lua:%d+: boom$", err("boom"))
      -- at the policy's on_event (its result is checked after it returned)
      assert.matches("^ERR on_event failed: .*evbad%.lua:%d+: result keys must be an array of "
        .. "strings %(got string%)$", err("badkeys"))
      assert.equal("ERR on_event failed: result keys[2] 'nope:1': unknown namespace 'nope'",
        err("unknownns"))
      assert.equal("ERR on_event failed: result patterns[1] '*:1': PURGE pattern must start with "
        .. "a literal namespace, e.g. PURGE user_widgets:5:*", err("badpattern"))
      assert.matches("unknown field 'kyes'", err("typo"), 1, true)
      assert.matches("ctx.http.get is not available in on_event", err("http"), 1, true)
      local t0 = H.now()
      assert.matches("^ERR on_event failed: .*budget exceeded", err("loop"))
      assert.is_true(H.now() - t0 < 3, "runaway stopped after " .. (H.now() - t0) .. " s")
      assert.equal(1, redis:call("EXISTS", "lc:{evbad:1}"))
      -- the server and the namespace keep serving
      assert.equal("PONG", A:call("PING"))
      assert.equal(1, A:call("EVENT", "evbad", "ok"))
      assert.is_string(A:call("GET", "widget:1"))
    end)

    it("answers the contract's errors", function()
      assert.equal("ERR namespace 'noevent' has no on_event",
        errtext(A:call("EVENT", "noevent", "x")))
      assert.equal("ERR unknown namespace 'nope'", errtext(A:call("EVENT", "nope", "x")))
      assert.equal("ERR wrong number of arguments for 'event' command",
        errtext(A:call("EVENT", "widget")))
      assert.equal("ERR wrong number of arguments for 'event' command",
        errtext(A:call("EVENT", "widget", "a", "b", "c")))
    end)
  end)

  describe("wins over a fill in flight on the other instance", function()
    -- GET key on B (a 0.8 s fetch); once the origin has the request, run
    -- invalidate() on A. B's waiting client still gets the value, but it is
    -- not stored, and the next GET fetches again.
    local function overtaken(ns, id, invalidate)
      local key = ns .. ":" .. id
      local c = B:client()
      c:send("GET", key)
      H.wait_until(function() return origin:stats().inflight >= 1 end, 3, "fetch under way")
      invalidate()
      local v, kind = c:read_reply(5)
      assert.equal("bulk", kind, tostring(v))
      H.wait_until(function() return stats(B, ns).invalidations_race == 1 end, 2,
        "B counts the fill it did not store")
      assert.equal(0, redis:call("EXISTS", "lc:{" .. key .. "}"))
      assert.is_string(B:call("GET", key))
      assert.equal(2, origin:count("/slow/" .. id))
      c:close()
    end

    it("PURGE", function()
      overtaken("racep", "p1", function() assert.equal(0, A:call("PURGE", "racep:p*")) end)
    end)

    it("PURGETAG", function()
      overtaken("racet", "t1", function() assert.equal(0, A:call("PURGETAG", "rt:t1")) end)
    end)

    it("FLUSHNS", function()
      overtaken("racef", "f1", function() assert.equal("OK", A:call("FLUSHNS", "racef")) end)
    end)

    it("EVENT", function()
      overtaken("racee", "e1", function() assert.equal(0, A:call("EVENT", "racee", "x", "e1")) end)
    end)
  end)

  it("both instances shut down cleanly", function()
    assert_clean_exit(A)
    assert_clean_exit(B)
  end)
end)
