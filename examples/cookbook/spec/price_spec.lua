-- price_spec.lua: refresh-ahead with stale_ttl (price.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: refresh-ahead with stale_ttl", function()
    it("fresh 60 s, then answered stale 60 s more while one refresh runs", function()
        local k = load("price")
        k.http:on("GET", ORIGIN .. "/prices/A1", { body = "9.99" })
        local r = k:fetch("A1")
        assert.are.same({ "9.99", 60 }, { r.value, r.ttl })
        assert.are.equal(60, k.conf.stale_ttl)
        assert.are.equal(0, k.conf.stale_if_error)
    end)
end)
