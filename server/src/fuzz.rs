//! One entry point for fuzzing: arbitrary bytes through every parser a request meets before
//! any I/O (route table, JSON bodies and their validation, query strings, cursors, ids, sale
//! codes, presence bodies and events, watch lists). None may panic; errors are fine.
//! [`nested`] turns a few bytes into a deeply nested body (up to the body limit), so the
//! fuzzer reaches depths that mutating short inputs never would.
//! `fuzz/fuzz_targets/request_input.rs` (cargo fuzz, `make fuzz`) and a property test in
//! `make test` call it.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;

use crate::http::body::parse_json;
use crate::users::model::{CreateBody, NewUser, PatchBody, UserPatch};

/// Feeds `data` to every parser. Never panics on any input (that is the property).
pub fn input(data: &[u8]) {
    input_within(data, BODY_LIMIT);
}

/// [`input`], with nested bodies built up to `max_body` bytes (the property tests keep
/// them small: a debug build scans a 1 MiB body in milliseconds, thousands of times).
pub fn input_within(data: &[u8], max_body: usize) {
    let text = String::from_utf8_lossy(data);
    for m in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS] {
        let _ = crate::http::router::find(&m, &text);
    }
    json_bodies(data);
    if let Some((body, depth)) = nested(data, max_body) {
        json_bodies(&body);
        record_depth(depth);
    }
    let _ = crate::users::list::parse_query(Some(&text));
    let _ = crate::users::list::decode_cursor(&text);
    let _ = crate::users::model::UserId::parse(&text);
    let _ = crate::sale::sale_id_param(Some(text.to_string()), "id");
    let _ = crate::sale::is_code(&text);
    let _ = crate::presence::Event::parse(data);
    let _ = crate::presence::sse::watch_list(Some(&text), 1000);
    for (k, v) in crate::http::body::query_pairs(Some(&text)) {
        let _ = (k.len(), v.len());
    }
}

/// Every JSON body type a route reads.
fn json_bodies(data: &[u8]) {
    if let Ok(b) = parse_json::<CreateBody>(data) {
        let _ = NewUser::parse(b);
    }
    if let Ok(b) = parse_json::<PatchBody>(data) {
        let _ = UserPatch::parse(b);
    }
    let _ = parse_json::<crate::presence::http::HeartbeatBody>(data);
    let _ = parse_json::<crate::presence::http::StatusBody>(data);
}

/// The largest body a route reads (the default `max_body_bytes`).
const BODY_LIMIT: usize = 1 << 20;

/// A nested body built from `data`, and its nesting depth: `data` is
/// `[d0, d1, d2, k, unit (k bytes), rest...]`; the body is `rest`, then `unit` repeated
/// `d` times (d = the 24-bit number d0 d1 d2), then the closers of every `[` and `{` in it,
/// innermost first, capped so the body stays within `max_body` bytes. With `unit` = `[` or
/// `{"a":` and any `d` past ~80,000 this is the body that once overflowed a worker's stack.
/// `None` when `data` is too short or `unit` opens nothing.
pub fn nested(data: &[u8], max_body: usize) -> Option<(Vec<u8>, usize)> {
    let (&[d0, d1, d2, k], tail) = data.split_first_chunk::<4>()?;
    let k = usize::from(k % 16).max(1);
    if tail.len() < k {
        return None;
    }
    let (unit, rest) = tail.split_at(k);
    let closers: Vec<u8> = unit
        .iter()
        .rev()
        .filter_map(|b| match b {
            b'[' => Some(b']'),
            b'{' => Some(b'}'),
            _ => None,
        })
        .collect();
    if closers.is_empty() {
        return None;
    }
    let want = (usize::from(d0) << 16) | (usize::from(d1) << 8) | usize::from(d2);
    let fit = max_body.saturating_sub(rest.len()) / (unit.len() + closers.len());
    let n = want.min(fit);
    let mut body = Vec::with_capacity(rest.len() + n * (unit.len() + closers.len()));
    body.extend_from_slice(rest);
    for _ in 0..n {
        body.extend_from_slice(unit);
    }
    for _ in 0..n {
        body.extend_from_slice(&closers);
    }
    Some((body, n * closers.len()))
}

/// The deepest body fed so far in this process; each time it at least doubles, one line
/// on stderr (`make fuzz` reports the last one as the depth it reached).
static DEEPEST: AtomicUsize = AtomicUsize::new(0);

fn record_depth(depth: usize) {
    let before = DEEPEST.fetch_max(depth, Ordering::Relaxed);
    if depth > before && (before == 0 || depth >= before.saturating_mul(2) || depth >= BODY_LIMIT / 2) {
        eprintln!("fuzz: deepest JSON body so far: {depth} levels");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn no_parser_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::input_within(&data, 4096);
        }

        #[test]
        fn no_parser_panics_on_json_like_text(s in r#"[\{\}\[\]":,a-z0-9_ \\.\-?=&%/]{0,200}"#) {
            super::input_within(s.as_bytes(), 4096);
        }
    }

    #[test]
    fn known_nasty_inputs() {
        for s in [
            &b""[..],
            b"{\"first_name\":\"\\ud800\"}",
            b"/api/v1/users/%00",
            b"cursor=99999999999999999999.x",
            b"limit=-1&offset=18446744073709551616",
            b"{\"userIds\":[\"a\",\"a\"],\"userIds\":[]}",
            b"a|ONLINE|-9223372036854775808",
            b"watch=,,,&watch=%ZZ",
            // 200,000 levels of `[`, and of `{"first_name":[` behind `{"id":"x",`.
            b"\x03\x0d\x40\x01[",
            b"\x03\x0d\x40\x0f{\"first_name\":[{\"id\":\"x\",",
        ] {
            super::input(s);
        }
    }

    #[test]
    fn nested_reaches_the_body_limit_and_no_further() {
        let (body, depth) = super::nested(b"\xff\xff\xff\x01[", super::BODY_LIMIT).unwrap();
        assert_eq!(body.len(), super::BODY_LIMIT);
        assert_eq!(depth, super::BODY_LIMIT / 2);
        let (body, depth) = super::nested(b"\x00\x00\x03\x05{\"a\":", super::BODY_LIMIT).unwrap();
        assert_eq!((body.as_slice(), depth), (&br#"{"a":{"a":{"a":}}}"#[..], 3));
        assert!(super::nested(b"\x00\x00\x03\x01a", 100).is_none(), "opens nothing");
        assert!(super::nested(b"\x00\x00", 100).is_none(), "too short");
    }
}
