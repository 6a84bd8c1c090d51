//! Running one query on one shard from the request path: health gate first (a shard the
//! monitor knows is down fails fast with 503 instead of after a connect timeout), then
//! the query under `db_query_timeout_ms`, with per-shard metrics. A connection-level
//! failure marks the shard down at once; the monitor brings it back when it answers.

use std::future::Future;
use std::time::Instant;

use sharding::ShardId;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Which server of the shard a query goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Through PgBouncer to the primary.
    Primary,
    /// The streaming replica.
    Replica,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Primary => "primary",
            Target::Replica => "replica",
        }
    }
}

/// Why a shard query failed.
#[derive(Debug)]
pub enum DbFail {
    /// The server is down, unreachable, overloaded or too slow: try elsewhere or 503.
    Unavailable(ShardId),
    /// The server answered with an error (constraint violation, bug, ...).
    Sql(ShardId, sqlx::Error),
}

impl From<DbFail> for ApiError {
    fn from(f: DbFail) -> ApiError {
        match f {
            DbFail::Unavailable(shard) => ApiError::ShardUnavailable { shard },
            DbFail::Sql(_, e) => ApiError::internal(e),
        }
    }
}

static SHARD_LABELS: [&str; 16] =
    ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"];

pub fn shard_label(shard: ShardId) -> &'static str {
    SHARD_LABELS.get(shard.index()).copied().unwrap_or("other")
}

/// Is this error the server (or the path to it) failing, rather than the query?
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception (PgBouncer's login/pool errors too); 57P0x: admin
            // or crash shutdown, cannot connect now; 53300: too many connections;
            // 25006: read-only transaction (a primary that became a standby).
            c.starts_with("08") || c.starts_with("57P") || c == "53300" || c == "25006"
        }),
        _ => false,
    }
}

/// Runs `query` against `target` of `shard`.
///
/// # Errors
/// [`DbFail::Unavailable`] when the monitor says the primary is down (without trying),
/// on connection-level errors and on timeout; [`DbFail::Sql`] for errors of the query.
pub async fn run<T, F>(state: &AppState, shard: ShardId, target: Target, query: F) -> Result<T, DbFail>
where
    F: Future<Output = Result<T, sqlx::Error>>,
{
    if target == Target::Primary && !state.health.primary_up(shard) {
        metrics::counter!("db_queries_total", "shard" => shard_label(shard), "target" => target.label(), "outcome" => "skipped_down").increment(1);
        return Err(DbFail::Unavailable(shard));
    }
    let start = Instant::now();
    let result = tokio::time::timeout(state.query_timeout, query).await;
    metrics::histogram!("db_query_duration_seconds", "shard" => shard_label(shard), "target" => target.label())
        .record(start.elapsed().as_secs_f64());
    let (outcome, out) = match result {
        Ok(Ok(v)) => ("ok", Ok(v)),
        // Our own pool is saturated: shed this request, but the server is fine.
        Ok(Err(sqlx::Error::PoolTimedOut)) => ("pool_timeout", Err(DbFail::Unavailable(shard))),
        Ok(Err(e)) if is_unavailable(&e) => {
            tracing::warn!(shard = %shard, target = target.label(), error = %e, "shard unavailable");
            match target {
                Target::Primary => state.health.report_primary_failure(shard),
                Target::Replica => state.health.report_replica_failure(shard),
            }
            ("unavailable", Err(DbFail::Unavailable(shard)))
        }
        Ok(Err(e)) => ("error", Err(DbFail::Sql(shard, e))),
        Err(_) => ("timeout", Err(DbFail::Unavailable(shard))),
    };
    metrics::counter!("db_queries_total", "shard" => shard_label(shard), "target" => target.label(), "outcome" => outcome)
        .increment(1);
    out
}
