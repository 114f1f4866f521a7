-- tests/helpers/cluster.lua -- real Redis Cluster and Sentinel deployments
-- on this machine, for the scale-out tests (SPEC §9). Every process is
-- started through the harness, so H.cleanup() stops it.
--
--   local C = require "tests.helpers.cluster"
--   local cl = C.start_cluster{ masters = 3, replicas = 0 }
--   cl.url                      "redis+cluster://127.0.0.1:P1,127.0.0.1:P2,..."
--   cl.nodes                    every node (H.start_redis services), masters first
--   cl:master_of(key)           -> the node serving key's slot now
--   cl:master_of_slot(slot)     -> the node serving that slot now
--   cl:slot_of(key)             -> slot (CLUSTER KEYSLOT)
--   cl:wait_ok(timeout)         every node reports cluster_state:ok and agrees on the map
--   cl:call_all(...)            -> the command's reply from every master, in order
--   cl:masters()                -> the live nodes whose ROLE is master
--   cl:replicas_of(master)      -> the live nodes replicating that master
--   cl:wait_replica(master, t)  -> a replica of master, once it is in sync and
--                               every node knows it as that (it can win a vote)
--   cl:start_failover(master)   CLUSTER FAILOVER on that replica; -> the
--                               replica. Returns at once.
--   cl:failover(master, t)      the same, then waits until the replica is
--                               master and the map is agreed; -> the new master
--
--   local sn = C.start_sentinel{ name = "mymaster", sentinels = 3 }
--   sn.url                      "redis+sentinel://127.0.0.1:S1,.../mymaster"
--   sn.master, sn.replica       redis services
--   sn.sentinels                sentinel services
--   sn:current_master_port()    -> port the sentinels name as master now
--   sn:failover(timeout)        SENTINEL FAILOVER, waits until the switch is done
--   sn:start_failover()         SENTINEL FAILOVER only; -> the old master's port
--   sn:switched(old_port)       -> the new master's port once every sentinel names
--                               it and it says it is a master, else nil
--
--   C.start_server(o)           H.start_server, but a luacached that exits at
--                               start raises its own error line (e.g. a refused
--                               --redis URL), not a log tail
--   C.load{ports =, conns =, keys = {{key, check}...}, timeout =}
--                               a GET load driven round by round (see below)
--   C.chaos_check(key, seen)    a load check for /chaos/ values (see below)
local H = require "tests.helpers.harness"
local socket = require "socket"

local C = {}

-- A port p with p and p + 10000 (the cluster bus) both free a moment ago.
local function cluster_port()
  for _ = 1, 200 do
    local p = math.random(20000, 45000)
    local a = socket.bind("127.0.0.1", p)
    local b = a and socket.bind("127.0.0.1", p + 10000)
    if a then a:close() end
    if b then b:close() end
    if a and b then return p end
  end
  error("no free port pair for a cluster node")
end

local Cluster = {}
Cluster.__index = Cluster

-- CLUSTER SLOTS of a node -> list of {from, to, port}
local function slot_ranges(node)
  local t = node:call("CLUSTER", "SLOTS")
  local out = {}
  for i = 1, t.n or #t do
    local r = t[i]
    out[#out + 1] = { from = r[1], to = r[2], port = math.tointeger(r[3][2]) }
  end
  return out
end

-- Any live node: a test may have stopped the first one.
function Cluster:any_node()
  for _, n in ipairs(self.nodes) do
    if n:alive() then return n end
  end
  error("no cluster node is running")
end

function Cluster:slot_of(key)
  return self:any_node():call("CLUSTER", "KEYSLOT", key)
end

function Cluster:node_at(port)
  for _, n in ipairs(self.nodes) do if n.port == port then return n end end
end

function Cluster:master_of_slot(slot)
  for _, r in ipairs(slot_ranges(self:any_node())) do
    if slot >= r.from and slot <= r.to then return self:node_at(r.port) end
  end
end

function Cluster:master_of(key)
  return self:master_of_slot(self:slot_of(key))
end

function Cluster:masters()
  local out = {}
  for _, n in ipairs(self.nodes) do
    if n:alive() then
      local ok, role = pcall(n.call, n, "ROLE")
      if ok and type(role) == "table" and role[1] == "master" then out[#out + 1] = n end
    end
  end
  return out
end

function Cluster:replicas_of(master)
  local out = {}
  for _, n in ipairs(self.nodes) do
    if n ~= master and n:alive() then
      local ok, role = pcall(n.call, n, "ROLE")
      if ok and type(role) == "table" and role[1] == "slave"
          and math.tointeger(tonumber(role[3])) == master.port then
        out[#out + 1] = n
      end
    end
  end
  return out
end

-- A replica of master that is in sync and that every live node knows as
-- that master's replica (cluster gossip lags the replication link). Only
-- then can it win a failover vote: a CLUSTER FAILOVER sent earlier times out
-- after 5 s ("Manual failover timed out") and nothing changes.
function Cluster:wait_replica(master, timeout)
  local replica = self:replicas_of(master)[1]
  if not replica then error("master on port " .. master.port .. " has no replica") end
  local master_id = master:call("CLUSTER", "MYID")
  local want = "slave " .. master_id .. " " -- flags "slave" or "myself,slave", then the master
  H.wait_until(function()
    local info = replica:call("INFO", "replication")
    if type(info) ~= "string" or not info:find("master_link_status:up", 1, true) then return false end
    for _, n in ipairs(self.nodes) do
      if n:alive() then
        local line = n:call("CLUSTER", "NODES"):match("[^\n]*:" .. replica.port .. "@[^\n]*")
        if not line or not line:find(want, 1, true) then return false end
      end
    end
    return true
  end, timeout or 10, "replica on port " .. replica.port .. " in sync, and every node knows it as its master's replica")
  return replica
end

-- CLUSTER FAILOVER (the graceful kind: the master stops its writers until
-- the replica has caught up, so no write is lost) on a replica of master,
-- once wait_replica says it can win. Returns the replica without waiting.
function Cluster:start_failover(master)
  local replica = self:wait_replica(master)
  local r = replica:call("CLUSTER", "FAILOVER")
  if type(r) == "table" and r.err then error("CLUSTER FAILOVER: " .. r.err) end
  return replica
end

function Cluster:failover(master, timeout)
  local replica = self:start_failover(master)
  H.wait_until(function()
    local role = replica:call("ROLE")
    return type(role) == "table" and role[1] == "master"
  end, timeout or 15, "replica on port " .. replica.port .. " became master")
  self:wait_ok(timeout or 15)
  return replica
end

function Cluster:call_all(...)
  local out = {}
  for _, m in ipairs(self:masters()) do out[#out + 1] = m:call(...) end
  return out
end

-- Every live node says the cluster is ok, and they all cover 16384 slots
-- with the same owners.
function Cluster:wait_ok(timeout)
  H.wait_until(function()
    local seen
    for _, n in ipairs(self.nodes) do
      if n:alive() then
        local ok, info = pcall(n.call, n, "CLUSTER", "INFO")
        if not ok or type(info) ~= "string" or not info:find("cluster_state:ok", 1, true) then
          return false
        end
        local ok2, ranges = pcall(slot_ranges, n)
        if not ok2 then return false end
        table.sort(ranges, function(a, b) return a.from < b.from end)
        local parts = {}
        for _, r in ipairs(ranges) do parts[#parts + 1] = r.from .. "-" .. r.to .. "@" .. r.port end
        local sig = table.concat(parts, ",")
        if seen and sig ~= seen then return false end
        seen = sig
      end
    end
    return seen ~= nil
  end, timeout or 30, "cluster not ok")
end

-- start_cluster{masters = 3, replicas = 0, args = {...}} -> cluster
function C.start_cluster(o)
  o = o or {}
  local masters, replicas = o.masters or 3, o.replicas or 0
  local nodes, addrs = {}, {}
  for i = 1, masters * (1 + replicas) do
    local port = cluster_port()
    local dir = H.tmpdir("luacached-cluster")
    -- no diskless-sync delay: a replica is in sync at once, not after 5 s
    local args = { "--cluster-enabled", "yes", "--cluster-config-file", dir .. "/nodes.conf",
                   "--cluster-node-timeout", tostring(o.node_timeout or 2000),
                   "--repl-diskless-sync-delay", "0" }
    for _, a in ipairs(o.args or {}) do args[#args + 1] = a end
    nodes[i] = H.start_redis{ port = port, args = args }
    addrs[#addrs + 1] = "127.0.0.1:" .. port
  end
  local argv = { "redis-cli", "--cluster", "create" }
  for _, a in ipairs(addrs) do argv[#argv + 1] = a end
  argv[#argv + 1] = "--cluster-replicas"
  argv[#argv + 1] = tostring(replicas)
  argv[#argv + 1] = "--cluster-yes"
  local status, out = H.run(argv, 60)
  if status ~= 0 then error("redis-cli --cluster create failed:\n" .. out) end
  local cl = setmetatable({ nodes = nodes }, Cluster)
  cl:wait_ok(o.timeout or 30)
  -- list the masters' addresses first: redis-cli made the first N masters
  cl.url = "redis+cluster://" .. table.concat(addrs, ",", 1, masters)
  return cl
end

---------------------------------------------------------------------------
-- Sentinel

local Sentinel = {}
Sentinel.__index = Sentinel

function Sentinel:current_master_port()
  for _, s in ipairs(self.sentinels) do
    if s:alive() then
      local ok, r = pcall(s.call, s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
      if ok and type(r) == "table" and r[2] then return math.tointeger(tonumber(r[2])) end
    end
  end
end

function Sentinel:start_failover()
  local old = self:current_master_port()
  local r = self.sentinels[1]:call("SENTINEL", "FAILOVER", self.name)
  if type(r) == "table" and r.err then error("SENTINEL FAILOVER: " .. r.err) end
  return old
end

-- The new master's port once every sentinel names another node than old
-- and that node says it is a master; nil before.
function Sentinel:switched(old)
  for _, s in ipairs(self.sentinels) do
    local ok, a = pcall(s.call, s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
    if not ok or type(a) ~= "table" or math.tointeger(tonumber(a[2])) == old then return nil end
  end
  local port = self:current_master_port()
  local ok, role = pcall(H.call, port, "ROLE")
  if ok and type(role) == "table" and role[1] == "master" then return port end
end

-- SENTINEL FAILOVER, then wait until every sentinel names the other node
-- and that node says it is a master.
function Sentinel:failover(timeout)
  local old = self:start_failover()
  return H.wait_until(function() return self:switched(old) end, timeout or 30,
    "sentinel failover did not complete")
end

-- start_sentinel{name = "mymaster", sentinels = 3} -> deployment
function C.start_sentinel(o)
  o = o or {}
  local name = o.name or "mymaster"
  -- no diskless-sync delay (either node may be the master): in sync at once, not after 5 s
  local master = H.start_redis{ args = { "--repl-diskless-sync-delay", "0" } }
  local replica = H.start_redis{ args = { "--repl-diskless-sync-delay", "0",
                                          "--replicaof", "127.0.0.1", tostring(master.port) } }
  H.wait_until(function()
    local info = master:call("INFO", "replication")
    return type(info) == "string" and info:find("connected_slaves:1", 1, true)
        and info:find("state=online", 1, true)
  end, 20, "replica never came online")
  local sentinels, addrs = {}, {}
  for i = 1, o.sentinels or 3 do
    local dir = H.tmpdir("luacached-sentinel")
    local conf = dir .. "/sentinel.conf"
    -- a sentinel rewrites its file, so each has its own
    H.write_file(conf, table.concat({
      "sentinel monitor " .. name .. " 127.0.0.1 " .. master.port .. " 2",
      "sentinel down-after-milliseconds " .. name .. " " .. (o.down_after_ms or 1000),
      "sentinel failover-timeout " .. name .. " " .. (o.failover_timeout_ms or 10000),
      "sentinel parallel-syncs " .. name .. " 1",
      "",
    }, "\n"))
    local port = H.free_port()
    local proc = H.spawn{ argv = { "redis-server", conf, "--sentinel", "--port", tostring(port),
                                   "--bind", "127.0.0.1", "--dir", dir },
                          name = "sentinel" }
    local s = { port = port, proc = proc }
    function s.call(self, ...) return H.call(self.port, ...) end
    function s.alive(self) return self.proc:alive() end
    function s.stop(self, sig, t) return self.proc:stop(sig, t) end
    sentinels[i] = s
    addrs[i] = "127.0.0.1:" .. port
  end
  local sn = setmetatable({ name = name, master = master, replica = replica,
                            sentinels = sentinels }, Sentinel)
  -- every sentinel knows the replica and the other sentinels
  H.wait_until(function()
    for _, s in ipairs(sentinels) do
      local ok, m = pcall(s.call, s, "SENTINEL", "MASTER", name)
      if not ok or type(m) ~= "table" then return false end
      local f = {}
      for j = 1, (m.n or #m) - 1, 2 do f[m[j]] = m[j + 1] end
      if tonumber(f["num-slaves"] or 0) < 1 or tonumber(f["num-other-sentinels"] or 0) < #sentinels - 1 then
        return false
      end
    end
    return true
  end, 30, "sentinels did not discover each other")
  sn.url = "redis+sentinel://" .. table.concat(addrs, ",") .. "/" .. name
  return sn
end

---------------------------------------------------------------------------
-- luacached against these deployments

-- H.start_server(o), except that a luacached that exits at start raises
-- "luacached did not start: <its last error line>": a refused --redis URL
-- then reads as exactly that in every test that needs the server.
-- A luacached on a cluster answers PING before every master's connection
-- is up (reads fail open meanwhile; a write to a slot whose master is
-- still connecting is refused): wait until INFO says all masters are up.
local function wait_masters_up(srv, timeout)
  H.wait_until(function()
    local info = srv:call("INFO")
    if type(info) ~= "string" then return false end
    local n, up = info:match("cluster_masters:(%d+)"), info:match("cluster_masters_up:(%d+)")
    if not n then return true end -- not a cluster (a sentinel deployment)
    return tonumber(n) > 0 and n == up
  end, timeout or 10, "every cluster master's connection up")
end

function C.start_server(o)
  local ok, srv = pcall(H.start_server, o)
  if ok then
    if o.wait ~= false then wait_masters_up(srv) end
    return srv
  end
  local why
  for line in tostring(srv):gmatch("[^\n]+") do
    why = line:match("^%S+Z error (.*)$") or why
  end
  error(why and ("luacached did not start: " .. why) or srv, 2)
end

-- A GET load that a test drives round by round, so it can change the
-- deployment (a failover, a stopped node) between rounds:
--   local ld = C.load{ports = {A.port, B.port}, conns = 2, keys = {{key, check}, ...}}
--   local r = ld:round()   one GET of every key on each of the conns
--                          connections per port, pipelined; -> {replies =,
--                          errors =} of this round
--   ld:drive_until(fn, t, msg)         rounds until fn() is truthy
--   ld:drive_until_all_hit(origin, t)  rounds until one has no error and no fetch
-- check(value, kind) returns nil for a right reply, else why it is wrong.
-- An error reply is counted (ld.errors, ld.first_error), not judged: the
-- caller decides when errors are allowed. A wrong reply is recorded in
-- ld.wrong ({key =, got =, why =}; the first 20, ld.nwrong counts them
-- all). A reply that does not come within
-- timeout (5 s) raises: the server must keep answering.
local Load = {}
Load.__index = Load

function C.load(o)
  local ld = setmetatable({ keys = o.keys, conns = {}, timeout = o.timeout or 5,
                            errors = 0, replies = 0, wrong = {}, nwrong = 0, rounds = 0 }, Load)
  for _, port in ipairs(o.ports) do
    for _ = 1, o.conns or 2 do ld.conns[#ld.conns + 1] = H.connect(port, ld.timeout) end
  end
  return ld
end

function Load:round()
  for _, c in ipairs(self.conns) do
    for _, k in ipairs(self.keys) do c:send("GET", k[1]) end
  end
  local r = { replies = 0, errors = 0 }
  for _, c in ipairs(self.conns) do
    for _, k in ipairs(self.keys) do
      local v, kind = c:read_reply(self.timeout)
      r.replies = r.replies + 1
      if kind == "error" then
        r.errors = r.errors + 1
        self.first_error = self.first_error or v.err
      else
        local why = k[2](v, kind)
        if why then
          self.nwrong = self.nwrong + 1
          if #self.wrong < 20 then self.wrong[#self.wrong + 1] = { key = k[1], got = tostring(v), why = why } end
        end
      end
    end
  end
  self.rounds = self.rounds + 1
  self.replies = self.replies + r.replies
  self.errors = self.errors + r.errors
  return r
end

-- Rounds until fn() (called after each) is truthy: -> its value. Raises
-- "timeout after Ns: msg" at the deadline.
function Load:drive_until(fn, timeout, msg)
  local deadline = H.now() + timeout
  while true do
    self:round()
    local v = fn()
    if v then return v end
    if H.now() >= deadline then error(string.format("timeout after %gs: %s", timeout, msg), 2) end
  end
end

-- Rounds until one is answered without an error reply and without a single
-- origin request (every key a hit): -> the seconds that took.
function Load:drive_until_all_hit(origin, timeout)
  local t0 = H.now()
  local deadline = t0 + timeout
  while true do
    local before = origin:stats().total
    local r = self:round()
    local fetched = origin:stats().total - before
    if r.errors == 0 and fetched == 0 then return H.now() - t0 end
    if H.now() >= deadline then
      error(string.format("timeout after %gs: the last round still had %d error replies and %d origin fetches (first error: %s)",
        timeout, r.errors, fetched, tostring(self.first_error)), 2)
    end
  end
end

-- The wrong replies seen so far, one per line ("" when none).
function Load:wrong_text()
  local out = {}
  for _, w in ipairs(self.wrong) do out[#out + 1] = w.key .. ": " .. w.why .. " (" .. w.got .. ")" end
  return table.concat(out, "\n")
end

function Load:close() H.close_clients(self.conns) end

-- A check for the values of a policy fetching the origin's /chaos/NS/ID
-- ("key=NS:ID v=N", a new N for every fetch): right when it is a value of
-- exactly this key. seen[key] keeps the highest N answered, to compare with
-- the fetches the origin counted (no N can be higher).
function C.chaos_check(key, seen)
  return function(v, kind)
    if kind ~= "bulk" then return "a " .. kind .. " reply" end
    local k, n = v:match("^key=(.-) v=(%d+)$")
    if k ~= key then return "not a value of " .. key end
    n = math.tointeger(tonumber(n))
    if seen and n > (seen[key] or 0) then seen[key] = n end
  end
end

return C
