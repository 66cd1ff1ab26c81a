"""Experiment drivers of chapter 2, *Residual reframing*.

* :func:`degradation_sweep`: plain and residual conv nets of several depths trained on the 8x8
  digits for the same budget, every seed of a configuration trained at once
  (:func:`reslab.train.train_seeds`, on its stacked engine); final training loss, training
  curves and test accuracy per run. This reproduces, in miniature, the degradation problem of
  He et al. (2015).
* :func:`small_residual_race`: the same two-layer branches used as a plain map
  :math:`x \\mapsto F(x)` or a residual map :math:`x \\mapsto x + F(x)`, trained to fit
  :math:`H(x) = x + \\varepsilon\\,g(x)`; how many steps each needs to reach a set loss.
* :func:`residual_sum_gap`: how far a stack's output is from :math:`x_0 + \\sum_i F_i(x_i)`,
  zero (up to rounding) for pre-activation stacks, not for post-activation ones.
* :func:`shortcut_costs`: parameters of the projection-shortcut options A, B and C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import math

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from . import _validate
from .plots import KIND_COLORS, PALETTE, log_line
from .blocks import ACTIVATIONS, INITS, PreActResidualBlock, ProjectionResidualBlock, ResidualBlock
from .conv import HEADS, conv_net
from .data import load_digits, small_residual_task
from .train import OPTIMIZERS, train_seeds

__all__ = [
    "parameter_count",
    "shortcut_costs",
    "DegradationResult",
    "degradation_sweep",
    "BranchNet",
    "branch_net",
    "steps_to_reach",
    "RaceResult",
    "small_residual_race",
    "residual_sum_gap",
    "kind_color",
    "degradation_figure",
    "curves_figure",
    "race_figure",
]

_SWEEP_KINDS = ("plain", "residual", "preact")


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def shortcut_costs(width: int, out_width: int, layers: int = 2) -> dict[str, dict[str, int]]:
    """Parameters of a :class:`~reslab.blocks.ProjectionResidualBlock` for shortcuts A, B, C.

    Returns ``{"A": {"total": ..., "shortcut": ...}, "B": ..., "C": ...}``: the block's
    trainable scalars and the part spent on the shortcut (0 for the zero-padding option A and
    for B when the widths agree; ``width * out_width`` for a projection). Option A is left
    out when ``out_width < width`` (it can only pad).
    """
    width = _validate.positive_int("width", width)
    out_width = _validate.positive_int("out_width", out_width)
    layers = _validate.positive_int("layers", layers)
    out: dict[str, dict[str, int]] = {}
    for option in ProjectionResidualBlock.SHORTCUTS:
        if option == "A" and out_width < width:
            continue
        block = ProjectionResidualBlock(width, out_width, shortcut=option, layers=layers)
        shortcut = 0 if block.projection is None else parameter_count(block.projection)
        out[option] = {"total": parameter_count(block), "shortcut": shortcut}
    return out


@dataclass
class DegradationResult:
    """Results of :func:`degradation_sweep`.

    Attributes:
        depths: the depths (weight layers) trained.
        kinds: the block kinds trained.
        seeds: the initialisation seeds.
        curves: ``{(kind, depth): tensor (S, steps + 1)}``, full training-set loss before each
            step and after the last.
        test_accuracy: ``{(kind, depth): tensor (S,)}``, accuracy on the held-out digits.
        config: the settings the sweep ran with.
    """

    depths: list[int]
    kinds: list[str]
    seeds: list[int]
    curves: dict[tuple[str, int], torch.Tensor]
    test_accuracy: dict[tuple[str, int], torch.Tensor]
    config: dict = field(default_factory=dict)

    def _key(self, kind: str, depth: int) -> tuple[str, int]:
        key = (kind, depth)
        if key not in self.curves:
            raise ValueError(f"(kind, depth) must be one of {sorted(self.curves)}, got {key}")
        return key

    def final(self, kind: str, depth: int) -> torch.Tensor:
        """Final training loss per seed, shape ``(S,)``."""
        return self.curves[self._key(kind, depth)][:, -1]

    def final_table(self, kind: str) -> torch.Tensor:
        """Final training losses of ``kind``, shape ``(len(depths), S)``."""
        return torch.stack([self.final(kind, d) for d in self.depths])

    def median(self, kind: str) -> torch.Tensor:
        """Median over seeds of the final training loss at each depth, shape ``(len(depths),)``."""
        return self.final_table(kind).median(dim=1).values


def degradation_sweep(
    depths: Sequence[int] = (2, 8, 20, 50),
    kinds: Sequence[str] = ("plain", "residual"),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    channels: int = 4,
    steps: int = 40,
    lr: float = 3e-3,
    optimizer: str = "adam",
    n_train: int = 128,
    split_seed: int = 0,
    init: str = "he",
    zero_init: bool = True,
    head: str = "flatten",
) -> DegradationResult:
    """Train :func:`reslab.conv.conv_net` of every kind and depth on the digits, same budget.

    Each (kind, depth) trains all ``seeds`` at once with :func:`reslab.train.train_seeds`
    (full-batch steps on the ``n_train`` training images, cross-entropy loss). No batch
    normalisation anywhere; He initialisation by default; ``zero_init`` zeroes the last
    convolution of every residual branch (plain nets are never zero-initialised). The plain
    and residual nets of one depth have the same layers and the same number of parameters.

    Args:
        depths: weight layers of the nets, even integers ``>= 2``.
        kinds: block kinds, from ``"plain"``, ``"residual"``, ``"preact"``.
        seeds: initialisation seeds (``>= 0``, at least one).
        channels: channels of every block (``>= 1``).
        steps: optimiser steps (``>= 1``), the same for every net.
        lr: learning rate (``> 0``).
        optimizer: ``"adam"`` or ``"sgd"``.
        n_train: training images (the rest of the 1,797 are the test set).
        split_seed: seed of the train/test split.
        init: ``"he"`` or ``"default"``.
        zero_init: zero the last convolution of each residual branch.
        head: classifier head of :func:`reslab.conv.conv_net`.
    """
    depths = _validate.int_sequence("depths", depths, minimum=2)
    for d in depths:
        if d % 2:
            raise ValueError(f"depths must be even integers >= 2 (stem + 2 per block + head), got {d}")
    kinds = _validate.choices("kinds", kinds, _SWEEP_KINDS)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    channels = _validate.positive_int("channels", channels)
    steps = _validate.positive_int("steps", steps)
    lr = _validate.finite_float("lr", lr, positive=True)
    optimizer = _validate.choice("optimizer", optimizer, OPTIMIZERS)
    init = _validate.choice("init", init, INITS)
    head = _validate.choice("head", head, HEADS)
    if not isinstance(zero_init, bool):
        raise TypeError(f"zero_init must be a bool, got {type(zero_init).__name__}")
    split_seed = _validate.positive_int("split_seed", split_seed, minimum=0)
    digits = load_digits(n_train, seed=split_seed)  # checks n_train

    curves: dict[tuple[str, int], torch.Tensor] = {}
    accuracy: dict[tuple[str, int], torch.Tensor] = {}
    for depth in depths:
        for kind in kinds:
            zi = zero_init and kind != "plain"

            def build(seed: int, kind: str = kind, depth: int = depth, zi: bool = zi) -> nn.Module:
                return conv_net(kind, depth, channels, init=init, zero_init=zi, head=head)

            result = train_seeds(build, seeds, digits.x_train, digits.y_train, steps=steps, lr=lr, loss="cross_entropy", optimizer=optimizer)
            curves[(kind, depth)] = result.losses
            with torch.no_grad():
                accuracy[(kind, depth)] = torch.stack([(m(digits.x_test).argmax(dim=1) == digits.y_test).float().mean() for m in result.models])
    config = dict(channels=channels, steps=steps, lr=lr, optimizer=optimizer, n_train=n_train, n_test=digits.n_test, init=init, zero_init=zero_init, head=head)
    return DegradationResult(depths, kinds, seeds, curves, accuracy, config)


class BranchNet(nn.Module):
    """``depth`` two-layer branches :math:`F_l(x) = W_{l,2}\\,\\phi(W_{l,1} x + b_{l,1}) + b_{l,2}`, composed.

    ``kind="plain"``: :math:`x_{l+1} = F_l(x_l)`; ``kind="residual"``:
    :math:`x_{l+1} = x_l + F_l(x_l)`. Same layers, same parameters, same initialisation for
    a given seed: only the parametrisation of the map differs. No activation follows the
    addition, so both can output any real vector.
    """

    def __init__(self, kind: str, depth: int, width: int, hidden: int, activation: str = "relu") -> None:
        super().__init__()
        self.kind = _validate.choice("kind", kind, ("plain", "residual"))
        self.depth = _validate.positive_int("depth", depth)
        self.width = _validate.positive_int("width", width)
        self.hidden = _validate.positive_int("hidden", hidden)
        _validate.choice("activation", activation, ACTIVATIONS)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Linear(self.width, self.hidden), _Activation(activation), nn.Linear(self.hidden, self.width)) for _ in range(self.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _validate.tensor("x", x, last_dim=self.width)
        for branch in self.branches:
            x = x + branch(x) if self.kind == "residual" else branch(x)
        return x


class _Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        from .blocks import activation_fn

        self.name = name
        self.fn = activation_fn(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def branch_net(kind: str, depth: int = 1, width: int = 16, hidden: int = 64, activation: str = "relu") -> BranchNet:
    """Build a :class:`BranchNet` (``kind`` ``"plain"`` or ``"residual"``)."""
    return BranchNet(kind, depth, width, hidden, activation)


def steps_to_reach(losses: torch.Tensor, threshold: float) -> list[int | None]:
    """First step at which each row of ``losses`` is ``<= threshold`` (``None`` if never).

    ``losses`` has shape ``(S, steps + 1)`` as in :class:`reslab.train.TrainResult`; entry
    ``t`` is the loss after ``t`` steps.
    """
    _validate.tensor("losses", losses, ndim=2)
    threshold = _validate.finite_float("threshold", threshold, positive=True)
    out: list[int | None] = []
    for row in losses:
        hit = torch.nonzero(row <= threshold)
        out.append(int(hit[0, 0]) if hit.numel() else None)
    return out


@dataclass
class RaceResult:
    """Results of :func:`small_residual_race`.

    Attributes:
        curves: ``{kind: tensor (S, steps + 1)}`` training MSE curves.
        threshold: the loss to reach.
        identity_loss: the loss of the identity map :math:`x \\mapsto x` on this task (the
            mean square of the correction :math:`\\varepsilon g`).
        eps: the scale of the correction.
    """

    curves: dict[str, torch.Tensor]
    threshold: float
    identity_loss: float
    eps: float

    def steps_to(self, kind: str) -> list[int | None]:
        """Steps each seed of ``kind`` needed to reach :attr:`threshold` (``None``: not within budget)."""
        if kind not in self.curves:
            raise ValueError(f"kind must be one of {sorted(self.curves)}, got {kind!r}")
        return steps_to_reach(self.curves[kind], self.threshold)


def small_residual_race(
    seeds: Sequence[int] = (0, 1, 2),
    *,
    eps: float = 0.1,
    depth: int = 1,
    width: int = 16,
    hidden: int = 64,
    n: int = 256,
    steps: int = 300,
    lr: float = 1e-3,
    threshold: float | None = None,
    task_seed: int = 0,
) -> RaceResult:
    """Fit :math:`H(x) = x + \\varepsilon\\,g(x)` with a plain and a residual :class:`BranchNet`.

    Both kinds are built from the same seeds (so they start from the same weights) and trained
    with full-batch Adam on the MSE for ``steps`` steps.

    Args:
        seeds: initialisation seeds (``>= 0``).
        eps: scale of the correction (``>= 0``), see :func:`reslab.data.small_residual_task`.
        depth, width, hidden: of the :class:`BranchNet`.
        n: training examples.
        steps: optimiser steps (``>= 1``).
        lr: Adam's learning rate (``> 0``).
        threshold: loss to reach; by default a tenth of the identity map's loss
            (:math:`0.1\\,\\overline{(\\varepsilon g)^2}`), or ``1e-4`` when ``eps = 0``.
        task_seed: seed of the inputs and of :math:`g`.
    """
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    steps = _validate.positive_int("steps", steps)
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    hidden = _validate.positive_int("hidden", hidden)
    eps = _validate.finite_float("eps", eps, minimum=0.0)
    n = _validate.positive_int("n", n)
    lr = _validate.finite_float("lr", lr, positive=True)
    task_seed = _validate.positive_int("task_seed", task_seed, minimum=0)
    if threshold is not None:
        threshold = _validate.finite_float("threshold", threshold, positive=True)
    task = small_residual_task(n, width, eps=eps, seed=task_seed)
    identity_loss = float(task.residual.pow(2).mean())
    if threshold is None:
        threshold = 0.1 * identity_loss if identity_loss > 0 else 1e-4
    curves = {}
    for kind in ("plain", "residual"):
        result = train_seeds(lambda s, kind=kind: branch_net(kind, depth, width, hidden), seeds, task.x, task.y, steps=steps, lr=lr, loss="mse")
        curves[kind] = result.losses
    return RaceResult(curves, threshold, identity_loss, task.eps)


def residual_sum_gap(stack: nn.Sequential, x: torch.Tensor) -> float:
    """Largest entry of :math:`|x_L - (x_0 + \\sum_{i<L} F_i(x_i))|` for a stack of residual blocks.

    :math:`F_i(x_i)` is what block :math:`i` adds to its input: ``block.branch(phi(x_i))`` for a
    :class:`~reslab.blocks.PreActResidualBlock` and ``block.branch(x_i)`` for a post-activation
    :class:`~reslab.blocks.ResidualBlock`. For a pre-activation stack the gap is rounding
    error only (the telescoping sum is exact); after a post-activation block the ReLU removes
    the negative part of :math:`x_i + F_i(x_i)`, and the gap measures what it removed.
    """
    if not isinstance(stack, nn.Sequential):
        raise TypeError(f"stack must be a non-empty nn.Sequential of residual blocks, got {type(stack).__name__}")
    if len(stack) == 0:
        raise ValueError("stack must be a non-empty nn.Sequential of residual blocks, got an empty one")
    for i, block in enumerate(stack):
        if not isinstance(block, (ResidualBlock, PreActResidualBlock)):
            raise TypeError(f"stack[{i}] must be a ResidualBlock or PreActResidualBlock, got {type(block).__name__}")
    _validate.tensor("x", x, last_dim=stack[0].width)
    with torch.no_grad():
        total = x.clone()
        h = x
        for block in stack:
            added = block.branch(block.phi(h)) if isinstance(block, PreActResidualBlock) else block.branch(h)
            total = total + added
            h = block(h)
        return float((h - total).abs().max())


# ----------------------------------------------------------------------------- figures

#: Colours of the kinds in this chapter's figures (the book's plain/residual colours).
_KIND_COLORS = {**KIND_COLORS, "preact": PALETTE["green"]}


def kind_color(kind: str) -> str:
    """Colour of a block kind (``"plain"``, ``"residual"`` or ``"preact"``) in the chapter's figures."""
    return _KIND_COLORS[_validate.choice("kind", kind, _KIND_COLORS)]


def _check_result(result: DegradationResult) -> DegradationResult:
    if not isinstance(result, DegradationResult):
        raise TypeError(f"result must be a DegradationResult, got {type(result).__name__}")
    return result


def degradation_figure(result: DegradationResult, *, figsize: tuple[float, float] = (8.0, 3.3)) -> Figure:
    """Final training loss (log scale) and test accuracy against depth, one marker per seed.

    The line joins the medians over seeds; every seed is drawn as a marker, slightly shifted
    sideways per kind so that the kinds do not hide each other.
    """
    result = _check_result(result)
    figsize = _validate.float_pair("figsize", figsize, positive=True)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=figsize)
    depths = result.depths
    shift = {k: (i - (len(result.kinds) - 1) / 2) * 0.04 for i, k in enumerate(result.kinds)}
    for kind in result.kinds:
        c = kind_color(kind)
        xs = [d * math.exp(shift[kind]) for d in depths]
        table = result.final_table(kind)
        log_line(ax_loss, xs, result.median(kind).tolist(), label=f"{kind} (median)", color=c, marker="o", markersize=4)
        acc = torch.stack([result.test_accuracy[(kind, d)] for d in depths])
        ax_acc.plot(xs, acc.median(dim=1).values.tolist(), color=c, marker="o", markersize=4, label=f"{kind} (median)")
        for s in range(table.shape[1]):
            label = "each seed" if (kind == result.kinds[0] and s == 0) else None
            ax_loss.scatter(xs, table[:, s].tolist(), s=14, facecolors="none", edgecolors=c, linewidths=0.9, label=label, zorder=3)
            ax_acc.scatter(xs, acc[:, s].tolist(), s=14, facecolors="none", edgecolors=c, linewidths=0.9, zorder=3)
    steps = result.config.get("steps", "?")
    for ax in (ax_loss, ax_acc):
        ax.set_xscale("log")
        ax.set_xticks(depths)
        ax.set_xticklabels([str(d) for d in depths])
        ax.minorticks_off()
        ax.set_xlabel("depth (weight layers)")
    ax_loss.axhline(math.log(10), color="grey", lw=0.8, ls=":", label="chance, ln 10")
    ax_loss.set_ylabel(f"training loss after {steps} steps")
    ax_loss.set_title("Final training loss")
    ax_loss.legend(loc="lower left")
    ax_acc.set_ylim(0, 1)
    ax_acc.axhline(0.1, color="grey", lw=0.8, ls=":", label="chance, 0.1")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("Accuracy on held-out digits")
    ax_acc.legend(loc="lower left")
    return fig


def curves_figure(
    result: DegradationResult,
    depth: int,
    *,
    highlight: str | None = None,
    ax: Axes | None = None,
    ylim: tuple[float, float] | None = None,
    figsize: tuple[float, float] = (5.5, 3.2),
) -> Figure:
    """Training-loss curves of every seed of every kind at one depth of a :func:`degradation_sweep`.

    With ``highlight`` set to a kind, that kind is drawn thick and the others thin and light
    (the frames of the chapter's explorer); with ``highlight=None`` all kinds are drawn alike.
    """
    result = _check_result(result)
    depth = _validate.positive_int("depth", depth)
    for kind in result.kinds:
        result._key(kind, depth)
    if highlight is not None:
        _validate.choice("highlight", highlight, result.kinds)
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    if ylim is not None:
        ylim = _validate.float_pair("ylim", ylim, positive=True, increasing=True)
    figsize = _validate.float_pair("figsize", figsize, positive=True)
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    order = [k for k in result.kinds if k != highlight] + ([highlight] if highlight else [])
    for kind in order:
        faint = highlight is not None and kind != highlight
        curves = result.curves[(kind, depth)]
        steps = torch.arange(curves.shape[1]).tolist()
        label = f"{kind}-{depth}" + (" (for comparison)" if faint else f", seeds {', '.join(map(str, result.seeds))}")
        style = dict(lw=0.8, alpha=0.35) if faint else dict(lw=1.5)
        for s, row in enumerate(curves):
            log_line(ax, steps, row.tolist(), color=kind_color(kind), label=label if s == 0 else None, **style)
    ax.axhline(math.log(10), color="grey", lw=0.8, ls=":", label="chance, ln 10")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("training step (full batch)")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title(f"{highlight} nets, depth {depth}" if highlight else f"depth {depth}")
    ax.legend(loc="lower left")
    return fig


def race_figure(results: Sequence[RaceResult], *, figsize: tuple[float, float] = (8.0, 3.2)) -> Figure:
    """Training curves of the plain and residual parametrisations, one panel per :class:`RaceResult`.

    Each panel marks the loss of the identity map and the threshold of :meth:`RaceResult.steps_to`.
    """
    if isinstance(results, RaceResult):
        results = [results]
    if isinstance(results, (str, bytes)) or not isinstance(results, Sequence):
        raise TypeError(f"results must be a RaceResult or a non-empty sequence of RaceResult, got {type(results).__name__}")
    if not results:
        raise ValueError("results must be a RaceResult or a non-empty sequence of RaceResult, got an empty sequence")
    for i, r in enumerate(results):
        if not isinstance(r, RaceResult):
            raise TypeError(f"results[{i}] must be a RaceResult, got {type(r).__name__}")
    figsize = _validate.float_pair("figsize", figsize, positive=True)
    fig, axes = plt.subplots(1, len(results), figsize=figsize, squeeze=False)
    for ax, res in zip(axes[0], results):
        for kind, curves in res.curves.items():
            steps = torch.arange(curves.shape[1]).tolist()
            for s, row in enumerate(curves):
                log_line(ax, steps, row.tolist(), color=kind_color(kind), lw=1.2, label=f"{kind}: $F(x)$" if kind == "plain" and s == 0 else (f"{kind}: $x + F(x)$" if s == 0 else None))
        ax.axhline(res.identity_loss, color="grey", lw=0.9, ls="--", label="identity map $x$")
        ax.axhline(res.threshold, color="black", lw=0.9, ls=":", label="threshold")
        ax.set_xlabel("training step")
        ax.set_ylabel("training MSE")
        ax.set_title(f"target $x + {res.eps:g}\\,g(x)$")
        ax.legend(loc="upper right")
    return fig
