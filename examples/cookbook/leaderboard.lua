-- leaderboard.lua -- XFetch early refresh. GET leaderboard:<game>
-- An expensive value (the origin takes seconds). With early_refresh = 1.0,
-- each hit near expiry refreshes in the background with a probability that
-- rises toward expiry, weighted by how long the last fetch took: the entry
-- is renewed before it expires, by one request, instead of by a stampede.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 300,
  early_refresh = 1.0,
  fetch_timeout = 20,     -- a slow but working computation is not cut off
  lock_timeout = 30,      -- longer than fetch_timeout
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/leaderboards/" .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
