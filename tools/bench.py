"""`make bench`: measure the module's speed budgets on this machine and write BENCHMARKS.md.

Each line of the table is one measurement with its budget. Ratios (probe overhead, speed-ups)
are measured in one run, side by side, so that the machine's load affects both sides alike.
Run it on an otherwise idle machine: the numbers are wall-clock times.

    python tools/bench.py            # everything (about 5 minutes)
    python tools/bench.py --quick    # skip the notebook, build and nbval timings
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))


@dataclass
class Row:
    what: str
    value: str
    budget: str
    ok: bool | None  # None: reported, no budget


ROWS: list[Row] = []


def row(what: str, value: str, budget: str = "", ok: bool | None = None) -> None:
    ROWS.append(Row(what, value, budget, ok))
    mark = "" if ok is None else ("ok" if ok else "MISSED")
    print(f"{what:<62} {value:>22} {budget:>12} {mark}", flush=True)


def best_of(fn, repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls (seconds): the least disturbed by other load."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# --- notebooks, build, nbval ------------------------------------------------------------------


def bench_notebooks() -> None:
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for nb in NOTEBOOKS:
            start = time.perf_counter()
            subprocess.run(
                [str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--output-dir", tmp,
                 "--ExecutePreprocessor.timeout=600", "--ExecutePreprocessor.record_timing=False", str(nb)],
                check=True, capture_output=True, cwd=ROOT / "chapters",
            )
            elapsed = time.perf_counter() - start
            total += elapsed
            row(f"notebook {nb.name} (fresh kernel)", f"{elapsed:.1f} s", "<= 45 s", elapsed <= 45)
    row("whole book, all notebooks", f"{total:.1f} s", "<= 180 s", total <= 180)


def bench_build(out: Path) -> Path:
    """Clean strict build, then a rebuild with nothing changed, into ``out``; returns the site.

    The build goes to a directory of its own (``--path-output``), so the project's ``_build``
    (the book ``make book`` built, the mutation-testing results) is left as it was.
    """
    cmd = [str(BIN / "jupyter-book"), "build", "-W", "-n", "--keep-going", "--path-output", str(out), "."]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    clean = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    again = time.perf_counter() - start
    row("clean strict build (jupyter-book build -W -n)", f"{clean:.1f} s", "<= 60 s", clean <= 60)
    row("no-change rebuild", f"{again:.1f} s", "<= 10 s", again <= 10)
    return out / "_build" / "html"


def bench_nbval() -> None:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
         "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "chapters/"],
        check=True, capture_output=True, cwd=ROOT,
    )
    elapsed = time.perf_counter() - start
    row("nbval suite (all chapters)", f"{elapsed:.0f} s", "<= 240 s", elapsed <= 240)


# --- library-level measurements ---------------------------------------------------------------


def bench_probe() -> None:
    import torch

    from reslab import nets, probes

    for depth in (100, 1000):
        torch.manual_seed(0)
        stack = nets.mlp_stack("scaled", depth, 128, init="he")  # 1/sqrt(L) branches: finite at depth 1,000
        x = torch.randn(32, 128)
        g = torch.randn(32, 128)

        def bare():
            x0 = x.detach().clone().requires_grad_(True)
            torch.autograd.backward(stack(x0), grad_tensors=g)

        def probe():
            probes.layer_norms(stack, x, grad_output=g)

        bare(), probe()  # warm-up
        # interleave the two so that load affects both alike
        b, p = [], []
        for _ in range(7):
            b.append(best_of(bare, 1))
            p.append(best_of(probe, 1))
        ratio = statistics.median(p) / statistics.median(b)
        row(f"per-layer probe / bare fwd+bwd, depth {depth}", f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3)


def bench_paths() -> None:
    import torch

    from reslab import paths

    # the chapter's setting: width 64, a batch of 8, float64
    stack16 = paths.residual_layer_stack(16, 64, seed=0)
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dp = paths.path_length_decomposition(stack16, x)
    brute = paths.enumerate_paths(stack16, x)
    same = torch.allclose(dp.coefficients, brute.by_length(), rtol=1e-10, atol=1e-12)
    t_dp = best_of(lambda: paths.path_length_decomposition(stack16, x), 5)
    t_brute = best_of(lambda: paths.enumerate_paths(stack16, x), 2)
    speedup = t_brute / t_dp
    row("path decomposition vs brute force, L = 16 (same result)", f"{speedup:.0f}x, same: {same}", ">= 100x", speedup >= 100 and same)
    stack110 = paths.residual_layer_stack(110, 64, seed=0)
    t110 = best_of(lambda: paths.path_length_decomposition(stack110, x), 3)
    row("path decomposition, L = 110", f"{t110 * 1000:.0f} ms", "", None)


def bench_batched_training() -> dict:
    """The chapters' seed sweeps, batched, against a Python loop over the same models.

    Both sides train the same three seeds with the chapter's own settings (depth, width, data,
    number of steps, learning rate): the batched side with :func:`reslab.train.train_seeds`'
    default engine, the loop side with ``batched=False``, which calls :func:`reslab.train.train`
    on each model in turn. The two are run alternately, three times each, and the fastest run
    of each side is kept, as for the other timings.
    """
    import torch

    from reslab import data, identity, train
    from reslab.conv import conv_net

    digits = data.load_digits(128, seed=0)
    x1 = identity.identity_data(128, 16, seed=123)
    cases = {
        # chapter 1: identity.depth_sweep(steps=150, lr=1e-2), its deepest plain net
        "ch1 plain MLP, 32 blocks, width 16, 150 steps": (lambda seed: identity.build_net("plain", 32, 16), x1, x1, dict(steps=150, lr=1e-2)),
        # chapter 2: reframing.degradation_sweep(channels=4, steps=30, lr=3e-3, n_train=128)
        "ch2 residual conv net, 20 layers, 30 steps": (
            lambda seed: conv_net("residual", 20, 4, zero_init=True), digits.x_train, digits.y_train,
            dict(steps=30, lr=3e-3, loss="cross_entropy"),
        ),
    }
    heaviest = {}
    for name, (build, xs, ys, kw) in cases.items():
        seeds = [0, 1, 2]
        t_batched, t_loop = [], []
        for _ in range(3):
            start = time.perf_counter()
            batched = train.train_seeds(build, seeds, xs, ys, **kw)
            t_batched.append(time.perf_counter() - start)
            start = time.perf_counter()
            loop = train.train_seeds(build, seeds, xs, ys, batched=False, **kw)
            t_loop.append(time.perf_counter() - start)
        same = torch.allclose(batched.losses, loop.losses, rtol=1e-4, atol=1e-5)
        speedup = min(t_loop) / min(t_batched)
        row(f"3 seeds batched ({batched.engine} engine) vs loop: {name}", f"{speedup:.2f}x, same: {same}", ">= 2x", speedup >= 2 and same)
        heaviest = {"name": name, "seconds": min(t_batched), "model": build(0), "x": xs, "steps": kw["steps"], "seeds": len(seeds)}
    return heaviest


def bench_matmul_fraction(run: dict) -> None:
    """Fraction of the machine's single-thread fp32 matmul throughput the heaviest sweep reaches."""
    import torch

    from torch.utils.flop_counter import FlopCounterMode

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    t = best_of(lambda: a @ b, 20)
    peak = 2 * 512**3 / t
    model = run["model"]
    with FlopCounterMode(display=False) as counter:
        model(run["x"]).sum().backward()
    flops = counter.get_total_flops() * run["steps"] * run["seeds"]
    reached = flops / run["seconds"]
    row("single-thread fp32 matmul peak (512x512)", f"{peak / 1e9:.1f} GFLOP/s", "", None)
    row(f"heaviest sweep ({run['name']}, 3 seeds) reaches", f"{100 * reached / peak:.1f} % of peak", "", None)


def bench_frame_switch(site: Path) -> None:
    """Slider input -> new frame visible, in headless Chromium on the built book at ``site``."""
    chromium = shutil.which("chromium")
    page_path = "chapters/01_identity_paradox.html"
    if not chromium or not (site / page_path).exists():
        row("FrameExplorer frame switch in Chromium", "not measured", "<= 50 ms", None)
        return
    from playwright.sync_api import sync_playwright

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--headless=new", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{page_path}")
            page.wait_for_selector(".reslab-frame-explorer .noUi-handle", timeout=30000)
            handle = page.query_selector(".reslab-frame-explorer .noUi-handle")
            times = []
            for key in ["End", "Home"] * 5:
                before = page.evaluate("() => [...document.querySelectorAll('.reslab-frame-explorer img')].find(i => i.offsetParent).className")
                handle.focus()
                start = page.evaluate("() => performance.now()")
                handle.press(key)
                page.wait_for_function(
                    "(before) => { const i = [...document.querySelectorAll('.reslab-frame-explorer img')].find(i => i.offsetParent); return i && i.className !== before; }",
                    arg=before, polling="raf",
                )
                times.append(page.evaluate("() => performance.now()") - start)
            browser.close()
    finally:
        httpd.shutdown()
    median = statistics.median(times)
    row("FrameExplorer frame switch in Chromium (median of 10)", f"{median:.0f} ms", "<= 50 ms", median <= 50)


def bench_live_redraw() -> None:
    """A live explorer redraws one frame per slider move: time of one frame render + PNG."""
    from reslab import identity, plots

    grid = identity.gradient_norm_grid(depths=(30,), gains=(1.0,), seeds=(0,))
    identity.gradient_frame(grid, 30, 1.0)  # warm-up
    t = best_of(lambda: plots.figure_png(identity.gradient_frame(grid, 30, 1.0), dpi=72), 5)
    row("live redraw in a kernel (one frame: compute + render)", f"{t * 1000:.0f} ms", "<= 200 ms", t <= 0.2)


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}; {os.cpu_count()} cores; PyTorch {torch.__version__}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; Python {platform.python_version()}; "
        f"measured {time.strftime('%Y-%m-%d')}"
    )


def write_markdown(path: Path) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`tools/bench.py`); wall-clock times on:",
        "",
        f"{machine()}.",
        "",
        "| measurement | value | budget | |",
        "|---|---|---|---|",
    ]
    for r in ROWS:
        mark = "" if r.ok is None else ("ok" if r.ok else "**missed**")
        lines.append(f"| {r.what} | {r.value} | {r.budget} | {mark} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip notebooks, build and nbval")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    import reslab

    reslab.setup()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        site = ROOT / "_build" / "html"  # --quick: the book make book built, if any
        if not args.quick:
            bench_notebooks()
            site = bench_build(Path(tmp))
            bench_nbval()
        bench_probe()
        bench_paths()
        run = bench_batched_training()
        bench_matmul_fraction(run)
        bench_live_redraw()
        bench_frame_switch(site)
    write_markdown(Path(args.output))
    missed = [r.what for r in ROWS if r.ok is False]
    print(f"\n{len(ROWS)} measurements, {len(missed)} budgets missed" + (f": {missed}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
