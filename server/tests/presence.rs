//! Live presence (the live user status server and the user online status design) against the real Redis: HTTP heartbeat and status,
//! gRPC (tonic client over h2c on the HTTP port, reflection), SSE, expiry by the elected
//! sweeper fanned out to subscribers on every worker, auth, and Redis down and back.
//! Each test uses its own Redis key prefix (its own channel, deadlines and sweeper lock).
//! Multi-threaded runtimes: `TestApp`'s drop blocks its thread while the server drains,
//! and an h2 client must still answer the server's GOAWAY ping from another thread.

mod common;

use std::time::{Duration, Instant};

use common::{unique, Proxy, TestApp};
use shardgate::presence::grpc::pb;
use shardgate::presence::grpc::pb::user_status_service_client::UserStatusServiceClient;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use tonic::transport::Channel;

/// Env for an app with its own presence namespace and short TTLs.
fn env(prefix: &str, extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("REDIS_KEY_PREFIX", format!("{prefix}:")),
        ("USER_STATUS_TTL", "1s".into()),
        ("HEARTBEAT_INTERVAL", "500ms".into()),
        ("PRESENCE_SWEEP_INTERVAL_MS", "100".into()),
    ];
    for (k, val) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        v.push((k, val.to_string()));
    }
    v
}

async fn post(app: &TestApp, path: &str, body: &str, token: Option<&str>) -> (u16, sonic_rs::Value) {
    let mut r = app.client.post(app.url(path)).header("content-type", "application/json").body(body.to_owned());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let st = r.status().as_u16();
    (st, sonic_rs::from_str(&r.text().await.unwrap()).unwrap_or_default())
}

async fn heartbeat(app: &TestApp, id: &str) -> u16 {
    post(app, "/heartbeat", &format!(r#"{{"userId":"{id}"}}"#), None).await.0
}

async fn grpc(app: &TestApp) -> UserStatusServiceClient<Channel> {
    let ch = Channel::from_shared(app.base.clone()).unwrap().connect().await.expect("h2c connect");
    UserStatusServiceClient::new(ch)
}

fn code(s: &tonic::Status) -> &str {
    s.message().split(':').next().unwrap_or("")
}

/// A Server-Sent Events reader over a reqwest response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
    worker: u32,
}

#[derive(Debug)]
struct Ev {
    event: String,
    data: sonic_rs::Value,
}

impl Sse {
    async fn open(app: &TestApp, watch: &[&str]) -> Sse {
        let client = reqwest::Client::new(); // no overall timeout: streams stay open
        let resp =
            client.get(app.url(&format!("/api/v1/presence/stream?watch={}", watch.join(",")))).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut s = Sse { resp, buf: String::new(), worker: 0 };
        while !s.buf.contains("\n\n") {
            s.fill(Duration::from_secs(5)).await.expect("first chunk");
        }
        let line = s.buf.lines().next().unwrap().to_owned();
        s.worker = line.strip_prefix(": worker ").expect("worker comment").parse().unwrap();
        s
    }

    async fn fill(&mut self, wait: Duration) -> Option<()> {
        match tokio::time::timeout(wait, self.resp.chunk()).await {
            Ok(Ok(Some(c))) => {
                self.buf.push_str(std::str::from_utf8(&c).unwrap());
                Some(())
            }
            _ => None,
        }
    }

    /// The next event (comments and `retry:` skipped), or `None` when nothing comes
    /// within `wait` or the stream ends.
    async fn next(&mut self, wait: Duration) -> Option<Ev> {
        let until = Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = Some(e.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if let Some(event) = event {
                    return Some(Ev { event, data: sonic_rs::from_str(&data).unwrap() });
                }
            }
            let left = until.checked_duration_since(Instant::now())?;
            self.fill(left).await?;
        }
    }

    async fn expect(&mut self, event: &str, user: &str, status: &str) -> Ev {
        let ev = self.next(Duration::from_secs(5)).await.unwrap_or_else(|| panic!("no {event} {user} {status}"));
        assert_eq!(ev.event, event, "{ev:?}");
        if event == "status" {
            assert_eq!(ev.data["user_id"].as_str(), Some(user), "{ev:?}");
            assert_eq!(ev.data["status"].as_str(), Some(status), "{ev:?}");
        }
        ev
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_then_status_over_http_seed_000_contract() {
    let p = unique("pr-http");
    let app = TestApp::start_with(1, &env(&p, &[("USER_STATUS_TTL", "30s"), ("HEARTBEAT_INTERVAL", "15s")])).await;
    let (seen, never) = (unique("seen"), unique("never"));
    let (st, v) = post(&app, "/heartbeat", &format!(r#"{{"userId":"{seen}"}}"#), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["success"].as_bool(), Some(true));
    assert_eq!(v["next_heartbeat_in_seconds"].as_i64(), Some(15));

    let (st, v) = post(&app, "/status", &format!(r#"{{"userIds":["{seen}","{never}","{seen}"]}}"#), None).await;
    assert_eq!(st, 200);
    let at = chrono::DateTime::parse_from_rfc3339(v[seen.as_str()].as_str().unwrap()).unwrap();
    let age = chrono::Utc::now().signed_duration_since(at);
    assert!(age.num_seconds().abs() < 5, "last activity is now, not {at}");
    assert_eq!(v[never.as_str()].as_str(), Some("0001-01-01T00:00:00Z"), "the live user status server's zero time");
    assert_eq!(v.as_object().unwrap().len(), 2);

    // The live user status server answered 500 for an empty list.
    let (st, v) = post(&app, "/status", r#"{"userIds":[]}"#, None).await;
    assert_eq!((st, v.as_object().map(|o| o.len())), (200, Some(0)));

    let too_many: Vec<String> = (0..1001).map(|i| format!("\"u{i}\"")).collect();
    let (st, v) = post(&app, "/status", &format!(r#"{{"userIds":[{}]}}"#, too_many.join(",")), None).await;
    assert_eq!((st, v["code"].as_str()), (400, Some("TOO_MANY_IDS")));
    for (path, body, want) in [
        ("/status", r#"{"userIds":["a b"]}"#, "INVALID_ID"),
        ("/status", r#"{"userIds":"a"}"#, "INVALID_BODY"),
        ("/heartbeat", r#"{"userId":"x;DROP TABLE"}"#, "INVALID_ID"),
        ("/heartbeat", r#"{"userId":"#, "INVALID_JSON"),
        ("/heartbeat", r#"{}"#, "INVALID_BODY"),
    ] {
        let (st, v) = post(&app, path, body, None).await;
        assert_eq!((st, v["code"].as_str()), (400, Some(want)), "{path} {body}");
    }
    // Routed by method: GET /status is still the flash sale.
    let (st, v) = app.get_json("/status").await;
    assert_eq!(st, 200);
    assert!(v.get("sale_id").is_some() || v.get("sold").is_some() || v.is_object(), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_on_the_http_port_shares_the_model() {
    let p = unique("pr-grpc");
    let app = TestApp::start_with(2, &env(&p, &[("USER_STATUS_TTL", "30s"), ("HEARTBEAT_INTERVAL", "15s")])).await;
    let mut c = grpc(&app).await;
    let (a, b, never) = (unique("ga"), unique("gb"), unique("gn"));

    let hb = c.send_heartbeat(pb::SendHeartbeatRequest { user_id: a.clone() }).await.unwrap().into_inner();
    assert!(hb.success);
    assert_eq!(hb.next_heartbeat_in_seconds, 15);
    let got = c.get_user_status(pb::GetUserStatusRequest { user_id: a.clone() }).await.unwrap().into_inner();
    let d = got.data.unwrap();
    assert_eq!((d.user_id.as_str(), d.status()), (a.as_str(), pb::UserStatus::Online));
    assert!((chrono::Utc::now().timestamp() - d.last_seen).abs() < 5);

    let set = c
        .set_user_status(pb::SetUserStatusRequest { user_id: b.clone(), status: pb::UserStatus::Away as i32 })
        .await
        .unwrap()
        .into_inner();
    assert!(set.success);
    assert_eq!(set.data.unwrap().status(), pb::UserStatus::Away);
    let many = c
        .get_multiple_user_status(pb::GetMultipleUserStatusRequest {
            user_ids: vec![a.clone(), b.clone(), never.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<_> = many.data.iter().map(|d| (d.user_id.clone(), d.status())).collect();
    assert_eq!(
        statuses,
        vec![(a.clone(), pb::UserStatus::Online), (b.clone(), pb::UserStatus::Away), (never, pb::UserStatus::Unknown)]
    );

    // The HTTP API sees what gRPC wrote.
    let (st, v) = post(&app, "/status", &format!(r#"{{"userIds":["{a}","{b}"]}}"#), None).await;
    assert_eq!(st, 200);
    assert_ne!(v[a.as_str()].as_str(), Some("0001-01-01T00:00:00Z"));
    assert_ne!(v[b.as_str()].as_str(), Some("0001-01-01T00:00:00Z"));

    // Errors: gRPC codes, the user online status design's code first in the message.
    let e = c
        .set_user_status(pb::SetUserStatusRequest { user_id: a.clone(), status: pb::UserStatus::Unknown as i32 })
        .await
        .unwrap_err();
    assert_eq!((e.code(), code(&e)), (tonic::Code::InvalidArgument, "INVALID_STATUS"));
    let e = c.set_user_status(pb::SetUserStatusRequest { user_id: a.clone(), status: 42 }).await.unwrap_err();
    assert_eq!((e.code(), code(&e)), (tonic::Code::InvalidArgument, "INVALID_STATUS"));
    let e = c.send_heartbeat(pb::SendHeartbeatRequest { user_id: "no spaces".into() }).await.unwrap_err();
    assert_eq!((e.code(), code(&e)), (tonic::Code::InvalidArgument, "INVALID_ID"));
    let e = c.get_user_status(pb::GetUserStatusRequest { user_id: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // Plain HTTP on the same connection-less port still works (h1 and h2c side by side).
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reflection_lists_the_service() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let app = TestApp::start(1).await;
    let ch = Channel::from_shared(app.base.clone()).unwrap().connect().await.unwrap();
    let mut c = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = c.server_reflection_info(futures_util::stream::iter([req])).await.unwrap().into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"users.status.UserStatusService"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_reaches_subscribers_on_every_worker_exactly_once() {
    let p = unique("pr-exp");
    let app = TestApp::start_with(2, &env(&p, &[])).await;
    let user = unique("exp");
    // SO_REUSEPORT spreads connections by hash: open streams until both workers hold one.
    let mut streams: Vec<Sse> = Vec::new();
    for _ in 0..24 {
        let s = Sse::open(&app, &[&user]).await;
        let new_worker = !streams.iter().any(|o| o.worker == s.worker);
        if new_worker || streams.len() < 2 {
            streams.push(s);
        }
        if streams.iter().map(|s| s.worker).collect::<std::collections::HashSet<_>>().len() == 2 {
            break;
        }
    }
    let workers: std::collections::HashSet<_> = streams.iter().map(|s| s.worker).collect();
    assert_eq!(workers.len(), 2, "subscribers on both workers");
    let mut g = grpc(&app)
        .await
        .subscribe_status_updates(pb::SubscribeStatusUpdatesRequest {
            user_id: String::new(),
            watch_user_ids: vec![user.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    for s in &mut streams {
        let snap = s.expect("snapshot", &user, "").await;
        assert_eq!(snap.data["users"][0]["status"].as_str(), Some("UNKNOWN"));
    }
    let first = g.message().await.unwrap().unwrap();
    assert_eq!(first.status(), pb::UserStatus::Unknown, "gRPC starts with the current status");

    // Three heartbeats within the TTL: one ONLINE event, no storm.
    assert_eq!(heartbeat(&app, &user).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(heartbeat(&app, &user).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(heartbeat(&app, &user).await, 200);
    let deadline = Instant::now() + Duration::from_secs(1); // TTL 1 s from the last heartbeat

    for s in &mut streams {
        s.expect("status", &user, "ONLINE").await;
    }
    let on = g.message().await.unwrap().unwrap();
    assert_eq!((on.user_id.as_str(), on.status()), (user.as_str(), pb::UserStatus::Online));

    for s in &mut streams {
        s.expect("status", &user, "OFFLINE").await;
        let late = Instant::now().saturating_duration_since(deadline);
        assert!(late < Duration::from_millis(1500), "OFFLINE reached worker {} {late:?} after the deadline", s.worker);
    }
    let off = g.message().await.unwrap().unwrap();
    assert_eq!(off.status(), pb::UserStatus::Offline);
    // Exactly once: nothing more arrives (keep-alives are comments).
    for s in &mut streams {
        assert!(s.next(Duration::from_millis(1200)).await.is_none(), "a second event on worker {}", s.worker);
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), g.message()).await.is_err(), "no second gRPC event");
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(common::metric_sum(&text, "presence_sweeper_leader", ""), 1.0, "one sweeper across the workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_status_changes_are_published_once_each() {
    let p = unique("pr-set");
    let app = TestApp::start_with(1, &env(&p, &[("USER_STATUS_TTL", "30s"), ("HEARTBEAT_INTERVAL", "15s")])).await;
    let user = unique("set");
    let mut s = Sse::open(&app, &[&user]).await;
    s.expect("snapshot", &user, "").await;
    let mut c = grpc(&app).await;
    for st in [pb::UserStatus::Online, pb::UserStatus::Away, pb::UserStatus::Away, pb::UserStatus::Offline] {
        c.set_user_status(pb::SetUserStatusRequest { user_id: user.clone(), status: st as i32 }).await.unwrap();
    }
    assert_eq!(heartbeat(&app, &user).await, 200, "a heartbeat brings an offline user back");
    c.set_user_status(pb::SetUserStatusRequest { user_id: user.clone(), status: pb::UserStatus::Away as i32 })
        .await
        .unwrap();
    assert_eq!(heartbeat(&app, &user).await, 200, "and turns away into online");
    for want in ["ONLINE", "AWAY", "OFFLINE", "ONLINE", "AWAY", "ONLINE"] {
        s.expect("status", &user, want).await;
    }
    assert!(s.next(Duration::from_millis(500)).await.is_none(), "AWAY twice published once");
    // A fresh subscriber's snapshot shows the current state.
    let mut s2 = Sse::open(&app, &[&user, "someone-else"]).await;
    let snap = s2.expect("snapshot", &user, "").await;
    let users = snap.data["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    let me = users.iter().find(|u| u["user_id"].as_str() == Some(user.as_str())).unwrap();
    assert_eq!(me["status"].as_str(), Some("ONLINE"));
    assert!(me["last_seen"].as_i64().unwrap() > 0);

    // Bad subscriptions.
    for (q, want) in [("", "MISSING_WATCH"), ("?watch=a%20b", "INVALID_ID")] {
        let (st, v) = app.get_json(&format!("/api/v1/presence/stream{q}")).await;
        assert_eq!((st, v["code"].as_str()), (400, Some(want)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_teardown_when_the_client_goes() {
    let p = unique("pr-td");
    let app = TestApp::start_with(1, &env(&p, &[("SSE_KEEPALIVE_MS", "100")])).await;
    let subscribers = || async {
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        common::metric_sum(&text, "presence_subscribers", "")
    };
    let base = subscribers().await;
    let s = Sse::open(&app, &[&unique("td")]).await;
    assert_eq!(subscribers().await, base + 1.0);
    drop(s);
    let until = Instant::now() + Duration::from_secs(5);
    while subscribers().await != base {
        assert!(Instant::now() < until, "subscription not released after the client left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_on_requires_the_users_own_token() {
    let p = unique("pr-auth");
    let secret = "test-secret-for-presence";
    let app = TestApp::start_with(1, &env(&p, &[("PRESENCE_AUTH_SECRET", secret)])).await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let mint = |user: &str| common::mint_token(secret, user);
    let (ta, tb) = (mint(&alice), mint(&bob));
    let body = format!(r#"{{"userId":"{alice}"}}"#);
    let (st, v) = post(&app, "/heartbeat", &body, None).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("UNAUTHORIZED")));
    let (st, v) = post(&app, "/heartbeat", &body, Some("not-a-jwt")).await;
    assert_eq!((st, v["code"].as_str()), (401, Some("UNAUTHORIZED")));
    let (st, v) = post(&app, "/heartbeat", &body, Some(&tb)).await;
    assert_eq!((st, v["code"].as_str()), (403, Some("UNAUTHORIZED")), "bob may not heartbeat alice");
    assert_eq!(post(&app, "/heartbeat", &body, Some(&ta)).await.0, 200);
    // Reads stay open.
    assert_eq!(post(&app, "/status", &format!(r#"{{"userIds":["{alice}"]}}"#), None).await.0, 200);

    let mut c = grpc(&app).await;
    let e = c
        .set_user_status(pb::SetUserStatusRequest { user_id: alice.clone(), status: pb::UserStatus::Away as i32 })
        .await
        .unwrap_err();
    assert_eq!((e.code(), code(&e)), (tonic::Code::Unauthenticated, "UNAUTHORIZED"));
    let mut req = tonic::Request::new(pb::SendHeartbeatRequest { user_id: alice.clone() });
    req.metadata_mut().insert("authorization", format!("Bearer {tb}").parse().unwrap());
    let e = c.send_heartbeat(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let mut req =
        tonic::Request::new(pb::SetUserStatusRequest { user_id: alice.clone(), status: pb::UserStatus::Away as i32 });
    req.metadata_mut().insert("authorization", format!("Bearer {ta}").parse().unwrap());
    assert!(c.set_user_status(req).await.unwrap().into_inner().success);
    let got = c.get_user_status(pb::GetUserStatusRequest { user_id: alice }).await.unwrap().into_inner();
    assert_eq!(got.data.unwrap().status(), pb::UserStatus::Away);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_then_everything_recovers() {
    let p = unique("pr-down");
    let proxy = Proxy::start("127.0.0.1:6379".into()).await;
    let redis = format!("redis://{}/", proxy.addr());
    let app = TestApp::start_with(1, &env(&p, &[("REDIS_URL", &redis), ("HEALTH_INTERVAL_MS", "200")])).await;
    let user = unique("down");
    let mut s = Sse::open(&app, &[&user]).await;
    s.expect("snapshot", &user, "").await;
    let mut c = grpc(&app).await;

    proxy.disable();
    let err = s.next(Duration::from_secs(5)).await.expect("subscriber told");
    assert_eq!((err.event.as_str(), err.data["code"].as_str()), ("error", Some("REDIS_ERROR")));
    assert!(s.next(Duration::from_secs(2)).await.is_none(), "and the stream ends");
    let (st, v) = post(&app, "/heartbeat", &format!(r#"{{"userId":"{user}"}}"#), None).await;
    assert_eq!((st, v["code"].as_str()), (503, Some("REDIS_ERROR")));
    let (st, v) = post(&app, "/status", &format!(r#"{{"userIds":["{user}"]}}"#), None).await;
    assert_eq!((st, v["code"].as_str()), (503, Some("REDIS_ERROR")));
    let e = c.send_heartbeat(pb::SendHeartbeatRequest { user_id: user.clone() }).await.unwrap_err();
    assert_eq!((e.code(), code(&e)), (tonic::Code::Unavailable, "REDIS_ERROR"));
    let (st, v) = app.get_json(&format!("/api/v1/presence/stream?watch={user}")).await;
    assert_eq!((st, v["code"].as_str()), (503, Some("REDIS_ERROR")));
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200, "the worker lives");

    proxy.enable();
    // Writes, the event channel and the sweeper all come back by themselves.
    let until = Instant::now() + Duration::from_secs(15);
    let mut s = loop {
        if heartbeat(&app, &user).await == 200 {
            let r = reqwest::get(app.url(&format!("/api/v1/presence/stream?watch={user}"))).await.unwrap();
            if r.status() == 200 {
                drop(r);
                break Sse::open(&app, &[&user]).await;
            }
        }
        assert!(Instant::now() < until, "presence did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let snap = s.expect("snapshot", &user, "").await;
    assert_eq!(snap.data["users"][0]["status"].as_str(), Some("ONLINE"));
    s.expect("status", &user, "OFFLINE").await; // TTL 1 s: the sweeper is back
    assert_eq!(heartbeat(&app, &user).await, 200);
    s.expect("status", &user, "ONLINE").await; // and the channel is back
}
