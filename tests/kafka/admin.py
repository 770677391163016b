#!/usr/bin/env python3
"""Administers the test broker with an independent client (confluent-kafka).

    admin.py --bootstrap 127.0.0.1:9092 [--deadline 120] ready
    admin.py --bootstrap 127.0.0.1:9092 [--deadline 120] create TOPIC [--partitions 1] [--config KEY=VALUE ...]
    admin.py --bootstrap 127.0.0.1:9092 [--deadline 120] delete TOPIC

ready: waits until the broker answers a metadata request that lists a registered broker, so a
topic can be created. create: creates the topic and waits until every partition has a leader.
delete: deletes the topic and waits until the metadata no longer lists it. Each fails (exit 1, the
reason on standard error) after --deadline seconds; prints nothing on success.
"""

import argparse
import sys
import time

from records import client_config

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def metadata(admin, deadline, topic=None):
    """The cluster's metadata, asking again until the deadline while the broker does not answer."""
    while True:
        left = deadline - time.monotonic()
        try:
            return admin.list_topics(topic, timeout=max(0.1, min(2.0, left)))
        except KafkaException as e:
            if left <= 0:
                raise SystemExit(f"admin.py: no metadata from the broker: {e}")


def until(deadline, what, check):
    """Asks `check` again (a tenth of a second apart) until it is true or the deadline passes."""
    while not check():
        if time.monotonic() >= deadline:
            sys.exit(f"admin.py: {what}")
        time.sleep(0.1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--deadline", type=float, default=120.0, metavar="SECONDS")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ready")
    create = sub.add_parser("create")
    create.add_argument("topic")
    create.add_argument("--partitions", type=int, default=1)
    create.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    delete = sub.add_parser("delete")
    delete.add_argument("topic")
    a = p.parse_args()

    seconds = a.deadline
    deadline = time.monotonic() + seconds
    admin = AdminClient(client_config(a.bootstrap))

    if a.command == "ready":
        until(deadline, f"no broker registered at {a.bootstrap} after {seconds}s",
              lambda: bool(metadata(admin, deadline).brokers))

    elif a.command == "create":
        config = dict(kv.split("=", 1) for kv in a.config)
        topic = NewTopic(a.topic, num_partitions=a.partitions, replication_factor=1, config=config)
        future = admin.create_topics([topic], operation_timeout=seconds, request_timeout=seconds)[a.topic]
        try:
            future.result()
        except KafkaException as e:
            sys.exit(f"admin.py: creating topic {a.topic}: {e.args[0].str()}")

        def led():
            t = metadata(admin, deadline, a.topic).topics.get(a.topic)
            return (t is not None and t.error is None and len(t.partitions) == a.partitions
                    and all(p.leader >= 0 for p in t.partitions.values()))
        until(deadline, f"topic {a.topic} has no leader for each of its {a.partitions} partitions", led)

    elif a.command == "delete":
        try:
            admin.delete_topics([a.topic], operation_timeout=seconds, request_timeout=seconds)[a.topic].result()
        except KafkaException as e:
            sys.exit(f"admin.py: deleting topic {a.topic}: {e.args[0].str()}")

        def gone():
            t = metadata(admin, deadline, a.topic).topics.get(a.topic)
            return t is None or t.error is not None
        until(deadline, f"topic {a.topic} is still listed after {seconds}s", gone)


if __name__ == "__main__":
    main()
