//! Hostile fixture: a filter whose `keep-batch` returns a selection that breaks the contract,
//! as config `forge` says, to check that the host refuses each forgery. `keep` keeps every
//! event, so the per-event path works.
//!
//! - `unordered`: the kept rows 1, 0;
//! - `repeated-kept`: row 0 kept twice;
//! - `kept-out-of-range`: keeps the row one past the batch's last;
//! - `failure-out-of-range`: fails the row one past the batch's last;
//! - `failure-kept`: keeps row 0 and fails it too;
//! - `failure-twice`: fails row 0 twice (each failure would dead-letter the event again).
use flowgate_sdk::__private::flowgate::plugin::types::{Batch, RowError, Selection};
use flowgate_sdk::{Error, Event};

struct Forger;

impl flowgate_sdk::__private_filter::Guest for Forger {
    fn init(config: Vec<(String, String)>) -> Result<(), Error> {
        flowgate_sdk::__private::run_init(config, Some(|c| c.require("forge").map(|_| ())))
    }

    fn keep(_event: Event) -> Result<bool, Error> {
        Ok(true)
    }

    fn keep_batch(input: Batch) -> Result<Selection, Error> {
        let rows = input.timestamps.len() as u32;
        let fail = |row| RowError {
            row,
            error: Error::InvalidInput("forged".into()),
        };
        let (kept, failures) = match flowgate_sdk::config().get("forge") {
            Some("unordered") => (vec![1, 0], vec![]),
            Some("repeated-kept") => (vec![0, 0], vec![]),
            Some("kept-out-of-range") => (vec![0, rows], vec![]),
            Some("failure-out-of-range") => (vec![0], vec![fail(rows)]),
            Some("failure-kept") => (vec![0], vec![fail(0)]),
            Some("failure-twice") => (vec![], vec![fail(0), fail(0)]),
            other => return Err(Error::fatal(format!("unknown forge {other:?}"))),
        };
        Ok(Selection { kept, failures })
    }
}

flowgate_sdk::__private_filter::export_filter!(Forger with_types_in flowgate_sdk::__private_filter);
