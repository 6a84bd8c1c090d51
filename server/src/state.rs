//! Per-process application state, built once per worker and shared by every request
//! through an `Arc` (cloning it is one atomic increment). No process globals: tests can
//! run several apps in one process.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use database::{HealthMonitor, ShardPools};
use sharding::{ShardId, Topology};
use tokio_util::sync::CancellationToken;

use crate::cache::UserCache;
use crate::config::Config;
use crate::observability::Metrics;
use crate::redis::RedisHandle;

#[derive(Debug)]
pub struct AppState {
    pub cfg: Config,
    pub topo: Topology,
    /// The ring requests route by; changes while a shard is added (`reshard`).
    pub ring: crate::reshard::RingControl,
    pub pools: ShardPools,
    pub health: HealthMonitor,
    pub redis: RedisHandle,
    pub metrics: Metrics,
    pub cache: Arc<UserCache>,
    pub sale: crate::sale::Sale,
    pub sale_limits: std::sync::Arc<crate::sale::limit::SaleLimits>,
    pub presence: Arc<crate::presence::Presence>,
    /// gRPC on the HTTP port (status service + reflection).
    pub grpc: crate::presence::grpc::GrpcRouter,
    pub query_timeout: Duration,
    /// Set when shutdown begins: HTTP/1 responses then say `Connection: close`.
    pub draining: AtomicBool,
}

pub type State = Arc<AppState>;

/// How often a worker reads the ring's control row while no shard is being added (every
/// 20 ms during a move). One small query on shard 0 per worker.
const RING_POLL_MS: u64 = 200;

impl AppState {
    /// Connects lazily to every shard, starts the health monitor (one measured round
    /// first) and the Redis connection. Background tasks stop when `cancel` fires.
    ///
    /// # Errors
    /// Invalid topology or Redis URL.
    pub async fn build(cfg: Config, metrics: Metrics, cancel: CancellationToken) -> anyhow::Result<State> {
        let topo = cfg.load_topology()?;
        let pool_cfg = cfg.pool_config();
        let pools = ShardPools::new(&topo, &pool_cfg);
        // The ring comes from shard 0's control row (resharding changes it); without one
        // (shard 0 down at start, or not migrated), a ring of every shard in the topology,
        // corrected by the watcher at its first successful poll.
        // The read also registers this worker (an acknowledgement of "nothing yet"), so a
        // resharder that starts a move waits for it.
        let row = {
            let pool = &pools.get(ShardId::new(0)).primary;
            let name = crate::reshard::control::worker_name();
            let until = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let read = crate::reshard::control::poll(pool, &name, 0, crate::reshard::Phase::Stable);
                match tokio::time::timeout(Duration::from_secs(1), read).await {
                    Ok(Ok(row)) => break row,
                    Ok(Err(e)) if std::time::Instant::now() >= until => {
                        tracing::warn!(error = %e, "cannot read the ring's control row on shard 0 for 5 s; routing by every shard of the topology until it can be read");
                        break None;
                    }
                    Err(_) if std::time::Instant::now() >= until => {
                        tracing::warn!("reading the ring's control row timed out for 5 s; routing by every shard of the topology until it can be read");
                        break None;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        };
        if let Some(r) = &row {
            let need = r.target.unwrap_or(r.shards).max(r.shards) as usize;
            anyhow::ensure!(
                need <= topo.len(),
                "the ring (version {}) needs {need} shards but the topology has {}: add the new shard to the topology",
                r.version,
                topo.len()
            );
        }
        let ring = crate::reshard::RingControl::new(row.as_ref(), topo.len(), topo.vnodes);
        let health = HealthMonitor::start(&topo, &pool_cfg, cancel.clone()).await;
        let redis = RedisHandle::start(&cfg.redis_url, pool_cfg.health_interval, cancel.clone()).await?;
        let presence = crate::presence::Presence::start(&cfg, redis.clone(), cancel.clone())?;
        let sale_limits = crate::sale::limit::SaleLimits::start(&cfg, cancel);
        let grpc = crate::presence::grpc::GrpcRouter::new(presence.clone())?;
        let state = Arc::new(AppState {
            ring,
            query_timeout: pool_cfg.query_timeout,
            topo,
            pools,
            health,
            redis,
            metrics,
            cache: Arc::new(UserCache::new(&cfg)),
            sale: crate::sale::Sale::new(&cfg),
            sale_limits,
            presence,
            grpc,
            cfg,
            draining: AtomicBool::new(false),
        });
        tokio::spawn(crate::reshard::watch(state.clone(), Duration::from_millis(RING_POLL_MS)));
        Ok(state)
    }
}
