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

---------------------------------------------------------------------------

-- Mistakes inside ctx helpers and results are reported at the policy's own
-- line (never at lua/luacached/runtime.lua), in the reply and the log.
describe("policy errors name the policy's line", function()
  local redis, srv, dir, path
  local SRC = table.concat({
    "local cjson = require 'cjson'",                                      -- 1
    "return {",                                                           -- 2
    "  fetch = function(id, ctx)",                                        -- 3
    "    if id == 'tail' then return ctx.http.get(42) end",               -- 4
    "    if id == 'req' then local r = ctx.http.request('x') return r end", -- 5
    "    if id == 'json' then local s = cjson.encode(print) return s end", -- 6
    "    if id == 'bool' then return true end",                           -- 7
    "    return 'v'",                                                     -- 8
    "  end,",                                                             -- 9
    "  ttl = function(id, value)",                                        -- 10
    "    if id == 'junk' then return 'garbage' end",                      -- 11
    "    return 5",                                                       -- 12
    "  end,",                                                             -- 13
    "  on_event = function(name, data, ctx)",                             -- 14
    "    if name == 'io' then ctx.sleep(1) end",                          -- 15
    "    return { keys = { 5 } }",                                        -- 16
    "  end,",                                                             -- 17
    "}",                                                                  -- 18
  }, "\n") .. "\n"

  setup(function()
    redis = H.start_redis()
    dir = H.write_policies{ e = SRC }
    path = dir .. "/e.lua"
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir, metrics_port = 0 }
  end)
  teardown(function()
    if srv and srv:alive() then assert_clean_exit(srv) end
    H.cleanup()
  end)

  it("in the error reply of GET, EVENT and the log of SET", function()
    local c = srv:client(5)
    local cases = {
      { "GET", "e:tail", "ERR fetch failed: " .. path .. ":3: bad argument #1 to 'ctx.http.get' (url string expected, got number)" },
      { "GET", "e:req", "ERR fetch failed: " .. path .. ":5: ctx.http.request expects a table" },
      { "GET", "e:json", "ERR fetch failed: " .. path .. ":6: Cannot serialise function" },
      { "GET", "e:bool", "ERR fetch failed: " .. path .. ":3: fetch must return a string, a table or nil (got boolean)" },
      { "GET", "e:junk", "ERR fetch failed: " .. path .. ":10: ttl(id, value) must return a number >= 0 (got string)" },
      { "EVENT", "e", "io", "ERR on_event failed: " .. path .. ":15: ctx.sleep is not available in on_event" },
      { "EVENT", "e", "other", "ERR on_event failed: " .. path .. ":14: result keys[1] must be a string (got 5)" },
    }
    for _, case in ipairs(cases) do
      local want = table.remove(case)
      local e = errtext(c:call(table.unpack(case)), table.concat(case, " "))
      assert.equal(want, e:sub(1, #want))
      assert.falsy(e:find("luacached/", 1, true), e)
    end
    -- SET with a ttl function returning garbage: stored with the default,
    -- logged once at the policy's line, without a doubled prefix
    assert.equal("OK", c:call("SET", "e:junk", "x"))
    local line = H.wait_until(function()
      return srv:log():match("[^\n]*SET stored with the default ttl[^\n]*")
    end, 5, "SET's ttl failure logged")
    assert.truthy(line:find("[e] SET stored with the default ttl (300 s): ttl failed: " .. path
      .. ":10: ttl(id, value) must return a number >= 0 (got string)", 1, true), line)
    assert.falsy(line:find("ttl(id, value): ttl(id, value)", 1, true), line)
    assert.equal(300, c:call("TTL", "e:junk"))
    c:close()
  end)
end)

describe("--check", function()
  teardown(H.cleanup)

  it("reports every error of a file and every file, each with file:line, and fails", function()
    local dir = H.write_policies{
      many = "return {\n  fetch = function(id) return id end,\n  tll = 5,\n  ttl = 'x',\n  l1_ttl = -1,\n}\n",
      syntax = "return {\n  fetch = function(id) return id end\n  ttl = 5,\n}\n",
      nofetch = "return {\n  ttl = 5,\n}\n",
      good = "return { fetch = function(id) return id end }\n",
      helper = "local s = require('cjson').encode(print)\nreturn { fetch = function(id) return id end }\n",
    }
    local rc, out = H.run_luacached({ "--check", "--policies", dir }, 20)
    assert.equal(1, rc, out)
    local want = {
      dir .. "/many.lua:3: unknown field 'tll' (did you mean 'ttl'?)",
      dir .. "/many.lua:4: ttl must be a number >= 0 or a function (got string)",
      dir .. "/many.lua:5: l1_ttl must be a number >= 0 (got -1)",
      dir .. "/syntax.lua:3: '}' expected (to close '{' at line 1) near 'ttl'",
      dir .. "/nofetch.lua:1: fetch is required",
      dir .. "/helper.lua:1: Cannot serialise function",
      "policies: 4 failed, 1 OK",
    }
    for _, w in ipairs(want) do assert.truthy(out:find(w, 1, true), w .. "\n" .. out) end
    assert.falsy(out:find("luacached/", 1, true), out)
    assert.is_nil(out:find("ERROR: %a+Sanitizer"), out)
  end)

  it("checks single files, given as arguments or as --policies; warnings alone exit 0", function()
    local dir = H.write_policies{
      warn = "return {\n  fetch = function(id) return id end,\n  fetch_timeout = 20,\n  lock_timeout = 10,\n  warm_every = 5,\n}\n",
      good = "return { fetch = function(id) return id end }\n",
      bad = "return {\n  fetch = 1,\n}\n",
    }
    local rc, out = H.run_luacached({ "--check", dir .. "/warn.lua" }, 20)
    assert.equal(0, rc, out)
    assert.truthy(out:find(dir .. "/warn.lua:3: warning: fetch_timeout (20 s) is not below lock_timeout (10 s)", 1, true), out)
    assert.truthy(out:find(dir .. "/warn.lua:5: warning: warm_every = 5 does nothing without a warm function", 1, true), out)
    assert.truthy(out:find("policies OK: 1 namespaces (with warnings, above)", 1, true), out)
    rc, out = H.run_luacached({ "--check", dir .. "/good.lua", dir .. "/warn.lua" }, 20)
    assert.equal(0, rc, out)
    assert.truthy(out:find("policies OK: 2 namespaces", 1, true), out)
    rc, out = H.run_luacached({ "--policies", dir .. "/bad.lua", "--check" }, 20)
    assert.equal(1, rc, out)
    assert.truthy(out:find(dir .. "/bad.lua:2: fetch must be a function (got number)", 1, true), out)
    assert.falsy(out:find("good.lua", 1, true), out) -- only the file named
    rc, out = H.run_luacached({ "--check", dir .. "/nope.lua" }, 20)
    assert.equal(1, rc, out)
    assert.truthy(out:find(dir .. "/nope.lua: No such file or directory", 1, true), out)
    rc, out = H.run_luacached({ "--check", dir .. "/" }, 20)
    assert.equal(1, rc, out) -- the folder: bad.lua fails
    -- a file name is only for --check
    rc, out = H.run_luacached({ dir .. "/good.lua" }, 20)
    assert.equal(2, rc, out)
    assert.truthy(out:find("only --check takes file names", 1, true), out)
  end)

  it("the server logs a policy's warnings when it loads it", function()
    local dir = H.write_policies{
      warn = "return {\n  fetch = function(id) return id end,\n  lock_timeout = 2,\n}\n",
    }
    local srv = H.start_server{ redis_url = false, policies_dir = dir, metrics_port = 0 }
    local log = srv:log()
    assert.truthy(log:find("policy 'warn': " .. dir .. "/warn.lua:3: warning: fetch_timeout (5 s) is not below lock_timeout (2 s)", 1, true), log)
    assert_clean_exit(srv)
  end)
end)
