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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", required=True)
    ap.add_argument("--long", required=True)
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--model", default=os.environ.get("CDCVEC_MODEL_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cdcvec", "all-MiniLM-L6-v2"))
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(a.threads)
    model = SentenceTransformer(a.model, device=a.device)
    if a.device.startswith("cuda"):
        model = model.half()  # the usual GPU deployment: fp16 weights and activations
    print(f"# anchor: sentence-transformers, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {a.device}", file=sys.stderr)
    for name, path in (("short", a.short), ("long", a.long)):
        texts = [l.rstrip("\n") for l in open(path, encoding="utf-8")]
        for bs in (int(b) for b in a.batches.split(",")):
            model.encode([texts[i % len(texts)] for i in range(bs)], batch_size=bs)  # warm-up
            pos, sent, t0 = 0, 0, time.perf_counter()
            while True:
                batch = [texts[(pos + i) % len(texts)] for i in range(bs)]
                pos = (pos + bs) % len(texts)
                model.encode(batch, batch_size=bs)
                sent += bs
                t = time.perf_counter() - t0
                if t >= a.seconds:
                    break
            print(json.dumps({"set": name, "batch": bs, "sent_per_s": round(sent / t, 2)}), flush=True)


if __name__ == "__main__":
    main()
