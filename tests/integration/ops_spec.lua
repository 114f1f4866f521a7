-- tests/integration/ops_spec.lua -- what an operator sees: the backend error
-- counter while Redis is away, secrets kept out of the log and of ps, and
-- failed fetches in the log without flooding it. Real binary, redis-server
-- and origin.
--   busted --lua=lua5.4 tests/integration/ops_spec.lua
local H = require "tests.helpers.harness"

local function info_field(srv, name)
  local info = srv:call("INFO")
  assert.is_string(info)
  return info:match(name .. ":([^\r\n]*)")
end

local function backend_errors(srv) return tonumber(info_field(srv, "backend_errors_total")) end
local function backend_up(srv) return info_field(srv, "backend_up") == "1" end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

local function plain_find(s, what) return s:find(what, 1, true) ~= nil end

local function cmdline(pid)
  return (H.read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
end

local function ps_args(pid)
  local f = io.popen("ps -o args= -p " .. pid)
  local s = f:read("a")
  f:close()
  return s
end

-- A secret nobody else would print: the assertions look for it verbatim.
local function new_secret(tag)
  return string.format("Sekr1t-%s-%d", tag, math.random(1e8))
end

local function write_secret_file(path, content, mode)
  H.write_file(path, content)
  assert(os.execute("chmod " .. (mode or "600") .. " " .. H.sh_quote(path)))
  return path
end

describe("ops", function()
  local origin, policies

  setup(function()
    origin = H.start_origin()
    policies = H.write_policies{
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60"),
    }
  end)
  teardown(H.cleanup)
  before_each(function() origin:reset() end)

  -------------------------------------------------------------------------
  describe("luacached_backend_errors_total", function()
    it("counts a lost connection even with no command in flight", function()
      local redis = H.start_redis()
      local srv = H.start_server{ redis_port = redis.port, policies_dir = policies }
      H.wait_until(function() return backend_up(srv) end, 5, "backend up")
      local e0 = backend_errors(srv)
      assert.equal(0, e0)
      -- Redis drops our command connection (not the subscriber, not this one)
      -- and stays up, so the reconnect succeeds at once: exactly one error.
      local killed = redis:call("CLIENT", "KILL", "TYPE", "normal")
      assert.is_true(killed >= 1)
      H.wait_until(function() return backend_errors(srv) > e0 end, 5,
        "backend_errors_total grows after the connection was killed")
      H.wait_until(function() return backend_up(srv) end, 5, "backend up again")
      assert.equal(e0 + 1, backend_errors(srv))
      local m = srv:call("METRICS")
      assert.truthy(m:find("\nluacached_backend_errors_total 1\n", 1, true), m)
      H.assert_clean_exit(srv)
      redis:stop()
    end)

    it("grows by one per failed reconnect while Redis is dead, and stops once it is back", function()
      local redis = H.start_redis()
      local srv = H.start_server{ redis_port = redis.port, policies_dir = policies,
                                  extra_args = { "--log-level", "debug" } }
      H.wait_until(function() return backend_up(srv) end, 5, "backend up")
      local e0 = backend_errors(srv)
      redis:kill()
      -- Each failed attempt is one debug line of the command link ("redis:",
      -- not "redis subscriber:"); the lost connection is one more.
      local function attempts(log) return count(log, "debug redis: connecting to [^\n]- failed") end
      local last = e0
      local increases = 0
      H.wait_until(function()
        local e = backend_errors(srv)
        if e > last then increases = increases + 1; last = e end
        return increases >= 4
      end, 10, "backend_errors_total keeps growing while Redis is down")
      -- and the count is exactly: 1 lost connection + 1 per failed attempt
      H.wait_until(function()
        local n1 = attempts(srv:log())
        local e = backend_errors(srv)
        local n2 = attempts(srv:log())
        return n1 == n2 and n1 >= 3 and e - e0 == 1 + n1
      end, 10, "errors = 1 + failed attempts")

      -- fail-open meanwhile: the GET is answered by fetching
      local v = srv:call("GET", "widget:21")
      assert.equal("widget 21", H.json_decode(v).name)

      redis:restart()
      H.wait_until(function() return backend_up(srv) end, 10, "backend up after the restart")
      local e1 = backend_errors(srv)
      -- stored again: the second GET does not reach the origin
      H.wait_until(function()
        local before = origin:count("/widgets/22")
        srv:call("GET", "widget:22")
        srv:call("GET", "widget:22")
        return origin:count("/widgets/22") <= before + 1
      end, 5, "GETs are stored in Redis again")
      assert.equal(e1, backend_errors(srv))
      H.assert_clean_exit(srv)
      redis:stop()
    end)
  end)

  -------------------------------------------------------------------------
  describe("secrets", function()
    local secret, redis, url

    setup(function()
      secret = new_secret("redis")
      redis = H.start_redis{ args = { "--requirepass", secret } }
      url = string.format("redis://:%s@127.0.0.1:%d/0", secret, redis.port)
    end)

    -- The server works with its Redis (AUTH accepted, a GET answered from
    -- Redis, not the origin), and the secret is nowhere to be seen.
    local function assert_works_and_hides(srv, shown_from)
      H.wait_until(function() return backend_up(srv) end, 5, "backend up (AUTH accepted)")
      local id = "s" .. math.random(1e8)
      assert.equal("widget " .. id, H.json_decode(srv:call("GET", "widget:" .. id)).name)
      assert.equal("widget " .. id, H.json_decode(srv:call("GET", "widget:" .. id)).name)
      assert.equal(1, origin:count("/widgets/" .. id), "the second GET came from Redis")

      local log = srv:log()
      assert.is_false(plain_find(log, secret), "secret in the log:\n" .. log)
      assert.truthy(plain_find(log, string.format("redis redis://:***@127.0.0.1:%d/0 (from %s)",
        redis.port, shown_from)), log)
      assert.is_false(plain_find(srv:call("INFO"), secret))
      assert.is_false(plain_find(srv:call("METRICS"), secret))
      assert.is_false(plain_find(cmdline(srv.pid), secret), "in /proc/PID/cmdline")
      assert.is_false(plain_find(ps_args(srv.pid), secret), "in ps")
      assert.is_false(plain_find(log, "readable by every user"), log)
      H.assert_clean_exit(srv)
    end

    it("--redis URL with a password: redacted in the log, hidden from ps after start", function()
      local srv = H.start_server{ redis_url = url, policies_dir = policies }
      assert.truthy(plain_find(cmdline(srv.pid), string.format("redis://:***@127.0.0.1:%d/0", redis.port)))
      assert_works_and_hides(srv, "--redis")
    end)

    it("--redis-file", function()
      local path = write_secret_file(H.tmpdir("luacached-secret") .. "/redis-url", url .. "\n")
      local srv = H.start_server{ redis_url = false, policies_dir = policies,
                                  extra_args = { "--redis-file", path } }
      assert_works_and_hides(srv, "--redis-file")
    end)

    it("LUACACHED_REDIS_URL", function()
      local srv = H.start_server{ redis_url = false, policies_dir = policies,
                                  env = { LUACACHED_REDIS_URL = url } }
      assert_works_and_hides(srv, "LUACACHED_REDIS_URL")
    end)

    it("precedence: --redis over --redis-file over LUACACHED_REDIS_URL", function()
      local dead = "redis://:nope@127.0.0.1:" .. H.free_port() .. "/0"
      local dir = H.tmpdir("luacached-secret")
      local good_file = write_secret_file(dir .. "/good", url .. "\r\n")
      local dead_file = write_secret_file(dir .. "/dead", dead .. "\n")
      -- file beats env
      local srv = H.start_server{ redis_url = false, policies_dir = policies,
                                  extra_args = { "--redis-file", good_file },
                                  env = { LUACACHED_REDIS_URL = dead } }
      assert_works_and_hides(srv, "--redis-file")
      -- flag beats file (which is not even read) and env
      srv = H.start_server{ redis_url = url, policies_dir = policies,
                            extra_args = { "--redis-file", dead_file },
                            env = { LUACACHED_REDIS_URL = dead } }
      assert.truthy(plain_find(srv:log(), "--redis-file " .. dead_file .. " not read"))
      assert_works_and_hides(srv, "--redis")
    end)

    it("warns about a world-readable secret file", function()
      local path = write_secret_file(H.tmpdir("luacached-secret") .. "/url", url, "644")
      local srv = H.start_server{ redis_url = false, policies_dir = policies,
                                  extra_args = { "--redis-file", path } }
      H.wait_until(function() return backend_up(srv) end, 5, "backend up")
      local log = srv:log()
      assert.truthy(plain_find(log, "--redis-file " .. path .. " is readable by every user (mode 0644)"), log)
      assert.is_false(plain_find(log, secret))
      H.assert_clean_exit(srv)
    end)

    it("refuses an unusable secret file with a clear error, without quoting it", function()
      local dir = H.tmpdir("luacached-secret")
      local cases = {
        { dir .. "/missing", nil, "No such file or directory" },
        { dir .. "/empty", "\n", "is empty" },
        { dir .. "/two", url .. "\nsecond line\n", "holds more than one line" },
        { dir .. "/big", url .. string.rep("x", 9000), "larger than 8192 bytes" },
        { dir, nil, "is a directory" },
      }
      for _, c in ipairs(cases) do
        if c[2] then write_secret_file(c[1], c[2]) end
        for _, flag in ipairs{ "--redis-file", "--requirepass-file" } do
          local rc, out = H.run_luacached({ flag, c[1], "--port", H.free_port(), "--metrics-port", "0",
                                            "--policies", policies }, 10)
          assert.equal(2, rc, out)
          assert.truthy(plain_find(out, "luacached: " .. flag .. " " .. c[1] .. ": " .. c[3]), out)
          assert.is_false(plain_find(out, secret), out)
        end
      end
    end)

    it("a malformed --redis URL is refused without quoting its password", function()
      -- a '/' in the password that was not %-escaped: the text before it
      -- would be parsed as the port and quoted in the error
      local bad = "redis://default:" .. secret .. "/x@127.0.0.1:" .. redis.port .. "/0"
      local rc, out = H.run_luacached({ "--redis", bad, "--port", H.free_port(), "--metrics-port", "0",
                                        "--policies", policies }, 10)
      assert.equal(2, rc, out)
      assert.truthy(plain_find(out, "--redis: bad port '***'"), out)
      assert.is_false(plain_find(out, secret), out)
    end)

    it("--requirepass-file and LUACACHED_REQUIREPASS protect the RESP port", function()
      local pass = new_secret("auth")
      local path = write_secret_file(H.tmpdir("luacached-secret") .. "/pass", pass .. "\n")
      local cases = {
        { extra_args = { "--requirepass-file", path } },
        { env = { LUACACHED_REQUIREPASS = pass } },
        -- the flag wins over the file and the environment
        { extra_args = { "--requirepass", pass, "--requirepass-file", path .. ".missing" },
          env = { LUACACHED_REQUIREPASS = "other" } },
      }
      for _, c in ipairs(cases) do
        local srv = H.start_server{ redis_url = url, policies_dir = policies,
                                    extra_args = c.extra_args, env = c.env }
        local conn = srv:client()
        local v = conn:call("PING")
        assert.truthy(H.resp.is_err(v) and v.err:find("^NOAUTH"), tostring(v and v.err or v))
        v = conn:call("AUTH", pass .. "x")
        assert.truthy(H.resp.is_err(v) and v.err:find("^WRONGPASS"))
        assert.equal("OK", conn:call("AUTH", pass))
        assert.equal("PONG", conn:call("PING"))
        conn:close()
        local log = srv:log()
        assert.is_false(plain_find(log, pass), log)
        assert.is_false(plain_find(log, secret), log)
        assert.is_false(plain_find(cmdline(srv.pid), pass))
        assert.is_false(plain_find(ps_args(srv.pid), pass))
        H.assert_clean_exit(srv)
      end
    end)

    it("--help documents the file and environment sources", function()
      local rc, out = H.run_luacached({ "--help" }, 10)
      assert.equal(0, rc)
      for _, w in ipairs{ "--redis-file PATH", "--requirepass-file PATH", "LUACACHED_REDIS_URL",
                          "LUACACHED_REQUIREPASS" } do
        assert.truthy(plain_find(out, w), w)
      end
    end)
  end)

  -------------------------------------------------------------------------
  describe("failed fetches in the log", function()
    local redis, srv

    setup(function()
      redis = H.start_redis()
      local dir = H.write_policies{
        broken = H.simple_policy(origin.url .. "/widgets/", "ttl = 60", "?status=500"),
        slow = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, fetch_timeout = 0.2", "?delay=2"),
        -- an error message with a credential-bearing URL and control bytes
        leaky = [[
return { fetch = function(id) error("http GET http://bob:hunter2@origin/x: boom\nFAKE LINE", 0) end }
]],
      }
      srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
    end)

    local function lines(ns)
      local out = {}
      for l in srv:log():gmatch("[^\n]+") do
        if l:find("[" .. ns .. "] fetch fail", 1, true) then out[#out + 1] = l end
      end
      return out
    end

    it("one line per failure naming the namespace, the id and the message", function()
      local v = srv:call("GET", "broken:b1")
      assert.truthy(H.resp.is_err(v))
      local l = H.wait_until(function() return lines("broken")[1] end, 5, "a log line")
      assert.truthy(l:find(" warn  [broken] fetch failed (error) for id 'b1': ", 1, true), l)
      assert.truthy(l:find("origin said 500", 1, true), l)

      v = srv:call("GET", "slow:t1")
      assert.truthy(H.resp.is_err(v))
      l = H.wait_until(function() return lines("slow")[1] end, 5, "a timeout line")
      assert.truthy(l:find("[slow] fetch failed (timeout) for id 't1': fetch timed out after 0.2s",
        1, true), l)
    end)

    it("escapes binary ids and messages and redacts credentials in them", function()
      local v = srv:call("GET", "leaky:a\0b\r\nc'\255")
      assert.truthy(H.resp.is_err(v))
      local l = H.wait_until(function() return lines("leaky")[1] end, 5, "a log line")
      assert.truthy(l:find([[for id 'a\x00b\x0d\x0ac\'\xff': http GET http://bob:***@origin/x: boom\x0aFAKE LINE]],
        1, true), l)
      local log = srv:log()
      assert.is_false(plain_find(log, "hunter2"))
      assert.is_nil(log:find("\nFAKE LINE"), "a message started a line of its own")
      -- a long id is cut
      srv:call("GET", "leaky:" .. string.rep("z", 500))
      l = H.wait_until(function() return lines("leaky")[2] end, 5, "a second line")
      assert.truthy(l:find("for id '" .. string.rep("z", 64) .. "...(500 bytes)': ", 1, true), l)
    end)

    it("200 failures in a burst give a bounded number of lines, and every one is accounted for", function()
      local n = 200
      local before = #lines("broken")
      local conns = H.open_clients(srv.port, 4)
      local t0 = H.now()
      for i = 1, n do conns[i % 4 + 1]:send("GET", "broken:flood" .. i) end
      for i = 1, n do
        local v = conns[i % 4 + 1]:read_reply()
        assert.truthy(H.resp.is_err(v), tostring(v))
      end
      local elapsed = H.now() - t0
      H.close_clients(conns)
      -- at most 5 lines in each 1 s window the burst touched (the window
      -- may have begun with an earlier test's failure, hence >= 1)
      local logged = #lines("broken") - before
      local windows = math.ceil(elapsed) + 1
      assert.is_true(logged >= 1 and logged <= 5 * windows,
        string.format("%d lines for %d failures in %.2f s", logged, n, elapsed))

      -- One more failure, in a later window: its line comes after the count
      -- of what was held back.
      H.sleep(1.1)
      assert.truthy(H.resp.is_err(srv:call("GET", "broken:after")))
      H.wait_until(function() return plain_find(srv:log(), "for id 'after'") end, 5, "the line")
      local shown, suppressed = 0, 0
      local all = lines("broken")
      for i = before + 1, #all do
        local l = all[i]
        local k = l:match("%[broken%] fetch failures: suppressed (%d+) similar messages")
        if k then suppressed = suppressed + tonumber(k) else shown = shown + 1 end
      end
      assert.equal(n + 1, shown + suppressed)
      assert.is_true(suppressed >= n - 5 * windows)

      -- another namespace has a budget of its own
      assert.truthy(H.resp.is_err(srv:call("GET", "slow:t2")))
      H.wait_until(function() return plain_find(srv:log(), "for id 't2'") end, 5, "slow's line")
    end)

    teardown(function() H.assert_clean_exit(srv) end)
  end)
end)
