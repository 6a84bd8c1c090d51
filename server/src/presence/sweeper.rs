//! The expiry sweeper. Every worker process is a candidate; the one holding the Redis
//! lock (`<prefix>presence:sweeper`, token = pid + random, expiring) sweeps. Each round is
//! one script call that takes or renews the lock and, if held, moves every passed deadline
//! to OFFLINE and publishes it. A deadline is removed from the set in the same script that
//! publishes its event, so an expiry is published exactly once even if two processes
//! briefly both think they lead. If the leader dies, the lock expires and another worker
//! takes over within `lock_ttl`; a leader that shuts down cleanly gives the lock up.
//!
//! Keyspace notifications are not used: they are lossy (fire-and-forget pub/sub) and
//! late (Redis expires keys lazily or by sampling), which is what says the user online status design
//! got wrong.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::{Store, SWEEP_BATCH};

pub async fn run(store: Store, interval: Duration, cancel: CancellationToken) {
    let token = format!("{}-{:x}", std::process::id(), rand::random::<u64>());
    let lock_ttl = (interval * 4).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                if leading {
                    let _ = store.release_sweeper(&token).await;
                }
                return;
            }
            _ = tick.tick() => {}
        }
        loop {
            match store.sweep(&token, lock_ttl).await {
                Ok(Some(n)) => {
                    if !leading {
                        tracing::info!("presence sweeper: this process leads");
                        leading = true;
                    }
                    metrics::gauge!("presence_sweeper_leader").set(1.0);
                    if n > 0 {
                        metrics::counter!("presence_expired_total").increment(n as u64);
                    }
                    if n < SWEEP_BATCH {
                        break;
                    }
                }
                Ok(None) => {
                    leading = false;
                    metrics::gauge!("presence_sweeper_leader").set(0.0);
                    break;
                }
                Err(e) => {
                    leading = false;
                    metrics::gauge!("presence_sweeper_leader").set(0.0);
                    tracing::debug!(error = %e, "presence sweeper round failed");
                    break;
                }
            }
        }
    }
}
