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
    widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, stale_ttl = 30, negative_ttl = 30"),
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
    -- the script rewrites only the header: any bytes after it survive
    local bin = "a\0\nb\r\n LC1 v 1 0 1 2 3 4 5\n" .. string.rep("\255", 300)
    assert.equal("OK", (c:call("SET", "widget:k1", bin, "KEEPTTL")))
    assert.equal(bin, (c:call("GET", "widget:k1")))
    pttl = c:call("PTTL", "widget:k1")
    assert.is_true(pttl > 3000 and pttl <= 5000, "PTTL " .. pttl)
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
      { "EX", "1", "PX", "1" }, { "EX" }, { "BOGUS" }, { "NX", "GET", "XX" },
    }
    for _, args in ipairs(cases) do
      assert_err("ERR syntax error", c:call("SET", "widget:bad", "v", table.unpack(args)))
    end
    for _, args in ipairs{ { "EXAT", "0" }, { "PXAT", "-1" }, { "EXAT", "x" }, { "PX", "0" } } do
      assert_err("ERR invalid expire time in 'set' command", c:call("SET", "widget:bad", "v", table.unpack(args)))
    end
    assert.same({ 0, "integer" }, { c:call("EXISTS", "widget:bad") })
    -- repeated options are fine, as in Redis
    assert.same({ "OK", "status" }, { c:call("SET", "widget:rep", "v", "NX", "NX", "NX", "NX", "NX", "NX", "NX", "NX", "NX") })
    assert.same({ "v", "bulk" }, { c:call("SET", "widget:rep", "w", "GET", "GET", "XX") })
  end)

  it("EXISTS counts live values, a key named twice twice, and never fetches", function()
    assert.equal("OK", (c:call("SET", "widget:e1", "v")))
    assert.equal("OK", (c:call("SET", "widget:e2", "v")))
    local before = origin:count("/widgets/e3")
    assert.same({ 3, "integer" }, { c:call("EXISTS", "widget:e1", "widget:e2", "widget:e3", "widget:e1") })
    assert.equal(before, origin:count("/widgets/e3"))
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

  it("stops cleanly: exit 0, no sanitizer report", function()
    if c then c:close() end
    H.assert_clean_exit(srv)
  end)
end)

describe("MULTI / EXEC / DISCARD", function()
  local redis, origin, srv, c
  setup(function()
    redis, origin, srv = start_all()
    c = srv:client()
  end)
  teardown(H.cleanup)

  it("queues, answers +QUEUED, and EXEC answers the replies in order, fills included", function()
    origin:control("/widgets/mx-slow", { delay = 0.3, body = "slow body" })
    c:send_raw(resp.encode("MULTI") .. resp.encode("SET", "widget:m1", "one")
      .. resp.encode("GET", "widget:mx-slow") .. resp.encode("GET", "widget:m1")
      .. resp.encode("GET", "widget:missing-m") .. resp.encode("EXISTS", "widget:m1")
      .. resp.encode("PING") .. resp.encode("EXEC") .. resp.encode("ECHO", "after"))
    assert.equal("+OK\r\n", c:read_raw_reply())
    for _ = 1, 6 do assert.equal("+QUEUED\r\n", c:read_raw_reply()) end
    assert.equal("*6\r\n+OK\r\n$9\r\nslow body\r\n$3\r\none\r\n$-1\r\n:1\r\n+PONG\r\n",
      c:read_raw_reply())
    assert.same({ "after", "bulk" }, { c:read_reply() })
    assert.equal(1, origin:count("/widgets/mx-slow"))
  end)

  it("EXEC's array is byte-exact, and an empty MULTI/EXEC answers *0", function()
    c:send_raw(resp.encode("MULTI") .. resp.encode("SET", "widget:m2", "x") .. resp.encode("GET", "widget:m2")
      .. resp.encode("GET", "nope:1") .. resp.encode("EXEC"))
    assert.equal("+OK\r\n", c:read_raw_reply())
    assert.equal("+QUEUED\r\n", c:read_raw_reply())
    assert.equal("+QUEUED\r\n", c:read_raw_reply())
    assert.equal("+QUEUED\r\n", c:read_raw_reply()) -- a runtime error: queued, answered in place
    assert.equal("*3\r\n+OK\r\n$1\r\nx\r\n-ERR unknown namespace 'nope'\r\n", c:read_raw_reply())
    assert.same({ "OK", "status" }, { c:call("MULTI") })
    assert.equal("*0\r\n", (function() c:send("EXEC") return c:read_raw_reply() end)())
  end)

  it("errors at queue time abort EXEC with EXECABORT; nothing queued runs", function()
    assert.equal("OK", (c:call("MULTI")))
    assert.equal("QUEUED", (c:call("SET", "widget:m3", "never")))
    assert_err("ERR unknown command 'NOPE', with args beginning with: 'x' ", c:call("NOPE", "x"))
    assert_err("ERR wrong number of arguments for 'get' command", c:call("GET"))
    assert_err("EXECABORT Transaction discarded because of previous errors.", c:call("EXEC"))
    assert.same({ 0, "integer" }, { c:call("EXISTS", "widget:m3") })
    -- the connection is out of MULTI again
    assert_err("ERR EXEC without MULTI", c:call("EXEC"))
  end)

  it("a queue past --output-limit is refused, and EXEC aborts", function()
    local small = H.start_server{ redis_port = redis.port, policies_dir = srv.policies_dir,
                                  extra_args = { "--output-limit", "1048576" } }
    local m = small:client()
    local big = string.rep("v", 300 * 1024)
    assert.equal("OK", (m:call("MULTI")))
    for i = 1, 3 do assert.equal("QUEUED", (m:call("SET", "widget:big" .. i, big))) end
    assert_err("ERR queued commands exceed --output-limit (1048576 bytes)", m:call("SET", "widget:big4", big))
    assert_err("EXECABORT Transaction discarded because of previous errors.", m:call("EXEC"))
    assert.same({ 0, "integer" }, { m:call("EXISTS", "widget:big1") })
    m:close()
    H.assert_clean_exit(small)
  end)

  it("nested MULTI, EXEC/DISCARD without MULTI, DISCARD drops the queue", function()
    assert_err("ERR EXEC without MULTI", c:call("EXEC"))
    assert_err("ERR DISCARD without MULTI", c:call("DISCARD"))
    assert.equal("OK", (c:call("MULTI")))
    assert_err("ERR MULTI calls can not be nested", c:call("MULTI"))
    assert.equal("QUEUED", (c:call("SET", "widget:m4", "dropped")))
    assert.same({ "OK", "status" }, { c:call("DISCARD") })
    assert.same({ 0, "integer" }, { c:call("EXISTS", "widget:m4") })
    assert.same({ "PONG", "status" }, { c:call("PING") })
    -- a nested MULTI does not abort the batch (as in Redis)
    assert.equal("OK", (c:call("MULTI")))
    assert_err("ERR MULTI calls can not be nested", c:call("MULTI"))
    assert.equal("QUEUED", (c:call("PING")))
    local v = c:call("EXEC")
    assert.same({ n = 1, "PONG" }, v)
  end)

  it("WATCH is refused with the reason; UNWATCH is a no-op", function()
    assert_err("ERR WATCH is not supported: MULTI/EXEC here is a queued batch, not an optimistic "
      .. "transaction (docs/COMMANDS.md)", c:call("WATCH", "widget:1"))
    assert.same({ "OK", "status" }, { c:call("UNWATCH") })
    assert.equal("OK", (c:call("MULTI")))
    assert_err("ERR WATCH inside MULTI is not allowed", c:call("WATCH", "widget:1"))
    assert.same({ "OK", "status" }, { c:call("DISCARD") })
  end)

  it("a queued write-through SET makes the rest of the batch wait for the origin", function()
    assert.equal("OK", (c:call("SET", "wt:seq", "old")))
    origin:control("/kv/seq", { delay = 0.3 })
    c:send_raw(resp.encode("MULTI") .. resp.encode("SET", "wt:seq", "new") .. resp.encode("GET", "wt:seq")
      .. resp.encode("EXEC"))
    assert.equal("+OK\r\n", c:read_raw_reply())
    assert.equal("+QUEUED\r\n", c:read_raw_reply())
    assert.equal("+QUEUED\r\n", c:read_raw_reply())
    assert.equal("*2\r\n+OK\r\n$3\r\nnew\r\n", c:read_raw_reply())
    origin:clear_control("/kv/seq")
  end)

  it("SETs and GETs queued in one EXEC see each other, in order", function()
    assert.equal("OK", (c:call("MULTI")))
    for i = 1, 20 do
      assert.equal("QUEUED", (c:call("SET", "widget:seq", "v" .. i, "NX", "GET")))
      assert.equal("QUEUED", (c:call("SET", "widget:seq", "v" .. i)))
      assert.equal("QUEUED", (c:call("GET", "widget:seq")))
    end
    local v = c:call("EXEC")
    assert.equal(60, v.n)
    for i = 1, 20 do
      if i == 1 then assert.is_nil(v[1]) else assert.equal("v" .. (i - 1), v[3 * i - 2]) end
      assert.equal("OK", v[3 * i - 1])
      assert.equal("v" .. i, v[3 * i])
    end
  end)

  it("stops cleanly: exit 0, no sanitizer report", function()
    if c then c:close() end
    H.assert_clean_exit(srv)
  end)
end)

describe("RESP3 (HELLO 3)", function()
  local srv, c
  setup(function()
    _, _, srv = start_all()
  end)
  before_each(function() c = srv:client() end)
  after_each(function() c:close() end)
  teardown(H.cleanup)

  it("HELLO 3 answers a map in RESP3 and switches; HELLO 2 switches back", function()
    local m, kind = c:call("HELLO", "3")
    assert.equal("map", kind)
    assert.equal(3, m.proto)
    assert.equal("luacached", m.server)
    assert.equal(c:call("CLIENT", "ID"), m.id)
    -- nil is "_" now, byte for byte
    c:send("GET", "nope:1")
    assert.equal("-ERR unknown namespace 'nope'\r\n", c:read_raw_reply())
    c:send("GET", "widget:missing-r3")
    assert.equal("_\r\n", c:read_raw_reply())
    c:send("CLIENT", "GETNAME")
    assert.equal("_\r\n", c:read_raw_reply())
    c:send("MGET", "widget:missing-r3", "widget:missing-r4")
    assert.equal("*2\r\n_\r\n_\r\n", c:read_raw_reply())
    m, kind = c:call("HELLO", "2")
    assert.equal("array", kind)
    assert.equal(14, m.n)
    c:send("GET", "widget:missing-r3")
    assert.equal("$-1\r\n", c:read_raw_reply())
  end)

  it("HELLO 3 frames exactly: the map head and the proto field", function()
    c:send("HELLO", "3")
    local raw = c:read_raw_reply()
    assert.equal("%7\r\n$6\r\nserver\r\n$9\r\nluacached\r\n$7\r\nversion\r\n", raw:sub(1, 44))
    assert.truthy(raw:find("$5\r\nproto\r\n:3\r\n", 1, true), raw)
    assert.equal("$7\r\nmodules\r\n*0\r\n", raw:sub(-17))
  end)

  it("HELLO 3 with AUTH and SETNAME, as Redis", function()
    local m = c:call("HELLO", "3", "SETNAME", "r3-client")
    assert.equal(3, m.proto)
    c:send("CLIENT", "GETNAME")
    assert.equal("$9\r\nr3-client\r\n", c:read_raw_reply())
    assert_err("ERR AUTH <password> called without any password configured for the default user. "
      .. "Are you sure your configuration is correct?", c:call("HELLO", "3", "AUTH", "default", "x"))
  end)

  it("PEEK is a map, a not-found value null, INFO a verbatim string, POLICIES a map with doubles", function()
    c:call("HELLO", "3")
    assert.equal("OK", (c:call("SET", "widget:p3", "val", "PX", "50000")))
    c:send("PEEK", "widget:p3")
    local raw = c:read_raw_reply()
    assert.matches("^%%3\r\n%$5\r\nstate\r\n%$5\r\nfresh\r\n%$6\r\nttl_ms\r\n:%d+\r\n%$5\r\nvalue\r\n%$3\r\nval\r\n$", raw)
    assert.is_nil(c:call("GET", "widget:missing-p3"))
    c:send("PEEK", "widget:missing-p3")
    raw = c:read_raw_reply()
    assert.matches("^%%3\r\n%$5\r\nstate\r\n%$8\r\nnegative\r\n%$6\r\nttl_ms\r\n:%d+\r\n%$5\r\nvalue\r\n_\r\n$", raw)
    c:send("PEEK", "widget:never")
    assert.equal("_\r\n", c:read_raw_reply())
    local info, kind = c:call("INFO")
    assert.equal("verbatim", kind)
    assert.truthy(info:find("# Server\r\n", 1, true))
    c:send("INFO", "widget")
    raw = c:read_raw_reply()
    assert.equal("=", raw:sub(1, 1))
    assert.truthy(raw:find("\r\ntxt:# Namespace\r\nns_widget:loaded=1,", 1, true), raw:sub(1, 80))
    local p
    p, kind = c:call("POLICIES")
    assert.equal("map", kind)
    assert.equal(60, p.widget.ttl)
    assert.equal(1, p.widget.version)
    assert.is_nil(p.widget.last_error)
    assert.equal(40, #p.widget.sha1)
    c:send("POLICIES")
    raw = c:read_raw_reply()
    assert.truthy(raw:find("$6\r\nwidget\r\n%4\r\n$4\r\nsha1\r\n$40\r\n", 1, true), raw)
    assert.truthy(raw:find("$10\r\nlast_error\r\n_\r\n$7\r\nversion\r\n:1\r\n$3\r\nttl\r\n,60\r\n", 1, true), raw)
    -- RESP2 is unchanged
    c:call("HELLO", "2")
    assert.equal("bulk", select(2, c:call("INFO")))
    p, kind = c:call("POLICIES")
    assert.equal("array", kind)
    assert.equal(3, p[1].n)
  end)

  it("EXEC in RESP3 carries RESP3 replies", function()
    c:call("HELLO", "3")
    c:send_raw(resp.encode("MULTI") .. resp.encode("GET", "widget:missing-x3") .. resp.encode("SET", "widget:x3", "v", "XX")
      .. resp.encode("EXEC"))
    assert.equal("+OK\r\n", c:read_raw_reply())
    assert.equal("+QUEUED\r\n", c:read_raw_reply())
    assert.equal("+QUEUED\r\n", c:read_raw_reply())
    assert.equal("*2\r\n_\r\n_\r\n", c:read_raw_reply())
  end)

  it("stops cleanly: exit 0, no sanitizer report", function()
    if c then c:close() end
    H.assert_clean_exit(srv)
  end)
end)
