#!/usr/bin/env bash
# test-venv.sh: creates (once) the tests' private Python venv from tests/requirements-test.txt
# and prints its python's path. Re-installs when the requirements file changes.
#   CDCVEC_TEST_VENV (default ~/.cache/cdcvec/test-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CDCVEC_TEST_VENV:-$HOME/.cache/cdcvec/test-venv}
REQ=tests/requirements-test.txt
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test-venv: installing $REQ into $VENV" >&2
  python3 -m venv "$VENV" >&2 || {
    echo "test-venv: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2
    exit 1
  }
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
  echo "$want" >"$stamp"
fi
echo "$VENV/bin/python"
