//! The read-through user cache (hotcold-user-api), shared by `GET /v1/users` and
//! `GET /api/v1/users/:id`. See docs/CACHE.md.
//!
//! Keys (prefix `REDIS_KEY_PREFIX`, default `sg:`):
//! - `sg:user:<id>`   the user's full record as the users API renders it (JSON), or `!` for
//!   "not found" (negative entry, `NEGATIVE_CACHE_TTL_SECONDS`)
//! - `sg:user:<id>:w` the last write's marker (`<unix ms>-<random>`), set on every write
//!
//! Hot path: one `MGET record marker` round trip. Cold path (miss): one database lookup per
//! id per process at a time (singleflight), run in its own task so that no request's
//! cancellation cancels it for the others, then a conditional store: a Lua script writes
//! the record only if the write marker is still the one seen before the database read.
//!
//! Invalidation: every write, after its commit, deletes the record and sets a fresh
//! marker (one atomic round trip). So:
//! - a lookup that read the database before a write commits cannot store its old row
//!   afterwards (the marker changed: the store is skipped);
//! - a miss within `CACHE_RECENT_WRITE_MS` of a write reads the primary, not the replica,
//!   so replication lag cannot put the old row back either;
//! - what remains is the window between a write's commit and its invalidation (one Redis
//!   round trip, well under a millisecond here), during which a hit can still show the old
//!   record. If Redis cannot be reached at that moment, the invalidation is retried in the
//!   background (and a Redis that restarted has lost the entry anyway: it keeps nothing).

mod lookup;
pub mod seed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use redis::aio::ConnectionManager;

use crate::config::Config;

pub use lookup::{lookup, Found};

/// The value cached for a user that does not exist.
const NOT_FOUND: &[u8] = b"!";

/// Result of a cold lookup, shared by every request waiting on it.
#[derive(Debug, Clone)]
pub enum Cold {
    Found(Bytes),
    NotFound,
}

/// Why a cold lookup failed (cloneable, for the followers of a singleflight).
#[derive(Debug, Clone)]
pub enum ColdError {
    Unavailable(sharding::ShardId),
    Internal(Arc<str>),
}

pub type ColdResult = Result<lookup::Found, ColdError>;
type InFlight = Shared<BoxFuture<'static, ColdResult>>;

#[derive(Debug)]
pub struct UserCache {
    prefix: String,
    ttl: u64,
    negative_ttl: u64,
    redis_timeout: Duration,
    recent_write_ms: u64,
    inflight: Mutex<HashMap<String, InFlight>>,
    store: redis::Script,
}

impl UserCache {
    pub fn new(cfg: &Config) -> UserCache {
        UserCache {
            prefix: cfg.redis_key_prefix.clone(),
            ttl: cfg.cache_ttl_seconds,
            negative_ttl: cfg.negative_cache_ttl_seconds,
            redis_timeout: Duration::from_millis(cfg.cache_redis_timeout_ms),
            recent_write_ms: cfg.cache_recent_write_ms,
            inflight: Mutex::new(HashMap::new()),
            store: redis::Script::new(
                r"-- KEYS[1] record, KEYS[2] write marker, KEYS[3] fill lock; ARGV[1] marker
                  -- seen ('' = none), ARGV[2] value, ARGV[3] ttl seconds (0 = no expiry)
                  redis.call('DEL', KEYS[3])
                  local cur = redis.call('GET', KEYS[2]) or ''
                  if cur ~= ARGV[1] then return 0 end
                  if tonumber(ARGV[3]) > 0 then
                    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
                  else
                    redis.call('SET', KEYS[1], ARGV[2])
                  end
                  return 1",
            ),
        }
    }

    pub fn record_key(&self, id: &str) -> String {
        format!("{}user:{id}", self.prefix)
    }

    pub fn marker_key(&self, id: &str) -> String {
        format!("{}user:{id}:w", self.prefix)
    }

    /// Held (SET NX PX) by the one process filling an id's entry, across all workers.
    pub fn fill_key(&self, id: &str) -> String {
        format!("{}user:{id}:fill", self.prefix)
    }

    /// Takes the cross-process fill lock for `id`. `false`: another worker is filling it.
    async fn try_fill_lock(&self, conn: &mut ConnectionManager, id: &str) -> bool {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.fill_key(id)).arg(std::process::id()).arg("NX").arg("PX").arg(1000);
        match tokio::time::timeout(self.redis_timeout, cmd.query_async::<Option<String>>(conn)).await {
            Ok(Ok(v)) => v.is_some(),
            // Cannot tell: fill it ourselves rather than wait.
            _ => true,
        }
    }

    /// The write marker's lifetime: it only has to outlive a lookup in flight (bounded
    /// by the request deadlines) and the recent-write window.
    fn marker_ttl_ms(&self) -> u64 {
        (self.recent_write_ms * 2).max(60_000)
    }

    /// Was this marker set less than `CACHE_RECENT_WRITE_MS` ago?
    fn is_recent(&self, marker: &str) -> bool {
        let ms = marker.split_once('-').and_then(|(t, _)| t.parse::<u64>().ok());
        let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
        ms.is_some_and(|t| now.saturating_sub(t) < self.recent_write_ms)
    }

    /// Stores a cold result unless a write happened since `marker_seen` was read.
    async fn store(&self, conn: &mut ConnectionManager, id: &str, marker_seen: &str, cold: &Cold) {
        let (value, ttl): (&[u8], u64) = match cold {
            Cold::Found(b) => (b, self.ttl),
            Cold::NotFound => (NOT_FOUND, self.negative_ttl),
        };
        let mut inv = self.store.key(self.record_key(id));
        inv.key(self.marker_key(id)).key(self.fill_key(id)).arg(marker_seen).arg(value).arg(ttl);
        let outcome = match tokio::time::timeout(self.redis_timeout * 4, inv.invoke_async::<i64>(conn)).await {
            Ok(Ok(1)) => "stored",
            Ok(Ok(_)) => "skipped_after_write",
            _ => "error",
        };
        metrics::counter!("cache_stores_total", "result" => outcome).increment(1);
    }

    /// After a write's commit: drop the cached record and set a fresh write marker, in one
    /// atomic round trip. Retried in the background when Redis cannot take it now.
    pub fn invalidate(self: &Arc<Self>, redis: &crate::redis::RedisHandle, id: &str) -> BoxFuture<'static, ()> {
        let me = self.clone();
        let redis = redis.clone();
        let id = id.to_owned();
        async move {
            if me.try_invalidate(&redis, &id).await {
                metrics::counter!("cache_invalidations_total", "result" => "ok").increment(1);
                return;
            }
            metrics::counter!("cache_invalidations_total", "result" => "retrying").increment(1);
            tokio::spawn(async move {
                let mut delay = Duration::from_millis(100);
                for _ in 0..12 {
                    tokio::time::sleep(delay).await;
                    if me.try_invalidate(&redis, &id).await {
                        metrics::counter!("cache_invalidations_total", "result" => "ok_after_retry").increment(1);
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                metrics::counter!("cache_invalidations_total", "result" => "gave_up").increment(1);
                tracing::error!(user = %id, "cache invalidation failed for 30+ s; the record may be stale until its TTL");
            });
        }
        .boxed()
    }

    async fn try_invalidate(&self, redis: &crate::redis::RedisHandle, id: &str) -> bool {
        let Some(mut conn) = redis.conn() else { return false };
        let marker = format!("{}-{:08x}", chrono::Utc::now().timestamp_millis(), rand::random::<u32>());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.record_key(id))
            .ignore()
            .cmd("SET")
            .arg(self.marker_key(id))
            .arg(marker)
            .arg("PX")
            .arg(self.marker_ttl_ms())
            .ignore();
        matches!(tokio::time::timeout(self.redis_timeout * 4, pipe.query_async::<()>(&mut conn)).await, Ok(Ok(())))
    }
}
