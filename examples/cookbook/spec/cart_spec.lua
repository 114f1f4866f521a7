-- cart_spec.lua: per-user keys (cart.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: per-user keys", function()
    local k
    before_each(function() k = load("cart") end)
    it("asks the origin on behalf of the user in the key", function()
        k.http:on("GET", ORIGIN .. "/cart", function(req) return { body = "cart of " .. req.headers["X-User-Id"] } end)
        assert.are.equal("cart of 7", k:fetch(7).value)
        assert.are.equal("cart of 8", k:fetch(8).value)
        assert.are.equal("8", k.http.requests[2].headers["X-User-Id"])
        assert.are.equal("not_found", k:fetch("7;8").kind)
        assert.are.equal(2, k.http:count())
    end)
    it("a change drops that user's cart only; no in-process tier", function()
        assert.are.same({ "cart:7" }, k:on_event("changed", { user_id = 7 }).keys)
        assert.are.equal(0, k.conf.l1_ttl)
    end)
end)
