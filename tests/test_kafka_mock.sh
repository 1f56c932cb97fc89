#!/usr/bin/env bash
# test_kafka_mock.sh BROKER_BIN: the standalone mock broker (tests/kafka_mock_broker.c) as a
# real protocol peer for Python's confluent-kafka over TCP: its command protocol, produce and
# consume in a consumer group, all brokers down then up mid-stream, and Produce errors that the
# idempotent producer retries (no loss, no duplicate, per-key order kept).
set -uo pipefail
BIN=${1:?usage: test_kafka_mock.sh kafka_mock_broker}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/kafka_lib.sh
. "$HERE/kafka_lib.sh"
# shellcheck source=tests/sync_lib.sh
. "$HERE/sync_lib.sh"

if ! PY=$(bash "$HERE/../scripts/test-venv.sh" 2>/tmp/kmock-venv.$$); then
  echo "SKIPPED: the tests' Python venv could not be built: $(tail -3 /tmp/kmock-venv.$$)"
  rm -f /tmp/kmock-venv.$$
  exit 77
fi
rm -f /tmp/kmock-venv.$$
KT="$PY $HERE/kafka_tutorial.py"
WORK=$(mktemp -d)
trap 'kmock_stop; rm -rf "$WORK"' EXIT

# N JSON lines {"key":"k<i mod 7>","value":"<prefix>-<i>"}
gen() { seq "$2" | awk -v p="$1" '{printf "{\"key\":\"k%d\",\"value\":\"%s-%d\"}\n", $1 % 7, p, $1}'; }

# verify FILE PREFIX N: exactly N messages PREFIX-1..N, each once, in order within each key
verify() {
  "$PY" - "$@" <<'EOF'
import json, sys
f, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
msgs = [json.loads(l) for l in open(f) if l.strip()]
vals = [m["value"] for m in msgs if m["value"].startswith(prefix + "-")]
want = {f"{prefix}-{i}" for i in range(1, n + 1)}
dups = len(vals) - len(set(vals))
missing = want - set(vals)
bykey = {}
for m in msgs:
    if m["value"].startswith(prefix + "-"):
        bykey.setdefault((m["key"], m["partition"]), []).append(int(m["value"].split("-")[-1]))
unordered = [k for k, v in bykey.items() if v != sorted(v)]
keyparts = {}
for (k, p) in bykey:
    keyparts.setdefault(k, set()).add(p)
split = [k for k, ps in keyparts.items() if len(ps) > 1]
ok = not dups and not missing and not unordered and not split
if not ok:
    print(f"  {prefix}: {len(vals)} got, {dups} duplicates, missing {sorted(missing)[:5]}, "
          f"out of order {unordered[:3]}, keys on several partitions {split[:3]}")
sys.exit(0 if ok else 1)
EOF
}

# 1. the command protocol
kmock_start "$BIN" --brokers 3 --topic t1:4 || exit 1
check "bootstrap lists 3 brokers" '[ "$(echo "$KMOCK_BOOTSTRAP" | tr , "\n" | grep -c :)" = 3 ]'
check "topic command" 'kmock_cmd "topic t2 2"'
check "rtt command" 'kmock_cmd "rtt -1 0"'
check "leader command" 'kmock_cmd "leader t1 0 2"'
check "errors by name" 'kmock_cmd "errors Produce 2 REQUEST_TIMED_OUT NOT_LEADER_FOR_PARTITION"'
check "errors by number" 'kmock_cmd "errors 8 1 NOT_COORDINATOR"'
check "unknown error name refused" '! kmock_cmd "errors Produce 1 NO_SUCH_ERROR" 2>/dev/null && [ "${KMOCK_ANSWER%% *}" = error ]'
check "unknown broker refused" '! kmock_cmd "down 9" 2>/dev/null'
check "unknown command refused" '! kmock_cmd "frobnicate" 2>/dev/null'
kmock_stop

# 2. produce + consume in a group, over TCP
kmock_start "$BIN" --brokers 3 --topic t1:4 || exit 1
B=$KMOCK_BOOTSTRAP
check "produce 500 (idempotent)" 'gen a 500 | $KT produce --bootstrap "$B" --topic t1 --idempotent 2>"$WORK/p1.err"'
check "consume 500 in a group" '$KT consume --bootstrap "$B" --topic t1 --group g1 --count 500 --timeout-s 30 >"$WORK/c1" 2>"$WORK/c1.err"'
check "all 500 once, keyed order" 'verify "$WORK/c1" a 500'
check "the group committed: a second run of g1 sees nothing new" \
  '! $KT consume --bootstrap "$B" --topic t1 --group g1 --count 1 --timeout-s 4 >"$WORK/c1b" 2>/dev/null && [ ! -s "$WORK/c1b" ]'

# 3. all brokers down for 5 s while a producer runs (2000 messages over ~8 s), then up:
# nothing lost, nothing doubled
(gen b 2000 | $KT produce --bootstrap "$B" --topic t1 --idempotent --interval-ms 4 2>"$WORK/p2.err"; echo $? >"$WORK/p2.rc") &
PPID2=$!
sleep 1.5
check "down -1" 'kmock_cmd "down -1"'
sleep 5
check "up -1" 'kmock_cmd "up -1"'
check "the producer was still running when the brokers came back" 'kill -0 $PPID2 2>/dev/null'
wait $PPID2
check "producer rode out the outage" '[ "$(cat "$WORK/p2.rc")" = 0 ] || { cat "$WORK/p2.err"; false; }'
check "consume 2000 after the outage" '$KT consume --bootstrap "$B" --topic t1 --group g2 --count 2500 --timeout-s 30 >"$WORK/c2" 2>"$WORK/c2.err"'
check "outage: all 2000 once, keyed order" 'verify "$WORK/c2" b 2000'

# 4. Produce errors injected: retried by the idempotent producer, no loss, no duplicate
check "inject Produce errors" \
  'kmock_cmd "errors Produce 6 NOT_LEADER_FOR_PARTITION REQUEST_TIMED_OUT _TRANSPORT NOT_ENOUGH_REPLICAS LEADER_NOT_AVAILABLE REQUEST_TIMED_OUT"'
check "produce 300 through the errors" 'gen c 300 | $KT produce --bootstrap "$B" --topic t1 --idempotent 2>"$WORK/p3.err" || { cat "$WORK/p3.err"; false; }'
check "inject Fetch and OffsetCommit errors" 'kmock_cmd "errors Fetch 3 NOT_LEADER_FOR_PARTITION _TRANSPORT REQUEST_TIMED_OUT" && kmock_cmd "errors OffsetCommit 2 NOT_COORDINATOR COORDINATOR_NOT_AVAILABLE"'
check "consume through Fetch errors" '$KT consume --bootstrap "$B" --topic t1 --group g3 --count 2800 --timeout-s 30 >"$WORK/c3" 2>"$WORK/c3.err"'
check "errors: all 300 once, keyed order" 'verify "$WORK/c3" c 300'

# 5. quit answers and exits 0; SIGTERM exits 0
check "quit exits 0" 'kmock_cmd quit && wait "$KMOCK_PID"'
kmock_stop
kmock_start "$BIN" || exit 1
kill -TERM "$KMOCK_PID"
check "SIGTERM exits 0" 'wait "$KMOCK_PID"'
kmock_stop

[ "$fail" = 0 ] && echo "test_kafka_mock: all passed" || echo "test_kafka_mock: FAILED"
exit "$fail"
