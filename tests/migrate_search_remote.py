"""migrate_search_remote.py: the searches of test_migrate_remote.sh while cdcvec migrate runs, 20 a
second, as a searcher outside cdcvec finds the live index:
  qdrant:  by the alias "books__live" (qdrant-client), which cdcvec moves at the switch;
  upstash: by the namespace recorded in cdcvec's state (cdcvec.state.index_name of the live row,
           NULL: the namespace given), read before each search (psycopg 3), then upstash-vector.
Each search asks for the nearest 5 points to a fixed 384-d vector; the index it read is then
checked: a failed search, fewer than 5 hits or fewer than MIN_ROWS points (a half-built index), or
points of another model than the hits' (mixed) are counted. Qdrant: the count and the mixed check go to the collection
the alias points at, resolved before and after (a sample where it moved in between is taken
again). Runs until STOP_FILE exists; prints a JSON summary on stdout.
    usage: migrate_search_remote.py qdrant|upstash DSN LIVE_KEY GIVEN MIN_ROWS STOP_FILE"""
import json
import os
import random
import sys
import time
import warnings

warnings.filterwarnings("ignore")

store, dsn, live_key, given, min_rows, stop_file = sys.argv[1:7]
min_rows = int(min_rows)
rnd = random.Random(7)
vec = [rnd.uniform(-1, 1) for _ in range(384)]
out = {"searches": 0, "failed": 0, "half_built": 0, "mixed": 0, "revisions": [], "indexes": [], "errors": []}


def secret(name):
    with open(os.environ[name + "_FILE"]) as f:
        return f.read().strip()


def rev_of(payload):
    return ((payload or {}).get("cdcvec") or {}).get("model_revision")


if store == "qdrant":
    from qdrant_client import QdrantClient, models

    c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=secret("QDRANT_API_KEY"), https=False,
                     prefer_grpc=False, timeout=30, check_compatibility=False)
    alias = given + "__live"

    def target():
        return {a.alias_name: a.collection_name for a in c.get_aliases().aliases}.get(alias)

    def one():
        before = target()
        hits = c.query_points(alias, query=vec, limit=5, with_payload=True).points
        revs = {rev_of(h.payload) for h in hits}
        rev = next(iter(revs)) if len(revs) == 1 else None
        n = c.count(before, exact=True).count
        # one request (the writer adds points between two counts): points of another model
        other = c.count(before, exact=True, count_filter=models.Filter(must_not=[models.FieldCondition(
            key="cdcvec.model_revision", match=models.MatchValue(value=rev or "-"))])).count
        if target() != before:
            return None  # the alias moved meanwhile: sample again
        return before, len(hits), n, len(revs) == 1 and other == 0, rev
else:
    import psycopg
    from upstash_vector import Index

    idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=secret("UPSTASH_VECTOR_REST_TOKEN"))
    conn = psycopg.connect(dsn, autocommit=True)

    def one():
        row = conn.execute("SELECT coalesce(index_name, %s) FROM cdcvec.state WHERE stream = %s",
                           (given, live_key)).fetchone()
        ns = row[0] if row else given
        hits = idx.query(vector=vec, top_k=5, include_metadata=True, namespace=ns)
        revs = {rev_of(h.metadata) for h in hits}
        rev = next(iter(revs)) if len(revs) == 1 else None
        n = idx.info().namespaces[ns].vector_count
        other = idx.query(vector=vec, top_k=1, include_metadata=True, namespace=ns,
                          filter="cdcvec.model_revision != '%s'" % (rev or "-"))
        return ns, len(hits), n, len(revs) == 1 and not other, rev

while not os.path.exists(stop_file):
    t0 = time.monotonic()
    try:
        r = one()
        if r is not None:
            name, nhits, n, pure, rev = r
            out["searches"] += 1
            if nhits != 5 or n < min_rows:
                out["half_built"] += 1
            if not pure:
                out["mixed"] += 1
            if not out["revisions"] or out["revisions"][-1] != rev:
                out["revisions"].append(rev)
            if not out["indexes"] or out["indexes"][-1] != name:
                out["indexes"].append(name)
    except Exception as e:  # noqa: BLE001 (every failure is what the test counts)
        out["failed"] += 1
        if len(out["errors"]) < 5:
            out["errors"].append(repr(e))
    time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))
print(json.dumps(out))
