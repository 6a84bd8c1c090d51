//! An open-model (constant arrival rate) HTTP/1.1 load generator over many keep-alive
//! connections, free of coordinated omission.
//!
//! Request `i` is *scheduled* at `start + i / rate`, whether or not the server kept up. The
//! dispatcher sleeps until that instant (or sends at once when it is behind, never skipping),
//! hands the request to the next idle connection (FIFO, so all connections take turns) and, if
//! none is idle, waits for one. Latency is "response body fully read" minus the *scheduled*
//! time, so dispatcher lag and waiting for a connection both count against the server.
//!
//! Phase 1 (not measured) opens every connection, a bounded number at a time; phase 2 sends at
//! the target rate for `--warmup` seconds (not recorded) and then for `--duration` seconds
//! (recorded). Only loopback targets are accepted. It stops by itself and exits 0 unless the
//! arguments are invalid: the caller judges the figures.
//!
//! ```text
//! cargo build --release -p shardgate --example openloop
//! target/release/examples/openloop --url 'http://127.0.0.1:8080/api/v1/users/bench10k-{n}' \
//!     --connections 10000 --rate 2100 --duration 30 --warmup 5 --json
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use http::header::HOST;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

type Conn = SendRequest<Empty<Bytes>>;

/// Placeholder for `{n}` while the URL goes through the URI parser (braces are not valid there).
const SENTINEL: &str = "ZqOpenLoopIdZq";

#[derive(Parser, Debug)]
#[command(
    name = "openloop",
    about = "Open-model (constant arrival rate) HTTP/1.1 load test over many keep-alive connections"
)]
struct Args {
    /// Target URL, loopback hosts only (127.0.0.1, localhost, [::1]). Each placeholder "n" in
    /// curly braces becomes a random id in 0..--ids, zero-padded to --pad digits.
    // (clap turns a literal brace-n-brace in help text into a line break, hence the wording.)
    #[arg(long)]
    url: String,
    /// Keep-alive connections to open (and keep) before measuring.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Target arrival rate, requests per second.
    #[arg(long, default_value_t = 2100.0)]
    rate: f64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Warm-up seconds: sent at the same rate, not recorded.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// The placeholder's ids are drawn uniformly from 0..ids.
    #[arg(long, default_value_t = 1000)]
    ids: u64,
    /// The placeholder's ids are zero-padded to this many digits.
    #[arg(long, default_value_t = 3)]
    pad: usize,
    /// Also print one JSON line with the summary.
    #[arg(long)]
    json: bool,
    /// Connections being opened at the same time in phase 1.
    #[arg(long, default_value_t = 500)]
    connect_concurrency: usize,
    /// Give up on one connection attempt after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// After the last scheduled send, wait at most this many seconds for responses in flight.
    #[arg(long, default_value_t = 10.0)]
    grace: f64,
    /// Send one unrecorded request on every connection in phase 1, so the server has
    /// accepted and served each of them before the clock starts.
    #[arg(long)]
    prime: bool,
}

fn invalid(msg: String) -> ! {
    Args::command().error(ErrorKind::ValueValidation, msg).exit()
}

/// Where to connect and what to send.
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    /// The path-and-query split at each `{n}`; one element when there is no `{n}`.
    parts: Vec<String>,
    /// The parsed URI when there is no `{n}` (cloned per request).
    fixed: Option<Uri>,
    ids: u64,
    pad: usize,
}

impl Target {
    fn parse(url: &str, ids: u64, pad: usize) -> Result<Self, String> {
        let uri: Uri = url.replace("{n}", SENTINEL).parse().map_err(|e| format!("--url {url:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--url {url:?}: only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| format!("--url {url:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("--url {url:?}: user info is not supported"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let ip = match host.as_str() {
            "localhost" | "127.0.0.1" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "::1" => IpAddr::V6(Ipv6Addr::LOCALHOST),
            other => {
                return Err(format!(
                    "--url {url:?}: refusing non-loopback host {other:?} (127.0.0.1, localhost, [::1] only)"
                ))
            }
        };
        let addr = SocketAddr::new(ip, uri.port_u16().unwrap_or(80));
        let host = HeaderValue::from_str(authority.as_str()).map_err(|e| format!("--url {url:?}: {e}"))?;
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let pq = if pq.is_empty() { "/" } else { pq };
        let parts: Vec<String> = pq.split(SENTINEL).map(str::to_owned).collect();
        let fixed =
            if parts.len() == 1 { Some(pq.parse::<Uri>().map_err(|e| format!("--url {url:?}: {e}"))?) } else { None };
        Ok(Target { addr, host, parts, fixed, ids, pad })
    }

    fn uri(&self, rng: &mut SplitMix64) -> Uri {
        if let Some(u) = &self.fixed {
            return u.clone();
        }
        let mut s = String::with_capacity(self.parts.iter().map(String::len).sum::<usize>() + 24);
        for (k, part) in self.parts.iter().enumerate() {
            if k > 0 {
                let n = rng.below(self.ids);
                s.push_str(&format!("{n:0width$}", width = self.pad));
            }
            s.push_str(part);
        }
        // Validated at start-up with a placeholder; a decimal number cannot make it invalid.
        Uri::try_from(s).expect("path stays a valid URI")
    }

    fn request(&self, uri: Uri) -> Request<Empty<Bytes>> {
        let mut req = Request::new(Empty::new());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = uri;
        req.headers_mut().insert(HOST, self.host.clone());
        req
    }
}

/// Small, fast, good-enough PRNG for picking ids (no extra crates).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (multiply-shift; bias is negligible for any n used here).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Open one keep-alive connection and spawn its driver; optionally serve one request on it.
async fn connect(target: &Target, timeout: Duration, prime: Option<Uri>) -> Result<Conn, String> {
    let fut = async {
        let stream = TcpStream::connect(target.addr).await.map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        if let Some(uri) = prime {
            exchange(&mut sender, target.request(uri)).await?;
        }
        Ok(sender)
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| "connect: timed out".to_owned())?
}

/// Send one request on an idle connection and read the whole response body.
async fn exchange(sender: &mut Conn, req: Request<Empty<Bytes>>) -> Result<u16, String> {
    sender.ready().await.map_err(|e| format!("send: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| format!("body: {e}"))?;
    }
    Ok(status)
}

#[derive(Default)]
struct Stats {
    /// Latencies (µs) of measured requests that got a complete response, any status.
    latencies: Mutex<Vec<u64>>,
    non_2xx: AtomicU64,
    send_errors: AtomicU64,
    body_errors: AtomicU64,
    /// Measured requests handed to a connection / finished (response or error).
    measured_sent: AtomicU64,
    measured_done: AtomicU64,
    /// Latest completion of a measured request, µs after the measured window opened.
    last_done_us: AtomicU64,
    warmup_errors: AtomicU64,
    warmup_non_2xx: AtomicU64,
    /// Idle connections found closed (by the server) when their turn came, or that failed a send.
    conns_lost: AtomicU64,
    reconnects: AtomicU64,
    reconnect_failures: AtomicU64,
    first_error: Mutex<Option<String>>,
    in_flight: AtomicU64,
}

impl Stats {
    fn note_error(&self, e: &str) {
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(e.to_owned());
        }
    }
}

struct Ctx {
    target: Target,
    stats: Stats,
    idle: mpsc::UnboundedSender<Conn>,
    connect_timeout: Duration,
}

/// Replace a lost connection in the background so the pool keeps its size.
fn reconnect(ctx: &Arc<Ctx>) {
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        match connect(&ctx.target, ctx.connect_timeout, None).await {
            Ok(c) => {
                ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                let _ = ctx.idle.send(c);
            }
            Err(e) => {
                ctx.stats.reconnect_failures.fetch_add(1, Ordering::Relaxed);
                ctx.stats.note_error(&format!("reconnect: {e}"));
            }
        }
    });
}

fn raise_nofile() -> String {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => format!("{soft} -> {hard}"),
            Err(e) => format!("{soft} (raising to {hard} failed: {e})"),
        },
        Ok((soft, _)) => format!("{soft}"),
        Err(e) => format!("unknown ({e})"),
    }
}

/// How many measured requests are scheduled from request `i` on (same arithmetic as the dispatcher).
fn measured_from(mut i: u64, args: &Args) -> u64 {
    let total_secs = args.warmup + args.duration;
    let mut n = 0;
    loop {
        let offset = i as f64 / args.rate;
        if offset >= total_secs {
            return n;
        }
        if offset >= args.warmup {
            n += 1;
        }
        i += 1;
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    if !(args.rate.is_finite() && args.rate > 0.0) {
        invalid(format!("--rate must be a positive number, got {}", args.rate));
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        invalid(format!("--duration must be positive, got {}", args.duration));
    }
    for (name, v) in [("--warmup", args.warmup), ("--grace", args.grace)] {
        if !(v.is_finite() && v >= 0.0) {
            invalid(format!("{name} must be >= 0, got {v}"));
        }
    }
    if !(args.connect_timeout.is_finite() && args.connect_timeout > 0.0) {
        invalid(format!("--connect-timeout must be positive, got {}", args.connect_timeout));
    }
    if args.connections == 0 || args.connect_concurrency == 0 || args.ids == 0 {
        invalid("--connections, --connect-concurrency and --ids must be at least 1".to_owned());
    }
    if args.pad > 20 {
        invalid(format!("--pad must be at most 20, got {}", args.pad));
    }
    let target = Target::parse(&args.url, args.ids, args.pad).unwrap_or_else(|e| invalid(e));

    let nofile = raise_nofile();
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<Conn>();
    let ctx = Arc::new(Ctx {
        target,
        stats: Stats::default(),
        idle: idle_tx,
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
    });
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let mut rng = SplitMix64(seed);

    eprintln!(
        "openloop: {} -> {} | {} connections, {} req/s, {}s warm-up + {}s measured | RLIMIT_NOFILE {}",
        args.url, ctx.target.addr, args.connections, args.rate, args.warmup, args.duration, nofile
    );

    // ---- Phase 1: open every connection (not measured). ----
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut set = JoinSet::new();
    for _ in 0..args.connections {
        let permit = Arc::clone(&sem).acquire_owned().await.expect("semaphore is never closed");
        let ctx = Arc::clone(&ctx);
        let prime = args.prime.then(|| ctx.target.uri(&mut rng));
        set.spawn(async move {
            let r = connect(&ctx.target, ctx.connect_timeout, prime).await;
            drop(permit);
            r
        });
    }
    let (mut opened, mut failed) = (0u64, 0u64);
    let mut connect_error: Option<String> = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(conn)) => {
                opened += 1;
                let _ = ctx.idle.send(conn);
            }
            Ok(Err(e)) => {
                failed += 1;
                connect_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                connect_error.get_or_insert(format!("task: {e}"));
            }
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "phase 1: {opened} connections open, {failed} failed in {connect_secs:.3}s{}{}",
        if args.prime { " (each primed with one request)" } else { "" },
        connect_error.as_deref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
    );

    // ---- Phase 2: constant arrival rate. ----
    let total_secs = args.warmup + args.duration;
    let start = Instant::now() + Duration::from_millis(20);
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let hard_deadline = start + Duration::from_secs_f64(total_secs + args.grace);
    let mut unsent_measured = 0u64;
    let mut waited_for_conn = 0u64;
    let mut max_lag_us = 0u64;
    if opened > 0 {
        eprintln!("phase 2: sending for {total_secs}s ...");
        let mut i: u64 = 0;
        'dispatch: loop {
            let offset = i as f64 / args.rate;
            if offset >= total_secs {
                break;
            }
            let scheduled = start + Duration::from_secs_f64(offset);
            let measured = offset >= args.warmup;
            if scheduled > Instant::now() {
                tokio::time::sleep_until(scheduled).await;
            }
            let lag = Instant::now().saturating_duration_since(scheduled).as_micros() as u64;
            if measured {
                max_lag_us = max_lag_us.max(lag);
            }
            // Next idle connection; wait for one if all are busy (the wait counts in latency).
            let mut conn = loop {
                let c = match idle_rx.try_recv() {
                    Ok(c) => c,
                    Err(_) => {
                        if measured {
                            waited_for_conn += 1;
                        }
                        match tokio::time::timeout_at(hard_deadline, idle_rx.recv()).await {
                            Ok(Some(c)) => c,
                            _ => {
                                // No connection came back before the hard deadline: stop here.
                                unsent_measured = measured_from(i, &args);
                                ctx.stats.note_error("no idle connection before the deadline");
                                break 'dispatch;
                            }
                        }
                    }
                };
                if c.is_closed() {
                    ctx.stats.conns_lost.fetch_add(1, Ordering::Relaxed);
                    reconnect(&ctx);
                    continue;
                }
                break c;
            };
            let req = ctx.target.request(ctx.target.uri(&mut rng));
            if measured {
                ctx.stats.measured_sent.fetch_add(1, Ordering::Relaxed);
            }
            ctx.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            let ctx2 = Arc::clone(&ctx);
            tokio::spawn(async move {
                let ctx = ctx2;
                let res = exchange(&mut conn, req).await;
                let done = Instant::now();
                let st = &ctx.stats;
                match res {
                    Ok(status) => {
                        let _ = ctx.idle.send(conn);
                        let non_2xx = !(200..300).contains(&status);
                        if measured {
                            let us = done.saturating_duration_since(scheduled).as_micros() as u64;
                            st.latencies.lock().unwrap().push(us);
                            if non_2xx {
                                st.non_2xx.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if non_2xx {
                            st.warmup_non_2xx.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        drop(conn);
                        st.conns_lost.fetch_add(1, Ordering::Relaxed);
                        reconnect(&ctx);
                        st.note_error(&e);
                        if !measured {
                            st.warmup_errors.fetch_add(1, Ordering::Relaxed);
                        } else if e.starts_with("body") {
                            st.body_errors.fetch_add(1, Ordering::Relaxed);
                        } else {
                            st.send_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if measured {
                    let since = done.saturating_duration_since(measure_start).as_micros() as u64;
                    st.last_done_us.fetch_max(since, Ordering::Relaxed);
                    st.measured_done.fetch_add(1, Ordering::Relaxed);
                }
                st.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            i += 1;
        }
        // Let the requests in flight finish, up to the hard deadline.
        while ctx.stats.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < hard_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    } else {
        unsent_measured = measured_from(0, &args);
    }

    // ---- Report. ----
    let st = &ctx.stats;
    let mut lat = std::mem::take(&mut *st.latencies.lock().unwrap());
    lat.sort_unstable();
    let responses = lat.len() as u64;
    let sent = st.measured_sent.load(Ordering::Relaxed);
    let unfinished = sent.saturating_sub(st.measured_done.load(Ordering::Relaxed));
    let send_errors = st.send_errors.load(Ordering::Relaxed);
    let body_errors = st.body_errors.load(Ordering::Relaxed);
    let errors = send_errors + body_errors + unfinished + unsent_measured;
    let non_2xx = st.non_2xx.load(Ordering::Relaxed);
    let measured_secs = args.duration.max(st.last_done_us.load(Ordering::Relaxed) as f64 / 1e6);
    let achieved = responses as f64 / measured_secs;
    let pct = |p: f64| -> u64 {
        if lat.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * lat.len() as f64).ceil() as usize;
        lat[rank.clamp(1, lat.len()) - 1]
    };
    let (p50, p90, p99, p999) = (pct(50.0), pct(90.0), pct(99.0), pct(99.9));
    let max = lat.last().copied().unwrap_or(0);
    let conns_lost = st.conns_lost.load(Ordering::Relaxed);
    let reconnects = st.reconnects.load(Ordering::Relaxed);
    let reconnect_failures = st.reconnect_failures.load(Ordering::Relaxed);
    let warmup_errors = st.warmup_errors.load(Ordering::Relaxed);
    let warmup_non_2xx = st.warmup_non_2xx.load(Ordering::Relaxed);
    let first_error = st.first_error.lock().unwrap().clone().or(connect_error);

    let rows: Vec<(&str, String)> = vec![
        ("url", args.url.clone()),
        ("connections opened", opened.to_string()),
        ("connections failed", failed.to_string()),
        ("connect time (s)", format!("{connect_secs:.3}")),
        ("warm-up / measured (s)", format!("{} / {}", args.warmup, args.duration)),
        ("target rate (req/s)", format!("{:.1}", args.rate)),
        ("achieved rate (req/s)", format!("{achieved:.1}")),
        ("requests measured", responses.to_string()),
        ("errors", errors.to_string()),
        ("  send / body", format!("{send_errors} / {body_errors}")),
        ("  unfinished / unsent", format!("{unfinished} / {unsent_measured}")),
        ("non-2xx", non_2xx.to_string()),
        ("latency p50 (ms)", ms(p50)),
        ("latency p90 (ms)", ms(p90)),
        ("latency p99 (ms)", ms(p99)),
        ("latency p99.9 (ms)", ms(p999)),
        ("latency max (ms)", ms(max)),
        ("max dispatcher lag (ms)", ms(max_lag_us)),
        ("sends that waited for a conn", waited_for_conn.to_string()),
        ("conns lost / reconnected", format!("{conns_lost} / {reconnects} ({reconnect_failures} failed)")),
        ("warm-up errors / non-2xx", format!("{warmup_errors} / {warmup_non_2xx}")),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("{}", "-".repeat(width + 24));
    for (k, v) in &rows {
        println!("{k:<width$}  {v}");
    }
    if let Some(e) = &first_error {
        println!("{:<width$}  {e}", "first error");
    }
    println!("{}", "-".repeat(width + 24));

    if args.json {
        println!(
            "{{\"url\":{},\"connections_opened\":{opened},\"connections_failed\":{failed},\"connect_secs\":{connect_secs:.3},\
             \"warmup_secs\":{},\"duration_secs\":{},\"target_rate\":{:.1},\"achieved_rate\":{achieved:.1},\
             \"requests\":{responses},\"errors\":{errors},\"send_errors\":{send_errors},\"body_errors\":{body_errors},\
             \"unfinished\":{unfinished},\"unsent\":{unsent_measured},\"non_2xx\":{non_2xx},\"p50_ms\":{},\"p90_ms\":{},\
             \"p99_ms\":{},\"p999_ms\":{},\"max_ms\":{},\"max_dispatch_lag_ms\":{},\"waited_for_conn\":{waited_for_conn},\
             \"conns_lost\":{conns_lost},\"reconnects\":{reconnects},\"reconnect_failures\":{reconnect_failures},\
             \"warmup_errors\":{warmup_errors},\"warmup_non_2xx\":{warmup_non_2xx},\"first_error\":{}}}",
            json_str(&args.url),
            args.warmup,
            args.duration,
            args.rate,
            ms(p50),
            ms(p90),
            ms(p99),
            ms(p999),
            ms(max),
            ms(max_lag_us),
            first_error.as_deref().map(json_str).unwrap_or_else(|| "null".to_owned()),
        );
    }
}
