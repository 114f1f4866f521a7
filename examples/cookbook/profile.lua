-- profile.lua -- version bump. GET profile:<id>
-- The stored format changed (v2 adds "avatar"). Bumping version abandons
-- every entry stored under another version at once: no entry in the old
-- format is ever answered, with no FLUSHNS and no key renaming.
local json = require "cjson"
local ORIGIN = "http://127.0.0.1:8080"

return {
  version = 2,
  ttl = 900,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/profiles/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    local p = json.decode(res.body)
    return { v = 2, id = p.id, name = p.name, avatar = p.avatar_url }
  end,
}
