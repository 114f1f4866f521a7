-- tests/integration/write_through_spec.lua -- write-through policies (issue 9):
-- SET runs the policy's write(id, value, ctx) at the origin before the cache,
-- DEL runs delete(id, ctx); failures leave the cache alone; a SET racing a
-- fill of the same key on another instance never lets the old value win.
--   busted --lua=lua5.4 tests/integration/write_through_spec.lua
-- Two instances (A, B) share one Redis; the origin's /kv/<id> is a writable
-- store whose GET reads at arrival (a slow read answers the old value).
local H = require "tests.helpers.harness"

local stats = H.ns_stats
local errtext = H.errtext

-- an error reply starting with "ERR " .. prefix
local function assert_err_prefix(prefix, v)
  local text = errtext(v)
  assert.equal("ERR " .. prefix, text:sub(1, 4 + #prefix), text)
end

-- fetch: GET /kv/<id> (404: not found), slowed by `delay` for ids "slow*";
-- write: PUT (ids "up*" get the origin's upper-cased canonical form);
-- delete: DELETE (404 is fine: already gone).
local function kv_policy(kv, fields)
  return string.format([[
local KV = %q
return {
  ttl = 60,
  l1_ttl = 0,
  fetch_timeout = 3,
  %s
  fetch = function(id, ctx)
    local q = id:match("^slow") and "?delay=0.4" or ""
    local res = ctx.http.get(KV .. id .. q)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
  write = function(id, value, ctx)
    local q = id:match("^up") and "?upper=1" or ""
    local res = ctx.http.request{ method = "PUT", url = KV .. id .. q, body = value }
    if res.status >= 300 then error("origin said " .. res.status) end
    return res.body
  end,
  delete = function(id, ctx)
    local res = ctx.http.request{ method = "DELETE", url = KV .. id }
    if res.status >= 300 and res.status ~= 404 then error("origin said " .. res.status) end
  end,
}
]], kv, fields or "")
end

describe("write-through", function()
  local redis, origin, A, B

  -- what the origin's /kv holds for id (nil when nothing)
  local function at_origin(id)
    local st, body = origin:get("/_kv")
    assert.equal(200, st)
    return H.json_decode(body).values[id]
  end

  local function put_origin(id, value)
    local st = H.http{ url = origin.url .. "/kv/" .. id, method = "PUT", body = value }
    assert.equal(200, st)
  end

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local kv = origin.url .. "/kv/"
    local dir = H.write_policies{
      kv = kv_policy(kv),
      kvl1 = kv_policy(kv, "l1_ttl = 30,"):gsub("l1_ttl = 0,\n", "", 1),
      plain = H.simple_policy(kv, "ttl = 60"),
      wbad = kv_policy(kv):gsub("return res.body\n  end,\n  delete", "return 42\n  end,\n  delete", 1),
      wloop = kv_policy(kv):gsub("local q = id:match%(\"%^up\"%)", "while true do end local q = id:match(\"^up\")", 1),
    }
    A = H.start_server{ redis_port = redis.port, policies_dir = dir, metrics_port = true }
    B = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)

  teardown(H.cleanup)

  before_each(function() origin:reset() end)

  it("SET writes the origin first, then caches and answers OK", function()
    assert.equal("OK", A:call("SET", "kv:a", "hello"))
    assert.equal("hello", at_origin("a"))
    assert.equal("hello", A:call("GET", "kv:a"))
    assert.equal(1, origin:count("/kv/a"), "the GET was a hit: only the PUT reached the origin")
  end)

  it("caches what write returned (the origin's canonical form)", function()
    assert.equal("OK", A:call("SET", "kv:up1", "hello"))
    assert.equal("HELLO", at_origin("up1"))
    assert.equal("HELLO", A:call("GET", "kv:up1"))
    assert.equal("HELLO", B:call("GET", "kv:up1"))
  end)

  it("an origin failure answers an error and leaves the cache unchanged", function()
    assert.equal("OK", A:call("SET", "kv:f", "v1"))
    origin:control("/kv/f", { status = 500 })
    local v = A:call("SET", "kv:f", "v2")
    assert_err_prefix("write failed: ", v)
    assert.matches("origin said 500", errtext(v))
    origin:clear_control("/kv/f")
    assert.equal("v1", at_origin("f"))
    assert.equal("v1", A:call("GET", "kv:f"))
    assert.equal("v1", B:call("GET", "kv:f"))
    local peek = A:call("PEEK", "kv:f")
    assert.is_table(peek)
  end)

  it("a write function that returns a bad type or runs away fails the SET alone", function()
    local v = A:call("SET", "wbad:1", "x")
    assert_err_prefix("write failed: ", v)
    assert.matches("write must return a string, a table or nil", errtext(v))
    assert.is_nil(redis:call("GET", "lc:{wbad:1}"))
    local t0 = H.now()
    v = A:call("SET", "wloop:1", "x")
    assert_err_prefix("write failed: ", v)
    assert.is_true(H.now() - t0 < 5, "bounded by the budget")
    assert.equal("PONG", A:call("PING"))
  end)

  it("a SET on one instance is what a second instance reads at once", function()
    put_origin("s", "old")
    assert.equal("old", B:call("GET", "kv:s"))
    assert.equal("OK", A:call("SET", "kv:s", "new"))
    assert.equal("new", B:call("GET", "kv:s"))
  end)

  it("with the in-process tier, B drops its copy on A's broadcast", function()
    put_origin("t", "old")
    assert.equal("old", B:call("GET", "kvl1:t"))
    assert.equal("OK", A:call("SET", "kvl1:t", "new"))
    H.wait_until(function() return B:call("GET", "kvl1:t") == "new" end, 1, "B sees the new value")
  end)

  it("a SET racing a fill of the same key never lets the old value win", function()
    -- B's fill reads the origin (0.4 s) before A's write lands there, so
    -- it fetches the old value; it finishes after A's SET, and must not
    -- store it over the new one.
    for i = 1, 6 do
      local id = "slow" .. i
      put_origin(id, "old" .. i)
      local c = B:client()
      c:send("GET", "kv:" .. id)
      H.wait_until(function() return origin:stats().inflight >= 1 end, 3, "B's fetch under way")
      H.sleep(0.02 * (i % 3)) -- vary where the write falls within the fetch
      assert.equal("OK", A:call("SET", "kv:" .. id, "new" .. i))
      local v = c:read_reply(5)
      assert.is_true(v == "old" .. i or v == "new" .. i, "B answered " .. tostring(v))
      c:close()
      H.wait_until(function() return origin:stats().inflight == 0 end, 3, "B's fetch done")
      assert.equal("new" .. i, A:call("GET", "kv:" .. id))
      assert.equal("new" .. i, B:call("GET", "kv:" .. id))
      assert.equal("new" .. i, at_origin(id))
    end
    assert.is_true(stats(B, "kv").invalidations_race >= 1, "B's fill was not stored")
  end)

  it("DEL deletes at the origin, then in the cache", function()
    assert.equal("OK", A:call("SET", "kv:d", "v"))
    assert.equal(1, A:call("DEL", "kv:d"))
    assert.is_nil(at_origin("d"))
    assert.is_nil(redis:call("GET", "lc:{kv:d}"))
    assert.is_nil(B:call("GET", "kv:d"))
  end)

  it("a DEL whose origin delete fails keeps that key cached and says why", function()
    assert.equal("OK", A:call("SET", "kv:d1", "v1"))
    assert.equal("OK", A:call("SET", "kv:d2", "v2"))
    assert.equal("OK", A:call("SET", "plain:d3", "v3"))
    origin:control("/kv/d2", { status = 500 })
    local v = A:call("DEL", "kv:d1", "kv:d2", "plain:d3")
    assert_err_prefix("delete failed: ", v)
    origin:clear_control("/kv/d2")
    assert.is_nil(A:call("GET", "kv:d1"))
    assert.equal("v2", A:call("GET", "kv:d2"))
    assert.equal("v2", at_origin("d2"))
    assert.is_nil(redis:call("GET", "lc:{plain:d3}"))
  end)

  it("commands after a write-through SET see it", function()
    local c = A:client()
    local replies = c:pipeline{ { "SET", "kv:p", "one" }, { "GET", "kv:p" }, { "SET", "kv:p", "two" },
                                { "GET", "kv:p" } }
    assert.equal("OK", replies[1][1])
    assert.equal("one", replies[2][1])
    assert.equal("OK", replies[3][1])
    assert.equal("two", replies[4][1])
    c:close()
  end)

  it("counts writes by result in the metrics", function()
    assert.equal("OK", A:call("SET", "kv:m", "x"))
    origin:control("/kv/m", { status = 503 })
    assert_err_prefix("write failed: ", (A:call("SET", "kv:m", "y")))
    origin:clear_control("/kv/m")
    local st, body = H.http("http://127.0.0.1:" .. A.metrics_port .. "/metrics")
    assert.equal(200, st)
    local ok = tonumber(body:match('luacached_writes_total{ns="kv",mode="through",result="ok"} (%d+)'))
    local bad = tonumber(body:match('luacached_writes_total{ns="kv",mode="through",result="error"} (%d+)'))
    assert.is_true(ok >= 1, "ok writes counted")
    assert.is_true(bad >= 1, "failed writes counted")
  end)

  it("a write whose result exceeds --max-value is written but not cached, and the old entry goes", function()
    local big = kv_policy(origin.url .. "/kv/"):gsub("return res.body\n  end,\n  delete",
      "return string.rep(\"x\", 2000)\n  end,\n  delete", 1)
    local dir = H.write_policies{ kv = big }
    local S = H.start_server{ redis_port = redis.port, policies_dir = dir,
                              extra_args = { "--max-value", "1024" } }
    put_origin("big", "old")
    assert.equal("old", S:call("GET", "kv:big"))
    local v = S:call("SET", "kv:big", "new")
    assert_err_prefix("write succeeded at the origin, but its value of 2000 bytes exceeds --max-value (1024)", v)
    assert.equal("new", at_origin("big"))
    assert.is_nil(redis:call("GET", "lc:{kv:big}"), "the old entry was dropped")
    H.assert_clean_exit(S)
  end)

  it("--check accepts write and delete", function()
    local dir = H.write_policies{ kv = kv_policy(origin.url .. "/kv/") }
    local rc, out = H.run_luacached({ "--check", "--policies", dir }, 10)
    assert.equal(0, rc, out)
  end)
end)
