//! Logs and metrics.
//!
//! Metrics: each worker process records into its own Prometheus recorder (fixed
//! histogram buckets, identical in every worker) and also serves its rendering on a Unix
//! socket `<run dir>/worker-<slot>.sock`. `GET /metrics`, on whichever worker the
//! kernel hands the connection to, collects every sibling's text and sums it with
//! [`merge::merge_expositions`], so the answer describes the whole service.

mod logging;
pub mod merge;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use logging::init_logging;

/// Request-latency buckets (seconds), shared by every worker so buckets add up.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's metrics recorder plus where its sibling workers can be reached.
#[derive(Debug, Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    run_dir: Option<PathBuf>,
    slot: usize,
}

impl Metrics {
    /// Installs the process-wide recorder (once; later calls share it). The `metrics`
    /// facade is global by design; everything else about the app is passed explicitly.
    pub fn install(run_dir: Option<PathBuf>, slot: usize) -> Metrics {
        let handle = HANDLE
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                    .expect("static buckets are valid")
                    .build_recorder();
                let handle = recorder.handle();
                // Another recorder may exist only in tests that built one themselves.
                let _ = metrics::set_global_recorder(recorder);
                handle
            })
            .clone();
        Metrics { handle, run_dir, slot }
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The slot as a metric label value (no allocation for the first 16 slots).
    pub fn slot_label(&self) -> &'static str {
        const L: [&str; 16] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15"];
        L.get(self.slot).copied().unwrap_or("other")
    }

    pub fn render_local(&self) -> String {
        self.handle.render()
    }

    fn socket_path(&self, slot: usize) -> Option<PathBuf> {
        self.run_dir.as_ref().map(|d| d.join(format!("worker-{slot}.sock")))
    }

    /// Serves this worker's rendering to its siblings until `cancel` fires.
    pub fn serve_peers(&self, cancel: CancellationToken) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = self.socket_path(self.slot) else { return Ok(()) };
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        // In a rolling restart the replacement binds the same path while this worker drains:
        // at exit, remove the path only if it is still our socket.
        let ino = std::fs::metadata(&path)?.ino();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    _ = cancel.cancelled() => break,
                    c = listener.accept() => c,
                };
                if let Ok((mut stream, _)) = conn {
                    let text = me.render_local();
                    tokio::spawn(async move {
                        let _ = stream.write_all(text.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            }
            if std::fs::metadata(&path).is_ok_and(|m| m.ino() == ino) {
                let _ = std::fs::remove_file(&path);
            }
        });
        Ok(())
    }

    /// The whole service's metrics: this worker's plus every reachable sibling's, summed.
    pub async fn render_service(&self) -> String {
        let local = self.render_local();
        let Some(dir) = &self.run_dir else { return local };
        let mine = self.socket_path(self.slot);
        let mut peers = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                let is_sock = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("worker-") && n.ends_with(".sock"));
                if is_sock && Some(&p) != mine.as_ref() {
                    peers.push(p);
                }
            }
        }
        let fetched = futures_util::future::join_all(peers.into_iter().map(|p| async move {
            let read = async {
                let mut s = tokio::net::UnixStream::connect(&p).await?;
                let mut text = String::new();
                s.read_to_string(&mut text).await?;
                Ok::<_, std::io::Error>(text)
            };
            tokio::time::timeout(Duration::from_millis(500), read).await.ok().and_then(Result::ok)
        }))
        .await;
        let texts: Vec<String> = fetched.into_iter().flatten().collect();
        merge::merge_expositions(std::iter::once(local.as_str()).chain(texts.iter().map(String::as_str)))
    }
}
