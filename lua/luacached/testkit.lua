-- luacached.testkit: test a policy file offline (busted, plain lua5.4): no
-- server, no Redis, no origin. docs/TESTKIT.md is the manual.
--
-- The policy is loaded exactly as the server loads it: runtime.load(host)
-- with the same json, sandbox and validate modules, so the sandbox (allow-
-- listed globals, the global guard, require of cjson and lua/ modules), the
-- validation messages, ctx and the JSON behaviour (integral numbers stay
-- integers) are the server's own code. What the kit supplies is the host:
-- the C primitives (http, sleep, now, log), here scripted, on a virtual
-- clock. Each hook runs in a coroutine as on the server; ctx I/O yields the
-- io sentinel, and the kit's driver answers it from the script at once
-- (advancing the clock by the scripted delay) instead of an event loop.
-- Not modelled: the instruction/memory budgets (a count hook stops endless
-- loops only), budgeted pattern matching (same results as stock Lua),
-- Redis, stampede control, stale serving and L1 (the kit reports the TTLs
-- and the conf; the server applies them).
local runtime = require("luacached.runtime")
local json_mod = require("luacached.json")
local sandbox = require("luacached.sandbox")
local validate = require("luacached.validate")

local fmt, concat = string.format, table.concat

local M = {}

M.START_MS = 1798761600000 -- 2027-01-01T00:00:00Z: the virtual clock's default start
M.INSTRUCTION_LIMIT = 100000000 -- the server's default --lua-budget

local SENTINEL = setmetatable({}, { __name = "luacached.testkit.io" })

local function root_of_this_file()
    local src = debug.getinfo(1, "S").source
    return src:match("^@(.*)luacached/testkit%.lua$") or "lua/"
end

local function read(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("a")
    f:close()
    return s
end

-- The namespaces a key may name: every NAME.lua beside the policy (the
-- server's policies folder), as `ls` sees it.
local function sibling_namespaces(path)
    local dir = path:match("^(.*)/[^/]*$") or "."
    local set = {}
    local p = io.popen("ls -1 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
    if p then
        for name in p:lines() do
            local ns = name:match("^([A-Za-z0-9_.-]+)%.lua$")
            if ns and ns:sub(1, 1) ~= "." then set[ns] = true end
        end
        p:close()
    end
    return set
end

-- ---------------------------------------------------------------------------
-- The virtual clock
-- ---------------------------------------------------------------------------
local Clock = {}
Clock.__index = Clock

function Clock:now() return self.ms end -- integer milliseconds, as ctx.now()
function Clock:seconds() return self.ms // 1000 end
function Clock:advance(s)
    assert(type(s) == "number" and s >= 0, "clock:advance expects seconds >= 0")
    self.ms = self.ms + math.ceil(s * 1000)
    return self.ms
end
function Clock:set(ms) self.ms = math.tointeger(ms) or math.floor(ms) end

-- ---------------------------------------------------------------------------
-- Scripted HTTP
-- ---------------------------------------------------------------------------
local Http = {}
Http.__index = Http

-- on(method, url, response): method "*" matches any; url is exact, or a
-- Lua pattern when it starts with "^". response: a table {status=, body=,
-- headers=, delay=, error=, timeout=}, a list of them (served in turn,
-- the last one repeating), or function(req) -> such a table.
function Http:on(method, url, response)
    if type(method) == "function" then
        self.routes[#self.routes + 1] = { fn = method }
        return self
    end
    if response == nil then url, response, method = method, url, "*" end
    self.routes[#self.routes + 1] = { method = method, url = url, response = response, served = 0 }
    return self
end

-- Answer every request no route matches (a function or a response table).
function Http:fallback(response) self.default = response; return self end

function Http:reset()
    self.routes, self.requests, self.default = {}, {}, nil
end

-- Requests made so far (optionally of one method and url).
function Http:count(method, url)
    local n = 0
    for _, r in ipairs(self.requests) do
        if (method == nil or method == "*" or r.method == method) and (url == nil or r.url == url) then
            n = n + 1
        end
    end
    return n
end

local function url_matches(want, url)
    if want:sub(1, 1) == "^" then return url:find(want) ~= nil end
    return want == url
end

function Http:answer(req)
    for i = #self.routes, 1, -1 do -- the latest route wins
        local r = self.routes[i]
        if r.fn then
            local res = r.fn(req)
            if res ~= nil then return res end
        elseif (r.method == "*" or r.method == req.method) and url_matches(r.url, req.url) then
            local res = r.response
            if type(res) == "function" then return res(req) end
            if type(res) == "table" and res[1] ~= nil then
                r.served = r.served + 1
                return res[math.min(r.served, #res)]
            end
            return res
        end
    end
    local d = self.default
    if type(d) == "function" then d = d(req) end
    if d ~= nil then return d end
    error(fmt("testkit: no response scripted for %s %s (use kit.http:on)", req.method, req.url), 0)
end

-- ---------------------------------------------------------------------------
-- Loading
-- ---------------------------------------------------------------------------
local Kit = {}
Kit.__index = Kit

-- load(path[, opts]) -> kit. opts: ns (default: the file's name), now (ms),
-- namespaces (a list: namespaces keys and patterns may name; default: the
-- policy's folder), lua_path (default: this module's lua/ folder), source
-- (the text instead of reading path), print_logs (echo ctx.log). Raises
-- the server's load error ("path:line: message").
function M.load(path, opts)
    opts = opts or {}
    local source = opts.source or assert(read(path))
    local ns = opts.ns or path:match("([^/]+)%.lua$") or path
    local lua_path = opts.lua_path or root_of_this_file()
    local k = setmetatable({ path = path, ns = ns, logs = {}, lua_path = lua_path }, Kit)
    k.clock = setmetatable({ ms = opts.now or M.START_MS }, Clock)
    k.http = setmetatable({}, Http)
    k.http:reset()
    if opts.namespaces then
        k.namespaces = {}
        for _, n in ipairs(opts.namespaces) do k.namespaces[n] = true end
    else
        k.namespaces = sibling_namespaces(path)
    end
    k.namespaces[ns] = true
    k.print_logs = opts.print_logs

    local raw = require("cjson").new() -- an instance of our own: wrap() configures it
    k.json = json_mod.wrap(raw) -- the server's JSON, as policies get it

    local function log(level, msg)
        k.logs[#k.logs + 1] = { level = level, msg = msg }
        if k.print_logs then io.stderr:write(fmt("[%s] %s: %s\n", ns, level, msg)) end
    end
    local prims = {
        -- Park the hook's coroutine as the C primitives do; the driver
        -- (Kit:run) answers with the results.
        http = function(h, method, url, body, timeout, ...)
            k.pending = { op = "http", h = h, method = method, url = url, body = body,
                timeout = timeout, header_lines = { ... } }
            return coroutine.yield(SENTINEL)
        end,
        sleep = function(h, seconds)
            k.pending = { op = "sleep", h = h, seconds = seconds }
            return coroutine.yield(SENTINEL)
        end,
        now = function() return k.clock.ms end,
        log = log,
    }
    local function find_module(name)
        local file = lua_path .. name:gsub("%.", "/") .. ".lua"
        local src = read(file)
        if not src then return nil end
        return src, "@" .. file
    end
    -- os.time() and os.date() without a time follow the virtual clock.
    local real_time, real_date = os.time, os.date
    os.time = function(t)
        if t == nil then return k.clock.ms // 1000 end
        return real_time(t)
    end
    os.date = function(f, t)
        return real_date(f, t or k.clock.ms // 1000)
    end
    local ok, conf, fetch, ttl_for, on_event, warm = pcall(runtime.load, {
        libs = { json = json_mod, sandbox = sandbox, validate = validate },
        cjson = raw, find_module = find_module, log = log, io_sentinel = SENTINEL,
        prims = prims, ns = ns, path = path, source = source,
    })
    os.time, os.date = real_time, real_date
    if not ok then error(conf, 0) end
    k.conf, k.fns = conf, { fetch = fetch, ttl_for = ttl_for, on_event = on_event, warm = warm }
    return k
end

-- check(path[, opts]) -> true or nil, "path:line: message" (as --check).
function M.check(path, opts)
    local ok, err = pcall(M.load, path, opts)
    if ok then return true end
    return nil, err
end

-- ---------------------------------------------------------------------------
-- Running a hook
-- ---------------------------------------------------------------------------

-- Header lines "Name: value" back to a table (names as the policy wrote them).
local function header_table(lines)
    local t = {}
    for _, l in ipairs(lines) do
        local n, v = l:match("^([^:]+): (.*)$")
        t[n] = v
    end
    return t
end

-- The response table the C primitive builds: header names lower-cased,
-- a list value joined with ", ".
local function response_table(self, res)
    local hdrs = {}
    for name, v in pairs(res.headers or {}) do
        if type(v) == "table" then v = concat(v, ", ") end
        hdrs[name:lower()] = tostring(v)
    end
    local body = res.body or ""
    if type(body) == "table" then body = self.json.encode(body) end
    return { status = math.tointeger(res.status or 200), body = body, headers = hdrs }
end

-- Runs fn(...) in a coroutine, answering its ctx I/O, with deadline_ms for
-- fetch (nil for the other hooks). Returns "ok", results... | "error", msg
-- | "timeout", msg.
function Kit:run(deadline_ms, timeout_s, fn, ...)
    local co = coroutine.create(fn)
    local count = 0
    debug.sethook(co, function()
        count = count + 1000
        if count > M.INSTRUCTION_LIMIT then error("instruction budget exceeded", 2) end
    end, "", 1000)
    local args = table.pack(...)
    while true do
        self.pending = nil
        local r = table.pack(coroutine.resume(co, table.unpack(args, 1, args.n)))
        if not r[1] then return "error", runtime.debug_relocate(co, r[2]) end
        if coroutine.status(co) == "dead" then return "ok", table.unpack(r, 2, r.n) end
        local p = self.pending
        if r.n ~= 2 or r[2] ~= SENTINEL or not p then
            return "error", "fetch yielded outside ctx I/O (coroutine.yield at the top level of fetch)"
        end
        local timed_out = "fetch timed out after " .. fmt("%g", timeout_s or 0) .. "s"
        if p.op == "sleep" then
            local wake = self.clock.ms + math.ceil(p.seconds * 1000)
            if deadline_ms and wake >= deadline_ms then
                self.clock.ms = deadline_ms
                return "timeout", timed_out
            end
            self.clock.ms = wake
            args = table.pack()
        else
            local req = { method = p.method, url = p.url, body = p.body, timeout = p.timeout,
                headers = header_table(p.header_lines), at = self.clock.ms }
            self.http.requests[#self.http.requests + 1] = req
            local res = self.http:answer(req)
            -- The request's time limit: what is left of fetch_timeout, or
            -- its own timeout when shorter (fetch.c prim_http).
            local left = deadline_ms and (deadline_ms - self.clock.ms) or math.huge
            local limit, own = left, false
            if p.timeout and p.timeout * 1000 < left then limit, own = math.ceil(p.timeout * 1000), true end
            local delay = res.timeout and math.huge or math.ceil((res.delay or 0) * 1000)
            if delay >= limit then
                if not own then
                    self.clock.ms = deadline_ms
                    return "timeout", timed_out
                end
                self.clock.ms = self.clock.ms + limit
                args = table.pack(nil, fmt("http %s %s: timeout", p.method, p.url))
            else
                self.clock.ms = self.clock.ms + delay
                if res.error then
                    args = table.pack(nil, fmt("http %s %s: %s", p.method, p.url, res.error))
                else
                    args = table.pack(response_table(self, res))
                end
            end
        end
    end
end

-- fetch(id) -> result: { kind = "value" | "not_found" | "error" | "timeout",
--   key, value (the stored bytes), json (value decoded, when it is JSON),
--   ttl (before jitter), ttl_min, ttl_max (the jitter range), tags,
--   error (message, as in "-ERR fetch failed: <error>"), requests (made by
--   this fetch), elapsed (virtual seconds) }
function Kit:fetch(id)
    id = tostring(id)
    local t0, n0 = self.clock.ms, #self.http.requests
    local timeout = self.conf.fetch_timeout
    local r = table.pack(self:run(t0 + math.ceil(timeout * 1000), timeout, self.fns.fetch, {}, id))
    local res = { key = self.ns .. ":" .. id, requests = {}, elapsed = (self.clock.ms - t0) / 1000 }
    for i = n0 + 1, #self.http.requests do res.requests[#res.requests + 1] = self.http.requests[i] end
    if r[1] ~= "ok" then
        res.kind, res.error = r[1], tostring(r[2])
        return res
    end
    local v, ttl = r[2], r[3]
    res.kind = v == nil and "not_found" or "value"
    res.value = v
    res.ttl = ttl
    local j = self.conf.ttl_jitter
    res.ttl_min, res.ttl_max = ttl - ttl * j, ttl + ttl * j
    res.tags = {}
    for i = 4, r.n do res.tags[#res.tags + 1] = r[i] end
    if v ~= nil then
        local ok, d = pcall(self.json.decode, v)
        if ok then res.json = d end
    end
    return res
end

-- The checks EVENT makes on what on_event returned (cmd_inval.c): keys
-- name a served namespace; patterns start with a literal one.
local function event_check(self, keys, patterns)
    for i, key in ipairs(keys) do
        local ns = key:match("^([^:]*):")
        if not ns or ns == "" then
            return fmt("on_event failed: result keys[%d] '%s': key must be namespace:id", i, key)
        end
        if not self.namespaces[ns] then
            return fmt("on_event failed: result keys[%d] '%s': unknown namespace '%s'", i, key, ns)
        end
    end
    for i, p in ipairs(patterns) do
        local ns = p:match("^([^:]*):")
        if not ns or ns == "" or ns:find("[%*%?%[%]\\]") then
            return fmt("on_event failed: result patterns[%d] '%s': PURGE pattern must start "
                .. "with a literal namespace, e.g. PURGE user_widgets:5:*", i, p)
        end
        if not self.namespaces[ns] then
            return fmt("on_event failed: result patterns[%d] '%s': unknown namespace '%s'", i, p, ns)
        end
    end
end

-- on_event(name[, payload]) -> { keys, patterns, tags, flush } or
-- { error = "on_event failed: ..." }. payload: the string EVENT sends, or
-- a table (encoded with the server's JSON first).
function Kit:on_event(name, payload)
    if type(payload) == "table" then payload = self.json.encode(payload) end
    local st, keys, patterns, tags, flush = self:run(nil, nil, self.fns.on_event, name, payload)
    if st ~= "ok" then return { error = "on_event failed: " .. tostring(keys) } end
    local err = event_check(self, keys, patterns)
    if err then return { error = err } end
    return { keys = keys, patterns = patterns, tags = tags, flush = flush }
end

-- warm() -> { ids = {...} } (strings) or { error = "warm failed: ..." }
function Kit:warm()
    local st, ids = self:run(nil, nil, self.fns.warm)
    if st ~= "ok" then return { error = "warm failed: " .. tostring(ids) } end
    return { ids = ids }
end

-- ttl(id, value) -> seconds (the TTL of SET ns:id value), or nil, message.
-- value is the string SET stores.
function Kit:ttl(id, value)
    local st, ttl = self:run(nil, nil, self.fns.ttl_for, tostring(id), value)
    if st ~= "ok" then return nil, "ttl failed: " .. tostring(ttl) end
    return ttl
end

-- Log lines (optionally of one level) as "level: message" strings.
function Kit:log_lines(level)
    local out = {}
    for _, l in ipairs(self.logs) do
        if level == nil or l.level == level then out[#out + 1] = l.level .. ": " .. l.msg end
    end
    return out
end

return M
