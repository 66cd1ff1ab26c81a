"""Determinism: each chapter's central experiment, run twice in this process and once in a fresh
Python process, gives bit-identical results (reduced configurations, same code paths).

Bit-identical is the right bar on one machine: the notebooks print three significant digits
so that *other* CPUs agree too (see `make test-repro`), but on this one nothing may vary."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import pytest
import torch

EXPERIMENTS = {
    "ch1 identity depth sweep": textwrap.dedent(
        """
        from reslab import identity
        sweep = identity.depth_sweep(depths=(1, 8), seeds=(0, 1), width=8, n=32, steps=15)
        tensors = [sweep.losses[f] for f in sorted(sweep.losses)]
        """
    ),
    "ch2 degradation sweep": textwrap.dedent(
        """
        from reslab import reframing
        result = reframing.degradation_sweep(depths=(4, 12), seeds=(0, 1), channels=2, steps=6, n_train=32)
        tensors = [result.curves[k] for k in sorted(result.curves)] + [result.test_accuracy[k] for k in sorted(result.test_accuracy)]
        """
    ),
    "ch3 path decomposition": textwrap.dedent(
        """
        import torch
        from reslab import paths
        stack = paths.residual_layer_stack(54, 16, seed=3)
        x = torch.randn(4, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        tensors = [paths.path_length_decomposition(stack, x, seed=5).coefficients]
        """
    ),
    "ch3 lesion study": textwrap.dedent(
        """
        from reslab import paths
        studies = paths.lesion_study(depth=4, width=8, seeds=(0, 1), steps=5, batch_size=64)
        tensors = [t for k in sorted(studies) for t in (studies[k].losses, studies[k].baseline, studies[k].deleted)]
        """
    ),
    "ch4 long-memory recall": textwrap.dedent(
        """
        from reslab import sequences
        result = sequences.train_recall("gru", [5, 8], [0, 1], carry_biases=(3.0,), steps=10, hidden=6)
        tensors = [result.accuracy, result.losses]
        """
    ),
}

DIGEST = textwrap.dedent(
    """
    import hashlib, torch
    def digest(tensors):
        h = hashlib.sha256()
        for t in tensors:
            h.update(str(tuple(t.shape)).encode()); h.update(str(t.dtype).encode())
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
        return h.hexdigest()
    """
)


def _run_here(code: str) -> str:
    import reslab

    reslab.setup()
    scope: dict = {}
    exec(DIGEST + code, scope)  # noqa: S102 - the experiment code above, written in this file
    return scope["digest"](scope["tensors"])


def _run_fresh(code: str) -> str:
    program = "import reslab\nreslab.setup()\n" + DIGEST + code + "\nprint(digest(tensors))\n"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=300)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_central_experiment_is_bit_identical(name):
    code = EXPERIMENTS[name]
    first = _run_here(code)
    second = _run_here(code)
    fresh = _run_fresh(code)
    assert len(first) == 64
    assert first == second, f"{name}: two runs in one process differ"
    assert first == fresh, f"{name}: a fresh process gives different bits"


def test_digest_sees_a_one_bit_change():
    scope: dict = {}
    exec(DIGEST, scope)  # noqa: S102
    a = torch.tensor([1.0, 2.0])
    b = a.clone()
    b[0] = torch.nextafter(b[0], torch.tensor(2.0))
    assert scope["digest"]([a]) != scope["digest"]([b])
    assert hashlib.sha256(b"").hexdigest() != scope["digest"]([a])
