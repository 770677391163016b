//! A live tap of a topic (`flowgate tap`, `GET /admin/tap/{topic}`): the events appended from
//! now on, as NDJSON lines, one of every `sample`, bounded so that a slow reader slows nothing.

use std::time::Duration;

use tokio::sync::mpsc;

use super::Running;
use crate::event::ndjson;
use crate::flow::reader::Cursor;
use crate::log::LogError;

/// Lines a tap holds for its reader; past them it drops lines (and says how many).
const HELD: usize = 4096;

/// What a tap takes.
#[derive(Clone, Copy, Debug)]
pub struct TapOptions {
    /// One of every `sample` events (1: all).
    pub sample: u64,
    /// Stop after this many events sent (none: until the reader goes or the pipeline stops).
    pub limit: Option<u64>,
}

impl Running {
    /// Starts a tap of `topic`: a thread that follows each partition from its end now and sends
    /// NDJSON lines (each ending in a newline) to the returned receiver. The first line is
    /// `{"tap":{"topic":…,"from":[offset per partition]}}`, sent once the tap is in place; a
    /// line `{"tap":{"dropped":n}}` says that n events were left out because the reader was
    /// slow. The thread ends when the receiver is dropped, the limit is reached or the pipeline
    /// stops.
    pub fn tap(
        &self,
        topic: &str,
        options: TapOptions,
    ) -> Result<mpsc::Receiver<String>, LogError> {
        let info = self.log.describe(topic)?;
        let from: Vec<u64> = info.partitions.iter().map(|p| p.end_offset).collect();
        let (tx, rx) = mpsc::channel(HELD);
        let log = self.log.clone();
        let ctl = self.ctl.clone();
        let topic = topic.to_owned();
        let sample = options.sample.max(1);
        let mut cursors: Vec<Cursor> = from
            .iter()
            .enumerate()
            .map(|(p, &at)| Cursor::new(log.clone(), &topic, p as u32, at))
            .collect();
        let first = serde_json::json!({"tap": {"topic": topic, "from": from}}).to_string() + "\n";
        let _ = tx.try_send(first);
        std::thread::Builder::new()
            .name("tap".into())
            .spawn(move || {
                let (mut seen, mut sent, mut dropped) = (0u64, 0u64, 0u64);
                // Each partition waits a little for events; all of them in turn.
                let wait = Duration::from_millis((200 / cursors.len().max(1) as u64).max(5));
                while !ctl.stopping() && !tx.is_closed() {
                    for c in &mut cursors {
                        let input = match c.next(512, Duration::ZERO, wait) {
                            Ok(Some(input)) => input,
                            Ok(None) => continue,
                            Err(e) => {
                                tracing::debug!(topic = %topic, "tap: {e}");
                                return;
                            }
                        };
                        let Ok(cols) = crate::event::columns(&input.batch) else {
                            continue;
                        };
                        for row in cols.rows() {
                            seen += 1;
                            if (seen - 1) % sample != 0 {
                                continue;
                            }
                            if dropped > 0
                                && tx
                                    .try_send(
                                        serde_json::json!({"tap": {"dropped": dropped}})
                                            .to_string()
                                            + "\n",
                                    )
                                    .is_ok()
                            {
                                dropped = 0;
                            }
                            let line = ndjson::Line(&row).to_string() + "\n";
                            match tx.try_send(line) {
                                Ok(()) => sent += 1,
                                Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                                Err(mpsc::error::TrySendError::Closed(_)) => return,
                            }
                            if options.limit.is_some_and(|l| sent >= l) {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| LogError::Io {
                context: "starting a tap's thread".into(),
                source: e,
            })?;
        Ok(rx)
    }
}
