#!/usr/bin/env python3
"""Anchor for `cdcvec bench embed`: ONNX Runtime fp32 (what fastembed runs), same texts, same batches.

Same contract as st_anchor.py: --short FILE --long FILE --batches LIST --seconds S --threads N
--device D in, one JSON line per measurement out ({"set": "short", "batch": 64, "sent_per_s": ..}).

The pipeline is the one sentence-transformers runs, minus torch at inference time:
  1. the model's encoder exported once with torch.onnx.export (fp32, dynamic batch and sequence
     axes), cached as <onnx dir>/<model name>-<sha256 of model.safetensors>-fp32.onnx, so a changed
     model re-exports;
  2. `tokenizers` on the model's tokenizer.json, truncation at sentence_bert_config.json's
     max_seq_length (256), padding to the longest text of each batch;
  3. onnxruntime, CPUExecutionProvider, intra_op_num_threads = --threads, inter_op 1, sequential;
  4. mean pooling over the attention mask (divisor clamped at 1e-9) and L2 normalization
     (norm clamped at 1e-12), as sentence-transformers' Pooling and Normalize modules do.
Before timing, it embeds tests/data/embed_texts.jsonl and compares with sentence-transformers'
vectors in tests/data/embed_golden.f32; below a minimum cosine of 0.99999 it exits 1 untimed.
"""
import json
import os
import sys
import warnings

from st_anchor import anchor_args, time_batches  # noqa: E402  (it puts models/ on the path too)
from fetch_model import sha256 as sha256_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_COSINE = 0.99999


def default_onnx_dir():
    """Beside the virtualenv running this script (build/ for build/.venv-ref), else the user cache."""
    if sys.prefix != sys.base_prefix:
        return os.path.join(os.path.dirname(os.path.abspath(sys.prefix)), "onnx")
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cdcvec", "onnx")


def export_onnx(model_dir, path):
    """Exports the model's encoder (input_ids, attention_mask, token_type_ids -> token embeddings)."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32)

    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)  # (batch, seq)
    seq = torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    dims = {0: torch.export.Dim("batch"), 1: seq}
    tmp = f"{path}.tmp{os.getpid()}"
    # the three inputs share the same Dim objects; the exporter warns about that, harmlessly
    warnings.filterwarnings("ignore", message=".*axis name: .* will not be used")
    with torch.no_grad():  # the torch.export-based exporter (needs onnx and onnxscript)
        torch.onnx.export(Encoder(model).eval(), (ids, (ids != 0).long(), torch.zeros_like(ids)), tmp,
                          dynamo=True, external_data=False, opset_version=18, verbose=False,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["token_embeddings"],
                          dynamic_shapes={"input_ids": dims, "attention_mask": dims, "token_type_ids": dims})
    os.replace(tmp, path)


class OrtEmbedder:
    """Tokenizer + ONNX Runtime session + sentence-transformers pooling, for one model folder."""

    def __init__(self, model_dir, onnx_path, threads):
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        with open(os.path.join(model_dir, "sentence_bert_config.json")) as f:
            self.max_len = json.load(f)["max_seq_length"]
        with open(os.path.join(model_dir, "1_Pooling", "config.json")) as f:
            pooling = json.load(f)
        modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
        if modes != ["pooling_mode_mean_tokens"]:
            sys.exit(f"ort_anchor: {model_dir}: pooling {modes}, only mean pooling is implemented")
        with open(os.path.join(model_dir, "modules.json")) as f:
            self.normalize = any(m["type"].endswith(".Normalize") for m in json.load(f))
        self.np = np
        self.tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tok.enable_truncation(max_length=self.max_len)  # tokenizer.json itself says 128
        self.tok.enable_padding(pad_id=self.tok.token_to_id("[PAD]"), pad_token="[PAD]")  # to the longest
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.sess.get_inputs()}

    def embed(self, texts):
        """Returns float32 (len(texts), hidden) vectors, as SentenceTransformer.encode would."""
        np = self.np
        enc = self.tok.encode_batch(texts)
        feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
        mask = feed["attention_mask"][:, :, None].astype(np.float32)  # (batch, seq, 1)
        tokens = self.sess.run(None, {k: feed[k] for k in self.inputs})[0]  # (batch, seq, hidden)
        vec = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        if self.normalize:
            vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
        return vec


def golden_min_cosine(emb):
    """Min cosine and max |difference| between this pipeline and sentence-transformers' golden
    vectors (batches of 16, as tests/golden/gen_golden.py encoded them), and the number of texts."""
    np = emb.np
    with open(os.path.join(ROOT, "tests", "data", "embed_texts.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    got = np.concatenate([emb.embed(texts[i:i + 16]) for i in range(0, len(texts), 16)])  # (texts, hidden)
    gold = np.fromfile(os.path.join(ROOT, "tests", "data", "embed_golden.f32"), dtype="<f4")
    if gold.size != got.size:
        sys.exit(f"ort_anchor: embed_golden.f32 holds {gold.size} floats, "
                 f"expected {got.shape[0]} texts x {got.shape[1]}")
    gold = gold.reshape(got.shape)
    got, gold = got.astype(np.float64), gold.astype(np.float64)
    cos = (got * gold).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(gold, axis=1))
    return float(cos.min()), float(np.abs(got - gold).max()), len(texts)


def main():
    ap = anchor_args()
    ap.add_argument("--onnx-dir", default=default_onnx_dir(), help="where the exported .onnx is cached")
    a = ap.parse_args()
    if a.device != "cpu":
        sys.exit(f"ort_anchor: device {a.device}: this anchor runs onnxruntime's CPUExecutionProvider only")

    sha = sha256_file(os.path.join(a.model, "model.safetensors"))
    onnx_path = os.path.join(a.onnx_dir, f"{os.path.basename(os.path.normpath(a.model))}-{sha}-fp32.onnx")
    if not os.path.exists(onnx_path):
        os.makedirs(a.onnx_dir, exist_ok=True)
        print(f"# ort_anchor: exporting {a.model} to {onnx_path}", file=sys.stderr)
        export_onnx(a.model, onnx_path)

    import onnxruntime as ort
    emb = OrtEmbedder(a.model, onnx_path, a.threads)
    min_cos, max_diff, n = golden_min_cosine(emb)
    print(f"# anchor: onnxruntime {ort.__version__} fp32, CPUExecutionProvider, threads {a.threads} "
          f"(inter-op 1), device cpu; {os.path.basename(onnx_path)}; vs sentence-transformers on {n} "
          f"golden texts: min cosine {min_cos:.7f}, max |diff| {max_diff:.1e}", file=sys.stderr)
    if not min_cos >= MIN_COSINE:
        sys.exit(f"ort_anchor: min cosine {min_cos:.7f} < {MIN_COSINE}: not timing a pipeline that "
                 f"disagrees with sentence-transformers")

    time_batches(a, emb.embed)


if __name__ == "__main__":
    main()
