//! Reading a partition in batches of at most N rows, from a position.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::producer::EOS_HEADER;
use crate::event::{self, Batch, BatchBuilder};
use crate::log::{EventLog, LogError, ReadBatch};

/// Rows of a partition from `position` on.
pub(crate) struct Cursor {
    log: Arc<dyn EventLog>,
    pub topic: String,
    pub partition: u32,
    /// Offset of the next row to hand out.
    pub position: u64,
    /// Offset not to read at or past (a bounded run over a range).
    pub limit: Option<u64>,
    buf: VecDeque<ReadBatch>,
}

/// Rows handed out: offsets `first .. first + len`.
pub(crate) struct Input {
    pub first: u64,
    pub batch: Arc<Batch>,
}

impl Input {
    pub fn len(&self) -> usize {
        self.batch.timestamps.len()
    }
}

fn end(b: &ReadBatch) -> u64 {
    b.base_offset + b.batch.timestamps.len() as u64
}

fn has_eos(b: &Batch) -> bool {
    let names = &b.header_names.data;
    let n = EOS_HEADER.len();
    names.len() >= n && names.windows(n).any(|w| w == EOS_HEADER.as_bytes())
}

impl Cursor {
    pub fn new(log: Arc<dyn EventLog>, topic: &str, partition: u32, position: u64) -> Cursor {
        Cursor {
            log,
            topic: topic.to_owned(),
            partition,
            position,
            limit: None,
            buf: VecDeque::new(),
        }
    }

    /// Moves back (or on) to `position`: the next row handed out is the one at `position`.
    pub fn seek(&mut self, position: u64) {
        self.position = position;
        self.buf.clear();
    }

    /// Rows buffered at or after the position. A log may leave gaps between batches (Kafka's
    /// transaction markers take offsets): the rows are counted batch by batch.
    fn available(&self) -> u64 {
        self.buf
            .iter()
            .map(|b| end(b).saturating_sub(self.position.max(b.base_offset)))
            .sum()
    }

    /// Drops batches before the position and moves the position over a gap up to the first
    /// batch: a log answers a read from `p` with the first offsets at or after `p` it holds
    /// (an empty batch when only a gap was there), so nothing lies between.
    fn skip_gaps(&mut self) {
        while let Some(b) = self.buf.front() {
            if b.base_offset > self.position {
                self.position = b.base_offset;
            }
            if end(b) <= self.position {
                self.buf.pop_front();
            } else {
                break;
            }
        }
    }

    fn fill(&mut self) -> Result<(), LogError> {
        while self.buf.front().is_some_and(|b| end(b) <= self.position) {
            self.buf.pop_front();
        }
        let from = self
            .buf
            .back()
            .map_or(self.position, end)
            .max(self.position);
        let got = match self.log.read(&self.topic, self.partition, from, 1 << 20) {
            Ok(g) => g,
            Err(LogError::OffsetOutOfRange { start, .. }) if from < start => {
                tracing::warn!(topic = %self.topic, partition = self.partition, position = from, start, "events before offset {start} were deleted by retention before they were processed; going on from {start}");
                self.buf.clear();
                self.position = start;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.buf.extend(got.into_iter().filter(|b| end(b) > from));
        if self.available() == 0 {
            self.skip_gaps();
        }
        Ok(())
    }

    /// Up to `max` rows. With fewer at hand, waits up to `linger` for more; with none, up to
    /// `wait` for any. `None` when nothing came.
    pub fn next(
        &mut self,
        max: usize,
        linger: Duration,
        wait: Duration,
    ) -> Result<Option<Input>, LogError> {
        let max = match self.limit {
            Some(l) if l <= self.position => return Ok(None),
            Some(l) => max.min((l - self.position).min(usize::MAX as u64) as usize),
            None => max,
        };
        if self.available() < max as u64 {
            self.fill()?;
        }
        if self.available() == 0 {
            self.log
                .wait_for(&self.topic, self.partition, self.position, wait)?;
            self.fill()?;
            if self.available() == 0 {
                return Ok(None);
            }
        }
        let deadline = Instant::now() + linger;
        while self.available() < max as u64 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let at = self.position + self.available();
            if !self
                .log
                .wait_for(&self.topic, self.partition, at, deadline - now)?
            {
                break;
            }
            self.fill()?;
        }
        Ok(Some(self.take(max)))
    }

    /// Up to `max` consecutive rows from the position (rows across a gap go out next time).
    fn take(&mut self, max: usize) -> Input {
        self.skip_gaps();
        let first = self.position;
        let front = self.buf.front().expect("rows are available");
        let whole = front.base_offset == first && front.batch.timestamps.len() <= max;
        if whole && !has_eos(&front.batch) {
            let b = self.buf.pop_front().expect("front");
            self.position = end(&b);
            return Input {
                first,
                batch: b.batch,
            };
        }
        let mut out = BatchBuilder::with_capacity(max.min(4096), 0);
        let mut taken = 0;
        let mut position = self.position;
        for b in &self.buf {
            if b.base_offset > position {
                break;
            }
            let cols = event::columns(&b.batch).expect("the log checked the batch");
            let skip = position.saturating_sub(b.base_offset) as usize;
            for row in cols.rows().skip(skip) {
                if taken == max {
                    break;
                }
                let headers = row
                    .headers
                    .iter()
                    .filter(|(n, _)| *n != EOS_HEADER.as_bytes());
                out.push(row.key, row.value, row.timestamp, headers);
                taken += 1;
                position += 1;
            }
            if taken == max {
                break;
            }
        }
        self.position = position;
        Input {
            first,
            batch: Arc::new(event::finish(out)),
        }
    }
}
