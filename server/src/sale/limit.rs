//! Rate limits of the flash sale (the Flash Sale API had one global token bucket answering 429): a
//! limit for the whole service and one per client IP, both GCRA buckets from `governor`
//! with a burst of one second's worth. Over a limit: 429 `RATE_LIMITED` with `Retry-After`.
//!
//! Each worker process enforces its share of the service-wide limit (`SALE_RATE_LIMIT /
//! WORKERS`, rounded up): the kernel spreads connections evenly, so the sum holds without a
//! shared counter on the hot path (no Redis round trip per request). The per-client limit is
//! per worker: a client whose connections land on several workers can get up to that many
//! times the rate. Clients are keyed by the TCP peer address (a proxy in front would need
//! its own limit; `X-Forwarded-For` is not trusted).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::error::ApiError;

pub struct SaleLimits {
    global: Option<DefaultDirectRateLimiter>,
    per_client: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for SaleLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaleLimits")
            .field("global", &self.global.is_some())
            .field("per_client", &self.per_client.is_some())
            .finish()
    }
}

fn quota(per_second: u32) -> Option<Quota> {
    NonZeroU32::new(per_second).map(|n| Quota::per_second(n).allow_burst(n))
}

impl SaleLimits {
    /// Builds the limiters and, with a per-client limit, a task that forgets idle clients.
    pub fn start(cfg: &Config, cancel: CancellationToken) -> Arc<SaleLimits> {
        let workers = cfg.effective_workers().max(1) as u32;
        let share = cfg.sale_rate_limit.div_ceil(workers);
        let limits = Arc::new(SaleLimits {
            global: quota(share).map(DefaultDirectRateLimiter::direct),
            per_client: quota(cfg.sale_client_rate_limit).map(DefaultKeyedRateLimiter::keyed),
            clock: DefaultClock::default(),
        });
        if limits.per_client.is_some() {
            let l = limits.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(10));
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => if let Some(k) = &l.per_client {
                            k.retain_recent();
                            k.shrink_to_fit();
                        },
                    }
                }
            });
        }
        limits
    }

    /// Takes one request from the client's bucket, then the service's.
    ///
    /// # Errors
    /// 429 with the whole seconds to wait (at least 1).
    pub fn check(&self, peer: IpAddr) -> Result<(), ApiError> {
        let wait = |d: Duration| ApiError::TooManyRequests { retry_after_s: d.as_secs_f64().ceil().max(1.0) as u64 };
        if let Some(k) = &self.per_client {
            if let Err(not_until) = k.check_key(&peer) {
                metrics::counter!("sale_rate_limited_total", "limit" => "client").increment(1);
                return Err(wait(not_until.wait_time_from(self.clock.now())));
            }
        }
        if let Some(g) = &self.global {
            if let Err(not_until) = g.check() {
                metrics::counter!("sale_rate_limited_total", "limit" => "global").increment(1);
                return Err(wait(not_until.wait_time_from(self.clock.now())));
            }
        }
        Ok(())
    }
}
