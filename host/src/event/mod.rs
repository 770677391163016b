//! Events and batches as the host holds them.
//!
//! The types are the ones generated from the WIT contract, so an event or a batch is lowered into
//! a plugin without conversion. [`Columns`] (from `flowgate-batch`) reads a batch's rows in place.

pub mod ingest;
pub mod limits;
pub mod ndjson;

pub use crate::wit::flowgate::plugin::types::{Batch, BytesColumn, Event, Header};
pub use flowgate_batch::{BatchBuilder, BatchError, Columns, EventRef, Headers, Parts};
pub use limits::{RecordLimitError, RecordLimits};

/// Headers whose names start with this are the host's (exactly-once markers, dead-letter
/// context, window bounds): plugins cannot write them (the host drops them from plugin
/// outputs) and the host's meaning for them is never taken from anyone else.
pub const HOST_HEADER_PREFIX: &str = "flowgate-";

/// The header that marks how far a producer's outputs in a partition go (exactly-once, see
/// `flow/producer.rs`). Only the producer that owns it writes it.
pub const EOS_HEADER: &str = "flowgate-eos";

/// `batch` without the headers whose names start with `prefix`, and how many were dropped. A
/// batch with no such header is returned as it is, without copying it. The batch must be
/// well formed (checked by [`columns`]); one that is not is returned as it is.
pub fn without_headers(batch: Batch, prefix: &[u8]) -> (Batch, usize) {
    let names = &batch.header_names.data;
    if prefix.is_empty() || !names.windows(prefix.len()).any(|w| w == prefix) {
        return (batch, 0);
    }
    let built = match columns(&batch) {
        Ok(cols) => {
            let mut dropped = 0;
            let mut b = BatchBuilder::with_capacity(cols.len(), batch.values.data.len());
            for row in cols.rows() {
                dropped += row
                    .headers
                    .iter()
                    .filter(|(n, _)| n.starts_with(prefix))
                    .count();
                let kept = row.headers.iter().filter(|(n, _)| !n.starts_with(prefix));
                b.push(row.key, row.value, row.timestamp, kept);
            }
            Some((finish(b), dropped))
        }
        Err(_) => None,
    };
    built.unwrap_or((batch, 0))
}

/// Borrows the buffers of a batch.
pub fn parts(batch: &Batch) -> Parts<'_> {
    flowgate_batch::parts_of!(batch)
}

/// Checks a batch (for example one a plugin returned) and views its rows.
pub fn columns(batch: &Batch) -> Result<Columns<'_>, BatchError> {
    Columns::new(parts(batch))
}

/// Moves a builder's buffers into a batch.
pub fn finish(b: BatchBuilder) -> Batch {
    flowgate_batch::batch_from!(Batch, BytesColumn, b)
}

/// Appends an owned event to a builder.
pub fn push_event(b: &mut BatchBuilder, e: &Event) {
    b.push(
        e.key.as_deref(),
        &e.value,
        e.timestamp,
        e.headers.iter().map(|h| (h.name.as_bytes(), &h.value[..])),
    );
}

/// A batch holding `events`, in order.
pub fn batch_of(events: &[Event]) -> Batch {
    let bytes = events.iter().map(|e| e.value.len()).sum();
    let mut b = BatchBuilder::with_capacity(events.len(), bytes);
    for e in events {
        push_event(&mut b, e);
    }
    finish(b)
}

/// The rows `kept` of `batch` (increasing indices below its length; checked by the caller), in
/// a batch of their own. Keeping every row copies the buffers whole.
pub fn select(batch: &Batch, kept: &[u32]) -> Result<Batch, BatchError> {
    let cols = columns(batch)?;
    if kept.len() == cols.len() {
        return Ok(batch.clone());
    }
    let bytes = kept.iter().map(|&r| cols.row(r as usize).value.len()).sum();
    let mut b = BatchBuilder::with_capacity(kept.len(), bytes);
    for &r in kept {
        b.push_ref(&cols.row(r as usize));
    }
    Ok(finish(b))
}

/// An owned copy of a row.
pub fn to_owned(e: &EventRef<'_>) -> Event {
    Event {
        key: e.key.map(<[u8]>::to_vec),
        value: e.value.to_vec(),
        timestamp: e.timestamp,
        headers: e
            .headers
            .iter()
            .map(|(n, v)| Header {
                name: String::from_utf8_lossy(n).into_owned(),
                value: v.to_vec(),
            })
            .collect(),
    }
}

/// A borrowed view of an owned event. `pairs` holds the header slices the view points into.
pub fn view<'a>(e: &'a Event, pairs: &'a mut Vec<(&'a [u8], &'a [u8])>) -> EventRef<'a> {
    pairs.extend(e.headers.iter().map(|h| (h.name.as_bytes(), &h.value[..])));
    EventRef {
        key: e.key.as_deref(),
        value: &e.value,
        timestamp: e.timestamp,
        headers: Headers::from_pairs(pairs),
    }
}
