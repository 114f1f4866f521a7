-- country_spec.lua: TTL-only reference data (country.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: TTL-only reference data", function()
    it("keeps a country a day, and only a day", function()
        local k = load("country")
        k.http:on("GET", ORIGIN .. "/countries/FR", { body = '{"name":"France"}' })
        local r = k:fetch("FR")
        assert.are.equal('{"name":"France"}', r.value)
        assert.are.same({ 86400, 86400, 86400 }, { r.ttl, r.ttl_min, r.ttl_max })
        assert.is_false(k.conf.has_on_event)
    end)
    it("does not cache an origin failure", function()
        local k = load("country")
        k.http:on("GET", ORIGIN .. "/countries/XX", { status = 500 })
        assert.are.equal("error", k:fetch("XX").kind)
        assert.are.equal(0, k.conf.error_ttl)
    end)
end)
