//! The users API end to end: the real binary (supervisor + 2 workers) against the real
//! cluster (PgBouncer, primaries, replicas, Redis).

mod common;

use common::{id_on_shard, unique, TestApp};
use reqwest::Method;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

fn s<'a>(v: &'a sonic_rs::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or_else(|| panic!("no string {k} in {v:?}"))
}

#[tokio::test]
async fn create_get_update_delete_round_trip() {
    let app = TestApp::start(2).await;
    let (st, u) =
        app.create(r#"{"name": "John Doe", "email": "john@example.com", "deeplink": "myapp://promo/1"}"#).await;
    assert_eq!(st, 201, "{u:?}");
    let id = s(&u, "id").to_string();
    assert_eq!((s(&u, "first_name"), s(&u, "last_name"), s(&u, "name")), ("John", "Doe", "John Doe"));
    assert_eq!(s(&u, "created_at"), s(&u, "updated_at"));
    assert!(uuid::Uuid::parse_str(&id).is_ok_and(|x| x.get_version_num() == 7), "UUIDv7 id: {id}");

    let (st, got) = app.get_json(&format!("/api/v1/users/{id}")).await;
    assert_eq!(st, 200);
    assert_eq!(got, u, "GET returns what POST returned");

    // PUT changes only the given fields, moves updated_at, returns the new row.
    let (st, put) = app.send_json(Method::PUT, &format!("/api/v1/users/{id}"), r#"{"name": "Jane Roe"}"#).await;
    assert_eq!(st, 200, "{put:?}");
    assert_eq!((s(&put, "first_name"), s(&put, "last_name")), ("Jane", "Roe"));
    assert_eq!(s(&put, "email"), "john@example.com", "email untouched");
    assert_eq!(s(&put, "deeplink"), "myapp://promo/1", "deeplink untouched");
    assert!(s(&put, "updated_at") > s(&u, "updated_at"), "updated_at moves: {put:?}");
    assert_eq!(s(&put, "created_at"), s(&u, "created_at"));

    // PATCH with null clears an optional field.
    let (st, patched) = app.send_json(Method::PATCH, &format!("/api/v1/users/{id}"), r#"{"email": null}"#).await;
    assert_eq!(st, 200);
    assert!(patched.get("email").unwrap().is_null());
    assert_eq!(s(&patched, "first_name"), "Jane");
    let (_, strong) = app.get_json(&format!("/api/v1/users/{id}?consistency=strong")).await;
    assert_eq!(strong, patched, "the primary has exactly the returned row");

    let r = app.client.delete(app.url(&format!("/api/v1/users/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (st, body) = app.get_json(&format!("/api/v1/users/{id}?consistency=strong")).await;
    assert_eq!((st, s(&body, "code")), (404, "USER_NOT_FOUND"));
    let r = app.client.delete(app.url(&format!("/api/v1/users/{id}"))).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (st, _) = app.send_json(Method::PUT, &format!("/api/v1/users/{id}"), r#"{"first_name": "X"}"#).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn explicit_ids_and_duplicates() {
    let app = TestApp::start(1).await;
    let id = unique("dup");
    let body = format!(r#"{{"id": "{id}", "first_name": "Ada", "last_name": "Lovelace"}}"#);
    let (st, u) = app.create(&body).await;
    assert_eq!((st, s(&u, "id")), (201, id.as_str()));
    let (st, e) = app.create(&body).await;
    assert_eq!((st, s(&e, "code")), (409, "USER_EXISTS"));
    // The row lives on the shard the ring names, nowhere else.
    let topo = common::topology();
    let shard = topo.ring().shard_for_str(&id);
    for spec in &topo.shards {
        let url = format!("postgres://postgres@{}/shardgate", spec.primary);
        let out = std::process::Command::new("psql")
            .args([&url, "-tAc", &format!("select count(*) from users where id = '{id}'")])
            .output()
            .unwrap();
        let n = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(n, if spec.id == shard { "1" } else { "0" }, "{}", spec.name);
    }
}

#[tokio::test]
async fn reads_right_after_creates_never_404() {
    let app = TestApp::start(2).await;
    for i in 0..60 {
        let (st, u) = app.create(&format!(r#"{{"first_name": "Fresh{i}"}}"#)).await;
        assert_eq!(st, 201);
        let (st, got) = app.get_json(&format!("/api/v1/users/{}", s(&u, "id"))).await;
        assert_eq!(st, 200, "read after create #{i}: {got:?}");
        assert_eq!(s(&got, "first_name"), format!("Fresh{i}"));
    }
}

#[tokio::test]
async fn keyset_pagination_walks_every_row_once_in_order() {
    let app = TestApp::start(2).await;
    let marker = unique("page");
    let mut mine = std::collections::HashSet::new();
    for i in 0..45 {
        let (st, u) = app.create(&format!(r#"{{"first_name": "{marker}", "last_name": "n{i}"}}"#)).await;
        assert_eq!(st, 201);
        mine.insert(s(&u, "id").to_string());
    }
    let mut seen = std::collections::HashSet::new();
    let mut last: Option<(String, String)> = None;
    let mut cursor: Option<String> = None;
    let mut found = 0;
    let mut pages = 0;
    while found < mine.len() {
        let mut url = app.url("/api/v1/users/?limit=7");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = app.client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        cursor = r.headers().get("x-next-cursor").map(|v| v.to_str().unwrap().to_string());
        let page: Vec<sonic_rs::Value> = sonic_rs::from_str(&r.text().await.unwrap()).unwrap();
        assert!(page.len() <= 7);
        for u in &page {
            let key = (s(u, "created_at").to_string(), s(u, "id").to_string());
            assert!(seen.insert(key.1.clone()), "row {} repeated", key.1);
            if let Some(prev) = &last {
                assert!(key < *prev, "order broken: {key:?} after {prev:?}");
            }
            last = Some(key.clone());
            if mine.contains(&key.1) {
                found += 1;
            }
        }
        pages += 1;
        assert!(cursor.is_some() || found == mine.len(), "list ended before all my rows: {found}/{}", mine.len());
    }
    assert!(pages >= 7, "walked {pages} pages");
    // The Messenger Clone API's offset form still answers a bare array.
    let (st, arr) = app.get_json("/api/v1/users/?limit=20&offset=0").await;
    assert_eq!(st, 200);
    assert!(arr.is_array());
}

#[tokio::test]
async fn bad_input_gets_4xx_json_and_never_hurts_a_worker() {
    let app = TestApp::start(2).await;
    let workers_before = app.worker_pids();
    let post = |body: Vec<u8>, ct: &'static str| {
        app.client.post(app.url("/api/v1/users/")).header("content-type", ct).body(body).send()
    };
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (b"{not json".to_vec(), "application/json", 400, "INVALID_JSON"),
        (b"".to_vec(), "application/json", 400, "EMPTY_BODY"),
        (b"[1,2,3]".to_vec(), "application/json", 400, "INVALID_BODY"),
        (br#"{"first_name": 7}"#.to_vec(), "application/json", 400, "INVALID_BODY"),
        (br#"{"first_name": "a", "is_admin": true}"#.to_vec(), "application/json", 400, "INVALID_BODY"),
        (b"{\"first_name\": \"\xc3\x28\"}".to_vec(), "application/json", 400, "INVALID_JSON"),
        (br#"{"first_name": "a", "email": "x@"}"#.to_vec(), "application/json", 400, "VALIDATION_FAILED"),
        (br#"{"id": "../etc/passwd", "first_name": "a"}"#.to_vec(), "application/json", 400, "INVALID_ID"),
        (br#"{"first_name": "a"}"#.to_vec(), "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (vec![b' '; 2 << 20], "application/json", 413, "PAYLOAD_TOO_LARGE"),
    ];
    for (body, ct, status, code) in cases {
        let r = post(body, ct).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{code}");
        assert!(r.headers().contains_key("x-request-id"));
        let v: sonic_rs::Value = sonic_rs::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(s(&v, "code"), code);
        assert!(!s(&v, "error").is_empty());
    }
    for (path, status, code) in [
        ("/api/v1/users/bad%20id", 400, "INVALID_ID"),
        ("/api/v1/users/?limit=1000", 400, "INVALID_QUERY"),
        ("/api/v1/users/?cursor=garbage", 400, "INVALID_CURSOR"),
        ("/api/v1/users/x?consistency=weird", 400, "INVALID_QUERY"),
        ("/nope", 404, "ROUTE_NOT_FOUND"),
    ] {
        let (st, v) = app.get_json(path).await;
        assert_eq!((st, s(&v, "code")), (status, code), "{path}");
    }
    let r = app.client.post(app.url("/api/v1/users/abc")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, PUT, PATCH, DELETE");
    // A 64-char id is fine, 65 is not.
    let (st, _) = app.get_json(&format!("/api/v1/users/{}", "a".repeat(64))).await;
    assert_eq!(st, 404);
    let (st, _) = app.get_json(&format!("/api/v1/users/{}", "a".repeat(65))).await;
    assert_eq!(st, 400);
    let (st, _) = app.get_json("/health").await;
    assert_eq!(st, 200);
    assert_eq!(app.worker_pids(), workers_before, "no worker crashed or restarted");
}

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = TestApp::start(1).await;
    let r = app.client.get(app.url("/health")).header("x-request-id", "trace-abc-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let a = app.client.get(app.url("/health")).send().await.unwrap();
    let b = app.client.get(app.url("/nope")).send().await.unwrap();
    let (a, b) = (a.headers()["x-request-id"].clone(), b.headers()["x-request-id"].clone());
    assert!(!a.is_empty() && a != b);
}

// Multi-thread: the client's connection task must keep running while TestApp's Drop
// blocks, to answer the server's GOAWAY during the graceful shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_on_the_same_port() {
    let app = TestApp::start(1).await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = h2.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let id = id_on_shard("h2", 1);
    let r = h2
        .post(app.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"id":"{id}","name":"Over Two"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn stats_health_ready_and_metrics_describe_the_whole_service() {
    let app = TestApp::start(2).await;
    let (st, h) = app.get_json("/health").await;
    assert_eq!((st, s(&h, "status"), s(&h, "mode")), (200, "ok", "sharded"));
    assert_eq!(h.get("shards").and_then(|v| v.as_u64()), Some(5));
    let (st, _) = app.get_json("/ready").await;
    assert_eq!(st, 200);
    let (st, _) = app.get_json("/healthz").await;
    assert_eq!(st, 200);
    let (st, stats) = app.get_json("/api/v1/shards/stats").await;
    assert_eq!(st, 200);
    let shards = stats.get("shards").unwrap().as_array().unwrap();
    assert_eq!(shards.len(), 5);
    let mut total = 0;
    let mut share = 0.0;
    for (i, sh) in shards.iter().enumerate() {
        assert_eq!(s(sh, "shard_name"), format!("shard-{i}"));
        assert_eq!(sh.get("healthy").and_then(|v| v.as_bool()), Some(true));
        assert_eq!(sh.get("replica_healthy").and_then(|v| v.as_bool()), Some(true));
        total += sh.get("user_count").and_then(|v| v.as_i64()).unwrap();
        share += sh.get("ring_share").and_then(|v| v.as_f64()).unwrap();
    }
    assert_eq!(stats.get("total_users").and_then(|v| v.as_i64()), Some(total));
    assert!((share - 1.0).abs() < 1e-9);

    // Fresh connections spread over both workers; /metrics must count all of them.
    for _ in 0..40 {
        let c = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        assert_eq!(c.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = common::metric_sum(&text, "http_requests_total", r#"route="/healthz""#);
    assert!(count >= 41.0, "healthz count {count} across workers:\n{text}");
    assert!(text.contains("http_request_duration_seconds_bucket{"), "histogram buckets");
    assert!(text.contains("db_pool_connections{"));
    assert!(text.contains("shardgate_worker_restarts{"));
    assert_eq!(text.matches("# TYPE http_requests_total counter").count(), 1);
}
