//! The supervisor: runs WORKERS copies of this binary as workers (same arguments, plus
//! `SHARDGATE_WORKER_SLOT`), restarts one that dies (exponential back-off, reset after a
//! worker has stayed up), forwards SIGTERM/SIGINT and exits once every worker has
//! drained. It serves no requests itself.
//!
//! SIGHUP is a rolling restart: one slot at a time, a new worker is started, the supervisor
//! waits until it listens (it writes `ready-<pid>` into the run directory), and only then
//! sends SIGTERM to the worker it replaces, which drains (`http::server`) while the new one
//! already takes connections; the next slot starts when the old worker has exited. A
//! replacement that does not become ready in time is stopped and the roll abandoned, the old
//! workers keep serving. The Linux caveat (connections queued in a closing SO_REUSEPORT
//! listener are reset unless `net.ipv4.tcp_migrate_req=1`) is in docs/DECISIONS.md.

use std::path::{Path, PathBuf};
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
/// A rolling restart's replacement must listen within this, or the roll is abandoned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

struct Slot {
    pid: Option<u32>,
    started: Instant,
    restarts: u64,
    backoff: Duration,
}

/// (slot, pid, exit status).
type Exit = (usize, u32, std::io::Result<ExitStatus>);

/// Where a rolling restart is.
enum Roll {
    /// `new` was started for `slot`; waiting for it to listen before stopping `old`.
    Starting { slot: usize, new: u32, old: Option<u32>, since: Instant },
    /// `old` was told to drain; the next slot starts when it has exited.
    Draining { slot: usize, old: u32 },
}

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
    set.spawn(async move { (slot, pid, child.wait().await) });
    Ok(pid)
}

fn signal_pid(pid: u32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), sig);
}

fn signal_all(slots: &[Slot], extra: &[u32], sig: Signal) {
    for pid in slots.iter().filter_map(|s| s.pid).chain(extra.iter().copied()) {
        signal_pid(pid, sig);
    }
}

fn is_ready(run_dir: &Path, pid: u32) -> bool {
    run_dir.join(format!("ready-{pid}")).exists()
}

/// Linux resets connections queued in a closing SO_REUSEPORT listener unless requests are
/// migrated to a sibling; say so once at start (we do not change system settings).
fn warn_if_no_migration() {
    if std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "0") {
        tracing::warn!(
            "net.ipv4.tcp_migrate_req=0: a connection that lands in a worker's accept queue in the instant \
             it closes (rolling restart, SIGTERM) is reset; `sysctl -w net.ipv4.tcp_migrate_req=1` hands \
             them to a sibling worker instead"
        );
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
        let mut hup = signal(SignalKind::hangup())?;
        let mut set = JoinSet::new();
        let mut slots = Vec::with_capacity(workers);
        for i in 0..workers {
            let pid = spawn(i, &run_dir, 0, &mut set)?;
            slots.push(Slot { pid: Some(pid), started: Instant::now(), restarts: 0, backoff: MIN_BACKOFF });
        }
        warn_if_no_migration();
        tracing::info!(workers, addr = %cfg.listen, pid = std::process::id(), "supervisor started workers");

        let mut roll: Option<Roll> = None;
        // Replaced workers still draining (signalled again at shutdown).
        let mut draining: Vec<u32> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let shutdown_signal = loop {
            tokio::select! {
                _ = term.recv() => break Signal::SIGTERM,
                _ = int.recv() => break Signal::SIGINT,
                _ = hup.recv() => {
                    if roll.is_some() {
                        tracing::warn!("SIGHUP: a rolling restart is already running");
                        continue;
                    }
                    tracing::info!(workers, "SIGHUP: rolling restart");
                    roll = start_slot(0, &mut slots, &run_dir, &mut set);
                }
                _ = tick.tick(), if matches!(roll, Some(Roll::Starting { .. })) => {
                    let Some(Roll::Starting { slot, new, old, since }) = roll else { continue };
                    if is_ready(&run_dir, new) {
                        tracing::info!(slot, new, old = ?old, "replacement listening; draining the old worker");
                        slots[slot].pid = Some(new);
                        slots[slot].started = Instant::now();
                        match old {
                            Some(old) => {
                                signal_pid(old, Signal::SIGTERM);
                                draining.push(old);
                                roll = Some(Roll::Draining { slot, old });
                            }
                            None => roll = start_slot(slot + 1, &mut slots, &run_dir, &mut set),
                        }
                    } else if since.elapsed() > READY_TIMEOUT {
                        tracing::error!(slot, new, "replacement did not listen in time; rolling restart abandoned");
                        signal_pid(new, Signal::SIGKILL);
                        draining.push(new);
                        roll = None;
                    }
                }
                Some(joined) = set.join_next() => {
                    let Ok((slot, pid, status)) = joined else { continue };
                    if let Some(i) = draining.iter().position(|&p| p == pid) {
                        draining.swap_remove(i);
                        tracing::info!(slot, pid, "replaced worker exited");
                        if let Some(Roll::Draining { slot: s, old }) = roll {
                            if old == pid {
                                roll = start_slot(s + 1, &mut slots, &run_dir, &mut set);
                            }
                        }
                        continue;
                    }
                    if let Some(Roll::Starting { new, .. }) = roll {
                        if new == pid {
                            tracing::error!(slot, pid, "replacement exited before listening; rolling restart abandoned");
                            roll = None;
                            continue;
                        }
                    }
                    if slots[slot].pid.is_some_and(|p| p != pid) {
                        continue; // not this slot's current worker
                    }
                    if let Some(Roll::Starting { slot: s, old: old @ Some(_), .. }) = &mut roll {
                        if *s == slot && *old == Some(pid) {
                            // The worker being replaced died first: its replacement is coming.
                            *old = None;
                            slots[slot].pid = None;
                            continue;
                        }
                    }
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
                            set.spawn(async move { (slot, 0, Err(e)) });
                        }
                    }
                }
            }
        };

        tracing::info!(signal = ?shutdown_signal, "supervisor: stopping workers");
        let mut extra = draining.clone();
        if let Some(Roll::Starting { new, .. }) = roll {
            extra.push(new);
        }
        signal_all(&slots, &extra, shutdown_signal);
        let deadline = Duration::from_millis(cfg.shutdown_grace_ms) + Duration::from_secs(3);
        let drained = tokio::time::timeout(deadline, async { while set.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("workers still running after the grace period: SIGKILL");
            signal_all(&slots, &extra, Signal::SIGKILL);
            while set.join_next().await.is_some() {}
        }
        let _ = std::fs::remove_dir_all(&run_dir);
        tracing::info!("supervisor stopped");
        Ok(())
    })
}

/// Starts the replacement for `slot` (or ends the roll past the last slot).
fn start_slot(slot: usize, slots: &mut [Slot], run_dir: &PathBuf, set: &mut JoinSet<Exit>) -> Option<Roll> {
    if slot >= slots.len() {
        tracing::info!("rolling restart done");
        return None;
    }
    let restarts = slots[slot].restarts + 1;
    slots[slot].restarts = restarts;
    match spawn(slot, run_dir, restarts, set) {
        Ok(new) => Some(Roll::Starting { slot, new, old: slots[slot].pid, since: Instant::now() }),
        Err(e) => {
            tracing::error!(slot, error = %e, "cannot start a replacement; rolling restart abandoned");
            None
        }
    }
}
