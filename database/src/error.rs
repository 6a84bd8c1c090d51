use sharding::ShardId;

/// Errors of the database layer. Each names the shard it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shard {shard}: {source}")]
    Sql {
        shard: ShardId,
        #[source]
        source: sqlx::Error,
    },
    #[error("shard {shard}: migration failed: {source}")]
    Migrate {
        shard: ShardId,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("shard {shard}: timed out after {millis} ms")]
    Timeout { shard: ShardId, millis: u64 },
    #[error("migration file: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn sql(shard: ShardId) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Sql { shard, source }
    }
}
