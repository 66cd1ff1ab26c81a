"""Argument checks shared by every public function of :mod:`reslab`.

Each check raises :class:`TypeError` for a value of the wrong type and :class:`ValueError`
for a value outside the accepted range, and the message names the argument and what is
accepted, so a learner who passes ``depth=0`` reads ``depth must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def finite_float(name: str, value: Any, *, minimum: float | None = None, positive: bool = False) -> float:
    """Return ``value`` as a finite ``float``; optionally ``> 0`` or ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a finite real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value}")
    return value


def choice(name: str, value: Any, options: Iterable[str]) -> str:
    """Return ``value`` if it is one of the accepted strings ``options``."""
    options = tuple(options)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {options}, got {type(value).__name__} {value!r}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def tensor(name: str, value: Any, *, ndim: int | tuple[int, ...] | None = None, last_dim: int | None = None) -> torch.Tensor:
    """Check that ``value`` is a floating-point tensor of the expected rank and width."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(value.shape)}")
    if last_dim is not None and value.shape[-1] != last_dim:
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(value.shape)}")
    return value


def int_sequence(name: str, values: Any, minimum: int = 1) -> list[int]:
    """Check a non-empty sequence of integers ``>= minimum``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a non-empty sequence of integers >= {minimum}, got {type(values).__name__}")
    out = [positive_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name} must be a non-empty sequence of integers >= {minimum}, got an empty sequence")
    return out


def boolean(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False`` (not ``1``, not ``"yes"``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}")
    return value


def _sequence(name: str, values: Any, what: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or isinstance(values, torch.Tensor) and values.ndim == 0:
        raise TypeError(f"{name} must be a non-empty sequence of {what}, got {type(values).__name__} {values!r}")
    out = list(values)
    if not out:
        raise ValueError(f"{name} must be a non-empty sequence of {what}, got an empty sequence")
    return out


def float_sequence(name: str, values: Any, *, positive: bool = False) -> list[float]:
    """Check a non-empty sequence of finite numbers (each ``> 0`` if asked)."""
    what = "finite numbers" + (" > 0" if positive else "")
    return [finite_float(f"{name}[{i}]", v, positive=positive) for i, v in enumerate(_sequence(name, values, what))]


def choices(name: str, values: Any, options: Iterable[str]) -> list[str]:
    """Check a non-empty sequence of names, each one of ``options``."""
    options = tuple(options)
    return [choice(f"{name}[{i}]", v, options) for i, v in enumerate(_sequence(name, values, f"names from {options}"))]


def float_pair(name: str, value: Any, *, positive: bool = False, increasing: bool = False) -> tuple[float, float]:
    """Check a pair ``(a, b)`` of finite numbers, e.g. axis limits or a figure size."""
    what = "a pair of finite numbers" + (" > 0" if positive else "") + (" (low, high) with low < high" if increasing else "")
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    items = list(value)
    if len(items) != 2:
        raise ValueError(f"{name} must be {what}, got {len(items)} values")
    a, b = (finite_float(f"{name}[{i}]", v, positive=positive) for i, v in enumerate(items))
    if increasing and not a < b:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return a, b


def float_array(name: str, values: Any) -> np.ndarray:
    """``values`` (a sequence, array or tensor of real numbers; ``inf``/``nan`` allowed) as a float NumPy array."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__} {values!r}")
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__} {values!r}") from None
