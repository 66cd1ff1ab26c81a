"""Supply-chain and offline hygiene: no network from reslab, safe loading, consistent installs."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "code" / "src" / "reslab").glob("*.py"))


def test_reslab_opens_no_socket():
    """Importing reslab and running reduced chapter experiments with every way of reaching
    another host disabled: any attempt at a connection (a dataset or model download) fails loudly."""
    program = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise RuntimeError("reslab tried to open a socket")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.socket.sendto = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        import reslab
        reslab.setup()
        from reslab import data, identity, paths, reframing, sequences
        digits = data.load_digits(shape="flat")
        identity.depth_sweep(depths=(2,), seeds=(0,), width=4, n=16, steps=2)
        reframing.degradation_sweep(depths=(4,), seeds=(0,), channels=2, steps=2, n_train=16)
        paths.lesion_study(depth=2, width=4, seeds=(0,), steps=2, batch_size=32, data=digits)
        sequences.train_recall("gru", [5], [0], carry_biases=(3.0,), steps=2, hidden=4)
        print("no socket opened")
        """
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no socket opened" in out.stdout


def test_no_unsafe_torch_load_and_no_network_modules():
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path.name}: {call}"
        assert not re.search(r"^\s*(import|from)\s+(urllib|requests|http|socket|ftplib)\b", text, re.M), path.name
        assert "download_if_missing=True" not in text, path.name


def test_pip_check_is_clean():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_requirements_pin_exact_versions():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    pins = [l for l in lines if not l.startswith("-e")]
    assert "torch==2.13.0" in pins
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9_.+\-]*", l) for l in pins), [l for l in pins if "==" not in l]
