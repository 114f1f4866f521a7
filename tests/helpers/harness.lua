-- tests/helpers/harness.lua -- start/stop real processes for integration specs.
--
--   local H = require "tests.helpers.harness"      -- run busted from the repo root
--   describe("x", function()
--     local redis, origin, srv
--     setup(function()
--       redis  = H.start_redis()
--       origin = H.start_origin()
--       srv    = H.start_server{ redis_port = redis.port,
--                  policies_dir = H.write_policies{ widget = H.simple_policy(origin.url .. "/widgets/") } }
--     end)
--     teardown(H.cleanup)                            -- kills everything, even after failures
--     it("...", function() assert.equal("PONG", srv:call("PING")) end)
--   end)
--
-- Every wait has a deadline; a process that fails to come up raises an error
-- carrying the tail of its log. Processes are killed by H.cleanup(), by a
-- finalizer when the Lua state closes, and by a per-process watchdog shell if
-- the test runner itself dies. Linux only (/proc). See the API list at the end.
local socket = require "socket"
local cjson = require "cjson"
local resp = require "tests.helpers.resp"

local H = {}
H.resp = resp

---------------------------------------------------------------------------
-- basics

local function script_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) == "@" then src = src:sub(2) end
  return src:match("^(.*)/[^/]*$") or "."
end

local function abspath(p)
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD")
  if not pwd then
    local f = io.popen("pwd")
    pwd = f:read("l")
    f:close()
  end
  return pwd .. "/" .. p
end

local function normalize(p)
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then table.remove(parts)
    elseif seg ~= "." then parts[#parts + 1] = seg end
  end
  return "/" .. table.concat(parts, "/")
end

-- Absolute path of the repository root (two levels above this file).
H.root = os.getenv("LUACACHED_ROOT") or normalize(abspath(script_dir()) .. "/../..")

function H.now() return socket.gettime() end
function H.sleep(s) socket.sleep(s) end

function H.sh_quote(s)
  s = tostring(s)
  if s:match("^[%w%-%./_=:,@+]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
local q = H.sh_quote

local function argv_string(argv)
  if type(argv) == "string" then return argv end
  local out = {}
  for i = 1, #argv do out[i] = q(argv[i]) end
  return table.concat(out, " ")
end

function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Atomic write (temp file + rename), so a watching server never reads half a file.
function H.write_file(path, content)
  local dir, base = path:match("^(.*)/([^/]+)$")
  local tmp = (dir or ".") .. "/." .. (base or path) .. ".tmp" .. math.random(1e9)
  local f = assert(io.open(tmp, "wb"))
  f:write(content)
  f:close()
  assert(os.rename(tmp, path))
  return path
end

function H.tail(s, n)
  s = s or ""
  n = n or 3000
  if #s <= n then return s end
  return "..." .. s:sub(-n)
end

local function my_pid()
  local s = H.read_file("/proc/self/stat")
  return s and s:match("^(%d+)")
end

-- pid_alive(pid) -> false for missing or zombie processes.
function H.pid_alive(pid)
  if not pid then return false end
  local s = H.read_file("/proc/" .. pid .. "/stat")
  if not s then return false end
  local state = s:match("%) (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- json_decode(s): cjson.decode with integral numbers turned into integers
-- (Debian's lua-cjson decodes every number as a float under Lua 5.4).
local function fix_numbers(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = fix_numbers(x) end
  end
  return v
end
function H.json_decode(s) return fix_numbers(cjson.decode(s)) end
H.json_encode = cjson.encode

-- wait_until(fn, timeout_s, msg) -> first truthy value of fn(); polls every
-- 10..50 ms; raises "timeout after Ns: msg (last error: ...)" at the deadline.
-- Errors raised by fn count as "not yet" (the last one is reported).
function H.wait_until(fn, timeout, msg)
  timeout = timeout or 5
  local deadline = H.now() + timeout
  local step, last_err = 0.01, nil
  while true do
    local ok, v = pcall(fn)
    if ok and v then return v end
    if not ok then last_err = v end
    if H.now() >= deadline then
      error(string.format("timeout after %gs: %s%s", timeout, msg or "condition not met",
        last_err and (" (last error: " .. tostring(last_err) .. ")") or ""), 2)
    end
    socket.sleep(step)
    step = math.min(step * 1.5, 0.05)
  end
end

-- free_port() -> a TCP port that was free a moment ago on 127.0.0.1.
function H.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return math.tointeger(tonumber(port))
end

-- The deterministic binary body of the origin's ?bytes=N.
local BLOCK
function H.pattern_bytes(n)
  if not BLOCK then
    local t = {}
    for i = 0, 254 do t[#t + 1] = string.char(i) end
    BLOCK = "\0\r\n" .. table.concat(t)
  end
  local reps = n // #BLOCK + 1
  return (BLOCK:rep(reps)):sub(1, n)
end

---------------------------------------------------------------------------
-- registry and cleanup

local procs = {}     -- every process spawned, in order
local tmpdirs = {}
local clients = setmetatable({}, { __mode = "k" })

function H.tmpdir(prefix)
  local f = io.popen("mktemp -d /tmp/" .. (prefix or "luacached-test") .. ".XXXXXX")
  local d = f:read("l")
  f:close()
  assert(d and d ~= "", "mktemp failed")
  tmpdirs[#tmpdirs + 1] = d
  return d
end

local function workdir()
  if not H._workdir then H._workdir = H.tmpdir("luacached-harness") end
  return H._workdir
end

-- cleanup(): close registered clients, stop every process still running
-- (TERM, then KILL after 3 s), delete temp dirs. Safe to call repeatedly.
function H.cleanup()
  for c in pairs(clients) do pcall(c.close, c) end
  clients = setmetatable({}, { __mode = "k" })
  local live = {}
  for _, p in ipairs(procs) do
    if p:alive() then
      os.execute("kill -TERM " .. p.pid .. " 2>/dev/null")
      live[#live + 1] = p
    end
  end
  local deadline = H.now() + 3
  for _, p in ipairs(live) do
    while p:alive() and H.now() < deadline do socket.sleep(0.02) end
    if p:alive() then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
  end
  for _, p in ipairs(live) do
    local d2 = H.now() + 2
    while p:alive() and H.now() < d2 do socket.sleep(0.02) end
  end
  procs = {}
  if not os.getenv("LUACACHED_KEEP_TMP") then
    for _, d in ipairs(tmpdirs) do
      if d:match("^/tmp/[%w%-%._]+$") then os.execute("rm -rf " .. q(d)) end
    end
  end
  tmpdirs = {}
  H._workdir = nil
end

-- last resort: when the Lua state closes (busted exits), clean up
H._finalizer = setmetatable({}, { __gc = function() pcall(H.cleanup) end })

---------------------------------------------------------------------------
-- processes

local Proc = {}
Proc.__index = Proc

function Proc:alive()
  if H.read_file(self.rc_path) then return false end
  return H.pid_alive(self.pid)
end

-- rc() -> exit status (128+N if killed by signal N) once exited, else nil.
function Proc:rc()
  local s = H.read_file(self.rc_path)
  return s and math.tointeger(tonumber(s:match("%d+")))
end

function Proc:signal(sig)
  os.execute("kill -" .. (sig or "TERM") .. " " .. self.pid .. " 2>/dev/null")
end

-- wait(timeout) -> exit status, or nil if still running at the deadline.
function Proc:wait(timeout)
  local deadline = H.now() + (timeout or 5)
  while true do
    local rc = self:rc()
    if rc then return rc end
    if not H.pid_alive(self.pid) then
      -- exited; give the wrapper a moment to record the status
      local d2 = H.now() + 1
      while H.now() < d2 do
        rc = self:rc()
        if rc then return rc end
        socket.sleep(0.01)
      end
      return nil
    end
    if H.now() >= deadline then return nil end
    socket.sleep(0.01)
  end
end

-- stop(sig, timeout) -> exit status. Sends sig (default TERM), waits up to
-- timeout (default 5 s), then KILLs. Second result: true if it had to KILL.
function Proc:stop(sig, timeout)
  if not self:alive() then return self:rc() end
  self:signal(sig or "TERM")
  local rc = self:wait(timeout or 5)
  if rc or not self:alive() then return rc or self:rc(), false end
  self:signal("KILL")
  return self:wait(3), true
end

function Proc:log() return H.read_file(self.log_path) or "" end

-- spawn{argv = {...} | "cmd string", log = path, env = {K = V}, cwd = dir,
--       name = "label"} -> proc
-- The process runs detached from the runner's stdio and inherited sockets,
-- its stdout+stderr go to the log file, and its exit status is recorded.
function H.spawn(o)
  local dir = workdir()
  local id = #procs + 1
  local name = o.name or "proc"
  local base = string.format("%s/%s-%d-%d", dir, name, id, math.random(1e6))
  local p = setmetatable({
    name = name,
    log_path = o.log or (base .. ".log"),
    pid_path = base .. ".pid",
    rc_path = base .. ".rc",
  }, Proc)
  local env = ""
  if o.env then
    local parts = {}
    for k, v in pairs(o.env) do parts[#parts + 1] = q(k .. "=" .. v) end
    if #parts > 0 then env = "env " .. table.concat(parts, " ") .. " " end
  end
  local owner = my_pid() or "1"
  local script = table.concat({
    "exec </dev/null >>" .. q(p.log_path) .. " 2>&1",
    -- don't let the child inherit the runner's sockets/pipes
    'for f in /proc/$$/fd/*; do n=${f##*/}; case $n in 0|1|2) ;; *) eval "exec $n>&-" ;; esac; done',
    "cd " .. q(o.cwd or H.root),
    "(",
    "  " .. env .. argv_string(o.argv) .. " &",
    "  pid=$!",
    "  echo $pid > " .. q(p.pid_path .. ".tmp") .. " && mv " .. q(p.pid_path .. ".tmp") .. " " .. q(p.pid_path),
    -- watchdog: if the test runner dies, take the child down with it
    "  ( while kill -0 " .. owner .. " 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 0.5; done;",
    "    if kill -0 $pid 2>/dev/null; then kill -TERM $pid; sleep 2; kill -KILL $pid; fi ) >/dev/null 2>&1 </dev/null &",
    "  wait $pid; echo $? > " .. q(p.rc_path .. ".tmp") .. " && mv " .. q(p.rc_path .. ".tmp") .. " " .. q(p.rc_path),
    ") &",
  }, "\n")
  local ok = os.execute("bash -c " .. q(script))
  if not ok then error("spawn: bash failed for " .. argv_string(o.argv)) end
  local deadline = H.now() + 5
  while true do
    local s = H.read_file(p.pid_path)
    if s and s:match("%d+") then
      p.pid = math.tointeger(tonumber(s:match("%d+")))
      break
    end
    if H.now() > deadline then error("spawn: no pid recorded for " .. argv_string(o.argv)) end
    socket.sleep(0.005)
  end
  procs[#procs + 1] = p
  return p
end

-- run(argv, timeout) -> exit status, output (stdout+stderr). Synchronous,
-- killed after timeout seconds (default 30; status 124 then).
function H.run(argv, timeout, cwd)
  local cmd = string.format("cd %s && timeout -k 2 %g %s </dev/null 2>&1; echo \"__rc=$?\"",
    q(cwd or H.root), timeout or 30, argv_string(argv))
  local f = io.popen(cmd)
  local out = f:read("a")
  f:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return math.tointeger(rc), out
end

---------------------------------------------------------------------------
-- clients

-- connect(port, timeout) -> resp connection to 127.0.0.1:port (registered,
-- closed by cleanup).
function H.connect(port, timeout)
  local c = resp.connect("127.0.0.1", port, timeout or 5)
  clients[c] = true
  return c
end

-- open_clients(port, n, timeout) -> list of n connections.
function H.open_clients(port, n, timeout)
  local list = {}
  for i = 1, n do list[i] = H.connect(port, timeout) end
  return list
end

function H.close_clients(list)
  for _, c in ipairs(list) do c:close() end
end

-- call(port, ...) -> reply of one command on a fresh connection.
function H.call(port, ...)
  local c = resp.connect("127.0.0.1", port, 5)
  local ok, v, k = pcall(c.call, c, ...)
  c:close()
  if not ok then error(v, 2) end
  return v, k
end

-- http{url=, method="GET", body=, headers={}, timeout=5} -> status, body, headers
-- http(url) works too. Raises on transport errors.
function H.http(o)
  if type(o) == "string" then o = { url = o } end
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local chunks = {}
  local headers = {}
  for k, v in pairs(o.headers or {}) do headers[k] = v end
  if o.body then headers["content-length"] = tostring(#o.body) end
  local old = http.TIMEOUT
  http.TIMEOUT = o.timeout or 5
  local ok, status, rheaders = http.request{
    url = o.url, method = o.method or "GET", headers = headers,
    source = o.body and ltn12.source.string(o.body) or nil,
    sink = ltn12.sink.table(chunks),
  }
  http.TIMEOUT = old
  if not ok then error("http " .. (o.method or "GET") .. " " .. o.url .. ": " .. tostring(status), 2) end
  return status, table.concat(chunks), rheaders
end

---------------------------------------------------------------------------
-- redis

local function ready_error(what, proc, msg)
  return string.format("%s did not come up: %s\n--- log tail (%s) ---\n%s",
    what, msg, proc.log_path, H.tail(proc:log()))
end

-- wait for a RESP reply to PING (any reply, even -NOAUTH, means ready)
local function wait_resp_ready(proc, port, timeout, what)
  local deadline = H.now() + timeout
  while true do
    if not proc:alive() then return false, "process exited (status " .. tostring(proc:wait(1)) .. ")" end
    local c = resp.try_connect("127.0.0.1", port, 1)
    if c then
      local ok, v = pcall(c.call, c, "PING")
      c:close()
      if ok and v ~= nil then return true end
    end
    if H.now() >= deadline then return false, string.format("no answer to PING on port %d within %gs", port, timeout) end
    socket.sleep(0.02)
  end
end

local function port_clash(log)
  return log:find("in use", 1, true) or log:find("EADDRINUSE", 1, true)
end

local Service = {}
Service.__index = Service
function Service:stop(sig, timeout) return self.proc:stop(sig, timeout) end
function Service:signal(sig) return self.proc:signal(sig) end
function Service:kill() return self.proc:stop("KILL", 3) end
function Service:alive() return self.proc:alive() end
function Service:wait_exit(timeout) return self.proc:wait(timeout) end
function Service:log() return self.proc:log() end
function Service:client(timeout) return H.connect(self.port, timeout) end
function Service:call(...) return H.call(self.port, ...) end

-- start_redis{port = P, args = {...}, timeout = 10} -> redis
--   redis.port, .url ("redis://127.0.0.1:P/0"), .pid, :stop(), :kill(),
--   :restart() (same port), :client(), :call(...), :log()
function H.start_redis(o)
  o = o or {}
  local attempts = o.port and 1 or 5
  local last
  for _ = 1, attempts do
    local port = o.port or H.free_port()
    local dir = H.tmpdir("luacached-redis")
    local argv = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--daemonize", "no", "--dir", dir }
    for _, a in ipairs(o.args or {}) do argv[#argv + 1] = a end
    local proc = H.spawn{ argv = argv, name = "redis" }
    local ok, err = wait_resp_ready(proc, port, o.timeout or 10)
    if ok then
      local r = setmetatable({ port = port, url = "redis://127.0.0.1:" .. port .. "/0",
                               pid = proc.pid, proc = proc, opts = o }, Service)
      function r.restart(self)
        self:stop()
        local n = H.start_redis{ port = self.port, args = o.args, timeout = o.timeout }
        self.proc, self.pid = n.proc, n.pid
        return self
      end
      return r
    end
    proc:stop("KILL", 2)
    last = ready_error("redis-server", proc, err)
    if o.port or not port_clash(proc:log()) then break end
  end
  error(last, 2)
end

---------------------------------------------------------------------------
-- origin (examples/origin.py)

-- start_origin{verbose = false, timeout = 10} -> origin
--   origin.port, .url ("http://127.0.0.1:P"), .pid
--   :stats() -> {total=, paths={[path]=n}, inflight=, max_inflight={}}
--   :count(path) -> requests seen for path (0 if none)
--   :reset()                      clear counts and overrides
--   :control(path, {status=, delay=, body=, bytes=, version=, headers=, drop=, times=})
--   :clear_control([path])
--   :mode(mode, {hang=, prefix=})  run-time fault mode: "ok"|"error"|"hang"|"reset"
--                                  for paths under prefix (default "/chaos/")
--   :get(path_and_query) -> status, body, headers
--   :stop(), :log()
function H.start_origin(o)
  o = o or {}
  local argv = { "python3", "-u", H.root .. "/examples/origin.py", "--host", "127.0.0.1", "--port", o.port or 0 }
  if o.verbose then argv[#argv + 1] = "--verbose" end
  local proc = H.spawn{ argv = argv, name = "origin" }
  local port
  local deadline = H.now() + (o.timeout or 10)
  while not port do
    port = proc:log():match("origin listening on 127%.0%.0%.1:(%d+)")
    if not port then
      if not proc:alive() then error(ready_error("origin", proc, "process exited"), 2) end
      if H.now() >= deadline then error(ready_error("origin", proc, "no ready line"), 2) end
      socket.sleep(0.02)
    end
  end
  port = math.tointeger(tonumber(port))
  local org = setmetatable({ port = port, url = "http://127.0.0.1:" .. port, pid = proc.pid, proc = proc }, Service)
  function org.get(self, path) return H.http(self.url .. path) end
  function org.stats(self)
    local st, body = H.http(self.url .. "/_stats")
    assert(st == 200, "origin /_stats answered " .. tostring(st))
    return H.json_decode(body)
  end
  function org.count(self, path) return self:stats().paths[path] or 0 end
  function org.reset(self)
    local st = H.http{ url = self.url .. "/_reset", method = "POST", body = "" }
    assert(st == 200, "origin /_reset answered " .. tostring(st))
  end
  function org.control(self, path, tbl)
    local spec = {}
    for k, v in pairs(tbl or {}) do spec[k] = v end
    spec.path = path
    local st, body = H.http{ url = self.url .. "/_control", method = "POST", body = cjson.encode(spec),
                             headers = { ["content-type"] = "application/json" } }
    assert(st == 200, "origin /_control answered " .. tostring(st) .. ": " .. tostring(body))
  end
  function org.mode(self, mode, opts)
    opts = opts or {}
    local st, body = H.http{ url = self.url .. "/_mode", method = "POST",
                             body = cjson.encode{ mode = mode, hang = opts.hang or 1.5,
                                                  prefix = opts.prefix or "/chaos/" },
                             headers = { ["content-type"] = "application/json" } }
    assert(st == 200, "origin /_mode answered " .. tostring(st) .. ": " .. tostring(body))
  end
  function org.clear_control(self, path)
    local url = self.url .. "/_control"
    if path then url = url .. "?path=" .. path:gsub("[^%w/%-%._~]", function(c) return string.format("%%%02X", c:byte()) end) end
    local st = H.http{ url = url, method = "DELETE" }
    assert(st == 200, "origin DELETE /_control answered " .. tostring(st))
  end
  return org
end

---------------------------------------------------------------------------
-- luacached

function H.luacached_bin()
  local bin = os.getenv("LUACACHED_BIN") or "build/luacached"
  if bin:sub(1, 1) ~= "/" then bin = H.root .. "/" .. bin end
  return bin
end

-- run_luacached({args...}, timeout) -> exit status, output (e.g. --check)
function H.run_luacached(args, timeout)
  local argv = { H.luacached_bin() }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return H.run(argv, timeout or 20)
end

-- start_server{policies_dir = DIR, redis_port = RP | redis_url = URL | false,
--              port = P, metrics_port = 0 | true (pick one) | P,
--              lua_path = DIR, extra_args = {...}, env = {K = V},
--              timeout = 10, wait = true, bin = path, cwd = DIR (default H.root)} -> server
--   server.port, .pid, .metrics_port (nil when 0), .policies_dir, .args
--   :call(...) one command on a fresh connection; :client(timeout)
--   :stop(sig = "TERM", timeout = 5) -> exit status (128+N if killed by N)
--   :signal(sig) (e.g. "HUP"), :alive(), :wait_exit(timeout) -> status
--   :log() -> whole log text; :metrics() -> /metrics body
-- Runs $LUACACHED_BIN (default build/luacached) with --port P --redis URL
-- --policies DIR --metrics-port M; waits until PING gets any reply.
function H.start_server(o)
  o = o or {}
  local bin = o.bin or H.luacached_bin()
  if not H.read_file(bin) then
    error("luacached binary not found at " .. bin .. " (build it, or set LUACACHED_BIN)", 2)
  end
  -- redis_url = false: no --redis flag (the URL comes from --redis-file or the environment)
  local redis_url = o.redis_url
  if redis_url == nil then
    redis_url = "redis://127.0.0.1:" .. assert(o.redis_port, "start_server: redis_port or redis_url required") .. "/0"
  end
  local policies = o.policies_dir or H.write_policies{}
  local attempts = o.port and 1 or 5
  local last
  for _ = 1, attempts do
    local port = o.port or H.free_port()
    local mport = o.metrics_port or 0
    if mport == true then mport = H.free_port() end
    local argv = { bin, "--port", port }
    if redis_url then argv[#argv + 1] = "--redis"; argv[#argv + 1] = redis_url end
    for _, a in ipairs{ "--policies", policies, "--metrics-port", mport } do argv[#argv + 1] = a end
    if o.lua_path then argv[#argv + 1] = "--lua-path"; argv[#argv + 1] = o.lua_path end
    for _, a in ipairs(o.extra_args or {}) do argv[#argv + 1] = a end
    local proc = H.spawn{ argv = argv, name = "luacached", env = o.env, cwd = o.cwd }
    local srv = setmetatable({ port = port, pid = proc.pid, proc = proc, policies_dir = policies,
                               metrics_port = (mport ~= 0) and mport or nil, args = argv }, Service)
    function srv.metrics(self)
      assert(self.metrics_port, "server started without a metrics port")
      local st, body = H.http("http://127.0.0.1:" .. self.metrics_port .. "/metrics")
      assert(st == 200, "/metrics answered " .. tostring(st))
      return body
    end
    if o.wait == false then return srv end
    local ok, err = wait_resp_ready(proc, port, o.timeout or 10)
    if ok then return srv end
    proc:stop("KILL", 2)
    last = ready_error("luacached", proc, err)
    if o.port or not port_clash(proc:log()) then break end
  end
  error(last, 2)
end

---------------------------------------------------------------------------
-- policies

-- write_policies({ns = "lua source", ...}, dir) -> dir (a new temp dir unless given)
function H.write_policies(tbl, dir)
  dir = dir or H.tmpdir("luacached-policies")
  for ns, src in pairs(tbl or {}) do H.write_file(dir .. "/" .. ns .. ".lua", src) end
  return dir
end

-- write_policy(dir, ns, src): add or replace one policy file (atomically).
function H.write_policy(dir, ns, src) return H.write_file(dir .. "/" .. ns .. ".lua", src) end

function H.remove_policy(dir, ns) return os.remove(dir .. "/" .. ns .. ".lua") end

-- simple_policy(url_prefix, fields, suffix) -> source of a policy that GETs
-- url_prefix .. id (.. suffix, when given): 404 -> nil, non-200 ->
-- error("origin said N"), body as is.
-- fields: extra Lua table fields as a source string, e.g. "ttl = 5, negative_ttl = 0".
function H.simple_policy(url_prefix, fields, suffix)
  return string.format([[
return {
  %s
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id%s)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
]], fields and (fields .. ",") or "", url_prefix, suffix and (" .. " .. string.format("%q", suffix)) or "")
end

-- tagged_policy(url_prefix, fields) -> source of a policy that GETs
-- url_prefix .. id (non-200: error) and tags the value "owner:<owner_id>"
-- (from the origin's widget JSON) and "all", ttl 60 (SPEC §4); fields as
-- simple_policy's, e.g. an on_event.
function H.tagged_policy(url_prefix, fields)
  return string.format([[
local cjson = require "cjson"
return {
  ttl = 60,
  %s
  fetch = function(id, ctx)
    local res = ctx.http.get(%q .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    local w = cjson.decode(res.body)
    return res.body, { tags = { "owner:" .. w.owner_id, "all" } }
  end,
}
]], fields and (fields .. ",") or "", url_prefix)
end

-- The sum of one STATS counter of namespace ns over several servers.
function H.ns_total(servers, ns, name)
  local n = 0
  for _, srv in ipairs(servers) do
    local v = H.ns_stats(srv, ns)[name]
    assert(v, "STATS " .. ns .. " has no counter " .. name)
    n = n + v
  end
  return n
end

---------------------------------------------------------------------------
-- assertions shared by the specs

local luassert = require "luassert"

-- Stop a server with SIGTERM and check it went down cleanly: exit status 0
-- and no sanitizer report in its log (the suite also runs under ASan+UBSan).
function H.assert_clean_exit(srv)
  local rc = srv:stop("TERM", 15)
  local log = srv:log()
  luassert.falsy(log:find("Sanitizer", 1, true), "sanitizer report:\n" .. H.tail(log, 6000))
  luassert.falsy(log:find("runtime error:", 1, true), "UBSan report:\n" .. H.tail(log, 6000))
  luassert.equal(0, rc, "exit status; log:\n" .. H.tail(log, 3000))
end

-- The text of an error reply; fails the test if v is not one.
function H.errtext(v, what)
  luassert(H.resp.is_err(v), (what or "reply") .. ": expected an error reply, got " .. tostring(v))
  return v.err
end

-- assert_err(text, value, kind): the reply is an error with exactly this text.
function H.assert_err(text, v, kind)
  luassert.equal("error", kind, "expected error '" .. text .. "', got " .. tostring(kind) .. ": "
    .. tostring(type(v) == "table" and (v.err or v.n) or v))
  luassert.equal(text, v.err)
end

-- Protocol errors: the exact error line, then the server closes the socket.
function H.assert_proto_error(c, text)
  luassert.equal("-ERR Protocol error: " .. text .. "\r\n", c:read_raw_reply(3))
  luassert.is_true(c:closed_within(3), "server did not close after a protocol error")
end

-- Counters of one namespace from STATS ns (or from INFO when from_info):
-- {name = number (or string)}.
function H.ns_stats(srv, ns, from_info)
  local text
  if from_info then text = srv:call("INFO") else text = srv:call("STATS", ns) end
  luassert.is_string(text)
  local line = text:match("ns_" .. ns:gsub("%p", "%%%0") .. ":([^\r\n]*)")
  luassert(line, "no ns_" .. ns .. " line in:\n" .. tostring(text))
  local t = {}
  for k, v in line:gmatch("([%w_]+)=([^,]*)") do t[k] = tonumber(v) or v end
  return t
end

-- metric_value(text, 'name{labels}') -> the number of that sample of a
-- Prometheus exposition, or nil if absent.
function H.metric_value(text, series)
  local pat = series:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  local v = ("\n" .. text):match("\n" .. pat .. " ([^\n]+)\n")
  return v and tonumber(v)
end

-- The "key:value" lines of an INFO reply: {key = number (or string)}.
function H.info_fields(text)
  luassert.is_string(text)
  local t = {}
  for k, v in text:gmatch("([%w_]+):([^\r\n]*)") do t[k] = tonumber(v) or v end
  return t
end

return H

--[[ API summary
H.root                                 repo root (absolute)
H.now(), H.sleep(s)
H.wait_until(fn, timeout_s=5, msg)     -> fn's truthy value, or raises
H.free_port()                          -> port
H.tmpdir(prefix)                       -> dir (removed by cleanup)
H.read_file(p), H.write_file(p, s)     write is atomic
H.json_decode(s), H.json_encode(v)     decode with integral numbers as integers
H.pattern_bytes(n)                     origin's ?bytes=N body
H.spawn{argv, env, cwd, name, log}     -> proc {pid, log_path, :alive(), :rc(), :signal(sig), :wait(t), :stop(sig, t), :log()}
H.run(argv, timeout, cwd)              -> status, output
H.run_luacached(args, timeout)         -> status, output
H.connect(port, timeout)               -> resp conn (see resp.lua)
H.info_fields(info_text)               -> {field = number or string} of INFO's key:value lines
H.open_clients(port, n, timeout)       -> {conn...};  H.close_clients(list)
H.call(port, ...)                      -> reply on a fresh connection
H.http{url, method, body, headers, timeout} | H.http(url) -> status, body, headers
H.start_redis{port, args, timeout}     -> {port, url, pid, :stop(), :kill(), :restart(), :client(), :call(...), :log()}
H.start_origin{verbose, timeout}       -> {port, url, pid, :stats(), :count(path), :reset(), :control(path, t), :clear_control(path), :get(path), :stop(), :log()}
H.start_server{policies_dir, redis_port|redis_url, port, metrics_port, lua_path, extra_args, env, timeout, wait, bin}
                                       -> {port, pid, metrics_port, :call(...), :client(), :stop(sig, t), :signal(sig), :alive(), :wait_exit(t), :log(), :metrics()}
H.write_policies{ns = src}, dir)       -> dir;  H.write_policy(dir, ns, src);  H.remove_policy(dir, ns)
H.simple_policy(url_prefix, fields, suffix) -> policy source
H.assert_clean_exit(srv), H.errtext(v, what), H.assert_err(text, v, kind), H.assert_proto_error(c, text)
H.ns_stats(srv, ns, from_info)         -> {counter = value} of one namespace (STATS ns or INFO)
H.cleanup()                            stop all processes, close clients, remove temp dirs
]]
