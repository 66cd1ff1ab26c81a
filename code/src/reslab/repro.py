"""Reproducibility: one call that makes a notebook's printed numbers repeatable.

Every chapter starts with ``import reslab; reslab.setup()``. Printed results are then the same
from run to run on one machine, and equal to three significant digits across CPUs (the fourth
digit of a trained loss can differ between instruction sets), which is what nbval compares.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch

from . import _validate

__all__ = ["setup", "fmt", "generator"]


def setup(seed: int = 0, threads: int = 1, style: bool = True) -> None:
    """Seed every random generator, fix the thread count, use deterministic kernels, apply the figure style.

    Args:
        seed: seed for Python's, NumPy's and PyTorch's global generators (``>= 0``).
        threads: intra-op threads for PyTorch. One thread by default: large reductions
            change their last bits with the thread count, and nbval compares printed text.
        style: apply :func:`reslab.plots.use_style` as well.
    """
    seed = _validate.positive_int("seed", seed, minimum=0)
    threads = _validate.positive_int("threads", threads)
    style = _validate.boolean("style", style)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN before a kernel writes it, to make
    # reads of uninitialised memory reproducible. Every kernel used here writes its whole output,
    # so the fill only costs a second pass over memory (about a tenth of a batched training step).
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.set_default_dtype(torch.float32)
    if style:
        from . import plots

        plots.use_style()


def generator(seed: int) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` seeded with ``seed`` (``>= 0``)."""
    seed = _validate.positive_int("seed", seed, minimum=0)
    return torch.Generator().manual_seed(seed)


def fmt(value: float, digits: int = 3) -> str:
    """Format a number with at most ``digits`` significant digits (1 to 6).

    Non-finite values print as ``inf``, ``-inf`` or ``nan`` and exact zeros as ``0.0``, so that a
    learner sees the difference between "underflowed to zero" and "very small".

    >>> fmt(131.501), fmt(0.0059053), fmt(0.0), fmt(float("inf")), fmt(7.2e11)
    ('132', '0.00591', '0.0', 'inf', '7.2e+11')
    """
    digits = _validate.positive_int("digits", digits)
    if digits > 6:
        raise ValueError(f"digits must be an integer between 1 and 6, got {digits}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"value must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"value must be a real number or a one-element tensor, got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"value must be a real number or a one-element tensor, got {type(value).__name__}") from None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0.0"
    return f"{value:.{digits}g}"
