-- article.lua -- tag invalidation. GET article:<id>
-- Each article is tagged with its author and section; one EVENT (or
-- PURGETAG author:3) drops every article of that author, whatever its id.
local json = require "cjson"
local ORIGIN = "http://127.0.0.1:8080"

return {
  ttl = 3600,
  fetch = function(id, ctx)
    local res = ctx.http.get(ORIGIN .. "/articles/" .. id)
    if res.status == 404 then return nil end
    if res.status ~= 200 then error("origin said " .. res.status) end
    local a = json.decode(res.body)
    return res.body, { tags = { "author:" .. a.author_id, "section:" .. a.section } }
  end,
  on_event = function(name, data, ctx)   -- EVENT article author_renamed {"author_id":3}
    if type(data) ~= "table" then return nil end
    if name == "author_renamed" then return { tags = { "author:" .. data.author_id } } end
    if name == "section_moved" then return { tags = { "section:" .. data.section } } end
  end,
}
