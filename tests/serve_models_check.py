"""serve_models_check.py: `cdcvec serve --model A --model B` (tests/test_http.sh, issue 24 item 5).
A is tests/models_gen.c's tiny-cls-cased (128-d), B its base-mean-prompt (768-d); their
sentence-transformers vectors for the golden texts are tests/data/models_golden.f32 (layout in
models_golden.json). Checks /v1/models (OpenAI's list), the model chosen by the request's
"model" field (vectors against the reference: cosine >= 0.99999), and the refusals: an unknown
model (404) and none named among several (400), each naming the models served. Standard
library only.
usage: serve_models_check.py HOST:PORT DATA_DIR"""
import json
import math
import struct
import sys
import urllib.error
import urllib.request

host, data = sys.argv[1], sys.argv[2]
N = 8  # golden texts sent
fails = 0


def check(name, ok, detail=""):
    global fails
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + str(detail)[:400]))
    fails += not ok


def call(path, body=None):
    req = urllib.request.Request("http://" + host + path, method="POST" if body is not None else "GET")
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


texts = [json.loads(l)["text"] for l in open(data + "/embed_texts.jsonl", encoding="utf-8")]
meta = json.load(open(data + "/models_golden.json"))
raw = open(data + "/models_golden.f32", "rb").read()
ref, off = {}, 0
for part in meta["layout"]:  # documents of each model, then queries
    n, d = part["texts"], part["dim"]
    if part["kind"] == "document":
        ref[part["model"]] = [struct.unpack_from("<%df" % d, raw, 4 * (off + i * d)) for i in range(N)]
    off += n * d


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


st, j = call("/v1/models")
ids = [m.get("id") for m in j.get("data", [])]
check("GET /v1/models: OpenAI's list of both models, in order",
      st == 200 and j.get("object") == "list" and ids == ["tiny-cls-cased", "base-mean-prompt"]
      and all(m.get("object") == "model" and m.get("owned_by") == "cdcvec" for m in j["data"]), (st, j))

for name, dim in (("tiny-cls-cased", 128), ("base-mean-prompt", 768)):
    st, j = call("/v1/embeddings", {"input": texts[:N], "model": name})
    vecs = [d["embedding"] for d in j.get("data", [])] if st == 200 else []
    mins = min((cos(v, r) for v, r in zip(vecs, ref[name])), default=0)
    check("model %s: %d %d-d vectors, \"model\" answered, min cosine to sentence-transformers %.7f >= 0.99999"
          % (name, N, dim, mins),
          st == 200 and j.get("model") == name and len(vecs) == N and all(len(v) == dim for v in vecs)
          and mins >= 0.99999, (st, str(j)[:300]))

st, j = call("/v1/embeddings", {"input": "a text", "model": "all-MiniLM-L6-v2"})
msg = j.get("error", {}).get("message", "")
check("a model not served: 404 model_not_found naming those served",
      st == 404 and j["error"].get("type") == "model_not_found" and "tiny-cls-cased" in msg
      and "base-mean-prompt" in msg, (st, j))
st, j = call("/v1/embeddings", {"input": "a text"})
msg = j.get("error", {}).get("message", "")
check("no \"model\" with several served: 400 naming them", st == 400 and "tiny-cls-cased" in msg
      and "base-mean-prompt" in msg, (st, j))
st, j = call("/v1/embeddings", {"input": "a text", "model": "base-mean-prompt", "dimensions": 128})
check("\"dimensions\" checked against the model asked for: 400", st == 400 and "768" in str(j), (st, j))
sys.exit(1 if fails else 0)
