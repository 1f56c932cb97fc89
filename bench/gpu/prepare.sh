#!/usr/bin/env bash
# prepare.sh (run here, before a device call): gathers into .gpu/ (git-ignored; the call carries
# it: carry [".gpu"]) what the bare, offline GPU machine lacks for the engine-only build
# (-DCDCVEC_ENGINE_ONLY=ON; bench/gpu/README.md):
#   .gpu/deps.tar.xz  a prefix (include/, lib/): jansson, utf8proc, OpenBLAS (pthread) with the
#                     libgfortran5 and libquadmath0 it loads, cmocka, from Debian's binary
#                     packages; nng built here from Debian's source package, static, without TLS
#                     (for `bench server`)
#   .gpu/model/       the model with fp16 matrices (models/pack_fp16.py), ~46 MB
# then checks that what a call sends (the working tree, shared/, .gpu) is under the 64 MiB limit.
# Needs apt-get and the Debian archive, dpkg-deb, dpkg-source, cmake, cc, python3, xz.
# Again after a change of these lists: rm -rf .gpu (or CDCVEC_GPU_PREPARE_FORCE=1).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
G=$ROOT/.gpu
LIMIT=$((64 * 1024 * 1024))
die() {
  echo "prepare.sh: $*" >&2
  exit 1
}
for t in apt-get dpkg-deb dpkg-source cmake cc python3 xz; do
  command -v $t >/dev/null || die "$t not found (Debian: apt-get install dpkg-dev cmake gcc python3 xz-utils)"
done
[ "${CDCVEC_GPU_PREPARE_FORCE:-0}" = 1 ] && rm -rf "$G"
mkdir -p "$G"
rm -rf "$G/debs" # the old layout: Debian packages unpacked on the device

# 1. the model, fp16 matrices (the CUDA backend multiplies in fp16 anyway)
if [ ! -f "$G/model/model.safetensors" ]; then
  python3 models/fetch_model.py >/dev/null
  python3 models/pack_fp16.py "${CDCVEC_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cdcvec/all-MiniLM-L6-v2}" \
    "$G/model.tmp"
  rm -rf "$G/model" && mv "$G/model.tmp" "$G/model"
fi

# 2. the libraries, as one prefix
if [ ! -f "$G/deps.tar.xz" ]; then
  W=$(mktemp -d /tmp/cdcvec-gpu-prepare.XXXXXX)
  trap 'rm -rf "$W"' EXIT
  mkdir -p "$W/debs" "$W/sys" "$W/src" "$W/prefix/include" "$W/prefix/lib" "$W/apt/lists/partial"
  chmod 755 "$W" "$W/debs" "$W/src" # apt's sandbox user writes there
  (cd "$W/debs" && apt-get download -qq libjansson-dev libjansson4 libutf8proc-dev libutf8proc2 \
    libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0 libcmocka-dev libcmocka0) ||
    die "apt-get download failed (run 'apt-get update' first)"
  for f in "$W"/debs/*.deb; do dpkg-deb -x "$f" "$W/sys"; done
  U=$W/sys/usr/include L=$W/sys/usr/lib/x86_64-linux-gnu P=$W/prefix
  cp -a "$U"/{jansson.h,jansson_config.h,utf8proc.h,cmocka.h,cmocka_pbc.h} "$P/include/"
  cp -a "$U"/x86_64-linux-gnu/openblas-pthread/{cblas.h,openblas_config.h} "$P/include/"
  cp -a "$L"/libjansson.so* "$L"/libutf8proc.so* "$L"/libcmocka.so* "$L"/libgfortran.so.5* \
    "$L"/libquadmath.so.0* "$L"/openblas-pthread/libopenblas*.so* "$P/lib/"
  # nng from Debian's source package (deb-src entries made from this machine's Debian sources)
  python3 - "$W/apt/sources.list" <<'EOF'
import glob, re, sys
out = []
for f in ["/etc/apt/sources.list"] + glob.glob("/etc/apt/sources.list.d/*.list"):
    try:
        for l in open(f):
            if re.match(r"\s*deb\s", l) and "debian" in l:
                out.append(re.sub(r"^\s*deb\s", "deb-src ", l.rstrip("\n")))
    except OSError:
        pass
for f in glob.glob("/etc/apt/sources.list.d/*.sources"):
    for st in open(f).read().split("\n\n"):
        kv = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in st.splitlines()
                                                if ":" in l and not l.startswith((" ", "#")))}
        if "debian-archive-keyring" not in kv.get("Signed-By", "") and "/debian" not in kv.get("URIs", ""):
            continue
        for uri in kv.get("URIs", "").split():
            for suite in kv.get("Suites", "").split():
                out.append(f"deb-src {uri} {suite} {kv.get('Components', 'main')}")
if not out:
    sys.exit("prepare.sh: no Debian entry in /etc/apt/sources* to make a deb-src entry from")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
EOF
  A=(-o "Dir::Etc::SourceList=$W/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$W/apt/lists")
  apt-get "${A[@]}" update -qq || die "apt-get update of the deb-src entries failed ($W/apt/sources.list)"
  (cd "$W/src" && apt-get "${A[@]}" source -q --download-only nng && dpkg-source -x --no-check nng_*.dsc nng) \
    >"$W/nng.log" 2>&1 || die "nng's source package: $(tail -5 "$W/nng.log")"
  (cmake -S "$W/src/nng" -B "$W/src/nng/b" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DNNG_ENABLE_TLS=OFF -DNNG_TESTS=OFF -DNNG_TOOLS=OFF \
    -DNNG_ENABLE_NNGCAT=OFF -DCMAKE_INSTALL_PREFIX="$P" -DCMAKE_INSTALL_LIBDIR=lib &&
    cmake --build "$W/src/nng/b" -j"$(nproc)" && cmake --install "$W/src/nng/b") >>"$W/nng.log" 2>&1 ||
    die "nng's build: $(tail -5 "$W/nng.log")"
  rm -rf "$P/include/nng/compat" "$P/include/nng/transport/zerotier"
  tar -C "$P" -cf - . | xz -T0 -6 >"$G/deps.tar.xz.tmp"
  mv "$G/deps.tar.xz.tmp" "$G/deps.tar.xz"
fi

# 3. what a call sends: the checkout's tracked and untracked-not-ignored files, shared/, .gpu
sent=$( (git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
  [ -f "$f" ] && [ ! -L "$f" ] && printf '%s\0' "$f"
done
[ -d shared ] && find shared -type f -print0
find .gpu -type f -print0) | du -cb --files0-from=- | tail -1 | cut -f1)
echo "prepare.sh: .gpu: $(du -sh .gpu | cut -f1) (deps $(du -h .gpu/deps.tar.xz | cut -f1)," \
  "model $(du -sh .gpu/model | cut -f1)); a call sends $((sent / 1024 / 1024)) MiB of 64" >&2
[ "$sent" -lt "$LIMIT" ] || die "a call would send $sent bytes, over the 64 MiB limit: carry less"
