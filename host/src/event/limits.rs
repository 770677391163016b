//! Per-record limits: the largest key, value and headers one record may carry into the log.
//!
//! Every path that appends records someone else made checks them here, with the same function:
//! a stage's plugin outputs (per event, per batch, window results), HTTP ingest and
//! `flowgate produce`. The defaults fit in Kafka's default 1 MiB message: a value up to 1 MiB,
//! and a key and headers small enough to index and route by (see docs/pipeline.md, `[limits]`).

use super::{Batch, Event, EventRef, parts};

/// The limits of one record. Header bytes are the names' and values' bytes, summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest key, bytes (`max-key-bytes`).
    pub max_key_bytes: usize,
    /// Largest value, bytes (`max-value-bytes`).
    pub max_value_bytes: usize,
    /// Most headers (`max-headers`).
    pub max_headers: usize,
    /// Most bytes of header names and values together (`max-header-bytes`).
    pub max_header_bytes: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_key_bytes: 64 << 10,
            max_value_bytes: 1 << 20,
            max_headers: 1_000,
            max_header_bytes: 64 << 10,
        }
    }
}

/// A record over one of its [`RecordLimits`]. The message names the limit's key (as written in
/// the pipeline file's `[limits]`, and as `--<key>` of `flowgate produce`) and both sizes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordLimitError {
    /// The key is too long.
    #[error("the key is {seen} bytes, over max-key-bytes = {max}")]
    KeyBytes {
        /// Bytes of the key.
        seen: usize,
        /// The limit.
        max: usize,
    },
    /// The value is too long.
    #[error("the value is {seen} bytes, over max-value-bytes = {max}")]
    ValueBytes {
        /// Bytes of the value.
        seen: usize,
        /// The limit.
        max: usize,
    },
    /// Too many headers.
    #[error("the record has {seen} headers, over max-headers = {max}")]
    Headers {
        /// Headers of the record.
        seen: usize,
        /// The limit.
        max: usize,
    },
    /// The headers' names and values are too long together.
    #[error("the headers' names and values are {seen} bytes, over max-header-bytes = {max}")]
    HeaderBytes {
        /// Bytes of the header names and values.
        seen: usize,
        /// The limit.
        max: usize,
    },
}

impl RecordLimitError {
    /// The key that raises the limit: `max-key-bytes`, `max-value-bytes`, `max-headers` or
    /// `max-header-bytes`.
    pub fn key(&self) -> &'static str {
        match self {
            RecordLimitError::KeyBytes { .. } => "max-key-bytes",
            RecordLimitError::ValueBytes { .. } => "max-value-bytes",
            RecordLimitError::Headers { .. } => "max-headers",
            RecordLimitError::HeaderBytes { .. } => "max-header-bytes",
        }
    }
}

impl RecordLimits {
    /// Checks one record; the first limit it is over is the error (key, value, header count,
    /// header bytes, in that order).
    pub fn check(&self, e: &EventRef<'_>) -> Result<(), RecordLimitError> {
        self.check_sizes(
            e.key.map_or(0, <[u8]>::len),
            e.value.len(),
            e.headers.len(),
            || e.headers.iter().map(|(n, v)| n.len() + v.len()).sum(),
        )
    }

    /// [`check`](Self::check) of an owned event.
    pub fn check_event(&self, e: &Event) -> Result<(), RecordLimitError> {
        self.check_sizes(
            e.key.as_ref().map_or(0, Vec::len),
            e.value.len(),
            e.headers.len(),
            || e.headers.iter().map(|h| h.name.len() + h.value.len()).sum(),
        )
    }

    fn check_sizes(
        &self,
        key: usize,
        value: usize,
        headers: usize,
        header_bytes: impl FnOnce() -> usize,
    ) -> Result<(), RecordLimitError> {
        if key > self.max_key_bytes {
            return Err(RecordLimitError::KeyBytes {
                seen: key,
                max: self.max_key_bytes,
            });
        }
        if value > self.max_value_bytes {
            return Err(RecordLimitError::ValueBytes {
                seen: value,
                max: self.max_value_bytes,
            });
        }
        if headers > self.max_headers {
            return Err(RecordLimitError::Headers {
                seen: headers,
                max: self.max_headers,
            });
        }
        let bytes = header_bytes();
        if bytes > self.max_header_bytes {
            return Err(RecordLimitError::HeaderBytes {
                seen: bytes,
                max: self.max_header_bytes,
            });
        }
        Ok(())
    }

    /// Whether every row of `batch` is within the limits for certain, from the sizes of its
    /// buffers alone (no row can hold more than a whole column): the common case costs no walk
    /// over the rows. False means some rows must be checked one by one.
    pub fn fits_whole(&self, batch: &Batch) -> bool {
        let p = parts(batch);
        p.keys.len() <= self.max_key_bytes
            && p.values.len() <= self.max_value_bytes
            && p.header_name_ends.len() <= self.max_headers
            && p.header_names.len() + p.header_values.len() <= self.max_header_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BatchBuilder, columns, finish};

    fn small() -> RecordLimits {
        RecordLimits {
            max_key_bytes: 4,
            max_value_bytes: 8,
            max_headers: 2,
            max_header_bytes: 6,
        }
    }

    fn first(key: Option<&[u8]>, value: &[u8], headers: &[(&[u8], &[u8])]) -> Batch {
        let mut b = BatchBuilder::default();
        b.push(key, value, 0, headers.iter().copied());
        finish(b)
    }

    /// Checks the first row, as a row of the batch and as an owned event: both give the same.
    fn check(batch: &Batch) -> Result<(), RecordLimitError> {
        let row = columns(batch).unwrap().row(0);
        let got = small().check(&row);
        assert_eq!(small().check_event(&crate::event::to_owned(&row)), got);
        got
    }

    #[test]
    fn each_limit_is_named_with_the_size_seen_and_a_record_at_the_limits_passes() {
        let at = first(Some(b"kkkk"), b"vvvvvvvv", &[(b"ab", b"c"), (b"d", b"ef")]);
        assert_eq!(check(&at), Ok(()));
        assert!(small().fits_whole(&at));

        let e = check(&first(Some(b"kkkkk"), b"", &[])).unwrap_err();
        assert_eq!(e, RecordLimitError::KeyBytes { seen: 5, max: 4 });
        assert_eq!(e.key(), "max-key-bytes");
        assert_eq!(e.to_string(), "the key is 5 bytes, over max-key-bytes = 4");

        let e = check(&first(None, b"vvvvvvvvv", &[])).unwrap_err();
        assert_eq!(e, RecordLimitError::ValueBytes { seen: 9, max: 8 });
        assert_eq!(e.key(), "max-value-bytes");

        let e = check(&first(None, b"", &[(b"a", b""), (b"b", b""), (b"c", b"")])).unwrap_err();
        assert_eq!(e, RecordLimitError::Headers { seen: 3, max: 2 });
        assert_eq!(e.key(), "max-headers");

        let e = check(&first(None, b"", &[(b"abcd", b"efg")])).unwrap_err();
        assert_eq!(e, RecordLimitError::HeaderBytes { seen: 7, max: 6 });
        assert_eq!(e.key(), "max-header-bytes");
    }

    #[test]
    fn a_batch_whose_rows_together_fit_needs_no_walk_and_one_that_does_not_is_walked() {
        let mut b = BatchBuilder::default();
        b.push(Some(b"kkk"), b"vvvvv", 0, []);
        b.push(Some(b"kkk"), b"vvvvv", 0, []);
        let batch = finish(b);
        // Together over the limits, each row within them.
        assert!(!small().fits_whole(&batch));
        let cols = columns(&batch).unwrap();
        assert!(cols.rows().all(|r| small().check(&r).is_ok()));
    }
}
