-- session_ttl_spec.lua: jittered TTLs (session_ttl.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: jittered TTLs", function()
    it("spreads the TTL over 600 s +-20%", function()
        local k = load("session_ttl")
        k.http:on("GET", ORIGIN .. "/sessions/1", { body = "s" })
        local r = k:fetch(1)
        assert.are.equal(600, r.ttl)
        assert.are.same({ 480, 720 }, { r.ttl_min, r.ttl_max })
        assert.are.equal(0.2, k.conf.ttl_jitter)
    end)
end)
