-- luacached.sandbox: the environment a policy runs in (SPEC §4).
--
-- Built by ALLOW-LIST, as Redis's script_lua.c does: a fresh table gets
-- exactly the functions below, so nothing the host state happens to have
-- (io, package, debug, os.execute, loadfile, dofile, string.dump,
-- collectgarbage) is reachable. Library tables are shallow copies, so a
-- policy that rewrites string.format does not change what the engine's own
-- Lua code calls.
--
-- Global guard: reading a global that does not exist raises
-- "undefined global 'x'" (catches typos such as jsno.decode at the line
-- where they happen instead of as "attempt to index a nil value" later).
-- To probe for an optional global, use rawget(_ENV, "x"). New globals may
-- be created while the policy file's main chunk runs; after seal() (called
-- once the policy is loaded) assigning an undeclared global raises, because
-- a forgotten `local` inside fetch would share state between requests.
--
-- require resolves only "cjson" (with the integer fix, see json.lua),
-- "cjson.safe", and the modules shipped in luacached's lua/ folder, held in
-- memory by the engine; they are compiled text-only in this environment.
-- load() takes text chunks only (mode "t"); binary chunks are refused
-- everywhere.
--
-- Coroutines: ctx I/O primitives yield the whole fetch coroutine with the
-- host's io_sentinel value. coroutine.resume/wrap here pass such a yield
-- on to the enclosing coroutine and hand the result back, so a policy may
-- call ctx.http.get from a coroutine of its own (OpenResty does the same).
-- The engine's budget hook may also pause such a coroutine at the end of a
-- slice; resume passes that on too, so the policy never sees it. Only
-- coroutines the policy created may be resumed or closed.
--
-- Budget: xpcall's message handler does not run once the budget is spent,
-- and setmetatable refuses __gc (both would run with Lua's hooks off).
--
-- Everything host-specific is injected through new(host), so this module
-- loads under a plain lua5.4 for the unit tests.
local G = _G
local type, error, select, tostring, pairs = type, error, select, tostring, pairs
local rawset, setmetatable, getmetatable, load = rawset, setmetatable, getmetatable, load
local concat = table.concat

local M = {}

M.BASE = {
    "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "select", "tonumber",
    "tostring", "type", "rawequal", "rawget", "rawset", "rawlen", "setmetatable",
    "getmetatable",
}
M.LIBS = { "string", "table", "math", "utf8" }
M.OS = { "time", "clock", "date", "difftime" }
-- Never copied even if the host library has them.
local DENY = { string = { dump = true } }

local function copy_lib(name, lib)
    local t = {}
    local deny = DENY[name]
    for k, v in pairs(lib) do
        if not (deny and deny[k]) then t[k] = v end
    end
    return t
end

-- coroutine.resume/wrap that forward ctx I/O yields and budget slices (see
-- the file comment), and refuse threads the policy did not create: the
-- fetch's own coroutine (coroutine.running()) belongs to the engine, and
-- resuming or closing it from another fetch would break its parking.
local function make_coroutine(co, io, slice_taken)
    local create, real_resume, real_yield, status, close = co.create, co.resume, co.yield,
        co.status, co.close
    local mine = setmetatable({}, { __mode = "k" })
    local function own(c, fname)
        if type(c) ~= "thread" then
            error("bad argument #1 to '" .. fname .. "' (coroutine expected)", 3)
        end
        if not mine[c] then
            error("coroutine." .. fname .. ": not a coroutine of this policy's own "
                .. "(the one running fetch belongs to luacached)", 3)
        end
    end
    local function pass(c, ok, ...)
        if ok and status(c) == "suspended" then
            local n = select("#", ...)
            if n == 1 and (...) == io then
                -- c is parked on ctx I/O: park the enclosing coroutine too
                -- and give c whatever the engine resumes us with.
                return pass(c, real_resume(c, real_yield(io)))
            end
            if n == 0 and slice_taken and slice_taken() then
                -- c's budget slice ended (it did not yield): slice_taken
                -- gave the loop its turn; go on with c.
                return pass(c, real_resume(c))
            end
        end
        return ok, ...
    end
    local function resume(c, ...)
        own(c, "resume")
        return pass(c, real_resume(c, ...))
    end
    local function unwrap(c, ok, ...)
        if ok then return ... end
        close(c)
        error((...), 0)
    end
    local lib = copy_lib("coroutine", co)
    lib.create = function(f)
        local c = create(f)
        mine[c] = true
        return c
    end
    lib.resume = resume
    lib.close = function(c)
        own(c, "close")
        return close(c)
    end
    lib.wrap = function(f)
        local c = lib.create(f)
        return function(...)
            return unwrap(c, pass(c, real_resume(c, ...)))
        end
    end
    return lib
end

-- host fields:
--   find_module(name) -> source, chunkname   or nil (the in-memory lua/ files)
--   cjson              the JSON module policies get (json.wrap(raw cjson))
--   cjson_safe         optional; the "cjson.safe" module
--   log(level, msg)    where print() goes (level "info")
--   io_sentinel        the value ctx I/O primitives yield
--   tripped()          optional: whether the run's budget is spent
--   slice_taken()      optional: whether a coroutine came back from resume
--                      because its budget slice ended (the engine's hook);
--                      may first yield the io_sentinel to pause the run
-- Returns sb with sb.env, sb.load(source, chunkname) and sb.seal().
function M.new(host)
    local env = {}
    for _, k in pairs(M.BASE) do env[k] = G[k] end
    for _, k in pairs(M.LIBS) do env[k] = copy_lib(k, G[k]) end
    local os = {}
    for _, k in pairs(M.OS) do os[k] = G.os[k] end
    env.os = os
    env.coroutine = make_coroutine(G.coroutine, host.io_sentinel, host.slice_taken)

    -- xpcall: once the budget is spent, the engine's hook raises from
    -- inside itself, where Lua runs the message handler with hooks off; a
    -- handler that loops would then never be stopped. So the handler runs
    -- only while the budget holds.
    local tripped, xpcall = host.tripped, G.xpcall
    if tripped then
        env.xpcall = function(f, msgh, ...)
            if type(msgh) ~= "function" then
                error("bad argument #2 to 'xpcall' (function expected, got " .. type(msgh) .. ")", 2)
            end
            return xpcall(f, function(e)
                if tripped() then return e end
                return msgh(e)
            end, ...)
        end
    end

    -- No finalizers: Lua runs __gc with hooks off (outside any budget), at
    -- any allocation of any later request. Lua only honours a __gc field
    -- present when setmetatable is called, so checking here is enough.
    env.setmetatable = function(t, mt)
        if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
            error("setmetatable: __gc finalizers are not allowed in policies (they would run "
                .. "outside the instruction budget)", 2)
        end
        return setmetatable(t, mt)
    end
    env._G = env
    env._VERSION = G._VERSION

    -- Strings share one metatable whose __index is the host's string table;
    -- hand out a stand-in so that table stays out of reach.
    local string_mt = { __index = env.string }
    env.getmetatable = function(v)
        if type(v) == "string" then return string_mt end
        return getmetatable(v)
    end

    env.load = function(chunk, chunkname, mode, ...)
        if mode ~= nil and mode ~= "t" then
            error("load: only text chunks are allowed (mode \"t\")", 2)
        end
        if select("#", ...) > 0 then return load(chunk, chunkname, "t", (...)) end
        return load(chunk, chunkname, "t", env)
    end

    local log = host.log
    env.print = function(...)
        local n = select("#", ...)
        local parts = { ... }
        for i = 1, n do parts[i] = tostring(parts[i]) end
        log("info", concat(parts, "\t", 1, n))
    end

    local loading = {}
    local loaded = { cjson = host.cjson, ["cjson.safe"] = host.cjson_safe }
    env.require = function(name)
        if type(name) ~= "string" then
            error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
        end
        local m = loaded[name]
        if m ~= nil then return m end
        if loading[name] then error("module '" .. name .. "' requires itself", 2) end
        local src, chunkname
        if host.find_module then src, chunkname = host.find_module(name) end
        if not src then
            error("module '" .. name .. "' not found (policies may require cjson and "
                .. "luacached modules only)", 2)
        end
        local fn, err = load(src, chunkname or ("=" .. name), "t", env)
        if not fn then error(err, 0) end
        loading[name] = true
        local ok, r = pcall(fn, name)
        loading[name] = nil
        if not ok then error(r, 0) end
        if r == nil then r = true end
        loaded[name] = r
        return r
    end

    local sealed = false
    setmetatable(env, {
        __index = function(_, k)
            error("undefined global '" .. tostring(k) .. "'", 2)
        end,
        __newindex = function(t, k, v)
            if sealed then
                error("assignment to undeclared global '" .. tostring(k)
                    .. "' (declare it local)", 2)
            end
            rawset(t, k, v)
        end,
        __metatable = false,
    })

    local sb = { env = env }
    function sb.load(source, chunkname)
        return load(source, chunkname, "t", env)
    end
    function sb.seal()
        sealed = true
    end
    return sb
end

return M
