-- luacached.validate: checks the table a policy file returns (SPEC §4) and
-- turns it into the numbers the C core reads (policy_conf_t in policy.h).
--
-- Every message names the file and a line, as compilers do:
--   policies/user.lua:3: ttl must be a number >= 0 or a function (got string)
-- A field's line is found by scanning the source for `name =` at the start
-- of a line; when that fails (the field came from a variable, a metatable
-- or a computed key) the line of the file's final `return` is used. Unknown
-- fields are errors, so a typo such as `tll = 60` cannot silently fall back
-- to the default.
local type, pairs, ipairs, tostring, tointeger = type, pairs, ipairs, tostring, math.tointeger
local huge, fmt, sort, concat = math.huge, string.format, table.sort, table.concat

local M = {}

-- Defaults of every optional field; policy.h documents the same values.
M.DEFAULTS = {
    ttl = 300, ttl_jitter = 0, negative_ttl = 0, stale_ttl = 0, stale_if_error = 0,
    error_ttl = 0, early_refresh = 0, fetch_timeout = 5, lock_timeout = 10, l1_ttl = 1,
    warm_every = 0, version = 1,
}

local function finite(v)
    return type(v) == "number" and v == v and v ~= huge and v ~= -huge
end

-- "(got string)" for a wrong type, "(got -1)" for a number out of range.
local function got(v)
    if v ~= v then return "(got nan)" end
    if type(v) == "number" then return "(got " .. tostring(v) .. ")" end
    return "(got " .. type(v) .. ")"
end

local function nonneg(what)
    return function(v)
        if not (finite(v) and v >= 0) then return what .. " must be a number >= 0 " .. got(v) end
    end
end

local function positive(what)
    return function(v)
        if not (finite(v) and v > 0) then return what .. " must be a number > 0 " .. got(v) end
    end
end

local function func(what)
    return function(v)
        if type(v) ~= "function" then return what .. " must be a function (got " .. type(v) .. ")" end
    end
end

M.RULES = {
    fetch = func("fetch"),
    ttl = function(v)
        if type(v) == "function" then return nil end
        if not (finite(v) and v >= 0) then
            return "ttl must be a number >= 0 or a function " .. got(v)
        end
    end,
    ttl_jitter = function(v)
        if not (finite(v) and v >= 0 and v <= 1) then
            return "ttl_jitter must be a number between 0 and 1 " .. got(v)
        end
    end,
    negative_ttl = nonneg("negative_ttl"),
    stale_ttl = nonneg("stale_ttl"),
    stale_if_error = nonneg("stale_if_error"),
    error_ttl = nonneg("error_ttl"),
    early_refresh = nonneg("early_refresh"),
    fetch_timeout = positive("fetch_timeout"),
    lock_timeout = positive("lock_timeout"),
    l1_ttl = nonneg("l1_ttl"),
    warm_every = nonneg("warm_every"),
    version = function(v)
        if not (finite(v) and tointeger(v)) then return "version must be an integer " .. got(v) end
    end,
    on_event = func("on_event"),
    warm = func("warm"),
    write = func("write"),
    delete = func("delete"),
    write_batch = func("write_batch"),
    -- write_behind's sub-fields are checked by check_write_behind below.
    write_behind = function(v)
        if type(v) ~= "table" then
            return "write_behind must be a table {delay=, batch=, coalesce=, max_retries=, "
                .. "claim_after=} " .. got(v)
        end
    end,
}

-- write_behind's sub-fields: defaults and rules (docs/POLICIES.md).
M.WRITE_BEHIND_DEFAULTS = { delay = 5, batch = 100, coalesce = true, max_retries = 10,
    claim_after = 30 }
M.MAX_WRITE_BATCH = 10000

local function int_between(what, lo, hi)
    return function(v)
        if not (finite(v) and tointeger(v) and v >= lo and v <= hi) then
            return fmt("%s must be an integer between %d and %d %s", what, lo, hi, got(v))
        end
    end
end

-- seconds in (lo, hi] or [lo, hi]: a write-behind timer (ticks run every 50 ms, and
-- the C side converts to whole milliseconds)
local function seconds_between(what, lo, hi, lo_open)
    return function(v)
        local ok = finite(v) and v <= hi and (lo_open and v > lo or not lo_open and v >= lo)
        if not ok then
            return fmt("%s must be a number of seconds %s %g and at most %g %s", what,
                lo_open and "above" or "from", lo, hi, got(v))
        end
    end
end

local WB_RULES = {
    delay = seconds_between("write_behind.delay", 0, 86400, true),
    batch = int_between("write_behind.batch", 1, M.MAX_WRITE_BATCH),
    coalesce = function(v)
        if type(v) ~= "boolean" then return "write_behind.coalesce must be a boolean " .. got(v) end
    end,
    max_retries = int_between("write_behind.max_retries", 0, 1000),
    -- kept claimed every claim_after / 3 by a 50 ms tick: not much shorter
    claim_after = seconds_between("write_behind.claim_after", 0.2, 86400),
}

local NAMES = {}
for k in pairs(M.RULES) do NAMES[#NAMES + 1] = k end
sort(NAMES)

local function lines_of(source)
    local t = {}
    for line in (source .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = line end
    return t
end

-- Line of the file's final top-level `return`: the last unindented one,
-- else the last one at all, else the last line.
function M.return_line(lines)
    local any, top
    for i, line in ipairs(lines) do
        if line:find("^return%f[^%w_]") then top = i end
        if line:find("^%s*return%f[^%w_]") then any = i end
    end
    return top or any or #lines
end

function M.field_line(lines, name)
    if type(name) ~= "string" or not name:find("^[%a_][%w_]*$") then return nil end
    for i, line in ipairs(lines) do
        local rest = line:match("^%s*" .. name .. "%s*=(.?)")
        if rest and rest ~= "=" then return i end
    end
    return nil
end

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = { [0] = i }
        for j = 1, #b do
            local cost = a:byte(i) == b:byte(j) and 0 or 1
            local d = prev[j] + 1
            if cur[j - 1] + 1 < d then d = cur[j - 1] + 1 end
            if prev[j - 1] + cost < d then d = prev[j - 1] + cost end
            cur[j] = d
        end
        prev = cur
    end
    return prev[#b]
end

function M.suggest(name)
    if type(name) ~= "string" then return nil end
    local best, bestd = nil, 3
    for _, k in ipairs(NAMES) do
        local d = distance(name, k)
        if d < bestd then best, bestd = k, d end
    end
    return best
end

-- Combinations the docs advise against: loaded anyway, but --check and the
-- log say so. Each is (fields it points at, test, message).
M.WARNINGS = {
    {
        fields = { "fetch_timeout", "lock_timeout" },
        test = function(c) return c.fetch_timeout >= c.lock_timeout end,
        msg = function(c)
            return fmt("fetch_timeout (%s s) is not below lock_timeout (%s s): a fetch that runs "
                .. "past lock_timeout loses the fill lock, other instances fetch the same key "
                .. "too, and its result is not stored (docs/STAMPEDE.md)",
                tostring(c.fetch_timeout), tostring(c.lock_timeout))
        end,
    },
    {
        fields = { "warm_every" },
        test = function(c, p) return c.warm_every > 0 and p.warm == nil end,
        msg = function(c)
            return fmt("warm_every = %s does nothing without a warm function",
                tostring(c.warm_every))
        end,
    },
}

-- check(policy, source, path) -> conf  or  nil, "path:line: message"
-- On failure the message holds every problem found, one "path:line:
-- message" a line in file order (a typo does not hide the next one).
-- conf has every field of M.DEFAULTS (ttl is 0 when it is a function) plus
-- ttl_is_fn, has_on_event, has_warm, has_write, has_delete, and warnings:
-- an array of "path:line: warning: message" for combinations the docs
-- advise against (M.WARNINGS), which do not stop the load.
function M.check(p, source, path)
    local lines = lines_of(source or "")
    local function fail(line, msg)
        return nil, fmt("%s:%d: %s", path, line, msg)
    end
    if type(p) ~= "table" then
        return fail(M.return_line(lines), "policy must return a table " .. got(p))
    end

    local errs = {}
    local function add(name, msg)
        errs[#errs + 1] = { line = M.field_line(lines, name) or M.return_line(lines), msg = msg }
    end
    for k in pairs(p) do
        if M.RULES[k] == nil then
            local shown = type(k) == "string" and ("'" .. k .. "'") or ("[" .. tostring(k) .. "]")
            local msg = "unknown field " .. shown
            local s = M.suggest(k)
            if s then msg = msg .. " (did you mean '" .. s .. "'?)" end
            add(k, msg)
        end
    end
    for _, k in ipairs(NAMES) do
        local v = p[k]
        if v ~= nil then
            local msg = M.RULES[k](v)
            if msg then add(k, msg) end
        elseif k == "fetch" then
            add(k, "fetch is required: a function(id, ctx) returning the value")
        end
    end
    -- write_behind's sub-fields, each at its own line (searched from the
    -- field's), and the fields that go with it or exclude it.
    local wb = p.write_behind
    if type(wb) == "table" then
        local from = M.field_line(lines, "write_behind") or 1
        local function sub_line(name)
            for i = from, #lines do
                local rest = lines[i]:match("[{,%s]" .. name .. "%s*=(.?)")
                    or lines[i]:match("^" .. name .. "%s*=(.?)")
                if rest and rest ~= "=" then return i end
            end
            return M.field_line(lines, "write_behind") or M.return_line(lines)
        end
        for k, v in pairs(wb) do
            local rule = WB_RULES[k]
            if rule == nil then
                errs[#errs + 1] = { line = sub_line(tostring(k)),
                    msg = "write_behind: unknown field '" .. tostring(k)
                        .. "' (fields are delay, batch, coalesce, max_retries and claim_after)" }
            else
                local msg = rule(v)
                if msg then errs[#errs + 1] = { line = sub_line(k), msg = msg } end
            end
        end
        if p.write_batch == nil then
            add("write_behind", "write_behind needs write_batch = function(items, ctx)")
        end
        if p.write ~= nil then
            add("write", "write and write_behind exclude each other (write-through or write-behind)")
        end
        if p.delete ~= nil then
            add("delete", "delete and write_behind exclude each other (a write-behind DEL is queued)")
        end
    elseif p.write_batch ~= nil and wb == nil then
        add("write_batch", "write_batch needs write_behind = {delay=, batch=, ...}")
    end
    if #errs > 0 then
        -- Every problem, in file order, like a compiler.
        sort(errs, function(a, b)
            if a.line ~= b.line then return a.line < b.line end
            return a.msg < b.msg
        end)
        local out = {}
        for i, e in ipairs(errs) do out[i] = fmt("%s:%d: %s", path, e.line, e.msg) end
        return nil, concat(out, "\n")
    end

    local conf = {}
    for k, d in pairs(M.DEFAULTS) do
        local v = p[k]
        if v == nil then v = d end
        conf[k] = v
    end
    conf.ttl_is_fn = type(p.ttl) == "function"
    if conf.ttl_is_fn then conf.ttl = M.DEFAULTS.ttl end
    conf.version = tointeger(conf.version)
    conf.has_on_event = p.on_event ~= nil
    conf.has_warm = p.warm ~= nil
    conf.has_write = p.write ~= nil
    conf.has_delete = p.delete ~= nil
    conf.has_write_behind = wb ~= nil
    for k, d in pairs(M.WRITE_BEHIND_DEFAULTS) do
        local v = wb and wb[k]
        if v == nil then v = d end
        conf["wb_" .. k] = v
    end
    conf.warnings = {}
    for _, w in ipairs(M.WARNINGS) do
        if w.test(conf, p) then
            local line
            for _, f in ipairs(w.fields) do line = line or M.field_line(lines, f) end
            line = line or M.return_line(lines)
            conf.warnings[#conf.warnings + 1] = fmt("%s:%d: warning: %s", path, line, w.msg(conf))
        end
    end
    return conf
end

return M
