//! The shard health monitor: one background task per process that probes, every
//! `health_interval`, each shard's write path (PgBouncer -> primary) and its replica, and
//! publishes the result in atomics that the request path reads for free.
//!
//! Request code never waits on a probe: it asks [`HealthMonitor::primary_up`] or
//! [`HealthMonitor::replica_usable`] (a relaxed atomic load) before routing, which is what
//! makes a down shard fail fast instead of after a connect timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sharding::{ShardId, Topology};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::pools::{connect_options, Endpoint};
use crate::PoolConfig;

const UNKNOWN: u64 = u64::MAX;

/// A point-in-time view of one shard's health.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardHealth {
    pub shard: ShardId,
    /// The write path answers: PgBouncer is up and reaches a writable primary.
    pub primary_up: bool,
    /// The replica answers and is in recovery (a hot standby). It keeps serving reads
    /// while its primary is down: the data it has is the best there is.
    pub replica_up: bool,
    /// The replica's WAL receiver is streaming from the primary right now.
    pub replica_streaming: bool,
    /// Bytes of WAL the replica has not replayed yet (primary's current LSN minus the
    /// replica's replay LSN); `None` when either side is down.
    pub replica_lag_bytes: Option<u64>,
    /// Seconds since the last replayed transaction, 0 when everything received is
    /// replayed (an idle primary is not "lagging"); `None` when unknown.
    pub replica_lag_seconds: Option<f64>,
}

#[derive(Debug)]
struct Cell {
    primary_up: AtomicBool,
    replica_up: AtomicBool,
    replica_streaming: AtomicBool,
    lag_bytes: AtomicU64,
    lag_micros: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    cells: Vec<Cell>,
    max_lag_micros: u64,
}

/// Cheap to clone: an `Arc` over the per-shard atomics.
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    inner: Arc<Inner>,
}

/// One shard's probe connections, kept open between rounds and dropped on any error.
struct Prober {
    shard: ShardId,
    pooler: sqlx::postgres::PgConnectOptions,
    replica: sqlx::postgres::PgConnectOptions,
    pooler_conn: Option<PgConnection>,
    replica_conn: Option<PgConnection>,
    timeout: Duration,
}

#[derive(Default)]
struct Probe {
    primary_lsn: Option<u64>,
    replica: Option<(u64, bool, Option<f64>)>, // replay lsn, caught up, seconds since last replay
    streaming: bool,
}

impl HealthMonitor {
    /// Starts the monitor: runs one probe round (so the first answers are measured, not
    /// assumed), then keeps probing in a background task until `cancel` fires.
    pub async fn start(topo: &Topology, cfg: &PoolConfig, cancel: CancellationToken) -> HealthMonitor {
        let monitor = HealthMonitor::new(topo.len(), cfg.max_replica_lag);
        let mut probers = Prober::for_topology(topo, cfg.health_timeout);
        monitor.round(&mut probers).await;
        let m = monitor.clone();
        let interval = cfg.health_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => m.round(&mut probers).await,
                }
            }
        });
        monitor
    }

    /// Probes every shard once and returns the result (for admin commands).
    pub async fn probe_once(topo: &Topology, cfg: &PoolConfig) -> Vec<ShardHealth> {
        let monitor = HealthMonitor::new(topo.len(), cfg.max_replica_lag);
        let mut probers = Prober::for_topology(topo, cfg.health_timeout);
        monitor.round(&mut probers).await;
        monitor.snapshot()
    }

    fn new(shards: usize, max_lag: Duration) -> HealthMonitor {
        let cells = (0..shards)
            .map(|_| Cell {
                primary_up: AtomicBool::new(false),
                replica_up: AtomicBool::new(false),
                replica_streaming: AtomicBool::new(false),
                lag_bytes: AtomicU64::new(UNKNOWN),
                lag_micros: AtomicU64::new(UNKNOWN),
            })
            .collect();
        HealthMonitor { inner: Arc::new(Inner { cells, max_lag_micros: max_lag.as_micros() as u64 }) }
    }

    async fn round(&self, probers: &mut [Prober]) {
        let results = futures_util::future::join_all(probers.iter_mut().map(|p| p.probe())).await;
        for (i, probe) in results.into_iter().enumerate() {
            let cell = &self.inner.cells[i];
            let up = probe.primary_lsn.is_some();
            let was_up = cell.primary_up.swap(up, Ordering::Relaxed);
            match (was_up, up) {
                (true, false) => tracing::warn!(shard = i, "shard primary down"),
                (false, true) => tracing::info!(shard = i, "shard primary up"),
                _ => {}
            }
            let rup = probe.replica.is_some();
            if cell.replica_up.swap(rup, Ordering::Relaxed) && !rup {
                tracing::warn!(shard = i, "shard replica down");
            }
            cell.replica_streaming.store(probe.streaming, Ordering::Relaxed);
            match (probe.primary_lsn, probe.replica) {
                (Some(p), Some((r, caught_up, secs))) => {
                    cell.lag_bytes.store(p.saturating_sub(r), Ordering::Relaxed);
                    let micros = if caught_up { 0 } else { secs.map_or(UNKNOWN, |s| (s.max(0.0) * 1e6) as u64) };
                    cell.lag_micros.store(micros, Ordering::Relaxed);
                }
                (None, Some((_, caught_up, secs))) => {
                    cell.lag_bytes.store(UNKNOWN, Ordering::Relaxed);
                    let micros = if caught_up { 0 } else { secs.map_or(UNKNOWN, |s| (s.max(0.0) * 1e6) as u64) };
                    cell.lag_micros.store(micros, Ordering::Relaxed);
                }
                _ => {
                    cell.lag_bytes.store(UNKNOWN, Ordering::Relaxed);
                    cell.lag_micros.store(UNKNOWN, Ordering::Relaxed);
                }
            }
        }
    }

    /// Does the shard's write path answer? A relaxed atomic load.
    pub fn primary_up(&self, shard: ShardId) -> bool {
        self.inner.cells[shard.index()].primary_up.load(Ordering::Relaxed)
    }

    /// May reads go to the replica: it answers and its lag is within the bound.
    pub fn replica_usable(&self, shard: ShardId) -> bool {
        let c = &self.inner.cells[shard.index()];
        c.replica_up.load(Ordering::Relaxed) && c.lag_micros.load(Ordering::Relaxed) <= self.inner.max_lag_micros
    }

    /// The request path saw the write path fail with a connection error: stop sending
    /// traffic there until the next successful probe (at most `health_interval` away).
    pub fn report_primary_failure(&self, shard: ShardId) {
        self.inner.cells[shard.index()].primary_up.store(false, Ordering::Relaxed);
    }

    /// The request path saw the replica fail: read from the primary until it is back.
    pub fn report_replica_failure(&self, shard: ShardId) {
        self.inner.cells[shard.index()].replica_up.store(false, Ordering::Relaxed);
    }

    pub fn all_primaries_up(&self) -> bool {
        self.inner.cells.iter().all(|c| c.primary_up.load(Ordering::Relaxed))
    }

    pub fn snapshot(&self) -> Vec<ShardHealth> {
        self.inner
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let bytes = c.lag_bytes.load(Ordering::Relaxed);
                let micros = c.lag_micros.load(Ordering::Relaxed);
                ShardHealth {
                    shard: ShardId::new(i as u16),
                    primary_up: c.primary_up.load(Ordering::Relaxed),
                    replica_up: c.replica_up.load(Ordering::Relaxed),
                    replica_streaming: c.replica_streaming.load(Ordering::Relaxed),
                    replica_lag_bytes: (bytes != UNKNOWN).then_some(bytes),
                    replica_lag_seconds: (micros != UNKNOWN).then(|| micros as f64 / 1e6),
                }
            })
            .collect()
    }
}

impl Prober {
    fn for_topology(topo: &Topology, timeout: Duration) -> Vec<Prober> {
        topo.shards
            .iter()
            .map(|s| Prober {
                shard: s.id,
                pooler: connect_options(topo, s.id, Endpoint::Pooler).application_name("shardgate-health"),
                replica: connect_options(topo, s.id, Endpoint::Replica).application_name("shardgate-health"),
                pooler_conn: None,
                replica_conn: None,
                timeout,
            })
            .collect()
    }

    async fn probe(&mut self) -> Probe {
        let (primary_lsn, replica) = tokio::join!(
            probe_one(&mut self.pooler_conn, &self.pooler, self.timeout, |c| Box::pin(async move {
                let lsn: String = sqlx::query_scalar("select pg_current_wal_lsn()::text").fetch_one(c).await?;
                Ok(parse_lsn(&lsn))
            })),
            probe_one(&mut self.replica_conn, &self.replica, self.timeout, |c| Box::pin(async move {
                let row: (bool, Option<String>, Option<bool>, Option<f64>, Option<String>) = sqlx::query_as(
                    "select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
                            pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(),
                            extract(epoch from now() - pg_last_xact_replay_timestamp())::float8,
                            (select status from pg_stat_wal_receiver)",
                )
                .fetch_one(c)
                .await?;
                Ok(match row {
                    (true, Some(lsn), caught_up, secs, status) => parse_lsn(&lsn)
                        .map(|l| (l, caught_up.unwrap_or(false), secs, status.as_deref() == Some("streaming"))),
                    _ => None,
                })
            })),
        );
        if primary_lsn.is_none() {
            tracing::debug!(shard = %self.shard, "primary probe failed");
        }
        let streaming = replica.is_some_and(|r| r.3);
        Probe { primary_lsn, replica: replica.map(|(l, c, s, _)| (l, c, s)), streaming }
    }
}

type ProbeFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<T>, sqlx::Error>> + Send + 'c>>;

/// Runs one probe on a kept connection (connecting first if needed) within `timeout`.
/// Any error or timeout drops the connection so the next round starts clean.
async fn probe_one<T>(
    slot: &mut Option<PgConnection>,
    opts: &sqlx::postgres::PgConnectOptions,
    timeout: Duration,
    query: impl for<'c> FnOnce(&'c mut PgConnection) -> ProbeFuture<'c, T>,
) -> Option<T> {
    let attempt = async {
        if slot.is_none() {
            *slot = Some(PgConnection::connect_with(opts).await?);
        }
        let conn = slot.as_mut().expect("connected above");
        query(conn).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(Some(v))) => Some(v),
        _ => {
            *slot = None;
            None
        }
    }
}

/// Parses a Postgres LSN ("16/B374D848") into its 64-bit byte position.
pub(crate) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_parses() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("garbage"), None);
        assert_eq!(parse_lsn("1/zz"), None);
    }

    #[test]
    fn replica_usable_respects_the_lag_bound() {
        let m = HealthMonitor::new(1, Duration::from_millis(500));
        let s = ShardId::new(0);
        assert!(!m.replica_usable(s), "unknown is not usable");
        let c = &m.inner.cells[0];
        c.replica_up.store(true, Ordering::Relaxed);
        c.lag_micros.store(100_000, Ordering::Relaxed);
        assert!(m.replica_usable(s));
        c.lag_micros.store(900_000, Ordering::Relaxed);
        assert!(!m.replica_usable(s));
        c.lag_micros.store(0, Ordering::Relaxed);
        m.report_replica_failure(s);
        assert!(!m.replica_usable(s));
    }
}
