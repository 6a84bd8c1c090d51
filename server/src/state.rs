//! Per-process application state, built once per worker and shared by every request
//! through an `Arc` (cloning it is one atomic increment). No process globals: tests can
//! run several apps in one process.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use database::{HealthMonitor, ShardPools};
use sharding::{Ring, Topology};
use tokio_util::sync::CancellationToken;

use crate::cache::UserCache;
use crate::config::Config;
use crate::observability::Metrics;
use crate::redis::RedisHandle;

#[derive(Debug)]
pub struct AppState {
    pub cfg: Config,
    pub topo: Topology,
    pub ring: Ring,
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
        let health = HealthMonitor::start(&topo, &pool_cfg, cancel.clone()).await;
        let redis = RedisHandle::start(&cfg.redis_url, pool_cfg.health_interval, cancel.clone()).await?;
        let presence = crate::presence::Presence::start(&cfg, redis.clone(), cancel.clone())?;
        let sale_limits = crate::sale::limit::SaleLimits::start(&cfg, cancel);
        let grpc = crate::presence::grpc::GrpcRouter::new(presence.clone())?;
        Ok(Arc::new(AppState {
            ring: topo.ring(),
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
        }))
    }
}
