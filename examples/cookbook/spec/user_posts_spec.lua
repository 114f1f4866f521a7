-- user_posts_spec.lua: pattern invalidation of paginated lists (user_posts.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: pattern invalidation of paginated per-user lists", function()
    local k
    before_each(function() k = load("user_posts") end)
    it("fetches one page per key", function()
        k.http:on("GET", ORIGIN .. "/users/5/posts?page=2", { body = "[]" })
        assert.are.equal("[]", k:fetch("5:2").value)
        assert.are.equal("not_found", k:fetch("5").kind)
    end)
    it("a new post drops every page of that user: user_posts:5:*, not 5.0", function()
        local ev = k:on_event("created", '{"user_id":5,"post_id":900}')
        assert.are.same({ "user_posts:5:*" }, ev.patterns)
        assert.are.same({}, ev.keys)
    end)
end)
