-- tests/integration/reload_spec.lua -- hot reload of policies (SPEC §1
-- SIGHUP, §3 RELOAD/POLICIES, §4 "Hot reload"), against the real binary,
-- a real redis-server and the example origin.
--   busted --lua=lua5.4 tests/integration/reload_spec.lua
--
-- Edits go through H.write_policy (temp file + rename, as deploy tools and
-- most editors do); one test also rewrites a file in place.
local socket = require "socket"
local H = require "tests.helpers.harness"

-- The contract: a change takes effect "within a second". Polls below give
-- the server that second plus the test's own polling granularity.
local WITHIN = 1.0
local SLACK = 0.3

local assert_clean_exit = H.assert_clean_exit

local errtext = H.errtext

local function count(hay, needle)
  local n, i = 0, 1
  while true do
    local s, e = hay:find(needle, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

local function sha1_of(text)
  local dir = H.tmpdir("luacached-sha")
  local p = H.write_file(dir .. "/x", text)
  local rc, out = H.run({ "sha1sum", p })
  assert(rc == 0, out)
  return out:match("^(%x+)")
end

-- A server on dir whose deleted files unload after grace_ms; and a client.
local function start_watched(redis, dir, grace_ms)
  local srv = H.start_server{ redis_port = redis.port, policies_dir = dir, metrics_port = 0,
                              extra_args = { "--reload-grace", tostring(grace_ms) } }
  return srv, srv:client(10)
end

local function stop_watched(srv)
  if srv and srv:alive() then assert_clean_exit(srv) end
  H.cleanup()
end

describe("hot reload", function()
  local redis, origin, srv, dir, c
  local seq = 0

  -- A fresh key each time: nothing cached answers for the policy.
  local function key(ns)
    seq = seq + 1
    return ns .. ":k" .. seq
  end

  -- A policy answering "<tag>:<id>"; ids "slow-*" first ask the origin's
  -- /slow endpoint (1 s) and append its status.
  local function pol(tag, fields)
    return string.format([[
return {
  ttl = 60, %s
  fetch = function(id, ctx)
    if id:sub(1, 5) == "slow-" then
      local res = ctx.http.get(%q .. id .. "?delay=1")
      return %q .. ":" .. id .. ":" .. res.status
    end
    return %q .. ":" .. id
  end,
}
]], fields and (fields .. ",") or "", origin.url .. "/slow/", tag, tag)
  end

  local function policies()
    local list = assert(c:call("POLICIES"))
    local by = {}
    for i = 1, list.n do by[list[i][1]] = { sha1 = list[i][2], err = list[i][3] } end
    return by, list.n
  end

  -- luacached_policy_reloads_total{ns=..., result=...} from METRICS
  local function reloads(ns, result)
    local text = assert(c:call("METRICS"))
    for line in text:gmatch("[^\n]+") do
      if line:find("luacached_policy_reloads_total{", 1, true) and
         line:find('ns="' .. ns .. '"', 1, true) and line:find('result="' .. result .. '"', 1, true) then
        return math.tointeger(tonumber(line:match("%s(%d+)%s*$")))
      end
    end
    return 0
  end

  -- Poll GET of fresh keys until it answers the tag's value; returns the
  -- seconds it took.
  local function wait_tag(ns, tag, timeout)
    local t0 = H.now()
    H.wait_until(function()
      local k = key(ns)
      local v = c:call("GET", k)
      return v == tag .. ":" .. k:sub(#ns + 2)
    end, timeout or (WITHIN + SLACK), ns .. " serving " .. tag)
    return H.now() - t0
  end

  setup(function()
    redis = H.start_redis()
    origin = H.start_origin()
    dir = H.write_policies{ rl = pol("v1"), keep = pol("k1") }
    -- a removed file unloads after the grace (see "deploys" below)
    srv, c = start_watched(redis, dir, 300)
  end)

  teardown(function() stop_watched(srv) end)

  it("serves an edited policy within a second: its value and its ttl", function()
    local k = key("rl")
    assert.equal("v1:" .. k:sub(4), c:call("GET", k))
    H.write_policy(dir, "rl", pol("v2"))
    local took = wait_tag("rl", "v2")
    assert(took < WITHIN, "took " .. took .. " s")
    H.write_policy(dir, "rl", pol("v3", "ttl = 7"))
    wait_tag("rl", "v3")
    k = key("rl")
    assert.equal("v3:" .. k:sub(4), c:call("GET", k))
    assert.equal(7, c:call("TTL", k))
    -- an entry cached under v1 is still answered (same policy version)
    local by = policies()
    assert.equal(sha1_of(pol("v3", "ttl = 7")), by.rl.sha1)
    assert.equal("", by.rl.err)
  end)

  it("keeps the old version on a syntax error, shows it everywhere once, and serves the fix", function()
    local good = pol("v4")
    H.write_policy(dir, "rl", good)
    wait_tag("rl", "v4")
    local errs0, oks0 = reloads("rl", "error"), reloads("rl", "ok")
    local log0 = #srv:log()
    H.write_policy(dir, "rl", "return {\n  ttl = 5,\n  fetch = function(id) return 'broken' end\n  negative_ttl = 1,\n}\n")
    local by = H.wait_until(function()
      local b = policies()
      return b.rl.err ~= "" and b
    end, WITHIN + SLACK, "POLICIES shows the error")
    local where = dir .. "/rl.lua:4:"
    assert.equal(where, by.rl.err:sub(1, #where), by.rl.err)
    assert.equal(sha1_of(good), by.rl.sha1) -- the version serving
    -- still the old version
    local k = key("rl")
    assert.equal("v4:" .. k:sub(4), c:call("GET", k))
    assert.equal(errs0 + 1, reloads("rl", "error"))
    -- logged once, not on every poll
    H.sleep(1.2)
    local log = srv:log():sub(log0 + 1)
    assert.equal(1, count(log, "policy 'rl' failed to load (previous version stays active): " .. where), log)
    assert.equal(errs0 + 1, reloads("rl", "error"))
    assert.equal(oks0, reloads("rl", "ok"))
    -- fixed
    H.write_policy(dir, "rl", pol("v5"))
    wait_tag("rl", "v5")
    assert.equal("", policies().rl.err)
    assert.equal(oks0 + 1, reloads("rl", "ok"))
  end)

  it("serves a new file as a new namespace within a second, and stops serving a removed one", function()
    assert.equal("ERR unknown namespace 'fresh'", errtext(c:call("GET", "fresh:1")))
    H.write_policy(dir, "fresh", pol("f1"))
    local took = wait_tag("fresh", "f1")
    assert(took < WITHIN, "took " .. took .. " s")
    local by, n = policies()
    assert.truthy(by.fresh)
    assert.equal(3, n)
    assert.equal(1, reloads("fresh", "ok"))

    H.remove_policy(dir, "fresh")
    local t0 = H.now()
    H.wait_until(function()
      local v = c:call("GET", key("fresh"))
      return H.resp.is_err(v) and v.err == "ERR unknown namespace 'fresh'"
    end, WITHIN + SLACK, "fresh removed")
    assert(H.now() - t0 < WITHIN, "took " .. (H.now() - t0) .. " s")
    by, n = policies()
    assert.is_nil(by.fresh)
    assert.equal(2, n)
    assert.falsy(c:call("METRICS"):find('ns="fresh"', 1, true))
    assert.equal("ERR unknown namespace 'fresh'", errtext(c:call("PEEK", "fresh:1")))
    assert.falsy(c:call("INFO"):find("ns_fresh:", 1, true))
  end)

  it("brings a removed namespace back when its file returns", function()
    H.write_policy(dir, "back", pol("b1"))
    wait_tag("back", "b1")
    H.remove_policy(dir, "back")
    H.wait_until(function() return policies().back == nil end, WITHIN + SLACK, "back removed")
    H.write_policy(dir, "back", pol("b2"))
    wait_tag("back", "b2")
    assert.equal(2, reloads("back", "ok")) -- counters continue
  end)

  it("finishes a fetch in flight across an edit on the old version", function()
    H.write_policy(dir, "rl", pol("v6"))
    wait_tag("rl", "v6")
    local slow = srv:client(10)
    slow:send("GET", "rl:slow-1")
    H.wait_until(function() return origin:count("/slow/slow-1") == 1 end, 5, "slow fetch started")
    H.write_policy(dir, "rl", pol("v7"))
    wait_tag("rl", "v7")
    assert.equal("v6:slow-1:200", slow:read_reply(5))
    slow:close()
  end)

  it("finishes a fetch in flight when its namespace is removed", function()
    H.write_policy(dir, "bye", pol("y1"))
    wait_tag("bye", "y1")
    local slow = srv:client(10)
    slow:send("GET", "bye:slow-2")
    H.wait_until(function() return origin:count("/slow/slow-2") == 1 end, 5, "slow fetch started")
    H.remove_policy(dir, "bye")
    H.wait_until(function()
      local v = c:call("GET", "bye:x")
      return H.resp.is_err(v) and v.err == "ERR unknown namespace 'bye'"
    end, WITHIN + SLACK, "bye removed")
    assert.equal("y1:slow-2:200", slow:read_reply(5))
    slow:close()
  end)

  it("fails no request during 50 rapid edits", function()
    local getter = srv:client(10)
    local edits = 50
    local seen = {}
    local function get_ok(conn, i)
      local k = key("rl")
      local v, kind = conn:call("GET", k)
      assert(kind == "bulk", "GET during edit " .. i .. ": " .. tostring(v and v.err or v))
      local tag = v:match("^e(%d+):") or (v:match("^v7:") and "0")
      assert(tag, "unexpected value " .. v)
      assert.equal(k:sub(4), v:match(":(.*)$"))
      seen[#seen + 1] = math.tointeger(tonumber(tag))
    end
    local errs0 = reloads("rl", "error")
    for i = 1, edits do
      H.write_policy(dir, "rl", pol("e" .. i))
      get_ok(getter, i)
      get_ok(c, i)
      if i % 5 == 0 then H.sleep(0.03) end
    end
    wait_tag("rl", "e" .. edits)
    -- versions only move forward
    for i = 2, #seen do assert(seen[i] >= seen[i - 1], "went back: " .. table.concat(seen, ",")) end
    assert.equal(errs0, reloads("rl", "error"))
    getter:close()
  end)

  it("does not reload a file that was touched or rewritten with the same bytes", function()
    local src = pol("t1")
    H.write_policy(dir, "rl", src)
    wait_tag("rl", "t1")
    local oks, errs = reloads("rl", "ok"), reloads("rl", "error")
    local keep_oks = reloads("keep", "ok")
    assert(os.execute("touch " .. H.sh_quote(dir .. "/rl.lua") .. " " .. H.sh_quote(dir .. "/keep.lua")))
    H.sleep(0.3)
    H.write_policy(dir, "rl", src) -- a new inode, same content
    H.sleep(1.2)                    -- debounced scans and several polls
    -- a real change elsewhere is picked up meanwhile: the watcher did look
    H.write_policy(dir, "keep", pol("k2"))
    wait_tag("keep", "k2")
    assert.equal(keep_oks + 1, reloads("keep", "ok"))
    assert.equal(oks, reloads("rl", "ok"))
    assert.equal(errs, reloads("rl", "error"))
  end)

  it("waits for content when a file is rewritten in place", function()
    local path = dir .. "/rl.lua"
    local errs = reloads("rl", "error")
    local f = assert(io.open(path, "wb")) -- truncated: empty for a moment
    H.sleep(0.7)
    f:write(pol("p1"))
    f:close()
    wait_tag("rl", "p1")
    assert.equal(errs, reloads("rl", "error"))
  end)

  it("RELOAD ns reloads now and reports a bad file; RELOAD reports the first failure", function()
    H.write_policy(dir, "rl", pol("r1"))
    wait_tag("rl", "r1")
    local oks = reloads("rl", "ok")
    assert.equal("OK", c:call("RELOAD", "rl"))
    assert.equal(oks + 1, reloads("rl", "ok")) -- compiled afresh even though unchanged
    assert.equal("OK", c:call("RELOAD"))
    assert.equal(oks + 2, reloads("rl", "ok"))

    H.write_policy(dir, "rl", "return {\n  fetch = 42,\n}\n")
    local e = errtext(c:call("RELOAD", "rl"))
    assert.equal("ERR policy 'rl': " .. dir .. "/rl.lua:2: fetch must be a function (got number)", e)
    e = errtext(c:call("RELOAD"))
    assert.equal("ERR policy 'rl': " .. dir .. "/rl.lua:2: fetch must be a function (got number)", e)
    local k = key("rl")
    assert.equal("r1:" .. k:sub(4), c:call("GET", k)) -- old version stays
    assert.equal("ERR unknown namespace 'nope'", errtext(c:call("RELOAD", "nope")))
    assert.equal("ERR unknown namespace 'bad name'", errtext(c:call("RELOAD", "bad name")))
    assert.equal("ERR wrong number of arguments for 'reload' command",
      errtext(c:call("RELOAD", "a", "b")))

    -- a file created a moment ago: RELOAD serves it at once
    H.write_policy(dir, "now", pol("n1"))
    assert.equal("OK", c:call("RELOAD", "now"))
    local kn = key("now")
    assert.equal("n1:" .. kn:sub(5), c:call("GET", kn))
    -- a deleted file: RELOAD removes the namespace, answers OK
    H.remove_policy(dir, "now")
    assert.equal("OK", c:call("RELOAD", "now"))
    assert.equal("ERR unknown namespace 'now'", errtext(c:call("GET", "now:1")))

    H.write_policy(dir, "rl", pol("r2"))
    assert.equal("OK", c:call("RELOAD", "rl"))
    kn = key("rl")
    assert.equal("r2:" .. kn:sub(4), c:call("GET", kn))
  end)

  it("RELOAD does not hold up other clients or pipelined commands", function()
    local p = srv:client(10)
    p:send("PING")
    p:send("RELOAD")
    p:send("ECHO", "after")
    assert.equal("PONG", p:read_reply(5))
    assert.equal("OK", p:read_reply(5))
    assert.equal("after", p:read_reply(5))
    p:close()
  end)

  it("reloads every policy on SIGHUP", function()
    local oks, koks = reloads("rl", "ok"), reloads("keep", "ok")
    local log0 = #srv:log()
    srv:signal("HUP")
    H.wait_until(function()
      return reloads("rl", "ok") == oks + 1 and reloads("keep", "ok") == koks + 1
    end, WITHIN + SLACK, "SIGHUP reload")
    H.wait_until(function()
      return srv:log():find("SIGHUP reload: every policy loaded", log0 + 1, true)
    end, 2, "SIGHUP logged")
    assert.truthy(srv:alive())
  end)
end)

describe("hot reload of a namespace whose first load failed", function()
  local redis, srv, dir
  setup(function()
    redis = H.start_redis()
    dir = H.write_policies{ bad = "return {\n  fetch = function(id) return id end,\n  tll = 5,\n}\n" }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)
  teardown(function()
    if srv and srv:alive() then assert_clean_exit(srv) end
    H.cleanup()
  end)

  it("answers 'failed to load' until a fixed file appears, then serves", function()
    local e = errtext(srv:call("GET", "bad:1"))
    assert.equal("ERR namespace 'bad' failed to load: " .. dir .. "/bad.lua:3: unknown field 'tll'",
      e:sub(1, #("ERR namespace 'bad' failed to load: " .. dir .. "/bad.lua:3: unknown field 'tll'")))
    local c = srv:client(5)
    local list = c:call("POLICIES")
    assert.equal(1, list.n)
    assert.equal("bad", list[1][1])
    assert.truthy(list[1][3]:find("bad.lua:3: unknown field 'tll'", 1, true))
    H.write_policy(dir, "bad", "return { ttl = 5, fetch = function(id) return 'fixed:' .. id end }\n")
    H.wait_until(function() return c:call("GET", "bad:1") == "fixed:1" end, WITHIN + SLACK, "fixed")
    assert.equal("", c:call("POLICIES")[1][3])
    c:close()
  end)
end)

-- Deploys (docs/POLICIES.md, "Deploys"): rm + cp, rsync (temp file +
-- rename) and a Kubernetes ConfigMap's symlink swap, each under a GET load
-- from another connection (tests/helpers/get_loop.py): no GET fails, and
-- the new version serves. A deleted file unloads after --reload-grace (1 s
-- here), or at once on RELOAD / SIGHUP.
describe("deploys", function()
  local GRACE = 1.0
  local redis, srv, dir, c

  local function pol(tag)
    return "return {\n  ttl = 60,\n  fetch = function(id) return " .. string.format("%q", tag)
      .. " .. ':' .. id end,\n}\n"
  end

  -- ConfigMap layout: ..data -> ..<version>, NS.lua -> ..data/NS.lua
  local cm_seq = 0
  local function cm_version(files)
    cm_seq = cm_seq + 1
    local name = "..2026_12_07_" .. cm_seq
    assert(os.execute("mkdir " .. H.sh_quote(dir .. "/" .. name)))
    for ns, src in pairs(files) do
      local f = assert(io.open(dir .. "/" .. name .. "/" .. ns .. ".lua", "wb"))
      f:write(src)
      f:close()
    end
    return name
  end
  local function sh(cmd) assert(os.execute(cmd), cmd) end

  setup(function()
    redis = H.start_redis()
    dir = H.write_policies{ rc = pol("rc1"), rs = pol("rs1"), gone = pol("g1"), now = pol("n1"),
                            hup = pol("h1") }
    local v1 = cm_version{ cm = pol("cm1"), cm2 = pol("cmb1") }
    local q = H.sh_quote
    sh("cd " .. q(dir) .. " && ln -s " .. v1 .. " ..data && ln -s ..data/cm.lua cm.lua"
       .. " && ln -s ..data/cm2.lua cm2.lua")
    srv, c = start_watched(redis, dir, math.floor(GRACE * 1000))
  end)

  teardown(function() stop_watched(srv) end)

  local seq = 0
  local function get(ns)
    seq = seq + 1
    return c:call("GET", ns .. ":x" .. seq)
  end
  local function serving(ns, tag)
    H.wait_until(function()
      local v = get(ns)
      return type(v) == "string" and v:sub(1, #tag + 1) == tag .. ":"
    end, 3, ns .. " serving " .. tag)
  end
  local function gone_logged(ns, from)
    H.wait_until(function()
      return srv:log():find("namespace '" .. ns .. "' serves its last version for", from, true)
    end, 2, "deletion of " .. ns .. ".lua seen")
  end

  -- Runs deploy() while another connection GETs ns:... in a loop; then
  -- waits for tag to serve and returns the loop's tallies.
  local function under_load(ns, tag, deploy)
    local stop = H.tmpdir("luacached-stop") .. "/stop"
    local p = H.spawn{ name = "getloop", argv = { "python3", H.root .. "/tests/helpers/get_loop.py",
      tostring(srv.port), ns, stop, "250" } }
    H.wait_until(function() return p:log():find("started", 1, true) end, 5, "GET loop started")
    deploy()
    serving(ns, tag)
    H.write_file(stop, "")
    assert.equal(0, p:wait(35), p:log())
    local out = p:log()
    local r = { values = {} }
    r.gets, r.errors = out:match("gets=(%d+) errors=(%d+)")
    r.gets, r.errors = tonumber(r.gets), tonumber(r.errors)
    for t, n in out:gmatch("value (%S+) (%d+)") do r.values[t] = tonumber(n) end
    assert(r.gets, out)
    assert.equal(0, r.errors, out)
    assert(r.gets >= 250, out)
    return r, out
  end

  it("rm then cp: no GET fails, the copy serves", function()
    serving("rc", "rc1")
    local staged = H.write_file(H.tmpdir("luacached-stage") .. "/rc.lua", pol("rc2"))
    local removed
    local r, out = under_load("rc", "rc2", function()
      local from = #srv:log()
      assert(os.remove(dir .. "/rc.lua"))
      removed = H.now()
      gone_logged("rc", from + 1) -- the watcher saw the file gone ...
      H.sleep(0.2)                -- ... and GETs ran meanwhile
      sh("cp " .. H.sh_quote(staged) .. " " .. H.sh_quote(dir .. "/rc.lua"))
    end)
    assert(r.values.rc1 and r.values.rc1 > 0, out) -- the old version served during the gap
    assert.truthy(srv:log():find("policy file of 'rc' is back within the grace", 1, true))
    H.sleep(math.max(0, removed + GRACE + 0.2 - H.now())) -- past the grace: still served
    serving("rc", "rc2")
  end)

  it("rsync (temp file + rename): no GET fails, the new version serves", function()
    serving("rs", "rs1")
    local stage = H.tmpdir("luacached-stage")
    H.write_file(stage .. "/rs.lua", pol("rs2"))
    under_load("rs", "rs2", function()
      sh("rsync " .. H.sh_quote(stage .. "/rs.lua") .. " " .. H.sh_quote(dir .. "/rs.lua"))
    end)
  end)

  it("a ConfigMap symlink swap: no GET fails, every file's new version serves", function()
    serving("cm", "cm1")
    serving("cm2", "cmb1")
    local old = "..2026_12_07_" .. cm_seq
    local q = H.sh_quote
    under_load("cm", "cm2", function()
      local v2 = cm_version{ cm = pol("cm2"), cm2 = pol("cmb2") }
      -- what the kubelet does: a new ..data_tmp, renamed over ..data, the old version deleted
      sh("cd " .. q(dir) .. " && ln -s " .. v2 .. " ..data_tmp && mv -T ..data_tmp ..data && rm -rf " .. q(old))
    end)
    serving("cm2", "cmb2")
    local list = assert(c:call("POLICIES"))
    for i = 1, list.n do assert.equal("", list[i][3], list[i][1]) end
  end)

  it("a deleted file unloads its namespace after the grace, not before", function()
    serving("gone", "g1")
    local from = #srv:log()
    assert(os.remove(dir .. "/gone.lua"))
    local t0 = H.now()
    gone_logged("gone", from + 1)
    assert.equal("g1", get("gone"):match("^(g1):")) -- still served within the grace
    H.wait_until(function()
      local v = get("gone")
      return H.resp.is_err(v) and v.err == "ERR unknown namespace 'gone'"
    end, GRACE + 1.5, "gone unloaded")
    local took = H.now() - t0
    assert(took >= GRACE - 0.05 and took < GRACE + 1.0, "unloaded after " .. took .. " s")
    local list = assert(c:call("POLICIES"))
    for i = 1, list.n do assert.not_equal("gone", list[i][1]) end
  end)

  it("RELOAD and SIGHUP unload a deleted file's namespace at once", function()
    serving("now", "n1")
    assert(os.remove(dir .. "/now.lua"))
    assert.equal("OK", c:call("RELOAD", "now"))
    assert.equal("ERR unknown namespace 'now'", errtext(get("now")))
    serving("hup", "h1")
    assert(os.remove(dir .. "/hup.lua"))
    local t0 = H.now()
    srv:signal("HUP")
    H.wait_until(function()
      local v = get("hup")
      return H.resp.is_err(v) and v.err == "ERR unknown namespace 'hup'"
    end, GRACE, "hup unloaded")
    assert(H.now() - t0 < GRACE * 0.8, "SIGHUP took " .. (H.now() - t0) .. " s")
  end)
end)
