-- catalog_spec.lua: fail-open (catalog.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: fail-open", function()
    it("a failing origin fails the fetch; the server then answers stale", function()
        local k = load("catalog")
        k.http:on("GET", ORIGIN .. "/catalog/1", { { body = "c1" }, { status = 502 }, { delay = 3 } })
        assert.are.equal("c1", k:fetch(1).value)
        k.clock:advance(300)
        assert.are.equal("error", k:fetch(1).kind)     -- origin said 502
        assert.are.equal("timeout", k:fetch(1).kind)   -- over fetch_timeout (2 s)
        assert.are.equal(86400, k.conf.stale_if_error)
        assert.are.equal(5, k.conf.error_ttl)
    end)
end)
