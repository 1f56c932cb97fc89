#!/usr/bin/env python3
"""recall.py: the HNSW recall benchmark's helper (bench/run_recall.sh runs it).

  recall.py texts N DIR    writes DIR/corpus.txt (N texts), DIR/queries.txt (200) and
                           DIR/inserts.txt (500): distinct sentence-like texts from a fixed
                           vocabulary and a fixed seed; the three sets never share a text
  recall.py run --db CONNINFO --dir DIR
                           DIR holds corpus.f32, queries.f32, inserts.f32 (cdcvec embed
                           --format f32: 384 little-endian float32 per text). Loads items(id,
                           embedding vector(384)) with COPY (FORMAT binary), takes the exact
                           top-10 of each query, then for each index configuration builds the
                           HNSW cosine index, measures recall@10 and latency per ef_search and
                           the cost of single-row inserts, drops it; prints a Markdown table.

Why synthetic texts: the benchmark must be reproducible offline, and a text corpus is not
shipped. The generator has topics (each its own nouns, verbs, adjectives) and sentence
templates, so the embeddings cluster by topic as real text does, unlike random vectors (a worst
case for HNSW). It is still a fixed vocabulary of a few hundred words: say so beside the figures.
"""
import argparse
import os
import random
import re
import statistics
import struct
import sys
import time

DIM = 384  # all-MiniLM-L6-v2's hidden size (models/.../config.json), the vector's dimension
K = 10  # recall@K
NQUERIES, NINSERTS = 200, 500
SEED_CORPUS, SEED_QUERIES, SEED_INSERTS = 14, 1014, 2014

# topic: (subjects, verbs in the past tense, objects, adjectives), space-separated
TOPICS = {
    "space": ("astronaut pilot crew probe rover colony captain alien engineer robot",
              "launched repaired abandoned discovered mapped boarded orbited signalled escaped rebuilt",
              "spaceship station asteroid nebula comet satellite moon reactor beacon wormhole",
              "distant frozen derelict ancient crimson silent orbital rogue"),
    "cooking": ("chef baker cook waiter grandmother caterer student host butcher farmer",
                "roasted baked seasoned sliced simmered served tasted burned whisked grilled",
                "soup bread pasta salmon curry dough sauce pie omelette stew",
                "spicy crispy creamy fresh sour smoky sweet bitter"),
    "software": ("developer compiler server database tester script admin user build scheduler",
                 "crashed deployed patched refactored leaked rejected cached indexed migrated logged",
                 "query module request bug release container schema thread cluster endpoint",
                 "slow broken legacy concurrent encrypted stale remote nightly"),
    "finance": ("investor bank trader broker fund auditor startup regulator accountant lender",
                "bought sold hedged audited borrowed invested reported downgraded merged taxed",
                "bond stock loan portfolio dividend mortgage currency budget invoice pension",
                "volatile quarterly risky profitable bankrupt liquid offshore annual"),
    "sports": ("striker goalkeeper coach referee runner team captain swimmer cyclist fan",
               "scored defended trained tackled sprinted won lost celebrated kicked passed",
               "match trophy penalty marathon season tournament goal record league medal",
               "final muddy historic narrow injured rival undefeated home"),
    "health": ("doctor nurse patient surgeon pharmacist therapist paramedic researcher midwife clinic",
               "diagnosed treated prescribed vaccinated examined monitored operated healed tested admitted",
               "fever fracture infection vaccine allergy tumour prescription injury symptom diet",
               "chronic acute mild contagious painful rare sterile routine"),
    "travel": ("tourist guide backpacker traveller driver hotel family couple pilgrim hiker",
               "booked visited explored crossed photographed missed toured hiked camped rented",
               "flight museum beach cathedral train hostel ferry mountain market passport",
               "crowded scenic remote cheap luxurious sunny overnight coastal"),
    "garden": ("gardener neighbour landlord plumber carpenter homeowner painter tenant decorator florist",
               "planted pruned watered painted installed repaired mowed fenced tiled harvested",
               "roses hedge lawn kitchen roof sofa tomatoes shed window orchard",
               "wooden leaky overgrown cosy tiny sunny damp rustic"),
    "music": ("singer drummer band pianist orchestra violinist composer producer choir rapper",
              "recorded performed composed rehearsed toured sang remixed tuned released improvised",
              "album song symphony concert chorus melody guitar festival ballad track",
              "loud acoustic melancholic upbeat classical electronic live rhythmic"),
    "weather": ("storm forecaster hurricane wind flood drought glacier wildfire blizzard heatwave",
                "flooded battered melted froze scorched drenched swept cooled threatened predicted",
                "coast harvest village valley forest highway island river reservoir airport",
                "torrential icy humid tropical record seasonal arctic dry"),
    "cars": ("mechanic driver commuter cyclist bus truck taxi motorist tram inspector",
             "towed overtook parked refuelled crashed serviced braked honked delivered steered",
             "engine tyre battery gearbox bridge roundabout motorway garage license ticket",
             "electric diesel rusty speeding second-hand hybrid noisy reliable"),
    "school": ("teacher pupil professor student principal tutor class librarian examiner dean",
               "taught graded studied failed passed memorised lectured enrolled revised debated",
               "exam essay lesson thesis homework lecture textbook curriculum grade diploma",
               "difficult boring advanced bilingual strict online final gifted"),
    "pets": ("dog cat vet puppy kitten parrot hamster owner horse trainer",
             "barked chased fetched adopted groomed fed scratched rescued walked vaccinated",
             "ball leash bone collar toy blanket cage saddle treat kennel",
             "playful lazy loyal fluffy stray nervous hungry elderly"),
    "fashion": ("designer model tailor shopper stylist brand boutique photographer seamstress buyer",
                "stitched designed wore altered modelled launched bought tailored knitted dyed",
                "dress jacket scarf boots collection suit fabric handbag sweater runway",
                "elegant vintage silk woollen colourful casual formal tailored"),
    "law": ("judge lawyer senator jury minister police witness council mayor prosecutor",
            "ruled appealed voted argued arrested testified vetoed sued pardoned legislated",
            "verdict bill contract election lawsuit treaty budget amendment warrant inquiry",
            "controversial federal unanimous secret landmark corrupt local urgent"),
    "gadgets": ("phone laptop camera tablet speaker router smartwatch drone headset printer",
                "charged froze updated streamed rebooted paired scanned recorded overheated synced",
                "screen battery app photo playlist firmware cable password charger keyboard",
                "wireless cracked waterproof smart portable refurbished cheap noisy"),
}
PLACES = ("in the city", "at the station", "near the river", "on the island", "in the village",
          "at the airport", "in the old town", "on the coast", "in the north", "at the harbour",
          "in the suburbs", "behind the market", "across the border", "in the capital", "at home",
          "on the farm", "in the office", "at the stadium", "in the hospital", "by the lake")
TIMES = ("last week", "on monday", "after midnight", "this morning", "in the spring",
         "during the summer", "before dawn", "at the weekend", "yesterday", "for the first time",
         "again", "in winter", "two years ago", "every evening", "at noon", "in december")
CONJ = ("while", "because", "after", "before", "although", "and then", "so", "until")
TOPIC_WORDS = [tuple(w.split() for w in t) for t in TOPICS.values()]


def sentence(rng):
    """One sentence: a clause of one topic, sometimes with an object from another topic and a
    second clause, as real descriptions mix subjects."""

    def clause(t):
        subj, verbs, objs, adjs = TOPIC_WORDS[t]
        ot = t if rng.random() < 0.8 else rng.randrange(len(TOPIC_WORDS))
        s = ["the", rng.choice(adjs)] if rng.random() < 0.5 else ["the"]
        s += [rng.choice(subj), rng.choice(verbs), rng.choice(("the", "a", "their", "her", "his"))]
        if rng.random() < 0.5:
            s.append(rng.choice(TOPIC_WORDS[ot][3]))
        s.append(rng.choice(TOPIC_WORDS[ot][2]))
        if rng.random() < 0.6:
            s.append(rng.choice(PLACES))
        if rng.random() < 0.5:
            s.append(rng.choice(TIMES))
        return " ".join(s)

    t = rng.randrange(len(TOPIC_WORDS))
    text = clause(t)
    if rng.random() < 0.5:
        t2 = t if rng.random() < 0.7 else rng.randrange(len(TOPIC_WORDS))
        text += ", " + rng.choice(CONJ) + " " + clause(t2)
    return text[0].upper() + text[1:] + "."


def distinct(n, seed, taken):
    """n distinct sentences from seed, none in taken (which grows by them)."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        s = sentence(rng)
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out


def cmd_texts(n, d):
    taken = set()
    sets = {"queries": distinct(NQUERIES, SEED_QUERIES, taken),
            "inserts": distinct(NINSERTS, SEED_INSERTS, taken),
            "corpus": distinct(n, SEED_CORPUS, taken)}
    for name, texts in sets.items():
        with open(os.path.join(d, name + ".txt"), "w") as f:
            f.write("\n".join(texts) + "\n")


# ---- run ----------------------------------------------------------------------------------

def load_f32(path):
    import numpy as np
    v = np.fromfile(path, dtype="<f4")
    if v.size % DIM:
        sys.exit(f"recall.py: {path}: {v.size} floats, not a multiple of {DIM}")
    return v.reshape(-1, DIM)


def vec_text(v):
    return "[" + ",".join("%.9g" % x for x in v) + "]"


def copy_items(conn, vecs, first_id):
    """COPY (FORMAT binary) rows (first_id + i, vecs[i]): pgvector's binary vector is int16 dim,
    int16 unused, then dim big-endian float4."""
    import numpy as np
    n = len(vecs)
    rec = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"), ("dim", ">i2"),
                    ("unused", ">i2"), ("v", ">f4", (DIM,))])
    rows = np.zeros(n, dtype=rec)
    rows["nf"], rows["l1"], rows["l2"], rows["dim"] = 2, 4, 4 + DIM * 4, DIM
    rows["id"] = np.arange(first_id, first_id + n)
    rows["v"] = vecs
    data = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0) + rows.tobytes() + struct.pack(">h", -1)
    with conn.cursor() as cur, cur.copy("COPY items (id, embedding) FROM STDIN (FORMAT binary)") as cp:
        for i in range(0, len(data), 1 << 20):
            cp.write(data[i:i + (1 << 20)])


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def exact_topk(conn, queries):
    """Exact top-K per query in SQL (sequential scan, pgvector's own cosine distance)."""
    conn.execute("SET enable_indexscan = off")
    conn.execute("SET enable_bitmapscan = off")
    truth = []
    for q in queries:
        rows = conn.execute("SELECT id FROM items ORDER BY embedding <=> %s::vector LIMIT %s",
                            (q, K)).fetchall()
        truth.append({r[0] for r in rows})
    conn.execute("RESET enable_indexscan")
    conn.execute("RESET enable_bitmapscan")
    return truth


def numpy_agreement(corpus, queries, truth):
    """Share of the SQL top-K that a float32 numpy brute force also finds (a check of the truth)."""
    import numpy as np
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    hit = 0
    for i in range(0, len(q), 50):
        sims = q[i:i + 50] @ c.T
        top = np.argpartition(-sims, K, axis=1)[:, :K] + 1  # ids are row + 1
        hit += sum(len(truth[i + j] & set(top[j].tolist())) for j in range(len(top)))
    return hit / (K * len(q))


def build(conn, cfg):
    """CREATE INDEX for one configuration; returns (seconds, parallel workers, other notices)."""
    notes = []

    def on_notice(d):
        notes.append(d.message_primary)

    conn.add_notice_handler(on_notice)
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET client_min_messages = debug1")  # pgvector logs "using N parallel workers"
    t0 = time.perf_counter()
    conn.execute(f"CREATE INDEX items_hnsw ON items USING hnsw ({cfg['expr']} {cfg['ops']}) "
                 f"WITH (m = {cfg['m']}, ef_construction = {cfg['efc']})")
    secs = time.perf_counter() - t0
    conn.execute("RESET client_min_messages")
    conn.execute("RESET maintenance_work_mem")
    conn.remove_notice_handler(on_notice)
    workers = [int(w.group(1)) for w in (re.match(r"using (\d+) parallel workers", m) for m in notes) if w]
    return secs, (workers[0] if workers else 0), [m for m in notes if "maintenance_work_mem" in m]


def search(conn, cfg, queries, truth, ef):
    """recall@K and per-query latencies (ms, client side over loopback TCP, each query parsed and
    planned like the EXPLAIN that was checked: no prepared statement, so no generic plan)."""
    conn.execute(f"SET hnsw.ef_search = {ef}")
    conn.execute("SET enable_seqscan = off")  # at a small N the planner may prefer a seq scan
    sql = f"SELECT id FROM items ORDER BY {cfg['expr']} <=> %s::{cfg['qtype']} LIMIT {K}"
    lat, hit = [], 0
    for q, want in zip(queries, truth):
        t0 = time.perf_counter()
        rows = conn.execute(sql, (q,), prepare=False).fetchall()
        lat.append((time.perf_counter() - t0) * 1000)
        hit += len(want & {r[0] for r in rows})
    conn.execute("RESET hnsw.ef_search")
    conn.execute("RESET enable_seqscan")
    return hit / (K * len(queries)), lat


def insert_ms(conn, inserts, first_id):
    """Median ms of a single-row autocommit INSERT into the indexed table (the CDC sink's
    steady-state cost grows with it)."""
    lat = []
    for i, v in enumerate(inserts):
        t0 = time.perf_counter()
        conn.execute("INSERT INTO items VALUES (%s, %s::vector)", (first_id + i, v), prepare=False)
        lat.append((time.perf_counter() - t0) * 1000)
    return statistics.median(lat)


CONFIGS = [
    {"name": "vector, m=16, ef_construction=64 (pgvector default, cdcvec today)", "m": 16, "efc": 64},
    {"name": "vector, m=16, ef_construction=128", "m": 16, "efc": 128},
    {"name": "vector, m=24, ef_construction=128", "m": 24, "efc": 128},
    {"name": "halfvec(384) expression, m=16, ef_construction=64", "m": 16, "efc": 64, "half": True},
]
EF_SEARCH = (40, 64, 100, 200)


def measure(conn, cfg, n, qtext, itext, truth):
    """Builds one configuration's index, measures it, drops it (and the rows it inserted)."""
    half = cfg.get("half")
    cfg = dict(cfg, expr=f"(embedding::halfvec({DIM}))" if half else "embedding",
               ops="halfvec_cosine_ops" if half else "vector_cosine_ops",
               qtype=f"halfvec({DIM})" if half else "vector")
    secs, workers, notes = build(conn, cfg)
    size = conn.execute("SELECT pg_relation_size('items_hnsw')").fetchone()[0]
    print(f"built {cfg['name']}: {secs:.1f} s, {workers} parallel workers, {size / 2**20:.1f} MiB"
          + ("; " + "; ".join(notes) if notes else ""), flush=True)
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.execute(
        f"EXPLAIN SELECT id FROM items ORDER BY {cfg['expr']} <=> '{qtext[0]}'::{cfg['qtype']} LIMIT {K}"))
    conn.execute("RESET enable_seqscan")
    if "Index Scan using items_hnsw" not in plan:
        plan = re.sub(r"'\[[^']*\]'", "'[...]'", plan)
        sys.exit("recall.py: the query does not use the HNSW index:\n" + plan)
    search(conn, cfg, qtext, truth, max(EF_SEARCH))  # warms the cache; not counted
    res = {"cfg": cfg, "secs": secs, "workers": workers, "size": size, "ef": []}
    for ef in EF_SEARCH:
        rec, lat = search(conn, cfg, qtext, truth, ef)
        res["ef"].append((ef, rec, pct(lat, 50), pct(lat, 99)))
        print(f"  ef_search={ef}: recall@{K} {rec:.4f}, p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms",
              flush=True)
    res["insert"] = insert_ms(conn, itext, n + 1)
    print(f"  single-row INSERT into the indexed table: median {res['insert']:.2f} ms", flush=True)
    conn.execute("DROP INDEX items_hnsw")
    conn.execute("DELETE FROM items WHERE id > %s", (n,))
    conn.execute("VACUUM items")
    return res


def cmd_run(a):
    import psycopg

    corpus, queries, inserts = (load_f32(os.path.join(a.dir, f"{name}.f32"))
                                for name in ("corpus", "queries", "inserts"))
    n = len(corpus)
    qtext, itext = [vec_text(q) for q in queries], [vec_text(v) for v in inserts]
    conn = psycopg.connect(a.db, autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute("DROP TABLE IF EXISTS items")
    conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({DIM}))")
    t0 = time.perf_counter()
    copy_items(conn, corpus, 1)
    conn.execute("VACUUM ANALYZE items")
    size = conn.execute("SELECT pg_size_pretty(pg_table_size('items'))").fetchone()[0]
    print(f"loaded {n} rows with COPY (FORMAT binary) in {time.perf_counter() - t0:.1f} s; table {size}")
    s = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in (
        "shared_buffers", "max_parallel_maintenance_workers", "max_parallel_workers", "max_worker_processes")}
    print("settings: maintenance_work_mem=1GB for each build, " + ", ".join(f"{k}={v}" for k, v in s.items()))
    t0 = time.perf_counter()
    truth = exact_topk(conn, qtext)
    agree = numpy_agreement(corpus, queries, truth)
    print(f"exact top-{K} of {len(queries)} queries (sequential scan) in {time.perf_counter() - t0:.1f} s; "
          f"a numpy float32 brute force finds {100 * agree:.2f}% of the same ids")

    results = [measure(conn, cfg, n, qtext, itext, truth) for cfg in CONFIGS]
    print(f"\n| index | build s (parallel workers) | index MiB | INSERT ms (median) "
          f"| ef_search | recall@{K} | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for i, (ef, rec, p50, p99) in enumerate(r["ef"]):
            head = [r["cfg"]["name"], f"{r['secs']:.1f} ({r['workers']})", f"{r['size'] / 2**20:.1f}",
                    f"{r['insert']:.2f}"] if i == 0 else [""] * 4
            print("| " + " | ".join(head + [str(ef), f"{rec:.4f}", f"{p50:.2f}", f"{p99:.2f}"]) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("texts")
    t.add_argument("n", type=int)
    t.add_argument("dir")
    r = sub.add_parser("run")
    r.add_argument("--db", required=True)
    r.add_argument("--dir", required=True)
    a = p.parse_args()
    if a.cmd == "texts":
        cmd_texts(a.n, a.dir)
    else:
        cmd_run(a)


if __name__ == "__main__":
    main()
