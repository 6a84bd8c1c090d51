//! The control row on shard 0 (`shardgate_ring`) and the workers' acknowledgements
//! (`shardgate_ring_workers`): the SQL the workers and the resharder share.

use sqlx::PgPool;

/// A worker whose acknowledgement is older than this is taken for gone by the resharder. It
/// is longer than the workers' fence (`FENCE_AFTER`), so a worker that is merely cut off has
/// stopped writing moving keys before it stops counting.
pub const LIVE_WINDOW_S: f64 = 3.0;

/// How far a move is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Stable,
    Copying,
    Paused,
    Cleaning,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stable => "stable",
            Phase::Copying => "copying",
            Phase::Paused => "paused",
            Phase::Cleaning => "cleaning",
        }
    }

    pub fn parse(s: &str) -> Phase {
        match s {
            "copying" => Phase::Copying,
            "paused" => Phase::Paused,
            "cleaning" => Phase::Cleaning,
            _ => Phase::Stable,
        }
    }

    pub const ALL: [Phase; 4] = [Phase::Stable, Phase::Copying, Phase::Paused, Phase::Cleaning];
}

/// `shardgate_ring`'s one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingRow {
    pub version: i32,
    /// Shards `0..shards` are on the current ring.
    pub shards: i32,
    /// While copying or paused: the size of the ring being moved to.
    pub target: Option<i32>,
    pub phase: Phase,
    pub rows_copied: i64,
    pub lag_rows: i64,
}

impl RingRow {
    pub fn initial(shards: i32) -> RingRow {
        RingRow { version: 1, shards, target: None, phase: Phase::Stable, rows_copied: 0, lag_rows: 0 }
    }

    /// Gauges of the move, labelled by worker slot so the cross-process sum stays readable:
    /// `reshard_phase{phase}` is the number of workers in each phase, `ring_workers{version}`
    /// the number on each ring version.
    pub fn record_metrics(&self) {
        let slot = std::env::var(crate::serve::ENV_SLOT).unwrap_or_else(|_| "0".into());
        for p in Phase::ALL {
            metrics::gauge!("reshard_phase", "phase" => p.as_str()).set(if p == self.phase { 1.0 } else { 0.0 });
        }
        metrics::gauge!("ring_version", "slot" => slot.clone()).set(f64::from(self.version));
        metrics::gauge!("ring_shards", "slot" => slot.clone()).set(f64::from(self.shards));
        metrics::gauge!("reshard_rows_copied", "slot" => slot.clone()).set(self.rows_copied as f64);
        metrics::gauge!("reshard_lag_rows", "slot" => slot).set(self.lag_rows as f64);
    }
}

type Raw = (i32, i32, Option<i32>, String, i64, i64);

fn from_raw((version, shards, target, phase, rows_copied, lag_rows): Raw) -> RingRow {
    RingRow { version, shards, target, phase: Phase::parse(&phase), rows_copied, lag_rows }
}

/// This process's name in `shardgate_ring_workers`.
pub fn worker_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        // pid plus a random part: pids repeat across containers and restarts.
        format!("{}/{}/{}", host.trim(), std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
    })
    .clone()
}

/// One round trip: acknowledge `(version, phase)` for `worker` and read the control row.
/// `None`: the control row does not exist (migrations not applied with this version).
///
/// # Errors
/// The query failed (shard 0 down, table missing).
pub async fn poll(pool: &PgPool, worker: &str, version: i32, phase: Phase) -> Result<Option<RingRow>, sqlx::Error> {
    let row: Option<Raw> = sqlx::query_as(
        "WITH ack AS (
             INSERT INTO shardgate_ring_workers (worker, version, phase, seen_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (worker) DO UPDATE SET version = excluded.version, phase = excluded.phase, seen_at = now())
         SELECT version, shards, target, phase, rows_copied, lag_rows FROM shardgate_ring WHERE id = 1",
    )
    .bind(worker)
    .bind(version)
    .bind(phase.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(from_raw))
}

/// Reads the control row without acknowledging anything.
///
/// # Errors
/// The query failed.
pub async fn read(pool: &PgPool) -> Result<Option<RingRow>, sqlx::Error> {
    let row: Option<Raw> =
        sqlx::query_as("SELECT version, shards, target, phase, rows_copied, lag_rows FROM shardgate_ring WHERE id = 1")
            .fetch_optional(pool)
            .await?;
    Ok(row.map(from_raw))
}

/// Creates the control row for a ring of `shards` if there is none (run by `migrate up`:
/// the first topology a cluster is migrated with defines its first ring).
///
/// # Errors
/// The query failed.
pub async fn ensure(pool: &PgPool, shards: i32) -> Result<RingRow, sqlx::Error> {
    sqlx::query("INSERT INTO shardgate_ring (id, version, shards) VALUES (1, 1, $1) ON CONFLICT (id) DO NOTHING")
        .bind(shards)
        .execute(pool)
        .await?;
    Ok(read(pool).await?.unwrap_or(RingRow::initial(shards)))
}

/// Before a move starts, the resharder waits for every worker seen this recently that has
/// not deregistered: a worker cut off from shard 0 while the ring was stable is not fenced
/// (fencing writes whenever shard 0 is unreachable would make shard 0 everyone's single point
/// of failure), so the move must not begin without it.
pub const REGISTERED_WINDOW_S: f64 = 60.0;

/// Workers acknowledged within `window_s` seconds (and not deregistered) that have not yet
/// acknowledged `(version, phase)`.
///
/// # Errors
/// The query failed.
pub async fn laggards(pool: &PgPool, version: i32, phase: Phase, window_s: f64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT worker FROM shardgate_ring_workers
         WHERE seen_at > now() - make_interval(secs => $3) AND NOT (version = $1 AND phase = $2)",
    )
    .bind(version)
    .bind(phase.as_str())
    .bind(window_s)
    .fetch_all(pool)
    .await
}

/// Removes a worker's acknowledgement row (it has stopped serving).
///
/// # Errors
/// The query failed.
pub async fn deregister(pool: &PgPool, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM shardgate_ring_workers WHERE worker = $1").bind(worker).execute(pool).await.map(|_| ())
}
