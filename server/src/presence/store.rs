//! Presence state in Redis and the scripts that change it.
//!
//! Keys, under `<REDIS_KEY_PREFIX>presence:`:
//! - `s:<id>`      status: `on:<deadline ms>`, `away:<deadline ms>` or `off:0`; expires a
//!   minute after its deadline (online/away) or after the offline retention (24 h)
//! - `seen:<id>`   last activity in unix ms, never expires ("last seen")
//! - `deadlines`   sorted set: user id scored by the deadline of its ONLINE/AWAY status
//! - `events`      the pub/sub channel: `<id>|<STATUS>|<unix ms>`
//! - `sweeper`     the sweeper lock (holder token, expiring)
//!
//! Every change is one Lua script (one round trip, atomic) that publishes the event
//! itself, only when the status actually changes. Time is Redis's (`TIME`), so deadlines
//! agree across hosts. Scripts touch keys they derive from the prefix, which is fine on
//! one Redis; a Redis Cluster deployment would need hash tags (docs/PRESENCE.md).

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{Error, Snapshot, Status};
use crate::config::Config;
use crate::redis::RedisHandle;

/// Redis's clock in ms, inside a script.
const NOW: &str = "local t = redis.call('TIME')\n\
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// KEYS: status, seen, deadlines. ARGV: id, ttl ms, channel, key slack ms.
/// Returns {now, published}.
const HEARTBEAT: &str = r#"
local ttl = tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
local dl = now + ttl
redis.call('SET', KEYS[2], now)
redis.call('SET', KEYS[1], 'on:' .. dl, 'PX', ttl + tonumber(ARGV[4]))
redis.call('ZADD', KEYS[3], dl, ARGV[1])
if cur and string.sub(cur, 1, 3) == 'on:' then
  return {now, 0}
end
redis.call('PUBLISH', ARGV[3], ARGV[1] .. '|ONLINE|' .. now)
return {now, 1}
"#;

/// KEYS: status, seen, deadlines. ARGV: id, code (on|away|off), ttl ms, channel, NAME,
/// key slack ms. Returns {now, published}.
const SET: &str = r#"
local ttl = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
local prev = cur and string.match(cur, '^(%a+):')
redis.call('SET', KEYS[2], now)
if ARGV[2] == 'off' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('SET', KEYS[1], 'off:0', 'PX', ttl)
else
  local dl = now + ttl
  redis.call('SET', KEYS[1], ARGV[2] .. ':' .. dl, 'PX', ttl + tonumber(ARGV[6]))
  redis.call('ZADD', KEYS[3], dl, ARGV[1])
end
if prev == ARGV[2] then
  return {now, 0}
end
redis.call('PUBLISH', ARGV[4], ARGV[1] .. '|' .. ARGV[5] .. '|' .. now)
return {now, 1}
"#;

/// KEYS: deadlines, lock. ARGV: status key prefix, channel, batch limit, offline
/// retention ms, lock token, lock ttl ms.
/// Takes or renews the sweeper lock; if held, turns up to `limit` passed deadlines into
/// OFFLINE (ZREM first, so a deadline is swept exactly once). Returns -1 when another
/// process holds the lock, else the number of deadlines swept.
const SWEEP: &str = r#"
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[5] then
  return -1
end
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local k = ARGV[1] .. id
  local cur = redis.call('GET', k)
  if cur and string.sub(cur, 1, 4) ~= 'off:' then
    redis.call('SET', k, 'off:0', 'PX', ARGV[4])
    redis.call('PUBLISH', ARGV[2], id .. '|OFFLINE|' .. now)
  end
end
return #ids
"#;

/// Status keys outlive their deadline by this much, so the sweeper (not key expiry)
/// always decides when a user goes offline.
const KEY_SLACK_MS: u64 = 60_000;
/// Deadlines swept per script call (the script repeats while it fills a batch).
pub const SWEEP_BATCH: usize = 500;

/// Cheap to clone (the scripts' source is shared).
#[derive(Debug, Clone)]
pub struct Store {
    redis: RedisHandle,
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    status_prefix: String,
    seen_prefix: String,
    deadlines: String,
    channel: String,
    lock: String,
    online_ttl_ms: u64,
    away_ttl_ms: u64,
    offline_ttl_ms: u64,
    timeout: Duration,
    heartbeat: redis::Script,
    set: redis::Script,
    sweep: redis::Script,
}

/// Unix ms by the local clock (reads compare deadlines against it).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    pub fn new(cfg: &Config, redis: RedisHandle) -> Store {
        let p = format!("{}presence:", cfg.redis_key_prefix);
        let script = |body: &str| redis::Script::new(&format!("{NOW}{body}"));
        Store {
            redis,
            inner: std::sync::Arc::new(Inner {
                status_prefix: format!("{p}s:"),
                seen_prefix: format!("{p}seen:"),
                deadlines: format!("{p}deadlines"),
                channel: format!("{p}events"),
                lock: format!("{p}sweeper"),
                online_ttl_ms: cfg.presence_ttl_ms,
                away_ttl_ms: cfg.presence_away_ttl_ms,
                offline_ttl_ms: cfg.presence_offline_ttl_ms,
                timeout: Duration::from_millis(cfg.presence_redis_timeout_ms),
                heartbeat: script(HEARTBEAT),
                set: script(SET),
                sweep: script(SWEEP),
            }),
        }
    }

    /// The pub/sub channel every change is published on.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    fn conn(&self) -> Result<ConnectionManager, Error> {
        match self.redis.conn() {
            Some(c) if self.redis.is_up() => Ok(c),
            _ => Err(Error::RedisDown),
        }
    }

    async fn bounded<T>(&self, fut: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, Error> {
        match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Timeout(self.inner.timeout.as_millis() as u64)),
        }
    }

    /// Marks `id` ONLINE until now + TTL; publishes ONLINE only if it was not online.
    /// Returns Redis's time of the heartbeat (unix ms).
    ///
    /// # Errors
    /// Redis down, failing or slower than the presence timeout.
    pub async fn heartbeat(&self, id: &str) -> Result<i64, Error> {
        let i = &self.inner;
        let mut conn = self.conn()?;
        let mut inv = i.heartbeat.prepare_invoke();
        inv.key(format!("{}{id}", i.status_prefix))
            .key(format!("{}{id}", i.seen_prefix))
            .key(&i.deadlines)
            .arg(id)
            .arg(i.online_ttl_ms)
            .arg(&i.channel)
            .arg(KEY_SLACK_MS);
        let (now, _published): (i64, i64) = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(now)
    }

    /// Sets an explicit status (not `Unknown`); publishes only on a change.
    ///
    /// # Errors
    /// As [`Store::heartbeat`].
    pub async fn set(&self, id: &str, status: Status) -> Result<i64, Error> {
        let i = &self.inner;
        let (code, ttl) = match status {
            Status::Online => ("on", i.online_ttl_ms),
            Status::Away => ("away", i.away_ttl_ms),
            Status::Offline => ("off", i.offline_ttl_ms),
            Status::Unknown => return Err(Error::invalid("INVALID_STATUS", "status must be ONLINE, AWAY or OFFLINE")),
        };
        let mut conn = self.conn()?;
        let mut inv = i.set.prepare_invoke();
        inv.key(format!("{}{id}", i.status_prefix))
            .key(format!("{}{id}", i.seen_prefix))
            .key(&i.deadlines)
            .arg(id)
            .arg(code)
            .arg(ttl)
            .arg(&i.channel)
            .arg(status.name())
            .arg(KEY_SLACK_MS);
        let (now, _published): (i64, i64) = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(now)
    }

    /// Last activity (unix ms) of each id, in order; `None` = never seen. One MGET.
    ///
    /// # Errors
    /// As [`Store::heartbeat`].
    pub async fn last_seen(&self, ids: &[&str]) -> Result<Vec<Option<i64>>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("MGET");
        for id in ids {
            cmd.arg(format!("{}{id}", self.inner.seen_prefix));
        }
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Current status and last activity of each id, in order. One MGET.
    ///
    /// # Errors
    /// As [`Store::heartbeat`].
    pub async fn snapshot<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Snapshot>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("MGET");
        for id in ids {
            cmd.arg(format!("{}{}", self.inner.status_prefix, id.as_ref()))
                .arg(format!("{}{}", self.inner.seen_prefix, id.as_ref()));
        }
        let vals: Vec<Option<String>> = self.bounded(cmd.query_async(&mut conn)).await?;
        let now = now_ms();
        Ok(vals.chunks(2).map(|kv| decode(kv[0].as_deref(), kv[1].as_deref(), now)).collect())
    }

    /// One sweeper round: take or renew the lock with `token`; if held, sweep passed
    /// deadlines. `None` when another process holds the lock, else how many were swept.
    ///
    /// # Errors
    /// As [`Store::heartbeat`].
    pub async fn sweep(&self, token: &str, lock_ttl: Duration) -> Result<Option<usize>, Error> {
        let i = &self.inner;
        let mut conn = self.conn()?;
        let mut inv = i.sweep.prepare_invoke();
        inv.key(&i.deadlines)
            .key(&i.lock)
            .arg(&i.status_prefix)
            .arg(&i.channel)
            .arg(SWEEP_BATCH)
            .arg(i.offline_ttl_ms)
            .arg(token)
            .arg(lock_ttl.as_millis() as u64);
        let n: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(usize::try_from(n).ok())
    }
}

/// Status from the stored value, judged against `now`: a passed deadline is OFFLINE even
/// before the sweeper has published it.
fn decode(status: Option<&str>, seen: Option<&str>, now: i64) -> Snapshot {
    let last_seen_ms = seen.and_then(|s| s.parse().ok()).unwrap_or(0);
    let status = match status.and_then(|s| s.split_once(':')) {
        Some((code, dl)) => {
            let live = dl.parse::<i64>().is_ok_and(|dl| dl > now);
            match code {
                "on" if live => Status::Online,
                "away" if live => Status::Away,
                _ => Status::Offline,
            }
        }
        None if last_seen_ms > 0 => Status::Offline,
        None => Status::Unknown,
    };
    Snapshot { status, last_seen_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_judges_deadlines() {
        let s = |st: Status, ls: i64| Snapshot { status: st, last_seen_ms: ls };
        assert_eq!(decode(None, None, 100), s(Status::Unknown, 0));
        assert_eq!(decode(None, Some("42"), 100), s(Status::Offline, 42), "status key expired");
        assert_eq!(decode(Some("on:200"), Some("90"), 100), s(Status::Online, 90));
        assert_eq!(decode(Some("on:100"), Some("90"), 100), s(Status::Offline, 90), "deadline passed");
        assert_eq!(decode(Some("away:200"), Some("90"), 100), s(Status::Away, 90));
        assert_eq!(decode(Some("off:0"), Some("90"), 100), s(Status::Offline, 90));
        assert_eq!(decode(Some("garbage"), Some("x"), 100), s(Status::Unknown, 0));
    }
}
