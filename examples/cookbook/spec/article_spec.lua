-- article_spec.lua: tag invalidation (article.lua).
local root = debug.getinfo(1, "S").source:match("^@(.*)examples/cookbook/spec/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path
local testkit = require("luacached.testkit")
local ORIGIN = "http://127.0.0.1:8080"
local function load(name) return testkit.load(root .. "examples/cookbook/" .. name .. ".lua") end

describe("cookbook: tag invalidation", function()
    local k
    before_each(function() k = load("article") end)
    it("tags each article with its author and section", function()
        k.http:on("GET", ORIGIN .. "/articles/10", { body = { id = 10, author_id = 3, section = "tech" } })
        assert.are.same({ "author:3", "section:tech" }, k:fetch(10).tags)
    end)
    it("one event drops every article of an author", function()
        local ev = k:on_event("author_renamed", '{"author_id":3}')
        assert.are.same({ tags = { "author:3" }, keys = {}, patterns = {}, flush = false }, ev)
        assert.are.same({ "section:tech" }, k:on_event("section_moved", { section = "tech" }).tags)
    end)
end)
