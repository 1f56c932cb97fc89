"""Shared HTTP plumbing of cdcvec's test stand-ins (qdrant_standin.py, upstash_standin.py).

Not a vendor API: this file holds what both stand-ins share and what no vendor has --
the threaded HTTP/1.1 server (keep-alive, Content-Length or chunked request bodies,
Expect: 100-continue), the READY line, SIGTERM handling, the request statistics and the
fault injection under /__standin/ (never behind auth, never counted in the statistics,
never itself faulted):

  POST /__standin/faults   one JSON object (or an array of them), appended in order:
      {"status":429,"retry_after":2,"count":3,"path":"regex"}
             the next `count` (default 1) matching requests are answered with `status` and a
             vendor-shaped error body (`body`: your own text for the error message); a
             Retry-After header when `retry_after` is given (seconds, an integer or a string)
      {"status":500,"count":N}
      {"drop":N}           the next N matching requests: read in full, then the connection is
                           closed without a byte of reply (curl: "Empty reply from server");
                           "reset":true closes it with a TCP RST instead (curl: "Connection
                           reset by peer")
      {"delay_ms":D,"count":N}  the next N matching requests are answered normally, D ms late
      {"down_s":S}         for S seconds every request (on a new or an open connection) is read
                           and its connection closed without a reply: a store that is down
                           (/__standin/ itself stays reachable, e.g. to clear it early)
      {"clear":true}       forget every pending fault and end a down_s window
    "path" (optional, every fault kind) is a Python regex searched in the request target
    (path and query string, e.g. "/points/delete" or "^/upsert"); "method" (optional) limits a
    rule to one HTTP verb. Rules are consumed in the order they were added; a request takes
    the first rule that matches and still has a count. Answer: {"pending": [...rules...]}.
  GET  /__standin/faults   the pending rules.
  GET  /__standin/stats    {"requests": n, "by_path": {"/path": n}, "by_status": {"200": n},
                            "points_written": n, "faults_served": n, ...store specific keys}
                           (requests = every request to the vendor API, faulted ones included;
                           by_path keys are paths without the query string)
  POST /__standin/stats/reset  zero the counters.
"""

import json
import re
import signal
import socket
import struct
import sys
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 64 * 1024 * 1024  # refuse bodies above 64 MiB outright (both vendors' limits are far lower)


class FaultRule:
    def __init__(self, spec):
        self.spec = dict(spec)
        self.kind = None
        if "drop" in spec:
            self.kind = "drop"
            self.count = int(spec["drop"])
        elif "status" in spec:
            self.kind = "status"
            self.status = int(spec["status"])
            if not 100 <= self.status <= 599:
                raise ValueError("status must be 100..599")
            self.count = int(spec.get("count", 1))
        elif "delay_ms" in spec:
            self.kind = "delay"
            self.delay_ms = int(spec["delay_ms"])
            self.count = int(spec.get("count", 1))
        else:
            raise ValueError("a fault needs one of: status, drop, delay_ms, down_s, clear")
        if self.count < 0:
            raise ValueError("count must be >= 0")
        self.path_re = re.compile(spec["path"]) if spec.get("path") else None
        self.method = spec.get("method")
        self.retry_after = spec.get("retry_after")
        self.body = spec.get("body")
        self.reset = bool(spec.get("reset"))

    def matches(self, method, target):
        if self.count <= 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path_re and not self.path_re.search(target):
            return False
        return True

    def describe(self):
        d = dict(self.spec)
        d["remaining"] = self.count
        return d


class StandinState:
    """Fault rules and counters, shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.down_until = 0.0
        self.reset_stats()

    def reset_stats(self):
        self.requests = 0
        self.by_path = {}
        self.by_status = {}
        self.points_written = 0
        self.faults_served = 0
        self.extra = {}

    def add_extra(self, key, n):
        with self.lock:
            self.extra[key] = self.extra.get(key, 0) + n

    def is_down(self):
        return time.monotonic() < self.down_until

    def take_fault(self, method, target):
        with self.lock:
            for r in self.rules:
                if r.matches(method, target):
                    r.count -= 1
                    self.faults_served += 1
                    return r
            self.rules = [r for r in self.rules if r.count > 0]
        return None

    def count_request(self, path):
        with self.lock:
            self.requests += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1

    def count_status(self, status):
        with self.lock:
            k = str(status)
            self.by_status[k] = self.by_status.get(k, 0) + 1

    def stats(self):
        with self.lock:
            d = {
                "requests": self.requests,
                "by_path": dict(self.by_path),
                "by_status": dict(self.by_status),
                "points_written": self.points_written,
                "faults_served": self.faults_served,
            }
            d.update(self.extra)
            return d


class DropConnection(Exception):
    """Raised inside a handler to close the connection without any reply."""

    def __init__(self, reset=False):
        super().__init__("drop")
        self.reset = reset


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler_cls, state, verbose):
        self.state = state
        self.verbose = verbose
        self.reset_socks = weakref.WeakSet()
        super().__init__(addr, handler_cls)

    def shutdown_request(self, request):
        # a connection marked for a reset is closed at once (SO_LINGER 0: an RST), without the
        # FIN that socketserver's shutdown(SHUT_WR) would send first
        if request in self.reset_socks:
            self.reset_socks.discard(request)
            self.close_request(request)
            return
        super().shutdown_request(request)


class StandinHandler(BaseHTTPRequestHandler):
    """Dispatch: /__standin/* here, everything else to `handle_api(method, path, query, body)`,
    which the vendor stand-in implements and which returns (status, headers, body_bytes)."""

    protocol_version = "HTTP/1.1"
    server_version = "cdcvec-standin"
    sys_version = ""

    # ---- hooks for the vendor stand-in -------------------------------------------------
    def handle_api(self, method, path, query, body):  # pragma: no cover - overridden
        raise NotImplementedError

    def fault_response(self, status, message, retry_after):
        """A vendor-shaped error body for an injected status; message None: the stand-in's own
        default wording for that status."""
        raise NotImplementedError

    # ---- plumbing ------------------------------------------------------------------------
    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise DropConnection()
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until an empty line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                total += size
                if total > MAX_BODY:
                    raise DropConnection()
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(chunks)
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        n = int(n)
        if n < 0 or n > MAX_BODY:
            raise DropConnection()
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise DropConnection()
        return data

    def _send(self, status, headers, body):
        self.send_response(status)
        ctype_set = False
        for k, v in headers or []:
            if k.lower() == "content-type":
                ctype_set = True
            self.send_header(k, v)
        if not ctype_set and body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _drop(self, reset):
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.server.reset_socks.add(self.connection)
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self):
        state = self.server.state
        try:
            target = self.path
            path, _, query = target.partition("?")
            if path.startswith("/__standin/") or path == "/__standin":
                body = self._read_body()
                status, headers, out = self._control(path, body)
                self._send(status, headers, out)
                return
            state.count_request(path)
            if state.is_down():
                # the request is read so that the client has sent everything, then: nothing
                self._read_body()
                with state.lock:
                    state.faults_served += 1
                raise DropConnection()
            body = self._read_body()
            rule = state.take_fault(self.command, target)
            if rule is not None:
                if rule.kind == "drop":
                    raise DropConnection(rule.reset)
                if rule.kind == "status":
                    st, hdrs, out = self.fault_response(rule.status, rule.body, rule.retry_after)
                    hdrs = list(hdrs)
                    if rule.retry_after is not None:
                        hdrs.append(("Retry-After", str(rule.retry_after)))
                    state.count_status(st)
                    self._send(st, hdrs, out)
                    return
                if rule.kind == "delay":
                    time.sleep(rule.delay_ms / 1000.0)
            status, headers, out = self.handle_api(self.command, path, query, body)
            state.count_status(status)
            self._send(status, headers, out)
        except DropConnection as d:
            self._drop(d.reset)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = lambda self: self._dispatch()

    def _control(self, path, body):
        state = self.server.state
        cmd = self.command

        def js(obj, status=200):
            return status, [("Content-Type", "application/json")], json.dumps(obj).encode()

        if path == "/__standin/faults" and cmd == "GET":
            with state.lock:
                return js({"pending": [r.describe() for r in state.rules if r.count > 0],
                           "down_s_left": max(0.0, state.down_until - time.monotonic())})
        if path == "/__standin/faults" and cmd == "POST":
            try:
                spec = json.loads(body or b"null")
                specs = spec if isinstance(spec, list) else [spec]
                new_rules = []
                for s in specs:
                    if not isinstance(s, dict):
                        raise ValueError("a fault is a JSON object")
                    if s.get("clear"):
                        with state.lock:
                            state.rules = []
                            state.down_until = 0.0
                        continue
                    if "down_s" in s:
                        with state.lock:
                            state.down_until = time.monotonic() + float(s["down_s"])
                        continue
                    new_rules.append(FaultRule(s))
            except (ValueError, TypeError, re.error) as e:
                return js({"error": "bad fault: %s" % e}, 400)
            with state.lock:
                state.rules.extend(new_rules)
                return js({"pending": [r.describe() for r in state.rules if r.count > 0]})
        if path == "/__standin/stats" and cmd == "GET":
            return js(state.stats())
        if path == "/__standin/stats/reset" and cmd == "POST":
            with state.lock:
                state.reset_stats()
            return js({"reset": True})
        return js({"error": "no such stand-in control endpoint: %s %s" % (cmd, path)}, 404)


def serve(handler_cls, port, verbose, on_exit=None, host="127.0.0.1"):
    """Listen, print the READY line, serve until SIGTERM/SIGINT, then call on_exit()."""
    state = StandinState()
    httpd = StandinServer((host, port), handler_cls, state, verbose)
    real_port = httpd.server_address[1]

    def stop(signum, frame):
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stdout.write("READY http://127.0.0.1:%d\n" % real_port)
    sys.stdout.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        if on_exit:
            on_exit()
    return 0
