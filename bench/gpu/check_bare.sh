#!/usr/bin/env bash
# check_bare.sh: proves here that the GPU bundle builds on a bare machine. A Debian root made by
# mmdebstrap with only a compiler, CMake and xz (no library -dev package, no pkg-config), this
# machine's CUDA toolkit bind-mounted in (a private mount namespace: nothing stays mounted), and a
# copy of exactly what a device call sends (the working tree's tracked and untracked-not-ignored
# files, shared/, .gpu from bench/gpu/prepare.sh); then bench/gpu/run.sh there. It must build,
# pass the CPU tests, and report the GPU steps SKIPPED (exit 77: no GPU).
# Exit: 0 proved; 1 failed; 77 cannot check here (not root, no mmdebstrap, no CUDA toolkit).
# Takes ~5 minutes on 2 cores (the CUDA kernels); the Debian root is kept in $CDCVEC_BARE_DIR
# (default /tmp/cdcvec-bare) for the next run. The ctest test_gpu_bundle runs it
# (--if-asked: only with CDCVEC_BUNDLE_TEST=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
skip() {
  echo "check_bare.sh: SKIPPED: $*"
  exit 77
}
fail() {
  echo "check_bare.sh: FAILED: $*" >&2
  exit 1
}
if [ "${1:-}" = --if-asked ] && [ "${CDCVEC_BUNDLE_TEST:-0}" != 1 ]; then
  skip "set CDCVEC_BUNDLE_TEST=1 to run it (~2-5 min)"
fi
[ "$(id -u)" = 0 ] || skip "needs root (chroot, mounts)"
for t in mmdebstrap unshare chroot git; do
  command -v $t >/dev/null || skip "$t not found (Debian: apt-get install mmdebstrap)"
done
CUDA=$(readlink -f "${CUDA_HOME:-/usr/local/cuda}")
[ -x "$CUDA/bin/nvcc" ] || skip "no CUDA toolkit at ${CUDA_HOME:-/usr/local/cuda}"
W=${CDCVEC_BARE_DIR:-/tmp/cdcvec-bare}
R=$W/root
mkdir -p "$W"

# the Debian root (cached): build-essential, cmake, xz-utils and what they pull in
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
if [ ! -f "$W/root.tar" ]; then
  mmdebstrap --quiet --variant=apt --include=build-essential,cmake,xz-utils "$suite" "$W/root.tar.tmp" ||
    fail "mmdebstrap $suite failed"
  mv "$W/root.tar.tmp" "$W/root.tar"
fi
bash bench/gpu/prepare.sh # .gpu (kept between runs)

if findmnt -rn -o TARGET | grep -q "^$R"; then fail "something is still mounted under $R"; fi
rm -rf "$R" && mkdir -p "$R" && tar -C "$R" -xf "$W/root.tar"
# bare: none of the project's libraries, no pkg-config
dev=$(chroot "$R" dpkg-query -W -f '${Package}\n' |
  grep -E '^(pkg-config|pkgconf|lib(jansson|utf8proc|openblas|blas|cmocka|nng|pq|curl|microhttpd|rdkafka|ssl|mbedtls).*-dev)$' ||
  true)
[ -z "$dev" ] || fail "the root is not bare: $dev"
# what a device call sends
mkdir -p "$R/src" "$R/out"
(
  git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
    [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"
  done
  [ -d shared ] && find shared -print0
  find .gpu -type f -print0
) | tar -C "$SRC" --null --no-recursion -T - -cf - | tar -C "$R/src" -xf -
sent=$(du -sb "$R/src" | cut -f1)
echo "check_bare.sh: the copy of what a call sends: $((sent / 1024 / 1024)) MiB (limit 64)"
[ "$sent" -lt $((64 * 1024 * 1024)) ] || fail "over the 64 MiB a device call sends"

rc=0
unshare -m --propagation private bash -c "
  set -e
  mkdir -p '$R$CUDA'
  mount --bind '$CUDA' '$R$CUDA'
  mount -o remount,bind,ro '$R$CUDA'
  mount -t proc proc '$R/proc'
  mount --bind /dev '$R/dev'
  ln -sfn '$CUDA' '$R/usr/local/cuda'
  chroot '$R' /usr/bin/env -i PATH=/usr/local/cuda/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root OUT=/out \
    bash /src/bench/gpu/run.sh" || rc=$?
echo "--- summary.txt"
cat "$R/out/summary.txt" || true
[ $rc = 77 ] || fail "run.sh exited $rc, expected 77 (built, GPU steps SKIPPED); logs in $R/out"
grep -q '^step=build result=ok' "$R/out/summary.txt" || fail "no successful build step"
grep -q '^step=tests result=ok' "$R/out/summary.txt" || fail "the tests step did not pass"
grep -q 'test_cuda_ops .*Skipped' "$R/out/summary.txt" || fail "test_cuda_ops did not report Skipped"
grep -q 'SKIPPED' "$R/out/summary.txt" || fail "the GPU steps did not report SKIPPED"
if findmnt -rn -o TARGET | grep -q "^$R"; then fail "something is still mounted under $R"; fi
echo "check_bare.sh: ok: the bundle builds on a bare $suite root with the CUDA toolkit; GPU steps SKIPPED"
