"""langchain_check.py URL: LangChain's OpenAIEmbeddings against cdcvec's /v1/embeddings (issue 21.8).
With its defaults it sends token ids (check_embedding_ctx_length): the answer must be a 400 naming
check_embedding_ctx_length=False; with that setting it must get 384-float vectors. tiktoken's
cl100k file comes from the network, so a byte-level tiktoken Encoding stands in for it: the
request keeps the defaults' shape (arrays of token ids). Run by tests/test_http.sh when
langchain_openai can be imported (SKIPPED otherwise). Exits 1 on a failed check."""
import sys

import tiktoken
from langchain_openai import OpenAIEmbeddings
url = sys.argv[1]
# 1. LangChain's defaults: tiktoken needs its cl100k file from the network (absent here); a byte-level
#    tiktoken Encoding stands in for it, so the request has exactly the defaults' shape (token arrays)
byte_enc = tiktoken.Encoding(name="bytes", pat_str=r"[\s\S]", mergeable_ranks={bytes([i]): i for i in range(256)},
                             special_tokens={})
tiktoken.encoding_for_model = lambda m: byte_enc
tiktoken.get_encoding = lambda n: byte_enc
ok = True
try:
    OpenAIEmbeddings(model="all-MiniLM-L6-v2", base_url=url, api_key="x").embed_documents(["a desert planet"])
    print("FAIL LangChain's defaults (token ids) were accepted")
    ok = False
except Exception as e:  # openai.BadRequestError
    good = "400" in str(e) and "check_embedding_ctx_length=False" in str(e)
    ok &= good
    print(("ok   " if good else "FAIL ") + "LangChain's defaults: 400 naming check_embedding_ctx_length=False  (" +
          str(e)[:200] + ")")
# 2. the documented setting
v = OpenAIEmbeddings(model="all-MiniLM-L6-v2", base_url=url, api_key="x",
                     check_embedding_ctx_length=False).embed_documents(["a desert planet", "space opera"])
good = len(v) == 2 and all(len(x) == 384 for x in v)
ok &= good
print(("ok   " if good else "FAIL ") + "LangChain with check_embedding_ctx_length=False: 2 vectors of 384 floats")
sys.exit(0 if ok else 1)
