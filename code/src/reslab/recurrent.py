"""Recurrent cells written from their equations, unrolling, and gradient-through-time probes.

The cells keep PyTorch's parameter layout (``weight_ih`` of shape ``(G*H, D)``, ``weight_hh`` of
shape ``(G*H, H)``, ``bias_ih`` and ``bias_hh`` of shape ``(G*H,)``, the ``G`` gate blocks stacked
in PyTorch's order), so ``cell.load_state_dict(torch.nn.LSTMCell(D, H).state_dict())`` copies a
PyTorch cell and the two can be compared output for output. Write
:math:`a^{(k)}_t = W_{ik} x_t + b_{ik} + W_{hk} h_{t-1} + b_{hk}` for the pre-activation of gate
:math:`k` and :math:`\\sigma` for the logistic sigmoid.

======================  =======================================================================
cell                    update
======================  =======================================================================
:class:`RNNCell`        :math:`h_t = \\tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`
:class:`LSTMCell`       :math:`c_t = f_t \\odot c_{t-1} + i_t \\odot g_t`, :math:`h_t = o_t \\odot \\tanh(c_t)`
                        with :math:`i, f, o = \\sigma(a^{(i)}), \\sigma(a^{(f)}), \\sigma(a^{(o)})` and
                        :math:`g = \\tanh(a^{(g)})`; ``forget_gate=False`` fixes :math:`f_t = 1`
                        (the 1997 cell: :math:`c_t = c_{t-1} + i_t\\odot g_t`)
:class:`GRUCell`        :math:`h_t = z_t \\odot h_{t-1} + (1 - z_t) \\odot n_t` (Cho et al. 2014 and
                        PyTorch; ``convention="chung"`` swaps :math:`z` and :math:`1-z`), with
                        :math:`r, z = \\sigma(a^{(r)}), \\sigma(a^{(z)})` and
                        :math:`n_t = \\tanh(W_{in} x_t + b_{in} + r_t \\odot (W_{hn} h_{t-1} + b_{hn}))`
======================  =======================================================================

A cell maps ``(x, state)`` to the next state; the LSTM's state is the pair ``(h, c)``, the
others' state is ``h``. :func:`unroll` runs a cell over a batch-first sequence ``(B, T, D)``.
:func:`stack_cells` turns ``M`` cells of one kind into an *ensemble*: one cell whose parameters
carry a leading axis of size ``M``, unrolled for all members at once by broadcasting (the
members never interact, so training the ensemble on the sum of the members' losses with Adam
trains each member exactly as it would be trained alone, up to float rounding).

Through time, the backward pass multiplies the per-step state Jacobians
:math:`J_t = \\partial s_t/\\partial s_{t-1}`: for the vanilla RNN
:math:`\\operatorname{diag}(1 - h_t^2)\\,W_{hh}`; for the LSTM the direct path
:math:`c_{t-1}\\to c_t` contributes :math:`\\operatorname{diag}(f_t)`. Each cell's
``step_jacobian`` gives :math:`J_t` in closed form (checked against :func:`torch.func.jacrev` in
the tests); :func:`gradient_through_time` multiplies them, and :func:`carry_retention` follows
the direct path alone.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from . import _validate

__all__ = [
    "CELLS",
    "PARTS",
    "RecurrentCell",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "make_cell",
    "stack_cells",
    "unroll",
    "final_states",
    "set_spectral_radius_",
    "set_carry_bias_",
    "hold_state_",
    "step_jacobians",
    "gradient_through_time",
    "carry_retention",
]

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """:math:`x W^\\top + b`, broadcasting over a leading ensemble axis of ``weight`` and ``bias``."""
    return torch.matmul(x, weight.transpose(-1, -2)) + bias.unsqueeze(-2)


class RecurrentCell(nn.Module):
    """Base class of the cells: ``n_gates`` stacked gate blocks of height ``hidden_size``, PyTorch's layout.

    Holds ``weight_ih`` ``(G*H, D)``, ``weight_hh`` ``(G*H, H)``, ``bias_ih`` and ``bias_hh``
    ``(G*H,)``, initialised like PyTorch's cells; subclasses write the update from their equations.
    ``members`` is ``None`` for one cell and ``M`` for an ensemble built by :func:`stack_cells`.
    """

    n_gates = 1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = _validate.positive_int("input_size", input_size)
        self.hidden_size = _validate.positive_int("hidden_size", hidden_size)
        #: ``None`` for one cell; ``M`` for an ensemble built by :func:`stack_cells`.
        self.members: int | None = None
        g, h = self.n_gates * self.hidden_size, self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, h))
        self.bias_ih = nn.Parameter(torch.empty(g))
        self.bias_hh = nn.Parameter(torch.empty(g))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's initialisation: every entry uniform in :math:`\\pm 1/\\sqrt{H}`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound)

    # -- state handling -------------------------------------------------------------------
    @property
    def state_size(self) -> int:
        """Length of the flattened state (``H``, or ``2H`` for the LSTM's ``(h, c)``)."""
        return self.hidden_size

    def init_state(self, batch: int, dtype: torch.dtype | None = None) -> State:
        """The zero state for ``batch`` sequences (with a leading ``M`` axis for an ensemble)."""
        batch = _validate.positive_int("batch", batch)
        lead = () if self.members is None else (self.members,)
        return torch.zeros(*lead, batch, self.hidden_size, dtype=dtype or self.weight_hh.dtype)

    def hidden(self, state: State) -> torch.Tensor:
        """The output :math:`h_t` carried in ``state``."""
        return state

    def pack(self, state: State) -> torch.Tensor:
        """The state as one tensor ``(..., state_size)``."""
        return state

    def unpack(self, flat: torch.Tensor) -> State:
        """Inverse of :meth:`pack`."""
        return flat

    def _check(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        if self.members is not None:
            raise TypeError("an ensemble from stack_cells runs through unroll(), not step by step")
        x = _validate.tensor("x", x, ndim=2, last_dim=self.input_size)
        if state is None:
            return x, self.init_state(x.shape[0], x.dtype)
        is_lstm = isinstance(self, LSTMCell)
        if is_lstm and (not isinstance(state, tuple) or len(state) != 2):
            raise TypeError("state must be a pair (h, c) of tensors of shape (B, hidden_size) for an LSTMCell")
        if not is_lstm and isinstance(state, tuple):
            raise TypeError(f"state must be a tensor of shape (B, hidden_size) for a {type(self).__name__}, got a tuple")
        parts = state if is_lstm else (state,)
        names = ("state[0] (h)", "state[1] (c)") if is_lstm else ("state",)
        for name, part in zip(names, parts):
            _validate.tensor(name, part, ndim=2, last_dim=self.hidden_size)
            if part.shape[0] != x.shape[0]:
                raise ValueError(f"{name} must have the batch size of x ({x.shape[0]}), got shape {tuple(part.shape)}")
        return x, state

    # -- the equations ----------------------------------------------------------------------
    #: Fold :math:`b_{hh}` into the input pre-activation (every cell but the GRU, whose reset
    #: gate multiplies :math:`W_{hn} h + b_{hn}`).
    _fold_hh_bias = True

    def _input_preact(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`W_{ih} x + b_{ih}` (plus :math:`b_{hh}` where it can be folded in): one product per sequence."""
        bias = self.bias_ih + self.bias_hh if self._fold_hh_bias else self.bias_ih
        return _linear(x, self.weight_ih, bias)

    #: ``(W_hh^T, b_hh)`` shaped for the fused product, while :meth:`_prepared` holds them.
    _hh: tuple[torch.Tensor, torch.Tensor] | None = None

    def _hh_views(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`W_{hh}^\top` and :math:`b_{hh}` shaped for ``addmm`` (one cell) or ``baddbmm`` (an ensemble)."""
        if self._hh is not None:
            return self._hh
        w = self.weight_hh
        if w.dim() == 2:
            return w.T, self.bias_hh
        return w.transpose(1, 2), self.bias_hh.unsqueeze(1)

    @contextlib.contextmanager
    def _prepared(self):
        """Within the block, :meth:`_hh_views` are made once instead of at every step.

        :func:`unroll` runs a whole sequence in it: the step then holds one product and the
        cell's element-wise equations, and the backward pass accumulates the recurrent
        weight's gradient on one view instead of through a transpose at every step. The
        arithmetic is the same.
        """
        self._hh = None
        self._hh = self._hh_views()
        try:
            yield self
        finally:
            self._hh = None

    def _plus_recurrent(self, base: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``base`` :math:`+ W_{hh} h` in one fused call (``addmm``, or ``baddbmm`` for an ensemble)."""
        w_t, _ = self._hh_views()
        if w_t.dim() == 2:
            return torch.addmm(base, h, w_t)
        return torch.baddbmm(base, h, w_t)  # an ensemble: base (M, B, GH), h (M, B, H)

    def _recurrent(self, h: torch.Tensor) -> torch.Tensor:
        """:math:`W_{hh} h + b_{hh}` in one fused call (for the GRU, whose reset gate multiplies it)."""
        w_t, b = self._hh_views()
        return torch.addmm(b, h, w_t) if w_t.dim() == 2 else torch.baddbmm(b, h, w_t)

    def _update(self, a_x: torch.Tensor, state: State) -> State:
        """One step from the input pre-activation ``a_x``: the cell's equations, unchecked."""
        raise NotImplementedError

    def _step_inputs(self, a_x: torch.Tensor) -> Sequence:
        """The per-step inputs of :meth:`_update` from the pre-activations of a stretch ``(T, ..., GH)``."""
        return a_x.unbind(0)  # one view per step; its backward is a single stack

    def forward(self, x: torch.Tensor, state: State | None = None) -> State:
        """One step: the next state from input ``x`` of shape ``(B, D)`` and ``state`` (zeros if ``None``)."""
        x, state = self._check(x, state)
        return self._update(self._input_preact(x), state)

    def step_jacobian(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """:math:`\\partial s_t/\\partial s_{t-1}` in closed form, shape ``(B, S, S)``."""
        raise NotImplementedError

    def _gate_slice(self, k: int) -> slice:
        return slice(k * self.hidden_size, (k + 1) * self.hidden_size)

    def carry_gate(self, x: torch.Tensor, state: State | None = None) -> torch.Tensor:
        """The gate that multiplies the carried state on the direct path."""
        raise TypeError(f"{type(self).__name__} has no gate on its state: a vanilla RNN has no direct path")

    def extra_repr(self) -> str:
        out = f"input_size={self.input_size}, hidden_size={self.hidden_size}"
        return out if self.members is None else out + f", members={self.members}"


class RNNCell(RecurrentCell):
    """The vanilla (Elman) cell :math:`h_t = \\tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    Equal to ``torch.nn.RNNCell(input_size, hidden_size)`` (tanh) with the same weights. Its
    step Jacobian is :math:`\\partial h_t/\\partial h_{t-1} = \\operatorname{diag}(1 - h_t^2)\\,W_{hh}`.

    Args:
        input_size: width :math:`D` of :math:`x_t` (``>= 1``).
        hidden_size: width :math:`H` of :math:`h_t` (``>= 1``).
    """

    def _update(self, a_x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._plus_recurrent(a_x, h))

    def step_jacobian(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`\\partial h_t/\\partial h_{t-1} = \\operatorname{diag}(1 - h_t^2)\\,W_{hh}`, shape ``(B, H, H)``."""
        h_new = self(x, state)
        return (1.0 - h_new * h_new)[:, :, None] * self.weight_hh


class LSTMCell(RecurrentCell):
    """The LSTM cell, gates in PyTorch's order :math:`(i, f, g, o)`.

    .. math::
        c_t = f_t \\odot c_{t-1} + i_t \\odot g_t, \\qquad h_t = o_t \\odot \\tanh(c_t).

    With ``forget_gate=True`` it equals ``torch.nn.LSTMCell`` with the same weights; the forget
    gate is Gers, Schmidhuber & Cummins (2000). ``forget_gate=False`` is the 1997 cell of
    Hochreiter & Schmidhuber: three gate blocks :math:`(i, g, o)` and :math:`f_t \\equiv 1`, so the
    direct path :math:`c_{t-1} \\to c_t` is exactly the identity (the constant error carousel).

    Args:
        input_size: width :math:`D` of :math:`x_t` (``>= 1``).
        hidden_size: width :math:`H` of :math:`h_t` and :math:`c_t` (``>= 1``).
        forget_gate: include the learned forget gate.
        forget_bias: if given, set the forget gate's total bias :math:`b_{if} + b_{hf}` to this
            value at initialisation (``b_hf = 0``); ``1.0`` is the usual choice (Jozefowicz et al.
            2015). Only with ``forget_gate=True``.
    """

    def __init__(self, input_size: int, hidden_size: int, forget_gate: bool = True, forget_bias: float | None = None) -> None:
        if not isinstance(forget_gate, bool):
            raise TypeError(f"forget_gate must be a bool, got {type(forget_gate).__name__}")
        self.forget_gate = forget_gate
        self.n_gates = 4 if forget_gate else 3
        super().__init__(input_size, hidden_size)
        if forget_bias is not None:
            self.set_forget_bias_(forget_bias)

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def init_state(self, batch: int, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = super().init_state(batch, dtype)
        return h, h.clone()

    def hidden(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return state[0]

    def pack(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``(h, c)`` as one tensor ``[h, c]`` of width ``2H``."""
        return torch.cat(state, dim=-1)

    def unpack(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return flat[..., : self.hidden_size], flat[..., self.hidden_size :]

    def set_forget_bias_(self, value: float) -> LSTMCell:
        """Set the forget gate's total bias to ``value`` in place (``b_if = value``, ``b_hf = 0``)."""
        if not self.forget_gate:
            raise ValueError("forget_bias needs forget_gate=True: the 1997 cell has no forget gate (f = 1)")
        value = _validate.finite_float("forget_bias", value)
        s = self._gate_slice(1)
        with torch.no_grad():
            self.bias_ih[..., s] = value
            self.bias_hh[..., s] = 0.0
        return self

    def _gates(self, a_x: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        blocks = self._plus_recurrent(a_x, h).chunk(self.n_gates, dim=-1)
        if self.forget_gate:
            a_i, a_f, a_g, a_o = blocks
            f = torch.sigmoid(a_f)
        else:
            a_i, a_g, a_o = blocks
            f = None
        return {"i": torch.sigmoid(a_i), "f": f, "g": torch.tanh(a_g), "o": torch.sigmoid(a_o)}

    def gates(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The gate values ``{"i", "f", "g", "o"}`` at this step (``f`` is all ones without a forget gate)."""
        x, state = self._check(x, state)
        g = self._gates(self._input_preact(x), state[0])
        if g["f"] is None:
            g["f"] = torch.ones_like(g["i"])
        return g

    def _update(self, a_x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h_prev, c_prev = state
        g = self._gates(a_x, h_prev)
        if self.forget_gate:
            c = torch.addcmul(g["f"] * c_prev, g["i"], g["g"])
        else:
            c = torch.addcmul(c_prev, g["i"], g["g"])  # constant error carousel: weight exactly 1
        return g["o"] * torch.tanh(c), c

    def step_jacobian(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The Jacobian of ``[h_t, c_t]`` with respect to ``[h_{t-1}, c_{t-1}]``, shape ``(B, 2H, 2H)``.

        From the equations: the gates depend on :math:`h_{t-1}` only, so
        :math:`\\partial c_t/\\partial c_{t-1} = \\operatorname{diag}(f_t)` (the direct path) and

        .. math::
            \\frac{\\partial c_t}{\\partial h_{t-1}} = \\operatorname{diag}(c_{t-1} f_t(1-f_t))W_{hf}
            + \\operatorname{diag}(g_t i_t(1-i_t))W_{hi} + \\operatorname{diag}(i_t(1-g_t^2))W_{hg},

        .. math::
            \\frac{\\partial h_t}{\\partial h_{t-1}} = \\operatorname{diag}(\\tanh(c_t)\\,o_t(1-o_t))W_{ho}
            + \\operatorname{diag}(o_t(1-\\tanh^2 c_t))\\frac{\\partial c_t}{\\partial h_{t-1}},\\quad
            \\frac{\\partial h_t}{\\partial c_{t-1}} = \\operatorname{diag}(o_t(1-\\tanh^2 c_t) f_t).
        """
        x, state = self._check(x, state)
        c_prev = state[1]
        g = self.gates(x, state)
        i, f, gg, o = g["i"], g["f"], g["g"], g["o"]
        c = f * c_prev + i * gg
        tc = torch.tanh(c)
        names = ("i", "f", "g", "o") if self.forget_gate else ("i", "g", "o")
        w = dict(zip(names, self.weight_hh.chunk(self.n_gates, dim=0)))
        dc_dh = (gg * i * (1 - i))[:, :, None] * w["i"] + (i * (1 - gg * gg))[:, :, None] * w["g"]
        if self.forget_gate:
            dc_dh = dc_dh + (c_prev * f * (1 - f))[:, :, None] * w["f"]
        dh_dc_new = o * (1 - tc * tc)
        dh_dh = (tc * o * (1 - o))[:, :, None] * w["o"] + dh_dc_new[:, :, None] * dc_dh
        top = torch.cat([dh_dh, torch.diag_embed(dh_dc_new * f)], dim=2)
        bottom = torch.cat([dc_dh, torch.diag_embed(f)], dim=2)
        return torch.cat([top, bottom], dim=1)

    def carry_gate(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """:math:`f_t`, the diagonal of the direct-path Jacobian :math:`\\partial c_t/\\partial c_{t-1}` (ones for the 1997 cell)."""
        return self.gates(x, state)["f"]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", forget_gate={self.forget_gate}"


class GRUCell(RecurrentCell):
    """The gated recurrent unit, gates in PyTorch's order :math:`(r, z, n)`.

    .. math::
        h_t = z_t \\odot h_{t-1} + (1 - z_t) \\odot n_t,\\qquad
        n_t = \\tanh\\big(W_{in} x_t + b_{in} + r_t \\odot (W_{hn} h_{t-1} + b_{hn})\\big).

    A gated convex combination of the old state and a candidate. ``convention="cho"`` (the
    default) is the form of Cho et al. (2014) and of ``torch.nn.GRUCell``: :math:`z_t = 1` carries
    the state unchanged. ``convention="chung"`` is the form of Chung et al. (2014),
    :math:`h_t = (1 - z_t) \\odot h_{t-1} + z_t \\odot n_t`: the same family with :math:`z` and
    :math:`1 - z` swapped (negate the :math:`z` rows of the weights and biases to convert, since
    :math:`\\sigma(-a) = 1 - \\sigma(a)`). Like PyTorch, the reset gate multiplies
    :math:`W_{hn} h_{t-1} + b_{hn}`; Cho et al. apply it before the matrix,
    :math:`U(r_t \\odot h_{t-1})`.

    Args:
        input_size: width :math:`D` of :math:`x_t` (``>= 1``).
        hidden_size: width :math:`H` of :math:`h_t` (``>= 1``).
        convention: ``"cho"`` (PyTorch) or ``"chung"``.
        update_bias: if given, set the *carry* gate's total bias at initialisation: the bias of
            :math:`z` for ``"cho"``, of :math:`1 - z` (that is, minus the bias of :math:`z`) for ``"chung"``.
    """

    n_gates = 3
    CONVENTIONS = ("cho", "chung")
    _fold_hh_bias = False

    def __init__(self, input_size: int, hidden_size: int, convention: str = "cho", update_bias: float | None = None) -> None:
        self.convention = _validate.choice("convention", convention, self.CONVENTIONS)
        super().__init__(input_size, hidden_size)
        if update_bias is not None:
            self.set_update_bias_(update_bias)

    def set_update_bias_(self, value: float) -> GRUCell:
        """Give the carry gate a total bias ``value`` in place (positive: carry more)."""
        value = _validate.finite_float("update_bias", value)
        s = self._gate_slice(1)
        with torch.no_grad():
            self.bias_ih[..., s] = value if self.convention == "cho" else -value
            self.bias_hh[..., s] = 0.0
        return self

    def _step_inputs(self, a_x: torch.Tensor) -> Sequence:
        # split once per stretch, not at every step: each step gets the pair (x_rz, x_n)
        x_rz, x_n = a_x.split([2 * self.hidden_size, self.hidden_size], dim=-1)
        return list(zip(x_rz.unbind(0), x_n.unbind(0)))

    def _gates(self, a_x: torch.Tensor | tuple[torch.Tensor, torch.Tensor], h: torch.Tensor) -> dict[str, torch.Tensor]:
        hs = self.hidden_size
        x_rz, x_n = a_x if isinstance(a_x, tuple) else a_x.split([2 * hs, hs], dim=-1)
        h_rz, h_n = self._recurrent(h).split([2 * hs, hs], dim=-1)
        r, z = torch.sigmoid(x_rz + h_rz).chunk(2, dim=-1)
        n = torch.tanh(torch.addcmul(x_n, r, h_n))
        return {"r": r, "z": z, "n": n}

    def gates(self, x: torch.Tensor, state: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The gate values ``{"r", "z", "n"}`` at this step."""
        x, h = self._check(x, state)
        return self._gates(self._input_preact(x), h)

    def _update(self, a_x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        g = self._gates(a_x, h)
        z, n = g["z"], g["n"]
        # torch.lerp(a, b, w) = a + w (b - a), evaluated as b - (b - a)(1 - w) when w >= 1/2: so
        # z = 1 returns h_{t-1} bit for bit (n + z (h - n) would round).
        if self.convention == "cho":
            return torch.lerp(n, h, z)  # z*h + (1-z)*n
        return torch.lerp(h, n, z)  # (1-z)*h + z*n

    def step_jacobian(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`\\partial h_t/\\partial h_{t-1}`, shape ``(B, H, H)``, from the equations.

        For ``"cho"``:
        :math:`\\operatorname{diag}(z_t) + \\operatorname{diag}((h_{t-1} - n_t) z_t(1-z_t))W_{hz}
        + \\operatorname{diag}(1-z_t)\\,\\partial n_t/\\partial h_{t-1}`, with
        :math:`\\partial n_t/\\partial h_{t-1} = \\operatorname{diag}(1-n_t^2)\\big(\\operatorname{diag}(\\hat h_t\\,r_t(1-r_t))W_{hr}
        + \\operatorname{diag}(r_t)W_{hn}\\big)` and :math:`\\hat h_t = W_{hn}h_{t-1} + b_{hn}`.
        The first term is the direct path.
        """
        x, h = self._check(x, state)
        g = self.gates(x, h)
        r, z, n = g["r"], g["z"], g["n"]
        w_r, w_z, w_n = self.weight_hh.chunk(3, dim=0)
        hat = h @ w_n.T + self.bias_hh[self._gate_slice(2)]
        dn = (1 - n * n)[:, :, None] * ((hat * r * (1 - r))[:, :, None] * w_r + r[:, :, None] * w_n)
        if self.convention == "cho":
            keep, dz_coef, mix = z, (h - n) * z * (1 - z), 1 - z
        else:
            keep, dz_coef, mix = 1 - z, (n - h) * z * (1 - z), z
        return torch.diag_embed(keep) + dz_coef[:, :, None] * w_z + mix[:, :, None] * dn

    def carry_gate(self, x: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """The weight of :math:`h_{t-1}` on the direct path: :math:`z_t` (``"cho"``) or :math:`1 - z_t` (``"chung"``)."""
        z = self.gates(x, state)["z"]
        return z if self.convention == "cho" else 1.0 - z

    def extra_repr(self) -> str:
        return super().extra_repr() + f", convention={self.convention!r}"


#: The cell kinds of :func:`make_cell`.
CELLS: dict[str, type[RecurrentCell]] = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def make_cell(kind: str, input_size: int, hidden_size: int, *, carry_bias: float | None = None, forget_gate: bool = True) -> RecurrentCell:
    """Build a cell by name: ``"rnn"``, ``"lstm"`` or ``"gru"``.

    ``carry_bias`` sets the bias of the gate that keeps the state (the LSTM's forget gate, the
    GRU's update gate); it is not accepted for ``"rnn"``, which has no gate. ``forget_gate``
    applies to ``"lstm"`` only (``False``: the 1997 cell).
    """
    kind = _validate.choice("kind", kind, CELLS)
    if not isinstance(forget_gate, bool):
        raise TypeError(f"forget_gate must be a bool, got {type(forget_gate).__name__}")
    if carry_bias is not None:
        carry_bias = _validate.finite_float("carry_bias", carry_bias)
    if kind == "rnn":
        if carry_bias is not None:
            raise ValueError("carry_bias is not accepted for kind='rnn': a vanilla RNN has no gate")
    if kind != "lstm" and not forget_gate:
        raise ValueError(f"forget_gate=False applies to kind='lstm' only, got kind={kind!r}")
    if not forget_gate and carry_bias is not None:
        raise ValueError("carry_bias needs forget_gate=True: the 1997 LSTM (forget_gate=False) has no forget gate to bias")
    if kind == "rnn":
        return RNNCell(input_size, hidden_size)
    if kind == "lstm":
        return LSTMCell(input_size, hidden_size, forget_gate=forget_gate, forget_bias=carry_bias)
    return GRUCell(input_size, hidden_size, update_bias=carry_bias)


def _check_cell(cell: object) -> RecurrentCell:
    if not isinstance(cell, RecurrentCell):
        raise TypeError(f"cell must be a reslab.recurrent RNNCell, LSTMCell or GRUCell, got {type(cell).__name__}")
    return cell


def _single(cell: object) -> RecurrentCell:
    cell = _check_cell(cell)
    if cell.members is not None:
        raise TypeError("cell must be a single cell, not an ensemble from stack_cells")
    return cell


def _check_sequence(cell: RecurrentCell, xs: torch.Tensor) -> torch.Tensor:
    xs = _validate.tensor("xs", xs, ndim=3, last_dim=cell.input_size)
    if xs.shape[0] < 1 or xs.shape[1] < 1:
        raise ValueError(f"xs must hold at least one sequence of at least one step, got shape {tuple(xs.shape)}")
    return xs


def stack_cells(cells: Sequence[RecurrentCell]) -> RecurrentCell:
    """An ensemble: one cell whose parameters are the members' parameters stacked on a new axis 0.

    All cells must be of one class and configuration (same sizes, same LSTM ``forget_gate``,
    same GRU ``convention``); their initial values may differ (seeds, carry biases). The
    ensemble runs only through :func:`unroll`, which then returns ``(M, B, T, H)``. Its
    parameters are new tensors: training the ensemble does not change the original cells
    (``parameter[m]`` is member ``m``'s value).
    """
    if isinstance(cells, (str, bytes, RecurrentCell)) or not isinstance(cells, Sequence):
        raise TypeError(f"cells must be a non-empty sequence of cells of one kind, got {type(cells).__name__}")
    if len(cells) == 0:
        raise ValueError("cells must be a non-empty sequence of cells of one kind, got an empty sequence")
    for i, c in enumerate(cells):
        if not isinstance(c, RecurrentCell):
            raise TypeError(f"cells[{i}] must be a reslab.recurrent RNNCell, LSTMCell or GRUCell, got {type(c).__name__}")
        if c.members is not None:
            raise TypeError(f"cells[{i}] must be a single cell, not an ensemble from stack_cells")
    first = cells[0]
    key = (type(first), first.input_size, first.hidden_size, getattr(first, "forget_gate", None), getattr(first, "convention", None))
    for i, c in enumerate(cells):
        other = (type(c), c.input_size, c.hidden_size, getattr(c, "forget_gate", None), getattr(c, "convention", None))
        if other != key:
            raise ValueError(f"cells[{i}] differs in kind or configuration from cells[0]: {c!r} vs {first!r}")
    ens = copy.deepcopy(first)
    for name, _ in first.named_parameters():
        setattr(ens, name, nn.Parameter(torch.stack([getattr(c, name).detach() for c in cells]).clone()))
    ens.members = len(cells)
    return ens


def unroll(cell: RecurrentCell, xs: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
    """Run ``cell`` over a batch-first sequence.

    Args:
        cell: a cell of this module, or an ensemble from :func:`stack_cells`.
        xs: inputs of shape ``(B, T, D)`` (shared by all members of an ensemble).
        state: initial state (zeros if ``None``; must be ``None`` for an ensemble).

    Returns:
        ``(hs, state)``: the outputs :math:`h_1..h_T` stacked as ``(B, T, H)`` (``(M, B, T, H)`` for
        an ensemble) and the final state.
    """
    cell = _check_cell(cell)
    xs = _check_sequence(cell, xs)
    b, t_len, d = xs.shape
    if cell.members is None:
        if state is None:
            state = cell.init_state(b, xs.dtype)
        cell._check(xs[:, 0], state)  # checks the state once; the loop below skips the checks
        a_x = cell._input_preact(xs).movedim(1, 0)  # (T, B, GH): all input products at once
    else:
        if state is not None:
            raise ValueError("state must be None for an ensemble: every member starts from zeros")
        state = cell.init_state(b, xs.dtype)
        flat = xs.reshape(1, b * t_len, d).expand(cell.members, b * t_len, d)
        a_x = cell._input_preact(flat).reshape(cell.members, b, t_len, -1).movedim(2, 0)  # (T, M, B, GH)
    hs = []
    with cell._prepared():
        for a_t in cell._step_inputs(a_x):
            state = cell._update(a_t, state)
            hs.append(cell.hidden(state))
    return torch.stack(hs, dim=-2), state


def final_states(cell: RecurrentCell, xs: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """The hidden state of each ensemble member after its own number of steps, ``(M, B, H)``.

    Member ``m`` of the ensemble ``cell`` (from :func:`stack_cells`) reads :math:`h_T` after
    ``T = lengths[m]`` steps of ``xs`` ``(B, T_max, D)``, starting from zeros: the values of
    ``unroll(cell, xs)[0][m, :, lengths[m] - 1]``, without computing any step a member does not
    need. ``lengths`` must not decrease (order the members by length): the members run
    together, and once the shortest have read their state they leave the batch, so the later
    steps run on fewer members. Values and gradients equal the full unroll's up to float
    rounding (element-wise kernels round the last bit differently at other tensor sizes, and
    the recurrent weight's gradient is summed per stretch of steps before the stretches are
    added).
    """
    cell = _check_cell(cell)
    if cell.members is None:
        raise TypeError("cell must be an ensemble from stack_cells (one length per member)")
    xs = _check_sequence(cell, xs)
    lengths = _validate.int_sequence("lengths", lengths)
    if len(lengths) != cell.members:
        raise ValueError(f"lengths must hold one length per member ({cell.members}), got {len(lengths)}")
    if any(a > b for a, b in zip(lengths, lengths[1:])):
        raise ValueError(f"lengths must not decrease (order the members by length), got {lengths}")
    if lengths[-1] > xs.shape[1]:
        raise ValueError(f"lengths must be at most the sequence length {xs.shape[1]}, got {lengths[-1]}")
    b, _, d = xs.shape
    # the input products of each stretch of steps, for the members still running only: no
    # member's product is computed past its own length, and the backward pass of a stretch
    # touches tensors of the stretch's size (slices of one big product would each send back a
    # gradient of the whole product's size)
    w_ih = cell.weight_ih
    b_ih = cell.bias_ih + cell.bias_hh if cell._fold_hh_bias else cell.bias_ih
    state = cell.init_state(b, xs.dtype)
    out, lo, start = [], 0, 0
    with cell._prepared():
        w_t, bias = cell._hh
        for end in sorted(set(lengths)):
            if lo:  # the members still running: one slice per stretch, not per step
                cell._hh = (w_t[lo:], bias[lo:])
            steps = xs[:, start:end].transpose(0, 1).reshape((end - start) * b, d)  # time-major rows
            a_x = _linear(steps, w_ih[lo:], b_ih[lo:]).unflatten(1, (end - start, b)).movedim(1, 0)  # (T', M', B, GH)
            for a_t in cell._step_inputs(a_x):
                state = cell._update(a_t, state)
            done = lengths.count(end)
            out.append(cell.hidden(state)[:done])
            state = tuple(s[done:] for s in state) if isinstance(state, tuple) else state[done:]
            lo, start = lo + done, end
    return torch.cat(out)


def set_spectral_radius_(cell: RNNCell, radius: float, seed: int = 0) -> RNNCell:
    """Redraw :math:`W_{hh}` as a Gaussian matrix rescaled to spectral radius ``radius`` (in place).

    The largest eigenvalue modulus of :math:`W_{hh}` decides whether the linearised RNN's
    gradient through time vanishes (``< 1``) or can explode (``> 1``; Pascanu, Mikolov & Bengio
    2013). The biases are zeroed so that the sweep isolates the recurrent matrix.
    """
    if not isinstance(cell, RNNCell) or cell.members is not None:
        raise TypeError(f"cell must be a single reslab.recurrent.RNNCell, got {type(cell).__name__}")
    radius = _validate.finite_float("radius", radius, positive=True)
    gen = torch.Generator().manual_seed(_validate.positive_int("seed", seed, minimum=0))
    a = torch.randn(cell.hidden_size, cell.hidden_size, generator=gen, dtype=torch.float64)
    rho = torch.linalg.eigvals(a).abs().max()
    with torch.no_grad():
        cell.weight_hh.copy_((radius * a / rho).to(cell.weight_hh.dtype))
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    return cell


def set_carry_bias_(cell: RecurrentCell, value: float) -> RecurrentCell:
    """Set the bias of the gate that keeps the state: LSTM forget gate or GRU update gate (in place)."""
    cell = _check_cell(cell)
    value = _validate.finite_float("value", value)
    if isinstance(cell, LSTMCell):
        return cell.set_forget_bias_(value)
    if isinstance(cell, GRUCell):
        return cell.set_update_bias_(value)
    raise TypeError("cell must be an LSTMCell or a GRUCell: a vanilla RNN has no gate")


#: A pre-activation large enough that float32's sigmoid returns exactly 1.0 (and 0.0 for its negative).
SATURATE = 100.0


def hold_state_(cell: RecurrentCell) -> RecurrentCell:
    """Pin the gates so that the cell carries its state exactly, whatever the input (in place).

    LSTM: the input gate's weights are zeroed and its bias set to :math:`-100`, so
    :math:`i_t = \\sigma(-100)`, which is exactly ``0.0`` in float32; with a forget gate, its weights are zeroed
    and its bias set to :math:`+100`, so :math:`f_t = 1.0` exactly. Then
    :math:`c_t = 1\\cdot c_{t-1} + 0\\cdot g_t = c_{t-1}` bit for bit: the constant error carousel.
    GRU: the update gate is pinned to :math:`z_t = 1` (``"cho"``; :math:`z_t = 0` for ``"chung"``),
    so :math:`h_t = h_{t-1}` bit for bit. The vanilla RNN has no gate and raises ``TypeError``.
    """
    cell = _single(cell)
    pins: dict[int, float]
    if isinstance(cell, LSTMCell):
        pins = {0: -SATURATE, 1: SATURATE} if cell.forget_gate else {0: -SATURATE}
    elif isinstance(cell, GRUCell):
        pins = {1: SATURATE if cell.convention == "cho" else -SATURATE}
    else:
        raise TypeError("cell must be an LSTMCell or a GRUCell: a vanilla RNN has no gate to hold its state")
    with torch.no_grad():
        for k, value in pins.items():
            s = cell._gate_slice(k)
            cell.weight_ih[s] = 0.0
            cell.weight_hh[s] = 0.0
            cell.bias_ih[s] = value
            cell.bias_hh[s] = 0.0
    return cell


def step_jacobians(cell: RecurrentCell, xs: torch.Tensor, state: State | None = None) -> torch.Tensor:
    """Per-step state Jacobians :math:`J_t = \\partial s_t/\\partial s_{t-1}`, shape ``(B, T, S, S)``.

    ``S`` is ``cell.state_size`` (the LSTM's state is ``[h, c]``). Each :math:`J_t` comes from the
    cell's closed form (``cell.step_jacobian``), which the tests check against
    :func:`torch.func.jacrev`.
    """
    cell = _single(cell)
    xs = _check_sequence(cell, xs)
    out = []  # a state of None is the zero state: the cell's methods start from it
    with torch.no_grad():
        for t in range(xs.shape[1]):
            out.append(cell.step_jacobian(xs[:, t], state))
            state = cell(xs[:, t], state)
    return torch.stack(out, dim=1)


#: What :func:`gradient_through_time` measures: the whole state, :math:`h` or the LSTM's :math:`c`.
PARTS = ("state", "hidden", "cell")


def gradient_through_time(cell: RecurrentCell, xs: torch.Tensor, state: State | None = None, part: str = "state") -> torch.Tensor:
    """:math:`\\lVert\\partial s_t/\\partial s_0\\rVert_2` for :math:`t = 0, 1, \\dots, T`, in float64.

    The products :math:`J_t J_{t-1}\\cdots J_1` of the exact step Jacobians (see
    :func:`step_jacobians`) are accumulated in float64 and renormalised as they go (the scale is
    kept as a logarithm), so a norm of 1e-200 or 1e200 is reported rather than lost. The
    spectral norm of each sequence's product is averaged over the batch geometrically (the mean
    of the logs: the typical sequence, not the luckiest one); a product that is exactly zero
    gives ``0.0``.

    Args:
        cell: a single cell of this module (copied to float64; the original is untouched).
        xs: inputs ``(B, T, D)``.
        state: initial state (zeros if ``None``).
        part: ``"state"`` (the whole state), ``"hidden"`` (:math:`\\partial h_t/\\partial h_0`) or
            ``"cell"`` (the LSTM's :math:`\\partial c_t/\\partial c_0`, every path included).

    Returns:
        float64 tensor of shape ``(T + 1,)``; entry 0 is :math:`\\lVert I\\rVert = 1`.
    """
    cell = _single(cell)
    xs = _check_sequence(cell, xs)
    part = _validate.choice("part", part, PARTS)
    if part == "cell" and not isinstance(cell, LSTMCell):
        raise ValueError(f"part='cell' needs an LSTMCell, got {type(cell).__name__}")
    if state is not None:
        cell._check(xs[:, 0], state)
    c64 = copy.deepcopy(cell).double()
    if state is not None:
        state = tuple(s.double() for s in state) if isinstance(state, tuple) else state.double()
    jacs = step_jacobians(c64, xs.double(), state)
    b, t_len, s_size, _ = jacs.shape
    h = cell.hidden_size
    block = {"state": slice(0, s_size), "hidden": slice(0, h), "cell": slice(h, 2 * h)}[part]
    prod = torch.eye(s_size, dtype=torch.float64).expand(b, s_size, s_size).clone()
    logs = [torch.zeros(b, dtype=torch.float64)]
    log_scale = torch.zeros(b, dtype=torch.float64)
    for t in range(t_len):
        prod = jacs[:, t] @ prod
        logs.append(torch.log(torch.linalg.matrix_norm(prod[:, block, block], ord=2)) + log_scale)
        scale = torch.linalg.matrix_norm(prod)  # Frobenius: cheap, and only a rescaling
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        prod = prod / safe[:, None, None]
        log_scale = log_scale + torch.log(safe)
    return torch.exp(torch.stack(logs, dim=1).mean(dim=0))


def carry_retention(cell: RecurrentCell, xs: torch.Tensor, state: State | None = None) -> torch.Tensor:
    """Direct-path retention :math:`\\prod_{s \\le t} \\text{carry}_s`, averaged over coordinates and batch.

    For the LSTM the direct path :math:`c_{t-1} \\to c_t` has the diagonal Jacobian
    :math:`\\operatorname{diag}(f_t)`, so after :math:`t` steps coordinate :math:`j` keeps
    :math:`\\prod_s f_{s,j}` of its gradient along that path, with no mixing between coordinates;
    the 1997 cell keeps exactly 1. For the GRU the direct path's diagonal is :math:`z_t`.
    Returns a float64 tensor ``(T + 1,)`` whose entry 0 is 1. Raises ``TypeError`` for the
    vanilla RNN, which has no such path.
    """
    cell = _single(cell)
    if isinstance(cell, RNNCell):
        raise TypeError("cell must be an LSTMCell or a GRUCell: a vanilla RNN has no gated direct path")
    xs = _check_sequence(cell, xs)
    prod = torch.ones(xs.shape[0], cell.hidden_size, dtype=torch.float64)
    out = [prod.mean()]
    with torch.no_grad():
        for t in range(xs.shape[1]):
            prod = prod * cell.carry_gate(xs[:, t], state).double()
            state = cell(xs[:, t], state)
            out.append(prod.mean())
    return torch.stack(out)
