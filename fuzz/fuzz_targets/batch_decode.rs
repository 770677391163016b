//! Feeds arbitrary bytes to the record-batch decoder: it must return an error or a batch whose
//! columns are valid, and never panic or read out of bounds. A batch that decodes must encode
//! back to exactly its bytes.
//!
//! Each input is tried twice: as is, and with its length and CRC fields made to match, so the
//! fuzzer gets past the checksum and explores the column layout.
#![no_main]

use flowgate::event;
use flowgate::log::format;
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    if let Ok((header, batch)) = format::decode(data) {
        let cols = event::columns(&batch).expect("decode returned an invalid batch");
        assert_eq!(cols.len(), header.count as usize);
        let mut again = Vec::new();
        let written = format::encode(header.base_offset, &[event::parts(&batch)], &mut again);
        assert_eq!(written, header);
        assert_eq!(&again[..], &data[..header.total_len]);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 8 {
        let mut fixed = data.to_vec();
        let len = (fixed.len() - 4) as u32;
        fixed[..4].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c(&fixed[8..]);
        fixed[4..8].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
});
