//! The columnar batch layout of the Flowgate plugin contract (`flowgate:plugin/types.batch`).
//!
//! A batch crosses the component boundary as a few flat buffers: values back to back with their
//! end offsets, keys likewise with a presence flag per row, one timestamp per row, and headers as
//! two more columns with a per-row end index. This crate holds the one implementation of that
//! layout, used by the host and by the Rust guest SDK alike:
//!
//! - [`Columns`] borrows the buffers, checks them once ([`Columns::new`]) and hands out rows as
//!   [`EventRef`]s that point into the buffers, with no allocation per row;
//! - [`BatchBuilder`] appends rows into fresh buffers, ready to be moved into the generated type.
//!
//! ```
//! use flowgate_batch::{BatchBuilder, Columns};
//!
//! let mut b = BatchBuilder::default();
//! b.push(Some(b"k"), b"hello", 7, [(&b"trace"[..], &b"1"[..])]);
//! b.push(None, b"world", 8, []);
//! let cols = Columns::new(b.parts()).unwrap();
//! assert_eq!(cols.len(), 2);
//! assert_eq!(cols.row(1).value, b"world");
//! assert_eq!(cols.row(0).headers.iter().next(), Some((&b"trace"[..], &b"1"[..])));
//! ```
#![deny(missing_docs)]

use std::fmt;

/// The buffers of one batch, borrowed. Field for field the WIT `batch` record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Parts<'a> {
    /// `values.data`
    pub values: &'a [u8],
    /// `values.ends`
    pub value_ends: &'a [u32],
    /// `keys.data`
    pub keys: &'a [u8],
    /// `keys.ends`
    pub key_ends: &'a [u32],
    /// `has-key`
    pub has_key: &'a [u8],
    /// `timestamps`
    pub timestamps: &'a [i64],
    /// `header-ends`
    pub header_ends: &'a [u32],
    /// `header-names.data`
    pub header_names: &'a [u8],
    /// `header-names.ends`
    pub header_name_ends: &'a [u32],
    /// `header-values.data`
    pub header_values: &'a [u8],
    /// `header-values.ends`
    pub header_value_ends: &'a [u32],
}

/// Borrows the buffers of a value of a generated WIT `batch` type (host or guest bindings alike)
/// as [`Parts`]: `parts_of!(batch)`.
#[macro_export]
macro_rules! parts_of {
    ($b:expr) => {{
        let b = &$b;
        $crate::Parts {
            values: &b.values.data,
            value_ends: &b.values.ends,
            keys: &b.keys.data,
            key_ends: &b.keys.ends,
            has_key: &b.has_key,
            timestamps: &b.timestamps,
            header_ends: &b.header_ends,
            header_names: &b.header_names.data,
            header_name_ends: &b.header_names.ends,
            header_values: &b.header_values.data,
            header_value_ends: &b.header_values.ends,
        }
    }};
}

/// Moves a [`BatchBuilder`]'s buffers into a generated WIT `batch` type:
/// `batch_from!(Batch, BytesColumn, builder)`, with both types in scope.
#[macro_export]
macro_rules! batch_from {
    ($batch:ident, $column:ident, $builder:expr) => {{
        let b: $crate::BatchBuilder = $builder;
        $batch {
            values: $column {
                data: b.values,
                ends: b.value_ends,
            },
            keys: $column {
                data: b.keys,
                ends: b.key_ends,
            },
            has_key: b.has_key,
            timestamps: b.timestamps,
            header_ends: b.header_ends,
            header_names: $column {
                data: b.header_names,
                ends: b.header_name_ends,
            },
            header_values: $column {
                data: b.header_values,
                ends: b.header_value_ends,
            },
        }
    }};
}

/// Why a set of buffers is not a valid batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// Two per-row columns disagree on the number of rows.
    RowCountMismatch {
        /// The column that disagrees.
        column: &'static str,
        /// Its number of entries.
        len: usize,
        /// The number of rows (`values.ends` length).
        rows: usize,
    },
    /// An end-offset column decreases or points past its data.
    BadEnds {
        /// The column.
        column: &'static str,
        /// The first bad entry.
        index: usize,
    },
    /// The header names and header values columns have different lengths.
    HeaderCountMismatch {
        /// Entries in `header-names.ends`.
        names: usize,
        /// Entries in `header-values.ends`.
        values: usize,
    },
    /// A `has-key` entry is neither 0 nor 1.
    BadKeyFlag {
        /// The row.
        row: usize,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::RowCountMismatch { column, len, rows } => write!(
                f,
                "batch column `{column}` has {len} entries but the batch has {rows} rows"
            ),
            BatchError::BadEnds { column, index } => write!(
                f,
                "batch column `{column}` entry {index} decreases or points past the end of its data"
            ),
            BatchError::HeaderCountMismatch { names, values } => write!(
                f,
                "batch has {names} header names but {values} header values"
            ),
            BatchError::BadKeyFlag { row } => {
                write!(f, "batch `has-key` entry {row} is neither 0 nor 1")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// Checks that `ends` is non-decreasing, within `data_len`, and ends exactly at `data_len`.
fn check_ends(column: &'static str, ends: &[u32], data_len: usize) -> Result<(), BatchError> {
    let mut prev = 0u32;
    for (index, &end) in ends.iter().enumerate() {
        if end < prev || end as usize > data_len {
            return Err(BatchError::BadEnds { column, index });
        }
        prev = end;
    }
    if prev as usize != data_len {
        return Err(BatchError::BadEnds {
            column,
            index: ends.len().saturating_sub(1),
        });
    }
    Ok(())
}

fn check_rows(column: &'static str, len: usize, rows: usize) -> Result<(), BatchError> {
    if len == rows {
        Ok(())
    } else {
        Err(BatchError::RowCountMismatch { column, len, rows })
    }
}

/// Slice `i` of a column: `data[ends[i-1]..ends[i]]`. Callers have validated `ends`.
#[inline]
fn slice<'a>(data: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &data[start..ends[i] as usize]
}

/// A validated batch: rows are read in place.
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    parts: Parts<'a>,
}

impl<'a> Columns<'a> {
    /// Checks the buffers once, so that reading rows afterwards cannot fail.
    pub fn new(parts: Parts<'a>) -> Result<Self, BatchError> {
        let rows = parts.value_ends.len();
        check_rows("keys.ends", parts.key_ends.len(), rows)?;
        check_rows("has-key", parts.has_key.len(), rows)?;
        check_rows("timestamps", parts.timestamps.len(), rows)?;
        check_rows("header-ends", parts.header_ends.len(), rows)?;
        check_ends("values.ends", parts.value_ends, parts.values.len())?;
        check_ends("keys.ends", parts.key_ends, parts.keys.len())?;
        check_ends(
            "header-names.ends",
            parts.header_name_ends,
            parts.header_names.len(),
        )?;
        check_ends(
            "header-values.ends",
            parts.header_value_ends,
            parts.header_values.len(),
        )?;
        if parts.header_name_ends.len() != parts.header_value_ends.len() {
            return Err(BatchError::HeaderCountMismatch {
                names: parts.header_name_ends.len(),
                values: parts.header_value_ends.len(),
            });
        }
        check_ends(
            "header-ends",
            parts.header_ends,
            parts.header_name_ends.len(),
        )?;
        if let Some(row) = parts.has_key.iter().position(|&f| f > 1) {
            return Err(BatchError::BadKeyFlag { row });
        }
        Ok(Columns { parts })
    }

    /// Number of rows.
    #[inline]
    pub fn len(&self) -> usize {
        self.parts.value_ends.len()
    }

    /// True when the batch has no rows.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffers.
    pub fn parts(&self) -> Parts<'a> {
        self.parts
    }

    /// Row `i`, pointing into the buffers. Panics if `i >= len()`.
    #[inline]
    pub fn row(&self, i: usize) -> EventRef<'a> {
        let p = &self.parts;
        let key = (p.has_key[i] == 1).then(|| slice(p.keys, p.key_ends, i));
        let start = if i == 0 {
            0
        } else {
            p.header_ends[i - 1] as usize
        };
        EventRef {
            key,
            value: slice(p.values, p.value_ends, i),
            timestamp: p.timestamps[i],
            headers: Headers {
                repr: HeadersRepr::Columns {
                    parts: self.parts,
                    start,
                    end: p.header_ends[i] as usize,
                },
            },
        }
    }

    /// All rows in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = EventRef<'a>> + '_ {
        (0..self.len()).map(|i| self.row(i))
    }
}

/// One event, borrowed from a batch or from an owned event.
#[derive(Clone, Copy, Debug)]
pub struct EventRef<'a> {
    /// Partitioning key, if the event has one.
    pub key: Option<&'a [u8]>,
    /// Payload.
    pub value: &'a [u8],
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Headers in order.
    pub headers: Headers<'a>,
}

impl<'a> EventRef<'a> {
    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// The headers of one row: `(name, value)` pairs.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    repr: HeadersRepr<'a>,
}

#[derive(Clone, Copy)]
enum HeadersRepr<'a> {
    /// Entries `start..end` of a batch's header columns.
    Columns {
        parts: Parts<'a>,
        start: usize,
        end: usize,
    },
    /// Pairs of an owned event.
    Pairs(&'a [(&'a [u8], &'a [u8])]),
}

impl<'a> Headers<'a> {
    /// No headers.
    pub const EMPTY: Headers<'static> = Headers {
        repr: HeadersRepr::Pairs(&[]),
    };

    /// Headers held as a slice of `(name, value)` pairs, viewed through the same type.
    pub fn from_pairs(pairs: &'a [(&'a [u8], &'a [u8])]) -> Self {
        Headers {
            repr: HeadersRepr::Pairs(pairs),
        }
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        match self.repr {
            HeadersRepr::Columns { start, end, .. } => end - start,
            HeadersRepr::Pairs(p) => p.len(),
        }
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Header `i` as `(name, value)`. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> (&'a [u8], &'a [u8]) {
        match self.repr {
            HeadersRepr::Columns {
                parts: p, start, ..
            } => (
                slice(p.header_names, p.header_name_ends, start + i),
                slice(p.header_values, p.header_value_ends, start + i),
            ),
            HeadersRepr::Pairs(p) => p[i],
        }
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let this = *self;
        (0..self.len()).map(move |i| this.get(i))
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Appends rows into fresh columnar buffers.
///
/// The fields are the buffers of the WIT `batch` record; move them into the generated type.
#[derive(Clone, Debug, Default)]
pub struct BatchBuilder {
    /// `values.data`
    pub values: Vec<u8>,
    /// `values.ends`
    pub value_ends: Vec<u32>,
    /// `keys.data`
    pub keys: Vec<u8>,
    /// `keys.ends`
    pub key_ends: Vec<u32>,
    /// `has-key`
    pub has_key: Vec<u8>,
    /// `timestamps`
    pub timestamps: Vec<i64>,
    /// `header-ends`
    pub header_ends: Vec<u32>,
    /// `header-names.data`
    pub header_names: Vec<u8>,
    /// `header-names.ends`
    pub header_name_ends: Vec<u32>,
    /// `header-values.data`
    pub header_values: Vec<u8>,
    /// `header-values.ends`
    pub header_value_ends: Vec<u32>,
}

/// A position in a [`BatchBuilder`], from [`BatchBuilder::mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    rows: usize,
    values: usize,
    keys: usize,
    headers: usize,
    header_names: usize,
    header_values: usize,
}

/// Converts a buffer length to a `u32` end offset. Batches are capped far below 4 GiB by the
/// host's per-call limits, and a guest has at most 4 GiB of memory.
#[inline]
fn end_of(buf: &[u8]) -> u32 {
    u32::try_from(buf.len()).expect("batch column larger than 4 GiB")
}

impl BatchBuilder {
    /// A builder with room for `rows` rows of about `value_bytes` value bytes in all.
    pub fn with_capacity(rows: usize, value_bytes: usize) -> Self {
        BatchBuilder {
            values: Vec::with_capacity(value_bytes),
            value_ends: Vec::with_capacity(rows),
            key_ends: Vec::with_capacity(rows),
            has_key: Vec::with_capacity(rows),
            timestamps: Vec::with_capacity(rows),
            header_ends: Vec::with_capacity(rows),
            ..Default::default()
        }
    }

    /// Number of rows so far.
    pub fn len(&self) -> usize {
        self.value_ends.len()
    }

    /// True when no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.value_ends.is_empty()
    }

    /// Appends one row.
    pub fn push<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        self.values.extend_from_slice(value);
        self.value_ends.push(end_of(&self.values));
        self.push_meta(key, timestamp, headers);
    }

    /// Appends one row whose value is written by `write` straight into the value buffer.
    pub fn push_with<'h>(
        &mut self,
        key: Option<&[u8]>,
        timestamp: i64,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        write(&mut self.values);
        self.value_ends.push(end_of(&self.values));
        self.push_meta(key, timestamp, headers);
    }

    /// Appends a copy of `event`.
    pub fn push_ref(&mut self, event: &EventRef<'_>) {
        self.push(
            event.key,
            event.value,
            event.timestamp,
            event.headers.iter(),
        );
    }

    fn push_meta<'h>(
        &mut self,
        key: Option<&[u8]>,
        timestamp: i64,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        if let Some(k) = key {
            self.keys.extend_from_slice(k);
        }
        self.key_ends.push(end_of(&self.keys));
        self.has_key.push(u8::from(key.is_some()));
        self.timestamps.push(timestamp);
        for (name, value) in headers {
            self.header_names.extend_from_slice(name);
            self.header_name_ends.push(end_of(&self.header_names));
            self.header_values.extend_from_slice(value);
            self.header_value_ends.push(end_of(&self.header_values));
        }
        let count = u32::try_from(self.header_name_ends.len()).expect("over 4 G headers");
        self.header_ends.push(count);
    }

    /// The buffers, borrowed.
    pub fn parts(&self) -> Parts<'_> {
        Parts {
            values: &self.values,
            value_ends: &self.value_ends,
            keys: &self.keys,
            key_ends: &self.key_ends,
            has_key: &self.has_key,
            timestamps: &self.timestamps,
            header_ends: &self.header_ends,
            header_names: &self.header_names,
            header_name_ends: &self.header_name_ends,
            header_values: &self.header_values,
            header_value_ends: &self.header_value_ends,
        }
    }

    /// Where the builder stands now, to [`rollback`](Self::rollback) to.
    pub fn mark(&self) -> Mark {
        Mark {
            rows: self.value_ends.len(),
            values: self.values.len(),
            keys: self.keys.len(),
            headers: self.header_name_ends.len(),
            header_names: self.header_names.len(),
            header_values: self.header_values.len(),
        }
    }

    /// Drops every row pushed since `mark` was taken.
    pub fn rollback(&mut self, mark: Mark) {
        self.values.truncate(mark.values);
        self.value_ends.truncate(mark.rows);
        self.keys.truncate(mark.keys);
        self.key_ends.truncate(mark.rows);
        self.has_key.truncate(mark.rows);
        self.timestamps.truncate(mark.rows);
        self.header_ends.truncate(mark.rows);
        self.header_names.truncate(mark.header_names);
        self.header_name_ends.truncate(mark.headers);
        self.header_values.truncate(mark.header_values);
        self.header_value_ends.truncate(mark.headers);
    }

    /// Empties the builder, keeping its allocations.
    pub fn clear(&mut self) {
        self.values.clear();
        self.value_ends.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.has_key.clear();
        self.timestamps.clear();
        self.header_ends.clear();
        self.header_names.clear();
        self.header_name_ends.clear();
        self.header_values.clear();
        self.header_value_ends.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Row = (Option<Vec<u8>>, Vec<u8>, i64, Vec<(Vec<u8>, Vec<u8>)>);

    fn row() -> impl Strategy<Value = Row> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            proptest::collection::vec(any::<u8>(), 0..32),
            any::<i64>(),
            proptest::collection::vec(
                (
                    proptest::collection::vec(any::<u8>(), 0..6),
                    proptest::collection::vec(any::<u8>(), 0..6),
                ),
                0..3,
            ),
        )
    }

    proptest! {
        #[test]
        fn rows_read_back_as_written(rows in proptest::collection::vec(row(), 0..40)) {
            let mut b = BatchBuilder::default();
            for (k, v, t, h) in &rows {
                b.push(k.as_deref(), v, *t, h.iter().map(|(n, v)| (&n[..], &v[..])));
            }
            let cols = Columns::new(b.parts()).unwrap();
            prop_assert_eq!(cols.len(), rows.len());
            for (i, (k, v, t, h)) in rows.iter().enumerate() {
                let r = cols.row(i);
                prop_assert_eq!(r.key, k.as_deref());
                prop_assert_eq!(r.value, &v[..]);
                prop_assert_eq!(r.timestamp, *t);
                let got: Vec<_> = r.headers.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
                prop_assert_eq!(&got, h);
            }
        }

        #[test]
        fn arbitrary_buffers_never_panic(
            values in proptest::collection::vec(any::<u8>(), 0..16),
            value_ends in proptest::collection::vec(0u32..20, 0..6),
            has_key in proptest::collection::vec(0u8..3, 0..6),
            header_ends in proptest::collection::vec(0u32..4, 0..6),
        ) {
            let n = value_ends.len();
            let ts = vec![0i64; n];
            let key_ends = vec![0u32; n];
            let parts = Parts {
                values: &values,
                value_ends: &value_ends,
                key_ends: &key_ends,
                has_key: &has_key,
                timestamps: &ts,
                header_ends: &header_ends,
                ..Parts::default()
            };
            if let Ok(cols) = Columns::new(parts) {
                for r in cols.rows() {
                    let _ = r.headers.iter().count();
                }
            }
        }
    }

    #[test]
    fn rollback_drops_rows_after_the_mark() {
        let mut b = BatchBuilder::default();
        b.push(Some(b"a"), b"one", 1, [(&b"h"[..], &b"x"[..])]);
        let mark = b.mark();
        b.push(Some(b"bb"), b"two", 2, [(&b"h2"[..], &b"y"[..])]);
        b.push(None, b"three", 3, []);
        b.rollback(mark);
        let mut one = BatchBuilder::default();
        one.push(Some(b"a"), b"one", 1, [(&b"h"[..], &b"x"[..])]);
        assert_eq!(format!("{:?}", b), format!("{:?}", one));
        assert_eq!(b.mark(), mark);
    }

    #[test]
    fn pair_headers_read_like_column_headers() {
        let pairs = [(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"2"[..])];
        let h = Headers::from_pairs(&pairs);
        assert_eq!(h.len(), 2);
        assert_eq!(h.iter().collect::<Vec<_>>(), pairs.to_vec());
        assert!(Headers::EMPTY.is_empty());
    }

    #[test]
    fn errors_name_the_column() {
        let parts = Parts {
            values: b"abc",
            value_ends: &[2, 1],
            key_ends: &[0, 0],
            has_key: &[0, 0],
            timestamps: &[0, 0],
            header_ends: &[0, 0],
            ..Parts::default()
        };
        let err = Columns::new(parts).unwrap_err();
        assert_eq!(
            err,
            BatchError::BadEnds {
                column: "values.ends",
                index: 1
            }
        );
        assert!(err.to_string().contains("values.ends"));

        let parts = Parts {
            value_ends: &[0],
            key_ends: &[0],
            has_key: &[0],
            timestamps: &[],
            header_ends: &[0],
            ..Parts::default()
        };
        assert!(matches!(
            Columns::new(parts),
            Err(BatchError::RowCountMismatch {
                column: "timestamps",
                len: 0,
                rows: 1
            })
        ));
    }
}
