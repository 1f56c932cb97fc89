#!/usr/bin/env python3
"""quix_live.py: the Python half of tests/test_quix_format.sh.

  probe-input                      (env DB) quix_probe "change" lines from the catalog and the
                                   trigger log (tests/data/quix_schema.sql), in commit order
  compare EXPECTED GOT PROBE_IN    byte equality of every message (EXPECTED: expected-quix lines)
  floats N                         N doubles (edge cases, random bits, float32 values) as hex
  compare-floats IN OUT            quix_probe floats' output vs json.dumps / orjson.dumps
  embed-input EXPECTED             quix_probe "embed" lines for the books messages
  compare-embed IN OUT             vs the tutorial's simplify_data + orjson (and cdcvec's delete shape)
"""
import json
import os
import random
import struct
import subprocess
import sys

from kafka_tutorial import float32_list, simplify_data

TOAST_MIN = 2000  # an unchanged value this long was stored out of line: wal2json omits it


def sql_json_lines(sql):
    r = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", os.environ["DB"], "-c", sql],
                       capture_output=True, text=True, check=True)
    return [json.loads(line) for line in r.stdout.split("\n") if line.strip()]


def probe_input():
    rels = {}
    for r in sql_json_lines("""
        SELECT json_build_object('oid', c.oid, 'schema', n.nspname, 'table', c.relname, 'ident', c.relreplident,
          'cols', (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                                                     'typoid', a.atttypid::int8, 'varlena', t.typlen = -1) ORDER BY a.attnum)
                   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
          'pk', (SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisprimary))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid IN (SELECT DISTINCT rel FROM quix_log)"""):
        rels[r["oid"]] = r
    log = sql_json_lines("""SELECT json_build_object('rel', rel, 'op', op, 'new', hstore_to_json(new),
                                   'old', hstore_to_json(old)) FROM quix_log ORDER BY seq""")
    for e in log:
        rel, op, new, old = rels[e["rel"]], e["op"], e["new"], e["old"]

        def col(c, src, kind=None):
            v = src[c["name"]]
            k = kind or ("n" if v is None else "t")
            return {"name": c["name"], "type": c["type"], "typoid": c["typoid"], "kind": k, "val": v}

        cols = []
        if op != "delete":
            for c in rel["cols"]:
                unchanged_toast = (op == "update" and c["varlena"] and new[c["name"]] is not None
                                   and new[c["name"]] == old[c["name"]] and len(new[c["name"]]) > TOAST_MIN)
                cols.append(col(c, new, "u" if unchanged_toast else None))
        keys = []
        if op != "insert":
            if rel["ident"] == "f":
                keys = [col(c, old) for c in rel["cols"]]
            else:
                kc = [c for c in rel["cols"] if c["name"] in rel["pk"]]
                changed = op == "delete" or any(old[c["name"]] != new[c["name"]] for c in kc)
                keys = [col(c, old if changed else new) for c in kc]
        print(json.dumps({"kind": op, "schema": rel["schema"], "table": rel["table"], "cols": cols,
                          "oldkeys": keys}))


def compare(expected, got, probe_in):
    exp = [json.loads(line)["value"] for line in open(expected, encoding="utf-8")]
    got = [line.rstrip("\n") for line in open(got, encoding="utf-8")]
    src = open(probe_in, encoding="utf-8").read().split("\n")
    bad = 0
    if len(exp) != len(got):
        print(f"  {len(exp)} expected messages, {len(got)} from cdcvec")
        bad += 1
    for i, (e, g) in enumerate(zip(exp, got)):
        if e != g:
            bad += 1
            if bad <= 3:
                at = next((k for k in range(min(len(e), len(g))) if e[k] != g[k]), min(len(e), len(g)))
                print(f"  change {i}: differs at byte {at}\n    expected ...{e[max(0, at - 60):at + 60]}\n"
                      f"    got      ...{g[max(0, at - 60):at + 60]}\n    input    {src[i][:300]}")
    print(f"  {len(exp) - bad if bad <= len(exp) else 0} of {len(exp)} messages byte-equal")
    return 1 if bad else 0


def floats(n):
    rnd = random.Random(int(os.environ.get("QUIX_SEED", "1")))
    vals = [0.0, -0.0, 1.0, 1.5, 100.0, 1e20, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 1e-6, 1.5e-5, 5e-324,
            2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 0.30000000000000004, 123456789012345678.0,
            float("nan"), float("inf"), float("-inf")]
    vals += [s * 2.0 ** e for e in range(-1074, 1024) for s in (1, -1)]
    while len(vals) < n:
        r = rnd.random()
        if r < 0.4:
            v = struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0]
        elif r < 0.7:
            v = float32_list([rnd.gauss(0, 0.05)])[0]
        elif r < 0.85:
            v = float(rnd.randint(-10 ** 18, 10 ** 18))
        else:
            v = rnd.uniform(-1, 1) * 10.0 ** rnd.randint(-30, 30)
        vals.append(v)
    for v in vals:
        print(v.hex() if v == v and abs(v) != float("inf") else repr(v))


def compare_floats(fin, fout):
    import orjson

    bad = 0
    ins = open(fin).read().split()
    outs = open(fout).read().split("\n")[:-1]
    for s, o in zip(ins, outs):
        x = float(s) if s in ("nan", "inf", "-inf") else float.fromhex(s)
        want = json.dumps(x) + "\t" + orjson.dumps(x).decode()
        if want != o:
            bad += 1
            if bad <= 5:
                print(f"  {s} ({x!r}): want {want!r} got {o!r}")
    print(f"  {len(ins) - bad} of {len(ins)} floats equal ({len(outs)} printed)")
    return 1 if bad or len(ins) != len(outs) else 0


def embed_input(expected):
    rnd = random.Random(3)
    for line in open(expected, encoding="utf-8"):
        v = json.loads(line)["value"]
        if json.loads(v)["table"] != "books":
            continue
        vec = float32_list([rnd.gauss(0, 0.05) for _ in range(384)])
        print(json.dumps({"change": v, "vec": vec, "ts": 1700000000123456789 + rnd.randint(0, 10 ** 9)}))


def has_big_int(v):
    """Whether v holds an integer outside int64."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return not -2 ** 63 <= v < 2 ** 63
    if isinstance(v, list):
        return any(has_big_int(x) for x in v)
    if isinstance(v, dict):
        return any(has_big_int(x) for x in v.values())
    return False


def compare_embed(fin, fout):
    import orjson

    bad = n = 0
    for line, got in zip(open(fin, encoding="utf-8"), open(fout, encoding="utf-8")):
        n += 1
        inp = json.loads(line)
        big = {}
        try:
            exact = json.loads(inp["change"])
        except ValueError:
            exact = None
        if exact is not None and has_big_int(exact):
            # cdcvec keeps an integer beyond int64 exactly (common/cv_jnum.h), where orjson rounds
            # it to a float or fails: want the tutorial's transform with the digits written as they
            # came (Python's str() of such a year is its digits too)
            def mark(v):
                if isinstance(v, int) and not isinstance(v, bool) and not -2 ** 63 <= v < 2 ** 63:
                    big[f"\ue000big{len(big)}"] = str(v)
                    return f"\ue000big{len(big) - 1}"
                if isinstance(v, list):
                    return [mark(x) for x in v]
                if isinstance(v, dict):
                    return {k: mark(x) for k, x in v.items()}
                return v
            data = mark(exact)
        else:
            try:
                data = orjson.loads(inp["change"])  # quixstreams' JSON deserializer
            except orjson.JSONDecodeError:
                data = None  # the tutorial fails on it (a number beyond a double)
        if data is None:
            if not got.startswith("ERROR "):
                bad += 1
                print(f"  message {n}: want an ERROR, got {got[:200]}")
            continue
        if data["kind"] == "delete":  # the tutorial crashes here; cdcvec's definition
            row = {"kind": "delete", "table": data["table"]}
            row.update(zip(data["oldkeys"]["keynames"], data["oldkeys"]["keyvalues"]))
        else:
            row = simplify_data(data)
            row["embeddings"] = float32_list(inp["vec"])
        if isinstance(row.get("year"), str) and row["year"] in big:
            row["year"] = big.pop(row["year"])  # str() of a big integer: its digits, a string
        row["Timestamp"] = inp["ts"]
        want = orjson.dumps(row, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS).decode()
        for k, digits in big.items():
            want = want.replace(f'"{k}"', digits)
        if want != got.rstrip("\n"):
            bad += 1
            if bad <= 3:
                print(f"  message {n}:\n    want {want[:400]}\n    got  {got[:400]}")
    print(f"  {n - bad} of {n} embeddings messages equal")
    return 1 if bad or n == 0 else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "probe-input":
        probe_input()
        return 0
    if cmd == "floats":
        floats(int(args[0]))
        return 0
    if cmd == "embed-input":
        embed_input(args[0])
        return 0
    return {"compare": compare, "compare-floats": compare_floats, "compare-embed": compare_embed}[cmd](*args)


if __name__ == "__main__":
    sys.exit(main())
