-- wrk: GET <url-path>?user_id=<id> for ids picked at random from a file (one id a line): the
-- read-through cache endpoint.
--   wrk -t2 -c128 -d10s --latency -s loadtest/wrk/cache.lua http://127.0.0.1:8080/v1/users -- ids.txt
-- The URL's path (any query in it is dropped) is the endpoint. Ids are sent as they are:
-- keep them to [A-Za-z0-9_-], which needs no escaping. Every request is pre-formatted in
-- init(), as in get.lua, so wrk's Lua side costs one table lookup per request.
local tid_counter = 0

function setup(thread)
  tid_counter = tid_counter + 1
  thread:set("tid", tid_counter)
end

local reqs = {}

function init(args)
  local path = args[1] or os.getenv("IDS_FILE")
  assert(path, "cache.lua: pass the ids file after --")
  local endpoint = wrk.path:gsub("%?.*$", "")
  for line in io.lines(path) do
    local id = line:gsub("%s+$", "")
    if #id > 0 then
      reqs[#reqs + 1] = wrk.format("GET", endpoint .. "?user_id=" .. id)
    end
  end
  assert(#reqs > 0, "cache.lua: no ids in " .. path)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

function request()
  return reqs[math.random(#reqs)]
end
