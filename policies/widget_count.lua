-- policies/widget_count.lua -- keys "widget_count:<scope>", e.g. GET widget_count:global
--
-- A derived value that widget.lua's on_event invalidates whenever a widget
-- changes. The demo origin has no count endpoint, so this one asks its
-- /echo endpoint (it answers what it was asked): the point is the
-- invalidation, not the number.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 60,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/echo/widget_count/" .. id)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
