-- policies/report.lua -- keys "report:<id>", e.g. GET report:7
--
-- An expensive computed value (the origin's /slow/<id> takes ~0.3 s). The
-- goal is that almost no client ever waits for the computation:
--   * a long ttl, because recomputing is costly;
--   * early_refresh: as expiry nears, a request is chosen at random (XFetch,
--     weighted by how long the last fetch took) to recompute in time, so the
--     entry is renewed before it goes stale instead of all at once after;
--   * stale_ttl: if it does expire, clients get the old report at once while
--     ONE background fetch recomputes it;
--   * fetch_timeout well above the normal 0.3 s (and lock_timeout above that)
--     so a slow-but-working computation isn't cut off and retried by every
--     waiter -- which would multiply the load the cache is meant to absorb.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl            = 3600,
  ttl_jitter     = 0.05,
  early_refresh  = 1.0,   -- XFetch beta; 1.0 is the usual setting, >1 refreshes earlier
  stale_ttl      = 600,
  stale_if_error = 3600,
  negative_ttl   = 0,     -- don't cache "not found": reports appear when computed
  fetch_timeout  = 10,
  lock_timeout   = 15,    -- longer than fetch_timeout: waiters don't take over a live fill

  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/slow/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
