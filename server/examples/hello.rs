//! The ceiling for `GET /health`: a bare hyper 1.x HTTP/1.1 server that answers every
//! request with `{"status":"ok"}` and nothing else (no routing, no logging, no metrics).
//!
//! `loadtest/bench.sh` starts it, points wrk at it and compares shardgate's `/health`
//! with it; same machine, same run, so the ratio is meaningful where absolute numbers are not.
//!
//! ```text
//! cargo build --release -p shardgate --example hello
//! target/release/examples/hello 18081      # listens on 127.0.0.1:18081
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"status":"ok"}"#;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse()?,
        None => 18081,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr).await?;
    eprintln!("hello listening on http://{addr}");

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // e.g. EMFILE under a connection storm: keep serving the connections we have.
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // Keep-alive is hyper's default for HTTP/1.1; spelled out because it is the point.
            let _ =
                http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service_fn(hello)).await;
        });
    }
}
