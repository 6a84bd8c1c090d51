//! Presence state in Redis and the scripts that change it.
//!
//! Keys, under `<REDIS_KEY_PREFIX>presence:`:
//! - `seen:<id>`   last activity, unix ms; no expiry (the live user status server's "last seen"; its existence
//!   also tells OFFLINE from UNKNOWN)
//! - `online`      sorted set: the ONLINE ids, scored by the deadline at which they go OFFLINE
//! - `away`        sorted set: the AWAY ids, scored the same way
//! - `events`      the pub/sub channel: `<id>|<STATUS>|<unix ms>`
//! - `sweeper`     the sweeper lock (holder token, expiring)
//!
//! Membership is the status: a user is ONLINE while in `online` with a future deadline, AWAY
//! likewise in `away`, OFFLINE when seen but in neither, UNKNOWN when never seen. Every change
//! is decided by an atomic membership test, and the one change that makes a transition
//! publishes it, once:
//! - a heartbeat is two plain commands in one round trip, `SET seen` and `ZADD online`; only
//!   when `ZADD` reports a NEW member (the user was not online) does a second round trip run
//!   [`ANNOUNCE`], which publishes ONLINE if the user is still online. Two racing heartbeats
//!   cannot both add the member, so ONLINE is published once per online spell, and a heartbeat
//!   that keeps a user online costs Redis two cheap writes and publishes nothing;
//! - explicit changes and expiry are Lua scripts (atomic, one round trip) that publish their
//!   own event when their membership test says the status changed.
//!
//! The heartbeat's two plain writes cost Redis about a third of the Lua script that did the same
//! (docs/PRESENCE.md, Figures). Times come from the application hosts' clocks (one clock on one
//! machine; NTP across hosts). Scripts touch keys derived from the prefix: fine on one Redis; a
//! Redis Cluster would need hash tags (docs/PRESENCE.md).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisWrite, ToRedisArgs};

use super::{Error, Snapshot, Status};
use crate::config::Config;
use crate::redis::RedisHandle;

/// KEYS: online, away. ARGV: id, now ms, channel. Run after a heartbeat added the user to
/// `online`: if still online, leaves `away` and publishes ONLINE. Returns 1 if it published.
const ANNOUNCE: &str = r#"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1] .. '|ONLINE|' .. ARGV[2])
return 1
"#;

/// KEYS: seen, online, away. ARGV: id, status (ONLINE|AWAY|OFFLINE), now ms, deadline ms,
/// channel. Returns 1 if it published.
const SET: &str = r#"
local changed
if ARGV[2] == 'ONLINE' then
  changed = redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1]) == 1
  redis.call('ZREM', KEYS[3], ARGV[1])
elseif ARGV[2] == 'AWAY' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  changed = redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1]) == 1
else
  local left = redis.call('ZREM', KEYS[2], ARGV[1]) + redis.call('ZREM', KEYS[3], ARGV[1])
  changed = left > 0 or redis.call('EXISTS', KEYS[1]) == 0
end
redis.call('SET', KEYS[1], ARGV[3])
if not changed then
  return 0
end
redis.call('PUBLISH', ARGV[5], ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[3])
return 1
"#;

/// KEYS: online, away, lock. ARGV: channel, batch limit, lock token, lock ttl ms, now ms.
/// Takes or renews the sweeper lock; if held, removes up to `limit` passed deadlines from each
/// set and publishes OFFLINE for each (ZREM and PUBLISH in one step: swept exactly once).
/// Returns -1 when another process holds the lock, else the number swept.
const SWEEP: &str = r#"
local holder = redis.call('GET', KEYS[3])
if holder and holder ~= ARGV[3] then
  return -1
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
local n = 0
for s = 1, 2 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[s], '-inf', ARGV[5], 'LIMIT', 0, tonumber(ARGV[2]))
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[s], id)
    redis.call('PUBLISH', ARGV[1], id .. '|OFFLINE|' .. ARGV[5])
  end
  n = n + #ids
end
return n
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
    seen_prefix: String,
    online: String,
    away: String,
    channel: String,
    lock: String,
    online_ttl_ms: i64,
    away_ttl_ms: i64,
    timeout: Duration,
    announce: redis::Script,
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
                seen_prefix: format!("{p}seen:"),
                online: format!("{p}online"),
                away: format!("{p}away"),
                channel: format!("{p}events"),
                lock: format!("{p}sweeper"),
                online_ttl_ms: cfg.presence_ttl_ms as i64,
                away_ttl_ms: cfg.presence_away_ttl_ms as i64,
                timeout: Duration::from_millis(cfg.presence_redis_timeout_ms),
                announce: redis::Script::new(ANNOUNCE),
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

    /// Records the activity and moves the user's ONLINE deadline to now + TTL (`SET` and
    /// `ZADD`, one round trip); if that made the user online, announces it (a second round
    /// trip, only then). Returns the time of the heartbeat (unix ms).
    ///
    /// # Errors
    /// Redis down, failing or slower than the presence timeout.
    pub async fn heartbeat(&self, id: &str) -> Result<i64, Error> {
        let i = &self.inner;
        let mut conn = self.conn()?;
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(Key(&i.seen_prefix, id)).arg(now).ignore();
        pipe.cmd("ZADD").arg(&i.online).arg(now + i.online_ttl_ms).arg(id);
        let (added,): (i64,) = self.bounded(pipe.query_async(&mut conn)).await?;
        if added == 1 {
            let mut inv = i.announce.prepare_invoke();
            inv.key(&i.online).key(&i.away).arg(id).arg(now).arg(&i.channel);
            let _published: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        }
        Ok(now)
    }

    /// Sets an explicit status (not `Unknown`) and records the activity; publishes only on
    /// a change. OFFLINE has no deadline; ONLINE and AWAY get theirs.
    ///
    /// # Errors
    /// As [`Store::heartbeat`]; `INVALID_STATUS` for `Unknown`.
    pub async fn set(&self, id: &str, status: Status) -> Result<i64, Error> {
        let i = &self.inner;
        let ttl = match status {
            Status::Online => i.online_ttl_ms,
            Status::Away => i.away_ttl_ms,
            Status::Offline => 0,
            Status::Unknown => return Err(Error::invalid("INVALID_STATUS", "status must be ONLINE, AWAY or OFFLINE")),
        };
        let mut conn = self.conn()?;
        let now = now_ms();
        let mut inv = i.set.prepare_invoke();
        inv.key(Key(&i.seen_prefix, id))
            .key(&i.online)
            .key(&i.away)
            .arg(id)
            .arg(status.name())
            .arg(now)
            .arg(now + ttl)
            .arg(&i.channel);
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
            cmd.arg(Key(&self.inner.seen_prefix, id));
        }
        self.bounded(cmd.query_async(&mut conn)).await
    }

    /// Current status and last activity of each id, in order: MGET of the last-seen keys and
    /// ZMSCORE of both sets, pipelined (one round trip).
    ///
    /// # Errors
    /// As [`Store::heartbeat`].
    pub async fn snapshot<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<Snapshot>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let i = &self.inner;
        let mut conn = self.conn()?;
        let mut pipe = redis::pipe();
        let mget = pipe.cmd("MGET");
        for id in ids {
            mget.arg(Key(&i.seen_prefix, id.as_ref()));
        }
        for set in [&i.online, &i.away] {
            let z = pipe.cmd("ZMSCORE").arg(set);
            for id in ids {
                z.arg(id.as_ref());
            }
        }
        type Reply = (Vec<Option<i64>>, Vec<Option<f64>>, Vec<Option<f64>>);
        let (seen, online, away): Reply = self.bounded(pipe.query_async(&mut conn)).await?;
        let now = now_ms() as f64;
        Ok(seen.iter().zip(online.iter().zip(&away)).map(|(seen, (on, aw))| decode(*seen, *on, *aw, now)).collect())
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
        inv.key(&i.online)
            .key(&i.away)
            .key(&i.lock)
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

/// A status from set membership, judged against `now`: a passed deadline is OFFLINE even
/// before the sweeper has published it. Online wins over away (a heartbeat's announce moves
/// the user out of `away` a moment after adding it to `online`).
fn decode(seen: Option<i64>, online: Option<f64>, away: Option<f64>, now: f64) -> Snapshot {
    let status = match (seen, online, away) {
        (_, Some(d), _) if d > now => Status::Online,
        (_, _, Some(d)) if d > now => Status::Away,
        (Some(_), _, _) => Status::Offline,
        (None, _, _) => Status::Unknown,
    };
    Snapshot { status, last_seen_ms: seen.unwrap_or(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_judges_membership_and_deadlines() {
        let s = |st: Status, ls: i64| Snapshot { status: st, last_seen_ms: ls };
        assert_eq!(decode(None, None, None, 100.0), s(Status::Unknown, 0));
        assert_eq!(decode(Some(90), Some(200.0), None, 100.0), s(Status::Online, 90));
        assert_eq!(decode(Some(90), Some(100.0), None, 100.0), s(Status::Offline, 90), "deadline passed");
        assert_eq!(decode(Some(90), None, None, 100.0), s(Status::Offline, 90), "swept or set offline");
        assert_eq!(decode(Some(90), None, Some(200.0), 100.0), s(Status::Away, 90));
        assert_eq!(decode(Some(90), Some(200.0), Some(200.0), 100.0), s(Status::Online, 90), "announce gap");
    }
}
