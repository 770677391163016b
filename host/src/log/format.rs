//! The on-disk record batch (format version 1); the byte layout is in `docs/log-format.md`.
//!
//! A record batch holds the same columns as the WIT `batch` record, so the bytes read from a
//! segment become a plugin batch with one copy per column. Every batch carries its length, a
//! CRC-32C of everything after the CRC field, and a format version byte.

use flowgate_batch::{BatchBuilder, Parts};

use crate::event::{self, Batch};

/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the fixed batch header.
pub const HEADER_LEN: usize = 60;
/// Largest batch accepted, header included: a length field above it is garbage.
pub const MAX_BATCH_LEN: usize = 256 << 20;

/// Why bytes are not a valid batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer bytes than the header or the length field says (a torn write, or the end).
    #[error("truncated batch: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The length field is impossible.
    #[error("bad batch length {0}")]
    BadLength(u64),
    /// The CRC does not match the bytes.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the batch.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The batch was written by a newer Flowgate (its CRC is valid).
    #[error(
        "record batch format version {0} is newer than this build understands (version {VERSION}); \
         upgrade Flowgate to read this log"
    )]
    NewerVersion(u8),
    /// Version 0, flags or reserved bits set, or columns that do not add up.
    #[error("malformed batch: {0}")]
    Malformed(String),
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("batch sizes are bounded by MAX_BATCH_LEN")
}

/// Bytes `encode` will write for these parts.
pub fn encoded_len(parts: &[Parts<'_>]) -> usize {
    parts
        .iter()
        .map(|p| {
            let n = p.value_ends.len();
            let h = p.header_name_ends.len();
            8 * n
                + 4 * 3 * n
                + 4 * 2 * h
                + n
                + p.values.len()
                + p.keys.len()
                + p.header_names.len()
                + p.header_values.len()
        })
        .sum::<usize>()
        + HEADER_LEN
}

/// Appends one record batch holding the rows of all `parts` in order, numbered from
/// `base_offset`, and returns its header. The parts must be valid batches (as `Columns::new`
/// checks).
pub fn encode(base_offset: u64, parts: &[Parts<'_>], out: &mut Vec<u8>) -> BatchHeader {
    let start = out.len();
    out.reserve(encoded_len(parts));
    let n: usize = parts.iter().map(|p| p.value_ends.len()).sum();
    let h: usize = parts.iter().map(|p| p.header_name_ends.len()).sum();
    let sum = |f: fn(&Parts<'_>) -> usize| parts.iter().map(f).sum::<usize>();
    let (min_ts, max_ts) = parts
        .iter()
        .flat_map(|p| p.timestamps.iter().copied())
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));

    put_u32(out, 0); // length, patched below
    put_u32(out, 0); // crc, patched below
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&base_offset.to_le_bytes());
    put_u32(out, len32(n));
    out.extend_from_slice(&min_ts.to_le_bytes());
    out.extend_from_slice(&max_ts.to_le_bytes());
    put_u32(out, len32(h));
    put_u32(out, len32(sum(|p| p.values.len())));
    put_u32(out, len32(sum(|p| p.keys.len())));
    put_u32(out, len32(sum(|p| p.header_names.len())));
    put_u32(out, len32(sum(|p| p.header_values.len())));

    for p in parts {
        for t in p.timestamps {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
    // End offsets continue across parts: each part's ends are shifted by what came before.
    let ends = |out: &mut Vec<u8>, col: for<'a> fn(&Parts<'a>) -> (&'a [u32], usize)| {
        let mut base = 0usize;
        for p in parts {
            let (ends, len) = col(p);
            for e in ends {
                put_u32(out, len32(base + *e as usize));
            }
            base += len;
        }
    };
    ends(out, |p| (p.value_ends, p.values.len()));
    ends(out, |p| (p.key_ends, p.keys.len()));
    ends(out, |p| (p.header_ends, p.header_name_ends.len()));
    ends(out, |p| (p.header_name_ends, p.header_names.len()));
    ends(out, |p| (p.header_value_ends, p.header_values.len()));
    for p in parts {
        out.extend_from_slice(p.has_key);
    }
    for col in [
        (|p: &Parts<'_>| p.values) as for<'a> fn(&Parts<'a>) -> &'a [u8],
        |p| p.keys,
        |p| p.header_names,
        |p| p.header_values,
    ] {
        for p in parts {
            out.extend_from_slice(col(p));
        }
    }
    let total = out.len() - start;
    let len = len32(total - 4);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    BatchHeader {
        total_len: total,
        base_offset,
        count: len32(n),
        min_timestamp: min_ts,
        max_timestamp: max_ts,
    }
}

/// The header fields of a batch, read without checking the CRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Bytes of the whole batch, header included.
    pub total_len: usize,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Number of records.
    pub count: u32,
    /// Smallest record timestamp.
    pub min_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
}

impl BatchHeader {
    /// Offset after the last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks the batch at the start of `bytes` (length, CRC, version) and returns its header.
pub fn check(bytes: &[u8]) -> Result<BatchHeader, FormatError> {
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    }
    let total = u32_at(bytes, 0) as usize + 4;
    if !(HEADER_LEN..=MAX_BATCH_LEN).contains(&total) {
        return Err(FormatError::BadLength(total as u64));
    }
    if bytes.len() < total {
        return Err(FormatError::Truncated {
            need: total,
            have: bytes.len(),
        });
    }
    let stored = u32_at(bytes, 4);
    let computed = crc32c::crc32c(&bytes[8..total]);
    if stored != computed {
        return Err(FormatError::Crc { stored, computed });
    }
    match bytes[8] {
        VERSION => {}
        0 => return Err(FormatError::Malformed("version 0".into())),
        v => return Err(FormatError::NewerVersion(v)),
    }
    if bytes[9..12] != [0, 0, 0] {
        return Err(FormatError::Malformed("reserved bytes are set".into()));
    }
    Ok(BatchHeader {
        total_len: total,
        base_offset: u64_at(bytes, 12),
        count: u32_at(bytes, 20),
        min_timestamp: u64_at(bytes, 24) as i64,
        max_timestamp: u64_at(bytes, 32) as i64,
    })
}

/// Decodes the batch at the start of `bytes` into an owned batch, checking everything: length,
/// CRC, version, and that the columns form a valid batch.
pub fn decode(bytes: &[u8]) -> Result<(BatchHeader, Batch), FormatError> {
    let header = check(bytes)?;
    let b = &bytes[..header.total_len];
    let n = header.count as usize;
    let h = u32_at(b, 40) as usize;
    let lens = [
        u32_at(b, 44) as usize,
        u32_at(b, 48) as usize,
        u32_at(b, 52) as usize,
        u32_at(b, 56) as usize,
    ];
    let need = (HEADER_LEN as u128)
        + 8 * n as u128
        + 12 * n as u128
        + 8 * h as u128
        + n as u128
        + lens.iter().map(|&l| l as u128).sum::<u128>();
    if need != b.len() as u128 {
        return Err(FormatError::Malformed(format!(
            "columns need {need} bytes, the batch has {}",
            b.len()
        )));
    }
    let mut at = HEADER_LEN;
    let mut take = |len: usize| {
        let s = &b[at..at + len];
        at += len;
        s
    };
    let timestamps: Vec<i64> = take(8 * n)
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let mut u32s = |count: usize| -> Vec<u32> {
        take(4 * count)
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    };
    let value_ends = u32s(n);
    let key_ends = u32s(n);
    let header_ends = u32s(n);
    let header_name_ends = u32s(h);
    let header_value_ends = u32s(h);
    let has_key = take(n).to_vec();
    let values = take(lens[0]).to_vec();
    let keys = take(lens[1]).to_vec();
    let header_names = take(lens[2]).to_vec();
    let header_values = take(lens[3]).to_vec();
    let builder = BatchBuilder {
        values,
        value_ends,
        keys,
        key_ends,
        has_key,
        timestamps,
        header_ends,
        header_names,
        header_name_ends,
        header_values,
        header_value_ends,
    };
    flowgate_batch::Columns::new(builder.parts())
        .map_err(|e| FormatError::Malformed(e.to_string()))?;
    let lo = builder.timestamps.iter().copied().min().unwrap_or(i64::MAX);
    let hi = builder.timestamps.iter().copied().max().unwrap_or(i64::MIN);
    if (lo, hi) != (header.min_timestamp, header.max_timestamp) {
        return Err(FormatError::Malformed(format!(
            "header says timestamps {}..={}, records hold {lo}..={hi}",
            header.min_timestamp, header.max_timestamp
        )));
    }
    Ok((header, event::finish(builder)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Header, batch_of, columns, to_owned};
    use proptest::prelude::*;

    fn ev(key: Option<&[u8]>, value: &[u8], ts: i64, headers: &[(&str, &[u8])]) -> Event {
        Event {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            timestamp: ts,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn several_parts_encode_as_one_batch_with_continuous_offsets() {
        let a = batch_of(&[
            ev(Some(b"k"), b"one", 5, &[("h", b"1")]),
            ev(None, b"", 3, &[]),
        ]);
        let b = batch_of(&[ev(Some(b""), b"three", 9, &[("x", b""), ("y", b"2")])]);
        let mut out = Vec::new();
        encode(42, &[event::parts(&a), event::parts(&b)], &mut out);
        assert_eq!(
            out.len(),
            encoded_len(&[event::parts(&a), event::parts(&b)])
        );
        let (header, batch) = decode(&out).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.count, 3);
        assert_eq!((header.min_timestamp, header.max_timestamp), (3, 9));
        assert_eq!(header.next_offset(), 45);
        let rows: Vec<Event> = columns(&batch)
            .unwrap()
            .rows()
            .map(|r| to_owned(&r))
            .collect();
        assert_eq!(rows[0], ev(Some(b"k"), b"one", 5, &[("h", b"1")]));
        assert_eq!(rows[1], ev(None, b"", 3, &[]));
        assert_eq!(
            rows[2],
            ev(Some(b""), b"three", 9, &[("x", b""), ("y", b"2")])
        );
    }

    #[test]
    fn every_corruption_is_detected() {
        let batch = batch_of(&[ev(Some(b"key"), b"value", 1, &[("h", b"v")])]);
        let mut good = Vec::new();
        encode(0, &[event::parts(&batch)], &mut good);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(
                decode(&bad).is_err(),
                "flipping a bit of byte {i} went unnoticed"
            );
        }
        for cut in 0..good.len() {
            assert!(matches!(
                decode(&good[..cut]),
                Err(FormatError::Truncated { .. } | FormatError::BadLength(_))
            ));
        }
    }

    #[test]
    fn a_newer_version_is_refused_not_taken_for_garbage() {
        let batch = batch_of(&[ev(None, b"v", 1, &[])]);
        let mut out = Vec::new();
        encode(0, &[event::parts(&batch)], &mut out);
        out[8] = 2;
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&out).unwrap_err();
        assert_eq!(err, FormatError::NewerVersion(2));
        assert!(err.to_string().contains("upgrade Flowgate"));
    }

    proptest! {
        #[test]
        fn round_trips(rows in proptest::collection::vec(
            (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
             proptest::collection::vec(any::<u8>(), 0..40),
             any::<i64>()), 0..30), base in any::<u32>()) {
            let events: Vec<Event> = rows.iter().map(|(k, v, t)| ev(k.as_deref(), v, *t, &[("n", &v[..v.len().min(3)])])).collect();
            let batch = batch_of(&events);
            let mut out = Vec::new();
            encode(u64::from(base), &[event::parts(&batch)], &mut out);
            let (header, decoded) = decode(&out).unwrap();
            prop_assert_eq!(header.count as usize, events.len());
            let back: Vec<Event> = columns(&decoded).unwrap().rows().map(|r| to_owned(&r)).collect();
            prop_assert_eq!(back, events);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
