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
import http.server
import os
import shutil
import threading
from pathlib import Path

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
    def log_message(self, *args):  # keep pytest output clean
        pass


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
        lambda m: record["console"].append(f"{m.type}: {m.text}")
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
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.parentElement.closest('pre, code, script, style, mjx-container, .math, .sig, .widget-label, .jupyter-widgets')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const bad = [];
  const pattern = /\$\$|\\\(|\\\[|\$[^\s$][^$]{0,300}?[^\s$\\]\$/;
  while (walker.nextNode()) {
    const t = walker.currentNode.textContent;
    if (pattern.test(t)) bad.push(t.trim().slice(0, 80));
  }
  return bad;
}"""

# The visible frames of an explorer, named by their "reslab-frame-<k>" class (blob URLs change
# when a frame is shown again, so they cannot identify a frame).
VISIBLE_FRAMES = """(explorer) => [...explorer.querySelectorAll('img')]
  .filter(img => img.offsetParent !== null && img.naturalWidth > 0)
  .map(img => [...img.classList].find(c => /^reslab-frame-\\d+$/.test(c)) || img.src)"""


@pytest.mark.parametrize("page_path", PAGES)
def test_page(browser, server, page_path):
    context, page, response, record = open_page(browser, server, page_path)
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
        assert not record["external"], f"{page_path}: requests left 127.0.0.1: {record['external']}"
        assert not record["page_errors"], f"{page_path}: JavaScript errors: {record['page_errors']}"
        assert not record["console"], f"{page_path}: console errors/warnings: {record['console']}"
        assert not record["failed"], f"{page_path}: failed requests: {record['failed']}"
    finally:
        context.close()


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
