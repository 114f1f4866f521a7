-- policies/user.lua -- keys "user:<id>", e.g. GET user:42
--
-- Shows two things: a TTL computed from the value, and fetch returning a
-- Lua table (the server stores and answers it as JSON).
local json = require "cjson"

local ORIGIN = "http://127.0.0.1:8080"

return {
  -- ttl may be a function of the id and the fetched value (the table fetch
  -- returned). VIP profiles change often: keep them 1 min; others 10 min.
  ttl = function(id, value)
    if type(value) == "string" then value = json.decode(value) end
    if type(value) == "table" and value.tier == "vip" then return 60 end
    return 600
  end,
  ttl_jitter     = 0.1,
  negative_ttl   = 60,   -- unknown users are looked up at most once a minute
  stale_if_error = 300,
  fetch_timeout  = 2,    -- a user lookup slower than 2 s counts as a failure

  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/users/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    local u = json.decode(res.body)
    -- Keep only what clients need; a table is stored as JSON.
    return { id = u.id, name = u.name, email = u.email, tier = u.tier }
  end,

  -- EVENT user updated {"id":42}
  on_event = function(name, data, ctx)
    if type(data) == "table" and data.id then
      return { keys = { "user:" .. data.id } }
    end
    return {}
  end,
}
