#!/usr/bin/env python3
"""Writes records to a Kafka topic with an independent client (confluent-kafka), for the tests.

    produce.py --bootstrap 127.0.0.1:9092 --topic in < records.jsonl
    produce.py --bootstrap 127.0.0.1:9092 --topic in --generate 1000 [--first 0] [--rate 500] [--keys 50]

Records come from standard input, one JSON object a line (the form records.py describes: key,
value, header values in base64; timestamp in ms; partition optional), or, with --generate N, are
test records first .. first+N-1, the same as flowgate_tests::record(seq) in Rust. Keys choose
partitions as a Java producer would (murmur2); the producer is idempotent with acks=all. With
--rate, records are written at about that many a second (a producer beside a running pipeline).

Prints nothing but the number of records the broker acknowledged; fails (exit 1, the reason on
standard error) if any record was refused or not acknowledged before --deadline seconds.
"""

import argparse
import json
import sys
import time

from records import client_config, generated, unb64

from confluent_kafka import KafkaException, Producer


def from_stdin():
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            yield {
                "key": unb64(r.get("key")),
                "value": unb64(r.get("value")),
                "timestamp": r.get("timestamp"),
                "headers": [(name, unb64(value)) for name, value in r.get("headers") or []],
                "partition": r.get("partition"),
            }
        except (ValueError, TypeError, AttributeError) as e:
            sys.exit(f"produce.py: line {number} of standard input is not a record: {e}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--generate", type=int, metavar="N", help="write test records instead of stdin's")
    p.add_argument("--first", type=int, default=0, metavar="SEQ", help="the first test record (0)")
    p.add_argument("--rate", type=float, metavar="PER_SECOND", help="pace the writes")
    p.add_argument("--keys", type=int, metavar="K",
                   help="with --generate: key every record key-<seq mod K> (a few keys, each many times)")
    p.add_argument("--deadline", type=float, default=120.0, metavar="SECONDS")
    p.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                   help="another librdkafka producer setting")
    a = p.parse_args()

    extra = dict(kv.split("=", 1) for kv in a.property)
    producer = Producer(client_config(
        a.bootstrap,
        **{
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "message.timeout.ms": int(a.deadline * 1000),
        },
        **extra,
    ))
    deadline = time.monotonic() + a.deadline
    acked = 0
    errors = []

    def delivered(err, _msg):
        nonlocal acked
        if err is None:
            acked += 1
        elif len(errors) < 10:
            errors.append(str(err))

    def make(seq):
        r = generated(seq)
        if a.keys:
            r["key"] = f"key-{seq % a.keys}".encode()
        return r

    records = (make(seq) for seq in range(a.first, a.first + a.generate)) if a.generate is not None else from_stdin()
    started = time.monotonic()
    for sent, r in enumerate(records):
        if a.rate:
            ahead = started + sent / a.rate - time.monotonic()
            if ahead > 0:
                producer.poll(ahead)
        kwargs = {"key": r["key"], "value": r["value"], "headers": r["headers"], "on_delivery": delivered}
        if r["timestamp"] is not None:
            kwargs["timestamp"] = r["timestamp"]
        if r["partition"] is not None:
            kwargs["partition"] = r["partition"]
        while True:
            try:
                producer.produce(a.topic, **kwargs)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
            except KafkaException as e:
                sys.exit(f"produce.py: record {sent} refused: {e}")
            if time.monotonic() > deadline:
                sys.exit(f"produce.py: the local queue stayed full for {a.deadline}s")
        producer.poll(0)
        if errors:
            break

    left = producer.flush(max(0.0, deadline - time.monotonic()))
    if errors or left:
        why = "; ".join(errors) if errors else f"{left} records not acknowledged in {a.deadline}s"
        sys.exit(f"produce.py: {acked} acknowledged, then: {why}")
    print(acked)


if __name__ == "__main__":
    main()
