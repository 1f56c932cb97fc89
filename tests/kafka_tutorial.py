#!/usr/bin/env python3
"""kafka_tutorial.py: the Quix tutorial's Kafka side, for cdcvec's tests (confluent-kafka, orjson).

  expected-quix --dsn D --slot S [--key K]
      what the tutorial's CDC service would produce for what the wal2json slot holds: one JSON
      line {"key", "value"} per change (consumes the slot, as the tutorial does).
  consume --bootstrap B --topic T [--group G] --count N --timeout-s S
      prints messages as JSON lines {"key", "value", "partition", "offset"} (key/value decoded
      as UTF-8, null when absent); exits 1 when fewer than N arrived in S seconds of silence.
  produce --bootstrap B --topic T [--idempotent] [--interval-ms MS]
      produces JSON lines {"key", "value"[, "partition"]} from stdin; exits 1 on any delivery error.
  embed-like-tutorial --bootstrap B --from T1 --to T2 --vectors FILE [--table books]
      [--text-field description] [--group vectorsv1] [--count N] [--timeout-s S]
      the tutorial's embeddings service: filter table, simplified row, "embeddings" (float32
      values from FILE, JSON lines {"text", "vector"}), "Timestamp" = time.time_ns(), orjson.

The transforms are those of quixio/template-vector-cdc-local@3956625 ("Postgres CDC/main.py",
"Create Embeddings with FastEmbed/main.py"), see docs/TUTORIAL_FORMAT.md.
"""
import argparse
import json
import struct
import sys
import time


def tutorial_cdc_messages(changes_rows, key):
    """The tutorial CDC service: each wal2json v1 row {"change": [...]}, each element one message."""
    out = []
    for (data,) in changes_rows:
        changes = json.loads(data)
        for change in changes["change"]:
            out.append((key, json.dumps(change)))
    return out


def simplify_data(row):
    """The tutorial's simplified row (verbatim logic of its simplify_data)."""
    new_structure = {"kind": row["kind"], "table": row["table"]}
    new_structure.update({key: value for key, value in zip(row["columnnames"], row["columnvalues"])})
    new_structure["year"] = str(new_structure["year"])
    return new_structure


def float32_list(vec):
    """numpy float32 .tolist(): each value rounded to float32, then widened to a Python float."""
    return [struct.unpack("f", struct.pack("f", float(x)))[0] for x in vec]


def cmd_expected_quix(a):
    import subprocess

    # psql (not psycopg2): rows separated by NUL bytes, each the slot's text as is
    sql = "SELECT data FROM pg_logical_slot_get_changes('%s', NULL, NULL)" % a.slot.replace("'", "''")
    r = subprocess.run(["psql", "-qAtX0", "-v", "ON_ERROR_STOP=1", a.dsn, "-c", sql], capture_output=True)
    if r.returncode:
        raise SystemExit(f"expected-quix: psql failed: {r.stderr.decode(errors='replace').strip()}")
    rows = [(d.decode("utf-8"),) for d in r.stdout.split(b"\0") if d.strip()]
    for k, v in tutorial_cdc_messages(rows, a.key):
        print(json.dumps({"key": k, "value": v}))
    return 0


def consumer_conf(a, group):
    return {
        "bootstrap.servers": a.bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "session.timeout.ms": 6000,
    }


def dec(b):
    return None if b is None else b.decode("utf-8", "replace")


def cmd_consume(a):
    from confluent_kafka import Consumer

    c = Consumer(consumer_conf(a, a.group))
    c.subscribe([a.topic])
    got, idle_since = 0, time.monotonic()
    try:
        while got < a.count and time.monotonic() - idle_since < a.timeout_s:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                print(f"consume: {m.error()}", file=sys.stderr)
                continue
            idle_since = time.monotonic()
            print(json.dumps({"key": dec(m.key()), "value": dec(m.value()), "partition": m.partition(),
                              "offset": m.offset()}), flush=True)
            got += 1
    finally:
        c.close()
    if got < a.count:
        print(f"consume: {got} of {a.count} messages after {a.timeout_s}s without one", file=sys.stderr)
        return 1
    return 0


def cmd_produce(a):
    from confluent_kafka import Producer

    conf = {"bootstrap.servers": a.bootstrap, "linger.ms": 5}
    if a.idempotent:
        conf["enable.idempotence"] = True
    p = Producer(conf)
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))

    n = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        m = json.loads(line)
        kw = {}
        if "partition" in m:
            kw["partition"] = m["partition"]
        while True:
            try:
                p.produce(a.topic, key=m.get("key"), value=m.get("value"), on_delivery=on_delivery, **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        n += 1
        if a.interval_ms:
            time.sleep(a.interval_ms / 1000)
    left = p.flush(a.timeout_s)
    if left or errors:
        print(f"produce: {left} undelivered, {len(errors)} errors: {errors[:3]}", file=sys.stderr)
        return 1
    print(f"produced {n}", file=sys.stderr)
    return 0


def cmd_embed_like_tutorial(a):
    import orjson
    from confluent_kafka import Consumer, Producer

    vectors = {}
    with open(a.vectors) as f:
        for line in f:
            if line.strip():
                v = json.loads(line)
                vectors[v["text"]] = v["vector"]
    c = Consumer(consumer_conf(a, a.group))
    c.subscribe([getattr(a, "from")])
    p = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True})
    done, idle_since = 0, time.monotonic()
    errors = []
    try:
        while (a.count is None or done < a.count) and time.monotonic() - idle_since < a.timeout_s:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            idle_since = time.monotonic()
            data = orjson.loads(m.value())  # quixstreams' JSON deserializer
            done += 1
            if data["table"] != a.table:  # sdf.filter
                continue
            row = simplify_data(data)
            text = row[a.text_field]
            if text not in vectors:
                raise SystemExit(f"embed-like-tutorial: no vector for text {text[:60]!r} in {a.vectors}")
            row["embeddings"] = float32_list(vectors[text])
            row["Timestamp"] = time.time_ns()
            p.produce(a.to, key=m.key(), value=orjson.dumps(
                row, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS),
                on_delivery=lambda err, msg: err and errors.append(str(err)))
            p.poll(0)
    finally:
        p.flush(30)
        c.close()
    if errors:
        print(f"embed-like-tutorial: delivery errors: {errors[:3]}", file=sys.stderr)
        return 1
    print(f"embed-like-tutorial: {done} messages", file=sys.stderr)
    return 0 if a.count is None or done >= a.count else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("expected-quix")
    e.add_argument("--dsn", required=True)
    e.add_argument("--slot", required=True)
    e.add_argument("--key", default="public.books", help='the tutorial\'s "<PG_SCHEMA>.<PG_TABLE>"')
    c = sub.add_parser("consume")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--group", default="kafka-tutorial-py")
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--timeout-s", type=float, default=30)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--idempotent", action="store_true")
    p.add_argument("--interval-ms", type=float, default=0, help="pause after each message")
    p.add_argument("--timeout-s", type=float, default=60)
    t = sub.add_parser("embed-like-tutorial")
    t.add_argument("--bootstrap", required=True)
    t.add_argument("--from", required=True)
    t.add_argument("--to", required=True)
    t.add_argument("--vectors", required=True)
    t.add_argument("--table", default="books")
    t.add_argument("--text-field", default="description")
    t.add_argument("--group", default="vectorsv1")
    t.add_argument("--count", type=int)
    t.add_argument("--timeout-s", type=float, default=10)
    a = ap.parse_args()
    return {"expected-quix": cmd_expected_quix, "consume": cmd_consume, "produce": cmd_produce,
            "embed-like-tutorial": cmd_embed_like_tutorial}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
