-- cart.lua -- per-user keys. GET cart:<user id>
-- One entry per user; the id is the user, and the origin is asked on that
-- user's behalf. Never cache one user's data under a key another user's
-- request can reach: the user is part of the key, not a request header.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 30,
  l1_ttl = 0,     -- carts change often: always read Redis
  fetch = function(id, ctx)
    if not id:find("^%d+$") then return nil end
    local res = ctx.http.get(ORIGIN .. "/cart", { headers = { ["X-User-Id"] = id } })
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
  on_event = function(name, data, ctx)   -- EVENT cart changed {"user_id":7}
    if type(data) == "table" and data.user_id then return { keys = { "cart:" .. data.user_id } } end
  end,
}
