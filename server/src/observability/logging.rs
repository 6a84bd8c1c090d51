//! tracing set-up: readable text for a terminal or JSON lines, written by a background
//! thread so a request never blocks on stderr.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. Keep the guard alive for the life of the process (it
/// flushes the log on drop).
pub fn init_logging(level: &str, format: &str) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder =
        fmt().with_env_filter(filter).with_writer(writer).with_target(true).with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" { builder.json().flatten_event(true).try_init() } else { builder.compact().try_init() };
    guard
}
