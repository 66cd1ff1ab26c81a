"""Data for the experiments: the real 8x8 handwritten digits and small synthetic targets.

:func:`load_digits` wraps the copy of the UCI *Optical Recognition of Handwritten Digits* test
set (Alpaydin & Kaynak 1998) that scikit-learn ships inside its wheel (1,797 grey-scale images
of 8x8 pixels, ten classes), so nothing is downloaded. The split into training and test
examples is a seeded permutation, hence the same on every machine.

:func:`small_residual_task` builds the regression target of chapter 2,
:math:`H(x) = x + \\varepsilon\\, g(x)`, a map that is the identity plus a small, fixed,
nonlinear correction :math:`g` (the "cat to dog" of residual learning made concrete).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import _validate

__all__ = ["DIGITS_SIZE", "DIGITS_CLASSES", "Digits", "load_digits", "SmallResidualTask", "small_residual_task"]

#: Number of images in scikit-learn's bundled digits set.
DIGITS_SIZE = 1797
#: Number of classes (the digits 0 to 9).
DIGITS_CLASSES = 10
_SHAPES = ("image", "flat")


@dataclass
class Digits:
    """A deterministic train/test split of the 8x8 digits.

    Attributes:
        x_train, x_test: float32 pixel intensities in :math:`[0, 1]`, shape ``(N, 1, 8, 8)``
            (``shape="image"``) or ``(N, 64)`` (``shape="flat"``).
        y_train, y_test: int64 class labels in ``0..9``, shape ``(N,)``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __post_init__(self) -> None:
        # a split may come from elsewhere than load_digits (the lesion study accepts any): check it
        for split in ("train", "test"):
            x = _validate.tensor(f"x_{split}", getattr(self, f"x_{split}"), ndim=(2, 4))
            y = getattr(self, f"y_{split}")
            if not isinstance(y, torch.Tensor):
                raise TypeError(f"y_{split} must be a torch.Tensor of integer labels, got {type(y).__name__}")
            if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
                raise TypeError(f"y_{split} must be an integer tensor of class labels, got dtype {y.dtype}")
            if y.ndim != 1:
                raise ValueError(f"y_{split} must have 1 dimension (one label per example), got shape {tuple(y.shape)}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"x_{split} and y_{split} must have the same number of examples, got {x.shape[0]} and {y.shape[0]}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"x_train and x_test must have the same shape per example, got {tuple(self.x_train.shape[1:])} and {tuple(self.x_test.shape[1:])}")

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.x_test.shape[0])


def load_digits(n_train: int = 1000, *, seed: int = 0, shape: str = "image", n_test: int | None = None) -> Digits:
    """Load scikit-learn's bundled 8x8 digits and split them deterministically.

    The 1,797 images are shuffled by a permutation drawn from a ``torch.Generator`` seeded with
    ``seed``; the first ``n_train`` form the training set and the next ``n_test`` (by default
    all the rest) the test set, so the two never overlap. Pixels (integers 0..16 in the
    source) are divided by 16.

    Args:
        n_train: training examples, ``1 <= n_train <= 1796``.
        seed: seed of the shuffling permutation (``>= 0``).
        shape: ``"image"`` for ``(N, 1, 8, 8)`` tensors, ``"flat"`` for ``(N, 64)``.
        n_test: test examples, ``1 <= n_test <= 1797 - n_train``; ``None`` takes all the rest.

    Returns:
        a :class:`Digits` split.
    """
    n_train = _validate.positive_int("n_train", n_train)
    if n_train > DIGITS_SIZE - 1:
        raise ValueError(f"n_train must be an integer between 1 and {DIGITS_SIZE - 1}, got {n_train}")
    seed = _validate.positive_int("seed", seed, minimum=0)
    shape = _validate.choice("shape", shape, _SHAPES)
    rest = DIGITS_SIZE - n_train
    if n_test is None:
        n_test = rest
    n_test = _validate.positive_int("n_test", n_test)
    if n_test > rest:
        raise ValueError(f"n_test must be an integer between 1 and {rest} (1797 - n_train), got {n_test}")

    from sklearn.datasets import load_digits as _sk_load_digits  # ships with scikit-learn: no download

    bunch = _sk_load_digits()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32) / 16.0)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    if x.shape != (DIGITS_SIZE, 64):
        raise RuntimeError(f"unexpected digits array of shape {tuple(x.shape)}; expected (1797, 64)")
    if shape == "image":
        x = x.reshape(-1, 1, 8, 8)
    perm = torch.randperm(DIGITS_SIZE, generator=torch.Generator().manual_seed(seed))
    train_idx, test_idx = perm[:n_train], perm[n_train : n_train + n_test]
    return Digits(x[train_idx].contiguous(), y[train_idx].contiguous(), x[test_idx].contiguous(), y[test_idx].contiguous())


@dataclass
class SmallResidualTask:
    """Inputs and targets of the small-residual regression :math:`y = x + \\varepsilon\\,g(x)`.

    Attributes:
        x: inputs, shape ``(n, width)``, standard normal entries.
        y: targets :math:`x + \\varepsilon\\, g(x)`.
        residual: the correction :math:`\\varepsilon\\, g(x)` alone, ``y - x``.
        eps: the scale :math:`\\varepsilon`.
    """

    x: torch.Tensor
    y: torch.Tensor
    residual: torch.Tensor
    eps: float


def small_residual_task(n: int = 256, width: int = 16, *, eps: float = 0.1, seed: int = 0) -> SmallResidualTask:
    """The target :math:`H(x) = x + \\varepsilon\\, g(x)` with :math:`g(x) = \\tanh(A x)`.

    :math:`A` has independent :math:`\\mathcal{N}(0, 4/\\text{width})` entries, so that
    :math:`A x` has entries of variance about 4 and :math:`g` is a genuinely nonlinear map with
    values of order one; :math:`\\varepsilon` sets how far :math:`H` is from the identity.

    Args:
        n: number of examples (``>= 1``).
        width: input and output dimension :math:`d` (``>= 1``).
        eps: scale of the correction (finite, ``>= 0``; ``0`` gives the identity).
        seed: seed of the inputs and of :math:`A` (``>= 0``).
    """
    n = _validate.positive_int("n", n)
    width = _validate.positive_int("width", width)
    eps = _validate.finite_float("eps", eps, minimum=0.0)
    seed = _validate.positive_int("seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(width, width, generator=gen) * (2.0 / math.sqrt(width))
    x = torch.randn(n, width, generator=gen)
    residual = eps * torch.tanh(x @ a.T)
    return SmallResidualTask(x, x + residual, residual, eps)
