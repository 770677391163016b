"""What the Kafka helper scripts share: the JSON-lines form of a record, and the clients' settings.

A record is one JSON object per line:

    {"topic": "in", "partition": 0, "offset": 41, "timestamp": 1410, "timestamp_type": "create",
     "key": "KQAAAAAAAAA=", "value": "c2VxLTAwMDAwMDAwNDEt...", "headers": [["n", "NDE="]]}

Keys, values and header values are base64 (standard alphabet, padded), so that any bytes travel
exactly; null stands for an absent key, a null value (a tombstone) or a null header value.
Headers are a list of [name, value] pairs in their order, repeats allowed. produce.py reads the
same form and uses key, value, timestamp, headers and (when given) partition; topic and offset are
ignored there.
"""

import base64
import sys

try:
    import confluent_kafka  # noqa: F401  (imported here so that a missing package is one message)
except ImportError:
    sys.exit(
        "the Python package confluent-kafka is missing: run scripts/install-test-deps "
        "(it pins the version the tests use)"
    )


def b64(data):
    """bytes (or None) to the JSON form."""
    return None if data is None else base64.b64encode(data).decode("ascii")


def unb64(text):
    """The JSON form back to bytes (or None)."""
    return None if text is None else base64.b64decode(text, validate=True)


def client_config(bootstrap, **extra):
    """Settings every helper client uses: the broker, and no log line for each closed idle link."""
    config = {"bootstrap.servers": bootstrap, "log.connection.close": False}
    config.update(extra)
    return config


def payload(seq):
    """The value of test record `seq`: the same bytes as flowgate_tests::payload(seq) in Rust."""
    head = b"seq-%010d-" % seq
    length = seq * 7919 % 300
    return head + bytes(ord("a") + (seq + i) % 26 for i in range(length))


def generated(seq):
    """Test record `seq`, the same as flowgate_tests::record(seq) in Rust: a key (seq as 8 bytes,
    little-endian) on two of three records, time 1000 + 10 * seq ms, a header on one of four."""
    return {
        "key": None if seq % 3 == 0 else seq.to_bytes(8, "little"),
        "value": payload(seq),
        "timestamp": 1000 + seq * 10,
        "headers": [("n", str(seq).encode())] if seq % 4 == 0 else [],
        "partition": None,
    }
