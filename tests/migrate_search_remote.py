"""migrate_search_remote.py: the searches of test_migrate_remote.sh while cdcvec migrate runs, as a
searcher outside cdcvec finds the live index:
  qdrant:  by the alias "<given>__live" (qdrant-client), which cdcvec moves at the switch;
  upstash: by the namespace recorded in cdcvec's state (cdcvec.state.index_name of the live row,
           NULL: the namespace given), read before each search (psycopg 3), then upstash-vector.
Two threads. The searches, paced at 20 a second: the nearest 5 points to a fixed 384-d vector; a
failed search, fewer than 5 hits, or hits of two models are counted, and the models seen in turn
are listed. The checks, 5 a second beside them, of the index a search would read now: fewer than
MIN_ROWS points (a half-built index) or any point of another model than its nearest hits'
(mixed) are counted (Qdrant: on the collection the alias points at, resolved before and after; a
check where it moved in between is taken again). Runs until STOP_FILE exists; prints a JSON summary
(with the searches' rate) on stdout.
    usage: migrate_search_remote.py qdrant|upstash DSN LIVE_KEY GIVEN MIN_ROWS STOP_FILE"""
import json
import os
import random
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore")

store, dsn, live_key, given, min_rows, stop_file = sys.argv[1:7]
min_rows = int(min_rows)
rnd = random.Random(7)
vec = [rnd.uniform(-1, 1) for _ in range(384)]
out = {"searches": 0, "failed": 0, "half_built": 0, "mixed": 0, "checks": 0, "check_failed": 0,
       "revisions": [], "indexes": [], "errors": []}
lock = threading.Lock()


def secret(name):
    with open(os.environ[name + "_FILE"]) as f:
        return f.read().strip()


def rev_of(payload):
    return ((payload or {}).get("cdcvec") or {}).get("model_revision")


if store == "qdrant":
    from qdrant_client import QdrantClient, models

    def client():
        return QdrantClient(url=os.environ["QDRANT_URL"], api_key=secret("QDRANT_API_KEY"), https=False,
                            prefer_grpc=False, timeout=30, check_compatibility=False)

    alias = given + "__live"

    def search(c):
        hits = c.query_points(alias, query=vec, limit=5, with_payload=True).points
        return None, [rev_of(h.payload) for h in hits]

    def target(c):
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}.get(alias)

    def check(c):
        before = target(c)
        hits = c.query_points(before, query=vec, limit=1, with_payload=True).points
        rev = rev_of(hits[0].payload) if hits else "-"
        n = c.count(before, exact=True).count
        other = c.count(before, exact=True, count_filter=models.Filter(must_not=[models.FieldCondition(
            key="cdcvec.model_revision", match=models.MatchValue(value=rev))])).count
        if target(c) != before:
            return None  # the alias moved meanwhile: check again
        return n, other == 0
else:
    import psycopg
    from upstash_vector import Index

    def client():
        return Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=secret("UPSTASH_VECTOR_REST_TOKEN")), \
            psycopg.connect(dsn, autocommit=True)

    def namespace(conn):
        row = conn.execute("SELECT coalesce(index_name, %s) FROM cdcvec.state WHERE stream = %s",
                           (given, live_key)).fetchone()
        return row[0] if row else given

    def search(c):
        idx, conn = c
        ns = namespace(conn)
        hits = idx.query(vector=vec, top_k=5, include_metadata=True, namespace=ns)
        return ns, [rev_of(h.metadata) for h in hits]

    def check(c):
        idx, conn = c
        ns = namespace(conn)
        hits = idx.query(vector=vec, top_k=1, include_metadata=True, namespace=ns)
        rev = rev_of(hits[0].metadata) if hits else "-"
        n = idx.info().namespaces[ns].vector_count
        other = idx.query(vector=vec, top_k=1, include_metadata=True, namespace=ns,
                          filter="cdcvec.model_revision != '%s'" % rev)
        return n, not other


def note(e):
    if len(out["errors"]) < 5:
        out["errors"].append(repr(e))


def searches():
    c = client()
    while not os.path.exists(stop_file):
        t0 = time.monotonic()
        try:
            name, revs = search(c)
            with lock:
                out["searches"] += 1
                if len(revs) != 5:
                    out["half_built"] += 1
                if len(set(revs)) != 1:
                    out["mixed"] += 1
                rev = revs[0] if revs else None
                if not out["revisions"] or out["revisions"][-1] != rev:
                    out["revisions"].append(rev)
                if name and (not out["indexes"] or out["indexes"][-1] != name):
                    out["indexes"].append(name)
        except Exception as e:  # noqa: BLE001 (every failure is what the test counts)
            with lock:
                out["failed"] += 1
                note(e)
        time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))


def checks():
    c = client()
    nxt = time.monotonic()
    while not os.path.exists(stop_file):
        time.sleep(max(0.0, nxt - time.monotonic()))  # 5 a second: the searches come first
        nxt = time.monotonic() + 0.2
        try:
            r = check(c)
            if r is None:
                continue
            n, pure = r
            with lock:
                out["checks"] += 1
                if n < min_rows:
                    out["half_built"] += 1
                if not pure:
                    out["mixed"] += 1
        except Exception as e:  # noqa: BLE001
            with lock:
                out["check_failed"] += 1
                note(e)


t0 = time.monotonic()
ts = [threading.Thread(target=searches), threading.Thread(target=checks)]
for t in ts:
    t.start()
for t in ts:
    t.join()
out["seconds"] = round(time.monotonic() - t0, 1)
out["per_second"] = round(out["searches"] / max(out["seconds"], 0.1), 1)
if store == "qdrant":
    out["indexes"] = []  # the searches name the alias, not the collection
print(json.dumps(out))
