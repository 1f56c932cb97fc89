#!/usr/bin/env bash
# test_http.sh: the HTTP front door against the findings of issues 12 and 21 (loopback only, bounded).
#   1. `cdcvec serve` under `ulimit -n 1024`: tests/http_robustness.py serve (limits, deadlines,
#      chunked bodies, 100-continue, JSON on every status, memory after 4 x 16 MB bodies, slow
#      uploads, 1,100 idle connections, 40,000 header lines, a client at 1 byte/s; ambiguous
#      framing, content types, Host, CORS, clients behind a trusted proxy, TEI's truncate and
#      normalize, LangChain's token arrays);
#   2. `cdcvec sync --http` with CDCVEC_API_KEY set: every embedding and search endpoint refuses
#      a missing or wrong key, the search checks (q limits, UTF-8, NUL), the rendered page;
#   3. the search page in headless Chromium (Debian's `chromium`; SKIPPED when absent): a query
#      in the URL, a screenshot in the test's output folder, the hits asserted in the DOM,
#      hostile titles shown as text; then tests/search_browser.py types and clicks through a
#      filtered search at 1280x800 and 390x844, logging in with the API key first (issue 27).
#   usage: test_http.sh path/to/cdcvec [output-dir]
set -u
. "$(dirname "$0")/sync_lib.sh"
test_begin http 43000 "$1"
out=${2:-$(dirname "$bin")/test-http-out}
mkdir -p "$out"
PY=$(bash "$root/scripts/test-venv.sh") || { echo "FAIL cannot make the tests' Python venv"; exit 1; }
serve_pid= sync_pid=

# ---- 1. serve ---------------------------------------------------------------------------
HEADER_TIMEOUT=3
# a port free of listeners may still be bound by some client socket: try a few
nport=$((43000 + $$ % 4000))
for attempt in 1 2 3 4 5; do
  nport=$(free_port $((nport + 2)))
  hport=$(free_port $((nport + 1)))
  (
    ulimit -n 1024
    exec "$bin" serve --listen "tcp://127.0.0.1:$nport" --http "127.0.0.1:$hport" --threads 1 --max-texts 64 \
      --http-header-timeout-s $HEADER_TIMEOUT --drain-timeout-ms 2000 --http-trusted-proxies 127.0.0.20 \
      --http-allowed-hosts cdcvec.internal --http-cors-origins https://app.example --http-body-memory-bytes 25165824
  ) >"$work/serve.log" 2>&1 &
  serve_pid=$!
  WATCH_PID=$serve_pid STALL_S=60 wait_until 'curl -sf "http://127.0.0.1:$hport/healthz" >/dev/null' true && break
  grep -q "in use" "$work/serve.log" || { echo "FAIL serve did not start"; cat "$work/serve.log"; exit 1; }
  serve_pid=
done
[ -n "$serve_pid" ] || { echo "FAIL serve did not start: no free ports"; exit 1; }
timeout 240 "$PY" "$root/tests/http_robustness.py" serve "127.0.0.1:$hport" "$serve_pid" $HEADER_TIMEOUT \
  "127.0.0.1:$nport" || fail=1
if "$PY" -c "import langchain_openai" 2>/dev/null; then
  check "LangChain's OpenAIEmbeddings: defaults refused with the setting named, then vectors with it" \
    'timeout 60 "$PY" "$root/tests/langchain_check.py" "http://127.0.0.1:$hport/v1"'
else
  echo "SKIPPED LangChain check: langchain_openai is not in the tests' venv (tests/http_robustness.py sends its request shape)"
fi
check "serve exits 0 on SIGTERM after all that" 'kill -TERM $serve_pid && wait $serve_pid'
serve_pid=

# ---- 1b. the images' HEALTHCHECK with --metrics-auth 1 and a key (issue 21.6) ----------------
kport=$(free_port $((hport + 1)))
printf 'hk-%s\n' "$$" >"$work/key"
CDCVEC_API_KEY_FILE="$work/key" "$bin" serve --listen "" --http "127.0.0.1:$kport" --threads 1 --metrics-auth 1 \
  >"$work/serve-key.log" 2>&1 &
serve_pid=$!
WATCH_PID=$serve_pid wait_until '[ "$(curl -s -o /dev/null -w "%{http_code}" "http://127.0.0.1:$kport/healthz")" = 401 ]' true
check "docker/healthcheck.sh sends the key from CDCVEC_API_KEY_FILE: healthy under --metrics-auth 1" \
  'CDCVEC_HTTP=127.0.0.1:$kport CDCVEC_API_KEY_FILE="$work/key" bash "$root/docker/healthcheck.sh"'
check "docker/healthcheck.sh sends the key from CDCVEC_API_KEY too" \
  'CDCVEC_HTTP=127.0.0.1:$kport CDCVEC_API_KEY="hk-$$" bash "$root/docker/healthcheck.sh"'
check "docker/healthcheck.sh without the key: unhealthy (401)" \
  '! CDCVEC_HTTP=127.0.0.1:$kport bash "$root/docker/healthcheck.sh" 2>/dev/null'
kill -TERM "$serve_pid" && wait "$serve_pid"
serve_pid=

# ---- 1c. serve --model A --model B: two models of different dims, chosen by "model" (issue 24) ----
gen_model tiny-cls-cased
gen_model base-mean-prompt
mport=$(free_port $((kport + 1)))
"$bin" serve --listen "" --http "127.0.0.1:$mport" --threads 1 --model "$gen/tiny-cls-cased" \
  --model "$gen/base-mean-prompt" >"$work/serve-models.log" 2>&1 &
serve_pid=$!
WATCH_PID=$serve_pid STALL_S=60 wait_until 'curl -sf "http://127.0.0.1:$mport/healthz" >/dev/null' true
check "serve --model A --model B: /v1/models, vectors by the request's model, refusals naming the models" \
  'timeout 120 python3 "$root/tests/serve_models_check.py" "127.0.0.1:$mport" "$root/tests/data"'
check "  ... each model loaded once" '[ "$(grep -c "event=model_loaded" "$work/serve-models.log")" = 2 ]'
kill -TERM "$serve_pid" && wait "$serve_pid"
serve_pid=

# ---- 2. sync --http with an API key -------------------------------------------------------
port=$(free_port $((hport + 1)))
pg_up vector
books all
# hostile titles: shown as text by the page, never as markup
# a spreadsheet formula as a title: the CSV download defuses it ('=..., OWASP's CSV injection)
q "INSERT INTO books (name, description, author, year) VALUES ('=HYPERLINK(\"http://evil.example\",\"open\")', 'A cookbook of hearty winter soups and stews.', '@Chef', 2020)"
q "INSERT INTO books (name, description, author, year) VALUES ('<script>document.title=\"pwned\"</script><img src=x onerror=alert(1)>', 'Aliens from Mars land and invade the earth, & nobody <b>notices</b>.', 'Mallory \"<i>\"', 2024)"
sport=$(free_port $((port + 1)))
KEY=k-$$-$RANDOM
start_sync() { # KEY (empty: none)
  CDCVEC_API_KEY=$1 CDCVEC_LOG=warn "$bin" sync --source "$DB" --table public.books --batch-ms 10 --threads 1 \
    --http "127.0.0.1:$sport" >>"$work/sync.log" 2>&1 &
  sync_pid=$!
  watch $sync_pid sync "$work/sync.log"
  # ready = streaming, so the table is described and searches answer (503 before that)
  WATCH_PID=$sync_pid wait_until 'curl -sf "http://127.0.0.1:$sport/readyz" >/dev/null' \
    'curl -s "http://127.0.0.1:$sport/readyz"'
}
start_sync "$KEY"
check "the table is synced" 'converged_q "SELECT count(*) FROM books b FULL JOIN cdcvec.public_books v USING (id) WHERE b.id IS NULL OR v.id IS NULL" cdcvec.public_books'
timeout 120 "$PY" "$root/tests/http_robustness.py" sync "127.0.0.1:$sport" "$KEY" || fail=1
csv=$(curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$sport/search?q=a+cookbook+of+winter+soups&limit=3&format=csv")
check "CSV download: a cell that a spreadsheet would run as a formula starts with a quote" \
  'echo "$csv" | grep -q "'"'"'=HYPERLINK" && echo "$csv" | grep -q "'"'"'@Chef" && ! echo "$csv" | grep -q ",=HYPERLINK\|,\"=HYPERLINK"'
kill -TERM "$sync_pid" && wait "$sync_pid"
sync_pid=

# ---- 3. the page in a real browser (no key: a browser cannot send one from a link) ---------
start_sync ""
chrome=$(command -v chromium || command -v chromium-browser || true)
url="http://127.0.0.1:$sport/?q=a+martian+invasion+of+earth&limit=5"
if [ -z "$chrome" ]; then
  echo "SKIPPED browser check: no chromium (apt-get install chromium)"
else
  flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --no-first-run
    --user-data-dir="$work/chrome" --window-size=1000,1300)
  timeout 60 "$chrome" "${flags[@]}" --screenshot="$out/search-page.png" "$url" >"$work/chrome.log" 2>&1
  timeout 60 "$chrome" "${flags[@]}" --dump-dom "$url" >"$out/search-page.html" 2>>"$work/chrome.log"
  check "browser: a screenshot of the rendered search is saved ($out/search-page.png)" '[ -s "$out/search-page.png" ]'
  hits=$(grep -o '<li class="hit"' "$out/search-page.html" | wc -l)
  check "browser: 5 hits in the DOM, the query in the box" '[ "$hits" = 5 ] && grep -q "value=\"a martian invasion of earth\"" "$out/search-page.html"'
  check "browser: a hit shows title, score, matched text and the other fields" \
    'grep -q "The War of the Worlds" "$out/search-page.html" && grep -q "A Martian invasion of Earth throws humanity into chaos." "$out/search-page.html" && grep -q "score 0\.[0-9]\{3\}" "$out/search-page.html" && grep -q "<b>author</b>: H.G. Wells" "$out/search-page.html" && grep -q "<b>year</b>: 1898" "$out/search-page.html" && grep -q "id [0-9]" "$out/search-page.html"'
  check "browser: the hostile title is text, not markup (no script ran, no img element)" \
    'grep -q "&lt;script&gt;document.title" "$out/search-page.html" && ! grep -q "<img" "$out/search-page.html" && ! grep -q "<title>pwned" "$out/search-page.html" && grep -q "&amp; nobody &lt;b&gt;notices" "$out/search-page.html"'
  [ "$fail" = 0 ] || sed -n '1,20p' "$work/chrome.log"
  # issue 27: typed and clicked as a person would (DevTools protocol over a pipe), at 1280x800 and
  # 390x844 (mobile emulation): filters by author and year range, count, sort, CSV download,
  # latency and freshness shown, a malformed filter; screenshots search-1280x800.png / -390x844.png
  # with the API key set: logged in through the form first (a session cookie)
  kill -TERM "$sync_pid" && wait "$sync_pid"
  start_sync "$KEY"
  check "browser, driven: log in with the key, search, filters, count, sort, CSV download, error kept, phone layout (screenshots in $out)" \
    'SEARCH_KEY=$KEY timeout 240 python3 "$root/tests/search_browser.py" "$chrome" "http://127.0.0.1:$sport" "$out"'
fi
kill -TERM "$sync_pid" && wait "$sync_pid"
sync_pid=
[ "$fail" = 0 ] && echo "test_http: all passed" || { echo "test_http: FAILED"; tail -20 "$work/sync.log"; }
exit "$fail"
