"""Small convolutional networks for 8x8 images: plain and residual, with the same widths.

The blocks mirror the fully connected ones of :mod:`reslab.blocks`, with 3x3 convolutions
(stride 1, zero padding 1, so the image size never changes) in place of linear maps and no
batch normalisation:

===========================  ========================================================
class                        map (two convolutions per block)
===========================  ========================================================
:class:`ConvPlainBlock`      :math:`\\phi(K_2 * \\phi(K_1 * x + b_1) + b_2)`
:class:`ConvResidualBlock`   :math:`\\phi(x + K_2 * \\phi(K_1 * x + b_1) + b_2)` (He et al. 2015)
:class:`ConvPreActBlock`     :math:`x + K_2 * \\phi(K_1 * \\phi(x) + b_1) + b_2` (He et al. 2016)
===========================  ========================================================

:func:`conv_net` stacks them between a stem convolution (input channels to ``channels``) and a
linear classifier head, and counts depth the way He et al. do: the number of weight layers,
``depth = 2 + 2 * blocks`` (stem, two convolutions per block, head). A plain and a residual
net of the same ``depth`` and ``channels`` have exactly the same parameters; only the
shortcut differs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate
from .blocks import ACTIVATIONS, INITS

__all__ = ["CONV_KINDS", "HEADS", "init_conv", "ConvPlainBlock", "ConvResidualBlock", "ConvPreActBlock", "ConvNet", "conv_net"]

HEADS = ("flatten", "pool")


def init_conv(layer: nn.Conv2d | nn.Linear, init: str = "default") -> nn.Module:
    """Initialise a convolution (or the linear head) in place and return it.

    ``"default"`` keeps PyTorch's initialisation; ``"he"`` draws weights from
    :math:`\\mathcal{N}(0, 2/\\text{fan-in})` (fan-in = in-channels x kernel area) and zeroes
    the bias (He et al. 2015b).
    """
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"layer must be a torch.nn.Conv2d or torch.nn.Linear, got {type(layer).__name__}")
    init = _validate.choice("init", init, INITS)
    if init == "he":
        fan_in = layer.weight[0].numel()
        with torch.no_grad():
            layer.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            if layer.bias is not None:
                layer.bias.zero_()
    return layer


def _input_ndim(module: nn.Module) -> tuple[int, ...]:
    """Accepted input ranks: ``(C, H, W)`` or ``(N, C, H, W)``; ``(S, N, C, H, W)`` inside a
    stack of ``S`` models (:func:`reslab.train.stack_models` sets ``members``)."""
    return (3, 4) if module.members is None else (5,)


class _ConvBlock(nn.Module):
    """Shared constructor: ``layers`` 3x3 convolutions ``channels -> channels``."""

    #: ``None``, or ``S`` inside a stack of models (inputs then carry a leading member axis).
    members: int | None = None

    def __init__(self, channels: int, layers: int = 2, activation: str = "relu", init: str = "default") -> None:
        super().__init__()
        self.channels = _validate.positive_int("channels", channels)
        self.n_layers = _validate.positive_int("layers", layers)
        self.activation = _validate.choice("activation", activation, ACTIVATIONS)
        self.init = _validate.choice("init", init, INITS)
        self.phi = ACTIVATIONS[self.activation]
        self.convs = nn.ModuleList(init_conv(nn.Conv2d(self.channels, self.channels, 3, padding=1), self.init) for _ in range(self.n_layers))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        _validate.tensor("x", x, ndim=_input_ndim(self))
        if x.shape[-3] != self.channels:
            raise ValueError(f"x must have {self.channels} channels (shape (N, {self.channels}, H, W)), got shape {tuple(x.shape)}")
        return x

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`K_k * \\phi(\\cdots\\phi(K_1 * x + b_1)\\cdots) + b_k` (no final :math:`\\phi`)."""
        h = self.convs[0](x)
        for conv in self.convs[1:]:
            h = conv(self.phi(h))
        return h

    def zero_branch_(self) -> None:
        """Zero the last convolution of the branch in place, so that the branch outputs 0."""
        with torch.no_grad():
            self.convs[-1].weight.zero_()
            self.convs[-1].bias.zero_()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, layers={self.n_layers}, activation={self.activation!r}, init={self.init!r}"


class ConvPlainBlock(_ConvBlock):
    """``layers`` 3x3 convolutions, each followed by :math:`\\phi`; no shortcut.

    Args:
        channels: input and output channels (``>= 1``).
        layers: convolutions in the block (``>= 1``).
        activation: nonlinearity name (see :data:`reslab.blocks.ACTIVATIONS`).
        init: ``"default"`` or ``"he"`` (see :func:`init_conv`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi(self.branch(self._check_input(x)))


class _ConvResidualBase(_ConvBlock):
    def __init__(self, channels: int, layers: int = 2, activation: str = "relu", init: str = "default", zero_init: bool = False) -> None:
        super().__init__(channels, layers, activation, init)
        if not isinstance(zero_init, bool):
            raise TypeError(f"zero_init must be a bool, got {type(zero_init).__name__}")
        self.zero_init = zero_init
        if zero_init:
            self.zero_branch_()


class ConvResidualBlock(_ConvResidualBase):
    """Post-activation residual block (He et al. 2015, without batch normalisation).

    :math:`x_{l+1} = \\phi(x_l + K_2 * \\phi(K_1 * x_l + b_1) + b_2)`. With ``zero_init=True``
    it computes :math:`\\phi(x)`: exactly :math:`x` for non-negative inputs and the ReLU.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return self.phi(x + self.branch(x))


class ConvPreActBlock(_ConvResidualBase):
    """Full pre-activation residual block (He et al. 2016, without batch normalisation).

    :math:`x_{l+1} = x_l + K_2 * \\phi(K_1 * \\phi(x_l) + b_1) + b_2`; with ``zero_init=True``
    it is exactly the identity for every input.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return x + self.branch(self.phi(x))


#: Block kinds :func:`conv_net` can build.
CONV_KINDS = {"plain": ConvPlainBlock, "residual": ConvResidualBlock, "preact": ConvPreActBlock}


class ConvNet(nn.Module):
    """Stem convolution, a stack of conv blocks, and a linear classifier.

    Built by :func:`conv_net`. ``net.stem`` maps the input channels to ``channels`` (then
    :math:`\\phi`), ``net.blocks`` is an ``nn.Sequential`` of blocks, ``net.head`` maps the
    final features to class scores (logits). ``features(x)`` returns the blocks' output.
    """

    #: ``None``, or ``S`` inside a stack of models (inputs then carry a leading member axis).
    members: int | None = None

    def __init__(self, kind: str, blocks: int, channels: int, *, in_channels: int, image_size: int, classes: int, activation: str, init: str, zero_init: bool, head: str) -> None:
        super().__init__()
        kind = _validate.choice("kind", kind, CONV_KINDS)
        blocks = _validate.positive_int("blocks", blocks, minimum=0)
        channels = _validate.positive_int("channels", channels)
        in_channels = _validate.positive_int("in_channels", in_channels)
        image_size = _validate.positive_int("image_size", image_size)
        classes = _validate.positive_int("classes", classes)
        activation = _validate.choice("activation", activation, ACTIVATIONS)
        init = _validate.choice("init", init, INITS)
        head = _validate.choice("head", head, HEADS)
        zero_init = _validate.boolean("zero_init", zero_init)
        if zero_init and kind == "plain":
            raise ValueError("zero_init=True is only accepted for residual kinds, got kind='plain'")
        self.kind, self.channels, self.head_kind = kind, channels, head
        self.in_channels, self.image_size = in_channels, image_size
        self.depth = 2 + 2 * blocks
        self.phi = ACTIVATIONS[activation]
        self.stem = init_conv(nn.Conv2d(in_channels, channels, 3, padding=1), init)
        block_cls = CONV_KINDS[kind]
        made = [block_cls(channels, 2, activation, init) if kind == "plain" else block_cls(channels, 2, activation, init, zero_init) for _ in range(blocks)]
        self.blocks = nn.Sequential(*made)
        head_in = channels * image_size * image_size if head == "flatten" else channels
        self.head = init_conv(nn.Linear(head_in, classes), init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The output of the last block (before the head), shape ``(N, channels, H, W)``."""
        _validate.tensor("x", x, ndim=_input_ndim(self))
        if tuple(x.shape[-3:]) != (self.in_channels, self.image_size, self.image_size):
            s = self.image_size
            raise ValueError(f"x must have shape (N, {self.in_channels}, {s}, {s}), got {tuple(x.shape)}")
        return self.blocks(self.phi(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = h.flatten(-3) if self.head_kind == "flatten" else h.mean(dim=(-2, -1))
        return self.head(h)


def conv_net(
    kind: str,
    depth: int,
    channels: int = 8,
    *,
    in_channels: int = 1,
    image_size: int = 8,
    classes: int = 10,
    activation: str = "relu",
    init: str = "he",
    zero_init: bool = False,
    head: str = "flatten",
) -> ConvNet:
    """A plain or residual conv net of ``depth`` weight layers for small square images.

    ``depth = 2 + 2 * blocks``: one stem convolution, ``(depth - 2) / 2`` blocks of two 3x3
    convolutions, one linear head; so ``depth`` is even, and ``depth=2`` has no blocks (the
    plain and residual nets are then the same network). No batch normalisation.

    Args:
        kind: ``"plain"``, ``"residual"`` (post-activation, 2015) or ``"preact"`` (2016).
        depth: weight layers, an even integer ``>= 2``.
        channels: channels of every block (``>= 1``).
        in_channels: channels of the input images (``>= 1``; 1 for the digits).
        image_size: height and width of the input images (``>= 1``; 8 for the digits).
        classes: number of outputs (``>= 1``).
        activation: nonlinearity name (see :data:`reslab.blocks.ACTIVATIONS`).
        init: ``"he"`` (default) or ``"default"`` (PyTorch's).
        zero_init: zero the last convolution of every residual branch (residual kinds only).
        head: ``"flatten"`` (linear map of all features) or ``"pool"`` (global average pool,
            then a linear map, as in ResNets for ImageNet).
    """
    kind = _validate.choice("kind", kind, CONV_KINDS)
    depth = _validate.positive_int("depth", depth, minimum=2)
    if depth % 2:
        raise ValueError(f"depth must be an even integer >= 2 (stem + 2 per block + head), got {depth}")
    # ConvNet checks every other argument, under the same names.
    return ConvNet(kind, (depth - 2) // 2, channels, in_channels=in_channels, image_size=image_size, classes=classes, activation=activation, init=init, zero_init=zero_init, head=head)
