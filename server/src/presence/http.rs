//! The live user status server's HTTP API.
//!
//! - `POST /heartbeat` `{"userId":"u"}` -> 200 `{"success":true,"status":"ONLINE","next_heartbeat_in_seconds":15}`
//! - `POST /status` `{"userIds":["a","b"]}` -> 200 `{"a":"2026-11-22T02:40:00.123Z","b":"0001-01-01T00:00:00Z"}`
//!   (RFC 3339 last activity; the live user status server's zero time for never seen). One MGET for the batch;
//!   `[]` -> `{}`; more than `PRESENCE_MAX_BATCH` ids -> 400 `TOO_MANY_IDS`.

use http::{header, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{parse_id, Error};
use crate::http::body::{parse_json, read_body, Limits};
use crate::http::error::ApiError;
use crate::http::response::{bytes_response, Resp};
use crate::state::State;

/// The live user status server's "never seen": Go's zero `time.Time` in RFC 3339.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Deserialize)]
pub(crate) struct HeartbeatBody<'a> {
    #[serde(rename = "userId", borrow)]
    user_id: std::borrow::Cow<'a, str>,
}

/// Borrows the ids from the request body (no allocation per id unless one is escaped).
#[derive(Deserialize)]
pub(crate) struct StatusBody<'a> {
    #[serde(rename = "userIds", borrow)]
    user_ids: Vec<std::borrow::Cow<'a, str>>,
}

/// The heartbeat's answer never changes within a process: rendered once.
pub fn heartbeat_reply(next_heartbeat_in_seconds: i64) -> bytes::Bytes {
    format!(r#"{{"success":true,"status":"ONLINE","next_heartbeat_in_seconds":{next_heartbeat_in_seconds}}}"#).into()
}

fn authorization(req: &Request<Incoming>) -> Option<Vec<u8>> {
    req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec())
}

pub async fn heartbeat(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let auth = state.presence.auth.as_ref().and_then(|_| authorization(&req));
    let raw = read_body(req, Limits::of(&state.cfg)).await?;
    let body: HeartbeatBody = parse_json(&raw)?;
    let id = parse_id(&body.user_id)?;
    state.presence.authorize(auth.as_deref(), id)?;
    state.presence.store.heartbeat(id).await?;
    metrics::counter!("presence_heartbeats_total").increment(1);
    Ok(bytes_response(
        StatusCode::OK,
        HeaderValue::from_static("application/json"),
        state.presence.heartbeat_reply.clone(),
    ))
}

pub async fn status(state: &State, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let raw = read_body(req, Limits::of(&state.cfg)).await?;
    let body: StatusBody = parse_json(&raw)?;
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
    let mut out = Vec::with_capacity(2 + ids.len() * 96);
    out.push(b'{');
    for (i, (id, ms)) in ids.iter().zip(seen).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\":\"");
        match ms {
            Some(ms) => rfc3339_ms(&mut out, *ms),
            None => out.extend_from_slice(ZERO_TIME.as_bytes()),
        }
        out.push(b'"');
    }
    out.push(b'}');
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` written digit by digit: a batch of 50 formats 50 times, and
/// chrono's formatting machinery cost more than the rest of the request (measured).
fn rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms).filter(|t| (0..=9999).contains(&t.year())) else {
        out.extend_from_slice(ZERO_TIME.as_bytes());
        return;
    };
    let mut num = |n: u32, width: usize, sep: u8| {
        let mut buf = [b'0'; 4];
        let mut n = n;
        for i in (0..width).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&buf[..width]);
        out.push(sep);
    };
    num(t.year() as u32, 4, b'-');
    num(t.month(), 2, b'-');
    num(t.day(), 2, b'T');
    num(t.hour(), 2, b':');
    num(t.minute(), 2, b':');
    num(t.second(), 2, b'.');
    num(t.timestamp_subsec_millis(), 3, b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc3339_and_zero_time() {
        let out = render(&["a", "b"], &[Some(1_700_000_000_123), None]);
        assert_eq!(out, br#"{"a":"2023-11-14T22:13:20.123Z","b":"0001-01-01T00:00:00Z"}"#);
        assert_eq!(render(&[], &[]), b"{}");
        // Digit by digit agrees with chrono over a spread of instants.
        for ms in [0_i64, 1, 999, 951_782_400_000, 1_709_251_199_999, 4_102_444_800_000, 253_402_300_799_999] {
            let mut out = Vec::new();
            rfc3339_ms(&mut out, ms);
            let want =
                chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
