//! The one place that turns errors into HTTP responses: every error a handler can return
//! is an [`ApiError`], rendered as `{"error": "<message>", "code": "<STABLE_CODE>"}` with
//! its status. The cause chain of an internal error goes to the log once, here; the
//! client sees a stable code and a message that leaks nothing.

use std::borrow::Cow;

use http::{header, HeaderValue, StatusCode};
use sharding::ShardId;

use super::response::{json_response, Resp};

/// Every failure a request can end in. The `code` strings are part of the API contract.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed or invalid input (`code` says which kind).
    #[error("{message}")]
    BadRequest { code: &'static str, message: Cow<'static, str> },
    /// 404 for a missing resource.
    #[error("{message}")]
    NotFound { code: &'static str, message: Cow<'static, str> },
    /// 404 for a path no route serves.
    #[error("no route for {0}")]
    NoRoute(String),
    /// 405 with the methods the path does allow.
    #[error("method {method} not allowed; allowed: {allow}")]
    MethodNotAllowed { method: String, allow: String },
    /// 409: the resource already exists.
    #[error("{message}")]
    Conflict { code: &'static str, message: Cow<'static, str> },
    /// 408: the request body did not arrive within `body_read_timeout_ms`.
    #[error("request body not received within {after_ms} ms")]
    BodyTimeout { after_ms: u64 },
    /// 413: body over the limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 415: a body that is not JSON.
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    /// 503: the shard that owns the key cannot be reached right now.
    #[error("shard {} is unavailable", .shard.name())]
    ShardUnavailable { shard: ShardId },
    /// 503: several shards are unavailable (fan-out reads).
    #[error("shards unavailable: {0}")]
    ShardsUnavailable(String),
    /// 401: a presence change without a valid bearer token (auth on).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: a valid token for another user.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 429 `RATE_LIMITED`: over a configured request rate; `Retry-After` says when to retry.
    #[error("too many requests; retry after {retry_after_s} s")]
    TooManyRequests { retry_after_s: u64 },
    /// 503 `REDIS_ERROR` (the user online status design's code): presence needs Redis and it is down or slow.
    #[error("redis is unavailable")]
    RedisUnavailable,
    /// 503: a dependency other than a shard (Redis) is down.
    #[error("{0} is unavailable")]
    DependencyUnavailable(&'static str),
    /// 504: the request ran past its deadline.
    #[error("request timed out after {0} ms")]
    Timeout(u64),
    /// 500: a bug or an unexpected failure; details go to the log only.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::BadRequest { code, message: message.into() }
    }

    pub fn not_found(code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::NotFound { code, message: message.into() }
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
        ApiError::Internal(Box::new(e))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::ShardUnavailable { .. }
            | ApiError::ShardsUnavailable(_)
            | ApiError::DependencyUnavailable(_)
            | ApiError::RedisUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::NotFound { code, .. } | ApiError::Conflict { code, .. } => {
                code
            }
            ApiError::NoRoute(_) => "ROUTE_NOT_FOUND",
            ApiError::MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            ApiError::BodyTimeout { .. } => "BODY_TIMEOUT",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::ShardUnavailable { .. } | ApiError::ShardsUnavailable(_) => "SHARD_UNAVAILABLE",
            ApiError::DependencyUnavailable(_) => "DEPENDENCY_UNAVAILABLE",
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => "UNAUTHORIZED",
            ApiError::RedisUnavailable => "REDIS_ERROR",
            ApiError::TooManyRequests { .. } => "RATE_LIMITED",
            ApiError::Timeout(_) => "REQUEST_TIMEOUT",
            ApiError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// Renders the error. Server-side failures are logged here, once, with their cause.
    pub fn into_response(self, request_id: &str) -> Resp {
        let status = self.status();
        match &self {
            ApiError::Internal(source) => {
                tracing::error!(request_id, error = %self, cause = %error_chain(source.as_ref()), "request failed");
            }
            ApiError::ShardUnavailable { .. }
            | ApiError::ShardsUnavailable(_)
            | ApiError::DependencyUnavailable(_)
            | ApiError::RedisUnavailable => {
                tracing::warn!(request_id, error = %self, "dependency unavailable");
            }
            _ => {}
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: String,
            code: &'a str,
        }
        let mut resp = json_response(status, &Body { error: self.to_string(), code: self.code() });
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            if let Ok(v) = HeaderValue::from_str(allow) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        if let ApiError::PayloadTooLarge { .. } | ApiError::BodyTimeout { .. } = &self {
            // The unread body is still on the wire: this connection cannot be reused.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::TooManyRequests { retry_after_s } = &self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// "outer: inner: root" for the log.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
