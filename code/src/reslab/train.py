"""Tiny deterministic training loops, and the same loop batched over seeds.

:func:`train_seeds` trains one model per seed *at once*: the models' parameters are stacked
along a new leading axis (:func:`torch.func.stack_module_state`), one forward pass is mapped
over that axis with :func:`torch.vmap`, and the per-seed losses are summed before the single
backward pass. The seeds do not interact: the gradient of the sum with respect to one seed's
parameters is that seed's own gradient, and Adam and SGD update each entry of a parameter
tensor on its own, so each seed follows the trajectory it would follow alone (up to float
rounding in the batched matrix products). ``batched=False`` runs the plain Python loop, for
comparison and for models ``vmap`` cannot map.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F_

from . import _validate

__all__ = ["LOSSES", "OPTIMIZERS", "TrainResult", "loss_fn", "train", "train_seeds"]

LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("adam", "sgd")


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name``: ``"mse"`` (mean over all entries) or ``"cross_entropy"`` (integer targets)."""
    name = _validate.choice("name (of a loss)", name, LOSSES)
    return F_.mse_loss if name == "mse" else F_.cross_entropy


@dataclass
class TrainResult:
    """Losses recorded by :func:`train` or :func:`train_seeds`.

    Attributes:
        losses: shape ``(S, steps + 1)``: the training loss before each step, and after the last.
        models: the trained models, one per seed (for :func:`train`, a list of one).
    """

    losses: torch.Tensor
    models: list[nn.Module]

    @property
    def final(self) -> torch.Tensor:
        """Final training loss per seed, shape ``(S,)``."""
        return self.losses[:, -1]


def _check_common(steps: int, lr: float, loss: str, optimizer: str, batch_size: int | None, data_seed: int) -> tuple[int, float, Callable, str, int | None]:
    _validate.positive_int("data_seed", data_seed, minimum=0)
    steps = _validate.positive_int("steps", steps, minimum=0)
    lr = _validate.finite_float("lr", lr, positive=True)
    fn = loss_fn(_validate.choice("loss", loss, LOSSES))
    optimizer = _validate.choice("optimizer", optimizer, OPTIMIZERS)
    if batch_size is not None:
        batch_size = _validate.positive_int("batch_size", batch_size)
    return steps, lr, fn, optimizer, batch_size


def _make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr) if name == "adam" else torch.optim.SGD(params, lr=lr)


def _batches(n: int, steps: int, batch_size: int | None, seed: int) -> list[torch.Tensor | None]:
    """Index sets for each step: ``None`` (full batch) or a seeded shuffle shared by all models."""
    if batch_size is None or batch_size >= n:
        return [None] * steps
    gen = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor | None] = []
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        out.append(perm[pos : pos + batch_size])
        pos += batch_size
    return out


def _check_data(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    _validate.tensor("inputs", inputs)
    if inputs.ndim == 0:
        raise ValueError("inputs must have at least one dimension (one row per example), got a 0-dimensional tensor")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs and targets must have the same number of examples, got {inputs.shape[0]} and {targets.shape[0]}")


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    optimizer: str = "adam",
    batch_size: int | None = None,
    data_seed: int = 0,
) -> TrainResult:
    """Train ``model`` in place for ``steps`` steps and record the full-data training loss.

    Args:
        model: the network.
        inputs, targets: the training set (``targets`` are class indices for ``"cross_entropy"``).
        steps: optimiser steps (``>= 0``).
        lr: learning rate (``> 0``).
        loss: ``"mse"`` or ``"cross_entropy"``.
        optimizer: ``"adam"`` or ``"sgd"``.
        batch_size: mini-batch size, or ``None`` for full-batch steps.
        data_seed: seed of the mini-batch order (shared by every model, so seeds differ only by
            their initialisation).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    steps, lr, fn, optimizer, batch_size = _check_common(steps, lr, loss, optimizer, batch_size, data_seed)
    _check_data(inputs, targets)
    opt = _make_optimizer(optimizer, model.parameters(), lr)
    losses = torch.empty(steps + 1)
    for step, idx in enumerate(_batches(inputs.shape[0], steps, batch_size, data_seed)):
        xb, yb = (inputs, targets) if idx is None else (inputs[idx], targets[idx])
        opt.zero_grad(set_to_none=True)
        value = fn(model(xb), yb)
        value.backward()
        if idx is None:
            losses[step] = value.detach()
        else:
            with torch.no_grad():
                losses[step] = fn(model(inputs), targets)
        opt.step()
    with torch.no_grad():
        losses[steps] = fn(model(inputs), targets)
    return TrainResult(losses[None, :], [model])


def train_seeds(
    build: Callable[[int], nn.Module],
    seeds: Sequence[int],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    optimizer: str = "adam",
    batch_size: int | None = None,
    data_seed: int = 0,
    batched: bool = True,
) -> TrainResult:
    """Train ``build(seed)`` for every seed on the same data, batched over seeds with ``vmap``.

    ``build(seed)`` must return a freshly initialised model (it is called with the global
    generator seeded to ``seed``, so a builder that ignores its argument still gets distinct,
    reproducible initialisations). All models must share one architecture. The trained weights
    are written back into the returned models.

    Returns:
        :class:`TrainResult` with ``losses`` of shape ``(len(seeds), steps + 1)``.
    """
    if not callable(build):
        raise TypeError(f"build must be a callable seed -> nn.Module, got {type(build).__name__}")
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    steps, lr, fn, optimizer, batch_size = _check_common(steps, lr, loss, optimizer, batch_size, data_seed)
    batched = _validate.boolean("batched", batched)
    _check_data(inputs, targets)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        m = build(seed)
        if not isinstance(m, nn.Module):
            raise TypeError(f"build must return a torch.nn.Module, got {type(m).__name__}")
        models.append(m)
    if not batched:
        results = [train(m, inputs, targets, steps=steps, lr=lr, loss=loss, optimizer=optimizer, batch_size=batch_size, data_seed=data_seed) for m in models]
        return TrainResult(torch.cat([r.losses for r in results]), models)

    params, buffers = torch.func.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def run(p, b, x):
        return torch.func.functional_call(base, (p, b), (x,))

    forward = torch.vmap(run, in_dims=(0, 0, None))
    per_seed_loss = torch.vmap(lambda out, y: fn(out, y), in_dims=(0, None))
    opt = _make_optimizer(optimizer, list(params.values()), lr)
    losses = torch.empty(len(seeds), steps + 1)
    for step, idx in enumerate(_batches(inputs.shape[0], steps, batch_size, data_seed)):
        xb, yb = (inputs, targets) if idx is None else (inputs[idx], targets[idx])
        opt.zero_grad(set_to_none=True)
        values = per_seed_loss(forward(params, buffers, xb), yb)
        values.sum().backward()
        if idx is None:
            losses[:, step] = values.detach()
        else:
            with torch.no_grad():
                losses[:, step] = per_seed_loss(forward(params, buffers, inputs), targets)
        opt.step()
    with torch.no_grad():
        losses[:, steps] = per_seed_loss(forward(params, buffers, inputs), targets)
        for i, m in enumerate(models):
            for name, p in m.named_parameters():
                p.copy_(params[name][i])
    return TrainResult(losses, models)
