-- json_spec.lua: luacached.json, the cjson wrapper policies get
-- (integral numbers decode as Lua integers; SPEC §4).
local root = debug.getinfo(1, "S").source:match("^@(.*)tests/lua/unit/[^/]*$") or "./"
package.path = root .. "lua/?.lua;" .. package.path

local json = require("luacached.json")
local raw = require("cjson")

describe("luacached.json", function()
    local cjson = json.wrap(raw)

    it("decodes integral numbers as integers", function()
        local v = cjson.decode('{"id":42}')
        assert.are.equal("integer", math.type(v.id))
        assert.are.equal("widget:42", "widget:" .. v.id)
    end)

    it("keeps non-integral numbers as floats", function()
        local v = cjson.decode('{"x":1.5,"big":1e300,"neg":-0.25}')
        assert.are.equal("float", math.type(v.x))
        assert.are.equal(1.5, v.x)
        assert.are.equal("float", math.type(v.big))
        assert.are.equal(-0.25, v.neg)
    end)

    it("fixes nested arrays and objects", function()
        local v = cjson.decode('[1,[2,{"a":3,"b":[4.0,4.5]}],{"c":{"d":-7}}]')
        assert.are.equal("integer", math.type(v[1]))
        assert.are.equal("integer", math.type(v[2][1]))
        assert.are.equal("integer", math.type(v[2][2].a))
        assert.are.equal("integer", math.type(v[2][2].b[1]))
        assert.are.equal("float", math.type(v[2][2].b[2]))
        assert.are.equal("integer", math.type(v[3].c.d))
        assert.are.equal(-7, v[3].c.d)
    end)

    it("decodes scalars", function()
        assert.are.equal("integer", math.type(cjson.decode("7")))
        assert.are.equal("s", cjson.decode('"s"'))
        assert.are.equal(raw.null, cjson.decode("null"))
        assert.is_true(cjson.decode("true"))
    end)

    it("still raises on invalid JSON", function()
        assert.has_error(function() cjson.decode("{nope") end)
    end)

    it("encodes as cjson does", function()
        assert.are.equal("[1,2,3]", cjson.encode({ 1, 2, 3 }))
        assert.are.equal('{"id":42}', cjson.encode(cjson.decode('{"id":42}')))
    end)

    it("gives instances from new() the same fix", function()
        local c2 = cjson.new()
        assert.are.equal("integer", math.type(c2.decode("[5]")[1]))
    end)

    it("has a safe variant returning nil, err", function()
        local safe = json.safe(cjson)
        local v, err = safe.decode("{nope")
        assert.is_nil(v)
        assert.is_string(err)
        assert.are.equal("integer", math.type(safe.decode('{"n":1}').n))
        local s, eerr = safe.encode({ f = print })
        assert.is_nil(s)
        assert.is_string(eerr)
    end)

    it("integralize handles plain values", function()
        assert.are.equal("integer", math.type(json.integralize(3.0)))
        assert.are.equal("x", json.integralize("x"))
    end)

    it("refuses to encode a value whose JSON would exceed MAX_ENCODE", function()
        local saved = json.MAX_ENCODE
        json.MAX_ENCODE = 1000
        local ok, err = pcall(cjson.encode, { string.rep("x", 600), string.rep("y", 600) })
        json.MAX_ENCODE = saved
        assert.is_false(ok)
        assert.truthy(tostring(err):find("exceed 1000 bytes", 1, true))
        assert.are.equal('["ab"]', cjson.encode({ "ab" }))
    end)

    it("estimates sizes without recursing forever on cycles", function()
        local t = {}
        t[1] = t
        assert.has_error(function() json.size_of(t, 0, math.huge) end)
        assert.is_true(json.size_of({ a = "xyz" }, 0, math.huge) >= 9)
    end)
end)
