//! Process model. `shardgate serve` is either
//! - the **supervisor** (WORKERS > 1): checks the PgBouncers, then runs WORKERS copies
//!   of itself as worker processes and keeps them alive ([`supervisor`]);
//! - a **worker** (started by the supervisor, or `--workers 1`): its own Tokio runtime,
//!   its own SO_REUSEPORT listener on the shared port, its own pools ([`worker`]).

pub mod listener;
pub mod pgbouncer_check;
pub mod supervisor;
pub mod worker;

/// Set by the supervisor in each worker's environment.
pub const ENV_SLOT: &str = "SHARDGATE_WORKER_SLOT";
pub const ENV_RUN_DIR: &str = "SHARDGATE_RUN_DIR";
pub const ENV_RESTARTS: &str = "SHARDGATE_WORKER_RESTARTS";

use crate::config::Config;

/// Takes `<tmp>/shardgate-<port>.lock` (flock, released when the process exits, even on
/// a crash) and writes our pid into it.
fn port_lock(port: u16) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    let path = std::env::temp_dir().join(format!("shardgate-{port}.lock"));
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            write!(lock, "{}", std::process::id())?;
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            anyhow::bail!("another shardgate (pid {}) is already serving port {port} ({})", pid.trim(), path.display())
        }
    }
}

/// `shardgate serve`: decides whether this process is the supervisor or a worker.
///
/// # Errors
/// Invalid configuration, an unsafe PgBouncer, or the port cannot be bound.
pub fn start(cfg: Config) -> anyhow::Result<()> {
    cfg.validate()?;
    if let Ok(slot) = std::env::var(ENV_SLOT) {
        // A worker: die with the supervisor rather than linger as an orphan.
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM);
        let _guard = crate::observability::init_logging(&cfg.log_level, &cfg.log_format);
        let restarts = std::env::var(ENV_RESTARTS).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let run_dir = std::env::var_os(ENV_RUN_DIR).map(std::path::PathBuf::from);
        return worker::run(cfg, slot.parse()?, run_dir, restarts);
    }
    let _guard = crate::observability::init_logging(&cfg.log_level, &cfg.log_format);
    let topo = cfg.load_topology()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(pgbouncer_check::check(&topo))
        .map_err(anyhow::Error::msg)?;
    // SO_REUSEPORT would let a second shardgate on the same port silently split the
    // traffic with the first (`make dev` twice): one lock file per port refuses that.
    let _lock = port_lock(cfg.listen.port())?;
    // Fail early and clearly when another program holds the port.
    drop(listener::bind_reuseport_std(cfg.listen).map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", cfg.listen))?);
    if cfg.effective_workers() == 1 {
        worker::run(cfg, 0, None, 0)
    } else {
        supervisor::run(cfg)
    }
}
