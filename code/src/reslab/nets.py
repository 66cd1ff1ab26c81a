"""Network builders: deep stacks of one kind of block."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from . import _validate
from .blocks import (
    ACTIVATIONS,
    INITS,
    PlainBlock,
    PreActResidualBlock,
    ResidualBlock,
    ResidualLayer,
    ScaledResidualBlock,
)

__all__ = ["KINDS", "mlp_stack", "Stack"]

#: The block kinds :func:`mlp_stack` can build, with the block class of each.
KINDS = {
    "plain": PlainBlock,
    "residual": ResidualBlock,
    "preact": PreActResidualBlock,
    "scaled": ScaledResidualBlock,
    "residual_layer": ResidualLayer,
}


class Stack(nn.Sequential):
    """An ``nn.Sequential`` of blocks that remembers how it was built.

    ``stack.kind``, ``stack.depth`` and ``stack.width`` describe it; iterating over it yields
    the blocks, so ``stack[l]`` is block :math:`l` and maps :math:`x_l` to :math:`x_{l+1}`.
    """

    def __init__(self, blocks: list[nn.Module], kind: str, width: int) -> None:
        if isinstance(blocks, (str, bytes, nn.Module)) or not isinstance(blocks, Iterable):
            raise TypeError(f"blocks must be a non-empty list of nn.Module blocks, got {type(blocks).__name__}")
        blocks = list(blocks)
        if not blocks:
            raise ValueError("blocks must be a non-empty list of nn.Module blocks, got an empty list")
        if not isinstance(kind, str):
            raise TypeError(f"kind must be a str naming the kind of block, got {type(kind).__name__} {kind!r}")
        if not kind:
            raise ValueError("kind must be a non-empty str naming the kind of block, got ''")
        width = _validate.positive_int("width", width)
        for i, block in enumerate(blocks):
            if not isinstance(block, nn.Module):
                raise TypeError(f"blocks[{i}] must be an nn.Module, got {type(block).__name__}")
            block_width = getattr(block, "width", width)
            if block_width != width:
                raise ValueError(f"blocks[{i}] has width {block_width}, but the stack's width is {width}: every block of blocks must have width {width}")
        super().__init__(*blocks)
        self.kind = kind
        self.depth = len(blocks)
        self.width = width


def mlp_stack(
    kind: str,
    depth: int,
    width: int,
    *,
    layers: int = 2,
    activation: str = "relu",
    init: str = "default",
    zero_init: bool = False,
    alpha: float | None = None,
    learnable_alpha: bool = False,
    gain: float = 1.0,
) -> Stack:
    """Build ``depth`` blocks of one ``kind``, all of width ``width``.

    Args:
        kind: ``"plain"``, ``"residual"`` (post-activation, 2015), ``"preact"`` (2016),
            ``"scaled"`` (:math:`x + \\alpha F(x)`) or ``"residual_layer"`` (:math:`x + \\phi(Wx+b)`).
        depth: number of blocks :math:`L` (``>= 1``).
        width: width :math:`d` of every block (``>= 1``).
        layers: linear maps per block (``>= 1``; ignored by ``"residual_layer"``, which has one).
        activation: nonlinearity name, one of :data:`reslab.blocks.ACTIVATIONS`.
        init: ``"default"`` (PyTorch) or ``"he"``.
        zero_init: zero each residual branch's last layer (not accepted for ``"plain"``,
            which would then output a constant).
        alpha: branch scale for ``"scaled"``; defaults to :math:`1/\\sqrt{L}`.
        learnable_alpha: make ``alpha`` trainable (ReZero when ``alpha=0``).
        gain: multiply every weight by this factor after initialisation (``> 0``); ``gain``
            is the per-layer gain knob of chapter 1's explorer.

    Returns:
        a :class:`Stack` of the blocks.
    """
    kind = _validate.choice("kind", kind, KINDS)
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    layers = _validate.positive_int("layers", layers)
    _validate.choice("activation", activation, ACTIVATIONS)
    _validate.choice("init", init, INITS)
    gain = _validate.finite_float("gain", gain, positive=True)
    if not isinstance(zero_init, bool):
        raise TypeError(f"zero_init must be a bool, got {type(zero_init).__name__}")
    learnable_alpha = _validate.boolean("learnable_alpha", learnable_alpha)
    if zero_init and kind == "plain":
        raise ValueError("zero_init=True is only accepted for residual kinds, got kind='plain'")
    if alpha is not None and kind != "scaled":
        raise ValueError(f"alpha is only accepted for kind='scaled', got kind={kind!r}")
    if learnable_alpha and kind != "scaled":
        raise ValueError(f"learnable_alpha=True is only accepted for kind='scaled', got kind={kind!r}")
    if kind == "scaled":
        alpha = depth ** -0.5 if alpha is None else _validate.finite_float("alpha", alpha)

    blocks: list[nn.Module] = []
    for _ in range(depth):
        if kind == "plain":
            block = PlainBlock(width, layers, activation, init)
        elif kind == "residual_layer":
            block = ResidualLayer(width, activation, init, zero_init)
        elif kind == "scaled":
            block = ScaledResidualBlock(width, alpha, learnable_alpha, layers, activation, init, zero_init)
        else:
            block = KINDS[kind](width, layers, activation, init, zero_init)
        if gain != 1.0:
            for linear in block.linears:
                linear.weight.data.mul_(gain)
        blocks.append(block)
    return Stack(blocks, kind, width)


# The small conv nets for 8x8 images live in :mod:`reslab.conv`; re-exported here so that
# every network builder can be found in one place.
from .conv import ConvNet, conv_net  # noqa: E402,F401
