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
-- Budget: xpcall's message handler runs as ordinary code after the error
-- (not inside it, where Lua's hooks can be off) and not at all once the
-- budget is spent; setmetatable refuses __gc (finalizers run with hooks
-- off).
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
-- Returns the library and can_park(): whether a yield of the running
-- coroutine reaches the engine (it is yieldable, and so was every resume
-- on the way from the run's own coroutine), which ctx I/O needs.
local function make_coroutine(co, io, slice_taken)
    local create, real_resume, real_yield, status, close, isyieldable, running = co.create,
        co.resume, co.yield, co.status, co.close, co.isyieldable, co.running
    local mine = setmetatable({}, { __mode = "k" })
    -- c -> false when c was last resumed from where a yield cannot go up
    local reaches = setmetatable({}, { __mode = "k" })
    -- c -> the error c died in, for close(c) (see below)
    local died = setmetatable({}, { __mode = "k" })
    local function can_park()
        return isyieldable() and reaches[running()] ~= false
    end
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
        if not ok then
            died[c] = (...)
        elseif status(c) == "suspended" then
            local n = select("#", ...)
            if n == 1 and (...) == io then
                -- c is parked on ctx I/O: park the enclosing coroutine too
                -- and give c whatever the engine resumes us with.
                return pass(c, real_resume(c, real_yield(io)))
            end
            if n == 0 and slice_taken and slice_taken(c, can_park()) then
                -- c's budget slice ended (it did not yield): slice_taken
                -- gave the loop its turn if it could; go on with c.
                return pass(c, real_resume(c))
            end
        end
        return ok, ...
    end
    local function start(c, ...)
        reaches[c] = can_park()
        return pass(c, real_resume(c, ...))
    end
    local lib = copy_lib("coroutine", co)
    lib.create = function(f)
        local c = create(f)
        mine[c] = true
        return c
    end
    lib.resume = function(c, ...)
        own(c, "resume")
        return start(c, ...)
    end
    -- A coroutine that died in an error is not closed again: if the budget
    -- killed it, Lua left its hooks off, and its pending __close handlers
    -- would run unbudgeted. So close() of a dead coroutine only reports
    -- how it ended, and wrap() does not close on error (unlike stock Lua).
    lib.close = function(c)
        own(c, "close")
        if status(c) == "dead" then
            local e = died[c]
            died[c] = nil
            if e ~= nil then return false, e end
            return true
        end
        return close(c)
    end
    local function unwrap(ok, ...)
        if ok then return ... end
        error((...), 0)
    end
    lib.wrap = function(f)
        local c = lib.create(f)
        return function(...)
            return unwrap(start(c, ...))
        end
    end
    return lib, can_park
end

-- host fields:
--   find_module(name) -> source, chunkname   or nil (the in-memory lua/ files)
--   cjson              the JSON module policies get (json.wrap(raw cjson))
--   cjson_safe         optional; the "cjson.safe" module
--   log(level, msg)    where print() goes (level "info")
--   io_sentinel        the value ctx I/O primitives yield
--   tripped()          optional: whether the run's budget is spent
--   slice_taken(c, can_park)  optional: whether coroutine c came back from
--                      resume because its budget slice ended (the engine's
--                      hook); if can_park, may first yield the io_sentinel
--                      to pause the run
-- Returns sb with sb.env, sb.load(source, chunkname), sb.seal() and
-- sb.can_park() (whether ctx I/O can park the running coroutine).
function M.new(host)
    local env = {}
    for _, k in pairs(M.BASE) do env[k] = G[k] end
    for _, k in pairs(M.LIBS) do env[k] = copy_lib(k, G[k]) end
    local os = {}
    for _, k in pairs(M.OS) do os[k] = G.os[k] end
    env.os = os
    local can_park
    env.coroutine, can_park = make_coroutine(G.coroutine, host.io_sentinel, host.slice_taken)

    -- xpcall over pcall: the handler runs after the error has unwound, as
    -- ordinary budgeted code. (Lua runs a real message handler inside the
    -- error, with hooks off when the engine's hook raised it, so a looping
    -- handler could never be stopped; and Lua 5.4.4 leaves a stale handler
    -- slot in a thread stopped inside xpcall.) Once the budget is spent the
    -- handler is skipped. There is no debug library, so nothing a handler
    -- could see differs, except that an error in the handler propagates as
    -- itself instead of "error in error handling".
    local tripped = host.tripped
    local function handled(msgh, ok, ...)
        if ok then return true, ... end
        if tripped and tripped() then return false, (...) end
        return false, (msgh((...)))
    end
    env.xpcall = function(f, msgh, ...)
        if type(msgh) ~= "function" then
            error("bad argument #2 to 'xpcall' (function expected, got " .. type(msgh) .. ")", 2)
        end
        return handled(msgh, pcall(f, ...))
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

    local sb = { env = env, can_park = can_park }
    function sb.load(source, chunkname)
        return load(source, chunkname, "t", env)
    end
    function sb.seal()
        sealed = true
    end
    return sb
end

return M
