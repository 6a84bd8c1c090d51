//! One worker process: a Tokio runtime sized so that workers x threads ~= CPUs, its
//! own SO_REUSEPORT listener, pools and Redis connection, and a clean exit on SIGTERM
//! or SIGINT (stop accepting, drain in-flight requests within the grace period).

use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::observability::Metrics;
use crate::serve::listener::{bind_reuseport, raise_nofile_limit};
use crate::state::AppState;

/// Runs a worker until SIGTERM/SIGINT. `slot` numbers the worker within the supervisor
/// (0 when serving alone); `run_dir` holds the sibling metrics sockets.
///
/// # Errors
/// Runtime creation, invalid configuration, or the port cannot be bound.
pub fn run(cfg: Config, slot: usize, run_dir: Option<PathBuf>, restarts: u64) -> anyhow::Result<()> {
    raise_nofile_limit();
    let threads = cfg.effective_worker_threads();
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        let metrics = Metrics::install(run_dir.clone(), slot);
        metrics::gauge!("shardgate_worker_restarts", "slot" => slot.to_string()).set(restarts as f64);
        // Signals first: a SIGTERM while the worker is still starting ends it cleanly (the
        // accept loop then sees a cancelled token) instead of killing it by the default action.
        // SIGHUP is the supervisor's (rolling restart); a worker that gets one too (a
        // process-group signal, `pkill -HUP`) must not die of it.
        let hup = signal(SignalKind::hangup())?;
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: draining"),
                _ = int.recv() => tracing::info!("SIGINT: draining"),
            }
            stop.cancel();
        });
        let state = AppState::build(cfg, metrics, cancel.clone()).await?;
        state.metrics.serve_peers(cancel.clone())?;
        let (s, stop) = (state.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(s.cfg.health_interval_ms));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => crate::system::refresh_gauges(&s),
                }
            }
        });
        // Bind only now, when the worker can serve: the kernel hands connections to listening
        // sockets only, so none waits in the queue of a worker that is still starting (where a
        // stop during start-up would reset it).
        let listener = bind_reuseport(state.cfg.listen).map_err(|e| {
            anyhow::anyhow!("cannot bind {}: {e} (is another program using the port?)", state.cfg.listen)
        })?;
        tracing::info!(slot, pid = std::process::id(), addr = %state.cfg.listen, threads, "worker serving");
        // Tell the supervisor this worker listens (a rolling restart waits for it before it
        // stops the worker this one replaces).
        if let Some(dir) = &run_dir {
            let _ = std::fs::write(dir.join(format!("ready-{}", std::process::id())), b"");
        }

        crate::http::server::run(listener, state.clone(), cancel.clone()).await;
        // Every request has finished: this worker writes no more, so the resharder need not
        // wait for it (a worker that dies without this counts as live for a while).
        crate::reshard::deregister(&state).await;
        drop(hup);
        cancel.cancel();
        if let Some(dir) = &run_dir {
            let _ = std::fs::remove_file(dir.join(format!("ready-{}", std::process::id())));
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), state.pools.close()).await;
        tracing::info!(slot, "worker stopped");
        Ok(())
    })
}
