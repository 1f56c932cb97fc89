#!/usr/bin/env bash
# test.sh: README's test command. Installs what is missing (Debian packages, pgvector, the
# model), builds, and runs every test registered with ctest.
#   BUILD_DIR (default build), CDCVEC_MODEL_DIR (default ~/.cache/cdcvec/all-MiniLM-L6-v2)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

bash scripts/install-deps.sh
python3 models/fetch_model.py
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
cd "$BUILD_DIR"
ctest --output-on-failure -j1 "$@"
