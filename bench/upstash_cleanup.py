#!/usr/bin/env python3
"""upstash_cleanup.py: what the clean-up after a backfill costs on the Upstash stand-in
(tests/standins/upstash_standin.py), at N vectors in one namespace (issue 20 #17).

Before: every finished backfill sent `/delete {"filter":"cdcvec.lsn < P"}`, which Upstash
documents as a scan of the whole namespace (O(N)); the stand-in does the same (every vector's
metadata tested). Now: one `/info` (the namespace's vector count) and the filter only when stale
vectors can exist (sink/upstash.c, u_backfill_mark). This loads N vectors with cdcvec's metadata
(vectors of --dimension, default 8: the filter reads metadata only, so a small dimension keeps
the load short without changing the scan) and times both calls, each --repeat times (median).

    usage: bench/upstash_cleanup.py [--vectors 1000000] [--dimension 8] [--repeat 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, default=1000000)
    ap.add_argument("--dimension", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    key = os.path.join(tmp, "key")
    open(key, "w").write("bench\n")
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/standins/upstash_standin.py"), "--port", "0",
                          "--token-file", key, "--dimension", str(a.dimension)], stdout=subprocess.PIPE, text=True)
    try:
        base = p.stdout.readline().split()[1]

        def call(path, body=None):
            req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": "Bearer bench", "Content-Type": "application/json"},
                                         method="POST")
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=3600) as r:
                out = json.load(r)
            return time.perf_counter() - t0, out

        vec = [0.1] * a.dimension
        t0 = time.perf_counter()
        for i0 in range(0, a.vectors, 1000):
            batch = [{"id": str(i), "vector": vec,
                      "metadata": {"name": "book %d" % i, "author": "gen", "year": 2000 + i % 20,
                                   "cdcvec": {"table": "public.books", "key": str(i), "text_hash": "%064x" % i,
                                              "model": "sentence-transformers/all-MiniLM-L6-v2", "lsn": 1000000,
                                              "updated_at": "2026-12-07T00:00:00Z"}}}
                     for i in range(i0, min(i0 + 1000, a.vectors))]
            call("/upsert/books", batch)
        load = time.perf_counter() - t0
        _, info = call("/info")
        n = info["result"]["namespaces"]["books"]["vectorCount"]
        filt = [call("/delete/books", {"filter": "cdcvec.lsn < 1000000"})[0] for _ in range(a.repeat)]
        inf = [call("/info")[0] for _ in range(a.repeat)]
        print("vectors=%d dimension=%d load_s=%.1f filter_delete_s=%.3f (median of %d, each %s) info_s=%.3f "
              "(median of %d, each %s)" % (n, a.dimension, load, statistics.median(filt), a.repeat,
                                           ",".join("%.3f" % x for x in filt), statistics.median(inf), a.repeat,
                                           ",".join("%.3f" % x for x in inf)))
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
