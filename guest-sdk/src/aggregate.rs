//! Windowed aggregations: the `flowgate:plugin/aggregator` world.
//!
//! ```no_run
//! use flowgate_sdk::{Aggregator, Error, EventRef, Window};
//!
//! struct Count;
//!
//! #[flowgate_sdk::aggregator]
//! impl Aggregator for Count {
//!     type Acc = u64;
//!
//!     fn add(acc: &mut u64, _event: &EventRef) -> Result<(), Error> {
//!         *acc += 1;
//!         Ok(())
//!     }
//!
//!     fn merge(a: u64, b: u64) -> Option<u64> {
//!         Some(a + b)
//!     }
//!
//!     fn finish(acc: u64, _key: Option<&[u8]>, _window: Window) -> Result<Vec<u8>, Error> {
//!         Ok(acc.to_string().into_bytes())
//!     }
//! }
//! ```

use flowgate_batch::Columns;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::flowgate::plugin::types::{Batch, RowError};
use crate::__private_agg::flowgate::plugin::windows::{AddResult, Pane};
use crate::{Config, Error, EventRef};

/// A window's bounds in milliseconds since the Unix epoch (`end` exclusive).
pub use crate::__private_agg::flowgate::plugin::windows::Window;

/// A fold of events into an accumulator per key and window; mark the impl with
/// [`aggregator`](crate::aggregator).
///
/// Accumulators cross to the host as JSON of `Acc`; keep them small (counts, sums, sketches),
/// not lists of events.
pub trait Aggregator {
    /// The accumulator; `Default` is the empty window.
    type Acc: Default + Clone + Serialize + DeserializeOwned;

    /// Checks the config once, at load time (read it later with [`crate::config()`]).
    fn init(_config: &Config) -> Result<(), Error> {
        Ok(())
    }

    /// Adds an event. On an error the event goes by the stage's error policy (an
    /// `invalid-input` error: to the dead-letter topic) and `acc` is left as it was.
    fn add(acc: &mut Self::Acc, event: &EventRef<'_>) -> Result<(), Error>;

    /// Both accumulators in one (session windows that grow into each other). `None`: the
    /// aggregation cannot merge, and cannot run session windows.
    fn merge(_a: Self::Acc, _b: Self::Acc) -> Option<Self::Acc> {
        None
    }

    /// The output value of a window.
    fn finish(acc: Self::Acc, key: Option<&[u8]>, window: Window) -> Result<Vec<u8>, Error>;
}

fn decode<A: DeserializeOwned>(bytes: &[u8]) -> Result<A, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::fatal(format!(
            "an accumulator does not decode ({e}); was it written by another version of this plugin?"
        ))
    })
}

fn encode<A: Serialize>(acc: &A) -> Vec<u8> {
    serde_json::to_vec(acc).expect("an accumulator serialises")
}

/// `init` of the aggregator world.
#[doc(hidden)]
pub fn init<T: Aggregator>(pairs: Vec<(String, String)>) -> Result<(), Error> {
    crate::run_init(pairs, Some(T::init))
}

/// `create` of the aggregator world.
#[doc(hidden)]
pub fn create<T: Aggregator>() -> Vec<u8> {
    encode(&T::Acc::default())
}

/// `add` of the aggregator world: decodes each accumulator once per call.
#[doc(hidden)]
pub fn add<T: Aggregator>(
    accumulators: Vec<Vec<u8>>,
    input: Batch,
    slots: Vec<u32>,
) -> Result<AddResult, Error> {
    let cols = Columns::new(flowgate_batch::parts_of!(input))
        .map_err(|e| Error::fatal(format!("host sent a malformed batch: {e}")))?;
    if slots.len() != cols.len() || slots.iter().any(|&s| s as usize >= accumulators.len()) {
        return Err(Error::fatal(
            "host sent slots that do not match the batch".to_owned(),
        ));
    }
    let mut accs: Vec<T::Acc> = accumulators
        .iter()
        .map(|a| decode(a))
        .collect::<Result<_, _>>()?;
    let mut failures = Vec::new();
    for (i, (event, &slot)) in cols.rows().zip(&slots).enumerate() {
        let acc = &mut accs[slot as usize];
        let before = acc.clone();
        match T::add(acc, &event) {
            Ok(()) => {}
            Err(Error::Fatal(m)) => return Err(Error::Fatal(m)),
            Err(error) => {
                *acc = before;
                failures.push(RowError {
                    row: i as u32,
                    error,
                });
            }
        }
    }
    Ok(AddResult {
        accumulators: accs.iter().map(encode).collect(),
        failures,
    })
}

/// `merge` of the aggregator world.
#[doc(hidden)]
pub fn merge<T: Aggregator>(a: Vec<u8>, b: Vec<u8>) -> Option<Vec<u8>> {
    let (a, b) = (decode(&a).ok()?, decode(&b).ok()?);
    T::merge(a, b).map(|m| encode(&m))
}

/// `finish` of the aggregator world.
#[doc(hidden)]
pub fn finish<T: Aggregator>(panes: Vec<Pane>) -> Result<Vec<Vec<u8>>, Error> {
    panes
        .into_iter()
        .map(|p| T::finish(decode(&p.accumulator)?, p.key.as_deref(), p.window))
        .collect()
}
