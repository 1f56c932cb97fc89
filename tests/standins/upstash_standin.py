#!/usr/bin/env python3
"""upstash_standin.py -- a STAND-IN for an Upstash Vector index's REST API, for cdcvec's tests.

    python upstash_standin.py --port P --token-file F [--dimension 384]
                              [--similarity COSINE|EUCLIDEAN|DOT_PRODUCT] [--verbose]

Prints exactly one line `READY http://127.0.0.1:PORT` (flushed) once listening (--port 0 picks
a free port); exits cleanly on SIGTERM/SIGINT. Upstash Vector is a hosted service with no
emulator to install, so this is NOT Upstash: it is the documented contract (upstash.com/docs/
vector/api, and the official Python SDK upstash-vector 0.8's paths and bodies) enforced by a
small in-memory implementation (exact brute-force search with numpy; nothing survives a
restart). One dense index, no embedding model, no sparse/hybrid vectors.

Contract
--------
* Every call is `{path}[/{namespace}]` with header `Authorization: Bearer TOKEN`; POST and PUT
  everywhere, GET for /info /list-namespaces, DELETE for /delete /reset /delete-namespace
  (anything else: 405). Missing or wrong token: 401 {"error":"Unauthorized: Invalid auth
  token","status":401}. Success is {"result": ...}; every error {"error":"...","status":N}.
* /upsert[/ns]      a single vector object or an array of them: {"id","vector","metadata"?,
                    "data"?}  -> "Success". The whole request is checked before anything is
                    written (all or nothing).
* /update[/ns]      {"id","vector"?,"metadata"?,"data"?,"metadataUpdateMode":"OVERWRITE"|"PATCH"}
                    -> {"updated":1} or {"updated":0} for an unknown id. Without "vector" the
                    stored vector is kept. PATCH is RFC 7396 JSON merge patch (null deletes).
* /delete[/ns]      {"ids":[...]} | {"prefix":"..."} | {"filter":"..."} (exactly one), or a bare
                    array of ids -> {"deleted":n}.
* /query[/ns]       {"vector","topK"(default 10, at most 1000),"includeMetadata","includeVectors",
                    "includeData","filter"} or an array of such (a batch: list of lists) ->
                    [{"id","score","metadata"?,"vector"?,"data"?}], best first. Scores as Upstash
                    documents them, normalised to [0,1]: COSINE (1+cos)/2, DOT_PRODUCT (1+dot)/2,
                    EUCLIDEAN 1/(1+squared distance).
* /fetch[/ns]       {"ids":[...]|"prefix", "includeMetadata","includeVectors","includeData"} ->
                    list aligned with ids, null for a missing id.
* /range[/ns]       {"cursor":""|c,"limit"(1..1000),"includeMetadata","includeVectors",
                    "includeData","prefix"?} -> {"nextCursor":"" when done,"vectors":[...]}, in id
                    (byte) order; the cursor is opaque.
* /info             {"vectorCount","pendingVectorCount":0,"indexSize" (the vectors' bytes),"dimension",
                    "similarityFunction","namespaces":{"":{"vectorCount","pendingVectorCount"}}}
* /reset[/ns]       empties a namespace; /reset?all empties every namespace and drops the named
                    ones -> "Success".
* /list-namespaces  ["", "ns", ...];  /delete-namespace/ns -> "Success" (404 for a namespace that
                    does not exist, 400 for the default one).
* Namespaces: "" is the default and always exists; a named one appears on its first upsert.

Limits enforced (the wording is this stand-in's choice where Upstash's docs give none; match on
the status and the leading words):
  422 "Invalid vector dimension: 3, expected: 384"   (the real API's text, PROTOCOLS.md §12)
  400 "Too many vectors in one request: 1001, at most 1000 are allowed"
  400 "Metadata size of vector 'ID' is 50001 bytes, exceeds the limit of 49152 bytes (48 KB)"
        (size = the metadata's compact JSON, UTF-8)
  400 "Data size of vector 'ID' is N bytes, exceeds the limit of 1048576 bytes (1 MB)"
  400 "Invalid id ...": an id must be a non-empty string; a JSON integer is accepted and kept as
        its decimal string (the official TypeScript SDK types ids `number | string` and sends
        numbers as they are, so the service takes them); floats, booleans, null, objects are
        rejected.
  400 "Invalid vector ..." (not an array of numbers), "Invalid request body: ..." (bad JSON or
        a field of the wrong type), "Embedding data for this index is not allowed ..."
        (a "data" without "vector": this index has no embedding model; /upsert-data,
        /query-data likewise).
Vectors are stored normalised for COSINE (as Upstash does: a fetched vector reads back with
length 1; a zero vector is stored as is and scores 0.5).

Filters: a subset of Upstash's SQL-like metadata filter language -- comparisons = != < <= > >=
on strings ('single' or "double" quoted), numbers and booleans; IN (...), NOT IN (...);
HAS FIELD key, HAS NOT FIELD key; AND, OR (AND binds tighter), NOT, parentheses; keys may be
dotted paths into nested objects (cdcvec.table) or index arrays (tags[0]). GLOB, CONTAINS and
array functions are not supported (400 "Unsupported filter ...").

Not faithful: no persistence, no sparse/hybrid indexes, no embedding models, no resumable
queries, no read-only tokens, no request-rate or daily quotas, no request-size limit other
than the per-vector ones (and 64 MiB per request).

Fault injection and statistics (not Upstash's API; no auth): see standin_common.py --
POST /__standin/faults {"status":429,"retry_after":2,"count":3,"path":"regex"} | {"drop":N} |
{"delay_ms":D,"count":N} | {"down_s":S} | {"clear":true}; GET /__standin/stats; POST
/__standin/stats/reset. Injected errors use Upstash's shape {"error":"...","status":N}.
"""

import argparse
import json
import os
import re
import sys
import threading
from urllib.parse import unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin_common  # noqa: E402

import numpy as np  # noqa: E402

try:  # jiter, pydantic-core's JSON parser: several times faster than json.loads on float arrays
    import pydantic_core

    def from_json(b):
        return pydantic_core.from_json(b, allow_inf_nan=False)
except ImportError:  # pragma: no cover
    def from_json(b):
        return json.loads(b, parse_constant=lambda c: (_ for _ in ()).throw(ValueError("invalid number " + c)))

MAX_VECTORS = 1000
MAX_TOPK = 1000
MAX_RANGE = 1000
MAX_METADATA = 48 * 1024
MAX_DATA = 1024 * 1024

TOKEN = None
DIM = 384
SIMILARITY = "COSINE"
STORE = None


class UError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# ---- the filter language (a subset) ----------------------------------------------------------
_TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|!=|=|<|>|\(|\)|,)
    | (?P<word>[A-Za-z_$][A-Za-z0-9_$]*(?:(?:\.[A-Za-z_$][A-Za-z0-9_$]*)|\[\d+\])*)
    )""",
    re.X,
)
_MISSING = object()


def _tokenize(s):
    pos, out = 0, []
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m or m.end() == pos:
            raise UError(400, "Unsupported filter near %r (cdcvec's Upstash stand-in knows a subset)" % s[pos:pos + 20])
        pos = m.end()
        kind = m.lastgroup
        text = m.group(kind)
        if kind == "str":
            out.append(("val", re.sub(r"\\(.)", r"\1", text[1:-1])))
        elif kind == "num":
            out.append(("val", float(text) if any(c in text for c in ".eE") else int(text)))
        elif kind == "op":
            out.append(("op", text))
        else:
            up = text.upper()
            if up in ("AND", "OR", "NOT", "IN", "HAS", "FIELD"):
                out.append(("kw", up))
            elif up in ("TRUE", "FALSE"):
                out.append(("val", up == "TRUE"))
            elif up in ("GLOB", "CONTAINS"):
                raise UError(400, "Unsupported filter operator %s (cdcvec's Upstash stand-in)" % up)
            else:
                out.append(("key", text))
    return out


class _Parser:
    def __init__(self, s):
        self.t = _tokenize(s)
        self.i = 0

    def peek(self, k=0):
        j = self.i + k
        return self.t[j] if j < len(self.t) else (None, None)

    def take(self, kind=None, val=None):
        tok = self.peek()
        if (kind and tok[0] != kind) or (val is not None and tok[1] != val):
            raise UError(400, "Invalid filter: expected %s near token %d" % (val or kind, self.i))
        self.i += 1
        return tok

    def parse(self):
        e = self.or_()
        if self.i != len(self.t):
            raise UError(400, "Invalid filter: unexpected %r" % (self.peek()[1],))
        return e

    def _chain(self, kw, operand):
        """operand (kw operand)*, left-associative: ("or"|"and", left, right)."""
        e = operand()
        while self.peek() == ("kw", kw):
            self.i += 1
            e = (kw.lower(), e, operand())
        return e

    def or_(self):
        return self._chain("OR", self.and_)

    def and_(self):
        return self._chain("AND", self.unary)

    def unary(self):
        if self.peek() == ("kw", "NOT"):
            self.i += 1
            return ("not", self.unary())
        if self.peek() == ("op", "("):
            self.i += 1
            e = self.or_()
            self.take("op", ")")
            return e
        if self.peek() == ("kw", "HAS"):
            self.i += 1
            neg = False
            if self.peek() == ("kw", "NOT"):
                self.i += 1
                neg = True
            self.take("kw", "FIELD")
            key = self.take("key")[1]
            return ("not", ("has", key)) if neg else ("has", key)
        key = self.take("key")[1]
        tok = self.peek()
        if tok == ("kw", "NOT") and self.peek(1) == ("kw", "IN"):
            self.i += 2
            return ("not", ("in", key, self.values()))
        if tok == ("kw", "IN"):
            self.i += 1
            return ("in", key, self.values())
        if tok[0] == "op" and tok[1] in ("=", "!=", "<", "<=", ">", ">="):
            self.i += 1
            val = self.take("val")[1]
            return ("cmp", tok[1], key, val)
        raise UError(400, "Invalid filter: expected an operator after %s" % key)

    def values(self):
        self.take("op", "(")
        vals = [self.take("val")[1]]
        while self.peek() == ("op", ","):
            self.i += 1
            vals.append(self.take("val")[1])
        self.take("op", ")")
        return vals


def _lookup(meta, key):
    cur = meta
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        if part.startswith("["):
            idx = int(part[1:-1])
            if not isinstance(cur, list) or idx >= len(cur):
                return _MISSING
            cur = cur[idx]
        else:
            if not isinstance(cur, dict) or part not in cur:
                return _MISSING
            cur = cur[part]
    return cur


def _cmp(op, a, b):
    if a is _MISSING or a is None:
        return False
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        if not (isinstance(a, bool) and isinstance(b, bool)) or op not in ("=", "!="):
            return False
    elif isinstance(a, num) and isinstance(b, num):
        pass
    elif isinstance(a, str) and isinstance(b, str):
        pass
    else:
        return False
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _eval(e, meta):
    k = e[0]
    if k == "and":
        return _eval(e[1], meta) and _eval(e[2], meta)
    if k == "or":
        return _eval(e[1], meta) or _eval(e[2], meta)
    if k == "not":
        return not _eval(e[1], meta)
    if k == "has":
        return _lookup(meta, e[1]) is not _MISSING
    if k == "in":
        v = _lookup(meta, e[1])
        return any(_cmp("=", v, x) for x in e[2])
    if k == "cmp":
        return _cmp(e[1], _lookup(meta, e[2]), e[3])
    raise AssertionError(k)


def compile_filter(s):
    if s is None or (isinstance(s, str) and not s.strip()):
        return None
    if not isinstance(s, str):
        raise UError(400, "Invalid request body: filter must be a string")
    tree = _Parser(s).parse()
    return lambda meta: _eval(tree, meta or {})


# ---- the index -----------------------------------------------------------------------------
class Entry:
    __slots__ = ("vec", "meta", "data")

    def __init__(self, vec, meta, data):
        self.vec = vec
        self.meta = meta
        self.data = data


class Index:
    def __init__(self):
        self.lock = threading.RLock()
        self.ns = {"": {}}

    def space(self, ns, create=False):
        d = self.ns.get(ns)
        if d is None and create:
            d = self.ns[ns] = {}
        return d if d is not None else {}


def _bool(body, key):
    v = body.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise UError(400, "Invalid request body: %s must be a boolean" % key)
    return v


def _meta_size(meta):
    return len(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def check_id(v):
    if isinstance(v, bool) or v is None or not isinstance(v, (str, int)):
        raise UError(400, "Invalid id %s: an id must be a string" % json.dumps(v))
    if isinstance(v, int):
        return str(v)
    if v == "":
        raise UError(400, "Invalid id \"\": an id must be a non-empty string")
    return v


def check_vector(v, what="vector"):
    if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise UError(400, "Invalid %s: it must be an array of numbers" % what)
    if len(v) != DIM:
        raise UError(422, "Invalid vector dimension: %d, expected: %d" % (len(v), DIM))
    a = np.asarray(v, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise UError(400, "Invalid %s: values must be finite numbers" % what)
    if SIMILARITY == "COSINE":
        n = float(np.linalg.norm(a))
        if n > 0:
            a = a / n
    return a


def _check_part(v, vid, kind, must, name, size, limit, shown):
    """v (None: absent) of type kind, at most limit bytes by size(v), or Upstash's 400."""
    if v is None:
        return None
    if not isinstance(v, kind):
        raise UError(400, "Invalid %s of vector '%s': it must be %s" % (name.lower(), vid, must))
    n = size(v)
    if n > limit:
        raise UError(400, "%s size of vector '%s' is %d bytes, exceeds the limit of %d bytes (%s)"
                     % (name, vid, n, limit, shown))
    return v


def check_meta(meta, vid):
    return _check_part(meta, vid, dict, "a JSON object", "Metadata", _meta_size, MAX_METADATA, "48 KB")


def check_data(data, vid):
    return _check_part(data, vid, str, "a string", "Data", lambda d: len(d.encode("utf-8")), MAX_DATA, "1 MB")


NO_EMBEDDING = ("Embedding data for this index is not allowed. The index must be created with an "
                "embedding model to use it (cdcvec's Upstash stand-in is a dense index without one)")


def _vec_out(a):
    return [float(x) for x in a]


def item_out(vid, e, inc_meta, inc_vec, inc_data, score=None):
    d = {"id": vid}
    if score is not None:
        d["score"] = score
    if inc_vec:
        d["vector"] = _vec_out(e.vec)
    if inc_meta and e.meta is not None:
        d["metadata"] = e.meta
    if inc_data and e.data is not None:
        d["data"] = e.data
    return d


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class Handler(standin_common.StandinHandler):
    def fault_response(self, status, message, retry_after):
        if message is None:
            message = ("Too many requests (stand-in injected fault)" if status == 429
                       else "stand-in injected fault: HTTP %d" % status)
        return status, [("Content-Type", "application/json")], json.dumps({"error": message, "status": status}).encode()

    def reply(self, result):
        return 200, [("Content-Type", "application/json")], json.dumps({"result": result}).encode()

    def handle_api(self, method, path, query, body):
        try:
            return self.route(method, path, query, body)
        except UError as e:
            out = json.dumps({"error": e.message, "status": e.status}).encode()
            return e.status, [("Content-Type", "application/json")], out

    def route(self, method, path, query, body):
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[len("Bearer "):].strip() != TOKEN:
            raise UError(401, "Unauthorized: Invalid auth token")
        parts = path.lstrip("/").split("/", 1)
        cmd = parts[0]
        ns = unquote(parts[1]) if len(parts) > 1 else ""
        allowed = {
            "upsert": ("POST", "PUT"), "update": ("POST", "PUT"), "query": ("POST", "PUT"),
            "fetch": ("POST", "PUT"), "range": ("POST", "PUT"),
            "delete": ("POST", "PUT", "DELETE"), "reset": ("POST", "PUT", "DELETE"),
            "delete-namespace": ("POST", "PUT", "DELETE"),
            "info": ("GET", "POST", "PUT"), "list-namespaces": ("GET", "POST", "PUT"),
            "upsert-data": ("POST", "PUT"), "query-data": ("POST", "PUT"),
            "resumable-query": ("POST", "PUT"), "resumable-query-data": ("POST", "PUT"),
            "resumable-query-next": ("POST", "PUT"), "resumable-query-end": ("POST", "PUT"),
        }
        if cmd not in allowed:
            raise UError(404, "Not Found: %s" % path)
        if method not in allowed[cmd] and method != "HEAD":
            raise UError(405, "Method Not Allowed")
        if cmd in ("upsert-data", "query-data"):
            raise UError(400, NO_EMBEDDING)
        if cmd.startswith("resumable-query"):
            raise UError(400, "Resumable queries are not supported by cdcvec's Upstash stand-in")
        if cmd in ("info", "list-namespaces"):
            if ns:
                raise UError(404, "Not Found: %s" % path)
            return self.reply(self.info() if cmd == "info" else sorted(STORE.ns))
        if cmd == "reset":
            with STORE.lock:
                if query in ("all", "all=true", "all=") or query.startswith("all&"):
                    STORE.ns = {"": {}}
                else:
                    if ns in STORE.ns:
                        STORE.ns[ns] = {}
            return self.reply("Success")
        if cmd == "delete-namespace":
            if ns == "":
                raise UError(400, "Cannot delete the default namespace")
            with STORE.lock:
                if ns not in STORE.ns:
                    raise UError(404, "Namespace '%s' does not exist" % ns)
                del STORE.ns[ns]
            return self.reply("Success")
        req = self.parse(body)
        return getattr(self, "cmd_" + cmd)(ns, req)

    def parse(self, body):
        if not body.strip():
            return None
        try:
            return from_json(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise UError(400, "Invalid request body: %s" % e)

    def info(self):
        with STORE.lock:
            per = {k: {"vectorCount": len(v), "pendingVectorCount": 0} for k, v in STORE.ns.items()}
            total = sum(len(v) for v in STORE.ns.values())
            size = total * DIM * 4  # the vectors' bytes: /info reads counters, it scans nothing
        return {"vectorCount": total, "pendingVectorCount": 0, "indexSize": size, "dimension": DIM,
                "similarityFunction": SIMILARITY, "indexType": "DENSE", "namespaces": per}

    # ---- commands ------------------------------------------------------------------------
    def cmd_upsert(self, ns, req):
        if req is None:
            raise UError(400, "Invalid request body: expected a vector or an array of vectors")
        items = req if isinstance(req, list) else [req]
        if len(items) > MAX_VECTORS:
            raise UError(400, "Too many vectors in one request: %d, at most %d are allowed" % (len(items), MAX_VECTORS))
        if not items:
            raise UError(400, "Invalid request body: no vectors to upsert")
        staged = []
        for it in items:
            if not isinstance(it, dict):
                raise UError(400, "Invalid request body: a vector must be a JSON object")
            unknown = set(it) - {"id", "vector", "metadata", "data", "sparseVector"}
            if unknown:
                raise UError(400, "Invalid request body: unknown field %s" % sorted(unknown)[0])
            if "id" not in it:
                raise UError(400, "Invalid request body: id is missing")
            vid = check_id(it["id"])
            if it.get("sparseVector") is not None:
                raise UError(400, "This index is dense: sparse vectors are not allowed")
            if it.get("vector") is None:
                if it.get("data") is not None:
                    raise UError(400, NO_EMBEDDING)
                raise UError(400, "Invalid request body: vector of '%s' is missing" % vid)
            vec = check_vector(it["vector"])
            meta = check_meta(it.get("metadata"), vid)
            data = check_data(it.get("data"), vid)
            staged.append((vid, Entry(vec, meta, data)))
        with STORE.lock:
            sp = STORE.space(ns, create=True)
            for vid, e in staged:
                sp[vid] = e
        with self.server.state.lock:
            self.server.state.points_written += len(staged)
        return self.reply("Success")

    def cmd_update(self, ns, req):
        if not isinstance(req, dict) or "id" not in req:
            raise UError(400, "Invalid request body: id is missing")
        unknown = set(req) - {"id", "vector", "metadata", "data", "metadataUpdateMode", "sparseVector"}
        if unknown:
            raise UError(400, "Invalid request body: unknown field %s" % sorted(unknown)[0])
        vid = check_id(req["id"])
        mode = req.get("metadataUpdateMode", "OVERWRITE") or "OVERWRITE"
        if mode not in ("OVERWRITE", "PATCH"):
            raise UError(400, "Invalid request body: metadataUpdateMode must be OVERWRITE or PATCH")
        if req.get("sparseVector") is not None:
            raise UError(400, "This index is dense: sparse vectors are not allowed")
        vec = check_vector(req["vector"]) if req.get("vector") is not None else None
        data = check_data(req.get("data"), vid) if "data" in req else None
        if "metadata" in req and req["metadata"] is not None and not isinstance(req["metadata"], dict):
            raise UError(400, "Invalid metadata of vector '%s': it must be a JSON object" % vid)
        with STORE.lock:
            sp = STORE.space(ns)
            e = sp.get(vid)
            if e is None:
                return self.reply({"updated": 0})
            meta = e.meta
            if "metadata" in req:
                meta = merge_patch(e.meta or {}, req["metadata"]) if mode == "PATCH" else req["metadata"]
                check_meta(meta, vid)
            sp[vid] = Entry(vec if vec is not None else e.vec, meta, data if "data" in req else e.data)
        self.server.state.add_extra("updates", 1)
        return self.reply({"updated": 1})

    def cmd_delete(self, ns, req):
        if isinstance(req, list) or isinstance(req, str):
            req = {"ids": req}
        if not isinstance(req, dict):
            raise UError(400, "Invalid request body: expected ids, prefix or filter")
        given = [k for k in ("ids", "prefix", "filter") if req.get(k) is not None]
        if len(given) != 1:
            raise UError(400, "Invalid request body: exactly one of ids, prefix or filter must be given")
        with STORE.lock:
            sp = STORE.space(ns)
            if given[0] == "ids":
                ids = req["ids"] if isinstance(req["ids"], list) else [req["ids"]]
                ids = [check_id(i) for i in ids]
                victims = [i for i in dict.fromkeys(ids) if i in sp]
            elif given[0] == "prefix":
                if not isinstance(req["prefix"], str):
                    raise UError(400, "Invalid request body: prefix must be a string")
                victims = [i for i in sp if i.startswith(req["prefix"])]
            else:
                f = compile_filter(req["filter"])
                victims = [i for i, e in sp.items() if f(e.meta)]
                self.server.state.add_extra("filter_deletes", 1)  # each one a full scan (O(N))
                self.server.state.add_extra("filter_scanned", len(sp))
            for i in victims:
                del sp[i]
        self.server.state.add_extra("vectors_deleted", len(victims))
        return self.reply({"deleted": len(victims)})

    def _query_one(self, ns, q):
        if not isinstance(q, dict):
            raise UError(400, "Invalid request body: a query must be a JSON object")
        if q.get("vector") is None:
            if q.get("data") is not None:
                raise UError(400, NO_EMBEDDING)
            if q.get("sparseVector") is not None:
                raise UError(400, "This index is dense: sparse vectors are not allowed")
            raise UError(400, "Invalid request body: vector is missing")
        top_k = q.get("topK", 10)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise UError(400, "Invalid request body: topK must be a positive integer")
        if top_k > MAX_TOPK:
            raise UError(400, "topK must be at most %d" % MAX_TOPK)
        inc_meta, inc_vec, inc_data = _bool(q, "includeMetadata"), _bool(q, "includeVectors"), _bool(q, "includeData")
        qv = check_vector(q["vector"], "query vector")
        flt = compile_filter(q.get("filter"))
        with STORE.lock:
            sp = STORE.space(ns)
            cand = [(i, e) for i, e in sp.items() if flt is None or flt(e.meta)]
        if not cand:
            return []
        mat = np.stack([e.vec for _, e in cand])
        if SIMILARITY == "EUCLIDEAN":
            d2 = np.sum((mat - qv) ** 2, axis=1)
            scores = 1.0 / (1.0 + d2)
        else:
            scores = (1.0 + mat @ qv) / 2.0
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [item_out(cand[j][0], cand[j][1], inc_meta, inc_vec, inc_data, score=float(scores[j]))
                for j in order]

    def cmd_query(self, ns, req):
        if isinstance(req, list):
            return self.reply([self._query_one(ns, q) for q in req])
        return self.reply(self._query_one(ns, req))

    def cmd_fetch(self, ns, req):
        if isinstance(req, list):
            req = {"ids": req}
        if not isinstance(req, dict):
            raise UError(400, "Invalid request body: expected ids or prefix")
        inc_meta, inc_vec, inc_data = _bool(req, "includeMetadata"), _bool(req, "includeVectors"), _bool(req, "includeData")
        with STORE.lock:
            sp = STORE.space(ns)
            if req.get("ids") is not None:
                ids = req["ids"] if isinstance(req["ids"], list) else [req["ids"]]
                if len(ids) > MAX_VECTORS:
                    raise UError(400, "Too many ids in one request: %d, at most %d are allowed" % (len(ids), MAX_VECTORS))
                out = []
                for i in ids:
                    i = check_id(i)
                    e = sp.get(i)
                    out.append(item_out(i, e, inc_meta, inc_vec, inc_data) if e is not None else None)
            elif req.get("prefix") is not None:
                out = [item_out(i, e, inc_meta, inc_vec, inc_data)
                       for i, e in sorted(sp.items()) if i.startswith(req["prefix"])][:MAX_VECTORS]
            else:
                raise UError(400, "Invalid request body: ids or prefix must be given")
        return self.reply(out)

    def cmd_range(self, ns, req):
        if not isinstance(req, dict):
            raise UError(400, "Invalid request body: expected cursor and limit")
        cursor = req.get("cursor", "")
        if cursor is None:
            cursor = ""
        if isinstance(cursor, int) and not isinstance(cursor, bool):
            cursor = str(cursor)
        if not isinstance(cursor, str):
            raise UError(400, "Invalid request body: cursor must be a string")
        limit = req.get("limit")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise UError(400, "Invalid request body: limit must be a positive integer")
        if limit > MAX_RANGE:
            raise UError(400, "limit must be at most %d" % MAX_RANGE)
        prefix = req.get("prefix") or ""
        inc_meta, inc_vec, inc_data = _bool(req, "includeMetadata"), _bool(req, "includeVectors"), _bool(req, "includeData")
        start = ""
        if cursor not in ("", "0"):
            if not cursor.startswith("c:"):
                raise UError(400, "Invalid cursor")
            start = cursor[2:]
        with STORE.lock:
            sp = STORE.space(ns)
            keys = sorted(k for k in sp if k.startswith(prefix) and k >= start)
            page = keys[:limit]
            out = [item_out(k, sp[k], inc_meta, inc_vec, inc_data) for k in page]
            nxt = ("c:" + keys[limit]) if len(keys) > limit else ""
        return self.reply({"nextCursor": nxt, "vectors": out})


def main():
    global TOKEN, DIM, SIMILARITY, STORE
    ap = argparse.ArgumentParser(description="Upstash Vector REST stand-in")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--dimension", type=int, default=384)
    ap.add_argument("--similarity", default="COSINE", choices=["COSINE", "EUCLIDEAN", "DOT_PRODUCT"])
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    with open(a.token_file) as f:
        TOKEN = f.read().strip()
    if not TOKEN:
        sys.exit("upstash_standin: the token file is empty")
    if a.dimension < 1:
        sys.exit("upstash_standin: --dimension must be positive")
    DIM, SIMILARITY = a.dimension, a.similarity
    STORE = Index()
    return standin_common.serve(Handler, a.port, a.verbose)


if __name__ == "__main__":
    sys.exit(main())
