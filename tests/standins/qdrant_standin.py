#!/usr/bin/env python3
"""qdrant_standin.py -- a STAND-IN for a Qdrant 1.x server's REST API, for cdcvec's tests.

    python qdrant_standin.py --port P [--api-key-file F] [--storage DIR] [--verbose]

Prints exactly one line `READY http://127.0.0.1:PORT` (flushed) once listening (--port 0
picks a free port); exits cleanly on SIGTERM/SIGINT. No real Qdrant server can run on this
machine (no Docker, no binaries from outside PyPI), so this is the most faithful thing that
can: it is NOT Qdrant, and says so in GET / ("standin" key).

How faithful
------------
* Storage and search are Qdrant's own engine: `qdrant-edge-py` (Qdrant Edge, the segment,
  id-tracker, payload-index and WAL code of the Qdrant server compiled into a Python module,
  in process). Chosen over qdrant-client's local mode because local mode is a separate
  pure-Python re-implementation (its own filter evaluator, its own scoring), while Edge runs the
  server's code: cosine vectors are normalised on upload and read back normalised, scores,
  filter semantics (nested keys such as `cdcvec.table`, match/range/is_empty/has_id/nested),
  scroll order and next_page_offset, UUID handling and "No point with id N" come from Qdrant.
  Each collection is one Edge shard (one shard, one replica) under --storage DIR (a temporary
  directory, removed at exit, when not given); collections found there are loaded at start,
  so data survives a restart of the stand-in.
* Every request body is validated against qdrant-client's REST models
  (`qdrant_client.http.models`: CreateCollection, PointInsertOperations = PointsList |
  PointsBatch, PointsSelector = PointIdsList | FilterSelector, SetPayload, DeletePayload,
  PointRequest, ScrollRequest, QueryRequest, CountRequest), every model with extra="forbid",
  so an unknown or misspelt field is a 400 as with Qdrant (whose serde types deny unknown
  fields). The error texts are Qdrant's where this file knows them (from Qdrant's source):
    400 {"status":{"error":"Format error in JSON body: <detail>"},"time":..}   bad JSON / bad shape
        (<detail>: JSON syntax errors are worded like serde's, "EOF while parsing a value at
        line 1 column 14", by pydantic-core's parser; a wrong shape gets pydantic's description,
        not serde's; point ids get Qdrant's own text:)
    400 "Format error in JSON body: value abc is not a valid point ID, valid values are either
        an unsigned integer or a UUID"            ids: JSON integers 0..2^64-1 or UUID strings
        (simple, hyphenated, urn:uuid:, {braced}); "123" (a string) is rejected like Qdrant does
    400 "Wrong input: Vector dimension error: expected dim: 384, got 3"   (whole request refused)
    400 "Wrong input: Not existing vector name error: NAME"
    400 "Content type error"                     a body without Content-Type: application/json
    404 "Not found: Collection `c` doesn't exist!"
    404 "Not found: No point with id 5 found"     set/overwrite/delete payload of a missing id
    409 "Wrong input: Collection `c` already exists!"   (PUT /collections/c again)
    422 "Validation error in JSON body: [...]"    e.g. vectors.size 0, limit 0
    401 (plain text, as Qdrant) "Must provide an API key or an Authorization bearer token"
        or "Invalid API key or JWT"; `/`, `/healthz`, `/readyz`, `/livez` need no key (Qdrant's
        own whitelist).
  Success is {"result":..,"status":"ok","time":seconds}; absent payload/vector keys are omitted
  from records as Qdrant's serde does.
* Endpoints: GET / ; GET /healthz /readyz /livez ; GET /collections ;
  GET|PUT|DELETE /collections/{c} ; GET /collections/{c}/exists ;
  PUT /collections/{c}/points (upsert: "points" list or "batch" columns; ?wait=true answers
  "completed", otherwise "acknowledged" -- the write is applied before the answer either way) ;
  POST /collections/{c}/points/delete (ids or filter) ; POST|PUT /collections/{c}/points/payload
  (set | overwrite, ids or filter, optional "key") ; POST .../points/payload/delete ;
  POST .../points/payload/clear ; POST /collections/{c}/points (retrieve) ;
  GET /collections/{c}/points/{id} ; POST .../points/scroll ; POST .../points/query ;
  POST .../points/query/groups (QueryGroupsRequest: grouped by a payload field, as Qdrant) ;
  POST .../points/count ; aliases: POST /collections/aliases (ChangeAliasesOperation: create_alias,
  delete_alias, rename_alias, all applied or none; a missing collection or alias is a 404, an alias
  already there a 409), GET /aliases, GET /collections/{c}/aliases; every {c} above may be an alias
  (resolved to its collection, as Qdrant does); DELETE of a collection drops its aliases.

What is NOT faithful (answered 400 "Bad request: stand-in: ... not supported" when asked for)
------------------------------------------------------------------------------------------
named/sparse/multi vectors, inference objects (Document/Image), prefetch/fusion/recommend/
discover/formula/order-by queries, slice conditions, shard keys, snapshots, payload
index parameter objects (a plain field_schema type name is served: PUT /collections/{c}/index
{"field_name","field_schema"}, built by Edge, counted in stats as field_indexes, and listed as
"field_index:<name>:<type>" extras), the legacy /points/search API, gRPC. Collection creation options other than
vectors.size/distance are accepted and ignored (GET returns fixed hnsw/optimizer defaults).
`wait=false` is not asynchronous. Shape errors are worded by pydantic, not serde: match on the
prefix ("Format error in JSON body:"), not the whole text. Storage calls are serialised per
collection (HTTP requests themselves are served concurrently, one thread each).

Fault injection and statistics (not part of Qdrant's API; no auth): see standin_common.py --
POST /__standin/faults {"status":429,"retry_after":2,"count":3,"path":"regex"} | {"drop":N} |
{"delay_ms":D,"count":N} | {"down_s":S} | {"clear":true}; GET /__standin/stats
({"requests","by_path","by_status","points_written","faults_served",...}); POST
/__standin/stats/reset. Injected errors use Qdrant's envelope {"status":{"error":..},"time":0.0}.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import standin_common  # noqa: E402

import pydantic  # noqa: E402
import pydantic_core  # noqa: E402
import qdrant_edge as qe  # noqa: E402
from qdrant_client.http import models as qm  # noqa: E402

try:
    from importlib.metadata import version as _pkg_version

    EDGE_VERSION = _pkg_version("qdrant-edge-py")
    CLIENT_VERSION = _pkg_version("qdrant-client")
except Exception:  # pragma: no cover
    EDGE_VERSION = CLIENT_VERSION = "unknown"


# ---- strict request models -------------------------------------------------------------------
def _force_forbid():
    """Every pydantic model of qdrant-client's REST API gets extra="forbid" (most already have it;
    this covers the rest), then each is rebuilt so that nested validators pick it up."""
    classes = [
        c for c in vars(qm).values()
        if isinstance(c, type) and issubclass(c, pydantic.BaseModel) and c is not pydantic.BaseModel
    ]
    for c in classes:
        if c.model_config.get("extra") != "forbid":
            c.model_config["extra"] = "forbid"
    for c in classes:
        c.model_rebuild(force=True)


_force_forbid()

TA = {
    "create": pydantic.TypeAdapter(qm.CreateCollection),
    "upsert": pydantic.TypeAdapter(qm.PointInsertOperations),
    "selector": pydantic.TypeAdapter(qm.PointsSelector),
    "set_payload": pydantic.TypeAdapter(qm.SetPayload),
    "delete_payload": pydantic.TypeAdapter(qm.DeletePayload),
    "retrieve": pydantic.TypeAdapter(qm.PointRequest),
    "scroll": pydantic.TypeAdapter(qm.ScrollRequest),
    "query": pydantic.TypeAdapter(qm.QueryRequest),
    "query_groups": pydantic.TypeAdapter(qm.QueryGroupsRequest),
    "count": pydantic.TypeAdapter(qm.CountRequest),
    "field_index": pydantic.TypeAdapter(qm.CreateFieldIndex),
    "aliases": pydantic.TypeAdapter(qm.ChangeAliasesOperation),
}

DISTANCES = {
    "Cosine": qe.Distance.Cosine,
    "Euclid": qe.Distance.Euclid,
    "Dot": qe.Distance.Dot,
    "Manhattan": qe.Distance.Manhattan,
}

UUID_RE = re.compile(
    r"^(?:urn:uuid:)?(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}"
    r"|[0-9a-fA-F]{32})$"
)
U64_MAX = 2**64 - 1


class QError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(msg):
    return QError(400, "Bad request: " + msg)


def unsupported(what):
    return QError(400, "Bad request: stand-in: %s not supported (cdcvec's Qdrant stand-in)" % what)


def _fmt_id_value(v):
    # Qdrant prints the rejected JSON value with Rust's Display (serde_value)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return ("%d" % v) if v.is_integer() and abs(v) < 1e16 else repr(v)
    if v is None:
        return "Unit"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def check_raw_id(v):
    """Qdrant's ExtendedPointId deserialiser: a u64 or a UUID string, nothing else."""
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= U64_MAX:
        return
    if isinstance(v, str) and UUID_RE.match(v):
        return
    raise QError(
        400,
        "Format error in JSON body: value %s is not a valid point ID, "
        "valid values are either an unsigned integer or a UUID" % _fmt_id_value(v),
    )


def norm_id(v):
    if isinstance(v, uuid.UUID):
        return v
    if isinstance(v, int):
        check_raw_id(v)
        return v
    if isinstance(v, str):
        check_raw_id(v)
        return uuid.UUID(v)
    check_raw_id(v)
    return v


def id_out(v):
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, str):
        return str(uuid.UUID(v))
    return v


def walk_ids(raw, kind):
    """Check point ids where they sit in the raw JSON, before pydantic (which would accept any
    string), so that the error text is Qdrant's."""
    if not isinstance(raw, dict):
        return
    if kind == "upsert":
        pts = raw.get("points")
        if isinstance(pts, list):
            for p in pts:
                if isinstance(p, dict) and "id" in p:
                    check_raw_id(p["id"])
        b = raw.get("batch")
        if isinstance(b, dict) and isinstance(b.get("ids"), list):
            for i in b["ids"]:
                check_raw_id(i)
    elif kind in ("selector", "set_payload", "delete_payload"):
        if isinstance(raw.get("points"), list):
            for i in raw["points"]:
                check_raw_id(i)
    elif kind == "retrieve":
        if isinstance(raw.get("ids"), list):
            for i in raw["ids"]:
                check_raw_id(i)
    elif kind == "scroll":
        if raw.get("offset") is not None:
            check_raw_id(raw["offset"])
    _walk_has_id(raw.get("filter"))


def _walk_has_id(f):
    if isinstance(f, dict):
        if isinstance(f.get("has_id"), list):
            for i in f["has_id"]:
                check_raw_id(i)
        for v in f.values():
            _walk_has_id(v)
    elif isinstance(f, list):
        for v in f:
            _walk_has_id(v)


def _pydantic_detail(e):
    parts = []
    for err in e.errors(include_url=False)[:8]:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return ctx.get("error") or err.get("msg")
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(("%s: %s" % (loc, err.get("msg"))) if loc else err.get("msg"))
    more = len(e.errors()) - 8
    if more > 0:
        parts.append("... and %d more" % more)
    return "; ".join(parts)


def parse_body(body, kind, headers):
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not (ctype == "application/json" or ctype.endswith("+json")):
        raise QError(400, "Content type error")
    if not body.strip():
        raise QError(400, "Format error in JSON body: EOF while parsing a value at line 1 column 0")
    try:
        # jiter (pydantic-core's JSON parser): serde-like messages, no NaN/Infinity, and several
        # times faster than json.loads on a batch of 384-float vectors
        raw = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as e:
        raise QError(400, "Format error in JSON body: %s" % e)
    walk_ids(raw, kind)
    try:
        return TA[kind].validate_python(raw)
    except pydantic.ValidationError as e:
        raise QError(400, "Format error in JSON body: " + _pydantic_detail(e))


def validation_error(field, msg):
    return QError(422, "Validation error in JSON body: [%s: %s]" % (field, msg))


# ---- model -> qdrant_edge conversion ----------------------------------------------------------
def _as_list(x):
    if x is None:
        return None
    return x if isinstance(x, list) else [x]


def conv_filter(f):
    if f is None:
        return None
    ms = None
    if f.min_should is not None:
        ms = qe.MinShould([conv_cond(c) for c in f.min_should.conditions], f.min_should.min_count)
    return qe.Filter(
        must=[conv_cond(c) for c in _as_list(f.must)] if f.must is not None else None,
        should=[conv_cond(c) for c in _as_list(f.should)] if f.should is not None else None,
        must_not=[conv_cond(c) for c in _as_list(f.must_not)] if f.must_not is not None else None,
        min_should=ms,
    )


def _geo_point(p):
    return qe.GeoPoint(lon=p.lon, lat=p.lat)


def conv_match(m):
    if m is None:
        return None
    # (the client's model, the engine's, the field that holds the value)
    for model, edge, field in ((qm.MatchValue, qe.MatchValue, "value"), (qm.MatchText, qe.MatchText, "text"),
                               (qm.MatchTextAny, qe.MatchTextAny, "text_any"),
                               (qm.MatchPhrase, qe.MatchPhrase, "phrase"), (qm.MatchPrefix, qe.MatchPrefix, "prefix"),
                               (qm.MatchSubstring, qe.MatchSubstring, "substring")):
        if isinstance(m, model):
            return edge(getattr(m, field))
    if isinstance(m, qm.MatchAny):
        return qe.MatchAny(list(m.any))
    if isinstance(m, qm.MatchExcept):
        return qe.MatchExcept(list(m.except_))
    raise unsupported("match %s" % type(m).__name__)


def _dt(v):
    return None if v is None else v.isoformat()


def conv_range(r):
    if r is None:
        return None
    if isinstance(r, qm.DatetimeRange):
        return qe.RangeDateTime(gte=_dt(r.gte), gt=_dt(r.gt), lte=_dt(r.lte), lt=_dt(r.lt))
    return qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)


def conv_cond(c):
    if isinstance(c, qm.FieldCondition):
        kw = {}
        if c.match is not None:
            kw["match"] = conv_match(c.match)
        if c.range is not None:
            kw["range"] = conv_range(c.range)
        if c.geo_bounding_box is not None:
            kw["geo_bounding_box"] = qe.GeoBoundingBox(
                _geo_point(c.geo_bounding_box.top_left), _geo_point(c.geo_bounding_box.bottom_right))
        if c.geo_radius is not None:
            kw["geo_radius"] = qe.GeoRadius(_geo_point(c.geo_radius.center), c.geo_radius.radius)
        if c.geo_polygon is not None:
            kw["geo_polygon"] = qe.GeoPolygon(
                [_geo_point(p) for p in c.geo_polygon.exterior.points],
                [[_geo_point(p) for p in ring.points] for ring in c.geo_polygon.interiors]
                if c.geo_polygon.interiors else None)
        if c.values_count is not None:
            v = c.values_count
            kw["values_count"] = qe.ValuesCount(lt=v.lt, gt=v.gt, lte=v.lte, gte=v.gte)
        if c.is_empty is not None:
            kw["is_empty"] = c.is_empty
        if c.is_null is not None:
            kw["is_null"] = c.is_null
        if not kw:
            raise validation_error("filter", "At least one field condition must be specified")
        return qe.FieldCondition(key=c.key, **kw)
    if isinstance(c, qm.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, qm.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, qm.HasIdCondition):
        return qe.HasIdCondition(set(norm_id(i) for i in c.has_id))
    if isinstance(c, qm.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    if isinstance(c, qm.NestedCondition):
        return qe.NestedCondition(c.nested.key, conv_filter(c.nested.filter))
    if isinstance(c, qm.Filter):
        return conv_filter(c)
    raise unsupported("condition %s" % type(c).__name__)


def conv_with_payload(wp, default):
    if wp is None:
        return default
    if isinstance(wp, bool):
        return wp
    if isinstance(wp, list):
        return qe.PayloadSelector.Include(list(wp))
    if isinstance(wp, qm.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(wp.include))
    if isinstance(wp, qm.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(wp.exclude))
    raise unsupported("with_payload %r" % (wp,))


def conv_with_vector(wv, default=False):
    if wv is None:
        return default
    if isinstance(wv, bool):
        return wv
    names = list(wv)
    if any(n != "" for n in names):
        raise QError(400, "Wrong input: Not existing vector name error: %s"
                     % next(n for n in names if n != ""))
    return True if names else False


def _wants(sel):
    return sel is not False


def record_out(rec, with_payload, with_vector, scored=False):
    d = {"id": id_out(rec.id)}
    if scored:
        d["version"] = rec.version
        d["score"] = rec.score
    if _wants(with_payload):
        p = rec.payload
        d["payload"] = dict(p) if p is not None else {}
    if _wants(with_vector) and rec.vector is not None:
        v = rec.vector
        if isinstance(v, dict):
            v = v.get("", v)
        d["vector"] = list(v) if not isinstance(v, dict) else v
    return d


# ---- the store -----------------------------------------------------------------------------
class Collection:
    def __init__(self, name, path, size, distance, shard):
        self.name = name
        self.path = path
        self.size = size
        self.distance = distance
        self.shard = shard
        self.lock = threading.RLock()
        self.op_id = 0

    def next_op(self):
        self.op_id += 1
        return self.op_id


class Store:
    def __init__(self, root):
        self.root = root
        self.lock = threading.RLock()
        self.cols = {}
        self.aliases = {}  # alias name -> collection name (aliases.json under the root)
        apath = os.path.join(root, "aliases.json")
        if os.path.exists(apath):
            with open(apath) as f:
                self.aliases = json.load(f)
        os.makedirs(os.path.join(root, "collections"), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(root, "collections"))):
            d = os.path.join(root, "collections", name)
            meta = os.path.join(d, "standin.json")
            if not os.path.exists(meta):
                continue
            with open(meta) as f:
                m = json.load(f)
            shard = qe.EdgeShard.load(os.path.join(d, "shard"))
            self.cols[name] = Collection(name, d, m["size"], m["distance"], shard)

    def get(self, name):
        """The collection of a name or an alias (Qdrant resolves aliases in every points API)."""
        with self.lock:
            c = self.cols.get(name)
            if c is None and name in self.aliases:
                c = self.cols.get(self.aliases[name])
        if c is None:
            raise QError(404, "Not found: Collection `%s` doesn't exist!" % name)
        return c

    def create(self, name, size, distance):
        with self.lock:
            if name in self.cols:
                raise QError(409, "Wrong input: Collection `%s` already exists!" % name)
            d = os.path.join(self.root, "collections", name)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            cfg = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=size, distance=DISTANCES[distance]),
                max_search_threads=1,
            )
            shard = qe.EdgeShard.create(os.path.join(d, "shard"), cfg)
            with open(os.path.join(d, "standin.json"), "w") as f:
                json.dump({"size": size, "distance": distance}, f)
            self.cols[name] = Collection(name, d, size, distance, shard)

    def change_aliases(self, actions):
        """POST /collections/aliases: every action applied, or none (Qdrant applies them in one
        operation of its consensus: a search by the alias sees the old collection or the new)."""
        with self.lock:
            new = dict(self.aliases)
            for a in actions:
                if isinstance(a, qm.CreateAliasOperation):
                    op = a.create_alias
                    if op.collection_name not in self.cols:
                        raise QError(404, "Not found: Collection `%s` doesn't exist!" % op.collection_name)
                    if op.alias_name in new or op.alias_name in self.cols:
                        raise QError(409, "Wrong input: Alias `%s` already exists!" % op.alias_name)
                    new[op.alias_name] = op.collection_name
                elif isinstance(a, qm.DeleteAliasOperation):
                    op = a.delete_alias
                    if op.alias_name not in new:
                        raise QError(404, "Not found: Alias `%s` doesn't exist!" % op.alias_name)
                    del new[op.alias_name]
                elif isinstance(a, qm.RenameAliasOperation):
                    op = a.rename_alias
                    if op.old_alias_name not in new:
                        raise QError(404, "Not found: Alias `%s` doesn't exist!" % op.old_alias_name)
                    new[op.new_alias_name] = new.pop(op.old_alias_name)
                else:
                    raise unsupported("alias operation %r" % type(a).__name__)
            self.aliases = new
            self._save_aliases()

    def _save_aliases(self):
        tmp = os.path.join(self.root, "aliases.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.aliases, f)
        os.replace(tmp, os.path.join(self.root, "aliases.json"))

    def alias_list(self, collection=None):
        with self.lock:
            return [{"alias_name": a, "collection_name": c} for a, c in sorted(self.aliases.items())
                    if collection is None or c == collection]

    def drop(self, name):
        with self.lock:
            c = self.cols.pop(name, None)
            # a dropped collection's aliases go with it, as in Qdrant
            if c is not None and any(v == name for v in self.aliases.values()):
                self.aliases = {a: v for a, v in self.aliases.items() if v != name}
                self._save_aliases()
        if c is None:
            return False
        with c.lock:
            try:
                c.shard.close()
            except Exception:
                pass
            shutil.rmtree(c.path, ignore_errors=True)
        return True

    def close(self):
        with self.lock:
            for c in self.cols.values():
                with c.lock:
                    try:
                        c.shard.flush()
                        c.shard.close()
                    except Exception:
                        pass
            self.cols.clear()


def edge_error(e):
    msg = str(e)
    m = re.match(r"No point with id (\S+)", msg)
    if m:
        return QError(404, "Not found: No point with id %s found" % m.group(1))
    return QError(400, "Wrong input: " + msg)


STORE = None
API_KEY = None
CLIENT_MAJOR_MINOR = ".".join(CLIENT_VERSION.split(".")[:2])
WHITELIST_EXACT = ("/", "/healthz")
WHITELIST_PREFIX = ("/readyz", "/livez")
NAME_RE = re.compile(r"^[^<>:\"/\\|?*\x00-\x1f]{1,255}$")


class Handler(standin_common.StandinHandler):
    def fault_response(self, status, message, retry_after):
        if message is None:
            if status == 429:  # Qdrant's RateLimitExceeded wording
                message = "Rate limiting exceeded: Write rate limit exceeded (stand-in injected fault)%s" % (
                    ", Retry after %ss" % retry_after if retry_after is not None else "")
            elif status >= 500:
                message = "Service internal error: stand-in injected fault (HTTP %d)" % status
            else:
                message = "Bad request: stand-in injected fault (HTTP %d)" % status
        body = json.dumps({"status": {"error": message}, "time": 0.0}).encode()
        return status, [("Content-Type", "application/json")], body

    # envelopes
    def ok(self, result, t0, status=200):
        body = json.dumps({"result": result, "status": "ok", "time": time.monotonic() - t0})
        return status, [("Content-Type", "application/json")], body.encode()

    def err(self, e, t0):
        body = json.dumps({"status": {"error": e.message}, "time": time.monotonic() - t0})
        return e.status, [("Content-Type", "application/json")], body.encode()

    def check_auth(self, path):
        if API_KEY is None:
            return None
        if path in WHITELIST_EXACT or path.startswith(WHITELIST_PREFIX):
            return None
        key = self.headers.get("api-key")
        if key is None:
            a = self.headers.get("Authorization")
            if a is not None and a.startswith("Bearer "):
                key = a[len("Bearer "):]
        if key is None:
            msg = "Must provide an API key or an Authorization bearer token"
        elif key == API_KEY:
            return None
        else:
            msg = "Invalid API key or JWT"
        return 401, [("Content-Type", "text/plain; charset=utf-8")], msg.encode()

    def handle_api(self, method, path, query, body):
        t0 = time.monotonic()
        if len(path) > 1:
            path = path.rstrip("/")  # actix NormalizePath::trim
        denied = self.check_auth(path)
        if denied:
            return denied
        params = {}
        for kv in query.split("&"):
            if kv:
                k, _, v = kv.partition("=")
                params[k] = v
        try:
            r = self.route(method, path, params, body, t0)
        except QError as e:
            return self.err(e, t0)
        if r is None:
            return 404, [], b""
        return r

    def route(self, method, path, params, body, t0):
        if path == "/" and method in ("GET", "HEAD"):
            out = {"title": "qdrant - vector search engine", "version": CLIENT_VERSION,
                   "commit": None,
                   "standin": "cdcvec test stand-in, not Qdrant: engine qdrant-edge-py %s, request "
                              "models qdrant-client %s" % (EDGE_VERSION, CLIENT_VERSION)}
            return 200, [("Content-Type", "application/json")], json.dumps(out).encode()
        if path in ("/healthz", "/livez", "/readyz") and method in ("GET", "HEAD"):
            txt = "healthz check passed" if path == "/healthz" else "all shards are ready" if path == "/readyz" else "healthz check passed"
            return 200, [("Content-Type", "text/plain; charset=utf-8")], txt.encode()
        if path == "/collections" and method == "GET":
            with STORE.lock:
                names = sorted(STORE.cols)
            return self.ok({"collections": [{"name": n} for n in names]}, t0)
        if path == "/aliases" and method == "GET":
            return self.ok({"aliases": STORE.alias_list()}, t0)
        if path == "/collections/aliases" and method == "POST":
            req = parse_body(body, "aliases", self.headers)
            STORE.change_aliases(req.actions)
            return self.ok(True, t0)
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "collections":
            return None
        name = _unquote(parts[2])
        if not NAME_RE.match(name):
            raise QError(422, "Validation error in path parameters: [name: collection name contains "
                              "an invalid character or is too long]")
        rest = "/".join(parts[3:])
        wait = params.get("wait", "false") == "true"
        h = self.headers
        if rest == "":
            if method == "GET":
                return self.ok(self.collection_info(STORE.get(name)), t0)
            if method == "PUT":
                req = parse_body(body, "create", h)
                vp = req.vectors
                if vp is None or isinstance(vp, dict) or req.sparse_vectors:
                    raise unsupported("named or sparse vectors (send \"vectors\":{\"size\":N,\"distance\":D})")
                if vp.multivector_config is not None:
                    raise unsupported("multivectors")
                if not 1 <= vp.size <= 65536:
                    raise validation_error("vectors.size", "value %d invalid, must be from 1 to 65536" % vp.size)
                STORE.create(name, vp.size, vp.distance.value)
                return self.ok(True, t0)
            if method == "DELETE":
                return self.ok(STORE.drop(name), t0)
            return None
        if rest == "aliases" and method == "GET":
            STORE.get(name)
            return self.ok({"aliases": STORE.alias_list(name)}, t0)
        if rest == "exists" and method == "GET":
            with STORE.lock:
                return self.ok({"exists": name in STORE.cols}, t0)
        if rest == "points" and method == "PUT":
            req = parse_body(body, "upsert", h)
            return self.upsert(STORE.get(name), req, wait, t0)
        if rest == "points" and method == "POST":
            req = parse_body(body, "retrieve", h)
            return self.retrieve(STORE.get(name), req, t0)
        U = qe.UpdateOperation
        if rest == "points/delete" and method == "POST":
            op = self._select(parse_body(body, "selector", h), U.delete_points, U.delete_points_by_filter)
            return self.apply(STORE.get(name), op, wait, t0, stat="points_deleted_requests")
        if rest == "points/payload" and method in ("POST", "PUT"):
            req = parse_body(body, "set_payload", h)
            by = (U.overwrite_payload, U.overwrite_payload_by_filter) if method == "PUT" else \
                (U.set_payload, U.set_payload_by_filter)
            op = self._select(req, *by, req.payload, key=req.key)
            return self.apply(STORE.get(name), op, wait, t0, stat="payload_updates")
        if rest == "points/payload/delete" and method == "POST":
            req = parse_body(body, "delete_payload", h)
            op = self._select(req, U.delete_payload, U.delete_payload_by_filter, list(req.keys))
            return self.apply(STORE.get(name), op, wait, t0, stat="payload_updates")
        if rest == "points/payload/clear" and method == "POST":
            op = self._select(parse_body(body, "selector", h), U.clear_payload, U.clear_payload_by_filter)
            return self.apply(STORE.get(name), op, wait, t0, stat="payload_updates")
        if rest == "index" and method == "PUT":
            req = parse_body(body, "field_index", h)
            sch = req.field_schema
            if not isinstance(sch, qm.PayloadSchemaType):
                raise unsupported("payload index parameter objects (send \"field_schema\":\"keyword\" etc.)")
            op = qe.UpdateOperation.create_field_index(req.field_name, getattr(qe.PayloadSchemaType, sch.value.capitalize()))
            self.server.state.add_extra("field_index:%s:%s" % (req.field_name, sch.value), 1)
            return self.apply(STORE.get(name), op, wait, t0, stat="field_indexes")
        if rest == "points/scroll" and method == "POST":
            req = parse_body(body, "scroll", h)
            return self.scroll(STORE.get(name), req, t0)
        if rest == "points/query" and method == "POST":
            req = parse_body(body, "query", h)
            return self.query(STORE.get(name), req, t0)
        if rest == "points/query/groups" and method == "POST":
            req = parse_body(body, "query_groups", h)
            return self.query_groups(STORE.get(name), req, t0)
        if rest == "points/count" and method == "POST":
            req = parse_body(body, "count", h)
            self._reject_shard_key(req)
            col = STORE.get(name)
            with col.lock:
                n = col.shard.count(qe.CountRequest(exact=True, filter=conv_filter(req.filter)))
            return self.ok({"count": n}, t0)
        m = re.fullmatch(r"points/([^/]+)", rest)
        if m and method == "GET":
            raw = _unquote(m.group(1))
            pid = int(raw) if raw.isdigit() else raw
            check_raw_id(pid)
            col = STORE.get(name)
            with col.lock:
                recs = col.shard.retrieve([norm_id(pid)], with_payload=True, with_vector=True)
            if not recs:
                raise QError(404, "Not found: No point with id %s found" % raw)
            return self.ok(record_out(recs[0], True, True), t0)
        if rest.startswith("points/search"):
            raise unsupported("the legacy search API (use POST /collections/{c}/points/query)")
        return None

    @staticmethod
    def _reject_shard_key(req):
        if getattr(req, "shard_key", None) is not None:
            raise unsupported("shard_key")

    def _select(self, req, by_ids, by_filter, *args, **kw):
        """The operation on the points req names: by their ids (req.points) or by req.filter."""
        self._reject_shard_key(req)
        if getattr(req, "points", None) is not None:
            return by_ids([norm_id(i) for i in req.points], *args, **kw)
        if getattr(req, "filter", None) is not None:
            return by_filter(conv_filter(req.filter), *args, **kw)
        raise bad_request("Either list of point ids or filter must be provided")

    def collection_info(self, c):
        with c.lock:
            info = c.shard.info()
        return {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": info.indexed_vectors_count,
            "points_count": info.points_count,
            "segments_count": info.segments_count,
            "config": {
                "params": {
                    "vectors": {"size": c.size, "distance": c.distance},
                    "shard_number": 1,
                    "replication_factor": 1,
                    "write_consistency_factor": 1,
                    "on_disk_payload": True,
                },
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                                "max_indexing_threads": 0, "on_disk": False},
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                     "default_segment_number": 0, "max_segment_size": None,
                                     "memmap_threshold": None, "indexing_threshold": 10000,
                                     "flush_interval_sec": 5, "max_optimization_threads": None},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                "quantization_config": None,
                "strict_mode_config": {"enabled": False},
            },
            "payload_schema": {},
        }

    def vector_in(self, col, v, problems):
        """A point's vector in the request -> a list of floats of the collection's size."""
        if isinstance(v, dict):
            for k in v:
                if k != "":
                    raise QError(400, "Wrong input: Not existing vector name error: %s" % k)
            if "" not in v:
                raise QError(400, "Wrong input: Not existing vector name error: ")
            v = v[""]
        if not isinstance(v, list):
            raise unsupported("inference objects or sparse vectors as a point's vector")
        if v and isinstance(v[0], list):
            raise unsupported("multivectors")
        if len(v) != col.size and not problems:
            problems.append("Wrong input: Vector dimension error: expected dim: %d, got %d" % (col.size, len(v)))
        return v

    def upsert(self, col, req, wait, t0):
        self._reject_shard_key(req)
        problems = []
        points = []
        if isinstance(req, qm.PointsList):
            for p in req.points:
                vec = self.vector_in(col, p.vector, problems)
                points.append((norm_id(p.id), vec, p.payload))
        else:
            b = req.batch
            ids = [norm_id(i) for i in b.ids]
            vecs = b.vectors
            if isinstance(vecs, dict):
                for k in vecs:
                    if k != "":
                        raise QError(400, "Wrong input: Not existing vector name error: %s" % k)
                vecs = vecs.get("", [])
            if not isinstance(vecs, list) or len(vecs) != len(ids):
                raise validation_error("batch", "number of ids and vectors must be equal")
            pls = b.payloads
            if pls is not None and len(pls) != len(ids):
                raise validation_error("batch", "number of ids and payloads must be equal")
            for i, pid in enumerate(ids):
                vec = self.vector_in(col, vecs[i], problems)
                points.append((pid, vec, pls[i] if pls is not None else None))
        if problems:
            raise QError(400, problems[0])
        mode = None
        if req.update_mode is not None:
            mode = {"upsert": qe.UpdateMode.Upsert, "insert_only": qe.UpdateMode.InsertOnly,
                    "update_only": qe.UpdateMode.UpdateOnly}[req.update_mode.value]
        op = qe.UpdateOperation.upsert_points(
            [qe.Point(pid, vec, pl) for pid, vec, pl in points],
            condition=conv_filter(req.update_filter), update_mode=mode)
        r = self.apply(col, op, wait, t0)
        with self.server.state.lock:
            self.server.state.points_written += len(points)
        return r

    def apply(self, col, op, wait, t0, stat=None):
        with col.lock:
            try:
                col.shard.update(op)
            except QError:
                raise
            except Exception as e:  # the engine's own refusal
                raise edge_error(e)
            opid = col.next_op()
        if stat:
            self.server.state.add_extra(stat, 1)
        return self.ok({"operation_id": opid, "status": "completed" if wait else "acknowledged"}, t0)

    def retrieve(self, col, req, t0):
        self._reject_shard_key(req)
        wp = conv_with_payload(req.with_payload, True)
        wv = conv_with_vector(req.with_vector, False)
        ids = [norm_id(i) for i in req.ids]
        with col.lock:
            recs = col.shard.retrieve(ids, with_payload=wp, with_vector=wv)
        return self.ok([record_out(r, wp, wv) for r in recs], t0)

    def scroll(self, col, req, t0):
        self._reject_shard_key(req)
        if req.order_by is not None:
            raise unsupported("order_by")
        limit = 10 if req.limit is None else req.limit
        if limit < 1:
            raise validation_error("limit", "value 0 invalid, must be 1 or larger")
        wp = conv_with_payload(req.with_payload, True)
        wv = conv_with_vector(req.with_vector, False)
        sr = qe.ScrollRequest(offset=norm_id(req.offset) if req.offset is not None else None,
                              limit=limit, filter=conv_filter(req.filter), with_payload=wp, with_vector=wv)
        with col.lock:
            recs, nxt = col.shard.scroll(sr)
        return self.ok({"points": [record_out(r, wp, wv) for r in recs],
                        "next_page_offset": id_out(nxt) if nxt is not None else None}, t0)

    def query(self, col, req, t0):
        pts, wp, wv = self._query_points(col, req, req.limit, req.offset)
        return self.ok({"points": [record_out(p, wp, wv, scored=True) for p in pts]}, t0)

    def query_groups(self, col, req, t0):
        """Qdrant's grouping query: the nearest points grouped by a payload field (a dotted path;
        strings and integers, each value of an array), groups in the order of their best hit,
        `limit` groups of at most `group_size` hits; points without the field are left out. Found
        as Qdrant does it, by querying more points until enough groups are full or none are left."""
        if req.with_lookup is not None:
            raise unsupported("with_lookup")
        limit = 10 if req.limit is None else req.limit
        gsize = 3 if req.group_size is None else req.group_size
        if limit < 1 or gsize < 1:
            raise validation_error("limit", "value 0 invalid, must be 1 or larger")
        fetch = limit * gsize * 2
        while True:
            pts, wp, wv = self._query_points(col, req, fetch, 0, need_payload=True)
            groups = {}
            for p in pts:
                v = p.payload or {}
                for part in req.group_by.split("."):
                    v = v.get(part) if isinstance(v, dict) else None
                for val in (v if isinstance(v, list) else [v]):
                    if isinstance(val, bool) or not isinstance(val, (str, int)):
                        continue
                    hits = groups.setdefault(val, [])
                    if len(hits) < gsize:
                        hits.append(p)
            firsts = list(groups.items())[:limit]
            if len(pts) < fetch or (len(firsts) >= limit and all(len(h) >= gsize for _, h in firsts)):
                break
            fetch *= 4
        out = [{"id": g, "hits": [record_out(p, wp, wv, scored=True) for p in hits]} for g, hits in firsts]
        return self.ok({"groups": out}, t0)

    def _query_points(self, col, req, limit, offset, need_payload=False):
        self._reject_shard_key(req)
        if req.prefetch is not None:
            raise unsupported("prefetch")
        if req.lookup_from is not None:
            raise unsupported("lookup_from")
        if req.using not in (None, ""):
            raise QError(400, "Wrong input: Not existing vector name error: %s" % req.using)
        limit = 10 if limit is None else limit
        if limit < 1:
            raise validation_error("limit", "value 0 invalid, must be 1 or larger")
        q = req.query
        if isinstance(q, qm.NearestQuery):
            if q.mmr is not None:
                raise unsupported("mmr")
            q = q.nearest
        exclude = None
        if isinstance(q, (int, str, uuid.UUID)) and not isinstance(q, bool):
            pid = norm_id(q)
            with col.lock:
                recs = col.shard.retrieve([pid], with_payload=False, with_vector=True)
            if not recs:
                raise QError(404, "Not found: No point with id %s found" % id_out(pid))
            q = list(recs[0].vector if not isinstance(recs[0].vector, dict) else recs[0].vector[""])
            exclude = pid
        if q is not None:
            if not isinstance(q, list) or (q and isinstance(q[0], list)):
                raise unsupported("this kind of query (%s)" % type(req.query).__name__)
            if len(q) != col.size:
                raise QError(400, "Wrong input: Vector dimension error: expected dim: %d, got %d" % (col.size, len(q)))
        wp = conv_with_payload(req.with_payload, False)
        wv = conv_with_vector(req.with_vector, False)
        flt = conv_filter(req.filter)
        if exclude is not None:
            ex = qe.HasIdCondition({exclude})
            flt = qe.Filter(must=[flt] if flt is not None else None, must_not=[ex])
        qr = qe.QueryRequest(limit=limit, offset=offset or 0,
                             query=qe.Query.Nearest(q) if q is not None else None,
                             with_payload=True if need_payload else wp, with_vector=wv, filter=flt,
                             score_threshold=req.score_threshold)
        with col.lock:
            pts = col.shard.query(qr)
        return pts, wp, wv


def _unquote(s):
    from urllib.parse import unquote

    return unquote(s)


def main():
    global STORE, API_KEY
    ap = argparse.ArgumentParser(description="Qdrant REST stand-in (engine: qdrant-edge-py)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key-file")
    ap.add_argument("--storage")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if a.api_key_file:
        with open(a.api_key_file) as f:
            API_KEY = f.read().strip()
        if not API_KEY:
            sys.exit("qdrant_standin: the api key file is empty")
    tmp = None
    root = a.storage
    if not root:
        tmp = root = tempfile.mkdtemp(prefix="qdrant-standin-")
    STORE = Store(root)

    def on_exit():
        STORE.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    return standin_common.serve(Handler, a.port, a.verbose, on_exit)


if __name__ == "__main__":
    sys.exit(main())
