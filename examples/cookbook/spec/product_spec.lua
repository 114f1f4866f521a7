-- product_spec.lua: write-through invalidation of related keys (product.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: write-through invalidation of related keys", function()
    local k
    before_each(function() k = load("product") end)
    it("serves a product and its reviews under related keys", function()
        k.http:on("GET", ORIGIN .. "/products/42", { body = "p42" })
        k.http:on("GET", ORIGIN .. "/products/42/reviews", { body = "r42" })
        assert.are.equal("p42", k:fetch("42").value)
        assert.are.equal("r42", k:fetch("42:reviews").value)
        assert.are.equal("not_found", k:fetch("abc").kind)
        assert.are.equal(2, k.http:count())
    end)
    it("an update drops the product; a review drops both", function()
        assert.are.same({ "product:42" }, k:on_event("updated", '{"id":42}').keys)
        assert.are.same({ "product:42", "product:42:reviews" }, k:on_event("reviewed", { id = 42 }).keys)
        assert.are.same({}, k:on_event("updated").keys)
    end)
end)
