-- wrk: the live user status server's batch status, POST /status {"userIds":[...]} with BATCH random ids of USERS.
--   wrk -t2 -c128 -d10s --latency -s loadtest/wrk/status-batch.lua http://127.0.0.1:8080/status -- PREFIX USERS BATCH
-- Bodies are built ahead (256 of them) so the generator spends its time sending, not concatenating.
local bodies = {}
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local prefix = args[1] or "hb"
  local users = tonumber(args[2] or "10000")
  local batch = tonumber(args[3] or "50")
  math.randomseed(os.time() + (tid or 0))
  for b = 1, 256 do
    local ids = {}
    for i = 1, batch do
      ids[i] = '"' .. prefix .. "-" .. math.random(users) .. '"'
    end
    bodies[b] = '{"userIds":[' .. table.concat(ids, ",") .. "]}"
  end
end

local n = 0
function request()
  n = n % #bodies + 1
  return wrk.format("POST", wrk.path, headers, bodies[n])
end
