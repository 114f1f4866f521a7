-- policies/kv_behind.lua -- keys "kv_behind:<id>": write-behind.
--
-- SET kv_behind:<id> value answers as soon as the write is queued in Redis
-- and cached; the instances then flush the queue to the origin in batches
-- (POST /kv/_batch of the demo origin, examples/origin.py): at most 100
-- writes per call, every 5 s, only the last write per id of a batch. A
-- batch that fails is retried with backoff; after 10 retries its writes
-- wait in the dead letters (WRITES kv_behind, WRITES kv_behind RETRY).
local json = require "cjson"
local ORIGIN = "http://127.0.0.1:8080/kv/"

return {
  ttl = 300,
  write_behind = { delay = 5, batch = 100, coalesce = true, max_retries = 10 },

  fetch = function(id, ctx) -- a miss reads what the origin has
    local res = ctx.http.get(ORIGIN .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,

  -- items = { {op = "set"|"del", id =, value =, seq =}, ... }; an error
  -- keeps the whole batch queued for a retry.
  write_batch = function(items, ctx)
    local res = ctx.http.request{
      method = "POST", url = ORIGIN .. "_batch", body = json.encode(items),
      headers = { ["Content-Type"] = "application/json" },
    }
    if res.status >= 300 then error("origin said " .. res.status) end
  end,
}
