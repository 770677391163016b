//! Feeds arbitrary bytes to the keyed-state snapshot decoder (entries and window panes, read
//! back from a stage checkpoint): it must return a state or an error, never panic. A snapshot
//! that decodes encodes to bytes that decode to the same encoding.
//!
//! Each input is tried twice: as is, and with a CRC appended that matches it, so the fuzzer
//! gets past the checksum and explores the layout.
#![no_main]

use flowgate::state::KeyedState;
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    if let Ok(state) = KeyedState::decode(data, usize::MAX) {
        let bytes = state.encode();
        let again = KeyedState::decode(&bytes, usize::MAX).expect("an encoded state decodes");
        assert_eq!(again.encode(), bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = b"FGS1".to_vec();
    fixed.extend_from_slice(data);
    let crc = crc32c::crc32c(&fixed);
    fixed.extend_from_slice(&crc.to_le_bytes());
    check(&fixed);
});
