#!/usr/bin/env bash
# config-docs.sh BIN: regenerates the option tables of docs/CONFIG.md from the commands' own
# property tables (`cdcvec CMD --config-markdown`), between the "generated" markers; a command
# whose block is missing gets a new section at the end. tests/test_cli.sh checks the result.
set -euo pipefail
bin=${1:?usage: scripts/config-docs.sh path/to/cdcvec}
cd "$(dirname "$0")/.."
for cmd in serve sync migrate capture worker sink wait; do
  "$bin" $cmd --config-markdown >"/tmp/cdcvec-conf-$cmd.md"
done
"$bin" sync --pipeline-markdown >/tmp/cdcvec-conf-pipeline.md
"$bin" capture --pipeline-markdown >/tmp/cdcvec-conf-kpipeline.md
python3 - docs/CONFIG.md <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
for cmd in ["serve", "sync", "migrate", "capture", "worker", "sink", "wait"]:
    table = open(f"/tmp/cdcvec-conf-{cmd}.md").read()
    start = f"<!-- generated: cdcvec {cmd} --config-markdown -->\n"
    block = start + table + "<!-- end generated -->\n"
    if start in s:
        s = re.sub(re.escape(start) + r".*?<!-- end generated -->\n", lambda m: block, s, count=1, flags=re.S)
    else:
        s += (f"\n## `cdcvec {cmd}`\n\nThe Kafka stage `{cmd}` (docs/KAFKA.md). librdkafka properties: `-X key=value` "
              "(repeatable) or `--kafka-config FILE`; secrets only from the environment or that file.\n\n" + block)
start = "<!-- generated: pipeline keys, cdcvec sync --pipeline-markdown -->\n"
block = start + open("/tmp/cdcvec-conf-pipeline.md").read() + "<!-- end generated -->\n"
if start in s:
    s = re.sub(re.escape(start) + r".*?<!-- end generated -->\n", lambda m: block, s, count=1, flags=re.S)
else:
    s += "\n## The pipeline file's keys\n\n" + block
start = "<!-- generated: Kafka pipeline keys, cdcvec capture --pipeline-markdown -->\n"
block = start + open("/tmp/cdcvec-conf-kpipeline.md").read() + "<!-- end generated -->\n"
if start in s:
    s = re.sub(re.escape(start) + r".*?<!-- end generated -->\n", lambda m: block, s, count=1, flags=re.S)
else:
    s += "\n## The pipeline file's keys on the Kafka path\n\n" + block
open(p, "w").write(s)
PY
