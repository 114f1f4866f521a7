-- runtime_spec.lua: luacached.runtime, the fetch runner (result
-- normalisation, ctx) and the policy loader, with the C primitives faked.
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/lua/unit/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path

local runtime = require("luacached.runtime")
local validate = require("luacached.validate")
local json = require("luacached.json")
local cjson = json.wrap(require("cjson"))

-- Fake primitives: http answers from `responses` (url -> table, or a string
-- for a transport error) and records every call.
local function fake_prims(responses)
    local p = { calls = {}, logs = {}, sleeps = {} }
    p.http = function(h, method, url, body, timeout, ...)
        p.calls[#p.calls + 1] = { h = h, method = method, url = url, body = body,
            timeout = timeout, headers = { ... } }
        local r = responses and responses[url]
        if type(r) == "string" then return nil, "http " .. method .. " " .. url .. ": " .. r end
        return r or { status = 200, body = "ok", headers = {} }
    end
    p.sleep = function(h, s) p.sleeps[#p.sleeps + 1] = s end
    p.now = function() return 1234 end
    p.log = function(level, msg) p.logs[#p.logs + 1] = { level, msg } end
    return p
end

local function rt_for(policy, prims)
    local conf = assert(validate.check(policy, "", "p.lua"))
    return runtime.new { policy = policy, conf = conf, ns = "widget", prims = prims or fake_prims(),
        encode = cjson.encode }
end

-- An error without the "file:line: " the runtime puts in front (called
-- from this file, the stack walk names this file's line).
local function strip(err) return (err:gsub("^[^:]+:%d+: ", "")) end

local function fetch(policy, id, prims)
    return rt_for(policy, prims).fetch("H", id or "42")
end

describe("luacached.runtime", function()
    describe("fetch results", function()
        it("passes a string through with the policy's ttl", function()
            assert.are.same({ "v42", 60 },
                { fetch({ ttl = 60, fetch = function(id) return "v" .. id end }) })
        end)

        it("stores a table as JSON", function()
            local v, ttl = fetch({ fetch = function() return { id = 42, list = { 1, 2 } } end })
            assert.are.same({ id = 42, list = { 1, 2 } }, cjson.decode(v))
            assert.are.equal(300, ttl)
        end)

        it("turns nil into not-found with negative_ttl, or opts.ttl", function()
            assert.are.same({ nil, 30 },
                { fetch({ negative_ttl = 30, fetch = function() return nil end }) })
            assert.are.same({ nil, 5 },
                { fetch({ negative_ttl = 30, fetch = function() return nil, { ttl = 5 } end }) })
        end)

        it("refuses other types", function()
            for _, v in ipairs({ true, 42, print }) do
                local ok, err = pcall(fetch, { fetch = function() return v end })
                assert.is_false(ok)
                assert.are.equal("fetch must return a string, a table or nil (got " .. type(v)
                    .. ")", strip(err))
            end
        end)

        it("reports a table JSON cannot hold", function()
            local ok, err = pcall(fetch, { fetch = function() return { f = print } end })
            assert.is_false(ok)
            assert.matches("fetch returned a table that cannot be encoded as JSON", err)
        end)

        it("applies opts.ttl and returns tags after value and ttl", function()
            assert.are.same({ "v", 9, "owner:5", "team:1" }, { fetch({ fetch = function()
                return "v", { ttl = 9, tags = { "owner:5", "team:1" } }
            end }) })
        end)

        it("validates opts", function()
            local bad = {
                { 5, "fetch's second result must be an options table {ttl=, tags=} (got 5)" },
                { { ttl = -1 }, "fetch option ttl must be a number >= 0 (got -1)" },
                { { ttl = "1" }, "fetch option ttl must be a number >= 0 (got string)" },
                { { tags = "a" }, "fetch option tags must be an array of strings (got string)" },
                { { tags = { "a", 2 } }, "fetch option tags[2] must be a string (got 2)" },
                { { tgs = {} }, "fetch returned an unknown option 'tgs' (options are ttl and tags)" },
            }
            for _, c in ipairs(bad) do
                local ok, err = pcall(fetch, { fetch = function() return "v", c[1] end })
                assert.is_false(ok)
                assert.are.equal(c[2], strip(err))
            end
            local many = {}
            for i = 1, runtime.MAX_TAGS + 1 do many[i] = "t" .. i end
            local ok, err = pcall(fetch, { fetch = function() return "v", { tags = many } end })
            assert.is_false(ok)
            assert.matches("too many tags", err)
        end)

        it("asks ttl(id, value) with what fetch returned", function()
            local seen
            local policy = { fetch = function() return { a = 1 } end }
            policy.ttl = function(id, v)
                seen = { id, v }
                return v.a
            end
            assert.are.same({ '{"a":1}', 1 }, { fetch(policy, "9") })
            assert.are.same({ "9", { a = 1 } }, seen)
            policy.fetch = function() return "str" end
            policy.ttl = function(_, v) return #v end
            assert.are.same({ "str", 3 }, { fetch(policy, "9") })
        end)

        it("fails the fetch when ttl(id, value) fails or returns nonsense", function()
            local ok, err = pcall(fetch, { ttl = function() error("nope", 0) end,
                fetch = function() return "v" end })
            assert.is_false(ok)
            assert.are.equal("nope", err)
            ok, err = pcall(fetch, { ttl = function() return "x" end,
                fetch = function() return "v" end })
            assert.is_false(ok)
            assert.are.equal("ttl(id, value) must return a number >= 0 (got string)", strip(err))
        end)

        it("points at the policy function's definition when no frame of it is left", function()
            -- as in the server: the run's coroutine starts in runtime.lua,
            -- and the policy has returned (or tail-called a ctx function)
            local src = "local p = {}\n"
                .. "p.fetch = function(id, ctx)\n"
                .. "  if id == 'tail' then return ctx.http.get(42) end\n"
                .. "  return 'v'\n"
                .. "end\n"
                .. "p.ttl = function(id, v)\n"
                .. "  return 'garbage'\n"
                .. "end\n"
                .. "return p\n"
            local policy = assert(load(src, "=policies/w.lua"))()
            local rt = rt_for(policy)
            local ok, err = coroutine.resume(coroutine.create(rt.fetch), "H", "1")
            assert.is_false(ok)
            assert.are.equal("policies/w.lua:6: ttl(id, value) must return a number >= 0 "
                .. "(got string)", err)
            ok, err = coroutine.resume(coroutine.create(rt.ttl_for), "1", "v")
            assert.is_false(ok)
            assert.are.equal("policies/w.lua:6: ttl(id, value) must return a number >= 0 "
                .. "(got string)", err)
            ok, err = coroutine.resume(coroutine.create(rt.fetch), "H", "tail")
            assert.is_false(ok)
            assert.are.equal("policies/w.lua:2: bad argument #1 to 'ctx.http.get' (url string "
                .. "expected, got number)", err)
        end)

        it("propagates the policy's errors unchanged", function()
            local ok, err = pcall(fetch, { fetch = function() error({ code = 1 }) end })
            assert.is_false(ok)
            assert.are.same({ code = 1 }, err)
        end)
    end)

    describe("ttl_for", function()
        it("uses the number or the function", function()
            assert.are.equal(60, rt_for({ ttl = 60, fetch = print }).ttl_for("1", "v"))
            assert.are.equal(3, rt_for({ ttl = function(_, v) return #v end, fetch = print })
                .ttl_for("1", "abc"))
            assert.has_error(function()
                rt_for({ ttl = function() return -1 end, fetch = print }).ttl_for("1", "v")
            end, "ttl(id, value) must return a number >= 0 (got -1)")
        end)
    end)

    describe("ctx", function()
        local function with_ctx(body, prims)
            prims = prims or fake_prims()
            local ctx = rt_for({ fetch = print }, prims).make_ctx("H", "42")
            return body(ctx, prims), prims
        end

        it("makes http, sleep and key once per fetch, each ctx its own", function()
            local rt = rt_for({ fetch = print }, fake_prims())
            local a, b = rt.make_ctx("H1", "1"), rt.make_ctx("H2", "2")
            assert.are.equal(a.http, a.http)
            assert.are.equal(a.sleep, a.sleep)
            assert.are_not.equal(a.http, b.http)
            assert.are_not.equal(a.sleep, b.sleep)
            assert.are.equal(a.log, b.log) -- no per-fetch state
            assert.are.equal("widget:2", b.key)
            b.id = "changed" -- the key stays the fetch's
            assert.are.equal("widget:2", b.key)
            assert.is_nil(a.nope)
            assert.is_false(getmetatable(a))
            assert.has_error(function() setmetatable(a, {}) end)
        end)

        it("names the key", function()
            with_ctx(function(ctx)
                assert.are.equal("widget", ctx.ns)
                assert.are.equal("42", ctx.id)
                assert.are.equal("widget:42", ctx.key)
                assert.are.equal(1234, ctx.now())
            end)
        end)

        it("http.get passes method, url, timeout and flattened headers", function()
            local _, prims = with_ctx(function(ctx)
                local res = ctx.http.get("http://o/w/1", { headers = { Accept = "a/b", N = 5 },
                    timeout = 2 })
                assert.are.equal(200, res.status)
            end)
            local c = prims.calls[1]
            assert.are.equal("H", c.h)
            assert.are.equal("GET", c.method)
            assert.are.equal("http://o/w/1", c.url)
            assert.is_nil(c.body)
            assert.are.equal(2, c.timeout)
            table.sort(c.headers)
            assert.are.same({ "Accept: a/b", "N: 5" }, c.headers)
        end)

        it("http.request passes method and body", function()
            local _, prims = with_ctx(function(ctx)
                ctx.http.request { method = "POST", url = "http://o/", body = "{}" }
            end)
            assert.are.equal("POST", prims.calls[1].method)
            assert.are.equal("{}", prims.calls[1].body)
        end)

        it("raises transport errors at the policy's line", function()
            local prims = fake_prims({ ["http://down/"] = "Couldn't connect to server" })
            local ctx = rt_for({ fetch = print }, prims).make_ctx("H", "1")
            local f = load("local ctx = ...\nlocal r = ctx.http.get('http://down/') return r", "=policy.lua")
            local ok, err = pcall(f, ctx)
            assert.is_false(ok)
            assert.are.equal("policy.lua:2: http GET http://down/: Couldn't connect to server",
                err)
            f = load("local ctx = ...\n\nlocal r = ctx.http.request{ url = 'http://down/' } return r",
                "=policy.lua")
            ok, err = pcall(f, ctx)
            assert.are.equal("policy.lua:3: http GET http://down/: Couldn't connect to server",
                err)
        end)

        it("checks http arguments at the policy's line", function()
            local ctx = rt_for({ fetch = print }).make_ctx("H", "1")
            local cases = {
                { "ctx.http.get(42)", "url string expected" },
                { "ctx.http.get('u', 5)", "table expected" },
                { "ctx.http.get('u', { body = 'x' })", "unknown option 'body'" },
                { "ctx.http.request('u')", "ctx.http.request expects a table" },
                { "ctx.http.request{ url = 'u', verb = 'GET' }", "unknown field 'verb'" },
                { "ctx.http.request{ url = 'u', method = 'GE T' }", "method must be a token" },
                { "ctx.http.request{ url = 'u', body = {} }", "body must be a string" },
                { "ctx.http.request{ url = 'u', timeout = 0 }", "timeout must be a number" },
                { "ctx.http.request{ url = 'u', headers = { ['a b'] = 'x' } }", "bad header name" },
                { "ctx.http.request{ url = 'u', headers = { A = 'x\\r\\nB: y' } }",
                    "one-line string value" },
                { "ctx.http.request{ }", "url must be a string" },
            }
            for _, c in ipairs(cases) do
                local f = assert(load("local ctx = ...\n" .. c[1], "=policy.lua"))
                local ok, err = pcall(f, ctx)
                assert.is_false(ok, c[1])
                assert.matches("^policy.lua:2: ", err)
                assert.matches(c[2], err, nil, true)
            end
        end)

        it("sleep checks its argument and calls the primitive", function()
            local _, prims = with_ctx(function(ctx)
                ctx.sleep(0.5)
                assert.has_error(function() ctx.sleep(-1) end)
                assert.has_error(function() ctx.sleep("1") end)
            end)
            assert.are.same({ 0.5 }, prims.sleeps)
        end)

        it("log checks the level and formats", function()
            local _, prims = with_ctx(function(ctx)
                ctx.log("info", "plain")
                ctx.log("warn", "n=%d s=%s", 5, "x")
                ctx.log("error", 42)
                assert.has_error(function() ctx.log("loud", "x") end)
            end)
            assert.are.same({ { "info", "plain" }, { "warn", "n=5 s=x" }, { "error", "42" } },
                prims.logs)
        end)
    end)

    describe("load", function()
        local function host(source, prims)
            return {
                libs = { json = json, sandbox = require("luacached.sandbox"), validate = validate },
                cjson = require("cjson"),
                find_module = function() return nil end,
                log = function() end,
                io_sentinel = {},
                prims = prims or fake_prims(),
                ns = "widget",
                path = "policies/widget.lua",
                source = source,
            }
        end

        it("returns conf, the fetch runner and ttl_for", function()
            local conf, run, ttl_for = runtime.load(host([[
                local json = require "cjson"
                return {
                  ttl = 600,
                  fetch = function(id, ctx)
                    local w = json.decode('{"id":' .. id .. '}')
                    return "widget:" .. w.id, { tags = { ctx.key } }
                  end,
                }]]))
            assert.are.equal(600, conf.ttl)
            assert.are.same({ "widget:42", 600, "widget:42" }, { run("H", "42") })
            assert.are.equal(600, ttl_for("1", "v"))
        end)

        it("runs the policy sandboxed and sealed", function()
            local _, run = runtime.load(host([[
                return { fetch = function(id) if id == "g" then leak = 1 end return io.open end }
            ]]))
            local ok, err = pcall(run, "H", "1")
            assert.is_false(ok)
            assert.matches("policies/widget.lua:1: undefined global 'io'", err, nil, true)
            ok, err = pcall(run, "H", "g")
            assert.matches("assignment to undeclared global 'leak'", err, nil, true)
        end)

        it("reports syntax, runtime and validation errors with file and line", function()
            local ok, err = pcall(runtime.load, host("return {\n  fetch = function() end\n  ttl = 5 }"))
            assert.is_false(ok)
            assert.matches("^policies/widget.lua:3: ", err)
            ok, err = pcall(runtime.load, host("local x\n\nreturn x.y"))
            assert.matches("^policies/widget.lua:3: attempt to index", err)
            ok, err = pcall(runtime.load, host("return {\n  fetch = print,\n  ttl = 'x' }"))
            assert.are.equal("policies/widget.lua:3: ttl must be a number >= 0 or a function "
                .. "(got string)", err)
        end)
    end)

    describe("write_batch", function()
        local function wb(fn)
            return rt_for({ fetch = print, write_behind = {}, write_batch = fn })
        end

        it("gets the items and a ctx with http and no id", function()
            local seen
            local prims = fake_prims()
            local rt = runtime.new { policy = { fetch = print, write_behind = {},
                write_batch = function(items, ctx)
                    seen = { items = items, id = ctx.id, key = ctx.key, ns = ctx.ns }
                    ctx.http.request{ method = "POST", url = "http://o/_batch", body = "x" }
                end }, conf = {}, ns = "kv", prims = prims, encode = cjson.encode }
            local items = { { op = "set", id = "a", value = "1", seq = "1-0" } }
            assert.is_true(rt.write_batch("H", items))
            assert.are.equal(items, seen.items)
            assert.is_nil(seen.id)
            assert.is_nil(seen.key)
            assert.are.equal("kv", seen.ns)
            assert.are.equal("POST", prims.calls[1].method)
            assert.are.equal("H", prims.calls[1].h)
        end)

        it("fails on an error or a false result, with the reason", function()
            local ok, err = pcall(wb(function() error("origin said 500", 0) end).write_batch, "H", {})
            assert.is_false(ok)
            assert.are.equal("origin said 500", err)
            ok, err = pcall(wb(function() return false, "busy" end).write_batch, "H", {})
            assert.is_false(ok)
            assert.are.equal("busy", err)
            ok, err = pcall(wb(function() return false end).write_batch, "H", {})
            assert.are.equal("write_batch returned false", err)
            assert.is_true(wb(function() return nil end).write_batch("H", {}))
        end)
    end)
end)

