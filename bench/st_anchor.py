#!/usr/bin/env python3
"""Anchor for `cdcvec bench embed`: sentence-transformers on the same texts, same batches.

For each set (short, long) and batch size, encodes consecutive batches of the file's texts
(cycling) with model.encode(batch, batch_size=B) for at least --seconds, after one warm-up
batch, exactly as the C side does, and prints one JSON line per measurement:
  {"set": "short", "batch": 64, "sent_per_s": 123.4}
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
from fetch_model import default_dest  # noqa: E402  (the model cache cdcvec reads)


def anchor_args():
    """The anchors' shared command line (ort_anchor.py adds its own options)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", required=True)
    ap.add_argument("--long", required=True)
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--model", default=default_dest())
    ap.add_argument("--device", default="cpu")
    return ap


def time_batches(a, embed):
    """For each set and batch size: embed(batch) once to warm up, then on consecutive batches of
    the file's texts (cycling) for at least a.seconds; one JSON line per measurement."""
    for name, path in (("short", a.short), ("long", a.long)):
        texts = [l.rstrip("\n") for l in open(path, encoding="utf-8")]
        for bs in (int(b) for b in a.batches.split(",")):
            embed([texts[i % len(texts)] for i in range(bs)])  # warm-up
            pos, sent, t0 = 0, 0, time.perf_counter()
            while True:
                batch = [texts[(pos + i) % len(texts)] for i in range(bs)]
                pos = (pos + bs) % len(texts)
                embed(batch)
                sent += bs
                t = time.perf_counter() - t0
                if t >= a.seconds:
                    break
            print(json.dumps({"set": name, "batch": bs, "sent_per_s": round(sent / t, 2)}), flush=True)


def main():
    a = anchor_args().parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(a.threads)
    model = SentenceTransformer(a.model, device=a.device)
    if a.device.startswith("cuda"):
        model = model.half()  # the usual GPU deployment: fp16 weights and activations
    print(f"# anchor: sentence-transformers, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {a.device}", file=sys.stderr)
    time_batches(a, lambda batch: model.encode(batch, batch_size=len(batch)))


if __name__ == "__main__":
    main()
