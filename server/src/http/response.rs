//! Response helpers: every body is a `Full<Bytes>` built in one allocation.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

pub type Resp = Response<Full<Bytes>>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Serialises `value` with sonic-rs into a JSON response.
pub fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    match sonic_rs::to_vec(value) {
        Ok(body) => bytes_response(status, JSON, Bytes::from(body)),
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            bytes_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                JSON,
                Bytes::from_static(br#"{"error":"internal error","code":"INTERNAL_ERROR"}"#),
            )
        }
    }
}

pub fn json_ok<T: serde::Serialize + ?Sized>(value: &T) -> Resp {
    json_response(StatusCode::OK, value)
}

pub fn bytes_response(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    r
}

pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}
