-- account.lua -- cache-aside with negative caching. GET account:17
-- A miss fetches; "no such account" is cached too (negative_ttl), so a
-- client probing unknown ids does not reach the origin on every request.
-- A deleted account (410) is remembered longer: that answer will not change.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 600,
  negative_ttl = 60,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/accounts/" .. id)
    if res.status == 404 then return nil end                    -- cached 60 s
    if res.status == 410 then return nil, { ttl = 86400 } end   -- cached a day
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
