#!/usr/bin/env bash
# demo.sh: README's main command (until `cdcvec sync` lands): installs what is missing,
# fetches the model, builds cdcvec, embeds the bookstore catalog (tests/data/books.sql) with
# `cdcvec embed`, and ranks the books for a few queries by cosine similarity.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

bash scripts/install-deps.sh
python3 models/fetch_model.py
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (name, description) pairs from the catalog's INSERT rows
python3 - tests/data/books.sql "$tmp/books.tsv" <<'PY'
import re, sys
rows = re.findall(r"^\('((?:[^']|'')*)', '((?:[^']|'')*)'", open(sys.argv[1]).read(), re.M)
with open(sys.argv[2], "w") as f:
    for name, desc in rows:
        f.write(name.replace("''", "'") + "\t" + desc.replace("''", "'") + "\n")
PY
cut -f2 "$tmp/books.tsv" | "$BUILD_DIR/cdcvec" embed --format f32 -o "$tmp/books.f32"
queries=("books like star wars" "aliens invade the earth" "a society that controls people" "time travel")
printf '%s\n' "${queries[@]}" | "$BUILD_DIR/cdcvec" embed --format f32 -o "$tmp/queries.f32"
python3 - "$tmp/books.tsv" "$tmp/books.f32" "$tmp/queries.f32" "${queries[@]}" <<'PY'
import array, sys
books = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def load(p):
    a = array.array("f"); a.frombytes(open(p, "rb").read()); return [a[i:i + 384] for i in range(0, len(a), 384)]
bv, qv = load(sys.argv[2]), load(sys.argv[3])
for q, v in zip(sys.argv[4:], qv):
    print(f'\nquery: "{q}"')
    ranked = sorted(((sum(x * y for x, y in zip(v, b)), i) for i, b in enumerate(bv)), reverse=True)[:3]
    for rank, (sim, i) in enumerate(ranked, 1):
        print(f"  {rank}. {sim:.3f}  {books[i][0]}: {books[i][1]}")
PY
