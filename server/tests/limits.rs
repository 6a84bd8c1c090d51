//! Connection-level limits: slow clients are cut off, the process keeps serving.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = TestApp::start_with(1, &[("HEADER_READ_TIMEOUT_MS", "300".into())]).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(n.is_ok(), "connection still open after 5 s");
    assert!(t0.elapsed() < Duration::from_secs(2), "cut after {:?}", t0.elapsed());
    // A fresh connection: the 300 ms limit also closes idle keep-alive connections.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let st = fresh.get(app.url("/health")).send().await.unwrap().status();
    assert_eq!(st, 200, "the worker is fine");
}

#[tokio::test]
async fn many_idle_connections_do_not_stop_service() {
    let app = TestApp::start(2).await;
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap());
    }
    for _ in 0..20 {
        let (st, _) = app.get_json("/health").await;
        assert_eq!(st, 200);
    }
    drop(idle);
}

#[tokio::test]
async fn admin_routes_need_the_admin_token_when_one_is_set() {
    let app = TestApp::start_with(1, &[("ADMIN_TOKEN", "s3cret-admin".into())]).await;
    for path in ["/metrics", "/api/v1/shards/stats"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without a token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let body = r.text().await.unwrap();
        assert!(body.contains("UNAUTHORIZED") && !body.contains("s3cret"), "{body}");
        let r = app.client.get(app.url(path)).bearer_auth("wrong-token!").send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = app.client.get(app.url(path)).bearer_auth("s3cret-admin").send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
    }
    // Everything else stays open.
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    assert_ne!(app.client.get(app.url("/ready")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn over_the_connection_limit_a_client_is_refused_clearly_and_others_are_served() {
    let app = TestApp::start_with(1, &[("MAX_CONNECTIONS", "50".into())]).await;
    // 50 idle connections fill the worker.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next one is told so at once, not left hanging.
    let mut extra = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(Duration::from_secs(3), extra.read_to_string(&mut buf)).await.expect("answered").unwrap();
    assert!(buf.starts_with("HTTP/1.1 503"), "{buf}");
    assert!(buf.contains("TOO_MANY_CONNECTIONS") && buf.to_ascii_lowercase().contains("retry-after: 1"), "{buf}");
    // Idle ones leaving frees room for active clients.
    idle.truncate(10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.get_json("/health").await.0, 200);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let app = TestApp::start(1).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let mut req = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    // Far over hyper's 400 KiB header buffer: with 500 KB a loaded box could read the whole
    // request in one read() into a buffer hyper had grown past its limit, and parse it.
    req.extend(std::iter::repeat_n(b'a', 1_000_000));
    req.extend_from_slice(b"\r\n\r\n");
    let _ = s.write_all(&req).await; // the server may close before reading it all
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.expect("answered").unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(app.get_json("/health").await.0, 200, "the worker is fine");
}
