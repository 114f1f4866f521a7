-- tests/integration/fill_batch_spec.lua -- a loop turn's fills go to Redis
-- batched (src/store.c, "Batched fill writes"): their locks as SET NXs and
-- one MGET of the entries, their stores as one script call, each key with
-- its own result. Real redis-server, the real binary.
--   busted --lua=lua5.4 tests/integration/fill_batch_spec.lua
local H = require "tests.helpers.harness"

local function calls(redis, cmd)
  local info = redis:call("INFO", "commandstats")
  return tonumber(info:match("cmdstat_" .. cmd .. ":calls=(%d+)")) or 0
end

describe("batched fills", function()
  local redis, srv

  setup(function()
    redis = H.start_redis()
    -- every fetch sleeps as long: fetches started together end together
    srv = H.start_server{ redis_port = redis.port, policies_dir = H.write_policies{
      slow = [[return { ttl = 60, fetch = function(id, ctx) ctx.sleep(0.3) return "v" .. id end }]],
    } }
  end)
  teardown(H.cleanup)

  it("stores one pipeline's fills in one script call, one key's error its own", function()
    local c = srv:client()
    assert.equal("vwarm", c:call("GET", "slow:warm")) -- the namespace's generation is read
    redis:call("CONFIG", "RESETSTAT")
    local before = H.ns_stats(srv, "slow")
    local ids = { "a", "b", "c", "d" }
    for _, id in ipairs(ids) do c:send("GET", "slow:" .. id) end
    -- While b's fetch runs, its lock is replaced by a key of another type:
    -- its store script's read of the lock fails (WRONGTYPE) for b alone.
    H.wait_until(function() return redis:call("EXISTS", "lc:{slow:b}:lock") == 1 end, 5, "b's lock")
    redis:call("DEL", "lc:{slow:b}:lock")
    redis:call("HSET", "lc:{slow:b}:lock", "f", "v")
    for _, id in ipairs(ids) do assert.equal("v" .. id, c:read_reply()) end
    for _, id in ipairs{ "a", "c", "d" } do
      local e = redis:call("GET", "lc:{slow:" .. id .. "}")
      assert.is_string(e, id .. " not stored")
      assert.is_truthy(e:find("\nv" .. id .. "$"), e)
      assert.equal(0, redis:call("EXISTS", "lc:{slow:" .. id .. "}:lock"), id .. "'s lock kept")
    end
    assert.is_nil(redis:call("GET", "lc:{slow:b}"))
    local after = H.ns_stats(srv, "slow")
    assert.equal(4, after.misses - before.misses)
    assert.equal(4, after.fetches_ok - before.fetches_ok)
    assert.equal(1, after.store_errors - before.store_errors)
    -- one lookup MGET, one MGET for the locks' reads, one store script
    -- (a slow build may read the pipeline in two turns: never one per key)
    local mgets, evals = calls(redis, "mget"), calls(redis, "evalsha")
    assert.is_true(mgets >= 2 and mgets <= 4, mgets .. " MGETs")
    assert.is_true(evals >= 1 and evals <= 2, evals .. " store scripts for 4 keys")
    c:close()
  end)

  it("broadcasts each stored key: a waiter on another instance is answered", function()
    local other = H.start_server{ redis_port = redis.port, policies_dir = srv.policies_dir }
    local c, o = srv:client(), other:client()
    c:send("GET", "slow:w1")
    c:send("GET", "slow:w2")
    H.wait_until(function() return redis:call("EXISTS", "lc:{slow:w2}:lock") == 1 end, 5, "locks")
    local t0 = H.now()
    o:send("GET", "slow:w1")
    o:send("GET", "slow:w2")
    assert.equal("vw1", c:read_reply())
    assert.equal("vw2", c:read_reply())
    assert.equal("vw1", o:read_reply())
    assert.equal("vw2", o:read_reply())
    -- answered by the broadcast, not after the lock wait ran out
    assert.is_true(H.now() - t0 < 2, "the other instance waited " .. (H.now() - t0) .. " s")
    local os_ = H.ns_stats(other, "slow")
    assert.equal(0, os_.fetches_ok)
    assert.equal(2, os_.lock_waits)
    c:close()
    o:close()
    other:stop()
  end)
end)
