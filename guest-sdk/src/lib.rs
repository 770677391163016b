//! Write Flowgate stream-processing plugins in Rust.
//!
//! A plugin is one function over an event, marked with the attribute of its stage kind:
//!
//! ```no_run
//! use flowgate_sdk::EventRef;
//!
//! #[flowgate_sdk::map]
//! fn uppercase(event: &EventRef) -> Vec<u8> {
//!     event.value.to_ascii_uppercase()
//! }
//! ```
//!
//! | attribute | the function returns | output |
//! |---|---|---|
//! | [`map`] | `Vec<u8>`, `String` (a new value; key, time and headers kept) or [`Event`] | one event |
//! | [`filter`] | `bool` | the input event, or nothing |
//! | [`filter_map`] | `Option<…>` of what `map` returns | zero or one event |
//! | [`flat_map`] | `Vec<…>` of what `map` returns | zero or more events |
//!
//! A `map` function may instead take a second argument, `out: &mut ValueWriter`, and write the
//! new value into it (returning `()` or `Result<(), E>`): the value goes straight into the output
//! buffer, with no `Vec` per event — the fastest form for byte transforms:
//!
//! ```no_run
//! use flowgate_sdk::{EventRef, ValueWriter};
//!
//! #[flowgate_sdk::map]
//! fn uppercase(event: &EventRef, out: &mut ValueWriter) {
//!     out.extend(event.value.iter().map(u8::to_ascii_uppercase));
//! }
//! ```
//!
//! A stage that never reads input values can say so, `#[flowgate_sdk::map(values = false)]`: the
//! host then passes its batches without values instead of copying them in. A `filter` may say
//! it too: it implements the `flowgate:plugin/filter` world, returns only the indices of the
//! rows it keeps, and the host passes those rows on from its own copy, values included.
//!
//! Each may instead return `Result<…, E>` with `E: Into<Error>`: an error fails that one event
//! (the host sends it to the dead-letter queue or retries it, by its [`Error`] kind), not the batch.
//!
//! The attribute implements both entry points of the `flowgate:plugin/stage` world: `on-event`,
//! and `on-batch`, which walks the batch's flat buffers in place (no allocation per input event)
//! and writes outputs straight into the output buffers. Both give the same output. `filter`
//! implements the `flowgate:plugin/filter` world (since 0.1.1) instead: `keep` and
//! `keep-batch`, which returns the kept rows' indices, so no kept event is copied out and back.
//!
//! Keyed state (get, put, delete, scan; checkpointed by the host with the stage's position) is
//! in [`state`], for stages the pipeline grants `state = true`.
//!
//! Windowed aggregations implement [`Aggregator`] (add, optional merge, finish) and mark the
//! impl with [`aggregator`]: the host assigns events to windows by event time, keeps the
//! accumulators, tracks the watermark and calls `finish` when a window is due.
//!
//! Configuration (`key = value` pairs from the pipeline or `flowgate plugin test --config`) is
//! read with [`config()`]. To check it once at load time, name an init function:
//! `#[flowgate_sdk::map(init = setup)]` with `fn setup(config: &Config) -> Result<(), Error>`;
//! an error there keeps the plugin from loading, with your message.
#![deny(missing_docs)]

// The attributes and generated bindings name paths as `::flowgate_sdk::...`; this makes them
// resolve inside this crate too.
extern crate self as flowgate_sdk;

use std::sync::OnceLock;

pub use flowgate_batch::{EventRef, Headers};
pub use flowgate_sdk_macros::{filter, filter_map, flat_map, map};

use flowgate_batch::{BatchBuilder, Columns};

#[doc(hidden)]
#[expect(
    clippy::too_many_arguments,
    reason = "generated lowering of the 7-column batch record"
)]
pub mod __private {
    wit_bindgen::generate!({
        path: "../wit",
        world: "stage",
        pub_export_macro: true,
        export_macro_name: "export_stage",
        default_bindings_module: "::flowgate_sdk::__private",
        runtime_path: "::flowgate_sdk::__private::wit_bindgen::rt",
    });

    pub use super::{Stage, on_batch, on_event, run_init};
    pub use wit_bindgen;
}

#[doc(hidden)]
#[cfg(feature = "json")]
pub mod __private_agg {
    wit_bindgen::generate!({
        path: "../wit",
        world: "aggregator",
        pub_export_macro: true,
        export_macro_name: "export_aggregator",
        default_bindings_module: "::flowgate_sdk::__private_agg",
        runtime_path: "::flowgate_sdk::__private::wit_bindgen::rt",
        with: {
            "flowgate:plugin/types@0.1.1": crate::__private::flowgate::plugin::types,
            "flowgate:plugin/log@0.1.1": crate::__private::flowgate::plugin::log,
            "flowgate:plugin/state@0.1.1": crate::__private::flowgate::plugin::state,
        },
    });

    pub use super::aggregate::{add, create, finish, init, merge};
}

#[doc(hidden)]
#[expect(
    clippy::too_many_arguments,
    reason = "generated lifting of the 7-column batch record"
)]
pub mod __private_filter {
    wit_bindgen::generate!({
        path: "../wit",
        world: "filter",
        pub_export_macro: true,
        export_macro_name: "export_filter",
        default_bindings_module: "::flowgate_sdk::__private_filter",
        runtime_path: "::flowgate_sdk::__private::wit_bindgen::rt",
        with: {
            "flowgate:plugin/types@0.1.1": crate::__private::flowgate::plugin::types,
            "flowgate:plugin/log@0.1.1": crate::__private::flowgate::plugin::log,
            "flowgate:plugin/state@0.1.1": crate::__private::flowgate::plugin::state,
        },
    });

    pub use super::{Keep, keep, keep_batch};
}

#[cfg(feature = "json")]
mod aggregate;
#[cfg(feature = "json")]
pub use aggregate::{Aggregator, Window};
#[cfg(feature = "json")]
pub use flowgate_sdk_macros::aggregator;

pub mod state;

use __private::flowgate::plugin::types::{Batch, BatchResult, BytesColumn, RowError, Selection};

/// The error a stage returns for an event: its kind tells the host what to do.
pub use __private::flowgate::plugin::types::Error;
/// An owned event, as a stage returns it when it sets more than the value.
pub use __private::flowgate::plugin::types::Event;
/// One header of an owned [`Event`].
pub use __private::flowgate::plugin::types::Header;

impl Error {
    /// The input cannot be processed, ever: the event goes to the dead-letter queue.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// A transient problem: the host may retry the event later.
    pub fn retryable(message: impl Into<String>) -> Self {
        Error::Retryable(message.into())
    }

    /// The plugin cannot go on: the stage stops.
    pub fn fatal(message: impl Into<String>) -> Self {
        Error::Fatal(message.into())
    }
}

#[cfg(feature = "json")]
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::InvalidInput(format!("value is not valid JSON: {e}"))
    }
}

#[cfg(feature = "json")]
mod json {
    use super::{Error, EventRef};

    /// JSON helpers on events.
    pub trait JsonExt {
        /// Parses the value as JSON into `T`; malformed JSON is an `invalid-input` error.
        fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error>;
    }

    impl JsonExt for EventRef<'_> {
        fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
            Ok(serde_json::from_slice(self.value)?)
        }
    }
}
#[cfg(feature = "json")]
pub use json::JsonExt;

/// The stage's configuration: `key = value` pairs, in the order given.
#[derive(Debug, Default, Clone)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// The value of `key`, if set (the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or a `fatal` error that names the missing key.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key).ok_or_else(|| {
            Error::fatal(format!(
                "missing config key `{key}`: set it with `{key} = ...`"
            ))
        })
    }

    /// The value of `key` parsed as `T`, `default` when unset, a `fatal` error when unparsable.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| Error::fatal(format!("config key `{key}` = {raw:?}: {e}"))),
        }
    }

    /// All pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The configuration passed to `init`. Empty before `init` ran.
pub fn config() -> &'static Config {
    static EMPTY: Config = Config { pairs: Vec::new() };
    CONFIG.get().unwrap_or(&EMPTY)
}

/// Writes a line into the host's logs, tagged with this plugin's name.
pub fn log(level: LogLevel, message: &str) {
    __private::flowgate::plugin::log::log(level, message);
}

/// Severity of a [`log`] line.
pub use __private::flowgate::plugin::log::Level as LogLevel;

/// `info!("...", args)`: logs a formatted line at info level through the host.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log($crate::LogLevel::Info, &::std::format!($($t)*)) };
}

/// `warn!("...", args)`: logs a formatted line at warn level through the host.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log($crate::LogLevel::Warn, &::std::format!($($t)*)) };
}

/// Where a stage writes its outputs: the `on-event` list or the `on-batch` buffers.
pub trait Sink {
    /// Emits `input` with its value replaced.
    fn emit_value(&mut self, input: &EventRef<'_>, value: &[u8]);
    /// Emits `input` unchanged.
    fn emit_input(&mut self, input: &EventRef<'_>);
    /// Emits a whole event.
    fn emit_event(&mut self, event: Event);
    /// Emits `input` with a value that `write` writes in place.
    fn emit_write<F: FnOnce(&mut ValueWriter<'_>) -> Result<(), Error>>(
        &mut self,
        input: &EventRef<'_>,
        write: F,
    ) -> Result<(), Error>;
}

/// Where a two-argument `map` function writes its output value: straight into the output
/// buffer (no `Vec` per event). It can only be appended to.
#[derive(Debug)]
pub struct ValueWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl ValueWriter<'_> {
    /// Appends bytes.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.buf.push(byte);
    }

    /// Makes room for `additional` more bytes.
    #[inline]
    pub fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }
}

impl Extend<u8> for ValueWriter<'_> {
    #[inline]
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.buf.extend(iter);
    }
}

impl std::io::Write for ValueWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for ValueWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// What a `map` function may return: each emits one event.
pub trait Output {
    /// Writes this output, derived from `input`, into `sink`.
    fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S);
}

impl Output for Vec<u8> {
    fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) {
        sink.emit_value(input, &self);
    }
}

impl Output for String {
    fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) {
        sink.emit_value(input, self.as_bytes());
    }
}

impl Output for Event {
    fn emit<S: Sink>(self, _input: &EventRef<'_>, sink: &mut S) {
        sink.emit_event(self);
    }
}

/// Turns what a stage function returned into outputs, per stage kind. Implemented for the
/// return types listed in the crate docs, with and without `Result`.
pub trait Returned {
    /// Emits the outputs into `sink`, or returns the function's error.
    fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) -> Result<(), Error>;
}

/// Adapters from each stage kind's return type to [`Returned`]; used by the attributes.
#[doc(hidden)]
pub mod kind {
    use super::*;

    /// `map`: one output.
    #[derive(Debug)]
    pub struct Map<T>(pub T);
    /// `filter_map`: zero or one output.
    #[derive(Debug)]
    pub struct FilterMap<T>(pub T);
    /// `flat_map`: any number of outputs.
    #[derive(Debug)]
    pub struct FlatMap<T>(pub T);

    impl<O: Output> Returned for Map<O> {
        fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            self.0.emit(input, sink);
            Ok(())
        }
    }
    impl<O: Output, E: Into<Error>> Returned for Map<Result<O, E>> {
        fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            Map(self.0.map_err(Into::into)?).emit(input, sink)
        }
    }

    /// What a two-argument `map` function returns: `()` or `Result<(), E>`.
    pub trait Written {
        /// As a result.
        fn into_result(self) -> Result<(), Error>;
    }
    impl Written for () {
        #[inline]
        fn into_result(self) -> Result<(), Error> {
            Ok(())
        }
    }
    impl<E: Into<Error>> Written for Result<(), E> {
        #[inline]
        fn into_result(self) -> Result<(), Error> {
            self.map_err(Into::into)
        }
    }

    /// What a `filter` function returns: `bool` or `Result<bool, E>`.
    pub trait Kept {
        /// As a result.
        fn into_kept(self) -> Result<bool, Error>;
    }
    impl Kept for bool {
        #[inline]
        fn into_kept(self) -> Result<bool, Error> {
            Ok(self)
        }
    }
    impl<E: Into<Error>> Kept for Result<bool, E> {
        #[inline]
        fn into_kept(self) -> Result<bool, Error> {
            self.map_err(Into::into)
        }
    }

    impl<O: Output> Returned for FilterMap<Option<O>> {
        fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            if let Some(o) = self.0 {
                o.emit(input, sink);
            }
            Ok(())
        }
    }
    impl<O: Output, E: Into<Error>> Returned for FilterMap<Result<Option<O>, E>> {
        fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            FilterMap(self.0.map_err(Into::into)?).emit(input, sink)
        }
    }

    impl<O: Output> Returned for FlatMap<Vec<O>> {
        fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            for o in self.0 {
                o.emit(input, sink);
            }
            Ok(())
        }
    }
    impl<O: Output, E: Into<Error>> Returned for FlatMap<Result<Vec<O>, E>> {
        fn emit<S: Sink>(self, input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            FlatMap(self.0.map_err(Into::into)?).emit(input, sink)
        }
    }
}

/// A stage as the attributes generate it: one function from an event to outputs.
#[doc(hidden)]
pub trait Stage {
    /// Processes one event.
    fn process<S: Sink>(input: &EventRef<'_>, sink: &mut S) -> Result<(), Error>;
}

/// An author's init function: checks (and may parse) the config once, at load time.
pub type InitFn = fn(&Config) -> Result<(), Error>;

/// Stores the config and runs the author's init function, if any.
#[doc(hidden)]
pub fn run_init(pairs: Vec<(String, String)>, user: Option<InitFn>) -> Result<(), Error> {
    let config = CONFIG.get_or_init(|| Config { pairs });
    match user {
        Some(f) => f(config),
        None => Ok(()),
    }
}

/// Owned outputs of `on-event`.
struct VecSink(Vec<Event>);

impl Sink for VecSink {
    fn emit_value(&mut self, input: &EventRef<'_>, value: &[u8]) {
        self.0.push(Event {
            key: input.key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            timestamp: input.timestamp,
            headers: owned_headers(input),
        });
    }

    fn emit_input(&mut self, input: &EventRef<'_>) {
        self.emit_value(input, input.value);
    }

    fn emit_event(&mut self, event: Event) {
        self.0.push(event);
    }

    fn emit_write<F: FnOnce(&mut ValueWriter<'_>) -> Result<(), Error>>(
        &mut self,
        input: &EventRef<'_>,
        write: F,
    ) -> Result<(), Error> {
        let mut value = Vec::new();
        write(&mut ValueWriter { buf: &mut value })?;
        self.0.push(Event {
            key: input.key.map(<[u8]>::to_vec),
            value,
            timestamp: input.timestamp,
            headers: owned_headers(input),
        });
        Ok(())
    }
}

fn owned_headers(input: &EventRef<'_>) -> Vec<Header> {
    input
        .headers
        .iter()
        .map(|(n, v)| Header {
            name: String::from_utf8_lossy(n).into_owned(),
            value: v.to_vec(),
        })
        .collect()
}

/// Runs `f` on a borrowed view of an owned event.
fn with_ref<R>(event: &Event, f: impl FnOnce(&EventRef<'_>) -> R) -> R {
    let pairs: Vec<(&[u8], &[u8])> = event
        .headers
        .iter()
        .map(|h| (h.name.as_bytes(), &h.value[..]))
        .collect();
    f(&EventRef {
        key: event.key.as_deref(),
        value: &event.value,
        timestamp: event.timestamp,
        headers: Headers::from_pairs(&pairs),
    })
}

/// `on-event` for any stage.
#[doc(hidden)]
pub fn on_event<T: Stage>(event: Event) -> Result<Vec<Event>, Error> {
    let mut sink = VecSink(Vec::new());
    with_ref(&event, |input| T::process(input, &mut sink))?;
    Ok(sink.0)
}

/// A filter as the `filter` attribute generates it: one function from an event to keep or not.
#[doc(hidden)]
pub trait Keep {
    /// True to keep the event.
    fn keep_ref(input: &EventRef<'_>) -> Result<bool, Error>;
}

/// `keep` of the `filter` world.
#[doc(hidden)]
pub fn keep<T: Keep>(event: Event) -> Result<bool, Error> {
    with_ref(&event, |input| T::keep_ref(input))
}

/// `keep-batch` of the `filter` world: reads rows in place and returns the kept rows' indices
/// (the host passes those rows on from its own copy; nothing is copied back).
#[doc(hidden)]
pub fn keep_batch<T: Keep>(input: Batch) -> Result<Selection, Error> {
    let cols = Columns::new(flowgate_batch::parts_of!(input))
        .map_err(|e| Error::fatal(format!("host sent a malformed batch: {e}")))?;
    let mut kept = Vec::with_capacity(cols.len());
    let mut failures = Vec::new();
    for (i, event) in cols.rows().enumerate() {
        match T::keep_ref(&event) {
            Ok(true) => kept.push(i as u32),
            Ok(false) => {}
            Err(Error::Fatal(m)) => return Err(Error::Fatal(m)),
            Err(error) => failures.push(RowError {
                row: i as u32,
                error,
            }),
        }
    }
    Ok(Selection { kept, failures })
}

/// Output buffers of `on-batch`.
struct BatchSink {
    out: BatchBuilder,
    origins: Vec<u32>,
    row: u32,
}

impl Sink for BatchSink {
    fn emit_value(&mut self, input: &EventRef<'_>, value: &[u8]) {
        self.out
            .push(input.key, value, input.timestamp, input.headers.iter());
        self.origins.push(self.row);
    }

    fn emit_input(&mut self, input: &EventRef<'_>) {
        self.out.push_ref(input);
        self.origins.push(self.row);
    }

    fn emit_event(&mut self, event: Event) {
        self.out.push(
            event.key.as_deref(),
            &event.value,
            event.timestamp,
            event
                .headers
                .iter()
                .map(|h| (h.name.as_bytes(), &h.value[..])),
        );
        self.origins.push(self.row);
    }

    fn emit_write<F: FnOnce(&mut ValueWriter<'_>) -> Result<(), Error>>(
        &mut self,
        input: &EventRef<'_>,
        write: F,
    ) -> Result<(), Error> {
        // On an error, `on_batch` rolls the builder back to before this row.
        let mut result = Ok(());
        self.out
            .push_with(input.key, input.timestamp, input.headers.iter(), |buf| {
                result = write(&mut ValueWriter { buf });
            });
        if result.is_ok() {
            self.origins.push(self.row);
        }
        result
    }
}

/// `on-batch` for any stage: reads rows in place, writes outputs into flat buffers.
#[doc(hidden)]
pub fn on_batch<T: Stage>(input: Batch) -> Result<BatchResult, Error> {
    let cols = Columns::new(flowgate_batch::parts_of!(input))
        .map_err(|e| Error::fatal(format!("host sent a malformed batch: {e}")))?;

    let mut sink = BatchSink {
        out: BatchBuilder::with_capacity(cols.len(), input.values.data.len()),
        origins: Vec::with_capacity(cols.len()),
        row: 0,
    };
    let mut failures = Vec::new();
    for (i, event) in cols.rows().enumerate() {
        sink.row = i as u32;
        let mark = sink.out.mark();
        let emitted = sink.origins.len();
        match T::process(&event, &mut sink) {
            Ok(()) => {}
            Err(Error::Fatal(m)) => return Err(Error::Fatal(m)),
            Err(error) => {
                sink.out.rollback(mark);
                sink.origins.truncate(emitted);
                failures.push(RowError {
                    row: i as u32,
                    error,
                });
            }
        }
    }
    Ok(BatchResult {
        output: flowgate_batch::batch_from!(Batch, BytesColumn, sink.out),
        origins: sink.origins,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Shout;
    impl Stage for Shout {
        fn process<S: Sink>(input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            if input.value == b"bad" {
                return Err(Error::invalid_input("bad row"));
            }
            kind::FlatMap(vec![input.value.to_ascii_uppercase(), b"!".to_vec()]).emit(input, sink)
        }
    }

    fn event(value: &[u8], ts: i64) -> Event {
        Event {
            key: Some(b"k".to_vec()),
            value: value.to_vec(),
            timestamp: ts,
            headers: vec![Header {
                name: "h".into(),
                value: b"v".to_vec(),
            }],
        }
    }

    fn batch_of(inputs: &[Event]) -> Batch {
        let mut b = BatchBuilder::default();
        for e in inputs {
            b.push(
                e.key.as_deref(),
                &e.value,
                e.timestamp,
                e.headers.iter().map(|h| (h.name.as_bytes(), &h.value[..])),
            );
        }
        flowgate_batch::batch_from!(Batch, BytesColumn, b)
    }

    #[test]
    fn batch_and_event_paths_agree_and_fail_only_the_bad_row() {
        let inputs = [event(b"a", 1), event(b"bad", 2), event(b"c", 3)];
        let result = on_batch::<Shout>(batch_of(&inputs)).unwrap();
        assert_eq!(result.origins, vec![0, 0, 2, 2]);
        assert_eq!(result.failures.len(), 1);
        assert_eq!(result.failures[0].row, 1);
        assert_eq!(result.output.values.data, b"A!C!");

        let mut per_event = Vec::new();
        for e in inputs {
            if let Ok(out) = on_event::<Shout>(e) {
                per_event.extend(out);
            }
        }
        let values: Vec<u8> = per_event.iter().flat_map(|e| e.value.clone()).collect();
        assert_eq!(values, b"A!C!");
        assert!(
            per_event
                .iter()
                .all(|e| e.headers.len() == 1 && e.key.as_deref() == Some(b"k"))
        );
    }

    /// The two-argument form: writes in place, and fails a row after writing part of it.
    struct Writer;
    impl Stage for Writer {
        fn process<S: Sink>(input: &EventRef<'_>, sink: &mut S) -> Result<(), Error> {
            sink.emit_write(input, |out| {
                out.extend_from_slice(b"<");
                if input.value == b"bad" {
                    return Err(Error::invalid_input("bad row"));
                }
                out.extend(input.value.iter().map(u8::to_ascii_uppercase));
                out.push(b'>');
                Ok(())
            })
        }
    }

    #[test]
    fn a_writing_map_fails_a_row_without_leaving_its_partial_value() {
        let inputs = [event(b"a", 1), event(b"bad", 2), event(b"c", 3)];
        let result = on_batch::<Writer>(batch_of(&inputs)).unwrap();
        assert_eq!(result.output.values.data, b"<A><C>");
        assert_eq!(result.output.values.ends, vec![3, 6]);
        assert_eq!(result.origins, vec![0, 2]);
        assert_eq!(result.output.header_ends, vec![1, 2]);
        assert_eq!(result.failures.len(), 1);
        assert_eq!(result.failures[0].row, 1);
        let per_event: Vec<Vec<u8>> = inputs
            .into_iter()
            .filter_map(|e| on_event::<Writer>(e).ok())
            .flatten()
            .map(|e| e.value)
            .collect();
        assert_eq!(per_event, [b"<A>".to_vec(), b"<C>".to_vec()]);
    }

    struct KeepOdd;
    impl Keep for KeepOdd {
        fn keep_ref(input: &EventRef<'_>) -> Result<bool, Error> {
            match input.value {
                b"bad" => Err(Error::invalid_input("bad row")),
                b"fatal" => Err(Error::fatal("broken")),
                v => Ok(v.len() % 2 == 1),
            }
        }
    }

    #[test]
    fn a_filter_batch_returns_kept_rows_and_failures_as_keep_does_per_event() {
        let inputs = [
            event(b"a", 1),
            event(b"bb", 2),
            event(b"bad", 3),
            event(b"ccc", 4),
        ];
        let s = keep_batch::<KeepOdd>(batch_of(&inputs)).unwrap();
        assert_eq!(s.kept, [0, 3]);
        assert_eq!(s.failures.len(), 1);
        assert_eq!(s.failures[0].row, 2);
        let per_event: Vec<Option<bool>> = inputs
            .into_iter()
            .map(|e| keep::<KeepOdd>(e).ok())
            .collect();
        assert_eq!(per_event, [Some(true), Some(false), None, Some(true)]);
        // A fatal error fails the whole batch.
        let fatal = keep_batch::<KeepOdd>(batch_of(&[event(b"a", 1), event(b"fatal", 2)]));
        assert!(matches!(fatal, Err(Error::Fatal(_))));
    }

    #[test]
    fn config_lookups_explain_missing_and_bad_keys() {
        let c = Config {
            pairs: vec![("n".into(), "x".into()), ("n".into(), "3".into())],
        };
        assert_eq!(c.parse_or("n", 0u32).unwrap(), 3);
        assert_eq!(c.parse_or("m", 7u32).unwrap(), 7);
        let Error::Fatal(m) = c.require("field").unwrap_err() else {
            panic!("wrong kind")
        };
        assert!(m.contains("`field`"), "{m}");
    }
}
