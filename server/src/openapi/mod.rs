//! `GET /openapi.json` (the contract, `openapi.json` beside this file, embedded at build
//! time) and `GET /swagger` (Swagger UI from the `utoipa-swagger-ui` crate's vendored
//! assets: embedded in the binary, no CDN, works with no internet).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use crate::http::error::ApiError;
use crate::http::response::{bytes_response, Resp};

pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn document() -> Resp {
    bytes_response(StatusCode::OK, HeaderValue::from_static("application/json"), Bytes::from_static(DOCUMENT.as_bytes()))
}

fn config() -> Arc<utoipa_swagger_ui::Config<'static>> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    CONFIG.get_or_init(|| Arc::new(utoipa_swagger_ui::Config::from("/openapi.json"))).clone()
}

/// `/swagger` redirects to `/swagger/` so the page's relative asset links resolve;
/// `/swagger/<file>` serves the embedded file.
///
/// # Errors
/// 404 for a file the UI does not have.
pub fn swagger(tail: Option<&str>) -> Result<Resp, ApiError> {
    let Some(tail) = tail else {
        let mut r = crate::http::response::empty(StatusCode::MOVED_PERMANENTLY);
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/swagger/"));
        return Ok(r);
    };
    let tail = if tail.is_empty() { "index.html" } else { tail };
    match utoipa_swagger_ui::serve(tail, config()) {
        Ok(Some(file)) => {
            let ct = HeaderValue::from_str(&file.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
            Ok(bytes_response(StatusCode::OK, ct, Bytes::from(file.bytes.into_owned())))
        }
        Ok(None) => Err(ApiError::NoRoute(format!("/swagger/{tail}"))),
        Err(e) => Err(ApiError::Internal(e.to_string().into())),
    }
}
