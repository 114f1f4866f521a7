-- tests/helpers/resp.lua -- a small RESP2 client over luasocket, for tests.
--
--   local resp = require "tests.helpers.resp"
--   local c = resp.connect("127.0.0.1", port, 5)   -- timeout (s), default 5
--   c:call("SET", "k", "v")        --> "OK", "status"
--   c:call("GET", "k")             --> "v", "bulk"
--   c:call("GET", "nope")          --> nil, "nil"
--   c:call("NOPE")                 --> {err = "ERR unknown command ..."}, "error"
--   c:call("DEL", "k")             --> 1, "integer"
--   c:call("MGET", "a", "b")       --> {n = 2, "x", nil}, "array"
--
-- Reply mapping (second return value is the kind):
--   +status  -> string                       kind "status"
--   -error   -> table {err = "<text>"}       kind "error"  (text without "-",
--               e.g. "ERR unknown namespace 'x'"; resp.is_err(v) tests for it)
--   :int     -> integer                      kind "integer"
--   $bulk    -> string (binary-safe)         kind "bulk"
--   $-1, *-1 -> nil                          kind "nil"
--   *array   -> table with field n = element count (nil elements keep
--               their position: t[i] == nil, i <= t.n)   kind "array"
--
-- Every read is bounded: a whole reply must arrive within the connection's
-- timeout (c:settimeout), else an error "resp: timeout ..." is raised; a
-- peer close raises "resp: connection closed ...". Pipelining: c:send(...)
-- / c:send_raw(bytes) many times, then c:read_reply() as many times. (Send
-- very large pipelines in batches: nobody is reading replies while you send.)
local socket = require "socket"

local M = {}

local Conn = {}
Conn.__index = Conn

function M.is_err(v)
  return type(v) == "table" and v.err ~= nil
end

function M.encode(...)
  local n = select("#", ...)
  local parts = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local a = select(i, ...)
    a = tostring(a)
    parts[#parts + 1] = "$" .. #a .. "\r\n"
    parts[#parts + 1] = a
    parts[#parts + 1] = "\r\n"
  end
  return table.concat(parts)
end

-- connect(host, port, timeout) -> conn; raises on failure.
function M.connect(host, port, timeout)
  host = host or "127.0.0.1"
  timeout = timeout or 5
  local sock = socket.tcp()
  sock:settimeout(timeout)
  local ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    error(string.format("resp: cannot connect to %s:%s: %s", host, tostring(port), tostring(err)), 2)
  end
  sock:setoption("tcp-nodelay", true)
  return setmetatable({ sock = sock, host = host, port = port, timeout = timeout,
                        buf = "", pos = 1, closed = false }, Conn)
end

-- Like connect, but returns nil, err instead of raising.
function M.try_connect(host, port, timeout)
  local ok, c = pcall(M.connect, host, port, timeout)
  if ok then return c end
  return nil, c
end

function Conn:settimeout(t) self.timeout = t end

function Conn:where()
  return string.format("%s:%s", self.host, tostring(self.port))
end

function Conn:send_raw(bytes)
  if self.closed then error("resp: send on closed connection to " .. self:where(), 2) end
  self.sock:settimeout(self.timeout)
  local i = 1
  while i <= #bytes do
    local last, err, partial = self.sock:send(bytes, i)
    if not last then
      error(string.format("resp: send to %s failed: %s (%d of %d bytes sent)",
        self:where(), tostring(err), (partial or i - 1), #bytes), 2)
    end
    i = last + 1
  end
  return true
end

-- send(...) : send one command without reading its reply (pipelining).
function Conn:send(...)
  return self:send_raw(M.encode(...))
end

-- Make more bytes available in self.buf, waiting at most until deadline.
function Conn:fill(deadline)
  if self.pos > 65536 then
    self.buf = self.buf:sub(self.pos)
    self.pos = 1
  end
  while true do
    local remaining = deadline - socket.gettime()
    if remaining <= 0 then
      error(string.format("resp: timeout after %gs waiting for a reply from %s (buffered: %q)",
        self.timeout, self:where(), self.buf:sub(self.pos, self.pos + 200)), 0)
    end
    local r = socket.select({ self.sock }, nil, remaining)
    if r and #r > 0 then
      self.sock:settimeout(0)
      local data, err, partial = self.sock:receive(1048576)
      local chunk = data or partial
      if chunk and #chunk > 0 then
        self.buf = self.buf .. chunk
        return
      end
      if err and err ~= "timeout" then
        self.closed = true
        error(string.format("resp: connection closed by %s (%s; buffered: %q)",
          self:where(), err, self.buf:sub(self.pos, self.pos + 200)), 0)
      end
    end
  end
end

function Conn:read_line(deadline)
  while true do
    local s, e = self.buf:find("\r\n", self.pos, true)
    if s then
      local line = self.buf:sub(self.pos, s - 1)
      self.pos = e + 1
      return line
    end
    self:fill(deadline)
  end
end

function Conn:read_bytes(n, deadline)
  while #self.buf - self.pos + 1 < n do self:fill(deadline) end
  local s = self.buf:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end

function Conn:parse(deadline)
  local line = self:read_line(deadline)
  local t, rest = line:sub(1, 1), line:sub(2)
  if t == "+" then
    return rest, "status"
  elseif t == "-" then
    return { err = rest }, "error"
  elseif t == ":" then
    local v = math.tointeger(tonumber(rest))
    if not v then error("resp: bad integer reply " .. string.format("%q", line), 0) end
    return v, "integer"
  elseif t == "$" then
    local n = math.tointeger(tonumber(rest))
    if not n then error("resp: bad bulk length " .. string.format("%q", line), 0) end
    if n < 0 then return nil, "nil" end
    local s = self:read_bytes(n + 2, deadline)
    if s:sub(-2) ~= "\r\n" then error("resp: bulk not terminated by CRLF", 0) end
    return s:sub(1, n), "bulk"
  elseif t == "*" then
    local n = math.tointeger(tonumber(rest))
    if not n then error("resp: bad array length " .. string.format("%q", line), 0) end
    if n < 0 then return nil, "nil" end
    local arr = { n = n }
    for i = 1, n do arr[i] = self:parse(deadline) end
    return arr, "array"
  -- RESP3 (after HELLO 3): null, map, double, verbatim string, boolean
  elseif t == "_" then
    return nil, "null"
  elseif t == "%" then
    local n = math.tointeger(tonumber(rest))
    if not n then error("resp: bad map length " .. string.format("%q", line), 0) end
    local map = {}
    for _ = 1, n do
      local k = self:parse(deadline)
      map[k] = self:parse(deadline)
    end
    return map, "map"
  elseif t == "," then
    return tonumber(rest), "double"
  elseif t == "=" then
    local n = math.tointeger(tonumber(rest))
    local s = self:read_bytes(n + 2, deadline)
    return s:sub(5, n), "verbatim" -- after the "txt:" format
  elseif t == "#" then
    return rest == "t", "boolean"
  else
    error(string.format("resp: unexpected reply line from %s: %q", self:where(), line), 0)
  end
end

-- read_reply([timeout]) -> value, kind   (one whole reply within timeout)
function Conn:read_reply(timeout)
  return self:parse(socket.gettime() + (timeout or self.timeout))
end

-- read_raw_reply([timeout]) -> the exact bytes of the next reply (for
-- wire-format assertions, e.g. "-ERR key must be namespace:id\r\n").
function Conn:read_raw_reply(timeout)
  local start = self.pos
  self:parse(socket.gettime() + (timeout or self.timeout))
  return self.buf:sub(start, self.pos - 1)
end

-- call(...) -> value, kind : send one command and read its reply.
function Conn:call(...)
  self:send(...)
  return self:read_reply()
end

-- inline(line) -> value, kind : send an inline command ("GET user:42").
function Conn:inline(line)
  self:send_raw(line .. "\r\n")
  return self:read_reply()
end

-- pipeline{ {"SET","a","1"}, {"GET","a"}, ... } -> { {value, kind}, ... }
function Conn:pipeline(cmds)
  local out = {}
  for i = 1, #cmds do out[#out + 1] = M.encode(table.unpack(cmds[i], 1, cmds[i].n or #cmds[i])) end
  self:send_raw(table.concat(out))
  local replies = {}
  for i = 1, #cmds do
    local v, k = self:read_reply()
    replies[i] = { v, k }
  end
  return replies
end

-- closed_within(t) -> true if the peer closes the connection within t
-- seconds (any bytes it sends first are kept in the buffer), false if not.
function Conn:closed_within(t)
  if self.closed then return true end
  local deadline = socket.gettime() + (t or self.timeout)
  while socket.gettime() < deadline do
    local ok, err = pcall(self.fill, self, deadline)
    if not ok then
      if tostring(err):find("closed", 1, true) then return true end
      return false
    end
  end
  return false
end

-- pending() -> bytes received but not consumed by a read yet.
function Conn:pending() return self.buf:sub(self.pos) end

function Conn:close()
  if not self.closed then
    self.closed = true
    self.sock:close()
  end
end

return M
