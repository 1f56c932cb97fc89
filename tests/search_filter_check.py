#!/usr/bin/env python3
"""search_filter_check.py -- search filters (issue 27) against a SQL query on the source.

    search_filter_check.py HOST:PORT DB TABLE 'FILTER_QS|LIMIT' ... [-- 'BAD_QS|POST_BODY' ...]

For each case (a query string of filters, e.g. author=John+Wyndham&year.gte=1950, and a limit)
GET /search?q=...&FILTERS&limit=L and POST /search with the same filter as JSON must both return
exactly the rows the SQL query on the source returns when at most L match, and L rows that all
match when more do (a filter never cuts the results short). Then each case after `--` must be a
400 whose message names the offending parameter (a query string, or a JSON body for POST).
Standard library and psql only. Exit 1 on the first mismatch, with what differed."""
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def sql_ids(db, table, filt):
    where = []
    for field, conds in filt.items():
        for op, v in conds.items():
            lit = str(v) if isinstance(v, (int, float)) else "'" + v.replace("'", "''") + "'"
            where.append('"%s" %s %s' % (field, "=" if op == "eq" else OPS[op], lit))
    sql = "SELECT id FROM %s%s" % (table, " WHERE " + " AND ".join(where) if where else "")
    out = subprocess.run(["psql", "-qAtX", db, "-c", sql], capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def parse_qs(qs):
    filt = {}
    for k, v in urllib.parse.parse_qsl(qs, keep_blank_values=False):
        field, _, op = k.partition(".")
        val = v
        try:
            val = int(v)
        except ValueError:
            pass
        filt.setdefault(field, {})[op or "eq"] = val
    return filt


def call(base, qs=None, body=None):
    if body is None:
        req = urllib.request.Request(base + "/search?" + qs)
    else:
        req = urllib.request.Request(base + "/search", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def holds(payload, filt):
    for field, conds in filt.items():
        v = payload.get(field)
        for op, want in conds.items():
            ok = {"eq": v == want, "gt": v is not None and v > want, "gte": v is not None and v >= want,
                  "lt": v is not None and v < want, "lte": v is not None and v <= want}[op]
            if not ok:
                return False
    return True


def main():
    host, db, table = sys.argv[1:4]
    args = sys.argv[4:]
    good = args[:args.index("--")] if "--" in args else args
    bad = args[args.index("--") + 1:] if "--" in args else []
    base = "http://" + host
    fail = 0
    for case in good:
        qs, limit = case.rsplit("|", 1)
        limit = int(limit)
        filt = parse_qs(qs)
        want = sql_ids(db, table, filt)
        body_filter = {f: (c["eq"] if list(c) == ["eq"] else c) for f, c in filt.items()}
        for how, (st, js) in (("GET", call(base, "q=books+like+star+wars&limit=%d&%s" % (limit, qs))),
                              ("POST", call(base, body={"q": "books like star wars", "filter": body_filter,
                                                        "limit": limit}))):
            got = [h["key"] for h in js.get("results", [])] if st == 200 else None
            if got is None:
                print("FAIL %s %s: status %d %s" % (how, qs, st, js))
                fail = 1
                continue
            bad_rows = [h["key"] for h in js["results"] if not holds(h["payload"], filt)]
            exp_n = min(limit, len(want))
            if bad_rows or len(got) != exp_n or not set(got) <= want or (len(want) <= limit and set(got) != want):
                print("FAIL %s %s limit %d: got %d rows %s, SQL has %d%s" % (
                    how, qs, limit, len(got), sorted(got, key=int)[:20], len(want),
                    " rows not matching: %s" % bad_rows if bad_rows else ""))
                fail = 1
            else:
                print("ok   %s %s limit %d: %d rows, as the SQL query on the source (%d match)" % (
                    how, qs, limit, len(got), len(want)))
    for case in bad:
        spec, name = case.rsplit("|", 1)
        st, js = call(base, body=json.loads(spec)) if spec.startswith("{") else call(base, "q=x&" + spec)
        msg = js.get("error", {}).get("message", "")
        if st != 400 or name not in msg:
            print("FAIL %s: expected a 400 naming %r, got %d %s" % (spec, name, st, js))
            fail = 1
        else:
            print("ok   %s: 400 %s" % (spec, msg[:110]))
    sys.exit(fail)


if __name__ == "__main__":
    main()
