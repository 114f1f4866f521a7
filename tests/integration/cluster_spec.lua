-- tests/integration/cluster_spec.lua -- luacached on a Redis Cluster (SPEC §9,
-- issue 8): read-through, stampede protection, invalidation, PURGE,
-- PURGETAG and FLUSHNS with the same guarantees as on one node, and
-- failover, a lost master and its return under a GET load.
--   busted --lua=lua5.4 tests/integration/cluster_spec.lua
-- One cluster of 3 masters with a replica each (tests/helpers/cluster.lua)
-- and two luacached instances (A and B) on it serve the whole file. Tests
-- use their own namespaces, so STATS counters can be asserted exactly; the
-- origin's counters are reset before each test. The last four tests change
-- the cluster under a GET load, each on shards found by slot when it runs:
-- slots migrated from the shard of slot 100 to that of slot 8000, a CLUSTER
-- FAILOVER (slot 100), a killed master (slot 8000), and a master stopped
-- with its replica (slot 16000). --cluster-require-full-coverage no lets
-- the other shards serve while one has no node at all.
-- Key layout (src/keys.h, prefix "lc"): entry lc:{NS:ID}, lock
-- lc:{NS:ID}:lock, tag set lc:#tag:TAG, generation lc:#gen:NS.
local H = require "tests.helpers.harness"
local C = require "tests.helpers.cluster"

local stats = H.ns_stats
local total = H.ns_total
-- The text of a reply that was not what a test wanted.
local function why(v) return tostring(type(v) == "table" and (v.err or v.n) or v) end

local function entry(key) return "lc:{" .. key .. "}" end

local function ids(prefix, n)
  local t = {}
  for i = 1, n do t[i] = prefix .. i end
  return t
end


local function backend_up(srv) return H.info_fields(srv:call("INFO")).backend_up end


describe("luacached on a Redis Cluster", function()
  local cl, origin, A, B
  local start_err -- why luacached did not start; every test then fails with it

  -- The node holding key now, or an error naming where the map puts it.
  local function holder(key)
    local m = cl:master_of(key)
    assert(m, "no master serves the slot of " .. key)
    return m
  end

  -- key exists on the master of its slot, on no other master.
  local function assert_stored_on_its_master(key)
    local m = holder(key)
    H.wait_until(function() return m:call("EXISTS", key) == 1 end, 2, key .. " stored on port " .. m.port)
    local n = 0
    for _, r in ipairs(cl:call_all("EXISTS", key)) do n = n + (r == 1 and 1 or 0) end
    assert.equal(1, n, key .. " exists on " .. n .. " masters")
    return m
  end

  -- Entry keys matching glob on every master: {[port] = count}, total.
  local function count_on_masters(glob)
    local per, sum = {}, 0
    for _, m in ipairs(cl:masters()) do
      local n = #m:call("KEYS", glob)
      per[m.port] = n
      sum = sum + n
    end
    return per, sum
  end

  -- How many distinct masters the entries of these keys live on.
  local function masters_spanned(keys)
    local seen, n = {}, 0
    for _, k in ipairs(keys) do
      local m = holder(entry(k))
      if not seen[m] then seen[m], n = true, n + 1 end
    end
    return n
  end

  setup(function()
    cl = C.start_cluster{ masters = 3, replicas = 1, args = { "--cluster-require-full-coverage", "no" } }
    origin = H.start_origin()
    local u = origin.url
    local w = u .. "/widgets/"
    local function pol(prefix, fields, suffix)
      return H.simple_policy(prefix, fields or "ttl = 60, l1_ttl = 0", suffix)
    end
    local dir = H.write_policies{
      rt = pol(w), spread = pol(w), mg = pol(w, "ttl = 60, l1_ttl = 0, negative_ttl = 60"),
      herd = pol(u .. "/slow/", "ttl = 30, l1_ttl = 0", "?delay=0.5"),
      many = pol(w, "ttl = 30, l1_ttl = 0, lock_timeout = 3"),
      -- values that change on every fetch, held in the in-process tier
      inv = H.simple_policy(u .. "/chaos/inv/", [[ttl = 60, l1_ttl = 30,
  on_event = function(name, data, ctx) return { keys = { "inv:" .. data } } end]]),
      pg = pol(w), pgf = pol(w), pg2 = pol(w), sc = pol(w),
      tga = H.tagged_policy(w, "l1_ttl = 0"), tgb = H.tagged_policy(w, "l1_ttl = 0"),
      fl = pol(w), fl2 = pol(w), fll1 = pol(w, "ttl = 60, l1_ttl = 30"),
      mv = pol(u .. "/chaos/mv/", "ttl = 300, l1_ttl = 0"),
      fo = pol(u .. "/chaos/fo/", "ttl = 300, l1_ttl = 0"),
      fk = pol(u .. "/chaos/fk/", "ttl = 300, l1_ttl = 0"),
      fd = pol(u .. "/chaos/fd/", "ttl = 300, l1_ttl = 0"),
    }
    local ok, err = pcall(function()
      A = C.start_server{ redis_url = cl.url, policies_dir = dir, extra_args = { "--backend-timeout", "1000" } }
      B = C.start_server{ redis_url = cl.url, policies_dir = dir, extra_args = { "--backend-timeout", "1000" } }
    end)
    if not ok then start_err = err end
  end)

  teardown(H.cleanup)

  before_each(function()
    if start_err then error(start_err, 0) end
    origin:reset()
  end)

  it("comes up on the cluster URL with the backend up on both instances", function()
    H.wait_until(function() return backend_up(A) == 1 and backend_up(B) == 1 end, 10, "backend_up:1 on A and B")
    assert.equal("PONG", (A:call("PING")))
  end)

  it("reads through: a miss fills from the origin into the key's master, then hits on both instances", function()
    local c = A:client()
    local v, kind = c:call("GET", "rt:1")
    assert.equal("bulk", kind, why(v))
    assert.equal("widget 1", H.json_decode(v).name)
    assert.equal(1, origin:count("/widgets/1"))
    local m = assert_stored_on_its_master(entry("rt:1"))
    assert.equal(0, m:call("EXISTS", entry("rt:1") .. ":lock"), "the fill lock is gone")
    assert.equal(v, (c:call("GET", "rt:1")))
    assert.equal(v, (B:call("GET", "rt:1")))
    assert.equal(1, origin:count("/widgets/1"))
    assert.equal(1, stats(A, "rt").misses)
    assert.equal(1, stats(A, "rt").hits_redis)
    assert.equal(1, stats(B, "rt").hits_redis)
    -- PEEK and PTTL read the same entry
    local p = B:call("PEEK", "rt:1")
    assert.equal("fresh", p[1])
    assert.equal(v, p[3])
    assert.is_true(B:call("PTTL", "rt:1") > 50000)
    c:close()
  end)

  it("spreads entries over all three masters, each on the master of its slot", function()
    local list = ids("spread:", 30)
    local c = A:client()
    for _, k in ipairs(list) do
      local v = c:call("GET", k)
      assert.equal("widget " .. k:match(":(.*)"), H.json_decode(v).name)
    end
    c:close()
    local per_master = {}
    for _, k in ipairs(list) do
      local m = assert_stored_on_its_master(entry(k))
      per_master[m.port] = (per_master[m.port] or 0) + 1
    end
    local masters = cl:masters()
    assert.equal(3, #masters)
    for _, m in ipairs(masters) do
      assert.is_true((per_master[m.port] or 0) > 0, "no entry on the master on port " .. m.port)
    end
    assert.equal(30, origin:stats().total)
    assert.equal(30, stats(A, "spread").stores)
  end)

  it("SET NX/XX/GET/KEEPTTL and EXISTS on keys of every master, decided on the key's master", function()
    local list = ids("sc:", 12)
    assert.equal(3, masters_spanned(list))
    local a, b = A:client(), B:client()
    for _, k in ipairs(list) do
      assert.equal("OK", (a:call("SET", k, "a", "NX")), k)
      assert.is_nil((b:call("SET", k, "b", "NX")), k) -- B sees A's value: not stored
      assert.equal("a", (b:call("SET", k, "b", "XX", "GET")), k)
      assert.equal("b", (a:call("SET", k, "c", "KEEPTTL", "GET")), k)
      assert_stored_on_its_master(entry(k))
    end
    assert.equal(12, (b:call("EXISTS", table.unpack(list))))
    assert.equal("c", (b:call("GET", list[1])))
    assert.equal(0, origin:stats().total)
    a:close()
    b:close()
  end)

  it("MGET across slots answers every key in order, nil for a not-found, then all hits", function()
    local keys = ids("mg:", 20)
    table.insert(keys, 8, "mg:missing-7")
    assert.equal(3, masters_spanned(keys))
    for i = 1, 5 do assert.is_string(A:call("GET", "mg:" .. i)) end
    origin:reset()
    for round = 1, 2 do
      local r, kind = B:call("MGET", table.unpack(keys))
      assert.equal("array", kind, why(r))
      assert.equal(#keys, r.n)
      for i, k in ipairs(keys) do
        if k == "mg:missing-7" then
          assert.is_nil(r[i], "round " .. round .. ": " .. k)
        else
          assert.equal("widget " .. k:match(":(.*)"), H.json_decode(r[i]).name, "round " .. round .. ": reply " .. i)
        end
      end
      -- the 15 cold keys and the not-found were fetched once, in the first round
      assert.equal(16, origin:stats().total, "round " .. round)
    end
  end)

  it("200 concurrent GETs of a cold key over two instances: one origin request, one value", function()
    local n = 200
    local conns = {}
    for i = 1, n do conns[i] = H.connect((i % 2 == 1 and A or B).port, 10) end
    local t0 = H.now()
    for i = 1, n do conns[i]:send("GET", "herd:42") end
    local values = {}
    for i, c in ipairs(conns) do
      local v, kind = c:read_reply(5)
      assert.equal("bulk", kind, "reply " .. i .. ": " .. why(v))
      values[i] = v
    end
    local dt = H.now() - t0
    H.close_clients(conns)
    for i = 2, n do assert.equal(values[1], values[i], "reply " .. i) end
    assert.equal(42, H.json_decode(values[1]).id)
    assert.equal(1, origin:count("/slow/42"))
    assert.equal(1, origin:stats().total)
    assert.is_true(dt < 0.5 + 1.5, string.format("200 GETs of a 500 ms origin took %.2f s", dt))
    assert.equal(1, total({ A, B }, "herd", "fetches_ok"))
    assert.equal(198, total({ A, B }, "herd", "coalesced"))
    assert.equal(1, total({ A, B }, "herd", "lock_waits"))
    assert.equal(0, total({ A, B }, "herd", "lock_takeovers"))
    assert.equal(1, total({ A, B }, "herd", "stores"))
    local m = assert_stored_on_its_master(entry("herd:42"))
    assert.equal(0, m:call("EXISTS", entry("herd:42") .. ":lock"))
  end)

  it("30 keys over all slots, each missed on both instances at once: one fetch each", function()
    local keys = ids("many:", 30)
    assert.equal(3, masters_spanned(keys))
    local ca, cb = H.open_clients(A.port, #keys, 10), H.open_clients(B.port, #keys, 10)
    local t0 = H.now()
    for i, k in ipairs(keys) do
      ca[i]:send("GET", k)
      cb[i]:send("GET", k)
    end
    for i, k in ipairs(keys) do
      local va, ka = ca[i]:read_reply(5)
      local vb, kb = cb[i]:read_reply(5)
      assert.equal("bulk", ka, k .. " on A: " .. why(va))
      assert.equal("bulk", kb, k .. " on B: " .. why(vb))
      assert.equal("widget " .. i, H.json_decode(va).name)
      assert.equal(va, vb)
    end
    local dt = H.now() - t0
    H.close_clients(ca)
    H.close_clients(cb)
    assert.equal(#keys, origin:stats().total)
    assert.equal(#keys, total({ A, B }, "many", "fetches_ok"))
    assert.equal(0, total({ A, B }, "many", "lock_takeovers"))
    -- a waiter woken by the broadcast, not by lock_timeout (3 s)
    assert.is_true(dt < 2, string.format("the 60 GETs took %.2f s", dt))
  end)

  it("DEL, SET, EVENT and PURGE on A reach B's in-process tier within 100 ms", function()
    local cb = B:client()
    local function in_b_tier(key)
      local v1 = cb:call("GET", key)
      local hits = stats(B, "inv").hits_l1
      assert.equal(v1, (cb:call("GET", key)))
      assert.equal(hits + 1, stats(B, "inv").hits_l1, key .. " answered from B's tier")
      return v1
    end
    local function b_sees(key, want, what)
      H.wait_until(function() return cb:call("GET", key) == want end, 0.1, "B sees " .. what)
    end
    assert.equal("key=inv:1 v=1", in_b_tier("inv:1"))
    assert.equal(1, A:call("DEL", "inv:1"))
    assert.equal(0, holder(entry("inv:1")):call("EXISTS", entry("inv:1")))
    b_sees("inv:1", "key=inv:1 v=2", "A's DEL")

    in_b_tier("inv:2")
    assert.equal("OK", A:call("SET", "inv:2", "set on A"))
    b_sees("inv:2", "set on A", "A's SET")

    in_b_tier("inv:3")
    assert.equal(1, A:call("EVENT", "inv", "touched", "3"))
    b_sees("inv:3", "key=inv:3 v=2", "A's EVENT")

    in_b_tier("inv:p4")
    assert.equal(1, A:call("PURGE", "inv:p*"))
    b_sees("inv:p4", "key=inv:p4 v=2", "A's PURGE")
    cb:close()
  end)

  describe("PURGE", function()
    it("counts exactly the entries matched on every master, and removes them from every master", function()
      local keys = ids("pgf:", 30)
      for _, k in ipairs(keys) do assert.is_string(A:call("GET", k)) end
      for _, k in ipairs(keys) do assert_stored_on_its_master(entry(k)) end
      local per, sum = count_on_masters("lc:{pgf:*}")
      assert.equal(30, sum)
      for port, n in pairs(per) do assert.is_true(n > 0, "no pgf entry on port " .. port) end
      assert.equal(30, B:call("PURGE", "pgf:*"))
      local _, left = count_on_masters("lc:{pgf:*}")
      assert.equal(0, left)
      assert.equal(30, stats(B, "pgf").invalidations_purge)
      origin:reset()
      assert.is_string(A:call("GET", "pgf:7"))
      assert.equal(1, origin:count("/widgets/7"))
    end)

    it("walks 1500 matches among 2000 keys over three masters and leaves the others", function()
      local c = A:client(30)
      local cmds = {}
      for i = 1, 1500 do cmds[#cmds + 1] = { "SET", "pg:a:" .. i, "v" } end
      for i = 1, 400 do cmds[#cmds + 1] = { "SET", "pg:b:" .. i, "v" } end
      for i = 1, 100 do cmds[#cmds + 1] = { "SET", "pg2:a:" .. i, "v" } end
      for i = 1, #cmds, 500 do
        local part = { table.unpack(cmds, i, math.min(i + 499, #cmds)) }
        for n, r in ipairs(c:pipeline(part)) do assert.equal("OK", r[1], "SET #" .. (i + n - 1)) end
      end
      c:close()
      local per, sum = count_on_masters("lc:{pg:a:*}")
      assert.equal(1500, sum)
      for port, n in pairs(per) do assert.is_true(n > 0, "no pg:a entry on port " .. port) end
      assert.equal(1500, A:call("PURGE", "pg:a:*"))
      assert.equal(0, select(2, count_on_masters("lc:{pg:a:*}")))
      assert.equal(400, select(2, count_on_masters("lc:{pg:b:*}")))
      assert.equal(100, select(2, count_on_masters("lc:{pg2:a:*}")))
      assert.equal(0, A:call("PURGE", "pg:a:*"))
    end)
  end)

  it("PURGETAG counts exactly a tag spanning two namespaces and several masters", function()
    -- owner_id is id % 10: owner:1 tags 1, 11, 21 of both namespaces
    local tagged_keys = {}
    for _, id in ipairs({ "1", "11", "21" }) do
      tagged_keys[#tagged_keys + 1] = "tga:" .. id
      tagged_keys[#tagged_keys + 1] = "tgb:" .. id
    end
    assert.is_true(masters_spanned(tagged_keys) >= 2, "the owner:1 entries all live on one master")
    for _, id in ipairs({ "1", "11", "21", "2" }) do
      assert.is_string(A:call("GET", "tga:" .. id))
      assert.is_string(B:call("GET", "tgb:" .. id))
    end
    local tag = holder("lc:#tag:owner:1")
    H.wait_until(function() return tag:call("SCARD", "lc:#tag:owner:1") == 6 end, 2,
      "6 entries indexed under owner:1 on port " .. tag.port)
    origin:reset()
    assert.equal(6, A:call("PURGETAG", "owner:1"))
    assert.equal(0, A:call("PURGETAG", "owner:1"))
    for _, k in ipairs(tagged_keys) do
      assert.equal(0, holder(entry(k)):call("EXISTS", entry(k)), k .. " purged")
    end
    assert.equal(0, tag:call("EXISTS", "lc:#tag:owner:1"))
    assert.equal(1, holder(entry("tga:2")):call("EXISTS", entry("tga:2")))
    assert.equal(1, holder(entry("tgb:2")):call("EXISTS", entry("tgb:2")))
    assert.equal(3, stats(A, "tga").invalidations_tag)
    assert.equal(3, stats(A, "tgb").invalidations_tag)
    assert.is_string(B:call("GET", "tgb:11"))
    assert.equal(1, origin:count("/widgets/11"))
    assert.is_string(B:call("GET", "tga:2"))
    assert.equal(0, origin:count("/widgets/2"))
  end)

  it("FLUSHNS turns every entry of the namespace into a miss, on both instances and B's tier", function()
    local keys = ids("fl:", 12)
    assert.equal(3, masters_spanned(keys))
    for _, k in ipairs(keys) do assert.is_string(A:call("GET", k)) end
    assert.is_string(A:call("GET", "fl2:1"))
    assert.is_string(B:call("GET", "fll1:1"))
    assert.is_string(B:call("GET", "fll1:1")) -- in B's tier now
    origin:reset()
    assert.equal("OK", A:call("FLUSHNS", "fl"))
    assert.equal(1, holder("lc:#gen:fl"):call("EXISTS", "lc:#gen:fl"))
    for i, k in ipairs(keys) do
      assert.is_string(((i % 2 == 0) and A or B):call("GET", k))
      assert.equal(1, origin:count("/widgets/" .. i), k .. " refetched once")
    end
    assert.is_string(A:call("GET", "fl2:1"))
    assert.equal(1, origin:count("/widgets/1"), "fl2:1 was a hit")
    assert.equal("OK", A:call("FLUSHNS", "fll1"))
    H.wait_until(function()
      assert.is_string(B:call("GET", "fll1:1"))
      return origin:count("/widgets/1") == 2
    end, 0.1, "B's tier dropped fll1:1 within 100 ms")
  end)

  -- The load of the failover tests: every key of ns on both instances, two
  -- connections each, every reply a value of its own key.
  local function load_of(ns, n)
    local keys, seen = {}, {}
    for i = 1, n do
      local k = ns .. ":" .. i
      keys[i] = { k, C.chaos_check(k, seen) }
    end
    return C.load{ ports = { A.port, B.port }, conns = 2, keys = keys }, seen
  end

  -- Fill every key once (v=1) and check the load sees them all as hits.
  local function warm(ld, origin_)
    ld:round()
    assert.equal(0, ld.errors, "errors while warming: " .. tostring(ld.first_error))
    ld:drive_until_all_hit(origin_, 3)
  end

  -- No wrong value; no version higher than the origin handed out.
  local function assert_no_wrong(ld, seen, ns)
    assert.equal(0, ld.nwrong, "wrong replies:\n" .. ld:wrong_text())
    for k, n in pairs(seen) do
      assert.is_true(n <= origin:count("/chaos/" .. ns .. "/" .. k:match(":(.*)")), k .. " answered v=" .. n)
    end
  end

  it("slots migrating under a GET load (ASK, then MOVED): no wrong value, all hits again within 10 s", function()
    local src, dst = cl:master_of_slot(100), cl:master_of_slot(8000)
    local ld, seen = load_of("mv", 30)
    warm(ld, origin)
    -- the slots of the load's entries on src, moved by hand so that load
    -- rounds run between the steps: while a slot is half moved, src
    -- answers -ASK for the keys already on dst
    local slots, moved = {}, {}
    for i = 1, 30 do
      local k = entry("mv:" .. i)
      if holder(k) == src then
        local s = cl:slot_of(k)
        if not slots[s] then slots[s], slots[#slots + 1] = true, s end
        moved[#moved + 1] = k
      end
    end
    assert.is_true(#slots > 0, "no load key on the source shard")
    local src_id, dst_id = src:call("CLUSTER", "MYID"), dst:call("CLUSTER", "MYID")
    local function ok(r, what)
      assert(r == "OK" or r == "NOKEY", what .. ": " .. why(r))
    end
    for _, s in ipairs(slots) do
      ok(dst:call("CLUSTER", "SETSLOT", s, "IMPORTING", src_id), "SETSLOT IMPORTING")
      ok(src:call("CLUSTER", "SETSLOT", s, "MIGRATING", dst_id), "SETSLOT MIGRATING")
    end
    ld:round()
    for n, s in ipairs(slots) do
      local keys = src:call("CLUSTER", "GETKEYSINSLOT", s, 100)
      for j = 1, keys.n or #keys do
        ok(src:call("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", keys[j]), "MIGRATE " .. keys[j])
      end
      -- half of the slots moved, the other half migrating: a round of each
      if n == #slots // 2 + 1 then ld:round() end
    end
    ld:round()
    -- the new owner first, then the old one, then the rest
    local order = { dst, src }
    for _, m in ipairs(cl:masters()) do if m ~= dst and m ~= src then order[#order + 1] = m end end
    for _, s in ipairs(slots) do
      for _, m in ipairs(order) do ok(m:call("CLUSTER", "SETSLOT", s, "NODE", dst_id), "SETSLOT NODE") end
    end
    cl:wait_ok(10)
    ld:drive_until_all_hit(origin, 10)
    assert_no_wrong(ld, seen, "mv")
    for _, k in ipairs(moved) do
      assert.equal(dst, holder(k))
      assert.equal(1, dst:call("EXISTS", k), k .. " on the new owner")
    end
    ld:close()
  end)

  it("CLUSTER FAILOVER under a GET load: no wrong value, all hits again within 10 s", function()
    local old = cl:master_of_slot(100)
    local ld, seen = load_of("fo", 30)
    warm(ld, origin)
    local on_shard = 0
    for i = 1, 30 do if holder(entry("fo:" .. i)) == old then on_shard = on_shard + 1 end end
    assert.is_true(on_shard > 0, "no load key on the shard failing over")
    local new = cl:start_failover(old)
    ld:drive_until(function() return new:call("ROLE")[1] == "master" end, 15,
      "replica on port " .. new.port .. " became master")
    -- from the switch on, within 10 s a whole round hits
    ld:drive_until_all_hit(origin, 10)
    cl:wait_ok(10)
    assert_no_wrong(ld, seen, "fo")
    -- writes go to the new master: a refill lands there
    local k
    for i = 1, 30 do if cl:master_of(entry("fo:" .. i)) == new then k = "fo:" .. i break end end
    assert.truthy(k, "no load key on the new master")
    assert.equal(1, A:call("DEL", k))
    assert.is_string(A:call("GET", k))
    H.wait_until(function() return new:call("EXISTS", entry(k)) == 1 end, 2, k .. " stored on the new master")
    ld:close()
    assert.equal(1, backend_up(A))
    assert.equal(1, backend_up(B))
  end)

  it("a master killed under a GET load: no wrong value, all hits again within 10 s of the promotion", function()
    local old = cl:master_of_slot(8000)
    local replica = cl:wait_replica(old)
    local ld, seen = load_of("fk", 30)
    warm(ld, origin)
    old:kill()
    ld:drive_until(function() return replica:call("ROLE")[1] == "master" end, 15,
      "replica on port " .. replica.port .. " promoted (node timeout 2 s)")
    ld:drive_until_all_hit(origin, 10)
    assert_no_wrong(ld, seen, "fk")
    ld:close()
    assert.equal(1, backend_up(A))
  end)

  it("a shard with no node left: its keys are fetched with no error, the others hit; it recovers", function()
    local m = cl:master_of_slot(16000)
    local ld, seen = load_of("fd", 30)
    warm(ld, origin)
    local down, up = {}, {}
    for i = 1, 30 do
      local k = "fd:" .. i
      if holder(entry(k)) == m then down[#down + 1] = k else up[#up + 1] = k end
    end
    assert.is_true(#down > 0 and #up > 0, "the fd keys do not straddle the shard")
    for _, r in ipairs(cl:replicas_of(m)) do r:stop() end
    m:stop()
    local c = A:client()
    -- a dead link costs at most the backend timeout (1 s) and a fetch
    for round = 1, 2 do
      for _, k in ipairs(down) do
        local path = "/chaos/fd/" .. k:match(":(.*)")
        local before = origin:count(path)
        local t0 = H.now()
        local v, kind = c:call("GET", k)
        assert.equal("bulk", kind, "round " .. round .. ", " .. k .. ": " .. why(v))
        assert.is_nil(C.chaos_check(k, seen)(v, kind))
        assert.is_true(H.now() - t0 < 2, string.format("GET %s took %.2f s", k, H.now() - t0))
        assert.equal(before + 1, origin:count(path), k .. " fetched")
      end
      local before = origin:stats().total
      for _, k in ipairs(up) do
        local v, kind = c:call("GET", k)
        assert.equal("bulk", kind, k .. ": " .. why(v))
        assert.equal("key=" .. k .. " v=1", v)
      end
      assert.equal(before, origin:stats().total, "keys on the live shards were hits")
    end
    m:restart()
    cl:wait_ok(15)
    -- the restarted master is empty: each key refills once, then hits
    ld:drive_until_all_hit(origin, 10)
    assert_no_wrong(ld, seen, "fd")
    for _, k in ipairs(down) do assert_stored_on_its_master(entry(k)) end
    H.wait_until(function() return backend_up(A) == 1 and backend_up(B) == 1 end, 5, "backend_up:1")
    ld:close()
    c:close()
  end)

  it("both instances shut down cleanly", function()
    H.assert_clean_exit(A)
    H.assert_clean_exit(B)
  end)
end)
