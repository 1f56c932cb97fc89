#!/usr/bin/env python3
"""chunk_check.py: a chunked table's points in Qdrant or Upstash, read back through the vendor's
client (qdrant-client, upstash-vector), for test_chunks_remote.sh.

    chunk_check.py STORE COLL TABLE mismatches SOURCE.json  -> differences (0: every row's chunks right)
    chunk_check.py STORE COLL TABLE dump OUT.json            -> the chunks, for `same`
    chunk_check.py STORE COLL TABLE count KEY                -> points of that key
    chunk_check.py same A.json B.json [TOL]                  -> differences between two dumps
                                                                (vector components within TOL, 1e-4)

STORE: qdrant (QDRANT_URL, QDRANT_API_KEY_FILE; COLL: the collection) or upstash
(UPSTASH_VECTOR_REST_URL, UPSTASH_VECTOR_REST_TOKEN_FILE; COLL: the namespace). SOURCE.json: a
JSON list of {"id", "text"}. A row's chunks are right when its points are numbered 0..n-1, each
says chunks = n and the text's SHA-256, each chunk_hash is the SHA-256 of the text's code points
[char_off, char_off + char_len), and each point's id is the documented one (chunk 0: the row's
own id; chunk j: Qdrant UUIDv5 of "TABLE:KEY\\tj", Upstash "KEY\\tj"). A point of a key the
source lacks is a difference too (an orphan).
"""
import hashlib
import json
import os
import sys
import uuid
import warnings

warnings.filterwarnings("ignore")
NS = uuid.UUID("3acb4b64-d471-55a5-8e5b-2ffa680abb72")  # sink/qdrant.c CV_QDRANT_NS


def secret(name):
    with open(os.environ[name + "_FILE"]) as f:
        return f.read().strip()


def points(store, coll, table):
    """[(id, payload, vector)] of the table's points."""
    out = []
    if store == "qdrant":
        from qdrant_client import QdrantClient, models
        c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=secret("QDRANT_API_KEY"), https=False,
                         prefer_grpc=False, timeout=30, check_compatibility=False)
        if not c.collection_exists(coll):
            return out
        flt = models.Filter(must=[models.FieldCondition(key="cdcvec.table", match=models.MatchValue(value=table))])
        off = None
        while True:
            pts, off = c.scroll(coll, scroll_filter=flt, limit=1000, offset=off, with_payload=True, with_vectors=True)
            out += [(p.id, p.payload, p.vector) for p in pts]
            if off is None:
                return out
    from upstash_vector import Index
    idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=secret("UPSTASH_VECTOR_REST_TOKEN"))
    cur = ""
    while True:
        r = idx.range(cursor=cur, limit=1000, include_metadata=True, include_vectors=True, namespace=coll)
        out += [(v.id, v.metadata or {}, v.vector) for v in r.vectors]
        cur = r.next_cursor
        if not cur:
            return out


def want_id(store, table, key, j):
    if j == 0:
        return int(key) if store == "qdrant" else key
    return str(uuid.uuid5(NS, "%s:%s\t%d" % (table, key, j))) if store == "qdrant" else "%s\t%d" % (key, j)


def by_key(pts):
    keys = {}
    for pid, pl, vec in pts:
        keys.setdefault(str(pl.get("cdcvec", {}).get("key")), []).append((pid, pl, vec))
    return keys


def mismatches(store, table, pts, src):
    bad, keys = 0, by_key(pts)
    for r in src:
        key, text = str(r["id"]), r["text"]
        th = hashlib.sha256(text.encode()).hexdigest()
        got = sorted(keys.pop(key, []), key=lambda p: p[1]["cdcvec"].get("chunk", -1))
        n = len(got)
        if n == 0:
            print("missing key=%s" % key, file=sys.stderr)
            bad += 1
        for j, (pid, pl, _) in enumerate(got):
            c = pl["cdcvec"]
            part = text[c.get("char_off", 0):c.get("char_off", 0) + c.get("char_len", 0)]
            why = [w for w, ok in (("number", c.get("chunk") == j), ("chunks", c.get("chunks") == n),
                                   ("text_hash", c.get("text_hash") == th), ("table", c.get("table") == table),
                                   ("chunk_hash", c.get("chunk_hash") == hashlib.sha256(part.encode()).hexdigest()),
                                   ("id", str(pid) == str(want_id(store, table, key, j)))) if not ok]
            if why:
                print("bad key=%s chunk=%s: %s" % (key, c.get("chunk"), ",".join(why)), file=sys.stderr)
                bad += 1
    for key, got in keys.items():
        print("orphan key=%s points=%d" % (key, len(got)), file=sys.stderr)
        bad += len(got)
    return bad


def dump(pts):
    out = {}
    for _, pl, vec in pts:
        c = pl["cdcvec"]
        out["%s/%d" % (c["key"], c["chunk"])] = [c["chunk_hash"], c["char_off"], c["char_len"], c["text_hash"],
                                                c["chunks"], list(vec)]
    return out


def same(a, b, tol=1e-4):
    bad = 0
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x is None or y is None or x[:5] != y[:5] or max(abs(p - q) for p, q in zip(x[5], y[5])) > tol:
            print("differs %s: %s / %s" % (k, x and x[:5], y and y[:5]), file=sys.stderr)
            bad += 1
    return bad


def main():
    if sys.argv[1] == "same":
        a, b = (json.load(open(f)) for f in sys.argv[2:4])
        print(same(a, b, float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4))
        return
    store, coll, table, cmd = sys.argv[1:5]
    pts = points(store, coll, table)
    if cmd == "mismatches":
        print(mismatches(store, table, pts, json.load(open(sys.argv[5]))))
    elif cmd == "dump":
        json.dump(dump(pts), open(sys.argv[5], "w"))
    elif cmd == "count":
        print(len(by_key(pts).get(sys.argv[5], [])))


if __name__ == "__main__":
    main()
