//! Online resharding end to end (issue 10): a sixth shard added to a running cluster while a
//! sustained mixed load (creates, updates, deletes, reads, cache reads, heartbeats, checkouts
//! and purchases) runs, then proven: about 1/6 of the keys moved, all onto the new shard;
//! every acknowledged write is on its owning shard exactly once; no request failed except
//! writes to moving keys during the cutover pause, which is measured.
//!
//! It runs on a cluster of its own (`.cluster-reshard/`: primaries :5560+, replicas :5570+,
//! PgBouncers :6560+; the shared Redis with a unique key prefix), started from nothing each run
//! and stopped at the end, so the shared cluster's ring never changes.

mod common;
mod load;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{repo_root, TestApp};
use load::{assert_none_lost, check, clients, summarize, Kind, Load};
use sharding::Ring;
use sonic_rs::JsonValueTrait;

const PRIMARY_BASE: u16 = 5560;
const REPLICA_BASE: u16 = 5570;
const POOLER_BASE: u16 = 6560;
const SEEDED: usize = 6000;

const CLUSTER: load::OwnCluster = load::OwnCluster {
    dir: ".cluster-reshard",
    primary_base: PRIMARY_BASE,
    replica_base: REPLICA_BASE,
    pooler_base: POOLER_BASE,
    redis_port: None, // the shared Redis, with a key prefix of its own
};

fn cluster_dir() -> PathBuf {
    CLUSTER.dir()
}

fn cluster(cmd: &str, shards: u16) {
    CLUSTER.run(cmd, shards);
}

struct StopCluster;
impl Drop for StopCluster {
    fn drop(&mut self) {
        if std::env::var_os("RESHARD_KEEP_CLUSTER").is_none() {
            let _ = std::panic::catch_unwind(|| cluster("down", 6));
        }
    }
}

fn topology_file() -> PathBuf {
    cluster_dir().join("topology.toml")
}

fn write_topology(shards: u16) {
    let mut t = String::from("vnodes = 1000\ndatabase = \"shardgate\"\nuser = \"postgres\"\npassword = \"\"\n");
    for i in 0..shards {
        t.push_str(&format!(
            "\n[[shards]]\nid = {i}\nprimary = \"127.0.0.1:{}\"\nreplica = \"127.0.0.1:{}\"\npooler = \"127.0.0.1:{}\"\n",
            PRIMARY_BASE + i,
            REPLICA_BASE + i,
            POOLER_BASE + i
        ));
    }
    std::fs::write(topology_file(), t).unwrap();
}

fn shardgate(args: &[&str]) -> (bool, String) {
    shardgate_with(args, &[])
}

fn shardgate_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_root())
        .env("SHARDGATE_TOPOLOGY", topology_file())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn ports(shards: u16) -> Vec<u16> {
    CLUSTER.primary_ports(shards)
}

fn pct(sorted: &[Duration], p: usize) -> f64 {
    sorted.get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adding_a_sixth_shard_under_load_moves_a_sixth_of_the_keys_and_loses_nothing() {
    let _stop = StopCluster;
    cluster("clean", 6); // from nothing: a previous run left six shards and ring version 2
    cluster("up", 5);
    write_topology(5);
    let (ok, out) = shardgate(&["migrate", "up"]);
    assert!(ok && out.contains("ring: version 1 with 5 shards"), "{out}");
    let old = Ring::new(5, 1000);
    let new = Ring::new(6, 1000);

    // Rows that exist before the move (created straight on their shards).
    let tag = format!("rs{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
    let seeded: Vec<String> = (0..SEEDED).map(|i| format!("{tag}s{i}")).collect();
    let pools = load::primaries(&ports(5)).await;
    for (s, pool) in pools.iter().enumerate() {
        let ids: Vec<&String> = seeded.iter().filter(|id| old.shard_for_str(id).index() == s).collect();
        sqlx::query("INSERT INTO users (id, first_name) SELECT unnest($1::text[]), 'seed'")
            .bind(&ids)
            .execute(pool)
            .await
            .unwrap();
    }

    let env: Vec<(&str, String)> = vec![
        ("SHARDGATE_TOPOLOGY", topology_file().display().to_string()),
        ("REDIS_KEY_PREFIX", format!("{tag}:")),
        ("SALE_NAME", tag.clone()),
        ("SALE_ITEMS", "100000000".into()),
        ("DB_PRIMARY_POOL_SIZE", "8".into()),
        ("DB_REPLICA_POOL_SIZE", "8".into()),
        ("REQUEST_TIMEOUT_MS", "2000".into()), // see docs/CHAOS.md: a 2-core box under load
    ];
    let app = TestApp::start_with(2, &env).await;
    // The load routes its ledger by the NEW ring: shard 5 = a key that moves.
    let load = Load::start(&app.base, &tag, &new, clients());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // 1. A sixth shard joins the running cluster; the workers learn its address (rolling
    //    restart with the new topology). The ring still has five shards.
    cluster("up", 6);
    write_topology(6);
    let before = app.worker_pids();
    Command::new("kill").args(["-HUP", &app.pid().to_string()]).status().unwrap();
    let t = std::time::Instant::now();
    while !(app.worker_pids().len() == 2 && app.worker_pids().iter().all(|p| !before.contains(p))) {
        assert!(t.elapsed() < Duration::from_secs(30), "workers not replaced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. A move interrupted before its cutover can be rolled back: the old ring stays, the
    //    new shard is emptied. Then one is interrupted again and resumed by the next `add`.
    let prefix = format!("{tag}:");
    let stop = [("SHARDGATE_RESHARD_STOP_BEFORE_CUTOVER", "1"), ("REDIS_KEY_PREFIX", prefix.as_str())];
    let stop = stop.map(|(k, v)| (k, v.to_string()));
    let stop2 = stop.clone();
    let (ok, out) =
        tokio::task::spawn_blocking(move || shardgate_with(&["reshard", "add"], &refs(&stop))).await.unwrap();
    assert!(ok && out.contains("stopping before the cutover"), "{out}");
    let (ok, status) = shardgate(&["reshard", "status"]);
    assert!(ok && status.contains("phase copying") && status.contains("target Some(6)"), "{status}");
    let (ok, during) = shardgate(&["reshard", "verify"]);
    assert!(ok && during.contains("moving rows compared with their copy"), "verify during a move:\n{during}");
    let shard5 = load::primaries(&[PRIMARY_BASE + 5]).await.remove(0);
    let rows_on_5 = || async {
        let mut n = 0i64;
        for t in ["users", "sales", "checkout_attempts"] {
            n += sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {t}")).fetch_one(&shard5).await.unwrap();
        }
        n
    };
    assert!(rows_on_5().await > 0, "the interrupted move had copied rows to the new shard");
    let (ok, out) = shardgate(&["reshard", "rollback"]);
    assert!(ok && out.contains("rolled back"), "{out}");
    assert_eq!(rows_on_5().await, 0, "rollback empties the new shard (users, sales, checkout attempts)");
    let (_, status) = shardgate(&["reshard", "status"]);
    assert!(status.contains("ring version 1, 5 shards") && status.contains("phase stable"), "{status}");
    let (ok, out) =
        tokio::task::spawn_blocking(move || shardgate_with(&["reshard", "add"], &refs(&stop2))).await.unwrap();
    assert!(ok, "{out}");

    // 3. The move resumed and finished, while the load runs.
    let cmd_at = load.t0.elapsed();
    let env = [("REDIS_KEY_PREFIX", prefix.clone())];
    let (ok, out) =
        tokio::task::spawn_blocking(move || shardgate_with(&["reshard", "add"], &refs(&env))).await.unwrap();
    let cmd_end = load.t0.elapsed();
    println!("{out}");
    assert!(ok, "reshard add failed:\n{out}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let took = load.t0.elapsed();
    let mut ledger = load.stop().await;

    // 4. No request failed, except writes of moving keys during the cutover pause.
    let (requests, rate, failed) = summarize(&ledger.recs, took);
    let allowed = |r: &&load::Rec| r.kind.is_write() && r.shard == 5 && r.at >= cmd_at && r.at <= cmd_end;
    let wrong: Vec<_> = ledger.recs.iter().filter(|r| r.failure.is_some() && !allowed(r)).collect();
    assert!(
        wrong.is_empty(),
        "requests failed that were not writes of moving keys during the move: {:?}",
        &wrong[..wrong.len().min(5)]
    );
    let paused_failures = ledger.recs.iter().filter(|r| r.failure.is_some()).count();
    assert!(
        wrong.is_empty(),
        "requests failed that were not writes of moving keys: {:?}",
        &wrong[..wrong.len().min(5)]
    );
    let during = |r: &&load::Rec| r.at >= cmd_at && r.at <= cmd_end && r.kind.is_write() && r.failure.is_none();
    let mut moving: Vec<Duration> =
        ledger.recs.iter().filter(during).filter(|r| r.shard == 5).map(|r| r.latency).collect();
    let mut staying: Vec<Duration> =
        ledger.recs.iter().filter(during).filter(|r| r.shard != 5).map(|r| r.latency).collect();
    moving.sort();
    staying.sort();

    // 5. The data: every acknowledged write on its owning shard (new ring) exactly once.
    let c = check(&mut ledger, &new, &app.base, &tag, &ports(6)).await;
    assert_none_lost(&c);
    let (ok, verify) = shardgate(&["reshard", "verify"]);
    assert!(ok, "verify failed:\n{verify}");

    // 6. About 1/6 of the keys moved, all onto the new shard; the others stayed.
    let pools6 = load::primaries(&ports(6)).await;
    let mut moved = 0;
    for (s, pool) in pools6.iter().enumerate() {
        let on: Vec<String> = sqlx::query_scalar("SELECT id FROM users WHERE id LIKE $1 || 's%'")
            .bind(&tag)
            .fetch_all(pool)
            .await
            .unwrap();
        for id in &on {
            assert_eq!(new.shard_for_str(id).index(), s, "{id} on shard {s}");
        }
        let expect = seeded.iter().filter(|id| new.shard_for_str(id).index() == s).count();
        assert_eq!(on.len(), expect, "seeded rows on shard {s}");
        if s == 5 {
            moved = on.len();
        }
    }
    let share = moved as f64 / SEEDED as f64;
    assert!((0.12..0.22).contains(&share), "moved share {share}");
    for id in seeded.iter().filter(|id| new.shard_for_str(id).index() != 5) {
        assert_eq!(new.shard_for_str(id), old.shard_for_str(id), "a key that does not go to the new shard never moves");
    }

    // 7. Every worker is on ring version 2; the move's figures are in /metrics.
    let stats = app.get_json("/api/v1/shards/stats").await.1;
    assert_eq!(stats["ring_version"].as_i64(), Some(2), "{stats:?}");
    assert_eq!(stats["ring_phase"].as_str(), Some("stable"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ring_version{slot="), "ring_version in /metrics");
    assert!(metrics.contains("reshard_phase{phase=\"stable\"}"), "reshard_phase in /metrics");

    let line = |label: &str, v: &[Duration]| {
        format!(
            "{label}: {} writes, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            v.len(),
            pct(v, 50),
            pct(v, 99),
            pct(v, 100)
        )
    };
    println!("\nreshard under load: {requests} requests ({rate:.0}/s), failed {failed:?} ({paused_failures} writes of moving keys)");
    println!("  seeded users moved to shard-5: {moved} of {SEEDED} ({:.1} %)", share * 100.0);
    println!("  during `reshard add` ({:.1} s):", (cmd_end - cmd_at).as_secs_f64());
    println!("    {}", line("moving keys", &moving));
    println!("    {}", line("other keys ", &staying));
    println!(
        "  data check: {} acknowledged writes, {} purchases checked, {} uncertain, lost {}",
        c.writes_checked,
        c.purchases_checked,
        c.uncertain,
        c.lost.len()
    );
    let kinds = ledger.recs.iter().filter(|r| r.shard == 5 && r.kind == Kind::Create).count();
    println!("  creates of keys owned by the new shard during the run: {kinds}");
    println!("  {}", out.lines().find(|l| l.contains("cache:")).unwrap_or("cache: ?"));
    println!("{verify}");
}
