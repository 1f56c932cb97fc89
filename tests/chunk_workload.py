#!/usr/bin/env python3
"""chunk_workload.py: long documents and a stream of changes to them, deterministic (seeded), as SQL
for tests/test_chunks.sh (kill -9 during 2,000 changes) and bench/run_chunks.sh.

  chunk_workload.py load TABLE N SEED            INSERT of N documents (ids 1..N)
  chunk_workload.py changes TABLE N CHANGES TXN SEED
        CHANGES changes of the documents load gave, in transactions of TXN: inserts of new
        documents (ids N+1...), one-sentence edits, shortenings (the last paragraphs dropped) and
        deletes, in the proportions 8/77/10/5 (a change never targets a deleted row)
  chunk_workload.py edits TABLE N EDITS SEED     EDITS one-sentence edits, each of a distinct
        document of 1..N when EDITS <= N, as single-statement transactions

A document: 2 to 5 paragraphs (CW_PARAS=LO,HI sets the range) of 3 to 5 sentences of 8 to 14
words (about 100 to 300 of the model's word pieces; 20 to 40 paragraphs: about 2,000 to 4,000). A
one-sentence edit rewrites one sentence of one paragraph."""
import os
import random
import sys

PARAS = [int(x) for x in os.environ.get("CW_PARAS", "2,5").split(",")]

WORDS = ("the catalog search vector index table row change model store text update delete insert query "
         "result ranking payload key position stream slot replica commit batch embed sentence token piece "
         "chunk paris london river bridge morning evening quietly rapidly under beyond with without because "
         "after before green ancient modern large small harbour window garden letter winter summer road "
         "mountain village engine station market").split()


def sentence(r):
    w = [r.choice(WORDS) for _ in range(r.randint(8, 14))]
    return " ".join(w).capitalize() + ("?" if r.random() < 0.15 else ".")


def document(r):
    return [[sentence(r) for _ in range(r.randint(3, 5))] for _ in range(r.randint(PARAS[0], PARAS[1]))]


def text(d):
    return "\n\n".join(" ".join(p) for p in d)


def lit(t):
    return "$b$" + t + "$b$"


def edit(r, d):
    p = r.randrange(len(d))
    d[p][r.randrange(len(d[p]))] = sentence(r)


def main():
    cmd, table = sys.argv[1], sys.argv[2]
    if cmd == "load":
        n, seed = int(sys.argv[3]), int(sys.argv[4])
        r = random.Random(seed)
        for i in range(1, n + 1):
            print("INSERT INTO %s VALUES (%d, %s);" % (table, i, lit(text(document(r)))))
        return
    if cmd == "edits":
        n, k, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        r = random.Random(seed)
        docs = [document(r) for _ in range(n)]  # as load made them (same seed)
        e = random.Random(seed + 1)
        ids = list(range(1, n + 1))
        e.shuffle(ids)
        for j in range(k):
            i = ids[j % n]
            edit(e, docs[i - 1])
            print("UPDATE %s SET body = %s WHERE id = %d;" % (table, lit(text(docs[i - 1])), i))
        return
    n, changes, txn, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    r = random.Random(seed)
    docs = {i: document(r) for i in range(1, n + 1)}
    c = random.Random(seed + 1)
    nxt = n + 1
    for k in range(changes):
        if k % txn == 0:
            print("BEGIN;")
        x = c.random()
        live = sorted(docs)
        if x < 0.08 or len(live) < 10:
            docs[nxt] = document(c)
            print("INSERT INTO %s VALUES (%d, %s);" % (table, nxt, lit(text(docs[nxt]))))
            nxt += 1
        elif x < 0.85:
            i = c.choice(live)
            edit(c, docs[i])
            print("UPDATE %s SET body = %s WHERE id = %d;" % (table, lit(text(docs[i])), i))
        elif x < 0.95:
            i = c.choice(live)
            if len(docs[i]) > 1:
                del docs[i][c.randrange(1, len(docs[i])):]
            else:
                docs[i][0] = docs[i][0][:1]
            print("UPDATE %s SET body = %s WHERE id = %d;" % (table, lit(text(docs[i])), i))
        else:
            i = c.choice(live)
            del docs[i]
            print("DELETE FROM %s WHERE id = %d;" % (table, i))
        if k % txn == txn - 1 or k == changes - 1:
            print("COMMIT;")


main()
