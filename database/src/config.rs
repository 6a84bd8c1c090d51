use std::time::Duration;

/// Pool and health-check settings, per worker process. Sizes are per shard.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections per shard to its PgBouncer (primary). PgBouncer multiplexes these onto
    /// at most `max_db_connections` server connections.
    pub primary_pool_size: u32,
    /// Connections per shard to its replica (direct: standbys take reads only).
    ///
    /// Small on purpose: on a 2-core box a few busy backends beat many half-idle ones
    /// (GET by id measured 25.7k req/s with 4 per shard per worker vs 20.8k with 16).
    pub replica_pool_size: u32,
    /// How long a request may wait for a pooled connection before it fails.
    pub acquire_timeout: Duration,
    /// Upper bound for one query round trip from the request path.
    pub query_timeout: Duration,
    /// How often the health monitor probes every primary and replica.
    pub health_interval: Duration,
    /// Timeout of one health probe; a probe that takes longer marks the piece down.
    pub health_timeout: Duration,
    /// A replica further behind than this (seconds) is not used for reads.
    pub max_replica_lag: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            primary_pool_size: 8,
            replica_pool_size: 4,
            acquire_timeout: Duration::from_millis(2000),
            query_timeout: Duration::from_millis(5000),
            health_interval: Duration::from_millis(1000),
            health_timeout: Duration::from_millis(1000),
            max_replica_lag: Duration::from_millis(1000),
        }
    }
}
