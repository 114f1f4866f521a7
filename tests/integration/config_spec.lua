-- tests/integration/config_spec.lua -- --config FILE: keys named as the
-- flags, the command line winning over them, secrets from the file or a
-- file it names, and start-up refused with FILE:LINE on a bad key or value.
-- Real binary, redis-server (with a password) and origin.
--   busted --lua=lua5.4 tests/integration/config_spec.lua
local H = require "tests.helpers.harness"

local function plain_find(s, what) return s:find(what, 1, true) ~= nil end

local function write_private(path, content, mode)
  H.write_file(path, content)
  assert(os.execute("chmod " .. (mode or "600") .. " " .. H.sh_quote(path)))
  return path
end

local function port_listening(port)
  local ok, c = pcall(H.resp.try_connect, "127.0.0.1", port, 0.5)
  if ok and c then c:close() return true end
  return false
end

describe("--config", function()
  local redis, origin, policies, dir
  local redis_pw = "cfg-redis-" .. math.random(1e8)
  local auth_pw = "cfg-auth-" .. math.random(1e8)

  setup(function()
    redis = H.start_redis{ args = { "--requirepass", redis_pw } }
    origin = H.start_origin()
    policies = H.write_policies{ widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60") }
    dir = H.tmpdir("luacached-config")
  end)
  teardown(H.cleanup)

  local function redis_url() return string.format("redis://:%s@127.0.0.1:%d/0", redis_pw, redis.port) end

  local function redis_keys(pattern)
    local c = H.connect(redis.port)
    assert.equal("OK", c:call("AUTH", redis_pw))
    local keys = c:call("KEYS", pattern)
    c:close()
    return keys
  end

  it("applies the file's keys, with secrets from the files it names; flags win", function()
    local file_port = H.free_port()
    local url_file = write_private(dir .. "/redis-url", redis_url() .. "\n")
    local pass_file = write_private(dir .. "/auth", auth_pw .. "\n")
    local conf = write_private(dir .. "/a.conf", table.concat({
      "# luacached settings",
      "port = " .. file_port, -- the harness's --port wins
      "prefix = cfgtest",
      "",
      "redis-file = " .. url_file,
      "  requirepass-file =   " .. pass_file .. "  ",
      "log-level = debug",
      "metrics-port = 0",
    }, "\n") .. "\n", "644")
    local srv = H.start_server{ redis_url = false, policies_dir = policies,
                                extra_args = { "--config", conf } }
    assert.are_not.equal(file_port, srv.port)
    assert.is_false(port_listening(file_port), "listens on the file's port too")

    local c = srv:client()
    H.assert_err("NOAUTH Authentication required.", c:call("PING"))
    assert.equal("OK", c:call("AUTH", auth_pw))
    local id = "c" .. math.random(1e8)
    assert.equal("widget " .. id, H.json_decode(c:call("GET", "widget:" .. id)).name)
    assert.equal(1, origin:count("/widgets/" .. id))
    -- stored under the file's prefix, in the Redis the file's URL names
    H.wait_until(function() return #redis_keys("cfgtest*" .. id .. "*") > 0 end, 5, "entry stored")
    assert.equal(0, #redis_keys("lc:*" .. id .. "*"))

    local log = srv:log()
    assert.truthy(plain_find(log, "(from --redis-file)"), log)
    assert.truthy(plain_find(log, " debug "), "log-level = debug applied:\n" .. H.tail(log, 2000))
    assert.is_false(plain_find(log, redis_pw), log)
    assert.is_false(plain_find(log, auth_pw), log)
    -- the file holds no secret itself: no warning although every user may read it
    assert.is_false(plain_find(log, "holds a secret"), log)
    c:close()
    H.assert_clean_exit(srv)
  end)

  it("takes the Redis URL from the file itself, and warns when everyone may read it", function()
    local conf = write_private(dir .. "/b.conf", "redis = " .. redis_url() .. "\n", "644")
    local srv = H.start_server{ redis_url = false, policies_dir = policies,
                                extra_args = { "--config", conf } }
    local id = "d" .. math.random(1e8)
    assert.equal("widget " .. id, H.json_decode(srv:call("GET", "widget:" .. id)).name)
    H.wait_until(function() return #redis_keys("lc*" .. id .. "*") > 0 end, 5, "entry stored")
    local log = srv:log()
    assert.truthy(plain_find(log, string.format("redis redis://:***@127.0.0.1:%d/0 (from %s)",
      redis.port, conf)), log)
    assert.truthy(plain_find(log, "--config " .. conf .. " holds a secret and is readable by every user (mode 0644)"), log)
    assert.is_false(plain_find(log, redis_pw), log)
    H.assert_clean_exit(srv)

    -- private: no warning; --redis on the command line wins over the file
    write_private(conf, "redis = redis://:wrong@127.0.0.1:" .. H.free_port() .. "/0\n", "600")
    srv = H.start_server{ redis_url = redis_url(), policies_dir = policies,
                          extra_args = { "--config", conf } }
    id = "e" .. math.random(1e8)
    assert.equal("widget " .. id, H.json_decode(srv:call("GET", "widget:" .. id)).name)
    H.wait_until(function() return #redis_keys("lc*" .. id .. "*") > 0 end, 5, "entry stored")
    log = srv:log()
    assert.truthy(plain_find(log, "(from --redis)"), log)
    assert.is_false(plain_find(log, "holds a secret"), log)
    H.assert_clean_exit(srv)
  end)

  it("refuses to start on an unknown key or a bad value, naming FILE:LINE", function()
    local cases = {
      { "port = 1\n\nmax-clients = 5\n", ":3: unknown key 'max-clients'" },
      { "# x\nport = seventy\n", ":2: port wants a whole number from 0 to 65535, got 'seventy'" },
      { "log-level = chatty\n", ":1: log-level wants debug, info, warn or error, got 'chatty'" },
      { "port = 1\nport = 2\n", ":2: port given twice (first at line 1)" },
      { "requirepass " .. auth_pw .. "\n", ":1: expected 'key = value'" },
      { "check = true\n", ":1: check can only be given on the command line" },
    }
    for i, case in ipairs(cases) do
      local conf = write_private(dir .. "/bad" .. i .. ".conf", case[1])
      local rc, out = H.run_luacached({ "--config", conf, "--policies", policies, "--port", H.free_port(),
                                        "--metrics-port", "0", "--redis", redis_url() })
      assert.equal(2, rc, out)
      assert.truthy(plain_find(out, "luacached: " .. conf .. case[2]), out)
      assert.is_false(plain_find(out, auth_pw), out)
    end
    local rc, out = H.run_luacached({ "--config", dir .. "/missing.conf" })
    assert.equal(2, rc, out)
    assert.truthy(plain_find(out, "--config " .. dir .. "/missing.conf: No such file or directory"), out)
  end)

  it("--check reads the policies folder from the file", function()
    local conf = write_private(dir .. "/check.conf", "policies = " .. H.root .. "/policies\n")
    local rc, out = H.run_luacached({ "--config", conf, "--check" })
    assert.equal(0, rc, out)
    assert.truthy(plain_find(out, "policies OK: 6 namespaces"), out)
  end)

  it("a mistyped boolean flag is an unknown option", function()
    local rc, out = H.run_luacached({ "--chek", "--policies", policies })
    assert.equal(2, rc, out)
    assert.truthy(plain_find(out, "unknown option '--chek'"), out)
    rc, out = H.run_luacached({ "--policies", policies, "--chek" })
    assert.equal(2, rc, out)
    assert.truthy(plain_find(out, "unknown option '--chek'"), out)
  end)
end)

describe("examples/luacached.conf", function()
  teardown(H.cleanup)
  it("is a valid config file", function()
    local rc, out = H.run_luacached({ "--config", H.root .. "/examples/luacached.conf",
                                      "--policies", H.root .. "/policies", "--check" })
    assert.equal(0, rc, out)
    assert.truthy(out:find("policies OK: 6 namespaces", 1, true), out)
  end)
end)
