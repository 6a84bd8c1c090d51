//! Faults under sustained mixed load, each followed by a data check (`make chaos`; the short
//! form runs in `make test`).
//!
//! The scenarios break things for real — `kill -9` of a primary, a stopped replica, a stopped
//! Redis, SIGKILL of a worker, SIGTERM of the server, a rolling restart — so they run on a
//! cluster of their own (`.cluster-chaos/`: primaries :5540+, replicas :5550+, PgBouncers
//! :6530+, Redis :6391, brought up by the same `scripts/cluster.sh`). Every other test keeps
//! the shared cluster. Each scenario restarts what it stopped, and the whole chaos cluster is
//! stopped when the test ends, passed or failed (`CHAOS_KEEP_CLUSTER=1` keeps it up).
//!
//! While a scenario runs, `CHAOS_CLIENTS` tasks send a mix of creates, updates, deletes,
//! reads, cache reads, heartbeats and checkout+purchase pairs on fresh connections, keeping a
//! ledger of every acknowledged write. Afterwards the ledger is checked against the
//! primaries row by row: every acknowledged create/update/delete/purchase is there exactly as
//! acknowledged, on its owning shard only; no purchase exists that was not acknowledged,
//! except those whose response was lost (counted, then confirmed by retrying the idempotent
//! purchase).
//!
//! `CHAOS_FAULT_SECS` (default 3; `make chaos` uses 10) is how long each fault lasts;
//! `CHAOS_SCENARIOS` (comma list) runs a subset.

mod common;
mod load;
#[path = "load/sale_history.rs"]
mod sale_history;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{repo_root, TestApp};
use load::{assert_none_lost, call, check, clients, summarize, Check, Failure, Kind, Load, Rec};
use sharding::Ring;

const PRIMARY_BASE: u16 = 5540;
const REPLICA_BASE: u16 = 5550;
const POOLER_BASE: u16 = 6530;
const REDIS_PORT: u16 = 6391;
const SHARDS: u16 = 5;

const CLUSTER: load::OwnCluster = load::OwnCluster {
    dir: ".cluster-chaos",
    primary_base: PRIMARY_BASE,
    replica_base: REPLICA_BASE,
    pooler_base: POOLER_BASE,
    redis_port: Some(REDIS_PORT),
};

fn primary_ports() -> Vec<u16> {
    CLUSTER.primary_ports(SHARDS)
}

fn cluster_dir() -> std::path::PathBuf {
    CLUSTER.dir()
}

fn cluster(cmd: &str) {
    CLUSTER.run(cmd, SHARDS);
}

fn server_env(tag: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = Vec::new();
    for i in 0..SHARDS {
        for (kind, base) in [("PRIMARY", PRIMARY_BASE), ("REPLICA", REPLICA_BASE), ("POOLER", POOLER_BASE)] {
            let k: &'static str = Box::leak(format!("SHARDGATE_SHARD_{i}_{kind}").into_boxed_str());
            env.push((k, format!("127.0.0.1:{}", base + i)));
        }
    }
    env.extend([
        ("REDIS_URL", format!("redis://127.0.0.1:{REDIS_PORT}")),
        ("REDIS_KEY_PREFIX", format!("{tag}:")),
        ("SALE_NAME", tag.to_string()),
        ("SALE_ITEMS", "100000000".into()),
        ("USER_STATUS_TTL", "2s".into()),
        ("HEARTBEAT_INTERVAL", "1s".into()),
        ("PRESENCE_SWEEP_INTERVAL_MS", "100".into()),
        ("DB_PRIMARY_POOL_SIZE", "8".into()),
        ("DB_REPLICA_POOL_SIZE", "8".into()),
        ("SHUTDOWN_GRACE_MS", "10000".into()),
        // hotcold-user-api's 300 ms lookup deadline measures CPU starvation on a loaded 2-core box
        // (the cluster restarting a primary while the load runs), not fault isolation.
        ("REQUEST_TIMEOUT_MS", "2000".into()),
    ]);
    env
}

fn migrate(env: &[(&'static str, String)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["migrate", "up"])
        .current_dir(repo_root())
        .env("SHARDGATE_TOPOLOGY", repo_root().join("config/topology.toml"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "migrate: {}", String::from_utf8_lossy(&out.stderr));
}

fn fault_secs() -> u64 {
    std::env::var("CHAOS_FAULT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

// ---------------------------------------------------------------- faults

fn pg_ctl(args: &[&str]) {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pg_ctl"))
        .filter(|p| p.exists())
        .max()
        .expect("pg_ctl");
    let mut cmd = if unsafe_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd.args(args).output().unwrap();
    assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap_or(false)
}

fn postmaster_pid(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("postmaster.pid")).unwrap().lines().next().unwrap().to_string()
}

/// The suite's cluster is its own: stopped when the test ends, passed or failed, so nothing it
/// broke outlives it (and a CI checkout elsewhere never finds these ports taken). Its data stays
/// in `.cluster-chaos/`, so the next run's `cluster.sh up` starts it in seconds.
struct StopCluster;
impl Drop for StopCluster {
    fn drop(&mut self) {
        if std::env::var_os("CHAOS_KEEP_CLUSTER").is_none() {
            let _ = std::panic::catch_unwind(|| cluster("down"));
        }
    }
}

// ---------------------------------------------------------------- scenarios

struct Report {
    name: &'static str,
    fault: String,
    requests: usize,
    rate: f64,
    failed: BTreeMap<String, usize>,
    check: Check,
    notes: Vec<String>,
}

fn print_table(reports: &[Report]) {
    println!();
    println!(
        "{:<14} {:<44} {:>8} {:>7} {:>7} {:>8} {:>9} {:>9} {:>5}  failed by kind",
        "scenario", "fault injected", "requests", "rate/s", "failed", "acked", "purchases", "uncertain", "lost"
    );
    for r in reports {
        let failed: usize = r.failed.values().sum();
        let kinds: Vec<String> = r.failed.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!(
            "{:<14} {:<44} {:>8} {:>7.0} {:>7} {:>8} {:>9} {:>9} {:>5}  {}",
            r.name,
            r.fault,
            r.requests,
            r.rate,
            failed,
            r.check.writes_checked,
            r.check.purchases_checked,
            r.check.uncertain + r.check.lost_responses_confirmed,
            r.check.lost.len(),
            if kinds.is_empty() { "-".into() } else { kinds.join(", ") }
        );
        for n in &r.notes {
            println!("{:<14}   {n}", "");
        }
    }
    println!();
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < limit, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.elapsed()
}

async fn write_ok(app_base: &str, id: String) -> bool {
    let c = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let body = format!(r#"{{"id":"{id}","first_name":"probe"}}"#);
    matches!(call(&c, reqwest::Method::POST, format!("{app_base}/api/v1/users/"), Some(body)).await.0, Ok((201, _)))
}

fn id_on(ring: &Ring, prefix: &str, shard: u16) -> String {
    (0..).map(|n| format!("{prefix}-{n}")).find(|id| ring.shard_for_str(id).get() == shard).unwrap()
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_faults_under_load_lose_no_acknowledged_write() {
    let _stop = StopCluster;
    cluster("up");
    let tag = format!("ch{}", &uuid::Uuid::now_v7().simple().to_string()[26..]);
    let env = server_env(&tag);
    migrate(&env);
    let ring = sharding::Ring::new(SHARDS as usize, 1000);
    let f = Duration::from_secs(fault_secs());
    let settle = Duration::from_millis(1500);
    let wanted: Option<Vec<String>> =
        std::env::var("CHAOS_SCENARIOS").ok().map(|v| v.split(',').map(str::to_string).collect());
    let run = |name: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == name));
    let mut app = TestApp::start_with(2, &env).await;
    let mut reports = Vec::new();

    if run("primary-kill") {
        const S: u16 = 2;
        let load = Load::start(&app.base, &format!("{tag}pk"), &ring, clients());
        tokio::time::sleep(settle).await;
        let dir = cluster_dir().join(format!("shard-{S}/primary"));
        let pid = postmaster_pid(&dir);
        let fault_at = load.t0.elapsed();
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        tokio::time::sleep(f).await;
        cluster("up");
        let restored_at = load.t0.elapsed();
        let recovered = wait_until("a write on the restarted shard", Duration::from_secs(30), || {
            write_ok(&app.base, id_on(&ring, &format!("{tag}pk-probe{}", uuid::Uuid::now_v7().simple()), S))
        })
        .await;
        tokio::time::sleep(settle).await;
        let took = load.t0.elapsed();
        let mut ledger = load.stop().await;
        let (requests, rate, failed) = summarize(&ledger.recs, took);
        let wrong: Vec<&Rec> = ledger.recs.iter().filter(|r| r.failure.is_some() && r.shard != S).collect();
        assert!(wrong.is_empty(), "requests failed on shards that were not down: {:?}", &wrong[..wrong.len().min(5)]);
        let mut slow: Vec<Duration> = ledger
            .recs
            .iter()
            .filter(|r| r.failure.is_some() && r.at > fault_at + Duration::from_millis(500))
            .map(|r| r.latency)
            .collect();
        slow.sort();
        let p99 = slow.get(slow.len() * 99 / 100).copied().unwrap_or_default();
        assert!(p99 < Duration::from_secs(2), "failures on the down shard must be fast: p99 {p99:?}");
        let reads_failed = ledger.recs.iter().filter(|r| r.failure.is_some() && !r.kind.is_write()).count();
        let c = check(&mut ledger, &ring, &app.base, &tag, &primary_ports()).await;
        assert_none_lost(&c);
        let s_writes = ledger.recs.iter().filter(|r| r.shard == S && r.kind.is_write()).count();
        let mut per_shard = BTreeMap::new();
        for r in ledger.recs.iter().filter(|r| r.failure.is_some()) {
            *per_shard.entry(r.shard).or_insert(0usize) += 1;
        }
        reports.push(Report {
            name: "primary-kill",
            fault: format!("kill -9 shard-{S} primary, {}s down", f.as_secs()),
            requests,
            rate,
            failed,
            check: c,
            notes: vec![format!(
                "failed per shard {per_shard:?}: only shard {S} ({s_writes} writes there, {reads_failed} reads failed); \
                 failure p99 {:.0} ms; writes back {:.1} s after restart (at +{:.1} s)",
                p99.as_secs_f64() * 1e3,
                recovered.as_secs_f64(),
                (restored_at - fault_at).as_secs_f64()
            )],
        });
    }

    if run("replica-stop") {
        const S: u16 = 1;
        let load = Load::start(&app.base, &format!("{tag}rs"), &ring, clients());
        tokio::time::sleep(settle).await;
        let dir = cluster_dir().join(format!("shard-{S}/replica"));
        pg_ctl(&["-D", dir.to_str().unwrap(), "-m", "fast", "-w", "stop"]);
        tokio::time::sleep(f).await;
        cluster("up");
        let before = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let label = format!("shard=\"{S}\"");
        let replica_ok = |t: &str| metric(t, "db_queries_total", &[&label, "target=\"replica\"", "outcome=\"ok\""]);
        let base_ok = replica_ok(&before);
        let back = wait_until("reads to return to the replica", Duration::from_secs(20), || {
            let c = app.client.clone();
            let url = app.url("/metrics");
            async move {
                let t = c.get(url).send().await.unwrap().text().await.unwrap();
                replica_ok(&t) > base_ok + 5.0
            }
        })
        .await;
        let took = load.t0.elapsed();
        let mut ledger = load.stop().await;
        let (requests, rate, failed) = summarize(&ledger.recs, took);
        assert!(failed.is_empty(), "a stopped replica must cost no request: {failed:?}");
        let c = check(&mut ledger, &ring, &app.base, &tag, &primary_ports()).await;
        assert_none_lost(&c);
        reports.push(Report {
            name: "replica-stop",
            fault: format!("pg_ctl stop shard-{S} replica, {}s down", f.as_secs()),
            requests,
            rate,
            failed,
            check: c,
            notes: vec![format!("reads back on the replica {:.1} s after its restart", back.as_secs_f64())],
        });
    }

    if run("redis-stop") {
        let workers = app.worker_pids();
        let load = Load::start(&app.base, &format!("{tag}rd"), &ring, clients());
        tokio::time::sleep(settle).await;
        let fault_at = load.t0.elapsed();
        let _ = Command::new("redis-cli").args(["-p", &REDIS_PORT.to_string(), "shutdown", "nosave"]).output();
        tokio::time::sleep(f).await;
        cluster("up");
        let restored_at = load.t0.elapsed();
        // Everything Redis-backed comes back by itself: heartbeats, the sale, the presence channel
        // (an SSE watcher sees ONLINE) and the sweeper lock (then OFFLINE after the 2 s TTL).
        let c = reqwest::Client::new();
        let hb = |id: String| {
            let c = c.clone();
            let url = app.url("/heartbeat");
            async move {
                let r = c.post(url).header("content-type", "application/json").body(format!(r#"{{"userId":"{id}"}}"#));
                matches!(r.send().await, Ok(r) if r.status() == 200)
            }
        };
        let back =
            wait_until("heartbeats after Redis restart", Duration::from_secs(20), || hb(format!("{tag}probe"))).await;
        let watched = format!("{tag}w");
        let sse_ok = wait_until("presence stream after Redis restart", Duration::from_secs(20), || {
            let (c, url) = (c.clone(), app.url(&format!("/api/v1/presence/stream?watch={watched}")));
            let hb = hb(watched.clone());
            async move {
                let Ok(mut resp) = c.get(url).send().await else { return false };
                if resp.status() != 200 {
                    return false;
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await; // snapshot
                hb.await;
                let mut text = String::new();
                let until = Instant::now() + Duration::from_secs(6);
                while Instant::now() < until {
                    match tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await {
                        Ok(Ok(Some(b))) => text.push_str(&String::from_utf8_lossy(&b)),
                        Ok(_) => return false,
                        Err(_) => {}
                    }
                    if text.contains("\"ONLINE\"") && text.contains("\"OFFLINE\"") {
                        return true;
                    }
                }
                false
            }
        })
        .await;
        tokio::time::sleep(settle).await;
        let took = load.t0.elapsed();
        let mut ledger = load.stop().await;
        let (requests, rate, failed) = summarize(&ledger.recs, took);
        assert_eq!(app.worker_pids(), workers, "no worker crashed");
        let wrong: Vec<&Rec> = ledger
            .recs
            .iter()
            .filter(|r| match &r.failure {
                None => false,
                Some(Failure::Status(503, _)) if r.kind.redis() => {
                    r.at + Duration::from_millis(50) < fault_at || r.at > restored_at + Duration::from_secs(20)
                }
                Some(_) => true,
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "only Redis-backed requests may fail (503) while Redis is down: {:?}",
            &wrong[..wrong.len().min(5)]
        );
        let check_ = check(&mut ledger, &ring, &app.base, &tag, &primary_ports()).await;
        assert_none_lost(&check_);
        let served = ledger
            .recs
            .iter()
            .filter(|r| matches!(r.kind, Kind::Read | Kind::CacheRead) && r.at > fault_at && r.at < restored_at)
            .count();
        reports.push(Report {
            name: "redis-stop",
            fault: format!("redis shutdown, {}s down", f.as_secs()),
            requests,
            rate,
            failed,
            check: check_,
            notes: vec![format!(
                "0 crashes; {served} user reads served from Postgres while down; heartbeats back {:.1} s after restart; \
                 presence channel + sweeper back {:.1} s later",
                back.as_secs_f64(),
                sse_ok.as_secs_f64()
            )],
        });
    }

    if run("worker-kill") {
        let load = Load::start(&app.base, &format!("{tag}wk"), &ring, clients());
        tokio::time::sleep(settle).await;
        let killed = app.worker_pids()[0];
        let kill_at = load.t0.elapsed();
        Command::new("kill").args(["-KILL", &killed.to_string()]).status().unwrap();
        let replaced = wait_until("the killed worker's replacement", Duration::from_secs(10), || {
            let now = app.worker_pids();
            async move { now.len() == 2 && !now.contains(&killed) }
        })
        .await;
        tokio::time::sleep(f).await;
        let took = load.t0.elapsed();
        let mut ledger = load.stop().await;
        let (requests, rate, failed) = summarize(&ledger.recs, took);
        let status_failures = ledger.recs.iter().filter(|r| matches!(r.failure, Some(Failure::Status(..)))).count();
        let transport: usize = failed.values().sum::<usize>() - status_failures;
        assert_eq!(status_failures, 0, "no request got an error status: {failed:?}");
        // What the kill may cost: requests in flight on that worker, and connections the
        // kernel had queued on its socket (in the few ms before the dying process's socket
        // closed, a client can be queued there twice). So: transport failures only, all
        // around the kill, a handful per client at most.
        let late: Vec<&Rec> = ledger
            .recs
            .iter()
            .filter(|r| {
                r.failure.is_some()
                    && (r.at + Duration::from_secs(2) < kill_at || r.at > kill_at + Duration::from_secs(1))
            })
            .collect();
        assert!(late.is_empty(), "failures away from the kill: {:?}", &late[..late.len().min(5)]);
        assert!(transport <= 3 * clients(), "only requests on the killed worker may fail: {failed:?}");
        let c = check(&mut ledger, &ring, &app.base, &tag, &primary_ports()).await;
        assert_none_lost(&c);
        reports.push(Report {
            name: "worker-kill",
            fault: "SIGKILL one of 2 workers".into(),
            requests,
            rate,
            failed,
            check: c,
            notes: vec![format!(
                "replaced in {:.2} s; {transport} requests in flight or queued on the killed worker lost their answer",
                replaced.as_secs_f64()
            )],
        });
    }

    if run("rolling") {
        let load = Load::start(&app.base, &format!("{tag}ro"), &ring, clients());
        tokio::time::sleep(settle).await;
        let before = app.worker_pids();
        Command::new("kill").args(["-HUP", &app.pid().to_string()]).status().unwrap();
        let replaced = wait_until("every worker replaced", Duration::from_secs(30), || {
            let now = app.worker_pids();
            let before = before.clone();
            async move { now.len() == 2 && now.iter().all(|p| !before.contains(p)) }
        })
        .await;
        tokio::time::sleep(settle).await;
        let took = load.t0.elapsed();
        let mut ledger = load.stop().await;
        let (requests, rate, failed) = summarize(&ledger.recs, took);
        assert!(failed.is_empty(), "a rolling restart must fail no request: {failed:?}");
        let c = check(&mut ledger, &ring, &app.base, &tag, &primary_ports()).await;
        assert_none_lost(&c);
        reports.push(Report {
            name: "rolling",
            fault: "SIGHUP: both workers replaced in turn".into(),
            requests,
            rate,
            failed,
            check: c,
            notes: vec![format!("all workers replaced in {:.1} s", replaced.as_secs_f64())],
        });
    }

    if run("sigterm") {
        let load = Load::start(&app.base, &format!("{tag}st"), &ring, clients());
        tokio::time::sleep(settle).await;
        let took_exit = app.terminate();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let took = load.t0.elapsed();
        let mut ledger = load.stop().await;
        let (requests, rate, failed) = summarize(&ledger.recs, took);
        let in_flight =
            ledger.recs.iter().filter(|r| matches!(r.failure, Some(Failure::InFlight | Failure::Status(..)))).count();
        assert_eq!(in_flight, 0, "SIGTERM must fail no in-flight request: {failed:?}");
        assert!(took_exit < Duration::from_secs(10), "exit within the 10 s grace period: {took_exit:?}");
        app = TestApp::start_with(2, &env).await;
        let c = check(&mut ledger, &ring, &app.base, &tag, &primary_ports()).await;
        assert_none_lost(&c);
        reports.push(Report {
            name: "sigterm",
            fault: "SIGTERM the server (grace 10 s)".into(),
            requests,
            rate,
            failed,
            check: c,
            notes: vec![format!(
                "exited {:.2} s after SIGTERM; 0 in-flight failures; refusals after exit are new connections",
                took_exit.as_secs_f64()
            )],
        });
    }

    print_table(&reports);
    drop(app);
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -p {REDIS_PORT} --scan --pattern '{tag}:*' | xargs -r -n 500 redis-cli -p {REDIS_PORT} del"
        ))
        .output();
}

// ---------------------------------------------------------------- the sale's history

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli").arg("-p").arg(REDIS_PORT.to_string()).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The Redis faults the sale must survive without a wrong answer, each on a sale of its own.
/// `at` is when the fault starts in the buying; each scenario repeats its fault through the run.
fn sale_fault(name: &str, at: Duration, run_for: Duration, t0: Instant) -> Vec<String> {
    let mut figures = Vec::new();
    let mut next = at;
    while next + Duration::from_millis(500) < run_for {
        std::thread::sleep(next.saturating_sub(t0.elapsed()));
        let t = Instant::now();
        match name {
            "flush" => {
                redis_cli(&["flushall"]);
                figures.push(format!("FLUSHALL at +{:.1} s", t0.elapsed().as_secs_f64()));
                next += Duration::from_millis(400);
            }
            "restart-empty" => {
                redis_cli(&["shutdown", "nosave"]);
                std::thread::sleep(Duration::from_millis(300));
                cluster("up");
                figures.push(format!(
                    "restarted empty at +{:.1} s (down {:.1} s)",
                    (t0.elapsed() - t.elapsed()).as_secs_f64(),
                    t.elapsed().as_secs_f64()
                ));
                next = t0.elapsed() + Duration::from_millis(1500);
            }
            "pause" => {
                redis_cli(&["client", "pause", "2500", "all"]);
                figures.push(format!("CLIENT PAUSE 2500 ALL at +{:.1} s", t0.elapsed().as_secs_f64()));
                next += Duration::from_millis(4000);
            }
            other => panic!("unknown sale fault {other}"),
        }
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_sale_history_under_redis_faults_has_no_wrong_answer() {
    let _stop = StopCluster;
    cluster("up");
    let run_for = Duration::from_secs(3 + fault_secs());
    let buyers: usize = std::env::var("CHAOS_SALE_BUYERS").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let wanted: Option<Vec<String>> =
        std::env::var("CHAOS_SCENARIOS").ok().map(|v| v.split(',').map(str::to_string).collect());
    let pools = load::primaries(&primary_ports()).await;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for fault in ["flush", "restart-empty", "pause"] {
        if wanted.as_ref().is_some_and(|w| !w.iter().any(|x| x == fault)) {
            continue;
        }
        let tag = format!("sh{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
        let spec = sale_history::SaleSpec {
            name: tag.clone(),
            items: 300,
            user_limit: 2,
            catalogue: 5000,
            users: 2000,
            hold_secs: 2,
        };
        let mut env = server_env(&tag);
        migrate(&env);
        env.extend(spec.env());
        let app = TestApp::start_with(2, &env).await;
        let buying = sale_history::Buyers::start(&app.base, &spec, buyers);
        let t0 = buying.t0;
        let f = fault.to_string();
        // The first fault while most of the stock is still being checked out.
        let at = Duration::from_millis(if fault == "pause" { 1000 } else { 300 });
        let faults = tokio::task::spawn_blocking(move || sale_fault(&f, at, run_for, t0)).await.unwrap();
        tokio::time::sleep(run_for.saturating_sub(t0.elapsed())).await;
        let history = buying.stop().await;
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let verdict = sale_history::check(&history, &spec, &app.base, &pools, REDIS_PORT, &format!("{tag}:")).await;
        let mut outcomes: Vec<(&String, &usize)> = history.outcomes.iter().collect();
        outcomes.sort_by(|a, b| b.1.cmp(a.1));
        println!(
            "sale history [{fault}]: {} requests by {buyers} buyers in {:.1} s; {} checkouts and {} purchases \
             acknowledged, {} uncertain; Postgres: {} sold of {}, {} checkout rows",
            history.ops,
            run_for.as_secs_f64(),
            history.checkouts.len(),
            history.purchases.len(),
            history.uncertain.len(),
            verdict.sold,
            spec.items,
            verdict.attempts,
        );
        println!("  faults: {}", faults.join("; "));
        println!(
            "  rebuilds {} (holds not loaded {}), confirmations refused {} / failed {}, undone checkouts {}, \
             refused by the stock {}",
            metric(&metrics, "sale_rebuilds_total", &[]) as i64,
            metric(&metrics, "sale_rebuild_holds_dropped_total", &[]) as i64,
            metric(&metrics, "sale_checkout_confirmations_total", &["refused"]) as i64,
            metric(&metrics, "sale_checkout_confirmations_total", &["failed"]) as i64,
            metric(&metrics, "sale_checkout_undos_total", &[]) as i64,
            metric(&metrics, "sale_purchases_total", &["refused_by_stock"]) as i64,
        );
        println!("  answers: {}", outcomes.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
        for v in &verdict.violations {
            println!("  VIOLATION: {v}");
        }
        rows.push((fault, history.ops, verdict.violations.len()));
        if !verdict.violations.is_empty() {
            failed.push(format!("{fault}: {}", verdict.violations.join("; ")));
        }
        drop(app);
    }
    assert!(failed.is_empty(), "the sale answered wrongly under Redis faults: {failed:?}");
    assert!(!rows.is_empty() || wanted.is_some(), "no sale fault ran");
}
