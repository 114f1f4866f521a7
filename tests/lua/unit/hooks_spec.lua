-- hooks_spec.lua: luacached.runtime's on_event and warm runners: how the
-- event payload reaches the policy, the synchronous ctx, and the checks on
-- what the policy returns (SPEC §3 EVENT/WARM, §4).
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/lua/unit/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path

local runtime = require("luacached.runtime")
local validate = require("luacached.validate")
local json = require("luacached.json")
local cjson = json.wrap(require("cjson"))

local function prims()
    local p = { logs = {} }
    p.http = function() error("http must not be reached") end
    p.sleep = function() error("sleep must not be reached") end
    p.now = function() return 1234 end
    p.log = function(level, msg) p.logs[#p.logs + 1] = { level, msg } end
    return p
end

local function rt_for(policy, pr)
    policy.fetch = policy.fetch or function() return "x" end
    local conf = assert(validate.check(policy, "", "p.lua"))
    return runtime.new { policy = policy, conf = conf, ns = "widget", prims = pr or prims(),
        encode = cjson.encode, decode = cjson.decode }
end

-- on_event(name, data, ctx) returning ret; what the runner makes of it.
local function event(ret, payload)
    return rt_for({ on_event = function() return ret end }).on_event("e", payload)
end

local function event_err(ret)
    local ok, err = pcall(event, ret)
    assert.is_false(ok)
    return err
end

describe("on_event", function()
    it("gets the payload decoded as JSON, integral numbers as integers", function()
        local seen
        local rt = rt_for({ on_event = function(name, data, ctx)
            seen = { name = name, data = data, ns = ctx.ns, now = ctx.now() }
            return { keys = { "widget:" .. data.id } }
        end })
        local keys = rt.on_event("updated", '{"id":42,"owner_id":5,"price":1.5}')
        assert.are.same({ "widget:42" }, keys)
        assert.are.equal("updated", seen.name)
        assert.are.equal("widget", seen.ns)
        assert.are.equal(1234, seen.now)
        assert.are.equal(math.type(seen.data.owner_id), "integer")
        assert.are.equal(1.5, seen.data.price)
    end)

    it("gets a payload that is not JSON as the raw string, and nil without one", function()
        local got = {}
        local rt = rt_for({ on_event = function(_, data) got[#got + 1] = { data } end })
        rt.on_event("a", "not json {")
        rt.on_event("b", "42 apples")
        rt.on_event("c", nil)
        rt.on_event("d", "42")
        assert.are.same({ { "not json {" }, { "42 apples" }, {}, { 42 } }, got)
        assert.are.equal("integer", math.type(got[4][1]))
    end)

    it("normalises the result: missing fields are empty, flush false", function()
        assert.are.same({ {}, {}, {}, false }, { event(nil) })
        assert.are.same({ {}, {}, {}, false }, { event({}) })
        assert.are.same({ { "a:1" }, { "b:*" }, { "t" }, true },
            { event({ keys = { "a:1" }, patterns = { "b:*" }, tags = { "t" }, flush = true }) })
    end)

    it("names the field of an invalid result", function()
        assert.matches("on_event must return a table {keys=, patterns=, tags=, flush=} or nil "
            .. "(got string)", event_err("widget:1"), 1, true)
        assert.matches("unknown field 'kyes' (fields are keys, patterns, tags and flush)",
            event_err({ kyes = {} }), 1, true)
        assert.matches("result keys must be an array of strings (got string)",
            event_err({ keys = "widget:1" }), 1, true)
        assert.matches("result keys[2] must be a string (got 42)",
            event_err({ keys = { "widget:1", 42 } }), 1, true)
        assert.matches("result patterns[1] must not be empty",
            event_err({ patterns = { "" } }), 1, true)
        assert.matches("result tags must be an array of strings (found key x)",
            event_err({ tags = { x = "y" } }), 1, true)
        assert.matches("result flush must be a boolean (got string)",
            event_err({ flush = "yes" }), 1, true)
    end)

    it("bounds the lists", function()
        local keys = {}
        for i = 1, runtime.MAX_EVENT_KEYS + 1 do keys[i] = "w:" .. i end
        assert.matches("result keys: too many (10001, at most 10000)", event_err({ keys = keys }),
            1, true)
    end)

    it("has no I/O in its ctx, with a clear error", function()
        for _, call in ipairs({
            function(ctx) ctx.http.get("http://x/") end,
            function(ctx) ctx.http.request { url = "http://x/" } end,
            function(ctx) ctx.sleep(1) end,
        }) do
            local rt = rt_for({ on_event = function(_, _, ctx) call(ctx) end })
            local ok, err = pcall(rt.on_event, "e", nil)
            assert.is_false(ok)
            assert.matches("is not available in on_event (do I/O in fetch)", err, 1, true)
        end
    end)

    it("logs through ctx.log", function()
        local pr = prims()
        rt_for({ on_event = function(_, data, ctx) ctx.log("info", "got %d", data) end }, pr)
            .on_event("e", "7")
        assert.are.same({ { "info", "got 7" } }, pr.logs)
    end)

    it("passes the policy's own error through", function()
        local rt = rt_for({ on_event = function() error("boom") end })
        local ok, err = pcall(rt.on_event, "e", nil)
        assert.is_false(ok)
        assert.matches("boom", err, 1, true)
    end)
end)

describe("warm", function()
    local function warm(ret)
        return rt_for({ warm = function() return ret end }).warm()
    end
    local function warm_err(ret)
        local ok, err = pcall(warm, ret)
        assert.is_false(ok)
        return err
    end

    it("returns ids as strings, integers as their decimal text", function()
        assert.are.same({ "1", "2", "abc", "-7" }, warm({ "1", 2, "abc", -7 }))
        assert.are.same({}, warm({}))
    end)

    it("refuses what is not an array of strings or integers", function()
        assert.matches("warm must return an array of ids (strings or integers) (got nil)",
            warm_err(nil), 1, true)
        assert.matches("warm returned ids[2] (got 1.5): ids are strings or integers",
            warm_err({ "1", 1.5 }), 1, true)
        assert.matches("warm must return an array of ids (found key k)", warm_err({ k = "1" }), 1,
            true)
        local many = {}
        for i = 1, runtime.MAX_WARM_IDS + 1 do many[i] = i end
        assert.matches("warm returned too many ids (100001, at most 100000)", warm_err(many), 1,
            true)
    end)

    it("has ctx.ns and no I/O", function()
        local rt = rt_for({ warm = function(ctx)
            assert(ctx.ns == "widget")
            return ctx.http.get("http://x/")
        end })
        local ok, err = pcall(rt.warm)
        assert.is_false(ok)
        assert.matches("ctx.http.get is not available in warm", err, 1, true)
    end)
end)
