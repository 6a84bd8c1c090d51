//! Test harness: [`TestApp`] starts the real `shardgate` binary (supervisor + workers)
//! on a free port against the real local cluster; [`Proxy`] is a TCP proxy a test can
//! put in front of one shard's PgBouncer or replica to cut it off or slow it down,
//! without touching the shared cluster that other tests use.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sharding::{ShardId, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn topology() -> Topology {
    Topology::load(&repo_root().join("config/topology.toml")).unwrap()
}

/// A unique id with a readable prefix, so parallel tests never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// A unique id that the ring places on `shard`.
pub fn id_on_shard(prefix: &str, shard: u16) -> String {
    let ring = topology().ring();
    loop {
        let id = unique(prefix);
        if ring.shard_for_str(&id) == ShardId::new(shard) {
            return id;
        }
    }
}

/// Sum of every sample of metric `name` in a Prometheus text whose line also contains
/// `label` ("" for all): the whole service's value, since /metrics merges the workers.
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ') | Some(b'{')) && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Status and JSON body (`Null` when the body is not JSON).
async fn decode(r: reqwest::Response) -> (u16, sonic_rs::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, sonic_rs::from_str(&text).unwrap_or_default())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TestApp {
    pub port: u16,
    pub base: String,
    pub child: Option<Child>,
    pub client: reqwest::Client,
}

impl TestApp {
    pub async fn start(workers: usize) -> TestApp {
        TestApp::start_with(workers, &[]).await
    }

    /// Starts `shardgate serve` with extra environment (e.g. topology overrides) and
    /// waits until it answers `/health`.
    ///
    /// The port comes from [`free_port`], which another test can be handed too before either
    /// binds. SO_REUSEPORT would then let the second server share the first one's port, and
    /// its `/health` would be answered by the other test's server. So "started" means: this
    /// child holds the port's lock file (it writes its pid there) and `/health` answers; a
    /// child that exits (refused by the lock) is retried on another port.
    pub async fn start_with(workers: usize, env: &[(&str, String)]) -> TestApp {
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardgate"));
            cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--workers", &workers.to_string()])
                .current_dir(repo_root())
                .env("SHARDGATE_TOPOLOGY", repo_root().join("config/topology.toml"))
                .env("RUST_LOG", std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()))
                .env("ACCESS_LOG", "false")
                .env("DB_PRIMARY_POOL_SIZE", "4")
                .env("DB_REPLICA_POOL_SIZE", "4")
                .stdin(Stdio::null());
            if std::env::var("TEST_LOG").is_err() {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn shardgate");
            let pid = child.id().to_string();
            let mut app = TestApp {
                port,
                base: format!("http://127.0.0.1:{port}"),
                child: Some(child),
                client: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
            };
            let lock = std::env::temp_dir().join(format!("shardgate-{port}.lock"));
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if app.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                    break; // refused (the port's lock is another server's): try another port
                }
                let ours = std::fs::read_to_string(&lock).is_ok_and(|p| p.trim() == pid);
                if ours {
                    if let Ok(r) = app.client.get(app.url("/health")).send().await {
                        if r.status().is_success() {
                            app.wait_for_every_worker(workers).await;
                            return app;
                        }
                    }
                }
                assert!(Instant::now() < deadline, "shardgate did not start on port {port}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            app.child = None; // exited already
        }
        panic!("shardgate did not start: five ports were taken by other servers");
    }

    /// Waits (at most 5 s) until `workers` different worker processes have answered: the
    /// first `/health` comes from whichever worker listens first, and a test that spreads
    /// connections over the workers must not start while one is still starting. The worker is
    /// the pid (hex) that begins each `x-request-id`; every probe is a new connection.
    async fn wait_for_every_worker(&self, workers: usize) {
        if workers < 2 {
            return;
        }
        let fresh =
            reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(2)).build().unwrap();
        let mut seen = std::collections::HashSet::new();
        let until = Instant::now() + Duration::from_secs(5);
        while seen.len() < workers && Instant::now() < until {
            if let Ok(r) = fresh.get(self.url("/health")).send().await {
                if let Some(id) = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
                    seen.insert(id.split('-').next().unwrap_or("").to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Direct children of the supervisor: the worker processes.
    pub fn worker_pids(&self) -> Vec<u32> {
        let path = format!("/proc/{0}/task/{0}/children", self.pid());
        std::fs::read_to_string(path).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
    }

    pub async fn create(&self, body: &str) -> (u16, sonic_rs::Value) {
        self.send_json(reqwest::Method::POST, "/api/v1/users/", body).await
    }

    pub async fn get_json(&self, path: &str) -> (u16, sonic_rs::Value) {
        decode(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, sonic_rs::Value) {
        let r = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    /// SIGTERM and wait for the exit; returns how long the exit took.
    pub fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("running");
        let t0 = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        loop {
            if child.try_wait().unwrap().is_some() {
                return t0.elapsed();
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shardgate did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A TCP proxy to `target` that a test can switch off (every connection closed, new
/// ones refused... by being closed at once) or slow down (added latency per chunk).
pub struct Proxy {
    pub port: u16,
    enabled: Arc<AtomicBool>,
    latency_ms: Arc<AtomicU64>,
    generation: watch::Sender<u64>,
}

impl Proxy {
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let enabled = Arc::new(AtomicBool::new(true));
        let latency_ms = Arc::new(AtomicU64::new(0));
        let (generation, _) = watch::channel(0u64);
        let (en, lat, gen) = (enabled.clone(), latency_ms.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                if !en.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let lat = lat.clone();
                let mut stop = gen.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let ms = lat.load(Ordering::SeqCst);
                            if ms > 0 {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut sr, &mut cw);
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        Proxy { port, enabled, latency_ms, generation }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cut the backend off: close every open connection, refuse new ones.
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    pub fn set_latency(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::SeqCst);
    }
}

/// A presence bearer token for `user`, minted by `shardgate token` with `secret`.
pub fn mint_token(secret: &str, user: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shardgate"))
        .args(["token", "--user", user, "--ttl", "60"])
        .env("PRESENCE_AUTH_SECRET", secret)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
