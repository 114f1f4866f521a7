-- tests/integration/write_behind_spec.lua -- write-behind policies (issue 9):
-- SET/DEL queue the write in a Redis Stream, then write the cache; every
-- instance flushes the queue to the origin in batches through write_batch,
-- with coalescing, retries, dead letters (WRITES ns [RETRY]), takeover of a
-- dead instance's batch (XAUTOCLAIM), and a flush on SIGTERM.
--   busted --lua=lua5.4 tests/integration/write_behind_spec.lua
-- The origin's POST /kv/_batch applies a JSON list of {op, id, value} to its
-- /kv store and logs each batch (GET /_kv: values, writes, batches); its
-- fault mode (/_mode, prefix /kv/_batch) makes batches fail or hang.
local H = require "tests.helpers.harness"

local errtext = H.errtext

-- wb: the write_behind table's fields; each test's namespace sets its own
-- short delay and claim_after, so nothing waits for the defaults.
local function wb_policy(kv, wb, fields)
  return string.format([[
local json = require "cjson"
local KV = %q
return {
  ttl = 60,
  l1_ttl = 0,
  %s
  write_behind = { %s },
  fetch = function(id, ctx)
    local res = ctx.http.get(KV .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
  write_batch = function(items, ctx)
    local res = ctx.http.request{ method = "POST", url = KV .. "_batch", body = json.encode(items),
                                  headers = { ["Content-Type"] = "application/json" } }
    if res.status >= 300 then error("origin said " .. res.status) end
  end,
}
]], kv, fields or "", wb)
end

-- {field = value} of a WRITES reply (a flat array of pairs in RESP2).
local function writes(srv, ns)
  local v = srv:call("WRITES", ns)
  assert.is_table(v, "WRITES " .. ns .. ": " .. tostring(v and v.err or v))
  local t = {}
  for i = 1, #v, 2 do t[v[i]] = v[i + 1] end
  return t
end

describe("write-behind", function()
  local redis, origin, A, B

  local function kv_state()
    local st, body = origin:get("/_kv")
    assert.equal(200, st)
    return H.json_decode(body)
  end

  local function set_mode(mode, hang)
    local st = H.http{ url = origin.url .. "/_mode", method = "POST",
                       body = H.json_encode{ mode = mode, hang = hang or 1.5, prefix = "/kv/_batch" } }
    assert.equal(200, st)
  end

  -- the batches (and their items) of namespace-prefixed ids "p..."
  local function batches_of(prefix)
    local out = {}
    for _, b in ipairs(kv_state().batches) do
      if #b > 0 and b[1].id:sub(1, #prefix) == prefix then out[#out + 1] = b end
    end
    return out
  end

  -- writes at the origin per id starting with prefix: {id = count}
  local function write_counts(prefix)
    local n = {}
    for _, w in ipairs(kv_state().writes) do
      if w[2]:sub(1, #prefix) == prefix then n[w[2]] = (n[w[2]] or 0) + 1 end
    end
    return n
  end

  local function metric(srv, ns, result)
    local body = srv:metrics()
    return tonumber(body:match('luacached_writes_total{ns="' .. ns .. '",mode="behind",result="'
      .. result .. '"} (%d+)')) or 0
  end

  local dir, kv
  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    kv = origin.url .. "/kv/"
    dir = H.write_policies{
      wbc = wb_policy(kv, "delay = 0.3, batch = 500, claim_after = 5"),
      wbr = wb_policy(kv, "delay = 0.1, batch = 50, max_retries = 100, claim_after = 5"),
      wbd = wb_policy(kv, "delay = 0.1, batch = 50, max_retries = 2, claim_after = 5"),
      wb2 = wb_policy(kv, "delay = 0.2, batch = 20, claim_after = 5"),
      wbz = wb_policy(kv, "delay = 0.1, claim_after = 5"),
      wbs = wb_policy(kv, "delay = 0.1, batch = 50, claim_after = 0.3", "fetch_timeout = 3,"),
    }
    A = H.start_server{ redis_port = redis.port, policies_dir = dir, metrics_port = true }
    B = H.start_server{ redis_port = redis.port, policies_dir = dir, metrics_port = true }
  end)

  teardown(function()
    H.cleanup()
  end)

  before_each(function()
    set_mode("ok")
  end)

  it("10,000 SETs over 100 ids arrive coalesced: the last value per id, batches of at most batch", function()
    local c = A:client(20)
    local cmds, last = {}, {}
    for i = 1, 10000 do
      local id = "c" .. (i % 100)
      cmds[i] = { "SET", "wbc:" .. id, "v" .. i }
      last[id] = "v" .. i
    end
    for _, r in ipairs(c:pipeline(cmds)) do assert.equal("OK", r[1]) end
    -- the cache has the last value at once
    assert.equal(last.c7, A:call("GET", "wbc:c7"))
    H.wait_until(function()
      local values = kv_state().values
      for id, v in pairs(last) do if values[id] ~= v then return false end end
      return true
    end, 15, "the origin has the last value of every id")
    H.wait_until(function() return writes(A, "wbc").queued == 0 end, 5, "queue empty")
    local items = 0
    local batches = batches_of("c")
    for _, b in ipairs(batches) do
      assert.is_true(#b <= 500, "a batch of " .. #b)
      items = items + #b
    end
    -- both instances flush: the sum is what reached the origin
    assert.is_true(items < 4000, "coalescing: " .. items .. " writes for 10,000 SETs")
    assert.is_true(items >= 100)
    assert.equal(items, metric(A, "wbc", "ok") + metric(B, "wbc", "ok"))
    assert.equal(10000, metric(A, "wbc", "queued"))
  end)

  it("DEL queues a delete and removes the cached entry", function()
    assert.equal("OK", A:call("SET", "wbc:gone", "x"))
    H.wait_until(function() return kv_state().values.gone == "x" end, 5, "set written")
    assert.equal(1, A:call("DEL", "wbc:gone"))
    -- read before the delete is flushed: refilled from the origin's old value
    local early = A:call("GET", "wbc:gone")
    H.wait_until(function() return kv_state().values.gone == nil end, 5, "delete written")
    -- once the delete landed, the entry is dropped again
    H.wait_until(function() return A:call("GET", "wbc:gone") == nil end, 2,
      "not cached after the delete landed (read early: " .. tostring(early) .. ")")
    assert.is_nil(B:call("GET", "wbc:gone"))
  end)

  it("SET NX, XX, GET and KEEPTTL are refused: the queue, not the cache, decides", function()
    for _, opt in ipairs{ "NX", "XX", "GET", "KEEPTTL" } do
      local v = A:call("SET", "wbc:opt", "x", opt)
      assert.is_table(v, opt)
      assert.equal("ERR SET NX, XX, GET and KEEPTTL are not supported for namespace 'wbc': its policy "
        .. "writes behind to the origin", v.err)
    end
    assert.equal("OK", A:call("SET", "wbc:opt", "x", "EX", "60"))
  end)

  it("two instances flush disjoint work: no write is sent twice", function()
    local ca, cb = A:client(10), B:client(10)
    local ta, tb = {}, {}
    for i = 1, 400 do
      local cmd = { "SET", "wb2:d" .. i, "v" .. i }
      if i % 2 == 0 then ta[#ta + 1] = cmd else tb[#tb + 1] = cmd end
    end
    for _, r in ipairs(ca:pipeline(ta)) do assert.equal("OK", r[1]) end
    for _, r in ipairs(cb:pipeline(tb)) do assert.equal("OK", r[1]) end
    H.wait_until(function()
      local n = 0
      for _ in pairs(write_counts("d")) do n = n + 1 end
      return n == 400
    end, 10, "all 400 ids written")
    for id, n in pairs(write_counts("d")) do assert.equal(1, n, id .. " written " .. n .. " times") end
    local a, b = metric(A, "wb2", "ok"), metric(B, "wb2", "ok")
    assert.equal(400, a + b)
    assert.is_true(a > 0 and b > 0, "both flushed: " .. a .. " and " .. b)
    for _, bt in ipairs(batches_of("d")) do assert.is_true(#bt <= 20) end
  end)

  it("a write_batch slower than claim_after stays with its instance: no write twice", function()
    set_mode("hang", 0.8)
    local c, sets = A:client(5), {}
    for i = 1, 10 do sets[i] = { "SET", "wbs:s" .. i, "v" .. i } end
    for _, r in ipairs(c:pipeline(sets)) do assert.equal("OK", r[1]) end
    c:close()
    H.wait_until(function() return #batches_of("s") >= 1 end, 5, "the slow batch applied")
    set_mode("ok")
    H.wait_until(function() return writes(A, "wbs").queued == 0 end, 5, "queue empty")
    -- had another instance taken the batch over (after 0.3 s idle), its
    -- copy, hung 0.8 s too, would land by now
    H.sleep(0.5)
    for id, n in pairs(write_counts("s")) do assert.equal(1, n, id .. " written " .. n .. " times") end
    -- no batch applied twice: the batches hold the ten writes once (a
    -- flush tick of A or B may fall between the ten appends and split them)
    local applied = 0
    for _, bt in ipairs(batches_of("s")) do applied = applied + #bt end
    assert.equal(10, applied)
  end)

  it("the origin down for 10 s: batches are retried with backoff and land after it recovers", function()
    set_mode("error")
    local down_at = H.now()
    for i = 1, 30 do assert.equal("OK", A:call("SET", "wbr:r" .. i, "v" .. i)) end
    H.wait_until(function()
      return metric(A, "wbr", "error") + metric(B, "wbr", "error") >= 60
    end, 5, "at least two failed attempts")
    assert.equal(30, writes(A, "wbr").queued)
    assert.is_nil(kv_state().values.r1)
    -- the writes wait through the outage: none lands, none is given up
    while H.now() - down_at < 10 do
      assert.is_nil(kv_state().values.r1)
      assert.equal(0, writes(A, "wbr").dead_letters)
      H.sleep(0.5)
    end
    set_mode("ok")
    -- backoff from delay 0.1 s doubling: the next retry is at most ~6.4 s away
    H.wait_until(function()
      local values = kv_state().values
      for i = 1, 30 do if values["r" .. i] ~= "v" .. i then return false end end
      return true
    end, 10, "every write landed")
    H.wait_until(function() return writes(A, "wbr").queued == 0 end, 5, "queue empty")
    assert.equal(0, writes(A, "wbr").dead_letters)
  end)

  it("past max_retries a write goes to the dead letters; WRITES shows it and RETRY replays it", function()
    set_mode("error")
    assert.equal("OK", A:call("SET", "wbd:x", "dead value"))
    local w = H.wait_until(function()
      local t = writes(A, "wbd")
      return t.dead_letters == 1 and t
    end, 5, "one dead letter")
    assert.equal(0, w.queued)
    assert.equal(1, #w.dead)
    local e = w.dead[1]
    assert.equal("set", e[2])
    assert.equal("x", e[3])
    assert.equal("dead value", e[4])
    assert.matches("write_batch failed: .*origin said 500", e[5])
    assert.equal(3, e[6]) -- the first attempt and max_retries = 2
    assert.equal(1, metric(A, "wbd", "dead_letter") + metric(B, "wbd", "dead_letter"))
    local info = (A:call("STATS", "wbd"))
    assert.matches("writes_wbd:queued=1,queue_error=0,", info, 1, true)
    assert.matches('luacached_write_dead_letters{ns="wbd"} 1', (H.wait_until(function()
      local m = A:metrics()
      return m:find('luacached_write_dead_letters{ns="wbd"} 1', 1, true) and m
    end, 5, "dead letters gauge")), 1, true)
    set_mode("ok")
    assert.equal(1, A:call("WRITES", "wbd", "RETRY"))
    H.wait_until(function() return kv_state().values.x == "dead value" end, 5, "replayed")
    H.wait_until(function() return writes(A, "wbd").dead_letters == 0 end, 5, "no dead letters")
    assert.equal(0, A:call("WRITES", "wbd", "retry"))
  end)

  it("WRITES refuses other namespaces and bad arguments", function()
    assert.matches("unknown namespace 'nope'", errtext(A:call("WRITES", "nope")))
    assert.matches("syntax error", errtext(A:call("WRITES", "wbd", "AGAIN")))
  end)

  it("a queue that refuses the append: the SET fails and the cache keeps the old value", function()
    assert.equal("OK", A:call("SET", "wbz:k", "old"))
    -- the queue's key becomes a string: XADD answers WRONGTYPE
    local q = "lc:{#wb:wbz}:q"
    H.wait_until(function() return H.call(redis.port, "XLEN", q) == 0 end, 5, "flushed")
    assert.equal(1, H.call(redis.port, "DEL", q))
    assert.equal("OK", H.call(redis.port, "SET", q, "not a stream"))
    local text = errtext(A:call("SET", "wbz:k", "new"))
    assert.matches("^ERR write queue unavailable: WRONGTYPE", text)
    assert.equal("old", A:call("GET", "wbz:k"))
    assert.equal("old", B:call("GET", "wbz:k"))
    local dt = errtext(A:call("DEL", "wbz:k"))
    assert.matches("^ERR write queue unavailable: WRONGTYPE", dt)
    assert.equal("old", A:call("GET", "wbz:k"))
    assert.equal(1, H.call(redis.port, "DEL", q))
    -- the group went with the key: the flusher creates it again
    assert.equal("OK", A:call("SET", "wbz:k", "newer"))
    H.wait_until(function() return kv_state().values.k == "newer" end, 5, "written after repair")
  end)

  it("Redis down: SET answers the queue error", function()
    local r2 = H.start_redis()
    local C = H.start_server{ redis_port = r2.port, policies_dir = dir }
    assert.equal("OK", C:call("SET", "wbz:down", "1"))
    r2:stop("KILL")
    H.wait_until(function()
      local v = C:call("SET", "wbz:down", "2")
      return type(v) == "table" and v.err and v
    end, 5, "SET fails")
    assert.matches("^ERR write queue unavailable", errtext(C:call("SET", "wbz:down", "2")))
    H.assert_clean_exit(C)
  end)

  it("kill -9 mid-batch: another instance takes the batch over, nothing is lost", function()
    set_mode("hang", 1.5)
    -- a namespace only K1 and K2 flush
    local dk = H.write_policies{
      wbk = wb_policy(kv, "delay = 0.1, batch = 50, claim_after = 1", "fetch_timeout = 5,"),
    }
    local K1 = H.start_server{ redis_port = redis.port, policies_dir = dk }
    local c = K1:client(10)
    local cmds = {}
    for i = 1, 100 do cmds[i] = { "SET", "wbk:kk" .. i, "v" .. i } end
    for _, r in ipairs(c:pipeline(cmds)) do assert.equal("OK", r[1]) end
    H.wait_until(function() return writes(K1, "wbk").pending == 50 end, 5, "a batch in flight")
    K1:kill()
    set_mode("ok")
    local K2 = H.start_server{ redis_port = redis.port, policies_dir = dk }
    H.wait_until(function()
      local values = kv_state().values
      for i = 1, 100 do if values["kk" .. i] ~= "v" .. i then return false end end
      return true
    end, 10, "every write reached the origin")
    H.wait_until(function() return writes(K2, "wbk").queued == 0 end, 5, "queue empty")
    -- the hung request finishes too (applied late): duplicates only of the
    -- killed batch, at most twice each
    H.wait_until(function()
      local total = 0
      for _, n in pairs(write_counts("kk")) do total = total + n end
      return total >= 150
    end, 5, "the hung batch applied (100 writes and the killed batch's 50 again)")
    local twice = 0
    for id, n in pairs(write_counts("kk")) do
      assert.is_true(n <= 2, id .. " written " .. n .. " times")
      if n == 2 then twice = twice + 1 end
    end
    assert.equal(50, twice, "duplicates: the killed batch only")
    -- the killed instance's consumer, nothing pending now, leaves the group
    -- once idle for 4 claim_after
    local function consumers()
      local rows = H.call(redis.port, "XINFO", "CONSUMERS", "lc:{#wb:wbk}:q", "luacached")
      return type(rows) == "table" and #rows or -1
    end
    H.wait_until(function() return consumers() == 1 end, 10, "the dead consumer removed")
    H.wait_until(function() return K2:log():find("removed 1 consumer", 1, true) end, 2, "logged")
    H.assert_clean_exit(K2)
  end)

  it("SIGTERM flushes what is queued before exiting", function()
    local d2 = H.write_policies{ wbt = wb_policy(kv, "delay = 60, claim_after = 60") }
    local T = H.start_server{ redis_port = redis.port, policies_dir = d2,
                              extra_args = { "--shutdown-grace", "3000" } }
    for i = 1, 20 do assert.equal("OK", T:call("SET", "wbt:t" .. i, "v" .. i)) end
    assert.is_nil(kv_state().values.t1)
    H.assert_clean_exit(T)
    local values = kv_state().values
    for i = 1, 20 do assert.equal("v" .. i, values["t" .. i]) end
  end)

  -- review of the write-behind merge: each of these failed before its fix
  it("a namespace removed while its write waits does not hold SIGTERM for the grace", function()
    local d = H.write_policies{ wbx = wb_policy(kv, "delay = 60, claim_after = 60") }
    local X = H.start_server{ redis_port = redis.port, policies_dir = d,
                              extra_args = { "--shutdown-grace", "5000", "--reload-grace", "0" } }
    assert.equal("OK", X:call("SET", "wbx:a", "1"))
    os.remove(d .. "/wbx.lua")
    assert.equal("OK", X:call("RELOAD"))
    local t0 = H.now()
    H.assert_clean_exit(X)
    assert.is_true(H.now() - t0 < 2, "SIGTERM took " .. (H.now() - t0) .. " s")
    -- the write waits in Redis for an instance that serves the namespace
    assert.equal(1, H.call(redis.port, "XLEN", "lc:{#wb:wbx}:q"))
  end)

  it("a batch failing after a reload without write_behind stays queued, not dead", function()
    -- write_batch times out (fetch_timeout 1 s) on an origin that hangs 3 s
    local d = H.write_policies{ wby = wb_policy(kv, "delay = 0.1, max_retries = 5, claim_after = 5",
                                                "fetch_timeout = 1,") }
    local Y = H.start_server{ redis_port = redis.port, policies_dir = d }
    set_mode("hang", 3)
    assert.equal("OK", Y:call("SET", "wby:a", "1"))
    H.wait_until(function() return writes(Y, "wby").pending == 1 end, 5, "the batch in flight")
    H.write_file(d .. "/wby.lua", H.simple_policy(kv, "ttl = 60"))
    assert.equal("OK", Y:call("RELOAD"))
    H.wait_until(function() return Y:log():find("kept for a version with write_behind", 1, true) end,
      5, "the failed batch kept")
    assert.equal(0, H.call(redis.port, "XLEN", "lc:{#wb:wby}:dead"))
    assert.equal(1, H.call(redis.port, "XLEN", "lc:{#wb:wby}:q"))
    H.assert_clean_exit(Y)
  end)

  it("a dead-letter move that fails is retried with backoff, without running write_batch again", function()
    local d = H.write_policies{ wbv = wb_policy(kv, "delay = 0.2, max_retries = 0, claim_after = 5") }
    local V = H.start_server{ redis_port = redis.port, policies_dir = d, metrics_port = true }
    assert.equal("OK", H.call(redis.port, "SET", "lc:{#wb:wbv}:dead", "not a stream"))
    set_mode("error")
    assert.equal("OK", V:call("SET", "wbv:a", "1"))
    -- the move is retried (backoff from 0.2 s), write_batch is not
    H.wait_until(function()
      local _, n = V:log():gsub("moving 1 writes to the dead letters failed", "")
      return n >= 3
    end, 5, "the failed move retried twice")
    assert.equal(1, metric(V, "wbv", "error"), "write_batch ran again")
    assert.equal(1, H.call(redis.port, "DEL", "lc:{#wb:wbv}:dead"))
    H.wait_until(function() return H.call(redis.port, "XLEN", "lc:{#wb:wbv}:dead") == 1 end, 5,
      "moved once the dead-letter key is a stream again")
    assert.equal(1, metric(V, "wbv", "error"))
    set_mode("ok")
    H.assert_clean_exit(V)
  end)

  it("--check reports bad write_behind fields with file:line", function()
    local bad = H.write_policies{
      w1 = "return {\n  fetch = print,\n  write_behind = {\n    delay = -1,\n  },\n  write_batch = print,\n}\n",
      w2 = "return {\n  fetch = print,\n  write_behind = { delay = 1 },\n}\n",
    }
    local rc, out = H.run_luacached{ "--check", "--policies", bad }
    assert.equal(1, rc)
    assert.matches("w1%.lua:4: write_behind%.delay must be a number of seconds above 0 and at most 86400 %(got %-1%)", out)
    assert.matches("w2%.lua:3: write_behind needs write_batch", out)
  end)
end)

describe("write-behind on a Redis Cluster", function()
  local C = require "tests.helpers.cluster"

  it("queues, flushes and dead-letters through the queue's master", function()
    local origin = H.start_origin()
    local cl = C.start_cluster{ masters = 3, replicas = 0 }
    local kv = origin.url .. "/kv/"
    local dir = H.write_policies{
      wbq = wb_policy(kv, "delay = 0.1, batch = 10, max_retries = 0, claim_after = 5"),
    }
    local A = C.start_server{ redis_url = cl.url, policies_dir = dir }
    for i = 1, 30 do assert.equal("OK", A:call("SET", "wbq:q" .. i, "v" .. i)) end
    H.wait_until(function()
      local _, body = origin:get("/_kv")
      local values = H.json_decode(body).values
      for i = 1, 30 do if values["q" .. i] ~= "v" .. i then return false end end
      return true
    end, 5, "every write landed")
    assert.equal("v7", A:call("GET", "wbq:q7"))
    -- the queue lives on its slot's master, the dead letters beside it
    local q = "lc:{#wb:wbq}:q"
    assert.equal(0, cl:master_of(q):call("XLEN", q))
    H.http{ url = origin.url .. "/_mode", method = "POST",
            body = H.json_encode{ mode = "error", prefix = "/kv/_batch" } }
    assert.equal("OK", A:call("SET", "wbq:bad", "x"))
    H.wait_until(function() return writes(A, "wbq").dead_letters == 1 end, 5, "dead letter")
    assert.equal(1, cl:master_of(q):call("XLEN", "lc:{#wb:wbq}:dead"))
    H.http{ url = origin.url .. "/_mode", method = "POST", body = H.json_encode{ mode = "ok" } }
    assert.equal(1, A:call("WRITES", "wbq", "RETRY"))
    H.wait_until(function()
      local _, body = origin:get("/_kv")
      return H.json_decode(body).values.bad == "x"
    end, 5, "replayed")
    H.assert_clean_exit(A)
  end)
end)

