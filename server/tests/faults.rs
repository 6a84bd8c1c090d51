//! Faults, each with instances of its own: a TCP proxy in front of one shard's
//! PgBouncer or replica is cut or slowed, so the shared cluster is never stopped and
//! every other test keeps running against it.

mod common;

use std::time::{Duration, Instant};

use common::{id_on_shard, Proxy, TestApp};
use sonic_rs::JsonValueTrait;

fn code(v: &sonic_rs::Value) -> &str {
    v.get("code").and_then(|c| c.as_str()).unwrap_or("")
}

fn shard_field<'a>(stats: &'a sonic_rs::Value, shard: usize, field: &str) -> Option<&'a sonic_rs::Value> {
    stats.get("shards").and_then(|a| a.get(shard)).and_then(|s| s.get(field))
}

async fn pooler_proxy(shard: u16) -> Proxy {
    Proxy::start(common::topology().shards[shard as usize].pooler.to_string()).await
}

async fn replica_proxy(shard: u16) -> Proxy {
    Proxy::start(common::topology().shards[shard as usize].replica.to_string()).await
}

#[tokio::test]
async fn a_down_primary_fails_fast_for_its_keys_only_and_recovers_by_itself() {
    let proxy = pooler_proxy(3).await;
    let app =
        TestApp::start_with(2, &[("SHARDGATE_SHARD_3_POOLER", proxy.addr()), ("HEALTH_INTERVAL_MS", "300".into())])
            .await;
    let (st, _) = app.create(&format!(r#"{{"id":"{}","name":"Before Down"}}"#, id_on_shard("pd", 3))).await;
    assert_eq!(st, 201);

    proxy.disable();
    tokio::time::sleep(Duration::from_millis(800)).await; // at least two probe rounds
    for i in 0..10 {
        let t0 = Instant::now();
        let (st, body) = app.create(&format!(r#"{{"id":"{}","name":"During Down"}}"#, id_on_shard("pd", 3))).await;
        assert_eq!((st, code(&body)), (503, "SHARD_UNAVAILABLE"), "write #{i} to shard 3");
        assert!(t0.elapsed() < Duration::from_millis(500), "fails fast, took {:?}", t0.elapsed());
        let other = (i % 4) as u16;
        let other = if other >= 3 { 4 } else { other };
        let (st, _) = app.create(&format!(r#"{{"id":"{}","name":"Other Shard"}}"#, id_on_shard("pd", other))).await;
        assert_eq!(st, 201, "shard {other} is untouched");
    }
    let (st, h) = app.get_json("/health").await;
    assert_eq!(st, 200);
    assert_eq!(h.get("status").and_then(|v| v.as_str()), Some("degraded"));
    let (st, _) = app.get_json("/ready").await;
    assert_eq!(st, 503);
    let (st, stats) = app.get_json("/api/v1/shards/stats").await;
    assert_eq!(st, 200);
    assert!(shard_field(&stats, 3, "healthy").and_then(|v| v.as_bool()) == Some(false), "{stats:?}");

    proxy.enable();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _) = app.create(&format!(r#"{{"id":"{}","name":"After Down"}}"#, id_on_shard("pd", 3))).await;
        if st == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "shard 3 did not recover by itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _) = app.get_json("/ready").await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_down_replica_costs_no_read() {
    let proxy = replica_proxy(2).await;
    // No cache (Redis unreachable): every read goes to the database path under test.
    let app = TestApp::start_with(
        2,
        &[
            ("SHARDGATE_SHARD_2_REPLICA", proxy.addr()),
            ("HEALTH_INTERVAL_MS", "300".into()),
            ("REDIS_URL", format!("redis://127.0.0.1:{}/", common::free_port())),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = id_on_shard("rd", 2);
        let (st, _) = app.create(&format!(r#"{{"id":"{id}","name":"Replica Down"}}"#)).await;
        assert_eq!(st, 201);
        ids.push(id);
    }
    proxy.disable();
    // Straight away (before the monitor notices) and after: every read succeeds.
    for round in 0..3 {
        for id in &ids {
            let (st, u) = app.get_json(&format!("/api/v1/users/{id}")).await;
            assert_eq!(st, 200, "round {round}: {u:?}");
        }
        let (st, _) = app.get_json("/api/v1/users/?limit=5").await;
        assert_eq!(st, 200, "list during replica outage");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (_, stats) = app.get_json("/api/v1/shards/stats").await;
    assert_eq!(shard_field(&stats, 2, "replica_healthy").and_then(|v| v.as_bool()), Some(false));
    proxy.enable();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, stats) = app.get_json("/api/v1/shards/stats").await;
        if shard_field(&stats, 2, "replica_healthy").and_then(|v| v.as_bool()) == Some(true) {
            break;
        }
        assert!(Instant::now() < deadline, "replica not back in use");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_list_with_a_shard_down_fails_loudly_or_returns_partial_with_a_header() {
    let proxy = pooler_proxy(1).await;
    let rproxy = replica_proxy(1).await;
    let app = TestApp::start_with(
        1,
        &[
            ("SHARDGATE_SHARD_1_POOLER", proxy.addr()),
            ("SHARDGATE_SHARD_1_REPLICA", rproxy.addr()),
            ("HEALTH_INTERVAL_MS", "300".into()),
        ],
    )
    .await;
    proxy.disable();
    rproxy.disable();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (st, body) = app.get_json("/api/v1/users/?limit=10").await;
    assert_eq!((st, code(&body)), (503, "SHARD_UNAVAILABLE"));
    assert!(body.get("error").and_then(|v| v.as_str()).unwrap().contains("shard-1"), "{body:?}");
    let r = app.client.get(app.url("/api/v1/users/?limit=10&partial=true")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-missing-shards"], "shard-1");
}

#[tokio::test]
async fn a_slow_shard_hits_the_request_deadline_with_504() {
    let proxy = pooler_proxy(0).await;
    let app =
        TestApp::start_with(1, &[("SHARDGATE_SHARD_0_POOLER", proxy.addr()), ("REQUEST_TIMEOUT_MS", "300".into())])
            .await;
    proxy.set_latency(3000); // a query would take >= 6 s
    let t0 = Instant::now();
    let (st, body) = app.get_json(&format!("/api/v1/users/{}?consistency=strong", id_on_shard("slow", 0))).await;
    assert_eq!((st, code(&body)), (504, "REQUEST_TIMEOUT"));
    assert!(t0.elapsed() < Duration::from_secs(2), "answered at the deadline, not the query's end: {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests() {
    // Every write to shard 4 takes ~1 s (150 ms per round trip on the PgBouncer path), so SIGTERM
    // lands while all 40 creates are in flight. All of them must complete and be committed.
    let proxy = pooler_proxy(4).await;
    let mut app = TestApp::start_with(
        2,
        &[
            ("SHARDGATE_SHARD_4_POOLER", proxy.addr()),
            ("DB_PRIMARY_POOL_SIZE", "24".into()),
            ("HEALTH_TIMEOUT_MS", "5000".into()),
            ("DB_ACQUIRE_TIMEOUT_MS", "8000".into()),
        ],
    )
    .await;
    proxy.set_latency(150);
    let port = app.port;
    let ids: Vec<String> = (0..40).map(|i| id_on_shard(&format!("drain{i}"), 4)).collect();
    // Raw HTTP/1.1 clients, so "in flight" is exact: SIGTERM is sent only after every
    // request has been fully written to its connection.
    let sent = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut tasks = Vec::new();
    for id in ids {
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let body = format!(r#"{{"id":"{id}","name":"In Flight"}}"#);
            let req = format!(
                "POST /api/v1/users/ HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            s.write_all(req.as_bytes()).await.expect("write the request");
            sent.add_permits(1);
            let mut resp = Vec::new();
            let read = s.read_to_end(&mut resp).await;
            let status = String::from_utf8_lossy(&resp).split(' ').nth(1).and_then(|c| c.parse::<u16>().ok());
            (id, read.map(|_| status))
        }));
    }
    let _ = sent.acquire_many(40).await.expect("all 40 requests written");
    // Each takes ~1 s at the database: all are in flight now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = app.terminate();
    assert!(took < Duration::from_secs(8), "exit took {took:?}");
    let mut ok = 0;
    for t in tasks {
        let (id, r) = t.await.unwrap();
        match r {
            Ok(Some(201)) => {
                ok += 1;
                let out = std::process::Command::new("psql")
                    .args([
                        "postgres://postgres@127.0.0.1:5444/shardgate",
                        "-tAc",
                        &format!("select count(*) from users where id = '{id}'"),
                    ])
                    .output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "acknowledged {id} is committed");
            }
            other => panic!("in-flight request {id} got {other:?}"),
        }
    }
    assert_eq!(ok, 40, "every in-flight create completed");
}

#[tokio::test]
async fn a_killed_worker_is_replaced_and_the_others_keep_serving() {
    let app = TestApp::start(2).await;
    let before = app.worker_pids();
    assert_eq!(before.len(), 2, "two workers: {before:?}");
    std::process::Command::new("kill").args(["-KILL", &before[0].to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = app.worker_pids();
        if now.len() == 2 && !now.contains(&before[0]) {
            assert!(now.contains(&before[1]), "the other worker was left alone");
            break;
        }
        assert!(Instant::now() < deadline, "worker not replaced: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait for the replacement to listen, then every request on fresh connections works.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..50 {
        let c = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        assert_eq!(c.get(app.url("/health")).send().await.unwrap().status(), 200);
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let restarts = common::metric_sum(&text, "shardgate_worker_restarts", "");
    assert_eq!(restarts, 1.0, "{text}");
}
