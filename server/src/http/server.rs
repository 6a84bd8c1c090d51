//! The accept loop: takes an already-bound listener and a cancellation token, serves
//! HTTP/1.1 (keep-alive) and h2c on the same port through hyper-util's auto builder
//! (gRPC requests, by content-type, go to tonic: `presence::grpc`),
//! and on cancellation drains without failing a request that reached us:
//!
//! 1. accept every connection the kernel already queued on this socket (with
//!    SO_REUSEPORT each worker has its own accept queue; closing a listener resets
//!    whatever is still queued in it), then close the listener;
//! 2. mark the state as draining: HTTP/1 responses now carry `Connection: close`, so
//!    clients stop reusing connections;
//! 3. linger until every accepted connection has had its first request read (at least
//!    100 ms, at most 2 s): hyper closes a connection that is between requests at shutdown,
//!    which for a fresh connection would reset a request already on the wire;
//! 4. graceful shutdown: wait for in-flight requests, up to the grace period.
//!
//! Defensive like mini-redis's `Listener::run`: a semaphore caps open connections (one over
//! the cap gets an immediate 503 `TOO_MANY_CONNECTIONS` and is closed, instead of waiting
//! unseen in the kernel's backlog), and accept errors (EMFILE under a connection storm) back
//! off instead of spinning.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::state::State;

/// After the listener closes, connections that have not yet had their first request read
/// get at least this long, and at most [`MAX_LINGER`], to deliver it.
const LINGER: Duration = Duration::from_millis(100);
const MAX_LINGER: Duration = Duration::from_secs(2);

/// Streams one HTTP/2 connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Streams the client reset before we accepted them; one more and the connection gets
/// GOAWAY `ENHANCE_YOUR_CALM` (h2's own default, 20, pinned).
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams we reset because of the client's errors; one more and the connection is closed
/// (hyper's default, 1024, pinned).
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Connections accepted whose first request has not been read yet. Graceful shutdown
/// closes a connection that is between requests, which for such a connection would reset
/// a request the client has already sent; the drain waits for this to reach zero.
type Fresh = Arc<AtomicUsize>;

/// Decrements [`Fresh`] once: on the connection's first request, or when it ends without one.
struct FirstRequest {
    fresh: Fresh,
    done: AtomicBool,
}

impl FirstRequest {
    fn seen(&self) {
        if !self.done.swap(true, Ordering::Relaxed) {
            self.fresh.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    state: &State,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    permit: Option<OwnedSemaphorePermit>,
    fresh: &Fresh,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    let state = state.clone();
    let builder = builder.clone();
    fresh.fetch_add(1, Ordering::Relaxed);
    let first = Arc::new(FirstRequest { fresh: fresh.clone(), done: AtomicBool::new(false) });
    tokio::spawn(async move {
        let f = first.clone();
        let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            f.seen();
            let state = state.clone();
            async move {
                if crate::presence::grpc::is_grpc(&req) {
                    Ok::<_, std::convert::Infallible>(state.grpc.serve(req).await)
                } else {
                    crate::http::handle(state, req, peer).await
                }
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            // Clients closing mid-request, resets, header timeouts: benign noise.
            tracing::debug!(error = %e, "connection ended with an error");
        }
        first.seen();
        drop(permit);
    });
}

/// Over `max_connections`: a clear, cheap refusal instead of leaving the client in the
/// kernel's backlog (where it would time out): one static HTTP/1.1 503, then close.
fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"error":"too many open connections on this worker; retry","code":"TOO_MANY_CONNECTIONS"}"#;
    static REPLY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let reply = REPLY.get_or_init(|| {
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        )
    });
    metrics::counter!("http_connections_refused_total").increment(1);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
    });
}

/// Serves until `shutdown` fires, then drains for at most `shutdown_grace_ms`.
pub async fn run(listener: TcpListener, state: State, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_millis(state.cfg.header_read_timeout_ms));
    // HTTP/2 abuse limits, pinned here rather than left to hyper's and h2's defaults:
    // - rapid reset (CVE-2023-44487): a client that opens streams and resets them before
    //   they are served gets GOAWAY (ENHANCE_YOUR_CALM) once 20 such streams are pending;
    // - "MadeYouReset" (CVE-2025-8671) and other frames that make us reset streams: after
    //   1024 locally reset streams the connection is closed with GOAWAY.
    // Both end only the offending connection; the worker and everyone else carry on
    // (server/tests/hostile.rs, `http2_rapid_reset_ends_that_connection_only`).
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(state.cfg.max_connections));
    let mut backoff = Duration::from_millis(5);
    let fresh: Fresh = Arc::new(AtomicUsize::new(0));

    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => serve_connection(stream, &state, &builder, graceful.watcher(), Some(permit), &fresh),
                    Err(_) => refuse(stream),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }

    // 1. Take what the kernel already queued for us, then stop accepting.
    // Real accept(2) calls until the queue is empty: tokio's accept would answer Pending
    // whenever the reactor has not yet seen the readiness event (a busy runtime), and closing
    // the socket then would reset connections that are already queued.
    let mut queued = 0;
    match listener.into_std() {
        Ok(std_listener) => {
            while let Ok((stream, _)) = std_listener.accept() {
                let stream = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream));
                if let Ok(stream) = stream {
                    serve_connection(stream, &state, &builder, graceful.watcher(), None, &fresh);
                    queued += 1;
                }
            }
            drop(std_listener);
        }
        Err(e) => tracing::warn!(error = %e, "could not take the listener's queue before closing it"),
    }
    // 2-3. Tell HTTP/1 clients to go away after this response; let sent requests arrive.
    state.draining.store(true, Ordering::Relaxed);
    tracing::info!(queued, "listener closed; draining");
    let lingered = std::time::Instant::now();
    tokio::time::sleep(LINGER).await;
    while fresh.load(Ordering::Relaxed) > 0 && lingered.elapsed() < MAX_LINGER {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 4. Wait for in-flight requests.
    let grace = Duration::from_millis(state.cfg.shutdown_grace_ms).saturating_sub(lingered.elapsed());
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections"),
    }
}
