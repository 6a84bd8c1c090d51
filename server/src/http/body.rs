//! Reading request input: JSON bodies (size-limited, sonic-rs) and query strings.

use bytes::Bytes;
use http::{header, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Reads the whole body, refusing more than `limit` bytes with 413 (early, from
/// `Content-Length`, when the client declares it).
///
/// # Errors
/// 413 over the limit (after draining a bounded amount); 415 for a declared non-JSON content type; 400 when the client
/// aborts the body.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if !(ct.starts_with("application/json") || ct.contains("+json")) {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(&mut body).await;
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::bad_request("BODY_READ_FAILED", format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(&mut body).await;
                return Err(ApiError::PayloadTooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
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
/// types, missing or unknown fields; plus [`read_body`]'s errors.
pub async fn read_json<T: DeserializeOwned>(req: Request<Incoming>, limit: usize) -> Result<T, ApiError> {
    let body = read_body(req, limit).await?;
    parse_json(&body)
}

/// # Errors
/// As [`read_json`].
pub fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("EMPTY_BODY", "request body is empty; expected a JSON object"));
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
