-- tests/integration/fill_batch_spec.lua -- a loop turn's fills go to Redis
-- batched (src/store.c, "Batched fill writes"): their locks as SET NXs and
-- one MGET of the entries, their stores as one script call, each key with
-- its own result. Real redis-server (watched with MONITOR), the real
-- binary. What happens in one loop turn depends on the machine here; the
-- exact batches are checked in tests/c/test_store_batch.c.
--   busted --lua=lua5.4 tests/integration/fill_batch_spec.lua
local H = require "tests.helpers.harness"
local resp = require "tests.helpers.resp"

-- A MONITOR connection to Redis: what our server sent, command by command,
-- whatever the timing. A line: 1701.1 [0 127.0.0.1:5000] "MGET" "k1" "k2"
-- (from a script: [0 lua]).
local function monitor(redis)
  local m = H.connect(redis.port)
  assert.equal("OK", m:call("MONITOR"))
  return m
end

local function monitor_args(line)
  local args, i = {}, 1
  while true do
    local q = line:find('"', i, true)
    if not q then return args end
    local j, buf = q + 1, {}
    while true do
      local ch = line:sub(j, j)
      assert(ch ~= "", "bad MONITOR line: " .. line)
      if ch == '"' then break end
      if ch == "\\" then j = j + 1; ch = line:sub(j, j) end
      buf[#buf + 1] = ch
      j = j + 1
    end
    args[#args + 1] = table.concat(buf)
    i = j + 1
  end
end

-- The commands seen until the marker (an ECHO sent once our server has
-- sent what the test is about): { {lua = bool, cmd = "MGET", args..}, ... }
local function monitored(m, redis, marker)
  redis:call("ECHO", marker)
  local seen = {}
  while true do
    local line = m:read_reply(5)
    local from = line:match("^[%d%.]+ %[%d+ ([^%]]+)%]")
    assert(from, "bad MONITOR line: " .. line)
    local a = monitor_args(line)
    a.cmd, a.lua = table.remove(a, 1):upper(), from == "lua"
    if a.cmd == "ECHO" and a[1] == marker then return seen end
    seen[#seen + 1] = a
  end
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

  it("reads one lookup's fill locks in one MGET, stores in batch scripts, one key's error its own", function()
    local c = srv:client()
    assert.equal("vwarm", c:call("GET", "slow:warm")) -- the namespace's generation is read
    local m = monitor(redis)
    local before = H.ns_stats(srv, "slow")
    local info0 = H.info_fields(c:call("INFO"))
    local ids = { "a", "b", "c", "d" }
    -- one write: the server reads it in one go, so its lookups are one
    -- batch (but nothing below depends on that)
    local pipe = {}
    for _, id in ipairs(ids) do pipe[#pipe + 1] = resp.encode("GET", "slow:" .. id) end
    c:send_raw(table.concat(pipe))
    -- While b's fetch runs, its lock is replaced by a key of another type:
    -- its store script's read of the lock fails (WRONGTYPE) for b alone.
    H.wait_until(function() return redis:call("EXISTS", "lc:{slow:b}:lock") == 1 end, 5, "b's lock")
    redis:call("DEL", "lc:{slow:b}:lock")
    redis:call("HSET", "lc:{slow:b}:lock", "f", "v")
    for _, id in ipairs(ids) do assert.equal("v" .. id, c:read_reply()) end
    -- each reply came after its key's store: all that is seen by now
    local seen = monitored(m, redis, "fill-batch-spec-1")
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
    -- What went to Redis. The lookups of one loop turn are one read (MGET;
    -- GET for one key); each key's lock is a SET NX; the reads after the
    -- locks that one lookup reply started (one loop turn) are one MGET.
    -- How many turns the server took to read the pipeline does not
    -- matter: a slow build may split the lookups, never the lock reads of
    -- one lookup.
    local entry = function(k) return k:match("^lc:{slow:(%w+)}$") end
    local locked, lookups, lock_reads, stores = {}, {}, {}, {}
    for _, a in ipairs(seen) do
      if not a.lua and a.cmd == "SET" and a[3] == "NX" then
        local id = a[1]:match("^lc:{slow:(%w+)}:lock$")
        if id then locked[id] = true end
      elseif not a.lua and (a.cmd == "GET" or a.cmd == "MGET") and entry(a[1]) then
        local read, after_lock = { cmd = a.cmd }, locked[entry(a[1])]
        for _, k in ipairs(a) do
          local id = entry(k)
          assert.is_truthy(id, k)
          assert.equal(after_lock, locked[id], "a read mixing lookups and lock reads")
          read[#read + 1] = id
        end
        table.insert(after_lock and lock_reads or lookups, read)
      elseif not a.lua and a.cmd == "EVALSHA" and entry(a[3] or "") then
        stores[#stores + 1] = a -- (not the generation's script)
      end
    end
    local function where(reads)
      local at = {}
      for i, r in ipairs(reads) do
        assert.equal(#r > 1 and "MGET" or "GET", r.cmd)
        for _, id in ipairs(r) do
          assert.is_nil(at[id], id .. " read twice")
          at[id] = i
        end
      end
      return at
    end
    local lookup_at, lock_read_at = where(lookups), where(lock_reads)
    for _, id in ipairs(ids) do
      assert.is_truthy(lookup_at[id], id .. " never looked up")
      assert.is_truthy(locked[id], id .. " never locked")
      assert.is_truthy(lock_read_at[id], id .. " not read after its lock")
    end
    for _, r in ipairs(lookups) do
      for _, id in ipairs(r) do
        assert.equal(lock_read_at[r[1]], lock_read_at[id],
                     "the lock reads of one lookup (" .. table.concat(r, ",") .. ") not in one MGET")
      end
    end
    assert.is_true(#lock_reads <= #lookups, #lock_reads .. " lock reads for " .. #lookups .. " lookups")
    -- our own count of the lookups agrees with Redis's
    local info1 = H.info_fields(c:call("INFO"))
    assert.equal(#lookups, info1.store_read_batches_total - info0.store_read_batches_total)
    assert.equal(4, info1.store_batched_reads_total - info0.store_batched_reads_total)
    -- Stores: every key in exactly one batch script call (2 keys per fill:
    -- entry, lock). How many calls depends on when the fetches end (the
    -- fetch runner's Lua time per loop turn); that a turn's stores are one
    -- call is checked without timing in tests/c/test_store_batch.c.
    local stored = {}
    for _, a in ipairs(stores) do
      local nkeys = tonumber(a[2])
      assert.is_true(nkeys >= 2 and nkeys % 2 == 0, "EVALSHA with " .. a[2] .. " keys")
      for i = 3, 2 + nkeys, 2 do
        local id = entry(a[i])
        assert.is_nil(stored[id], tostring(id) .. " stored twice")
        stored[id] = true
      end
    end
    for _, id in ipairs(ids) do assert.is_true(stored[id], id .. " not in a store script") end
    assert.is_true(#stores >= 1 and #stores <= #ids, #stores .. " store scripts for 4 keys")
    m:close()
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
