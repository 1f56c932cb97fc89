#!/usr/bin/env bash
# install-deps.sh: install what cdcvec needs on Debian bookworm; a no-op when all is there.
#   Debian packages: build tools, libraries, PostgreSQL 15 (server + headers).
#   pgvector 0.8.0: built from Debian's own source package (trixie) against PostgreSQL 15,
#   fetched through a private apt configuration so the system's apt setup is untouched
#   (../shared/PROTOCOLS.md §10).
# Runs as root, or through sudo when available. Set CDCVEC_SKIP_PGVECTOR=1 to skip pgvector.
set -euo pipefail

PACKAGES=(build-essential cmake pkg-config python3 python3-pip dpkg-dev
  libpq-dev libnng-dev libmicrohttpd-dev librdkafka-dev libjansson-dev libcurl4-openssl-dev libutf8proc-dev
  libopenblas-dev libcmocka-dev libyaml-dev postgresql-15 postgresql-server-dev-15
  libssl-dev clang libclang-rt-14-dev prometheus curl python3-venv postgresql-15-wal2json
  iproute2)
# best effort: the search page's browser check (tests/test_http.sh) reports SKIPPED without it;
# CDCVEC_SKIP_BROWSER=1 leaves it out
OPTIONAL=(chromium)
PGVECTOR_VERSION=0.8.0
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

log() { printf 'install-deps: %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else SUDO=(false); fi
fi
as_root() {
  if [ "${SUDO[0]:-}" = false ]; then
    log "need root to run: $*"; log "run this script as root or install sudo"; exit 1
  fi
  "${SUDO[@]}" "$@"
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${CDCVEC_SKIP_BROWSER:-0}" != 1 ]; then
  for p in "${OPTIONAL[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
    log "installing $p (optional: the search page's browser check)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null ||
      log "could not install $p: the browser check will report SKIPPED"
  done
fi

pgvector_installed() {
  local ext
  ext="$($PG_CONFIG --sharedir)/extension/vector.control"
  [ -f "$ext" ] && grep -q "default_version = '$PGVECTOR_VERSION'" "$ext" &&
    [ -f "$($PG_CONFIG --pkglibdir)/vector.so" ]
}

if [ "${CDCVEC_SKIP_PGVECTOR:-0}" != 1 ] && ! pgvector_installed; then
  log "building pgvector $PGVECTOR_VERSION from Debian's source package"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$work/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
  as_root apt-get "${apt_opts[@]}" update -qq
  chmod -R a+rwX "$work"
  cd "$work/src"
  if ! as_root apt-get "${apt_opts[@]}" source --download-only -qq "pgvector=${PGVECTOR_VERSION}-1" 2>/dev/null; then
    log "pgvector=${PGVECTOR_VERSION}-1 not in trixie any more; taking trixie's current pgvector"
    as_root apt-get "${apt_opts[@]}" source --download-only -qq pgvector
  fi
  as_root chmod -R a+rwX "$work/src"
  dpkg-source -x --no-check ./pgvector_*.dsc pgvector >/dev/null
  make -s -C pgvector PG_CONFIG=$PG_CONFIG OPTFLAGS="" >/dev/null
  as_root make -s -C pgvector PG_CONFIG=$PG_CONFIG install >/dev/null
  log "pgvector installed into $($PG_CONFIG --pkglibdir)"
fi
