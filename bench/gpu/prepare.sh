#!/usr/bin/env bash
# prepare.sh (run here, before a device call): gathers what the bare, offline GPU machine
# lacks into .gpu/ (git-ignored, carried by the call): Debian's library packages the build
# links (unpacked there into a private sysroot) and the model with fp16 matrices (45 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu/debs
python3 models/fetch_model.py >/dev/null
[ -f .gpu/model/model.safetensors ] ||
  python3 models/pack_fp16.py "${CDCVEC_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcvec/all-MiniLM-L6-v2}" .gpu/model
cd .gpu/debs
apt-get download -qq libjansson-dev libjansson4 libutf8proc-dev libutf8proc2 libopenblas-dev libopenblas0 \
  libopenblas-pthread-dev libopenblas0-pthread libcmocka-dev libcmocka0 libgfortran5 2>/dev/null
du -sh .. >&2
