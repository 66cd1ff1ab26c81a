"""Tiny deterministic training loops, and the same loop batched over seeds.

:func:`train_seeds` trains one model per seed *at once*. The seeds do not interact: the
per-seed losses are summed before the single backward pass, the gradient of the sum with
respect to one seed's parameters is that seed's own gradient, and Adam and SGD update each
entry of a parameter tensor on its own, so each seed follows the trajectory it would follow
alone (up to float rounding in the batched products). Two batched engines:

* ``"stacked"`` (:func:`stack_models`): one copy of the network whose layers with weights
  (linear, convolution, layer norm, embedding) hold every seed's weights stacked on a new
  leading *member* axis. The activations carry that axis too, ``(S, N, ...)``; a linear layer
  is one batched product (:func:`torch.baddbmm`), a convolution one grouped convolution with
  the seeds as the groups. Every other layer (activations, additions, gates, attention) runs
  unchanged on the stacked activations, so the blocks' own ``forward`` code is what trains.
  All parameters live in one flat tensor, so one optimiser step is a handful of calls. This is
  the fast path: one call per layer for all seeds, with no per-call transform overhead.
* ``"vmap"``: the parameters stacked by :func:`torch.func.stack_module_state`, one forward
  pass mapped over the seeds with :func:`torch.vmap` and :func:`torch.func.functional_call`.
  It maps any architecture, at a higher cost per operation.

``engine="auto"`` (the default) takes the stacked engine when the network can be stacked and,
on the data, gives every seed the output its own model gives; otherwise ``vmap``. One case
the stacked engine cannot follow: a parameter that takes part in some steps and not in others
(its gradient is ``None`` in some). The loop's optimiser skips it in those steps, but an
optimiser over one flat tensor would move it by Adam's momentum; the stacked engine detects
this before the optimiser step, and ``"auto"`` then starts again with ``vmap`` (``"stacked"``
raises ``RuntimeError``). Frozen parameters (``requires_grad=False``) stay frozen.
``batched=False`` runs the plain Python loop of :func:`train`, for comparison.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F_

from . import _validate

__all__ = ["ENGINES", "LOSSES", "OPTIMIZERS", "StackedModels", "TrainResult", "loss_fn", "stack_models", "train", "train_seeds"]

LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("adam", "sgd")
#: How :func:`train_seeds` batches the seeds.
ENGINES = ("auto", "stacked", "vmap")


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name``: ``"mse"`` (mean over all entries) or ``"cross_entropy"`` (integer targets)."""
    name = _validate.choice("name (of a loss)", name, LOSSES)
    return F_.mse_loss if name == "mse" else F_.cross_entropy


@dataclass
class TrainResult:
    """Losses recorded by :func:`train` or :func:`train_seeds`.

    Attributes:
        losses: shape ``(S, steps + 1)``: the training loss before each step, and after the last.
        models: the trained models, one per seed (for :func:`train`, a list of one).
        engine: how the seeds were trained: ``"loop"``, ``"stacked"`` or ``"vmap"``.
    """

    losses: torch.Tensor
    models: list[nn.Module]
    engine: str = "loop"

    @property
    def final(self) -> torch.Tensor:
        """Final training loss per seed, shape ``(S,)``."""
        return self.losses[:, -1]


def _check_common(steps: int, lr: float, loss: str, optimizer: str, batch_size: int | None, data_seed: int) -> tuple[int, float, Callable, str, int | None]:
    _validate.positive_int("data_seed", data_seed, minimum=0)
    steps = _validate.positive_int("steps", steps, minimum=0)
    lr = _validate.finite_float("lr", lr, positive=True)
    fn = loss_fn(_validate.choice("loss", loss, LOSSES))
    optimizer = _validate.choice("optimizer", optimizer, OPTIMIZERS)
    if batch_size is not None:
        batch_size = _validate.positive_int("batch_size", batch_size)
    return steps, lr, fn, optimizer, batch_size


def _make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    # foreach: one call per update formula for all tensors instead of a Python loop over them;
    # the same arithmetic, so the same bits as the default single-tensor loop (tested).
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, foreach=True)


def _batches(n: int, steps: int, batch_size: int | None, seed: int) -> list[torch.Tensor | None]:
    """Index sets for each step: ``None`` (full batch) or a seeded shuffle shared by all models."""
    if batch_size is None or batch_size >= n:
        return [None] * steps
    gen = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor | None] = []
    perm = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        out.append(perm[pos : pos + batch_size])
        pos += batch_size
    return out


def _check_data(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    _validate.tensor("inputs", inputs)
    if inputs.ndim == 0:
        raise ValueError("inputs must have at least one dimension (one row per example), got a 0-dimensional tensor")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs and targets must have the same number of examples, got {inputs.shape[0]} and {targets.shape[0]}")


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    optimizer: str = "adam",
    batch_size: int | None = None,
    data_seed: int = 0,
) -> TrainResult:
    """Train ``model`` in place for ``steps`` steps and record the full-data training loss.

    Args:
        model: the network.
        inputs, targets: the training set (``targets`` are class indices for ``"cross_entropy"``).
        steps: optimiser steps (``>= 0``).
        lr: learning rate (``> 0``).
        loss: ``"mse"`` or ``"cross_entropy"``.
        optimizer: ``"adam"`` or ``"sgd"``.
        batch_size: mini-batch size, or ``None`` for full-batch steps.
        data_seed: seed of the mini-batch order (shared by every model, so seeds differ only by
            their initialisation).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    steps, lr, fn, optimizer, batch_size = _check_common(steps, lr, loss, optimizer, batch_size, data_seed)
    _check_data(inputs, targets)
    losses = _fit(
        lambda x, y: fn(model(x), y)[None],
        list(model.parameters()),
        inputs,
        targets,
        steps=steps,
        lr=lr,
        optimizer=optimizer,
        batch_size=batch_size,
        data_seed=data_seed,
        members=1,
        set_to_none=True,
    )
    return TrainResult(losses, [model])


# -- the stacked engine -------------------------------------------------------------------------


class _StackedLinear(nn.Module):
    """``S`` linear layers as one batched product; input ``(S, ..., in)``, output ``(S, ..., out)``.

    Most layers hold ``weight`` ``(S, in, out)`` (the members' weights transposed once, so that
    the product needs no per-call transpose) and ``bias`` ``(S, 1, out)``, and compute
    :math:`x W^\\top + b` with one ``baddbmm``. A layer that narrows a lot (``4 * out <= in``,
    such as a classifier head) computes the transposed product :math:`(W x^\\top + b)^\\top`
    instead, from ``weight`` ``(S, out, in)`` and ``bias`` ``(S, out, 1)``: the same numbers,
    but its weight gradient is then a product of the shape the CPU's matrix library handles
    fast (several times faster for a 256 -> 10 head).
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.in_features, self.out_features = layers[0].in_features, layers[0].out_features
        self.narrow = 4 * self.out_features <= self.in_features
        weights = torch.stack([m.weight.detach() for m in layers])  # (S, out, in)
        self.weight = nn.Parameter(weights.clone() if self.narrow else weights.transpose(1, 2).contiguous())
        if layers[0].bias is None:
            self.bias = None
        else:
            biases = torch.stack([m.bias.detach() for m in layers])
            self.bias = nn.Parameter(biases.unsqueeze(2 if self.narrow else 1).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            s, lead = x.shape[0], x.shape[1:-1]
            return self(x.reshape(s, -1, self.in_features)).reshape(s, *lead, self.out_features)
        if self.narrow:
            x_t = x.transpose(1, 2)
            out_t = torch.bmm(self.weight, x_t) if self.bias is None else torch.baddbmm(self.bias, self.weight, x_t)
            return out_t.transpose(1, 2)
        return torch.bmm(x, self.weight) if self.bias is None else torch.baddbmm(self.bias, x, self.weight)

    @torch.no_grad()
    def write_back(self, i: int, layer: nn.Linear) -> None:
        layer.weight.copy_(self.weight[i] if self.narrow else self.weight[i].T)
        if self.bias is not None:
            layer.bias.copy_(self.bias[i].reshape(-1))


class _StackedConv2d(nn.Module):
    """``S`` 2-d convolutions as one grouped convolution (the seeds are the groups).

    Input and output ``(S, N, C, H, W)``. Internally the seeds sit next to the channels in
    channels-last memory, ``(N, H, W, S, C)``: the grouped convolution reads and writes that
    layout directly (oneDNN's fast path), and element-wise layers in between keep it, so no
    activation is copied between two convolutions. Holds ``weight`` ``(S * out, in, kh, kw)``
    and ``bias`` ``(S * out,)``, member after member.
    """

    def __init__(self, layers: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = layers[0]
        self.out_channels = first.out_channels
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in layers]))
        self.bias = None if first.bias is None else nn.Parameter(torch.cat([m.bias.detach() for m in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, n, c, h, w = x.shape
        grouped = x.transpose(0, 1).reshape(n, s * c, h, w).contiguous(memory_format=torch.channels_last)
        out = F_.conv2d(grouped, self.weight, None, self.stride, self.padding, self.dilation, groups=s)
        if self.bias is not None:
            # added after the convolution, in place (the convolution does not keep its output for
            # its backward pass): oneDNN's backward pass is much slower with a bias than a sum
            out = out.add_(self.bias.view(1, -1, 1, 1))
        return out.reshape(n, s, self.out_channels, *out.shape[-2:]).transpose(0, 1)

    @torch.no_grad()
    def write_back(self, i: int, layer: nn.Conv2d) -> None:
        rows = slice(i * self.out_channels, (i + 1) * self.out_channels)
        layer.weight.copy_(self.weight[rows])
        if self.bias is not None:
            layer.bias.copy_(self.bias[rows])


class _StackedLayerNorm(nn.Module):
    """``S`` layer normalisations over the last axis; ``weight`` and ``bias`` ``(S, d)``."""

    def __init__(self, layers: Sequence[nn.LayerNorm]) -> None:
        super().__init__()
        self.normalized_shape, self.eps = layers[0].normalized_shape, layers[0].eps
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        self.bias = None if layers[0].bias is None else nn.Parameter(torch.stack([m.bias.detach() for m in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])  # members first, features last
        normed = F_.layer_norm(x, self.normalized_shape, None, None, self.eps)
        if self.bias is None:
            return normed * self.weight.view(shape)
        return torch.addcmul(self.bias.view(shape), normed, self.weight.view(shape))

    @torch.no_grad()
    def write_back(self, i: int, layer: nn.LayerNorm) -> None:
        layer.weight.copy_(self.weight[i])
        if self.bias is not None:
            layer.bias.copy_(self.bias[i])


class _StackedEmbedding(nn.Module):
    """``S`` embedding tables as one ``(S * V, d)`` table; indices ``(S, ...)`` are offset by member."""

    def __init__(self, layers: Sequence[nn.Embedding]) -> None:
        super().__init__()
        self.num_embeddings = layers[0].num_embeddings
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in layers]))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        offsets = torch.arange(idx.shape[0], device=idx.device).view(-1, *([1] * (idx.dim() - 1))) * self.num_embeddings
        return F_.embedding(idx + offsets, self.weight)

    @torch.no_grad()
    def write_back(self, i: int, layer: nn.Embedding) -> None:
        layer.weight.copy_(self.weight[i * self.num_embeddings : (i + 1) * self.num_embeddings])


_STACKABLE = {nn.Linear: _StackedLinear, nn.Conv2d: _StackedConv2d, nn.LayerNorm: _StackedLayerNorm, nn.Embedding: _StackedEmbedding}
_STACKED = tuple(_STACKABLE.values())


def _own_stacked(module: nn.Module) -> tuple[str, ...]:
    """Parameters a module holds itself and stacks: those it lists in ``stackable_parameters``."""
    return tuple(getattr(module, "stackable_parameters", ()))


def _check_stackable(name: str, module: nn.Module) -> None:
    where = name or "the top level"
    kind = type(module)
    if kind is nn.Conv2d and (module.padding_mode != "zeros" or module.groups != 1 or isinstance(module.padding, str)):
        raise TypeError(f"cannot stack the nn.Conv2d at {where!r}: only zero padding given as numbers and groups=1")
    if kind is nn.LayerNorm and module.weight is not None and len(module.normalized_shape) != 1:
        raise TypeError(f"cannot stack the nn.LayerNorm at {where!r}: a normalisation with weights must be over the last axis only")
    if kind is nn.Embedding and (module.padding_idx is not None or module.max_norm is not None or module.sparse or module.scale_grad_by_freq):
        raise TypeError(f"cannot stack the nn.Embedding at {where!r}: only a plain table (no padding_idx, max_norm, sparse or scaled gradients)")
    if kind in _STACKABLE:
        return
    own = [p for p, _ in module.named_parameters(recurse=False) if p not in _own_stacked(module)]
    if own:
        raise TypeError(
            f"cannot stack {kind.__name__} at {where!r}: it holds parameters {own} itself; only nn.Linear, nn.Conv2d, "
            "nn.LayerNorm, nn.Embedding and parameters a module lists in `stackable_parameters` can be stacked"
        )


class StackedModels(nn.Module):
    """``S`` models of one architecture as one network with a leading member axis (see :func:`stack_models`).

    ``stacked(x)`` feeds the same input ``x`` to every member and returns the members' outputs
    stacked, ``(S, *output_shape)``.

    All parameters live in one flat tensor, ``stacked.flat``, and their gradients in
    ``stacked.flat.grad``; the layers' parameters are views into them. An optimiser over
    ``[stacked.flat]`` therefore updates every member with a handful of calls per step
    (element-wise optimisers such as Adam and SGD compute exactly what they compute on the
    layers' tensors one by one). Zero the gradients in place (``zero_grad(set_to_none=False)``):
    autograd then accumulates into the views.
    """

    def __init__(self, network: nn.Module, members: int) -> None:
        super().__init__()
        self.network = network
        self.members = members
        owners = [(prefix, module, name, p) for prefix, module in network.named_modules() for name, p in module.named_parameters(recurse=False)]
        self.flat = torch.cat([p.detach().reshape(-1) for *_, p in owners]) if owners else torch.zeros(0)
        self.flat.grad = torch.zeros_like(self.flat)
        #: ``(qualified name, parameter)`` for every parameter of the stacked network, in order.
        self.views: list[tuple[str, nn.Parameter]] = []
        start = 0
        for prefix, module, name, p in owners:
            n = p.numel()
            view = nn.Parameter(self.flat[start : start + n].view(p.shape), requires_grad=p.requires_grad)
            view.grad = self.flat.grad[start : start + n].view(p.shape)
            setattr(module, name, view)
            self.views.append((f"{prefix}.{name}" if prefix else name, view))
            start += n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.expand(self.members, *x.shape))

    @torch.no_grad()
    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy member ``i``'s parameters into ``models[i]`` (the models :func:`stack_models` was given)."""
        if isinstance(models, nn.Module) or not isinstance(models, Sequence) or len(models) != self.members:
            raise ValueError(f"models must be a list of {self.members} models")
        for name, module in self.network.named_modules():
            for i, m in enumerate(models):
                if isinstance(module, _STACKED):
                    module.write_back(i, m.get_submodule(name))
                for pname in _own_stacked(module):
                    getattr(m.get_submodule(name), pname).copy_(getattr(module, pname)[i])


def stack_models(models: Sequence[nn.Module]) -> StackedModels:
    """``S`` models of one architecture as one :class:`StackedModels` (the ``"stacked"`` engine).

    Every ``nn.Linear``, ``nn.Conv2d`` (zero padding, one group), ``nn.LayerNorm`` (over the
    last axis; one without weights is kept as it is) and ``nn.Embedding`` (a plain table) of
    the first model is replaced by a layer holding all members' weights; every other module is kept, shared, and runs on activations
    that carry the member axis in front, ``(S, N, ...)``. So the architecture may contain any
    parameter-free modules and code (activations, additions, gates, attention, flattening over
    the trailing axes). A module may hold parameters itself only if it names them in a class
    attribute ``stackable_parameters``: they are stacked to ``(S, *shape)`` and its ``forward``
    must handle the member axis (it can read ``self.members``). Buffers must be equal in every
    member. Every module of the stacked network gets an attribute ``members = S`` (input checks
    that count dimensions read it). The parameters are new tensors: training the stack does not
    change ``models`` until :meth:`StackedModels.write_back`.

    Raises:
        ValueError: ``models`` empty, or the models differ in structure, shapes or buffers.
        TypeError: a layer that cannot be stacked holds parameters.
    """
    if isinstance(models, nn.Module) or not isinstance(models, Sequence) or len(models) == 0:
        raise ValueError("models must be a non-empty list of torch.nn.Module of one architecture")
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{i}] must be a torch.nn.Module, got {type(m).__name__}")
    first = models[0]
    names = [name for name, _ in first.named_modules()]
    per_model = []
    for i, m in enumerate(models):
        mods = dict(m.named_modules())
        if list(mods) != names or any(type(mods[k]) is not type(v) for k, v in first.named_modules()):
            raise ValueError(f"models[{i}] differs in structure from models[0]")
        per_model.append(mods)
    for name, module in first.named_modules():
        _check_stackable(name, module)
        for i, mods in enumerate(per_model[1:], start=1):
            for pname, p in module.named_parameters(recurse=False):
                if getattr(mods[name], pname).shape != p.shape:
                    raise ValueError(f"models[{i}] differs from models[0] in the shape of parameter {name}.{pname}")
                if getattr(mods[name], pname).requires_grad != p.requires_grad:
                    raise ValueError(f"models[{i}] differs from models[0] in whether parameter {name}.{pname} is trained (requires_grad)")
            for bname, buf in module.named_buffers(recurse=False):
                other = getattr(mods[name], bname)
                if other.shape != buf.shape or not torch.equal(other, buf):
                    raise ValueError(f"models[{i}] differs from models[0] in buffer {name}.{bname}: buffers are shared, not stacked")
    network = copy.deepcopy(first)
    # a layer without weights (a LayerNorm with elementwise_affine=False) runs unchanged
    stack = [name for name, module in network.named_modules() if type(module) in _STACKABLE and next(module.parameters(), None) is not None]
    for name in [name for name in stack if name]:
        parent_name, _, child = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        setattr(parent, child, _STACKABLE[type(getattr(parent, child))]([mods[name] for mods in per_model]))
    for name, module in network.named_modules():
        for pname in _own_stacked(module):
            setattr(module, pname, nn.Parameter(torch.stack([getattr(mods[name], pname).detach() for mods in per_model])))
    if "" in stack:  # a bare layer
        network = _STACKABLE[type(network)](models)
    for module in network.modules():
        module.members = len(models)
    frozen = {name for name, p in first.named_parameters() if not p.requires_grad}
    for name, p in network.named_parameters():
        p.requires_grad_(name not in frozen)  # a frozen parameter stays frozen in the stack
    return StackedModels(network, len(models))


def _stacked_engine(models: list[nn.Module], inputs: torch.Tensor) -> StackedModels | None:
    """The stacked network if it can be built and reproduces every member's output on ``inputs``.

    The check runs on the first 16 examples: enough to catch an architecture whose code mixes
    examples (and would mix members), cheap next to training. It runs on copies (a throwaway
    stack and copies of the models), so a model whose ``forward`` keeps state, such as a call
    counter, starts training exactly as the loop would start it.
    """
    probe = inputs[:16]
    try:
        trial = stack_models(models)
        with torch.no_grad():
            out = trial(probe)
            ref = torch.stack([copy.deepcopy(m)(probe) for m in models])
    except (TypeError, ValueError, RuntimeError, IndexError):
        return None
    if out.shape != ref.shape:
        return None
    # the largest finite |output|: NaN -> 0 (nan_to_num's default) and +inf -> 0 (|ref| holds no -inf)
    scale = float(ref.abs().nan_to_num(posinf=0.0).max()) if ref.numel() else 0.0
    if not torch.allclose(out, ref, rtol=1e-4, atol=1e-6 * max(scale, 1.0), equal_nan=True):
        return None
    return stack_models(models)


def _member_losses(name: str, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss of each member, ``(S,)``, from stacked outputs ``(S, N, ...)`` and shared targets."""
    if name == "mse":
        return F_.mse_loss(out, targets.expand_as(out), reduction="none").flatten(1).mean(dim=1)
    # cross-entropy: classes on axis 2 of (S, N, C, ...); move them to axis 1 as the loss expects
    per_example = F_.cross_entropy(out.movedim(2, 1), targets.expand(out.shape[0], *targets.shape), reduction="none")
    return per_example.flatten(1).mean(dim=1)


def train_seeds(
    build: Callable[[int], nn.Module],
    seeds: Sequence[int],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    lr: float,
    loss: str = "mse",
    optimizer: str = "adam",
    batch_size: int | None = None,
    data_seed: int = 0,
    batched: bool = True,
    engine: str = "auto",
) -> TrainResult:
    """Train ``build(seed)`` for every seed on the same data, all seeds at once.

    ``build(seed)`` must return a freshly initialised model (it is called with the global
    generator seeded to ``seed``, so a builder that ignores its argument still gets distinct,
    reproducible initialisations). All models must share one architecture. The trained weights
    are written back into the returned models.

    Args:
        build, seeds: the models.
        inputs, targets, steps, lr, loss, optimizer, batch_size, data_seed: as for :func:`train`.
        batched: ``False`` trains the models one after the other with :func:`train`.
        engine: ``"stacked"`` (:func:`stack_models`; raises ``TypeError`` if the architecture
            cannot be stacked, ``RuntimeError`` if a parameter gets a gradient in some steps and
            not in others), ``"vmap"``, or ``"auto"``: stacked where it can be built, reproduces
            every model's output on ``inputs`` and the same parameters train in every step,
            else ``vmap``.

    Returns:
        :class:`TrainResult` with ``losses`` of shape ``(len(seeds), steps + 1)``; its ``engine``
        says which engine ran.
    """
    if not callable(build):
        raise TypeError(f"build must be a callable seed -> nn.Module, got {type(build).__name__}")
    seeds = _validate.int_sequence("seeds", seeds, minimum=0)
    steps, lr, fn, optimizer, batch_size = _check_common(steps, lr, loss, optimizer, batch_size, data_seed)
    batched = _validate.boolean("batched", batched)
    _check_data(inputs, targets)
    engine = _validate.choice("engine", engine, ENGINES)
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        m = build(seed)
        if not isinstance(m, nn.Module):
            raise TypeError(f"build must return a torch.nn.Module, got {type(m).__name__}")
        models.append(m)
    if not batched:
        results = [train(m, inputs, targets, steps=steps, lr=lr, loss=loss, optimizer=optimizer, batch_size=batch_size, data_seed=data_seed) for m in models]
        return TrainResult(torch.cat([r.losses for r in results]), models, "loop")

    run = dict(steps=steps, lr=lr, optimizer=optimizer, batch_size=batch_size, data_seed=data_seed)
    stacked = None
    if engine == "stacked":
        stacked = stack_models(models)
    elif engine == "auto":
        stacked = _stacked_engine(models, inputs)
    if stacked is not None:
        try:
            losses = _fit_stacked(stacked, loss, inputs, targets, **run)
        except _NoGradient as missing:
            if engine == "stacked":
                raise RuntimeError(
                    f"the stacked engine cannot train this model: parameter {missing.name!r} gets a gradient in some "
                    f"steps and not in others (step {missing.step} differs from step 0); in one flat optimiser step "
                    "Adam's momentum would move it where the loop leaves it alone; use engine='vmap' or 'auto'"
                ) from None
        else:
            stacked.write_back(models)
            return TrainResult(losses, models, "stacked")
    return TrainResult(_fit_vmap(models, fn, inputs, targets, **run), models, "vmap")


class _NoGradient(Exception):
    """A parameter of the stacked network got a gradient in some steps and not in others (see :func:`_fit_stacked`)."""

    def __init__(self, name: str, step: int) -> None:
        super().__init__()  # caught inside train_seeds: only name and step are read
        self.name, self.step = name, step


def _fit(
    member_losses: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: list[torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    lr: float,
    optimizer: str,
    batch_size: int | None,
    data_seed: int,
    members: int,
    set_to_none: bool,
    after_backward: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """The training loop of every engine; returns the per-member losses, ``(members, steps + 1)``."""
    opt = _make_optimizer(optimizer, params, lr)
    losses = torch.empty(members, steps + 1)
    for step, idx in enumerate(_batches(inputs.shape[0], steps, batch_size, data_seed)):
        xb, yb = (inputs, targets) if idx is None else (inputs[idx], targets[idx])
        opt.zero_grad(set_to_none=set_to_none)
        values = member_losses(xb, yb)
        values.sum().backward()
        if after_backward is not None:
            after_backward(step)
        if idx is None:
            losses[:, step] = values.detach()
        else:
            with torch.no_grad():
                losses[:, step] = member_losses(inputs, targets)
        opt.step()
    with torch.no_grad():
        losses[:, steps] = member_losses(inputs, targets)
    return losses


def _fit_stacked(stacked: StackedModels, loss: str, inputs: torch.Tensor, targets: torch.Tensor, **run) -> torch.Tensor:
    """Train the stacked network; raises :class:`_NoGradient` if the parameters that get a
    gradient change from one step to another.

    The optimiser sees one flat tensor, so it cannot leave out one parameter the way the loop's
    optimiser skips a parameter whose gradient is ``None``. A parameter that gets no gradient
    in *any* step is harmless: its gradient stays zero, so are Adam's moments, and its update
    is exactly zero, as in the loop. One that takes part in some steps and not in others is
    not: momentum would move it, and Adam's step count would differ from the loop's. A hook on
    every trained parameter records which received a gradient; if that set is not the one of
    step 0, the run stops before the optimiser step.
    """
    trained = [i for i, (_, view) in enumerate(stacked.views) if view.requires_grad]
    touched: set[int] = set()
    hooks = [stacked.views[i][1].register_post_accumulate_grad_hook(lambda _p, i=i: touched.add(i)) for i in trained]
    first: set[int] = set()

    def check(step: int) -> None:
        if step == 0:
            first.update(touched)
        elif touched != first:
            raise _NoGradient(stacked.views[min(touched ^ first)][0], step)
        touched.clear()

    try:
        return _fit(lambda x, y: _member_losses(loss, stacked(x), y), [stacked.flat], inputs, targets, members=stacked.members, set_to_none=False, after_backward=check, **run)
    finally:
        for hook in hooks:
            hook.remove()


def _fit_vmap(models: list[nn.Module], fn: Callable, inputs: torch.Tensor, targets: torch.Tensor, **run) -> torch.Tensor:
    """Train the models with their parameters stacked and the forward pass mapped by :func:`torch.vmap`."""
    vparams, buffers = torch.func.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def one(p, b, x):
        return torch.func.functional_call(base, (p, b), (x,))

    forward = torch.vmap(one, in_dims=(0, 0, None))
    per_seed_loss = torch.vmap(lambda out, y: fn(out, y), in_dims=(0, None))
    losses = _fit(lambda x, y: per_seed_loss(forward(vparams, buffers, x), y), list(vparams.values()), inputs, targets, members=len(models), set_to_none=True, **run)
    with torch.no_grad():
        for i, m in enumerate(models):
            for name, p in m.named_parameters():
                p.copy_(vparams[name][i])
    return losses
