-- tests/integration/metrics_spec.lua -- the Prometheus metrics (SPEC §7):
-- the METRICS command and the HTTP endpoint on --metrics-port, against the
-- real binary, redis-server and the example origin.
--   busted --lua=lua5.4 tests/integration/metrics_spec.lua
-- (also run with LUACACHED_BIN=build-asan/luacached)
local H = require "tests.helpers.harness"
local resp = H.resp

local assert_clean_exit = H.assert_clean_exit

local value = H.metric_value

-- Every line naming ns="NS", in order.
local function ns_lines(text, ns)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:find('ns="' .. ns .. '"', 1, true) then out[#out + 1] = line end
  end
  return out
end

local function metrics_cmd(srv)
  local v, kind = srv:call("METRICS")
  assert.equal("bulk", kind, "METRICS: " .. tostring(type(v) == "table" and v.err or v))
  return v
end

-- A raw HTTP exchange: send bytes, collect everything until the server
-- ends the connection (or `wait` seconds pass).
-- -> response bytes, how ("closed", "reset" or "timeout")
local function raw_http(port, bytes, wait, host)
  local socket = require "socket"
  local s = socket.tcp()
  s:settimeout(5)
  assert(s:connect(host or "127.0.0.1", port))
  if bytes and #bytes > 0 then s:send(bytes) end -- may fail if the server hung up: fine
  local parts, how = {}, "timeout"
  local deadline = H.now() + (wait or 5)
  while H.now() < deadline do
    s:settimeout(math.max(0.01, deadline - H.now()))
    local data, err, partial = s:receive(8192)
    local chunk = data or partial
    if chunk and #chunk > 0 then parts[#parts + 1] = chunk end
    if err == "closed" then how = "closed"; break end
    if err and err ~= "timeout" then how = "reset"; break end
  end
  s:close()
  return table.concat(parts), how
end

-- Process ids of the TCP sockets pid listens on (from /proc): a count of
-- listeners that does not depend on guessing ports.
local function listening_ports(pid)
  local rc, out = H.run({ "sh", "-c", "for f in /proc/" .. pid .. "/fd/*; do readlink \"$f\"; done" }, 10)
  assert.equal(0, rc, out)
  local inodes = {}
  for ino in out:gmatch("socket:%[(%d+)%]") do inodes[ino] = true end
  local ports = {}
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local t = H.read_file(file) or ""
    for line in t:gmatch("[^\n]+") do
      -- sl local_address rem_address st ... inode
      local port_hex, st, ino = line:match("^%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
      if port_hex and st == "0A" and inodes[ino] then ports[#ports + 1] = tonumber(port_hex, 16) end
    end
  end
  table.sort(ports)
  return ports
end

-- The families of SPEC §7, with their types.
local SPEC_FAMILIES = {
  luacached_requests_total = "counter", luacached_hits_total = "counter",
  luacached_misses_total = "counter", luacached_negative_hits_total = "counter",
  luacached_stale_served_total = "counter", luacached_fetches_total = "counter",
  luacached_fetch_duration_seconds = "histogram", luacached_coalesced_total = "counter",
  luacached_invalidations_total = "counter", luacached_backend_up = "gauge",
  luacached_backend_errors_total = "counter", luacached_policy_reloads_total = "counter",
  luacached_connected_clients = "gauge", luacached_l1_entries = "gauge",
}

describe("metrics", function()
  local redis, origin, policies

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    policies = H.write_policies{
      -- l1_ttl = 0: every hit goes to Redis, so the counts below are exact
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, negative_ttl = 30, l1_ttl = 0"),
      idle = H.simple_policy(origin.url .. "/widgets/", "ttl = 60"),
    }
  end)

  teardown(H.cleanup)

  it("counts GET hits, misses, not-founds and errors exactly; METRICS and /metrics agree", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    local c = srv:client()
    local function get(key) return c:call("GET", key) end

    assert.equal("widget 1", H.json_decode((get("widget:1"))).name) -- miss, fetch ok
    get("widget:1")                                                  -- redis hit
    get("widget:1")                                                  -- redis hit
    assert.is_nil((get("widget:missing-1")))                         -- miss, not found
    assert.is_nil((get("widget:missing-1")))                         -- negative hit
    local v = get("widget:e1?status=500")                            -- miss, fetch error
    assert.is_true(resp.is_err(v))
    v = get("widget:e1?status=500")                                  -- errors are not cached
    assert.is_true(resp.is_err(v))
    assert.equal(1, origin:count("/widgets/1"))
    c:close()

    local m = metrics_cmd(srv)
    local want = {
      ['luacached_requests_total{ns="widget",cmd="get"}'] = 7,
      ['luacached_requests_total{ns="widget",cmd="mget"}'] = 0,
      ['luacached_hits_total{ns="widget",tier="redis"}'] = 2,
      ['luacached_hits_total{ns="widget",tier="l1"}'] = 0,
      ['luacached_misses_total{ns="widget"}'] = 4,
      ['luacached_negative_hits_total{ns="widget"}'] = 1,
      ['luacached_fetches_total{ns="widget",result="ok"}'] = 1,
      ['luacached_fetches_total{ns="widget",result="not_found"}'] = 1,
      ['luacached_fetches_total{ns="widget",result="error"}'] = 2,
      ['luacached_fetches_total{ns="widget",result="timeout"}'] = 0,
      ['luacached_fetch_duration_seconds_count{ns="widget"}'] = 4,
      ['luacached_fetch_duration_seconds_bucket{ns="widget",le="+Inf"}'] = 4,
      ['luacached_stale_served_total{ns="widget",reason="revalidate"}'] = 0,
      ['luacached_stale_served_total{ns="widget",reason="error"}'] = 0,
      ['luacached_coalesced_total{ns="widget"}'] = 0,
      ['luacached_stores_total{ns="widget"}'] = 2,
      ['luacached_invalidations_total{ns="widget",kind="del"}'] = 0,
      ['luacached_policy_reloads_total{ns="widget",result="ok"}'] = 1,
      ['luacached_policy_reloads_total{ns="widget",result="error"}'] = 0,
      ['luacached_policy_loaded{ns="widget"}'] = 1,
      -- the namespace without traffic has every sample, at 0
      ['luacached_requests_total{ns="idle",cmd="get"}'] = 0,
      ['luacached_misses_total{ns="idle"}'] = 0,
      ['luacached_fetch_duration_seconds_count{ns="idle"}'] = 0,
      ['luacached_backend_up'] = 1,
    }
    for series, n in pairs(want) do
      assert.equal(n, value(m, series), series .. " in\n" .. m)
    end
    -- the histogram is cumulative: non-decreasing, ending at the count
    local last = 0
    for le, n in m:gmatch('luacached_fetch_duration_seconds_bucket{ns="widget",le="([^"]+)"} (%d+)') do
      n = tonumber(n)
      assert.is_true(n >= last, "bucket le=" .. le .. " went down")
      last = n
    end
    assert.equal(4, last)
    local sum = value(m, 'luacached_fetch_duration_seconds_sum{ns="widget"}')
    assert.is_true(sum > 0 and sum < 10, "sum " .. tostring(sum))

    -- HTTP gives the same per-namespace text (the process-wide gauges such
    -- as uptime and commands_total move between the two reads)
    local st, body, headers = H.http("http://127.0.0.1:" .. srv.metrics_port .. "/metrics")
    assert.equal(200, st)
    assert.equal("text/plain; version=0.0.4; charset=utf-8", headers["content-type"])
    assert.same(ns_lines(m, "widget"), ns_lines(body, "widget"))
    assert.same(ns_lines(m, "idle"), ns_lines(body, "idle"))
    assert.equal(1, value(body, "luacached_backend_up"))
    assert_clean_exit(srv)
  end)

  it("declares every SPEC §7 family once, with HELP and TYPE before its samples", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    local body = srv:metrics()
    local seen, current = {}, nil
    for line in body:gmatch("([^\n]*)\n") do
      local hname = line:match("^# HELP (%S+) .+$")
      local tname, ttype = line:match("^# TYPE (%S+) (%S+)$")
      if hname then
        assert.is_nil(seen[hname], "family declared twice: " .. hname)
        seen[hname] = "?"
        current = hname
      elseif tname then
        assert.equal(current, tname, "TYPE does not follow its HELP")
        seen[tname] = ttype
      else
        local name = line:match("^([%w_:]+)[{ ]")
        assert.is_not_nil(name, "not a sample line: " .. line)
        local base = name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
        assert.is_true(name == current or (seen[current] == "histogram" and base == current),
          "sample " .. name .. " outside its family " .. tostring(current))
        assert.is_not_nil(tonumber(line:match(" (%S+)$")) or line:match(" ([+-]Inf)$"), line)
      end
    end
    for fam, ty in pairs(SPEC_FAMILIES) do assert.equal(ty, seen[fam], fam) end
    -- labels as SPEC §7 names them
    for _, s in ipairs({
      'luacached_hits_total{ns="idle",tier="l1"}', 'luacached_hits_total{ns="idle",tier="redis"}',
      'luacached_stale_served_total{ns="idle",reason="revalidate"}',
      'luacached_stale_served_total{ns="idle",reason="error"}',
      'luacached_fetches_total{ns="idle",result="ok"}', 'luacached_fetches_total{ns="idle",result="not_found"}',
      'luacached_fetches_total{ns="idle",result="error"}', 'luacached_fetches_total{ns="idle",result="timeout"}',
      'luacached_policy_reloads_total{ns="idle",result="ok"}',
      'luacached_policy_reloads_total{ns="idle",result="error"}',
      'luacached_invalidations_total{ns="idle",kind="del"}',
      "luacached_connected_clients", "luacached_l1_entries", "luacached_backend_errors_total",
    }) do
      assert.is_not_nil(value(body, s), s)
    end
    -- connected_clients counts RESP clients
    local c = srv:client()
    assert.equal("PONG", c:call("PING"))
    assert.equal(1, value(srv:metrics(), "luacached_connected_clients"))
    c:close()
    assert_clean_exit(srv)
  end)

  it("answers /healthz, 404 for other paths, 405 for other methods, 400 for garbage", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    local base = "http://127.0.0.1:" .. srv.metrics_port
    local st, body = H.http(base .. "/healthz")
    assert.equal(200, st)
    assert.equal("ok", body)
    st = H.http(base .. "/")
    assert.equal(404, st)
    st = H.http(base .. "/metrics/x")
    assert.equal(404, st)
    local h
    st, body, h = H.http{ url = base .. "/metrics", method = "POST", body = "x=1" }
    assert.equal(405, st)
    assert.equal("GET, HEAD", h["allow"])
    st = H.http{ url = base .. "/healthz", method = "PUT", body = "" }
    assert.equal(405, st)
    st, body, h = H.http{ url = base .. "/metrics", method = "HEAD" }
    assert.equal(200, st)
    assert.equal("", body)
    assert.is_true(tonumber(h["content-length"]) > 1000)
    local got = raw_http(srv.metrics_port, "NOT HTTP AT ALL\r\n\r\n")
    assert.truthy(got:match("^HTTP/1%.1 400 "), got)
    -- a query string does not change the path
    st = H.http(base .. "/metrics?name[]=x")
    assert.equal(200, st)
    assert_clean_exit(srv)
  end)

  it("refuses an oversized header with 431 (or a close) and keeps serving", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    local req = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " .. ("a"):rep(64 * 1024) .. "\r\n\r\n"
    local got, how = raw_http(srv.metrics_port, req, 5)
    assert.are_not.equal("timeout", how, "connection left open")
    assert.is_true(got == "" or got:match("^HTTP/1%.1 431 ") ~= nil, got:sub(1, 200))
    assert.is_nil(got:match(" 200 "))
    -- many header lines, each small
    req = "GET /metrics HTTP/1.1\r\n" .. ("X-Pad: 0123456789abcdef\r\n"):rep(1000) .. "\r\n"
    got, how = raw_http(srv.metrics_port, req, 5)
    assert.are_not.equal("timeout", how, "connection left open")
    assert.is_true(got == "" or got:match("^HTTP/1%.1 431 ") ~= nil, got:sub(1, 200))
    -- still serving, over HTTP and RESP
    local st = H.http("http://127.0.0.1:" .. srv.metrics_port .. "/healthz")
    assert.equal(200, st)
    assert.equal("PONG", srv:call("PING"))
    assert_clean_exit(srv)
  end)

  it("turns away connections over the cap and closes silent ones after the timeout", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    local idle = {}
    for i = 1, 64 do idle[i] = resp.connect("127.0.0.1", srv.metrics_port, 5) end
    -- the 65th is answered 503 (or just closed), never served
    H.wait_until(function()
      local got, how = raw_http(srv.metrics_port, "GET /healthz HTTP/1.1\r\n\r\n", 2)
      return how ~= "timeout" and (got == "" or got:match("^HTTP/1%.1 503 ") ~= nil)
    end, 5, "65th connection refused")
    idle[1]:close()
    H.wait_until(function()
      local st = H.http{ url = "http://127.0.0.1:" .. srv.metrics_port .. "/healthz", timeout = 2 }
      return st == 200
    end, 5, "a freed slot serves again")
    -- the silent ones are closed after 10 s (METRICS_HTTP_TIMEOUT_MS)
    local t0 = H.now()
    assert.is_true(idle[2]:closed_within(15), "idle connection not closed")
    local waited = H.now() - t0
    assert.is_true(waited < 13, string.format("closed after %.1f s", waited))
    for i = 2, 64 do assert.is_true(idle[i]:closed_within(3)) end
    for i = 2, 64 do idle[i]:close() end
    assert.equal(200, (H.http("http://127.0.0.1:" .. srv.metrics_port .. "/healthz")))
    assert_clean_exit(srv)
  end)

  it("--metrics-port 0 listens on nothing but the RESP port; METRICS still works", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = 0 }
    assert.same({ srv.port }, listening_ports(srv.pid))
    assert.is_not_nil(value(metrics_cmd(srv), "luacached_backend_up"))
    assert_clean_exit(srv)

    local srv2 = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    local want = { srv2.port, srv2.metrics_port }
    table.sort(want)
    assert.same(want, listening_ports(srv2.pid))
    assert_clean_exit(srv2)
  end)

  it("shows luacached_backend_up 0 with a dead --redis port, 1 once Redis is there", function()
    local dead = H.free_port()
    local srv = H.start_server{ redis_port = dead, policies_dir = policies, metrics_port = true,
                                extra_args = { "--backend-timeout", "1000" } }
    local body = srv:metrics()
    assert.equal(0, value(body, "luacached_backend_up"))
    assert.equal(0, value(metrics_cmd(srv), "luacached_backend_up"))
    -- fail-open: GET still answers by fetching, and it is counted
    local v = srv:call("GET", "widget:7")
    assert.equal("widget 7", H.json_decode(v).name)
    body = srv:metrics()
    assert.equal(1, value(body, 'luacached_fetches_total{ns="widget",result="ok"}'))
    assert.is_true(value(body, "luacached_backend_errors_total") >= 1)
    assert_clean_exit(srv)

    local up = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    H.wait_until(function() return value(up:metrics(), "luacached_backend_up") == 1 end, 5,
      "backend_up 1")
    assert_clean_exit(up)
  end)

  it("exits non-zero with a clear error when the metrics port is in use", function()
    local socket = require "socket"
    local holder = assert(socket.bind("127.0.0.1", 0))
    local _, port = holder:getsockname()
    port = math.tointeger(tonumber(port))
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = port,
                                wait = false }
    local rc = srv:wait_exit(10)
    holder:close()
    local log = srv:log()
    assert.is_not_nil(rc, "still running; log:\n" .. H.tail(log))
    assert.are_not.equal(0, rc)
    assert.truthy(log:find("metrics", 1, true) and log:find("in use", 1, true), log)
    assert.falsy(log:find("Sanitizer", 1, true), log)
  end)

  it("with --requirepass: METRICS needs AUTH; /metrics stays on the bind address", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true,
                                extra_args = { "--requirepass", "s3cret" } }
    local c = srv:client()
    local v = c:call("METRICS")
    assert.is_true(resp.is_err(v))
    assert.truthy(v.err:find("NOAUTH", 1, true))
    assert.equal("OK", c:call("AUTH", "s3cret"))
    v = c:call("METRICS")
    assert.truthy(v:find("luacached_backend_up", 1, true))
    c:close()
    -- served without auth on 127.0.0.1 (the --bind default) ...
    assert.equal(200, (H.http("http://127.0.0.1:" .. srv.metrics_port .. "/metrics")))
    -- ... and on no other address: 127.0.0.2 is loopback too, but not bound
    local other, err = resp.try_connect("127.0.0.2", srv.metrics_port, 2)
    if other then other:close() end
    assert.is_nil(other, "metrics port reachable on 127.0.0.2")
    assert.truthy(tostring(err):find("refused", 1, true), err)
    assert_clean_exit(srv)
  end)

  it("survives METRICS and scrapes while requests are in flight", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies, metrics_port = true }
    local slow = srv:client()
    slow:send("GET", "widget:slow1?delay=1")
    for _ = 1, 5 do
      local body = srv:metrics()
      assert.truthy(body:find("luacached_fills_in_flight", 1, true))
    end
    -- the fetch starts after the GET's Redis lookup and lock: wait for it
    -- (it then runs for 1 s)
    H.wait_until(function() return value(metrics_cmd(srv), "luacached_fetches_in_flight") == 1 end,
      0.9, "the slow fetch in flight")
    local v = slow:read_reply(5)
    assert.equal("widget slow1", H.json_decode(v).name)
    slow:close()
    assert.equal(0, value(srv:metrics(), "luacached_fetches_in_flight"))
    assert_clean_exit(srv)
  end)
end)
