//! Rolling restart (SIGHUP to the supervisor): every worker is replaced, one at a time, while
//! clients keep sending requests over kept-alive and fresh connections, and none fails.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{unique, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_replaces_every_worker_without_failing_a_request() {
    let prefix = unique("roll");
    let app = TestApp::start_with(2, &[("REDIS_KEY_PREFIX", format!("{prefix}:"))]).await;
    let before = app.worker_pids();
    assert_eq!(before.len(), 2, "two workers");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for c in 0..6 {
        let fresh = c % 2 == 1; // half open a new connection per request
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(if fresh { 0 } else { 4 })
            .build()
            .unwrap();
        let (base, stop, ok, failed) = (app.base.clone(), stop.clone(), ok.clone(), failed.clone());
        let user = format!("{prefix}-{c}");
        clients.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let r = if n % 2 == 0 {
                    client.get(format!("{base}/health")).send().await
                } else {
                    client
                        .post(format!("{base}/heartbeat"))
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"userId":"{user}"}}"#))
                        .send()
                        .await
                };
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("client {c}: HTTP {}", r.status());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("client {c}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ok_before = ok.load(Ordering::Relaxed);
    assert!(ok_before > 0, "load is flowing");

    let _ = std::process::Command::new("kill").args(["-HUP", &app.pid().to_string()]).status();
    let until = Instant::now() + Duration::from_secs(40);
    let after = loop {
        let now = app.worker_pids();
        if now.len() == 2 && now.iter().all(|p| !before.contains(p)) {
            break now;
        }
        assert!(Instant::now() < until, "workers not replaced: before {before:?}, now {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("rolling restart: workers {before:?} -> {after:?}, {ok} requests ok, {failed} failed");
    assert!(ok > ok_before + 100, "requests kept flowing during the roll ({ok_before} -> {ok})");
    assert_eq!(failed, 0, "no request failed during the rolling restart");
    // The supervisor is the same process and still serves through its new workers.
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
}
