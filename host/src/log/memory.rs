//! The in-memory log: the same [`EventLog`] behaviour, nothing on disk.
//!
//! Each append is kept as one batch (it plays the part of a segment for retention); reads hand
//! out shared references to the batches, so nothing is copied.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::{
    Ack, EventLog, LogError, PartitionInfo, Pending, ReadBatch, Registry, TopicConfig, TopicInfo,
    check_config, check_name,
};
use crate::event::{self, Batch};

/// A partition's records and offsets.
#[derive(Default)]
struct Contents {
    batches: Vec<ReadBatch>,
    /// When each batch was appended, ms since the Unix epoch (retention by age).
    appended: Vec<i64>,
    start: u64,
    end: u64,
    bytes: u64,
}

impl Contents {
    /// Drops the oldest batches (never the newest) past the retention limits; returns how many.
    /// Age is append time, as the disk log's is write time.
    fn trim(&mut self, config: &TopicConfig, now_ms: i64) -> usize {
        let mut deleted = 0;
        while self.batches.len() > 1 {
            let too_big = config.retention_bytes.is_some_and(|m| self.bytes > m);
            let too_old = config.retention_age.is_some_and(|age| {
                self.appended[0] < now_ms.saturating_sub(age.as_millis() as i64)
            });
            if !(too_big || too_old) {
                break;
            }
            self.appended.remove(0);
            let gone = self.batches.remove(0);
            self.bytes -= batch_bytes(&gone.batch);
            self.start = self.batches[0].base_offset;
            deleted += 1;
        }
        deleted
    }
}

#[derive(Default)]
struct Part {
    contents: Mutex<Contents>,
    grew: Condvar,
}

struct Topic {
    config: TopicConfig,
    parts: Vec<Part>,
}

/// A log held in memory. Cheap to create; gone when dropped.
#[derive(Default)]
pub struct MemoryLog {
    topics: Registry<Topic>,
    offsets: Mutex<BTreeMap<(String, String, u32), u64>>,
    checkpoints: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for MemoryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLog").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn batch_bytes(b: &Batch) -> u64 {
    let p = event::parts(b);
    (p.values.len() + p.keys.len() + p.header_names.len() + p.header_values.len()) as u64
        + 24 * p.value_ends.len() as u64
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn part<R>(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(&Part, &TopicConfig) -> R,
    ) -> Result<R, LogError> {
        let t = self.topics.get(topic)?;
        let p = t
            .parts
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition {
                topic: topic.into(),
                partition,
                partitions: t.config.partitions,
            })?;
        Ok(f(p, &t.config))
    }
}

impl EventLog for MemoryLog {
    fn create_topic(&self, name: &str, config: TopicConfig) -> Result<(), LogError> {
        check_name("topic", name)?;
        check_config(&config)?;
        self.topics.insert_new(name, || {
            let parts = (0..config.partitions).map(|_| Part::default()).collect();
            Ok(Topic { config, parts })
        })
    }

    fn topics(&self) -> Vec<String> {
        self.topics.names()
    }

    fn describe(&self, topic: &str) -> Result<TopicInfo, LogError> {
        let t = self.topics.get(topic)?;
        let partitions = t
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let s = lock(&p.contents);
                PartitionInfo {
                    partition: i as u32,
                    start_offset: s.start,
                    end_offset: s.end,
                    bytes: s.bytes,
                    segments: 1,
                    syncs: 0,
                }
            })
            .collect();
        Ok(TopicInfo {
            name: topic.into(),
            config: t.config.clone(),
            partitions,
        })
    }

    fn submit(&self, topic: &str, partition: u32, batch: Batch) -> Result<Pending, LogError> {
        let rows = event::columns(&batch)
            .map_err(|e| LogError::Invalid(format!("bad batch: {e}")))?
            .len() as u32;
        self.part(topic, partition, |p, config| {
            let mut s = lock(&p.contents);
            let ack = Ack {
                base_offset: s.end,
                count: rows,
            };
            if rows > 0 {
                s.bytes += batch_bytes(&batch);
                let base_offset = s.end;
                s.batches.push(ReadBatch {
                    base_offset,
                    batch: Arc::new(batch),
                });
                s.appended.push(event::ndjson::now_ms());
                s.end += u64::from(rows);
                s.trim(config, event::ndjson::now_ms());
                p.grew.notify_all();
            }
            Pending::ready(Ok(ack))
        })
    }

    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<ReadBatch>, LogError> {
        self.part(topic, partition, |p, _| {
            let s = lock(&p.contents);
            if from < s.start || from > s.end {
                return Err(LogError::OffsetOutOfRange {
                    topic: format!("{topic}/{partition}"),
                    requested: from,
                    start: s.start,
                    end: s.end,
                });
            }
            let first = s
                .batches
                .partition_point(|b| b.base_offset + b.batch.values.ends.len() as u64 <= from);
            let mut out = Vec::new();
            let mut budget = max_bytes as u64;
            for b in &s.batches[first..] {
                if !out.is_empty() && budget == 0 {
                    break;
                }
                budget = budget.saturating_sub(batch_bytes(&b.batch));
                out.push(b.clone());
            }
            Ok(out)
        })?
    }

    fn offset_for_time(&self, topic: &str, partition: u32, ts: i64) -> Result<u64, LogError> {
        self.part(topic, partition, |p, _| {
            let s = lock(&p.contents);
            for b in &s.batches {
                if let Ok(cols) = event::columns(&b.batch)
                    && let Some(i) = cols.rows().position(|r| r.timestamp >= ts)
                {
                    return b.base_offset + i as u64;
                }
            }
            s.end
        })
    }

    fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool, LogError> {
        self.part(topic, partition, |p, _| {
            let s = lock(&p.contents);
            let (s, _) = p
                .grew
                .wait_timeout_while(s, timeout, |s| s.end <= offset)
                .unwrap_or_else(|e| e.into_inner());
            s.end > offset
        })
    }

    fn roll(&self, topic: &str, partition: u32) -> Result<(), LogError> {
        self.part(topic, partition, |_, _| ())
    }

    fn enforce_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut deleted = 0;
        for t in self.topics.all() {
            for p in &t.parts {
                deleted += lock(&p.contents).trim(&t.config, now_ms);
            }
        }
        Ok(deleted)
    }

    fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), LogError> {
        check_name("group", group)?;
        self.part(topic, partition, |_, _| ())?;
        lock(&self.offsets).insert((group.into(), topic.into(), partition), offset);
        Ok(())
    }

    fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        check_name("group", group)?;
        Ok(lock(&self.offsets)
            .get(&(group.into(), topic.into(), partition))
            .copied())
    }

    fn save_checkpoint(&self, name: &str, data: &[u8]) -> Result<(), LogError> {
        check_name("checkpoint", name)?;
        lock(&self.checkpoints).insert(name.into(), data.to_vec());
        Ok(())
    }

    fn load_checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        check_name("checkpoint", name)?;
        Ok(lock(&self.checkpoints).get(name).cloned())
    }
}
