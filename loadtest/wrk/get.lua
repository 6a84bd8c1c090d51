-- wrk: GET <url-path><id> for ids picked at random from a file (one id a line).
--   wrk -t2 -c64 -d10s --latency -s loadtest/wrk/get.lua http://127.0.0.1:8080/api/v1/users/ -- ids.txt
-- The URL's path is the prefix each id is appended to. Every request is pre-formatted in
-- init(), so wrk's Lua side costs one table lookup per request.
local tid_counter = 0

function setup(thread)
  tid_counter = tid_counter + 1
  thread:set("tid", tid_counter)
end

local reqs = {}

function init(args)
  local path = args[1] or os.getenv("IDS_FILE")
  assert(path, "get.lua: pass the ids file after --")
  local prefix = wrk.path
  if prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  for line in io.lines(path) do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("GET", prefix .. line)
    end
  end
  assert(#reqs > 0, "get.lua: no ids in " .. path)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

function request()
  return reqs[math.random(#reqs)]
end
