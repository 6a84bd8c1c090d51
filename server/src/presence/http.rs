//! Seed 000's HTTP API.
//!
//! - `POST /heartbeat` `{"userId":"u"}` -> 200 `{"success":true,"status":"ONLINE","next_heartbeat_in_seconds":15}`
//! - `POST /status` `{"userIds":["a","b"]}` -> 200 `{"a":"2026-11-22T02:40:00.123Z","b":"0001-01-01T00:00:00Z"}`
//!   (RFC 3339 last activity; seed 000's zero time for never seen). One MGET for the batch;
//!   `[]` -> `{}`; more than `PRESENCE_MAX_BATCH` ids -> 400 `TOO_MANY_IDS`.

use http::{header, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{parse_id, Error};
use crate::http::body::read_json;
use crate::http::error::ApiError;
use crate::http::response::{bytes_response, json_ok, Resp};
use crate::state::State;

/// Seed 000's "never seen": Go's zero `time.Time` in RFC 3339.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Deserialize)]
struct HeartbeatBody {
    #[serde(rename = "userId")]
    user_id: String,
}

#[derive(Deserialize)]
struct StatusBody {
    #[serde(rename = "userIds")]
    user_ids: Vec<String>,
}

#[derive(serde::Serialize)]
struct HeartbeatReply {
    success: bool,
    status: &'static str,
    next_heartbeat_in_seconds: i64,
}

fn authorization(req: &Request<Incoming>) -> Option<Vec<u8>> {
    req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec())
}

pub async fn heartbeat(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let auth = state.presence.auth.as_ref().and_then(|_| authorization(&req));
    let body: HeartbeatBody = read_json(req, state.cfg.max_body_bytes).await?;
    let id = parse_id(&body.user_id)?;
    state.presence.authorize(auth.as_deref(), id)?;
    state.presence.store.heartbeat(id).await?;
    metrics::counter!("presence_heartbeats_total").increment(1);
    Ok(json_ok(&HeartbeatReply {
        success: true,
        status: "ONLINE",
        next_heartbeat_in_seconds: state.presence.heartbeat_interval_s,
    }))
}

pub async fn status(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let body: StatusBody = read_json(req, state.cfg.max_body_bytes).await?;
    let max = state.presence.max_batch;
    if body.user_ids.len() > max {
        return Err(Error::invalid("TOO_MANY_IDS", format!("at most {max} userIds per request")).into());
    }
    let mut ids = body.user_ids.iter().map(|s| parse_id(s)).collect::<Result<Vec<&str>, _>>()?;
    // A JSON object has each key once.
    ids.sort_unstable();
    ids.dedup();
    let seen = state.presence.store.last_seen(&ids).await?;
    Ok(bytes_response(StatusCode::OK, HeaderValue::from_static("application/json"), render(&ids, &seen).into()))
}

/// `{"id":"<rfc3339>",...}` written directly: ids are `[A-Za-z0-9_-]` (validated), so
/// they need no escaping.
fn render(ids: &[&str], seen: &[Option<i64>]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(2 + ids.len() * 96);
    out.push(b'{');
    for (i, (id, ms)) in ids.iter().zip(seen).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "\"{id}\":\"");
        match ms.and_then(chrono::DateTime::from_timestamp_millis) {
            Some(t) => {
                let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
            }
            None => out.extend_from_slice(ZERO_TIME.as_bytes()),
        }
        out.push(b'"');
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_and_zero_time() {
        let out = render(&["a", "b"], &[Some(1_700_000_000_123), None]);
        assert_eq!(out, br#"{"a":"2023-11-14T22:13:20.123Z","b":"0001-01-01T00:00:00Z"}"#);
        assert_eq!(render(&[], &[]), b"{}");
        chrono::DateTime::parse_from_rfc3339("2023-11-14T22:13:20.123Z").unwrap();
    }
}
