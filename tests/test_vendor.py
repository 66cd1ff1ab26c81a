"""The vendored browser assets are exactly the pinned npm files (sha256 against the manifest)."""

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("vendor_assets", ROOT / "tools" / "vendor_assets.py")
vendor_assets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vendor_assets)


def test_vendored_files_match_manifest():
    assert vendor_assets.check() == []


def test_manifest_pins_versions_and_licences():
    manifest = json.loads((ROOT / "_vendor" / "MANIFEST.json").read_text())
    assert set(manifest["packages"]) == {"@jupyter-widgets/html-manager@1.0.15", "requirejs@2.3.8", "mathjax@3.2.2"}
    assert all(p["integrity"].startswith("sha512-") and p["license"] for p in manifest["packages"].values())
    assert "widgets/embed-amd.js" in manifest["files"] and "mathjax/tex-chtml.js" in manifest["files"]


def test_a_tampered_file_is_detected(tmp_path, monkeypatch):
    manifest = json.loads((ROOT / "_vendor" / "MANIFEST.json").read_text())
    fake = tmp_path / "_vendor"
    (fake / "widgets").mkdir(parents=True)
    (fake / "widgets" / "require.js").write_text("tampered")
    (fake / "MANIFEST.json").write_text(json.dumps({"packages": {}, "files": {"widgets/require.js": manifest["files"]["widgets/require.js"]}}))
    monkeypatch.setattr(vendor_assets, "VENDOR", fake)
    monkeypatch.setattr(vendor_assets, "MANIFEST", fake / "MANIFEST.json")
    assert vendor_assets.check() == ["checksum differs: widgets/require.js"]


def test_book_loads_only_vendored_scripts():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert not any(k.startswith(("http:", "https:", "//")) for k in config["nb_ipywidgets_js"])
    assert not config["mathjax_path"].startswith(("http:", "https:", "//"))
    for key in config["nb_ipywidgets_js"]:
        assert (ROOT / "_vendor" / key).exists() or (ROOT / "_ext" / "static" / key).exists(), key
