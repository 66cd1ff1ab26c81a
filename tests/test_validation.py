"""Every public function and class of reslab checks its arguments up front (issue 7, item 3).

``TABLE`` holds one entry per public callable (every callable named in a module's ``__all__``
and defined there): a VALID call, as keyword arguments, and for each parameter the kind of value
it accepts. The bad calls are derived from the valid call by replacing ONE argument at a time
with a value of the wrong type (``TypeError``) or outside the accepted range (``ValueError``).
Each bad call must

* raise that exception type, with a message that names the argument as a whole,
  case-sensitive word and starts with it (``depth must be an integer >= 1, got 0``), so that a
  message whose argument name is mangled (``XXdepthXX``, ``DEPTH``) fails even where the name
  recurs later in it. Only a value that breaks a relation between arguments (``Rel``, e.g.
  ``n_heads`` not dividing ``d_model``) may be named later in the message. Where the accepted
  values are part of the check, the message must state them (``>= 1``, the option list,
  ``finite``, ...);
* fail fast: before any backward pass or optimiser step, within 0.5 s of CPU time, and without
  leaving a figure open.

Meta-tests keep the table complete: every public callable has an entry (or a reasoned
exemption below), every parameter of an entry's callable has bad values or a stated reason, and
every valid call really succeeds (so each bad call differs from a good one in one argument only).
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import reslab  # noqa: E402
from reslab import blocks, conv, data, identity, nets, paths, plots, probes, recurrent, reframing, repro, sequences, train, widgets  # noqa: E402

NAN, INF = float("nan"), float("inf")

# ---------------------------------------------------------------------------------------------
# Bad values by kind of parameter
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad value: the exception it must raise and a text the message must contain (or None)."""

    value: object
    error: type[Exception]
    accepts: str | None = None
    label: str | None = None
    leads: bool = True  # the message starts with the argument's name ("depth must be ...", "depths[0] must be ...")


def Int(minimum: int = 1) -> list[Bad]:
    """An integer >= minimum (a bool is not an integer here)."""
    want = f">= {minimum}"
    below = {minimum - 1, -1} if minimum > 0 else {minimum - 1}
    return [Bad("3", TypeError, want), Bad(True, TypeError, want), Bad(2.5, TypeError, want)] + [Bad(v, ValueError, want) for v in sorted(below)]


def Real(*, positive: bool = False, minimum: float | None = None) -> list[Bad]:
    """A finite real number, optionally > 0 or >= minimum."""
    out = [Bad(NAN, ValueError, "finite"), Bad(INF, ValueError, "finite"), Bad("0.5", TypeError, "finite"), Bad(True, TypeError, "finite")]
    if positive:
        out += [Bad(0.0, ValueError, "> 0"), Bad(-1.0, ValueError, "> 0")]
    if minimum is not None:
        out.append(Bad(minimum - 1.0, ValueError, f">= {minimum}"))
    return out


def Name(options) -> list[Bad]:
    """One name out of ``options``; the message lists them."""
    listed = str(tuple(options))
    return [Bad("nope", ValueError, listed), Bad(3, TypeError, listed)]


def Flag() -> list[Bad]:
    """A bool (True or False)."""
    return [Bad("yes", TypeError, "bool"), Bad(1, TypeError, "bool")]


def Ints(minimum: int = 1) -> list[Bad]:
    """A non-empty sequence of integers >= minimum."""
    want = f">= {minimum}"
    return [Bad("12", TypeError, want), Bad(5, TypeError, want), Bad([], ValueError, "non-empty"), Bad([minimum - 1], ValueError, want), Bad([1.5], TypeError, want)]


def Reals(*, positive: bool = False) -> list[Bad]:
    """A non-empty sequence of finite numbers."""
    out = [Bad("0.5", TypeError, "sequence"), Bad([], ValueError, "non-empty"), Bad([NAN], ValueError, "finite"), Bad(["a"], TypeError, "finite")]
    return out + ([Bad([0.0], ValueError, "> 0")] if positive else [])


def Names(options) -> list[Bad]:
    """A non-empty sequence of names out of ``options``."""
    listed = str(tuple(options))
    return [Bad(next(iter(options)), TypeError, "sequence"), Bad([], ValueError, "non-empty"), Bad(["nope"], ValueError, listed), Bad([3], TypeError, listed)]


def Pair(*, positive: bool = True, increasing: bool = False) -> list[Bad]:
    """A pair of finite numbers (axis limits, a figure size)."""
    out = [Bad("big", TypeError, "pair"), Bad((1.0,), ValueError, "pair"), Bad((1.0, NAN), ValueError, "finite")]
    if positive:
        out.append(Bad((0.0, 1.0), ValueError, "> 0"))
    if increasing:
        out.append(Bad((2.0, 1.0), ValueError, "low < high"))
    return out


def Tensor(*shape_bads: Bad, floating: bool = True) -> list[Bad]:
    """A tensor: a list is a TypeError, an integer tensor too (for float inputs); plus wrong shapes (custom checks)."""
    out = [Bad([[1.0, 2.0]], TypeError, "Tensor")]
    if floating:
        out.append(Bad(torch.ones(2, 4, dtype=torch.int64), TypeError, "floating-point"))
    return out + list(shape_bads)


def Obj(accepts: str = "Module", *others: object) -> list[Bad]:
    """An object of a given class: a string (and each of ``others``) is a TypeError."""
    return [Bad(v, TypeError, accepts) for v in ("thing", *others)]


def Str() -> list[Bad]:
    """A str (a title, a label, a CSS width)."""
    return [Bad(3, TypeError, "str")]


def Fn() -> list[Bad]:
    """A callable (a builder, a renderer)."""
    return [Bad("f", TypeError, "callable")]


def Rel(value: object, error: type[Exception], accepts: str) -> Bad:
    """A bad value that breaks a relation between arguments: the message names them all, not necessarily this one first."""
    return Bad(value, error, accepts, leads=False)


def Custom(*bads: Bad) -> list[Bad]:
    """Bad values of a custom check (listed one by one)."""
    return list(bads)


# ---------------------------------------------------------------------------------------------
# Small inputs for the table (built afresh for every call)
# ---------------------------------------------------------------------------------------------


def randn(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _flat_digits() -> data.Digits:
    """A small flat split of random pixels (the real digits are loaded by load_digits' own entry)."""
    return data.Digits(randn(16, 64).abs(), torch.arange(16) % 10, randn(8, 64).abs(), torch.arange(8) % 10)


def _stack(kind: str = "plain", depth: int = 2, width: int = 4) -> nets.Stack:
    torch.manual_seed(0)
    return nets.mlp_stack(kind, depth, width)


def _rl_stack(depth: int = 2) -> nets.Stack:
    return paths.residual_layer_stack(depth, 4, seed=0)


def _ax():
    return plt.subplots()[1]


def _png(**point) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + repr(sorted(point.items())).encode()


def _depth_sweep() -> identity.DepthSweep:
    losses = {f: torch.rand(2, 2, 4, generator=torch.Generator().manual_seed(1)) + 0.1 for f in ("plain", "residual")}
    return identity.DepthSweep([1, 2], [0, 1], losses, 0.5)


def _target_comparison() -> identity.TargetComparison:
    losses = {t: torch.rand(2, 4, generator=torch.Generator().manual_seed(2)) + 0.1 for t in ("identity", "orthogonal")}
    return identity.TargetComparison(2, [0, 1], losses, {"identity": 0.5, "orthogonal": 0.5})


def _degradation() -> reframing.DegradationResult:
    gen = torch.Generator().manual_seed(3)
    keys = [(k, d) for k in ("plain", "residual") for d in (2, 4)]
    curves = {key: torch.rand(2, 4, generator=gen) + 0.1 for key in keys}
    acc = {key: torch.rand(2, generator=gen) for key in keys}
    return reframing.DegradationResult([2, 4], ["plain", "residual"], [0, 1], curves, acc, {"steps": 3})


def _race() -> reframing.RaceResult:
    gen = torch.Generator().manual_seed(4)
    return reframing.RaceResult({k: torch.rand(2, 5, generator=gen) + 0.1 for k in ("plain", "residual")}, 0.2, 0.5, 0.1)


def _grad_curves() -> dict:
    t = torch.linspace(1.0, 0.1, 6, dtype=torch.float64)
    return {"RNN": {"full": t, "direct": None}, "LSTM": {"full": t, "direct": t.sqrt()}}


def _cell(kind: str = "rnn") -> recurrent.RecurrentCell:
    torch.manual_seed(0)
    return recurrent.make_cell(kind, 2, 4)


def _lesion_model() -> paths.BlockClassifier:
    torch.manual_seed(0)
    return paths.block_classifier("residual", 2, 3, in_features=4, classes=3)


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclass
class Entry:
    """A callable, its valid keyword arguments (a factory, so each call gets fresh objects) and its checks."""

    fn: Callable
    valid: Callable[[], dict]
    checks: dict[str, list[Bad]]
    free: dict[str, str] = field(default_factory=dict)  # parameter -> why it has no bad value
    variant: bool = False  # a second entry of one callable: checks a subset of its parameters


def E(fn: Callable, valid: Callable[[], dict], *, free: dict[str, str] | None = None, variant: bool = False, **checks: list[Bad]) -> Entry:
    return Entry(fn, valid, checks, free or {}, variant)


_BLOCK = dict(width=Int(), layers=Int(), activation=Name(blocks.ACTIVATIONS), init=Name(blocks.INITS))
_CONV = dict(channels=Int(), layers=Int(), activation=Name(blocks.ACTIVATIONS), init=Name(blocks.INITS))
_RL_X = Tensor(Bad(randn(3, 5, dtype=torch.float64), ValueError, "last dimension 4"), Bad(randn(3, 4), TypeError, "dtype"))
_RL_DELTA = Tensor(Bad(randn(2, 4, dtype=torch.float64), ValueError, "output's shape"), Bad(randn(3, 4), TypeError, "dtype"))
_RL_STACK = Obj("ResidualLayer", nets.mlp_stack("plain", 2, 4).double()) + Custom(Bad(nn.Sequential(), ValueError, "at least one"))
_DIGITS = Obj("Digits") + Custom(Bad(data.Digits(randn(4, 1, 8, 8), torch.arange(4), randn(2, 1, 8, 8), torch.arange(2)), ValueError, "flat"))
_SEQ_X = Tensor(Bad(randn(2, 3), ValueError, "3 dimensions"), Bad(randn(2, 3, 5), ValueError, "last dimension 2"))
_LOSS_XY = dict(
    inputs=Tensor(Bad(randn(5, 4), ValueError, "same number of examples"), Bad(torch.tensor(1.0), ValueError, "at least one dimension")),
    targets=Tensor(Rel(randn(5, 4), ValueError, "same number of examples"), floating=False),
)

TABLE: dict[str, Entry] = {
    # -- blocks ------------------------------------------------------------------------------
    "blocks.activation_fn": E(blocks.activation_fn, lambda: dict(name="tanh"), name=Name(blocks.ACTIVATIONS)),
    "blocks.init_linear": E(blocks.init_linear, lambda: dict(layer=nn.Linear(3, 2), init="he", gain=1.5),
                            layer=Obj("Linear", nn.Identity()), init=Name(blocks.INITS), gain=Real(positive=True)),
    "blocks.PlainBlock": E(blocks.PlainBlock, lambda: dict(width=4, layers=2, activation="relu", init="he", out_width=4), out_width=Int(), **_BLOCK),
    "blocks.ResidualLayer": E(blocks.ResidualLayer, lambda: dict(width=4, activation="relu", init="he", zero_init=True),
                              width=Int(), activation=Name(blocks.ACTIVATIONS), init=Name(blocks.INITS), zero_init=Flag()),
    "blocks.ResidualBlock": E(blocks.ResidualBlock, lambda: dict(width=4, layers=2, activation="relu", init="he", zero_init=True), zero_init=Flag(), **_BLOCK),
    "blocks.ResidualBlock/out_width": E(blocks.ResidualBlock, lambda: dict(width=4), variant=True, out_width=Custom(Bad(2, ValueError, "ProjectionResidualBlock"))),
    "blocks.PreActResidualBlock": E(blocks.PreActResidualBlock, lambda: dict(width=4, layers=2, activation="relu", init="he", zero_init=True), zero_init=Flag(), **_BLOCK),
    "blocks.PreActResidualBlock/out_width": E(blocks.PreActResidualBlock, lambda: dict(width=4), variant=True, out_width=Custom(Bad(2, ValueError, "ProjectionResidualBlock"))),
    "blocks.ScaledResidualBlock": E(blocks.ScaledResidualBlock, lambda: dict(width=4, alpha=0.5, learnable=True, layers=2, activation="relu", init="he", zero_init=False),
                                    alpha=Real(), learnable=Flag(), zero_init=Flag(), **_BLOCK),
    "blocks.ProjectionResidualBlock": E(blocks.ProjectionResidualBlock, lambda: dict(width=4, out_width=2, shortcut="B", layers=2, activation="relu", init="he", zero_init=False),
                                        out_width=Int(), shortcut=Name(blocks.ProjectionResidualBlock.SHORTCUTS) + Custom(Bad("A", ValueError, "out_width >= width")), zero_init=Flag(), **_BLOCK),
    "blocks.HighwayBlock": E(blocks.HighwayBlock, lambda: dict(width=4, gate_bias=-2.0, activation="relu", init="he"),
                             width=Int(), gate_bias=Real(), activation=Name(blocks.ACTIVATIONS), init=Name(blocks.INITS)),
    "blocks.TransformerBlock": E(blocks.TransformerBlock, lambda: dict(d_model=8, n_heads=2, norm="post", d_ff=16, causal=True, init="default"),
                                 d_model=Int() + Custom(Bad(7, ValueError, "divisible")), n_heads=Int() + Custom(Rel(3, ValueError, "divisible")),
                                 norm=Name(blocks.TransformerBlock.NORMS), d_ff=Int(), causal=Flag(), init=Name(blocks.TransformerBlock.TRANSFORMER_INITS)),
    # -- nets --------------------------------------------------------------------------------
    "nets.mlp_stack": E(nets.mlp_stack, lambda: dict(kind="scaled", depth=2, width=4, layers=1, activation="tanh", init="he", zero_init=True, alpha=0.5, learnable_alpha=True, gain=0.9),
                        kind=Name(nets.KINDS), depth=Int(), width=Int(), layers=Int(), activation=Name(blocks.ACTIVATIONS), init=Name(blocks.INITS),
                        zero_init=Flag(), alpha=Real(), learnable_alpha=Flag(), gain=Real(positive=True)),
    "nets.mlp_stack/plain": E(nets.mlp_stack, lambda: dict(kind="plain", depth=2, width=4), variant=True,
                              zero_init=Custom(Bad(True, ValueError, "residual kinds")), alpha=Custom(Bad(0.5, ValueError, "kind='scaled'")),
                              learnable_alpha=Custom(Bad(True, ValueError, "kind='scaled'"))),
    "nets.Stack": E(nets.Stack, lambda: dict(blocks=[blocks.PlainBlock(4), blocks.PlainBlock(4)], kind="plain", width=4),
                    blocks=Custom(Bad("abc", TypeError, "nn.Module"), Bad([], ValueError, "non-empty"), Bad(["x"], TypeError, "nn.Module"), Bad([blocks.PlainBlock(5)], ValueError, "width 4")),
                    kind=Custom(Bad(3, TypeError, "str"), Bad("", ValueError, "non-empty")), width=Int()),
    # -- probes ------------------------------------------------------------------------------
    "probes.batch_norm_of": E(probes.batch_norm_of, lambda: dict(v=randn(3, 4)), v=Tensor()),
    "probes.layer_norms": E(probes.layer_norms, lambda: dict(model=_stack(), x=randn(3, 4), grad_output=randn(3, 4), seed=1),
                            model=Obj() + Custom(Bad(nn.Sequential(), ValueError, "at least one")),
                            x=Tensor(Bad(randn(3, 2, 4), ValueError, "dimensions"), Bad(randn(3, 5), ValueError, "last dimension 4")),
                            grad_output=Tensor(Bad(randn(2, 4), ValueError, "output's shape")), seed=Int(0)),
    "probes.block_jacobian": E(probes.block_jacobian, lambda: dict(block=blocks.PlainBlock(4), x=randn(4)), block=Obj(),
                               x=Tensor(Bad(randn(2, 4), ValueError, "dimensions"), Bad(randn(5), ValueError, "last dimension 4"))),
    "probes.analytic_jacobian": E(probes.analytic_jacobian, lambda: dict(block=blocks.ResidualLayer(4), x=randn(4)),
                                  block=Obj("ResidualLayer", blocks.PlainBlock(4, layers=2)),
                                  x=Tensor(Bad(randn(2, 4), ValueError, "dimensions"), Bad(randn(5), ValueError, "last dimension 4"))),
    "probes.random_jacobian_lognorms": E(probes.random_jacobian_lognorms, lambda: dict(depth=2, width=3, draws=2, seed=1, gain=1.1),
                                         depth=Int(), width=Int(), draws=Int(), seed=Int(0), gain=Real(positive=True)),
    # -- train -------------------------------------------------------------------------------
    "train.loss_fn": E(train.loss_fn, lambda: dict(name="cross_entropy"), name=Name(train.LOSSES)),
    "train.train": E(train.train, lambda: dict(model=_stack(), inputs=randn(6, 4), targets=randn(6, 4), steps=1, lr=0.01, loss="mse", optimizer="sgd", batch_size=2, data_seed=1),
                     model=Obj(), steps=Int(0), lr=Real(positive=True), loss=Name(train.LOSSES), optimizer=Name(train.OPTIMIZERS), batch_size=Int(), data_seed=Int(0), **_LOSS_XY),
    "train.train_seeds": E(train.train_seeds, lambda: dict(build=lambda s: _stack(), seeds=[0, 1], inputs=randn(6, 4), targets=randn(6, 4), steps=1, lr=0.01, loss="mse",
                                                           optimizer="sgd", batch_size=2, data_seed=1, batched=True, engine="auto"),
                           build=Fn() + Custom(Bad(lambda s: "net", TypeError, "nn.Module")), seeds=Ints(0), steps=Int(0), lr=Real(positive=True), loss=Name(train.LOSSES),
                           optimizer=Name(train.OPTIMIZERS), batch_size=Int(), data_seed=Int(0), batched=Flag(), engine=Name(train.ENGINES), **_LOSS_XY),
    "train.stack_models": E(train.stack_models, lambda: dict(models=[_stack(), _stack()]),
                            models=Custom(Bad([], ValueError, "non-empty"), Bad(_stack(), ValueError, "non-empty list"), Bad([_stack(), "net"], TypeError, "nn.Module"),
                                          Bad([_stack(width=4), _stack(width=5)], ValueError, None))),
    # -- plots -------------------------------------------------------------------------------
    "plots.use_style": E(plots.use_style, lambda: dict()),
    "plots.color": E(plots.color, lambda: dict(index_or_name="green"),
                     index_or_name=Custom(Bad("magenta", ValueError, str(tuple(plots.PALETTE))), Bad(1.5, TypeError, "colour name"), Bad(True, TypeError, "colour name"))),
    "plots.log_line": E(plots.log_line, lambda: dict(ax=_ax(), x=[0, 1, 2], y=[1.0, 0.0, INF], label="a"),
                        ax=Obj("Axes"), x=Custom(Bad("abc", TypeError, "numbers"), Bad(["a", "b", "c"], TypeError, "numbers"), Bad([0, 1], ValueError, "equal length")),
                        y=Custom(Bad(5, TypeError, "numbers"), Rel([1.0], ValueError, "equal length"), Rel([[1.0, 2.0, 3.0]], ValueError, "1-D")),
                        label=Str()),
    "plots.layer_norm_figure": E(plots.layer_norm_figure, lambda: dict(series={"plain": [1.0, 0.1], "residual": [1.0, 1.0]}, title="t", ylabel="y", ax=None, ylim=(1e-3, 10.0)),
                                 series=Custom(Bad([1.0], TypeError, "mapping"), Bad({}, ValueError, "non-empty"), Bad({3: [1.0]}, TypeError, "str"), Bad({"a": "xyz"}, TypeError, "numbers")),
                                 title=Str(), ylabel=Str(), ax=Obj("Axes"), ylim=Pair(increasing=True)),
    "plots.figure_png": E(plots.figure_png, lambda: dict(fig=plt.figure(figsize=(1, 1)), dpi=20, palette=False), fig=Obj("Figure"), dpi=Int(10), palette=Flag()),
    "plots.decades": E(plots.decades, lambda: dict(values=[1e-3, 1.0]), values=Custom(Bad("abc", TypeError, "numbers"), Bad(5, TypeError, "numbers"), Bad(["a"], TypeError, "numbers"))),
    # -- widgets -----------------------------------------------------------------------------
    "widgets.FrameExplorer": E(widgets.FrameExplorer, lambda: dict(render=_png, grid={"a": [1, 2]}, dpi=20, width="50%", alt="a = {a}"),
                               render=Fn() + Custom(Bad(lambda a: 42, TypeError, "Figure or PNG bytes")),
                               grid=Custom(Bad([("a", [1])], TypeError, "mapping"), Bad({}, ValueError, "1 or 2"), Bad({"a": []}, ValueError, "non-empty"),
                                      Bad({"not valid": [1]}, ValueError, "identifiers"), Bad({"a": "xy"}, ValueError, "non-empty")),
                               dpi=Int(10), width=Str(), alt=Str() + Custom(Bad("{nope}", ValueError, "('a',)"))),
    # -- data --------------------------------------------------------------------------------
    "data.load_digits": E(data.load_digits, lambda: dict(n_train=30, seed=1, shape="flat", n_test=10),
                          n_train=Int() + Custom(Bad(1797, ValueError, "between 1 and 1796")), seed=Int(0), shape=Name(("image", "flat")),
                          n_test=Int() + Custom(Bad(1768, ValueError, "between 1 and 1767"))),
    "data.Digits": E(data.Digits, lambda: dict(x_train=randn(4, 64), y_train=torch.arange(4), x_test=randn(2, 64), y_test=torch.arange(2)),
                     x_train=Tensor(Bad(randn(3, 64), ValueError, "same number of examples"), Bad(randn(4, 8), ValueError, "x_test")),
                     y_train=Tensor(Bad(torch.zeros(4), TypeError, "integer"), Bad(torch.zeros(4, 1, dtype=torch.int64), ValueError, "1 dimension"), floating=False),
                     x_test=Tensor(Rel(randn(2, 1, 8, 8), ValueError, "x_train")), y_test=Tensor(Rel(torch.arange(3), ValueError, "same number of examples"), floating=False)),
    "data.small_residual_task": E(data.small_residual_task, lambda: dict(n=4, width=3, eps=0.5, seed=1), n=Int(), width=Int(), eps=Real(minimum=0.0), seed=Int(0)),
    # -- conv --------------------------------------------------------------------------------
    "conv.init_conv": E(conv.init_conv, lambda: dict(layer=nn.Conv2d(1, 2, 3), init="he"), layer=Obj("Conv2d", nn.Identity()), init=Name(blocks.INITS)),
    "conv.ConvPlainBlock": E(conv.ConvPlainBlock, lambda: dict(channels=2, layers=2, activation="relu", init="he"), **_CONV),
    "conv.ConvResidualBlock": E(conv.ConvResidualBlock, lambda: dict(channels=2, layers=2, activation="relu", init="he", zero_init=True), zero_init=Flag(), **_CONV),
    "conv.ConvPreActBlock": E(conv.ConvPreActBlock, lambda: dict(channels=2, layers=2, activation="relu", init="he", zero_init=True), zero_init=Flag(), **_CONV),
    "conv.ConvNet": E(conv.ConvNet, lambda: dict(kind="residual", blocks=1, channels=2, in_channels=1, image_size=4, classes=3, activation="relu", init="he", zero_init=True, head="pool"),
                      kind=Name(conv.CONV_KINDS), blocks=Int(0), channels=Int(), in_channels=Int(), image_size=Int(), classes=Int(), activation=Name(blocks.ACTIVATIONS),
                      init=Name(blocks.INITS), zero_init=Flag(), head=Name(conv.HEADS)),
    "conv.ConvNet/plain": E(conv.ConvNet, lambda: dict(kind="plain", blocks=1, channels=2, in_channels=1, image_size=4, classes=3, activation="relu", init="he", zero_init=False, head="pool"),
                            variant=True, zero_init=Custom(Bad(True, ValueError, "residual kinds"))),
    "conv.conv_net": E(conv.conv_net, lambda: dict(kind="residual", depth=4, channels=2, in_channels=1, image_size=4, classes=3, activation="relu", init="default", zero_init=True, head="pool"),
                       kind=Name(conv.CONV_KINDS), depth=Int(2) + Custom(Bad(5, ValueError, "even")), channels=Int(), in_channels=Int(), image_size=Int(), classes=Int(),
                       activation=Name(blocks.ACTIVATIONS), init=Name(blocks.INITS), zero_init=Flag(), head=Name(conv.HEADS)),
    # -- identity (chapter 1) ----------------------------------------------------------------
    "identity.near_one_product": E(identity.near_one_product, lambda: dict(eps=0.1, depth=3), eps=Real() + Custom(Bad(-1.0, ValueError, "> -1")), depth=Int()),
    "identity.near_one_figure": E(identity.near_one_figure, lambda: dict(eps_values=[0.1, -0.1], max_depth=4),
                                  eps_values=Reals() + Custom(Bad([0.1, -1.5], ValueError, "> -1")), max_depth=Int(2)),
    "identity.lognorm_moments": E(identity.lognorm_moments, lambda: dict(depth=3, width=4), depth=Int(), width=Int()),
    "identity.jacobian_lognorm_samples": E(identity.jacobian_lognorm_samples, lambda: dict(depths=[2], width=3, draws=3, seed=1), depths=Ints(), width=Int(), draws=Int(2), seed=Int(0)),
    "identity.jacobian_histogram_figure": E(identity.jacobian_histogram_figure, lambda: dict(samples={2: randn(5).double(), 4: randn(5).double()}, width=4, bins=3),
                                            samples=Custom(Bad([1.0], TypeError, "mapping"), Bad({}, ValueError, "non-empty"), Bad({0: randn(5)}, ValueError, ">= 1"),
                                                      Bad({2: [1.0, 2.0]}, TypeError, "Tensor"), Bad({2: randn(3, 2)}, ValueError, "dimensions")),
                                            width=Int(), bins=Int(2)),
    "identity.identity_data": E(identity.identity_data, lambda: dict(n=4, width=3, seed=1), n=Int(2), width=Int(), seed=Int(0)),
    "identity.best_constant_loss": E(identity.best_constant_loss, lambda: dict(targets=randn(3, 2)),
                                     targets=Tensor(Bad(randn(3), ValueError, "dimensions"), Bad(randn(1, 3), ValueError, "at least 2 rows"))),
    "identity.random_orthogonal": E(identity.random_orthogonal, lambda: dict(width=3, seed=1), width=Int(), seed=Int(0)),
    "identity.build_net": E(identity.build_net, lambda: dict(family="residual", depth=2, width=3, readout=True), family=Name(identity.FAMILIES), depth=Int(), width=Int(), readout=Flag()),
    "identity.initial_loss": E(identity.initial_loss, lambda: dict(family="plain", depth=2, x=randn(4, 3), seed=1),
                               family=Name(identity.FAMILIES), depth=Int(), x=Tensor(Bad(randn(4), ValueError, "dimensions")), seed=Int(0)),
    "identity.zero_init_losses": E(identity.zero_init_losses, lambda: dict(depth=2, x=randn(4, 3), steps=1, lr=0.01, seed=1),
                                   depth=Int(), x=Tensor(Bad(randn(4), ValueError, "dimensions")), steps=Int(0), lr=Real(positive=True), seed=Int(0)),
    "identity.depth_sweep": E(identity.depth_sweep, lambda: dict(depths=[1], seeds=[0], families=["plain"], width=2, n=4, steps=1, lr=0.01, data_seed=1),
                              depths=Ints(), seeds=Ints(0), families=Names(identity.FAMILIES), width=Int(), n=Int(2), steps=Int(), lr=Real(positive=True), data_seed=Int(0)),
    "identity.depth_sweep_figure": E(identity.depth_sweep_figure, lambda: dict(sweep=_depth_sweep()), sweep=Obj("DepthSweep", {"plain": 1})),
    "identity.target_comparison": E(identity.target_comparison, lambda: dict(depth=1, seeds=[0], width=2, n=4, steps=1, lr=0.01, data_seed=1, q_seed=2),
                                    depth=Int(), seeds=Ints(0), width=Int(), n=Int(2), steps=Int(), lr=Real(positive=True), data_seed=Int(0), q_seed=Int(0)),
    "identity.target_figure": E(identity.target_figure, lambda: dict(comparison=_target_comparison()), comparison=Obj("TargetComparison", None)),
    "identity.gradient_norm_grid": E(identity.gradient_norm_grid, lambda: dict(depths=[2], gains=[1.0], width=3, batch=2, seeds=[0]),
                                     depths=Ints(), gains=Reals(positive=True), width=Int(), batch=Int(), seeds=Ints(0)),
    "identity.gradient_frame": E(identity.gradient_frame, lambda: dict(grid={(2, 1.0): [[1.0, 0.5, 0.25]]}, depth=2, gain=1.0, ylim=(1e-2, 10.0)),
                                 grid=Obj("mapping", [1]) + Custom(Rel({}, ValueError, "not a point of the grid")), depth=Int() + Custom(Rel(3, ValueError, "not a point of the grid")),
                                 gain=Real(positive=True) + Custom(Rel(2.0, ValueError, "not a point of the grid")), ylim=Pair(increasing=True)),
    # -- reframing (chapter 2) ---------------------------------------------------------------
    "reframing.parameter_count": E(reframing.parameter_count, lambda: dict(module=nn.Linear(2, 2)), module=Obj()),
    "reframing.shortcut_costs": E(reframing.shortcut_costs, lambda: dict(width=3, out_width=2, layers=1), width=Int(), out_width=Int(), layers=Int()),
    "reframing.degradation_sweep": E(reframing.degradation_sweep, lambda: dict(depths=[2], kinds=["plain"], seeds=[0], channels=1, steps=1, lr=0.01, optimizer="sgd",
                                                                               n_train=20, split_seed=1, init="default", zero_init=False, head="pool"),
                                     depths=Ints(2) + Custom(Bad([3], ValueError, "even")), kinds=Names(("plain", "residual", "preact")), seeds=Ints(0), channels=Int(), steps=Int(),
                                     lr=Real(positive=True), optimizer=Name(train.OPTIMIZERS), n_train=Int() + Custom(Bad(1797, ValueError, "1796")), split_seed=Int(0),
                                     init=Name(blocks.INITS), zero_init=Flag(), head=Name(conv.HEADS)),
    "reframing.BranchNet": E(reframing.BranchNet, lambda: dict(kind="residual", depth=2, width=3, hidden=4, activation="tanh"),
                             kind=Name(("plain", "residual")), depth=Int(), width=Int(), hidden=Int(), activation=Name(blocks.ACTIVATIONS)),
    "reframing.branch_net": E(reframing.branch_net, lambda: dict(kind="residual", depth=2, width=3, hidden=4, activation="tanh"),
                              kind=Name(("plain", "residual")), depth=Int(), width=Int(), hidden=Int(), activation=Name(blocks.ACTIVATIONS)),
    "reframing.steps_to_reach": E(reframing.steps_to_reach, lambda: dict(losses=randn(2, 3).abs(), threshold=0.5),
                                  losses=Tensor(Bad(randn(3), ValueError, "dimensions")), threshold=Real(positive=True)),
    "reframing.small_residual_race": E(reframing.small_residual_race, lambda: dict(seeds=[0], eps=0.1, depth=1, width=2, hidden=2, n=4, steps=1, lr=0.01, threshold=0.1, task_seed=1),
                                       seeds=Ints(0), eps=Real(minimum=0.0), depth=Int(), width=Int(), hidden=Int(), n=Int(), steps=Int(), lr=Real(positive=True),
                                       threshold=Real(positive=True), task_seed=Int(0)),
    "reframing.residual_sum_gap": E(reframing.residual_sum_gap, lambda: dict(stack=_stack("preact"), x=randn(3, 4)),
                                    stack=Obj("nn.Sequential") + Custom(Bad(nn.Sequential(), ValueError, "non-empty"), Bad(nets.mlp_stack("plain", 2, 4), TypeError, "ResidualBlock")),
                                    x=Tensor(Bad(randn(3, 5), ValueError, "last dimension 4"))),
    "reframing.kind_color": E(reframing.kind_color, lambda: dict(kind="preact"), kind=Name(("plain", "residual", "preact"))),
    "reframing.degradation_figure": E(reframing.degradation_figure, lambda: dict(result=_degradation(), figsize=(6.0, 3.0)),
                                      result=Obj("DegradationResult"), figsize=Pair()),
    "reframing.curves_figure": E(reframing.curves_figure, lambda: dict(result=_degradation(), depth=4, highlight="plain", ax=None, ylim=(0.01, 10.0), figsize=(5.0, 3.0)),
                                 result=Obj("DegradationResult"), depth=Int() + Custom(Rel(6, ValueError, "(kind, depth)")), highlight=Name(("plain", "residual")),
                                 ax=Obj("Axes"), ylim=Pair(increasing=True), figsize=Pair()),
    "reframing.race_figure": E(reframing.race_figure, lambda: dict(results=[_race()], figsize=(6.0, 3.0)),
                               results=Custom(Bad("r", TypeError, "RaceResult"), Bad([], ValueError, "non-empty"), Bad(["r"], TypeError, "RaceResult")), figsize=Pair()),
    # -- paths (chapter 3) -------------------------------------------------------------------
    "paths.branch_factors": E(paths.branch_factors, lambda: dict(stack=_rl_stack(), x=randn(3, 4, dtype=torch.float64)), stack=_RL_STACK, x=_RL_X),
    "paths.input_gradient": E(paths.input_gradient, lambda: dict(stack=_rl_stack(), x=randn(3, 4, dtype=torch.float64), delta=randn(3, 4, dtype=torch.float64), seed=1),
                              stack=_RL_STACK, x=_RL_X, delta=_RL_DELTA, seed=Int(0)),
    "paths.residual_layer_stack": E(paths.residual_layer_stack, lambda: dict(depth=2, width=3, alpha=0.5, init="he", activation="tanh", dtype=torch.float32, seed=1),
                                    depth=Int(), width=Int(), alpha=Real(minimum=0.0), init=Name(blocks.INITS), activation=Name(blocks.ACTIVATIONS),
                                    dtype=Custom(Bad("float64", TypeError, "torch.float32"), Bad(torch.int64, ValueError, "torch.float32")), seed=Int(0)),
    "paths.enumerate_paths": E(paths.enumerate_paths, lambda: dict(stack=_rl_stack(), x=randn(3, 4, dtype=torch.float64), delta=randn(3, 4, dtype=torch.float64), seed=1),
                               stack=_RL_STACK + Custom(Bad(paths.residual_layer_stack(21, 2), ValueError, "<= 20")), x=_RL_X, delta=_RL_DELTA, seed=Int(0)),
    "paths.path_length_decomposition": E(paths.path_length_decomposition, lambda: dict(stack=_rl_stack(), x=randn(3, 4, dtype=torch.float64), delta=randn(3, 4, dtype=torch.float64), seed=1),
                                         stack=_RL_STACK, x=_RL_X, delta=_RL_DELTA, seed=Int(0)),
    "paths.sample_path_norms": E(paths.sample_path_norms, lambda: dict(stack=_rl_stack(), x=randn(3, 4, dtype=torch.float64), delta=randn(3, 4, dtype=torch.float64), samples=2, lengths=[0, 2], seed=1),
                                 stack=_RL_STACK, x=_RL_X, delta=_RL_DELTA, samples=Int(), lengths=Ints(0) + Custom(Bad([3], ValueError, "0..2")), seed=Int(0)),
    "paths.path_length_counts": E(paths.path_length_counts, lambda: dict(depth=3), depth=Int()),
    "paths.path_length_share": E(paths.path_length_share, lambda: dict(depth=4, lo=1, hi=2), depth=Int(),
                                 lo=Int(0) + Custom(Bad(3, ValueError, "lo <= hi")), hi=Int(0) + Custom(Rel(5, ValueError, "hi <= depth"))),
    "paths.dominant_lengths": E(paths.dominant_lengths, lambda: dict(weights=[0.1, 1.0, 0.2], share=0.8),
                                weights=Custom(Bad("abc", TypeError, "numbers"), Bad([], ValueError, "non-empty"), Bad([1.0, NAN], ValueError, "finite"),
                                          Bad([-1.0, 1.0], ValueError, "non-negative"), Bad([0.0, 0.0], ValueError, "not all be zero")),
                                share=Real(positive=True) + Custom(Bad(1.5, ValueError, "(0, 1]"))),
    "paths.BlockClassifier": E(paths.BlockClassifier, lambda: dict(blocks=_stack(), in_features=5, classes=3, init="he"),
                               blocks=Obj("nn.Sequential") + Custom(Bad(nn.Sequential(), ValueError, "non-empty"), Bad(nn.Sequential(nn.ReLU()), ValueError, "width")),
                               in_features=Int(), classes=Int(), init=Name(blocks.INITS)),
    "paths.block_classifier": E(paths.block_classifier, lambda: dict(kind="residual", depth=2, width=3, in_features=5, classes=3, init="default"),
                                kind=Name(("plain", "residual")), depth=Int(), width=Int(), in_features=Int(), classes=Int(), init=Name(blocks.INITS)),
    "paths.accuracy": E(paths.accuracy, lambda: dict(model=_lesion_model(), x=randn(5, 4), y=torch.arange(5) % 3, skip=[1]),
                        model=Obj("BlockClassifier", nn.Linear(4, 3)), x=Tensor(Bad(randn(5), ValueError, "dimensions"), Bad(randn(5, 3), ValueError, "last dimension 4")),
                        y=Tensor(Bad(torch.zeros(4, dtype=torch.int64), ValueError, "5"), floating=False),
                        skip=Custom(Bad("0", TypeError, "integers"), Bad([2], ValueError, "0..1"), Bad([1.5], TypeError, "integers"))),
    "paths.lesion_accuracies": E(paths.lesion_accuracies, lambda: dict(model=_lesion_model(), x=randn(5, 4), y=torch.arange(5) % 3),
                                 model=Obj("BlockClassifier", nn.Linear(4, 3)), x=Tensor(Bad(randn(5), ValueError, "dimensions"), Bad(randn(5, 3), ValueError, "last dimension 4")),
                                 y=Tensor(Bad(torch.zeros(4, dtype=torch.int64), ValueError, "5"), floating=False)),
    "paths.lesion_study": E(paths.lesion_study, lambda: dict(depth=1, width=2, seeds=[0], steps=1, lr=0.01, batch_size=8, data=_flat_digits(), kinds=["plain"], inits={"plain": "default"}),
                            depth=Int(), width=Int(), seeds=Ints(0), steps=Int(0), lr=Real(positive=True), batch_size=Int(), kinds=Names(("plain", "residual")),
                            data=_DIGITS,
                            inits=Custom(Bad("he", TypeError, "mapping"), Bad({"plain": "nope"}, ValueError, str(blocks.INITS)), Bad({"plain": 3}, TypeError, str(blocks.INITS)))),
    "paths.gradient_norm_sweep": E(paths.gradient_norm_sweep, lambda: dict(kinds=["residual"], depths=[2], inits=["he"], width=3, batch=2, seed=1),
                                   kinds=Names(nets.KINDS), depths=Ints(), inits=Names(blocks.INITS), width=Int(), batch=Int(), seed=Int(0)),
    "paths.PreNormResidualBlock": E(paths.PreNormResidualBlock, lambda: dict(width=4, layers=1, activation="tanh", init="he"), **_BLOCK),
    "paths.fix_stack": E(paths.fix_stack, lambda: dict(name="pre-LN", depth=2, width=3, init="he", seed=1),
                         name=Name(paths.FIXES), depth=Int(), width=Int(), init=Name(blocks.INITS), seed=Int(0)),
    "paths.compare_fixes": E(paths.compare_fixes, lambda: dict(names=["ReZero"], depth=2, width=3, init="he", batch=2, seed=1),
                             names=Names(paths.FIXES), depth=Int(), width=Int(), init=Name(blocks.INITS), batch=Int(), seed=Int(0)),
    "paths.train_deep": E(paths.train_deep, lambda: dict(name="ReZero", depth=2, width=3, init="he", steps=1, lr=0.01, optimizer="sgd", examples=8, data=_flat_digits(), seed=1),
                          name=Name(paths.FIXES), depth=Int(), width=Int(), init=Name(blocks.INITS), steps=Int(0), lr=Real(positive=True), optimizer=Name(train.OPTIMIZERS),
                          examples=Int(), data=_DIGITS, seed=Int(0)),
    "paths.variance_growth_per_block": E(paths.variance_growth_per_block, lambda: dict(activations=[1.0, 2.0, INF], blocks=2),
                                         activations=Custom(Bad("abc", TypeError, "numbers"), Bad([1.0], ValueError, "at least 2"), Bad(["a", "b"], TypeError, "numbers")), blocks=Int()),
    "paths.path_profile": E(paths.path_profile, lambda: dict(depth=2, alpha=0.5, width=3, batch=2, init="default", seed=1),
                            depth=Int(), alpha=Real(minimum=0.0), width=Int(), batch=Int(), init=Name(blocks.INITS), seed=Int(0)),
    "paths.path_profile_figure": E(paths.path_profile_figure, lambda: dict(depth=2, alpha=0.5, width=3, batch=2, init="default", seed=1, share=0.8),
                                   depth=Int(), alpha=Real(minimum=0.0), width=Int(), batch=Int(), init=Name(blocks.INITS), seed=Int(0), share=Real(positive=True) + Custom(Bad(1.5, ValueError, "(0, 1]"))),
    # -- recurrent (chapter 4) ---------------------------------------------------------------
    "recurrent.RecurrentCell": E(recurrent.RecurrentCell, lambda: dict(input_size=2, hidden_size=3), input_size=Int(), hidden_size=Int()),
    "recurrent.RNNCell": E(recurrent.RNNCell, lambda: dict(input_size=2, hidden_size=3), input_size=Int(), hidden_size=Int()),
    "recurrent.LSTMCell": E(recurrent.LSTMCell, lambda: dict(input_size=2, hidden_size=3, forget_gate=True, forget_bias=1.0),
                            input_size=Int(), hidden_size=Int(), forget_gate=Flag() + Custom(Rel(False, ValueError, "forget_bias")), forget_bias=Real()),
    "recurrent.LSTMCell/1997": E(recurrent.LSTMCell, lambda: dict(input_size=2, hidden_size=3, forget_gate=False), variant=True,
                                 forget_bias=Custom(Bad(1.0, ValueError, "forget_gate=True"))),
    "recurrent.GRUCell": E(recurrent.GRUCell, lambda: dict(input_size=2, hidden_size=3, convention="chung", update_bias=1.0),
                           input_size=Int(), hidden_size=Int(), convention=Name(recurrent.GRUCell.CONVENTIONS), update_bias=Real()),
    "recurrent.make_cell": E(recurrent.make_cell, lambda: dict(kind="lstm", input_size=2, hidden_size=3, carry_bias=1.0, forget_gate=True),
                             kind=Name(recurrent.CELLS) + Custom(Rel("rnn", ValueError, "carry_bias")), input_size=Int(), hidden_size=Int(), carry_bias=Real(),
                             forget_gate=Flag() + Custom(Rel(False, ValueError, "carry_bias"))),
    "recurrent.make_cell/rnn": E(recurrent.make_cell, lambda: dict(kind="rnn", input_size=2, hidden_size=3), variant=True,
                                 carry_bias=Custom(Bad(1.0, ValueError, "kind='rnn'")), forget_gate=Custom(Bad(False, ValueError, "kind='lstm'"))),
    "recurrent.make_cell/1997": E(recurrent.make_cell, lambda: dict(kind="lstm", input_size=2, hidden_size=3, forget_gate=False), variant=True,
                                  carry_bias=Custom(Bad(1.0, ValueError, "forget_gate=True"))),
    "recurrent.stack_cells": E(recurrent.stack_cells, lambda: dict(cells=[_cell(), _cell()]),
                               cells=Custom(Bad("c", TypeError, "sequence"), Bad(recurrent.RNNCell(2, 4), TypeError, "sequence"), Bad([], ValueError, "non-empty"),
                                       Bad(["c"], TypeError, "RNNCell"), Bad([recurrent.RNNCell(2, 4), recurrent.GRUCell(2, 4)], ValueError, "differs"))),
    "recurrent.unroll": E(recurrent.unroll, lambda: dict(cell=_cell(), xs=randn(2, 3, 2), state=torch.zeros(2, 4)),
                          cell=Obj("RNNCell"), xs=_SEQ_X, state=Custom(Bad("s", TypeError, "Tensor"), Bad((torch.zeros(2, 4),), TypeError, "tuple"), Bad(torch.zeros(3, 4), ValueError, "batch size"))),
    "recurrent.unroll/lstm": E(recurrent.unroll, lambda: dict(cell=_cell("lstm"), xs=randn(2, 3, 2), state=(torch.zeros(2, 4), torch.zeros(2, 4))), variant=True,
                               state=Custom(Bad(torch.zeros(2, 4), TypeError, "pair"), Bad((torch.zeros(2, 4), torch.zeros(2, 5)), ValueError, "last dimension 4"),
                                       Bad((torch.zeros(2, 4), [0.0]), TypeError, "Tensor"))),
    "recurrent.set_spectral_radius_": E(recurrent.set_spectral_radius_, lambda: dict(cell=_cell(), radius=0.9, seed=1),
                                        cell=Obj("RNNCell", recurrent.GRUCell(2, 3)), radius=Real(positive=True), seed=Int(0)),
    "recurrent.set_carry_bias_": E(recurrent.set_carry_bias_, lambda: dict(cell=_cell("gru"), value=1.0), cell=Obj("RNNCell") + Custom(Bad(recurrent.RNNCell(2, 3), TypeError, "no gate")), value=Real()),
    "recurrent.hold_state_": E(recurrent.hold_state_, lambda: dict(cell=_cell("lstm")),
                               cell=Obj("RNNCell") + Custom(Bad(recurrent.RNNCell(2, 3), TypeError, "no gate"), Bad(recurrent.stack_cells([recurrent.GRUCell(2, 3)]), TypeError, "ensemble"))),
    "recurrent.step_jacobians": E(recurrent.step_jacobians, lambda: dict(cell=_cell(), xs=randn(2, 3, 2), state=torch.zeros(2, 4)),
                                  cell=Obj("RNNCell"), xs=_SEQ_X, state=Custom(Bad("s", TypeError, "Tensor"), Bad(torch.zeros(3, 4), ValueError, "batch size"))),
    "recurrent.gradient_through_time": E(recurrent.gradient_through_time, lambda: dict(cell=_cell(), xs=randn(2, 3, 2), state=torch.zeros(2, 4), part="hidden"),
                                         cell=Obj("RNNCell"), xs=_SEQ_X, state=Custom(Bad("s", TypeError, "Tensor"), Bad(torch.zeros(3, 4), ValueError, "batch size")),
                                         part=Name(recurrent.PARTS) + Custom(Bad("cell", ValueError, "LSTMCell"))),
    "recurrent.final_states": E(recurrent.final_states, lambda: dict(cell=recurrent.stack_cells([_cell(), _cell()]), xs=randn(2, 3, 2), lengths=[2, 3]),
                                cell=Obj("RNNCell") + Custom(Bad(_cell(), TypeError, "ensemble")), xs=_SEQ_X,
                                lengths=Ints() + Custom(Bad([2], ValueError, "one length per member"), Bad([3, 2], ValueError, "not decrease"), Bad([2, 4], ValueError, "at most"))),
    "recurrent.carry_retention": E(recurrent.carry_retention, lambda: dict(cell=_cell("gru"), xs=randn(2, 3, 2), state=torch.zeros(2, 4)),
                                   cell=Obj("RNNCell") + Custom(Bad(recurrent.RNNCell(2, 4), TypeError, "no gated direct path")), xs=_SEQ_X,
                                   state=Custom(Bad("s", TypeError, "Tensor"), Bad(torch.zeros(3, 4), ValueError, "batch size"))),
    # -- sequences (chapter 4) ---------------------------------------------------------------
    "sequences.recall_task": E(sequences.recall_task, lambda: dict(n=3, length=2, n_symbols=3, noise=0.1, seed=1),
                               n=Int(), length=Int(), n_symbols=Int(2), noise=Real(minimum=0.0), seed=Int(0)),
    "sequences.train_recall": E(sequences.train_recall, lambda: dict(kind="gru", lengths=[2], seeds=[0], carry_biases=[1.0], hidden=2, n_symbols=2, noise=0.1, steps=1, lr=0.01,
                                                                     batch=2, n_test=4, clip=1.0, forget_gate=True, fused=False, data_seed=1),
                                kind=Name(recurrent.CELLS) + Custom(Rel("rnn", ValueError, "carry_biases")), lengths=Ints(), seeds=Ints(0),
                                carry_biases=Custom(Bad("1", TypeError, "sequence"), Bad([], ValueError, "non-empty"), Bad([NAN], ValueError, "finite"), Bad(["a"], TypeError, "finite")),
                                hidden=Int(), n_symbols=Int(2), noise=Real(minimum=0.0), steps=Int(0), lr=Real(positive=True), batch=Int(), n_test=Int(), clip=Real(positive=True),
                                forget_gate=Flag() + Custom(Rel(False, ValueError, "carry_biases")), fused=Flag(), data_seed=Int(0)),
    "sequences.train_recall/rnn": E(sequences.train_recall, lambda: dict(kind="rnn", lengths=[2], seeds=[0], steps=1), variant=True,
                                    carry_biases=Custom(Bad([1.0], ValueError, "[None] for kind='rnn'"))),
    "sequences.train_recall/1997": E(sequences.train_recall, lambda: dict(kind="lstm", lengths=[2], seeds=[0], steps=1, forget_gate=False), variant=True,
                                     carry_biases=Custom(Bad([1.0], ValueError, "[None] with forget_gate=False"))),
    "sequences.spectral_radius_sweep": E(sequences.spectral_radius_sweep, lambda: dict(radii=[0.9], length=2, hidden=3, input_size=2, batch=2, seed=1),
                                         radii=Reals(positive=True), length=Int(), hidden=Int(), input_size=Int(), batch=Int(), seed=Int(0)),
    "sequences.gradient_curves": E(sequences.gradient_curves, lambda: dict(kind="lstm", length=2, carry_bias=1.0, forget_gate=True, hidden=3, input_size=2, batch=2, seed=1),
                                   kind=Name(recurrent.CELLS) + Custom(Rel("rnn", ValueError, "carry_bias")), length=Int(), carry_bias=Real(), forget_gate=Flag() + Custom(Rel(False, ValueError, "carry_bias")),
                                   hidden=Int(), input_size=Int(), batch=Int(), seed=Int(0)),
    "sequences.gradient_curves/rnn": E(sequences.gradient_curves, lambda: dict(kind="rnn", length=2), variant=True,
                                       carry_bias=Custom(Bad(1.0, ValueError, "kind='rnn'"))),
    "sequences.gradient_curves/1997": E(sequences.gradient_curves, lambda: dict(kind="lstm", length=2, forget_gate=False), variant=True,
                                        carry_bias=Custom(Bad(1.0, ValueError, "forget_gate=True"))),
    "sequences.gradient_frame": E(sequences.gradient_frame, lambda: dict(curves=_grad_curves(), length=4, carry_bias=1.0, ylim=(1e-3, 10.0)),
                                  curves=Custom(Bad([1], TypeError, "mapping"), Bad({}, ValueError, "non-empty"), Bad({"RNN": [1.0]}, TypeError, "full"),
                                           Bad({"RNN": {"full": torch.ones(3), "direct": None}}, ValueError, "length + 1")),
                                  length=Int() + Custom(Rel(6, ValueError, "length + 1")), carry_bias=Real(), ylim=Pair(increasing=True)),
    "sequences.deep_classifier": E(sequences.deep_classifier, lambda: dict(kind="highway", depth=2, width=3, gate_bias=-1.0, in_features=4, n_classes=3),
                                   kind=Name(sequences.DEEP_KINDS), depth=Int(), width=Int(), gate_bias=Real(), in_features=Int(), n_classes=Int()),
    "sequences.highway_init_gap": E(sequences.highway_init_gap, lambda: dict(depths=[1, 2], gate_biases=[-1.0], width=3, n=4, seeds=[0]),
                                    depths=Ints(), gate_biases=Reals(), width=Int(), n=Int(), seeds=Ints(0)),
    "sequences.highway_vs_residual": E(sequences.highway_vs_residual, lambda: dict(depth=1, width=2, gate_bias=-1.0, seeds=[0], steps=1, lr=0.01, n_train=16, kinds=["residual"]),
                                       depth=Int(), width=Int(), gate_bias=Real(), seeds=Ints(0), steps=Int(0), lr=Real(positive=True), n_train=Int() + Custom(Bad(1797, ValueError, "1796")),
                                       kinds=Names(sequences.DEEP_KINDS)),
    "sequences.reverse_task": E(sequences.reverse_task, lambda: dict(n=3, length=3, vocab=4, seed=1), n=Int(), length=Int(2), vocab=Int(2), seed=Int(0)),
    "sequences.TinyTransformer": E(sequences.TinyTransformer, lambda: dict(vocab=4, length=3, d_model=4, n_heads=2, depth=1, norm="post"),
                                   vocab=Int(2), length=Int(), d_model=Int() + Custom(Bad(5, ValueError, "divisible")), n_heads=Int() + Custom(Rel(3, ValueError, "divisible")),
                                   depth=Int(), norm=Name(blocks.TransformerBlock.NORMS)),
    "sequences.transformer_grad_norms": E(sequences.transformer_grad_norms, lambda: dict(depths=[1], norms=["pre"], seeds=[0], d_model=4, n_heads=2, batch=2),
                                          depths=Ints(), norms=Names(blocks.TransformerBlock.NORMS), seeds=Ints(0), d_model=Int() + Custom(Bad(5, ValueError, "divisible")),
                                          n_heads=Int() + Custom(Rel(3, ValueError, "divisible")), batch=Int()),
    "sequences.train_transformers": E(sequences.train_transformers, lambda: dict(norms=["pre"], seeds=[0], depth=1, d_model=4, n_heads=2, lr=0.01, warmup=1, steps=1, batch=2, n_test=4, batched=True),
                                      norms=Names(blocks.TransformerBlock.NORMS), seeds=Ints(0), depth=Int(), d_model=Int() + Custom(Bad(5, ValueError, "divisible")),
                                      n_heads=Int() + Custom(Rel(3, ValueError, "divisible")), lr=Real(positive=True), warmup=Int(0), steps=Int(0), batch=Int(), n_test=Int(), batched=Flag()),
    # -- repro -------------------------------------------------------------------------------
    "repro.setup": E(repro.setup, lambda: dict(seed=0, threads=1, style=False), seed=Int(0), threads=Int(), style=Flag()),
    "repro.generator": E(repro.generator, lambda: dict(seed=3), seed=Int(0)),
    "repro.fmt": E(repro.fmt, lambda: dict(value=torch.tensor(0.5), digits=2),
                   value=Custom(Bad("abc", TypeError, "number"), Bad(None, TypeError, "number"), Bad(torch.ones(2), ValueError, "scalar")),
                   digits=Int() + Custom(Bad(7, ValueError, "between 1 and 6"))),
}

#: Public callables with no entry, and why: result records that reslab builds and returns. They
#: hold what a function measured; a user reads them and never constructs one (their methods'
#: arguments are checked where they take any).
EXEMPT = {
    name: "result record built only by reslab"
    for name in (
        "probes.LayerNorms", "train.TrainResult", "data.SmallResidualTask", "identity.DepthSweep", "identity.TargetComparison",
        "reframing.DegradationResult", "reframing.RaceResult", "paths.BranchFactors", "paths.PathEnumeration", "paths.PathDecomposition",
        "paths.PathNormSample", "paths.LesionStudy", "sequences.RecallResult", "sequences.TransformerRuns",
    )
} | {
    # Built by stack_models, which checks the models; its own arguments come from there.
    "train.StackedModels": "built only by train.stack_models, which checks its input",
}


# ---------------------------------------------------------------------------------------------
# Meta-tests: the table covers every public callable and every parameter
# ---------------------------------------------------------------------------------------------


def public_callables() -> dict[str, object]:
    """``{"module.Name": obj}`` for every callable in a public module's ``__all__`` defined in that module."""
    out = {}
    for info in pkgutil.iter_modules(reslab.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"reslab.{info.name}")
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if callable(obj) and getattr(obj, "__module__", None) == module.__name__:
                out[f"{info.name}.{name}"] = obj
    return out


def test_every_public_callable_has_an_entry_or_a_reason():
    public = public_callables()
    assert len(public) >= 129
    covered = {key.split("/")[0] for key in TABLE}
    missing = sorted(set(public) - covered - set(EXEMPT))
    assert not missing, f"add these public callables to TABLE in tests/test_validation.py: {missing}"
    stale = sorted((covered | set(EXEMPT)) - set(public))
    assert not stale, f"TABLE or EXEMPT names callables that are not public: {stale}"
    assert not covered & set(EXEMPT)
    for key, entry in TABLE.items():
        assert public[key.split("/")[0]] is entry.fn, key


def _parameters(fn: Callable) -> list[str]:
    # **kw and *args forward to other callables (matplotlib, the shared constructor): not audited here
    kinds = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind not in kinds]


@pytest.mark.parametrize("key", [k for k, e in TABLE.items() if not e.variant])
def test_every_parameter_is_audited(key):
    entry = TABLE[key]
    params = set(_parameters(entry.fn))
    audited = set(entry.checks) | set(entry.free)
    assert audited == params, f"{key}: parameters without bad values {sorted(params - audited)}, unknown {sorted(audited - params)}"
    for name, bads in entry.checks.items():
        assert bads, f"{key}: no bad values for {name}"
    assert set(entry.valid()) >= set(entry.checks), f"{key}: the valid call must pass every checked argument explicitly"


@pytest.mark.parametrize("key", list(TABLE))
def test_the_valid_call_succeeds(key):
    entry = TABLE[key]
    try:
        entry.fn(**entry.valid())
    finally:
        plt.close("all")


# ---------------------------------------------------------------------------------------------
# The bad calls
# ---------------------------------------------------------------------------------------------


class WorkBeforeValidation(Exception):
    """Raised when a bad call reaches a backward pass or an optimiser step instead of failing first."""


def _forbidden(what: str) -> Callable:
    # one function per patched attribute: torch._dynamo rejects one object under two torch names
    def forbid(*_args, **_kwargs):
        raise WorkBeforeValidation(f"a bad argument reached {what} before it was rejected")

    return forbid


def forbid_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every backward pass and optimiser step raise :class:`WorkBeforeValidation`."""
    monkeypatch.setattr(torch.autograd, "backward", _forbidden("a backward pass"))  # Tensor.backward calls it
    monkeypatch.setattr(torch.autograd, "grad", _forbidden("torch.autograd.grad"))  # layer_norms, torch.func.jacrev
    for optimizer in (torch.optim.Adam, torch.optim.SGD):  # each overrides Optimizer.step
        monkeypatch.setattr(optimizer, "step", _forbidden(f"{optimizer.__name__}.step"))


def _short(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}{str(value.dtype).replace('torch.', '')}"
    if isinstance(value, nn.Module):
        return type(value).__name__
    if callable(value) and not isinstance(value, type):
        return "callable"
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


BAD_CALLS = [
    pytest.param(key, name, bad, id=f"{key}-{name}={bad.label or _short(bad.value)}")
    for key, entry in TABLE.items()
    for name, bads in entry.checks.items()
    for bad in bads
]
#: CPU seconds a bad call may take: it must be rejected before any real work.
FAST = 0.5


@pytest.mark.parametrize("key, name, bad", BAD_CALLS)
def test_bad_argument_is_rejected_up_front(key, name, bad, monkeypatch):
    entry = TABLE[key]
    kwargs = entry.valid()
    kwargs[name] = bad.value
    forbid_work(monkeypatch)
    figures = set(plt.get_fignums())
    start = time.process_time()
    try:
        with pytest.raises(bad.error) as info:
            entry.fn(**kwargs)
        elapsed = time.process_time() - start
        opened = set(plt.get_fignums()) - figures
    finally:
        plt.close("all")
    message = str(info.value)
    assert type(info.value) in (TypeError, ValueError), f"{type(info.value).__name__}: {message}"
    assert re.search(rf"\b{re.escape(name)}\b", message), f"the message does not name {name!r}: {message!r}"
    if bad.leads:  # so that a mangled leading name fails even when the name recurs later ("got depth=3")
        assert re.match(rf"{re.escape(name)}\b", message), f"the message does not start with {name!r}: {message!r}"
    if bad.accepts is not None:
        assert bad.accepts in message, f"the message does not say what is accepted ({bad.accepts!r}): {message!r}"
    assert elapsed < FAST, f"the bad call took {elapsed:.2f} s of CPU time: check the argument before the work"
    assert not opened, "a figure was opened before the argument was rejected"


def test_the_guard_catches_work_done_before_validation(monkeypatch):
    """The harness itself: a function that trains and only then checks its argument is caught."""

    w = nn.Parameter(torch.ones(2))
    sgd, adam = torch.optim.SGD([w], lr=0.1), torch.optim.Adam([w], lr=0.1)

    def backward_then_checks(steps):
        (w * w).sum().backward()
        return repro.generator(steps)

    def grad_then_checks(steps):
        torch.autograd.grad((w * w).sum(), [w])
        return repro.generator(steps)

    def step_then_checks(steps, opt):
        opt.step()
        return repro.generator(steps)

    forbid_work(monkeypatch)
    for call in (lambda: backward_then_checks(-1), lambda: grad_then_checks(-1), lambda: step_then_checks(-1, sgd), lambda: step_then_checks(-1, adam)):
        with pytest.raises(WorkBeforeValidation):
            call()
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0"):
        repro.generator(-1)  # a function that checks first raises its own error


def test_the_table_is_large():
    # one entry per public callable (some with variants), several bad values per parameter
    assert len({k.split("/")[0] for k in TABLE}) + len(EXEMPT) == len(public_callables())
    assert len(BAD_CALLS) >= 1900


def test_the_shared_checks_word_their_messages():
    """The wording the table relies on, from reslab._validate itself."""
    from reslab import _validate

    cases = [
        (lambda: _validate.positive_int("depth", 0), ValueError, "depth must be an integer >= 1, got 0"),
        (lambda: _validate.positive_int("seed", "1", minimum=0), TypeError, "seed must be an integer >= 0, got str '1'"),
        (lambda: _validate.finite_float("alpha", NAN), ValueError, "alpha must be a finite real number, got nan"),
        (lambda: _validate.finite_float("lr", 0.0, positive=True), ValueError, "lr must be a finite number > 0, got 0.0"),
        (lambda: _validate.choice("norm", "mid", ("pre", "post")), ValueError, "norm must be one of ('pre', 'post'), got 'mid'"),
        (lambda: _validate.boolean("causal", 1), TypeError, "causal must be a bool (True or False), got int 1"),
        (lambda: _validate.int_sequence("depths", []), ValueError, "depths must be a non-empty sequence of integers >= 1, got an empty sequence"),
        (lambda: _validate.float_sequence("gains", [1.0, 0.0], positive=True), ValueError, "gains[1] must be a finite number > 0, got 0.0"),
        (lambda: _validate.choices("kinds", "plain", ("plain",)), TypeError, "kinds must be a non-empty sequence of names from ('plain',), got str 'plain'"),
        (lambda: _validate.float_pair("ylim", (2, 1), positive=True, increasing=True), ValueError,
         "ylim must be a pair of finite numbers > 0 (low, high) with low < high, got (2, 1)"),
        (lambda: _validate.float_array("x", "abc"), TypeError, "x must be a sequence of numbers, got str 'abc'"),
    ]
    for call, error, text in cases:
        with pytest.raises(error) as info:
            call()
        assert str(info.value) == text
    assert _validate.float_pair("figsize", [4, 3]) == (4.0, 3.0)
    assert _validate.choices("kinds", ("plain",), ("plain", "residual")) == ["plain"]
    assert math.isinf(_validate.float_array("y", [1.0, INF])[1])
