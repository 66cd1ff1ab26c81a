"""Paths through a residual stack: the backward pass expanded, lesions, and what the identity does not fix.

For a stack of :class:`~reslab.blocks.ResidualLayer` blocks,
:math:`x_{l+1} = x_l + \\phi(W_l x_l + b_l)`, the backward step is
:math:`\\delta_l = \\delta_{l+1} + A_l\\,\\delta_{l+1}` with :math:`A_l = W_l^\\top D_l` and
:math:`D_l = \\operatorname{diag}(\\phi'(z_l))`. Multiplying the :math:`L` steps out,

.. math::

    \\delta_0 = \\prod_{l=0}^{L-1} (I + A_l)\\,\\delta_L
             = \\sum_{S \\subseteq \\{0,\\dots,L-1\\}} \\Big(\\prod_{l \\in S} A_l\\Big)\\,\\delta_L ,

a sum over :math:`2^L` *paths* (the factors of a path are taken in increasing order of
:math:`l`). The *length* of a path is :math:`|S|`, the number of branches it goes through.

* :func:`enumerate_paths` computes every one of the :math:`2^L` contributions (brute force,
  :math:`L \\le 20`).
* :func:`path_length_decomposition` computes, for every length :math:`k`, the sum
  :math:`c_k` of the contributions of all :math:`\\binom{L}{k}` paths of that length: the
  coefficient of :math:`t^k` in :math:`\\prod_l (I + t\\,A_l)\\,\\delta_L`. A dynamic program over
  the layers, :math:`c^{(l)}_k = c^{(l+1)}_k + A_l\\,c^{(l+1)}_{k-1}`, needs
  :math:`L(L+1)/2` matrix-vector products instead of :math:`2^L`.
* :func:`sample_path_norms` estimates the norm of a single path of each length by sampling
  paths, as Veit et al. (2016) did.
* :func:`lesion_study` trains plain and residual classifiers on the 8x8 digits and deletes one
  block at a time.
* :func:`compare_fixes` and :data:`FIXES` measure forward and backward norms of 1,000-block
  stacks with and without the known fixes (branch scaling, zero-init, ReZero, normalisation);
  :func:`train_deep` trains such a stack; :func:`variance_growth_per_block` summarises the
  forward growth.
* :func:`path_profile` and :func:`path_profile_figure` draw the chapter's explorer frames.

Everything here runs on the CPU in float64 when asked, so that the path sums can be compared
with autograd to 1e-10.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral

import torch
from torch import nn

from . import _validate
from .blocks import ACTIVATIONS, INITS, PreActResidualBlock, ResidualLayer, init_linear
from .data import Digits, load_digits
from .nets import KINDS, Stack, mlp_stack
from .probes import LayerNorms, layer_norms

__all__ = [
    "BranchFactors",
    "branch_factors",
    "input_gradient",
    "residual_layer_stack",
    "PathEnumeration",
    "enumerate_paths",
    "PathDecomposition",
    "path_length_decomposition",
    "PathNormSample",
    "sample_path_norms",
    "path_length_counts",
    "path_length_share",
    "dominant_lengths",
    "BlockClassifier",
    "block_classifier",
    "accuracy",
    "lesion_accuracies",
    "LesionStudy",
    "lesion_study",
    "LESION_INITS",
    "MAX_ENUMERATION_DEPTH",
    "gradient_norm_sweep",
    "PreNormResidualBlock",
    "FIXES",
    "fix_stack",
    "compare_fixes",
    "train_deep",
    "variance_growth_per_block",
    "path_profile",
    "path_profile_figure",
]

#: Largest depth :func:`enumerate_paths` accepts (:math:`2^{20}` paths).
MAX_ENUMERATION_DEPTH = 20


# ---------------------------------------------------------------------------------------------
# The factors A_l = W_l^T D_l of a stack of residual layers
# ---------------------------------------------------------------------------------------------


@dataclass
class BranchFactors:
    """What the backward pass of a :class:`~reslab.blocks.ResidualLayer` stack multiplies by.

    Attributes:
        weights: :math:`W_l` for :math:`l = 0..L-1`, each of shape ``(d, d)``.
        slopes: :math:`\\phi'(z_l)`, the diagonals of :math:`D_l`, shape ``(L, B, d)``.
        output: the stack's output :math:`x_L`, shape ``(B, d)``.
    """

    weights: list[torch.Tensor]
    slopes: torch.Tensor
    output: torch.Tensor

    @property
    def depth(self) -> int:
        """Number of blocks :math:`L`."""
        return len(self.weights)

    def apply(self, layer: int, v: torch.Tensor) -> torch.Tensor:
        """:math:`A_l v = W_l^\\top D_l v` for a batch of row vectors ``v`` of shape ``(..., B, d)``."""
        return (v * self.slopes[layer]) @ self.weights[layer]


def _residual_layers(stack: nn.Module) -> list[ResidualLayer]:
    if not isinstance(stack, nn.Module):
        raise TypeError(f"stack must be an nn.Sequential of reslab.blocks.ResidualLayer, got {type(stack).__name__}")
    blocks = list(stack.children()) if isinstance(stack, nn.Sequential) else [stack]
    if not blocks:
        raise ValueError("stack must contain at least one ResidualLayer, got an empty nn.Sequential")
    for i, block in enumerate(blocks):
        if not isinstance(block, ResidualLayer):
            raise TypeError(f"stack must contain only reslab.blocks.ResidualLayer blocks, got {type(block).__name__} at position {i}")
    return blocks


def _as_batch(stack_blocks: list[ResidualLayer], x: torch.Tensor) -> torch.Tensor:
    width = stack_blocks[0].width
    x = _validate.tensor("x", x, ndim=(1, 2), last_dim=width)
    dtype = stack_blocks[0].linear.weight.dtype
    if x.dtype != dtype:
        raise TypeError(f"x must have the stack's dtype {dtype}, got {x.dtype}")
    return x.detach()[None, :] if x.ndim == 1 else x.detach()


def branch_factors(stack: nn.Module, x: torch.Tensor) -> BranchFactors:
    """Run ``stack`` on ``x`` and record :math:`W_l` and the slopes :math:`\\phi'(z_l)` of every block.

    Args:
        stack: an ``nn.Sequential`` of :class:`~reslab.blocks.ResidualLayer` (or one of them).
        x: input, shape ``(B, d)`` or ``(d,)``, of the stack's dtype.

    The slopes come from a forward-mode derivative of :math:`\\phi` along the all-ones
    direction, which for an element-wise :math:`\\phi` is the diagonal of its Jacobian and
    agrees with autograd's convention at kinks (the ReLU's slope at 0 is 0).
    """
    blocks = _residual_layers(stack)
    h = _as_batch(blocks, x)
    weights, slopes = [], []
    with torch.no_grad():
        for block in blocks:
            z = block.linear(h)
            _, s = torch.func.jvp(block.phi, (z,), (torch.ones_like(z),))
            weights.append(block.linear.weight.detach())
            slopes.append(s)
            h = h + block.phi(z)
    return BranchFactors(weights, torch.stack(slopes), h)


def _check_delta_seed(delta: torch.Tensor | None, seed: int) -> None:
    """The checks of ``delta`` and ``seed`` that need no forward pass, done before it."""
    if delta is not None:
        _validate.tensor("delta", delta)
    _validate.positive_int("seed", seed, minimum=0)


def _delta(out: torch.Tensor, delta: torch.Tensor | None, seed: int) -> torch.Tensor:
    """The output perturbation; ``delta`` and ``seed`` were checked by :func:`_check_delta_seed`."""
    if delta is None:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(out.shape, generator=gen, dtype=out.dtype)
    if delta.ndim == 1:
        delta = delta[None, :]
    if delta.shape != out.shape:
        raise ValueError(f"delta must have the output's shape {tuple(out.shape)}, got {tuple(delta.shape)}")
    if delta.dtype != out.dtype:
        raise TypeError(f"delta must have the stack's dtype {out.dtype}, got {delta.dtype}")
    return delta.detach()


def input_gradient(stack: nn.Module, x: torch.Tensor, delta: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Autograd's :math:`\\delta_0 = (\\partial x_L/\\partial x_0)^\\top \\delta_L`, the reference for the path sums.

    ``delta`` is :math:`\\delta_L` (shape of the output); ``None`` draws it from ``seed`` exactly as
    :func:`enumerate_paths` and :func:`path_length_decomposition` do. Returns shape ``(B, d)``.
    """
    blocks = _residual_layers(stack)
    _check_delta_seed(delta, seed)
    x0 = _as_batch(blocks, x).clone().requires_grad_(True)
    out = x0
    for block in blocks:
        out = block(out)
    d = _delta(out.detach(), delta, seed)
    (grad,) = torch.autograd.grad(out, x0, grad_outputs=d)
    return grad


def residual_layer_stack(
    depth: int,
    width: int,
    *,
    alpha: float = 1.0,
    init: str = "default",
    activation: str = "relu",
    dtype: torch.dtype = torch.float64,
    seed: int | None = None,
) -> Stack:
    """A stack of :class:`~reslab.blocks.ResidualLayer` with every :math:`W_l, b_l` multiplied by ``alpha``.

    For the ReLU (positively homogeneous) each block then computes exactly
    :math:`x + \\alpha\\,\\phi(W_l x + b_l)`: ``alpha`` is the branch scale of the explorer.

    Args:
        depth: number of blocks :math:`L` (``>= 1``).
        width: width :math:`d` (``>= 1``).
        alpha: branch scale (finite, ``>= 0``).
        init: ``"default"`` or ``"he"``.
        activation: nonlinearity name.
        dtype: ``torch.float64`` (default, for exact comparisons) or ``torch.float32``.
        seed: if given, seed the global generator before building.
    """
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    alpha = _validate.finite_float("alpha", alpha, minimum=0.0)
    init = _validate.choice("init", init, INITS)
    activation = _validate.choice("activation", activation, ACTIVATIONS)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {type(dtype).__name__} {dtype!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if seed is not None:
        torch.manual_seed(_validate.positive_int("seed", seed, minimum=0))
    stack = mlp_stack("residual_layer", depth, width, activation=activation, init=init)
    with torch.no_grad():
        for block in stack:
            block.linear.weight.mul_(alpha)
            block.linear.bias.mul_(alpha)
    return stack.to(dtype)


# ---------------------------------------------------------------------------------------------
# Brute force: all 2^L paths
# ---------------------------------------------------------------------------------------------


@dataclass
class PathEnumeration:
    """Every path's contribution to :math:`\\delta_0`, from :func:`enumerate_paths`.

    Attributes:
        contributions: shape ``(2^L, B, d)``; row ``i`` is :math:`(\\prod_{l\\in S_i} A_l)\\,\\delta_L`.
        masks: shape ``(2^L, L)``, ``masks[i, l]`` is True when block ``l`` is in :math:`S_i`.
    """

    contributions: torch.Tensor
    masks: torch.Tensor

    @property
    def depth(self) -> int:
        """Number of blocks :math:`L`."""
        return self.masks.shape[1]

    @property
    def lengths(self) -> torch.Tensor:
        """Path lengths :math:`|S_i|`, shape ``(2^L,)``."""
        return self.masks.sum(dim=1)

    def total(self) -> torch.Tensor:
        """The sum of all contributions: :math:`\\delta_0`, shape ``(B, d)``."""
        return self.contributions.sum(dim=0)

    def by_length(self) -> torch.Tensor:
        """Sum of the contributions of each length :math:`k = 0..L`, shape ``(L+1, B, d)``."""
        out = torch.zeros((self.depth + 1, *self.contributions.shape[1:]), dtype=self.contributions.dtype)
        return out.index_add_(0, self.lengths, self.contributions)

    def paths(self) -> list[tuple[int, ...]]:
        """The blocks of each path, in the order of ``contributions``."""
        return [tuple(int(l) for l in torch.nonzero(m).flatten()) for m in self.masks]

    def norms(self) -> torch.Tensor:
        """Norm of each contribution (root mean square over the batch), shape ``(2^L,)``."""
        c = self.contributions.to(torch.float64)
        return torch.sqrt((c * c).sum(dim=-1).mean(dim=-1))


def enumerate_paths(stack: nn.Module, x: torch.Tensor, delta: torch.Tensor | None = None, seed: int = 0) -> PathEnumeration:
    """Brute force: the contribution of each of the :math:`2^L` paths, one by one.

    Paths are grown from the output side: after visiting blocks :math:`L-1, \\dots, l` the table
    holds the :math:`2^{L-l}` products over the subsets of :math:`\\{l,\\dots,L-1\\}`; block
    :math:`l-1` doubles it (skip the block, or multiply by :math:`A_{l-1}`). The work and memory
    grow as :math:`2^L`, which is why ``L`` is limited to :data:`MAX_ENUMERATION_DEPTH`.

    Args:
        stack: stack of :class:`~reslab.blocks.ResidualLayer` with ``L <= 20`` blocks.
        x: input ``(B, d)`` or ``(d,)``.
        delta: :math:`\\delta_L`, or ``None`` for a standard normal draw from ``seed``.
        seed: seed of the default ``delta`` (``>= 0``).
    """
    blocks = _residual_layers(stack)
    if len(blocks) > MAX_ENUMERATION_DEPTH:
        raise ValueError(f"stack depth must be <= {MAX_ENUMERATION_DEPTH} for brute-force enumeration (2^L paths), got {len(blocks)}")
    _check_delta_seed(delta, seed)
    factors = branch_factors(stack, x)
    d = _delta(factors.output, delta, seed)
    depth = factors.depth
    contributions = d[None]
    masks = torch.zeros((1, depth), dtype=torch.bool)
    with torch.no_grad():
        for layer in reversed(range(depth)):
            contributions = torch.cat([contributions, factors.apply(layer, contributions)])
            taken = masks.clone()
            taken[:, layer] = True
            masks = torch.cat([masks, taken])
    return PathEnumeration(contributions, masks)


# ---------------------------------------------------------------------------------------------
# Exact sums by path length: a dynamic program on the coefficients of prod (I + t A_l)
# ---------------------------------------------------------------------------------------------


@dataclass
class PathDecomposition:
    """Sums of path contributions by length, from :func:`path_length_decomposition`.

    Attributes:
        coefficients: shape ``(L+1, B, d)``; ``coefficients[k]`` is :math:`c_k`, the sum of the
            contributions of the :math:`\\binom{L}{k}` paths of length :math:`k`.
        matvecs: number of (batched) products :math:`A_l v` the dynamic program used.
    """

    coefficients: torch.Tensor
    matvecs: int

    @property
    def depth(self) -> int:
        """Number of blocks :math:`L`."""
        return self.coefficients.shape[0] - 1

    def total(self) -> torch.Tensor:
        """:math:`\\sum_k c_k = \\delta_0`, shape ``(B, d)``."""
        return self.coefficients.sum(dim=0)

    def norms(self) -> torch.Tensor:
        """:math:`\\lVert c_k\\rVert` for :math:`k = 0..L` (root mean square over the batch), float64."""
        c = self.coefficients.to(torch.float64)
        return torch.sqrt((c * c).sum(dim=-1).mean(dim=-1))

    def counts(self) -> list[int]:
        """:math:`\\binom{L}{k}`, the number of paths of each length (exact integers)."""
        return path_length_counts(self.depth)


def path_length_decomposition(stack: nn.Module, x: torch.Tensor, delta: torch.Tensor | None = None, seed: int = 0) -> PathDecomposition:
    """:math:`c_k` for every path length :math:`k`, exactly, in :math:`O(L^2)` matrix-vector work.

    :math:`c_k` is the coefficient of :math:`t^k` in :math:`\\prod_{l=0}^{L-1}(I + t\\,A_l)\\,\\delta_L`.
    Writing :math:`c^{(l)}_k` for the same coefficient of the partial product over blocks
    :math:`l..L-1`, :math:`c^{(L)} = (\\delta_L, 0, \\dots)` and

    .. math:: c^{(l)}_k = c^{(l+1)}_k + A_l\\, c^{(l+1)}_{k-1},

    since a path through blocks :math:`l..L-1` either skips block :math:`l` or enters it. Only
    :math:`c^{(l+1)}_0, \\dots, c^{(l+1)}_{L-l-1}` can be non-zero, so the whole program costs
    :math:`\\sum_l (L-l) = L(L+1)/2` products :math:`A_l v`. Arguments as for :func:`enumerate_paths`
    (any depth).
    """
    _residual_layers(stack)
    _check_delta_seed(delta, seed)
    factors = branch_factors(stack, x)
    d = _delta(factors.output, delta, seed)
    depth = factors.depth
    coeffs = torch.zeros((depth + 1, *d.shape), dtype=d.dtype)
    coeffs[0] = d
    matvecs = 0
    with torch.no_grad():
        for step, layer in enumerate(reversed(range(depth))):
            live = step + 1  # c_0 .. c_{live-1} may be non-zero before this block
            entered = factors.apply(layer, coeffs[:live])
            coeffs[1 : live + 1] += entered
            matvecs += live
    return PathDecomposition(coeffs, matvecs)


# ---------------------------------------------------------------------------------------------
# Path statistics: Binomial counts, sampled per-path norms, dominant lengths
# ---------------------------------------------------------------------------------------------


def path_length_counts(depth: int) -> list[int]:
    """:math:`\\binom{L}{k}` for :math:`k = 0..L`: how many of the :math:`2^L` paths have each length."""
    depth = _validate.positive_int("depth", depth)
    return [math.comb(depth, k) for k in range(depth + 1)]


def path_length_share(depth: int, lo: int, hi: int) -> float:
    """Exact share of the :math:`2^L` paths whose length lies in ``lo..hi`` (inclusive).

    Path lengths are Binomial(:math:`L`, 1/2): each block is either entered or skipped. The sum
    is done in exact rational arithmetic and rounded once.
    """
    depth = _validate.positive_int("depth", depth)
    lo = _validate.positive_int("lo", lo, minimum=0)
    hi = _validate.positive_int("hi", hi, minimum=0)
    if lo > hi or hi > depth:
        raise ValueError(f"lo and hi must satisfy 0 <= lo <= hi <= depth={depth}, got lo={lo}, hi={hi}")
    return float(Fraction(sum(math.comb(depth, k) for k in range(lo, hi + 1)), 2**depth))


def dominant_lengths(weights: Sequence[float] | torch.Tensor, share: float = 0.9) -> tuple[int, int]:
    """The shortest window ``(lo, hi)`` of lengths whose ``weights`` hold at least ``share`` of the total.

    ``weights[k]`` is a non-negative amount per length (e.g. :math:`\\lVert c_k\\rVert`); ties go to
    the leftmost window. Non-finite weights raise ``ValueError``.
    """
    if not isinstance(weights, torch.Tensor):
        weights = _validate.float_array("weights", weights)
    w = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if w.numel() == 0:
        raise ValueError("weights must be a non-empty sequence of non-negative numbers")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    share = _validate.finite_float("share", share, positive=True)
    if share > 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    total = float(w.sum())
    if total == 0:
        raise ValueError("weights must not all be zero")
    prefix = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(w, 0)])
    n = w.numel()
    need = share * total * (1 - 1e-12)
    best = (0, n - 1)
    for lo in range(n):
        # smallest hi with prefix[hi+1] - prefix[lo] >= need
        hi = int(torch.searchsorted(prefix, prefix[lo] + need, right=False)) - 1
        if hi < lo:
            hi = lo
        if hi >= n:
            break
        if hi - lo < best[1] - best[0]:
            best = (lo, hi)
    return best


@dataclass
class PathNormSample:
    """Norms of randomly sampled single paths, from :func:`sample_path_norms`.

    Attributes:
        lengths: the path lengths sampled, shape ``(K,)``.
        norms: norm of each sampled path's contribution, shape ``(K, samples)``.
    """

    lengths: torch.Tensor
    norms: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Mean norm of one path of each length, shape ``(K,)``."""
        return self.norms.mean(dim=1)

    def total_estimate(self, depth: int) -> torch.Tensor:
        """Veit et al.'s estimate of the gradient carried by each length: :math:`\\binom{L}{k}` times the mean per-path norm.

        It adds norms, so it ignores cancellation between paths: compare it with the exact
        :math:`\\lVert c_k\\rVert` of :func:`path_length_decomposition`.
        """
        counts = torch.tensor([float(math.comb(depth, int(k))) for k in self.lengths], dtype=torch.float64)
        return counts * self.mean


def sample_path_norms(
    stack: nn.Module,
    x: torch.Tensor,
    delta: torch.Tensor | None = None,
    *,
    samples: int = 16,
    lengths: Sequence[int] | None = None,
    seed: int = 0,
) -> PathNormSample:
    """Norm of single paths of each length, from ``samples`` random paths per length.

    For each length :math:`k` (default ``0..L``) draw ``samples`` subsets :math:`S` of size
    :math:`k` uniformly and compute :math:`\\lVert(\\prod_{l\\in S} A_l)\\,\\delta_L\\rVert`; all
    subsets are pushed through the blocks together (one batched product per block).

    Args:
        stack, x, delta: as for :func:`enumerate_paths` (any depth).
        samples: paths per length (``>= 1``).
        lengths: lengths to sample (each in ``0..L``), default all.
        seed: seeds ``delta`` (when ``None``) and the choice of paths.
    """
    depth = len(_residual_layers(stack))
    _check_delta_seed(delta, seed)
    samples = _validate.positive_int("samples", samples)
    ks = list(range(depth + 1)) if lengths is None else _validate.int_sequence("lengths", lengths, minimum=0)
    if max(ks) > depth:
        raise ValueError(f"lengths must lie in 0..{depth}, got {max(ks)}")
    factors = branch_factors(stack, x)
    d = _delta(factors.output, delta, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ranks = torch.rand(len(ks) * samples, depth, generator=gen).argsort(dim=1).argsort(dim=1)
    k_of_row = torch.tensor(ks).repeat_interleave(samples)
    masks = ranks < k_of_row[:, None]  # a uniformly random subset of size k per row
    v = d[None].expand(masks.shape[0], *d.shape).clone()
    with torch.no_grad():
        for layer in reversed(range(depth)):
            rows = masks[:, layer]
            if rows.any():
                v[rows] = factors.apply(layer, v[rows])
    c = v.to(torch.float64)
    norms = torch.sqrt((c * c).sum(dim=-1).mean(dim=-1)).reshape(len(ks), samples)
    return PathNormSample(torch.tensor(ks), norms)


# ---------------------------------------------------------------------------------------------
# Lesion study on the 8x8 digits
# ---------------------------------------------------------------------------------------------


class BlockClassifier(nn.Module):
    """``stem -> blocks -> head``: a linear stem to width :math:`d`, a stack of blocks, a linear head.

    ``forward(x, skip=())`` runs the blocks whose index is not in ``skip``: deleting block
    :math:`l` of a trained network feeds :math:`x_l` straight into block :math:`l+1`.
    """

    def __init__(self, blocks: nn.Sequential, in_features: int, classes: int, init: str = "default") -> None:
        super().__init__()
        if not isinstance(blocks, nn.Sequential):
            raise TypeError(f"blocks must be a non-empty nn.Sequential of blocks, got {type(blocks).__name__}")
        if len(blocks) == 0:
            raise ValueError("blocks must be a non-empty nn.Sequential of blocks, got an empty one")
        width = getattr(blocks, "width", None) or getattr(blocks[0], "width", None)
        if width is None:
            raise ValueError("blocks must have a 'width' attribute (a reslab Stack or reslab blocks)")
        in_features = _validate.positive_int("in_features", in_features)
        classes = _validate.positive_int("classes", classes)
        init = _validate.choice("init", init, INITS)
        self.stem = init_linear(nn.Linear(in_features, width), init)
        self.blocks = blocks
        self.head = init_linear(nn.Linear(width, classes), init)

    def forward(self, x: torch.Tensor, skip: Sequence[int] = ()) -> torch.Tensor:
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i not in skip:
                h = block(h)
        return self.head(h)


def block_classifier(kind: str, depth: int, width: int, *, in_features: int = 64, classes: int = 10, init: str = "he") -> BlockClassifier:
    """A :class:`BlockClassifier` whose blocks are ``depth`` one-layer blocks of ``kind``.

    ``kind="plain"`` gives :math:`\\phi(W x + b)` blocks, ``kind="residual"`` gives
    :math:`x + \\phi(W x + b)` (:class:`~reslab.blocks.ResidualLayer`): the two have exactly the
    same parameters and differ only by the skip connection.
    """
    kind = _validate.choice("kind", kind, ("plain", "residual"))
    init = _validate.choice("init", init, INITS)
    stack = mlp_stack("plain" if kind == "plain" else "residual_layer", depth, width, layers=1, init=init)
    return BlockClassifier(stack, in_features, classes, init=init)


def _flat_digits(data: Digits | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_digits(shape="flat") if data is None else data
    if not isinstance(data, Digits):
        raise TypeError(f"data must be a reslab.data.Digits split, got {type(data).__name__}")
    flat = [data.x_train, data.x_test]
    if any(t.ndim != 2 for t in flat):
        raise ValueError("data must be a flat split (load_digits(shape='flat')), got image-shaped tensors")
    return data.x_train, data.y_train, data.x_test, data.y_test


def _check_xy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(model, BlockClassifier):
        raise TypeError(f"model must be a BlockClassifier, got {type(model).__name__}")
    _validate.tensor("x", x, ndim=2, last_dim=model.stem.in_features)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of class labels, got {type(y).__name__}")
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"y must hold one label per row of x ({x.shape[0]}), got shape {tuple(y.shape)}")


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, skip: Sequence[int] = ()) -> float:
    """Fraction of ``x`` that ``model`` (a :class:`BlockClassifier`) classifies as ``y``, with blocks ``skip`` deleted."""
    _check_xy(model, x, y)
    if isinstance(skip, (str, bytes)) or not isinstance(skip, Iterable):
        raise TypeError(f"skip must be a sequence of block indices (integers), got {type(skip).__name__} {skip!r}")
    n_blocks = len(model.blocks)
    for i in skip:
        if isinstance(i, bool) or not isinstance(i, Integral):
            raise TypeError(f"skip must be a sequence of block indices (integers), got {type(i).__name__} {i!r}")
        if not 0 <= i < n_blocks:
            raise ValueError(f"skip must hold block indices in 0..{n_blocks - 1}, got {i}")
    with torch.no_grad():
        pred = model(x, skip=tuple(skip)).argmax(dim=1)
    return float((pred == y).double().mean())


def lesion_accuracies(model: BlockClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Accuracy with each single block deleted: entry ``l`` is the accuracy without block ``l``."""
    _check_xy(model, x, y)
    return torch.tensor([accuracy(model, x, y, skip=(i,)) for i in range(len(model.blocks))], dtype=torch.float64)


#: Default initialisation of each family in :func:`lesion_study`.
LESION_INITS = {"plain": "he", "residual": "default"}


@dataclass
class LesionStudy:
    """Result of :func:`lesion_study` for one kind of network.

    Attributes:
        kind: ``"plain"`` or ``"residual"``.
        losses: training losses, shape ``(S, steps + 1)``.
        baseline: test accuracy of each trained network, shape ``(S,)``.
        deleted: test accuracy with block ``l`` deleted, shape ``(S, L)``.
    """

    kind: str
    losses: torch.Tensor
    baseline: torch.Tensor
    deleted: torch.Tensor

    @property
    def mean_drop(self) -> float:
        """Mean over seeds and blocks of (baseline - accuracy with one block deleted)."""
        return float((self.baseline[:, None] - self.deleted).mean())

    @property
    def worst(self) -> float:
        """Lowest accuracy after deleting any single block, over all seeds."""
        return float(self.deleted.min())


def lesion_study(
    depth: int = 16,
    width: int = 32,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int | None = 128,
    data: Digits | None = None,
    kinds: Sequence[str] = ("plain", "residual"),
    inits: Mapping[str, str] | None = None,
) -> dict[str, LesionStudy]:
    """Train plain and residual classifiers of the same depth, then delete one block at a time.

    Every network is a :func:`block_classifier` trained with Adam on cross-entropy, batched over
    ``seeds`` with :func:`reslab.train.train_seeds`; the test accuracy is measured with every
    single block deleted in turn.

    Args:
        depth: blocks per network (``>= 1``).
        width: width (``>= 1``).
        seeds: initialisation seeds.
        steps, lr, batch_size: training budget.
        data: a flat :class:`reslab.data.Digits` split; default ``load_digits(shape="flat")``.
        kinds: subset of ``("plain", "residual")``.
        inits: initialisation per kind; default :data:`LESION_INITS` (each family with the
            initialisation under which it trains at this depth: He for plain layers, PyTorch's
            default for residual layers, whose smaller branches keep the stream from growing).
    """
    from .train import train_seeds

    kinds = _validate.choices("kinds", kinds, ("plain", "residual"))
    if inits is not None and not isinstance(inits, Mapping):
        raise TypeError(f"inits must be a mapping of kind -> init name, got {type(inits).__name__} {inits!r}")
    inits = dict(LESION_INITS if inits is None else inits)
    for kind in kinds:
        _validate.choice(f"inits[{kind!r}]", inits.get(kind, "he"), INITS)

    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    steps = _validate.positive_int("steps", steps, minimum=0)
    lr = _validate.finite_float("lr", lr, positive=True)
    if batch_size is not None:
        batch_size = _validate.positive_int("batch_size", batch_size)
    x_tr, y_tr, x_te, y_te = _flat_digits(data)
    out: dict[str, LesionStudy] = {}
    for kind in kinds:
        result = train_seeds(
            lambda s, kind=kind: block_classifier(kind, depth, width, in_features=x_tr.shape[1], classes=int(y_tr.max()) + 1, init=inits.get(kind, "he")),
            seeds, x_tr, y_tr, steps=steps, lr=lr, loss="cross_entropy", batch_size=batch_size,
        )
        base = torch.tensor([accuracy(m, x_te, y_te) for m in result.models], dtype=torch.float64)
        deleted = torch.stack([lesion_accuracies(m, x_te, y_te) for m in result.models])
        out[kind] = LesionStudy(kind, result.losses, base, deleted)
    return out


# ---------------------------------------------------------------------------------------------
# Gradient norms per layer, and what the identity does not fix
# ---------------------------------------------------------------------------------------------


def _input(batch: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))


def gradient_norm_sweep(
    kinds: Sequence[str] = ("plain", "residual"),
    depths: Sequence[int] = (10, 100, 1000),
    inits: Sequence[str] = ("default", "he"),
    *,
    width: int = 128,
    batch: int = 8,
    seed: int = 0,
) -> dict[tuple[str, str, int], LayerNorms]:
    """Per-layer activation and gradient norms of two-layer-block stacks at initialisation.

    For every ``(kind, init, depth)`` a fresh :func:`reslab.nets.mlp_stack` of width ``width``
    (built after seeding with ``seed``) is probed with :func:`reslab.probes.layer_norms` on a
    standard normal batch of ``batch`` inputs (one forward and one backward pass, float32).
    """
    kinds = _validate.choices("kinds", kinds, KINDS)
    depths = _validate.int_sequence("depths", depths)
    inits = _validate.choices("inits", inits, INITS)
    width = _validate.positive_int("width", width)
    batch = _validate.positive_int("batch", batch)
    seed = _validate.positive_int("seed", seed, minimum=0)
    out = {}
    for kind in kinds:
        for init in inits:
            for depth in depths:
                torch.manual_seed(seed)
                stack = mlp_stack(kind, depth, width, init=init)
                out[(kind, init, depth)] = layer_norms(stack, _input(batch, width, seed), seed=seed)
    return out


class PreNormResidualBlock(PreActResidualBlock):
    """A pre-activation block with a layer normalisation in front of the branch: :math:`x + F(\\mathrm{LN}(x))`.

    :math:`F(u) = W_2\\,\\phi(W_1\\,\\phi(u) + b_1) + b_2` as in
    :class:`~reslab.blocks.PreActResidualBlock`; :math:`\\mathrm{LN}` has no learned gain or bias.
    The branch sees an input of fixed size whatever :math:`\\lVert x\\rVert` is, so each block adds a
    bounded amount and the stack's output grows like :math:`\\sqrt{L}`, not exponentially.
    """

    def __init__(self, width: int, layers: int = 2, activation: str = "relu", init: str = "default") -> None:
        super().__init__(width, layers, activation, init)
        self.norm = nn.LayerNorm(self.width, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return x + self.branch(self.phi(self.norm(x)))


def _prenorm_stack(depth: int, width: int, init: str) -> Stack:
    return Stack([PreNormResidualBlock(width, init=init) for _ in range(depth)], "prenorm", width)


#: The stacks compared in "what the identity does not fix", by name, each with (description, builder(depth, width, init)).
FIXES: dict[str, tuple[str, Callable[[int, int, str], Stack]]] = {
    "post-act, no fix": ("x + F(x) then ReLU (He et al. 2015)", lambda L, d, i: mlp_stack("residual", L, d, init=i)),
    "pre-act, no fix": ("x + F(x), nothing after the sum (He et al. 2016)", lambda L, d, i: mlp_stack("preact", L, d, init=i)),
    "branch scale 1/sqrt(L)": ("x + F(x)/sqrt(L)", lambda L, d, i: mlp_stack("scaled", L, d, init=i)),
    "zero-init last layer": ("x + F(x), last layer of F zeroed", lambda L, d, i: mlp_stack("preact", L, d, init=i, zero_init=True)),
    "ReZero": ("x + a F(x), learnable a = 0 at start", lambda L, d, i: mlp_stack("scaled", L, d, init=i, alpha=0.0, learnable_alpha=True)),
    "pre-LN": ("x + F(LN(x))", _prenorm_stack),
}


def fix_stack(name: str, depth: int, width: int, init: str = "default", seed: int | None = None) -> Stack:
    """Build the stack called ``name`` in :data:`FIXES` (seeding the global generator first if ``seed`` is given)."""
    name = _validate.choice("name", name, FIXES)
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    init = _validate.choice("init", init, INITS)
    if seed is not None:
        torch.manual_seed(_validate.positive_int("seed", seed, minimum=0))
    return FIXES[name][1](depth, width, init)


def compare_fixes(
    names: Sequence[str] | None = None,
    *,
    depth: int = 1000,
    width: int = 128,
    init: str = "default",
    batch: int = 8,
    seed: int = 0,
) -> dict[str, LayerNorms]:
    """Per-layer norms of every stack in :data:`FIXES` (or ``names``), all of the same depth, width and init.

    One forward and one backward pass each (:func:`reslab.probes.layer_norms`), same input batch.
    """
    names = list(FIXES) if names is None else _validate.choices("names", names, FIXES)
    depth = _validate.positive_int("depth", depth)
    init = _validate.choice("init", init, INITS)
    batch = _validate.positive_int("batch", batch)
    seed = _validate.positive_int("seed", seed, minimum=0)
    x = _input(batch, _validate.positive_int("width", width), seed)
    return {n: layer_norms(fix_stack(n, depth, width, init, seed=seed), x, seed=seed) for n in names}


def train_deep(
    name: str = "branch scale 1/sqrt(L)",
    *,
    depth: int = 1000,
    width: int = 32,
    init: str = "default",
    steps: int = 8,
    lr: float = 3e-3,
    optimizer: str = "adam",
    examples: int = 256,
    data: Digits | None = None,
    seed: int = 0,
):
    """Train a :class:`BlockClassifier` whose blocks are the :data:`FIXES` stack ``name`` on the digits.

    ``data`` is a flat :class:`reslab.data.Digits` split (default ``load_digits(shape="flat")``).
    Full-batch steps on the first ``examples`` training digits (cross-entropy, ``optimizer``
    ``"adam"`` or ``"sgd"``); a 1,000-block stack costs about as much per step as its Python
    overhead, so the budget is a few steps. Returns ``(result, model)``: the
    :class:`reslab.train.TrainResult` (loss before every step and after the last) and the trained
    model.
    """
    from .train import OPTIMIZERS, train

    name = _validate.choice("name", name, FIXES)
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    init = _validate.choice("init", init, INITS)
    steps = _validate.positive_int("steps", steps, minimum=0)
    lr = _validate.finite_float("lr", lr, positive=True)
    optimizer = _validate.choice("optimizer", optimizer, OPTIMIZERS)
    examples = _validate.positive_int("examples", examples)
    seed = _validate.positive_int("seed", seed, minimum=0)
    x_tr, y_tr, _, _ = _flat_digits(data)
    x, y = x_tr[:examples], y_tr[:examples]
    stack = fix_stack(name, depth, width, init, seed=seed)
    model = BlockClassifier(stack, x.shape[1], int(y_tr.max()) + 1, init=init)
    result = train(model, x, y, steps=steps, lr=lr, loss="cross_entropy", optimizer=optimizer)
    return result, model


def variance_growth_per_block(activations: Sequence[float], blocks: int | None = None) -> float:
    """Geometric mean over blocks of :math:`\\lVert x_{l+1}\\rVert^2 / \\lVert x_l\\rVert^2`.

    ``activations`` are the norms :math:`\\lVert x_l\\rVert`, :math:`l = 0..L` (e.g.
    ``LayerNorms.activations``). Only the first ``blocks`` blocks are used (default all); the
    count stops before the first non-finite or zero norm, so an overflowing stack still reports
    its growth rate before the overflow. Returns ``nan`` when no block is usable.
    """
    acts = _validate.float_array("activations", activations)
    if acts.ndim != 1:
        raise ValueError(f"activations must be a 1-D sequence of norms (l = 0..L), got shape {acts.shape}")
    acts = [float(a) for a in acts]
    if len(acts) < 2:
        raise ValueError(f"activations must hold at least 2 norms (l = 0..L), got {len(acts)}")
    n = len(acts) - 1 if blocks is None else min(_validate.positive_int("blocks", blocks), len(acts) - 1)
    last = 0
    while last < n and math.isfinite(acts[last + 1]) and acts[last + 1] > 0 and acts[0] > 0:
        last += 1
    if last == 0:
        return math.nan
    return (acts[last] / acts[0]) ** (2.0 / last)


def path_profile(depth: int, alpha: float, *, width: int = 32, batch: int = 4, init: str = "he", seed: int = 0) -> tuple[LayerNorms, PathDecomposition]:
    """Per-layer norms and the exact path-length decomposition of one :func:`residual_layer_stack` (float64).

    The same input batch (standard normal, from ``seed``) and the same :math:`\\delta_L` (from
    ``seed``) feed both measurements, so ``norms.gradients[0]`` equals the norm of
    ``decomposition.total()``.
    """
    batch = _validate.positive_int("batch", batch)
    stack = residual_layer_stack(depth, width, alpha=alpha, init=init, seed=seed)
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return layer_norms(stack, x, seed=seed), path_length_decomposition(stack, x, seed=seed)


def path_profile_figure(depth: int, alpha: float, *, width: int = 32, batch: int = 4, init: str = "he", seed: int = 0, share: float = 0.9):
    """Two panels for the chapter's explorer: per-layer gradient norms and :math:`\\lVert c_k\\rVert` by path length.

    The right panel shades the shortest window of lengths holding ``share`` of
    :math:`\\sum_k \\lVert c_k\\rVert` (:func:`dominant_lengths`) and draws the Binomial path
    counts on a second axis. Returns the matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    from .plots import KIND_COLORS, PALETTE, log_line

    share = _validate.finite_float("share", share, positive=True)
    if share > 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    norms, dec = path_profile(depth, alpha, width=width, batch=batch, init=init, seed=seed)
    ck = dec.norms()
    lo, hi = dominant_lengths(ck, share)
    # a fixed layout (no constrained layout) halves the rendering time of the explorer's frames
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 3.0), layout="none")
    fig.subplots_adjust(left=0.09, right=0.88, bottom=0.16, top=0.9, wspace=0.45)
    log_line(ax1, range(depth + 1), norms.gradients, label=r"$\|\delta_l\|$", color=KIND_COLORS["residual"], marker=".", markersize=3)
    ax1.set_xlabel("layer $l$ (0 = input)")
    ax1.set_ylabel("gradient norm")
    ax1.set_title(f"L = {depth}, alpha = {alpha:g}: per-layer gradient")
    ax1.legend(loc="best")
    log_line(ax2, range(depth + 1), ck.tolist(), label=r"$\|c_k\|$ (exact)", color=PALETTE["orange"], marker=".", markersize=3)
    ax2.axvspan(lo - 0.5, hi + 0.5, color=PALETTE["orange"], alpha=0.15, label=f"{share:.0%} of the sum: k = {lo}-{hi}")
    ax2.set_xlabel("path length $k$ (blocks entered)")
    ax2.set_ylabel("norm of the sum over paths")
    ax2.set_title("gradient by path length")
    twin = ax2.twinx()
    twin.plot(range(depth + 1), [c / 2**depth for c in dec.counts()], color=PALETTE["black"], linestyle=":", linewidth=1, label="share of paths")
    twin.set_ylabel("share of the $2^L$ paths")
    twin.grid(False)
    h1, l1 = ax2.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="lower center", fontsize=7)
    return fig
