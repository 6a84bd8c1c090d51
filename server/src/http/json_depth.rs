//! The nesting guard every JSON body passes before it is parsed.
//!
//! sonic-rs (like most serde parsers) descends one stack frame per `[` or `{`, with no limit
//! of its own: about 80,000 levels, a 160 KiB body, overflowed a worker's stack and aborted
//! the process with every request in flight on it. This scan is a loop with a counter, not
//! a recursion, so no input can overflow anything here; it stops at the first level past
//! [`MAX_DEPTH`]. It reads each byte once and allocates nothing; the parser after it
//! re-reads the same bytes, which for bodies of our size costs well under a microsecond.

/// The deepest nesting a request body may have. Our bodies are one object holding at most
/// one array of strings (depth 2); 64 leaves room for any client's envelope and is far
/// below what a 2 MiB thread stack survives.
pub const MAX_DEPTH: usize = 64;

/// The depth at which `body` first passes `max`, or `None` when it never does.
///
/// Brackets inside strings (with their escapes) do not count. Brackets that close more than
/// they opened are left to the parser to refuse: this is a depth bound, not a validator.
pub fn too_deep(body: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> Vec<u8> {
        let mut v = vec![b'['; n];
        v.extend(std::iter::repeat_n(b']', n));
        v
    }

    #[test]
    fn depth_up_to_the_limit_passes_and_one_more_is_refused() {
        assert_eq!(too_deep(&nested(MAX_DEPTH), MAX_DEPTH), None);
        assert_eq!(too_deep(&nested(MAX_DEPTH + 1), MAX_DEPTH), Some(MAX_DEPTH + 1));
        assert_eq!(too_deep(&nested(500_000), MAX_DEPTH), Some(MAX_DEPTH + 1));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let s = format!(r#"{{"first_name": "{}", "last_name": "\"{}\\"}}"#, "[".repeat(1000), "{".repeat(1000));
        assert_eq!(too_deep(s.as_bytes(), 2), None);
        // An escaped quote does not end the string; an escaped backslash does not escape it.
        assert_eq!(too_deep(br#"["\"[[[["]"#, 1), None);
        assert_eq!(too_deep(br#"["\\",[[["#, 2), Some(3));
    }

    #[test]
    fn siblings_do_not_add_up_and_mixed_brackets_count() {
        let wide = format!("[{}]", "[],".repeat(10_000) + "[]");
        assert_eq!(too_deep(wide.as_bytes(), 2), None);
        assert_eq!(too_deep(br#"{"a":[{"b":[{"c":[]}]}]}"#, 5), Some(6));
        assert_eq!(too_deep(br#"{"a":[{"b":[{"c":[]}]}]}"#, 6), None);
    }

    #[test]
    fn extra_closers_never_underflow() {
        assert_eq!(too_deep(b"]]]]}}}}[[", 2), None);
        assert_eq!(too_deep(b"]]]][[[", 2), Some(3));
    }
}
