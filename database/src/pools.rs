use std::fmt;

use sharding::{Addr, ShardId, Topology};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::PoolConfig;

/// Which server of a shard to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The shard's PgBouncer, in front of the primary: the write path.
    Pooler,
    /// The primary itself, bypassing PgBouncer: migrations, health, admin.
    Primary,
    /// The streaming replica: the read path.
    Replica,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Pooler => "pgbouncer",
            Endpoint::Primary => "primary",
            Endpoint::Replica => "replica",
        })
    }
}

/// Connection options for one endpoint of one shard.
pub fn connect_options(topo: &Topology, shard: ShardId, endpoint: Endpoint) -> PgConnectOptions {
    let spec = topo.shard(shard);
    let addr: &Addr = match endpoint {
        Endpoint::Pooler => &spec.pooler,
        Endpoint::Primary => &spec.primary,
        Endpoint::Replica => &spec.replica,
    };
    let mut opts = PgConnectOptions::new()
        .host(&addr.host)
        .port(addr.port)
        .username(&topo.user)
        .database(&topo.database)
        .application_name("shardgate");
    if !topo.password.is_empty() {
        opts = opts.password(&topo.password);
    }
    opts
}

/// One shard's pools. Cloning is cheap (the pools are reference counted).
#[derive(Clone, Debug)]
pub struct Shard {
    pub id: ShardId,
    pub name: String,
    /// Through PgBouncer (transaction mode) to the primary: every write, strong reads.
    pub primary: PgPool,
    /// Straight to the streaming replica: default reads.
    pub replica: PgPool,
}

/// The pools of every shard, indexed by [`ShardId`].
#[derive(Clone, Debug)]
pub struct ShardPools {
    shards: Vec<Shard>,
}

impl ShardPools {
    /// Builds lazy pools: nothing connects until first use, so a shard that is down at
    /// start-up costs nothing and the others serve normally.
    pub fn new(topo: &Topology, cfg: &PoolConfig) -> ShardPools {
        let shards = topo
            .shards
            .iter()
            .map(|spec| {
                let pool = |endpoint, size| {
                    PgPoolOptions::new()
                        .max_connections(size)
                        .min_connections(0)
                        .acquire_timeout(cfg.acquire_timeout)
                        .idle_timeout(Some(std::time::Duration::from_secs(300)))
                        // The health monitor already tells us when a server went away;
                        // a ping per checkout would double the round trips.
                        .test_before_acquire(false)
                        .connect_lazy_with(connect_options(topo, spec.id, endpoint))
                };
                Shard {
                    id: spec.id,
                    name: spec.name.clone(),
                    primary: pool(Endpoint::Pooler, cfg.primary_pool_size),
                    replica: pool(Endpoint::Replica, cfg.replica_pool_size),
                }
            })
            .collect();
        ShardPools { shards }
    }

    pub fn get(&self, id: ShardId) -> &Shard {
        &self.shards[id.index()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter()
    }

    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Closes every pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        for s in &self.shards {
            s.primary.close().await;
            s.replica.close().await;
        }
    }
}
