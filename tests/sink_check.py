#!/usr/bin/env python3
"""sink_check.py: reads a Qdrant or Upstash store back through the vendor's official client
(qdrant-client, upstash-vector) and compares it with the source rows, for test_sink_remote.sh.

    sink_check.py STORE mismatches SOURCE.json   -> the number of differences (0: equal)
    sink_check.py STORE point KEY                -> "<vector digest> <text_hash> <lsn> <name> <year>"
    sink_check.py STORE count                    -> points of the table

STORE: qdrant (QDRANT_URL, QDRANT_COLLECTION, QDRANT_API_KEY_FILE) or upstash
(UPSTASH_VECTOR_REST_URL, UPSTASH_VECTOR_REST_TOKEN_FILE, UPSTASH_NS). SOURCE.json: a JSON list
of {"id", "h" (sha256 hex of the text), "name", "year"} of the rows that must have a vector.
Payload keys checked: cdcvec.text_hash, cdcvec.table, cdcvec.key, name, year, id.
"""
import hashlib
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
TABLE = "public.books"


def secret(name):
    with open(os.environ[name + "_FILE"]) as f:
        return f.read().strip()


def points(store, with_vectors=False):
    """{key text: (payload, vector or None)} of the table's points."""
    out = {}
    if store == "qdrant":
        from qdrant_client import QdrantClient, models
        c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=secret("QDRANT_API_KEY"), https=False,
                         prefer_grpc=False, timeout=30, check_compatibility=False)
        flt = models.Filter(must=[models.FieldCondition(key="cdcvec.table", match=models.MatchValue(value=TABLE))])
        off = None
        while True:
            pts, off = c.scroll(os.environ["QDRANT_COLLECTION"], scroll_filter=flt, limit=1000, offset=off,
                                with_payload=True, with_vectors=with_vectors)
            for p in pts:
                out[p.payload["cdcvec"]["key"]] = (p.payload, p.vector, p.id)
            if off is None:
                return out
    from upstash_vector import Index
    idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=secret("UPSTASH_VECTOR_REST_TOKEN"))
    cur = ""
    while True:
        r = idx.range(cursor=cur, limit=1000, include_metadata=True, include_vectors=with_vectors,
                      namespace=os.environ.get("UPSTASH_NS", "books"))
        for v in r.vectors:
            out[v.metadata["cdcvec"]["key"] if v.metadata else v.id] = (v.metadata or {}, v.vector, v.id)
        cur = r.next_cursor
        if not cur:
            return out


def mismatches(store, src):
    pts = points(store)
    want = {str(r["id"]): r for r in src}
    bad = 0
    for k, r in want.items():
        p = pts.get(k)
        if p is None:
            bad += 1
            continue
        pl = p[0]
        c = pl.get("cdcvec", {})
        if (c.get("text_hash") != r["h"] or c.get("table") != TABLE or pl.get("name") != r["name"]
                or pl.get("year") != r["year"] or pl.get("id") != r["id"]):
            bad += 1
    bad += sum(1 for k in pts if k not in want)  # orphans
    return bad


def main():
    store, cmd = sys.argv[1], sys.argv[2]
    if cmd == "mismatches":
        with open(sys.argv[3]) as f:
            print(mismatches(store, json.load(f)))
    elif cmd == "count":
        print(len(points(store)))
    elif cmd == "stamps":  # each model stamp the points carry (payload.c), with how many carry it
        n = {}
        for pl, _, _ in points(store).values():
            c = pl.get("cdcvec", {})
            k = "%s|%s|%s" % (c.get("model"), c.get("model_revision"), c.get("text_source"))
            n[k] = n.get(k, 0) + 1
        for k in sorted(n):
            print(k, n[k])
    elif cmd == "point":
        p = points(store, with_vectors=True).get(sys.argv[3])
        if p is None:
            print("missing")
            return
        pl, vec, _ = p
        dig = hashlib.md5(json.dumps([round(x, 5) for x in vec]).encode()).hexdigest()
        c = pl["cdcvec"]
        print(dig, c["text_hash"], c["lsn"], pl.get("name"), pl.get("year"))


if __name__ == "__main__":
    main()
