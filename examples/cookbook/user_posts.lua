-- user_posts.lua -- pattern invalidation of paginated per-user lists.
-- GET user_posts:5:1, user_posts:5:2, ... (user 5's posts, page by page).
-- A new post shifts every page, so EVENT user_posts created {"user_id":5}
-- drops all of that user's pages with one pattern: user_posts:5:*.
-- (data.user_id is an integer: the server's JSON keeps 5 as 5, not 5.0.)
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 300,
  fetch = function(id, ctx)
    local user, page = id:match("^(%d+):(%d+)$")
    if not user then return nil end
    local res = ctx.http.get(ORIGIN .. "/users/" .. user .. "/posts?page=" .. page)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    return res.body
  end,
  on_event = function(name, data, ctx)
    if type(data) == "table" and data.user_id then
      return { patterns = { "user_posts:" .. data.user_id .. ":*" } }
    end
  end,
}
