-- testkit_spec.lua: luacached.testkit, the offline policy test kit
-- (docs/TESTKIT.md): loading as the server does, scripted HTTP, the
-- virtual clock, and the normalised results of each hook.
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/lua/unit/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path

local testkit = require("luacached.testkit")

local function kit(src, opts)
    opts = opts or {}
    opts.source = src
    opts.namespaces = opts.namespaces or { "other" }
    return testkit.load(opts.path or "policies/w.lua", opts)
end

describe("luacached.testkit", function()
    it("keeps integral JSON numbers integers, as the server does", function()
        local k = kit([[
            local json = require "cjson"
            return { fetch = function(id, ctx)
                local d = json.decode(ctx.http.get("http://o/" .. id).body)
                return "user_posts:" .. d.n .. ":*"
            end }]])
        k.http:on("GET", "http://o/1", { body = '{"n":5}' })
        assert.are.equal("user_posts:5:*", k:fetch(1).value)
    end)

    it("reports load errors with the server's message", function()
        local ok, err = testkit.check("policies/w.lua", { source = "return { tll = 5, fetch = function() end }" })
        assert.is_nil(ok)
        assert.are.equal("policies/w.lua:1: unknown field 'tll' (did you mean 'ttl'?)", err)
    end)

    it("runs fetch in the sandbox: no io, undefined globals raise", function()
        local k = kit("return { fetch = function() return tostring(rawget(_ENV, 'io')) .. jsno end }")
        local r = k:fetch(1)
        assert.are.equal("error", r.kind)
        assert.matches("policies/w.lua:1: undefined global 'jsno'", r.error, 1, true)
    end)

    it("normalises a value: ttl, jitter range, tags, JSON", function()
        local k = kit([[return { ttl = 100, ttl_jitter = 0.1, fetch = function(id)
            return { id = tonumber(id) }, { tags = { "t:1" } } end }]])
        local r = k:fetch(7)
        assert.are.equal("value", r.kind)
        assert.are.equal("w:7", r.key)
        assert.are.equal(100, r.ttl)
        assert.are.equal(90.0, r.ttl_min)
        assert.are.equal(110.0, r.ttl_max)
        assert.are.same({ "t:1" }, r.tags)
        assert.are.same({ id = 7 }, r.json)
    end)

    it("normalises not-found with negative_ttl", function()
        local r = kit("return { negative_ttl = 30, fetch = function() return nil end }"):fetch(1)
        assert.are.equal("not_found", r.kind)
        assert.are.equal(30, r.ttl)
    end)

    it("scripts responses by method+url, pattern, sequence and function; records requests", function()
        local k = kit([[return { fetch = function(id, ctx)
            local a = ctx.http.request { method = "POST", url = "http://o/q", body = id,
                headers = { ["X-Id"] = id } }
            local b = ctx.http.get("http://o/items/" .. id)
            return a.status .. " " .. a.headers["content-type"] .. " " .. b.body
        end }]])
        k.http:on("POST", "http://o/q", { { status = 201, headers = { ["Content-Type"] = "a" } },
            { status = 202, headers = { ["Content-Type"] = "b" } } })
        k.http:on("GET", "^http://o/items/%d+$", function(req) return { body = "i" .. req.url:sub(-1) } end)
        assert.are.equal("201 a i1", k:fetch(1).value)
        assert.are.equal("202 b i2", k:fetch(2).value)
        assert.are.equal("202 b i3", k:fetch(3).value)
        assert.are.equal(3, k.http:count("POST", "http://o/q"))
        assert.are.equal(6, k.http:count())
        local req = k.http.requests[1]
        assert.are.same({ method = "POST", url = "http://o/q", body = "1",
            headers = { ["X-Id"] = "1" }, at = testkit.START_MS }, req)
    end)

    it("fails loudly on a request nothing scripts", function()
        local k = kit("return { fetch = function(id, ctx) return ctx.http.get('http://x/').body end }")
        assert.has_error(function() k:fetch(1) end,
            "testkit: no response scripted for GET http://x/ (use kit.http:on)")
    end)

    it("turns transport errors into raised errors the policy can pcall", function()
        local k = kit([[return { fetch = function(id, ctx)
            local ok, err = pcall(ctx.http.get, "http://o/")
            return tostring(ok) .. " " .. err end }]])
        k.http:on("GET", "http://o/", { error = "Couldn't connect to server" })
        -- at the policy's line, as in the server
        assert.are.equal("false policies/w.lua:2: http GET http://o/: Couldn't connect to server",
            k:fetch(1).value)
    end)

    it("names the policy's line for errors inside helpers, as the server does", function()
        local k = kit("local cjson = require 'cjson'\nreturn { fetch = function(id, ctx)\n"
            .. "  if id == '1' then local s = cjson.encode(print) return s end\n"
            .. "  local r = ctx.http.get(42)\n  return r end,\n"
            .. "  ttl = function() return 'x' end }\n")
        local r = k:fetch(1)
        assert.are.equal("policies/w.lua:3: Cannot serialise function: type not supported", r.error)
        r = k:fetch(2)
        assert.are.equal("policies/w.lua:4: bad argument #1 to 'ctx.http.get' (url string "
            .. "expected, got number)", r.error)
        local ttl, err = k:ttl(1, "v")
        assert.is_nil(ttl)
        assert.are.equal("ttl failed: policies/w.lua:6: ttl(id, value) must return a number >= 0 "
            .. "(got string)", err)
    end)

    it("advances the virtual clock by delays and sleeps; fetch_timeout ends the fetch", function()
        local k = kit([[return { fetch_timeout = 2, fetch = function(id, ctx)
            local t0 = ctx.now()
            ctx.sleep(0.5)
            ctx.http.get("http://o/" .. id)
            return tostring(ctx.now() - t0) end }]])
        k.http:on("GET", "http://o/1", { delay = 0.25 })
        k.http:on("GET", "http://o/2", { delay = 3 })
        local r = k:fetch(1)
        assert.are.equal("750", r.value)
        assert.are.equal(0.75, r.elapsed)
        r = k:fetch(2)
        assert.are.equal("timeout", r.kind)
        assert.are.equal("fetch timed out after 2s", r.error)
        assert.are.equal(testkit.START_MS + 750 + 2000, k.clock:now())
        k.clock:advance(10)
        assert.are.equal(testkit.START_MS + 12750, k.clock:now())
    end)

    it("a request's own timeout raises 'timeout' before the fetch's", function()
        local k = kit([[return { fetch = function(id, ctx)
            return ctx.http.get("http://o/", { timeout = 1 }).body end }]])
        k.http:on("GET", "http://o/", { timeout = true })
        local r = k:fetch(1)
        assert.are.equal("error", r.kind)
        assert.matches("http GET http://o/: timeout$", r.error)
        assert.are.equal(1.0, r.elapsed)
    end)

    it("os.time follows the virtual clock", function()
        local k = kit("return { ttl = function() return os.time() % 1000 end, fetch = function() return 'v' end }")
        assert.are.equal((testkit.START_MS // 1000) % 1000, k:ttl("a", "v"))
        k.clock:advance(5)
        assert.are.equal((testkit.START_MS // 1000 + 5) % 1000, k:ttl("a", "v"))
    end)

    it("on_event: decodes the payload, validates the result as EVENT does", function()
        local k = kit([[return { fetch = function() end,
            on_event = function(name, data, ctx)
                if name == "io" then return ctx.http.get("http://o/") end
                if name == "bad" then return { keys = { "nope:1" } } end
                return { keys = { "w:" .. data.id }, patterns = { "other:" .. data.id .. ":*" },
                    tags = { "t" }, flush = name == "all" }
            end }]])
        assert.are.same({ keys = { "w:5" }, patterns = { "other:5:*" }, tags = { "t" }, flush = false },
            k:on_event("updated", '{"id":5}'))
        assert.is_true(k:on_event("all", { id = 1 }).flush)
        assert.are.equal("on_event failed: result keys[1] 'nope:1': unknown namespace 'nope'",
            k:on_event("bad").error)
        assert.matches("ctx.http.get is not available in on_event", k:on_event("io").error, 1, true)
    end)

    it("warm and ttl", function()
        local k = kit([[return { ttl = function(id, v) return #v end, fetch = function() end,
            warm = function() return { "a", 2 } end }]])
        assert.are.same({ ids = { "a", "2" } }, k:warm())
        assert.are.equal(3, k:ttl("x", "abc"))
        local bad = kit("return { ttl = function() return -1 end, fetch = function() end }")
        local ttl, err = bad:ttl("x", "v")
        assert.is_nil(ttl)
        assert.matches("must return a number >= 0", err)
    end)

    it("stops an endless loop", function()
        local r = kit("return { fetch = function() while true do end end }"):fetch(1)
        assert.are.equal("error", r.kind)
        assert.matches("instruction budget exceeded", r.error)
    end)

    it("a wrong expectation fails the test", function()
        local k = kit("return { ttl = 60, fetch = function(id) return 'v' .. id end }")
        local r = k:fetch(1)
        assert.has_error(function() assert.are.equal(61, r.ttl) end)
        assert.has_error(function() assert.are.equal("v2", r.value) end)
        assert.has_error(function() assert.are.equal("not_found", r.kind) end)
    end)
end)
