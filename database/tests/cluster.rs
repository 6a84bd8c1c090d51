//! Against the real local cluster (`scripts/cluster.sh up`; `make test` starts it):
//! migrations, primary -> replica streaming, the SQL ring function, the health monitor.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use database::{connect_options, Endpoint, HealthMonitor, PoolConfig, ShardPools};
use sharding::{ShardId, Topology};

fn topology() -> Topology {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/topology.toml");
    Topology::load(&path).expect("config/topology.toml")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test]
async fn migrations_are_idempotent_on_every_shard() {
    let topo = topology();
    for r in database::migrate::up(&topo).await {
        r.expect("first up");
    }
    let known: Vec<i64> = database::migrate::known_versions().into_iter().map(|(v, _)| v).collect();
    for r in database::migrate::up(&topo).await {
        let rep = r.expect("second up");
        assert!(rep.changed.is_empty(), "second up changed {:?} on {}", rep.changed, rep.shard);
        assert_eq!(rep.applied, known, "{} has every migration", rep.shard);
    }
}

#[tokio::test]
async fn a_row_written_through_pgbouncer_is_readable_on_the_replica() {
    let topo = topology();
    let pools = ShardPools::new(&topo, &PoolConfig::default());
    let ring = topo.ring();
    let id = unique("repl");
    let shard = pools.get(ring.shard_for_str(&id));
    sqlx::query("insert into users (id, first_name, last_name) values ($1, 'Ada', 'Lovelace')")
        .bind(&id)
        .execute(&shard.primary)
        .await
        .expect("insert via pgbouncer");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let name: Option<String> = sqlx::query_scalar("select first_name from users where id = $1")
            .bind(&id)
            .fetch_optional(&shard.replica)
            .await
            .expect("replica read");
        if name.as_deref() == Some("Ada") {
            break;
        }
        assert!(Instant::now() < deadline, "row {id} not on {}'s replica after 5 s", shard.name);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The replica refuses writes: it really is a hot standby.
    let err = sqlx::query("delete from users where id = $1").bind(&id).execute(&shard.replica).await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
}

#[tokio::test]
async fn sql_ring_function_agrees_with_rust() {
    let topo = topology();
    let ring = topo.ring();
    let mut keys: Vec<String> = (0..150).map(|i| format!("{}-{i}", uuid::Uuid::new_v4())).collect();
    keys.extend(
        ["user123", "user456", "alice", "item1", "x", "0192d5f0-0000-7000-8000-000000000000"].map(String::from),
    );
    keys.push("ünïcødé-ключ".into());
    let pool = ShardPools::new(&topo, &PoolConfig::default());
    let rows: Vec<(String, i32)> = sqlx::query_as("select k, shardgate_shard_of(k) from unnest($1::text[]) as k")
        .bind(&keys)
        .fetch_all(&pool.get(ShardId::new(0)).primary)
        .await
        .expect("shardgate_shard_of");
    assert_eq!(rows.len(), keys.len());
    for (k, s) in rows {
        assert_eq!(s as usize, ring.shard_for_str(&k).index(), "key {k:?}");
    }
    // Six shards too: the function takes the ring's size.
    let ring6 = sharding::Ring::new(6, 1000);
    let (k, s): (String, i32) = sqlx::query_as("select $1::text, shardgate_shard_of($1, 6, 1000)")
        .bind(&keys[0])
        .fetch_one(&pool.get(ShardId::new(0)).primary)
        .await
        .unwrap();
    assert_eq!(s as usize, ring6.shard_for_str(&k).index());
}

#[tokio::test]
async fn health_monitor_measures_every_shard() {
    let topo = topology();
    let health = HealthMonitor::probe_once(&topo, &PoolConfig::default()).await;
    assert_eq!(health.len(), 5);
    for h in health {
        assert!(h.primary_up, "{} primary", h.shard);
        assert!(h.replica_up, "{} replica", h.shard);
        assert!(h.replica_lag_bytes.is_some() && h.replica_lag_seconds.is_some(), "{h:?}");
    }
}

#[tokio::test]
async fn a_down_shard_is_reported_down_quickly_and_the_others_stay_up() {
    // An instance of our own: shard 3's endpoints point at ports where nothing listens,
    // so the shared cluster is never touched.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let topo = topology()
        .with_env_overrides([
            ("SHARDGATE_SHARD_3_POOLER".to_string(), format!("127.0.0.1:{dead}")),
            ("SHARDGATE_SHARD_3_REPLICA".to_string(), format!("127.0.0.1:{}", dead + 1)),
        ])
        .unwrap();
    let t0 = Instant::now();
    let cfg = PoolConfig::default();
    let monitor = HealthMonitor::start(&topo, &cfg, tokio_util::sync::CancellationToken::new()).await;
    assert!(t0.elapsed() < Duration::from_secs(3), "first round took {:?}", t0.elapsed());
    assert!(!monitor.primary_up(ShardId::new(3)));
    assert!(!monitor.replica_usable(ShardId::new(3)));
    assert!(!monitor.all_primaries_up());
    for i in [0u16, 1, 2, 4] {
        assert!(monitor.primary_up(ShardId::new(i)), "shard {i}");
        assert!(monitor.replica_usable(ShardId::new(i)), "shard {i}");
    }
    // A failure seen by the request path takes effect at once.
    monitor.report_primary_failure(ShardId::new(1));
    assert!(!monitor.primary_up(ShardId::new(1)));
    // ... and the next probe round restores it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !monitor.primary_up(ShardId::new(1)) {
        assert!(Instant::now() < deadline, "shard 1 not restored by the monitor");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pgbouncer_is_new_enough_and_in_transaction_mode() {
    use sqlx::{Connection, Row};
    let topo = topology();
    for spec in &topo.shards {
        let opts = connect_options(&topo, spec.id, Endpoint::Pooler).database("pgbouncer");
        let mut c = sqlx::PgConnection::connect_with(&opts).await.expect("pgbouncer admin console");
        let rows = sqlx::raw_sql("SHOW VERSION").fetch_all(&mut c).await.unwrap();
        let version: String = rows[0].get(0);
        let minor: u32 = version.trim_start_matches("PgBouncer 1.").split('.').next().unwrap().parse().unwrap();
        assert!(version.starts_with("PgBouncer 1.") && minor >= 21, "{}: {version}", spec.name);
        let rows = sqlx::raw_sql("SHOW CONFIG").fetch_all(&mut c).await.unwrap();
        let get = |key: &str| {
            rows.iter().find(|r| r.get::<String, _>(0) == key).map(|r| r.get::<String, _>(1)).unwrap_or_default()
        };
        assert_eq!(get("pool_mode"), "transaction", "{}", spec.name);
        assert_ne!(get("max_prepared_statements"), "0", "{}", spec.name);
        assert_eq!(get("ignore_startup_parameters"), "extra_float_digits", "{}", spec.name);
    }
}

#[tokio::test]
async fn migrate_make_creates_a_reversible_pair() {
    let dir = std::env::temp_dir().join(unique("mig"));
    std::fs::create_dir_all(&dir).unwrap();
    let (up, down) = database::migrate::make(&dir, "add_messages_table").unwrap();
    assert!(up.to_string_lossy().ends_with("_add_messages_table.up.sql") && up.exists());
    assert!(down.to_string_lossy().ends_with("_add_messages_table.down.sql") && down.exists());
    assert!(database::migrate::make(&dir, "Bad Name!").is_err());
}
