#!/usr/bin/env bash
# run_embed.sh: `cdcvec bench embed` with two anchors, sentence-transformers and ONNX Runtime fp32
# (what fastembed runs), same texts, same threads, same run. Creates a reference virtualenv
# (sentence-transformers + torch + onnxruntime from PyPI, a few GB) under $BUILD_DIR/.venv-ref on
# first use; bench/ort_anchor.py exports the model to $BUILD_DIR/onnx/ on its first run.
#   usage: bash bench/run_embed.sh [--seconds S] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
VENV=${CDCVEC_REF_VENV:-$BUILD_DIR/.venv-ref}

bash scripts/install-deps.sh
python3 models/fetch_model.py
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import sentence_transformers, onnxruntime, onnxscript" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r bench/requirements-ref.txt
fi
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(date -u +%F)"
"$BUILD_DIR/cdcvec" bench embed --anchor "sentence-transformers=$VENV/bin/python bench/st_anchor.py" \
  --anchor "onnxruntime=$VENV/bin/python bench/ort_anchor.py" "$@"
