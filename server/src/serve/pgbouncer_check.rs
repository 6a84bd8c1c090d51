//! Refuses to start against a transaction-mode PgBouncer older than 1.21: there, sqlx's
//! extended protocol can run *another client's* prepared statement without an error
//!. 1.21+ with `max_prepared_statements` is safe.

use std::time::Duration;

use database::{connect_options, Endpoint};
use sharding::Topology;
use sqlx::{Connection, Row};

/// (major, minor) from "PgBouncer 1.24.1".
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let v = s.trim().strip_prefix("PgBouncer ")?;
    let mut it = v.split(|c: char| c == '.' || c.is_whitespace());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

pub fn is_safe(version: (u32, u32), pool_mode: &str) -> bool {
    pool_mode != "transaction" || version >= (1, 21)
}

/// Checks every shard's pooler through its admin console.
///
/// # Errors
/// A message naming the first shard whose PgBouncer is unsafe, and its version.
/// A pooler that cannot be reached is logged and skipped (the shard is simply down).
pub async fn check(topo: &Topology) -> Result<(), String> {
    for spec in &topo.shards {
        let opts = connect_options(topo, spec.id, Endpoint::Pooler).database("pgbouncer");
        let probe = async {
            let mut c = sqlx::PgConnection::connect_with(&opts).await?;
            let version: String = sqlx::raw_sql("SHOW VERSION").fetch_one(&mut c).await?.try_get(0)?;
            let rows = sqlx::raw_sql("SHOW CONFIG").fetch_all(&mut c).await?;
            let mode = rows
                .iter()
                .find(|r| r.try_get::<String, _>(0).is_ok_and(|k| k == "pool_mode"))
                .and_then(|r| r.try_get::<String, _>(1).ok())
                .unwrap_or_default();
            Ok::<_, sqlx::Error>((version, mode))
        };
        match tokio::time::timeout(Duration::from_secs(3), probe).await {
            Ok(Ok((version, mode))) => {
                let parsed = parse_version(&version)
                    .ok_or_else(|| format!("{}: cannot read the PgBouncer version from {version:?}", spec.name))?;
                if !is_safe(parsed, &mode) {
                    return Err(format!(
                        "{}: {} at {} runs pool_mode={mode}; shardgate needs PgBouncer >= 1.21 with \
                         max_prepared_statements in transaction mode (older versions can run another \
                         client's prepared statement). Run scripts/install-pgbouncer.sh.",
                        spec.name, version, spec.pooler
                    ));
                }
                tracing::debug!(shard = %spec.name, %version, pool_mode = %mode, "pgbouncer ok");
            }
            Ok(Err(e)) => {
                tracing::warn!(shard = %spec.name, pooler = %spec.pooler, error = %e, "cannot check the PgBouncer version (shard down, or not a PgBouncer)")
            }
            Err(_) => tracing::warn!(shard = %spec.name, pooler = %spec.pooler, "PgBouncer version check timed out"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_1_21_are_refused_in_transaction_mode() {
        assert_eq!(parse_version("PgBouncer 1.24.1"), Some((1, 24)));
        assert_eq!(parse_version("PgBouncer 1.18.0"), Some((1, 18)));
        assert_eq!(parse_version("postgres"), None);
        assert!(!is_safe((1, 18), "transaction"));
        assert!(!is_safe((1, 20), "transaction"));
        assert!(is_safe((1, 21), "transaction"));
        assert!(is_safe((2, 0), "transaction"));
        assert!(is_safe((1, 18), "session"));
    }
}
