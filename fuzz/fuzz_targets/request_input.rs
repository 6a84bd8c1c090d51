//! Arbitrary bytes through every request parser (`shardgate::fuzz::input`): route table,
//! JSON bodies and their validation, query strings, cursors, ids, sale codes, presence.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shardgate::fuzz::input(data);
});
