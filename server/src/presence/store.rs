//! Presence state in Redis and the scripts that change it.
//!
//! Keys, under `<REDIS_KEY_PREFIX>presence:`:
//! - `s:<id>`      `<code>:<last activity, unix ms>`, code `on`, `away` or `off`; no expiry
//!   (last activity is kept forever, seed 000's "last seen")
//! - `deadlines`   sorted set: the ids that are ONLINE or AWAY, scored by the deadline at which
//!   they turn OFFLINE (now + USER_STATUS_TTL, or now + the away TTL)
//! - `events`      the pub/sub channel: `<id>|<STATUS>|<unix ms>`
//! - `sweeper`     the sweeper lock (holder token, expiring)
//!
//! Every change is one Lua script (one round trip, atomic) that publishes its event itself,
//! only when the status actually changes, so events are never duplicated or reordered
//! against the state. The heartbeat script is the hot path and does two writes (`SET .. GET`
//! and `ZADD`): about half of Redis's time per call of a version that kept deadline and last
//! activity in separate keys and read Redis's clock (measured with redis-benchmark, docs/
//! PRESENCE.md). Times come from the application hosts' clocks (one clock on one machine; NTP
//! across hosts). Scripts touch keys derived from the prefix, fine on one Redis; a Redis
//! Cluster would need hash tags (docs/PRESENCE.md).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisWrite, ToRedisArgs};

use super::{Error, Snapshot, Status};
use crate::config::Config;
use crate::redis::RedisHandle;

/// KEYS: status, deadlines. ARGV: id, now ms, deadline ms, channel. Returns 1 if it published.
const HEARTBEAT: &str = r#"
local cur = redis.call('SET', KEYS[1], 'on:' .. ARGV[2], 'GET')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if cur and string.byte(cur, 1) == 111 and string.byte(cur, 2) == 110 then
  return 0
end
redis.call('PUBLISH', ARGV[4], ARGV[1] .. '|ONLINE|' .. ARGV[2])
return 1
"#;

/// KEYS: status, deadlines. ARGV: id, code (on|away|off), now ms, deadline ms, channel, NAME.
/// Returns 1 if it published.
const SET: &str = r#"
local cur = redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[3], 'GET')
if ARGV[2] == 'off' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
if cur and string.match(cur, '^(%a+):') == ARGV[2] then
  return 0
end
redis.call('PUBLISH', ARGV[5], ARGV[1] .. '|' .. ARGV[6] .. '|' .. ARGV[3])
return 1
"#;

/// KEYS: deadlines, lock. ARGV: status key prefix, channel, batch limit, lock token, lock ttl
/// ms, now ms. Takes or renews the sweeper lock; if held, turns up to `limit` passed deadlines
/// into OFFLINE, keeping the last activity (ZREM first, so a deadline is swept exactly once).
/// Returns -1 when another process holds the lock, else the number of deadlines swept.
const SWEEP: &str = r#"
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[4] then
  return -1
end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[6], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local k = ARGV[1] .. id
  local cur = redis.call('GET', k)
  if cur and string.sub(cur, 1, 4) ~= 'off:' then
    redis.call('SET', k, 'off:' .. (string.match(cur, ':(%d+)$') or '0'))
    redis.call('PUBLISH', ARGV[2], id .. '|OFFLINE|' .. ARGV[6])
  end
end
return #ids
"#;

/// KEYS: lock. ARGV: token. Deletes the lock only if this process holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Deadlines swept per script call (the sweeper repeats while it fills a batch).
pub const SWEEP_BATCH: usize = 500;

/// A key written as prefix + id straight into the command buffer (no String per key).
struct Key<'a>(&'a str, &'a str);

impl ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut w = out.writer_for_next_arg();
        let _ = w.write_all(self.0.as_bytes());
        let _ = w.write_all(self.1.as_bytes());
    }
}

/// Cheap to clone (shared inside).
#[derive(Debug, Clone)]
pub struct Store {
    redis: RedisHandle,
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    status_prefix: String,
    deadlines: String,
    channel: String,
    lock: String,
    online_ttl_ms: i64,
    away_ttl_ms: i64,
    timeout: Duration,
    heartbeat: redis::Script,
    set: redis::Script,
    sweep: redis::Script,
    release: redis::Script,
}

/// Unix ms by this host's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    pub fn new(cfg: &Config, redis: RedisHandle) -> Store {
        let p = format!("{}presence:", cfg.redis_key_prefix);
        Store {
            redis,
            inner: std::sync::Arc::new(Inner {
                status_prefix: format!("{p}s:"),
                deadlines: format!("{p}deadlines"),
                channel: format!("{p}events"),
                lock: format!("{p}sweeper"),
                online_ttl_ms: cfg.presence_ttl_ms as i64,
                away_ttl_ms: cfg.presence_away_ttl_ms as i64,
                timeout: Duration::from_millis(cfg.presence_redis_timeout_ms),
                heartbeat: redis::Script::new(HEARTBEAT),
                set: redis::Script::new(SET),
                sweep: redis::Script::new(SWEEP),
                release: redis::Script::new(RELEASE),
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

    /// Marks `id` ONLINE until now + TTL and records the activity; publishes ONLINE only if
    /// it was not online. Returns the time of the heartbeat (unix ms).
    ///
    /// # Errors
    /// Redis down, failing or slower than the presence timeout.
    pub async fn heartbeat(&self, id: &str) -> Result<i64, Error> {
        let i = &self.inner;
        let mut conn = self.conn()?;
        let now = now_ms();
        let mut inv = i.heartbeat.prepare_invoke();
        inv.key(Key(&i.status_prefix, id))
            .key(&i.deadlines)
            .arg(id)
            .arg(now)
            .arg(now + i.online_ttl_ms)
            .arg(&i.channel);
        let _published: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(now)
    }

    /// Sets an explicit status (not `Unknown`) and records the activity; publishes only on
    /// a change. OFFLINE has no deadline; ONLINE and AWAY get theirs.
    ///
    /// # Errors
    /// As [`Store::heartbeat`]; `INVALID_STATUS` for `Unknown`.
    pub async fn set(&self, id: &str, status: Status) -> Result<i64, Error> {
        let i = &self.inner;
        let (code, ttl) = match status {
            Status::Online => ("on", i.online_ttl_ms),
            Status::Away => ("away", i.away_ttl_ms),
            Status::Offline => ("off", 0),
            Status::Unknown => return Err(Error::invalid("INVALID_STATUS", "status must be ONLINE, AWAY or OFFLINE")),
        };
        let mut conn = self.conn()?;
        let now = now_ms();
        let mut inv = i.set.prepare_invoke();
        inv.key(Key(&i.status_prefix, id))
            .key(&i.deadlines)
            .arg(id)
            .arg(code)
            .arg(now)
            .arg(now + ttl)
            .arg(&i.channel)
            .arg(status.name());
        let _published: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
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
            cmd.arg(Key(&self.inner.status_prefix, id));
        }
        let vals: Vec<redis::Value> = self.bounded(cmd.query_async(&mut conn)).await?;
        Ok(vals.iter().map(|v| parse_status(v).map(|(_, ms)| ms)).collect())
    }

    /// Current status and last activity of each id, in order: MGET of the status keys and
    /// ZMSCORE of their deadlines, pipelined (one round trip).
    ///
    /// # Errors
    /// As [`Store::heartbeat`].
    pub async fn snapshot<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Snapshot>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let mut mget = redis::cmd("MGET");
        let mut zmscore = redis::cmd("ZMSCORE");
        zmscore.arg(&self.inner.deadlines);
        for id in ids {
            mget.arg(Key(&self.inner.status_prefix, id.as_ref()));
            zmscore.arg(id.as_ref());
        }
        let mut pipe = redis::pipe();
        pipe.add_command(mget).add_command(zmscore);
        let (vals, deadlines): (Vec<redis::Value>, Vec<Option<f64>>) =
            self.bounded(pipe.query_async(&mut conn)).await?;
        let now = now_ms();
        Ok(vals.iter().zip(deadlines).map(|(v, d)| decode(parse_status(v), d, now)).collect())
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
            .arg(token)
            .arg(lock_ttl.as_millis() as u64)
            .arg(now_ms());
        let n: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(usize::try_from(n).ok())
    }

    /// Gives the sweeper lock up (at shutdown), so another worker leads at its next round
    /// instead of after the lock expires.
    ///
    /// # Errors
    /// As [`Store::heartbeat`].
    pub async fn release_sweeper(&self, token: &str) -> Result<(), Error> {
        let mut conn = self.conn()?;
        let mut inv = self.inner.release.prepare_invoke();
        inv.key(&self.inner.lock).arg(token);
        let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }
}

/// `<code>:<ms>` from a status key's value; `None` for a missing (or foreign) value.
fn parse_status(v: &redis::Value) -> Option<(&[u8], i64)> {
    let redis::Value::BulkString(b) = v else { return None };
    let colon = b.iter().position(|&c| c == b':')?;
    let ms = std::str::from_utf8(&b[colon + 1..]).ok()?.parse().ok()?;
    Some((&b[..colon], ms))
}

/// A status from the stored code and deadline, judged against `now`: a passed deadline is
/// OFFLINE even before the sweeper has published it.
fn decode(stored: Option<(&[u8], i64)>, deadline: Option<f64>, now: i64) -> Snapshot {
    let Some((code, last_seen_ms)) = stored else { return Snapshot { status: Status::Unknown, last_seen_ms: 0 } };
    let live = deadline.is_some_and(|d| d > now as f64);
    let status = match code {
        b"on" if live => Status::Online,
        b"away" if live => Status::Away,
        _ => Status::Offline,
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
        assert_eq!(decode(Some((b"on", 90)), Some(200.0), 100), s(Status::Online, 90));
        assert_eq!(decode(Some((b"on", 90)), Some(100.0), 100), s(Status::Offline, 90), "deadline passed");
        assert_eq!(decode(Some((b"on", 90)), None, 100), s(Status::Offline, 90), "already swept");
        assert_eq!(decode(Some((b"away", 90)), Some(200.0), 100), s(Status::Away, 90));
        assert_eq!(decode(Some((b"off", 90)), Some(200.0), 100), s(Status::Offline, 90));
    }

    #[test]
    fn status_values_parse() {
        let v = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(parse_status(&v("on:1700000000123")), Some((&b"on"[..], 1_700_000_000_123)));
        assert_eq!(parse_status(&v("off:0")), Some((&b"off"[..], 0)));
        assert_eq!(parse_status(&redis::Value::Nil), None);
        assert_eq!(parse_status(&v("garbage")), None);
        assert_eq!(parse_status(&v("on:x")), None);
    }
}
