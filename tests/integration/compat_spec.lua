-- tests/integration/compat_spec.lua -- what Redis clients send for cache
-- use: SET's options and EXISTS, MULTI/EXEC/DISCARD, RESP3 (HELLO 3),
-- against the real binary, a real redis-server and the example origin.
--   busted --lua=lua5.4 tests/integration/compat_spec.lua
local H = require "tests.helpers.harness"
local resp = require "tests.helpers.resp"

local assert_err = H.assert_err

local function start_all()
  local redis = H.start_redis()
  local origin = H.start_origin()
  local kv = origin.url .. "/kv/"
  local dir = H.write_policies{
    widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, stale_ttl = 30"),
    short = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, stale_ttl = 0, stale_if_error = 0"),
    wt = string.format([[
return {
  ttl = 60,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id)
    if res.status == 404 then return nil end
    return res.body
  end,
  write = function(id, value, ctx)
    local res = ctx.http.request{ method = "PUT", url = %q .. id, body = value }
    if res.status >= 300 then error("origin said " .. res.status) end
    return res.body
  end,
}
]], kv, kv),
  }
  local srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
  return redis, origin, srv
end

-- origin fetches of one path so far
local function fetches(origin, path)
  local st, body = origin:get("/_stats")
  assert.equal(200, st)
  return H.json_decode(body).paths[path] or 0
end

describe("SET options and EXISTS", function()
  local redis, origin, srv, c
  setup(function()
    redis, origin, srv = start_all()
    c = srv:client()
  end)
  teardown(H.cleanup)

  it("NX stores only without a live value, XX only with one; nil when not stored", function()
    assert.same({ "OK", "status" }, { c:call("SET", "widget:nx1", "first", "NX") })
    assert.same({ nil, "nil" }, { c:call("SET", "widget:nx1", "second", "NX") })
    assert.equal("first", (c:call("GET", "widget:nx1")))
    assert.same({ nil, "nil" }, { c:call("SET", "widget:xx1", "v", "XX") })
    assert.same({ 0, "integer" }, { c:call("EXISTS", "widget:xx1") })
    assert.same({ "OK", "status" }, { c:call("SET", "widget:nx1", "third", "xx") })
    assert.equal("third", (c:call("GET", "widget:nx1")))
    -- a not-found entry is not a value: NX stores over it
    assert.same({ nil, "nil" }, { c:call("GET", "widget:missing-nx") })
    assert.same({ 0, "integer" }, { c:call("EXISTS", "widget:missing-nx") })
    assert.same({ "OK", "status" }, { c:call("SET", "widget:missing-nx", "now", "NX") })
    assert.equal("now", (c:call("GET", "widget:missing-nx")))
    -- after DEL the key is absent again
    assert.equal(1, (c:call("DEL", "widget:nx1")))
    assert.same({ "OK", "status" }, { c:call("SET", "widget:nx1", "again", "NX") })
  end)

  it("GET answers the old value (nil if none), with or without NX/XX", function()
    assert.same({ nil, "nil" }, { c:call("SET", "widget:g1", "a", "GET") })
    assert.same({ "a", "bulk" }, { c:call("SET", "widget:g1", "b", "GET") })
    assert.equal("b", (c:call("GET", "widget:g1")))
    -- NX GET: not stored, the old value answered
    assert.same({ "b", "bulk" }, { c:call("SET", "widget:g1", "c", "NX", "GET") })
    assert.equal("b", (c:call("GET", "widget:g1")))
    assert.same({ nil, "nil" }, { c:call("SET", "widget:g2", "x", "XX", "GET") })
    assert.same({ 0, "integer" }, { c:call("EXISTS", "widget:g2") })
    -- binary old values come back byte for byte
    local bin = {}
    for i = 0, 255 do bin[#bin + 1] = string.char(i) end
    bin = table.concat(bin)
    assert.equal("OK", (c:call("SET", "widget:g3", bin)))
    assert.same({ bin, "bulk" }, { c:call("SET", "widget:g3", "y", "GET") })
  end)

  it("KEEPTTL keeps the old entry's deadlines; without a live entry the policy TTL", function()
    assert.equal("OK", (c:call("SET", "widget:k1", "v1", "PX", "5000")))
    assert.equal("OK", (c:call("SET", "widget:k1", "v2", "KEEPTTL")))
    local pttl = c:call("PTTL", "widget:k1")
    assert.is_true(pttl > 3000 and pttl <= 5000, "PTTL " .. pttl)
    assert.equal("v2", (c:call("GET", "widget:k1")))
    local peek = c:call("PEEK", "widget:k1")
    assert.same({ "fresh", "v2" }, { peek[1], peek[3] })
    -- the key's Redis PTTL was kept too (fresh 5 s + stale_ttl 30 s)
    local rc = redis:client()
    local keys = rc:call("KEYS", "*{widget:k1}")
    assert.equal(1, #keys)
    local rpttl = rc:call("PTTL", keys[1])
    assert.is_true(rpttl > 30000 and rpttl <= 35000, "Redis PTTL " .. rpttl)
    assert.equal("OK", (c:call("SET", "widget:k2", "v", "KEEPTTL")))
    pttl = c:call("PTTL", "widget:k2")
    assert.is_true(pttl > 55000 and pttl <= 60000, "PTTL " .. pttl)
  end)

  it("EXAT and PXAT set absolute deadlines; a past one leaves the entry stale", function()
    local now_ms = math.floor(H.now() * 1000)
    assert.equal("OK", (c:call("SET", "widget:at1", "v", "PXAT", tostring(now_ms + 4000))))
    local pttl = c:call("PTTL", "widget:at1")
    assert.is_true(pttl > 2000 and pttl <= 4000, "PTTL " .. pttl)
    assert.equal("OK", (c:call("SET", "widget:at2", "v", "EXAT", tostring(math.floor(now_ms / 1000) + 100))))
    pttl = c:call("PTTL", "widget:at2")
    assert.is_true(pttl > 97000 and pttl <= 100000, "PTTL " .. pttl)
    assert.equal("OK", (c:call("SET", "short:at3", "v", "PXAT", tostring(now_ms - 1000))))
    assert.same({ -2, "integer" }, { c:call("PTTL", "short:at3") })
    assert.same({ 0, "integer" }, { c:call("EXISTS", "short:at3") })
  end)

  it("bad combinations and numbers get Redis's error texts, and store nothing", function()
    local cases = {
      { "NX", "XX" }, { "XX", "NX" }, { "EX", "10", "KEEPTTL" }, { "KEEPTTL", "PX", "5" },
      { "EX", "1", "PX", "1" }, { "EX" }, { "BOGUS" }, { "NX", "NX", "NX", "NX", "NX", "NX", "NX", "NX", "NX" },
    }
    for _, args in ipairs(cases) do
      assert_err("ERR syntax error", c:call("SET", "widget:bad", "v", table.unpack(args)))
    end
    for _, args in ipairs{ { "EXAT", "0" }, { "PXAT", "-1" }, { "EXAT", "x" }, { "PX", "0" } } do
      assert_err("ERR invalid expire time in 'set' command", c:call("SET", "widget:bad", "v", table.unpack(args)))
    end
    assert.same({ 0, "integer" }, { c:call("EXISTS", "widget:bad") })
  end)

  it("EXISTS counts live values, a key named twice twice, and never fetches", function()
    assert.equal("OK", (c:call("SET", "widget:e1", "v")))
    assert.equal("OK", (c:call("SET", "widget:e2", "v")))
    local before = fetches(origin, "/widgets/e3")
    assert.same({ 3, "integer" }, { c:call("EXISTS", "widget:e1", "widget:e2", "widget:e3", "widget:e1") })
    assert.equal(before, fetches(origin, "/widgets/e3"))
    assert_err("ERR wrong number of arguments for 'exists' command", c:call("EXISTS"))
    assert_err("ERR unknown namespace 'nope'", c:call("EXISTS", "widget:e1", "nope:1"))
    -- a fetched value exists; a stale one still does (PEEK shows it)
    assert.equal("string", type(c:call("GET", "widget:e4")))
    assert.same({ 1, "integer" }, { c:call("EXISTS", "widget:e4") })
    assert.equal("OK", (c:call("SET", "widget:e5", "v", "PX", "1")))
    H.wait_until(function() return (c:call("PEEK", "widget:e5"))[1] == "stale" end, 3)
    assert.same({ 1, "integer" }, { c:call("EXISTS", "widget:e5") })
  end)

  it("NX is decided in Redis: of many racing NX SETs on fresh clients exactly one stores", function()
    local clients = H.open_clients(srv.port, 8)
    for i, cl in ipairs(clients) do cl:send("SET", "widget:race", "c" .. i, "NX") end
    local stored, winner = 0, nil
    for i, cl in ipairs(clients) do
      local v = cl:read_reply()
      if v == "OK" then stored, winner = stored + 1, "c" .. i end
    end
    assert.equal(1, stored)
    assert.equal(winner, (c:call("GET", "widget:race")))
    H.close_clients(clients)
  end)

  it("a write-through namespace refuses NX/XX/GET/KEEPTTL, takes EX/PXAT", function()
    for _, opt in ipairs{ "NX", "XX", "GET", "KEEPTTL" } do
      assert_err("ERR SET NX, XX, GET and KEEPTTL are not supported for namespace 'wt': its policy "
        .. "writes through to the origin", c:call("SET", "wt:1", "v", opt))
    end
    assert.equal("OK", (c:call("SET", "wt:1", "v", "EX", "30")))
    local pttl = c:call("PTTL", "wt:1")
    assert.is_true(pttl > 28000 and pttl <= 30000, "PTTL " .. pttl)
  end)
end)
