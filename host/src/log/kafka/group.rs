//! Membership of a Kafka consumer group: how the processes of a pipeline share a topic's
//! partitions. The group's consumer never reads (its partitions are paused as they come): the
//! steps read through the log's own readers, from their checkpoints. It is there for Kafka's
//! membership, heartbeats and cooperative-sticky assignment.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance as KafkaRebalance};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::{Context, KafkaLogConfig, client_config, remote};
use crate::log::{LogError, Membership, Rebalance};

struct GroupContext {
    inner: Context,
    topic: String,
    on: Arc<dyn Rebalance>,
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

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &KafkaRebalance<'_>) {
        if let KafkaRebalance::Revoke(tpl) = rebalance {
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
                let ps = partitions(tpl, &self.topic);
                if !ps.is_empty() {
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
        })
        .map_err(|e| remote(format!("joining the group {group}"), e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| remote(format!("joining the group {group} on {topic}"), e))?;
    Ok(Member { consumer })
}
