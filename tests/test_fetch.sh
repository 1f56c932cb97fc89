#!/usr/bin/env bash
# test_fetch.sh: models/fetch_model.py --check names each missing or corrupt file and the
# command that fixes it, and accepts a verified folder.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
model=${CDCVEC_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcvec/all-MiniLM-L6-v2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }

python3 "$root/models/fetch_model.py" --check --dest "$model"; rc=$?
check "the fetched model verifies" '[ $rc -eq 0 ]'
python3 "$root/models/fetch_model.py" --check --dest "$tmp/empty" 2>"$tmp/err"; rc=$?
check "empty folder: exit 1" '[ $rc -eq 1 ]'
check "empty folder: names model.safetensors and the fix" 'grep -q "model.safetensors: missing; fix: python3 models/fetch_model.py" "$tmp/err"'
mkdir -p "$tmp/bad" && cp -r "$model"/. "$tmp/bad/" && printf 'x' >>"$tmp/bad/vocab.txt"
python3 "$root/models/fetch_model.py" --check --dest "$tmp/bad" 2>"$tmp/err"; rc=$?
check "corrupt vocab.txt: exit 1, named" '[ $rc -eq 1 ] && grep -q "vocab.txt: sha256 mismatch" "$tmp/err"'
exit $fail
