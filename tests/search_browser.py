#!/usr/bin/env python3
"""search_browser.py -- the search page in headless Chromium, driven as a person would (issue 27).

    [SEARCH_KEY=key] search_browser.py CHROMIUM http://HOST:PORT OUTDIR

With SEARCH_KEY (the server's API key) in the environment, each size first opens a search,
gets the login form, types a wrong key (refused), then the key, and lands on the search asked
for with an HttpOnly, SameSite=Strict, expiring session cookie. Talks the DevTools protocol over --remote-debugging-pipe (standard library only: no websocket
module needed). At 1280x800 (desktop) and 390x844 (mobile emulation, touch, DPR 2): opens /,
clicks into the query box and types a query key by key, types an author and a year range into
the filter boxes, picks another result count with the keyboard, presses Enter; then checks the
results in the DOM (every hit by that author, within the years; the count; the query kept;
latency and freshness shown), that the page fits the width (no sideways scroll, 16 px text),
clicks the CSV download and reads the file, sorts by year, loads a malformed filter (the error
shown, the query kept). Screenshots: OUTDIR/search-1280x800.png, OUTDIR/search-390x844.png.
Prints ok/FAIL lines; exit 1 on any FAIL."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class CDP:
    def __init__(self, chrome, profile):
        r1, w1 = os.pipe()  # we write commands -> chrome reads fd 3
        r2, w2 = os.pipe()  # chrome writes fd 4 -> we read
        args = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--hide-scrollbars", "--remote-debugging-pipe", "--user-data-dir=" + profile,
                "about:blank"]

        def child():  # fds 3 and 4 in chromium, whatever numbers the pipes got here
            a, b = os.dup(r1), os.dup(w2)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = open(os.path.join(profile, "chrome.log"), "wb")
        self.p = subprocess.Popen(args, preexec_fn=child, stdout=self.log, stderr=self.log, close_fds=False)
        os.close(r1), os.close(w2)
        self.w, self.r = w1, r2
        self.buf = b""
        self.n = 0
        self.events = []
        self.session = None

    def _read_msg(self, deadline):
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=True, timeout=30):
        self.n += 1
        m = {"id": self.n, "method": method, "params": params or {}}
        if session and self.session:
            m["sessionId"] = self.session
        os.write(self.w, json.dumps(m).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            r = self._read_msg(deadline)
            if r.get("id") == self.n:
                if "error" in r:
                    raise RuntimeError("%s: %s" % (method, r["error"]))
                return r.get("result", {})
            self.events.append(r)

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read_msg(deadline))

    def js(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError("js: %s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()


fails = 0


def check(name, ok, detail=""):
    global fails
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + str(detail)))
    if not ok:
        fails = 1


def navigate_and_wait(c, action):
    c.events = [e for e in c.events if e.get("method") != "Page.loadEventFired"]
    action()
    c.wait_event("Page.loadEventFired")


def click(c, selector):
    box = c.js("(() => { const r = document.querySelector(%s).getBoundingClientRect(); "
               "return [r.x + r.width / 2, r.y + r.height / 2]; })()" % json.dumps(selector))
    for t in ("mousePressed", "mouseReleased"):
        c.send("Input.dispatchMouseEvent", {"type": t, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})


def type_text(c, text):
    for ch in text:
        c.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": ch, "key": ch, "unmodifiedText": ch})
        c.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})


def key_press(c, name, code, vk):
    for t in ("rawKeyDown", "keyUp"):
        c.send("Input.dispatchKeyEvent", {"type": t, "key": name, "code": code, "windowsVirtualKeyCode": vk,
                                          "nativeVirtualKeyCode": vk,
                                          **({"text": "\r"} if name == "Enter" and t == "rawKeyDown" else {})})
    if name == "Enter":
        c.send("Input.dispatchKeyEvent", {"type": "char", "text": "\r", "key": "Enter"})


def run(chrome, base, out, width, height, mobile, key=None):
    tag = "%dx%d" % (width, height)
    prof = tempfile.mkdtemp(prefix="cdcvec-chrome-")
    dl = os.path.join(out, "download-" + tag)
    os.makedirs(dl, exist_ok=True)
    c = CDP(chrome, prof)
    try:
        tid = c.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        c.session = c.send("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        c.send("Page.enable")
        c.send("Runtime.enable")
        c.send("Network.enable")
        c.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                      "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile})
        if mobile:
            c.send("Emulation.setTouchEmulationEnabled", {"enabled": True})
        c.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": dl, "eventsEnabled": True},
               session=False)
        if key:  # the page behind a key: the login form first, then back to the page asked for
            navigate_and_wait(c, lambda: c.send("Page.navigate", {"url": base + "/?q=books+like+star+wars"}))
            check(tag + ": with a key set, the page asks to log in",
                  c.js("document.querySelector('form[action=\"/login\"] #key') !== null"))
            click(c, "#key")
            type_text(c, "wrong")
            navigate_and_wait(c, lambda: key_press(c, "Enter", "Enter", 13))
            check(tag + ": a wrong key is refused on the form", c.js("(document.querySelector('#error') || "
                                                                     "{textContent: ''}).textContent.includes('Wrong key')"))
            click(c, "#key")
            type_text(c, key)
            navigate_and_wait(c, lambda: click(c, "#login"))
            check(tag + ": logged in with the key: back at the search asked for, with results",
                  c.js("location.search === '?q=books+like+star+wars' && "
                       "document.querySelectorAll('li.hit').length > 0"))
            cookie = c.send("Network.getCookies", {"urls": [base + "/"]}).get("cookies", [])
            ck = [x for x in cookie if x["name"] == "cdcvec_session"]
            check(tag + ": the session cookie is HttpOnly, SameSite=Strict, expiring",
                  ck and ck[0]["httpOnly"] and ck[0].get("sameSite") == "Strict" and not ck[0]["session"], ck)
        navigate_and_wait(c, lambda: c.send("Page.navigate", {"url": base + "/"}))
        check(tag + ": the query box has a label", c.js("document.querySelector('label[for=q]') !== null && "
                                                        "document.querySelector('label[for=q]').textContent.length > 3"))
        click(c, "#q")
        type_text(c, "an alien invasion")
        click(c, "input[name=author]")
        type_text(c, "John Wyndham")
        click(c, "input[name='year.gte']")
        type_text(c, "1950")
        click(c, "input[name='year.lte']")
        type_text(c, "1960")
        c.js("document.querySelector('#limit').focus()")
        key_press(c, "ArrowDown", "ArrowDown", 40)  # 10 -> 20
        chosen = c.js("document.querySelector('#limit').value")
        click(c, "#q")
        navigate_and_wait(c, lambda: key_press(c, "Enter", "Enter", 13))
        url = c.js("location.href")
        check(tag + ": typing and Enter submitted the form (%s)" % url,
              "q=an+alien+invasion" in url and "author=John+Wyndham" in url and "year.gte=1950" in url)
        check(tag + ": the result count picked with the keyboard (%s) is in the search" % chosen,
              chosen == "20" and "limit=20" in url, url)
        hits = c.js("[...document.querySelectorAll('li.hit')].map(li => li.querySelector('.f').textContent)")
        check(tag + ": %d hits, all by John Wyndham from 1950 to 1960" % len(hits or []),
              hits and all("author: John Wyndham" in h and any("year: %d" % y in h for y in range(1950, 1961))
                           for h in hits), hits)
        check(tag + ": the query and the filters are kept in the form",
              c.js("document.querySelector('#q').value === 'an alien invasion' && "
                   "document.querySelector('input[name=author]').value === 'John Wyndham' && "
                   "document.querySelector('#limit').value === '20'"))
        stats = c.js("(document.querySelector('#stats') || {}).textContent")
        check(tag + ": latency and freshness under the results (%s)" % stats,
              bool(stats) and " ms" in stats and "index applied through" in stats and "lag" in stats)
        fit = c.js("[document.documentElement.scrollWidth, innerWidth, "
                   "parseFloat(getComputedStyle(document.querySelector('#q')).fontSize), "
                   "document.querySelector('#q').getBoundingClientRect().width]")
        check(tag + ": fits the width, no sideways scroll, 16 px text, a wide query box (%s)" % fit,
              fit[0] <= fit[1] and fit[2] >= 16 and fit[3] >= min(250, width * 0.5), fit)
        shot = c.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(os.path.join(out, "search-%s.png" % tag), "wb") as f:
            f.write(base64.b64decode(shot))
        check(tag + ": screenshot saved", os.path.getsize(os.path.join(out, "search-%s.png" % tag)) > 1000)
        click(c, "#dl-csv")
        done = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not done:
            e = c.wait_event("Browser.downloadProgress", timeout=30)
            if e["params"].get("state") == "completed":
                done = e
        files = [os.path.join(dl, f) for f in os.listdir(dl)]
        rows = open(files[0], encoding="utf-8").read().splitlines() if files else []
        check(tag + ": CSV download has a header and the %d hits" % len(hits or []),
              rows and rows[0].startswith("rank,similarity,key,text") and len(rows) == 1 + len(hits or []), rows[:3])
        # sort by year, descending, with the keyboard on the sort select, then submit by click
        c.js("document.querySelector('#sort').focus()")
        key_press(c, "End", "End", 35)  # the last option: year descending
        navigate_and_wait(c, lambda: click(c, "#go"))
        years = c.js("[...document.querySelectorAll('li.hit .f')].map(f => +f.textContent.match(/year: (\\d+)/)[1])")
        check(tag + ": sorted by year, descending (%s)" % years, years == sorted(years, reverse=True))
        navigate_and_wait(c, lambda: c.send("Page.navigate", {"url": base + "/?q=dune&year.gte=abc"}))
        check(tag + ": a malformed filter shows the error and keeps the query",
              c.js("document.querySelector('#error') !== null && document.querySelector('#error').textContent"
                   ".includes('year.gte') && document.querySelector('#q').value === 'dune'"))
    finally:
        c.close()


def main():
    chrome, base, out = sys.argv[1:4]
    key = os.environ.get("SEARCH_KEY")  # set: the server has an API key; log in with it first
    os.makedirs(out, exist_ok=True)
    run(chrome, base, out, 1280, 800, False, key)
    run(chrome, base, out, 390, 844, True, key)
    sys.exit(fails)


if __name__ == "__main__":
    main()
