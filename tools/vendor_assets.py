"""Vendor the book's browser-side JavaScript from the npm registry, and check it.

The built book requests nothing from outside its own origin. Three npm packages supply what
it needs in the browser:

* ``@jupyter-widgets/html-manager`` (matching ipywidgets 8): ``embed-amd.js`` renders the widget
  state saved in the notebooks, and the Font Awesome fonts its CSS refers to;
* ``requirejs``: the AMD loader that ``embed-amd.js`` expects;
* ``mathjax`` (version 3, as Sphinx expects): ``tex-chtml.js``, its fonts, and the TeX extensions
  and UI components it may load lazily.

Files go into ``_vendor/`` (copied by Sphinx into ``_static/``; deliberately not the book's
``_static/`` folder, whose ``*.js`` jupyter-book adds to every page). ``_vendor/MANIFEST.json``
records each package's version, registry integrity hash and licence, and the sha256 of every
vendored file.

Usage::

    python tools/vendor_assets.py --check   # verify files against MANIFEST.json (no network)
    python tools/vendor_assets.py --fetch   # re-download with `npm pack`, re-extract, re-hash
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "_vendor"
MANIFEST = VENDOR / "MANIFEST.json"

# package spec -> (destination folder, [(glob inside package/, path under destination)], licence file)
PACKAGES = {
    "@jupyter-widgets/html-manager@1.0.15": {
        "dest": "widgets",
        "files": ["dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/embed.js.LICENSE.txt", "LICENSE"],
        "strip": "dist/",
        "license": "BSD-3-Clause",
    },
    "requirejs@2.3.8": {
        "dest": "widgets",
        "files": ["require.js"],
        "strip": "",
        "license": "MIT",
    },
    "mathjax@3.2.2": {
        "dest": "mathjax",
        "files": [
            "es5/tex-chtml.js",
            "es5/output/chtml/fonts/woff-v2/*.woff",
            "es5/input/tex/extensions/*.js",
            "es5/ui/*.js",
            "es5/a11y/assistive-mml.js",
            "es5/a11y/semantic-enrich.js",
            "es5/a11y/complexity.js",
            "es5/a11y/explorer.js",
            "LICENSE",
        ],
        "strip": "es5/",
        "license": "Apache-2.0",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch() -> None:
    """Download each pinned package with ``npm pack`` and extract the listed files."""
    manifest: dict = {"packages": {}, "files": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for spec, info in PACKAGES.items():
            out = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", tmp], check=True, capture_output=True, text=True)
            meta = json.loads(out.stdout)[0]
            manifest["packages"][spec] = {"integrity": meta["integrity"], "license": info["license"], "dest": info["dest"]}
            with tarfile.open(Path(tmp) / meta["filename"]) as tar:
                for member in tar.getmembers():
                    name = member.name.removeprefix("package/")
                    if not member.isfile() or not any(fnmatch.fnmatch(name, pat) for pat in info["files"]):
                        continue
                    rel = name.removeprefix(info["strip"]) if info["strip"] else name
                    if rel == "LICENSE":
                        rel = f"LICENSE.{spec.split('@')[-2].split('/')[-1]}"
                    target = VENDOR / info["dest"] / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    for path in sorted(p for p in VENDOR.rglob("*") if p.is_file() and p != MANIFEST):
        manifest["files"][path.relative_to(VENDOR).as_posix()] = sha256(path)
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"vendored {len(manifest['files'])} files from {len(PACKAGES)} packages into {VENDOR.relative_to(ROOT)}/")


def check() -> list[str]:
    """Problems found comparing ``_vendor/`` with its manifest (empty when all is well)."""
    if not MANIFEST.exists():
        return [f"{MANIFEST} is missing: run tools/vendor_assets.py --fetch"]
    manifest = json.loads(MANIFEST.read_text())
    problems = []
    on_disk = {p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file() and p != MANIFEST}
    for rel, digest in manifest["files"].items():
        path = VENDOR / rel
        if not path.exists():
            problems.append(f"missing: {rel}")
        elif sha256(path) != digest:
            problems.append(f"checksum differs: {rel}")
    for rel in sorted(on_disk - set(manifest["files"])):
        problems.append(f"not in manifest: {rel}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--fetch", action="store_true", help="download and extract the pinned packages")
    group.add_argument("--check", action="store_true", help="verify the vendored files' sha256")
    args = parser.parse_args()
    if args.fetch:
        fetch()
    problems = check()
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print("vendored assets match MANIFEST.json")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
