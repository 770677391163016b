#!/usr/bin/env python3
"""Reads a Kafka topic to its end with an independent client (confluent-kafka), for the tests.

    consume.py --bootstrap 127.0.0.1:9092 --topic out [--isolation read_committed]
               [--expect N] [--deadline 60]

Reads every partition of the topic from its first offset, without a consumer group (nothing is
committed), and prints each record as one JSON line (the form records.py describes: topic,
partition, offset, timestamp, timestamp_type, key, value, headers; bytes in base64), in the order
read (offsets ascending within a partition).

It stops when every partition is at its end (for read_committed, the last stable offset: records of
open transactions are not read) and at least N records were read (--expect; default 0), so a
reader started before a pipeline wrote its output waits for it, and a duplicate beyond N is
still read and shown. Exit 0 then. If --deadline seconds pass first, it prints what it read and
exits 3, saying on standard error how many of N it saw. A missing topic or an unreachable broker:
exit 1 with the reason.
"""

import argparse
import json
import sys
import time
import uuid

from records import b64, client_config

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

TIMESTAMP_TYPES = {0: None, 1: "create", 2: "log_append"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--isolation", choices=["read_committed", "read_uncommitted"], default="read_committed")
    p.add_argument("--expect", type=int, default=0, metavar="N")
    p.add_argument("--deadline", type=float, default=60.0, metavar="SECONDS")
    a = p.parse_args()

    deadline = time.monotonic() + a.deadline
    consumer = Consumer(client_config(
        a.bootstrap,
        **{
            "group.id": f"flowgate-tests-consume-{uuid.uuid4()}",  # never joined: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": a.isolation,
            "auto.offset.reset": "earliest",
        },
    ))
    try:
        metadata = None
        while metadata is None:
            try:
                metadata = consumer.list_topics(a.topic, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
            except Exception as e:  # noqa: BLE001  (the broker not answering yet: try to the deadline)
                if time.monotonic() >= deadline:
                    sys.exit(f"consume.py: no metadata from {a.bootstrap} in {a.deadline}s: {e}")
        topic = metadata.topics[a.topic]
        if topic.error is not None:
            sys.exit(f"consume.py: topic {a.topic}: {topic.error.str()}")
        partitions = sorted(topic.partitions)
        consumer.assign([TopicPartition(a.topic, n, OFFSET_BEGINNING) for n in partitions])

        at_end = set()
        read = 0
        out = sys.stdout
        while True:
            if read >= a.expect and len(at_end) == len(partitions):
                return 0
            left = deadline - time.monotonic()
            if left <= 0:
                out.flush()
                print(f"consume.py: deadline of {a.deadline}s passed: {read} of {a.expect} records read, "
                      f"{len(at_end)} of {len(partitions)} partitions at their end", file=sys.stderr)
                return 3
            for msg in consumer.consume(num_messages=1000, timeout=min(left, 0.5)):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    if not err.retriable() and err.fatal():
                        sys.exit(f"consume.py: {err.str()}")
                    continue  # transient (broker restarting, leader moving): the client retries
                at_end.discard(msg.partition())
                read += 1
                kind, ts = msg.timestamp()
                out.write(json.dumps({
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "timestamp": ts if kind else None,
                    "timestamp_type": TIMESTAMP_TYPES.get(kind),
                    "key": b64(msg.key()),
                    "value": b64(msg.value()),
                    "headers": [[name, b64(value)] for name, value in msg.headers() or []],
                }, separators=(",", ":")) + "\n")
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
