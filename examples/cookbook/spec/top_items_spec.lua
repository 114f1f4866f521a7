-- top_items_spec.lua: warming at start and on a schedule (top_items.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: warming at start and on a schedule", function()
    it("warms ranks 1 to 5 every 600 s, and each warm id fetches", function()
        local k = load("top_items")
        assert.are.same({ ids = { "1", "2", "3", "4", "5" } }, k:warm())
        assert.are.same({ "info: warming 5 items" }, k:log_lines())
        assert.are.equal(600, k.conf.warm_every)
        assert.is_true(k.conf.ttl > k.conf.warm_every)
        k.http:on("GET", "^" .. ORIGIN .. "/top/%d$", { body = "item" })
        for _, id in ipairs(k:warm().ids) do assert.are.equal("value", k:fetch(id).kind) end
        assert.are.equal(5, k.http:count("GET"))
    end)
end)
