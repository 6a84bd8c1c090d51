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
    bytes_response(
        StatusCode::OK,
        HeaderValue::from_static("application/json"),
        Bytes::from_static(DOCUMENT.as_bytes()),
    )
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
            let ct = HeaderValue::from_str(&file.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            Ok(bytes_response(StatusCode::OK, ct, Bytes::from(file.bytes.into_owned())))
        }
        Ok(None) => Err(ApiError::NoRoute(format!("/swagger/{tail}"))),
        Err(e) => Err(ApiError::Internal(e.to_string().into())),
    }
}

#[cfg(test)]
mod tests {
    use sonic_rs::{JsonContainerTrait, JsonValueTrait};

    use crate::http::router::ROUTES;

    /// The contract stays true: every routed path and method is in the document.
    #[test]
    fn every_route_is_documented() {
        let doc: sonic_rs::Value = sonic_rs::from_str(super::DOCUMENT).expect("openapi.json parses");
        assert_eq!(doc.get("openapi").and_then(|v| v.as_str()), Some("3.1.0"));
        let paths = doc.get("paths").and_then(|p| p.as_object()).expect("paths");
        for (method, pattern, _) in ROUTES {
            if pattern.ends_with("/*") {
                continue; // the Swagger UI's asset files
            }
            let path = pattern.replace(":id", "{id}");
            let item = paths.get(&path).unwrap_or_else(|| panic!("{path} is not in openapi.json"));
            let m = method.as_str().to_ascii_lowercase();
            assert!(item.get(&m).is_some(), "{} {path} is not in openapi.json", method);
        }
    }

    /// Every stable error code the code can produce is in the `Error` schema's enum, so a
    /// client generated from the contract knows it (schemathesis found two that were not).
    #[test]
    fn every_error_code_is_documented() {
        let doc: sonic_rs::Value = sonic_rs::from_str(super::DOCUMENT).expect("openapi.json parses");
        let codes: Vec<String> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("Error.code has an enum")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let mut files = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        let mut found = 0;
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") || p.ends_with("openapi/mod.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for marker in ["bad_request(\"", "not_found(\"", "invalid(\"", "code: \"", "=> \""] {
                for (i, _) in text.match_indices(marker) {
                    let rest = &text[i + marker.len()..];
                    let lit = &rest[..rest.find('"').unwrap_or(0)];
                    let is_code = lit.len() >= 4 && lit.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
                    // `=> "X"` arms only count in the error mapping itself.
                    if is_code && (marker != "=> \"" || p.ends_with("http/error.rs")) {
                        found += 1;
                        assert!(
                            codes.iter().any(|c| c == lit),
                            "{lit} ({}) is not in openapi.json's Error.code enum",
                            p.display()
                        );
                    }
                }
            }
        }
        assert!(found > 20, "the scan found the codes ({found})");
    }
}
