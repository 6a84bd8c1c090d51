//! The accept loop: takes an already-bound listener and a cancellation token, serves
//! HTTP/1.1 (keep-alive) and h2c on the same port through hyper-util's auto builder,
//! and on cancellation stops accepting, lets in-flight requests finish within the grace
//! period, then returns.
//!
//! Defensive like mini-redis's `Listener::run`: a semaphore caps open connections, and
//! accept errors (EMFILE under a connection storm) back off instead of spinning.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::state::State;

/// Serves until `shutdown` fires, then drains for at most `shutdown_grace_ms`.
pub async fn run(listener: TcpListener, state: State, shutdown: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_millis(state.cfg.header_read_timeout_ms));
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(state.cfg.max_connections));
    let mut backoff = Duration::from_millis(5);

    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, _peer) = match accepted {
            Ok(s) => {
                backoff = Duration::from_millis(5);
                s
            }
            Err(e) => {
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let svc = service_fn(move |req| crate::http::handle(state.clone(), req));
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                // Clients closing mid-request, resets, header timeouts: benign noise.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    // Stop accepting *before* draining: close the listening socket now.
    drop(listener);
    let grace = Duration::from_millis(state.cfg.shutdown_grace_ms);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections"),
    }
}
