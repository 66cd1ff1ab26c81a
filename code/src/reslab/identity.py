"""Chapter 1, *Depth compounds: the identity paradox*: the experiments and their figures.

Four experiments, each a function the chapter calls and the tests pin down:

* :func:`near_one_product` and :func:`near_one_figure`: a per-layer factor :math:`1+\\varepsilon`
  compounds to :math:`(1+\\varepsilon)^L \\approx e^{\\varepsilon L}`.
* :func:`jacobian_lognorm_samples`, :func:`lognorm_moments` and
  :func:`jacobian_histogram_figure`: products of random He-initialised ReLU Jacobians, whose
  log-norm spreads out like :math:`\\sqrt{L}` even though every factor has gain one in
  expectation.
* :func:`depth_sweep` (with :func:`build_net`, :func:`identity_data`,
  :func:`best_constant_loss`, :func:`zero_init_losses`) and :func:`depth_sweep_figure`: plain
  and residual MLPs trained to reproduce their input, over depths and seeds.
* :func:`target_comparison` (with :func:`random_orthogonal`) and :func:`target_figure`: a deep
  plain net learning the identity versus a random orthogonal map.
* :func:`gradient_norm_grid` and :func:`gradient_frame`: per-layer gradient norms of a plain
  stack over a grid of depths and per-layer gains, the frames of the chapter's explorer.

The two families compared (see :func:`build_net`):

``"plain"``
    :func:`reslab.nets.mlp_stack` of :class:`~reslab.blocks.PlainBlock` with two layers per
    block, He initialisation: :math:`x_{l+1} = \\phi(W_{l,2}\\,\\phi(W_{l,1}x_l + b_{l,1}) + b_{l,2})`.
``"residual"``
    the same two-layer branches in pre-activation residual blocks with branch scale
    :math:`\\alpha = 1/\\sqrt{L}`, He initialisation:
    :math:`x_{l+1} = x_l + \\alpha\\,(W_{l,2}\\,\\phi(W_{l,1}\\phi(x_l) + b_{l,1}) + b_{l,2})`.
``"residual_unscaled"``
    the same with :math:`\\alpha = 1` (kept to show why the scale is there: with He weights the
    forward signal of an unscaled stack grows with every block, see chapter 3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F_

from . import _validate, nets, plots, probes, train
from .blocks import init_linear

__all__ = [
    "DEPTHS",
    "FAMILIES",
    "TARGETS",
    "near_one_product",
    "near_one_figure",
    "lognorm_moments",
    "jacobian_lognorm_samples",
    "jacobian_histogram_figure",
    "identity_data",
    "best_constant_loss",
    "random_orthogonal",
    "build_net",
    "initial_loss",
    "zero_init_losses",
    "DepthSweep",
    "depth_sweep",
    "depth_sweep_figure",
    "TargetComparison",
    "target_comparison",
    "target_figure",
    "gradient_norm_grid",
    "gradient_frame",
]

#: The depths (number of blocks) of the chapter's main experiment.
DEPTHS = (1, 4, 16, 32)
#: The network families :func:`build_net` can build.
FAMILIES = ("plain", "residual", "residual_unscaled")
#: The targets of :func:`target_comparison`.
TARGETS = ("identity", "orthogonal")

_FAMILY_COLORS = {"plain": plots.KIND_COLORS["plain"], "residual": plots.KIND_COLORS["residual"], "residual_unscaled": plots.PALETTE["sky"]}
_FAMILY_LABELS = {"plain": "plain", "residual": r"residual ($\alpha = 1/\sqrt{L}$)", "residual_unscaled": r"residual ($\alpha = 1$)"}


# ---------------------------------------------------------------------------------------------
# 1.1 Products of near-one factors
# ---------------------------------------------------------------------------------------------


def near_one_product(eps: float, depth: int) -> tuple[float, float]:
    """The product of ``depth`` equal factors :math:`1+\\varepsilon`, and its exponential estimate.

    Args:
        eps: per-factor deviation :math:`\\varepsilon` (finite, ``> -1``).
        depth: number of factors :math:`L` (``>= 1``).

    Returns:
        ``((1 + eps) ** depth, exp(eps * depth))``. The estimate is the first-order form of
        :math:`(1+\\varepsilon)^L = e^{L \\ln(1+\\varepsilon)}`, since
        :math:`\\ln(1+\\varepsilon) = \\varepsilon - \\varepsilon^2/2 + \\dots`.

    >>> [round(v, 1) for v in near_one_product(0.05, 100)]
    [131.5, 148.4]
    """
    eps = _validate.finite_float("eps", eps)
    if eps <= -1.0:
        raise ValueError(f"eps must be a finite number > -1, got {eps}")
    depth = _validate.positive_int("depth", depth)
    return (1.0 + eps) ** depth, math.exp(eps * depth)


def near_one_figure(eps_values: Sequence[float] = (-0.05, -0.01, 0.01, 0.05), max_depth: int = 200) -> Figure:
    """:math:`(1+\\varepsilon)^L` against :math:`L` for several :math:`\\varepsilon` (solid), with :math:`e^{\\varepsilon L}` (dashed)."""
    eps_values = _validate.float_sequence("eps_values", eps_values)
    for i, e in enumerate(eps_values):
        if e <= -1.0:
            raise ValueError(f"eps_values[{i}] must be a finite number > -1, got {e}")
    max_depth = _validate.positive_int("max_depth", max_depth, minimum=2)
    depths = np.arange(0, max_depth + 1)
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for i, eps in enumerate(eps_values):
        c = plots.color(i)
        ax.plot(depths, (1.0 + eps) ** depths, color=c, label=f"$(1{eps:+g})^L$")
        ax.plot(depths, np.exp(eps * depths), color=c, linestyle="--", linewidth=1)
    ax.plot([], [], color="grey", linestyle="--", linewidth=1, label=r"$e^{\varepsilon L}$")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("depth $L$ (number of factors)")
    ax.set_ylabel("product of $L$ factors")
    ax.set_title(r"Per-layer factors $1+\varepsilon$ compound over depth")
    ax.legend(ncol=2, loc="upper left")
    return fig


def lognorm_moments(depth: int, width: int) -> tuple[float, float]:
    """Predicted mean and standard deviation of :math:`\\ln\\lVert J_{L-1}\\cdots J_0 v\\rVert` for He-initialised ReLU layers.

    A one-layer heuristic, for width :math:`d`: with :math:`W \\sim \\mathcal{N}(0, 2/d)` and a ReLU
    mask (treated as independent of :math:`W v`) that keeps :math:`k \\sim \\mathrm{Binomial}(d, 1/2)`
    coordinates, :math:`\\lVert D W v\\rVert^2` is :math:`(2/d)\\,\\chi^2_k` for a unit vector
    :math:`v`: mean 1 and variance :math:`5/d`. The log of the squared norm therefore has variance
    about :math:`5/d` and mean about :math:`-5/(2d)` per layer, and the :math:`L` layers add up
    independently. For the norm itself (half the log):

    .. math:: \\mathbb{E}\\,\\ln\\lVert J_{L-1}\\cdots J_0 v\\rVert \\approx -\\frac{5L}{4d}, \\qquad
              \\operatorname{sd} \\approx \\sqrt{\\frac{5L}{4d}}.

    Args:
        depth: number of layers :math:`L` (``>= 1``).
        width: layer width :math:`d` (``>= 1``).

    Returns:
        ``(mean, std)``.
    """
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    ratio = 5.0 * depth / (4.0 * width)
    return -ratio, math.sqrt(ratio)


def jacobian_lognorm_samples(depths: Sequence[int] = (10, 50, 200), width: int = 64, draws: int = 100, seed: int = 0) -> dict[int, torch.Tensor]:
    """Draws of :math:`\\ln\\lVert J_{L-1}\\cdots J_0 v\\rVert` for each depth, by :func:`reslab.probes.random_jacobian_lognorms`.

    Depth number ``i`` in ``depths`` uses seed ``seed + i``, so the depths are independent draws.

    Returns:
        ``{depth: float64 tensor of shape (draws,)}``.
    """
    depths = _validate.int_sequence("depths", depths)
    width = _validate.positive_int("width", width)
    draws = _validate.positive_int("draws", draws, minimum=2)
    seed = _validate.positive_int("seed", seed, minimum=0)
    return {L: probes.random_jacobian_lognorms(L, width, draws, seed=seed + i) for i, L in enumerate(depths)}


def jacobian_histogram_figure(samples: Mapping[int, torch.Tensor], width: int, bins: int = 40) -> Figure:
    """Histograms of the log-norm draws of :func:`jacobian_lognorm_samples`, one per depth.

    Each histogram is overlaid with the Gaussian of :func:`lognorm_moments` (dashed). The
    vertical line at 0 is where every draw would sit if the factors had gain exactly one.
    """
    if not isinstance(samples, Mapping):
        raise TypeError(f"samples must be a mapping of depth -> tensor of log-norms, got {type(samples).__name__}")
    if not samples:
        raise ValueError("samples must be a non-empty mapping of depth -> tensor of log-norms, got an empty mapping")
    width = _validate.positive_int("width", width)
    bins = _validate.positive_int("bins", bins, minimum=2)
    arrays = {}
    for depth, values in samples.items():
        depth = _validate.positive_int("samples key", depth)
        arrays[depth] = _validate.tensor(f"samples[{depth}]", values, ndim=1).detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    lo = min(float(v.min()) for v in arrays.values())
    hi = max(float(v.max()) for v in arrays.values())
    edges = np.linspace(lo, hi, bins + 1)  # one set of bins for every depth, so widths compare
    grid = np.linspace(lo - 0.5, hi + 0.5, 300)
    for i, (depth, values) in enumerate(arrays.items()):
        c = plots.color(i)
        mean, sd = lognorm_moments(depth, width)
        ax.hist(values, bins=edges, density=True, histtype="stepfilled", alpha=0.25, color=c)
        ax.hist(values, bins=edges, density=True, histtype="step", color=c, label=f"$L = {depth}$: sd {values.std(ddof=1):.2f}")
        ax.plot(grid, np.exp(-0.5 * ((grid - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), color=c, linestyle="--", linewidth=1)
    ax.plot([], [], color="grey", linestyle="--", linewidth=1, label=r"Gaussian, sd $\sqrt{5L/4d}$")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(r"$\ln \Vert J_{L-1} \cdots J_0 v \Vert$")
    ax.set_ylabel("density")
    ax.set_title(f"Random He-initialised ReLU layers, width {width}")
    ax.legend(loc="upper left")
    return fig


# ---------------------------------------------------------------------------------------------
# Data, baselines and networks
# ---------------------------------------------------------------------------------------------


def identity_data(n: int = 128, width: int = 16, seed: int = 123) -> torch.Tensor:
    """``n`` inputs in :math:`\\mathbb{R}^{\\text{width}}` with non-negative entries: :math:`x = |g|`, :math:`g \\sim \\mathcal{N}(0, I)`.

    Non-negative inputs make the identity *exactly representable* by a plain ReLU stack
    (:math:`W = I`, :math:`b = 0` in every layer, since :math:`\\mathrm{ReLU}(x) = x` for
    :math:`x \\ge 0`), so a plain net that fails to learn it fails at optimisation, not at
    expressing the answer. Every entry has second moment 1. Returns float32, shape ``(n, width)``.
    """
    n = _validate.positive_int("n", n, minimum=2)
    width = _validate.positive_int("width", width)
    seed = _validate.positive_int("seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=gen).abs()


def best_constant_loss(targets: torch.Tensor) -> float:
    """The mean squared error of the best *constant* prediction (the column means) of ``targets``.

    A network whose loss sits at this level has learned the average output and nothing about
    how the output depends on the input. It equals the total variance divided by the width,
    which an orthogonal map :math:`y = Q x` leaves unchanged.
    """
    targets = _validate.tensor("targets", targets, ndim=2)
    if targets.shape[0] < 2:
        raise ValueError(f"targets must have at least 2 rows, got shape {tuple(targets.shape)}")
    t = targets.detach().double()
    return float(((t - t.mean(dim=0)) ** 2).mean())


def random_orthogonal(width: int, seed: int = 7) -> torch.Tensor:
    """A random orthogonal matrix drawn uniformly (Haar measure): QR of a Gaussian matrix with the signs fixed.

    Returns float32, shape ``(width, width)``, with :math:`Q Q^\\top = I`.
    """
    width = _validate.positive_int("width", width)
    seed = _validate.positive_int("seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(width, width, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0
    return (q * signs).to(torch.float32)


def build_net(family: str, depth: int, width: int, *, readout: bool = False) -> nn.Module:
    """A He-initialised MLP of ``depth`` two-layer blocks of width ``width``.

    Args:
        family: ``"plain"``, ``"residual"`` (pre-activation, branch scale :math:`1/\\sqrt{L}`)
            or ``"residual_unscaled"`` (branch scale 1); see the module docstring.
        depth: number of blocks :math:`L` (``>= 1``); the net has :math:`2L` weight layers.
        width: width of every layer (``>= 1``).
        readout: append a He-initialised linear layer (no activation), so that the net can
            output negative values.

    Returns:
        the :class:`reslab.nets.Stack`, or ``nn.Sequential(stack, readout)``.
    """
    family = _validate.choice("family", family, FAMILIES)
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    if not isinstance(readout, bool):
        raise TypeError(f"readout must be a bool, got {type(readout).__name__}")
    if family == "plain":
        stack = nets.mlp_stack("plain", depth, width, layers=2, init="he")
    else:
        alpha = depth ** -0.5 if family == "residual" else 1.0
        stack = nets.mlp_stack("scaled", depth, width, layers=2, init="he", alpha=alpha)
    if not readout:
        return stack
    return nn.Sequential(stack, init_linear(nn.Linear(width, width), "he"))


def initial_loss(family: str, depth: int, x: torch.Tensor, seed: int = 0) -> float:
    """Mean squared error of ``build_net(family, depth, width)`` against the target ``x`` at initialisation.

    The net is built with the global generator seeded to ``seed`` (as :func:`depth_sweep`
    seeds it), so this is the step-0 loss of that seed.
    """
    family = _validate.choice("family", family, FAMILIES)
    depth = _validate.positive_int("depth", depth)
    x = _validate.tensor("x", x, ndim=2)
    seed = _validate.positive_int("seed", seed, minimum=0)
    torch.manual_seed(seed)
    model = build_net(family, depth, x.shape[1])
    with torch.no_grad():
        return float(F_.mse_loss(model(x), x))


def zero_init_losses(depth: int, x: torch.Tensor, *, steps: int = 20, lr: float = 1e-2, seed: int = 0) -> torch.Tensor:
    """Train a zero-initialised pre-activation residual stack to reproduce ``x``; return its losses.

    Every block is :math:`x + W_2\\,\\phi(W_1\\phi(x) + b_1) + b_2` with :math:`W_2 = 0`,
    :math:`b_2 = 0` (He weights elsewhere), so the stack is exactly the identity for every input:
    the loss is exactly ``0.0`` at step 0, every gradient is exactly zero, and Adam leaves the
    weights where they are.

    Returns:
        the losses before each step and after the last, shape ``(steps + 1,)``.
    """
    depth = _validate.positive_int("depth", depth)
    x = _validate.tensor("x", x, ndim=2)
    steps = _validate.positive_int("steps", steps, minimum=0)
    lr = _validate.finite_float("lr", lr, positive=True)
    seed = _validate.positive_int("seed", seed, minimum=0)
    torch.manual_seed(seed)
    model = nets.mlp_stack("preact", depth, x.shape[1], layers=2, init="he", zero_init=True)
    return train.train(model, x, x, steps=steps, lr=lr).losses[0]


# ---------------------------------------------------------------------------------------------
# 1.2 The paradox: plain vs residual over depth
# ---------------------------------------------------------------------------------------------


@dataclass
class DepthSweep:
    """Result of :func:`depth_sweep`.

    Attributes:
        depths: the depths, in order.
        seeds: the seeds, in order.
        losses: ``{family: tensor of shape (len(depths), len(seeds), steps + 1)}``.
        baseline: :func:`best_constant_loss` of the data.
    """

    depths: list[int]
    seeds: list[int]
    losses: dict[str, torch.Tensor]
    baseline: float

    def final(self, family: str) -> torch.Tensor:
        """Final training loss, shape ``(len(depths), len(seeds))``."""
        family = _validate.choice("family", family, self.losses)
        return self.losses[family][:, :, -1]

    def median(self, family: str) -> list[float]:
        """Median over seeds of the final loss, one value per depth."""
        return [float(v) for v in self.final(family).median(dim=1).values]

    def stalled(self, family: str, fraction: float = 0.9) -> list[bool]:
        """Per depth: did *every* seed end with a loss ``>= fraction * baseline``?

        Such a net has learned (almost) nothing beyond the average output.
        """
        fraction = _validate.finite_float("fraction", fraction, positive=True)
        return [bool((row >= fraction * self.baseline).all()) for row in self.final(family)]


def depth_sweep(
    depths: Sequence[int] = DEPTHS,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    families: Sequence[str] = ("plain", "residual"),
    width: int = 16,
    n: int = 128,
    steps: int = 150,
    lr: float = 1e-2,
    data_seed: int = 123,
) -> DepthSweep:
    """Train every family at every depth to reproduce its input (MSE, full-batch Adam).

    For each (family, depth) the seeds are trained at once by :func:`reslab.train.train_seeds`.
    The data are :func:`identity_data` with ``data_seed``; the target is the input itself.

    Args:
        depths: numbers of blocks (each ``>= 1``).
        seeds: initialisation seeds (``>= 0``), at least one.
        families: names from :data:`FAMILIES`, at least one.
        width, n: width of the nets and number of examples.
        steps, lr: Adam steps (``>= 1``) and learning rate (``> 0``).
        data_seed: seed of the inputs.
    """
    depths = _validate.int_sequence("depths", depths)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    families = _validate.choices("families", families, FAMILIES)
    width = _validate.positive_int("width", width)
    n = _validate.positive_int("n", n, minimum=2)
    steps = _validate.positive_int("steps", steps)
    lr = _validate.finite_float("lr", lr, positive=True)
    data_seed = _validate.positive_int("data_seed", data_seed, minimum=0)
    x = identity_data(n, width, data_seed)
    losses = {}
    for family in families:
        rows = []
        for depth in depths:
            result = train.train_seeds(lambda s, d=depth: build_net(family, d, width), seeds, x, x, steps=steps, lr=lr)
            rows.append(result.losses)
        losses[family] = torch.stack(rows)
    return DepthSweep(depths, seeds, losses, best_constant_loss(x))


def depth_sweep_figure(sweep: DepthSweep) -> Figure:
    """Two panels: final loss against depth (every seed, line through the median), and the training curves at the largest depth."""
    if not isinstance(sweep, DepthSweep):
        raise TypeError(f"sweep must be a DepthSweep, got {type(sweep).__name__}")
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(8.6, 3.4))
    for family in sweep.losses:
        c = _FAMILY_COLORS[family]
        final = sweep.final(family).numpy()
        plots.log_line(ax0, sweep.depths, sweep.median(family), label=f"{_FAMILY_LABELS[family]}, median", color=c, marker="o")
        for j in range(final.shape[1]):
            pos = final[:, j] > 0
            ax0.scatter(np.asarray(sweep.depths)[pos], final[pos, j], color=c, s=14, alpha=0.6, marker="x", label="seeds" if j == 0 and family == "plain" else None)
        curves = sweep.losses[family][-1].numpy()
        for j in range(curves.shape[0]):
            ax1.plot(np.arange(curves.shape[1]), curves[j], color=c, linewidth=1, alpha=0.9, label=_FAMILY_LABELS[family] if j == 0 else None)
    for ax in (ax0, ax1):
        ax.axhline(sweep.baseline, color="black", linestyle=":", linewidth=1, label="best constant output")
    ax0.set_xscale("log", base=2)
    ax0.set_xticks(sweep.depths, [str(d) for d in sweep.depths])
    ax0.set_xlabel("depth $L$ (blocks of two layers)")
    ax0.set_ylabel("final training loss (MSE)")
    ax0.set_title(f"Learning the identity: loss after {sweep.losses[next(iter(sweep.losses))].shape[-1] - 1} steps")
    ax0.legend(loc="best", fontsize=7)
    ax1.set_yscale("log")
    ax1.set_xlabel("Adam step")
    ax1.set_ylabel("training loss (MSE)")
    ax1.set_title(f"Training curves at depth {sweep.depths[-1]}, {len(sweep.seeds)} seeds")
    ax1.legend(loc="best", fontsize=7)
    return fig


# ---------------------------------------------------------------------------------------------
# 1.3 Doing nothing is as hard as doing something
# ---------------------------------------------------------------------------------------------


@dataclass
class TargetComparison:
    """Result of :func:`target_comparison`.

    Attributes:
        depth: number of blocks of the plain net.
        seeds: the seeds.
        losses: ``{"identity": (S, steps + 1), "orthogonal": (S, steps + 1)}``.
        baselines: :func:`best_constant_loss` of each target (equal up to rounding).
    """

    depth: int
    seeds: list[int]
    losses: dict[str, torch.Tensor]
    baselines: dict[str, float]

    def final(self, target: str) -> torch.Tensor:
        """Final loss per seed for ``target`` (``"identity"`` or ``"orthogonal"``)."""
        target = _validate.choice("target", target, self.losses)
        return self.losses[target][:, -1]

    def ratio(self) -> float:
        """Median final loss on the orthogonal target divided by the median on the identity."""
        return float(self.final("orthogonal").median() / self.final("identity").median())


def target_comparison(
    depth: int = 16,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    width: int = 16,
    n: int = 128,
    steps: int = 150,
    lr: float = 1e-2,
    data_seed: int = 123,
    q_seed: int = 7,
) -> TargetComparison:
    """Train a deep plain net with a linear readout on :math:`y = x` and on :math:`y = Qx`.

    :math:`Q` is :func:`random_orthogonal`. The readout lets the net output the negative
    entries of :math:`Qx`; both targets are exactly representable (hidden layers :math:`W = I`,
    readout :math:`I` or :math:`Q`), have the same squared norm per example and the same
    best-constant loss, so the comparison isolates how the optimiser treats "do nothing"
    versus "do something".
    """
    depth = _validate.positive_int("depth", depth)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    width = _validate.positive_int("width", width)
    n = _validate.positive_int("n", n, minimum=2)
    steps = _validate.positive_int("steps", steps)
    lr = _validate.finite_float("lr", lr, positive=True)
    data_seed = _validate.positive_int("data_seed", data_seed, minimum=0)
    q_seed = _validate.positive_int("q_seed", q_seed, minimum=0)
    x = identity_data(n, width, data_seed)
    targets = {"identity": x, "orthogonal": x @ random_orthogonal(width, q_seed).T}
    losses, baselines = {}, {}
    for name, y in targets.items():
        result = train.train_seeds(lambda s: build_net("plain", depth, width, readout=True), seeds, x, y, steps=steps, lr=lr)
        losses[name] = result.losses
        baselines[name] = best_constant_loss(y)
    return TargetComparison(depth, seeds, losses, baselines)


def target_figure(comparison: TargetComparison) -> Figure:
    """Training curves of the deep plain net on both targets, every seed, with the best-constant level."""
    if not isinstance(comparison, TargetComparison):
        raise TypeError(f"comparison must be a TargetComparison, got {type(comparison).__name__}")
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    styles = {"identity": (plots.PALETTE["vermillion"], "-"), "orthogonal": (plots.PALETTE["purple"], "--")}
    for name, curves in comparison.losses.items():
        c, ls = styles[name]
        label = "target $y = x$ (identity)" if name == "identity" else "target $y = Qx$ (random orthogonal)"
        for j in range(curves.shape[0]):
            ax.plot(np.arange(curves.shape[1]), curves[j].numpy(), color=c, linestyle=ls, linewidth=1.2, label=label if j == 0 else None)
    ax.axhline(comparison.baselines["identity"], color="black", linestyle=":", linewidth=1, label="best constant output")
    ax.set_yscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("training loss (MSE)")
    ax.set_title(f"Plain net, {comparison.depth} blocks + linear readout, {len(comparison.seeds)} seeds")
    ax.legend(loc="best")
    return fig


# ---------------------------------------------------------------------------------------------
# Explorer: per-layer gradient norms over depth x gain
# ---------------------------------------------------------------------------------------------


def gradient_norm_grid(
    depths: Sequence[int] = (10, 30, 100),
    gains: Sequence[float] = (0.9, 0.95, 1.0, 1.05, 1.1),
    *,
    width: int = 64,
    batch: int = 32,
    seeds: Sequence[int] = (0, 1, 2),
) -> dict[tuple[int, float], list[list[float]]]:
    """Per-layer gradient norms :math:`\\lVert\\delta_l\\rVert` of plain ReLU stacks over a grid of depths and gains.

    Each stack is ``mlp_stack("plain", depth, width, layers=1, init="he", gain=gain)``: one
    ReLU layer per block, He weights multiplied by ``gain``, zero biases. It runs on a fixed
    standard normal batch and :func:`reslab.probes.layer_norms` records every
    :math:`\\lVert\\delta_l\\rVert` from one backward pass started at a seeded normal
    :math:`\\delta_L`. Because the ReLU is positively homogeneous and the biases are zero,
    the gain multiplies :math:`\\lVert\\delta_0\\rVert/\\lVert\\delta_L\\rVert` by exactly
    ``gain ** depth`` relative to ``gain = 1`` with the same seed.

    Returns:
        ``{(depth, gain): [gradient norms for l = 0..depth, one list per seed]}``.
    """
    depths = _validate.int_sequence("depths", depths)
    gains = _validate.float_sequence("gains", gains, positive=True)
    width = _validate.positive_int("width", width)
    batch = _validate.positive_int("batch", batch)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(1234))
    grid: dict[tuple[int, float], list[list[float]]] = {}
    for depth in depths:
        for gain in gains:
            rows = []
            for seed in seeds:
                torch.manual_seed(seed)
                stack = nets.mlp_stack("plain", depth, width, layers=1, init="he", gain=gain)
                rows.append(probes.layer_norms(stack, x, seed=seed).gradients)
            grid[(depth, gain)] = rows
    return grid


def gradient_frame(grid: Mapping[tuple[int, float], list[list[float]]], depth: int, gain: float, ylim: tuple[float, float] | None = None) -> Figure:
    """One explorer frame: :math:`\\lVert\\delta_l\\rVert / \\lVert\\delta_L\\rVert` per layer for every seed, with :math:`g^{L-l}` dashed.

    Args:
        grid: the output of :func:`gradient_norm_grid`.
        depth, gain: a point of the grid.
        ylim: y-range; by default the whole grid's range of ratios and of :math:`g^{L-l}`,
            widened to whole decades, so that every frame of one explorer shares its axes.
    """
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be the mapping returned by gradient_norm_grid, got {type(grid).__name__}")
    depth = _validate.positive_int("depth", depth)
    gain = _validate.finite_float("gain", gain, positive=True)
    if ylim is not None:
        ylim = _validate.float_pair("ylim", ylim, positive=True, increasing=True)
    if (depth, gain) not in grid:
        raise ValueError(f"(depth, gain) = ({depth!r}, {gain!r}) is not a point of the grid; points are {sorted(grid)}")
    rows = grid[(depth, gain)]
    if ylim is None:
        ylim = _grid_ylim(grid)
    series = {f"seed {j}": [g / row[-1] for g in row] for j, row in enumerate(rows)}
    fig, ax = plt.subplots(figsize=(5.6, 3.3))
    plots.layer_norm_figure(series, title="", ylabel=r"$\Vert\delta_l\Vert \,/\, \Vert\delta_L\Vert$", ax=ax, ylim=ylim)
    layers = np.arange(depth + 1)
    ax.plot(layers, float(gain) ** (depth - layers), color="black", linestyle="--", linewidth=1, label=r"$g^{L-l}$")
    ratio = float(np.median([row[0] / row[-1] for row in rows]))
    ax.set_title(f"Plain ReLU stack, $L$ = {depth}, per-layer gain $g$ = {gain:g}\n"
                 f"median $\\Vert\\delta_0\\Vert/\\Vert\\delta_L\\Vert$ = {ratio:.2g}, $g^L$ = {float(gain) ** depth:.2g}", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    return fig


def _grid_ylim(grid: Mapping[tuple[int, float], list[list[float]]]) -> tuple[float, float]:
    """Whole-decade y-range covering every finite positive ratio and every :math:`g^{L-l}` of ``grid``."""
    values = [1.0]
    for (depth, gain), rows in grid.items():
        values.append(float(gain) ** depth)
        values += [g / row[-1] for row in rows for g in row if row[-1] > 0]
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    return 10.0 ** math.floor(math.log10(arr.min())), 10.0 ** math.ceil(math.log10(arr.max()))
