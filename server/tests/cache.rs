//! The read-through cache (hotcold-user-api) against the real Redis and cluster.

mod common;

use std::time::{Duration, Instant};

use common::{id_on_shard, Proxy, TestApp};
use sonic_rs::JsonValueTrait;

/// hotcold-user-api ids are at most 20 characters.
fn short_id(tag: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{tag}{}", &u[..(20 - tag.len()).min(14)])
}

async fn lookup(app: &TestApp, id: &str) -> (u16, sonic_rs::Value) {
    app.get_json(&format!("/v1/users?user_id={id}")).await
}

fn msg(v: &sonic_rs::Value) -> &str {
    v.get("message").and_then(|m| m.as_str()).unwrap_or("")
}

async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    common::metric_sum(&text, name, "")
}

async fn create(app: &TestApp, id: &str, deeplink: &str) {
    let (st, _) = app
        .create(&format!(r#"{{"id":"{id}","name":"Cache User","deeplink":"{deeplink}","promo_message":"promo"}}"#))
        .await;
    assert_eq!(st, 201);
}

#[tokio::test]
async fn seed_contract_hit_miss_not_found_and_validation() {
    let app = TestApp::start(1).await;
    let id = short_id("c1");
    create(&app, &id, "myapp://a/1").await;
    let (st, v) = lookup(&app, &id).await;
    assert_eq!((st, msg(&v)), (200, "ok:postgres"));
    assert_eq!(v.get("code").and_then(|c| c.as_u64()), Some(200));
    assert_eq!(v.get("cache_hit").and_then(|c| c.as_bool()), Some(false));
    let (st, v) = lookup(&app, &id).await;
    assert_eq!((st, msg(&v)), (200, "ok:redis"));
    assert_eq!(v.get("cache_hit").and_then(|c| c.as_bool()), Some(true));
    assert_eq!(v.get("user_id").and_then(|c| c.as_str()), Some(id.as_str()));
    assert_eq!(v.get("deeplink").and_then(|c| c.as_str()), Some("myapp://a/1"));
    assert_eq!(v.get("promo_message").and_then(|c| c.as_str()), Some("promo"));
    assert_eq!(v.pointer(["metadata", "version"]).and_then(|c| c.as_str()), Some("v1"));
    assert!(v.pointer(["metadata", "timestamp"]).and_then(|c| c.as_str()).is_some_and(|t| t.ends_with('Z')));
    // Field order is the seed's.
    let raw = app.client.get(app.url(&format!("/v1/users?user_id={id}"))).send().await.unwrap().text().await.unwrap();
    let order: Vec<usize> = [
        "\"code\"",
        "\"message\"",
        "\"user_id\"",
        "\"deeplink\"",
        "\"promo_message\"",
        "\"cache_hit\"",
        "\"metadata\"",
    ]
    .iter()
    .map(|k| raw.find(k).unwrap_or_else(|| panic!("{k} in {raw}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{raw}");

    let (st, v) = lookup(&app, &short_id("nf")).await;
    assert_eq!((st, msg(&v)), (404, "not found"));
    assert!(v.get("user_id").is_none() && v.get("deeplink").is_none());
    assert_eq!(v.get("code").and_then(|c| c.as_u64()), Some(404));
    for bad in ["a".repeat(65), "bad!".into(), "".into(), "sp%20ace".into()] {
        let (st, v) = lookup(&app, &bad).await;
        assert_eq!((st, msg(&v)), (400, "invalid user_id"), "{bad:?}");
        assert_eq!(v.get("cache_hit").and_then(|c| c.as_bool()), Some(false));
    }
    let (st, v) = app.get_json("/v1/users").await;
    assert_eq!((st, msg(&v)), (400, "invalid user_id"));

    // One cache layer: the users API sees the same entry.
    let r = app.client.get(app.url(&format!("/api/v1/users/{id}"))).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "hit");
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let app = TestApp::start_with(1, &[("CACHE_TTL_SECONDS", "1".into())]).await;
    let id = short_id("tt");
    create(&app, &id, "myapp://t/1").await;
    assert_eq!(msg(&lookup(&app, &id).await.1), "ok:postgres");
    assert_eq!(msg(&lookup(&app, &id).await.1), "ok:redis");
    let ttl = std::process::Command::new("redis-cli").args(["pttl", &format!("sg:user:{id}")]).output().unwrap();
    let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
    assert!((1..=1000).contains(&ttl), "pttl {ttl}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(msg(&lookup(&app, &id).await.1), "ok:postgres", "expired");
    // The default TTL is an hour.
    let app = TestApp::start(1).await;
    let id = short_id("th");
    create(&app, &id, "myapp://t/2").await;
    lookup(&app, &id).await;
    let ttl = std::process::Command::new("redis-cli").args(["ttl", &format!("sg:user:{id}")]).output().unwrap();
    let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
    assert!((3590..=3600).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn writes_invalidate_so_a_read_after_a_write_shows_it() {
    let app = TestApp::start(2).await;
    let id = short_id("iv");
    create(&app, &id, "myapp://old").await;
    for _ in 0..3 {
        lookup(&app, &id).await;
    }
    assert_eq!(msg(&lookup(&app, &id).await.1), "ok:redis");
    let (st, _) =
        app.send_json(reqwest::Method::PUT, &format!("/api/v1/users/{id}"), r#"{"deeplink": "myapp://new"}"#).await;
    assert_eq!(st, 200);
    let (st, v) = lookup(&app, &id).await;
    assert_eq!(st, 200);
    assert_eq!(v.get("deeplink").and_then(|d| d.as_str()), Some("myapp://new"), "read your write: {v:?}");
    assert_eq!(msg(&lookup(&app, &id).await.1), "ok:redis");
    assert_eq!(lookup(&app, &id).await.1.get("deeplink").and_then(|d| d.as_str()), Some("myapp://new"));
    let (_, u) = app.get_json(&format!("/api/v1/users/{id}")).await;
    assert_eq!(u.get("deeplink").and_then(|d| d.as_str()), Some("myapp://new"));
    let r = app.client.delete(app.url(&format!("/api/v1/users/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(lookup(&app, &id).await.0, 404, "deleted user is gone from the cache too");
    assert_eq!(app.get_json(&format!("/api/v1/users/{id}")).await.0, 404);
}

#[tokio::test]
async fn not_found_is_cached_briefly_and_a_create_clears_it() {
    let app = TestApp::start(1).await;
    let id = short_id("ng");
    let before = counter(&app, "cache_db_lookups_total").await;
    for _ in 0..30 {
        assert_eq!(lookup(&app, &id).await.0, 404);
    }
    let after = counter(&app, "cache_db_lookups_total").await;
    assert_eq!(after - before, 1.0, "a flood of misses for one id costs one database lookup");
    let ttl = std::process::Command::new("redis-cli").args(["ttl", &format!("sg:user:{id}")]).output().unwrap();
    let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
    assert!((25..=30).contains(&ttl), "negative ttl {ttl}");
    create(&app, &id, "myapp://now").await;
    let (st, v) = lookup(&app, &id).await;
    assert_eq!((st, msg(&v)), (200, "ok:postgres"), "the create cleared the negative entry");
    assert_eq!(app.get_json(&format!("/api/v1/users/{id}")).await.0, 200);
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("cache_hit_ratio "), "hit ratio exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_lookup_even_when_the_first_caller_leaves() {
    // Every round trip to shard 2 takes 150 ms, so the lookup stays in flight while the
    // others arrive. One worker process: singleflight is per process.
    let topo = common::topology();
    let (pooler, replica) =
        (Proxy::start(topo.shards[2].pooler.to_string()).await, Proxy::start(topo.shards[2].replica.to_string()).await);
    let app = TestApp::start_with(
        1,
        &[
            ("SHARDGATE_SHARD_2_POOLER", pooler.addr()),
            ("SHARDGATE_SHARD_2_REPLICA", replica.addr()),
            ("REQUEST_TIMEOUT_MS", "5000".into()),
            ("HEALTH_TIMEOUT_MS", "5000".into()),
            ("CACHE_RECENT_WRITE_MS", "0".into()),
        ],
    )
    .await;
    let id = loop {
        let id = short_id("sf");
        if topo.ring().shard_for_str(&id).get() == 2 {
            break id;
        }
    };
    create(&app, &id, "myapp://sf").await;
    // Warm the pools' connections first so the measured lookup is one query.
    let _ = app.get_json(&format!("/api/v1/users/{}?consistency=strong", id_on_shard("w", 2))).await;
    let _ = app.get_json(&format!("/api/v1/users/{}", id_on_shard("w", 2))).await;
    pooler.set_latency(150);
    replica.set_latency(150);
    let before = counter(&app, "cache_db_lookups_total").await;

    // The first caller gives up after 50 ms; the rest must still be answered.
    let quitter = reqwest::Client::builder().timeout(Duration::from_millis(50)).build().unwrap();
    let url = app.url(&format!("/v1/users?user_id={id}"));
    assert!(quitter.get(&url).send().await.is_err(), "the first caller timed out");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, url) = (reqwest::Client::new(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    for t in tasks {
        let (st, body) = t.await.unwrap();
        assert_eq!(st, 200, "{body}");
        assert!(body.contains("ok:postgres") || body.contains("ok:redis"), "{body}");
    }
    pooler.set_latency(0);
    replica.set_latency(0);
    let after = counter(&app, "cache_db_lookups_total").await;
    assert_eq!(after - before, 1.0, "21 concurrent cold lookups, one database query");
    assert!(counter(&app, "cache_singleflight_joins_total").await >= 1.0);
}

#[tokio::test]
async fn redis_down_means_postgres_answers_and_everything_recovers() {
    let proxy = Proxy::start("127.0.0.1:6379".into()).await;
    let app = TestApp::start_with(
        2,
        &[("REDIS_URL", format!("redis://{}/", proxy.addr())), ("HEALTH_INTERVAL_MS", "200".into())],
    )
    .await;
    let id = short_id("rd");
    create(&app, &id, "myapp://before").await;
    lookup(&app, &id).await;
    assert_eq!(msg(&lookup(&app, &id).await.1), "ok:redis");

    proxy.disable();
    for i in 0..20 {
        let t0 = Instant::now();
        let (st, v) = lookup(&app, &id).await;
        assert_eq!((st, msg(&v)), (200, "ok:postgres"), "read #{i} with Redis down");
        assert!(t0.elapsed() < Duration::from_millis(300), "within the lookup deadline: {:?}", t0.elapsed());
        assert_eq!(app.get_json(&format!("/api/v1/users/{id}")).await.0, 200);
    }
    // A write while Redis is down still succeeds; its invalidation is retried.
    let (st, _) =
        app.send_json(reqwest::Method::PATCH, &format!("/api/v1/users/{id}"), r#"{"deeplink":"myapp://after"}"#).await;
    assert_eq!(st, 200);
    let (st, h) = app.get_json("/health").await;
    assert_eq!((st, h.get("status").and_then(|s| s.as_str())), (200, Some("degraded")));
    assert_eq!(app.get_json("/ready").await.0, 503);

    proxy.enable();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (st, v) = lookup(&app, &id).await;
        assert_eq!(st, 200);
        if msg(&v) == "ok:redis" && v.get("deeplink").and_then(|d| d.as_str()) == Some("myapp://after") {
            break;
        }
        assert!(
            v.get("deeplink").and_then(|d| d.as_str()) == Some("myapp://after") || msg(&v) == "ok:redis",
            "never the old value from Postgres: {v:?}"
        );
        assert!(Instant::now() < deadline, "cache did not recover: {v:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.get_json("/ready").await.0, 200);
}

#[tokio::test]
async fn openapi_and_an_offline_swagger_ui_are_served() {
    let app = TestApp::start(1).await;
    let (st, doc) = app.get_json("/openapi.json").await;
    assert_eq!(st, 200);
    assert_eq!(doc.get("openapi").and_then(|v| v.as_str()), Some("3.1.0"));
    let r = app.client.get(app.url("/swagger/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("swagger-ui"));
    let init = app.client.get(app.url("/swagger/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/openapi.json"), "the UI loads our document: {init}");
    let js = app.client.get(app.url("/swagger/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000, "assets embedded in the binary");
    let r = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = r.get(app.url("/swagger")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (301, "/swagger/"));
}

/// Runs one statement on a Postgres server (the replica's own port, as superuser).
fn psql(addr: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([&format!("postgres://postgres@{addr}/shardgate"), "-tAc", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Resumes the replica's replay when the test ends, passed or failed.
struct ReplayPaused(String);

impl ReplayPaused {
    fn start(addr: &str) -> ReplayPaused {
        psql(addr, "select pg_wal_replay_pause()");
        ReplayPaused(addr.to_string())
    }
}

impl Drop for ReplayPaused {
    fn drop(&mut self) {
        psql(&self.0, "select pg_wal_replay_resume()");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_after_a_write_never_joins_a_lookup_that_started_before_it() {
    // A lookup started before the PATCH reads a replica that has stopped replaying (so it
    // returns the old row) and takes 400 ms (a proxy in front of it). The writer's own GET
    // arrives while that lookup is in flight: it must not be handed the old row.
    let topo = common::topology();
    let shard = 3;
    let replica = Proxy::start(topo.shards[shard].replica.to_string()).await;
    let app = TestApp::start_with(
        1,
        &[
            ("SHARDGATE_SHARD_3_REPLICA", replica.addr()),
            ("CACHE_RECENT_WRITE_MS", "1500".into()),
            ("REQUEST_TIMEOUT_MS", "5000".into()),
            ("HEALTH_TIMEOUT_MS", "5000".into()),
        ],
    )
    .await;
    let id = loop {
        let id = short_id("rw");
        if topo.ring().shard_for_str(&id).get() == shard as u16 {
            break id;
        }
    };
    create(&app, &id, "myapp://before").await;
    let replica_addr = topo.shards[shard].replica.to_string();
    let until = Instant::now() + Duration::from_secs(10);
    while psql(&replica_addr, &format!("select count(*) from users where id = '{id}'")) != "1" {
        assert!(Instant::now() < until, "the replica never had the new user");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The create's write marker is no longer recent: a miss now reads the replica.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let paused = ReplayPaused::start(&replica_addr);
    replica.set_latency(400);

    let url = app.url(&format!("/v1/users?user_id={id}"));
    let early = tokio::spawn({
        let url = url.clone();
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, _) =
        app.send_json(reqwest::Method::PATCH, &format!("/api/v1/users/{id}"), r#"{"deeplink":"myapp://after"}"#).await;
    assert_eq!(st, 200);
    let (st, v) = lookup(&app, &id).await;
    let early = early.await.unwrap();
    replica.set_latency(0);
    drop(paused);
    assert_eq!(st, 200);
    assert_eq!(
        v.get("deeplink").and_then(|d| d.as_str()),
        Some("myapp://after"),
        "the writer reads its acknowledged PATCH: {v:?} (the lookup in flight before it answered {early})"
    );
}
