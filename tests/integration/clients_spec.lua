-- tests/integration/clients_spec.lua -- real client libraries against the
-- real binary, a real redis-server and the example origin: redis-py
-- (Debian python3-redis) and node-redis (npm, tests/clients/node; ./dev test
-- installs it with `npm ci`). Each client script checks connection pools,
-- pipelines, transactions (MULTI/EXEC), binary values (all 256 byte values,
-- 1 MB) and SET options; node-redis RESP3 too (redis-py 4.3 has no RESP3).
--   busted --lua=lua5.4 tests/integration/clients_spec.lua
local H = require "tests.helpers.harness"

local NODE_DIR = H.root .. "/tests/clients/node"

describe("client libraries", function()
  local srv
  setup(function()
    local redis = H.start_redis()
    local origin = H.start_origin()
    local dir = H.write_policies{ widget = H.simple_policy(origin.url .. "/widgets/", "ttl = 60") }
    srv = H.start_server{ redis_port = redis.port, policies_dir = dir }
  end)
  teardown(H.cleanup)

  local function run_client(argv)
    local rc, out = H.run(argv, 60)
    assert.equal(0, rc, out)
    assert.matches("^ok: %d+ checks", out)
  end

  it("redis-py: pool, pipelines, transactions, binary values, SET options", function()
    run_client{ "/usr/bin/python3", H.root .. "/tests/clients/redis_py_test.py", tostring(srv.port) }
  end)

  it("node-redis: RESP2 and RESP3, pool, pipelines, multi, binary values", function()
    if not H.read_file(NODE_DIR .. "/node_modules/redis/package.json") then
      -- ./dev test sets this only when npm could not reach the registry
      if os.getenv("LUACACHED_NODE_CLIENT") == "skip" then
        pending("node-redis not installed: npm could not reach the registry")
        return
      end
      error("node-redis is not installed: run `npm ci` in tests/clients/node (./dev test does)")
    end
    run_client{ "node", NODE_DIR .. "/clients_test.js", tostring(srv.port) }
  end)

  it("stops cleanly after the clients: exit 0, no sanitizer report", function()
    H.assert_clean_exit(srv)
  end)
end)
