-- tests/integration/sandbox_attack_spec.lua -- hostile policies (issue 6):
-- every attack fails only its own request, while PING on another
-- connection keeps answering within 50 ms, and the namespace, the server
-- and the sanitizers stay clean. Also the regressions of the defects found
-- by hand: a table result use-after-free, xpcall handlers that looped
-- forever (in fetch and in a main chunk), __gc finalizers outside the
-- budget, and runaways that stalled the loop for their whole budget.
--   busted --lua=lua5.4 tests/integration/sandbox_attack_spec.lua
local socket = require "socket"
local H = require "tests.helpers.harness"

local errtext = H.errtext

-- PINGs over a budget of 50 ms. The machine is shared and noisy, so two
-- outliers per attack are tolerated, never one over 250 ms; a stall of the
-- loop (what these attacks caused) is the whole budget, 350 ms or more.
local PING_LIMIT, PING_HARD_LIMIT = 0.050, 0.250

-- Send cmd on conn, and PING on pinger until its reply is in (at most
-- `timeout` s). Returns the reply, its kind, the slowest PING and the
-- number of PINGs over PING_LIMIT.
local function call_while_pinging(conn, pinger, timeout, ...)
  conn:send(...)
  local deadline = H.now() + timeout
  local worst, slow = 0, 0
  while H.now() < deadline do
    local r = socket.select({ conn.sock }, nil, 0.005)
    if (r and #r > 0) or #conn:pending() > 0 then
      local v, kind = conn:read_reply(5)
      return v, kind, worst, slow
    end
    local t0 = H.now()
    assert.equal("PONG", (pinger:call("PING")))
    local dt = H.now() - t0
    if dt > worst then worst = dt end
    if dt > PING_LIMIT then slow = slow + 1 end
  end
  error("no reply within " .. timeout .. " s")
end

local function assert_responsive(worst, slow, what)
  assert.is_true(slow <= 2 and worst < PING_HARD_LIMIT,
    string.format("%s: PING took up to %.0f ms (%d over %.0f ms)", what, worst * 1000, slow,
      PING_LIMIT * 1000))
end

local ATTACKS = [==[
local json = require "cjson"
local stash = {}
local spin = function() while true do end end
local A = {}
A.ok = function() return "attack ns serves" end
-- message handlers
A.xpcall_loop_handler = function() xpcall(spin, spin) end
A.xpcall_error_handler = function() xpcall(error, spin) end
A.xpcall_recursive_handler = function()
  local function h(e) return select(2, xpcall(spin, h)) end
  xpcall(spin, h)
end
A.pcall_loop = function() while true do pcall(spin) end end
A.pcall_in_pcall = function() while true do pcall(pcall, pcall, spin) end end
-- metamethods
A.gc = function() setmetatable({}, { __gc = spin }) collectgarbage() end
A.gc_via_pcall = function()
  local ok, err = pcall(setmetatable, {}, { __gc = spin })
  error(err, 0)
end
A.tostring_loop = function() return tostring(setmetatable({}, { __tostring = spin })) end
A.format_tostring_loop = function()
  return string.format("%s", setmetatable({}, { __tostring = spin }))
end
A.index_loop = function() return setmetatable({}, { __index = spin }).x end
A.index_chain = function() local t = {} setmetatable(t, { __index = t }) return t.x end
A.sort_loop = function() local t = { 3, 2, 1 } table.sort(t, function() spin() end) end
A.gsub_loop = function() return (string.gsub("abc", "%w", spin)) end
-- code loading
A.string_dump = function() return string.dump(spin) end
A.load_env = function() return load("while true do end", "=x", "t", {})() end
A.load_binary = function()
  local f, err = load("\27Lua\84\0", "=b")
  if not f then error(err, 0) end
  return f()
end
-- the fetch's own coroutine
A.resume_self = function() return coroutine.resume(coroutine.running()) end
A.close_self = function() return coroutine.close(coroutine.running()) end
A.park = function(id, ctx) stash[1] = coroutine.running() ctx.sleep(2) return "parked" end
A.resume_other = function() return coroutine.resume(stash[1]) end
A.wrap_loop = function() coroutine.wrap(function() while true do end end)() end
A.wrap_catch = function()
  local n = 0
  local ok = coroutine.resume(coroutine.create(function() while true do n = n + 1 end end))
  return "caught the budget and went on: " .. tostring(ok)
end
-- resources
A.deep_recursion = function() local function f(n) return 1 + f(n + 1) end return f(1) end
A.cjson_cyclic = function() local t = {} t.t = t return t end
A.cjson_deep = function()
  local t = {} for _ = 1, 100000 do t = { t } end return json.encode(t)
end
A.cjson_decode_deep = function() return tostring(json.decode(string.rep("[", 100000))) end
A.string_rep = function() return string.rep("x", 1 << 40) end
A.string_rep_cap = function() return #string.rep("x", 200 * 1024 * 1024) end
A.concat_huge = function()
  local t = {} for i = 1, 1e7 do t[i] = "xxxxxxxxxxxxxxxx" end return table.concat(t)
end
A.require_dotdot = function() return require("../../etc/passwd") end
A.require_abs = function() return require("/etc/passwd") end
-- __close handlers of a run the budget stopped never run (Lua left hooks off)
A.close_after_stop = function()
  local x <close> = setmetatable({}, { __close = spin })
  string.gsub("a", ".", spin)
end
A.kill_co = function()
  stash.co = coroutine.create(function()
    local x <close> = setmetatable({}, { __close = spin })
    while true do end
  end)
  local ok, err = coroutine.resume(stash.co)
  error(err, 0)
end
A.close_killed = function()
  local ok, err = coroutine.close(stash.co)
  return "closed: " .. tostring(ok) .. " " .. tostring(err)
end
A.nested_close_after_stop = function()
  coroutine.wrap(function()
    coroutine.wrap(function()
      local x <close> = setmetatable({}, { __close = spin })
      string.gsub("a", ".", spin)
    end)()
  end)()
end
-- ctx I/O where the coroutine cannot park
A.io_in_gsub = function(id, ctx)
  local ok, err = pcall(string.gsub, "a", ".", function() return ctx.http.get("http://127.0.0.1:1/") end)
  for i = 1, 1e6 do end -- past a slice: a stale park would show here
  error(err, 0)
end
A.sleep_in_nested_gsub = function(id, ctx)
  local ok, err = pcall(string.gsub, "a", ".", function()
    return coroutine.wrap(function() ctx.sleep(0.01) return "slept" end)()
  end)
  error(err, 0)
end
-- legitimate: nested coroutines busy past a slice inside a gsub callback
A.nested_busy_in_gsub = function()
  local r = string.gsub("ab", "%w", function(ch)
    return coroutine.wrap(function()
      return coroutine.wrap(function()
        local n = 0
        for i = 1, 150000 do n = n + 1 end
        return ch .. n
      end)()
    end)()
  end)
  return r
end
A.pattern_long = function() return tostring(string.find(string.rep("a", 200000), ".-b")) end
-- regression: a table result of ~200 items (use-after-free of the fetch handle)
A.table200 = function(id)
  local t = {} for i = 1, 200 do t[i] = { i = i, s = id .. ":" .. i } end return t
end
return {
  ttl = 60,
  fetch = function(id, ctx)
    local f = A[id:match("^[%w_]+")]
    if not f then return nil end
    return f(id, ctx)
  end,
}
]==]

-- attack id -> a Lua pattern the error text must match
local EXPECT = {
  xpcall_loop_handler = "budget exceeded",
  xpcall_error_handler = "budget exceeded\0without a chance to yield",
  xpcall_recursive_handler = "budget exceeded\0without a chance to yield\0error in error handling\0stack overflow",
  pcall_loop = "budget exceeded",
  pcall_in_pcall = "budget exceeded",
  gc = "__gc finalizers are not allowed",
  gc_via_pcall = "__gc finalizers are not allowed",
  tostring_loop = "without a chance to yield\0budget exceeded",
  format_tostring_loop = "without a chance to yield\0budget exceeded",
  index_loop = "budget exceeded",
  index_chain = "chain too long",
  sort_loop = "without a chance to yield\0budget exceeded",
  gsub_loop = "without a chance to yield\0budget exceeded",
  string_dump = "dump",
  load_env = "budget exceeded",
  load_binary = "binary",
  resume_self = "not a coroutine of this policy's own",
  close_self = "not a coroutine of this policy's own",
  wrap_loop = "budget exceeded",
  wrap_catch = "budget exceeded",
  deep_recursion = "stack overflow",
  cjson_cyclic = "cannot be encoded as JSON",
  cjson_deep = "nesting",
  cjson_decode_deep = "nested",
  string_rep = "too large\0not enough memory",
  string_rep_cap = "not enough memory",
  concat_huge = "not enough memory",
  require_dotdot = "not found",
  close_after_stop = "budget exceeded",
  kill_co = "budget exceeded",
  nested_close_after_stop = "budget exceeded",
  io_in_gsub = "ctx I/O cannot wait here",
  sleep_in_nested_gsub = "ctx I/O cannot wait here",
  pattern_long = "time budget (25 ms at a stretch",
  require_abs = "not found",
}

local function matches_any(text, alternatives)
  for alt in (alternatives .. "\0"):gmatch("([^%z]*)%z") do
    if text:find(alt, 1, true) then return true end
  end
  return false
end

describe("hostile policies", function()
  local redis, srv, c, pinger, dir

  setup(function()
    redis = H.start_redis()
    dir = H.write_policies{ attack = ATTACKS }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
    c = srv:client(10)
    pinger = srv:client(5)
  end)

  teardown(function()
    if srv then H.assert_clean_exit(srv) end
    H.cleanup()
  end)

  local function still_serving()
    assert.equal("PONG", (pinger:call("PING")))
    assert.equal("attack ns serves", (c:call("GET", "attack:ok")))
    assert.is_true(srv:alive())
  end

  local ids = {}
  for id in pairs(EXPECT) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    it(id .. " fails only its own request", function()
      local v, kind, worst, slow = call_while_pinging(c, pinger, 10, "GET", "attack:" .. id)
      assert.equal("error", kind, id .. " answered " .. tostring(v))
      local text = errtext(v)
      assert.is_true(matches_any(text, EXPECT[id]),
        id .. ": unexpected error: " .. text .. " (expected " .. EXPECT[id]:gsub("%z", " or ") .. ")")
      assert_responsive(worst, slow, id)
      still_serving()
    end)
  end

  it("a fetch's coroutine cannot be resumed by another fetch", function()
    local parker = srv:client(5)
    parker:send("GET", "attack:park")
    -- the park fetch holds its coroutine in `stash` while it sleeps
    H.wait_until(function()
      local v = c:call("GET", "attack:resume_other")
      local text = errtext(v)
      assert.truthy(text:find("not a coroutine of this policy's own", 1, true), text)
      return true
    end, 5)
    assert.equal("parked", (parker:read_reply(5)))
    parker:close()
    still_serving()
  end)

  it("a coroutine the budget killed is not closed again (its __close would run unbudgeted)", function()
    local v = c:call("GET", "attack:kill_co")
    assert.truthy(errtext(v):find("budget exceeded", 1, true))
    local v2, kind, worst, slow = call_while_pinging(c, pinger, 10, "GET", "attack:close_killed")
    assert.equal("bulk", kind, tostring(type(v2) == "table" and v2.err or v2))
    -- (how it ended may or may not be known: the budget stops the
    -- bookkeeping too; what matters is that no __close ran)
    assert.matches("^closed: ", v2)
    assert_responsive(worst, slow, "close_killed")
    still_serving()
  end)

  it("nested coroutines busy past a slice inside a gsub callback get no spurious yields", function()
    -- Each coroutine runs a few ms (past a 1 ms slice) where nothing can
    -- yield to the server: the slices must not leak out as coroutine
    -- yields (which made gsub keep "a" and "b"). On a loaded machine the
    -- two may together pass the 25 ms cap: that error is fine too.
    local v, kind = c:call("GET", "attack:nested_busy_in_gsub")
    if kind == "error" then
      assert.truthy(errtext(v):find("without a chance to yield", 1, true), errtext(v))
    else
      assert.equal("a150000b150000", v)
    end
  end)

  it("thirty runaways pipelined on one connection take turns with other clients", function()
    local cmds = {}
    for i = 1, 30 do cmds[i] = { "GET", "attack:pcall_loop:p" .. i } end
    local out = {}
    for i = 1, #cmds do out[i] = H.resp.encode(table.unpack(cmds[i])) end
    local runner = srv:client(20)
    runner:send_raw(table.concat(out))
    local worst, slow, got = 0, 0, 0
    local deadline = H.now() + 20
    while got < #cmds and H.now() < deadline do
      local t0 = H.now()
      assert.equal("PONG", (pinger:call("PING")))
      local dt = H.now() - t0
      if dt > worst then worst = dt end
      if dt > PING_LIMIT then slow = slow + 1 end
      local r = socket.select({ runner.sock }, nil, 0.01)
      while ((r and #r > 0) or #runner:pending() > 0) and got < #cmds do
        local v, kind = runner:read_reply(5)
        assert.equal("error", kind)
        got = got + 1
        r = socket.select({ runner.sock }, nil, 0)
        if #runner:pending() == 0 and not (r and #r > 0) then break end
      end
    end
    assert.equal(#cmds, got)
    assert.is_true(slow <= 2 and worst < PING_HARD_LIMIT,
      string.format("PING took up to %.0f ms (%d over 50 ms)", worst * 1000, slow))
    runner:close()
    still_serving()
  end)

  it("table results of 200 items, 300 times, stay clean (use-after-free regression)", function()
    local cmds = {}
    for i = 1, 300 do cmds[i] = { "GET", "attack:table200:" .. i } end
    local replies = c:pipeline(cmds)
    assert.equal(300, #replies)
    for i, r in ipairs(replies) do
      assert.equal("bulk", r[2], tostring(type(r[1]) == "table" and r[1].err or r[1]))
      local t = H.json_decode(r[1])
      assert.equal(200, #t)
      assert.equal("table200:" .. i .. ":200", t[200].s)
    end
    still_serving()
  end)

  it("ten runaway fetches at once delay PING by a slice, not by their budget", function()
    local conns = H.open_clients(srv.port, 10, 10)
    for i, cc in ipairs(conns) do cc:send("GET", "attack:pcall_loop:" .. i) end
    local worst, slow, done = 0, 0, 0
    local deadline = H.now() + 15
    local pending = {}
    for i = 1, #conns do pending[i] = true end
    while done < #conns and H.now() < deadline do
      local t0 = H.now()
      assert.equal("PONG", (pinger:call("PING")))
      local dt = H.now() - t0
      if dt > worst then worst = dt end
      if dt > PING_LIMIT then slow = slow + 1 end
      for i, cc in ipairs(conns) do
        if pending[i] then
          local r = socket.select({ cc.sock }, nil, 0)
          if (r and #r > 0) or #cc:pending() > 0 then
            local v, kind = cc:read_reply(5)
            assert.equal("error", kind)
            -- ten budgets of Lua on one core may outlast fetch_timeout
            local text = errtext(v)
            assert.truthy(text:find("budget exceeded", 1, true) or text:find("timed out", 1, true),
              text)
            pending[i] = nil
            done = done + 1
          end
        end
      end
      socket.sleep(0.002)
    end
    assert.equal(#conns, done)
    assert.is_true(slow <= 2 and worst < PING_HARD_LIMIT,
      string.format("PING took up to %.0f ms (%d over 50 ms)", worst * 1000, slow))
    H.close_clients(conns)
    still_serving()
  end)
end)

describe("hostile hooks and main chunks", function()
  local redis, srv, pinger, dir

  setup(function()
    redis = H.start_redis()
    dir = H.write_policies{
      hooks = [[
return {
  ttl = function(id, v)
    if id == "loop" then while true do end end
    if id == "slow" then local t = os.clock() while os.clock() - t < 0.005 do end end
    return 60
  end,
  fetch = function(id) return "v:" .. id end,
  on_event = function(name)
    if name == "loop" then while true do end end
    if name == "xpcall" then xpcall(function() while true do end end, function() while true do end end) end
    if name == "slowinv" then
      local t = os.clock() while os.clock() - t < 0.005 do end
      return { keys = { "hooks:ev" } }
    end
    return { keys = { "hooks:" .. name } }
  end,
  warm = function(ctx) while true do end end,
}
]],
    }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
    pinger = srv:client(5)
  end)

  teardown(function()
    if srv then H.assert_clean_exit(srv) end
    H.cleanup()
  end)

  it("a looping on_event fails its EVENT while PING answers", function()
    local c = srv:client(10)
    for _, name in ipairs{ "loop", "xpcall" } do
      local v, kind, worst, slow = call_while_pinging(c, pinger, 10, "EVENT", "hooks", name)
      assert.equal("error", kind)
      assert.matches("^ERR on_event failed: .*budget exceeded", errtext(v))
      assert_responsive(worst, slow, "on_event " .. name)
    end
    assert.equal(0, (c:call("EVENT", "hooks", "fine")))
  end)

  it("a looping warm fails WARM while PING answers", function()
    local c = srv:client(10)
    local v, kind, worst, slow = call_while_pinging(c, pinger, 10, "WARM", "hooks")
    assert.equal("error", kind)
    assert.matches("^ERR warm failed: .*budget exceeded", errtext(v))
    assert_responsive(worst, slow, "warm")
  end)

  it("a looping ttl function does not hold SET's neighbours", function()
    local c = srv:client(10)
    local v, kind, worst, slow = call_while_pinging(c, pinger, 10, "SET", "hooks:loop", "x")
    -- the value is stored with the default TTL; the failure is logged
    assert.equal("OK", v, tostring(kind))
    assert_responsive(worst, slow, "ttl")
    assert.equal("x", (c:call("GET", "hooks:loop")))
    H.wait_until(function() return srv:log():find("SET stored with the default ttl (300 s): ttl failed: ", 1, true) end, 5)
  end)

  it("a SET whose ttl function takes several slices comes before the next command", function()
    local c = srv:client(10)
    local r = c:pipeline{ { "SET", "hooks:slow", "v1" }, { "DEL", "hooks:slow" }, { "GET", "hooks:slow" } }
    assert.equal("OK", r[1][1])
    assert.equal(1, r[2][1])
    assert.equal("v:slow", r[3][1])
  end)

  it("an EVENT whose on_event takes several slices comes before the next command", function()
    local c = srv:client(10)
    local r = c:pipeline{ { "SET", "hooks:ev", "x" }, { "EVENT", "hooks", "slowinv" },
                          { "GET", "hooks:ev" } }
    assert.equal("OK", r[1][1])
    assert.equal(1, r[2][1])
    assert.equal("v:ev", r[3][1])
  end)

  it("a main chunk whose xpcall handler loops fails its reload, old version stays", function()
    H.write_policy(dir, "hooks", [[
xpcall(function() while true do end end, function() while true do end end)
return { fetch = function() return "new" end }
]])
    local c = srv:client(10)
    local v = c:call("RELOAD", "hooks")
    assert.matches("budget exceeded", errtext(v))
    assert.equal("PONG", (pinger:call("PING")))
    assert.equal("v:still", (c:call("GET", "hooks:still")))
  end)
end)
