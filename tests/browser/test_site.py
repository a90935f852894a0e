"""The documentation site in a real browser (headless Chromium, Debian's package, driven by Selenium): every page of
`site/` loads and renders, no link inside the site is broken (pages, files and #anchors), every image decodes, and the
home page and one paper page are kept as screenshots in `site/screenshots/`. Run by `make docs-test` after `make docs`."""
import http.server, os, re, shutil, threading, urllib.error, urllib.request
from functools import partial
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("COMPRESS_PAPERS_SITE", ROOT / "site"))
CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


def serve(folder: Path):
    "Serve `folder` over HTTP on a free port in a background thread; returns (base URL, server)."
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/", srv


@pytest.fixture(scope="module")
def browser():
    for exe in (CHROMIUM, DRIVER):
        assert Path(exe).exists(), f"{exe} is missing: `make docs-test` installs Debian's chromium and chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions(); opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    d = webdriver.Chrome(service=Service(DRIVER), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


_WAIT_IMAGES = """const done = arguments[arguments.length - 1];
for (const i of document.images) i.loading = 'eager';
Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })))
  .then(() => done([...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src)));"""

_PAGE = """return {h1: document.querySelectorAll('h1').length, text: document.body.innerText.length,
  targets: [...document.querySelectorAll('a[href]')].map(a => a.href)
           .concat([...document.querySelectorAll('iframe[src], img[src], link[rel=stylesheet][href], script[src]')]
           .map(e => e.src || e.href))};"""


def _fetch(url: str, cache: dict) -> str | None:
    "The body of `url` (None when it does not load), fetched once."
    if url not in cache:
        try:
            with urllib.request.urlopen(url, timeout=30) as r: cache[url] = r.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError): cache[url] = None
    return cache[url]


def check_page(driver, url: str, base: str, fetched: dict) -> list[str]:
    "What is wrong with the page at `url` as Chromium shows it: no heading or text, broken images, broken links inside `base`."
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    try: WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && document.body !== null && document.body.innerText.length > 0"))
    except TimeoutException: pass                                 # judged below as a page that does not render
    problems, page = [], driver.execute_script(_PAGE)
    if page["h1"] == 0 or page["text"] < 100: problems.append(f"{url}: does not render (h1: {page['h1']}, text: {page['text']} chars)")
    problems += [f"{url}: image does not load: {src[:120]}" for src in driver.execute_async_script(_WAIT_IMAGES)]
    for target in sorted(set(page["targets"])):
        if not target.startswith(base): continue                 # outside the site (the web is not reachable here)
        doc, frag = urldefrag(target)
        body = _fetch(doc, fetched)
        if body is None: problems.append(f"{url}: broken link {target}")
        elif frag and doc.endswith(".html") and not re.search(rf'''id=["']{re.escape(frag)}["']''', body):
            problems.append(f"{url}: link to a missing anchor {target}")
    for e in driver.get_log("browser"):     # a script error, or a resource of the site that fails; not the web's (unreachable here)
        m = e["message"]; src = m.split(" ", 1)[0]
        if src.startswith("http") and not src.startswith(base) or src == base + "favicon.ico": continue
        problems.append(f"{url}: console error: {m[:160]}")
    return problems


def test_the_checker_sees_a_broken_link_a_broken_image_and_an_empty_page(browser, tmp_path):
    (tmp_path / "ok.html").write_text("<h1 id='top'>ok</h1>" + "<p>text</p>" * 30)
    (tmp_path / "bad.html").write_text("<h1>bad</h1>" + "<p>text</p>" * 30 +
                                       "<a href='missing.html'>a</a><a href='ok.html#nowhere'>b</a><a href='ok.html#top'>c</a>"
                                       "<img src='missing.png'>")
    (tmp_path / "empty.html").write_text("<p>nothing</p>")
    base, srv = serve(tmp_path)
    try:
        found = check_page(browser, base + "bad.html", base, {})
        assert any("broken link" in p and "missing.html" in p for p in found), found
        assert any("missing anchor" in p and "#nowhere" in p for p in found), found
        assert any("image does not load" in p for p in found), found
        assert not any("#top" in p for p in found), found
        assert any("does not render" in p for p in check_page(browser, base + "empty.html", base, {}))
        assert check_page(browser, base + "ok.html", base, {}) == []
    finally: srv.shutdown()


def test_every_page_of_the_site_renders_with_no_broken_link_or_image(browser):
    assert (SITE / "index.html").exists(), f"no site in {SITE}: build it first (`make docs`)"
    pages = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html") if p.name != "404.html")
    for must in ("index.html", "figures/REPORT.html", "papers/dcp.html", "api/core.html"): assert must in pages, must
    base, srv = serve(SITE); fetched, problems = {}, []
    try:
        for rel in pages: problems += check_page(browser, base + rel, base, fetched)
        shots = SITE / "screenshots"; shots.mkdir(exist_ok=True)
        for name, rel in (("home", "index.html"), ("paper-dcp", "papers/dcp.html")):
            browser.get(base + rel); browser.save_screenshot(str(shots / f"{name}.png"))
            assert (shots / f"{name}.png").stat().st_size > 10_000, f"the {name} screenshot is (nearly) empty"
    finally: srv.shutdown()
    assert problems == [], "\n".join(problems[:40])
