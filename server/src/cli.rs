//! The `shardgate` command line: `serve` plus the admin commands. Start-up code: the only
//! place that uses `anyhow`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::admin;
use crate::config::Config;

/// shardgate: a sharded users/presence/flash-sale API over five PostgreSQL shards and Redis.
///
/// Settings come from defaults, then the config file, then environment variables, then
/// flags. The topology (where each shard's primary, replica and PgBouncer listen) is
/// config/topology.toml plus SHARDGATE_SHARD_<i>_{PRIMARY,REPLICA,POOLER} overrides.
#[derive(Debug, Parser)]
#[command(name = "shardgate", version, propagate_version = true)]
pub struct Cli {
    /// Config file (TOML). Default: $SHARDGATE_CONFIG, else config/shardgate.toml if present.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Topology file (overrides the config file and SHARDGATE_TOPOLOGY).
    #[arg(long, global = true)]
    pub topology: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server: a supervisor with WORKERS worker processes sharing the port
    /// (SO_REUSEPORT); `--workers 1` serves in this one process.
    Serve(ServeArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply, revert or create migrations (database/migrations/) on every shard primary.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Per shard: user count, ring share, primary/replica health and replica lag.
    /// Online resharding: add a shard while serving (docs/SHARDING_GUIDE.md).
    #[command(subcommand)]
    Reshard(ReshardCommand),
    Shards {
        /// Machine-readable JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print the shard that owns an id on the ring (the same rule as SQL's shardgate_shard_of).
    ShardOf {
        /// A user id (or, for sale records, an item id).
        id: String,
    },
    /// Mint a presence bearer token (HS256 JWT, subject = the user) with PRESENCE_AUTH_SECRET.
    Token {
        /// The user the token may change the status of.
        #[arg(long)]
        user: String,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the connection URL of shard N (for psql; `make db-shell SHARD=n`).
    DbUrl {
        /// Shard number, 0-based.
        shard: u16,
        /// The streaming replica instead of the primary.
        #[arg(long)]
        replica: bool,
        /// Through the shard's PgBouncer instead of straight to the primary.
        #[arg(long, conflicts_with = "replica")]
        pooler: bool,
    },
}

/// Flags of `serve`; they override the file and the environment.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port to listen on (all interfaces of --listen).
    #[arg(long)]
    pub port: Option<u16>,
    /// Full listen address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Worker processes (0 = number of CPUs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Tokio threads per worker (0 = CPUs / workers).
    #[arg(long)]
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load defaults, file, environment and flags; validate; print the result.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum ReshardCommand {
    /// Move the rows the next ring gives to the topology's new last shard, cut over, clean
    /// up; resumes an interrupted move.
    Add,
    /// Every row on the shard that owns it and nowhere else; during a move, every moving row
    /// against its copy.
    Verify,
    /// Abandon a move before its cutover: the old ring stays, the new shard is emptied.
    Rollback,
    /// The ring's version and phase, copy progress, and each worker's acknowledgement.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Apply every pending migration on every shard (idempotent).
    Up,
    /// Same as `up` (the Messenger Clone API's `migrate-latest`).
    Latest,
    /// Revert the newest applied migration on every shard.
    Down,
    /// Show the applied versions per shard and the versions this binary carries.
    Status,
    /// Create an empty `<timestamp>_<name>.{up,down}.sql` pair in database/migrations/.
    Make {
        /// Lowercase name with underscores, e.g. add_messages_table.
        name: String,
        /// Directory to write into.
        #[arg(long, default_value = "database/migrations")]
        dir: PathBuf,
    },
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(t) = &cli.topology {
        cfg.topology = t.clone();
    }
    match cli.command {
        Command::Serve(args) => {
            if let Some(l) = args.listen {
                cfg.listen = l;
            }
            if let Some(p) = args.port {
                cfg.listen.set_port(p);
            }
            if let Some(w) = args.workers {
                cfg.workers = w;
            }
            if let Some(t) = args.worker_threads {
                cfg.worker_threads = t;
            }
            crate::serve::start(cfg)
        }
        Command::Config(ConfigCommand::Check) => admin::config_check(&cfg),
        Command::ShardOf { id } => admin::shard_of(&cfg, &id),
        Command::Token { user, ttl } => admin::token(&cfg, &user, ttl),
        Command::DbUrl { shard, replica, pooler } => admin::db_url(&cfg, shard, replica, pooler),
        Command::Migrate(MigrateCommand::Make { name, dir }) => admin::migrate_make(&dir, &name),
        Command::Migrate(cmd) => admin::runtime()?.block_on(admin::migrate(&cfg, cmd)),
        Command::Shards { json } => admin::runtime()?.block_on(admin::shards(&cfg, json)),
        Command::Reshard(cmd) => {
            let topo = cfg.load_topology()?;
            let rt = admin::runtime()?;
            match cmd {
                ReshardCommand::Add => rt.block_on(crate::reshard::mover::add(&cfg, &topo)),
                ReshardCommand::Verify => rt.block_on(crate::reshard::mover::verify(&topo)),
                ReshardCommand::Rollback => rt.block_on(crate::reshard::mover::rollback(&topo)),
                ReshardCommand::Status => rt.block_on(crate::reshard::mover::status(&topo)),
            }
        }
    }
}
