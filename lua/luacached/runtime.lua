-- luacached.runtime: one loaded policy version as the C engine drives it.
--
-- load(host) builds the sandbox, runs the policy file in it, validates the
-- result and returns what C keeps registry references to:
--   conf            the validated numbers (validate.lua)
--   fetch(h, id)    the body of each fetch coroutine: builds ctx, calls the
--                   policy's fetch(id, ctx) and normalises its result
--   ttl_for(id, v)  the TTL of a value stored by SET
--   on_event(name, payload)  runs the policy's on_event and validates its
--                   result (EVENT); returns keys, patterns, tags, flush
--   warm()          runs the policy's warm and validates the ids (WARM)
--   write(h, id, v), delete(h, id)  write-through SET / DEL (full ctx)
--   write_batch(h, items)  write-behind: one batch of queued writes (full ctx)
--
-- on_event, warm and ttl_for run as budgeted coroutines like fetch, but
-- their ctx has ns, now and log only: ctx.http / ctx.sleep raise a clear
-- error there (I/O belongs in fetch; an event handler only says what to
-- invalidate).
--
-- The C primitives behind ctx are injected as host.prims:
--   http(h, method, url, body|nil, timeout|nil, "Name: value"...)
--        -> {status, body, headers} or nil, "http GET url: message"
--        (yields the fetch coroutine until the response is in)
--   sleep(h, seconds)      (yields likewise)
--   now() -> wall-clock milliseconds (integer)
--   log(level, msg)        level is "debug", "info", "warn" or "error"
-- h is the fetch's handle: the C side refuses it once the fetch finished.
-- Tests pass plain Lua functions instead.
--
-- Where errors point. A mistake the policy made (a bad ctx.http argument,
-- a ttl function returning garbage, an invalid fetch result) is reported
-- at the policy's own line, never at this file's: host.where(fn) walks the
-- stack to the first frame outside the shipped lua/ modules ("file:line: "),
-- and when there is none (the policy's frame is gone: a tail call such as
-- `return ctx.http.get(url)`, or a result checked after it returned) it
-- names the line where fn, the policy function that ran, is defined. An
-- error Lua raises inside a shipped module the policy called (json's
-- encode, the sandbox's load) is moved to the policy's line by the engine,
-- from the stack of the failed run (policy.c, policy_error_relocate).
local type, error, pairs, tostring, select, pcall = type, error, pairs, tostring, select, pcall
local unpack, fmt, huge = table.unpack, string.format, math.huge
local find = string.find
local mtype = math.type

local M = {}

-- The stand-in for host.where where Lua's debug library exists (the test
-- kit and unit tests run under plain Lua; the server's host state has no
-- debug library and passes its own, in C): the same walk, skipping frames
-- of the shipped modules (lua/luacached/*.lua) and C functions.
local getinfo = rawget(_G, "debug") and debug.getinfo
local function shipped(source) return find(source, "[/@]luacached/[%w_]+%.lua$") ~= nil end
function M.debug_where(fn)
    if not getinfo then return "" end
    for level = 2, 64 do
        local info = getinfo(level, "Sl")
        if not info then break end
        if info.currentline > 0 and not shipped(info.source) then
            return info.short_src .. ":" .. info.currentline .. ": "
        end
    end
    if type(fn) == "function" then
        local info = getinfo(fn, "S")
        if info.linedefined > 0 and not shipped(info.source) then
            return info.short_src .. ":" .. info.linedefined .. ": "
        end
    end
    return ""
end

-- The test kit's counterpart of the engine's policy_error_relocate: msg of
-- a run that failed on coroutine co, an error raised inside a shipped
-- module ("json.lua:76: Cannot serialise function") moved to the policy's
-- line found on co's stack (which an error leaves in place).
function M.debug_relocate(co, msg)
    if not getinfo or type(msg) ~= "string" then return msg end
    local file, rest = msg:match("^(.-%.lua):%d+: (.*)$")
    if not file or not shipped("@" .. file) then return msg end
    for level = 0, 64 do
        local info = getinfo(co, level, "Sl")
        if not info then break end
        if info.currentline > 0 and not shipped(info.source) then
            return info.short_src .. ":" .. info.currentline .. ": " .. rest
        end
    end
    return msg
end

M.MAX_TAGS = 1000
M.MAX_HEADERS = 200
-- Bounds of what on_event and warm may return.
M.MAX_EVENT_KEYS = 10000
M.MAX_EVENT_PATTERNS = 100
M.MAX_EVENT_TAGS = 1000
M.MAX_WARM_IDS = 100000

-- ctx I/O parks the fetch's coroutine, which is impossible where Lua runs
-- the policy from inside a C function.
local NO_PARK = "ctx I/O cannot wait here: it is called from inside a C function (a "
    .. "string.gsub or table.sort callback, __tostring, ...); call it from plain code"

local LEVELS = { debug = true, info = true, warn = true, error = true }
local REQUEST_FIELDS = { method = true, url = true, headers = true, body = true, timeout = true }
local EVENT_FIELDS = { keys = true, patterns = true, tags = true, flush = true }
local GET_OPTIONS = { headers = true, timeout = true }

local function got(v)
    if v ~= v then return "(got nan)" end
    if type(v) == "number" then return "(got " .. tostring(v) .. ")" end
    return "(got " .. type(v) .. ")"
end

local function nonneg(v)
    return type(v) == "number" and v == v and v >= 0 and v ~= huge
end

-- Validates a request table and flattens its headers to "Name: value"
-- strings. raise(msg) reports a mistake at the policy's line.
local function check_request(req, raise)
    if type(req) ~= "table" then
        raise("ctx.http.request expects a table {method=, url=, headers=, body=, timeout=} "
            .. got(req))
    end
    for k in pairs(req) do
        if not REQUEST_FIELDS[k] then
            raise("ctx.http.request: unknown field '" .. tostring(k) .. "'")
        end
    end
    local method = req.method or "GET"
    if type(method) ~= "string" or not find(method, "^[%w_-]+$") then
        raise("ctx.http: method must be a token such as \"GET\" " .. got(method))
    end
    local url = req.url
    if type(url) ~= "string" then raise("ctx.http: url must be a string " .. got(url)) end
    local body = req.body
    if body ~= nil and type(body) ~= "string" then
        raise("ctx.http: body must be a string " .. got(body))
    end
    local timeout = req.timeout
    if timeout ~= nil and not (nonneg(timeout) and timeout > 0) then
        raise("ctx.http: timeout must be a number of seconds > 0 " .. got(timeout))
    end
    local hdrs, n = {}, 0
    if req.headers ~= nil then
        if type(req.headers) ~= "table" then
            raise("ctx.http: headers must be a table {Name = value} " .. got(req.headers))
        end
        for name, value in pairs(req.headers) do
            if type(name) ~= "string" or not find(name, "^[%w!#$%%&'*+.^_`|~-]+$") then
                raise("ctx.http: bad header name " .. tostring(name))
            end
            if type(value) == "number" then value = tostring(value) end
            if type(value) ~= "string" or find(value, "[\r\n%z]") then
                raise("ctx.http: header " .. name .. " must have a one-line string value")
            end
            n = n + 1
            if n > M.MAX_HEADERS then raise("ctx.http: too many headers") end
            hdrs[n] = name .. ": " .. value
        end
    end
    return method, url, body, timeout, hdrs, n
end

-- ctx.log: level, then a message or a format and its arguments.
local function make_log(plog, raise)
    return function(level, msg, ...)
        if not LEVELS[level] then
            raise("ctx.log: level must be \"debug\", \"info\", \"warn\" or \"error\" "
                .. got(level))
        end
        if select("#", ...) > 0 then
            msg = fmt(msg, ...)
        elseif type(msg) ~= "string" then
            msg = tostring(msg)
        end
        plog(level, msg)
    end
end

-- The ctx of on_event and warm: no I/O. raise(msg) as for check_request.
local function sync_ctx(hook, ns, prims, raise)
    local function no_io(what)
        return function()
            raise("ctx." .. what .. " is not available in " .. hook .. " (do I/O in fetch)")
        end
    end
    return {
        ns = ns,
        now = prims.now,
        log = make_log(prims.log, raise),
        http = { get = no_io("http.get"), request = no_io("http.request") },
        sleep = no_io("sleep"),
    }
end

-- An array of non-empty strings (at most max) from field of res, or {}.
-- what prefixes messages: "result keys".
local function string_list(v, what, max, at)
    if v == nil then return {} end
    if type(v) ~= "table" then error(at .. what .. " must be an array of strings " .. got(v), 0) end
    local n = #v
    if n > max then error(at .. fmt("%s: too many (%d, at most %d)", what, n, max), 0) end
    for k in pairs(v) do
        if mtype(k) ~= "integer" or k < 1 or k > n then
            error(at .. what .. " must be an array of strings (found key " .. tostring(k) .. ")", 0)
        end
    end
    for i = 1, n do
        local x = v[i]
        if type(x) ~= "string" then error(at .. fmt("%s[%d] must be a string %s", what, i, got(x)), 0) end
        if x == "" then error(at .. fmt("%s[%d] must not be empty", what, i), 0) end
    end
    return v
end

-- at: "file:line: " of the policy's on_event / warm, for messages.
-- The validated result of on_event: keys, patterns, tags (arrays of
-- strings) and flush (boolean). nil means nothing to invalidate.
function M.check_event_result(res, at)
    at = at or ""
    if res == nil then return {}, {}, {}, false end
    if type(res) ~= "table" then
        error(at .. "on_event must return a table {keys=, patterns=, tags=, flush=} or nil "
            .. got(res), 0)
    end
    for k in pairs(res) do
        if not EVENT_FIELDS[k] then
            error(at .. "result has an unknown field '" .. tostring(k)
                .. "' (fields are keys, patterns, tags and flush)", 0)
        end
    end
    local keys = string_list(res.keys, "result keys", M.MAX_EVENT_KEYS, at)
    local patterns = string_list(res.patterns, "result patterns", M.MAX_EVENT_PATTERNS, at)
    local tags = string_list(res.tags, "result tags", M.MAX_EVENT_TAGS, at)
    local flush = res.flush
    if flush == nil then flush = false end
    if type(flush) ~= "boolean" then error(at .. "result flush must be a boolean " .. got(flush), 0) end
    return keys, patterns, tags, flush
end

-- The validated ids warm returned: strings, integers as their decimal
-- text. Returns a new array.
function M.check_warm_ids(ids, at)
    at = at or ""
    if type(ids) ~= "table" then
        error(at .. "warm must return an array of ids (strings or integers) " .. got(ids), 0)
    end
    local n = #ids
    if n > M.MAX_WARM_IDS then
        error(at .. fmt("warm returned too many ids (%d, at most %d)", n, M.MAX_WARM_IDS), 0)
    end
    for k in pairs(ids) do
        if mtype(k) ~= "integer" or k < 1 or k > n then
            error(at .. "warm must return an array of ids (found key " .. tostring(k) .. ")", 0)
        end
    end
    local out = {}
    for i = 1, n do
        local id = ids[i]
        if mtype(id) == "integer" then
            id = tostring(id)
        elseif type(id) ~= "string" then
            error(at .. fmt("warm returned ids[%d] %s: ids are strings or integers", i, got(id)), 0)
        end
        out[i] = id
    end
    return out
end

-- o: {policy, conf, ns, prims, encode, decode, can_park, where}
-- where(fn) -> "file:line: " of the policy's code that is running, else
-- of fn's definition, else "" (see the top of this file).
function M.new(o)
    local policy, conf, ns, prims, encode, decode = o.policy, o.conf, o.ns, o.prims, o.encode,
        o.decode
    local can_park = o.can_park or function() return true end
    local where = o.where or M.debug_where
    local fetch_fn = policy.fetch
    local ttl_fn = type(policy.ttl) == "function" and policy.ttl or nil
    local rt = {}

    -- raise_in(fn): a function raising its message at the policy's line,
    -- fn being the policy function that runs (fetch, write, ...).
    local function raise_in(fn)
        return function(msg) error(where(fn) .. msg, 0) end
    end
    local raise_any = raise_in(nil)

    local phttp, psleep = prims.http, prims.sleep
    local log = make_log(prims.log, raise_any) -- no per-fetch state: shared by every ctx

    -- ctx.http of the fetch whose handle is h; fn: the policy function it
    -- runs (for where errors point).
    local function make_http(h, fn)
        local raise = raise_in(fn)
        local function request(req)
            local method, url, body, timeout, hdrs, n = check_request(req, raise)
            if not can_park() then raise(NO_PARK) end
            local res, err = phttp(h, method, url, body, timeout, unpack(hdrs, 1, n))
            if res == nil then raise(err) end
            return res
        end
        local http = {}
        http.request = function(req)
            local res = request(req)
            return res
        end
        http.get = function(url, opts)
            if type(url) ~= "string" then
                raise("bad argument #1 to 'ctx.http.get' (url string expected, got " .. type(url)
                    .. ")")
            end
            local req = { method = "GET", url = url }
            if opts ~= nil then
                if type(opts) ~= "table" then
                    raise("bad argument #2 to 'ctx.http.get' (table expected, got " .. type(opts)
                        .. ")")
                end
                for k, v in pairs(opts) do
                    if not GET_OPTIONS[k] then
                        raise("ctx.http.get: unknown option '" .. tostring(k)
                            .. "' (options are headers and timeout)")
                    end
                    req[k] = v
                end
            end
            local res = request(req)
            return res
        end
        return http
    end

    local function make_sleep(h, fn)
        local raise = raise_in(fn)
        return function(seconds)
            if not nonneg(seconds) then
                raise("ctx.sleep expects a number of seconds >= 0 " .. got(seconds))
            end
            if not can_park() then raise(NO_PARK) end
            psleep(h, seconds)
        end
    end

    -- ns, id, now and log are plain fields; http, sleep and key are made
    -- on first use (by the metatable, protected) and then stored in ctx:
    -- most fetches use one or two of them, and each closure a fetch
    -- creates is work for the allocator and the collector on every miss.
    -- So the metatable is one per policy function, not one per ctx: what
    -- it needs of a ctx (its fetch's handle, and the id it was made for,
    -- as ctx.id is the policy's to change) is kept by ctx in weak-keyed
    -- tables, whose entries go with their ctx. That is a metatable, a
    -- closure and three upvalues fewer on every miss.
    local ctx_h = setmetatable({}, { __mode = "k" })
    local ctx_id = setmetatable({}, { __mode = "k" })
    local NO_FN = {}
    local mt_of = {} -- fn (or NO_FN) -> metatable
    local function ctx_mt(fn)
        local mt = mt_of[fn or NO_FN]
        if mt then return mt end
        mt = {
            __metatable = false,
            __index = function(t, k)
                local v
                if k == "http" then
                    v = make_http(ctx_h[t], fn)
                elseif k == "sleep" then
                    v = make_sleep(ctx_h[t], fn)
                elseif k == "key" and ctx_id[t] ~= nil then
                    v = ns .. ":" .. ctx_id[t]
                else
                    return nil
                end
                rawset(t, k, v)
                return v
            end,
        }
        mt_of[fn or NO_FN] = mt
        return mt
    end
    function rt.make_ctx(h, id, fn)
        local ctx = { ns = ns, id = id, now = prims.now, log = log }
        if h ~= nil then ctx_h[ctx] = h end
        if id ~= nil then ctx_id[ctx] = id end
        return setmetatable(ctx, ctx_mt(fn))
    end

    -- Returns value, ttl, tag... ; value nil means not found (ttl is then
    -- the negative TTL). Raises with the reason when the result is invalid.
    -- fetch has returned: its errors point at its definition (only
    -- computed for an error: this runs on every miss)
    local function at() return where(fetch_fn) end
    local function finish(id, v, opts)
        local ttl, tags
        if opts ~= nil then
            if type(opts) ~= "table" then
                error(at() .. "fetch's second result must be an options table {ttl=, tags=} "
                    .. got(opts), 0)
            end
            for k in pairs(opts) do
                if k ~= "ttl" and k ~= "tags" then
                    error(at() .. "fetch returned an unknown option '" .. tostring(k)
                        .. "' (options are ttl and tags)", 0)
                end
            end
            ttl = opts.ttl
            if ttl ~= nil and not nonneg(ttl) then
                error(at() .. "fetch option ttl must be a number >= 0 " .. got(ttl), 0)
            end
            tags = opts.tags
            if tags ~= nil then
                if type(tags) ~= "table" then
                    error(at() .. "fetch option tags must be an array of strings " .. got(tags), 0)
                end
                if #tags > M.MAX_TAGS then
                    error(at() .. fmt("fetch option tags: too many tags (%d, at most %d)", #tags,
                        M.MAX_TAGS), 0)
                end
                for i = 1, #tags do
                    if type(tags[i]) ~= "string" then
                        error(at() .. fmt("fetch option tags[%d] must be a string %s", i, got(tags[i])), 0)
                    end
                end
            end
        end
        if v == nil then return nil, ttl or conf.negative_ttl end
        local tv, value = type(v), v
        if tv == "table" then
            local ok, s = pcall(encode, v)
            if not ok then
                error(at() .. "fetch returned a table that cannot be encoded as JSON: " .. tostring(s), 0)
            end
            v = s
        elseif tv ~= "string" then
            error(at() .. "fetch must return a string, a table or nil (got " .. tv .. ")", 0)
        end
        if ttl == nil then
            if ttl_fn then
                ttl = ttl_fn(id, value)
                if not nonneg(ttl) then
                    error(where(ttl_fn) .. "ttl(id, value) must return a number >= 0 " .. got(ttl), 0)
                end
            else
                ttl = conf.ttl
            end
        end
        if tags then return v, ttl, unpack(tags, 1, #tags) end
        return v, ttl
    end

    function rt.fetch(h, id)
        local ctx = rt.make_ctx(h, id, fetch_fn)
        return finish(id, fetch_fn(id, ctx))
    end

    -- TTL of a value stored by SET: ttl(id, value) gets the bytes as a
    -- string. (After a fetch it gets what fetch returned, a table or a
    -- string, so a policy that returns tables should accept both.)
    function rt.ttl_for(id, value)
        if not ttl_fn then return conf.ttl end
        local ttl = ttl_fn(id, value)
        if not nonneg(ttl) then
            error(where(ttl_fn) .. "ttl(id, value) must return a number >= 0 " .. got(ttl), 0)
        end
        return ttl
    end

    -- EVENT: data is the payload decoded as JSON when it parses (integral
    -- numbers as integers), else the raw string; nil without a payload.
    function rt.on_event(name, payload)
        local fn = policy.on_event
        if fn == nil then error("the policy has no on_event", 0) end
        local data = payload
        if payload ~= nil and decode then
            local ok, v = pcall(decode, payload)
            if ok then data = v end
        end
        return M.check_event_result(fn(name, data, sync_ctx("on_event", ns, prims,
            raise_in(fn))), where(fn))
    end

    function rt.warm()
        local fn = policy.warm
        if fn == nil then error("the policy has no warm", 0) end
        return M.check_warm_ids(fn(sync_ctx("warm", ns, prims, raise_in(fn))), where(fn))
    end

    -- Write-through (SET with a write function): the origin first, with a
    -- full ctx; returns the bytes to cache: what write returned (a table
    -- as JSON), or the value given when it returned nothing.
    function rt.write(h, id, value)
        local fn = policy.write
        if fn == nil then error("the policy has no write", 0) end
        local r = fn(id, value, rt.make_ctx(h, id, fn))
        if r == nil then return value end
        local tr = type(r)
        if tr == "table" then
            local ok, s = pcall(encode, r)
            if not ok then
                error(where(fn) .. "write returned a table that cannot be encoded as JSON: "
                    .. tostring(s), 0)
            end
            return s
        elseif tr ~= "string" then
            error(where(fn) .. "write must return a string, a table or nil (got " .. tr .. ")", 0)
        end
        return r
    end

    -- DEL with a delete function: the origin first.
    function rt.delete(h, id)
        local fn = policy.delete
        if fn == nil then error("the policy has no delete", 0) end
        fn(id, rt.make_ctx(h, id, fn))
        return true
    end

    -- Write-behind: one batch of queued writes, items = { {id=, value=,
    -- op="set"|"del", seq=}, ... } (value nil for del; seq the queue's
    -- entry id, increasing), with a full ctx (ctx.id is nil). Raising, or
    -- returning false, fails the batch: it is retried (docs/POLICIES.md).
    function rt.write_batch(h, items)
        local fn = policy.write_batch
        if fn == nil then error("the policy has no write_batch", 0) end
        local r, msg = fn(items, rt.make_ctx(h, nil, fn))
        if r == false then error(msg ~= nil and tostring(msg) or "write_batch returned false", 0) end
        return true
    end

    return rt
end

-- The engine's entry point for one policy version. host:
--   libs = {json=, sandbox=, validate=}  (the host state has no require)
--   cjson (the raw C module), find_module, log, io_sentinel, prims,
--   ns, path (for messages and chunkname), source (the file's text)
function M.load(host)
    local libs = host.libs
    local json = libs.json.wrap(host.cjson)
    local sb = libs.sandbox.new {
        find_module = host.find_module,
        cjson = json,
        cjson_safe = libs.json.safe(json),
        log = host.log,
        io_sentinel = host.io_sentinel,
        tripped = host.tripped,
        slice_taken = host.slice_taken,
    }
    local chunk, err = sb.load(host.source, "@" .. host.path)
    if not chunk then error(err, 0) end
    local policy = chunk(host.ns)
    sb.seal()
    local conf, verr = libs.validate.check(policy, host.source, host.path)
    if not conf then error(verr, 0) end
    local rt = M.new {
        policy = policy, conf = conf, ns = host.ns, prims = host.prims, encode = json.encode,
        decode = json.decode, can_park = sb.can_park, where = host.where,
    }
    return conf, rt.fetch, rt.ttl_for, rt.on_event, rt.warm, rt.write, rt.delete, rt.write_batch
end

return M
