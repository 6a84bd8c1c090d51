//! The supervisor: runs WORKERS copies of this binary as workers (same arguments, plus
//! `SHARDGATE_WORKER_SLOT`), restarts one that dies (exponential back-off, reset after a
//! worker has stayed up), forwards SIGTERM/SIGINT and exits once every worker has
//! drained. It serves no requests itself.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::serve::{ENV_RESTARTS, ENV_RUN_DIR, ENV_SLOT};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A worker that stayed up this long resets its slot's back-off.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

struct Slot {
    pid: Option<u32>,
    started: Instant,
    restarts: u64,
    backoff: Duration,
}

type Exit = (usize, std::io::Result<ExitStatus>);

fn spawn(slot: usize, run_dir: &PathBuf, restarts: u64, set: &mut JoinSet<Exit>) -> std::io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(ENV_SLOT, slot.to_string())
        .env(ENV_RUN_DIR, run_dir)
        .env(ENV_RESTARTS, restarts.to_string())
        .kill_on_drop(false);
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    set.spawn(async move { (slot, child.wait().await) });
    Ok(pid)
}

fn signal_all(slots: &[Slot], sig: Signal) {
    for s in slots {
        if let Some(pid) = s.pid {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }
}

/// Runs the supervisor until SIGTERM/SIGINT and every worker has exited.
///
/// # Errors
/// The run directory cannot be created or no worker can be spawned.
pub fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let workers = cfg.effective_workers();
        let run_dir = std::env::temp_dir().join(format!("shardgate-{}-{}", cfg.listen.port(), std::process::id()));
        std::fs::create_dir_all(&run_dir)?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut set = JoinSet::new();
        let mut slots = Vec::with_capacity(workers);
        for i in 0..workers {
            let pid = spawn(i, &run_dir, 0, &mut set)?;
            slots.push(Slot { pid: Some(pid), started: Instant::now(), restarts: 0, backoff: MIN_BACKOFF });
        }
        tracing::info!(workers, addr = %cfg.listen, pid = std::process::id(), "supervisor started workers");

        let shutdown_signal = loop {
            tokio::select! {
                _ = term.recv() => break Signal::SIGTERM,
                _ = int.recv() => break Signal::SIGINT,
                Some(joined) = set.join_next() => {
                    let Ok((slot, status)) = joined else { continue };
                    let s = &mut slots[slot];
                    s.pid = None;
                    tracing::warn!(slot, status = ?status.as_ref().ok(), "worker exited; restarting");
                    if s.started.elapsed() >= HEALTHY_AFTER {
                        s.backoff = MIN_BACKOFF;
                    }
                    let delay = s.backoff;
                    s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = term.recv() => break Signal::SIGTERM,
                        _ = int.recv() => break Signal::SIGINT,
                    }
                    s.restarts += 1;
                    match spawn(slot, &run_dir, s.restarts, &mut set) {
                        Ok(pid) => { s.pid = Some(pid); s.started = Instant::now(); }
                        Err(e) => {
                            // Try again after the back-off: report a synthetic exit.
                            tracing::error!(slot, error = %e, "cannot restart worker; will retry");
                            set.spawn(async move { (slot, Err(e)) });
                        }
                    }
                }
            }
        };

        tracing::info!(signal = ?shutdown_signal, "supervisor: stopping workers");
        signal_all(&slots, shutdown_signal);
        let deadline = Duration::from_millis(cfg.shutdown_grace_ms) + Duration::from_secs(3);
        let drained = tokio::time::timeout(deadline, async { while set.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("workers still running after the grace period: SIGKILL");
            signal_all(&slots, Signal::SIGKILL);
            while set.join_next().await.is_some() {}
        }
        let _ = std::fs::remove_dir_all(&run_dir);
        tracing::info!("supervisor stopped");
        Ok(())
    })
}
