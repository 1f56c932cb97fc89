#!/usr/bin/env python3
"""Golden fixtures from the reference implementation (sentence-transformers + tokenizers).

Writes, under tests/data/:
  tokenizer_golden.jsonl  {"hex": UTF-8 bytes (may be invalid), "ids": [...]}, 256-token truncation
  embed_texts.jsonl       {"text": ...}, one per golden vector
  embed_golden.f32        float32 little-endian, 384 per text, in the same order
  golden_versions.json    the versions and settings that produced them

Usage: python3 tests/golden/gen_golden.py MODEL_DIR
Needs: sentence-transformers, torch (CPU), tokenizers (bench/requirements-ref.txt).
"""
import json
import os
import platform
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")

WORDS = (
    "the a of and to in is was for on with as by at from his her their time world humanity "
    "alien invasion planet desert political intrigue power struggle mathematician science future "
    "civilization collapse virtual reality metaverse martian earth chaos dystopian society teenagers "
    "televised spectacle peaceful childhood meteor shower population aggressive plant ocean depths "
    "residents replaced physical copies emerge pods senior citizens recruited interstellar war "
    "discovering cultures threats young woman famous mysterious artifact city genetically engineered "
    "conditioned conform strict social hierarchy travels witnesses evolution internet evolved "
    "underestimating survive slug-like humans controlling minds distant crisis potential faces "
    "unbelievable counterrevolutionary electroencephalography antidisestablishmentarianism "
    "transcontinental photosynthesis quantum entanglement cryptocurrency microservices kubernetes"
).split()

BOOKS = [
    "A man travels through time and witnesses the evolution of humanity.",
    "A dystopian society where people are genetically engineered and conditioned to conform to a strict social hierarchy.",
    "A young woman becomes famous after discovering a mysterious alien artifact in New York City.",
    "A desert planet is the site of political intrigue and power struggles.",
    "A mathematician develops a science to predict the future of humanity and works to save civilization from collapse.",
    "A futuristic world where the internet has evolved into a virtual reality metaverse.",
    "A Martian invasion of Earth throws humanity into chaos.",
    "A dystopian society where teenagers are forced to fight to the death in a televised spectacle.",
    "A peaceful alien invasion leads to the end of humanity's childhood.",
    "After a meteor shower blinds most of the population, aggressive plant life starts taking over.",
    "Humanity faces a potential invasion from a distant alien civilization in crisis.",
    "Slug-like aliens invade Earth by attaching to humans and controlling their minds.",
    "Alien beings from the depths of the ocean start attacking humanity.",
    "A small town discovers that some of its residents are being replaced by perfect physical copies that emerge from plantlike pods.",
    "An alien race invades Earth, underestimating humanity's will to survive.",
    "Earth's senior citizens are recruited to fight in an interstellar war, discovering new alien cultures and threats.",
]

UNICODE = [
    "Café déjà vu, naïve façade", "ÅNGSTRÖM Ærø Øresund", "Crème brûlée à la française",
    "Tiếng Việt có dấu", "Ελληνικά: Καλημέρα κόσμε", "İstanbul ıştık ĞÜŞÖÇ", "Straße Maß Fußball",
    "ﬁnance ﬂower (ligatures)", "Kelvin K and Ohm Ω signs", "Ⅻ Ⅳ roman numerals ①②③",
    "中文字符测试：北京欢迎你！", "日本語のテキスト、ひらがなとカタカナ。", "한국어 텍스트 테스트입니다",
    "混合mixed中英文text", "𠀀𠀁 astral CJK 𪜀", "Русский текст с ЁЛКОЙ", "עברית ונקודות בְּרֵאשִׁית",
    "العربية مع التشكيل مَرْحَبًا", "हिन्दी देवनागरी लिपि", "ไทย ภาษาไทย", "ខ្មែរ Khmer script",
    "emoji 😀😃😄 party 🎉🎊", "family 👨‍👩‍👧‍👦 zwj", "flags 🇺🇸🇫🇷🇯🇵", "skin 👍🏽👋🏿", "new emoji 🥰🫠🪿",
    "math ∑∫∂√∞ ≠ ≤ ≥ ±", "currency $€£¥₹₿ 100", "arrows ←→↑↓⇒", "quotes «guillemets» „German“ ‚single‘",
    "¿Qué? ¡Hola!", "dashes – — ‒ ― ‐ -", "ellipsis… and · middle dot", "Greek question mark ; here",
    "full-width ＡＢＣ１２３！", "combining e\u0301 a\u0308 o\u0302 n\u0303", "zero\u200bwidth\u200cjoiner\u200d",
    "bom\ufefftext", "line\u2028sep\u2029para", "nbsp\u00a0here\u3000ideographic", "soft\u00adhyphen",
    "private \ue000\uf8ff use", "replacement \ufffd char", "tab\tnew\nline\rret\x0bvt\x0cff",
    "nul\x00in\x01the\x7fmiddle", "c1 \x85\x9f controls", "variation ︎selector ❤️ ❤︎",
    "Hangul jamo 각", "Mongolian ᠮᠣᠩᠭᠣᠯ", "Tibetan བོད་ཡིག", "Ethiopic ግዕዝ", "Cherokee ᏣᎳᎩ",
    "musical 𝄞𝅘𝅥𝅮 𝐀𝐁𝐂 bold math", "ǅ ǈ ǋ titlecase digraphs", "ΐ ΰ ǰ ẖ special casing",
]

PUNCT = [
    "!!!???...", "--- ___ ***", "((([[[{{{}}}]]])))", "a,b;c:d.e!f?g", "\"quoted\" 'single' `back`",
    "@#$%^&*()_+-=", "http://example.com/path?query=1&x=2#frag", "email@example.org",
    "C++ C# F# .NET node.js", "3.14159 1,000,000 10^6 1e-12", "don't won't can't y'all",
    "!@#$%^&*()!@#$%^&*()!@#$%^&*()", "<html><body>tags</body></html>", "~~~|||\\\\///",
    "…………", "।॥ devanagari danda", "、。〃〈〉《》", "؟،؛ arabic punct", "¶§†‡•", "‰‱′″‴",
]

EDGE = [
    "", " ", "   ", "\t", "\n\n\n", "\r\n", "\u3000", "\u00a0\u2003\u2009", "\x00", "\x00\x00\x00",
    "\u200b", "\ufffd", "\ue000", "a", "A", ".", "##", "##ing", "[CLS]", "[SEP] [PAD] [UNK] [MASK]",
    "a" * 99, "a" * 100, "a" * 101, "é" * 100, "é" * 101, "x" * 5000,
    "supercalifragilisticexpialidocious " * 3,
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    "a" * 60 + "." + "b" * 60, "word" * 30, "123456789" * 20,
]

INVALID = [
    b"\xff", b"\xfe\xff", b"abc\xc3", b"\xc3(", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xe2\x82\x28",
    b"\xf0\x28\x8c\xbc", b"\xf0\x90\x28\xbc", b"\xf8\xa1\xa1\xa1\xa1", b"\xc0\xaf overlong",
    b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80 too big", b"ok \xe2\x82 then ok",
    b"caf\xe9 latin1", b"\x80\x81\x82 stray continuations", b"mixed \xf0\x9f\x98 emoji cut",
    b"\xef\xbb\xbfBOM start", b"a\xc2", b"\xe0\x80\x80",
]


def sentence(rng, nwords):
    ws = [rng.choice(WORDS) for _ in range(nwords)]
    ws[0] = ws[0].capitalize()
    return " ".join(ws) + rng.choice([".", "!", "?", "..."])


def random_codepoints(rng, n):
    pools = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0xDFF),
             (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x2BFF), (0x2E00, 0x2E7F),
             (0x3000, 0x30FF), (0x3400, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xE0FF),
             (0xF900, 0xFFFD), (0x10000, 0x1FAFF), (0x20000, 0x2FA1F), (0xE0000, 0xE01EF),
             (0x0, 0x1F)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0x41
        out.append(chr(cp))
        if rng.random() < 0.15:
            out.append(" ")
    return "".join(out)


def tokenizer_inputs(rng):
    texts = []
    texts += BOOKS + UNICODE + PUNCT + EDGE
    for _ in range(120):
        texts.append(sentence(rng, rng.randint(3, 40)))
    for _ in range(40):  # past the 256-token budget
        texts.append(" ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(20, 40))))
    for _ in range(200):
        texts.append(random_codepoints(rng, rng.randint(1, 80)))
    for _ in range(20):  # long random mixtures, truncated
        texts.append(random_codepoints(rng, rng.randint(400, 1200)))
    out = [t.encode("utf-8") for t in texts] + INVALID
    for _ in range(30):  # random bytes
        out.append(bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 60))))
    return out


def embed_inputs(rng):
    texts = list(BOOKS) + UNICODE[:40] + PUNCT[:10]
    texts += ["", " ", "a", "books like star wars", "space opera with politics", "x" * 300]
    while len(texts) < 190:
        texts.append(sentence(rng, rng.randint(4, 45)))
    for _ in range(25):  # longer than 256 tokens: truncation must match
        texts.append(" ".join(sentence(rng, rng.randint(8, 25)) for _ in range(rng.randint(15, 35))))
    for _ in range(10):
        texts.append(random_codepoints(rng, rng.randint(10, 300)))
    return texts


def main():
    model_dir = sys.argv[1]
    import numpy as np
    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    rng = random.Random(20261121)
    model = SentenceTransformer(model_dir, device="cpu")
    tok = model.tokenizer
    max_len = model.max_seq_length
    assert max_len == 256, max_len

    tin = tokenizer_inputs(rng)
    with open(os.path.join(DATA, "tokenizer_golden.jsonl"), "w") as f:
        for raw in tin:
            text = raw.decode("utf-8", errors="replace")
            ids = tok(text, truncation=True, max_length=max_len)["input_ids"]
            f.write(json.dumps({"hex": raw.hex(), "ids": ids}) + "\n")

    etexts = embed_inputs(rng)
    torch.manual_seed(0)
    vecs = model.encode(etexts, batch_size=16, convert_to_numpy=True, normalize_embeddings=False)
    vecs = np.ascontiguousarray(vecs, dtype="<f4")
    assert vecs.shape == (len(etexts), 384)
    with open(os.path.join(DATA, "embed_texts.jsonl"), "w") as f:
        for t in etexts:
            f.write(json.dumps({"text": t}) + "\n")
    vecs.tofile(os.path.join(DATA, "embed_golden.f32"))

    versions = {
        "generator": "tests/golden/gen_golden.py",
        "seed": 20261121,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (model.safetensors sha256 "
                 "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db)",
        "max_seq_length": max_len,
        "device": "cpu",
        "tokenizer_strings": len(tin),
        "embedding_texts": len(etexts),
    }
    with open(os.path.join(DATA, "golden_versions.json"), "w") as f:
        json.dump(versions, f, indent=2)
        f.write("\n")
    print(json.dumps(versions, indent=2))


if __name__ == "__main__":
    main()
