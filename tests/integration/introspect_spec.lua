-- tests/integration/introspect_spec.lua -- what operators look at beyond
-- the SPEC §7 families: origin responses by status class, the command and
-- Redis round-trip histograms, the in-process tier per namespace, the INFO
-- fields redis-cli --stat reads, CLIENT LIST / KILL and SLOWLOG. Real
-- binary, redis-server and the example origin.
--   busted --lua=lua5.4 tests/integration/introspect_spec.lua
local H = require "tests.helpers.harness"
local resp = H.resp

local function escape_pattern(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

local value = H.metric_value

-- The buckets of one histogram series (labels before le, "" for none):
-- they must not go down, and +Inf must equal _count. -> count
local function check_histogram(m, name, labels)
  local pre = labels ~= "" and (labels .. ",") or ""
  local last, n = 0, 0
  for le, v in m:gmatch(escape_pattern(name .. "_bucket{" .. pre) .. 'le="([^"]+)"} (%d+)') do
    v = tonumber(v)
    assert.is_true(v >= last, name .. " " .. labels .. " bucket le=" .. le .. " went down")
    last, n = v, n + 1
    if le == "+Inf" then break end
  end
  assert.equal(17, n, name .. "{" .. labels .. "}: buckets in\n" .. m)
  local suffix = labels ~= "" and ("{" .. labels .. "}") or ""
  assert.equal(last, value(m, name .. "_count" .. suffix), name .. suffix)
  assert.is_true(value(m, name .. "_sum" .. suffix) >= 0)
  return last
end

describe("introspection", function()
  local redis, origin, policies

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    policies = H.write_policies{
      widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, negative_ttl = 30, l1_ttl = 0"),
      near = H.simple_policy(origin.url .. "/widgets/", "ttl = 60, l1_ttl = 60"),
      -- nothing listens there: every call is a transport error
      dead = H.simple_policy("http://127.0.0.1:" .. H.free_port() .. "/", "ttl = 60"),
      slow = H.simple_policy(origin.url .. "/slow/", "ttl = 60, fetch_timeout = 5", "?delay=0.3"),
      late = H.simple_policy(origin.url .. "/slow/", "ttl = 60, fetch_timeout = 0.2", "?delay=2"),
    }
  end)
  teardown(H.cleanup)

  it("counts origin responses by status class, commands and Redis round trips in histograms", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies }
    local c = srv:client()
    -- the harness's readiness PINGs came before: counts below are deltas
    local m0 = c:call("METRICS")
    local pings0 = value(m0, 'luacached_command_duration_seconds_count{cmd="ping"}')
    for _ = 1, 3 do assert.is_nil((c:call("GET", "widget:missing-1"))) end -- one 404 fetch, then negative hits
    assert.is_string((c:call("GET", "widget:1")))                          -- 200
    assert.is_true(resp.is_err((c:call("GET", "widget:e1?status=500"))))  -- 500
    assert.is_true(resp.is_err((c:call("GET", "widget:e2?status=302"))))  -- 302 (not followed)
    assert.is_true(resp.is_err((c:call("GET", "dead:1"))))                -- no response
    assert.is_true(resp.is_err((c:call("GET", "late:1"))))                -- fetch_timeout first
    assert.is_string((c:call("GET", "near:1")))
    assert.is_string((c:call("GET", "near:2")))
    assert.is_string((c:call("GET", "near:2"))) -- from the in-process tier
    assert.equal("PONG", c:call("PING"))
    local m = c:call("METRICS")
    assert.is_string(m)
    local want = {
      ['luacached_origin_responses_total{ns="widget",class="2xx"}'] = 1,
      ['luacached_origin_responses_total{ns="widget",class="3xx"}'] = 1,
      ['luacached_origin_responses_total{ns="widget",class="4xx"}'] = 1,
      ['luacached_origin_responses_total{ns="widget",class="5xx"}'] = 1,
      ['luacached_origin_responses_total{ns="widget",class="error"}'] = 0,
      ['luacached_origin_responses_total{ns="dead",class="error"}'] = 1,
      ['luacached_origin_responses_total{ns="dead",class="2xx"}'] = 0,
      ['luacached_origin_responses_total{ns="late",class="error"}'] = 1,
      ['luacached_fetches_total{ns="late",result="timeout"}'] = 1,
      ['luacached_origin_responses_total{ns="near",class="2xx"}'] = 2,
      ['luacached_l1_ns_entries{ns="near"}'] = 2,
      ['luacached_l1_ns_entries{ns="widget"}'] = 0,
      ['luacached_l1_ns_entries{ns="slow"}'] = 0,
    }
    for series, n in pairs(want) do assert.equal(n, value(m, series), series .. " in\n" .. m) end
    -- every GET was timed once, the immediate ones and those that waited
    -- on Redis or a fetch alike; METRICS itself is timed once it answered
    assert.equal(11, check_histogram(m, "luacached_command_duration_seconds", 'cmd="get"'))
    assert.equal(pings0 + 1, check_histogram(m, "luacached_command_duration_seconds", 'cmd="ping"'))
    assert.equal(1, check_histogram(m, "luacached_command_duration_seconds", 'cmd="metrics"'))
    assert.equal(0, check_histogram(m, "luacached_command_duration_seconds", 'cmd="del"'))
    assert.is_true(check_histogram(m, "luacached_redis_rtt_seconds", "") > 0)
    local m2 = c:call("METRICS")
    assert.equal(2, value(m2, 'luacached_command_duration_seconds_count{cmd="metrics"}'))
    c:close()
    H.assert_clean_exit(srv)
  end)

  it("gives redis-cli --stat the fields it reads, and counts blocked clients", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies }
    local waiting = srv:client()
    waiting:send("GET", "slow:blocked")
    local info = H.wait_until(function()
      local f = H.info_fields(srv:call("INFO"))
      return f.blocked_clients == 1 and f
    end, 3, "blocked_clients never reached 1")
    assert.is_true(info.used_memory > 100000, "used_memory " .. tostring(info.used_memory))
    assert.is_true(info.used_memory_rss >= info.used_memory / 2)
    assert.matches("^%d+%.%d%d[KMG]$", info.used_memory_human)
    assert.is_string((waiting:read_reply(5)))
    assert.equal(0, H.info_fields(srv:call("INFO")).blocked_clients)
    waiting:close()

    -- two data lines, 0.2 s apart; head ends it (SIGPIPE: busted ignores it, and
    -- redis-cli would then write on until the timeout)
    local rc, out = H.run({ "sh", "-c", "timeout 5 env --default-signal=PIPE stdbuf -oL redis-cli -p " .. srv.port ..
                            " -i 0.2 --stat </dev/null | head -4" }, 10)
    assert.equal(0, rc, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do
      local keys, mem, unit, clients, blocked, reqs, conns =
        line:match("^(%d+)%s+([%d%.]+)([BKMG])%s+(%d+)%s+(%d+)%s+(%d+) %(%+%d+%)%s+(%d+)")
      if keys then lines[#lines + 1] = { mem = tonumber(mem), unit = unit, clients = tonumber(clients),
                                         blocked = tonumber(blocked), reqs = tonumber(reqs),
                                         conns = tonumber(conns) } end
    end
    assert.equal(2, #lines, out)
    for _, l in ipairs(lines) do
      assert.is_true(l.mem > 0 and (l.unit == "K" or l.unit == "M"), out)
      assert.equal(1, l.clients, out)
      assert.equal(0, l.blocked, out)
      assert.is_true(l.conns >= 3 and l.conns < 100, out)
    end
    assert.is_true(lines[2].reqs > lines[1].reqs, out)
    H.assert_clean_exit(srv)
  end)

  it("lists clients with their names and kills them by ID, ADDR, LADDR and the old form", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies }
    local a, b, d = srv:client(), srv:client(), srv:client()
    assert.equal("OK", a:call("CLIENT", "SETNAME", "alpha"))
    assert.equal("OK", b:call("CLIENT", "SETNAME", "beta"))
    local bid = b:call("CLIENT", "ID")
    assert.is_string((b:call("GET", "widget:1")))
    local list = a:call("CLIENT", "LIST")
    assert.is_string(list)
    local by_name = {}
    for line in list:gmatch("[^\n]+") do
      local f = {}
      for k, v in line:gmatch("([%w%-]+)=(%S*)") do f[k] = v end
      by_name[f.name] = f
    end
    assert.truthy(by_name.alpha, list)
    assert.truthy(by_name.beta, list)
    assert.equal(tostring(bid), by_name.beta.id)
    assert.equal("get", by_name.beta.cmd)
    assert.equal("client", by_name.alpha.cmd)
    assert.equal("127.0.0.1:" .. srv.port, by_name.beta.laddr)
    assert.matches("^127%.0%.0%.1:%d+$", by_name.beta.addr)
    assert.equal("N", by_name.beta.flags)
    assert.equal("-1", by_name.beta.multi)
    -- inside MULTI: the queued count, and flag x
    local m = srv:client()
    local mid = m:call("CLIENT", "ID")
    assert.equal("OK", m:call("MULTI"))
    assert.equal("QUEUED", m:call("GET", "widget:2"))
    assert.equal("QUEUED", m:call("PING"))
    local ml = a:call("CLIENT", "LIST", "ID", tostring(mid))
    assert.matches(" multi=2 ", ml)
    assert.matches(" flags=x ", ml)
    assert.equal("OK", m:call("DISCARD"))
    assert.matches(" multi=%-1 ", a:call("CLIENT", "LIST", "ID", tostring(mid)))
    m:close()
    -- LIST ID and INFO show one line
    local one = a:call("CLIENT", "LIST", "ID", tostring(bid))
    assert.equal(1, select(2, one:gsub("\n", "")))
    assert.matches("name=beta", one)
    assert.matches("name=alpha", a:call("CLIENT", "INFO"))

    -- ID: beta sees its connection closed, alpha goes on
    assert.equal(1, a:call("CLIENT", "KILL", "ID", tostring(bid)))
    assert.is_true(b:closed_within(3), "killed client not closed")
    assert.equal("PONG", a:call("PING"))
    assert.equal(0, a:call("CLIENT", "KILL", "ID", tostring(bid)))
    -- the old form by address, an unknown one is an error
    local daddr = d:call("CLIENT", "INFO"):match("addr=(%S+)")
    assert.equal("OK", a:call("CLIENT", "KILL", daddr))
    assert.is_true(d:closed_within(3))
    H.assert_err("ERR No such client", a:call("CLIENT", "KILL", daddr))
    -- ADDR; SKIPME yes (the default) spares the caller, LADDR matches all
    local e = srv:client()
    local eaddr = e:call("CLIENT", "INFO"):match("addr=(%S+)")
    assert.equal(1, a:call("CLIENT", "KILL", "ADDR", eaddr))
    assert.is_true(e:closed_within(3))
    local f = srv:client()
    assert.equal("PONG", f:call("PING")) -- accepted by now
    assert.equal(1, a:call("CLIENT", "KILL", "LADDR", "127.0.0.1:" .. srv.port))
    assert.is_true(f:closed_within(3))
    assert.equal("PONG", a:call("PING"))
    H.assert_err("ERR syntax error", a:call("CLIENT", "KILL", "ID", "1", "BOGUS", "x"))
    -- a client waiting on a fetch: killed at once, the fetch finishes for nobody
    local g = srv:client()
    local gid = g:call("CLIENT", "ID")
    g:send("GET", "slow:killed")
    H.wait_until(function() return H.info_fields(a:call("INFO")).blocked_clients == 1 end, 3)
    assert.matches("flags=b", a:call("CLIENT", "LIST", "ID", tostring(gid)))
    assert.equal(1, a:call("CLIENT", "KILL", "ID", tostring(gid)))
    assert.is_true(g:closed_within(1))
    H.wait_until(function()
      return H.metric_value(a:call("METRICS"), 'luacached_fetches_total{ns="slow",result="ok"}') == 1
    end, 3)
    -- SKIPME no: the caller gets its answer, then its connection goes
    assert.equal(1, a:call("CLIENT", "KILL", "LADDR", "127.0.0.1:" .. srv.port, "SKIPME", "no"))
    assert.is_true(a:closed_within(3))
    H.assert_clean_exit(srv)
  end)

  it("SLOWLOG keeps slow fetches and slow commands in Redis's shape", function()
    local srv = H.start_server{ redis_port = redis.port, policies_dir = policies,
                                extra_args = { "--slowlog-slower-than", "100000", "--slowlog-max-len", "3" } }
    local c = srv:client()
    assert.equal("OK", c:call("CLIENT", "SETNAME", "watcher"))
    assert.equal(0, c:call("SLOWLOG", "LEN"))
    assert.is_string((c:call("GET", "slow:s1"))) -- a 0.3 s fetch
    assert.equal("PONG", c:call("PING"))           -- fast: not logged
    local log = c:call("SLOWLOG", "GET")
    assert.equal(1, #log, H.json_encode(log))
    local e = log[1]
    assert.equal(6, #e)
    assert.equal(2, #e[4])
    assert.equal("FETCH", e[4][1])
    assert.equal("slow:s1", e[4][2])
    assert.is_true(e[3] >= 250000 and e[3] < 5000000, "duration " .. tostring(e[3]))
    assert.is_true(math.abs(e[2] - os.time()) < 60)
    assert.equal("", e[5])
    assert.equal("", e[6])
    assert.equal(0, e[1])
    assert.equal("OK", c:call("SLOWLOG", "RESET"))
    assert.equal(0, c:call("SLOWLOG", "LEN"))
    c:close()

    -- threshold 0: every command; arguments cut as Redis cuts them
    local all = H.start_server{ redis_port = redis.port, policies_dir = policies,
                                extra_args = { "--slowlog-slower-than", "0", "--slowlog-max-len", "3" } }
    c = all:client()
    assert.equal("OK", c:call("CLIENT", "SETNAME", "busy"))
    local args = { "ECHO" }
    for i = 1, 39 do args[#args + 1] = "a" .. i end
    c:call(table.unpack(args)) -- wrong arity: logged all the same
    assert.equal(string.rep("x", 200), c:call("ECHO", string.rep("x", 200)))
    local log2 = c:call("SLOWLOG", "GET", "-1")
    assert.equal(3, #log2) -- --slowlog-max-len
    -- newest first: ECHO xxx, ECHO a1.., CLIENT SETNAME
    assert.equal(2, #log2[1][4])
    assert.equal(string.rep("x", 128) .. "... (72 more bytes)", log2[1][4][2])
    assert.equal(32, #log2[2][4])
    assert.equal("a30", log2[2][4][31])
    assert.equal("... (9 more arguments)", log2[2][4][32])
    assert.equal("CLIENT SETNAME busy", table.concat(log2[3][4], " "))
    assert.equal("busy", log2[1][6])
    assert.equal(c:call("CLIENT", "INFO"):match("addr=(%S+)"), log2[1][5])
    assert.is_true(log2[1][1] > log2[2][1])
    assert.equal(1, #c:call("SLOWLOG", "GET", "1"))
    H.assert_err("ERR count should be greater than or equal to -1", c:call("SLOWLOG", "GET", "-2"))
    c:close()
    H.assert_clean_exit(srv)
    H.assert_clean_exit(all)
  end)
end)
