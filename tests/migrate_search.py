"""migrate_search.py: the searches of test_migrate.sh while cdcvec migrate runs: 20 a second by
the live index's name, each in one REPEATABLE READ transaction (psycopg 3): the nearest 5 rows to
a fixed 384-d vector and the rows' model revisions and count. A search that fails, one answered by
an index with fewer than MIN_ROWS rows (a half-built one) or with two models' vectors mixed, is
counted. Runs until STOP_FILE exists; prints a JSON summary on stdout.
    usage: migrate_search.py DSN MIN_ROWS STOP_FILE"""
import json
import os
import random
import sys
import time

import psycopg

dsn, min_rows, stop_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rnd = random.Random(7)
q = "[" + ",".join("%.6f" % rnd.uniform(-1, 1) for _ in range(384)) + "]"
out = {"searches": 0, "failed": 0, "half_built": 0, "mixed": 0, "revisions": [], "errors": []}
conn = psycopg.connect(dsn, autocommit=True)
while not os.path.exists(stop_file):
    t0 = time.monotonic()
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            hits = conn.execute(
                "SELECT id FROM cdcvec.public_books ORDER BY embedding <=> %s::vector LIMIT 5", (q,)
            ).fetchall()
            n, revs, rev = conn.execute(
                "SELECT count(*), count(DISTINCT model_revision), min(model_revision) FROM cdcvec.public_books"
            ).fetchone()
        out["searches"] += 1
        if len(hits) != 5 or n < min_rows:
            out["half_built"] += 1
        if revs != 1:
            out["mixed"] += 1
        if not out["revisions"] or out["revisions"][-1] != rev:
            out["revisions"].append(rev)
    except Exception as e:  # noqa: BLE001 (every failure is what the test counts)
        out["failed"] += 1
        if len(out["errors"]) < 5:
            out["errors"].append(str(e))
        try:
            conn.close()
        finally:
            conn = psycopg.connect(dsn, autocommit=True)
    time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))
print(json.dumps(out))
