-- report_spec.lua: policies/report.lua tested offline with the test kit.
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/policies/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")

local ORIGIN = "http://127.0.0.1:8080"

describe("policies/report.lua", function()
    local k
    before_each(function() k = testkit.load(root .. "policies/report.lua") end)

    it("waits out a slow computation (0.3 s) and keeps it an hour", function()
        k.http:on("GET", ORIGIN .. "/slow/7", { body = "report 7", delay = 0.3 })
        local r = k:fetch(7)
        assert.are.equal("report 7", r.value)
        assert.are.equal(3600, r.ttl)
        assert.are.equal(0.3, r.elapsed)
    end)

    it("gives up after fetch_timeout (10 s), below lock_timeout", function()
        k.http:on("GET", ORIGIN .. "/slow/8", { delay = 11 })
        local r = k:fetch(8)
        assert.are.equal("timeout", r.kind)
        assert.are.equal(10.0, r.elapsed)
        assert.is_true(k.conf.lock_timeout > k.conf.fetch_timeout)
    end)

    it("refreshes early (XFetch) and serves stale meanwhile", function()
        assert.are.equal(1.0, k.conf.early_refresh)
        assert.are.equal(600, k.conf.stale_ttl)
        assert.are.equal(3600, k.conf.stale_if_error)
    end)

    it("does not cache not-found", function()
        k.http:on("GET", ORIGIN .. "/slow/0", { status = 404 })
        assert.are.same({ "not_found", 0 }, { k:fetch(0).kind, k:fetch(0).ttl })
    end)
end)
