//! `shardgate shards`: one line per shard, measured now (not assumed): user count, ring
//! share, whether the primary and replica answer, and the replica's lag.

use std::time::Duration;

use database::{connect_options, Endpoint, HealthMonitor};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::config::Config;

#[derive(Debug, Serialize)]
struct ShardLine {
    shard_id: u16,
    shard_name: String,
    user_count: Option<i64>,
    ring_share: f64,
    healthy: bool,
    primary_healthy: bool,
    replica_healthy: bool,
    replica_lag_bytes: Option<u64>,
    replica_lag_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    total_users: i64,
    shard_count: usize,
    healthy_shards: usize,
    shards: Vec<ShardLine>,
}

async fn count_users(opts: sqlx::postgres::PgConnectOptions) -> Result<i64, String> {
    let work = async {
        let mut c = PgConnection::connect_with(&opts).await?;
        sqlx::query_scalar::<_, i64>("select count(*) from users").fetch_one(&mut c).await
    };
    match tokio::time::timeout(Duration::from_secs(3), work).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out after 3 s".into()),
    }
}

/// Prints the shard table (or JSON); fails when any shard is unhealthy, after printing all.
pub async fn shards(cfg: &Config, json: bool) -> anyhow::Result<()> {
    let topo = cfg.load_topology()?;
    let shares = topo.ring().shares();
    let pools = cfg.pool_config();
    let (health, counts) = tokio::join!(
        HealthMonitor::probe_once(&topo, &pools),
        futures_util::future::join_all(topo.shards.iter().map(|s| count_users(connect_options(
            &topo,
            s.id,
            Endpoint::Primary
        ))))
    );
    let lines: Vec<ShardLine> = topo
        .shards
        .iter()
        .zip(health)
        .zip(counts)
        .map(|((spec, h), count)| ShardLine {
            shard_id: spec.id.get(),
            shard_name: spec.name.clone(),
            user_count: count.as_ref().ok().copied(),
            ring_share: shares[spec.id.index()],
            healthy: h.primary_up && h.replica_up && count.is_ok(),
            primary_healthy: h.primary_up,
            replica_healthy: h.replica_up,
            replica_lag_bytes: h.replica_lag_bytes,
            replica_lag_seconds: h.replica_lag_seconds,
            error: count.err(),
        })
        .collect();
    let report = Report {
        total_users: lines.iter().filter_map(|l| l.user_count).sum(),
        shard_count: lines.len(),
        healthy_shards: lines.iter().filter(|l| l.healthy).count(),
        shards: lines,
    };
    if json {
        println!("{}", sonic_rs::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.healthy_shards < report.shard_count {
        anyhow::bail!("{} of {} shards unhealthy", report.shard_count - report.healthy_shards, report.shard_count);
    }
    Ok(())
}

fn up(b: bool) -> &'static str {
    if b {
        "up"
    } else {
        "DOWN"
    }
}

fn print_table(r: &Report) {
    println!("{:<9} {:>10} {:>10} {:>8} {:>8} {:>22}", "SHARD", "USERS", "RING", "PRIMARY", "REPLICA", "REPLICA LAG");
    for l in &r.shards {
        let users = l.user_count.map_or("?".to_string(), |n| n.to_string());
        let lag = match (l.replica_lag_bytes, l.replica_lag_seconds) {
            (Some(b), Some(s)) => format!("{b} B / {s:.3} s"),
            (None, Some(s)) => format!("? B / {s:.3} s"),
            _ => "-".to_string(),
        };
        println!(
            "{:<9} {:>10} {:>9.2}% {:>8} {:>8} {:>22}",
            l.shard_name,
            users,
            l.ring_share * 100.0,
            up(l.primary_healthy),
            up(l.replica_healthy),
            lag
        );
        if let Some(e) = &l.error {
            println!("          {}: {e}", l.shard_name);
        }
    }
    println!("{:<9} {:>10}   ({} of {} shards healthy)", "total", r.total_users, r.healthy_shards, r.shard_count);
}
