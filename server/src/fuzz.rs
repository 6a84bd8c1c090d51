//! One entry point for fuzzing: arbitrary bytes through every parser a request meets before
//! any I/O (route table, JSON bodies and their validation, query strings, cursors, ids, sale
//! codes, presence bodies and events, watch lists). None may panic; errors are fine.
//! `fuzz/fuzz_targets/request_input.rs` (cargo fuzz, `make fuzz`) and a property test in
//! `make test` call it.

use http::Method;

use crate::http::body::parse_json;
use crate::users::model::{CreateBody, NewUser, PatchBody, UserPatch};

/// Feeds `data` to every parser. Never panics on any input (that is the property).
pub fn input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for m in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS] {
        let _ = crate::http::router::find(&m, &text);
    }
    if let Ok(b) = parse_json::<CreateBody>(data) {
        let _ = NewUser::parse(b);
    }
    if let Ok(b) = parse_json::<PatchBody>(data) {
        let _ = UserPatch::parse(b);
    }
    let _ = parse_json::<crate::presence::http::HeartbeatBody>(data);
    let _ = parse_json::<crate::presence::http::StatusBody>(data);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn no_parser_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::input(&data);
        }

        #[test]
        fn no_parser_panics_on_json_like_text(s in r#"[\{\}\[\]":,a-z0-9_ \\.\-?=&%/]{0,200}"#) {
            super::input(s.as_bytes());
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
        ] {
            super::input(s);
        }
    }
}
