//! SSE fan-out load: holds many concurrent `GET /api/v1/presence/stream` subscribers against
//! a LOCAL shardgate, changes watched users' statuses over gRPC, and measures how long each
//! change takes to reach every watcher (the event's timestamp is Redis's clock at the change;
//! the receive time is this machine's clock: same host, same clock).
//!
//! ```text
//! cargo run --release --example sse_fanout -- --base http://127.0.0.1:8080 \
//!     --subscribers 10000 --users 1 --changes 20 --interval-ms 250 --server-pid <supervisor pid>
//! ```
//!
//! Every subscriber watches user `i % users` (the default, 1, is the worst case: one
//! celebrity watched by everyone). Prints `name value` lines: subscribers held, snapshots,
//! events expected/received, delivery latency p50/p99/max, and with `--server-pid` the
//! server's total RSS (supervisor + workers) while holding them. Exits 1 unless every
//! subscriber was held and every event arrived. Bounded: it connects,
//! makes `changes` changes, waits at most `--settle-ms` for stragglers, and exits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardgate::presence::grpc::pb;
use shardgate::presence::grpc::pb::user_status_service_client::UserStatusServiceClient;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    base: String,
    subscribers: usize,
    users: usize,
    changes: usize,
    interval: Duration,
    settle: Duration,
    server_pid: Option<u32>,
    connect_concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        base: "http://127.0.0.1:8080".into(),
        subscribers: 1000,
        users: 1,
        changes: 20,
        interval: Duration::from_millis(250),
        settle: Duration::from_secs(5),
        server_pid: None,
        connect_concurrency: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--base" => a.base = v.trim_end_matches('/').to_owned(),
            "--subscribers" => a.subscribers = v.parse().expect("--subscribers"),
            "--users" => a.users = v.parse().expect("--users"),
            "--changes" => a.changes = v.parse().expect("--changes"),
            "--interval-ms" => a.interval = Duration::from_millis(v.parse().expect("--interval-ms")),
            "--settle-ms" => a.settle = Duration::from_millis(v.parse().expect("--settle-ms")),
            "--server-pid" => a.server_pid = Some(v.parse().expect("--server-pid")),
            "--connect-concurrency" => a.connect_concurrency = v.parse().expect("--connect-concurrency"),
            _ => panic!("unknown flag {k}"),
        }
    }
    let host = a.base.trim_start_matches("http://");
    assert!(
        host.starts_with("127.0.0.1:") || host.starts_with("localhost:") || host.starts_with("[::1]:"),
        "refusing --base {}: only this machine is load-tested",
        a.base
    );
    assert!(a.users >= 1 && a.subscribers >= 1 && a.subscribers <= 60_000);
    a
}

/// Total RSS in KiB of `pid` and its direct children (the supervisor and its workers).
fn rss_kib(pid: u32) -> u64 {
    let one = |p: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    one(pid) + children.split_whitespace().filter_map(|c| c.parse().ok()).map(one).sum::<u64>()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One subscriber: raw HTTP/1.1 (10,000 of these must be cheap), parsing just enough of
/// the chunked SSE stream: each event is one chunk, so `data: {...}` lines are intact.
async fn subscriber(
    addr: String,
    path: String,
    snapshots: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u32>>>,
    ready: tokio::sync::mpsc::Sender<bool>,
) {
    let mut s = match TcpStream::connect(&addr).await {
        Ok(s) => s,
        Err(_) => {
            let _ = ready.send(false).await;
            return;
        }
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        let _ = ready.send(false).await;
        return;
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut told = false;
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buf.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            if text.contains("event: snapshot") {
                snapshots.fetch_add(1, Ordering::Relaxed);
                if !told {
                    told = true;
                    let _ = ready.send(true).await;
                }
            } else if text.contains("event: status") {
                let got = now_ms();
                if let Some(ts) = text
                    .split("\"timestamp\":")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|d| d.parse::<i64>().ok())
                {
                    latencies.lock().unwrap().push((got - ts).max(0) as u32);
                }
            } else if text.contains("event: error") {
                break;
            }
        }
        if !told && buf.starts_with(b"HTTP/1.1 ") && !buf.starts_with(b"HTTP/1.1 200") {
            break;
        }
    }
    if !told {
        let _ = ready.send(false).await;
    }
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let a = args();
    // 10,000 sockets need more than the default 1,024 descriptors.
    if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let addr = a.base.trim_start_matches("http://").to_owned();
    let run = format!("{:x}", rand::random::<u32>());
    let users: Vec<String> = (0..a.users).map(|k| format!("fan-{run}-{k}")).collect();
    let rss0 = a.server_pid.map(rss_kib);

    let snapshots = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::with_capacity(a.subscribers * a.changes / a.users + 16)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(1024);
    let t0 = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(a.connect_concurrency));
    let mut tasks = Vec::with_capacity(a.subscribers);
    let mut connected = 0usize;
    let mut failed = 0usize;
    for i in 0..a.subscribers {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let path = format!("/api/v1/presence/stream?watch={}", users[i % a.users]);
        let (tx, snaps, lats, addr) = (ready_tx.clone(), snapshots.clone(), latencies.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let (inner_tx, mut inner_rx) = tokio::sync::mpsc::channel(1);
            let fut = subscriber(addr, path, snaps, lats, inner_tx);
            let fwd = async {
                let ok = inner_rx.recv().await.unwrap_or(false);
                drop(permit);
                let _ = tx.send(ok).await;
            };
            tokio::join!(fut, fwd);
        }));
        while let Ok(ok) = ready_rx.try_recv() {
            if ok {
                connected += 1
            } else {
                failed += 1
            }
        }
    }
    drop(ready_tx);
    while connected + failed < a.subscribers {
        match tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await {
            Ok(Some(true)) => connected += 1,
            Ok(Some(false)) => failed += 1,
            _ => break,
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_held = a.server_pid.map(rss_kib);

    // Changes: alternate each user ONLINE / AWAY over gRPC; every one is a real change.
    let ch = tonic::transport::Channel::from_shared(a.base.clone()).unwrap().connect().await.expect("gRPC connect");
    let mut c = UserStatusServiceClient::new(ch);
    let mut made = 0usize;
    for n in 0..a.changes {
        let user = &users[n % a.users];
        let round = n / a.users;
        let st = if round % 2 == 0 { pb::UserStatus::Online } else { pb::UserStatus::Away };
        if c.set_user_status(pb::SetUserStatusRequest { user_id: user.clone(), status: st as i32 }).await.is_ok() {
            made += 1;
        }
        tokio::time::sleep(a.interval).await;
    }
    // Watchers per user: subscribers i with i % users == k.
    let expected: usize = (0..a.changes).map(|n| (a.subscribers + a.users - 1 - n % a.users) / a.users).sum();
    let settle_until = Instant::now() + a.settle;
    while latencies.lock().unwrap().len() < expected && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_peak = a.server_pid.map(rss_kib);
    // Close every stream (the server releases each subscription as its client goes).
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();

    println!("subscribers_requested {}", a.subscribers);
    println!("subscribers_held {connected}");
    println!("subscribers_failed {failed}");
    println!("snapshots {}", snapshots.load(Ordering::Relaxed));
    println!("connect_secs {connect_secs:.2}");
    println!("watched_users {}", a.users);
    println!("changes_made {made}");
    println!("events_expected {expected}");
    println!("events_received {}", lat.len());
    println!("latency_p50_ms {}", pct(&lat, 0.50));
    println!("latency_p99_ms {}", pct(&lat, 0.99));
    println!("latency_max_ms {}", lat.last().copied().unwrap_or(0));
    if let (Some(r0), Some(r1), Some(r2)) = (rss0, rss_held, rss_peak) {
        println!("server_rss_before_mib {:.1}", r0 as f64 / 1024.0);
        println!("server_rss_held_mib {:.1}", r1 as f64 / 1024.0);
        println!("server_rss_peak_mib {:.1}", r2.max(r1) as f64 / 1024.0);
    }
    // A failed run says so in its exit status (make loadtest-presence relies on it).
    if connected < a.subscribers || lat.len() < expected {
        eprintln!(
            "sse_fanout: FAILED: {connected}/{} subscribers held, {}/{expected} events",
            a.subscribers,
            lat.len()
        );
        std::process::exit(1);
    }
}
