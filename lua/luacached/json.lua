-- luacached.json: the cjson module as policies see it.
--
-- Debian's lua-cjson (2.1.0) decodes every JSON number as a float under
-- Lua 5.4, so `"widget:" .. data.id` would give "widget:42.0". wrap() returns
-- a module whose decode turns every float with an integral value back into
-- a Lua integer (recursively through arrays and objects); floats that are
-- not integral, or too large for a 64-bit integer, stay floats. The same
-- decoder serves event payloads (SPEC §4).
--
-- The raw cjson module is injected by the caller (the C engine registers it
-- privately; unit tests pass require "cjson"), so this file loads under a
-- plain lua5.4 too.
local type, next, pcall, error = type, next, pcall, error
local tointeger, mtype = math.tointeger, math.type

local M = {}

-- cjson.encode builds its output with plain malloc, outside the policy
-- state's capped allocator, so a policy could make it allocate gigabytes.
-- encode() first walks the value (in Lua, so under the instruction budget)
-- and refuses one whose JSON would exceed this many bytes.
M.MAX_ENCODE = 64 * 1024 * 1024

-- Upper bound of the JSON size of v; stops counting past limit.
local function size_of(v, depth, limit)
    local t = type(v)
    -- Strings count as their length: escapes can add up to 5 bytes per
    -- control character, so for strings made of them the true size can be
    -- a few times the estimate: still bounded, unlike before.
    if t == "string" then return 2 + #v end
    if t ~= "table" then return 24 end
    if depth > 1000 then error("cannot encode: nesting deeper than 1000", 0) end
    local n = 2
    for k, x in next, v do
        n = n + 2 + size_of(k, depth + 1, limit) + size_of(x, depth + 1, limit)
        if n > limit then return n end
    end
    return n
end
M.size_of = size_of

-- Convert integral floats in place. cjson limits nesting (1000 levels by
-- default), so the recursion is bounded.
local function fix(v)
    local t = type(v)
    if t == "number" then
        if mtype(v) == "float" then return tointeger(v) or v end
        return v
    elseif t == "table" then
        for k, x in next, v do
            local tx = type(x)
            if tx == "number" or tx == "table" then v[k] = fix(x) end
        end
    end
    return v
end
M.integralize = fix

-- Returns a new module table: every field of raw, with decode fixed, a
-- fixed new() (instances made by cjson.new() get the same fix), and a
-- `safe` variant whose decode/encode return nil, err instead of raising.
function M.wrap(raw)
    local decode_raw, encode_raw = raw.decode, raw.encode
    -- Free cjson's output buffer after each encode instead of keeping the
    -- largest one ever made for the life of the state.
    if type(raw.encode_keep_buffer) == "function" then raw.encode_keep_buffer(false) end
    local mod = {}
    for k, v in next, raw do mod[k] = v end
    mod.decode = function(s)
        return fix(decode_raw(s))
    end
    mod.encode = function(v)
        if type(v) == "table" and size_of(v, 0, M.MAX_ENCODE) > M.MAX_ENCODE then
            error("cannot encode: JSON would exceed " .. M.MAX_ENCODE .. " bytes", 2)
        end
        return encode_raw(v)
    end
    if type(raw.new) == "function" then
        local new_raw = raw.new
        mod.new = function()
            return M.wrap(new_raw())
        end
    end
    return mod
end

-- cjson.safe: decode/encode return nil, message instead of raising.
function M.safe(mod)
    local safe = {}
    for k, v in next, mod do safe[k] = v end
    local decode, encode = mod.decode, mod.encode
    safe.decode = function(s)
        local ok, r = pcall(decode, s)
        if ok then return r end
        return nil, r
    end
    safe.encode = function(v)
        local ok, r = pcall(encode, v)
        if ok then return r end
        return nil, r
    end
    return safe
end

return M
