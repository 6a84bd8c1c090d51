//! Response helpers: JSON bodies are a `Full<Bytes>` built in one allocation; streams
//! (SSE, gRPC) are boxed bodies; [`Body`] carries either.

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

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A streamed body (Server-Sent Events, gRPC).
pub type StreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// What the connection serves: a whole body (every JSON route, no boxing) or a stream.
/// (Our own two-variant enum rather than `http_body_util::Either`, whose boxed error type
/// trips a higher-ranked lifetime limitation of rustc inside the spawned connection task.)
#[derive(Debug)]
pub enum Body {
    Full(Full<Bytes>),
    Stream(StreamBody),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(f) => std::pin::Pin::new(f).poll_frame(cx).map_err(|never| match never {}),
            Body::Stream(s) => std::pin::Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Stream(s) => s.size_hint(),
        }
    }
}

pub type Reply = Response<Body>;

/// A whole response as a [`Reply`] (no allocation: an enum variant).
pub fn full(r: Resp) -> Reply {
    r.map(Body::Full)
}

pub fn stream(r: Response<StreamBody>) -> Reply {
    r.map(Body::Stream)
}
