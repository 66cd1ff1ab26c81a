"""Plain and residual blocks for fully connected stacks.

Notation follows the book: a block maps :math:`x_l \\in \\mathbb{R}^d` to :math:`x_{l+1}`; its
*branch* is a short chain of ``layers`` linear maps with the nonlinearity :math:`\\phi` between
them. The blocks differ only in where the input is added back and where :math:`\\phi` sits:

================================  ==============================================================
class                             map (two-layer branch, ``layers=2``)
================================  ==============================================================
:class:`PlainBlock`               :math:`\\phi(W_2\\,\\phi(W_1 x + b_1) + b_2)`
:class:`ResidualLayer`            :math:`x + \\phi(W x + b)` (one layer, the analysis form)
:class:`ResidualBlock`            :math:`\\phi(x + W_2\\,\\phi(W_1 x + b_1) + b_2)` (He et al. 2015)
:class:`PreActResidualBlock`      :math:`x + W_2\\,\\phi(W_1\\,\\phi(x) + b_1) + b_2` (He et al. 2016)
:class:`ScaledResidualBlock`      :math:`x + \\alpha\\,F(x)`, :math:`F` the pre-activation branch
:class:`ProjectionResidualBlock`  :math:`\\phi(P x + W_2\\,\\phi(W_1 x + b_1) + b_2)`, widths differ
================================  ==============================================================

Every block takes ``init`` (``"default"``: PyTorch's ``nn.Linear`` initialisation, or ``"he"``:
He et al.'s :math:`\\mathcal{N}(0, 2/\\text{fan-in})` weights with zero biases) and residual
blocks take ``zero_init``, which zeroes the branch's last linear layer so that the branch
outputs exactly zero at the start.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F_

from . import _validate

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "activation_fn",
    "init_linear",
    "PlainBlock",
    "ResidualLayer",
    "ResidualBlock",
    "PreActResidualBlock",
    "ScaledResidualBlock",
    "ProjectionResidualBlock",
    "HighwayBlock",
    "TransformerBlock",
]

#: The nonlinearities a block accepts, by name.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F_.gelu,
    "identity": lambda t: t,
}
#: The initialisations a block accepts (PyTorch's default, or He et al.'s).
INITS = ("default", "he")


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The element-wise nonlinearity called ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[_validate.choice("name (of an activation)", name, ACTIVATIONS)]


def init_linear(layer: nn.Linear, init: str = "default", gain: float = 1.0) -> nn.Linear:
    """Initialise ``layer`` in place and return it.

    ``init="default"`` keeps PyTorch's initialisation (weights uniform in
    :math:`\\pm 1/\\sqrt{\\text{fan-in}}`); ``init="he"`` draws weights from
    :math:`\\mathcal{N}(0,\\,2\\,\\text{gain}^2/\\text{fan-in})` and zeroes the bias, which keeps
    the second moment of ReLU activations constant from layer to layer (He et al. 2015b).
    ``gain`` scales the weights in both cases (``gain > 0``).
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {type(layer).__name__}")
    init = _validate.choice("init", init, INITS)
    gain = _validate.finite_float("gain", gain, positive=True)
    with torch.no_grad():
        if init == "he":
            layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features))
            if layer.bias is not None:
                layer.bias.zero_()
        if gain != 1.0:
            layer.weight.mul_(gain)
    return layer


def _zero_(layer: nn.Linear) -> None:
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()


class _Block(nn.Module):
    """Shared constructor: validated width, a list of ``layers`` linear maps, an activation."""

    def __init__(self, width: int, layers: int = 2, activation: str = "relu", init: str = "default", out_width: int | None = None) -> None:
        super().__init__()
        self.width = _validate.positive_int("width", width)
        self.out_width = self.width if out_width is None else _validate.positive_int("out_width", out_width)
        self.n_layers = _validate.positive_int("layers", layers)
        self.activation = _validate.choice("activation", activation, ACTIVATIONS)
        self.init = _validate.choice("init", init, INITS)
        self.phi = ACTIVATIONS[self.activation]
        widths = [self.width] + [self.out_width] * self.n_layers
        self.linears = nn.ModuleList(init_linear(nn.Linear(a, b), self.init) for a, b in zip(widths[:-1], widths[1:]))

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return _validate.tensor("x", x, last_dim=self.width)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The branch :math:`W_k\\,\\phi(\\cdots\\phi(W_1 x + b_1)\\cdots) + b_k` (no final :math:`\\phi`)."""
        h = self.linears[0](x)
        for linear in self.linears[1:]:
            h = linear(self.phi(h))
        return h

    def zero_branch_(self) -> None:
        """Zero the branch's last linear layer in place, so that the branch outputs 0."""
        _zero_(self.linears[-1])

    def extra_repr(self) -> str:
        return f"width={self.width}, layers={self.n_layers}, activation={self.activation!r}, init={self.init!r}"


class PlainBlock(_Block):
    """A plain block :math:`x \\mapsto \\phi(\\text{branch}(x))`: ``layers`` linear maps, each followed by :math:`\\phi`.

    With ``layers=1`` it is the book's plain layer :math:`\\phi(W x + b)`.

    Args:
        width: input and output width :math:`d` (``>= 1``).
        layers: number of linear maps (``>= 1``).
        activation: one of ``"relu"``, ``"tanh"``, ``"gelu"``, ``"identity"``.
        init: ``"default"`` or ``"he"`` (see :func:`init_linear`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi(self.branch(self._check_input(x)))


class _ResidualBase(_Block):
    def __init__(self, width: int, layers: int = 2, activation: str = "relu", init: str = "default", zero_init: bool = False, **kw) -> None:
        super().__init__(width, layers, activation, init, **kw)
        if not isinstance(zero_init, bool):
            raise TypeError(f"zero_init must be a bool, got {type(zero_init).__name__}")
        if self.out_width != self.width and not isinstance(self, ProjectionResidualBlock):
            raise ValueError(
                f"out_width must equal width for a {type(self).__name__} (its shortcut adds x unchanged), "
                f"got width={self.width}, out_width={self.out_width}; use ProjectionResidualBlock to change the width"
            )
        self.zero_init = zero_init
        if zero_init:
            self.zero_branch_()


class ResidualLayer(_ResidualBase):
    """The residual layer of the analysis, :math:`x_{l+1} = x_l + \\phi(W_l x_l + b_l)`.

    Its Jacobian is :math:`I + D_l W_l` with :math:`D_l = \\operatorname{diag}(\\phi'(z_l))`.
    ``zero_init=True`` zeroes :math:`W_l` and :math:`b_l`; the layer is then the identity for any
    activation with :math:`\\phi(0) = 0`. ``layers`` is fixed at 1.
    """

    def __init__(self, width: int, activation: str = "relu", init: str = "default", zero_init: bool = False) -> None:
        super().__init__(width, 1, activation, init, zero_init)

    @property
    def linear(self) -> nn.Linear:
        """The single linear map :math:`W_l x + b_l`."""
        return self.linears[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return x + self.phi(self.linear(x))


class ResidualBlock(_ResidualBase):
    """The post-activation residual block of He et al. (2015), without batch normalisation.

    :math:`x_{l+1} = \\phi\\big(x_l + W_2\\,\\phi(W_1 x_l + b_1) + b_2\\big)`. With
    ``zero_init=True`` the branch is 0 and the block computes :math:`\\phi(x)`, which equals
    :math:`x` exactly when :math:`x \\ge 0` and :math:`\\phi` is the ReLU.

    Args:
        width: input and output width (``>= 1``).
        layers: linear maps in the branch (``>= 1``; the paper's basic block has 2).
        activation: nonlinearity name (see :data:`ACTIVATIONS`).
        init: ``"default"`` or ``"he"``.
        zero_init: zero the branch's last linear layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return self.phi(x + self.branch(x))


class PreActResidualBlock(_ResidualBase):
    """The full pre-activation block of He et al. (2016), without batch normalisation.

    :math:`x_{l+1} = x_l + W_2\\,\\phi(W_1\\,\\phi(x_l) + b_1) + b_2`: nothing follows the addition, so a
    stack computes :math:`x_L = x_l + \\sum_{i=l}^{L-1} F_i(x_i)` and, with ``zero_init=True``,
    is exactly the identity for every input.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return x + self.branch(self.phi(x))


class ScaledResidualBlock(_ResidualBase):
    """A pre-activation block whose branch is scaled: :math:`x + \\alpha\\,F(x)`.

    ``alpha = 1/sqrt(L)`` is the branch scaling that keeps the forward variance of an ``L``-block
    stack bounded; ``alpha = 0`` with ``learnable=True`` is ReZero (Bachlechner et al. 2020),
    where the network starts as the identity and learns how much of each branch to admit.

    Args:
        width: input and output width (``>= 1``).
        alpha: finite branch scale.
        learnable: make ``alpha`` a trainable parameter.
        layers, activation, init, zero_init: as for :class:`PreActResidualBlock`.
    """

    def __init__(self, width: int, alpha: float = 1.0, learnable: bool = False, layers: int = 2, activation: str = "relu", init: str = "default", zero_init: bool = False) -> None:
        super().__init__(width, layers, activation, init, zero_init)
        alpha = _validate.finite_float("alpha", alpha)
        if not isinstance(learnable, bool):
            raise TypeError(f"learnable must be a bool, got {type(learnable).__name__}")
        value = torch.tensor(alpha)
        if learnable:
            self.alpha = nn.Parameter(value)
        else:
            self.register_buffer("alpha", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return x + self.alpha * self.branch(self.phi(x))


class ProjectionResidualBlock(_ResidualBase):
    """A post-activation residual block whose shortcut changes the width.

    The three shortcut options of He et al. (2015), Table 3:

    * ``"A"``: identity with zero-padding of the extra coordinates (no parameters; needs
      ``out_width >= width``);
    * ``"B"``: a learned projection :math:`P` only when the widths differ, identity otherwise;
    * ``"C"``: a learned projection on every shortcut.

    :math:`x_{l+1} = \\phi(s(x_l) + W_2\\,\\phi(W_1 x_l + b_1) + b_2)` with :math:`s` the shortcut.
    """

    SHORTCUTS = ("A", "B", "C")

    def __init__(self, width: int, out_width: int, shortcut: str = "B", layers: int = 2, activation: str = "relu", init: str = "default", zero_init: bool = False) -> None:
        super().__init__(width, layers, activation, init, zero_init, out_width=out_width)
        self.shortcut_kind = _validate.choice("shortcut", shortcut, self.SHORTCUTS)
        if shortcut == "A" and self.out_width < self.width:
            raise ValueError(f"shortcut 'A' pads with zeros and needs out_width >= width, got width={self.width}, out_width={self.out_width}")
        needs_projection = shortcut == "C" or (shortcut == "B" and self.out_width != self.width)
        self.projection = init_linear(nn.Linear(self.width, self.out_width, bias=False), self.init) if needs_projection else None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """The shortcut path :math:`s(x)`: identity, zero-padding or projection."""
        if self.projection is not None:
            return self.projection(x)
        if self.out_width == self.width:
            return x
        return F_.pad(x, (0, self.out_width - self.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        return self.phi(self.shortcut(x) + self.branch(x))


class HighwayBlock(nn.Module):
    """A highway layer (Srivastava, Greff & Schmidhuber 2015): a gated mix of a transform and the input.

    .. math::
        y = T(x) \\odot H(x) + (1 - T(x)) \\odot x, \\qquad
        H(x) = \\phi(W_H x + b_H), \\quad T(x) = \\sigma(W_T x + b_T).

    :math:`T` is the *transform gate* and :math:`1 - T` the *carry gate*. With a negative gate
    bias :math:`b_T` the gate starts nearly closed, so a fresh block is close to the identity and a
    stack of them passes its input (and its gradient) through; the paper's advice is a negative
    initial bias, more negative for deeper stacks. Written :math:`y = x + T(x)\\odot(H(x) - x)`,
    it is a residual block whose branch is gated.

    Args:
        width: input and output width :math:`d` (``>= 1``).
        gate_bias: initial value of every entry of :math:`b_T` (finite; e.g. ``-1``, ``-2``, ``-3``).
        activation: nonlinearity :math:`\\phi` (see :data:`ACTIVATIONS`).
        init: initialisation of :math:`W_H` and :math:`W_T` (see :func:`init_linear`); the gate
            bias is then set to ``gate_bias``.
    """

    def __init__(self, width: int, gate_bias: float = -2.0, activation: str = "relu", init: str = "default") -> None:
        super().__init__()
        self.width = _validate.positive_int("width", width)
        self.gate_bias = _validate.finite_float("gate_bias", gate_bias)
        self.activation = _validate.choice("activation", activation, ACTIVATIONS)
        self.init = _validate.choice("init", init, INITS)
        self.phi = ACTIVATIONS[self.activation]
        self.transform = init_linear(nn.Linear(self.width, self.width), self.init)
        self.gate = init_linear(nn.Linear(self.width, self.width), self.init)
        with torch.no_grad():
            self.gate.bias.fill_(self.gate_bias)

    def transform_gate(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`T(x) = \\sigma(W_T x + b_T)`, the share of :math:`H(x)` in the output."""
        x = _validate.tensor("x", x, last_dim=self.width)
        return torch.sigmoid(self.gate(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _validate.tensor("x", x, last_dim=self.width)
        t = torch.sigmoid(self.gate(x))
        return x + t * (self.phi(self.transform(x)) - x)

    def extra_repr(self) -> str:
        return f"width={self.width}, gate_bias={self.gate_bias}, activation={self.activation!r}, init={self.init!r}"


class TransformerBlock(nn.Module):
    """A Transformer encoder block: self-attention and a feed-forward network, each on the residual stream.

    With :math:`A` the multi-head self-attention, :math:`M` the two-layer feed-forward network and
    :math:`\\mathrm{LN}` layer normalisation:

    * ``norm="post"`` (Vaswani et al. 2017): :math:`x \\leftarrow \\mathrm{LN}(x + A(x))`, then
      :math:`x \\leftarrow \\mathrm{LN}(x + M(x))`. The normalisation sits *on* the stream, so the
      identity path from the output back to the input passes through every LN.
    * ``norm="pre"`` (analysed by Xiong et al. 2020): :math:`x \\leftarrow x + A(\\mathrm{LN}(x))`, then
      :math:`x \\leftarrow x + M(\\mathrm{LN}(x))`. The stream itself is a clean sum, like a
      pre-activation ResNet; a model of pre-LN blocks needs one final LN before its output layer.

    Attention is written out (no ``nn.MultiheadAttention``): queries, keys and values from one
    linear map, :math:`\\mathrm{softmax}(QK^\\top/\\sqrt{d_h})V` per head (evaluated by PyTorch's
    fused :func:`torch.nn.functional.scaled_dot_product_attention`, about twice as fast on a CPU
    as the three operations written out; the tests check it against them), an output projection.
    Weights are Xavier-uniform and biases zero (``init="xavier"``, as in the analysis of Xiong
    et al.), or PyTorch's defaults (``init="default"``). No dropout.

    Args:
        d_model: width :math:`d` of the stream (``>= 1``, divisible by ``n_heads``).
        n_heads: number of attention heads (``>= 1``).
        norm: ``"pre"`` or ``"post"``.
        d_ff: hidden width of the feed-forward network (default ``4 * d_model``).
        causal: mask attention to earlier positions only.
        init: ``"xavier"`` or ``"default"``.

    Input and output: ``(B, N, d_model)``.
    """

    NORMS = ("pre", "post")
    TRANSFORMER_INITS = ("xavier", "default")
    #: ``None``, or ``S`` inside a stack of models (:func:`reslab.train.stack_models`): inputs are
    #: then ``(S, B, N, d_model)``.
    members: int | None = None

    def __init__(self, d_model: int, n_heads: int = 4, norm: str = "pre", d_ff: int | None = None, causal: bool = False, init: str = "xavier") -> None:
        super().__init__()
        self.d_model = _validate.positive_int("d_model", d_model)
        self.n_heads = _validate.positive_int("n_heads", n_heads)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads, got d_model={self.d_model}, n_heads={self.n_heads}")
        self.norm = _validate.choice("norm", norm, self.NORMS)
        self.d_ff = 4 * self.d_model if d_ff is None else _validate.positive_int("d_ff", d_ff)
        if not isinstance(causal, bool):
            raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
        self.causal = causal
        self.init = _validate.choice("init", init, self.TRANSFORMER_INITS)
        d = self.d_model
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ff1 = nn.Linear(d, self.d_ff)
        self.ff2 = nn.Linear(self.d_ff, d)
        if self.init == "xavier":
            with torch.no_grad():
                for layer in (self.qkv, self.proj, self.ff1, self.ff2):
                    nn.init.xavier_uniform_(layer.weight)
                    layer.bias.zero_()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention :math:`A(x)` (no residual, no normalisation)."""
        *lead, n, d = x.shape  # lead: (B,), or (S, B) in a stack of models
        h, dh = self.n_heads, d // self.n_heads
        q, k, v = self.qkv(x).reshape(-1, n, 3, h, dh).permute(2, 0, 3, 1, 4)  # each (B, h, N, dh)
        # softmax(q k^T / sqrt(dh)) v, with -inf above the diagonal of the scores if causal
        out = F_.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, h, N, dh)
        return self.proj(out.transpose(1, 2).reshape(*lead, n, d))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward network :math:`M(x) = W_2\\,\\mathrm{GELU}(W_1 x + b_1) + b_2`."""
        return self.ff2(F_.gelu(self.ff1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _validate.tensor("x", x, ndim=3 if self.members is None else 4, last_dim=self.d_model)
        if self.norm == "post":
            x = self.ln1(x + self.attention(x))
            return self.ln2(x + self.feed_forward(x))
        x = x + self.attention(self.ln1(x))
        return x + self.feed_forward(self.ln2(x))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, norm={self.norm!r}, d_ff={self.d_ff}, causal={self.causal}, init={self.init!r}"
