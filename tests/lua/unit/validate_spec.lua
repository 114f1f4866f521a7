-- validate_spec.lua: luacached.validate, the checks on the table a policy
-- returns; every message is "file:line: message" (SPEC §4, policy.h).
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/lua/unit/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path

local validate = require("luacached.validate")

local PATH = "policies/user.lua"

-- A policy source with `field` on line 3, the return on line 2.
local function src_with(field)
    return "local json = require 'cjson'\nreturn {\n  " .. field
        .. ",\n  fetch = function(id, ctx) return id end,\n}\n"
end

-- Load src (plain Lua, no sandbox needed here) and check it.
local function check(src)
    local env = { require = function() return {} end, print = print, math = math }
    local policy = assert(load(src, "=" .. PATH, "t", env))()
    return validate.check(policy, src, PATH)
end

local function err_of(field)
    local conf, err = check(src_with(field))
    assert.is_nil(conf, "expected " .. field .. " to be refused")
    return err
end

describe("luacached.validate", function()
    it("fills defaults", function()
        local conf = assert(check("return { fetch = function() end }"))
        assert.are.same({
            ttl = 300, ttl_jitter = 0, negative_ttl = 0, stale_ttl = 0, stale_if_error = 0,
            error_ttl = 0, early_refresh = 0, fetch_timeout = 5, lock_timeout = 10, l1_ttl = 1,
            warm_every = 0, version = 1, ttl_is_fn = false, has_on_event = false, has_warm = false,
            has_write = false, has_delete = false, has_write_behind = false,
            wb_delay = 5, wb_batch = 100, wb_coalesce = true, wb_max_retries = 10,
            wb_claim_after = 30, warnings = {},
        }, conf)
    end)

    it("accepts every documented field", function()
        local conf = assert(check([[
            return {
              ttl = 600, ttl_jitter = 0.1, negative_ttl = 30, stale_ttl = 120,
              stale_if_error = 600, error_ttl = 0, early_refresh = 1.0, fetch_timeout = 5,
              lock_timeout = 10, l1_ttl = 1, version = 2.0, warm_every = 300,
              fetch = function() end, on_event = function() end, warm = function() end,
              write = function() end, delete = function() end,
            }]]))
        assert.are.equal(600, conf.ttl)
        assert.are.equal(0.1, conf.ttl_jitter)
        assert.are.equal(2, conf.version)
        assert.are.equal("integer", math.type(conf.version))
        assert.is_true(conf.has_on_event)
        assert.is_true(conf.has_warm)
    end)

    it("accepts ttl as a function", function()
        local conf = assert(check("return { ttl = function() return 1 end, fetch = print }"))
        assert.is_true(conf.ttl_is_fn)
        assert.are.equal(300, conf.ttl)
    end)

    local cases = {
        { "ttl = 'soon'", "ttl must be a number >= 0 or a function (got string)" },
        { "ttl = -1", "ttl must be a number >= 0 or a function (got -1)" },
        { "ttl = 0/0", "ttl must be a number >= 0 or a function (got nan)" },
        { "ttl = math.huge", "ttl must be a number >= 0 or a function (got inf)" },
        { "ttl_jitter = 1.5", "ttl_jitter must be a number between 0 and 1 (got 1.5)" },
        { "ttl_jitter = -0.1", "ttl_jitter must be a number between 0 and 1 (got -0.1)" },
        { "ttl_jitter = '0.1'", "ttl_jitter must be a number between 0 and 1 (got string)" },
        { "negative_ttl = -5", "negative_ttl must be a number >= 0 (got -5)" },
        { "stale_ttl = true", "stale_ttl must be a number >= 0 (got boolean)" },
        { "stale_if_error = -1", "stale_if_error must be a number >= 0 (got -1)" },
        { "error_ttl = {}", "error_ttl must be a number >= 0 (got table)" },
        { "early_refresh = -1", "early_refresh must be a number >= 0 (got -1)" },
        { "fetch_timeout = 0", "fetch_timeout must be a number > 0 (got 0)" },
        { "lock_timeout = -2", "lock_timeout must be a number > 0 (got -2)" },
        { "l1_ttl = 'x'", "l1_ttl must be a number >= 0 (got string)" },
        { "warm_every = -300", "warm_every must be a number >= 0 (got -300)" },
        { "version = 1.5", "version must be an integer (got 1.5)" },
        { "version = '2'", "version must be an integer (got string)" },
        { "on_event = 1", "on_event must be a function (got number)" },
        { "warm = {}", "warm must be a function (got table)" },
        { "tll = 60", "unknown field 'tll' (did you mean 'ttl'?)" },
        { "fetch_timout = 5", "unknown field 'fetch_timout' (did you mean 'fetch_timeout'?)" },
        { "colour = 'red'", "unknown field 'colour'" },
    }
    for _, c in ipairs(cases) do
        it("reports " .. c[1] .. " at its line", function()
            assert.are.equal(PATH .. ":3: " .. c[2], err_of(c[1]))
        end)
    end

    it("requires fetch, at the return's line", function()
        local conf, err = check("local x = 1\nreturn {\n  ttl = 5,\n}\n")
        assert.is_nil(conf)
        assert.are.equal(PATH .. ":2: fetch is required: a function(id, ctx) returning the value",
            err)
        conf, err = check("return { fetch = 'nope' }")
        assert.are.equal(PATH .. ":1: fetch must be a function (got string)", err)
    end)

    it("reports a non-table result at the return", function()
        local conf, err = validate.check(nil, "local a = 1\n\nreturn nil\n", PATH)
        assert.is_nil(conf)
        assert.are.equal(PATH .. ":3: policy must return a table (got nil)", err)
        conf, err = validate.check("x", "-- nothing\nlocal t = {}\n", PATH)
        assert.are.equal(PATH .. ":3: policy must return a table (got string)", err)
    end)

    it("falls back to the return's line when the field is not written as name =", function()
        local src = "local p = { fetch = print }\np['ttl'] = 'x'\nreturn p\n"
        local conf, err = validate.check({ fetch = print, ttl = "x" }, src, PATH)
        assert.is_nil(conf)
        assert.are.equal(PATH .. ":3: ttl must be a number >= 0 or a function (got string)", err)
    end)

    it("reports non-string keys", function()
        local conf, err = validate.check({ fetch = print, [1] = "x" }, "return {}", PATH)
        assert.is_nil(conf)
        assert.are.equal(PATH .. ":1: unknown field [1]", err)
    end)

    it("reports every problem, one a line, in file order", function()
        local src = "return {\n  fetch = print,\n  ttl = -1,\n  tll = 2,\n  l1_ttl = 'x',\n}\n"
        local conf, err = check(src)
        assert.is_nil(conf)
        assert.are.equal(PATH .. ":3: ttl must be a number >= 0 or a function (got -1)\n"
            .. PATH .. ":4: unknown field 'tll' (did you mean 'ttl'?)\n"
            .. PATH .. ":5: l1_ttl must be a number >= 0 (got string)", err)
        -- a missing fetch too, at the return
        conf, err = check("local x = 1\nreturn {\n  ttl = 'y',\n}\n")
        assert.is_nil(conf)
        assert.are.equal(PATH .. ":2: fetch is required: a function(id, ctx) returning the value\n"
            .. PATH .. ":3: ttl must be a number >= 0 or a function (got string)", err)
    end)

    it("warns about combinations the docs advise against, without failing", function()
        local conf = assert(check("return {\n  fetch = print,\n  fetch_timeout = 20,\n"
            .. "  lock_timeout = 10,\n  warm_every = 60,\n}\n"))
        assert.are.equal(2, #conf.warnings)
        assert.truthy(conf.warnings[1]:find(PATH .. ":3: warning: fetch_timeout (20 s) is not below "
            .. "lock_timeout (10 s)", 1, true), conf.warnings[1])
        assert.are.equal(PATH .. ":5: warning: warm_every = 60 does nothing without a warm function",
            conf.warnings[2])
        -- equal is not below either; the defaults (5 and 10) are fine
        conf = assert(check("return {\n  fetch = print,\n  lock_timeout = 5,\n}\n"))
        assert.are.equal(1, #conf.warnings)
        assert.truthy(conf.warnings[1]:find(PATH .. ":3: warning: fetch_timeout (5 s)", 1, true))
        conf = assert(check("return { fetch = print, warm = print, warm_every = 5 }"))
        assert.are.same({}, conf.warnings)
    end)

    it("does not take `name ==` for a field", function()
        local lines = { "if ttl == 5 then", "  ttl = 6" }
        assert.are.equal(2, validate.field_line(lines, "ttl"))
    end)

    it("follows __index, as the engine reads fields", function()
        local base = { fetch = print, ttl = 9 }
        local conf = assert(validate.check(setmetatable({}, { __index = base }), "return x", PATH))
        assert.are.equal(9, conf.ttl)
    end)

    describe("write_behind", function()
        local function wb_src(wb, extra)
            return "return {\n  fetch = print,\n  write_behind = {\n" .. wb
                .. "\n  },\n" .. (extra or "  write_batch = print,") .. "\n}\n"
        end

        it("fills the sub-fields' defaults and takes the given ones", function()
            local conf = assert(check(wb_src("    delay = 0.2, max_retries = 0,")))
            assert.is_true(conf.has_write_behind)
            assert.are.equal(0.2, conf.wb_delay)
            assert.are.equal(100, conf.wb_batch)
            assert.is_true(conf.wb_coalesce)
            assert.are.equal(0, conf.wb_max_retries)
            assert.are.equal(30, conf.wb_claim_after)
        end)

        local bad = {
            { "    delay = 0,", "policies/user.lua:4: write_behind.delay must be a number of seconds above 0 and at most 86400 (got 0)" },
            { "    coalesce = true,\n    batch = 0,",
              "policies/user.lua:5: write_behind.batch must be an integer between 1 and 10000 (got 0)" },
            { "    batch = 2.5,", "policies/user.lua:4: write_behind.batch must be an integer between 1 and 10000 (got 2.5)" },
            { "    coalesce = 1,", "policies/user.lua:4: write_behind.coalesce must be a boolean (got 1)" },
            { "    max_retries = -1,", "policies/user.lua:4: write_behind.max_retries must be an integer between 0 and 1000 (got -1)" },
            { "    claim_after = 'x',", "policies/user.lua:4: write_behind.claim_after must be a number of seconds from 0.2 and at most 86400 (got string)" },
            { "    claim_after = 0.1,", "policies/user.lua:4: write_behind.claim_after must be a number of seconds from 0.2 and at most 86400 (got 0.1)" },
            { "    delay = 1e20,", "policies/user.lua:4: write_behind.delay must be a number of seconds above 0 and at most 86400 (got 1e+20)" },
            { "    dealy = 1,", "policies/user.lua:4: write_behind: unknown field 'dealy' (fields are delay, batch, coalesce, max_retries and claim_after)" },
        }
        for _, c in ipairs(bad) do
            it("refuses " .. c[1]:gsub("%s+", " "), function()
                local conf, err = check(wb_src(c[1]))
                assert.is_nil(conf)
                assert.are.equal(c[2], err)
            end)
        end

        it("refuses write_behind without write_batch, and with write or delete", function()
            local _, err = check(wb_src("", "  ttl = 1,"))
            assert.are.equal("policies/user.lua:3: write_behind needs write_batch = function(items, ctx)", err)
            _, err = check(wb_src("", "  write_batch = print,\n  write = print,"))
            assert.are.equal("policies/user.lua:7: write and write_behind exclude each other (write-through or write-behind)", err)
            _, err = check(wb_src("", "  write_batch = print,\n  delete = print,"))
            assert.are.equal("policies/user.lua:7: delete and write_behind exclude each other (a write-behind DEL is queued)", err)
            _, err = check("return {\n  fetch = print,\n  write_batch = print,\n}")
            assert.are.equal("policies/user.lua:3: write_batch needs write_behind = {delay=, batch=, ...}", err)
            _, err = check("return {\n  fetch = print,\n  write_batch = print,\n  write_behind = 5,\n}")
            assert.are.equal("policies/user.lua:4: write_behind must be a table {delay=, batch=, coalesce=, max_retries=, claim_after=} (got 5)", err)
        end)
    end)
end)

