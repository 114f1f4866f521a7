-- session_ttl.lua -- jittered TTLs. GET session_ttl:<id>
-- Entries loaded together (a warm run, a traffic spike after a deploy) would
-- all expire together and hit the origin together. ttl_jitter = 0.2 spreads
-- each entry's TTL uniformly over 600 s +-20% (480..720 s), per entry.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 600,
  ttl_jitter = 0.2,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/sessions/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
