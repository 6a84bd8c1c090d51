//! Migrations: the reversible `*.up.sql` / `*.down.sql` pairs in `database/migrations/`,
//! embedded at compile time and applied to every shard primary directly.
//!
//! Directly, not through PgBouncer: sqlx holds a session-level advisory lock while it
//! migrates, and transaction-mode PgBouncer may hand each statement a different server
//! connection. Every shard migrates concurrently; one shard failing does not stop the
//! others, and its error names it.

use std::path::{Path, PathBuf};

use sharding::{ShardId, Topology};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::pools::{connect_options, Endpoint};
use crate::Error;

/// Every migration of `database/migrations/`, in version order.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The outcome of a migration command on one shard.
#[derive(Debug)]
pub struct ShardReport {
    pub shard: ShardId,
    /// Versions applied (up) or reverted (down) by this call; empty when already current.
    pub changed: Vec<i64>,
    /// Versions applied after the call.
    pub applied: Vec<i64>,
}

async fn connect(topo: &Topology, shard: ShardId) -> Result<PgConnection, Error> {
    PgConnection::connect_with(&connect_options(topo, shard, Endpoint::Primary).application_name("shardgate-migrate"))
        .await
        .map_err(Error::sql(shard))
}

async fn applied(conn: &mut PgConnection, shard: ShardId) -> Result<Vec<i64>, Error> {
    let exists: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::sql(shard))?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::sql(shard))
}

async fn up_one(topo: &Topology, shard: ShardId) -> Result<ShardReport, Error> {
    let mut conn = connect(topo, shard).await?;
    let before = applied(&mut conn, shard).await?;
    MIGRATOR.run(&mut conn).await.map_err(|source| Error::Migrate { shard, source })?;
    let after = applied(&mut conn, shard).await?;
    let changed = after.iter().copied().filter(|v| !before.contains(v)).collect();
    Ok(ShardReport { shard, changed, applied: after })
}

async fn down_one(topo: &Topology, shard: ShardId) -> Result<ShardReport, Error> {
    let mut conn = connect(topo, shard).await?;
    let before = applied(&mut conn, shard).await?;
    let Some(&last) = before.last() else {
        return Ok(ShardReport { shard, changed: vec![], applied: before });
    };
    // `undo` reverts every applied migration with a version above the target.
    let target = before.len().checked_sub(2).map_or(0, |i| before[i]);
    MIGRATOR.undo(&mut conn, target).await.map_err(|source| Error::Migrate { shard, source })?;
    let after = applied(&mut conn, shard).await?;
    Ok(ShardReport { shard, changed: vec![last], applied: after })
}

async fn status_one(topo: &Topology, shard: ShardId) -> Result<ShardReport, Error> {
    let mut conn = connect(topo, shard).await?;
    let applied = applied(&mut conn, shard).await?;
    Ok(ShardReport { shard, changed: vec![], applied })
}

macro_rules! on_every_shard {
    ($topo:expr, $f:ident) => {{
        let topo = $topo;
        futures_util::future::join_all(topo.shards.iter().map(|s| $f(topo, s.id))).await
    }};
}

/// Applies every pending migration on every shard primary.
///
/// # Errors
/// Per shard: the primary is unreachable, or a migration failed (that shard's
/// transaction rolls back; the other shards are unaffected).
pub async fn up(topo: &Topology) -> Vec<Result<ShardReport, Error>> {
    on_every_shard!(topo, up_one)
}

/// Reverts the newest applied migration on every shard primary.
///
/// # Errors
/// Per shard, as [`up`].
pub async fn down(topo: &Topology) -> Vec<Result<ShardReport, Error>> {
    on_every_shard!(topo, down_one)
}

/// Lists the applied versions on every shard primary.
///
/// # Errors
/// Per shard: the primary is unreachable.
pub async fn status(topo: &Topology) -> Vec<Result<ShardReport, Error>> {
    on_every_shard!(topo, status_one)
}

/// Versions this binary carries, in order.
pub fn known_versions() -> Vec<(i64, String)> {
    MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| (m.version, m.description.to_string()))
        .collect()
}

/// Creates an empty reversible migration pair `<UTC timestamp>_<name>.{up,down}.sql` in
/// `dir`. The binary embeds migrations at build time, so rebuild before `migrate up`
/// (the Makefile's targets do).
///
/// # Errors
/// The name is not `[a-z0-9_]+`, or the files cannot be written.
pub fn make(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), Error> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("migration name {name:?} must be lowercase letters, digits and underscores"),
        )));
    }
    let version = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let up = dir.join(format!("{version}_{name}.up.sql"));
    let down = dir.join(format!("{version}_{name}.down.sql"));
    std::fs::write(&up, format!("-- {name}: applied to every shard primary by `shardgate migrate up`.\n"))?;
    std::fs::write(&down, format!("-- {name}: reverts {version}_{name}.up.sql.\n"))?;
    Ok((up, down))
}
