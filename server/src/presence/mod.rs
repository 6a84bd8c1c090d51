//! Live presence (the live user status server and the user online status design): one model served three ways.
//!
//! - `POST /heartbeat` `{"userId"}`            marks the user ONLINE until now + TTL ([`http`])
//! - `POST /status` `{"userIds":[...]}`        last activity of each id, one MGET ([`http`])
//! - `GET /api/v1/presence/stream?watch=a,b`   Server-Sent Events: snapshot, then changes ([`sse`])
//! - gRPC `users.status.UserStatusService`     on the same port, with reflection ([`grpc`])
//!
//! State lives in Redis ([`store`]): a status key per user (`on|away|off:<last activity ms>`,
//! no expiry) and one sorted set of the deadlines of the users ONLINE or AWAY. Every change runs as one
//! Lua script that also publishes the event, so an event is published exactly once per
//! change and a heartbeat that keeps a user online publishes nothing. One elected
//! [`sweeper`] across all processes turns passed deadlines into OFFLINE events. Every
//! worker subscribes once to the event channel and fans events out to its own
//! subscribers through bounded per-subscriber buffers ([`hub`]).

pub mod auth;
pub mod grpc;
pub mod http;
mod hub;
pub mod sse;
mod store;
mod sweeper;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::error::ApiError;
use crate::redis::RedisHandle;
pub use hub::{Hub, Msg, Subscription};
pub use store::Store;

/// A user's presence. `Unknown` = never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Online,
    Away,
    Offline,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Unknown => "UNKNOWN",
            Status::Online => "ONLINE",
            Status::Away => "AWAY",
            Status::Offline => "OFFLINE",
        }
    }

    fn from_name(s: &str) -> Option<Status> {
        match s {
            "UNKNOWN" => Some(Status::Unknown),
            "ONLINE" => Some(Status::Online),
            "AWAY" => Some(Status::Away),
            "OFFLINE" => Some(Status::Offline),
            _ => None,
        }
    }
}

/// One status change, as published on the event channel: `<user id>|<STATUS>|<unix ms>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub user_id: Box<str>,
    pub status: Status,
    pub at_ms: i64,
}

impl Event {
    /// Parses a published payload; `None` for anything malformed (never panics).
    pub fn parse(payload: &[u8]) -> Option<Event> {
        let s = std::str::from_utf8(payload).ok()?;
        let mut parts = s.splitn(3, '|');
        let (id, status, at) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Event { user_id: id.into(), status: Status::from_name(status)?, at_ms: at.parse().ok()? })
    }
}

/// What one watched user looks like right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub status: Status,
    /// Last activity in unix ms; 0 = never seen.
    pub last_seen_ms: i64,
}

/// Presence failures. Mapped to HTTP in `From<Error> for ApiError` and to gRPC in
/// [`grpc`]; the codes are the user online status design's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis is unavailable")]
    RedisDown,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0} ms")]
    Timeout(u64),
    #[error("{message}")]
    Invalid { code: &'static str, message: Cow<'static, str> },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("user not authorized to update status")]
    Forbidden,
}

impl Error {
    pub fn invalid(code: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
        Error::Invalid { code, message: message.into() }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Invalid { code, message } => ApiError::BadRequest { code, message },
            Error::Unauthenticated(m) => ApiError::Unauthorized(m),
            Error::Forbidden => ApiError::Forbidden("user not authorized to update status"),
            Error::RedisDown | Error::Timeout(_) => ApiError::RedisUnavailable,
            Error::Redis(e) => {
                tracing::warn!(error = %e, "presence redis call failed");
                ApiError::RedisUnavailable
            }
        }
    }
}

/// Validates one user id at the edge.
///
/// # Errors
/// `INVALID_ID` unless it matches `[A-Za-z0-9_-]{1,64}`.
pub fn parse_id(s: &str) -> Result<&str, Error> {
    if crate::users::model::is_valid_id(s) {
        Ok(s)
    } else {
        Err(Error::invalid("INVALID_ID", "user id must match [A-Za-z0-9_-]{1,64}"))
    }
}

/// The presence service of one worker process. Cloning the `Arc` is shallow.
#[derive(Debug)]
pub struct Presence {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub auth: Option<auth::Auth>,
    /// What clients are told: send the next heartbeat within this many seconds.
    pub heartbeat_interval_s: i64,
    /// `POST /heartbeat`'s body, rendered once.
    pub heartbeat_reply: bytes::Bytes,
    pub max_batch: usize,
    pub max_watch: usize,
    pub keepalive: Duration,
    /// Fires at shutdown: open streams end so the drain can finish.
    pub shutdown: CancellationToken,
}

impl Presence {
    /// Builds the store and hub and starts this process's two background tasks: the
    /// event-channel subscriber and its candidacy for the sweeper lock.
    ///
    /// # Errors
    /// The Redis URL does not parse.
    pub fn start(cfg: &Config, redis: RedisHandle, cancel: CancellationToken) -> anyhow::Result<Arc<Presence>> {
        let store = Store::new(cfg, redis.clone());
        let hub = Arc::new(Hub::new(cfg.presence_subscriber_buffer));
        let client = ::redis::Client::open(cfg.redis_url.as_str())?;
        tokio::spawn(hub::listen(client, store.channel().to_owned(), hub.clone(), redis, cancel.clone()));
        tokio::spawn(sweeper::run(
            store.clone(),
            Duration::from_millis(cfg.presence_sweep_interval_ms),
            cancel.clone(),
        ));
        let auth = (!cfg.presence_auth_secret.is_empty()).then(|| auth::Auth::new(cfg.presence_auth_secret.as_bytes()));
        let heartbeat_interval_s = (cfg.presence_heartbeat_interval_ms / 1000).max(1) as i64;
        Ok(Arc::new(Presence {
            heartbeat_reply: http::heartbeat_reply(heartbeat_interval_s),
            store,
            hub,
            auth,
            heartbeat_interval_s,
            max_batch: cfg.presence_max_batch,
            max_watch: cfg.presence_max_watch,
            keepalive: Duration::from_millis(cfg.sse_keepalive_ms),
            shutdown: cancel,
        }))
    }

    /// Refuses a status change unless auth is off or the bearer token's subject is `user`.
    ///
    /// # Errors
    /// `Unauthenticated` without a valid token; `Forbidden` for another user's token.
    pub fn authorize(&self, authorization: Option<&[u8]>, user: &str) -> Result<(), Error> {
        match &self.auth {
            None => Ok(()),
            Some(a) => a.check(authorization, user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_refused() {
        let e = Event::parse(b"user-1|OFFLINE|1700000000123").unwrap();
        assert_eq!(e, Event { user_id: "user-1".into(), status: Status::Offline, at_ms: 1_700_000_000_123 });
        for bad in [&b""[..], b"a|ONLINE", b"a|SLEEPY|1", b"a|ONLINE|x", b"\xff|ONLINE|1"] {
            assert!(Event::parse(bad).is_none(), "{bad:?}");
        }
    }
}
