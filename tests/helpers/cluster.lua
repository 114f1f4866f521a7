-- tests/helpers/cluster.lua -- real Redis Cluster and Sentinel deployments
-- on this machine, for the scale-out tests (SPEC §9). Every process is
-- started through the harness, so H.cleanup() stops it.
--
--   local C = require "tests.helpers.cluster"
--   local cl = C.start_cluster{ masters = 3, replicas = 0 }
--   cl.url                      "redis+cluster://127.0.0.1:P1,127.0.0.1:P2,..."
--   cl.nodes                    every node (H.start_redis services), masters first
--   cl:master_of(key)           -> the node serving key's slot now
--   cl:slot_of(key)             -> slot (CLUSTER KEYSLOT)
--   cl:wait_ok(timeout)         every node reports cluster_state:ok and agrees on the map
--   cl:call_all(...)            -> the command's reply from every master, in order
--
--   local sn = C.start_sentinel{ name = "mymaster", sentinels = 3 }
--   sn.url                      "redis+sentinel://127.0.0.1:S1,.../mymaster"
--   sn.master, sn.replica       redis services
--   sn.sentinels                sentinel services
--   sn:current_master_port()    -> port the sentinels name as master now
--   sn:failover(timeout)        SENTINEL FAILOVER, waits until the switch is done
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

function Cluster:slot_of(key)
  return self.nodes[1]:call("CLUSTER", "KEYSLOT", key)
end

function Cluster:node_at(port)
  for _, n in ipairs(self.nodes) do if n.port == port then return n end end
end

function Cluster:master_of(key)
  local slot = self:slot_of(key)
  for _, n in ipairs(self.nodes) do
    if n:alive() then
      for _, r in ipairs(slot_ranges(n)) do
        if slot >= r.from and slot <= r.to then return self:node_at(r.port) end
      end
      break
    end
  end
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
    local args = { "--cluster-enabled", "yes", "--cluster-config-file", dir .. "/nodes.conf",
                   "--cluster-node-timeout", tostring(o.node_timeout or 2000) }
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

-- SENTINEL FAILOVER, then wait until every sentinel names the other node
-- and that node says it is a master.
function Sentinel:failover(timeout)
  local old = self:current_master_port()
  local r = self.sentinels[1]:call("SENTINEL", "FAILOVER", self.name)
  if type(r) == "table" and r.err then error("SENTINEL FAILOVER: " .. r.err) end
  H.wait_until(function()
    for _, s in ipairs(self.sentinels) do
      local ok, a = pcall(s.call, s, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
      if not ok or type(a) ~= "table" or math.tointeger(tonumber(a[2])) == old then return false end
    end
    local port = self:current_master_port()
    local ok, role = pcall(H.call, port, "ROLE")
    return ok and type(role) == "table" and role[1] == "master"
  end, timeout or 30, "sentinel failover did not complete")
  return self:current_master_port()
end

-- start_sentinel{name = "mymaster", sentinels = 3} -> deployment
function C.start_sentinel(o)
  o = o or {}
  local name = o.name or "mymaster"
  local master = H.start_redis()
  local replica = H.start_redis{ args = { "--replicaof", "127.0.0.1", tostring(master.port) } }
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

return C
