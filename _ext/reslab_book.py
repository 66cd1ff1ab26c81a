"""Local Sphinx extension of the book: small fixes to what jupyter-book v1 puts on every page.

* sphinx-thebe (always loaded by jupyter-book) declares its inline ``const THEBE_JS_URL``
  script once per read phase, so a page can carry it twice and the browser reports
  "Identifier 'THEBE_JS_URL' has already been declared". The book does not use live code cells
  (the launch buttons open Binder or Colab instead), so its scripts are dropped from every page.
* Every remaining script is kept once, in order.
* The theme's ``default_mode`` is left empty by jupyter-book, and pydata-sphinx-theme then logs
  "Got invalid theme mode" on every page: it is set to ``"auto"`` (follow the reader's system).
* The widget manager calls the MathJax 2 API (``MathJax.Hub.Queue``) to typeset widget labels,
  and Sphinx loads MathJax 3: ``static/reslab-mathjax-shim.js`` supplies that one call.
* ``static/reslab.css`` darkens links on the tinted exercise boxes (contrast, WCAG AA).
* ``static/reslab-widgets-a11y.js`` gives widget sliders and frame images accessible names.
* docutils marks bibliography entries with the deprecated ARIA role ``doc-biblioentry`` inside a
  ``role="list"`` container, which axe reports as a critical violation (a list must contain
  list items): entries get ``role="listitem"``.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def _is_thebe(script) -> bool:
    filename = str(getattr(script, "filename", "") or "")
    body = str(getattr(script, "attributes", {}).get("body", ""))
    return "thebe" in filename or "THEBE_JS_URL" in body


def drop_thebe_and_duplicates(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    kept = []
    for script in scripts:
        key = (str(getattr(script, "filename", script)), str(getattr(script, "attributes", {}).get("body", "")))
        if _is_thebe(script) or key in seen:
            continue
        seen.add(key)
        kept.append(script)
    # The MathJax shim must run after Sphinx's inline `window.MathJax = {...}` configuration,
    # which replaces the global object, and before the widget manager renders.
    shim = [s for s in kept if "reslab-mathjax-shim" in str(getattr(s, "filename", ""))]
    config = [i for i, s in enumerate(kept) if "window.MathJax" in str(getattr(s, "attributes", {}).get("body", ""))]
    if shim and config:
        kept.remove(shim[0])
        kept.insert(config[0], shim[0])  # the config moved up by one when the shim (before it) left
    scripts[:] = kept


def default_mode_auto(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def accessible_bibliography(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if isinstance(body, str) and 'role="doc-biblioentry"' in body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


def add_static(app, config):
    config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app):
    app.connect("config-inited", add_static)
    app.connect("html-page-context", default_mode_auto)
    app.connect("html-page-context", accessible_bibliography)
    # priority 500 like the rest: the page-context handler below places it right after the inline MathJax config
    app.add_js_file("reslab-mathjax-shim.js")
    app.add_js_file("reslab-widgets-a11y.js", defer="defer")
    app.add_css_file("reslab.css")
    app.connect("html-page-context", drop_thebe_and_duplicates, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
