"""minilm_ref.py: all-MiniLM-L6-v2's forward pass in numpy (float64), an independent reference
for the tests: BERT encoder (post-LayerNorm, exact erf GELU) and mean pooling over the
tokens, without the L2 normalization. Reads model.safetensors directly (no torch)."""
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
# where cdcvec looks (models/minilm.c cv_minilm_default_dir)
from fetch_model import default_dest as model_dir  # noqa: E402


def load(path=None):
    """The model's tensors as float64 arrays by name, and its config."""
    path = path or model_dir()
    with open(os.path.join(path, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    w = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        w[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"]).astype(np.float64)
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    return w, cfg


_erf = np.vectorize(math.erf)


def _ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def mean_pooled(ids, model):
    """The mean-pooled embedding (384 float64) of one sequence of token ids ([CLS] .. [SEP])."""
    w, cfg = model
    eps, H = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    T = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:T] +
         w["embeddings.token_type_embeddings.weight"][0])
    x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    D = x.shape[1]
    hd = D // H
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."

        def lin(v, name):
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (lin(x, "attention.self." + n).reshape(T, H, hd).transpose(1, 0, 2)
                   for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(T, D)
        x = _ln(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"], eps)
        i = lin(x, "intermediate.dense")
        i = 0.5 * i * (1.0 + _erf(i / math.sqrt(2.0)))
        x = _ln(lin(i, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x.mean(0)
