//! Hostile input (issue 9): slow bodies are cut off, HTTP/2 rapid reset ends only the
//! offending connection, SQL and Redis metacharacters are stored verbatim or refused with a
//! stable code (never interpreted), error bodies leak nothing internal, and logs never print
//! a bearer token, and no body, message or token nested however deep crashes a worker
//! (`deep.rs`). Each test starts its own server, with its own ids and Redis prefix.
//! Multi-threaded runtimes where an HTTP/2 client is involved: it must still answer the
//! server's GOAWAY ping while `TestApp`'s drop blocks a thread.

#[path = "../common/mod.rs"]
mod common;
mod deep;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{id_on_shard, unique, Proxy, TestApp};
use shardgate::presence::grpc::pb;
use shardgate::presence::grpc::pb::user_status_service_client::UserStatusServiceClient;
use sonic_rs::JsonValueTrait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn code(v: &sonic_rs::Value) -> &str {
    v.get("code").and_then(|c| c.as_str()).unwrap_or("")
}

fn field<'a>(v: &'a sonic_rs::Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|c| c.as_str())
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn json_str(s: &str) -> String {
    sonic_rs::to_string(s).unwrap()
}

async fn grpc(app: &TestApp) -> UserStatusServiceClient<tonic::transport::Channel> {
    let ch = tonic::transport::Channel::from_shared(app.base.clone()).unwrap().connect().await.expect("h2c connect");
    UserStatusServiceClient::new(ch)
}

// ---- 1. slow bodies ----

#[tokio::test]
async fn a_slow_body_is_cut_off_with_408_while_others_are_served() {
    let app = TestApp::start_with(1, &[("BODY_READ_TIMEOUT_MS", "800".into())]).await;
    let s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    // One byte every 300 ms: a minute for the whole body, far past every other limit
    // (headers are complete, the request deadline is 10 s).
    let trickle = tokio::spawn(async move {
        for _ in 0..199 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = rd.read_to_end(&mut buf).await; // until the server closes
        (String::from_utf8_lossy(&buf).into_owned(), t0.elapsed())
    });
    // Meanwhile the same worker serves everyone else at once.
    for _ in 0..5 {
        let t = Instant::now();
        let (st, _) = app.create(&format!(r#"{{"id":"{}","name":"Fast Client"}}"#, unique("sb"))).await;
        assert_eq!(st, 201);
        assert_eq!(app.get_json("/health").await.0, 200);
        assert!(t.elapsed() < Duration::from_secs(1), "served in {:?} beside the slow body", t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (reply, took) =
        tokio::time::timeout(Duration::from_secs(5), reader).await.expect("the server closed the connection").unwrap();
    trickle.abort();
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains(r#""code":"BODY_TIMEOUT""#), "{reply}");
    assert!(reply.to_ascii_lowercase().contains("connection: close"), "{reply}");
    assert!(took >= Duration::from_millis(750) && took < Duration::from_millis(2500), "cut after {took:?}");
}

// ---- 2. HTTP/2 rapid reset ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_ends_that_connection_only() {
    let app = TestApp::start(2).await;
    let workers = app.worker_pids();
    assert_eq!(workers.len(), 2, "two workers under the supervisor");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2c with prior knowledge");
    let conn = tokio::spawn(conn);
    let mut client = Some(client);
    let mut opened = 0;
    // Open a stream and reset it at once, as fast as the client can (CVE-2023-44487).
    for _ in 0..5_000 {
        let Some(c) = client.take() else { break };
        let Ok(mut c) = c.ready().await else { break };
        let req = http::Request::post(format!("http://127.0.0.1:{}/api/v1/users", app.port))
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        match c.send_request(req, false) {
            Ok((_response, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
        opened += 1;
        client = Some(c);
    }
    // The server ends this connection itself (GOAWAY), with the client still holding it.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .unwrap_or_else(|_| panic!("the connection is still open after {opened} rapid resets"))
        .unwrap();
    let err = ended.expect_err("ended by the server with an error, not cleanly");
    // Either the client read the server's GOAWAY (ENHANCE_YOUR_CALM) first, or its next write
    // hit the socket the server had already closed after sending it (broken pipe / reset):
    // both are the server ending the connection.
    if err.is_io() {
        let kind = err.get_io().map(std::io::Error::kind);
        assert!(
            matches!(kind, Some(std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)),
            "{err:?} after {opened} streams"
        );
    } else {
        assert!(err.is_go_away() || err.is_remote(), "{err:?}");
        assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err:?} after {opened} streams");
    }
    drop(client);

    // Everyone else is fine: HTTP/1, a new HTTP/2 connection, gRPC; no worker restarted.
    assert_eq!(app.get_json("/health").await.0, 200);
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = h2.get(app.url("/health")).send().await.unwrap();
    assert_eq!((r.version(), r.status().as_u16()), (http::Version::HTTP_2, 200));
    let mut c = grpc(&app).await;
    c.get_user_status(pb::GetUserStatusRequest { user_id: unique("rr") }).await.expect("gRPC still served");
    assert_eq!(app.worker_pids(), workers, "no worker was restarted");
}

// ---- 3. metacharacters: verbatim or refused ----

/// SQL, Redis protocol, glob, Lua, format-string, path and unicode trouble.
const NASTY: &[&str] = &[
    "'; DROP TABLE users;--",
    "\" OR 1=1 --",
    "*",
    "\r\nFLUSHALL\r\n",
    "*1\r\n$8\r\nFLUSHALL\r\n",
    "{}",
    "$1",
    "%00",
    "\u{0}",
    "../../etc/passwd",
    "a b",
    "redis.call('FLUSHALL')",
    "日本語",
    "zoë🚀",
    "\u{202e}x",
    "x|ONLINE|1",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_full_of_metacharacters_are_refused_with_a_stable_code_everywhere() {
    let p = unique("hm");
    let app =
        TestApp::start_with(1, &[("REDIS_KEY_PREFIX", format!("{p}:")), ("SALE_NAME", p.replace('-', "_"))]).await;
    let redis = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let mut r = redis.get_multiplexed_async_connection().await.unwrap();
    let sentinel = format!("{p}:sentinel");
    let _: () = redis::cmd("SET").arg(&sentinel).arg("still here").query_async(&mut r).await.unwrap();
    let mut g = grpc(&app).await;
    for bad in NASTY {
        let (e, j) = (enc(bad), json_str(bad));
        let cases: Vec<(reqwest::Method, String, String, &str)> = vec![
            (reqwest::Method::GET, format!("/api/v1/users/{e}"), String::new(), "INVALID_ID"),
            (reqwest::Method::PUT, format!("/api/v1/users/{e}"), r#"{"name":"X Y"}"#.into(), "INVALID_ID"),
            (reqwest::Method::PATCH, format!("/api/v1/users/{e}"), r#"{"name":"X Y"}"#.into(), "INVALID_ID"),
            (reqwest::Method::DELETE, format!("/api/v1/users/{e}"), String::new(), "INVALID_ID"),
            (reqwest::Method::POST, "/api/v1/users".into(), format!(r#"{{"id":{j},"name":"X Y"}}"#), "INVALID_ID"),
            (reqwest::Method::GET, format!("/api/v1/users?cursor=1.{e}"), String::new(), "INVALID_CURSOR"),
            (reqwest::Method::POST, "/heartbeat".into(), format!(r#"{{"userId":{j}}}"#), "INVALID_ID"),
            (reqwest::Method::POST, "/status".into(), format!(r#"{{"userIds":["ok",{j}]}}"#), "INVALID_ID"),
            (reqwest::Method::POST, format!("/checkout?user_id={e}&id=item1"), String::new(), "INVALID_ID"),
            (reqwest::Method::POST, format!("/checkout?user_id=u1&id={e}"), String::new(), "INVALID_ID"),
            (reqwest::Method::POST, format!("/purchase?code={e}"), String::new(), "INVALID_CODE"),
            (reqwest::Method::GET, format!("/api/v1/presence/stream?watch=ok,{e}"), String::new(), "INVALID_ID"),
        ];
        for (method, path, body, want) in cases {
            let (st, v) = app.send_json(method.clone(), &path, &body).await;
            assert_eq!((st, code(&v)), (400, want), "{method} {path} {body}");
        }
        let (st, v) = app.get_json(&format!("/v1/users?user_id={e}")).await;
        assert_eq!((st, field(&v, "message")), (400, Some("invalid user_id")), "/v1/users {bad:?}");
        let s = g.get_user_status(pb::GetUserStatusRequest { user_id: bad.to_string() }).await.unwrap_err();
        assert_eq!((s.code(), s.message().split(':').next()), (tonic::Code::InvalidArgument, Some("INVALID_ID")));
        let s = g.send_heartbeat(pb::SendHeartbeatRequest { user_id: bad.to_string() }).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{bad:?}");
    }
    // Nothing was interpreted: Redis still has its keys, Postgres its table.
    let kept: Option<String> = redis::cmd("GET").arg(&sentinel).query_async(&mut r).await.unwrap();
    assert_eq!(kept.as_deref(), Some("still here"));
    let _: () = redis::cmd("DEL").arg(&sentinel).query_async(&mut r).await.unwrap();
    assert_eq!(app.create(&format!(r#"{{"id":"{}","name":"Still Works"}}"#, unique("hm"))).await.0, 201);
}

/// Creates a user with these fields, then reads it back every way: the create's own answer,
/// the primary (`consistency=strong`), the cache (a miss, then a hit) and hotcold-user-api's endpoint.
async fn assert_round_trip(app: &TestApp, id: &str, want: &[(&str, &str)]) {
    let check = |how: &str, v: &sonic_rs::Value| {
        for (k, val) in want {
            assert_eq!(field(v, k), Some(*val), "{k} via {how}: {v:?}");
        }
    };
    let (st, v) = app.get_json(&format!("/api/v1/users/{id}?consistency=strong")).await;
    assert_eq!(st, 200);
    check("the primary", &v);
    for expect_cache in ["miss", "hit"] {
        let r = app.client.get(app.url(&format!("/api/v1/users/{id}"))).send().await.unwrap();
        let cache = r.headers().get("x-cache").map(|h| h.to_str().unwrap().to_owned());
        let v: sonic_rs::Value = sonic_rs::from_str(&r.text().await.unwrap()).unwrap();
        check(&format!("the cache ({cache:?})"), &v);
        assert_eq!(cache.as_deref(), Some(expect_cache));
    }
    let (st, v) = app.get_json(&format!("/v1/users?user_id={id}")).await;
    assert_eq!((st, field(&v, "message")), (200, Some("ok:redis")));
    for (k, val) in want.iter().filter(|(k, _)| matches!(*k, "deeplink" | "promo_message")) {
        assert_eq!(field(&v, k), Some(*val), "{k} via /v1/users");
    }
}

#[tokio::test]
async fn field_values_full_of_metacharacters_are_stored_and_returned_verbatim() {
    let p = unique("hv");
    let app = TestApp::start_with(1, &[("REDIS_KEY_PREFIX", format!("{p}:"))]).await;
    let id = unique("hv");
    let fields: &[(&str, &str)] = &[
        ("first_name", "Robert');"),
        ("last_name", "DROP TABLE users;-- * {} $1 %00 \\ \" 日本語 zoë🚀 \u{202e}x"),
        ("email", "o'hara*{}$1%00|`~@ex-ample.com"),
        (
            "deeplink",
            "myapp://q?sql=';DROP%20TABLE%20users;--&glob=*&h={}&arg=$1&nul=%00&lua=redis.call('FLUSHALL')&u=日本",
        ),
        ("promo_message", "line 1\nFLUSHALL\n\t'; DELETE FROM users;-- {} $1 %00 \\ \" 日本語 🚀 KEYS *"),
    ];
    let mut body = format!(r#"{{"id":"{id}""#);
    for (k, v) in fields {
        body.push_str(&format!(",{}:{}", json_str(k), json_str(v)));
    }
    body.push('}');
    let (st, v) = app.create(&body).await;
    assert_eq!(st, 201, "{v:?}");
    for (k, val) in fields {
        assert_eq!(field(&v, k), Some(*val), "{k} in the create's answer");
    }
    assert_round_trip(&app, &id, fields).await;

    // An update with other such values: answered, committed and invalidated verbatim.
    let patch: &[(&str, &str)] =
        &[("first_name", "*"), ("last_name", "$1"), ("promo_message", "{}"), ("deeplink", "redis://x/FLUSHALL?a=*")];
    let body = format!(
        "{{{}}}",
        patch.iter().map(|(k, v)| format!("{}:{}", json_str(k), json_str(v))).collect::<Vec<_>>().join(",")
    );
    let (st, v) = app.send_json(reqwest::Method::PATCH, &format!("/api/v1/users/{id}"), &body).await;
    assert_eq!(st, 200, "{v:?}");
    assert_eq!(field(&v, "name"), Some("* $1"));
    let (st, v) = app.get_json(&format!("/api/v1/users/{id}?consistency=strong")).await;
    assert_eq!(
        (st, field(&v, "promo_message"), field(&v, "deeplink")),
        (200, Some("{}"), Some("redis://x/FLUSHALL?a=*"))
    );
    let (_, v) = app.get_json(&format!("/api/v1/users/{id}")).await;
    assert_eq!((field(&v, "first_name"), field(&v, "last_name")), (Some("*"), Some("$1")), "the cache was invalidated");

    // What cannot be stored is refused with a stable code, never cut or escaped.
    for (k, v) in [
        ("first_name", "\r\nFLUSHALL\r\n"),
        ("first_name", "a\u{0}b"),
        ("promo_message", "\r\nFLUSHALL\r\n"),
        ("deeplink", "myapp://x y"),
        ("email", "a@b.co\r\nBcc: x@y.co"),
    ] {
        let body = format!(r#"{{"name":"A B",{}:{}}}"#, json_str(k), json_str(v));
        let (st, e) = app.create(&body).await;
        assert_eq!((st, code(&e)), (400, "VALIDATION_FAILED"), "{k} = {v:?}");
    }
    assert_eq!(app.send_json(reqwest::Method::DELETE, &format!("/api/v1/users/{id}"), "").await.0, 204);
    assert_eq!(app.get_json(&format!("/api/v1/users/{id}?consistency=strong")).await.0, 404);
}

// ---- 4. error bodies leak nothing ----

/// What an error answer must never contain: SQL, driver and host names, addresses, paths,
/// stack traces.
fn assert_no_leak(what: &str, headers: &reqwest::header::HeaderMap, body: &str) {
    let lower = body.to_ascii_lowercase();
    for needle in [
        "sqlx",
        "postgres",
        "pgbouncer",
        "redis://",
        "rediss://",
        "select ",
        "insert ",
        "update users",
        "delete from",
        "relation",
        "syntax error",
        "sqlstate",
        "panicked",
        "backtrace",
        "stack",
        ".rs:",
        "/src/",
        "/work/",
        "/root/",
        "/home/",
        "/tmp/",
        "127.0.0.1",
        "localhost",
        "[::1]",
        "connection refused",
        "os error",
    ] {
        assert!(!lower.contains(needle), "{what}: {needle:?} in {body}");
    }
    // host:port in the human message (the hotcold-user-api body's timestamp has colons of its own).
    let v: sonic_rs::Value = sonic_rs::from_str(body).unwrap_or_default();
    for msg in [field(&v, "error"), field(&v, "message")].into_iter().flatten() {
        let b = msg.as_bytes();
        for i in 1..b.len().saturating_sub(2) {
            let port = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            assert!(!(b[i] == b':' && b[i - 1].is_ascii_alphanumeric() && port >= 2), "{what}: host:port in {msg}");
        }
    }
    for (name, value) in headers {
        let value = value.to_str().unwrap_or("").to_ascii_lowercase();
        assert!(!value.contains("postgres") && !value.contains("127.0.0.1"), "{what}: header {name}: {value}");
    }
}

async fn send_checked(app: &TestApp, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
    let r = app
        .client
        .request(method.clone(), app.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let (st, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    if st >= 400 {
        assert_no_leak(&format!("{st} for {method} {path}"), &headers, &text);
    }
    (st, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_never_leak_internals() {
    use reqwest::Method as M;
    let p = unique("hl");
    let (pooler, replica) = (
        Proxy::start(common::topology().shards[3].pooler.to_string()).await,
        Proxy::start(common::topology().shards[3].replica.to_string()).await,
    );
    let redis = Proxy::start("127.0.0.1:6379".into()).await;
    let app = TestApp::start_with(
        1,
        &[
            ("SHARDGATE_SHARD_3_POOLER", pooler.addr()),
            ("SHARDGATE_SHARD_3_REPLICA", replica.addr()),
            ("REDIS_URL", format!("redis://{}/", redis.addr())),
            ("REDIS_KEY_PREFIX", format!("{p}:")),
            ("SALE_NAME", p.replace('-', "_")),
            ("HEALTH_INTERVAL_MS", "200".into()),
            ("REQUEST_TIMEOUT_MS", "300".into()),
            ("LONG_REQUEST_TIMEOUT_MS", "700".into()),
            ("BODY_READ_TIMEOUT_MS", "500".into()),
            ("MAX_BODY_BYTES", "1024".into()),
        ],
    )
    .await;
    let on3 = id_on_shard("hl", 3);
    // Malformed input of every kind.
    let deep = "[".repeat(20_000);
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2000));
    for body in [
        "{\"name\":",
        "{\"name\": \"a\"",
        "[1,2",
        "{\"id\": 1, \"name\": \"a\"}",
        "{\"name\":\"a\",\"x\":1}",
        "\u{feff}{}",
        "null",
        "",
        "{\"name\":\"\\ud800\"}",
        &deep,
        &big,
    ] {
        let (st, _) = send_checked(&app, M::POST, "/api/v1/users", body).await;
        assert!((400..500).contains(&st), "{st} for {:.40}", body);
    }
    for (m, path) in [(M::GET, "/nope"), (M::DELETE, "/health"), (M::GET, "/api/v1/users?limit=x&cursor=zz")] {
        assert!(send_checked(&app, m, path, "").await.0 >= 400);
    }
    let r = app.client.post(app.url("/heartbeat")).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(r.status(), 415);

    // Timeouts: a slow shard (past both deadlines), a slow body.
    pooler.set_latency(1_000);
    replica.set_latency(1_000);
    let (st, _) = send_checked(&app, M::GET, &format!("/api/v1/users/{on3}?consistency=strong"), "").await;
    assert!(st == 504 || st == 503, "{st}");
    let (st, _) = send_checked(&app, M::POST, "/api/v1/users", &format!(r#"{{"id":"{on3}","name":"S L"}}"#)).await;
    assert!(st == 504 || st == 503, "{st}");
    pooler.set_latency(0);
    replica.set_latency(0);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(b"PUT /api/v1/users/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{").await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut reply)).await.unwrap().unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert_no_leak("408", &reqwest::header::HeaderMap::new(), body);

    // Shard 3 down: its writes and reads fail fast, saying only which shard.
    pooler.disable();
    replica.disable();
    tokio::time::sleep(Duration::from_millis(600)).await;
    for (m, path, body) in [
        (M::POST, "/api/v1/users".to_string(), format!(r#"{{"id":"{on3}","name":"D N"}}"#)),
        (M::GET, format!("/api/v1/users/{on3}?consistency=strong"), String::new()),
        (M::GET, format!("/api/v1/users/{on3}"), String::new()),
        (M::PATCH, format!("/api/v1/users/{on3}"), r#"{"name":"D N"}"#.into()),
        (M::DELETE, format!("/api/v1/users/{on3}"), String::new()),
        (M::GET, "/api/v1/users".into(), String::new()),
        (M::GET, format!("/v1/users?user_id={on3}"), String::new()),
    ] {
        let (st, text) = send_checked(&app, m.clone(), &path, &body).await;
        assert!(st >= 500, "{st} {m} {path}: {text}");
    }

    // Redis cut off: presence and the sale answer 503, the cache falls through.
    redis.disable();
    tokio::time::sleep(Duration::from_millis(600)).await;
    for (m, path, body) in [
        (M::POST, "/heartbeat", r#"{"userId":"u1"}"#),
        (M::POST, "/status", r#"{"userIds":["u1"]}"#),
        (M::POST, "/checkout?user_id=u1&id=i1", ""),
        (M::POST, "/purchase?code=0123456789abcdef0123456789abcdef", ""),
        (M::GET, "/status", ""),
        (M::GET, "/api/v1/presence/stream?watch=u1", ""),
    ] {
        let (st, text) = send_checked(&app, m.clone(), path, body).await;
        // The stream waits up to 1 s for the event channel: past this app's 700 ms deadline.
        assert!(st == 503 || (st == 504 && path.contains("stream")), "{st} {m} {path}: {text}");
    }
    let mut g = grpc(&app).await;
    let e = g.send_heartbeat(pb::SendHeartbeatRequest { user_id: "u1".into() }).await.unwrap_err();
    assert_no_leak("gRPC status", &reqwest::header::HeaderMap::new(), &sonic_rs::to_string(e.message()).unwrap());
    assert_eq!(app.get_json("/health").await.0, 200, "the worker lives");
}

#[tokio::test]
async fn internal_errors_say_internal_error_and_nothing_else() {
    // Every shard pointed at a database without our tables: each query fails inside
    // Postgres ("relation ... does not exist"), a 500 whose cause must stay in the log.
    let p = unique("hi");
    let mut env: Vec<(&str, String)> = vec![
        ("SHARDGATE_DB_NAME", "postgres".into()),
        ("REDIS_KEY_PREFIX", format!("{p}:")),
        ("SALE_NAME", p.replace('-', "_")),
    ];
    // A proxy per shard: the topology refuses one address in two roles.
    let topo = common::topology();
    let mut proxies = Vec::new();
    for spec in &topo.shards {
        proxies.push(Proxy::start(spec.primary.to_string()).await);
    }
    let keys: Vec<String> = (0..topo.shards.len()).map(|i| format!("SHARDGATE_SHARD_{i}_POOLER")).collect();
    for (k, proxy) in keys.iter().zip(&proxies) {
        env.push((k.as_str(), proxy.addr()));
    }
    let app = TestApp::start_with(1, &env).await;
    let id = unique("hi");
    use reqwest::Method as M;
    for (m, path, body) in [
        (M::POST, "/api/v1/users".to_string(), format!(r#"{{"id":"{id}","name":"I E"}}"#)),
        (M::GET, format!("/api/v1/users/{id}?consistency=strong"), String::new()),
        (M::GET, "/api/v1/users".into(), String::new()),
        (M::GET, format!("/v1/users?user_id={id}"), String::new()),
        (M::POST, format!("/checkout?user_id={id}&id=item-{id}"), String::new()),
    ] {
        let (st, text) = send_checked(&app, m.clone(), &path, &body).await;
        assert_eq!(st, 500, "{m} {path}: {text}");
        assert!(text.contains("internal error"), "{text}");
    }
}

// ---- 5. logs never print bearer tokens ----

/// `TestApp::start_with`, with every log line of the supervisor and its workers written to
/// `log` (whatever `TEST_LOG` says).
async fn start_logged(workers: usize, env: &[(&str, String)], log: &Path) -> TestApp {
    let port = common::free_port();
    let file = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardgate"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string()])
        .current_dir(common::repo_root())
        .env("SHARDGATE_TOPOLOGY", common::repo_root().join("config/topology.toml"))
        .env("DB_PRIMARY_POOL_SIZE", "4")
        .env("DB_REPLICA_POOL_SIZE", "4")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let app = TestApp {
        port,
        base: format!("http://127.0.0.1:{port}"),
        child: Some(cmd.spawn().expect("spawn shardgate")),
        client: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.client.get(app.url("/health")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "shardgate did not start on port {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_print_bearer_tokens_or_secrets() {
    let p = unique("ht");
    let admin = format!("admin-{}", unique("tok"));
    let wrong = format!("wrong-{}", unique("tok"));
    let secret = format!("presence-{}", unique("secret"));
    let (alice, bob) = (unique("alice"), unique("bob"));
    let (ta, tb) = (common::mint_token(&secret, &alice), common::mint_token(&secret, &bob));
    let log = std::env::temp_dir().join(format!("{p}.log"));
    let mut app = start_logged(
        2,
        &[
            ("RUST_LOG", "trace".into()),
            ("ACCESS_LOG", "true".into()),
            ("ADMIN_TOKEN", admin.clone()),
            ("PRESENCE_AUTH_SECRET", secret.clone()),
            ("REDIS_KEY_PREFIX", format!("{p}:")),
        ],
        &log,
    )
    .await;
    let h1 = app.client.clone();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let mut answers = Vec::new();
    for c in [&h1, &h2] {
        for path in ["/metrics", "/api/v1/shards/stats"] {
            for auth in
                [format!("Bearer {admin}"), format!("Bearer {wrong}"), admin.clone(), format!("Bearer {secret}")]
            {
                answers
                    .push(c.get(app.url(path)).header("authorization", auth).send().await.unwrap().status().as_u16());
            }
        }
        let body = format!(r#"{{"userId":"{alice}"}}"#);
        for auth in
            [format!("Bearer {ta}"), format!("Bearer {tb}"), format!("Bearer {secret}"), format!("Bearer {ta}x")]
        {
            let r =
                c.post(app.url("/heartbeat")).header("authorization", auth).body(body.clone()).send().await.unwrap();
            answers.push(r.status().as_u16());
        }
    }
    assert_eq!(answers.iter().filter(|s| **s == 200).count(), 2 * (2 + 1), "{answers:?}");
    let mut g = grpc(&app).await;
    for (token, ok) in [(&ta, true), (&tb, false), (&secret, false)] {
        let mut req = tonic::Request::new(pb::SendHeartbeatRequest { user_id: alice.clone() });
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        assert_eq!(g.send_heartbeat(req).await.is_ok(), ok);
    }
    drop(g);
    app.terminate(); // the log is flushed at exit

    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("DEBUG"), "the log was captured at debug level");
    assert!(
        text.matches("target=access").count() + text.matches("access:").count() >= 20,
        "access lines: {text:.2000}"
    );
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    for (name, s) in [
        ("admin token", admin),
        ("wrong token", wrong),
        ("presence secret", secret),
        ("alice's token", ta.clone()),
        ("bob's token", tb.clone()),
        ("a token's signature", signature(&ta)),
    ] {
        assert!(!text.contains(&s), "the {name} is in the log");
    }
}
