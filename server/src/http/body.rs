//! Reading request input: JSON bodies (size- and time-limited, sonic-rs) and query strings.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::config::Config;

/// What a request body may cost: at most `max_bytes`, all of it within `timeout` of the
/// moment the handler starts reading (a "slow POST" client holds a connection at most
/// that long).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl Limits {
    pub fn of(cfg: &Config) -> Limits {
        Limits { max_bytes: cfg.max_body_bytes, timeout: Duration::from_millis(cfg.body_read_timeout_ms) }
    }
}

/// Reads the whole body within `limits.timeout`, refusing more than `limits.max_bytes`
/// with 413 (early, from `Content-Length`, when the client declares it).
///
/// # Errors
/// 413 over the limit (after draining a bounded amount); 415 for a declared non-JSON
/// content type; 408 `BODY_TIMEOUT` when the body has not arrived in time (the response
/// closes the connection: the rest of the body is still on the wire); 400 when the client
/// aborts the body.
pub async fn read_body(req: Request<Incoming>, limits: Limits) -> Result<Bytes, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if !(ct.starts_with("application/json") || ct.contains("+json")) {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let limit = limits.max_bytes;
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(&mut body).await;
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // The deadline covers the reading only: an oversized body's bounded drain is outside
    // it, so it still ends in a 413, never in a 408.
    let capacity = declared.map_or(1024, |n| n as usize);
    match tokio::time::timeout(limits.timeout, collect(&mut body, limit, capacity)).await {
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => {
            drain(&mut body).await;
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => Err(ApiError::bad_request("BODY_READ_FAILED", format!("could not read the request body: {e}"))),
        Err(_) => {
            metrics::counter!("http_body_timeouts_total").increment(1);
            Err(ApiError::BodyTimeout { after_ms: limits.timeout.as_millis() as u64 })
        }
    }
}

/// The whole body, or `None` as soon as it passes `limit` bytes.
async fn collect(body: &mut Incoming, limit: usize, capacity: usize) -> Result<Option<Bytes>, hyper::Error> {
    let mut buf = bytes::BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > limit {
                return Ok(None);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Some(buf.freeze()))
}

/// Reads and discards what is left of an oversized body, up to a bound, before the 413
/// goes out: most clients do not read a response until they have sent their whole body,
/// and closing on them mid-send turns a clear 413 into a broken pipe. Bounded (8 MiB,
/// 2 s) so a client cannot make us read forever; past that the connection is closed.
async fn drain(body: &mut Incoming) {
    const MAX_BYTES: usize = 8 << 20;
    let mut seen = 0usize;
    let work = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > MAX_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), work).await;
}

/// Parses a JSON body into `T` (whose serde attributes refuse unknown fields).
///
/// # Errors
/// 400 `INVALID_JSON` for a syntax error or invalid UTF-8, 400 `INVALID_BODY` for wrong
/// types, missing or unknown fields, 400 `JSON_TOO_DEEP` for nesting past
/// [`MAX_DEPTH`](super::json_depth::MAX_DEPTH); plus [`read_body`]'s errors.
pub async fn read_json<T: DeserializeOwned>(req: Request<Incoming>, limits: Limits) -> Result<T, ApiError> {
    let body = read_body(req, limits).await?;
    parse_json(&body)
}

/// Refuses nesting deeper than [`MAX_DEPTH`](super::json_depth::MAX_DEPTH) before the
/// parser sees the body: the parser recurses per level, and a deep enough body would
/// overflow the worker's stack.
///
/// # Errors
/// As [`read_json`], and 400 `JSON_TOO_DEEP` for nesting past the limit.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("EMPTY_BODY", "request body is empty; expected a JSON object"));
    }
    if super::json_depth::too_deep(body, super::json_depth::MAX_DEPTH).is_some() {
        metrics::counter!("http_json_too_deep_total").increment(1);
        return Err(ApiError::bad_request(
            "JSON_TOO_DEEP",
            format!("JSON nested deeper than {} levels", super::json_depth::MAX_DEPTH),
        ));
    }
    sonic_rs::from_slice(body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() { "INVALID_JSON" } else { "INVALID_BODY" };
        let mut msg = e.to_string();
        // sonic-rs appends a window of the input; keep messages short and single-line.
        if let Some(cut) = msg.find('\n') {
            msg.truncate(cut);
        }
        msg.truncate(300);
        ApiError::bad_request(code, msg)
    })
}

/// Decoded `key=value` pairs of a query string.
pub fn query_pairs(
    query: Option<&str>,
) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
}
