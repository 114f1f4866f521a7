-- product.lua -- write-through invalidation of related keys.
-- GET product:42 (the product) and GET product:42:reviews (its reviews).
-- The application writes to its database, then sends
--   EVENT product updated {"id":42}       -> drops product:42
--   EVENT product reviewed {"id":42}      -> drops product:42:reviews and
--                                            product:42 (it shows the rating)
-- so the next GET refetches; nothing waits for a TTL.
local json = require "cjson"
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 3600,
  fetch = function(id, ctx)
    local pid, part = id:match("^(%d+):?(%a*)$")
    if not pid then return nil end                     -- not an id of ours
    local path = part == "reviews" and "/products/" .. pid .. "/reviews" or "/products/" .. pid
    local res = ctx.http.get(ORIGIN .. path)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
  on_event = function(name, data, ctx)
    if type(data) ~= "table" or not data.id then return nil end
    if name == "updated" then return { keys = { "product:" .. data.id } } end
    if name == "reviewed" then
      return { keys = { "product:" .. data.id, "product:" .. data.id .. ":reviews" } }
    end
  end,
}
