-- policies/user_widgets.lua -- keys "user_widgets:<owner>:<page>", e.g.
-- GET user_widgets:5:1
--
-- Paginated per-user lists: widget.lua's on_event drops every page of an
-- owner at once with the pattern "user_widgets:<owner>:*". The demo origin
-- answers them from /echo (what it was asked), which is enough to see a
-- page fetched, cached and invalidated.
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 300,
  fetch = function(id, ctx)
    local owner, page = id:match("^(%d+):(%d+)$")
    if not owner then return nil end -- not an owner:page id
    local res = ctx.http.get(ORIGIN .. "/echo/users/" .. owner .. "/widgets?page=" .. page)
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
}
