-- sandbox_spec.lua: luacached.sandbox, the environment policies run in
-- (allow-list, require, global guard, text-only load, coroutine forwarding).
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/lua/unit/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path

local sandbox = require("luacached.sandbox")
local json = require("luacached.json")

local IO = setmetatable({}, { __name = "io sentinel" })

local function new_sb(mods, logs)
    local cjson = json.wrap(require("cjson"))
    return sandbox.new {
        find_module = function(name)
            local src = mods and mods[name]
            if src then return src, "=" .. name end
        end,
        cjson = cjson,
        cjson_safe = json.safe(cjson),
        log = function(level, msg)
            if logs then logs[#logs + 1] = { level, msg } end
        end,
        io_sentinel = IO,
    }
end

-- Compile and run code in a fresh sandbox; returns pcall's results.
local function try(code, sb)
    sb = sb or new_sb()
    local fn = assert(sb.load(code, "=policy"))
    return pcall(fn)
end

local function errmsg(code, sb)
    local ok, err = try(code, sb)
    assert.is_false(ok, "expected an error from: " .. code)
    return tostring(err)
end

describe("luacached.sandbox", function()
    describe("allow-list", function()
        it("has the allowed base functions and libraries", function()
            local sb = new_sb()
            for _, k in ipairs(sandbox.BASE) do
                assert.are.equal("function", type(rawget(sb.env, k)), k)
            end
            for _, k in ipairs({ "string", "table", "math", "utf8", "coroutine", "os" }) do
                assert.are.equal("table", type(rawget(sb.env, k)), k)
            end
            assert.are.equal("function", type(rawget(sb.env, "require")))
            assert.are.equal("function", type(rawget(sb.env, "load")))
            assert.are.equal("function", type(rawget(sb.env, "print")))
        end)

        it("has nothing else", function()
            local allowed = {
                require = true, load = true, print = true, _G = true, _VERSION = true,
                string = true, table = true, math = true, utf8 = true, coroutine = true, os = true,
            }
            for _, k in ipairs(sandbox.BASE) do allowed[k] = true end
            for k in pairs(new_sb().env) do
                assert.is_true(allowed[k] == true, "unexpected global " .. tostring(k))
            end
        end)

        it("refuses io, debug, package, loadfile, dofile, collectgarbage", function()
            for _, name in ipairs({ "io", "debug", "package", "loadfile", "dofile",
                "collectgarbage" }) do
                assert.matches("undefined global '" .. name .. "'",
                    errmsg("return " .. name), nil, true)
            end
            assert.matches("undefined global 'io'", errmsg("return io.open('/etc/passwd')"),
                nil, true)
        end)

        it("keeps only os.time, clock, date and difftime", function()
            local ok, keys = try([[
                local t = {}
                for k in pairs(os) do t[#t + 1] = k end
                table.sort(t)
                return table.concat(t, ",")
            ]])
            assert.is_true(ok)
            assert.are.equal("clock,date,difftime,time", keys)
            assert.matches("attempt to call a nil value %(field 'execute'%)",
                errmsg("os.execute('true')"))
            assert.matches("attempt to call a nil value %(field 'exit'%)", errmsg("os.exit(1)"))
        end)

        it("has no string.dump, not even through the string metatable", function()
            assert.matches("field 'dump'", errmsg("return string.dump(print)"))
            local ok, v = try("return getmetatable('').__index.dump")
            assert.is_true(ok)
            assert.is_nil(v)
            ok, v = try("return ('ab'):rep(2) .. ('%d'):format(7)")
            assert.is_true(ok)
            assert.are.equal("abab7", v)
        end)

        it("copies library tables, so a policy cannot change the host's", function()
            local sb = new_sb()
            assert.is_true((try("string.format = nil; math.floor = nil", sb)))
            assert.are.equal("function", type(string.format))
            assert.are.equal("function", type(math.floor))
        end)

        it("sends print to the log at info", function()
            local logs = {}
            assert.is_true((try("print('a', 1, nil, true)", new_sb(nil, logs))))
            assert.are.same({ { "info", "a\t1\tnil\ttrue" } }, logs)
        end)
    end)

    describe("load", function()
        it("runs text chunks in the sandbox", function()
            local ok, v = try("return load('return type(io)')()")
            assert.is_false(ok) -- io is undefined there too
            assert.matches("undefined global 'io'", v)
            ok, v = try("return load('return 1 + 1')()")
            assert.is_true(ok)
            assert.are.equal(2, v)
        end)

        it("refuses binary chunks", function()
            local sb = new_sb()
            rawset(sb.env, "bytecode", string.dump(function() return 1 end))
            local ok, f, err = try("return load(bytecode)", sb)
            assert.is_true(ok)
            assert.is_nil(f)
            assert.matches("binary", err)
            assert.matches("only text chunks", errmsg("return load('return 1', 'x', 'b')"))
            assert.matches("only text chunks", errmsg("return load('return 1', 'x', 'bt')"))
            -- a reader function cannot smuggle one in either
            ok, f, err = try([[
                local s = bytecode
                return load(function() local r = s; s = nil; return r end)
            ]], sb)
            assert.is_true(ok)
            assert.is_nil(f)
            assert.matches("binary", err)
        end)

        it("accepts an explicit environment", function()
            local ok, v = try("return load('return x', 'c', 't', { x = 5 })()")
            assert.is_true(ok)
            assert.are.equal(5, v)
        end)
    end)

    describe("require", function()
        it("hands out cjson with the integer fix", function()
            local ok, v = try([[
                local cjson = require 'cjson'
                return 'widget:' .. cjson.decode('{"id":42}').id
            ]])
            assert.is_true(ok)
            assert.are.equal("widget:42", v)
            ok, v = try("return (require 'cjson.safe').decode('{bad')")
            assert.is_true(ok)
            assert.is_nil(v)
        end)

        it("refuses everything else", function()
            for _, name in ipairs({ "io", "os", "debug", "socket", "lfs", "policies.other" }) do
                assert.matches("module '" .. name .. "' not found (policies may require cjson "
                    .. "and luacached modules only)", errmsg("require '" .. name .. "'"), nil, true)
            end
            assert.matches("string expected", errmsg("require(42)"))
        end)

        it("compiles shipped modules in the sandbox, once", function()
            local sb = new_sb({
                ["luacached.util"] = "local n = 0 return { bump = function() n = n + 1 return n end,"
                    .. " io = rawget(_ENV, 'io') }",
                ["luacached.bad"] = "return io.open('x')",
                ["luacached.loop"] = "return require 'luacached.loop'",
            })
            local ok, a, b, io = try([[
                local u = require 'luacached.util'
                u.bump()
                return require('luacached.util').bump(), u == require 'luacached.util', u.io
            ]], sb)
            assert.is_true(ok)
            assert.are.equal(2, a)
            assert.is_true(b)
            assert.is_nil(io)
            assert.matches("undefined global 'io'", errmsg("require 'luacached.bad'", sb))
            assert.matches("requires itself", errmsg("require 'luacached.loop'", sb))
        end)

        it("refuses a binary module", function()
            local sb = new_sb({ ["luacached.bin"] = string.dump(function() return 1 end) })
            assert.matches("binary", errmsg("require 'luacached.bin'", sb))
        end)
    end)

    describe("global guard", function()
        it("raises on reading an undefined global, with the line", function()
            assert.matches("policy:2: undefined global 'jsno'", errmsg("local x = 1\nreturn jsno.decode"))
        end)

        it("lets rawget probe", function()
            local ok, v = try("return rawget(_ENV, 'maybe') == nil")
            assert.is_true(ok)
            assert.is_true(v)
        end)

        it("allows new globals until sealed, then refuses them", function()
            local sb = new_sb()
            assert.is_true((try("helper = function() return 1 end; counter = 0", sb)))
            sb.seal()
            assert.is_true((try("counter = counter + helper()", sb)))
            assert.are.equal(1, rawget(sb.env, "counter"))
            assert.matches("assignment to undeclared global 'leak'", errmsg("leak = 1", sb))
        end)

        it("cannot be removed", function()
            assert.matches("protected metatable", errmsg("setmetatable(_ENV, nil)"))
            local ok, v = try("return getmetatable(_ENV)")
            assert.is_true(ok)
            assert.is_false(v)
            ok, v = try("return _G == _ENV")
            assert.is_true(ok)
            assert.is_true(v)
        end)
    end)

    describe("coroutines", function()
        -- run sandboxed code as the fetch coroutine would; `park` stands in
        -- for a ctx I/O primitive
        local function fetch_like(code)
            local sb = new_sb()
            rawset(sb.env, "park", function(x)
                return coroutine.yield(IO)
            end)
            local fn = assert(sb.load(code, "=policy"))
            return coroutine.create(fn)
        end

        it("forwards an I/O park from a policy's own coroutine", function()
            local co = fetch_like([[
                local c = coroutine.create(function(a)
                    local r = park()
                    local y = coroutine.yield(a .. r)
                    return 'end:' .. y
                end)
                local ok1, v1 = coroutine.resume(c, 'x')
                local ok2, v2 = coroutine.resume(c, 'y')
                return ok1, v1, ok2, v2, coroutine.status(c)
            ]])
            local ok, v = coroutine.resume(co)
            assert.is_true(ok)
            assert.are.equal(IO, v) -- the fetch coroutine parked
            local res = { coroutine.resume(co, "result") }
            assert.are.same({ true, true, "xresult", true, "end:y", "dead" }, res)
        end)

        it("forwards through coroutine.wrap and propagates errors", function()
            local co = fetch_like([[
                local w = coroutine.wrap(function() return 'w:' .. park() end)
                local v = w()
                local bad = coroutine.wrap(function() park() error('boom', 0) end)
                local ok, err = pcall(bad)
                return v, ok, err
            ]])
            assert.are.equal(IO, select(2, coroutine.resume(co)))
            assert.are.equal(IO, select(2, coroutine.resume(co, "1")))
            assert.are.same({ true, "w:1", false, "boom" }, { coroutine.resume(co, "2") })
        end)

        it("leaves ordinary yields alone", function()
            local co = fetch_like([[
                local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
                return gen() + gen() + gen()
            ]])
            assert.are.same({ true, 6 }, { coroutine.resume(co) })
        end)
    end)
end)
