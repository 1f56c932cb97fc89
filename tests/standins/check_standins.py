#!/usr/bin/env python3
"""Honesty checks of the Qdrant and Upstash Vector stand-ins (run by tests/test_standins.sh).

Each stand-in is started on a free port and driven with the vendor's OFFICIAL client
(qdrant-client's QdrantClient over REST, upstash-vector's Index): results are compared with
numpy's own arithmetic (cosine scores, Upstash's (1+cos)/2, normalised vectors), bad requests
must fail the way the vendor documents, and every injected fault must happen as described.
Raw HTTP (httpx, http.client, sockets) checks what the clients hide: envelopes, exact error
texts, headers, keep-alive, dropped connections. Prints "ok"/"FAIL" per check, then
"N passed, M failed"; exits 1 on any failure.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings

import httpx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DIM = 384
PASSED = []
FAILED = []

warnings.filterwarnings("ignore", message="Api key is used with an insecure connection")


def check(name, cond, detail=""):
    if cond:
        PASSED.append(name)
        print("ok   " + name, flush=True)
    else:
        FAILED.append(name)
        print("FAIL " + name + (("  -- " + str(detail)) if detail else ""), flush=True)


def raises(fn, *exc_types):
    try:
        fn()
    except exc_types as e:  # noqa: B902
        return e
    except Exception as e:  # the wrong kind of failure is returned too, for the message
        return e
    return None


class Standin:
    def __init__(self, script, args):
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, script), "--port", "0"] + args,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("READY http://127.0.0.1:"):
            self.p.kill()
            raise SystemExit("%s did not print READY: %r %s" % (script, line, self.p.stderr.read()))
        self.ready_line = line
        self.url = line.split()[1]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.extra_stdout = None

    def control(self, path, body=None):
        with httpx.Client(timeout=10) as c:
            if body is None:
                r = c.get(self.url + path)
            else:
                r = c.post(self.url + path, json=body)
        r.raise_for_status()
        return r.json()

    def fault(self, spec):
        return self.control("/__standin/faults", spec)

    def stats(self):
        return self.control("/__standin/stats")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = None
        self.extra_stdout = self.p.stdout.read()
        return rc


def rng_vectors(n, seed):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, DIM)).astype(np.float32)


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ---- faults: the same expectations on both stand-ins -------------------------------------------
def check_faults(tag, s, make_request, error_of, written):
    """make_request(client) sends one ordinary API request with httpx and returns the response;
    error_of(response) extracts the vendor-shaped error message; written: the points the stand-in
    must have counted as written so far."""
    st = s.stats()
    check("%s stats: points_written counts every point of a successful upsert (%d)" % (tag, written),
          st["points_written"] == written, st)
    s.fault({"clear": True})
    s.control("/__standin/stats/reset", {})
    with httpx.Client(timeout=10) as c:
        s.fault({"status": 429, "retry_after": 2, "count": 2})
        r1, r2, r3 = make_request(c), make_request(c), make_request(c)
        check("%s fault 429: next two answered 429 with Retry-After: 2, the third is served" % tag,
              r1.status_code == 429 and r2.status_code == 429 and r1.headers.get("retry-after") == "2"
              and r3.status_code == 200, (r1.status_code, r1.headers, r3.status_code))
        check("%s fault 429: the body is the vendor's error shape" % tag, bool(error_of(r1)), r1.text)
        s.fault({"status": 500, "count": 1, "path": "^/nomatch"})
        check("%s fault path regex: a rule for another path leaves this one alone" % tag,
              make_request(c).status_code == 200)
        s.fault({"clear": True})
        s.fault({"status": 500, "count": 1})
        r = make_request(c)
        check("%s fault 500 once, then served" % tag, r.status_code == 500 and make_request(c).status_code == 200,
              r.status_code)
        s.fault({"delay_ms": 400, "count": 1})
        t0 = time.monotonic()
        r = make_request(c)
        dt = time.monotonic() - t0
        check("%s fault delay_ms 400: answered, at least 0.4 s late" % tag, r.status_code == 200 and dt >= 0.39, dt)
        s.fault({"drop": 1})
        e = raises(lambda: make_request(c), httpx.HTTPError)
        check("%s fault drop: the connection closes with no reply" % tag,
              isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)), repr(e))
        check("%s fault drop: the next request is served" % tag, make_request(c).status_code == 200)
    # drop, seen on a raw socket: the request is read, then EOF without a byte
    s.fault({"drop": 1, "reset": False})
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"GET /__x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    got = sock.recv(100)
    sock.close()
    check("%s fault drop on a raw socket: EOF and zero bytes" % tag, got == b"", got)
    s.fault({"drop": 1, "reset": True})
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    sock.sendall(b"GET /__x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    e = raises(lambda: sock.recv(100), ConnectionResetError)
    sock.close()
    check("%s fault drop with reset: the connection is reset (RST)" % tag, isinstance(e, ConnectionResetError), repr(e))
    s.fault({"down_s": 30})
    check("%s fault down_s: /__standin/ stays reachable while down" % tag,
          s.control("/__standin/faults")["down_s_left"] > 25)
    s.fault({"clear": True})
    with httpx.Client(timeout=5) as c:
        check("%s fault clear ends a down_s window at once" % tag, make_request(c).status_code == 200)
    s.fault({"down_s": 1.0})
    with httpx.Client(timeout=5) as c:
        e = raises(lambda: make_request(c), httpx.HTTPError)
        check("%s fault down_s: requests get no reply while down" % tag, isinstance(e, httpx.HTTPError), repr(e))
        time.sleep(1.1)
        check("%s fault down_s: served again after the window" % tag, make_request(c).status_code == 200)
    # concurrency: four requests delayed 500 ms each finish together, not one after another
    s.fault({"delay_ms": 500, "count": 4})
    results = []

    def one():
        with httpx.Client(timeout=10) as c:
            results.append(make_request(c).status_code)

    t0 = time.monotonic()
    ts = [threading.Thread(target=one) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    check("%s serves concurrent requests (4 x 500 ms delayed in %.2f s)" % (tag, dt),
          results == [200] * 4 and dt < 1.5, (results, dt))
    # keep-alive: two requests on one connection
    st = s.stats()
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    conn.request("GET", "/__standin/stats")
    a = conn.getresponse()
    a.read()
    sock1 = conn.sock
    conn.request("GET", "/__standin/stats")
    b = conn.getresponse()
    b.read()
    check("%s keeps HTTP/1.1 connections alive" % tag,
          a.status == 200 and b.status == 200 and conn.sock is sock1 and a.version == 11)
    conn.close()
    check("%s stats: requests counted, faults_served counted" % tag,
          st["requests"] >= 12 and st["faults_served"] >= 9 and st["by_path"], st)
    s.fault({"clear": True})
    check("%s faults: clear leaves nothing pending" % tag, s.control("/__standin/faults")["pending"] == [])
    e = raises(lambda: s.fault({"bogus": 1}), httpx.HTTPStatusError)
    check("%s faults: an unknown fault kind is refused with 400" % tag,
          isinstance(e, httpx.HTTPStatusError) and e.response.status_code == 400, repr(e))


# ---- Qdrant --------------------------------------------------------------------------------------
def check_qdrant(tmp):
    from qdrant_client import QdrantClient, models as m
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import UnexpectedResponse

    keyf = os.path.join(tmp, "qdrant.key")
    with open(keyf, "w") as f:
        f.write("q-secret\n")
    storage = os.path.join(tmp, "qdrant-storage")
    s = Standin("qdrant_standin.py", ["--api-key-file", keyf, "--storage", storage])
    check("qdrant: prints exactly 'READY http://127.0.0.1:PORT'", s.ready_line.rstrip("\n") == "READY " + s.url)
    H = {"api-key": "q-secret"}
    try:
        # -- auth
        with httpx.Client(timeout=10) as c:
            r = c.get(s.url + "/collections")
            check("qdrant auth: no key -> 401 'Must provide an API key or an Authorization bearer token'",
                  r.status_code == 401 and r.text == "Must provide an API key or an Authorization bearer token", r.text)
            r = c.get(s.url + "/collections", headers={"api-key": "nope"})
            check("qdrant auth: wrong key -> 401 'Invalid API key or JWT'",
                  r.status_code == 401 and r.text == "Invalid API key or JWT", r.text)
            r = c.get(s.url + "/collections", headers={"Authorization": "Bearer q-secret"})
            check("qdrant auth: Authorization: Bearer KEY is accepted", r.status_code == 200, r.text)
            r = c.get(s.url + "/healthz")
            check("qdrant auth: /healthz needs no key (Qdrant's whitelist)",
                  r.status_code == 200 and r.text == "healthz check passed", r.text)
        bad = QdrantClient(url=s.url, api_key="wrong", prefer_grpc=False, timeout=10, check_compatibility=False)
        e = raises(lambda: bad.get_collections(), UnexpectedResponse)
        check("qdrant-client with a wrong key: UnexpectedResponse 401",
              isinstance(e, UnexpectedResponse) and e.status_code == 401, repr(e))

        qc = QdrantClient(url=s.url, api_key="q-secret", prefer_grpc=False, timeout=10)
        # -- collections
        check("qdrant-client: collection_exists is False before creation", qc.collection_exists("books") is False)
        e = raises(lambda: qc.get_collection("books"), UnexpectedResponse)
        check("qdrant-client: missing collection -> 404 'Not found: Collection `books` doesn't exist!'",
              isinstance(e, UnexpectedResponse) and e.status_code == 404
              and e.structured()["status"]["error"] == "Not found: Collection `books` doesn't exist!", repr(e))
        check("qdrant-client: create_collection(384, Cosine)",
              qc.create_collection("books", vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE)) is True)
        e = raises(lambda: qc.create_collection("books", vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE)),
                   UnexpectedResponse)
        check("qdrant-client: creating it again -> 409 'Wrong input: Collection `books` already exists!'",
              isinstance(e, UnexpectedResponse) and e.status_code == 409
              and e.structured()["status"]["error"] == "Wrong input: Collection `books` already exists!", repr(e))
        info = qc.get_collection("books")
        check("qdrant-client: get_collection parses; config.params.vectors is 384/Cosine",
              info.config.params.vectors.size == DIM and info.config.params.vectors.distance == m.Distance.COSINE,
              info.config.params.vectors)

        # -- upsert (points form and batch form), ints and UUIDs
        vecs = rng_vectors(60, 1)
        uuids = [str(uuid.uuid5(uuid.NAMESPACE_URL, "public.authors:%d" % i)) for i in range(20)]
        ids = list(range(1, 41)) + uuids
        tables = ["public.books"] * 40 + ["public.authors"] * 20
        points = [m.PointStruct(id=ids[i], vector=vecs[i].tolist(),
                                payload={"cdcvec": {"table": tables[i], "lsn": "0/%X" % i}, "title": "t%d" % i, "n": i})
                  for i in range(40)]
        res = qc.upsert("books", points=points, wait=True)
        check("qdrant-client: upsert 40 points, wait=True -> completed", res.status == m.UpdateStatus.COMPLETED, res)
        res = qc.upsert("books", points=m.Batch(ids=ids[40:], vectors=vecs[40:].tolist(),
                                                 payloads=[{"cdcvec": {"table": tables[i]}, "n": i} for i in range(40, 60)]))
        check("qdrant-client: upsert 20 UUID points in the batch form", res.status == m.UpdateStatus.COMPLETED, res)
        check("qdrant-client: count = 60", qc.count("books", exact=True).count == 60)

        recs = qc.retrieve("books", ids=[1, 7, uuids[3], 999], with_payload=True, with_vectors=True)
        by = {r.id: r for r in recs}
        check("qdrant-client: retrieve skips a missing id and returns UUIDs hyphenated",
              set(by) == {1, 7, uuids[3]}, list(by))
        ok = all(np.allclose(by[i].vector, unit(vecs[j]), atol=1e-6) for i, j in ((1, 0), (7, 6), (uuids[3], 43)))
        check("qdrant-client: vectors read back normalised (Cosine), as Qdrant stores them", ok)
        check("qdrant-client: payload read back as written (nested keys kept)",
              by[7].payload == {"cdcvec": {"table": "public.books", "lsn": "0/6"}, "title": "t6", "n": 6}, by[7].payload)

        # -- query: scores are cosines
        qv = vecs[6] + 0.1 * vecs[8]
        res = qc.query_points("books", query=qv.tolist(), limit=5, with_payload=True)
        U = np.stack([unit(v) for v in vecs])
        cos = U @ unit(qv)
        want = np.argsort(-cos)[:5]
        got_ids = [p.id for p in res.points]
        check("qdrant-client: query_points ranks as numpy's cosine", got_ids == [ids[j] for j in want], (got_ids, want))
        check("qdrant-client: query_points scores are the cosines (1e-5)",
              np.allclose([p.score for p in res.points], cos[want], atol=1e-5))
        check("qdrant-client: query_points with_payload=True carries payloads",
              all(p.payload and "cdcvec" in p.payload for p in res.points))
        flt = m.Filter(must=[m.FieldCondition(key="cdcvec.table", match=m.MatchValue(value="public.authors"))])
        res = qc.query_points("books", query=qv.tolist(), limit=5, query_filter=flt, with_payload=True)
        check("qdrant-client: query with a filter on the nested key cdcvec.table",
              len(res.points) == 5 and all(p.payload["cdcvec"]["table"] == "public.authors" for p in res.points))
        res = qc.query_points("books", query=qv.tolist(), limit=3, with_payload=False)
        check("qdrant-client: query with with_payload=False returns no payload",
              all(p.payload is None for p in res.points))
        # grouping query (search by row over chunks): groups in the order of their best hit
        res = qc.query_points_groups("books", group_by="cdcvec.table", query=qv.tolist(), limit=2, group_size=2,
                                     with_payload=True)
        want = []
        for j in np.argsort(-cos):
            if tables[j] not in [t for t, _ in want]:
                want.append((tables[j], [ids[k] for k in np.argsort(-cos) if tables[k] == tables[j]][:2]))
        got = [(g.id, [h.id for h in g.hits]) for g in res.groups]
        check("qdrant-client: query_points_groups by the nested cdcvec.table: groups by best hit, 2 hits each",
              got == want, (got, want))

        # -- payload updates keep the vector
        before = qc.retrieve("books", ids=[3], with_vectors=True)[0].vector
        qc.set_payload("books", payload={"price": 9.5, "cdcvec": {"table": "public.books", "lsn": "0/FF"}}, points=[3], wait=True)
        r3 = qc.retrieve("books", ids=[3], with_vectors=True)[0]
        check("qdrant-client: set_payload merges keys", r3.payload == {"cdcvec": {"table": "public.books", "lsn": "0/FF"},
                                                                       "title": "t2", "n": 2, "price": 9.5}, r3.payload)
        check("qdrant-client: set_payload leaves the vector untouched", np.allclose(before, r3.vector, atol=0))
        qc.overwrite_payload("books", payload={"only": True}, points=[4], wait=True)
        check("qdrant-client: overwrite_payload replaces the whole payload",
              qc.retrieve("books", ids=[4])[0].payload == {"only": True})
        qc.delete_payload("books", keys=["price"], points=[3], wait=True)
        check("qdrant-client: delete_payload removes a key", "price" not in qc.retrieve("books", ids=[3])[0].payload)
        e = raises(lambda: qc.set_payload("books", payload={"a": 1}, points=[12345], wait=True), UnexpectedResponse)
        check("qdrant-client: set_payload on a missing id -> 404 'Not found: No point with id 12345 found'",
              isinstance(e, UnexpectedResponse) and e.status_code == 404
              and e.structured()["status"]["error"] == "Not found: No point with id 12345 found", repr(e))

        # -- scroll pages through everything once
        seen, offset, pages = [], None, 0
        while True:
            pts, offset = qc.scroll("books", limit=7, offset=offset, with_payload=False)
            seen += [p.id for p in pts]
            pages += 1
            if offset is None or pages > 20:
                break
        check("qdrant-client: scroll with limit 7 visits all 60 points once (%d pages)" % pages,
              len(seen) == 60 and set(map(str, seen)) == set(map(str, ids)), len(seen))
        pts, _ = qc.scroll("books", scroll_filter=flt, limit=100)
        check("qdrant-client: scroll with a filter", len(pts) == 20 and all(p.payload["cdcvec"]["table"] == "public.authors" for p in pts))
        check("qdrant-client: count with a filter", qc.count("books", count_filter=flt).count == 20)

        # -- deletes
        qc.delete("books", points_selector=m.PointIdsList(points=[1, 2, 424242]), wait=True)
        check("qdrant-client: delete by ids (a missing id is no error)", qc.count("books").count == 58)
        qc.delete("books", points_selector=m.FilterSelector(filter=flt), wait=True)
        check("qdrant-client: delete by filter (the TRUNCATE of one table)", qc.count("books").count == 38)

        # -- bad requests, as Qdrant answers them
        e = raises(lambda: qc.upsert("books", points=[m.PointStruct(id=100, vector=[0.1, 0.2, 0.3])]), UnexpectedResponse)
        check("qdrant-client: wrong dimension -> 400 'Wrong input: Vector dimension error: expected dim: 384, got 3'",
              isinstance(e, UnexpectedResponse) and e.status_code == 400
              and e.structured()["status"]["error"] == "Wrong input: Vector dimension error: expected dim: 384, got 3", repr(e))
        e = raises(lambda: qc.upsert("books", points=[m.PointStruct(id="row-17", vector=vecs[0].tolist())]), UnexpectedResponse)
        check("qdrant-client: id 'row-17' -> 400 'Format error in JSON body: value row-17 is not a valid point ID, ...'",
              isinstance(e, UnexpectedResponse) and e.status_code == 400
              and e.structured()["status"]["error"] == "Format error in JSON body: value row-17 is not a valid point ID, "
                                                        "valid values are either an unsigned integer or a UUID", repr(e))
        check("qdrant: a refused batch writes nothing", qc.count("books").count == 38)

        with httpx.Client(timeout=10, headers=H) as c:
            u = s.url + "/collections/books"
            r = c.put(u + "/points?wait=true", json={"points": [{"id": 500, "vector": vecs[0].tolist(),
                                                                 "payload": {"cdcvec": {"table": "public.books"}}}]})
            j = r.json()
            check("qdrant raw: upsert envelope {'result':{'operation_id','status':'completed'},'status':'ok','time'}",
                  r.status_code == 200 and j["status"] == "ok" and j["result"]["status"] == "completed"
                  and isinstance(j["time"], float) and "operation_id" in j["result"], j)
            r = c.put(u + "/points?wait=true", json={"points": [{"id": "123", "vector": vecs[0].tolist()}]})
            check("qdrant raw: the string '123' is not an id (Qdrant takes numbers or UUIDs only)",
                  r.status_code == 400 and "value 123 is not a valid point ID" in r.text, r.text)
            r = c.put(u + "/points?wait=true", json={"points": [{"id": -1, "vector": vecs[0].tolist()}]})
            check("qdrant raw: a negative id is refused", r.status_code == 400 and "value -1 is not a valid point ID" in r.text, r.text)
            urn = "urn:uuid:" + uuids[0]
            r = c.put(u + "/points?wait=true", json={"points": [{"id": urn, "vector": vecs[0].tolist()}]})
            r2 = c.post(u + "/points", json={"ids": [uuids[0].upper()], "with_payload": False})
            check("qdrant raw: UUIDs in urn and upper-case forms are the same point, read back hyphenated",
                  r.status_code == 200 and r2.json()["result"] == [{"id": uuids[0]}], r2.text)
            r = c.put(u + "/points?wait=true", json={"points": [{"id": 501, "vector": vecs[0].tolist(), "colour": "red"}]})
            check("qdrant raw: an unknown field -> 400 'Format error in JSON body: ...' (extra=forbid)",
                  r.status_code == 400 and r.json()["status"]["error"].startswith("Format error in JSON body: "), r.text)
            r = c.post(u + "/points/query", json={"query": vecs[0].tolist(), "limit": 1, "with_payloads": True})
            check("qdrant raw: a misspelt query field is refused too", r.status_code == 400, r.text)
            r = c.put(u + "/points?wait=true", content=b'{"points":[', headers={"Content-Type": "application/json"})
            check("qdrant raw: truncated JSON -> 400 Format error", r.status_code == 400
                  and r.json()["status"]["error"].startswith("Format error in JSON body: "), r.text)
            r = c.post(u + "/points/count", content=b"{}")
            check("qdrant raw: a body without Content-Type: application/json -> 400 'Content type error'",
                  r.status_code == 400 and r.json()["status"]["error"] == "Content type error", r.text)
            r = c.post(u + "/points/delete?wait=true",
                       json={"filter": {"must": [{"key": "cdcvec.table", "match": {"value": "public.nothing"}}]}})
            check("qdrant raw: delete by filter, the C sink's body", r.status_code == 200, r.text)
            r = c.post(u + "/points/payload?wait=true", json={"payload": {"x": 1}, "points": [500]})
            check("qdrant raw: set payload, the C sink's body", r.status_code == 200, r.text)
            r = c.post(u + "/points", json={"ids": [500], "with_payload": True, "with_vector": False})
            j = r.json()["result"]
            check("qdrant raw: retrieve omits 'vector' when with_vector is false (as Qdrant's serde)",
                  j == [{"id": 500, "payload": {"cdcvec": {"table": "public.books"}, "x": 1}}], j)
            r = c.post(u + "/points/query", json={"query": vecs[0].tolist(), "limit": 0})
            check("qdrant raw: limit 0 -> 422 Validation error", r.status_code == 422
                  and r.json()["status"]["error"].startswith("Validation error in JSON body:"), r.text)
            r = c.post(u + "/points/scroll", json={"filter": {"must": [{"key": "cdcvec.table", "match": {"value": "public.books"}}]},
                                                   "limit": 5, "offset": 10})
            j = r.json()["result"]
            check("qdrant raw: scroll with filter/limit/offset starts at the offset id",
                  r.status_code == 200 and j["points"][0]["id"] == 10 and len(j["points"]) == 5, j)
            r = c.post(u + "/points/query", json={"query": vecs[0].tolist(), "limit": 2})
            check("qdrant raw: query without with_payload carries no payload (Qdrant's default false)",
                  r.status_code == 200 and all("payload" not in p for p in r.json()["result"]["points"]), r.text)
            r = c.get(s.url + "/")
            check("qdrant raw: GET / says it is a stand-in", "stand-in" in r.json().get("standin", ""), r.text)

        # -- faults (Qdrant's envelope; the client sees 429's Retry-After)
        s.fault({"status": 429, "retry_after": 3, "count": 1, "path": "/points/count"})
        e = raises(lambda: qc.count("books"), ResourceExhaustedResponse)
        check("qdrant-client: an injected 429 raises ResourceExhaustedResponse with retry_after_s=3",
              isinstance(e, ResourceExhaustedResponse) and e.retry_after_s == 3, repr(e))

        def q_req(c):
            return c.post(s.url + "/collections/books/points/count", json={"exact": True}, headers=H)

        def q_err(r):
            try:
                return r.json()["status"]["error"]
            except Exception:
                return None

        check_faults("qdrant", s, q_req, q_err, 62)
        n_before = qc.count("books").count
        # -- aliases (cdcvec migrate's books__live): atomic moves, reads through the alias
        qc.create_collection("books2", vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE))
        alias = lambda: {a.alias_name: a.collection_name for a in qc.get_aliases().aliases}
        check("qdrant-client: create_alias", qc.update_collection_aliases([m.CreateAliasOperation(
            create_alias=m.CreateAlias(collection_name="books", alias_name="books__live"))]) is True
            and alias() == {"books__live": "books"})
        check("qdrant-client: count / scroll through an alias read its collection",
              qc.count("books__live").count == n_before and len(qc.scroll("books__live", limit=3)[0]) == 3)
        e = raises(lambda: qc.update_collection_aliases([
            m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name="books__live")),
            m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name="nope", alias_name="books__live"))]))
        check("qdrant: an alias update with a missing collection is a 404 and changes nothing",
              e is not None and "404" in str(e) and alias() == {"books__live": "books"}, e)
        qc.update_collection_aliases([
            m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name="books__live")),
            m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name="books2", alias_name="books__live"))])
        check("qdrant-client: delete_alias + create_alias in one request moves it",
              alias() == {"books__live": "books2"} and qc.count("books__live").count == 0)
        r = httpx.post(s.url + "/collections/aliases", headers=H, timeout=10,
                          json={"actions": [{"create_alias": {"collection_name": "books", "alias": "x"}}]})
        check("qdrant: an alias action with an unknown field is a 400 (ChangeAliasesOperation)", r.status_code == 400,
              r.text)
        qc.delete_collection("books2")
        check("qdrant: a dropped collection's aliases go with it", alias() == {})
    finally:
        rc = s.stop()
    check("qdrant: SIGTERM -> exit 0, nothing more on stdout", rc == 0 and s.extra_stdout == "", (rc, s.extra_stdout))

    # -- the engine's storage survives a restart
    s = Standin("qdrant_standin.py", ["--api-key-file", keyf, "--storage", storage])
    try:
        qc = QdrantClient(url=s.url, api_key="q-secret", prefer_grpc=False, timeout=10)
        check("qdrant: after a restart on the same --storage the points are all there",
              qc.count("books").count == n_before, (qc.count("books").count, n_before))
        check("qdrant: ... and their payloads", qc.retrieve("books", ids=[4])[0].payload == {"only": True})
        qc.delete_collection("books")
        check("qdrant-client: delete_collection", qc.collection_exists("books") is False)
    finally:
        s.stop()


# ---- Upstash -------------------------------------------------------------------------------------
def check_upstash(tmp):
    from upstash_vector import Index, Vector
    from upstash_vector.errors import UpstashError
    from upstash_vector.types import MetadataUpdateMode

    tokf = os.path.join(tmp, "upstash.token")
    with open(tokf, "w") as f:
        f.write("u-token\n")
    s = Standin("upstash_standin.py", ["--token-file", tokf, "--dimension", str(DIM)])
    check("upstash: prints exactly 'READY http://127.0.0.1:PORT'", s.ready_line.rstrip("\n") == "READY " + s.url)
    try:
        ix = Index(url=s.url, token="u-token", retries=0)
        e = raises(lambda: Index(url=s.url, token="wrong", retries=0).info(), UpstashError)
        check("upstash-vector with a wrong token: UpstashError 'Unauthorized: Invalid auth token'",
              isinstance(e, UpstashError) and str(e) == "Unauthorized: Invalid auth token", repr(e))
        with httpx.Client(timeout=10) as c:
            r = c.post(s.url + "/info")
            check("upstash raw: no token -> 401 {'error':'Unauthorized: Invalid auth token','status':401}",
                  r.status_code == 401 and r.json() == {"error": "Unauthorized: Invalid auth token", "status": 401}, r.text)

        vecs = rng_vectors(40, 2)
        ids = ["public.books:%d" % i for i in range(30)]
        res = ix.upsert([Vector(id=ids[i], vector=vecs[i].tolist(), metadata={"title": "t%d" % i, "n": i,
                                                                            "cdcvec": {"table": "public.books"}})
                         for i in range(30)])
        check("upstash-vector: upsert 30 vectors -> 'Success'", res == "Success", res)
        ix.upsert([(str(i), vecs[30 + i].tolist(), {"n": i}) for i in range(10)], namespace="authors")
        info = ix.info()
        check("upstash-vector: info counts per namespace, dimension 384, COSINE",
              info.vector_count == 40 and info.dimension == DIM and info.similarity_function == "COSINE"
              and info.namespaces[""].vector_count == 30 and info.namespaces["authors"].vector_count == 10, info)
        check("upstash-vector: list_namespaces", sorted(ix.list_namespaces()) == ["", "authors"])

        qv = vecs[5] + 0.2 * vecs[9]
        res = ix.query(vector=qv.tolist(), top_k=5, include_metadata=True, include_vectors=True)
        U = np.stack([unit(v) for v in vecs[:30]])
        cos = U @ unit(qv)
        want = np.argsort(-cos)[:5]
        check("upstash-vector: query ranks as numpy's cosine", [r.id for r in res] == [ids[j] for j in want],
              ([r.id for r in res], want))
        check("upstash-vector: query score = (1 + cos) / 2 (1e-5)",
              np.allclose([r.score for r in res], (1 + cos[want]) / 2, atol=1e-5), [r.score for r in res])
        check("upstash-vector: vectors are stored normalised", np.allclose(res[0].vector, U[want[0]], atol=1e-6))
        check("upstash-vector: metadata comes back", res[0].metadata["title"] == "t%d" % want[0])
        res = ix.query(vector=qv.tolist(), top_k=3, namespace="authors")
        check("upstash-vector: a query in a namespace sees only it", all(r.id in [str(i) for i in range(10)] for r in res)
              and res[0].metadata is None)
        res = ix.query(vector=qv.tolist(), top_k=30, filter="n >= 25 AND cdcvec.table = 'public.books'", include_metadata=True)
        check("upstash-vector: a metadata filter (nested key, AND, >=)", sorted(r.id for r in res) == sorted(ids[25:]),
              [r.id for r in res])

        got = ix.fetch(ids=[ids[0], "nope", ids[2]], include_metadata=True, include_vectors=True)
        check("upstash-vector: fetch keeps order, None for a missing id",
              got[1] is None and got[0].id == ids[0] and got[2].metadata["n"] == 2, got)
        old = np.array(got[0].vector)
        check("upstash-vector: update of metadata only (OVERWRITE)", ix.update(ids[0], metadata={"only": 1}) is True)
        f0 = ix.fetch(ids=[ids[0]], include_metadata=True, include_vectors=True)[0]
        check("upstash-vector: ... metadata replaced, vector kept", f0.metadata == {"only": 1}
              and np.allclose(f0.vector, old, atol=0), f0)
        ix.update(ids[1], metadata={"n": None, "extra": {"a": 1}}, metadata_update_mode=MetadataUpdateMode.PATCH)
        f1 = ix.fetch(ids=[ids[1]], include_metadata=True)[0]
        check("upstash-vector: update PATCH is a JSON merge patch (null deletes)",
              f1.metadata == {"title": "t1", "cdcvec": {"table": "public.books"}, "extra": {"a": 1}}, f1.metadata)
        check("upstash-vector: update of an unknown id -> False", ix.update("nope", metadata={"a": 1}) is False)

        seen, cursor, pages = [], "", 0
        while True:
            rr = ix.range(cursor=cursor, limit=7, include_metadata=True)
            seen += [v.id for v in rr.vectors]
            pages += 1
            cursor = rr.next_cursor
            if cursor == "" or pages > 20:
                break
        check("upstash-vector: range pages through all 30 once (%d pages)" % pages, sorted(seen) == sorted(ids), seen)

        d = ix.delete(ids=[ids[0], ids[1], "nope"])
        check("upstash-vector: delete by ids -> deleted 2", d.deleted == 2, d)
        check("upstash-vector: reset of a namespace", ix.reset(namespace="authors") == "Success"
              and ix.info().namespaces["authors"].vector_count == 0)
        ix.delete_namespace("authors")
        check("upstash-vector: delete_namespace", ix.list_namespaces() == [""])

        # -- limits
        e = raises(lambda: ix.upsert([("bad", [0.1, 0.2, 0.3])]), UpstashError)
        check("upstash-vector: wrong dimension -> 'Invalid vector dimension: 3, expected: 384'",
              isinstance(e, UpstashError) and str(e) == "Invalid vector dimension: 3, expected: 384", repr(e))
        big = ix.info().vector_count
        e = raises(lambda: ix.upsert([("v%d" % i, vecs[0].tolist()) for i in range(1001)]), UpstashError)
        check("upstash-vector: 1001 vectors in one request are refused", isinstance(e, UpstashError)
              and "at most 1000" in str(e), repr(e))
        check("upstash-vector: ... and nothing of it was written", ix.info().vector_count == big)
        ok = ix.upsert([("v%d" % i, vecs[i % 40].tolist()) for i in range(1000)])
        check("upstash-vector: exactly 1000 vectors in one request are taken", ok == "Success")
        # metadata of exactly 49152 bytes passes, one more byte fails
        base = {"k": ""}
        pad = 49152 - len(json.dumps(base, separators=(",", ":")))
        e_ok = raises(lambda: ix.upsert([("m1", vecs[0].tolist(), {"k": "x" * pad})]), UpstashError)
        e_big = raises(lambda: ix.upsert([("m2", vecs[0].tolist(), {"k": "x" * (pad + 1)})]), UpstashError)
        check("upstash-vector: metadata of 49152 bytes is taken", e_ok is None, repr(e_ok))
        check("upstash-vector: metadata of 49153 bytes is refused (48 KB)",
              isinstance(e_big, UpstashError) and "exceeds the limit of 49152 bytes" in str(e_big), repr(e_big))
        with httpx.Client(timeout=10, headers={"Authorization": "Bearer u-token"}) as c:
            r = c.post(s.url + "/upsert", json=[{"id": "x", "vector": [1, 2, 3]}])
            check("upstash raw: wrong dimension -> 422 {'error':'Invalid vector dimension: 3, expected: 384','status':422}",
                  r.status_code == 422 and r.json() == {"error": "Invalid vector dimension: 3, expected: 384", "status": 422}, r.text)
            r = c.post(s.url + "/upsert", json={"id": "single", "vector": vecs[0].tolist()})
            check("upstash raw: a single object (not an array) is an upsert too",
                  r.status_code == 200 and r.json() == {"result": "Success"}, r.text)
            r = c.post(s.url + "/upsert", json={"id": 1.5, "vector": vecs[0].tolist()})
            check("upstash raw: a float id is refused with 400", r.status_code == 400 and r.json()["status"] == 400, r.text)
            r = c.post(s.url + "/upsert", json={"id": 77, "vector": vecs[0].tolist()})
            r2 = c.post(s.url + "/fetch", json={"ids": ["77"]})
            check("upstash raw: an integer id is kept as its string", r.status_code == 200
                  and r2.json()["result"][0]["id"] == "77", r2.text)
            r = c.request("DELETE", s.url + "/delete", json={"ids": ["77", "single"]})
            check("upstash raw: DELETE /delete works like POST", r.json() == {"result": {"deleted": 2}}, r.text)
            r = c.get(s.url + "/upsert")
            check("upstash raw: GET /upsert -> 405", r.status_code == 405 and r.json()["status"] == 405, r.text)
            r = c.post(s.url + "/upsert", json={"id": "d", "data": "some text"})
            check("upstash raw: data without a vector is refused (no embedding model)", r.status_code == 400, r.text)

        def u_req(c):
            return c.post(s.url + "/info", headers={"Authorization": "Bearer u-token"})

        def u_err(r):
            try:
                j = r.json()
                return j["error"] if j.get("status") == r.status_code else None
            except Exception:
                return None

        check_faults("upstash", s, u_req, u_err, 1043)
        # the SDK retries transport errors: a dropped connection is invisible to it
        s.control("/__standin/stats/reset", {})
        s.fault({"drop": 1, "path": "^/info"})
        ix2 = Index(url=s.url, token="u-token", retries=2, retry_interval=0.05)
        info = ix2.info()
        st = s.stats()
        check("upstash-vector: the SDK's retry gets past one dropped connection (seen twice by the stand-in)",
              info.dimension == DIM and st["by_path"].get("/info") == 2, st)
        s.fault({"status": 503, "count": 1})
        e = raises(lambda: ix.info(), UpstashError)
        check("upstash-vector: an injected 503 reaches the SDK as UpstashError", isinstance(e, UpstashError), repr(e))
    finally:
        rc = s.stop()
    check("upstash: SIGTERM -> exit 0, nothing more on stdout", rc == 0 and s.extra_stdout == "", (rc, s.extra_stdout))


def main():
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="standins-") as tmp:
        for part in (check_qdrant, check_upstash):
            try:
                part(tmp)
            except SystemExit:
                raise
            except Exception as e:  # a crash in a block is a failure, not a silent stop
                import traceback

                traceback.print_exc()
                check("%s ran to the end" % part.__name__, False, repr(e))
    print("# %.1f s" % (time.monotonic() - t0))
    print("%d passed, %d failed" % (len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
