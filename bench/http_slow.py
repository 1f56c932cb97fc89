"""http_slow.py: issue 12's goal. /v1/embeddings latency and server RSS, unloaded and under 200
concurrent slow clients (headers at 1 byte/s, reconnecting when the header deadline cuts them)
plus 500 idle connections (reopened when closed), spread over 10 loopback source addresses
(127.0.0.2-11: 70 connections each, under the per-client cap). Goal: p99 under load within 2x
the unloaded p99; RSS never above 2x the idle RSS.

  usage: python3 bench/http_slow.py HOST:PORT SERVER_PID [SECONDS]"""
import http.client
import json
import os
import select
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from http_robustness import connect_from  # noqa: E402

addr = sys.argv[1].rsplit(":", 1)
addr = (addr[0], int(addr[1]))
pid = int(sys.argv[2])
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 30
SOURCES = [f"127.0.0.{i}" for i in range(2, 12)]
BODY = json.dumps({"input": "books like star wars", "model": "all-MiniLM-L6-v2"}).encode()


def rss_kb():
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


def latencies(n):
    c = http.client.HTTPConnection(*addr, timeout=30)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        c.request("POST", "/v1/embeddings", BODY, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        out.append(time.perf_counter() - t)
    c.close()
    return sorted(out)


def pct(v, p):
    return v[min(len(v) - 1, int(p / 100 * len(v)))] * 1e3


def connect(i):
    return connect_from(addr, SOURCES[i % len(SOURCES)])


class Attack(threading.Thread):
    """200 slow clients (1 byte/s) and 500 idle connections, kept open until stop."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.reconnects, self.sent = False, 0, 0

    def run(self):
        line = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 100000
        slow = [[connect(i), 0] for i in range(200)]
        idle = [connect(200 + i) for i in range(500)]
        next_tick = time.monotonic()
        while not self.stop:
            now = time.monotonic()
            if now >= next_tick:  # one byte per slow client per second
                next_tick += 1.0
                for i, c in enumerate(slow):
                    try:
                        c[0].send(line[c[1]:c[1] + 1])
                        c[1] += 1
                        self.sent += 1
                    except (BlockingIOError, OSError):
                        c[0].close()
                        slow[i] = [connect(i), 0]
                        self.reconnects += 1
            # closed by the server (deadline or cap): reopen
            socks = [c[0] for c in slow] + idle
            r, _, _ = select.select(socks, [], [], 0.05)
            for s in r:
                try:
                    d = s.recv(4096)
                except OSError:
                    d = b""
                if d:
                    continue
                s.close()
                self.reconnects += 1
                for i, c in enumerate(slow):
                    if c[0] is s:
                        slow[i] = [connect(i), 0]
                for i, t in enumerate(idle):
                    if t is s:
                        idle[i] = connect(200 + i)
        for s in [c[0] for c in slow] + idle:
            s.close()


def main():
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    latencies(50)  # warm up
    idle_rss = rss_kb()
    base = latencies(300)
    peak = [idle_rss]
    stop = False

    def sample():
        while not stop:
            peak[0] = max(peak[0], rss_kb())
            time.sleep(0.05)
    smp = threading.Thread(target=sample, daemon=True)
    smp.start()
    atk = Attack()
    atk.start()
    time.sleep(3)  # all 700 connections open
    loaded = []
    t_end = time.monotonic() + secs
    while time.monotonic() < t_end:
        loaded += latencies(50)
    loaded.sort()
    atk.stop = True
    atk.join()
    stop = True
    smp.join()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    res = {"unloaded_p50_ms": round(pct(base, 50), 2), "unloaded_p99_ms": round(pct(base, 99), 2),
           "loaded_p50_ms": round(pct(loaded, 50), 2), "loaded_p99_ms": round(pct(loaded, 99), 2),
           "loaded_requests": len(loaded), "idle_rss_mb": round(idle_rss / 1024, 1),
           "peak_rss_mb": round(peak[0] / 1024, 1), "attack_bytes_sent": atk.sent,
           "attack_reconnects": atk.reconnects, "server_fds_after": fds}
    res["p99_ratio"] = round(res["loaded_p99_ms"] / res["unloaded_p99_ms"], 2)
    res["rss_ratio"] = round(peak[0] / idle_rss, 2)
    res["goal_met"] = res["p99_ratio"] <= 2 and res["rss_ratio"] <= 2
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
