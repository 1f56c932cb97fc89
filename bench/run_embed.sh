#!/usr/bin/env bash
# run_embed.sh: `cdcvec bench embed` with sentence-transformers as the anchor, same texts,
# same threads, same run. Creates a reference virtualenv (sentence-transformers + torch from
# PyPI, a few GB) under $BUILD_DIR/.venv-ref on first use.
#   usage: bash bench/run_embed.sh [--seconds S] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
VENV=${CDCVEC_REF_VENV:-$BUILD_DIR/.venv-ref}

bash scripts/install-deps.sh
python3 models/fetch_model.py
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import sentence_transformers" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/requirements-ref.txt
fi
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F)"
"$BUILD_DIR/cdcvec" bench embed --anchor "$VENV/bin/python bench/st_anchor.py" "$@"
