//! Hostile fixture: a stage whose `on-batch` returns a result that breaks the contract, as
//! config `forge` says, to check that the host refuses each forgery. `on-event` passes its
//! event on, so the per-event path works.
//!
//! - `failure-twice`: fails row 0 twice (each failure would dead-letter the event again);
//! - `failure-with-output`: passes every row on and fails row 0 too;
//! - `failure-out-of-range`: fails the row one past the batch's last;
//! - `origins-decreasing`: passes rows 1 and 0 on, in that order;
//! - `unordered-failures`: fails rows 1 and 0, in that order, and passes the rest on. This one
//!   keeps the contract, which asks no order of failures: each row fails once;
//! - `state-then-failure-twice`: writes the keyed-state entry `forged` (the stage must grant
//!   state), then fails row 0 twice: a result the host refuses must leave no state write.
use flowgate_sdk::__private::flowgate::plugin::types::{Batch, BatchResult, BytesColumn, RowError};
use flowgate_sdk::{Error, Event};

struct Forger;

fn fail(row: u32) -> RowError {
    RowError {
        row,
        error: Error::InvalidInput("forged".into()),
    }
}

fn column(values: &[&[u8]]) -> BytesColumn {
    let mut data = Vec::new();
    let mut ends = Vec::new();
    for v in values {
        data.extend_from_slice(v);
        ends.push(data.len() as u32);
    }
    BytesColumn { data, ends }
}

/// The rows `rows` of `input`, with no keys or headers.
fn rows_of(input: &Batch, rows: &[u32]) -> Batch {
    let value = |r: u32| {
        let r = r as usize;
        let start = if r == 0 {
            0
        } else {
            input.values.ends[r - 1] as usize
        };
        &input.values.data[start..input.values.ends[r] as usize]
    };
    let values: Vec<&[u8]> = rows.iter().map(|&r| value(r)).collect();
    Batch {
        values: column(&values),
        keys: column(&vec![&b""[..]; rows.len()]),
        has_key: vec![0; rows.len()],
        timestamps: rows.iter().map(|&r| input.timestamps[r as usize]).collect(),
        header_ends: vec![0; rows.len()],
        header_names: column(&[]),
        header_values: column(&[]),
    }
}

impl flowgate_sdk::__private::Guest for Forger {
    fn init(config: Vec<(String, String)>) -> Result<(), Error> {
        flowgate_sdk::__private::run_init(config, Some(|c| c.require("forge").map(|_| ())))
    }

    fn on_event(event: Event) -> Result<Vec<Event>, Error> {
        Ok(vec![event])
    }

    fn on_batch(input: Batch) -> Result<BatchResult, Error> {
        let rows = input.timestamps.len() as u32;
        let (origins, failures) = match flowgate_sdk::config().get("forge") {
            Some("failure-twice") => (vec![], vec![fail(0), fail(0)]),
            Some("failure-with-output") => ((0..rows).collect(), vec![fail(0)]),
            Some("failure-out-of-range") => (vec![], vec![fail(rows)]),
            Some("origins-decreasing") => (vec![1, 0], vec![]),
            Some("unordered-failures") => ((2..rows).collect(), vec![fail(1), fail(0)]),
            Some("state-then-failure-twice") => {
                flowgate_sdk::state::put(b"forged", b"1");
                (vec![], vec![fail(0), fail(0)])
            }
            other => return Err(Error::fatal(format!("unknown forge {other:?}"))),
        };
        Ok(BatchResult {
            output: rows_of(&input, &origins),
            origins,
            failures,
        })
    }
}

flowgate_sdk::__private::export_stage!(Forger with_types_in flowgate_sdk::__private);
