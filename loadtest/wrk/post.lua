-- wrk: POST a new user with a unique id on every request.
--   wrk -t2 -c64 -d10s --latency -s loadtest/wrk/post.lua http://127.0.0.1:8080/api/v1/users/ -- RUNPREFIX
-- id = <RUNPREFIX>[-<args[2]>]-<thread>-<counter>: unique per request within a run (wrk's threads are
-- numbered in setup(), each counts on its own), and across runs through the run prefix.
-- Keep the prefix to [A-Za-z0-9-] so ids match [A-Za-z0-9_-]{1,64} and `LIKE 'prefix-%'`
-- finds exactly this run's rows for clean-up.
local tid_counter = 0

function setup(thread)
  tid_counter = tid_counter + 1
  thread:set("tid", tid_counter)
end

local prefix, path
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  -- args[2] (bench.sh passes "w" for its warm-up run) keeps a second run with the same
  -- prefix off the first one's ids.
  local run = args[1] or os.getenv("RUN_PREFIX") or ("wrk" .. os.time())
  if args[2] then run = run .. "-" .. args[2] end
  prefix = run .. "-" .. (tid or 0) .. "-"
  path = wrk.path
end

function request()
  counter = counter + 1
  local id = prefix .. counter
  local body = '{"id":"' .. id .. '","first_name":"Bench","last_name":"Post' .. counter ..
    '","email":"' .. id .. '@example.com"}'
  return wrk.format("POST", path, headers, body)
end
