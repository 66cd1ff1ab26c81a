"""Probes: what the signal and its gradient do, layer by layer.

* :func:`layer_norms` records the norm of every block's input :math:`x_l` and of the error
  signal :math:`\\delta_l = \\partial\\mathcal{L}/\\partial x_l` from ONE forward and ONE backward
  pass, with hooks (no pass per layer).
* :func:`block_jacobian` and :func:`analytic_jacobian` give a block's Jacobian through
  ``torch.func`` and from the formula :math:`I + D_l W_l`.
* :func:`random_jacobian_lognorms` draws products of random ReLU-layer Jacobians.

Norms are "root mean square over the batch of per-example Euclidean norms",
:math:`\\sqrt{\\tfrac1B\\sum_b \\lVert v_b\\rVert^2}`, computed in float64 so that a float32
signal of size 1e30 is reported, not overflowed. Non-finite values are reported, never
raised: a 1,000-block stack that overflows is a result to show, not a crash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from . import _validate
from .blocks import PlainBlock, ResidualLayer

__all__ = [
    "LayerNorms",
    "batch_norm_of",
    "layer_norms",
    "block_jacobian",
    "analytic_jacobian",
    "random_jacobian_lognorms",
]


def batch_norm_of(v: torch.Tensor) -> float:
    """Root mean square over the batch (first axis) of per-example Euclidean norms, in float64.

    A 1-D tensor counts as one example. ``inf``/``nan`` entries give ``inf``/``nan``.
    """
    return _rms_norm(_validate.tensor("v", v))


def _rms_norm(v: torch.Tensor) -> float:
    # sqrt(mean_b |v_b|^2) = |V|_F / sqrt(B): one float64 reduction, no copy (the probe's hot path)
    total = float(torch.linalg.vector_norm(v.detach(), dtype=torch.float64))
    return total if v.ndim <= 1 else total / math.sqrt(v.shape[0])


@dataclass
class LayerNorms:
    """What :func:`layer_norms` measured for a stack of :math:`L` blocks.

    Attributes:
        activations: :math:`\\lVert x_l\\rVert` for :math:`l = 0..L` (``L + 1`` floats).
        gradients: :math:`\\lVert\\delta_l\\rVert` for :math:`l = 0..L`.
        loss: the scalar whose gradient was taken.
    """

    activations: list[float]
    gradients: list[float]
    loss: float
    depth: int = field(init=False)

    def __post_init__(self) -> None:
        self.depth = len(self.activations) - 1

    @property
    def finite(self) -> bool:
        """True when every recorded norm is finite."""
        return all(math.isfinite(v) for v in self.activations + self.gradients)

    def nonfinite_layers(self) -> dict[str, list[int]]:
        """Indices :math:`l` whose activation or gradient norm is ``inf`` or ``nan``."""
        return {
            "activations": [i for i, v in enumerate(self.activations) if not math.isfinite(v)],
            "gradients": [i for i, v in enumerate(self.gradients) if not math.isfinite(v)],
        }

    def report(self) -> str:
        """One line for a notebook: depth, input and output norms, input gradient, finiteness."""
        from .repro import fmt

        bad = self.nonfinite_layers()
        note = "all finite" if self.finite else f"non-finite at {len(bad['activations'])} activation and {len(bad['gradients'])} gradient layers"
        return (
            f"L={self.depth}: |x_0|={fmt(self.activations[0])}, |x_L|={fmt(self.activations[-1])}, "
            f"|delta_0|={fmt(self.gradients[0])}, |delta_L|={fmt(self.gradients[-1])} ({note})"
        )


def _blocks_of(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a stack of blocks), got {type(model).__name__}")
    blocks = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    if not blocks:
        raise ValueError("model must contain at least one block, got an empty nn.Sequential")
    return blocks


def layer_norms(model: nn.Module, x: torch.Tensor, grad_output: torch.Tensor | None = None, seed: int = 0) -> LayerNorms:
    """Per-block activation and gradient norms from one forward and one backward pass.

    The stack ``model`` (an ``nn.Sequential`` of blocks, or a single block) is run on ``x``
    block by block, keeping every :math:`x_l`; a single call of :func:`torch.autograd.grad`
    (one reverse-mode pass from :math:`x_L`) then returns every :math:`\\delta_l` at once.

    The backward pass starts from :math:`\\delta_L` = ``grad_output`` (same shape as the
    output). By default it is a fixed standard normal draw from ``seed``, which makes the
    measurement a pure product of Jacobians; the recorded "loss" is then
    :math:`\\langle x_L, \\delta_L\\rangle`, whose gradient is exactly ``grad_output``.

    Args:
        model: stack of blocks.
        x: input batch, shape ``(B, d)`` or ``(d,)``.
        grad_output: :math:`\\delta_L`, or ``None`` for a seeded normal draw.
        seed: seed of the default ``grad_output`` (``>= 0``).
    """
    blocks = _blocks_of(model)
    x = _validate.tensor("x", x, ndim=(1, 2))
    seed = _validate.positive_int("seed", seed, minimum=0)
    # forward: apply the blocks in turn (what nn.Sequential does) and keep every x_l
    xs = [x.detach().clone().requires_grad_(True)]
    for block in blocks:
        xs.append(block(xs[-1]))
    out = xs[-1]
    if grad_output is None:
        gen = torch.Generator().manual_seed(seed)
        grad_output = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    else:
        grad_output = _validate.tensor("grad_output", grad_output)
        if grad_output.shape != out.shape:
            raise ValueError(f"grad_output must have the output's shape {tuple(out.shape)}, got {tuple(grad_output.shape)}")
    loss = float((out.detach().double() * grad_output.double()).sum())
    # backward: ONE pass of reverse mode from x_L, asking for the gradient at every x_l
    # (parameter gradients are not needed, so none are computed)
    deltas = torch.autograd.grad(out, xs, grad_outputs=grad_output, allow_unused=True)
    acts = [_rms_norm(t) for t in xs]
    grads = [0.0 if d is None else _rms_norm(d) for d in deltas]
    return LayerNorms(acts, grads, loss)


def block_jacobian(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian :math:`\\partial\\,\\text{block}(x)/\\partial x` at one input ``x`` of shape ``(d,)``.

    Computed by reverse mode with :func:`torch.func.jacrev`; shape ``(d_out, d)``.
    """
    if not isinstance(block, nn.Module):
        raise TypeError(f"block must be a torch.nn.Module, got {type(block).__name__}")
    x = _validate.tensor("x", x, ndim=1)
    return torch.func.jacrev(block)(x)


def analytic_jacobian(block: PlainBlock | ResidualLayer, x: torch.Tensor) -> torch.Tensor:
    """The Jacobian from the formula: :math:`D W` for a one-layer plain block, :math:`I + D W` for a :class:`~reslab.blocks.ResidualLayer`.

    :math:`D = \\operatorname{diag}(\\phi'(W x + b))`; :math:`\\phi'` is evaluated element-wise by a
    forward-mode derivative along the all-ones direction, which for an element-wise
    :math:`\\phi` is exactly the diagonal of its Jacobian.
    """
    if not (isinstance(block, ResidualLayer) or (isinstance(block, PlainBlock) and block.n_layers == 1)):
        raise TypeError(f"block must be a ResidualLayer or a PlainBlock with layers=1, got {type(block).__name__}")
    x = _validate.tensor("x", x, ndim=1, last_dim=block.width)
    linear = block.linears[0]
    with torch.no_grad():
        z = linear(x)
        _, slopes = torch.func.jvp(block.phi, (z,), (torch.ones_like(z),))
        dw = slopes[:, None] * linear.weight
        if isinstance(block, ResidualLayer):
            dw = dw + torch.eye(block.width, dtype=dw.dtype)
    return dw


def random_jacobian_lognorms(depth: int, width: int, draws: int, seed: int = 0, gain: float = 1.0) -> torch.Tensor:
    """Natural log of :math:`\\lVert J_L\\cdots J_1 v\\rVert` for ``draws`` random ReLU stacks.

    Each draw is a fresh plain ReLU stack of ``depth`` layers of width ``width`` with He weights
    :math:`\\mathcal{N}(0, 2\\,\\text{gain}^2/\\text{width})` and no bias, run on a standard normal input;
    :math:`J_l = D_l W_l` is its layer Jacobian and :math:`v` a random unit vector. With
    ``gain=1`` every factor preserves :math:`\\lVert v\\rVert^2` *in expectation*, yet the log-norm
    drifts down and spreads out with depth. Returns a float64 tensor of shape ``(draws,)``.
    """
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    draws = _validate.positive_int("draws", draws)
    seed = _validate.positive_int("seed", seed, minimum=0)
    gain = _validate.finite_float("gain", gain, positive=True)
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(draws, width, 1, generator=gen, dtype=torch.float64)
    v = torch.randn(draws, width, 1, generator=gen, dtype=torch.float64)
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    log_scale = torch.zeros(draws, dtype=torch.float64)
    # The gain is factored out: W = gain * W~ has the ReLU masks of W~ (gain > 0), so the product
    # is gain^depth times that of the gain-1 stack, added as depth * log(gain) at the end. Any
    # gain then gives a finite answer, where gain * W~ itself would overflow or underflow.
    std = math.sqrt(2.0 / width)
    for _ in range(depth):
        w = torch.randn(draws, width, width, generator=gen, dtype=torch.float64) * std
        z = w @ h
        mask = (z > 0).to(torch.float64)
        h = torch.relu(z)
        v = mask * (w @ v)
        norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
        log_scale += torch.log(norm[:, 0, 0])
        v = v / norm.clamp_min(1e-300)
        hn = torch.linalg.vector_norm(h, dim=1, keepdim=True).clamp_min(1e-300)
        h = h / hn * math.sqrt(width)  # rescaling h leaves the ReLU masks unchanged
    return log_scale + depth * math.log(gain)
from .paths import branch_factors, enumerate_paths, input_gradient, path_length_decomposition, sample_path_norms, lesion_accuracies, lesion_study, compare_fixes  # noqa: E402,F401  (chapter 3: reslab.paths)
