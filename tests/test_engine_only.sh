#!/usr/bin/env bash
# test_engine_only.sh SRC BUILD: the engine-only build (-DCDCVEC_ENGINE_ONLY=ON, what
# bench/gpu/run.sh builds on a bare GPU machine) configures and builds with pkg-config out of the
# way (libraries found by find_path/find_library, as on a machine without it), asks for none of
# PostgreSQL, Kafka, curl, libmicrohttpd or OpenSSL; its cdcvec embeds, has `bench server` (nng,
# without the HTTP layer: run by bench/gpu/run.sh, too slow for here on a CPU), and answers the
# left-out commands with the fix. CUDA off (the CUDA side is the full build's;
# bench/gpu/check_bare.sh builds it bare). ~30 s on 2 cores.
set -euo pipefail
SRC=$1
B=$2/engine-only
fail() {
  echo "test_engine_only: FAILED: $*" >&2
  exit 1
}
rm -rf "$B"
cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Release -DCDCVEC_ENGINE_ONLY=ON -DCDCVEC_CUDA=OFF \
  -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON >"$B.configure.log" 2>&1 ||
  fail "configure: $(tail -20 "$B.configure.log")"
grep -q 'jansson without pkg-config' "$B.configure.log" || fail "jansson was not found without pkg-config"
if grep -qiE '^[A-Z_]*(LIBPQ|CURL|MHD|RDKAFKA|LIBCRYPTO)[A-Z_]*:' "$B/CMakeCache.txt"; then
  fail "the engine-only configure looked for a non-engine library: $(grep -iE '(LIBPQ|CURL|MHD|RDKAFKA|LIBCRYPTO)' "$B/CMakeCache.txt" | head -3)"
fi
cmake --build "$B" -j"$(nproc)" --target cdcvec test_tokenizer >"$B.build.log" 2>&1 ||
  fail "build: $(grep -E 'error|undefined' "$B.build.log" | head -20)"
"$B/tests/test_tokenizer" >/dev/null || fail "test_tokenizer of the engine-only build"

# the left-out commands: exit 2, with what to do
for c in serve sync "bench sink" capture; do
  rc=0
  # shellcheck disable=SC2086
  "$B/cdcvec" $c >"$B.out" 2>&1 || rc=$?
  [ $rc = 2 ] && grep -q 'configure without that option' "$B.out" || fail "cdcvec $c: rc=$rc: $(cat "$B.out")"
done
# the no-nng variant of the stubs compiles
cc -std=c11 -fsyntax-only -Wall -Werror -DCV_NO_BENCH_SERVER -I"$SRC" "$SRC/cli/cmd_engine_only.c" ||
  fail "cli/cmd_engine_only.c without nng"

"$B/cdcvec" bench server --help >"$B.out" 2>&1 || fail "no bench server in the engine-only build: $(cat "$B.out")"
# with the model: embed
M=${CDCVEC_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcvec/all-MiniLM-L6-v2}
if [ -f "$M/model.safetensors" ]; then
  printf 'a bare GPU machine\n' | "$B/cdcvec" embed --device cpu >"$B.out" 2>&1 || fail "embed: $(cat "$B.out")"
  n=$(grep -o ',' "$B.out" | wc -l)
  [ "$n" -ge 383 ] || fail "embed: expected a 384-d vector, got: $(head -c 300 "$B.out")"
else
  echo "test_engine_only: no model at $M: embed not run (python3 models/fetch_model.py)"
fi
echo "test_engine_only: ok"
