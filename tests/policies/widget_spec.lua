-- widget_spec.lua: policies/widget.lua tested offline with the test kit
-- (docs/TESTKIT.md). Run: busted --lua=lua5.4 tests/policies
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/policies/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")

local ORIGIN = "http://127.0.0.1:8080"

describe("policies/widget.lua", function()
    local k
    before_each(function()
        -- on_event names widget_count: and user_widgets: keys; on a server
        -- those namespaces need policy files of their own.
        k = testkit.load(root .. "policies/widget.lua",
            { ns = "widget", namespaces = { "widget_count", "user_widgets" } })
    end)

    it("stores the origin's JSON as is, tagged by owner, 600 s +-10%", function()
        k.http:on("GET", ORIGIN .. "/widgets/42", { body = '{"id":42,"owner_id":5}' })
        local r = k:fetch(42)
        assert.are.equal("value", r.kind)
        assert.are.equal('{"id":42,"owner_id":5}', r.value)
        assert.are.same({ "owner:5" }, r.tags)
        assert.are.equal(600, r.ttl)
        assert.are.same({ 540, 660 }, { r.ttl_min, r.ttl_max })
        assert.are.equal(1, #r.requests)
    end)

    it("caches not-found for negative_ttl, fails on 5xx", function()
        k.http:on("GET", ORIGIN .. "/widgets/9", { status = 404 })
        k.http:on("GET", ORIGIN .. "/widgets/8", { status = 503 })
        local r = k:fetch(9)
        assert.are.equal("not_found", r.kind)
        assert.are.equal(30, r.ttl)
        r = k:fetch(8)
        assert.are.equal("error", r.kind)
        assert.matches("origin said 503$", r.error)
    end)

    it("serves stale for 120 s and on errors for 600 s", function()
        assert.are.equal(120, k.conf.stale_ttl)
        assert.are.equal(600, k.conf.stale_if_error)
    end)

    it("invalidates the widget, the global count and the owner's lists on update", function()
        assert.are.same({ keys = { "widget:42", "widget_count:global" },
            patterns = { "user_widgets:5:*" }, tags = {}, flush = false },
            k:on_event("updated", '{"id":42,"owner_id":5}'))
        assert.are.same({ "owner:5" }, k:on_event("owner_changed", { owner_id = 5 }).tags)
        assert.are.same({}, k:on_event("updated", "not json").keys)
    end)

    it("warms ids 1 to 3", function()
        assert.are.same({ ids = { "1", "2", "3" } }, k:warm())
    end)
end)
