"""Browser check of the built book: every page, as a reader's headless Chromium sees it.

The built HTML (``_build/html``, made by ``make book``) is served on 127.0.0.1 and every page in
the table of contents is opened. On each page: HTTP 200; no console error or warning; no
request leaving 127.0.0.1 (blocked and reported); math typeset by the vendored MathJax; and on
pages with frame explorers, every explorer rendered and every slider, moved to its other end,
changes the frame shown, with no kernel running.

Without a Chromium the check is skipped with a message, unless ``RESLAB_REQUIRE_BROWSER=1``
(set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import functools
import gzip
import html.parser
import io
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "_build" / "html"
CHROMIUM = os.environ.get("RESLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("RESLAB_REQUIRE_BROWSER") == "1"
# Known noise from vendored third-party code, not from the book's own scripts: the widget
# manager compiles its JSON schema with ajv in strict mode, which warns about a union type.
ALLOWED_CONSOLE = ("strict mode: use allowUnionTypes",)
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [f"{f}.html" for f in files]


PAGES = _toc_pages()


def _need(condition: bool, why: str) -> None:
    if condition:
        return
    if REQUIRED:
        pytest.fail(f"{why} (RESLAB_REQUIRE_BROWSER=1 makes this a failure)")
    pytest.skip(why)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, gzip-compressed for text types as any real web host (GitHub Pages,
    Netlify, nginx) serves them, so that page weights are what a reader downloads."""

    COMPRESS = (".html", ".js", ".css", ".json", ".svg", ".txt", ".map", ".inv")

    def log_message(self, *args):  # keep pytest output clean
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if (
            path.suffix in self.COMPRESS
            and path.is_file()
            and "gzip" in self.headers.get("Accept-Encoding", "")
        ):
            body = gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)
            self.send_response(200)
            self.send_header("Content-Type", self.guess_type(str(path)))
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)
        return super().send_head()


@pytest.fixture(scope="module")
def server():
    _need(SITE.joinpath("index.html").exists(), f"no built book at {SITE}: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    _need(CHROMIUM is not None, "no Chromium found (apt-get install chromium): browser check skipped")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is in requirements.txt
        _need(False, "playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _local(url: str, base: str) -> bool:
    return url.startswith(base + "/") or url == base or url.startswith(("data:", "blob:", "about:"))


def open_page(browser, server, page_path: str):
    """Open one page with request and console recording; return (page, response, record)."""
    context = browser.new_context(service_workers="block")
    page = context.new_page()
    record = {"console": [], "external": [], "failed": [], "page_errors": []}

    def on_route(route):
        if _local(route.request.url, server):
            route.continue_()
        else:
            record["external"].append(route.request.url)
            route.abort()

    page.route("**/*", on_route)
    page.on(
        "console",
        lambda m: record["console"].append(f"{m.type}: {m.text} [{m.location.get('url', '')}]")
        if m.type in ("error", "warning") and not any(a in m.text for a in ALLOWED_CONSOLE)
        else None,
    )
    page.on("response", lambda r: record["failed"].append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    page.on("pageerror", lambda e: record["page_errors"].append(str(e)))
    page.on("requestfailed", lambda r: record["failed"].append(f"{r.url} ({r.failure})"))
    response = page.goto(f"{server}/{page_path}", wait_until="load")
    page.wait_for_load_state("networkidle")
    return context, page, response, record


MATH_DONE = """() => {
  const raw = [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container'));
  return {math: document.querySelectorAll('.math').length,
          typeset: document.querySelectorAll('mjx-container').length,
          raw: raw.map(e => e.textContent.slice(0, 60))};
}"""

# TeX that escaped the parser: dollar-delimited or \( \[ text left in the prose (code excluded).
RAW_TEX = r"""() => {
  const main = document.querySelector('main') || document.body;
  const bad = [];
  for (const block of main.querySelectorAll('p, li, td, th, dd, dt, h1, h2, h3, h4, figcaption, .admonition-title')) {
    if (block.closest('pre, code, .highlight, .sig, .jupyter-widgets, .output')) continue;
    const copy = block.cloneNode(true);
    copy.querySelectorAll('mjx-container, .math, code, pre, script, style, .sig').forEach(e => e.remove());
    const text = copy.textContent;
    if (/\$\$|\\\(|\\\[|\$[^$\n]{0,300}\$/.test(text)) bad.push(text.trim().slice(0, 80));
  }
  return bad;
}"""

# The visible frames of an explorer, named by their "reslab-frame-<k>" class (blob URLs change
# when a frame is shown again, so they cannot identify a frame).
VISIBLE_FRAMES = """(explorer) => [...explorer.querySelectorAll('img')]
  .filter(img => img.offsetParent !== null && img.naturalWidth > 0)
  .map(img => [...img.classList].find(c => /^reslab-frame-\\d+$/.test(c)) || img.src)"""


PAGE_WEIGHT = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  return (nav ? nav.transferSize : 0) + res.reduce((a, r) => a + (r.transferSize || 0), 0);
}"""
MAX_PAGE_BYTES = 3 * 2**20
SUMMARY: dict[str, dict] = {}


def _axe_serious(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    # preload off: axe's own re-fetch of @import-ed stylesheets resolves "../basic.css" against
    # the site root (a spurious 404); the rules it would feed (CSS orientation lock) do not apply
    results = Axe().run(page, options={"resultTypes": ["violations"], "preload": False})
    return [
        f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])} nodes, e.g. {v['nodes'][0]['target']})"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("page_path", PAGES)
def test_page(browser, server, page_path):
    context, page, response, record = open_page(browser, server, page_path)
    stats = SUMMARY.setdefault(page_path, {"sliders": 0})
    try:
        assert response is not None and response.status == 200, f"{page_path}: HTTP {response and response.status}"
        # math: every .math element typeset, no raw TeX left
        if page.evaluate("document.querySelectorAll('.math').length") > 0:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=15000)
            page.evaluate("() => MathJax.startup.promise")
            math = page.evaluate(MATH_DONE)
            assert math["typeset"] > 0 and not math["raw"], f"{page_path}: math not typeset: {math}"
        raw = page.evaluate(RAW_TEX)
        assert not raw, f"{page_path}: raw TeX left in the text: {raw}"
        # widgets: each frame explorer renders and every slider changes the frame
        expected = _expected_explorers(page_path)
        if expected:
            page.wait_for_selector(".reslab-frame-explorer", timeout=20000)
        explorers = page.query_selector_all(".reslab-frame-explorer")
        assert len(explorers) == expected, f"{page_path}: {len(explorers)} explorers rendered, {expected} saved in the notebook"
        for i, explorer in enumerate(explorers):
            sliders = explorer.query_selector_all(".noUi-handle")
            assert sliders, f"{page_path}: explorer {i} has no slider"
            for j, handle in enumerate(sliders):
                before = explorer.evaluate(VISIBLE_FRAMES)
                assert len(before) == 1, f"{page_path}: explorer {i} shows {len(before)} frames, expected 1"
                handle.focus()
                handle.press("End")
                page.wait_for_timeout(150)
                after = explorer.evaluate(VISIBLE_FRAMES)
                assert len(after) == 1 and after != before, f"{page_path}: slider {j} of explorer {i} did not change the frame"
                handle.press("Home")
                page.wait_for_timeout(150)
                assert explorer.evaluate(VISIBLE_FRAMES) == before, f"{page_path}: slider {j} of explorer {i} did not go back"
                stats["sliders"] += 1
        # every image loaded, and every image has alt text
        images = page.evaluate("() => [...document.querySelectorAll('main img')].map(i => [i.src.slice(0, 60), i.complete && i.naturalWidth > 0, i.hasAttribute('alt')])")
        hidden = page.evaluate("() => [...document.querySelectorAll('main img')].map(i => i.offsetParent === null)")
        broken = [src for (src, ok, _), h in zip(images, hidden) if not ok and not h]
        assert not broken, f"{page_path}: images not loaded: {broken}"
        assert all(alt for _, _, alt in images), f"{page_path}: images without alt text"
        # accessibility: no serious or critical axe-core violation
        serious = _axe_serious(page)
        assert not serious, f"{page_path}: accessibility violations: {serious}"
        # weight: the page with everything it loads
        weight = page.evaluate(PAGE_WEIGHT)
        stats["bytes"] = weight
        assert weight <= MAX_PAGE_BYTES, f"{page_path}: {weight / 2**20:.2f} MB transferred, over 3 MB"
        assert not record["external"], f"{page_path}: requests left 127.0.0.1: {record['external']}"
        assert not record["page_errors"], f"{page_path}: JavaScript errors: {record['page_errors']}"
        assert not record["console"], f"{page_path}: console errors/warnings: {record['console']}"
        assert not record["failed"], f"{page_path}: failed requests: {record['failed']}"
    finally:
        context.close()


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_internal_links_and_anchors_resolve():
    """Crawl every built page: each link inside the site points to a file that exists and, if it
    names an anchor, to an element with that id."""
    _need(SITE.joinpath("index.html").exists(), f"no built book at {SITE}: run `make book` first")
    pages = sorted(SITE.rglob("*.html"))
    parsed = {p: _parse(p) for p in pages}
    bad = []
    checked = 0
    for page, links in parsed.items():
        base = "file://" + str(page)
        for href in links.hrefs:
            url = urlparse(urljoin(base, href))
            if url.scheme != "file":
                continue  # external links (launch buttons, DOIs) are not followed
            target = Path(unquote(url.path))
            if target.is_dir():
                target = target / "index.html"
            checked += 1
            if not target.exists():
                bad.append(f"{page.relative_to(SITE)} -> {href}")
                continue
            if url.fragment and target.suffix == ".html":
                ids = parsed.get(target) or _parse(target)
                if unquote(url.fragment) not in ids.ids:
                    bad.append(f"{page.relative_to(SITE)} -> {href} (no such anchor)")
    assert checked > 0
    assert not bad, f"{len(bad)} broken internal links: {bad[:20]}"


SEARCHES = {"Jacobian": "chapters/03_backward_pass.html", "forget gate": "chapters/04_lineage.html"}


@pytest.mark.parametrize("query", sorted(SEARCHES))
def test_search_works_offline(browser, server, query):
    """The built-in search page (searchindex.js, no server side) finds the term in its chapter."""
    if not (ROOT / SEARCHES[query].replace(".html", ".ipynb")).exists():
        pytest.fail(f"{SEARCHES[query]} is not in the book")
    context, page, response, record = open_page(browser, server, f"search.html?q={query.replace(' ', '+')}")
    try:
        page.wait_for_selector("#search-results li, ul.search li", timeout=20000)
        links = page.eval_on_selector_all("#search-results li a, ul.search li a", "els => els.map(e => e.getAttribute('href'))")
        assert any(SEARCHES[query] in (href or "") for href in links), f"search for {query!r} found {links}"
        assert not record["external"], record["external"]
    finally:
        context.close()


@pytest.mark.parametrize("page_path", [p for p in PAGES if (ROOT / p.replace(".html", ".ipynb")).exists()])
def test_notebook_page_has_launch_and_download(page_path):
    """Each notebook page offers Binder and Colab launch links and a download of the executed .ipynb."""
    _need(SITE.joinpath("index.html").exists(), f"no built book at {SITE}: run `make book` first")
    text = (SITE / page_path).read_text(encoding="utf-8")
    name = Path(page_path).stem
    assert "mybinder.org/v2/gh/" in text and f"chapters/{name}.ipynb" in text, "no Binder launch link"
    assert "colab.research.google.com/github/" in text, "no Colab launch link"
    assert f'href="../_sources/chapters/{name}.ipynb"' in text, "no download link for the notebook"
    import json

    downloaded = json.loads((SITE / "_sources" / "chapters" / f"{name}.ipynb").read_text(encoding="utf-8"))
    code = [c for c in downloaded["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "the downloadable notebook is not the executed one"
    assert any(c.get("outputs") for c in code)


def test_summary_of_pages(capsys):
    """Prints what the page checks measured (run after them: pytest keeps file order)."""
    if not SUMMARY:
        pytest.skip("no page was checked in this run")
    heaviest = max(SUMMARY.items(), key=lambda kv: kv[1].get("bytes", 0))
    with capsys.disabled():
        print(
            f"\nbrowser check: {len(SUMMARY)} pages, {sum(v['sliders'] for v in SUMMARY.values())} sliders moved, "
            f"heaviest page {heaviest[0]} at {heaviest[1].get('bytes', 0) / 2**20:.2f} MB"
        )
    assert all("bytes" in v for v in SUMMARY.values()), "a page check stopped before measuring its weight"


def _expected_explorers(page_path: str) -> int:
    """Frame explorers saved in the page's notebook (0 for markdown pages)."""
    nb_path = ROOT / page_path.replace(".html", ".ipynb")
    if not nb_path.exists():
        return 0
    import json

    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    displayed = {
        o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    }
    return sum(1 for m in displayed if "reslab-frame-explorer" in state.get(m, {}).get("state", {}).get("_dom_classes", []))


def test_all_toc_pages_were_built():
    _need(SITE.joinpath("index.html").exists(), f"no built book at {SITE}: run `make book` first")
    missing = [p for p in PAGES if not (SITE / p).exists()]
    assert not missing, f"pages in _toc.yml missing from the build: {missing}"
