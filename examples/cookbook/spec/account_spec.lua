-- account_spec.lua: cache-aside with negative caching (account.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: cache-aside with negative caching", function()
    local k
    before_each(function() k = load("account") end)
    it("caches a found account 600 s", function()
        k.http:on("GET", ORIGIN .. "/accounts/17", { body = "a17" })
        local r = k:fetch(17)
        assert.are.same({ "value", "a17", 600 }, { r.kind, r.value, r.ttl })
    end)
    it("caches 'no such account' 60 s and 'deleted' a day", function()
        k.http:on("GET", ORIGIN .. "/accounts/18", { status = 404 })
        k.http:on("GET", ORIGIN .. "/accounts/19", { status = 410 })
        local r = k:fetch(18)
        assert.are.same({ "not_found", 60 }, { r.kind, r.ttl })
        r = k:fetch(19)
        assert.are.same({ "not_found", 86400 }, { r.kind, r.ttl })
    end)
    it("never caches an error as not-found", function()
        k.http:on("GET", ORIGIN .. "/accounts/20", { error = "Couldn't connect to server" })
        local r = k:fetch(20)
        assert.are.equal("error", r.kind)
        assert.matches("http GET " .. ORIGIN .. "/accounts/20: Couldn't connect", r.error, 1, true)
    end)
end)
