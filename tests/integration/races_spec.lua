-- tests/integration/races_spec.lua -- invalidations and REFRESH right after
-- a GET returned, repeated many times so that an ordering bug shows
-- (docs/STAMPEDE.md, "Orderings"): once a GET has answered a value tagged T,
-- a PURGETAG T sent afterwards, through any instance, removes it (answers
-- >= 1) and no instance serves it again, its in-process tier included; a
-- REFRESH sent after a GET answered always answers a newer fetch.
--   busted --lua=lua5.4 tests/integration/races_spec.lua
-- Two luacached instances (A and B) share one Redis. The origin's /seq/<id>
-- answers "<id>:<n>", n counting that path's requests, so every fetch gives
-- a new value and tells which fetch it was. Each loop counts its failures
-- and asserts there are none (the counts are printed, to compare builds).
local H = require "tests.helpers.harness"

local RUNS = tonumber(os.getenv("RACES_RUNS")) or 300

local stats = H.ns_stats

-- The n of a /seq value "<id>:<n>"; fails on anything else.
local function seq_of(v, what)
  assert(type(v) == "string", what .. ": not a value: " .. tostring(type(v) == "table" and v.err or v))
  local n = v:match(":(%d+)$")
  assert(n, what .. ": not a /seq value: " .. v)
  return tonumber(n)
end

-- A policy fetching /seq/<ns>-<id>, so namespaces do not share counters;
-- tagged values carry the tag "<ns>:<id>". Without an l1_ttl in fields the
-- in-process tier is off (l1_ttl = 0): those races are Redis's, and another
-- instance's invalidation may take the broadcast's delay to reach a tier.
local function seq_policy(url, ns, fields, tagged)
  if not (fields and fields:find("l1_ttl", 1, true)) then
    fields = fields and (fields .. ", l1_ttl = 0") or "l1_ttl = 0"
  end
  return string.format([[
return {
  ttl = 60, %s
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body%s
  end,
}
]], fields and (fields .. ",") or "", url .. "/seq/" .. ns .. "-",
    tagged and string.format(", { tags = { %q .. id } }", ns .. ":") or "")
end

local function report(name, failures, runs)
  print(string.format("races: %s: %d of %d runs failed", name, failures, runs))
end

describe("races with a fill that just answered", function()
  local redis, origin, A, B, C

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local u = origin.url
    local dir = H.write_policies{
      tg1 = seq_policy(u, "tg1", nil, true),
      tg2 = seq_policy(u, "tg2", nil, true),
      tg3 = seq_policy(u, "tg3", nil, true),
      tgl = seq_policy(u, "tgl", "l1_ttl = 30", true),
      dl1 = seq_policy(u, "dl1", "l1_ttl = 30"),
      rf1 = seq_policy(u, "rf1"),
      rf2 = seq_policy(u, "rf2"),
      rfq = seq_policy(u, "rfq"),
      rfs = seq_policy(u, "rfs"),
    }
    A = H.start_server{ redis_port = redis.port, policies_dir = dir }
    B = H.start_server{ redis_port = redis.port, policies_dir = dir }
    local proxy = H.spawn{ name = "proxy", argv = { "python3", "-u", H.root .. "/tests/helpers/delay_proxy.py",
                                                    "--target-port", redis.port, "--delay-ms", 5 } }
    local pport = H.wait_until(function() return proxy:log():match("proxy listening on [%d.]+:(%d+)") end,
      10, "the delay proxy is listening")
    C = H.start_server{ redis_url = "redis://127.0.0.1:" .. pport .. "/0", policies_dir = dir }
  end)

  teardown(H.cleanup)

  -- GET through `get`, then PURGETAG through `purge` at once: the purge must
  -- remove the entry, neither instance may answer the purged value again,
  -- and the value fetched next must be stored (both answer the same).
  local function purge_after_get(get, purge, key_of, runs)
    local cg, cp, ca, cb = get:client(5), purge:client(5), A:client(5), B:client(5)
    local failed, why = 0, nil
    for i = 1, runs do
      local key, tag = key_of(i)
      local v = cg:call("GET", key)
      local n = seq_of(v, "GET " .. key)
      local removed = cp:call("PURGETAG", tag)
      local va, vb = ca:call("GET", key), cb:call("GET", key)
      if removed ~= 1 or seq_of(va, "GET A") <= n or vb ~= va then
        failed = failed + 1
        why = why or string.format("run %d: GET %s -> %s, PURGETAG -> %s, then A -> %s, B -> %s",
          i, key, v, tostring(removed), tostring(va), tostring(vb))
      end
    end
    H.close_clients{ cg, cp, ca, cb }
    return failed, why
  end

  it("PURGETAG through the other instance, right after the GET", function()
    local failed, why = purge_after_get(A, B, function(i) return "tg2:" .. i, "tg2:" .. i end, RUNS)
    report("PURGETAG on B after GET on A", failed, RUNS)
    assert.equal(0, failed, why)
  end)

  it("PURGETAG through another instance, after a GET on an instance with a slow link to Redis", function()
    -- C's commands reach Redis 5 ms late: without the ordering, C answers
    -- the GET before the entry and its tag are in Redis, and the purge
    -- through A finds nothing.
    local runs = math.max(1, RUNS // 3)
    local failed, why = purge_after_get(C, A, function(i) return "tg3:" .. i, "tg3:" .. i end, runs)
    report("PURGETAG on A after GET on C (slow link)", failed, runs)
    assert.equal(0, failed, why)
  end)

  it("PURGETAG through the same instance, right after the GET, one key over and over", function()
    local failed, why = purge_after_get(A, A, function() return "tg1:k", "tg1:k" end, RUNS)
    report("PURGETAG on A after GET on A, same key", failed, RUNS)
    assert.equal(0, failed, why)
    -- no fetch was taken for one a purge overtook
    assert.equal(0, stats(A, "tg1").invalidations_race)
    assert.equal(0, stats(B, "tg1").invalidations_race)
  end)

  it("PURGETAG reaches both in-process tiers: at once here, once its broadcast arrived there", function()
    -- The purging instance drops its tier item before it answers. Another
    -- instance drops its item when the "K" message arrives, which the
    -- purge waits to be published but cannot wait to be read: the client
    -- may get there first (SPEC §3 bounds it at 100 ms).
    local ca, cb = A:client(5), B:client(5)
    local failed, late, why = 0, 0, nil
    for i = 1, RUNS do
      local key = "tgl:" .. i
      local v = ca:call("GET", key)
      local n = seq_of(v, "GET " .. key)
      local vb = cb:call("GET", key) -- now in both tiers
      local here, there = ca, cb
      if i % 2 == 1 then here, there = cb, ca end
      local removed = here:call("PURGETAG", key)
      local vh = here:call("GET", key)
      local vt = there:call("GET", key)
      if vt == v then
        late = late + 1
        local ok = pcall(H.wait_until, function() return there:call("GET", key) ~= v end, 0.1)
        vt = ok and "(gone within 100 ms)" or v
      end
      if vb ~= v or removed ~= 1 or seq_of(vh, "GET here") <= n or vt == v then
        failed = failed + 1
        why = why or string.format("run %d: GET %s -> %s (other %s), PURGETAG -> %s, then here -> %s, there -> %s",
          i, key, v, tostring(vb), tostring(removed), tostring(vh), tostring(vt))
      end
    end
    ca:close()
    cb:close()
    report("PURGETAG with l1 on both", failed, RUNS)
    print(string.format("races: PURGETAG with l1 on both: the other instance answered the purged value %d times before its broadcast arrived", late))
    assert.equal(0, failed, why)
  end)

  it("DEL racing a GET's Redis read: the deleted value does not stay in the in-process tier", function()
    -- The GET's read may reach Redis before the DEL and its answer come
    -- back after the DEL has cleared the tier: that answer may go to its
    -- client, but not into the tier.
    local c1, c2 = A:client(5), A:client(5)
    local failed, why = 0, nil
    for i = 1, RUNS do
      local set = "set-" .. i
      assert.equal("OK", (c1:call("SET", "dl1:k", set)))
      c1:send("GET", "dl1:k")
      c2:send("DEL", "dl1:k")
      local got, removed = c1:read_reply(5), c2:read_reply(5)
      local after = c1:call("GET", "dl1:k")
      if after == set or (got ~= set and seq_of(got, "GET") < 1) then
        failed = failed + 1
        why = why or string.format("run %d: GET -> %s, DEL -> %s, then GET -> %s", i, tostring(got),
          tostring(removed), tostring(after))
      end
    end
    H.close_clients{ c1, c2 }
    report("GET and DEL together, l1", failed, RUNS)
    assert.equal(0, failed, why)
  end)

  -- GET through `get`, then REFRESH through `refresh` at once: the REFRESH
  -- must answer a fetch newer than the value the GET answered.
  local function refresh_after_get(key, get, refresh, runs)
    local ca, cb = A:client(5), B:client(5)
    local conns = { [A] = ca, [B] = cb }
    local failed, why = 0, nil
    for i = 1, runs do
      local v = conns[get]:call("GET", key)
      local r = conns[refresh]:call("REFRESH", key)
      if seq_of(r, "REFRESH") <= seq_of(v, "GET") then
        failed = failed + 1
        why = why or string.format("run %d: GET -> %s, then REFRESH -> %s", i, v, r)
      end
    end
    ca:close()
    cb:close()
    return failed, why
  end

  it("REFRESH right after a GET on the same instance answers a new fetch", function()
    local failed, why = refresh_after_get("rf1:k", A, A, RUNS)
    report("REFRESH on A after GET on A", failed, RUNS)
    assert.equal(0, failed, why)
    assert.equal(RUNS + 1, origin:count("/seq/rf1-k"))
  end)

  it("REFRESH right after a GET on the other instance answers a new fetch", function()
    local failed, why = refresh_after_get("rf2:k", A, B, RUNS)
    report("REFRESH on B after GET on A", failed, RUNS)
    assert.equal(0, failed, why)
    assert.equal(RUNS + 1, origin:count("/seq/rf2-k"))
  end)

  it("REFRESH while a fetch of the key runs here waits for a fetch that starts after it", function()
    origin:control("/seq/rfq-k", { delay = 0.5, times = 1 })
    local cg = A:client(5)
    cg:send("GET", "rfq:k")
    H.wait_until(function() return origin:count("/seq/rfq-k") == 1 end, 3, "fetch under way")
    local cr = A:client(5)
    for _ = 1, 3 do cr:send("REFRESH", "rfq:k") end
    assert.equal("rfq-k:1", (cg:read_reply(3)))
    -- the three REFRESHes share one fetch, which started after they came
    for _ = 1, 3 do assert.equal("rfq-k:2", (cr:read_reply(3))) end
    assert.equal("rfq-k:2", (B:call("GET", "rfq:k")))
    assert.equal(2, origin:count("/seq/rfq-k"))
    assert.equal(2, stats(A, "rfq").coalesced)
    cg:close()
    cr:close()
  end)

  it("REFRESHes that arrive together share one fetch", function()
    A:call("GET", "rfs:k")
    local c = A:client(5)
    c:send_raw(H.resp.encode("REFRESH", "rfs:k"):rep(5)) -- one write: they arrive together
    for _ = 1, 5 do assert.equal("rfs-k:2", (c:read_reply(3))) end
    c:close()
    assert.equal(2, origin:count("/seq/rfs-k"))
    assert.equal(4, stats(A, "rfs").coalesced)
  end)

  it("both instances shut down cleanly", function()
    H.assert_clean_exit(A)
    H.assert_clean_exit(B)
    H.assert_clean_exit(C)
  end)
end)

-- A fill waiting on another instance's lock keeps the stale entry it found,
-- to answer if its fetch fails (stale_if_error). A DEL acknowledged while it
-- waits removed that entry: a failing fetch must not bring it back.
describe("an invalidation while a fill waits on a lock", function()
  local redis, origin, srv

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local dir = H.write_policies{
      w = string.format([[
return {
  ttl = 1, stale_ttl = 0, stale_if_error = 30, lock_timeout = 1,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
]], origin.url .. "/chaos/w/"),
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)

  teardown(function()
    if srv then H.assert_clean_exit(srv) end
    H.cleanup()
  end)

  it("does not answer the deleted value when its fetch then fails", function()
    local c1, c2 = srv:client(10), srv:client(10)
    assert.equal("key=w:1 v=1", (c2:call("GET", "w:1")))
    H.wait_until(function() return (c2:call("PEEK", "w:1") or {})[1] == "stale" end, 5, "stale")
    -- another instance holds the fill lock; the origin fails from now on
    assert.equal("OK", (redis:call("SET", "lc:{w:1}:lock", "other", "PX", "5000")))
    origin:mode("error")
    c1:send("GET", "w:1") -- waits on the lock, holding the stale entry
    H.wait_until(function() return H.ns_stats(srv, "w").misses >= 2 end, 5, "second GET waiting")
    assert.equal(1, (c2:call("DEL", "w:1")))
    -- the waiting fill takes over after lock_timeout, its fetch fails: an
    -- error, never the deleted "key=w:1 v=1"
    local v, kind = c1:read_reply(10)
    assert.equal("error", kind, "answered " .. tostring(v))
    local v2, kind2 = c2:call("GET", "w:1")
    assert.equal("error", kind2, "answered " .. tostring(v2))
    origin:mode("ok")
    c1:close()
    c2:close()
  end)
end)

-- One client's invalidation, then a pipelined GET of what it removes: the
-- GET must not see it (Redis runs a client's commands in order), with and
-- without the in-process tier. The walks (PURGE, PURGETAG, an EVENT's
-- patterns and tags) answer after Redis has removed the entries, so the
-- client's next commands wait for them.
describe("a pipelined GET after an invalidation", function()
  local redis, origin, srv

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local u = origin.url .. "/seq/"
    local function pol(ns, fields)
      return string.format([[
return {
  ttl = 60, %s
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id)
    return res.body, { tags = { "t:" .. id:sub(1, 1) } }
  end,
  on_event = function(name)
    if name == "pat" then return { patterns = { "%s:a*", "%s:b*" } } end
    return { tags = { "t:" .. name } }
  end,
}
]], fields, u .. ns .. "-", ns, ns)
    end
    srv = H.start_server{ redis_port = redis.port,
                          policies_dir = H.write_policies{ ev = pol("ev", ""), evl = pol("evl", "l1_ttl = 30,") } }
  end)

  teardown(function()
    if srv then H.assert_clean_exit(srv) end
    H.cleanup()
  end)

  for _, ns in ipairs{ "ev", "evl" } do
    local cases = {
      { "EVENT with patterns", function(id) return { "EVENT", ns, "pat" } end, "b1" },
      { "EVENT with tags", function(id) return { "EVENT", ns, "c" } end, "c1" },
      { "PURGETAG", function(id) return { "PURGETAG", "t:d" } end, "d1" },
      { "PURGE", function(id) return { "PURGE", ns .. ":e*" } end, "e1" },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. " then GET (" .. ns .. ")", function()
        local c = srv:client(10)
        for run = 1, 20 do
          local id = case[3] .. "-" .. run
          local key = ns .. ":" .. id
          local v1 = c:call("GET", key)
          assert.equal(v1, (c:call("GET", key)), "cached")
          local r = c:pipeline{ case[2](id), { "GET", key } }
          assert.is_true(type(r[1][1]) == "number" and r[1][1] >= 1,
            case[1] .. " answered " .. tostring(type(r[1][1]) == "table" and r[1][1].err or r[1][1]))
          assert.are_not.equal(v1, r[2][1], "run " .. run .. ": the GET after " .. case[1] .. " saw the removed value")
        end
        c:close()
      end)
    end
  end
end)
