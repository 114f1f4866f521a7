-- price.lua -- refresh-ahead with stale_ttl. GET price:<sku>
-- For 60 s after a price expires, clients get the old price at once while
-- ONE background fetch (across all instances) loads the new one: nobody
-- waits for the origin once the key is warm.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 60,
  stale_ttl = 60,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/prices/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
