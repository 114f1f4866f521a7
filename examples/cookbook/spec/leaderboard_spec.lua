-- leaderboard_spec.lua: XFetch early refresh (leaderboard.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: XFetch early refresh", function()
    it("refreshes early, and lets a 12 s computation finish", function()
        local k = load("leaderboard")
        k.http:on("GET", ORIGIN .. "/leaderboards/chess", { body = "[1,2,3]", delay = 12 })
        local r = k:fetch("chess")
        assert.are.equal("value", r.kind)
        assert.are.same({ 1, 2, 3 }, r.json)
        assert.are.equal(12.0, r.elapsed)
        assert.are.equal(1.0, k.conf.early_refresh)
        assert.is_true(k.conf.lock_timeout > k.conf.fetch_timeout)
    end)
    it("a computation past 20 s times out", function()
        local k = load("leaderboard")
        k.http:on("GET", ORIGIN .. "/leaderboards/go", { delay = 25 })
        assert.are.equal("fetch timed out after 20s", k:fetch("go").error)
    end)
end)
