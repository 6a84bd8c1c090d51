//! Operational endpoints:
//!
//! - `GET /health` (`/healthz`): liveness, seed shape `{"status":"ok","shards":5,"mode":"sharded"}`;
//!   `"degraded"` with the pieces that are down. Always 200: the process is alive.
//! - `GET /ready`: 503 until every primary and Redis answer, with per-piece detail.
//! - `GET /metrics`: Prometheus text for the whole service (every worker, summed).
//! - `GET /api/v1/shards/stats`: the Messenger Clone API's shape plus measured health, lag, pools, ring share.
//!
//! Health and readiness answer from the monitors' atomics: no database or Redis call.

use http::{HeaderValue, StatusCode};
use serde::Serialize;

use crate::db::shard_label;
use crate::http::error::ApiError;
use crate::http::response::{bytes_response, json_response, Resp};
use crate::state::State;

#[derive(Serialize)]
struct ShardState {
    shard: String,
    primary: &'static str,
    replica: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_lag_seconds: Option<f64>,
}

fn updown(b: bool) -> &'static str {
    if b {
        "up"
    } else {
        "down"
    }
}

fn shard_states(state: &State) -> Vec<ShardState> {
    state
        .health
        .snapshot()
        .into_iter()
        .map(|h| ShardState {
            shard: h.shard.name(),
            primary: updown(h.primary_up),
            replica: updown(h.replica_up),
            replica_lag_seconds: h.replica_lag_seconds,
        })
        .collect()
}

pub fn health(state: &State) -> Resp {
    #[derive(Serialize)]
    struct Health<'a> {
        status: &'a str,
        shards: usize,
        mode: &'a str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        down: Vec<String>,
    }
    let mut down = Vec::new();
    for h in state.health.snapshot() {
        if !h.primary_up {
            down.push(format!("{} primary", h.shard.name()));
        }
        if !h.replica_up {
            down.push(format!("{} replica", h.shard.name()));
        } else if !h.replica_streaming {
            down.push(format!("{} replication", h.shard.name()));
        }
    }
    if !state.redis.is_up() {
        down.push("redis".into());
    }
    let status = if down.is_empty() { "ok" } else { "degraded" };
    json_response(StatusCode::OK, &Health { status, shards: state.topo.len(), mode: "sharded", down })
}

pub fn ready(state: &State) -> Resp {
    #[derive(Serialize)]
    struct Ready {
        ready: bool,
        redis: &'static str,
        shards: Vec<ShardState>,
    }
    let ready = state.health.all_primaries_up() && state.redis.is_up();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(code, &Ready { ready, redis: updown(state.redis.is_up()), shards: shard_states(state) })
}

/// Sets this worker's gauges (pool use, shard health). Gauges carry a `worker` label:
/// summing them across workers would be meaningless for `shard_up`, and per-worker pool
/// use is what an operator sizing pools wants to see. Called periodically by each
/// worker and before each scrape.
pub fn refresh_gauges(state: &State) {
    let worker = state.metrics.slot_label();
    for shard in state.pools.iter() {
        let s = shard_label(shard.id);
        for (pool, p) in [("primary", &shard.primary), ("replica", &shard.replica)] {
            let idle = p.num_idle() as f64;
            metrics::gauge!("db_pool_connections", "worker" => worker, "shard" => s, "pool" => pool, "state" => "idle")
                .set(idle);
            metrics::gauge!("db_pool_connections", "worker" => worker, "shard" => s, "pool" => pool, "state" => "in_use")
                .set(p.size() as f64 - idle);
        }
    }
    for h in state.health.snapshot() {
        let s = shard_label(h.shard);
        let up = |b: bool| f64::from(u8::from(b));
        metrics::gauge!("shard_up", "worker" => worker, "shard" => s, "role" => "primary").set(up(h.primary_up));
        metrics::gauge!("shard_up", "worker" => worker, "shard" => s, "role" => "replica").set(up(h.replica_up));
        metrics::gauge!("shard_replica_lag_bytes", "worker" => worker, "shard" => s)
            .set(h.replica_lag_bytes.map_or(f64::NAN, |b| b as f64));
    }
    metrics::gauge!("redis_up", "worker" => worker).set(f64::from(u8::from(state.redis.is_up())));
}

pub async fn metrics(state: &State) -> Resp {
    refresh_gauges(state);
    let mut text = state.metrics.render_service().await;
    append_cache_hit_ratio(&mut text);
    bytes_response(StatusCode::OK, HeaderValue::from_static("text/plain; version=0.0.4"), text.into())
}

/// The cache hit ratio of the whole service, from the merged counters (a per-worker
/// ratio could not be summed): (hits + negative hits) / all cache lookups.
fn append_cache_hit_ratio(text: &mut String) {
    let (mut hits, mut all) = (0.0, 0.0);
    for line in text.lines().filter(|l| l.starts_with("cache_requests_total{")) {
        let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        all += v;
        if line.contains(r#"result="hit""#) || line.contains(r#"result="negative_hit""#) {
            hits += v;
        }
    }
    if all > 0.0 {
        use std::fmt::Write;
        let _ = write!(
            text,
            "# HELP cache_hit_ratio Share of cache lookups answered by Redis, all workers.\n\
             # TYPE cache_hit_ratio gauge\ncache_hit_ratio {}\n",
            hits / all
        );
    }
}

pub async fn shard_stats(state: &State) -> Result<Resp, ApiError> {
    #[derive(Serialize)]
    struct Pool {
        size: u32,
        idle: usize,
        max: u32,
    }
    #[derive(Serialize)]
    struct Line {
        shard_id: u16,
        shard_name: String,
        user_count: i64,
        healthy: bool,
        primary_healthy: bool,
        replica_healthy: bool,
        replica_streaming: bool,
        replica_lag_bytes: Option<u64>,
        replica_lag_seconds: Option<f64>,
        ring_share: f64,
        primary_pool: Pool,
        replica_pool: Pool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    #[derive(Serialize)]
    struct Stats {
        total_users: i64,
        shard_count: usize,
        healthy_shards: usize,
        /// The ring's version (one more per shard added) and its phase (`stable` unless a
        /// shard is being added).
        ring_version: i32,
        ring_phase: &'static str,
        shards: Vec<Line>,
    }
    let view = state.ring.view();
    let shares = view.ring.shares(); // a shard not yet on the ring has share 0
    let counts = futures_util::future::join_all(state.topo.shard_ids().map(|s| crate::users::count_on(state, s))).await;
    let health = state.health.snapshot();
    let lines: Vec<Line> = state
        .pools
        .iter()
        .zip(counts)
        .zip(health)
        .map(|((p, count), h)| {
            let pool = |pool: &sqlx::PgPool, max| Pool { size: pool.size(), idle: pool.num_idle(), max };
            Line {
                shard_id: p.id.get(),
                shard_name: p.name.clone(),
                user_count: count.as_ref().copied().unwrap_or(0),
                healthy: h.primary_up && h.replica_up && count.is_ok(),
                primary_healthy: h.primary_up,
                replica_healthy: h.replica_up,
                replica_streaming: h.replica_streaming,
                replica_lag_bytes: h.replica_lag_bytes,
                replica_lag_seconds: h.replica_lag_seconds,
                ring_share: shares.get(p.id.index()).copied().unwrap_or(0.0),
                primary_pool: pool(&p.primary, state.cfg.primary_pool_size),
                replica_pool: pool(&p.replica, state.cfg.replica_pool_size),
                error: count.err().map(|_| "user count unavailable".to_string()),
            }
        })
        .collect();
    let stats = Stats {
        total_users: lines.iter().map(|l| l.user_count).sum(),
        shard_count: lines.len(),
        healthy_shards: lines.iter().filter(|l| l.healthy).count(),
        ring_version: view.version,
        ring_phase: view.phase.as_str(),
        shards: lines,
    };
    Ok(json_response(StatusCode::OK, &stats))
}
