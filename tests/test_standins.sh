#!/usr/bin/env bash
# test_standins.sh: the Qdrant and Upstash Vector stand-ins (tests/standins/) driven by the
# vendors' official Python clients (qdrant-client, upstash-vector), so that the stand-ins the
# sink tests rely on stay honest: results, error texts, limits and every injected fault.
# SKIPPED (exit 77) when the tests' Python venv (scripts/test-venv.sh) cannot be made.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! py=$(bash "$root/scripts/test-venv.sh" 2>"$tmp/venv.err"); then
  echo "SKIPPED: the tests' Python venv could not be made (scripts/test-venv.sh): $(tail -n 1 "$tmp/venv.err")"
  exit 77
fi
if ! "$py" -c 'import qdrant_edge, qdrant_client, upstash_vector, httpx, numpy' 2>"$tmp/import.err"; then
  echo "SKIPPED: the venv lacks the stand-ins' packages (tests/requirements-test.txt): $(tail -n 1 "$tmp/import.err")"
  exit 77
fi
exec "$py" "$root/tests/standins/check_standins.py"
