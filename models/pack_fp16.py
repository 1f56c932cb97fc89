#!/usr/bin/env python3
"""Write a smaller copy of the model folder: matrices as F16, vectors (biases, LayerNorm) as F32.

For carrying the model where 90 MB does not fit (the lent GPU machine takes a 64 MB tree):
the CUDA backend multiplies in fp16 anyway, and the loader accepts F16 tensors. The copy
is not what models/minilm.sha256 describes, so it lives in its own folder.

Usage: python3 models/pack_fp16.py SRC_DIR DEST_DIR      (standard library only)
"""
import json
import os
import shutil
import struct
import sys

COPY = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "sentence_bert_config.json", "modules.json", "config_sentence_transformers.json", "1_Pooling/config.json"]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(dst, "1_Pooling"), exist_ok=True)
    for name in COPY:
        if os.path.exists(os.path.join(src, name)):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out_header, chunks, off = {"__metadata__": header.get("__metadata__", {})}, [], 0
    for name, t in sorted(header.items()):
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = data[b:e]
        dtype = t["dtype"]
        if dtype == "F32" and len(t["shape"]) == 2:
            vals = struct.unpack(f"<{len(raw) // 4}f", raw)
            raw = struct.pack(f"<{len(vals)}e", *vals)
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    hj = json.dumps(out_header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for c in chunks:
            f.write(c)
    print(f"pack_fp16: {dst}/model.safetensors, {8 + len(hj) + off} bytes")


if __name__ == "__main__":
    main()
