-- policies/widget.lua -- keys "widget:<id>", e.g. GET widget:42
--
-- A typical JSON HTTP API behind the cache. The file returns a table; every
-- field but fetch is optional (SPEC section 4). The demo origin is
-- examples/origin.py on port 8080.
local json = require "cjson"

local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl            = 600,  -- seconds an entry is fresh
  ttl_jitter     = 0.1,  -- +-10% per entry, so a warm batch doesn't expire at once
  negative_ttl   = 30,   -- remember "no such widget" (fetch returned nil) for 30 s
  stale_ttl      = 120,  -- up to 2 min past expiry: answer stale now, refresh once in background
  stale_if_error = 600,  -- up to 10 min past expiry: answer stale if the origin is failing

  -- Called on a miss, as a coroutine: ctx.http.get parks it without blocking
  -- the server. Return the value (a string here: the origin's JSON as is) and
  -- optional metadata; return nil for "not found"; raise for an error (which
  -- is not cached, so the next request tries again). Transport errors raise too.
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/widgets/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    local w = json.decode(res.body)
    -- Tags let one PURGETAG owner:5 drop every widget of owner 5.
    return res.body, { tags = { "owner:" .. w.owner_id } }
  end,

  -- EVENT widget updated {"id":42,"owner_id":5}
  -- Return what the event makes stale; the server removes it everywhere.
  on_event = function(name, data, ctx)
    if type(data) ~= "table" then return {} end   -- payload wasn't JSON
    if name == "updated" or name == "deleted" then
      return { keys     = { "widget:" .. data.id, "widget_count:global" },
               patterns = { "user_widgets:" .. data.owner_id .. ":*" } }
    elseif name == "owner_changed" then
      return { tags = { "owner:" .. data.owner_id } }
    end
    return {}
  end,

  -- Ids loaded at start-up and on "WARM widget".
  warm = function(ctx) return { "1", "2", "3" } end,
}
