-- tests/integration/install_spec.lua -- cmake --install lays out bin/ and
-- share/luacached/{lua,policies} so that the installed binary finds its
-- lua/ helpers with no flag; a binary copied away from them says to use
-- --lua-path. Runs cmake --install of the build dir of $LUACACHED_BIN.
--   busted --lua=lua5.4 tests/integration/install_spec.lua
local H = require "tests.helpers.harness"

local function build_dir()
  return (H.luacached_bin():match("^(.*)/[^/]*$"))
end

local function exists(path) return os.execute("test -e " .. H.sh_quote(path)) == true end

describe("install", function()
  local prefix, bin, elsewhere

  setup(function()
    prefix = H.tmpdir("luacached-prefix")
    elsewhere = H.tmpdir("luacached-cwd") -- a cwd with no lua/ in it
    local rc, out = H.run({ "cmake", "--install", build_dir(), "--prefix", prefix }, 60)
    assert.equal(0, rc, out)
    bin = prefix .. "/bin/luacached"
  end)
  teardown(H.cleanup)

  it("puts the binary, the lua/ helpers and the example policies under the prefix", function()
    assert.is_true(exists(bin))
    assert.equal(0, (H.run({ "test", "-x", bin })))
    for _, m in ipairs{ "runtime", "sandbox", "validate", "json" } do
      assert.is_true(exists(prefix .. "/share/luacached/lua/luacached/" .. m .. ".lua"), m)
    end
    for _, ns in ipairs{ "widget", "user", "report" } do
      assert.is_true(exists(prefix .. "/share/luacached/policies/" .. ns .. ".lua"), ns)
    end
    -- lua/ is a copy, not the build tree's symlink to the sources
    assert.equal(1, (H.run({ "test", "-L", prefix .. "/share/luacached/lua" })))
  end)

  it("the installed binary checks the installed example policies with no --lua-path", function()
    local rc, out = H.run({ bin, "--check", "--policies", prefix .. "/share/luacached/policies" }, 20, elsewhere)
    assert.equal(0, rc, out)
    assert.truthy(out:find("policies OK: 6 namespaces", 1, true), out)
  end)

  it("the installed binary finds its helpers when serving too", function()
    local redis = H.start_redis()
    local origin = H.start_origin()
    local policies = H.write_policies{ widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60") }
    local srv = H.start_server{ bin = bin, cwd = elsewhere, redis_port = redis.port, policies_dir = policies,
                               extra_args = { "--log-level", "debug" } }
    local v = srv:call("GET", "widget:7")
    assert.is_string(v)
    assert.truthy(v:find("7", 1, true), v)
    assert.equal(1, origin:count("/widgets/7"))
    assert.truthy(srv:log():find(prefix .. "/bin/../share/luacached/lua", 1, true), srv:log())
    H.assert_clean_exit(srv)
  end)

  it("a copied binary without lua/ beside it fails and says to use --lua-path", function()
    local copy = elsewhere .. "/luacached"
    assert.equal(0, (H.run({ "cp", bin, copy })))
    local rc, out = H.run({ copy, "--check", "--policies", prefix .. "/share/luacached/policies" }, 20, elsewhere)
    assert.equal(2, rc, out)
    assert.truthy(out:find("cannot find the shipped lua/ helpers", 1, true), out)
    assert.truthy(out:find("use --lua-path DIR", 1, true), out)
    assert.truthy(out:find(elsewhere .. "/lua", 1, true), out) -- names where it looked
    -- and --lua-path is the way out
    rc, out = H.run({ copy, "--check", "--lua-path", prefix .. "/share/luacached/lua",
                      "--policies", prefix .. "/share/luacached/policies" }, 20, elsewhere)
    assert.equal(0, rc, out)
  end)
end)
