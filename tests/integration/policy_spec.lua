-- tests/integration/policy_spec.lua -- policy isolation (SPEC §4): the
-- sandbox, the instruction budget (pattern matching included), the memory
-- cap, fetch_timeout and a policy that fails to load, against the real
-- binary.
--   busted --lua=lua5.4 tests/integration/policy_spec.lua
local socket = require "socket"
local H = require "tests.helpers.harness"

local assert_clean_exit = H.assert_clean_exit

local errtext = H.errtext

-- true once conn has bytes to read (its reply arrived, or part of it)
local function readable(conn)
  if #conn:pending() > 0 then return true end
  local r = socket.select({ conn.sock }, nil, 0)
  return r ~= nil and #r > 0
end

describe("policies", function()
  local redis, origin, srv, c

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    local u = origin.url
    -- A binary chunk made here (string.dump is not reachable in a policy).
    local binchunk = string.dump(function() return "binary chunk ran" end)
    local policies = {
      ok = H.simple_policy(u .. "/widgets/", "ttl = 10"),
      sb = string.format([[
local BIN = %q
local probes = {
  os_execute = function() return "os.execute ran: " .. tostring(os.execute("true")) end,
  os_exit = function() os.exit(3) return "os.exit returned" end,
  io_open = function() return "io.open ran: " .. tostring(io.open("/etc/hostname")) end,
  loadfile = function() return "loadfile ran: " .. tostring(loadfile("/etc/hostname")) end,
  dofile = function() return "dofile ran: " .. tostring(dofile("/etc/hostname")) end,
  debug = function() return "debug ran: " .. tostring(debug.getinfo(1)) end,
  load_binary = function()
    local f, err = load(BIN)
    if not f then error("load refused the binary chunk: " .. tostring(err)) end
    return f()
  end,
  load_binary_b = function()
    local f, err = load(BIN, "=bin", "b")
    if not f then error("load refused the binary chunk: " .. tostring(err)) end
    return f()
  end,
  string_dump = function() return "dumped: " .. #string.dump(function() end) end,
  require_socket = function() return "socket: " .. tostring(require "socket") end,
  require_os = function() return "os: " .. tostring(require "os") end,
  require_io = function() return "io: " .. tostring(require "io") end,
  require_cjson = function() return require("cjson").encode({ ok = true }) end,
  probe = function()
    return table.concat({ tostring(rawget(_ENV, "io")), tostring(os.execute), tostring(os.exit),
      tostring(rawget(_ENV, "loadfile")), tostring(rawget(_ENV, "dofile")),
      tostring(rawget(_ENV, "debug")), tostring(string.dump), tostring(rawget(_ENV, "package")) }, ",")
  end,
}
return {
  ttl = 10,
  fetch = function(id, ctx) return probes[id]() end,
}
]], binchunk),
      loop = [[
return {
  ttl = 10,
  fetch = function(id, ctx)
    if id == "ok" then return "loop ns serves" end
    if id == "pcall" then
      while true do pcall(function() while true do end end) end
    end
    if id == "xpcall" then
      while true do xpcall(function() while true do end end, function(e) return e end) end
    end
    while true do end
  end,
}
]],
      -- string.find's matcher runs in C, out of the hook's reach; it is
      -- budgeted by lua_pattern.c (catastrophic backtracking: minutes in
      -- stock Lua)
      pat = [[
return {
  ttl = 10,
  fetch = function(id, ctx)
    if id == "ok" then return "pat ns serves " .. (("k=v"):match("(%w+)=(%w+)")) end
    return tostring(string.find(string.rep("a", 2000), ".-.-.-.-b"))
  end,
}
]],
      mem = [[
return {
  ttl = 10,
  fetch = function(id, ctx)
    if id:find("^bomb") then
      local t = {}
      while true do t[#t + 1] = string.rep("x", 1e6) end
    end
    return "mem ns serves " .. id
  end,
}
]],
      to = string.format([[
return {
  ttl = 10,
  fetch_timeout = 0.5,
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id .. "?delay=3")
    return res.body
  end,
}
]], u .. "/slow/"),
      -- line 3 has the syntax error
      bad = "return {\n  ttl = 5,\n  fetch = function(id ctx) return id end,\n}\n",
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = H.write_policies(policies) }
    c = srv:client()
  end)

  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  local function still_serving()
    assert.equal("PONG", (c:call("PING")))
    assert.equal("widget 5", H.json_decode(c:call("GET", "ok:5")).name)
    assert.is_true(srv:alive())
  end

  describe("sandbox", function()
    -- probe id -> words of which the error must mention one (it names what was refused)
    local denied = {
      os_execute = { "execute" }, os_exit = { "exit" }, io_open = { "'io'" },
      loadfile = { "loadfile" }, dofile = { "dofile" }, debug = { "debug" },
      load_binary = { "binary" }, load_binary_b = { "binary", "text" }, string_dump = { "dump" },
      require_socket = { "socket" }, require_os = { "'os'" }, require_io = { "'io'" },
    }
    for probe, words in pairs(denied) do
      it(probe .. " is not reachable from fetch", function()
        local v = c:call("GET", "sb:" .. probe)
        local e = errtext(v, probe)
        assert.truthy(e:find("^ERR fetch failed: "), e)
        local named = false
        for _, w in ipairs(words) do named = named or e:find(w, 1, true) ~= nil end
        assert.is_true(named, "error should mention " .. table.concat(words, " or ") .. ": " .. e)
        assert.falsy(e:find(" ran", 1, true), e)
        still_serving()
      end)
    end

    it("none of the dangerous globals exist in the policy environment", function()
      assert.equal("nil,nil,nil,nil,nil,nil,nil,nil", (c:call("GET", "sb:probe")))
    end)

    it("require 'cjson' works", function()
      assert.equal('{"ok":true}', (c:call("GET", "sb:require_cjson")))
    end)
  end)

  describe("runaway scripts", function()
    -- Send GET key on its own connection; while it runs, PING on another
    -- connection and GET from another namespace. Returns the reply, the
    -- seconds it took, and the slowest PING / GET seen meanwhile.
    local function run_while_probing(key)
      local victim = srv:client(10)
      local pinger = srv:client(5)
      local t0 = H.now()
      victim:send("GET", key)
      local max_ping, pings, max_get = 0, 0, 0
      while not readable(victim) do
        assert(H.now() - t0 < 6, key .. ": no reply within 6 s")
        local p0 = H.now()
        assert.equal("PONG", (pinger:call("PING")))
        max_ping = math.max(max_ping, H.now() - p0)
        pings = pings + 1
        if pings % 5 == 1 then
          p0 = H.now()
          assert.equal("widget 6", H.json_decode(pinger:call("GET", "ok:6")).name)
          max_get = math.max(max_get, H.now() - p0)
        end
        socket.sleep(0.02)
      end
      local v = victim:read_reply()
      local dt = H.now() - t0
      victim:close()
      pinger:close()
      return v, dt, max_ping, max_get, pings
    end

    for _, id in ipairs{ "forever", "pcall", "xpcall" } do
      it("an endless loop (" .. id .. ") fails only its request, within ~2 s", function()
        local v, dt, max_ping, max_get, pings = run_while_probing("loop:" .. id)
        local e = errtext(v, "loop:" .. id)
        assert.truthy(e:find("^ERR "), e)
        assert.truthy(e:lower():find("budget", 1, true), "error should mention the budget: " .. e)
        assert.is_true(dt < 2, string.format("runaway loop killed after %.2f s", dt))
        assert.is_true(pings >= 1)
        assert.is_true(max_ping < 1.5, string.format("a PING waited %.2f s", max_ping))
        assert.is_true(max_get < 1.5, string.format("a GET of another namespace waited %.2f s", max_get))
        assert.equal("loop ns serves", (c:call("GET", "loop:ok")))
        still_serving()
      end)
    end

    it("a catastrophic string.find pattern fails only its request, within ~2 s", function()
      local v, dt, max_ping, max_get, pings = run_while_probing("pat:find")
      local e = errtext(v, "pat:find")
      assert.truthy(e:find("^ERR "), e)
      assert.truthy(e:lower():find("budget", 1, true), "error should mention the budget: " .. e)
      assert.truthy(e:find("pattern matching", 1, true), e)
      assert.is_true(dt < 2, string.format("runaway pattern killed after %.2f s", dt))
      assert.is_true(pings >= 1)
      assert.is_true(max_ping < 1.5, string.format("a PING waited %.2f s", max_ping))
      assert.is_true(max_get < 1.5, string.format("a GET of another namespace waited %.2f s", max_get))
      assert.equal("pat ns serves k", (c:call("GET", "pat:ok")))
      still_serving()
    end)

    it("a memory bomb fails with -ERR (memory) and the namespace serves the next request", function()
      local t0 = H.now()
      local e = errtext((c:call("GET", "mem:bomb1")), "mem:bomb1")
      assert.truthy(e:find("^ERR "), e)
      assert.truthy(e:lower():find("memory", 1, true), "error should mention memory: " .. e)
      assert.is_true(H.now() - t0 < 3)
      assert.equal("mem ns serves next", (c:call("GET", "mem:next")))
      -- and again: the memory of the first bomb was given back
      e = errtext((c:call("GET", "mem:bomb2")), "mem:bomb2")
      assert.truthy(e:lower():find("memory", 1, true), e)
      assert.equal("mem ns serves again", (c:call("GET", "mem:again")))
      still_serving()
    end)
  end)

  it("fetch_timeout fails a slow fetch with 'timed out' on time", function()
    local t0 = H.now()
    local v = c:call("GET", "to:7")
    local dt = H.now() - t0
    local e = errtext(v, "to:7")
    assert.truthy(e:find("^ERR fetch failed: "), e)
    assert.truthy(e:find("timed out", 1, true), e)
    assert.is_true(dt >= 0.4 and dt < 1.2, string.format("fetch_timeout 0.5 s answered after %.2f s", dt))
    assert.equal(1, origin:count("/slow/7"))
    -- not cached: a second GET fetches again
    errtext((c:call("GET", "to:7")))
    assert.equal(2, origin:count("/slow/7"))
    still_serving()
  end)

  it("a namespace whose policy has a syntax error answers 'failed to load' with file and line", function()
    local e = errtext((c:call("GET", "bad:1")), "bad:1")
    assert.truthy(e:find("^ERR namespace 'bad' failed to load: "), e)
    assert.truthy(e:find("bad%.lua:3:"), "error should point at bad.lua:3: " .. e)
    -- the same for PEEK; other namespaces serve
    assert.truthy(errtext((c:call("PEEK", "bad:1"))):find("failed to load", 1, true))
    still_serving()
  end)

  it("the server shuts down cleanly after all of the above", function()
    still_serving()
    c:close()
    assert_clean_exit(srv)
  end)
end)
