#!/usr/bin/env bash
# test_harness.sh: the integration tests' own waits (tests/sync_lib.sh), checked so that they can
# fail: a wait on a watched process that exited fails at once with its log (not after a stall,
# let alone a hang), a process the test stops itself is not reported, and a listener whose port
# another program took meanwhile is started again on another port (cdcvec serve, for real).
#   usage: test_harness.sh path/to/cdcvec
set -u
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/tests/sync_lib.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/cv-harness.XXXXXX")
blocker= srv=
cleanup() {
  for p in $blocker $srv; do builtin kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# 1. a watched process exits while a wait's progress keeps moving: the wait fails at once
(echo "starting"; echo "event=fatal what=\"planted\""; exit 3) >"$work/dies.log" 2>&1 &
watch $! dies "$work/dies.log"
t0=$SECONDS
STALL_S=600 wait_until false 'echo x >>"$work/n"; wc -l <"$work/n"' >"$work/w1.out"
rc=$?
check "1 a wait fails when a watched process exited (rc=$rc)" '[ $rc = 1 ]'
check "1 ...within seconds, not after its stall of 600 s ($((SECONDS - t0)) s)" '[ $((SECONDS - t0)) -lt 60 ]'
check "1 ...naming it, its status and its log" \
  'grep -q "dies (pid [0-9]*) exited with status 3" "$work/w1.out" && grep -q "planted" "$work/w1.out"'

# 2. processes the test stops itself (kill, wait) are not reported
sleep 1000 &
s1=$!
watch $s1 sleeper
sleep 1000 &
s2=$!
watch $s2 sleeper2
kill -9 $s1
builtin wait $s1 2>/dev/null
# (a wait whose progress moves 5 times, then succeeds: progress runs in a subshell, so it counts in a file)
ticks() { : >"$work/ticks"; wait_until '[ "$(wc -l <"$work/ticks")" -ge 5 ]' 'echo x >>"$work/ticks"; wc -l <"$work/ticks"'; }
check "2 a process killed by the test is not reported" ticks
kill -TERM $s2
wait $s2 2>/dev/null
check "2 ...nor one the test waited for" ticks
check "2 kill -0 and kill -STOP keep a process watched" \
  'sleep 1000 & s3=$!; watch $s3 s3; kill -0 $s3; kill -STOP $s3; kill -CONT $s3; [ -n "${CV_WATCH[$s3]:-}" ]'
kill -9 $s3 2>/dev/null
wait $s3 2>/dev/null

# 3. a stall still fails (progress that does not move)
check "3 no progress for STALL_S: the wait fails" '! STALL_S=2 wait_until false "echo same" >/dev/null'

# 4. a port taken meanwhile: start_listener moves the listener to another port
hp=$(free_port $((30000 + $$ % 20000)))
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); print("bound", flush=True); time.sleep(1000)' "$hp" >"$work/blocker.log" 2>&1 &
blocker=$!
wait_until 'grep -q bound "$work/blocker.log"' 'wc -c <"$work/blocker.log"'
taken=$hp
np=$(free_port $((hp + 100)))
start_listener serve "$work/serve.log" hp "$bin" serve --listen "tcp://127.0.0.1:$np" --http "127.0.0.1:@PORT@" --threads 1 >"$work/sl.out"
rc=$?
srv=$LISTENER_PID
cat "$work/sl.out"
check "4 start_listener: the listener runs on another port ($taken taken, now $hp)" \
  '[ $rc = 0 ] && [ "$hp" != "$taken" ] && curl -sf "http://127.0.0.1:$hp/healthz" >/dev/null'
check "4 ...after cdcvec said the port was in use" 'grep -q "event=http_listen.*in use" "$work/serve.log"'
kill -TERM $srv
wait $srv
check "4 the listener stops on SIGTERM with status 0" '[ $? = 0 ]'
exit $fail
