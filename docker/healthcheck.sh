#!/bin/bash
# cdcvec-healthcheck: the images' HEALTHCHECK. GET /healthz on the container's own HTTP port
# (200 when up, 503 while draining) with bash's /dev/tcp: no curl in the image. The port is the
# one the command was given through the environment: CDCVEC_HEALTH_ADDR, else CDCVEC_SYNC_HTTP
# (sync), CDCVEC_STAGE_HTTP (capture, worker, sink), CDCVEC_HTTP (serve). /healthz is liveness
# (the process runs); readiness (source, store, brokers, lag) is /readyz, for orchestrators. The
# API key, when the container has one (CDCVEC_API_KEY or CDCVEC_API_KEY_FILE), goes with it:
# with --metrics-auth 1 /healthz needs it. printf is bash's builtin: the key is in no process's argv.
set -u
addr=${CDCVEC_HEALTH_ADDR:-${CDCVEC_SYNC_HTTP:-${CDCVEC_STAGE_HTTP:-${CDCVEC_HTTP:-127.0.0.1:9464}}}}
host=${addr%:*}
port=${addr##*:}
case $host in "" | 0.0.0.0 | "*") host=127.0.0.1 ;; "[::]") host=::1 ;; esac
host=${host#[}
host=${host%]}
exec 3<>"/dev/tcp/$host/$port" || exit 1
key=${CDCVEC_API_KEY:-}
if [ -z "$key" ] && [ -n "${CDCVEC_API_KEY_FILE:-}" ]; then IFS= read -r key <"$CDCVEC_API_KEY_FILE" || [ -n "$key" ] || exit 1; fi
auth=
[ -n "$key" ] && auth="Authorization: Bearer ${key%$'\r'}"$'\r\n'
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n%s\r\n' "$host" "$auth" >&3
IFS= read -r -t 3 status <&3 || exit 1
case $status in "HTTP/1."?" 200"*) exit 0 ;; esac
echo "healthz: $status" >&2
exit 1
