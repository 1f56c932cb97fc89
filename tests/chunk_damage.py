#!/usr/bin/env python3
"""chunk_damage.py STORE COLL TABLE: damages a chunked table's points through the vendor's client
(qdrant-client, upstash-vector), for test_chunks_remote.sh's verify checks: chunk 1 of key 3
deleted (a missing chunk), chunk 2 of key 1 given another chunk hash (a stale chunk), a copy of
key 2's chunk 0 written as its chunk 1 (an orphan past the end). Environment as chunk_check.py."""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chunk_check import secret, want_id  # noqa: E402

store, coll, table = sys.argv[1:4]
ids = {"miss": want_id(store, table, "3", 1), "stale": want_id(store, table, "1", 2),
       "src": want_id(store, table, "2", 0), "orphan": want_id(store, table, "2", 1)}
if store == "qdrant":
    from qdrant_client import QdrantClient, models
    c = QdrantClient(url=os.environ["QDRANT_URL"], api_key=secret("QDRANT_API_KEY"), https=False,
                     prefer_grpc=False, timeout=30, check_compatibility=False)
    got = {p.id: p for p in c.retrieve(coll, [ids["stale"], ids["src"]], with_payload=True, with_vectors=True)}
    st, src = got[ids["stale"]], got[ids["src"]]
    st.payload["cdcvec"]["chunk_hash"] = "f" * 64
    orphan = copy.deepcopy(src.payload)
    orphan["cdcvec"]["chunk"] = 1
    c.upsert(coll, [models.PointStruct(id=ids["stale"], vector=st.vector, payload=st.payload),
                    models.PointStruct(id=ids["orphan"], vector=src.vector, payload=orphan)], wait=True)
    c.delete(coll, models.PointIdsList(points=[ids["miss"]]), wait=True)
else:
    from upstash_vector import Index
    idx = Index(url=os.environ["UPSTASH_VECTOR_REST_URL"], token=secret("UPSTASH_VECTOR_REST_TOKEN"))
    got = {v.id: v for v in idx.fetch([ids["stale"], ids["src"]], include_vectors=True, include_metadata=True,
                                      namespace=coll) if v}
    st, src = got[ids["stale"]], got[ids["src"]]
    st.metadata["cdcvec"]["chunk_hash"] = "f" * 64
    orphan = copy.deepcopy(src.metadata)
    orphan["cdcvec"]["chunk"] = 1
    idx.upsert([(ids["stale"], st.vector, st.metadata), (ids["orphan"], src.vector, orphan)], namespace=coll)
    idx.delete([ids["miss"]], namespace=coll)
