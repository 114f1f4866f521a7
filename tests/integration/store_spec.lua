-- tests/integration/store_spec.lua -- the storage layer (src/store.c): reads
-- batched into MGET, scripts called by SHA with the NOSCRIPT fallback, and
-- the order of calls kept, against a real redis-server and the real binary.
--   busted --lua=lua5.4 tests/integration/store_spec.lua
local H = require "tests.helpers.harness"

-- calls of cmd in Redis's INFO commandstats (0 if never called)
local function calls(redis, cmd)
  local info = redis:call("INFO", "commandstats")
  return tonumber(info:match("cmdstat_" .. cmd .. ":calls=(%d+)")) or 0
end

describe("storage layer", function()
  local redis, origin, srv

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local u = origin.url
    srv = H.start_server{ redis_port = redis.port, policies_dir = H.write_policies{
      widget = H.simple_policy(u .. "/widgets/", "ttl = 60"),
      other = H.simple_policy(u .. "/widgets/", "ttl = 60"),
    } }
  end)
  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  it("sends the reads of one pipeline to Redis as MGETs, each key answered as its own GET", function()
    local c = srv:client()
    for i = 1, 12 do assert.equal("OK", c:call("SET", "widget:b" .. i, "v" .. i)) end
    assert.equal("OK", c:call("SET", "other:b1", "o1"))
    redis:call("CONFIG", "RESETSTAT")
    local before = H.info_fields(c:call("INFO"))
    local cmds = {}
    for i = 1, 12 do cmds[#cmds + 1] = { "GET", "widget:b" .. i } end
    -- a missing key and another namespace in the middle of the batch
    table.insert(cmds, 5, { "GET", "widget:7001" })
    table.insert(cmds, 9, { "GET", "other:b1" })
    local replies = c:pipeline(cmds)
    assert.equal(14, #replies)
    local k = 0
    for i, cmd in ipairs(cmds) do
      local v = replies[i][1]
      if cmd[2] == "widget:7001" then
        assert.equal("7001", tostring(H.json_decode(v).id)) -- filled from the origin
      elseif cmd[2] == "other:b1" then
        assert.equal("o1", v)
      else
        k = k + 1
        assert.equal("v" .. cmd[2]:match("%d+"), v)
      end
    end
    assert.equal(12, k)
    assert.equal(1, origin:count("/widgets/7001"))
    local mgets, gets = calls(redis, "mget"), calls(redis, "get")
    assert.is_true(mgets >= 1, "no MGET reached Redis")
    -- 14 lookups; the fill's own re-read of the missing key may be a GET
    assert.is_true(gets < 4, gets .. " single GETs for one pipeline of 14 lookups")
    -- the same seen from our side: INFO's store counters
    local after = H.info_fields(c:call("INFO"))
    local reads = after.store_batched_reads_total - before.store_batched_reads_total
    local batches = after.store_read_batches_total - before.store_read_batches_total
    assert.is_true(reads >= 14, reads .. " batched reads")
    assert.is_true(batches >= 1 and batches <= 4, batches .. " batches for 14 reads")
    assert.equal(1, after.backend_subscribed)
    assert.equal(0, after.store_noscript_total)
    c:close()
  end)

  it("keeps the order of a read and a write of the same key in one pipeline", function()
    local c = srv:client()
    assert.equal("OK", c:call("SET", "widget:ord", "old"))
    local r = c:pipeline{ { "GET", "widget:ord" }, { "SET", "widget:ord", "new" }, { "GET", "widget:ord" },
                          { "DEL", "widget:ord" }, { "PEEK", "widget:ord" } }
    assert.equal("old", r[1][1])
    assert.equal("OK", r[2][1])
    assert.equal("new", r[3][1])
    assert.equal(1, r[4][1])
    assert.is_nil(r[5][1])
    c:close()
  end)

  it("calls its scripts by SHA, and by text once after SCRIPT FLUSH", function()
    local c = srv:client()
    redis:call("CONFIG", "RESETSTAT")
    assert.equal("OK", c:call("SET", "widget:s1", "a"))
    assert.equal(1, c:call("DEL", "widget:s1"))
    assert.is_true(calls(redis, "evalsha") >= 2)
    assert.equal(0, calls(redis, "eval"))
    -- an operator flushes the script cache under us
    assert.equal("OK", redis:call("SCRIPT", "FLUSH"))
    assert.equal("OK", c:call("SET", "widget:s2", "b"))
    assert.equal("b", c:call("GET", "widget:s2"))
    assert.equal(1, calls(redis, "eval"))
    assert.equal(1, H.info_fields(c:call("INFO")).store_noscript_total)
    H.wait_until(function() return srv:log():find("SCRIPT FLUSH", 1, true) end, 5, "no log line")
    -- reloaded: the next call goes by SHA again
    assert.equal(1, c:call("DEL", "widget:s2"))
    assert.equal(1, calls(redis, "eval"))
    -- a fill (lock, store-if-locked, release) after the flush works too
    redis:call("SCRIPT", "FLUSH")
    assert.equal("7002", tostring(H.json_decode(c:call("GET", "widget:7002")).id))
    assert.equal("7002", tostring(H.json_decode(c:call("GET", "widget:7002")).id))
    assert.equal(1, origin:count("/widgets/7002"))
    c:close()
  end)

  it("reloads its scripts once per SCRIPT FLUSH, however many calls were in flight", function()
    local c = srv:client()
    assert.equal("OK", redis:call("SCRIPT", "FLUSH"))
    redis:call("CONFIG", "RESETSTAT")
    local cmds = {}
    for i = 1, 50 do cmds[i] = { "SET", "widget:f" .. i, "v" .. i } end
    for i, r in ipairs(c:pipeline(cmds)) do assert.equal("OK", r[1], "SET " .. i) end
    assert.equal("v50", c:call("GET", "widget:f50"))
    -- the calls sent before the first NOSCRIPT came back go again by text
    local evals = calls(redis, "eval")
    assert.is_true(evals >= 1 and evals <= 50, evals .. " EVALs")
    -- one load of each of store.c's 9 scripts (SC_COUNT), not one per EVAL
    assert.equal(9, calls(redis, "script|load"))
    c:close()
  end)

  it("loads its scripts again when Redis comes back empty", function()
    redis:restart()
    H.wait_until(function()
      local ok, v = pcall(srv.call, srv, "SET", "widget:s3", "c")
      return ok and v == "OK"
    end, 15, "luacached did not reconnect")
    assert.equal("c", srv:call("GET", "widget:s3"))
    -- the restarted Redis never saw EVAL: the scripts were loaded on connect
    assert.equal(0, calls(redis, "eval"))
    assert.is_true(calls(redis, "evalsha") >= 1)
  end)
end)
