-- tests/integration/sentinel_spec.lua -- luacached behind Redis Sentinel
-- (SPEC §9, issue 8): read-through on the master the sentinels name, and a
-- SENTINEL FAILOVER under a GET load: no wrong value, luacached writes to
-- the new master within 10 s, and its backend is up afterwards.
--   busted --lua=lua5.4 tests/integration/sentinel_spec.lua
-- One master, one replica, three sentinels (tests/helpers/cluster.lua).
-- Key layout (src/keys.h, prefix "lc"): entry lc:{NS:ID}.
local H = require "tests.helpers.harness"
local C = require "tests.helpers.cluster"

local stats = H.ns_stats

local function why(v) return tostring(type(v) == "table" and (v.err or v.n) or v) end

local function backend_up(srv) return H.info_fields(srv:call("INFO")).backend_up end

describe("luacached on a Sentinel deployment", function()
  local sn, origin, srv
  local start_err -- why luacached did not start; every test then fails with it

  setup(function()
    sn = C.start_sentinel{ name = "mymaster", sentinels = 3 }
    origin = H.start_origin()
    local dir = H.write_policies{
      rt = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, l1_ttl = 0"),
      -- a new value on every fetch ("key=so:ID v=N"), so a reply can be told apart
      so = H.simple_policy(origin.url .. "/chaos/so/", "ttl = 300, l1_ttl = 0"),
    }
    local ok, err = pcall(function()
      srv = C.start_server{ redis_url = sn.url, policies_dir = dir, extra_args = { "--backend-timeout", "1000" } }
    end)
    if not ok then start_err = err end
  end)

  teardown(H.cleanup)

  before_each(function()
    if start_err then error(start_err, 0) end
    origin:reset()
  end)

  it("reads through on the master the sentinels name", function()
    H.wait_until(function() return backend_up(srv) == 1 end, 10, "backend_up:1")
    assert.equal(sn.master.port, sn:current_master_port())
    local c = srv:client()
    local v, kind = c:call("GET", "rt:1")
    assert.equal("bulk", kind, why(v))
    assert.equal("widget 1", H.json_decode(v).name)
    H.wait_until(function() return sn.master:call("EXISTS", "lc:{rt:1}") == 1 end, 2, "stored on the master")
    assert.equal(v, (c:call("GET", "rt:1")))
    assert.equal(1, origin:count("/widgets/1"))
    assert.equal(1, stats(srv, "rt").hits_redis)
    -- and the replica has it: luacached wrote to the master, not elsewhere
    H.wait_until(function() return sn.replica:call("EXISTS", "lc:{rt:1}") == 1 end, 5, "replicated")
    c:close()
  end)

  it("SENTINEL FAILOVER under a GET load: no wrong value, writes reach the new master within 10 s", function()
    local keys, seen = {}, {}
    for i = 1, 20 do
      local k = "so:" .. i
      keys[i] = { k, C.chaos_check(k, seen) }
    end
    local ld = C.load{ ports = { srv.port }, conns = 4, keys = keys }
    ld:round() -- fills every key once (v=1)
    assert.equal(0, ld.errors, "errors while warming: " .. tostring(ld.first_error))
    ld:drive_until_all_hit(origin, 3)
    H.wait_until(function()
      return sn.master:call("INFO", "replication"):find("slave0:[^\r\n]*state=online")
    end, 5, "replica online")

    local old = sn:start_failover()
    local new = ld:drive_until(function() return sn:switched(old) end, 20, "sentinel failover done")
    assert.equal(sn.replica.port, new)
    local switched_at = H.now()

    -- within 10 s of the switch a SET through luacached lands on the new
    -- master (not on the old one, which is a replica now and refuses writes)
    local n = 0
    ld:drive_until(function()
      n = n + 1
      local val = "after failover " .. n
      local r = srv:call("SET", "so:probe", val)
      if r ~= "OK" then return false end
      local raw = sn.replica:call("GET", "lc:{so:probe}")
      return type(raw) == "string" and raw:sub(-#val) == val
    end, 10, "a SET through luacached stored on the new master (port " .. new .. ")")
    -- and every key hits again, from the new master
    ld:drive_until_all_hit(origin, math.max(1, 10 - (H.now() - switched_at)))
    assert.equal(0, ld.nwrong, "wrong replies:\n" .. ld:wrong_text())
    for k, v in pairs(seen) do
      assert.is_true(v <= origin:count("/chaos/so/" .. k:match(":(.*)")), k .. " answered v=" .. v)
    end
    ld:close()

    -- a refill goes to the new master too
    assert.equal(1, srv:call("DEL", "so:1"))
    assert.is_string(srv:call("GET", "so:1"))
    H.wait_until(function() return sn.replica:call("EXISTS", "lc:{so:1}") == 1 end, 2, "so:1 stored on the new master")
    assert.equal(1, backend_up(srv))
  end)

  it("a master name the sentinels do not know: a clear log line, and it serves from the origin", function()
    local url = sn.url:gsub("/mymaster$", "/nosuch")
    assert.are_not.equal(sn.url, url)
    local other = C.start_server{ redis_url = url, policies_dir = srv.policies_dir,
                                  extra_args = { "--backend-timeout", "1000" } }
    H.wait_until(function()
      return other:log():find("knows no master named 'nosuch'", 1, true) ~= nil
    end, 5, "the log names the unknown master")
    local v, kind = other:call("GET", "rt:2")
    assert.equal("bulk", kind, why(v))
    assert.equal("widget 2", H.json_decode(v).name)
    assert.equal(0, H.info_fields(other:call("INFO")).backend_up)
    H.assert_clean_exit(other)
  end)

  -- after the failover above: a sentinel cut off from the others still
  -- names the old master (now a replica) with the old config-epoch
  it("ignores a lagging sentinel's older configuration (config-epoch) and asks the next one", function()
    local master_port = sn:current_master_port()
    local old_port = master_port == sn.master.port and sn.replica.port or sn.master.port
    local lag = H.spawn{ name = "lagsentinel", argv = { "python3", "-u",
      H.root .. "/tests/helpers/lagging_sentinel.py", "--master", "mymaster",
      "--ip", "127.0.0.1", "--port", tostring(old_port), "--epoch", "0" } }
    local lport = H.wait_until(function()
      return lag:log():match("sentinel listening on [%d.]+:(%d+)")
    end, 10, "the lagging sentinel is listening")
    local addrs = {} -- a real sentinel, the lagging one, the other real ones
    for i, s in ipairs(sn.sentinels) do
      addrs[#addrs + 1] = "127.0.0.1:" .. s.port
      if i == 1 then addrs[#addrs + 1] = "127.0.0.1:" .. lport end
    end
    local other = C.start_server{ redis_url = "redis+sentinel://" .. table.concat(addrs, ",") .. "/mymaster",
                                  policies_dir = srv.policies_dir, extra_args = { "--backend-timeout", "1000" } }
    H.wait_until(function() return backend_up(other) == 1 end, 10, "backend_up:1")
    sn.sentinels[1]:stop("KILL", 3) -- the next sentinel asked is the lagging one
    H.wait_until(function() return lag:log():find("asked 1", 1, true) end, 10, "the lagging sentinel asked")
    H.wait_until(function() return other:log():find("lags (config-epoch 0", 1, true) end, 5,
      "the lagging answer logged as ignored")
    -- luacached stays on the new master: every SET lands there
    for n = 1, 20 do
      local val = "lag " .. n
      assert.equal("OK", (other:call("SET", "so:lag", val)))
      local raw = H.call(master_port, "GET", "lc:{so:lag}")
      assert.equal(val, type(raw) == "string" and raw:sub(-#val) or raw)
      H.sleep(0.05) -- spread over a few polls of the sentinels (every 1 s)
    end
    assert.equal(1, backend_up(other))
    H.assert_clean_exit(other)
  end)

  it("shuts down cleanly", function()
    H.assert_clean_exit(srv)
  end)
end)
