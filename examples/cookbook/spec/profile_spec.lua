-- profile_spec.lua: version bump (profile.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: version bump", function()
    it("stores the v2 format under version 2", function()
        local k = load("profile")
        assert.are.equal(2, k.conf.version)
        k.http:on("GET", ORIGIN .. "/profiles/4", { body = '{"id":4,"name":"Bo","avatar_url":"/a.png"}' })
        assert.are.same({ v = 2, id = 4, name = "Bo", avatar = "/a.png" }, k:fetch(4).json)
    end)
    it("the server refuses a version that is not an integer", function()
        local ok, err = testkit.check("profile.lua", { source = "return { version = 2.5, fetch = function() end }" })
        assert.is_nil(ok)
        assert.are.equal("profile.lua:1: version must be an integer (got 2.5)", err)
    end)
end)
