-- flags_spec.lua: the in-process tier over Redis (flags.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: in-process tier with cross-instance invalidation", function()
    it("keeps values 10 s in process; an event names the key to drop everywhere", function()
        local k = load("flags")
        assert.are.equal(10, k.conf.l1_ttl)
        k.http:on("GET", ORIGIN .. "/flags/checkout", { body = '{"new_ui":true}' })
        assert.are.same({ new_ui = true }, k:fetch("checkout").json)
        assert.are.same({ "flags:checkout" }, k:on_event("changed", { service = "checkout" }).keys)
    end)
end)
