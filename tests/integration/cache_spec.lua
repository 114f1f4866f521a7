-- tests/integration/cache_spec.lua -- read-through cache behaviour (SPEC §2-§5)
-- against the real binary, a real redis-server and the example origin.
--   busted --lua=lua5.4 tests/integration/cache_spec.lua
-- One server for the whole file; every test uses its own keys (and so its
-- own origin paths), and the origin's counters are reset before each test.
local H = require "tests.helpers.harness"

local assert_clean_exit = H.assert_clean_exit

local errtext = H.errtext

local function assert_fetch_error(v, fragment, what)
  local e = errtext(v, what)
  assert.truthy(e:find("^ERR fetch failed: "), "error text: " .. e)
  if fragment then assert.truthy(e:find(fragment, 1, true), "error text: " .. e) end
  return e
end

-- Compare two (possibly large, binary) strings without printing them whole.
local function assert_same_bytes(expected, got)
  assert(type(got) == "string", "expected a string, got " .. type(got) .. " " .. tostring(got))
  if expected == got then return end
  local n = math.min(#expected, #got)
  local i = 1
  while i <= n and expected:byte(i) == got:byte(i) do i = i + 1 end
  error(string.format("bytes differ: expected %d bytes, got %d; first difference at byte %d", #expected,
    #got, i), 2)
end

describe("cache", function()
  local redis, origin, srv, c

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local u = origin.url
    local policies = {
      -- the workhorse: 10 s +-20 %, not-found cached 1 s
      widget = H.simple_policy(u .. "/widgets/", "ttl = 10, ttl_jitter = 0.2, negative_ttl = 1"),
      -- exact negative TTL (no jitter) for timing the expiry
      neg = H.simple_policy(u .. "/widgets/", "ttl = 10, negative_ttl = 1"),
      noneg = H.simple_policy(u .. "/widgets/", "ttl = 10, negative_ttl = 0"),
      errttl = H.simple_policy(u .. "/users/", "ttl = 10, error_ttl = 1"),
      tbl = string.format([[
local cjson = require "cjson"
return {
  ttl = 10,
  fetch = function(id, ctx)
    local w = cjson.decode(ctx.http.get(%q .. id).body)
    return { id = w.id, name = w.name, owner_id = w.owner_id, price = w.price, tags = { "a", "b" } }
  end,
}
]], u .. "/widgets/"),
      jid = string.format([[
local cjson = require "cjson"
return {
  ttl = 10,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id)
    return "id=" .. cjson.decode(res.body).id
  end,
}
]], u .. "/widgets/"),
      echo = string.format([[
local cjson = require "cjson"
return {
  ttl = 10,
  fetch = function(id, ctx)
    local e = cjson.decode(ctx.http.get(%q .. id).body)
    return e.path .. "|" .. id .. "|" .. ctx.id .. "|" .. ctx.key
  end,
}
]], u .. "/echo/"),
      bin = string.format([[
return {
  ttl = 10,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id .. "?bytes=" .. id)
    assert(res.status == 200, "origin said " .. res.status)
    return res.body
  end,
}
]], u .. "/bin/"),
      -- short TTLs for stale-while-revalidate and stale-if-error
      swr = H.simple_policy(u .. "/widgets/", "ttl = 1, stale_ttl = 30"),
      sie = H.simple_policy(u .. "/widgets/", "ttl = 1, stale_if_error = 30"),
      -- a 300 ms origin (overridable per path with origin:control)
      slow = string.format([[
return {
  ttl = 10,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id .. "?delay=0.3")
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
]], u .. "/slow/"),
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = H.write_policies(policies) }
    c = srv:client()
  end)

  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  describe("read-through", function()
    it("a miss calls the origin once, then hits without calling it", function()
      local _, expected = origin:get("/widgets/7")
      origin:reset()
      assert.equal(0, origin:count("/widgets/7"))
      local v, kind = c:call("GET", "widget:7")
      assert.equal("bulk", kind)
      assert.equal(expected, v)
      assert.equal(1, origin:count("/widgets/7"))
      for _ = 1, 5 do assert.equal(expected, (c:call("GET", "widget:7"))) end
      assert.equal(1, origin:count("/widgets/7"))
      assert.same({ id = 7, name = "widget 7", owner_id = 7, price = 9.74 }, H.json_decode(v))
    end)

    it("PTTL after a fill lies in the jittered range, and the jitter is real", function()
      local ttls = {}
      local filled_first = H.now()
      for i = 1, 20 do
        local key = "widget:jit" .. i
        assert.is_string((c:call("GET", key)))
        local t0 = H.now()
        local pttl = c:call("PTTL", key)
        local elapsed_ms = (H.now() - t0) * 1000
        assert.is_number(pttl)
        -- ttl 10 s, jitter 0.2: [8000, 12000] ms, minus what elapsed since the fill
        assert.is_true(pttl <= 12000, "PTTL " .. pttl .. " above 12000")
        assert.is_true(pttl >= 8000 - 500 - elapsed_ms, "PTTL " .. pttl .. " below 8000")
        ttls[#ttls + 1] = pttl
      end
      local lo, hi, distinct = math.huge, -math.huge, {}
      for _, t in ipairs(ttls) do
        lo, hi = math.min(lo, t), math.max(hi, t)
        distinct[t // 100] = true
      end
      local nd = 0
      for _ in pairs(distinct) do nd = nd + 1 end
      assert.is_true(hi - lo > 800, string.format("PTTLs all within %d ms: jitter not applied", hi - lo))
      assert.is_true(nd >= 5, "only " .. nd .. " distinct PTTLs (in 100 ms buckets)")
      -- TTL rounds to seconds; jit1 has aged by however long the loop took
      local ttl = c:call("TTL", "widget:jit1")
      local aged = H.now() - filled_first
      assert.is_true(ttl >= math.floor(8 - aged) and ttl <= 12,
        string.format("TTL %s after %.2f s", tostring(ttl), aged))
      assert.equal(20, origin:stats().total)
    end)

    it("PTTL and TTL of an uncached key are -2, without an origin call", function()
      assert.equal(-2, (c:call("PTTL", "widget:never1")))
      assert.equal(-2, (c:call("TTL", "widget:never1")))
      assert.equal(0, origin:count("/widgets/never1"))
    end)

    it("PEEK shows nil, fresh and negative entries and never calls the origin", function()
      local v, kind = c:call("PEEK", "widget:peek1")
      assert.equal("nil", kind)
      assert.is_nil(v)
      assert.equal(0, origin:count("/widgets/peek1"))

      local value = c:call("GET", "widget:peek1")
      local p = c:call("PEEK", "widget:peek1")
      assert.equal(3, p.n)
      assert.equal("fresh", p[1])
      assert.is_true(math.type(p[2]) == "integer" and p[2] > 7000 and p[2] <= 12000, "ttl_ms " .. tostring(p[2]))
      assert.equal(value, p[3])

      assert.is_nil((c:call("GET", "neg:missing-peek")))
      p = c:call("PEEK", "neg:missing-peek")
      assert.equal(3, p.n)
      assert.equal("negative", p[1])
      assert.is_true(p[2] > 0 and p[2] <= 1000, "negative ttl_ms " .. tostring(p[2]))
      assert.is_nil(p[3])

      assert.equal(1, origin:count("/widgets/peek1"))
      assert.equal(1, origin:count("/widgets/missing-peek"))
    end)
  end)

  describe("negative caching", function()
    it("caches a not-found for negative_ttl, then asks the origin again", function()
      local t0 = H.now()
      local v, kind = c:call("GET", "neg:missing-n1")
      assert.equal("nil", kind)
      assert.is_nil(v)
      assert.equal(1, origin:count("/widgets/missing-n1"))
      for _ = 1, 5 do assert.is_nil((c:call("GET", "neg:missing-n1"))) end
      -- still inside the 1 s negative TTL (this test ran < 0.7 s so far)
      assert.is_true(H.now() - t0 < 0.7, "test too slow to check the negative TTL")
      assert.equal(1, origin:count("/widgets/missing-n1"))
      H.wait_until(function()
        assert.is_nil((c:call("GET", "neg:missing-n1")))
        return origin:count("/widgets/missing-n1") == 2
      end, 3, "origin asked again after negative_ttl")
      local dt = H.now() - t0
      assert.is_true(dt >= 0.9, "negative entry expired after only " .. dt .. " s")
    end)

    it("negative_ttl = 0 caches nothing: every GET asks the origin", function()
      for i = 1, 3 do
        local v, kind = c:call("GET", "noneg:missing-z")
        assert.equal("nil", kind)
        assert.is_nil(v)
        assert.equal(i, origin:count("/widgets/missing-z"))
      end
      assert.equal("nil", select(2, c:call("PEEK", "noneg:missing-z")))
    end)
  end)

  describe("fetch errors", function()
    it("are answered as -ERR fetch failed and not cached", function()
      origin:control("/widgets/err1", { status = 500 })
      assert_fetch_error(c:call("GET", "widget:err1"), "origin said 500")
      assert.equal(1, origin:count("/widgets/err1"))
      assert_fetch_error(c:call("GET", "widget:err1"), "origin said 500")
      assert.equal(2, origin:count("/widgets/err1"))
      assert.equal("nil", select(2, c:call("PEEK", "widget:err1")))
      -- the origin recovers: the next GET gets the value
      origin:clear_control("/widgets/err1")
      assert.equal("widget err1", H.json_decode(c:call("GET", "widget:err1")).name)
      assert.equal(3, origin:count("/widgets/err1"))
    end)

    it("with error_ttl, the error is answered from cache within error_ttl", function()
      origin:control("/users/e1", { status = 500 })
      local t0 = H.now()
      local first = assert_fetch_error(c:call("GET", "errttl:e1"), "origin said 500")
      for _ = 1, 3 do assert.equal(first, assert_fetch_error((c:call("GET", "errttl:e1")))) end
      assert.is_true(H.now() - t0 < 0.7, "test too slow to check error_ttl")
      assert.equal(1, origin:count("/users/e1"))
      -- after error_ttl (1 s) the origin is asked again
      H.wait_until(function()
        c:call("GET", "errttl:e1")
        return origin:count("/users/e1") == 2
      end, 3, "origin asked again after error_ttl")
      assert.is_true(H.now() - t0 >= 0.9)
    end)
  end)

  describe("values", function()
    it("a table returned by fetch is stored and answered as JSON", function()
      local v = c:call("GET", "tbl:42")
      assert.is_string(v)
      assert.same({ id = 42, name = "widget 42", owner_id = 2, price = 53.49, tags = { "a", "b" } },
        H.json_decode(v))
      -- integral numbers stay integers in the JSON text
      assert.truthy(v:find('"id"%s*:%s*42[,}%s]'), v)
      assert.falsy(v:find("42%.0"), v)
      assert.equal(v, (c:call("GET", "tbl:42")))
      assert.equal(1, origin:count("/widgets/42"))
    end)

    it("cjson.decode in a policy keeps integral numbers integers", function()
      assert.equal("id=42", (c:call("GET", "jid:42")))
      assert.equal("id=-3", (c:call("GET", "jid:-3")))
    end)

    it("ids containing ':' reach the policy intact and are stored under their own key", function()
      assert.equal("/echo/a:b:c|a:b:c|a:b:c|echo:a:b:c", (c:call("GET", "echo:a:b:c")))
      assert.equal("/echo/a:b|a:b|a:b|echo:a:b", (c:call("GET", "echo:a:b")))
      assert.equal("/echo/a:b:c|a:b:c|a:b:c|echo:a:b:c", (c:call("GET", "echo:a:b:c")))
      assert.equal(1, origin:count("/echo/a:b:c"))
      assert.equal(1, origin:count("/echo/a:b"))
      local p = c:call("PEEK", "echo:a:b:c")
      assert.equal("fresh", p[1])
      assert.equal("/echo/a:b:c|a:b:c|a:b:c|echo:a:b:c", p[3])
      -- in Redis: one entry per exact id (see docs/STORAGE.md)
      local raw = redis:call("GET", "lc:{echo:a:b:c}")
      assert.is_string(raw)
      assert.truthy(raw:find("\n/echo/a:b:c|a:b:c|a:b:c|echo:a:b:c", 1, true))
      assert.is_string((redis:call("GET", "lc:{echo:a:b}")))
      assert.equal("nil", select(2, redis:call("GET", "lc:{echo:a}")))
    end)

    it("a 2 MB binary value with NUL and CRLF round-trips byte-exact", function()
      local n = 2 * 1024 * 1024
      local expected = H.pattern_bytes(n)
      local cl = srv:client(15)
      assert_same_bytes(expected, (cl:call("GET", "bin:" .. n)))
      assert_same_bytes(expected, (cl:call("GET", "bin:" .. n)))
      assert.equal(1, origin:count("/bin/" .. n))
      -- and the same through SET
      local other = expected:reverse()
      assert.equal("OK", (cl:call("SET", "bin:viaset", other)))
      assert_same_bytes(other, (cl:call("GET", "bin:viaset")))
      assert.equal(0, origin:count("/bin/viaset"))
      cl:close()
    end)
  end)

  describe("stale entries", function()
    it("within stale_ttl a stale value is answered at once while one refresh runs", function()
      local v1 = c:call("GET", "swr:1")
      assert.equal("widget 1", H.json_decode(v1).name)
      H.wait_until(function()
        local p = c:call("PEEK", "swr:1")
        return p and p[1] == "stale"
      end, 3, "entry turns stale")
      assert.equal(0, (c:call("PTTL", "swr:1")))
      origin:control("/widgets/1", { body = "refreshed", delay = 0.5 })
      -- answered from the stale entry without waiting for the 0.5 s origin
      for _ = 1, 5 do
        local t0 = H.now()
        assert.equal(v1, (c:call("GET", "swr:1")))
        assert.is_true(H.now() - t0 < 0.3, "stale GET waited for the refresh")
      end
      -- exactly one background refresh, which then serves
      H.wait_until(function() return c:call("GET", "swr:1") == "refreshed" end, 3, "refresh stored")
      assert.equal(2, origin:count("/widgets/1"))
      assert.equal("fresh", c:call("PEEK", "swr:1")[1])
    end)

    it("within stale_if_error an expired value is answered when the fetch fails", function()
      local v1 = c:call("GET", "sie:2")
      assert.equal("widget 2", H.json_decode(v1).name)
      H.wait_until(function() return c:call("PTTL", "sie:2") == 0 end, 3, "entry expires")
      origin:control("/widgets/2", { status = 503 })
      assert.equal(v1, (c:call("GET", "sie:2")))
      assert.equal(2, origin:count("/widgets/2"))
      -- the origin is back: the next GET stores the new value
      origin:control("/widgets/2", { body = "back" })
      assert.equal("back", (c:call("GET", "sie:2")))
      assert.equal("back", (c:call("GET", "sie:2")))
      assert.equal(3, origin:count("/widgets/2"))
    end)
  end)

  describe("concurrency", function()
    it("200 concurrent misses on distinct keys overlap their fetches", function()
      local n = 200
      local conns = H.open_clients(srv.port, n, 10)
      local t0 = H.now()
      for i = 1, n do conns[i]:send("GET", "slow:" .. i) end
      for i = 1, n do
        local v, kind = conns[i]:read_reply()
        assert.equal("bulk", kind, "reply " .. i .. ": " .. tostring(v and v.err or v))
        local obj = H.json_decode(v)
        assert.equal(i, obj.id)
        assert.equal(i * (i + 1) // 2, obj.sum)
      end
      local dt = H.now() - t0
      H.close_clients(conns)
      assert.is_true(dt < 5, string.format("200 misses of a 300 ms origin took %.2f s", dt))
      local st = origin:stats()
      assert.equal(n, st.total)
    end)

    it("50 concurrent GETs of one cold key cause one origin call", function()
      local n = 50
      local conns = H.open_clients(srv.port, n, 10)
      for i = 1, n do conns[i]:send("GET", "slow:coal") end
      local first
      for i = 1, n do
        local v, kind = conns[i]:read_reply()
        assert.equal("bulk", kind, "reply " .. i .. ": " .. tostring(v and v.err or v))
        first = first or v
        assert.equal(first, v) -- computed_at_ms differs between fetches
      end
      H.close_clients(conns)
      assert.equal("coal", H.json_decode(first).id)
      assert.equal(1, origin:count("/slow/coal"))
    end)
  end)

  describe("writes", function()
    it("SET stores a fresh value served without an origin call", function()
      assert.equal("OK", (c:call("SET", "widget:s1", "hello")))
      assert.equal("hello", (c:call("GET", "widget:s1")))
      local pttl = c:call("PTTL", "widget:s1")
      assert.is_true(pttl > 7000 and pttl <= 12000, "policy TTL with jitter, got " .. pttl)
      assert.equal(0, origin:count("/widgets/s1"))
    end)

    it("SET ... EX 1 expires after a second; SET ... PX sets milliseconds", function()
      assert.equal("OK", (c:call("SET", "widget:s2", "short", "EX", "1")))
      local t0 = H.now()
      local pttl = c:call("PTTL", "widget:s2")
      assert.is_true(pttl > 500 and pttl <= 1000, "PTTL " .. pttl)
      assert.equal(1, (c:call("TTL", "widget:s2")))
      assert.equal("short", (c:call("GET", "widget:s2")))
      H.wait_until(function() return c:call("PTTL", "widget:s2") == -2 end, 3, "SET EX 1 expired")
      assert.is_true(H.now() - t0 > 0.5)
      assert.equal("nil", select(2, c:call("PEEK", "widget:s2")))
      -- expired: the next GET reads through
      assert.equal("widget s2", H.json_decode(c:call("GET", "widget:s2")).name)
      assert.equal(1, origin:count("/widgets/s2"))

      assert.equal("OK", (c:call("SET", "widget:s3", "px", "px", "1500")))
      pttl = c:call("PTTL", "widget:s3")
      assert.is_true(pttl > 1000 and pttl <= 1500, "PTTL " .. pttl)
      assert.equal("px", (c:call("GET", "widget:s3")))
    end)

    it("SET with a bad expire time is refused with Redis's error", function()
      for _, args in ipairs{ { "EX", "abc" }, { "EX", "0" }, { "EX", "-5" }, { "PX", "x1" }, { "PX", "0" } } do
        local v = c:call("SET", "widget:s4", "v", args[1], args[2])
        assert.equal("ERR invalid expire time in 'set' command", errtext(v, args[1] .. " " .. args[2]))
      end
      assert.equal(-2, (c:call("PTTL", "widget:s4")))
    end)

    it("DEL returns how many existed, and the next GET refetches", function()
      c:call("GET", "widget:d1")
      c:call("GET", "widget:d2")
      assert.equal(2, (c:call("DEL", "widget:d1", "widget:d2", "widget:d3")))
      assert.equal(0, (c:call("DEL", "widget:d1", "widget:d2", "widget:d3")))
      assert.equal("nil", select(2, c:call("PEEK", "widget:d1")))
      assert.equal("widget d1", H.json_decode(c:call("GET", "widget:d1")).name)
      assert.equal(2, origin:count("/widgets/d1"))
      assert.equal(1, origin:count("/widgets/d2"))
      assert.equal(0, origin:count("/widgets/d3"))
    end)

    it("REFRESH fetches even when fresh and answers the new value", function()
      local v1 = c:call("GET", "widget:r1")
      assert.equal("widget r1", H.json_decode(v1).name)
      origin:control("/widgets/r1", { body = "version two" })
      assert.equal(v1, (c:call("GET", "widget:r1")))
      assert.equal(1, origin:count("/widgets/r1"))
      assert.equal("version two", (c:call("REFRESH", "widget:r1")))
      assert.equal(2, origin:count("/widgets/r1"))
      assert.equal("version two", (c:call("GET", "widget:r1")))
      assert.equal(2, origin:count("/widgets/r1"))
    end)

    it("a DEL during an in-flight fetch answers the waiter but does not store", function()
      origin:control("/slow/inflight", { delay = 1, times = 1 })
      local c1 = srv:client(5)
      c1:send("GET", "slow:inflight")
      H.wait_until(function() return origin:count("/slow/inflight") == 1 end, 3, "fetch under way")
      assert.equal(0, (c:call("DEL", "slow:inflight")))
      local v, kind = c1:read_reply()
      assert.equal("bulk", kind, tostring(v and v.err))
      assert.equal("inflight", H.json_decode(v).id)
      -- the result of the invalidated fetch was not stored
      assert.equal("nil", select(2, c:call("PEEK", "slow:inflight")))
      local v2 = c:call("GET", "slow:inflight")
      assert.equal("inflight", H.json_decode(v2).id)
      assert.equal(2, origin:count("/slow/inflight"))
      assert.equal(v2, (c:call("GET", "slow:inflight")))
      assert.equal(2, origin:count("/slow/inflight"))
      c1:close()
    end)

    it("a SET during an in-flight fetch wins over the fetched value", function()
      origin:control("/slow/setrace", { delay = 1, times = 1 })
      local c1 = srv:client(5)
      c1:send("GET", "slow:setrace")
      H.wait_until(function() return origin:count("/slow/setrace") == 1 end, 3, "fetch under way")
      assert.equal("OK", (c:call("SET", "slow:setrace", "set while fetching")))
      local v, kind = c1:read_reply()
      assert.equal("bulk", kind, tostring(v and v.err))
      assert.equal("set while fetching", (c:call("GET", "slow:setrace")))
      assert.equal(1, origin:count("/slow/setrace"))
      c1:close()
    end)

    it("MGET answers in order with nil for not-found and an error element for a failure", function()
      origin:control("/widgets/mfail", { status = 500 })
      local r, kind = c:call("MGET", "widget:m1", "widget:missing-m2", "widget:mfail")
      assert.equal("array", kind)
      assert.equal(3, r.n)
      assert.equal("widget m1", H.json_decode(r[1]).name)
      assert.is_nil(r[2])
      assert_fetch_error(r[3], "origin said 500", "MGET element 3")
      -- the good and the not-found ones were cached
      r = c:call("MGET", "widget:missing-m2", "widget:m1")
      assert.equal(2, r.n)
      assert.is_nil(r[1])
      assert.equal("widget m1", H.json_decode(r[2]).name)
      assert.equal(1, origin:count("/widgets/m1"))
      assert.equal(1, origin:count("/widgets/missing-m2"))
    end)
  end)

  describe("keys", function()
    it("refuses keys without a namespace and unknown namespaces", function()
      assert.equal("ERR key must be namespace:id", errtext((c:call("GET", "nocolon"))))
      assert.equal("ERR unknown namespace 'nope'", errtext((c:call("GET", "nope:1"))))
      assert.equal(0, origin:stats().total)
    end)
  end)

  it("the server is still healthy after all of the above and shuts down cleanly", function()
    assert.equal("PONG", (c:call("PING")))
    assert.is_true(srv:alive())
    c:close()
    assert_clean_exit(srv)
  end)
end)
