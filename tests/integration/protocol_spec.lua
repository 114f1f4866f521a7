-- tests/integration/protocol_spec.lua -- the RESP2 protocol and the
-- connection-level commands (SPEC §2, §3) against the real binary, a real
-- redis-server and the example origin. Run from the repo root:
--   busted --lua=lua5.4 tests/integration/protocol_spec.lua
-- (LUACACHED_BIN=build-asan/luacached for the sanitizer build.)
local H = require "tests.helpers.harness"
local resp = require "tests.helpers.resp"

local assert_err = H.assert_err
local assert_proto_error = H.assert_proto_error

local function sha1_of(path)
  local rc, out = H.run({ "sha1sum", path }, 5)
  assert.equal(0, rc)
  return out:match("^(%x+)")
end

local assert_clean_stop = H.assert_clean_exit

local BROKEN_SRC = "return {\n  ttl = 5,\n  fetch = function(id, ctx)\n"   -- unfinished: syntax error

local function start_all()
  local redis = H.start_redis()
  local origin = H.start_origin()
  local dir = H.write_policies{
    widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60"),
    slow = H.simple_policy(origin.url .. "/slow/", "ttl = 60"),
    broken = BROKEN_SRC,
  }
  local srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
  return redis, origin, srv, dir
end

---------------------------------------------------------------------------

describe("connection commands", function()
  local origin, srv, dir
  setup(function() _, origin, srv, dir = start_all() end)
  teardown(H.cleanup)

  it("PING and PING msg", function()
    local c = srv:client()
    assert.same({ "PONG", "status" }, { c:call("PING") })
    assert.same({ "hello world", "bulk" }, { c:call("PING", "hello world") })
    assert.same({ "", "bulk" }, { c:call("PING", "") })
    assert_err("ERR wrong number of arguments for 'ping' command", c:call("PING", "a", "b"))
    c:send("PING")
    assert.equal("+PONG\r\n", c:read_raw_reply())
  end)

  it("ECHO", function()
    local c = srv:client()
    assert.same({ "hi there", "bulk" }, { c:call("ECHO", "hi there") })
    assert.same({ "", "bulk" }, { c:call("ECHO", "") })
    assert_err("ERR wrong number of arguments for 'echo' command", c:call("ECHO"))
    assert_err("ERR wrong number of arguments for 'echo' command", c:call("ECHO", "a", "b"))
  end)

  it("QUIT replies +OK and then the server closes", function()
    local c = srv:client()
    c:send("QUIT")
    assert.equal("+OK\r\n", c:read_raw_reply())
    assert.is_true(c:closed_within(3))
    assert.equal("", c:pending())
    -- commands pipelined after QUIT are not run
    c = srv:client()
    c:send_raw(resp.encode("PING") .. resp.encode("QUIT") .. resp.encode("PING"))
    assert.equal("+PONG\r\n", c:read_raw_reply())
    assert.equal("+OK\r\n", c:read_raw_reply())
    assert.is_true(c:closed_within(3))
    assert.equal("", c:pending())
  end)

  it("COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND DOCS", function()
    local c = srv:client()
    local all, kind = c:call("COMMAND")
    assert.equal("array", kind)
    local names = {}
    for i = 1, all.n do
      assert.equal("table", type(all[i]))
      names[all[i][1]] = all[i][2]
    end
    assert.equal(2, names.get)
    assert.equal(-1, names.ping)
    for _, n in ipairs{ "get", "mget", "set", "del", "peek", "ttl", "pttl", "refresh", "policies",
                        "ping", "echo", "quit", "auth", "hello", "select", "command", "client", "info" } do
      assert.truthy(names[n], "COMMAND lacks " .. n)
    end
    assert.same({ all.n, "integer" }, { c:call("COMMAND", "COUNT") })
    -- COMMAND INFO without names lists every command, as Redis 7 does
    local every = c:call("COMMAND", "INFO")
    assert.equal(all.n, every.n)
    assert.same(all, every)
    local info = c:call("COMMAND", "INFO", "get", "GET", "nosuchcmd")
    assert.equal(3, info.n)
    assert.equal("get", info[1][1])
    assert.equal(2, info[1][2])
    assert.equal("table", type(info[1][3]))      -- flags
    assert.equal(1, info[1][4])                  -- first key
    assert.equal(1, info[1][5])                  -- last key
    assert.equal(1, info[1][6])                  -- step
    assert.equal("get", info[2][1])
    assert.is_nil(info[3])
    local docs
    docs, kind = c:call("COMMAND", "DOCS")
    assert.equal("array", kind)
    assert.equal("table", type(docs))
    assert.equal("array", select(2, c:call("command", "docs", "get")))
    assert_err("ERR unknown subcommand 'NOPE'. Try COMMAND HELP.", c:call("COMMAND", "NOPE"))
  end)

  it("CLIENT SETNAME / GETNAME / SETINFO / ID", function()
    local c = srv:client()
    assert.same({ nil, "nil" }, { c:call("CLIENT", "GETNAME") })
    assert.same({ "OK", "status" }, { c:call("CLIENT", "SETNAME", "worker-1") })
    assert.same({ "worker-1", "bulk" }, { c:call("CLIENT", "GETNAME") })
    assert.same({ "worker-1", "bulk" }, { c:call("client", "getname") })
    assert_err("ERR Client names cannot contain spaces, newlines or special characters.",
      c:call("CLIENT", "SETNAME", "a b"))
    assert.same({ "worker-1", "bulk" }, { c:call("CLIENT", "GETNAME") })
    -- an empty name removes the name, as in Redis
    assert.same({ "OK", "status" }, { c:call("CLIENT", "SETNAME", "") })
    assert.same({ nil, "nil" }, { c:call("CLIENT", "GETNAME") })
    assert.same({ "OK", "status" }, { c:call("CLIENT", "SETNAME", "worker-1") })
    assert.same({ "OK", "status" }, { c:call("CLIENT", "SETINFO", "lib-name", "redis-py") })
    assert.same({ "OK", "status" }, { c:call("CLIENT", "SETINFO", "LIB-VER", "5.0.1") })
    local id1, kind = c:call("CLIENT", "ID")
    assert.equal("integer", kind)
    assert.is_true(id1 > 0)
    assert.equal(id1, c:call("CLIENT", "ID"))
    local c2 = srv:client()
    local id2 = c2:call("CLIENT", "ID")
    assert.is_true(id2 > id1, "ids must grow: " .. id1 .. " then " .. id2)
    assert.same({ nil, "nil" }, { c2:call("CLIENT", "GETNAME") })
    assert_err("ERR wrong number of arguments for 'client' command", c:call("CLIENT"))
    assert_err("ERR unknown subcommand or wrong number of arguments for 'NOPE'. Try CLIENT HELP.",
      c:call("CLIENT", "NOPE"))
  end)

  it("HELLO 2 answers the server map, HELLO 4 is -NOPROTO", function()
    local c = srv:client()
    local m, kind = c:call("HELLO", "2")
    assert.equal("array", kind)
    assert.equal(14, m.n)
    local map = {}
    for i = 1, m.n, 2 do map[m[i]] = m[i + 1] end
    assert.equal(2, map.proto)
    assert.equal(c:call("CLIENT", "ID"), map.id)
    assert.equal("standalone", map.mode)
    assert.equal("master", map.role)
    assert.equal("string", type(map.server))
    assert.equal("string", type(map.version))
    assert.equal("array", select(2, c:call("HELLO")))
    assert_err("NOPROTO unsupported protocol version", c:call("HELLO", "4"))
    assert_err("NOPROTO unsupported protocol version", c:call("HELLO", "1"))
    assert_err("ERR Protocol version is not an integer or out of range", c:call("HELLO", "x"))
    -- still RESP2 and usable
    assert.same({ "PONG", "status" }, { c:call("PING") })
    assert.equal("array", select(2, c:call("HELLO", "2", "SETNAME", "via-hello")))
    assert.equal("via-hello", c:call("CLIENT", "GETNAME"))
  end)

  it("SELECT 0 is ok, any other database is an error", function()
    local c = srv:client()
    assert.same({ "OK", "status" }, { c:call("SELECT", "0") })
    assert_err("ERR DB index is out of range", c:call("SELECT", "1"))
    assert_err("ERR value is not an integer or out of range", c:call("SELECT", "zero"))
    assert_err("ERR wrong number of arguments for 'select' command", c:call("SELECT"))
  end)

  it("AUTH without --requirepass is Redis's error", function()
    assert_err("ERR AUTH <password> called without any password configured for the default user. "
      .. "Are you sure your configuration is correct?", srv:call("AUTH", "x"))
  end)

  it("INFO is a bulk of name:value lines", function()
    local c = srv:client()
    local info, kind = c:call("INFO")
    assert.equal("bulk", kind)
    local n = 0
    for line in info:gmatch("([^\n]*)\n") do
      line = line:gsub("\r$", "")
      if line ~= "" and line:sub(1, 1) ~= "#" then
        assert.matches("^[%w_]+:[^\r\n]*$", line)
        n = n + 1
      end
    end
    assert.is_true(n >= 5, "only " .. n .. " name:value lines")
    local clients = tonumber(info:match("\nconnected_clients:(%d+)"))
    assert.is_true(clients >= 1)
    assert.truthy(info:find("\r\n", 1, true), "lines end in CRLF as in Redis")
    assert.equal("bulk", select(2, c:call("info", "server")))
  end)

  it("POLICIES lists [ns, sha1, \"\"] per namespace and the load error of a broken one", function()
    local list, kind = srv:call("POLICIES")
    assert.equal("array", kind)
    assert.equal(3, list.n)
    local by = {}
    for i = 1, list.n do
      local e = list[i]
      assert.equal(3, e.n)
      by[e[1]] = e
    end
    for _, ns in ipairs{ "widget", "slow" } do
      assert.truthy(by[ns], "POLICIES lacks " .. ns)
      assert.matches("^%x+$", by[ns][2])
      assert.equal(40, #by[ns][2])
      assert.equal(sha1_of(dir .. "/" .. ns .. ".lua"), by[ns][2])
      assert.equal("", by[ns][3])
    end
    assert.truthy(by.broken)
    assert.equal("string", type(by.broken[2]))
    assert.is_true(#by.broken[3] > 0, "broken policy has no error")
    assert.matches("broken%.lua:%d+:", by.broken[3])
    -- and the good namespaces still serve
    local _, body = origin:get("/widgets/3")
    assert.equal(body, srv:call("GET", "widget:3"))
  end)

  it("command names are case-insensitive", function()
    local c = srv:client()
    local _, body = origin:get("/widgets/11")
    assert.equal(body, c:call("get", "widget:11"))
    assert.equal(body, c:call("GET", "widget:11"))
    assert.equal(body, c:call("GeT", "widget:11"))
    assert.equal("PONG", c:call("pInG"))
    assert.equal("x", c:call("eChO", "x"))
    assert_err("ERR wrong number of arguments for 'get' command", c:call("gEt"))
  end)

  it("unknown commands get Redis's text", function()
    local c = srv:client()
    assert_err("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ", c:call("FOO", "a", "b"))
    assert_err("ERR unknown command 'foo', with args beginning with: ", c:call("foo"))
    assert_err("ERR unknown command 'averyveryverylongcommandnamethatisnotthere', with args beginning with: 'x' ",
      c:call("averyveryverylongcommandnamethatisnotthere", "x"))
    assert_err("ERR unknown command 'FLUSHALL', with args beginning with: ", c:call("FLUSHALL"))
    -- CR/LF in an echoed argument become spaces: the error stays one line
    assert_err("ERR unknown command 'FOO', with args beginning with: 'a  b' 'c' ", c:call("FOO", "a\r\nb", "c"))
    assert.equal("PONG", c:call("PING"))
  end)

  it("wrong arity gets Redis's text with the lower-case name", function()
    local c = srv:client()
    assert_err("ERR wrong number of arguments for 'get' command", c:call("GET"))
    assert_err("ERR wrong number of arguments for 'get' command", c:call("GET", "widget:1", "widget:2"))
    assert_err("ERR wrong number of arguments for 'mget' command", c:call("MGET"))
    assert_err("ERR wrong number of arguments for 'set' command", c:call("SET", "widget:1"))
    assert_err("ERR wrong number of arguments for 'del' command", c:call("DEL"))
    assert_err("ERR wrong number of arguments for 'policies' command", c:call("POLICIES", "x"))
  end)

  it("key errors (SPEC §2)", function()
    local c = srv:client()
    assert_err("ERR key must be namespace:id", c:call("GET", "nocolon"))
    assert_err("ERR key must be namespace:id", c:call("GET", ":id"))
    assert_err("ERR key must be namespace:id", c:call("GET", ""))
    assert_err("ERR unknown namespace 'nope'", c:call("GET", "nope:1"))
    assert_err("ERR unknown namespace 'bad ns'", c:call("GET", "bad ns:1"))
    assert_err("ERR key must be namespace:id", c:call("PEEK", "widget"))
    assert_err("ERR unknown namespace 'nope'", c:call("SET", "nope:1", "v"))
    assert_err("ERR unknown namespace 'nope'", c:call("MGET", "widget:1", "nope:2"))
    assert_err("ERR key must be namespace:id", c:call("DEL", "widget:1", "x"))
    -- the namespace is the text before the FIRST colon; the id may hold colons
    local _, body = origin:get("/widgets/a:b")
    assert.equal(body, c:call("GET", "widget:a:b"))
    local list = c:call("POLICIES")
    local err
    for i = 1, list.n do if list[i][1] == "broken" then err = list[i][3] end end
    assert_err("ERR namespace 'broken' failed to load: " .. err, c:call("GET", "broken:1"))
    assert.matches("^ERR namespace 'broken' failed to load: .*broken%.lua:%d+:", (c:call("GET", "broken:2")).err)
    assert.equal("PONG", c:call("PING"))
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)

---------------------------------------------------------------------------

describe("request framing", function()
  local origin, srv
  setup(function() _, origin, srv = start_all() end)
  teardown(H.cleanup)

  it("inline commands as typed into nc", function()
    local c = srv:client()
    assert.same({ "PONG", "status" }, { c:inline("PING") })
    assert.same({ "PONG", "status" }, { c:inline("ping") })
    assert.same({ "hello world", "bulk" }, { c:inline('ECHO "hello world"') })
    assert.same({ "a b", "bulk" }, { c:inline("ECHO 'a b'") })
    assert.same({ "it's", "bulk" }, { c:inline("ECHO 'it\\'s'") })
    assert.same({ "tab\there\nA\0", "bulk" }, { c:inline('ECHO "tab\\there\\n\\x41\\x00"') })
    assert.same({ "x", "bulk" }, { c:inline("  ECHO    x   ") })
    local _, body = origin:get("/widgets/42")
    assert.same({ body, "bulk" }, { c:inline("GET widget:42") })
    -- a bare "\n" ends a line as well as "\r\n"
    c:send_raw("PING\nECHO \"no cr\"\n")
    assert.equal("PONG", c:read_reply())
    assert.equal("no cr", c:read_reply())
    -- blank lines are skipped, not answered
    c:send_raw("\r\n\n   \r\nPING\r\n")
    assert.equal("+PONG\r\n", c:read_raw_reply())
    assert.equal("bye", c:call("ECHO", "bye"))
    assert.equal("", c:pending())
    assert_err("ERR unknown command 'FOO', with args beginning with: 'a' 'b c' ", c:inline("FOO a \"b c\""))
    assert_err("ERR key must be namespace:id", c:inline("GET nocolon"))
  end)

  it("multibulk commands, and empty multibulks are skipped", function()
    local c = srv:client()
    c:send_raw("*1\r\n$4\r\nPING\r\n")
    assert.equal("+PONG\r\n", c:read_raw_reply())
    c:send_raw("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n")
    assert.equal("$0\r\n\r\n", c:read_raw_reply())
    c:send_raw("*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n")
    assert.equal("+PONG\r\n", c:read_raw_reply())
    assert.equal("z", c:call("ECHO", "z"))
    assert.equal("", c:pending())
    -- inline and multibulk interleave on one connection
    c:send_raw("PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nmb\r\nECHO inl\r\n")
    assert.equal("PONG", c:read_reply())
    assert.equal("mb", c:read_reply())
    assert.equal("inl", c:read_reply())
  end)

  it("100 pipelined commands in one write are answered in request order", function()
    origin:reset()
    local c = srv:client(10)
    local cmds, want = {}, {}
    for i = 1, 100 do
      local r = i % 5
      if r == 1 then
        -- a miss that fetches from the origin; earlier ones answer later
        cmds[i] = { "GET", "widget:p" .. i .. "?delay=" .. string.format("%.3f", (100 - i) * 0.004) }
        want[i] = { kind = "bulk", id = "p" .. i }
      elseif r == 2 then
        cmds[i] = { "PING" }
        want[i] = { "PONG", "status" }
      elseif r == 3 then
        cmds[i] = { "ECHO", "e" .. i }
        want[i] = { "e" .. i, "bulk" }
      elseif r == 4 then
        cmds[i] = { "GET", "widget:missing-" .. i }
        want[i] = { nil, "nil" }
      else
        cmds[i] = { "GET", "nocolon" .. i }
        want[i] = { { err = "ERR key must be namespace:id" }, "error" }
      end
    end
    local t0 = H.now()
    local replies = c:pipeline(cmds)
    local dt = H.now() - t0
    for i = 1, 100 do
      if want[i].kind then
        assert.equal("bulk", replies[i][2], "reply " .. i)
        assert.equal(want[i].id, H.json_decode(replies[i][1]).id, "reply " .. i)
      else
        assert.same(want[i], replies[i], "reply " .. i)
      end
    end
    -- the fetches overlap: 20 of them at up to 0.4 s each would take ~4 s in series
    assert.is_true(dt < 2.5, "pipeline took " .. dt .. " s")
    assert.equal(1, origin:count("/widgets/p1"))
    assert.equal(1, origin:count("/widgets/p96"))
    assert.equal("", c:pending())
    assert.equal("PONG", c:call("PING"))
  end)

  it("a request fed one byte per send", function()
    local c = srv:client()
    local _, body = origin:get("/widgets/77")
    local req = resp.encode("GET", "widget:77") .. "PING\r\n" .. resp.encode("ECHO", "a\r\nb")
      .. "ECHO \"q q\"\r\n"
    for i = 1, #req do
      c:send_raw(req:sub(i, i))
      if i % 7 == 0 then H.sleep(0.001) end   -- let some bytes arrive in separate reads
    end
    assert.same({ body, "bulk" }, { c:read_reply() })
    assert.same({ "PONG", "status" }, { c:read_reply() })
    assert.same({ "a\r\nb", "bulk" }, { c:read_reply() })
    assert.same({ "q q", "bulk" }, { c:read_reply() })
    assert.equal("", c:pending())
  end)

  it("bulk arguments are binary-safe", function()
    local c = srv:client()
    local v = H.pattern_bytes(100000) .. "\r\n$3\r\n\0*1\r\n"
    assert.equal(v, c:call("ECHO", v))
    assert.equal("OK", c:call("SET", "widget:bin", v))
    local got, kind = c:call("GET", "widget:bin")
    assert.equal("bulk", kind)
    assert.equal(#v, #got)
    assert.is_true(v == got, "value differs")
    -- binary ids: NUL, CR, LF and colons in the id
    local id = "a\0b\r\nc:d"
    assert.equal("OK", c:call("SET", "widget:" .. id, "bin-id"))
    assert.equal("bin-id", c:call("GET", "widget:" .. id))
    assert.same({ nil, "nil" }, { c:call("PEEK", "widget:a") })
    -- a bulk split anywhere, including inside the trailing CRLF
    local enc = resp.encode("ECHO", "split\r\nme")
    for cut = 1, #enc - 1 do
      c:send_raw(enc:sub(1, cut))
      H.sleep(0.002)
      c:send_raw(enc:sub(cut + 1))
      assert.equal("split\r\nme", c:read_reply())
    end
  end)

  it("thousands of pipelined commands, more than --max-pending waiting at once, stay in order", function()
    local c = srv:client(20)
    assert.equal("OK", c:call("SET", "widget:pk", "pk-value"))
    local parts = {}
    for i = 1, 3000 do
      parts[i] = (i % 2 == 0) and resp.encode("GET", "widget:pk") or resp.encode("ECHO", tostring(i))
    end
    -- sent in batches: nobody reads replies while we send
    for b = 0, 2 do c:send_raw(table.concat(parts, "", b * 1000 + 1, b * 1000 + 1000)) end
    for i = 1, 3000 do
      local v, kind = c:read_reply()
      if i % 2 == 0 then
        assert.same({ "pk-value", "bulk" }, { v, kind }, "reply " .. i)
      else
        assert.same({ tostring(i), "bulk" }, { v, kind }, "reply " .. i)
      end
    end
    assert.equal("", c:pending())
    assert.equal("PONG", c:call("PING"))
  end)

  it("large replies to a pipelining client that reads them arrive whole and in order", function()
    local c = srv:client(20)
    local vals = {}
    for i = 1, 4 do
      vals[i] = H.pattern_bytes(300000 + i * 1000)
      assert.equal("OK", c:call("SET", "widget:large" .. i, vals[i]))
    end
    local cmds = {}
    for i = 1, 40 do cmds[i] = { "GET", "widget:large" .. (i % 4 + 1) } end
    local replies = c:pipeline(cmds)
    for i = 1, 40 do
      assert.equal("bulk", replies[i][2])
      assert.is_true(replies[i][1] == vals[i % 4 + 1], "reply " .. i .. " differs")
    end
  end)

  it("QUIT after a slow command: its reply first, then +OK, then the close", function()
    local c = srv:client(5)
    c:send_raw(resp.encode("GET", "slow:8?delay=0.3") .. resp.encode("QUIT") .. resp.encode("PING"))
    local v, kind = c:read_reply()
    assert.equal("bulk", kind)
    assert.equal(8, H.json_decode(v).id)
    assert.equal("+OK\r\n", c:read_raw_reply())
    assert.is_true(c:closed_within(3))
    assert.equal("", c:pending())
  end)

  it("a client that half-closes after its request still gets the answers (nc -q1)", function()
    local c = srv:client(5)
    c:send_raw(resp.encode("PING") .. "GET slow:9?delay=0.3\r\n" .. resp.encode("ECHO", "last"))
    assert(c.sock:shutdown("send")) -- as nc does at the end of its input
    assert.equal("+PONG\r\n", c:read_raw_reply())
    local v, kind = c:read_reply()
    assert.equal("bulk", kind)
    assert.equal(9, H.json_decode(v).id)
    assert.equal("last", (c:read_reply()))
    assert.is_true(c:closed_within(3))
  end)

  it("a client that goes away with a fetch in flight or mid-request harms nothing", function()
    origin:reset()
    for i = 1, 5 do
      local c = srv:client()
      c:send("GET", "slow:gone" .. i .. "?delay=0.3")
      c:send("GET", "slow:gone" .. i .. "?delay=0.3")
      c:close()
    end
    local c = srv:client()
    c:send_raw("*3\r\n$3\r\nSET\r\n$10\r\nwidget:abc\r\n$100\r\nonly part")
    c:close()
    c = srv:client()
    c:send_raw("ECHO \"unfinished inline")
    c:close()
    H.wait_until(function() return origin:stats().inflight == 0 and origin:count("/slow/gone5") == 1 end,
      3, "orphaned fetches done")
    local c2 = srv:client()
    -- the store is sent right after the fetch ends: wait for it to land
    H.wait_until(function() return type(c2:call("PEEK", "slow:gone3?delay=0.3")) == "table" end, 3,
      "orphaned fetch stored")
    local v = c2:call("GET", "slow:gone3?delay=0.3")
    assert.equal("gone3", H.json_decode(v).id)
    assert.equal(1, origin:count("/slow/gone3"))    -- the orphaned fetch still filled the cache
    assert.same({ nil, "nil" }, { c2:call("PEEK", "widget:abc") })
    assert.equal("PONG", c2:call("PING"))
  end)

  it("protocol errors reply -ERR Protocol error and close; replies before it still arrive", function()
    local cases = {
      { "*abc\r\n", "invalid multibulk length" },
      { "*1\r\n$-5\r\n", "invalid bulk length" },
      { "*1\r\n$abc\r\n", "invalid bulk length" },
      { "*1\r\nX\r\n", "expected '$', got 'X'" },
      { "*2\r\n$4\r\nECHO\r\n:5\r\n", "expected '$', got ':'" },
      { "*1\r\n$4\r\nPINGxx", "expected CRLF after bulk data" },
      { "ECHO \"abc\r\n", "unbalanced quotes in request" },
      { "ECHO 'abc\r\n", "unbalanced quotes in request" },
      { "ECHO \"a\"b\r\n", "unbalanced quotes in request" },
    }
    for _, case in ipairs(cases) do
      local c = srv:client()
      c:send_raw(case[1])
      local ok, err = pcall(assert_proto_error, c, case[2])
      assert(ok, string.format("%q: %s", case[1], tostring(err)))
    end
    -- earlier pipelined commands are answered first, including a slow fetch
    local c = srv:client()
    c:send_raw(resp.encode("GET", "slow:7?delay=0.3") .. "PING\r\n*abc\r\nPING\r\n")
    local v, kind = c:read_reply()
    assert.equal("bulk", kind)
    assert.equal(7, H.json_decode(v).id)
    assert.equal("PONG", c:read_reply())
    assert_proto_error(c, "invalid multibulk length")
    assert.equal("", c:pending())
    assert.equal("PONG", srv:call("PING"))
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)

---------------------------------------------------------------------------

describe("redis-cli", function()
  local origin, srv, dir
  setup(function() _, origin, srv, dir = start_all() end)
  teardown(H.cleanup)

  local function cli(...)
    local argv = { "redis-cli", "-p", srv.port, ... }
    return H.run(argv, 10)
  end

  it("PING", function()
    assert.same({ 0, "PONG\n" }, { cli("PING") })
    assert.same({ 0, "PONG\n" }, { cli("--no-raw", "PING") })
  end)

  it("GET prints the value, nil and errors", function()
    local _, body = origin:get("/widgets/42")
    assert.same({ 0, body .. "\n" }, { cli("GET", "widget:42") })
    assert.same({ 0, "(nil)\n" }, { cli("--no-raw", "GET", "widget:missing-1") })
    local rc, out = cli("--no-raw", "GET", "nocolon")
    assert.equal(0, rc)
    assert.equal("(error) ERR key must be namespace:id\n", out)
    rc, out = cli("--no-raw", "ECHO", "hi")
    assert.same({ 0, '"hi"\n' }, { rc, out })
  end)

  it("--no-raw POLICIES", function()
    local rc, out = cli("--no-raw", "POLICIES")
    assert.equal(0, rc)
    local wsha = sha1_of(dir .. "/widget.lua")
    local ssha = sha1_of(dir .. "/slow.lua")
    -- one nested array per namespace, each [ns, sha1, last_error]
    assert.truthy(out:find('1) "widget"\n   2) "' .. wsha .. '"\n   3) ""\n', 1, true)
      or out:find('1) "widget"\n   2) "' .. wsha .. '"\n   3) ""', 1, true), out)
    assert.truthy(out:find('1) "slow"\n   2) "' .. ssha .. '"\n   3) ""', 1, true), out)
    assert.truthy(out:find('1) "broken"', 1, true), out)
    assert.matches('%d%) 1%) "broken"\n   2%) "[^\n]*"\n   3%) "[^\n]*broken%.lua:%d+:', out)
    assert.matches("^1%) 1%) ", out)
  end)

  it("COMMAND COUNT and an id with colons via redis-cli", function()
    local rc, out = cli("--no-raw", "COMMAND", "COUNT")
    assert.equal(0, rc)
    assert.matches("^%(integer%) %d+\n$", out)
    local _, body = origin:get("/widgets/x:y:z")
    assert.same({ 0, body .. "\n" }, { cli("GET", "widget:x:y:z") })
  end)

  it("SET and INFO via redis-cli", function()
    assert.same({ 0, "OK\n" }, { cli("SET", "widget:cli", "from cli") })
    assert.same({ 0, "from cli\n" }, { cli("GET", "widget:cli") })
    local rc, out = cli("INFO")
    assert.equal(0, rc)
    assert.matches("connected_clients:%d+", out)
  end)

  it("leaves a clean log after a graceful stop", function()
    assert_clean_stop(srv)
  end)
end)
