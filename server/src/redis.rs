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
    /// Connects and pings once (bounded, so `/ready` starts out measured), then keeps
    /// reconnecting and pinging every `interval` until `cancel` fires.
    ///
    /// # Errors
    /// The URL does not parse.
    pub async fn start(
        url: &str,
        interval: Duration,
        cancel: CancellationToken,
    ) -> Result<RedisHandle, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let handle = RedisHandle::default();
        let _ = tokio::time::timeout(Duration::from_secs(2), handle.probe(&client)).await;
        let h = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => h.probe(&client).await,
                }
            }
        });
        Ok(handle)
    }

    /// One round: connect if we never have, then PING.
    async fn probe(&self, client: &redis::Client) {
        let mut conn = match self.inner.conn.get() {
            Some(c) => c.clone(),
            None => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(500)))
                    .set_response_timeout(Some(Duration::from_millis(500)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                match ConnectionManager::new_with_config(client.clone(), cfg).await {
                    Ok(c) => {
                        let _ = self.inner.conn.set(c.clone());
                        c
                    }
                    Err(e) => return self.set_up(false, Some(&e)),
                }
            }
        };
        let cmd = redis::cmd("PING");
        match tokio::time::timeout(Duration::from_millis(800), cmd.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => self.set_up(true, None),
            Ok(Err(e)) => self.set_up(false, Some(&e)),
            Err(_) => self.set_up(false, None),
        }
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
