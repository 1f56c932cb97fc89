#!/usr/bin/env python3
"""sink_anchor.py: anchors for `cdcvec bench sink` on the same stand-in, same run.

    sink_anchor.py tutorial qdrant|upstash ROWS FIRST_ID   one point per call through the vendor's SDK,
                                                          as the tutorial's ingest services do
    sink_anchor.py raw qdrant|upstash ROWS FIRST_ID        the stand-in alone: request bodies serialised
                                                          beforehand, sent batched (256 / 1000) over one
                                                          keep-alive connection (the server's ceiling)
Prints one JSON line {"anchor","store","rows","seconds","points_per_s","requests"}.
Environment as for tests/sink_check.py (QDRANT_URL, QDRANT_COLLECTION, QDRANT_API_KEY_FILE;
UPSTASH_VECTOR_REST_URL, UPSTASH_VECTOR_REST_TOKEN_FILE, UPSTASH_NS).
"""
import http.client
import json
import os
import random
import sys
import time
import urllib.parse
import warnings

warnings.filterwarnings("ignore")


def secret(name):
    with open(os.environ[name + "_FILE"]) as f:
        return f.read().strip()


def vectors(rows, first):
    rnd = random.Random(first)
    out = []
    for _ in range(rows):
        v = [rnd.random() - 0.5 for _ in range(384)]
        n = sum(x * x for x in v) ** 0.5
        out.append([x / n for x in v])
    return out


def main():
    mode, store, rows, first = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    vecs = vectors(rows, first)
    pays = [{"name": "anchor %d" % (first + i), "year": 2000 + (first + i) % 20} for i in range(rows)]
    requests = 0
    if mode == "tutorial" and store == "qdrant":
        from qdrant_client import QdrantClient, models
        c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=secret("QDRANT_API_KEY"), https=False,
                         check_compatibility=False)
        col = os.environ["QDRANT_COLLECTION"]
        t0 = time.time()
        for i in range(rows):  # the tutorial: one upsert per Kafka message, wait=false
            c.upsert(col, [models.PointStruct(id=first + i, vector=vecs[i], payload=pays[i])], wait=False)
            requests += 1
    elif mode == "tutorial":
        from upstash_vector import Index
        idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=secret("UPSTASH_VECTOR_REST_TOKEN"))
        ns = os.environ.get("UPSTASH_NS", "")
        t0 = time.time()
        for i in range(rows):  # index.upsert([(id, vector, metadata)]) per message
            idx.upsert([(str(first + i), vecs[i], pays[i])], namespace=ns)
            requests += 1
    else:
        if store == "qdrant":
            u = urllib.parse.urlparse(os.environ["QDRANT_URL"])
            path = "/collections/%s/points?wait=true" % os.environ["QDRANT_COLLECTION"]
            hdr = {"api-key": secret("QDRANT_API_KEY"), "Content-Type": "application/json"}
            bodies = [json.dumps({"points": [{"id": first + i, "vector": vecs[i], "payload": pays[i]}
                                             for i in range(a, min(a + 256, rows))]}) for a in range(0, rows, 256)]
            method = "PUT"
        else:
            u = urllib.parse.urlparse(os.environ["UPSTASH_VECTOR_REST_URL"])
            path = "/upsert/" + os.environ.get("UPSTASH_NS", "")
            hdr = {"Authorization": "Bearer " + secret("UPSTASH_VECTOR_REST_TOKEN"),
                   "Content-Type": "application/json"}
            bodies = [json.dumps([{"id": str(first + i), "vector": vecs[i], "metadata": pays[i]}
                                  for i in range(a, min(a + 1000, rows))]) for a in range(0, rows, 1000)]
            method = "POST"
        conn = http.client.HTTPConnection(u.hostname, u.port)
        t0 = time.time()
        for b in bodies:
            conn.request(method, path, b, hdr)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit("status %d" % r.status)
            requests += 1
    dt = time.time() - t0
    print(json.dumps({"anchor": mode, "store": store, "rows": rows, "seconds": round(dt, 3),
                      "points_per_s": round(rows / dt), "requests": requests}))


if __name__ == "__main__":
    main()
