//! The sale's Lua scripts. Each runs atomically in Redis: one round trip decides a
//! checkout, with no WATCH/MULTI retries, so contention never turns into errors.
//!
//! Keys are built inside the scripts from a prefix (`ARGV[1]`, e.g. `sg:sale:`) and the
//! sale id: this deployment uses one Redis; on Redis Cluster they would need a hash tag.
//! - `<P>sold`                 hash item -> code: items sold (never expires; a rebuild loads the
//!   current sale's, a purchase refused as sold elsewhere adds the item)
//! - `<P>item:<item>`          the live hold's code (PX = hold lifetime)
//! - `<P>hold:<code>`          hash user, item, sid, exp, status (held|purchasing|purchased|expired|released)
//! - `<P><sid>:holds`          zset code -> expiry ms (live holds of the sale)
//! - `<P><sid>:taken`          live holds + purchases of the sale (its capacity in use)
//! - `<P><sid>:user:<user>`    the user's live holds + purchases in the sale
//! - `<P><sid>:stats`          hash of the seed's counters
//! - `<P><sid>:ready`          set once the sale's state is loaded (rebuilt from Postgres)

/// Frees every hold of sale `S` whose expiry passed: the item, the user's allowance and
/// the sale's capacity come back. Shared by the scripts below.
const SWEEP: &str = r"
local function free_hold(P, S, c, h)
  redis.call('DECR', S .. 'user:' .. h[1])
  redis.call('DECR', S .. 'taken')
  if redis.call('GET', P .. 'item:' .. h[2]) == c then redis.call('DEL', P .. 'item:' .. h[2]) end
  redis.call('HSET', P .. 'hold:' .. c, 'status', 'expired')
  redis.call('ZREM', S .. 'holds', c)
end
local function sweep(P, S, now)
  local expired = redis.call('ZRANGEBYSCORE', S .. 'holds', '-inf', now, 'LIMIT', 0, 500)
  for _, c in ipairs(expired) do
    local h = redis.call('HMGET', P .. 'hold:' .. c, 'user', 'item', 'status')
    if h[3] == 'held' then free_hold(P, S, c, h) else redis.call('ZREM', S .. 'holds', c) end
  end
end
";

/// ARGV: prefix, sid, now ms, hold expiry ms, code, user, item, sale items, user limit,
/// keep-until ms (when the sale's keys may go), hold-record ms, mode.
/// Returns {OK} | {SOLD} | {RESERVED} | {SOLD_OUT} | {LIMIT} | {REBUILD} | {GONE}.
///
/// Mode `new` decides a checkout. Mode `confirm` runs after the hold's Postgres row has
/// committed, with the same hold (same expiry) and the current time: if the hold is still in
/// Redis it answers OK; if Redis lost it meanwhile (flushed, restarted, failed over, and
/// perhaps rebuilt from Postgres before that row existed) it places the hold again under the
/// same rules, or refuses. A hold that expired meanwhile (a long stall) is GONE. So a checkout
/// answers 200 only for a live hold that Redis holds AND a rebuild would load.
pub fn checkout() -> String {
    format!(
        "{SWEEP}{}",
        r"
local P, sid = ARGV[1], ARGV[2]
local S = P .. sid .. ':'
local now, exp = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('EXISTS', S .. 'ready') == 0 then return {'REBUILD'} end
sweep(P, S, now)
local code, user, item = ARGV[5], ARGV[6], ARGV[7]
if ARGV[12] == 'confirm' then
  if exp <= now then return {'GONE'} end
  local st = redis.call('HGET', P .. 'hold:' .. code, 'status')
  if st == 'held' then return {'OK'} end
  if st then return {'GONE'} end
end
local function fail(reason)
  redis.call('HINCRBY', S .. 'stats', 'failed_checkouts', 1)
  return {reason}
end
if redis.call('HEXISTS', P .. 'sold', item) == 1 then return fail('SOLD') end
if redis.call('EXISTS', P .. 'item:' .. item) == 1 then return fail('RESERVED') end
if tonumber(redis.call('GET', S .. 'taken') or '0') >= tonumber(ARGV[8]) then return fail('SOLD_OUT') end
if tonumber(redis.call('GET', S .. 'user:' .. user) or '0') >= tonumber(ARGV[9]) then return fail('LIMIT') end
redis.call('SET', P .. 'item:' .. item, code, 'PX', math.max(1, exp - now))
redis.call('HSET', P .. 'hold:' .. code, 'user', user, 'item', item, 'sid', sid, 'exp', ARGV[4], 'status', 'held')
redis.call('PEXPIRE', P .. 'hold:' .. code, ARGV[11])
redis.call('ZADD', S .. 'holds', exp, code)
redis.call('INCR', S .. 'user:' .. user)
redis.call('INCR', S .. 'taken')
redis.call('HINCRBY', S .. 'stats', 'successful_checkouts', 1)
for _, k in ipairs({S .. 'user:' .. user, S .. 'taken', S .. 'holds', S .. 'stats'}) do
  redis.call('PEXPIREAT', k, ARGV[10])
end
return {'OK'}
"
    )
}

/// Undoes a hold whose checkout did not answer 200 (its durable record could not be written,
/// or the answer timed out while the script may still run). Idempotent. ARGV: prefix, code,
/// hold-record ms. A hold Redis does not know gets a `released` record all the same (a
/// tombstone), so that a rebuild which read its Postgres row before the undo deleted it does
/// not load it afterwards. A hold already expired has given its item back: only the count of
/// successful checkouts is corrected.
pub const RELEASE: &str = r"
local P, c = ARGV[1], ARGV[2]
local k = P .. 'hold:' .. c
local h = redis.call('HMGET', k, 'user', 'item', 'status', 'sid')
if not h[3] then
  redis.call('HSET', k, 'status', 'released')
  redis.call('PEXPIRE', k, ARGV[3])
  return 0
end
if h[3] ~= 'held' and h[3] ~= 'expired' then return 0 end
local S = P .. h[4] .. ':'
redis.call('HINCRBY', S .. 'stats', 'successful_checkouts', -1)
if h[3] == 'held' then
  redis.call('DECR', S .. 'user:' .. h[1])
  redis.call('DECR', S .. 'taken')
  if redis.call('GET', P .. 'item:' .. h[2]) == c then redis.call('DEL', P .. 'item:' .. h[2]) end
  redis.call('ZREM', S .. 'holds', c)
end
redis.call('HSET', k, 'status', 'released')
return 1
";

/// Gives back a claimed hold whose purchase Postgres refused (the stock or the user's limit
/// is exhausted, or the item was sold with another code, given as ARGV[3], which the sold set
/// then learns). ARGV: prefix, code, the other code or ''.
pub const FORFEIT: &str = r"
local P, c = ARGV[1], ARGV[2]
local k = P .. 'hold:' .. c
local h = redis.call('HMGET', k, 'user', 'item', 'status', 'sid')
if h[3] ~= 'held' and h[3] ~= 'purchasing' then return 0 end
local S = P .. h[4] .. ':'
redis.call('DECR', S .. 'user:' .. h[1])
redis.call('DECR', S .. 'taken')
if redis.call('GET', P .. 'item:' .. h[2]) == c then redis.call('DEL', P .. 'item:' .. h[2]) end
redis.call('ZREM', S .. 'holds', c)
redis.call('HSET', k, 'status', 'refused')
redis.call('HINCRBY', S .. 'stats', 'failed_purchases', 1)
if ARGV[3] ~= '' then redis.call('HSET', P .. 'sold', h[2], ARGV[3]) end
return 1
";

/// Writes a sale's state rebuilt from Postgres, in one step, only if the rebuild still holds
/// its lock and the sale is still unloaded (else -1: fenced out). ARGV: prefix, sid, lock,
/// token, keep-until ms, now ms, successful checkouts, sale items, then the counts of purchases
/// and holds, then purchases (code, user, item) and holds (code, user, item, expiry ms).
/// A hold whose record Redis already has is not loaded as held: `released` (its checkout was
/// undone after the snapshot) is skipped, `purchased` (its purchase finished after the
/// snapshot) counts as a purchase. Holds beyond the sale's items are not loaded (the oldest
/// come first). Returns the number of holds not loaded that way.
pub const LOAD: &str = r"
local P, sid, lock, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('GET', lock) ~= token then return -1 end
local S = P .. sid .. ':'
if redis.call('EXISTS', S .. 'ready') == 1 then return -1 end
local keep, now, items = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[8])
local nb, nh = tonumber(ARGV[9]), tonumber(ARGV[10])
local taken, purchased, dropped, users = 0, 0, 0, {}
local function count(user)
  taken = taken + 1
  users[user] = (users[user] or 0) + 1
end
local i = 11
for _ = 1, nb do
  local k = P .. 'hold:' .. ARGV[i]
  redis.call('HSET', k, 'user', ARGV[i + 1], 'item', ARGV[i + 2], 'sid', sid, 'status', 'purchased')
  redis.call('PEXPIREAT', k, keep)
  redis.call('HSET', P .. 'sold', ARGV[i + 2], ARGV[i])
  count(ARGV[i + 1])
  purchased = purchased + 1
  i = i + 3
end
-- Holds bought after the snapshot first (they are purchases), then the live ones.
local first = i
for _ = 1, nh do
  local code, user, item = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 4
  local k = P .. 'hold:' .. code
  if redis.call('HGET', k, 'status') == 'purchased' then
    redis.call('HSET', k, 'user', user, 'item', item, 'sid', sid)
    redis.call('PEXPIREAT', k, keep)
    count(user)
    purchased = purchased + 1
  end
end
i = first
for _ = 1, nh do
  local code, user, item, exp = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local k = P .. 'hold:' .. code
  local st = redis.call('HGET', k, 'status')
  if st == 'purchased' or st == 'released' or st == 'refused' then
    -- bought (counted above) or undone after the snapshot: not a hold
  elseif taken >= items then
    dropped = dropped + 1
  else
    redis.call('HSET', k, 'user', user, 'item', item, 'sid', sid, 'exp', exp, 'status', 'held')
    redis.call('PEXPIREAT', k, keep)
    redis.call('SET', P .. 'item:' .. item, code, 'PX', math.max(1, tonumber(exp) - now))
    redis.call('ZADD', S .. 'holds', exp, code)
    count(user)
  end
end
if nh > 0 then redis.call('PEXPIREAT', S .. 'holds', keep) end
for user, n in pairs(users) do
  redis.call('SET', S .. 'user:' .. user, n, 'PXAT', keep)
end
redis.call('SET', S .. 'taken', taken, 'PXAT', keep)
redis.call('HSET', S .. 'stats', 'successful_checkouts', ARGV[7], 'successful_purchases', purchased,
  'purchased_goods', purchased)
redis.call('PEXPIREAT', S .. 'stats', keep)
redis.call('SET', S .. 'ready', ARGV[6], 'PXAT', keep)
return dropped
";

/// Deletes a lock only if it still holds this owner's token. KEYS[1] lock, ARGV[1] token.
pub const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Claims a live hold for purchase. ARGV: prefix, now ms, code, current sid, claim ms.
/// Returns {CLAIMED, user, item, sid} | {DONE, user, item, sid} | {EXPIRED} | {UNKNOWN}
/// | {REBUILD} (code unknown and the current sale's state is not loaded).
pub fn claim() -> String {
    format!(
        "{SWEEP}{}",
        r"
local P, now, code = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local h = redis.call('HMGET', P .. 'hold:' .. code, 'user', 'item', 'sid', 'exp', 'status')
if not h[5] then
  -- Lost with the rest of Redis? Then the sale must be rebuilt before we can tell.
  if redis.call('EXISTS', P .. ARGV[4] .. ':ready') == 0 then return {'REBUILD'} end
  redis.call('HINCRBY', P .. ARGV[4] .. ':stats', 'failed_purchases', 1)
  return {'UNKNOWN'}
end
if not h[3] then
  -- A tombstone (its checkout was undone): no reservation.
  redis.call('HINCRBY', P .. ARGV[4] .. ':stats', 'failed_purchases', 1)
  return {'EXPIRED'}
end
local S = P .. h[3] .. ':'
if h[5] == 'purchased' then return {'DONE', h[1], h[2], h[3]} end
if h[5] == 'held' and tonumber(h[4]) <= now then free_hold(P, S, code, {h[1], h[2], h[5]}) ; h[5] = 'expired' end
if h[5] ~= 'held' and h[5] ~= 'purchasing' then
  redis.call('HINCRBY', S .. 'stats', 'failed_purchases', 1)
  return {'EXPIRED'}
end
redis.call('HSET', P .. 'hold:' .. code, 'status', 'purchasing')
redis.call('ZREM', S .. 'holds', code)
redis.call('PEXPIRE', P .. 'item:' .. h[2], ARGV[5])
return {'CLAIMED', h[1], h[2], h[3]}
"
    )
}

/// Marks a committed purchase. ARGV: prefix, code, item, sid, user. Idempotent. It writes the
/// whole record: on a Redis that lost the sale, a repeat of the purchase then still answers
/// the same 200.
pub const FINALIZE: &str = r"
local P, code, item = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', P .. 'hold:' .. code, 'status') == 'purchased' then return 0 end
local S = P .. ARGV[4] .. ':'
redis.call('HSET', P .. 'sold', item, code)
redis.call('HSET', P .. 'hold:' .. code, 'user', ARGV[5], 'item', item, 'sid', ARGV[4], 'status', 'purchased')
if redis.call('GET', P .. 'item:' .. item) == code then redis.call('DEL', P .. 'item:' .. item) end
redis.call('HINCRBY', S .. 'stats', 'successful_purchases', 1)
redis.call('HINCRBY', S .. 'stats', 'purchased_goods', 1)
return 1
";

/// The seed's `/status` counters, after sweeping expired holds. ARGV: prefix, sid, now ms.
/// Returns {ready, taken, successful_checkouts, failed_checkouts, successful_purchases,
/// failed_purchases, purchased_goods}.
pub fn status() -> String {
    format!(
        "{SWEEP}{}",
        r"
local P, sid = ARGV[1], ARGV[2]
local S = P .. sid .. ':'
sweep(P, S, tonumber(ARGV[3]))
local st = redis.call('HMGET', S .. 'stats', 'successful_checkouts', 'failed_checkouts',
  'successful_purchases', 'failed_purchases', 'purchased_goods')
return {redis.call('EXISTS', S .. 'ready'), tonumber(redis.call('GET', S .. 'taken') or '0'),
  tonumber(st[1] or '0'), tonumber(st[2] or '0'), tonumber(st[3] or '0'), tonumber(st[4] or '0'),
  tonumber(st[5] or '0')}
"
    )
}
