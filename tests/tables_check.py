#!/usr/bin/env python3
"""tables_check.py: reads one table's vectors back from Qdrant or Upstash through the vendor's
official client (qdrant-client, upstash-vector) and counts the differences with the source rows,
for test_tables.sh (several tables of one pipeline, any primary key).

    tables_check.py STORE TABLE KEYCOLS SOURCE.json   -> the number of differences (0: equal)

STORE: qdrant (QDRANT_URL, QDRANT_COLLECTION, QDRANT_API_KEY_FILE; the table's points are those
whose payload cdcvec.table is TABLE) or upstash (UPSTASH_VECTOR_REST_URL,
UPSTASH_VECTOR_REST_TOKEN_FILE, UPSTASH_NS: the table's namespace). KEYCOLS: the primary key's
columns, comma-separated. SOURCE.json: a JSON list of the source rows that must have a vector,
each the row's columns and "h" (sha256 hex of its text). A point matches its row when its payload
has the row's columns (compared as text), cdcvec.text_hash equals h and cdcvec.table is TABLE;
every point without a row, or row without a point, is a difference (orphans and losses).
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")


def secret(name):
    with open(os.environ[name + "_FILE"]) as f:
        return f.read().strip()


def payloads(store, table):
    out = []
    if store == "qdrant":
        from qdrant_client import QdrantClient, models
        c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=secret("QDRANT_API_KEY"), https=False,
                         prefer_grpc=False, timeout=30, check_compatibility=False)
        flt = models.Filter(must=[models.FieldCondition(key="cdcvec.table", match=models.MatchValue(value=table))])
        off = None
        while True:
            pts, off = c.scroll(os.environ["QDRANT_COLLECTION"], scroll_filter=flt, limit=1000, offset=off,
                                with_payload=True, with_vectors=False)
            out += [p.payload for p in pts]
            if off is None:
                return out
    from upstash_vector import Index
    idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=secret("UPSTASH_VECTOR_REST_TOKEN"))
    cur = ""
    while True:
        r = idx.range(cursor=cur, limit=1000, include_metadata=True, namespace=os.environ["UPSTASH_NS"])
        out += [v.metadata or {} for v in r.vectors]
        cur = r.next_cursor
        if not cur:
            return out


def text(v):
    return None if v is None else str(v)


def main():
    store, table, keycols, path = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
    with open(path) as f:
        rows = json.load(f) or []
    want = {tuple(text(r[k]) for k in keycols): r for r in rows}
    bad = 0
    seen = set()
    for pl in payloads(store, table):
        k = tuple(text(pl.get(c)) for c in keycols)
        r = want.get(k)
        if r is None or k in seen:  # an orphan, or a row stored twice
            bad += 1
            continue
        seen.add(k)
        meta = pl.get("cdcvec", {})
        if meta.get("text_hash") != r["h"] or meta.get("table") != table:
            bad += 1
            continue
        if any(text(pl.get(c)) != text(v) for c, v in r.items() if c != "h"):
            bad += 1
    bad += sum(1 for k in want if k not in seen)  # losses
    print(bad)


if __name__ == "__main__":
    main()
