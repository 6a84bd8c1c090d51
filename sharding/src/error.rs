//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in this crate: reading or parsing a topology, a bad
/// address, a topology that fails validation, a bad environment override, or bad ring
/// parameters. Every message names the offending value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topology file could not be read.
    #[error("cannot read topology file {}: {source}", .path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The topology TOML is malformed (syntax, a missing or unknown field, a wrong type,
    /// or an unparsable address).
    #[error("cannot parse topology {origin}: {source}")]
    Parse {
        /// The file path, or `"<string>"` when parsed from a string.
        origin: String,
        /// The TOML error, which carries the line and column.
        #[source]
        source: Box<toml::de::Error>,
    },

    /// A `host:port` address is malformed.
    #[error("invalid address {value:?}: {reason}")]
    InvalidAddr {
        /// The text that was being parsed (or the address that failed validation).
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The topology is well-formed TOML but describes an unusable cluster.
    #[error("invalid topology: {0}")]
    InvalidTopology(String),

    /// A `SHARDGATE_*` environment override could not be applied.
    #[error("invalid environment override {var}={value:?}: {reason}")]
    InvalidOverride {
        /// The variable name.
        var: String,
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Ring parameters out of range (see [`crate::Ring::try_new`]).
    #[error("invalid ring: {0}")]
    InvalidRing(String),
}
