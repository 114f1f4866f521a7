-- country.lua -- TTL-only reference data. GET country:FR
-- Data that changes a few times a year: a long TTL and nothing else. No
-- on_event: when a country changes, PURGE country:* (or wait a day).
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 86400,   -- one day
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/countries/" .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
