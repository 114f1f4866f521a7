-- tests/integration/warm_spec.lua -- WARM and the background warm runs
-- (SPEC §3, §4 warm/warm_every): what is fetched, what is counted, the cap
-- on fetches in flight, and the runs at start and every warm_every seconds.
--   busted --lua=lua5.4 tests/integration/warm_spec.lua
local H = require "tests.helpers.harness"

local assert_clean_exit = H.assert_clean_exit

local errtext = H.errtext

-- A policy GETting url_prefix .. id .. suffix, ttl 60, with extra fields.
local function policy(url_prefix, fields, suffix)
  return H.simple_policy(url_prefix, "ttl = 60" .. (fields and (",\n  " .. fields) or ""), suffix)
end

describe("warming", function()
  local redis, origin, srv, dir

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local w = origin.url .. "/widgets/"
    dir = H.write_policies{
      wm = policy(w),
      wl = policy(origin.url .. "/users/", [[warm = function(ctx) return { "1", 2, "missing-3" } end]]),
      wbad = policy(w, [[warm = function(ctx)
    if rawget(_ENV, "mode") == nil then error("cannot list ids") end
  end]]),
      wtype = policy(w, [[warm = function(ctx) return { "1", {} } end]]),
      wloop = policy(w, [[warm = function(ctx) while true do end end]]),
      -- every id on one origin path, so the origin's max_inflight is the run's
      wcap = policy(origin.url .. "/slow/cap?delay=0.2&id="),
      wsie = H.simple_policy(w, "ttl = 1, stale_if_error = 30"),
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)

  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  it("WARM ns id... fetches each id now and counts values and not-founds", function()
    origin:control("/widgets/err1", { status = 500 })
    assert.equal(3, srv:call("WARM", "wm", "1", "2", "missing-1", "err1"))
    for _, p in ipairs({ "/widgets/1", "/widgets/2", "/widgets/missing-1", "/widgets/err1" }) do
      assert.equal(1, origin:count(p), p)
    end
    assert.equal(1, redis:call("EXISTS", "lc:{wm:1}"))
    assert.equal(1, redis:call("EXISTS", "lc:{wm:2}"))
    -- a warm entry is a hit
    assert.is_string(srv:call("GET", "wm:1"))
    assert.equal(1, origin:count("/widgets/1"))
    -- WARM fetches even fresh ids (as REFRESH does)
    assert.equal(1, srv:call("WARM", "wm", "1"))
    assert.equal(2, origin:count("/widgets/1"))
  end)

  it("WARM ns fetches the ids the policy's warm() returns", function()
    assert.equal(3, srv:call("WARM", "wl"))
    assert.equal(1, origin:count("/users/1"))
    assert.equal(1, origin:count("/users/2"))
    assert.equal(1, origin:count("/users/missing-3"))
  end)

  it("answers clear errors", function()
    assert.equal("ERR namespace 'wm' has no warm (name the ids: WARM wm id ...)",
      errtext(srv:call("WARM", "wm")))
    assert.equal("ERR unknown namespace 'nope'", errtext(srv:call("WARM", "nope", "1")))
    assert.equal("ERR wrong number of arguments for 'warm' command", errtext(srv:call("WARM")))
    assert.matches("^ERR warm failed: .*wbad%.lua:%d+: cannot list ids$",
      errtext(srv:call("WARM", "wbad")))
    assert.matches("^ERR warm failed: .*wtype%.lua:%d+: warm returned ids%[2%] %(got table%): ids "
      .. "are strings or integers$", errtext(srv:call("WARM", "wtype")))
    assert.matches("^ERR warm failed: .*budget exceeded", errtext(srv:call("WARM", "wloop")))
    assert.equal("PONG", srv:call("PING"))
  end)

  it("WARM counts a stale value served for stale_if_error as loaded", function()
    local v1 = srv:call("GET", "wsie:5")
    assert.equal("widget 5", H.json_decode(v1).name)
    H.wait_until(function() return srv:call("PTTL", "wsie:5") == 0 end, 3, "entry expires")
    origin:control("/widgets/5", { status = 503, delay = 0.5 })
    -- a GET's fill keeps the expired value for stale_if_error ...
    local a = H.connect(srv.port)
    a:send("GET", "wsie:5")
    H.wait_until(function() return origin:count("/widgets/5") == 2 end, 3, "the GET's fetch")
    -- ... WARM joins it, and the failed fetch answers both with that value
    assert.equal(1, srv:call("WARM", "wsie", "5"))
    assert.equal(v1, (a:read_reply()))
    assert.equal(2, origin:count("/widgets/5"))
    assert.equal(2, H.ns_stats(srv, "wsie").stale_error)
    -- without a stale value the failed fetch counts as not loaded
    origin:control("/widgets/6", { status = 503 })
    assert.equal(0, srv:call("WARM", "wsie", "6"))
  end)

  it("keeps at most 32 fetches of one run in flight", function()
    local ids = {}
    for i = 1, 100 do ids[i] = tostring(i) end
    local t0 = H.now()
    assert.equal(100, srv:call("WARM", "wcap", table.unpack(ids)))
    local st = origin:stats()
    assert.equal(100, st.paths["/slow/cap"])
    local max = st.max_inflight["/slow/cap"]
    assert.is_true(max <= 32, "origin saw " .. max .. " requests at once")
    assert.is_true(max >= 16, "only " .. max .. " at once: the cap is not being used")
    -- 100 fetches of 0.2 s, 32 at a time: at least 4 rounds
    assert.is_true(H.now() - t0 >= 0.75, "took " .. (H.now() - t0) .. " s")
  end)

  it("runs warm() at start, and again every warm_every seconds", function()
    local w = origin.url .. "/widgets/"
    local d = H.write_policies{
      ws = policy(w, [[warm = function(ctx) return { "start1", "start2" } end]]),
      we = policy(w, [[warm = function(ctx) return { "every1" } end, warm_every = 1]]),
    }
    local t0 = H.now()
    local s2 = H.start_server{ redis_port = redis.port, policies_dir = d }
    H.wait_until(function()
      return origin:count("/widgets/start1") == 1 and origin:count("/widgets/start2") == 1
    end, 3, "the origin sees the warm ids shortly after start")
    assert.is_true(H.now() - t0 < 3)
    assert.equal(1, redis:call("EXISTS", "lc:{ws:start1}"))
    -- the start run happens once
    H.wait_until(function() return origin:count("/widgets/every1") >= 3 end, 5,
      "warm_every = 1 repeats")
    assert.equal(1, origin:count("/widgets/start1"))
    -- one log line per run, not per id
    local log = s2:log()
    assert.truthy(log:find("[ws] warm: 2 of 2 ids loaded", 1, true), H.tail(log))
    local _, runs = log:gsub("%[we%] warm: 1 of 1 ids loaded", "")
    assert.is_true(runs >= 3, log)
    assert_clean_exit(s2)
  end)

  it("re-reads warm_every after a reload, and skips a removed namespace", function()
    local w = origin.url .. "/widgets/"
    local d = H.write_policies{
      wr = policy(w, [[warm = function(ctx) return { "r1" } end, warm_every = 100]]),
    }
    local s2 = H.start_server{ redis_port = redis.port, policies_dir = d }
    H.wait_until(function() return origin:count("/widgets/r1") == 1 end, 3, "start run")
    H.sleep(1.2)
    assert.equal(1, origin:count("/widgets/r1"))
    H.write_policy(d, "wr", policy(w, [[warm = function(ctx) return { "r1" } end, warm_every = 0.5]]))
    assert.equal("OK", s2:call("RELOAD", "wr"))
    H.wait_until(function() return origin:count("/widgets/r1") >= 3 end, 4, "runs every 0.5 s now")
    H.remove_policy(d, "wr")
    assert.equal("OK", s2:call("RELOAD", "wr"))
    H.sleep(0.7) -- a run under way when it was removed may still end
    local n = origin:count("/widgets/r1")
    H.sleep(1.2)
    assert.equal(n, origin:count("/widgets/r1"))
    assert_clean_exit(s2)
  end)

  it("shuts down cleanly", function()
    assert_clean_exit(srv)
  end)
end)
