-- user_spec.lua: policies/user.lua tested offline with the test kit.
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/policies/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")

local ORIGIN = "http://127.0.0.1:8080"

describe("policies/user.lua", function()
    local k
    before_each(function() k = testkit.load(root .. "policies/user.lua") end)

    it("keeps only id, name, email and tier, as JSON with integer ids", function()
        k.http:on("GET", ORIGIN .. "/users/7", { body = {
            id = 7, name = "Ann", email = "a@x", tier = "basic", password = "secret" } })
        local r = k:fetch(7)
        assert.are.equal("value", r.kind)
        assert.are.same({ id = 7, name = "Ann", email = "a@x", tier = "basic" }, r.json)
        assert.are.equal("integer", math.type(r.json.id))
        assert.are.equal(600, r.ttl)
    end)

    it("keeps VIP profiles 60 s, also when SET stores them", function()
        k.http:on("GET", ORIGIN .. "/users/1", { body = '{"id":1,"tier":"vip"}' })
        assert.are.equal(60, k:fetch(1).ttl)
        assert.are.equal(60, k:ttl("1", '{"id":1,"tier":"vip"}'))
        assert.are.equal(600, k:ttl("2", '{"id":2}'))
    end)

    it("caches unknown users 60 s", function()
        k.http:on("GET", ORIGIN .. "/users/404", { status = 404 })
        local r = k:fetch(404)
        assert.are.equal("not_found", r.kind)
        assert.are.equal(60, r.ttl)
    end)

    it("a lookup slower than 2 s fails", function()
        k.http:on("GET", ORIGIN .. "/users/3", { delay = 2.5 })
        local r = k:fetch(3)
        assert.are.equal("timeout", r.kind)
        assert.are.equal("fetch timed out after 2s", r.error)
    end)

    it("EVENT user updated drops that user", function()
        assert.are.same({ "user:42" }, k:on_event("updated", '{"id":42}').keys)
        assert.are.same({}, k:on_event("updated").keys)
    end)
end)
