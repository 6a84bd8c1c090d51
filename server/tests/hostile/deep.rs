//! Nesting that once overflowed a worker's stack: deep JSON on every route that reads JSON
//! (as a whole body, inside a field, and as deep as the body limit allows), deep groups in a
//! gRPC message, and deep JSON inside a bearer token. Every answer is a clear refusal, the
//! workers are the same processes afterwards, and requests running beside them succeed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sonic_rs::JsonValueTrait;
use tokio::sync::watch;

use crate::common::{metric_sum, unique, TestApp};

/// The server's documented nesting limit (`http::json_depth::MAX_DEPTH`).
const MAX_DEPTH: usize = shardgate::http::json_depth::MAX_DEPTH;
/// The default `max_body_bytes`.
const BODY_LIMIT: usize = 1 << 20;

fn arrays(n: usize) -> String {
    "[".repeat(n) + &"]".repeat(n)
}

fn objects(n: usize) -> String {
    r#"{"a":"#.repeat(n) + "1" + &"}".repeat(n)
}

/// `{"<field>": [[[...]]]}`, `n` levels inside the field.
fn in_field(field: &str, n: usize) -> String {
    format!(r#"{{"{field}": {}}}"#, arrays(n))
}

/// A worker's requests keep being answered while the hostile ones go in: creates and
/// heartbeats, on fresh connections (so both workers take some), every one expected 2xx.
struct Beside {
    ok: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Beside {
    fn start(app: &TestApp) -> Beside {
        let ok = Arc::new(AtomicU64::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let (base, count) = (app.base.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let client =
                reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().unwrap();
            let mut failures = Vec::new();
            while !*stopped.borrow_and_update() {
                let id = unique("dp");
                for (path, body) in [
                    ("/api/v1/users/", format!(r#"{{"id":"{id}","name":"Beside Deep"}}"#)),
                    ("/heartbeat", format!(r#"{{"userId":"{id}"}}"#)),
                ] {
                    match client
                        .post(format!("{base}{path}"))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(r) if r.status().is_success() => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.push(format!("{path}: {}", r.status())),
                        Err(e) => failures.push(format!("{path}: {e}")),
                    }
                }
            }
            failures
        });
        Beside { ok, stop, task }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.send(true).unwrap();
        let failures = self.task.await.unwrap();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

async fn restarts(app: &TestApp) -> f64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("shardgate_worker_restarts{"), "the metric is exported");
    metric_sum(&text, "shardgate_worker_restarts", "")
}

/// Sends `body` and returns the status and the error code, or why it was not answered.
async fn post(app: &TestApp, method: reqwest::Method, path: &str, body: String) -> Result<(u16, String), String> {
    let r = app
        .client
        .request(method, app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("not answered: {e}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.map_err(|e| format!("body not read: {e}"))?;
    let v: sonic_rs::Value = sonic_rs::from_str(&text).unwrap_or_default();
    Ok((status, v.get("code").and_then(|c| c.as_str()).unwrap_or("").to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_json_is_refused_on_every_json_route_and_no_worker_dies() {
    let app = TestApp::start(2).await;
    let workers = app.worker_pids();
    assert_eq!(workers.len(), 2, "two workers under the supervisor");
    let restarts_before = restarts(&app).await;
    let id = unique("dj");
    let routes: [(reqwest::Method, String, &str); 5] = [
        (reqwest::Method::POST, "/api/v1/users/".into(), "first_name"),
        (reqwest::Method::PUT, format!("/api/v1/users/{id}"), "first_name"),
        (reqwest::Method::PATCH, format!("/api/v1/users/{id}"), "last_name"),
        (reqwest::Method::POST, "/heartbeat".into(), "userId"),
        (reqwest::Method::POST, "/status".into(), "userIds"),
    ];
    // The body limit counts the whole body: `[` * n + `]` * n fills it at n = limit / 2.
    let at_limit = BODY_LIMIT / 2;
    let beside = Beside::start(&app);
    let mut wrong = Vec::new();
    for (method, path, field) in &routes {
        let field_at_limit = (BODY_LIMIT - in_field(field, 0).len()) / 2;
        let bodies: Vec<(String, String)> = vec![
            ("30,000 arrays".into(), arrays(30_000)),
            ("60,000 arrays".into(), arrays(60_000)),
            ("80,000 arrays".into(), arrays(80_000)),
            (format!("{at_limit} arrays (the body limit)"), arrays(at_limit)),
            ("100,000 objects".into(), objects(100_000)),
            (format!("100,000 inside {field}"), in_field(field, 100_000)),
            (format!("{field_at_limit} inside {field} (the body limit)"), in_field(field, field_at_limit)),
            (format!("{} arrays (one past the limit)", MAX_DEPTH + 1), arrays(MAX_DEPTH + 1)),
        ];
        for (what, body) in bodies {
            assert!(body.len() <= BODY_LIMIT, "{what}: {} bytes", body.len());
            match post(&app, method.clone(), path, body).await {
                Ok((400, code)) if code == "JSON_TOO_DEEP" => {}
                other => wrong.push(format!("{method} {path} {what}: {other:?}")),
            }
        }
        // At the limit itself the guard lets the body through to the parser, which refuses
        // its shape with the usual code: the guard costs no valid body anything.
        match post(&app, method.clone(), path, arrays(MAX_DEPTH)).await {
            Ok((400, code)) if code == "INVALID_BODY" => {}
            other => wrong.push(format!("{method} {path} {MAX_DEPTH} arrays: {other:?}")),
        }
    }
    let (served, failures) = beside.finish().await;
    assert!(wrong.is_empty(), "answers other than 400 JSON_TOO_DEEP:\n{}", wrong.join("\n"));
    assert!(failures.is_empty(), "requests beside the deep bodies failed: {failures:?}");
    assert!(served >= 4, "requests were served beside the deep bodies ({served})");
    assert_eq!(app.worker_pids(), workers, "the same worker processes");
    assert_eq!(restarts(&app).await, restarts_before, "no worker restarted");
    // And the routes still do their work.
    let (st, _) = app.create(&format!(r#"{{"id":"{id}","name":"After Deep"}}"#)).await;
    assert_eq!(st, 201);
    let (st, _) = app.send_json(reqwest::Method::POST, "/status", &format!(r#"{{"userIds":["{id}"]}}"#)).await;
    assert_eq!(st, 200);
}

/// Protobuf varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One gRPC call by hand (h2c): the status from the trailers (or the headers, for a
/// trailers-only answer). tonic's client would refuse to send a message it cannot encode.
async fn grpc_raw(app: &TestApp, method: &str, message: &[u8]) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2c with prior knowledge");
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post(format!("http://127.0.0.1:{}/users.status.UserStatusService/{method}", app.port))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut stream) = client.send_request(req, false).unwrap();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    stream.send_data(frame.into(), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("answered in time").expect("answered");
    let (parts, mut body) = resp.into_parts();
    if let Some(s) = parts.headers.get("grpc-status") {
        return s.to_str().unwrap().to_string();
    }
    while let Some(d) = body.data().await {
        let d = d.unwrap();
        let _ = body.flow_control().release_capacity(d.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    trailers.get("grpc-status").expect("grpc-status").to_str().unwrap().to_string()
}

fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_grpc_messages_and_tokens_are_refused_and_no_worker_dies() {
    let secret = "deep-secret-0123456789";
    let app = TestApp::start_with(2, &[("PRESENCE_AUTH_SECRET", secret.into())]).await;
    let workers = app.worker_pids();
    let restarts_before = restarts(&app).await;
    let user = unique("dg");

    // A SendHeartbeatRequest { user_id } followed by an unknown field 15 that opens 100,000
    // nested groups: skipping it recurses once per group (prost stops at 100).
    let mut msg = vec![0x0a];
    varint(user.len() as u64, &mut msg);
    msg.extend_from_slice(user.as_bytes());
    let (start, end) = ((15 << 3) | 3, (15 << 3) | 4);
    for _ in 0..100_000 {
        varint(start, &mut msg);
    }
    for _ in 0..100_000 {
        varint(end, &mut msg);
    }
    for method in ["SendHeartbeat", "GetUserStatus"] {
        let status = grpc_raw(&app, method, &msg).await;
        assert_ne!(status, "0", "{method}: a message with 100,000 nested groups is refused");
    }

    // A bearer token whose header, or whose (correctly signed) subject, is 100,000 levels of
    // JSON: 401, like any token that does not verify. 100,000 levels in an unknown claim of
    // a correctly signed token are skipped (serde_json skips values with a loop, not a
    // recursion): the token is valid, and the worker lives.
    let deep = base64url(arrays(100_000).as_bytes());
    let claims = base64url(format!(r#"{{"sub":{},"exp":9999999999}}"#, arrays(100_000)).as_bytes());
    let extra = base64url(format!(r#"{{"sub":"{user}","exp":9999999999,"x":{}}}"#, arrays(100_000)).as_bytes());
    let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let signed = |h: &str, c: &str| {
        let sig = jsonwebtoken::crypto::sign(format!("{h}.{c}").as_bytes(), &key, jsonwebtoken::Algorithm::HS256);
        format!("{h}.{c}.{}", sig.unwrap())
    };
    let fine = base64url(format!(r#"{{"sub":"{user}","exp":9999999999}}"#).as_bytes());
    for (what, token, want) in [
        ("header", signed(&deep, &fine), 401),
        ("subject", signed(&header, &claims), 401),
        ("unknown claim", signed(&header, &extra), 200),
    ] {
        let r = app
            .client
            .post(app.url("/heartbeat"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(format!(r#"{{"userId":"{user}"}}"#))
            .send()
            .await
            .unwrap_or_else(|e| panic!("token with deep {what}: not answered: {e}"));
        assert_eq!(r.status(), want, "token with deep {what}");
    }
    // The same checks let a good token through (the test can tell a refusal from a crash).
    let good = signed(&header, &fine);
    let r = app
        .client
        .post(app.url("/heartbeat"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {good}"))
        .body(format!(r#"{{"userId":"{user}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a well-formed token is accepted");

    assert_eq!(app.worker_pids(), workers, "the same worker processes");
    assert_eq!(restarts(&app).await, restarts_before, "no worker restarted");
}
