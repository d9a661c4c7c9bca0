"""Checks that the built book shows typeset math with no network.

1. Every page of chapter 1 holds server-rendered KaTeX markup, and no page links a
   stylesheet, script or font from another host.
2. The KaTeX stylesheet and fonts are inside the book.
3. Headless Chromium loads a chapter page from a server on 127.0.0.1 and reports, from
   inside the page, that the KaTeX fonts were loaded and applied to the math; it also
   takes a screenshot ($BOOK_SHOT, default target-notebooks/chapter1.png).
"""
import functools
import glob
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

PROBE = """<script>
document.fonts.ready.then(function () {
  var loaded = [];
  document.fonts.forEach(function (f) { if (f.status === 'loaded') loaded.push(f.family); });
  var m = document.querySelector('.katex-html .mord');
  document.title = 'PROBE ' + JSON.stringify({
    katex: document.querySelectorAll('.katex').length,
    font: m ? getComputedStyle(m).fontFamily : '',
    loaded: loaded
  });
});
</script></body>"""

REMOTE = re.compile(r'<(?:link|script|img)[^>]+(?:href|src)="(?:https?:)?//[^"]+"', re.I)


def fail(msg):
    print(f"FAILED: {msg}")
    sys.exit(1)


def main(book):
    pages = sorted(glob.glob(os.path.join(book, "ch01-*.html")))
    if not pages:
        fail("no chapter 1 pages in the built book")
    problems = []
    for p in glob.glob(os.path.join(book, "**", "*.html"), recursive=True):
        text = open(p, encoding="utf-8").read()
        for m in REMOTE.findall(text):
            problems.append(f"{p}: remote resource {m}")
        if "cdn.jsdelivr" in text or "mathjax" in text.lower():
            problems.append(f"{p}: loads math from a CDN")
    with_math = [p for p in pages if 'class="katex"' in open(p, encoding="utf-8").read()]
    if len(with_math) < 3:
        problems.append(f"only {len(with_math)} chapter-1 pages hold KaTeX markup")
    for f in ["katex/katex.min.css", "katex/fonts/KaTeX_Main-Regular.woff2",
              "katex/fonts/KaTeX_Math-Italic.woff2"]:
        if not os.path.isfile(os.path.join(book, f)):
            problems.append(f"{f} is not in the book")
    if problems:
        fail("\n  ".join(problems))
    print(f"  {len(with_math)} chapter-1 pages hold KaTeX markup; no remote resources")

    page = max(with_math, key=lambda p: open(p, encoding="utf-8").read().count('class="katex"'))
    probe = page.replace(".html", ".probe.html")
    text = open(page, encoding="utf-8").read()
    open(probe, "w", encoding="utf-8").write(text.replace("</body>", PROBE, 1))
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=book)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/{os.path.basename(probe)}"
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chrome:
        fail("chromium is not installed (bash .ci/setup all installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--virtual-time-budget=15000", "--window-size=1200,1600"]
    with tempfile.TemporaryDirectory() as prof:
        dom = subprocess.run([chrome, *flags, f"--user-data-dir={prof}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
    with tempfile.TemporaryDirectory() as prof:
        shot = os.environ.get("BOOK_SHOT", os.path.join("target-notebooks", "chapter1.png"))
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        subprocess.run([chrome, *flags, f"--user-data-dir={prof}", f"--screenshot={shot}",
                        url.replace(".probe.html", ".html")],
                       capture_output=True, timeout=120)
    server.shutdown()
    os.remove(probe)
    m = re.search(r"<title>PROBE (.*?)</title>", dom, re.S)
    if not m:
        fail("the probe did not report (no PROBE title in the page Chromium rendered)")
    info = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    loaded = set(info["loaded"])
    if not {"KaTeX_Main", "KaTeX_Math"} <= loaded:
        fail(f"KaTeX fonts not loaded in the browser: {info}")
    if "KaTeX" not in info["font"]:
        fail(f"math is not set in a KaTeX font: {info}")
    print(f"  Chromium: {info['katex']} formulas on {os.path.basename(page)}, "
          f"fonts loaded {sorted(loaded)}, screenshot {shot}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "book")
