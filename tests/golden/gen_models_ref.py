#!/usr/bin/env python3
"""Reference vectors for tests/test_embed_models.c, from sentence-transformers itself.

The model folders are written by cdcvec's own generator (tests/models_gen.c, deterministic random
weights, no Python involved), so the test regenerates the very same files without torch:

  build/tests/test_embed_models --generate DIR
  python3 tests/golden/gen_models_ref.py DIR

Writes, under tests/data/:
  models_golden.f32   float32 little-endian: tiny-cls-cased's 128-d vector per golden text
                      (tests/data/embed_texts.jsonl), then base-mean-prompt's 768-d vectors of
                      the documents (prompt "document"), then of the first 16 texts as queries
                      (prompt "query"); exactly what SentenceTransformer.encode returns
  models_golden.json  the versions, the folders' weight hashes and the layout

Needs: sentence-transformers, torch (CPU), transformers, tokenizers (bench/requirements-ref.txt).
"""
import hashlib
import json
import os
import platform
import sys

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
NQUERY = 16


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    d = sys.argv[1]
    texts = [json.loads(l)["text"] for l in open(os.path.join(DATA, "embed_texts.jsonl"), encoding="utf-8")]
    torch.manual_seed(0)
    out, layout, hashes = [], [], {}
    tiny = SentenceTransformer(os.path.join(d, "tiny-cls-cased"), device="cpu")
    v = tiny.encode(texts, batch_size=16, convert_to_numpy=True)
    out.append(v.astype("<f4"))
    layout.append({"model": "tiny-cls-cased", "kind": "document", "texts": len(texts), "dim": v.shape[1]})
    base = SentenceTransformer(os.path.join(d, "base-mean-prompt"), device="cpu")
    v = base.encode(texts, prompt_name="document", batch_size=16, convert_to_numpy=True)
    out.append(v.astype("<f4"))
    layout.append({"model": "base-mean-prompt", "kind": "document", "texts": len(texts), "dim": v.shape[1]})
    v = base.encode(texts[:NQUERY], prompt_name="query", batch_size=16, convert_to_numpy=True)
    out.append(v.astype("<f4"))
    layout.append({"model": "base-mean-prompt", "kind": "query", "texts": NQUERY, "dim": v.shape[1]})
    for name in ("tiny-cls-cased", "base-mean-prompt"):
        hashes[name] = sha256(os.path.join(d, name, "model.safetensors"))
    np.concatenate([o.reshape(-1) for o in out]).tofile(os.path.join(DATA, "models_golden.f32"))
    meta = {
        "layout": layout,
        "weights_sha256": hashes,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    with open(os.path.join(DATA, "models_golden.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
