//! Typed configuration. Precedence, lowest first: built-in defaults -> the TOML file
//! (`--config`, or `SHARDGATE_CONFIG`, default `config/shardgate.toml` when it exists)
//! -> environment variables -> command-line flags. `shardgate config check` loads it all,
//! validates it and prints the result.
//!
//! The cluster topology (shard addresses) is its own file, `config/topology.toml`, with
//! its own `SHARDGATE_SHARD_<i>_*` overrides (see the `sharding` crate).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use database::PoolConfig;
use serde::{Deserialize, Serialize};
use sharding::Topology;

/// Every setting of the service. Each field is documented with its environment variable.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/gRPC port binds. Env `SHARDGATE_LISTEN`, or `PORT` (the Messenger Clone API) for
    /// the port alone.
    pub listen: SocketAddr,
    /// Worker processes sharing the port with SO_REUSEPORT; 0 = one per CPU. Env `WORKERS`.
    pub workers: usize,
    /// Tokio worker threads per worker process; 0 = CPUs / workers (at least 1), so that
    /// processes x threads never oversubscribes the cores. Env `WORKER_THREADS`.
    pub worker_threads: usize,
    /// The topology file. Env `SHARDGATE_TOPOLOGY`.
    pub topology: PathBuf,
    /// Redis URL. Env `REDIS_URL`.
    pub redis_url: String,
    /// Pool connections per shard to PgBouncer, per worker process. Env `DB_PRIMARY_POOL_SIZE`.
    pub primary_pool_size: u32,
    /// Pool connections per shard to the replica, per worker process. Env `DB_REPLICA_POOL_SIZE`.
    pub replica_pool_size: u32,
    /// Wait for a pooled connection at most this long. Env `DB_ACQUIRE_TIMEOUT_MS`.
    pub db_acquire_timeout_ms: u64,
    /// One query round trip at most this long. Env `DB_QUERY_TIMEOUT_MS`.
    pub db_query_timeout_ms: u64,
    /// Health probe period. Env `HEALTH_INTERVAL_MS`.
    pub health_interval_ms: u64,
    /// Health probe timeout. Env `HEALTH_TIMEOUT_MS`.
    pub health_timeout_ms: u64,
    /// A replica further behind than this is skipped for reads. Env `MAX_REPLICA_LAG_MS`.
    pub max_replica_lag_ms: u64,
    /// Deadline of a user lookup (`GET /v1/users`, `GET /api/v1/users/:id`), cache and
    /// database included, as in hotcold-user-api. Env `REQUEST_TIMEOUT_MS`.
    pub request_timeout_ms: u64,
    /// Deadline of every other request (writes, lists, stats); past it the client gets
    /// 504 `REQUEST_TIMEOUT`. Env `LONG_REQUEST_TIMEOUT_MS`.
    pub long_request_timeout_ms: u64,
    /// Cached user records expire after this many seconds; 0 = never. Env `CACHE_TTL_SECONDS`.
    pub cache_ttl_seconds: u64,
    /// "Not found" is cached this long so floods of missing ids do not reach Postgres.
    /// Env `NEGATIVE_CACHE_TTL_SECONDS`.
    pub negative_cache_ttl_seconds: u64,
    /// Prefix of every Redis key the service writes. Env `REDIS_KEY_PREFIX`.
    pub redis_key_prefix: String,
    /// One cache round trip may take this long before the lookup goes to Postgres
    /// instead (Redis slow or down never fails a read). Env `CACHE_REDIS_TIMEOUT_MS`.
    pub cache_redis_timeout_ms: u64,
    /// For this long after a write, a cache miss for that user reads the primary (not the
    /// replica), so a lagging replica can never put the old row back into the cache.
    /// Env `CACHE_RECENT_WRITE_MS`.
    pub cache_recent_write_ms: u64,
    /// Flash sale window, aligned to UTC (3600 = hourly, on the wall-clock hour).
    /// Env `SALE_WINDOW_SECONDS`.
    pub sale_window_seconds: u64,
    /// Items sold (held + bought) per sale at most. Env `SALE_ITEMS`.
    pub sale_items: u64,
    /// Items one user may hold + buy per sale. Env `SALE_USER_LIMIT`.
    pub sale_user_limit: u64,
    /// A hold expires after this and frees its item, the user's allowance and the sale's
    /// capacity. Env `RESERVATION_TIMEOUT_SECONDS`.
    pub reservation_timeout_seconds: u64,
    /// Name of the sale series; sale ids are `<name>-<window start unix>`. Env `SALE_NAME`.
    pub sale_name: String,
    /// Presence: a heartbeat keeps a user ONLINE this long; the sweeper publishes OFFLINE
    /// within about a second after. Env `USER_STATUS_TTL` (the user online status design: `30s`; `ms`, `s`,
    /// `m`, `h` or bare seconds).
    pub presence_ttl_ms: u64,
    /// What clients are told: heartbeat again within this. Env `HEARTBEAT_INTERVAL` (`15s`).
    pub presence_heartbeat_interval_ms: u64,
    /// AWAY lasts this long without activity, then OFFLINE (the user online status design: `EX 600`).
    /// Env `PRESENCE_AWAY_TTL` (duration).
    pub presence_away_ttl_ms: u64,
    /// Most ids in one status batch (`POST /status`, GetMultipleUserStatus); more is 400.
    /// Env `PRESENCE_MAX_BATCH`.
    pub presence_max_batch: usize,
    /// Most ids one subscription (SSE or gRPC) may watch. Env `PRESENCE_MAX_WATCH`.
    pub presence_max_watch: usize,
    /// Events buffered per subscriber; a subscriber that falls this far behind is told and
    /// disconnected. Env `PRESENCE_SUBSCRIBER_BUFFER`.
    pub presence_subscriber_buffer: usize,
    /// How often the sweeper looks for passed deadlines. Env `PRESENCE_SWEEP_INTERVAL_MS`.
    pub presence_sweep_interval_ms: u64,
    /// One presence Redis call may take this long before the request answers 503
    /// `REDIS_ERROR`. Env `PRESENCE_REDIS_TIMEOUT_MS`.
    pub presence_redis_timeout_ms: u64,
    /// HS256 secret for presence bearer tokens; empty = presence is open (no auth).
    /// Env `PRESENCE_AUTH_SECRET`.
    pub presence_auth_secret: String,
    /// When set, `GET /metrics` and `GET /api/v1/shards/stats` need `Authorization: Bearer
    /// <token>`; empty = open. Env `ADMIN_TOKEN`.
    pub admin_token: String,
    /// SSE keep-alive comment period. Env `SSE_KEEPALIVE_MS`.
    pub sse_keepalive_ms: u64,
    /// Flash sale (`POST /checkout`, `POST /purchase`) requests per second for the whole
    /// service (each worker enforces its share); 0 = no limit. Over it: 429 `RATE_LIMITED`
    /// with `Retry-After`. Env `SALE_RATE_LIMIT`.
    pub sale_rate_limit: u32,
    /// Flash sale requests per second per client IP (in each worker); 0 = no limit.
    /// Env `SALE_CLIENT_RATE_LIMIT`.
    pub sale_client_rate_limit: u32,
    /// A client must finish sending request headers within this. In hyper 1.x the timer
    /// also runs while a keep-alive connection waits idle for its next request, so this is
    /// the idle keep-alive timeout too. Env `HEADER_READ_TIMEOUT_MS`.
    pub header_read_timeout_ms: u64,
    /// Once a handler starts reading a request body, the whole body must arrive within
    /// this; a client that trickles it gets 408 `BODY_TIMEOUT` and its connection is
    /// closed. Keep it below `long_request_timeout_ms` (which would answer 504 first).
    /// Env `BODY_READ_TIMEOUT_MS`.
    pub body_read_timeout_ms: u64,
    /// Largest accepted request body; larger gets 413. Env `MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// On SIGTERM, in-flight requests get this long to finish. Env `SHUTDOWN_GRACE_MS`.
    pub shutdown_grace_ms: u64,
    /// Open connections per worker beyond which new ones wait. Env `MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `text` (readable) or `json` (one object per line). Env `LOG_FORMAT`.
    pub log_format: String,
    /// tracing filter, e.g. `info,shardgate=debug`. Env `RUST_LOG`.
    pub log_level: String,
    /// One structured log line per request (target `access`). Env `ACCESS_LOG`.
    pub access_log: bool,
}

impl Default for Config {
    fn default() -> Self {
        let pools = PoolConfig::default();
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            workers: 0,
            worker_threads: 0,
            topology: PathBuf::from("config/topology.toml"),
            redis_url: "redis://127.0.0.1:6379/".into(),
            primary_pool_size: pools.primary_pool_size,
            replica_pool_size: pools.replica_pool_size,
            db_acquire_timeout_ms: pools.acquire_timeout.as_millis() as u64,
            db_query_timeout_ms: pools.query_timeout.as_millis() as u64,
            health_interval_ms: pools.health_interval.as_millis() as u64,
            health_timeout_ms: pools.health_timeout.as_millis() as u64,
            max_replica_lag_ms: pools.max_replica_lag.as_millis() as u64,
            request_timeout_ms: 300,
            long_request_timeout_ms: 10_000,
            cache_ttl_seconds: 3600,
            negative_cache_ttl_seconds: 30,
            redis_key_prefix: "sg:".into(),
            cache_redis_timeout_ms: 50,
            cache_recent_write_ms: 5_000,
            sale_window_seconds: 3600,
            sale_items: 10_000,
            sale_user_limit: 10,
            reservation_timeout_seconds: 600,
            sale_name: "flash".into(),
            presence_ttl_ms: 30_000,
            presence_heartbeat_interval_ms: 15_000,
            presence_away_ttl_ms: 600_000,
            presence_max_batch: 1_000,
            presence_max_watch: 1_000,
            presence_subscriber_buffer: 256,
            presence_sweep_interval_ms: 200,
            presence_redis_timeout_ms: 500,
            presence_auth_secret: String::new(),
            admin_token: String::new(),
            sse_keepalive_ms: 15_000,
            sale_rate_limit: 0,
            sale_client_rate_limit: 0,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 5_000,
            max_body_bytes: 1 << 20,
            shutdown_grace_ms: 10_000,
            max_connections: 20_000,
            log_format: "text".into(),
            log_level: "info".into(),
            access_log: true,
        }
    }
}

/// Configuration errors, each naming the setting and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?}: {message}")]
    Env { var: &'static str, value: String, message: String },
    #[error("setting {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error(transparent)]
    Topology(#[from] sharding::Error),
}

const DEFAULT_FILE: &str = "config/shardgate.toml";

impl Config {
    /// Defaults, then the file (explicit path, `SHARDGATE_CONFIG`, or the default path
    /// when present), then the environment. Flags are applied by the caller on top.
    ///
    /// # Errors
    /// An unreadable or invalid file, or an environment variable that does not parse.
    pub fn load(file: Option<&Path>) -> Result<Config, Error> {
        Config::load_from(file, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn load_from(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, Error> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let from_env = env.iter().find(|(k, _)| k == "SHARDGATE_CONFIG").map(|(_, v)| PathBuf::from(v));
        let path = file.map(Path::to_path_buf).or(from_env);
        let mut cfg = match &path {
            Some(p) => Config::from_file(p)?,
            None if Path::new(DEFAULT_FILE).exists() => Config::from_file(Path::new(DEFAULT_FILE))?,
            None => Config::default(),
        };
        cfg.apply_env(&env)?;
        Ok(cfg)
    }

    fn from_file(path: &Path) -> Result<Config, Error> {
        let err = |message: String| Error::File { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), Error> {
        fn parse<T: std::str::FromStr>(var: &'static str, value: &str) -> Result<T, Error>
        where
            T::Err: std::fmt::Display,
        {
            value.trim().parse().map_err(|e: T::Err| Error::Env { var, value: value.into(), message: e.to_string() })
        }
        for (k, v) in env {
            match k.as_str() {
                "SHARDGATE_LISTEN" => self.listen = parse("SHARDGATE_LISTEN", v)?,
                // Applied after the loop, so PORT wins over SHARDGATE_LISTEN's port
                // whatever the order of the environment.
                "PORT" => {}
                "WORKERS" => self.workers = parse("WORKERS", v)?,
                "WORKER_THREADS" => self.worker_threads = parse("WORKER_THREADS", v)?,
                "SHARDGATE_TOPOLOGY" => self.topology = PathBuf::from(v),
                "REDIS_URL" => self.redis_url = v.clone(),
                "DB_PRIMARY_POOL_SIZE" => self.primary_pool_size = parse("DB_PRIMARY_POOL_SIZE", v)?,
                "DB_REPLICA_POOL_SIZE" => self.replica_pool_size = parse("DB_REPLICA_POOL_SIZE", v)?,
                "DB_ACQUIRE_TIMEOUT_MS" => self.db_acquire_timeout_ms = parse("DB_ACQUIRE_TIMEOUT_MS", v)?,
                "DB_QUERY_TIMEOUT_MS" => self.db_query_timeout_ms = parse("DB_QUERY_TIMEOUT_MS", v)?,
                "HEALTH_INTERVAL_MS" => self.health_interval_ms = parse("HEALTH_INTERVAL_MS", v)?,
                "HEALTH_TIMEOUT_MS" => self.health_timeout_ms = parse("HEALTH_TIMEOUT_MS", v)?,
                "MAX_REPLICA_LAG_MS" => self.max_replica_lag_ms = parse("MAX_REPLICA_LAG_MS", v)?,
                "REQUEST_TIMEOUT_MS" => self.request_timeout_ms = parse("REQUEST_TIMEOUT_MS", v)?,
                "LONG_REQUEST_TIMEOUT_MS" => self.long_request_timeout_ms = parse("LONG_REQUEST_TIMEOUT_MS", v)?,
                "CACHE_TTL_SECONDS" => self.cache_ttl_seconds = parse("CACHE_TTL_SECONDS", v)?,
                "NEGATIVE_CACHE_TTL_SECONDS" => {
                    self.negative_cache_ttl_seconds = parse("NEGATIVE_CACHE_TTL_SECONDS", v)?
                }
                "REDIS_KEY_PREFIX" => self.redis_key_prefix = v.clone(),
                "CACHE_REDIS_TIMEOUT_MS" => self.cache_redis_timeout_ms = parse("CACHE_REDIS_TIMEOUT_MS", v)?,
                "CACHE_RECENT_WRITE_MS" => self.cache_recent_write_ms = parse("CACHE_RECENT_WRITE_MS", v)?,
                "SALE_WINDOW_SECONDS" => self.sale_window_seconds = parse("SALE_WINDOW_SECONDS", v)?,
                "SALE_ITEMS" => self.sale_items = parse("SALE_ITEMS", v)?,
                "SALE_USER_LIMIT" => self.sale_user_limit = parse("SALE_USER_LIMIT", v)?,
                "RESERVATION_TIMEOUT_SECONDS" => {
                    self.reservation_timeout_seconds = parse("RESERVATION_TIMEOUT_SECONDS", v)?
                }
                "SALE_NAME" => self.sale_name = v.clone(),
                "USER_STATUS_TTL" => self.presence_ttl_ms = duration_ms("USER_STATUS_TTL", v)?,
                "HEARTBEAT_INTERVAL" => self.presence_heartbeat_interval_ms = duration_ms("HEARTBEAT_INTERVAL", v)?,
                "PRESENCE_AWAY_TTL" => self.presence_away_ttl_ms = duration_ms("PRESENCE_AWAY_TTL", v)?,
                "PRESENCE_MAX_BATCH" => self.presence_max_batch = parse("PRESENCE_MAX_BATCH", v)?,
                "PRESENCE_MAX_WATCH" => self.presence_max_watch = parse("PRESENCE_MAX_WATCH", v)?,
                "PRESENCE_SUBSCRIBER_BUFFER" => {
                    self.presence_subscriber_buffer = parse("PRESENCE_SUBSCRIBER_BUFFER", v)?
                }
                "PRESENCE_SWEEP_INTERVAL_MS" => {
                    self.presence_sweep_interval_ms = parse("PRESENCE_SWEEP_INTERVAL_MS", v)?
                }
                "PRESENCE_REDIS_TIMEOUT_MS" => self.presence_redis_timeout_ms = parse("PRESENCE_REDIS_TIMEOUT_MS", v)?,
                "PRESENCE_AUTH_SECRET" => self.presence_auth_secret = v.clone(),
                "ADMIN_TOKEN" => self.admin_token = v.clone(),
                "SSE_KEEPALIVE_MS" => self.sse_keepalive_ms = parse("SSE_KEEPALIVE_MS", v)?,
                "SALE_RATE_LIMIT" => self.sale_rate_limit = parse("SALE_RATE_LIMIT", v)?,
                "SALE_CLIENT_RATE_LIMIT" => self.sale_client_rate_limit = parse("SALE_CLIENT_RATE_LIMIT", v)?,
                "HEADER_READ_TIMEOUT_MS" => self.header_read_timeout_ms = parse("HEADER_READ_TIMEOUT_MS", v)?,
                "BODY_READ_TIMEOUT_MS" => self.body_read_timeout_ms = parse("BODY_READ_TIMEOUT_MS", v)?,
                "MAX_BODY_BYTES" => self.max_body_bytes = parse("MAX_BODY_BYTES", v)?,
                "SHUTDOWN_GRACE_MS" => self.shutdown_grace_ms = parse("SHUTDOWN_GRACE_MS", v)?,
                "MAX_CONNECTIONS" => self.max_connections = parse("MAX_CONNECTIONS", v)?,
                "LOG_FORMAT" => self.log_format = v.clone(),
                "RUST_LOG" => self.log_level = v.clone(),
                "ACCESS_LOG" => self.access_log = parse("ACCESS_LOG", v)?,
                _ => {}
            }
        }
        if let Some((_, v)) = env.iter().find(|(k, _)| k == "PORT") {
            self.listen.set_port(parse("PORT", v)?);
        }
        Ok(())
    }

    /// Checks every setting; the message names the one that is wrong.
    ///
    /// # Errors
    /// The first invalid setting.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, message: &str| Err(Error::Invalid { field, message: message.into() });
        if self.primary_pool_size == 0 {
            return bad("primary_pool_size", "must be at least 1");
        }
        if self.replica_pool_size == 0 {
            return bad("replica_pool_size", "must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms", "must be at least 1");
        }
        if self.long_request_timeout_ms < self.request_timeout_ms {
            return bad("long_request_timeout_ms", "must be at least request_timeout_ms");
        }
        if self.cache_redis_timeout_ms == 0 || self.cache_redis_timeout_ms >= self.request_timeout_ms {
            return bad("cache_redis_timeout_ms", "must be at least 1 and below request_timeout_ms");
        }
        if self.negative_cache_ttl_seconds == 0 {
            return bad("negative_cache_ttl_seconds", "must be at least 1");
        }
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.len() > 64 {
            return bad("redis_key_prefix", "must be 1 to 64 characters");
        }
        for (field, v) in [
            ("health_interval_ms", self.health_interval_ms),
            ("health_timeout_ms", self.health_timeout_ms),
            ("db_acquire_timeout_ms", self.db_acquire_timeout_ms),
            ("db_query_timeout_ms", self.db_query_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
        ] {
            if v < 10 {
                return Err(Error::Invalid { field, message: "must be at least 10 ms".into() });
            }
        }
        if self.sale_window_seconds == 0 || self.sale_items == 0 || self.sale_user_limit == 0 {
            return bad("sale_window_seconds", "sale window, items and user limit must be at least 1");
        }
        if self.reservation_timeout_seconds == 0 {
            return bad("reservation_timeout_seconds", "must be at least 1");
        }
        if !crate::users::model::is_valid_id(&self.sale_name) {
            return bad("sale_name", "must match [A-Za-z0-9_-]{1,64}");
        }
        if self.presence_ttl_ms < 100 {
            return bad("presence_ttl_ms", "must be at least 100 ms");
        }
        if self.presence_away_ttl_ms < 100 {
            return bad("presence_away_ttl_ms", "must be at least 100 ms");
        }
        if self.presence_heartbeat_interval_ms == 0 || self.presence_heartbeat_interval_ms >= self.presence_ttl_ms {
            return bad("presence_heartbeat_interval_ms", "must be at least 1 and below presence_ttl_ms");
        }
        if self.presence_max_batch == 0 || self.presence_max_watch == 0 || self.presence_subscriber_buffer == 0 {
            return bad("presence_max_batch", "batch size, watch list and subscriber buffer must be at least 1");
        }
        for (field, v) in [
            ("presence_sweep_interval_ms", self.presence_sweep_interval_ms),
            ("presence_redis_timeout_ms", self.presence_redis_timeout_ms),
            ("sse_keepalive_ms", self.sse_keepalive_ms),
        ] {
            if v < 10 {
                return Err(Error::Invalid { field, message: "must be at least 10 ms".into() });
            }
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.max_body_bytes == 0 {
            return bad("max_body_bytes", "must be at least 1");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad("log_format", "must be \"text\" or \"json\"");
        }
        if self.workers > 1024 {
            return bad("workers", "more than 1024 worker processes is surely a mistake");
        }
        if !self.redis_url.starts_with("redis://") && !self.redis_url.starts_with("rediss://") {
            return bad("redis_url", "must start with redis:// or rediss://");
        }
        Ok(())
    }

    /// The topology file with its `SHARDGATE_SHARD_*` environment overrides, validated.
    ///
    /// # Errors
    /// The file cannot be read, or the topology is invalid (the message says why).
    pub fn load_topology(&self) -> Result<Topology, Error> {
        Ok(Topology::load(&self.topology)?.with_env_overrides(std::env::vars())?)
    }

    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            primary_pool_size: self.primary_pool_size,
            replica_pool_size: self.replica_pool_size,
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
            query_timeout: Duration::from_millis(self.db_query_timeout_ms),
            health_interval: Duration::from_millis(self.health_interval_ms),
            health_timeout: Duration::from_millis(self.health_timeout_ms),
            max_replica_lag: Duration::from_millis(self.max_replica_lag_ms),
        }
    }

    /// Worker processes to run (resolves 0 to the CPU count).
    pub fn effective_workers(&self) -> usize {
        if self.workers == 0 {
            cpus()
        } else {
            self.workers
        }
    }

    /// Tokio threads per worker (resolves 0 so processes x threads ~= CPUs).
    pub fn effective_worker_threads(&self) -> usize {
        if self.worker_threads == 0 {
            (cpus() / self.effective_workers()).max(1)
        } else {
            self.worker_threads
        }
    }
}

/// A duration setting: `500ms`, `30s`, `10m`, `24h`, or bare seconds (`30`), as ms.
///
/// # Errors
/// Anything else, naming the variable.
fn duration_ms(var: &'static str, value: &str) -> Result<u64, Error> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if mult > 0 => Ok(n.saturating_mul(mult)),
        _ => Err(Error::Env {
            var,
            value: value.into(),
            message: "expected a duration like 500ms, 30s, 10m, 24h".into(),
        }),
    }
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("sg-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "workers = 3\nrequest_timeout_ms = 700\n").unwrap();
        let cfg = Config::load_from(Some(&file), env(&[("WORKERS", "5"), ("PORT", "9999")])).unwrap();
        assert_eq!(cfg.long_request_timeout_ms, 10_000);
        assert_eq!(cfg.workers, 5, "env beats file");
        assert_eq!(cfg.request_timeout_ms, 700, "file beats default");
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.max_body_bytes, 1 << 20, "default kept");
        cfg.validate().unwrap();
    }

    #[test]
    fn the_example_file_is_complete_and_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/shardgate.example.toml");
        let cfg = Config::load_from(Some(&path), Vec::new()).expect("example loads");
        cfg.validate().unwrap();
        // Every field is in the example, with its default value.
        let text = std::fs::read_to_string(&path).unwrap();
        for line in toml::to_string(&Config::default()).unwrap().lines().filter(|l| l.contains(" = ")) {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from the example");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::load_from(None, env(&[("WORKERS", "many")])).unwrap_err().to_string();
        assert!(err.contains("WORKERS"), "{err}");
        let dir = std::env::temp_dir().join(format!("sg-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "wrokers = 3\n").unwrap();
        let err = Config::load_from(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("wrokers"), "{err}");
        let cfg = Config { log_format: "xml".into(), ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("log_format"));
        let cfg = Config { health_interval_ms: 0, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("health_interval_ms"));
        let cfg = Config { max_connections: 0, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("max_connections"));
        let cfg = Config { body_read_timeout_ms: 5, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("body_read_timeout_ms"));
        let cfg = Config::load_from(None, env(&[("BODY_READ_TIMEOUT_MS", "750")])).unwrap();
        assert_eq!(cfg.body_read_timeout_ms, 750);
        // The user online status design's duration format.
        let cfg = Config::load_from(None, env(&[("USER_STATUS_TTL", "2s"), ("HEARTBEAT_INTERVAL", "500ms")])).unwrap();
        assert_eq!((cfg.presence_ttl_ms, cfg.presence_heartbeat_interval_ms), (2_000, 500));
        assert_eq!(duration_ms("X", "30").unwrap(), 30_000);
        assert_eq!(duration_ms("X", "24h").unwrap(), 86_400_000);
        let err = Config::load_from(None, env(&[("USER_STATUS_TTL", "soon")])).unwrap_err().to_string();
        assert!(err.contains("USER_STATUS_TTL"), "{err}");
        let cfg = Config { presence_heartbeat_interval_ms: 60_000, ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("presence_heartbeat_interval_ms"));
        // PORT wins over SHARDGATE_LISTEN's port in either order.
        for env_order in [
            env(&[("PORT", "8081"), ("SHARDGATE_LISTEN", "127.0.0.1:9000")]),
            env(&[("SHARDGATE_LISTEN", "127.0.0.1:9000"), ("PORT", "8081")]),
        ] {
            let cfg = Config::load_from(None, env_order).unwrap();
            assert_eq!(cfg.listen.to_string(), "127.0.0.1:8081");
        }
    }
}
