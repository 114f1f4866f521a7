-- catalog.lua -- fail-open. GET catalog:<id>
-- When the origin fails (error, 5xx, timeout), keep answering the last good
-- value for up to a day past its expiry (stale_if_error), and answer the
-- error itself for 5 s (error_ttl) so a dead origin is not hammered.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 300,
  stale_if_error = 86400,
  error_ttl = 5,
  fetch_timeout = 2,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/catalog/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
