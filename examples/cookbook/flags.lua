-- flags.lua -- the in-process tier over Redis. GET flags:<service>
-- Read on every request by every instance: l1_ttl = 10 keeps each value in
-- each instance's memory, so hits need no Redis round trip. An EVENT on any
-- instance drops the key in Redis and, over pub/sub, from every instance's
-- tier within milliseconds; l1_ttl only bounds staleness when that message
-- is lost or the value is changed in Redis behind luacached's back.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 60,
  l1_ttl = 10,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/flags/" .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
  on_event = function(name, data, ctx)   -- EVENT flags changed {"service":"checkout"}
    if type(data) == "table" and data.service then return { keys = { "flags:" .. data.service } } end
  end,
}
