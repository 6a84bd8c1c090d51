//! The process's one Redis connection: a multiplexed `ConnectionManager` (every request
//! pipelines over it; it reconnects by itself), created in the background so a Redis
//! that is down at start-up delays nothing, plus a pinger that keeps an up/down flag for
//! `/ready` and `/health` without a Redis call per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
struct Inner {
    conn: OnceLock<ConnectionManager>,
    up: AtomicBool,
}

/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RedisHandle {
    inner: Arc<Inner>,
}

impl RedisHandle {
    /// Starts connecting (retrying until it succeeds) and pinging every `interval`.
    ///
    /// # Errors
    /// The URL does not parse.
    pub fn start(url: &str, interval: Duration, cancel: CancellationToken) -> Result<RedisHandle, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let handle = RedisHandle::default();
        let h = handle.clone();
        tokio::spawn(async move {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(Duration::from_millis(500)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500));
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let conn = match h.inner.conn.get() {
                    Some(c) => c.clone(),
                    None => match ConnectionManager::new_with_config(client.clone(), cfg.clone()).await {
                        Ok(c) => {
                            let _ = h.inner.conn.set(c.clone());
                            c
                        }
                        Err(e) => {
                            h.set_up(false, Some(&e));
                            continue;
                        }
                    },
                };
                let mut conn = conn;
                let cmd = redis::cmd("PING");
                match tokio::time::timeout(Duration::from_millis(800), cmd.query_async::<String>(&mut conn)).await {
                    Ok(Ok(_)) => h.set_up(true, None),
                    Ok(Err(e)) => h.set_up(false, Some(&e)),
                    Err(_) => h.set_up(false, None),
                }
            }
        });
        Ok(handle)
    }

    fn set_up(&self, up: bool, err: Option<&redis::RedisError>) {
        let was = self.inner.up.swap(up, Ordering::Relaxed);
        if was != up {
            match err {
                Some(e) => tracing::warn!(up, error = %e, "redis health changed"),
                None => tracing::info!(up, "redis health changed"),
            }
        }
    }

    /// Did the last ping succeed? A relaxed atomic load.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed)
    }

    /// The shared multiplexed connection, once the first connect has succeeded.
    pub fn conn(&self) -> Option<ConnectionManager> {
        self.inner.conn.get().cloned()
    }
}
