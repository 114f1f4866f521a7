-- top_items.lua -- warming at start and on a schedule. GET top_items:<rank>
-- The 5 best sellers are loaded when the namespace first serves and again
-- every 10 minutes (each id fetched as by REFRESH), so they are never
-- missed; the TTL outlives the schedule.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 900,
  warm_every = 600,
  warm = function(ctx)
    local ids = {}
    for rank = 1, 5 do ids[rank] = rank end   -- integers are fine: sent as "1".."5"
    ctx.log("info", "warming %d items", #ids)
    return ids
  end,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/top/" .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
