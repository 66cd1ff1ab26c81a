"""Chapter 4's experiments: a long-memory task for recurrent cells, and the drivers of the chapter.

* :func:`recall_task` and :func:`train_recall`: recall the first of ``T`` inputs. Every run is
  an *ensemble* (:func:`reslab.recurrent.stack_cells`): all seeds, all sequence lengths and all
  carry-gate biases of one cell kind train together in one unrolled loop, each member with its
  own parameters, its own read-out step and its own loss. Adam updates every parameter entry
  on its own, so each member follows the trajectory it would follow alone.
* :func:`highway_vs_residual`: plain, highway and residual MLP stacks at one depth, one budget.
* :func:`transformer_grad_norms` and :func:`train_transformers`: the residual stream of a small
  Transformer with post-LN and pre-LN blocks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F_

from . import _validate
from .blocks import HighwayBlock, PlainBlock, PreActResidualBlock, TransformerBlock
from .recurrent import CELLS, carry_retention, final_states, gradient_through_time, make_cell, set_spectral_radius_, stack_cells

__all__ = [
    "recall_task",
    "RecallResult",
    "train_recall",
    "spectral_radius_sweep",
    "gradient_curves",
    "gradient_frame",
    "DEEP_KINDS",
    "deep_classifier",
    "highway_init_gap",
    "highway_vs_residual",
    "reverse_task",
    "TinyTransformer",
    "transformer_grad_norms",
    "TransformerRuns",
    "train_transformers",
]


def recall_task(n: int, length: int, n_symbols: int = 4, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences whose label is their first symbol.

    Step 1 holds the one-hot code of a symbol drawn uniformly from ``n_symbols``; steps
    ``2..length`` hold zeros plus, if ``noise > 0``, Gaussian noise of that standard deviation
    (distractors). The label is the first symbol, so a model that reads its state after the last
    step must have carried the first input across ``length - 1`` steps. Chance accuracy is
    ``1 / n_symbols``.

    Returns:
        ``(xs, y)``: float inputs ``(n, length, n_symbols)`` and integer labels ``(n,)``.
    """
    n = _validate.positive_int("n", n)
    length = _validate.positive_int("length", length)
    n_symbols = _validate.positive_int("n_symbols", n_symbols, minimum=2)
    noise = _validate.finite_float("noise", noise, minimum=0.0)
    gen = torch.Generator().manual_seed(_validate.positive_int("seed", seed, minimum=0))
    y = torch.randint(0, n_symbols, (n,), generator=gen)
    xs = torch.zeros(n, length, n_symbols)
    xs[:, 0] = F_.one_hot(y, n_symbols).float()
    if noise > 0 and length > 1:
        xs[:, 1:] = noise * torch.randn(n, length - 1, n_symbols, generator=gen)
    return xs, y


@dataclass
class RecallResult:
    """What :func:`train_recall` measured; arrays are indexed ``[bias, length, seed]``.

    Attributes:
        kind: the cell kind.
        carry_biases, lengths, seeds: the grid.
        accuracy: held-out accuracy of every member, shape ``(n_biases, n_lengths, n_seeds)``.
        losses: training loss before each step and after the last, ``(n_biases, n_lengths, n_seeds, steps + 1)``.
        chance: chance accuracy ``1 / n_symbols``.
    """

    kind: str
    carry_biases: list[float | None]
    lengths: list[int]
    seeds: list[int]
    accuracy: torch.Tensor
    losses: torch.Tensor
    chance: float

    def solved(self, threshold: float = 0.9) -> torch.Tensor:
        """Boolean ``[bias, length, seed]``: held-out accuracy at least ``threshold``."""
        return self.accuracy >= _validate.finite_float("threshold", threshold, minimum=0.0)


def _clip_per_member_(params: list[torch.Tensor], clip: float) -> None:
    """Rescale the gradient of each ensemble member (axis 0 of every parameter) to norm <= ``clip``."""
    sq = sum(p.grad.reshape(p.shape[0], -1).pow(2).sum(dim=1) for p in params if p.grad is not None)
    scale = (clip / (sq.sqrt() + 1e-12)).clamp(max=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(scale.reshape(-1, *([1] * (p.dim() - 1))))


def train_recall(
    kind: str,
    lengths: Sequence[int],
    seeds: Sequence[int],
    *,
    carry_biases: Sequence[float | None] = (None,),
    hidden: int = 16,
    n_symbols: int = 4,
    noise: float = 0.0,
    steps: int = 300,
    lr: float = 3e-3,
    batch: int = 16,
    n_test: int = 512,
    clip: float | None = 1.0,
    forget_gate: bool = True,
    fused: bool = True,
    data_seed: int = 0,
) -> RecallResult:
    """Train one recurrent model per (carry bias, length, seed) on :func:`recall_task`, all at once.

    Each member is ``make_cell(kind, n_symbols, hidden)`` with every bias set to zero and then,
    for gated cells, the carry gate's bias set to ``carry_bias`` (the LSTM's forget gate, the
    GRU's update gate), followed by a linear read-out of :math:`h_T` into ``n_symbols`` logits.
    Members differ in their seed (weights drawn after ``torch.manual_seed(seed)``), their
    carry bias and the step ``T`` they read out at; all see the same fresh mini-batches of
    length ``max(lengths)`` (a member reading at ``T`` never sees the later steps). Adam,
    cross-entropy, ``steps`` steps.

    Args:
        kind: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        lengths: sequence lengths ``T`` (``>= 1``).
        seeds: initialisation seeds (``>= 0``).
        carry_biases: carry-gate biases to compare; must be ``(None,)`` for ``"rnn"``.
        hidden: state width :math:`H`.
        n_symbols: alphabet size (chance accuracy ``1/n_symbols``).
        noise: standard deviation of the distractor inputs after step 1.
        steps, lr, batch: the training budget.
        n_test: held-out sequences for the final accuracy.
        clip: rescale each member's gradient to norm at most ``clip`` before the Adam step
            (gradient-norm clipping, Pascanu et al. 2013), or ``None``. The norm is taken per
            member, so members stay independent.
        forget_gate: for ``"lstm"``: ``False`` trains the 1997 cell (no forget gate; then
            ``carry_biases`` must be ``(None,)``).
        fused: for ``"lstm"`` with a forget gate, run each member through PyTorch's fused
            LSTM kernel (``torch.lstm``, the operation behind ``nn.LSTM``) *on the ensemble's
            own parameters*, unrolled only up to its read-out step. The kernel computes the
            equations of :class:`~reslab.recurrent.LSTMCell` (the tests check that both paths
            give the same losses) and is several times faster on a CPU. ``False`` unrolls the
            ensemble of :class:`~reslab.recurrent.LSTMCell` itself. The other cells always
            unroll the ensemble, with :func:`~reslab.recurrent.final_states`: members are
            ordered by length and leave the batch once they have read their state.
        data_seed: seed of the mini-batches and the held-out set.
    """
    kind = _validate.choice("kind", kind, CELLS)
    lengths = _validate.int_sequence("lengths", lengths)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    if isinstance(carry_biases, (str, bytes)) or not isinstance(carry_biases, Sequence):
        raise TypeError(f"carry_biases must be a non-empty sequence of finite numbers (or [None]), got {type(carry_biases).__name__} {carry_biases!r}")
    if len(carry_biases) == 0:
        raise ValueError("carry_biases must be a non-empty sequence of finite numbers (or [None]), got an empty sequence")
    biases = [None if b is None else _validate.finite_float(f"carry_biases[{i}]", b) for i, b in enumerate(carry_biases)]
    if kind == "rnn" and biases != [None]:
        raise ValueError("carry_biases must be [None] for kind='rnn': a vanilla RNN has no gate")
    if not isinstance(forget_gate, bool):
        raise TypeError(f"forget_gate must be a bool, got {type(forget_gate).__name__}")
    if not isinstance(fused, bool):
        raise TypeError(f"fused must be a bool, got {type(fused).__name__}")
    if not forget_gate and biases != [None]:
        raise ValueError("carry_biases must be [None] with forget_gate=False: the 1997 cell has no forget gate")
    hidden = _validate.positive_int("hidden", hidden)
    n_symbols = _validate.positive_int("n_symbols", n_symbols, minimum=2)
    noise = _validate.finite_float("noise", noise, minimum=0.0)
    steps = _validate.positive_int("steps", steps, minimum=0)
    lr = _validate.finite_float("lr", lr, positive=True)
    batch = _validate.positive_int("batch", batch)
    n_test = _validate.positive_int("n_test", n_test)
    clip = None if clip is None else _validate.finite_float("clip", clip, positive=True)
    data_seed = _validate.positive_int("data_seed", data_seed, minimum=0)

    # Members ordered by length (then bias, seed), so that final_states can let the short ones
    # leave the batch; `order` maps them back to the [bias, length, seed] grid at the end.
    grid = sorted(((b, t, s) for b in biases for t in lengths for s in seeds), key=lambda g: g[1])
    order = torch.tensor([grid.index((b, t, s)) for b in biases for t in lengths for s in seeds])
    cells, heads_w, heads_b = [], [], []
    for b, _, s in grid:
        torch.manual_seed(s)
        cell = make_cell(kind, n_symbols, hidden, forget_gate=forget_gate)
        head = nn.Linear(hidden, n_symbols)
        with torch.no_grad():
            cell.bias_ih.zero_()
            cell.bias_hh.zero_()
        if b is not None:
            cell.set_forget_bias_(b) if kind == "lstm" else cell.set_update_bias_(b)
        cells.append(cell)
        heads_w.append(head.weight.detach())
        heads_b.append(head.bias.detach())
    ens = stack_cells(cells)
    w_out = nn.Parameter(torch.stack(heads_w))
    b_out = nn.Parameter(torch.stack(heads_b))
    read = torch.tensor([t - 1 for _, t, _ in grid])
    t_max = max(lengths)

    use_fused = fused and kind == "lstm" and forget_gate

    def read_states(xs: torch.Tensor) -> torch.Tensor:
        """:math:`h_T` of every member, ``(M, B, H)``: member m reads step read[m]."""
        if not use_fused:
            return final_states(ens, xs, [t for _, t, _ in grid])
        # PyTorch's LSTM kernel (the op behind nn.LSTM), member by member on the ensemble's own
        # parameters; each stacked parameter is split once (one node in the backward pass)
        weights = list(zip(*(getattr(ens, name).unbind(0) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))))
        zeros = torch.zeros(1, xs.shape[0], hidden, dtype=xs.dtype)
        out = []
        for m, r in enumerate(read.tolist()):
            hs, _, _ = torch.lstm(xs[:, : r + 1], (zeros, zeros), list(weights[m]), True, 1, 0.0, True, False, True)
            out.append(hs[:, -1])
        return torch.stack(out)

    def logits(xs: torch.Tensor) -> torch.Tensor:
        return torch.einsum("mbh,mkh->mbk", read_states(xs), w_out) + b_out[:, None, :]

    def member_losses(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F_.cross_entropy(out.reshape(-1, n_symbols), y.repeat(len(grid)), reduction="none").reshape(len(grid), -1).mean(dim=1)

    params = [*ens.parameters(), w_out, b_out]
    opt = torch.optim.Adam(params, lr=lr, foreach=True)
    losses = torch.empty(len(grid), steps + 1)
    for step in range(steps + 1):
        xs, y = recall_task(batch, t_max, n_symbols, noise, seed=data_seed * 1_000_003 + step + 1)
        per_member = member_losses(logits(xs), y)
        losses[:, step] = per_member.detach()
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        per_member.sum().backward()
        if clip is not None:
            _clip_per_member_(params, clip)
        opt.step()
    with torch.no_grad():
        xt, yt = recall_task(n_test, t_max, n_symbols, noise, seed=data_seed * 1_000_003)
        acc = (logits(xt).argmax(dim=-1) == yt).float().mean(dim=1)
    shape = (len(biases), len(lengths), len(seeds))
    return RecallResult(kind, biases, lengths, seeds, acc[order].reshape(shape), losses[order].reshape(*shape, steps + 1), 1.0 / n_symbols)


# -- gradient through time -------------------------------------------------------------------


def _probe_inputs(length: int, input_size: int, batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, input_size, generator=gen)


def spectral_radius_sweep(radii: Sequence[float], length: int, *, hidden: int = 32, input_size: int = 4, batch: int = 8, seed: int = 0) -> dict[float, torch.Tensor]:
    """:math:`\\lVert\\partial h_t/\\partial h_0\\rVert_2` for :math:`t = 0..T` of a tanh RNN, one curve per spectral radius.

    For each radius :math:`\\rho` the same Gaussian :math:`W_{hh}` (seed ``seed``) is rescaled to
    spectral radius :math:`\\rho`, biases are zero, inputs are standard normal (``batch``
    sequences, seed ``seed``); see :func:`reslab.recurrent.gradient_through_time`.

    Returns:
        ``{radius: float64 tensor (length + 1,)}``.
    """
    radii = _validate.float_sequence("radii", radii, positive=True)
    length = _validate.positive_int("length", length)
    hidden = _validate.positive_int("hidden", hidden)
    xs = _probe_inputs(length, _validate.positive_int("input_size", input_size), _validate.positive_int("batch", batch), _validate.positive_int("seed", seed, minimum=0))
    out = {}
    for r in radii:
        torch.manual_seed(seed)
        cell = set_spectral_radius_(make_cell("rnn", input_size, hidden), r, seed=seed)
        out[r] = gradient_through_time(cell, xs)
    return out


def gradient_curves(kind: str, length: int, *, carry_bias: float | None = None, forget_gate: bool = True, hidden: int = 16, input_size: int = 4, batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """Gradient through time of one freshly initialised cell (PyTorch's initialisation).

    Returns ``{"full": ..., "direct": ...}``, float64 tensors of shape ``(length + 1,)``:

    * ``"full"``: :math:`\\lVert\\partial h_t/\\partial h_0\\rVert_2` for the RNN and the GRU,
      :math:`\\lVert\\partial c_t/\\partial c_0\\rVert_2` for the LSTM (every path included);
    * ``"direct"``: the direct path alone, the mean of :math:`\\prod_s f_s` (LSTM) or
      :math:`\\prod_s z_s` (GRU) over coordinates and sequences; ``None`` for the RNN.

    ``carry_bias`` sets the LSTM's forget-gate or the GRU's update-gate bias (``None``: PyTorch's
    random bias); ``forget_gate=False`` gives the 1997 LSTM.
    """
    kind = _validate.choice("kind", kind, CELLS)
    length = _validate.positive_int("length", length)
    if carry_bias is not None:
        carry_bias = _validate.finite_float("carry_bias", carry_bias)
    forget_gate = _validate.boolean("forget_gate", forget_gate)
    hidden = _validate.positive_int("hidden", hidden)
    xs = _probe_inputs(length, _validate.positive_int("input_size", input_size), _validate.positive_int("batch", batch), _validate.positive_int("seed", seed, minimum=0))
    torch.manual_seed(seed)
    cell = make_cell(kind, input_size, hidden, carry_bias=carry_bias, forget_gate=forget_gate)
    full = gradient_through_time(cell, xs, part="cell" if kind == "lstm" else "state")
    direct = None if kind == "rnn" else carry_retention(cell, xs)
    return {"full": full, "direct": direct}


def _check_curves(curves: object, length: int) -> None:
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a mapping of cell name -> gradient_curves(...) output, got {type(curves).__name__}")
    if not curves:
        raise ValueError("curves must be a non-empty mapping of cell name -> gradient_curves(...) output, got an empty mapping")
    for name, c in curves.items():
        if not isinstance(c, Mapping) or "full" not in c or "direct" not in c:
            raise TypeError(f"curves[{name!r}] must be a mapping with 'full' and 'direct' entries (from gradient_curves), got {type(c).__name__}")
        for part in ("full", "direct"):
            values = c[part]
            if values is None and part == "direct":
                continue
            _validate.tensor(f"curves[{name!r}][{part!r}]", values, ndim=1)
            if values.shape[0] < length + 1:
                raise ValueError(f"curves[{name!r}][{part!r}] must hold at least length + 1 = {length + 1} values, got {values.shape[0]}")


def gradient_frame(curves: dict[str, dict[str, torch.Tensor | None]], length: int, carry_bias: float, *, ylim: tuple[float, float] = (1e-50, 1e3)) -> Figure:
    """One frame of the chapter's explorer: gradient through time up to ``length`` for each cell.

    ``curves`` maps a cell name (``"RNN"``, ``"LSTM"``, ``"GRU"``) to the output of
    :func:`gradient_curves` computed for at least ``length`` steps. Solid lines: every path;
    dashed: the gated direct path alone. Returns the figure (not shown; a
    :class:`~reslab.widgets.FrameExplorer` renders and closes it).
    """
    import matplotlib.pyplot as plt

    from .plots import color, log_line
    from .repro import fmt

    length = _validate.positive_int("length", length)
    carry_bias = _validate.finite_float("carry_bias", carry_bias)
    ylim = _validate.float_pair("ylim", ylim, positive=True, increasing=True)
    _check_curves(curves, length)
    fig, ax = plt.subplots(figsize=(5.6, 3.3))
    t = list(range(length + 1))
    for i, (name, c) in enumerate(curves.items()):
        col = color(i)
        full = c["full"][: length + 1].tolist()
        log_line(ax, t, full, label=f"{name}: all paths ({fmt(full[-1], 2)} at T)", color=col)
        if c["direct"] is not None:
            direct = c["direct"][: length + 1].tolist()
            log_line(ax, t, direct, label=f"{name}: direct path ({fmt(direct[-1], 2)})", color=col, linestyle="--")
    ax.set_ylim(*ylim)
    ax.set_xlabel("steps back in time $t$")
    ax.set_ylabel(r"$\Vert\partial s_t/\partial s_0\Vert_2$")
    ax.set_title(f"Gradient through time, T = {length}, carry-gate bias {carry_bias:g}")
    ax.legend(loc="lower left", fontsize=7)
    return fig


# -- highway versus residual in depth ---------------------------------------------------------

#: Block kinds of :func:`deep_classifier`.
DEEP_KINDS = ("plain", "highway", "residual")


def deep_classifier(kind: str, depth: int, width: int = 32, *, gate_bias: float = -3.0, in_features: int = 64, n_classes: int = 10) -> nn.Sequential:
    """``Linear(in_features, width)``, then ``depth`` blocks of one kind, then ``Linear(width, n_classes)``.

    Blocks (PyTorch's default initialisation throughout):

    * ``"plain"``: :math:`\\mathrm{ReLU}(W x + b)` (:class:`~reslab.blocks.PlainBlock`, one layer);
    * ``"highway"``: :math:`x + T(x)\\odot(\\mathrm{ReLU}(W_H x + b_H) - x)` with gate bias ``gate_bias``
      (:class:`~reslab.blocks.HighwayBlock`; two matrices per block);
    * ``"residual"``: :math:`x + W\\,\\mathrm{ReLU}(x) + b` (:class:`~reslab.blocks.PreActResidualBlock`, one layer).
    """
    kind = _validate.choice("kind", kind, DEEP_KINDS)
    depth = _validate.positive_int("depth", depth)
    width = _validate.positive_int("width", width)
    gate_bias = _validate.finite_float("gate_bias", gate_bias)
    if kind == "plain":
        blocks = [PlainBlock(width, 1) for _ in range(depth)]
    elif kind == "highway":
        blocks = [HighwayBlock(width, gate_bias) for _ in range(depth)]
    else:
        blocks = [PreActResidualBlock(width, 1) for _ in range(depth)]
    return nn.Sequential(nn.Linear(_validate.positive_int("in_features", in_features), width), *blocks, nn.Linear(width, _validate.positive_int("n_classes", n_classes)))


def highway_init_gap(depths: Sequence[int], gate_biases: Sequence[float], *, width: int = 32, n: int = 256, seeds: Sequence[int] = (0, 1, 2)) -> dict[str, torch.Tensor]:
    """How far a freshly initialised highway stack is from the identity.

    For every gate bias and depth, builds ``depth`` :class:`~reslab.blocks.HighwayBlock` of width
    ``width`` (one stack per seed), feeds ``n`` standard normal inputs and measures the relative
    distance :math:`\\lVert F(x) - x\\rVert / \\lVert x\\rVert` (norms over the whole batch) and
    the mean transform gate :math:`T(x)` of the first block.

    Returns:
        ``{"gap": (n_biases, n_depths), "gate": (n_biases,)}``, means over the seeds.
    """
    depths = _validate.int_sequence("depths", depths)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    biases = _validate.float_sequence("gate_biases", gate_biases)
    width = _validate.positive_int("width", width)
    n = _validate.positive_int("n", n)
    gap = torch.zeros(len(biases), len(depths))
    gate = torch.zeros(len(biases))
    with torch.no_grad():
        for s in seeds:
            x = torch.randn(n, width, generator=torch.Generator().manual_seed(s))
            for i, b in enumerate(biases):
                torch.manual_seed(s)
                stack = [HighwayBlock(width, b) for _ in range(max(depths))]
                gate[i] += stack[0].transform_gate(x).mean() / len(seeds)
                h = x
                for d, block in enumerate(stack, start=1):
                    h = block(h)
                    if d in depths:
                        gap[i, depths.index(d)] += float(torch.linalg.vector_norm(h - x) / torch.linalg.vector_norm(x)) / len(seeds)
    return {"gap": gap, "gate": gate}


def highway_vs_residual(depth: int = 30, *, width: int = 32, gate_bias: float = -3.0, seeds: Sequence[int] = (0, 1, 2), steps: int = 100, lr: float = 1e-3, n_train: int = 256, kinds: Sequence[str] = DEEP_KINDS) -> dict[str, object]:
    """Plain, highway and residual classifiers of one depth on the 8x8 digits, one budget.

    Every kind trains ``steps`` full-batch Adam steps at ``lr`` on the first ``n_train`` digits
    (:func:`reslab.data.load_digits`, flattened), one model per seed, batched over seeds with
    :func:`reslab.train.train_seeds`.

    Returns:
        ``{"losses": {kind: (S, steps + 1)}, "accuracy": {kind: (S,)}, "params": {kind: int}}``,
        with training-set accuracy after training.
    """
    from .data import load_digits
    from .train import train_seeds

    depth = _validate.positive_int("depth", depth)
    kinds = _validate.choices("kinds", kinds, DEEP_KINDS)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    width = _validate.positive_int("width", width)
    gate_bias = _validate.finite_float("gate_bias", gate_bias)
    steps = _validate.positive_int("steps", steps, minimum=0)
    lr = _validate.finite_float("lr", lr, positive=True)
    digits = load_digits(_validate.positive_int("n_train", n_train), shape="flat")
    x, y = digits.x_train, digits.y_train
    out: dict[str, dict] = {"losses": {}, "accuracy": {}, "params": {}}
    for kind in kinds:
        res = train_seeds(lambda s, k=kind: deep_classifier(k, depth, width, gate_bias=gate_bias), seeds, x, y, steps=steps, lr=lr, loss="cross_entropy")
        with torch.no_grad():
            acc = torch.tensor([float((m(x).argmax(dim=1) == y).float().mean()) for m in res.models])
        out["losses"][kind] = res.losses
        out["accuracy"][kind] = acc
        out["params"][kind] = sum(p.numel() for p in res.models[0].parameters())
    return out


# -- the Transformer residual stream ------------------------------------------------------------


def reverse_task(n: int, length: int = 8, vocab: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences and their reversal: position ``i`` must output token ``length - 1 - i``.

    Needs attention (each output depends on one other position). Chance accuracy ``1/vocab``.
    Returns ``(tokens, targets)``, both int64 of shape ``(n, length)``.
    """
    n = _validate.positive_int("n", n)
    length = _validate.positive_int("length", length, minimum=2)
    vocab = _validate.positive_int("vocab", vocab, minimum=2)
    gen = torch.Generator().manual_seed(_validate.positive_int("seed", seed, minimum=0))
    tokens = torch.randint(0, vocab, (n, length), generator=gen)
    return tokens, tokens.flip(1)


def _check_heads(d_model: int, n_heads: int) -> tuple[int, int]:
    d_model = _validate.positive_int("d_model", d_model)
    n_heads = _validate.positive_int("n_heads", n_heads)
    if d_model % n_heads:
        raise ValueError(f"d_model must be divisible by n_heads, got d_model={d_model}, n_heads={n_heads}")
    return d_model, n_heads


class TinyTransformer(nn.Module):
    """Token embedding, ``depth`` :class:`~reslab.blocks.TransformerBlock`, (final LN for pre-LN), linear read-out.

    The embedding and a learned positional vector are drawn from :math:`\\mathcal{N}(0, 1/d)` and
    their sum is multiplied by :math:`\\sqrt d`, as in Vaswani et al. (2017). Output: logits
    ``(B, N, vocab)``. It can be stacked with :func:`reslab.train.stack_models` (tokens and
    logits then carry a leading member axis).
    """

    #: ``None``, or ``S`` inside a stack of models (set by :func:`reslab.train.stack_models`).
    members: int | None = None
    #: ``pos`` is stacked with the other parameters; :meth:`forward` handles its member axis.
    stackable_parameters = ("pos",)

    def __init__(self, vocab: int = 10, length: int = 8, d_model: int = 32, n_heads: int = 4, depth: int = 6, norm: str = "pre") -> None:
        super().__init__()
        self.vocab = _validate.positive_int("vocab", vocab, minimum=2)
        self.length = _validate.positive_int("length", length)
        self.d_model, n_heads = _check_heads(d_model, n_heads)
        self.depth = _validate.positive_int("depth", depth)
        self.norm = _validate.choice("norm", norm, TransformerBlock.NORMS)
        self.embed = nn.Embedding(self.vocab, self.d_model)
        self.pos = nn.Parameter(torch.randn(self.length, self.d_model) / math.sqrt(self.d_model))
        nn.init.normal_(self.embed.weight, std=1 / math.sqrt(self.d_model))
        self.blocks = nn.Sequential(*[TransformerBlock(self.d_model, n_heads, self.norm) for _ in range(self.depth)])
        self.final_norm = nn.LayerNorm(self.d_model) if self.norm == "pre" else nn.Identity()
        self.head = nn.Linear(self.d_model, self.vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lead = "B" if self.members is None else "S, B"
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.ndim != lead.count(",") + 2 or tokens.shape[-1] != self.length:
            raise ValueError(f"tokens must be an int64 tensor of shape ({lead}, {self.length})")
        pos = self.pos if self.members is None else self.pos.unsqueeze(1)  # (S, 1, N, d) in a stack
        x = (self.embed(tokens) + pos) * math.sqrt(self.d_model)
        return self.head(self.final_norm(self.blocks(x)))


def transformer_grad_norms(depths: Sequence[int], *, norms: Sequence[str] = ("post", "pre"), seeds: Sequence[int] = (0, 1, 2), d_model: int = 32, n_heads: int = 4, batch: int = 64) -> dict[tuple[str, int], torch.Tensor]:
    """Per-layer gradient norms at initialisation: :math:`\\lVert\\partial\\mathcal{L}/\\partial W_2^{(l)}\\rVert_F`.

    :math:`W_2^{(l)}` is the second matrix of block :math:`l`'s feed-forward network, the
    parameter of Xiong et al.'s (2020) analysis. One batch of :func:`reverse_task`
    (cross-entropy) per seed through a fresh :class:`TinyTransformer`.

    Returns:
        ``{(norm, depth): tensor (len(seeds), depth)}``.
    """
    depths = _validate.int_sequence("depths", depths)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    norms = _validate.choices("norms", norms, TransformerBlock.NORMS)
    _check_heads(d_model, n_heads)
    batch = _validate.positive_int("batch", batch)
    out = {}
    for norm in norms:
        for depth in depths:
            rows = []
            for s in seeds:
                torch.manual_seed(s)
                model = TinyTransformer(d_model=d_model, n_heads=n_heads, depth=depth, norm=norm)
                tokens, targets = reverse_task(batch, model.length, model.vocab, seed=s)
                loss = F_.cross_entropy(model(tokens).reshape(-1, model.vocab), targets.reshape(-1))
                loss.backward()
                rows.append(torch.stack([b.ff2.weight.grad.norm() for b in model.blocks]))
            out[(norm, depth)] = torch.stack(rows).detach()
    return out


@dataclass
class TransformerRuns:
    """What :func:`train_transformers` measured, indexed ``[norm, seed]``.

    Attributes:
        norms, seeds: the grid.
        losses: training loss per step, ``(n_norms, n_seeds, steps + 1)`` (``nan`` if it diverged).
        accuracy: held-out per-token accuracy after training, ``(n_norms, n_seeds)``.
        lr, warmup: the schedule used.
    """

    norms: list[str]
    seeds: list[int]
    losses: torch.Tensor
    accuracy: torch.Tensor
    lr: float
    warmup: int


def train_transformers(*, norms: Sequence[str] = ("post", "pre"), seeds: Sequence[int] = (0, 1, 2), depth: int = 6, d_model: int = 32, n_heads: int = 4, lr: float = 1e-2, warmup: int = 0, steps: int = 100, batch: int = 32, n_test: int = 512, batched: bool = True) -> TransformerRuns:
    """Train :class:`TinyTransformer` on :func:`reverse_task` with Adam, optionally without warm-up.

    The learning rate ramps linearly from ``lr / warmup`` to ``lr`` over the first ``warmup``
    steps (``warmup=0``: constant ``lr`` from the first step). Fresh mini-batches every step,
    the same for every model; one model per (norm, seed). With ``batched=True`` the seeds of one
    norm train at once, stacked by :func:`reslab.train.stack_models` (each seed on its own
    parameters and its own loss, so it follows the trajectory it would follow alone, up to
    float rounding); ``batched=False`` trains the models one by one.
    """
    from .train import stack_models

    norms = _validate.choices("norms", norms, TransformerBlock.NORMS)
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    depth = _validate.positive_int("depth", depth)
    _check_heads(d_model, n_heads)
    lr = _validate.finite_float("lr", lr, positive=True)
    warmup = _validate.positive_int("warmup", warmup, minimum=0)
    steps = _validate.positive_int("steps", steps, minimum=0)
    batch = _validate.positive_int("batch", batch)
    n_test = _validate.positive_int("n_test", n_test)
    batched = _validate.boolean("batched", batched)
    losses = torch.full((len(norms), len(seeds), steps + 1), float("nan"))
    acc = torch.zeros(len(norms), len(seeds))
    test_x, test_y = reverse_task(_validate.positive_int("n_test", n_test), seed=10**6)

    def per_member_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over all tokens, one value per member: logits ``(M, B, N, vocab)``."""
        m, v = logits.shape[0], logits.shape[-1]
        return F_.cross_entropy(logits.reshape(m * y.numel(), v), y.reshape(-1).repeat(m), reduction="none").view(m, -1).mean(dim=1)

    for i, norm in enumerate(norms):
        models = []
        for s in seeds:
            torch.manual_seed(s)
            models.append(TinyTransformer(d_model=d_model, n_heads=n_heads, depth=depth, norm=norm))
        groups = [stack_models(models)] if batched else models
        for g, net in enumerate(groups):
            rows = slice(None) if batched else slice(g, g + 1)
            params = [net.flat] if batched else list(net.parameters())
            opt = torch.optim.Adam(params, lr=lr, foreach=True)

            def forward(x: torch.Tensor, net: nn.Module = net) -> torch.Tensor:
                return net(x) if batched else net(x).unsqueeze(0)

            for step in range(steps + 1):
                x, y = reverse_task(batch, seed=step + 1)
                loss = per_member_loss(forward(x), y)
                losses[i, rows, step] = loss.detach()
                if step == steps:
                    break
                for group in opt.param_groups:
                    group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
                opt.zero_grad(set_to_none=not batched)  # a stack accumulates into its flat gradient
                loss.sum().backward()
                opt.step()
            with torch.no_grad():
                acc[i, rows] = (forward(test_x).argmax(dim=-1) == test_y).float().mean(dim=(1, 2))
    return TransformerRuns(norms, seeds, losses, acc, lr, warmup)
