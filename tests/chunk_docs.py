#!/usr/bin/env python3
"""chunk_docs.py DIR: the long-text fixture of test_chunks.sh and test_chunks_remote.sh, as SQL
files in DIR (table docs (id int PRIMARY KEY, title text, body text NOT NULL)): load.sql (a
5,000-token document of paragraphs of 2..7 sentences, a one-sentence one, a medium one;
deterministic), edit.sql (one sentence in the middle of the long one rewritten, longer),
insert.sql (a paragraph inserted in its middle), shorten.sql (the medium one cut to 2
paragraphs)."""
import random, sys
words = ("the catalog search vector index table row change model store text update delete insert query "
         "result ranking payload key position stream slot replica commit batch embed sentence token piece "
         "chunk paris london river bridge morning evening quietly rapidly under beyond with without because "
         "after before green ancient modern large small").split()
def doc(paras, seed, edit=None):
    r, other = random.Random(seed), random.Random(99)
    out, s = [], 0
    for _ in range(paras):
        sents = []
        for _ in range(r.randint(2, 7)):
            n = r.randint(8, 20)
            w = [r.choice(words) for _ in range(n)]
            end = "?" if r.random() < 0.2 else "."
            if s == edit:
                w = [other.choice(words) for _ in range(n + 12)]
            sents.append(" ".join(w).capitalize() + end)
            s += 1
        out.append(" ".join(sents))
    return "\n\n".join(out), s
long, nsent = doc(60, 7)
edited, _ = doc(60, 7, edit=nsent // 2)
short_ = "A boy wizard attends a school of magic."
medium, _ = doc(10, 11)
def lit(t): return "$b$" + t + "$b$"
open(sys.argv[1] + "/load.sql", "w").write(
    "INSERT INTO docs VALUES (1, 'long', %s), (2, 'short', %s), (3, 'medium', %s);\n" % (lit(long), lit(short_), lit(medium)))
open(sys.argv[1] + "/edit.sql", "w").write("UPDATE docs SET body = %s WHERE id = 1;\n" % lit(edited))
paras = edited.split("\n\n")
new = " ".join(" ".join(random.Random(5 + i).choice(words) for _ in range(15)).capitalize() + "." for i in range(8))
paras.insert(len(paras) // 2, new)
open(sys.argv[1] + "/insert.sql", "w").write("UPDATE docs SET body = %s WHERE id = 1;\n" % lit("\n\n".join(paras)))
open(sys.argv[1] + "/shorten.sql", "w").write(
    "UPDATE docs SET body = %s WHERE id = 3;\n" % lit("\n\n".join(medium.split("\n\n")[:2])))
