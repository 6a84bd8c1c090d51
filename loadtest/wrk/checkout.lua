-- wrk: the flash sale's POST /checkout and POST /purchase (the Flash Sale API), three modes chosen by
-- the first script argument. loadtest/bench-sale.sh runs all three.
--
--   contend: checkouts under contention, a random user and a random item per request
--     wrk -t2 -c64 -d10s --latency -s loadtest/wrk/checkout.lua http://127.0.0.1:8080/checkout \
--       -- contend <item-prefix> <items> <user-prefix> <users>
--     item <item-prefix><n>, n in 0..items-1; user <user-prefix><m>, m in 0..users-1. With
--     few items nearly every answer is a refusal (409/429): one Redis round trip each.
--   holds: one fresh item and one fresh user per request, each 200's code appended to
--     <codes-file>.<thread> (one code a line): the holds the purchase mode then buys
--     wrk -t2 -c64 -d10s -s loadtest/wrk/checkout.lua http://127.0.0.1:8080/checkout \
--       -- holds <prefix> <codes-file>
--     item and user are both <prefix><thread>-<n> (distinct per request; keep <prefix> to
--     [A-Za-z0-9_-] and short: ids are 64 characters at most).
--   purchase: POST /purchase?code=<code> over the codes of a file, each code once
--     wrk -t2 -c64 -d10s --latency -s loadtest/wrk/checkout.lua http://127.0.0.1:8080/purchase \
--       -- purchase <codes-file> <wrk threads>
--     Thread t (1-based) takes the codes on lines t, t+T, t+2T, ... (T = <wrk threads>, which
--     must be wrk's -t) in order, so no code is sent twice while codes last. A thread whose
--     codes ran out goes round them again: those are repeat purchases (idempotent 200s),
--     counted apart and left out of the first-purchase rate.
--
-- The URL's path (any query dropped) is the endpoint. Every mode counts the answers per
-- status class in response() (each thread its own counters) and done() prints their sums:
--   checkout.lua: mode <m> 2xx <n> 4xx <n> 5xx <n> other <n>
-- plus, per mode:
--   contend:  checkout.lua: refusals <code>=<n> ...          (the "code" of each 4xx body)
--   holds:    checkout.lua: holds <n> written to <codes-file>.<thread>
--   purchase: checkout.lua: first <n> first_ok <n> first_failed <n> repeat <n> repeat_ok <n>
--               repeat_failed <n> exhausted <0|1> window_s <s> first_ok_per_s <r|nan>
--             checkout.lua thread <t>: first_ok <n> first_failed <n> ran_out_s <s|->  (one per thread)
-- The 5xx count is exact (wrk's own "Non-2xx or 3xx responses" also lumps in the refusals).
-- first/repeat are told apart by the order of the answers on each thread: exact in the
-- counts while codes last; when they run out, to within the requests in flight (at most
-- the thread's connections). window_s runs from a thread's first request to the answer
-- that used up its codes (or its last answer), the longest over the threads; it needs
-- LuaJIT's ffi for a wall clock (wrk's Debian build has it); without it, first_ok_per_s
-- is over wrk's whole duration when no thread ran out, "nan" when one did.
-- wrk calls request() once on thread 1 before the run (to check the request): in purchase
-- mode that moves thread 1's start to its 2nd code, and its 1st goes out as its last first
-- purchase, so the first pass still sends each code once.

local tid_counter = 0
local threads = {}

function setup(thread)
  tid_counter = tid_counter + 1
  thread:set("tid", tid_counter)
  table.insert(threads, thread)
end

-- A wall clock in seconds (monotonic, shared by the threads), when LuaJIT's ffi is there.
local now = nil
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    local defined = pcall(ffi.cdef, [[
      typedef struct { long tv_sec; long tv_nsec; } sg_timespec;
      int clock_gettime(int clk_id, sg_timespec *tp);
    ]])
    if defined then
      local ts = ffi.new("sg_timespec")
      now = function()
        ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
        return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
      end
    end
  end
end

-- Per-thread counters: globals, so done() can read them with thread:get().
n2xx, n4xx, n5xx, nother = 0, 0, 0, 0
refusals = {}                      -- contend: refusal code -> count (thread:get copies tables)
holds = 0                          -- holds: codes written
first_ok, first_failed, repeat_ok, repeat_failed = 0, 0, 0, 0
exhausted, t_start, t_firsts_done, t_last = 0, -1, -1, -1

mode_name = nil                    -- the mode, for done()
local mode
local head, mid, tail          -- request pieces around the ids (from wrk.format)
local items, users = {}, {}    -- contend
local prefix, out, counter     -- holds
local reqs, nreqs, next_req, answers = {}, 0, 0, 0 -- purchase

-- The request wrk.format builds for <endpoint>?<k1>=\1[&<k2>=\2], cut at the markers, so a
-- request is a few concatenations (wrk's Host header and all).
local function pieces(endpoint, k1, k2)
  local q = endpoint .. "?" .. k1 .. "=\1" .. (k2 and ("&" .. k2 .. "=\2") or "")
  local r = wrk.format("POST", q)
  local a = r:find("\1", 1, true)
  if not k2 then return r:sub(1, a - 1), nil, r:sub(a + 1) end
  local b = r:find("\2", 1, true)
  return r:sub(1, a - 1), r:sub(a + 1, b - 1), r:sub(b + 1)
end

function init(args)
  mode = args[1]
  mode_name = mode
  local endpoint = wrk.path:gsub("%?.*$", "")
  math.randomseed(os.time() * 1000 + (tid or 0))
  if mode == "contend" then
    local ip, ni, up, nu = args[2], tonumber(args[3]), args[4], tonumber(args[5])
    assert(ip and ni and up and nu and ni >= 1 and nu >= 1,
      "checkout.lua contend: <item-prefix> <items> <user-prefix> <users>")
    for i = 0, ni - 1 do items[#items + 1] = ip .. i end
    for u = 0, nu - 1 do users[#users + 1] = up .. u end
    head, mid, tail = pieces(endpoint, "user_id", "id")
  elseif mode == "holds" then
    assert(args[2] and args[3], "checkout.lua holds: <prefix> <codes-file>")
    prefix = args[2] .. (tid or 0) .. "-"
    out = assert(io.open(args[3] .. "." .. (tid or 0), "a"))
    out:setvbuf("line") -- wrk never closes a thread's Lua state: write each code through
    counter = 0
    head, mid, tail = pieces(endpoint, "user_id", "id")
  elseif mode == "purchase" then
    local path, nthreads = args[2], tonumber(args[3])
    assert(path and nthreads and nthreads >= 1, "checkout.lua purchase: <codes-file> <wrk threads>")
    local pre, _, post = pieces(endpoint, "code")
    local t, n = tid or 1, 0
    for line in io.lines(path) do
      local code = line:gsub("%s+", "")
      if #code > 0 then
        n = n + 1
        if (n - 1) % nthreads == t - 1 then reqs[#reqs + 1] = pre .. code .. post end
      end
    end
    nreqs = #reqs
    assert(nreqs > 0, "checkout.lua purchase: no codes for thread " .. t .. " in " .. path)
  else
    error("checkout.lua: first argument: contend | holds | purchase (got " .. tostring(mode) .. ")")
  end
end

function request()
  if mode == "contend" then
    return head .. users[math.random(#users)] .. mid .. items[math.random(#items)] .. tail
  elseif mode == "holds" then
    counter = counter + 1
    local id = prefix .. counter
    return head .. id .. mid .. id .. tail
  end
  if t_start < 0 and now then t_start = now() end
  next_req = next_req % nreqs + 1
  return reqs[next_req]
end

local function count(status)
  if status >= 200 and status < 300 then n2xx = n2xx + 1
  elseif status >= 400 and status < 500 then n4xx = n4xx + 1
  elseif status >= 500 then n5xx = n5xx + 1
  else nother = nother + 1 end
end

function response(status, headers, body)
  count(status)
  if mode == "contend" then
    if status >= 400 and status < 500 then
      local c = body and body:match('"code"%s*:%s*"([%w_]+)"') or ("HTTP" .. status)
      refusals[c] = (refusals[c] or 0) + 1
    end
  elseif mode == "holds" then
    if status == 200 then
      local c = body and body:match('"code"%s*:%s*"(%x+)"')
      if c then
        out:write(c, "\n")
        holds = holds + 1
      end
    end
  else
    answers = answers + 1
    local ok = status == 200
    if answers <= nreqs then
      if ok then first_ok = first_ok + 1 else first_failed = first_failed + 1 end
      if answers == nreqs then
        exhausted = 1
        if now then t_firsts_done = now() end
      end
    else
      if ok then repeat_ok = repeat_ok + 1 else repeat_failed = repeat_failed + 1 end
    end
    if now then t_last = now() end
  end
end

function done(summary, latency, requests)
  local s = { n2xx = 0, n4xx = 0, n5xx = 0, nother = 0, holds = 0, first_ok = 0, first_failed = 0,
              repeat_ok = 0, repeat_failed = 0, exhausted = 0 }
  local codes = {}
  local t0, t1 = nil, nil
  local m = nil
  for _, t in ipairs(threads) do
    for k in pairs(s) do s[k] = s[k] + (tonumber(t:get(k)) or 0) end
    m = m or t:get("mode_name")
    for k, v in pairs(t:get("refusals") or {}) do codes[k] = (codes[k] or 0) + v end
    local ts, te = tonumber(t:get("t_start")) or -1, tonumber(t:get("t_firsts_done")) or -1
    if te < 0 then te = tonumber(t:get("t_last")) or -1 end
    if ts >= 0 and te >= 0 then
      t0 = (t0 == nil or ts < t0) and ts or t0
      t1 = (t1 == nil or te > t1) and te or t1
    end
  end
  io.write(string.format("checkout.lua: mode %s 2xx %d 4xx %d 5xx %d other %d\n",
    m or "?", s.n2xx, s.n4xx, s.n5xx, s.nother))
  if m == "contend" then
    local parts = {}
    for k, v in pairs(codes) do parts[#parts + 1] = k .. "=" .. v end
    table.sort(parts)
    io.write("checkout.lua: refusals ", (#parts > 0 and table.concat(parts, " ") or "none"), "\n")
  elseif m == "holds" then
    io.write(string.format("checkout.lua: holds %d written\n", s.holds))
  elseif m == "purchase" then
    local first = s.first_ok + s.first_failed
    local window, rate
    if t0 and t1 and t1 > t0 then
      window = t1 - t0
    elseif s.exhausted == 0 then
      window = summary.duration / 1e6
    end
    rate = window and string.format("%.1f", s.first_ok / window) or "nan"
    -- Per thread, for the log: its first purchases and when (from the earliest start) its
    -- codes ran out. Not "checkout.lua: ...", so bench-sale.sh's parser skips these lines.
    for i, t in ipairs(threads) do
      local te = tonumber(t:get("t_firsts_done")) or -1
      io.write(string.format("checkout.lua thread %d: first_ok %d first_failed %d ran_out_s %s\n", i,
        tonumber(t:get("first_ok")) or 0, tonumber(t:get("first_failed")) or 0,
        (te >= 0 and t0) and string.format("%.3f", te - t0) or "-"))
    end
    io.write(string.format(
      "checkout.lua: first %d first_ok %d first_failed %d repeat %d repeat_ok %d repeat_failed %d exhausted %d window_s %s first_ok_per_s %s\n",
      first, s.first_ok, s.first_failed, s.repeat_ok + s.repeat_failed, s.repeat_ok, s.repeat_failed,
      s.exhausted > 0 and 1 or 0, window and string.format("%.3f", window) or "nan", rate))
  end
end
