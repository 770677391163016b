//! Membership of a Kafka consumer group: how the processes of a pipeline share a topic's
//! partitions. The group's consumer never reads (its partitions are paused as they come): the
//! steps read through the log's own readers, from their checkpoints. It is there for Kafka's
//! membership, heartbeats and cooperative-sticky assignment, and for fencing (KIP-447):
//!
//! - Every append a step makes for the group's partitions carries the group's membership
//!   ([`GroupFence`]); the writer commits the step's position as the group's offset in the same
//!   transaction, with the group's metadata (generation, member id) as this process knows it
//!   then, and the group coordinator refuses it if this process is no longer a member of that
//!   generation (it was cut off past its session, say). The transaction is then aborted: a
//!   zombie writes nothing. An append made before this process lost its partitions (its
//!   session ended) is never committed, even once the process has joined again.
//! - A process given a partition first asks the group's committed offsets of it with
//!   `read_committed`, which waits while a transaction of the partition's previous owner that
//!   holds its offsets is still open: the outputs of that transaction are then committed or
//!   aborted before the new owner looks for what was already written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance as KafkaRebalance,
};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::{Context, KafkaLogConfig, client_config, remote};
use crate::log::{Fence, FenceToken, LogError, Membership, Rebalance};

/// A group's membership as the appends made for it carry it.
pub(super) struct GroupFence {
    /// The group's id.
    pub group: String,
    /// The Kafka topic whose partitions it shares.
    pub topic: String,
    /// The metadata (generation, member id) as of the last rebalance; `None` before the first
    /// and once the assignment is lost.
    metadata: Mutex<Option<Arc<ConsumerGroupMetadata>>>,
    /// How many times this process lost its partitions (or left): an append made before the
    /// last loss is not committed.
    losses: AtomicU64,
}

impl GroupFence {
    /// The metadata to commit offsets with, if this process is a member.
    pub fn metadata(&self) -> Option<Arc<ConsumerGroupMetadata>> {
        self.metadata
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times this process lost the group's partitions (or left the group) so far.
    pub fn losses(&self) -> u64 {
        self.losses.load(Ordering::Acquire)
    }

    fn set(&self, metadata: Option<ConsumerGroupMetadata>) {
        *self.metadata.lock().unwrap_or_else(|p| p.into_inner()) = metadata.map(Arc::new);
    }

    fn lost(&self) {
        let mut m = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
        self.losses.fetch_add(1, Ordering::AcqRel);
        *m = None;
    }
}

impl FenceToken for GroupFence {
    fn member(&self) -> bool {
        self.metadata().is_some()
    }
}

struct GroupContext {
    inner: Context,
    topic: String,
    on: Arc<dyn Rebalance>,
    fence: Arc<GroupFence>,
    /// How long a newly given partition waits for the previous owner's open transaction.
    settle: Duration,
}

impl rdkafka::client::ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }
}

fn partitions(tpl: &TopicPartitionList, topic: &str) -> Vec<u32> {
    let mut out: Vec<u32> = tpl
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition().max(0) as u32)
        .collect();
    out.sort_unstable();
    out
}

impl GroupContext {
    /// Waits until no open transaction holds offsets of the group for `tpl` (the committed
    /// offsets are asked `read_committed`: the client asks again while they are unstable), or
    /// `settle` passed.
    fn settle(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let started = Instant::now();
        loop {
            match consumer.committed_offsets(tpl.clone(), self.settle) {
                Ok(_) => break,
                Err(e) if started.elapsed() < self.settle => {
                    tracing::debug!(group = %self.fence.group, "committed offsets not stable yet: {e}");
                }
                Err(e) => {
                    tracing::warn!(group = %self.fence.group, "the previous owner's transaction of these partitions is still open after {:?} ({e}); serving them anyway", self.settle);
                    break;
                }
            }
        }
        let took = started.elapsed();
        if took > Duration::from_millis(500) {
            tracing::info!(group = %self.fence.group, took = ?took, "waited for the previous owner's transaction to end");
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &KafkaRebalance<'_>) {
        if let KafkaRebalance::Revoke(tpl) = rebalance {
            if consumer.assignment_lost() {
                // Another process may hold these partitions already: nothing more may be
                // committed for them from here.
                self.fence.lost();
                tracing::warn!(group = %self.fence.group, "this process lost its partitions (its session with the group ended): what it had not committed is aborted");
            } else {
                // The generation being formed: what the revoked partitions' last appends
                // commit with.
                self.fence.set(consumer.group_metadata());
            }
            let ps = partitions(tpl, &self.topic);
            if !ps.is_empty() {
                tracing::info!(topic = %self.topic, partitions = ?ps, "giving up partitions to another process of the pipeline");
                self.on.revoked(&ps);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &KafkaRebalance<'_>) {
        match rebalance {
            KafkaRebalance::Assign(tpl) => {
                // This consumer only holds the membership: it never fetches.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::debug!("pausing the group's partitions: {e}");
                }
                // Every rebalance ends with an assignment (empty when nothing was added): the
                // generation the appends carry from now on.
                self.fence.set(consumer.group_metadata());
                let ps = partitions(tpl, &self.topic);
                if !ps.is_empty() {
                    self.settle(consumer, tpl);
                    tracing::info!(topic = %self.topic, partitions = ?ps, "serving partitions given to this process");
                    self.on.assigned(&ps);
                }
            }
            KafkaRebalance::Revoke(_) => {}
            KafkaRebalance::Error(e) => {
                tracing::warn!(topic = %self.topic, "rebalance failed: {e}")
            }
        }
    }
}

pub(super) struct Member {
    consumer: BaseConsumer<GroupContext>,
}

impl Membership for Member {
    fn poll(&self, timeout: Duration) {
        // Records cannot come (every partition is paused as it is assigned); a poll serves the
        // rebalances.
        if let Some(Err(e)) = self.consumer.poll(timeout) {
            tracing::debug!("group poll: {e}");
        }
    }

    fn fence(&self) -> Fence {
        Fence(self.consumer.context().fence.clone())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Leaving: appends still queued for the group's partitions are not this member's.
        self.consumer.context().fence.lost();
    }
}

/// Joins `group` on the Kafka topic `topic`.
pub(super) fn join(
    cfg: &KafkaLogConfig,
    group: &str,
    topic: &str,
    on: Arc<dyn Rebalance>,
) -> Result<Member, LogError> {
    let session = cfg.session_timeout.as_millis().max(1_000);
    let mut c = client_config(&cfg.brokers, &cfg.properties);
    c.set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", session.to_string())
        // A rebalance reaches a member with its next heartbeat, and cooperative-sticky takes two
        // rounds to move a partition: beat often, so a move waits hundreds of milliseconds, not
        // the third of the session timeout Kafka's default would wait.
        .set(
            "heartbeat.interval.ms",
            (session / 10).clamp(100, 1_000).to_string(),
        );
    let consumer: BaseConsumer<GroupContext> = c
        .create_with_context(GroupContext {
            inner: Context::new(format!("group:{group}")),
            topic: topic.to_owned(),
            on,
            fence: Arc::new(GroupFence {
                group: group.to_owned(),
                topic: topic.to_owned(),
                metadata: Mutex::new(None),
                losses: AtomicU64::new(0),
            }),
            // The previous owner's transaction ends by its commit, or is aborted by the
            // coordinator after the transaction timeout (plus its check interval).
            settle: Duration::from_secs(60),
        })
        .map_err(|e| remote(format!("joining the group {group}"), e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| remote(format!("joining the group {group} on {topic}"), e))?;
    Ok(Member { consumer })
}
