//! Admin commands: each prints something readable for a person (and `--json` where a
//! script wants it) and exits non-zero when something is wrong.
//!
//! - `migrate up|latest|down|status|make` -> [`migrate`], [`migrate_make`]
//! - `shards [--json]` -> [`shards`]
//! - `shard-of ID` -> [`shard_of`]
//! - `db-url N [--replica|--pooler]` -> [`db_url`]
//! - `token --user ID [--ttl S]` -> [`token`]
//! - `config check` -> [`config_check`]

mod shards;

use std::path::Path;

use anyhow::{bail, Context};
use database::Endpoint;
use sharding::ShardId;

use crate::cli::MigrateCommand;
use crate::config::Config;

pub use shards::shards;

/// A small runtime for one-shot admin commands.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn shard_of(cfg: &Config, id: &str) -> anyhow::Result<()> {
    let topo = cfg.load_topology()?;
    let shard = topo.ring().shard_for_str(id);
    let spec = topo.shard(shard);
    println!("{id} -> {} (primary {}, replica {}, pgbouncer {})", spec.name, spec.primary, spec.replica, spec.pooler);
    Ok(())
}

/// The URL of one endpoint of shard N.
pub fn url(topo: &sharding::Topology, shard: ShardId, endpoint: Endpoint) -> String {
    let spec = topo.shard(shard);
    let addr = match endpoint {
        Endpoint::Primary => &spec.primary,
        Endpoint::Replica => &spec.replica,
        Endpoint::Pooler => &spec.pooler,
    };
    let auth = if topo.password.is_empty() { topo.user.clone() } else { format!("{}:{}", topo.user, topo.password) };
    format!("postgres://{auth}@{}:{}/{}", addr.host, addr.port, topo.database)
}

pub fn db_url(cfg: &Config, shard: u16, replica: bool, pooler: bool) -> anyhow::Result<()> {
    let topo = cfg.load_topology()?;
    let id = ShardId::new(shard);
    if topo.get(id).is_none() {
        bail!("no shard {shard}: the topology has shards 0..{}", topo.len() - 1);
    }
    let endpoint = match (replica, pooler) {
        (true, _) => Endpoint::Replica,
        (_, true) => Endpoint::Pooler,
        _ => Endpoint::Primary,
    };
    println!("{}", url(&topo, id, endpoint));
    Ok(())
}

pub fn migrate_make(dir: &Path, name: &str) -> anyhow::Result<()> {
    let (up, down) = database::migrate::make(dir, name).context("creating the migration")?;
    println!("created {}\ncreated {}", up.display(), down.display());
    Ok(())
}

pub async fn migrate(cfg: &Config, cmd: MigrateCommand) -> anyhow::Result<()> {
    let topo = cfg.load_topology()?;
    let applying = matches!(cmd, MigrateCommand::Up | MigrateCommand::Latest);
    let (verb, reports) = match cmd {
        MigrateCommand::Up | MigrateCommand::Latest => ("applied", database::migrate::up(&topo).await),
        MigrateCommand::Down => ("reverted", database::migrate::down(&topo).await),
        MigrateCommand::Status => {
            println!("migrations in this binary:");
            for (v, d) in database::migrate::known_versions() {
                println!("  {v} {d}");
            }
            ("", database::migrate::status(&topo).await)
        }
        MigrateCommand::Make { .. } => unreachable!("handled without a runtime"),
    };
    let mut failed = 0;
    for (spec, r) in topo.shards.iter().zip(reports) {
        match r {
            Ok(rep) if verb.is_empty() => println!("{}: applied {:?}", spec.name, rep.applied),
            Ok(rep) if rep.changed.is_empty() => println!("{}: up to date ({} applied)", spec.name, rep.applied.len()),
            Ok(rep) => println!("{}: {verb} {:?} ({} applied)", spec.name, rep.changed, rep.applied.len()),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {e}", spec.name);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} shard(s) failed");
    }
    if applying {
        // The first topology a cluster is migrated with defines its first ring (shard 0 holds
        // the ring's control row; resharding changes it, nothing else does).
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(database::connect_options(&topo, ShardId::new(0), Endpoint::Primary))
            .await
            .context("connect to shard 0")?;
        let row = crate::reshard::control::ensure(&pool, topo.len() as i32).await?;
        println!("ring: version {} with {} shards, {}", row.version, row.shards, row.phase.as_str());
        pool.close().await;
    }
    Ok(())
}

/// `shardgate config check`: everything loaded and validated, or the reason it is not.
pub fn config_check(cfg: &Config) -> anyhow::Result<()> {
    cfg.validate()?;
    let topo = cfg.load_topology()?;
    let mut shown = cfg.clone();
    for secret in [&mut shown.presence_auth_secret, &mut shown.admin_token] {
        if !secret.is_empty() {
            *secret = "<redacted>".into();
        }
    }
    println!("{}", toml::to_string_pretty(&shown)?);
    println!("# effective: {} worker(s) x {} thread(s)", cfg.effective_workers(), cfg.effective_worker_threads());
    println!("# topology {}: {} shards, {} vnodes each", cfg.topology.display(), topo.len(), topo.vnodes);
    for s in &topo.shards {
        println!("#   {}: primary {}, replica {}, pgbouncer {}", s.name, s.primary, s.replica, s.pooler);
    }
    println!("config ok");
    Ok(())
}

/// `shardgate token --user ID`: a presence bearer token signed with the configured secret.
pub fn token(cfg: &Config, user: &str, ttl: u64) -> anyhow::Result<()> {
    if cfg.presence_auth_secret.is_empty() {
        bail!("PRESENCE_AUTH_SECRET is not set: presence auth is off, no token is needed");
    }
    crate::presence::parse_id(user)?;
    println!("{}", crate::presence::auth::mint(cfg.presence_auth_secret.as_bytes(), user, ttl)?);
    Ok(())
}
