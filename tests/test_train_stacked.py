"""The stacked engine in detail: which layers it stacks and how, the messages of the layers it
refuses, the tolerance of its output check, and the optimiser settings (added for mutation testing)."""

import re

import pytest
import torch
from torch import nn

from reslab import train


def _same_as_members(models, x, atol=1e-6):
    """The stack of ``models`` gives, on ``x``, each member's own output (and its own shape)."""
    stacked = train.stack_models(models)
    with torch.no_grad():
        out = stacked(x)
        ref = torch.stack([m(x) for m in models])
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=1e-5, atol=atol)
    return stacked


# -- the optimiser ------------------------------------------------------------------------------


def test_optimizers_take_the_foreach_implementation():
    param = nn.Parameter(torch.zeros(3))
    for name, cls in (("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)):
        opt = train._make_optimizer(name, [param], 0.25)
        assert type(opt) is cls
        assert opt.defaults["foreach"] is True, name
        assert opt.defaults["lr"] == 0.25


# -- what cannot be stacked, and where ---------------------------------------------------------


def _refused(models, needle):
    with pytest.raises(TypeError, match=re.escape(needle)):
        train.stack_models(models)


def test_unstackable_module_is_named_by_its_place():
    _refused([nn.PReLU(), nn.PReLU()], "cannot stack PReLU at 'the top level': it holds parameters ['weight'] itself")
    _refused([nn.Sequential(nn.Linear(2, 2), nn.PReLU())] * 2, "cannot stack PReLU at '1':")
    nested = lambda: nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.PReLU()))  # noqa: E731
    _refused([nested(), nested()], "cannot stack PReLU at '0.1':")
    conv = [nn.Conv2d(2, 2, 3, groups=2)] * 2
    _refused(conv, "cannot stack the nn.Conv2d at 'the top level': only zero padding given as numbers and groups=1")


class _Parent(nn.Module):
    """Holds no parameter itself; its child does (and is stackable)."""

    def __init__(self) -> None:
        super().__init__()
        self.child = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.child(x))


def test_a_parent_of_parameters_is_not_refused():
    torch.manual_seed(0)
    models = [nn.Sequential(_Parent(), nn.Linear(3, 1)) for _ in range(2)]
    stacked = _same_as_members(models, torch.randn(4, 2))
    assert [name for name, _ in stacked.views] == ["0.child.weight", "0.child.bias", "1.weight", "1.bias"]


@pytest.mark.parametrize(
    "conv",
    [
        lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
        lambda: nn.Conv2d(2, 2, 3, padding=1, groups=2),
        lambda: nn.Conv2d(2, 2, 3, padding="same"),
    ],
    ids=["padding_mode", "groups", "padding_str"],
)
def test_each_unstackable_conv_property_alone_is_refused(conv):
    _refused([nn.Sequential(conv()), nn.Sequential(conv())], "cannot stack the nn.Conv2d at '0': only zero padding given as numbers and groups=1")


@pytest.mark.parametrize(
    "kwargs",
    [{"padding_idx": 0}, {"max_norm": 1.0}, {"sparse": True}, {"scale_grad_by_freq": True}],
    ids=lambda kw: next(iter(kw)),
)
def test_each_unstackable_embedding_property_alone_is_refused(kwargs):
    _refused(
        [nn.Sequential(nn.Embedding(5, 3, **kwargs)) for _ in range(2)],
        "cannot stack the nn.Embedding at '0': only a plain table (no padding_idx, max_norm, sparse or scaled gradients)",
    )


def test_stack_models_wants_a_sequence():
    with pytest.raises(ValueError, match="models must be a non-empty list of torch.nn.Module"):
        train.stack_models(m for m in [nn.Linear(2, 2), nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="models must be a non-empty list of torch.nn.Module"):
        train.stack_models(nn.Linear(2, 2))


# -- the stacked layers -------------------------------------------------------------------------


def test_parameter_free_network_stacks_to_an_empty_flat_tensor():
    stacked = train.stack_models([nn.ReLU(), nn.ReLU(), nn.ReLU()])
    assert stacked.flat.shape == (0,) and stacked.flat.grad.shape == (0,)
    assert stacked.views == []
    x = torch.tensor([[-1.0, 2.0]])
    assert torch.equal(stacked(x), torch.tensor([[[0.0, 2.0]]] * 3))


def test_linear_narrows_from_four_times_the_output_width():
    for d_in, narrow in ((8, True), (7, False)):
        layer = train.stack_models([nn.Linear(d_in, 2), nn.Linear(d_in, 2), nn.Linear(d_in, 2)]).network
        assert layer.narrow is narrow, d_in
        assert layer.weight.shape == ((3, 2, d_in) if narrow else (3, d_in, 2))
        assert layer.bias.shape == ((3, 2, 1) if narrow else (3, 1, 2))


def test_narrow_linear_without_bias_equals_its_members():
    torch.manual_seed(1)
    lin = [nn.Linear(8, 2, bias=False) for _ in range(2)]
    x = torch.randn(5, 8)
    stacked = _same_as_members(lin, x)
    assert stacked.network.narrow and stacked.network.bias is None
    out = stacked(x)
    g = torch.randn_like(out)
    out.backward(g)
    for i, m in enumerate(lin):
        m(x).backward(g[i])
        assert torch.allclose(stacked.network.weight.grad[i], m.weight.grad, atol=1e-5)


def test_conv_with_stride_padding_and_dilation_equals_its_members():
    torch.manual_seed(2)
    convs = [nn.Conv2d(2, 3, 3, stride=2, padding=3, dilation=2) for _ in range(2)]
    x = torch.randn(2, 2, 9, 9)
    stacked = _same_as_members(convs, x, atol=1e-5)
    assert stacked(x).shape == (2, 2, 3, 6, 6)


def test_single_conv_without_bias_equals_its_member():
    torch.manual_seed(3)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU())
    stacked = _same_as_members([conv], torch.randn(2, 1, 5, 5), atol=1e-5)
    assert stacked.network[0].bias is None
    assert stacked.flat.numel() == 2 * 1 * 3 * 3


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_keeps_eps_and_gain(bias):
    torch.manual_seed(4)
    norms = [nn.LayerNorm(4, eps=0.5, bias=bias) for _ in range(2)]
    with torch.no_grad():
        for i, m in enumerate(norms):
            m.weight.copy_(torch.tensor([2.0, -1.0, 0.5, 3.0]) * (i + 1))
            if bias:
                m.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    x = torch.randn(3, 4) * 0.3  # eps = 0.5 is far from the default 1e-5 at this variance
    stacked = _same_as_members(norms, x)
    assert (stacked.network.bias is None) is not bias


def test_embedding_offsets_live_on_the_device_of_the_indices():
    stacked = train.stack_models([nn.Embedding(5, 3), nn.Embedding(5, 3)]).to("meta")
    out = stacked(torch.zeros(4, dtype=torch.long, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 4, 3)


# -- which engine runs ---------------------------------------------------------------------------


def test_vmap_engine_with_a_single_seed_equals_the_loop():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 3, generator=gen)
    y = x.sum(dim=1, keepdim=True)
    kw = dict(steps=3, lr=0.05)
    vmapped = train.train_seeds(lambda s: nn.Linear(3, 1), [2], x, y, engine="vmap", **kw)
    loop = train.train_seeds(lambda s: nn.Linear(3, 1), [2], x, y, batched=False, **kw)
    assert vmapped.engine == "vmap" and loop.engine == "loop"
    assert vmapped.losses.shape == (1, 4)
    assert torch.allclose(vmapped.losses, loop.losses, rtol=1e-6)
    assert torch.allclose(vmapped.models[0].weight, loop.models[0].weight, rtol=1e-6)


class _Shifted(nn.Module):
    """Outputs ``bias`` for every example; stacked (a 3-d input), ``bias + shift``."""

    def __init__(self, bias, shift) -> None:
        super().__init__()
        self.lin = nn.Linear(1, len(bias))
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.bias.copy_(torch.tensor(bias))
        self.shift = torch.tensor(shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        return out + self.shift if x.dim() == 3 else out


def _accepted(bias, shift, rows: int = 4) -> bool:
    engine = train._stacked_engine([_Shifted(bias, shift), _Shifted(bias, shift)], torch.ones(rows, 1))
    return isinstance(engine, train.StackedModels)


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "bias, shift, accepted",
    [
        ([0.0, 0.0], [0.0, 0.0], True),
        ([0.0, 0.0], [0.0, 5e-7], True),  # small outputs: absolute tolerance 1e-6
        ([0.0, 0.0], [0.0, 1.5e-6], False),
        ([1.0, 0.0], [0.5, 0.0], False),  # relative tolerance 1e-4
        ([1e4, 0.0], [0.0, 1e-3], True),  # the absolute tolerance grows with the largest output
        ([1e4, 0.0], [0.0, 0.1], False),
        ([1e4, 0.0], [0.5, 0.0], True),  # 1e-6 * 1e4 + 1e-4 * 1e4 >= 0.5
        ([1e4, 0.0], [2.0, 0.0], False),
        ([NAN, 1.0], [0.0, 0.0], True),  # NaN in the same places is equal
        ([NAN, 1.0], [0.0, NAN], False),
        ([INF, 0.0], [0.0, 5e-7], True),  # infinite outputs do not widen the tolerance
        ([INF, 0.0], [0.0, 0.5], False),
        ([-INF, 0.0], [0.0, 0.5], False),
    ],
    ids=lambda v: ("accepted" if v else "rejected") if isinstance(v, bool) else "/".join(f"{t:g}" for t in v),
)
def test_stacked_engine_output_check_tolerance(bias, shift, accepted):
    assert _accepted(bias, shift) is accepted


def test_stacked_engine_accepts_no_examples():
    assert _accepted([1.0, 2.0], [0.0, 0.0], rows=0)


class _FromRow16(nn.Module):
    """Zeroes axis 0 from index 16 on: examples for a member, members (never 16) for the stack."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 1)
        with torch.no_grad():
            self.lin.weight.fill_(1.0)
            self.lin.bias.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x).clone()
        out[16:] = 0.0
        return out


def test_stacked_engine_checks_only_the_first_16_examples():
    x = torch.ones(20, 1)
    models = [_FromRow16(), _FromRow16()]
    with torch.no_grad():
        assert torch.equal(models[0](x)[16:], torch.zeros(4, 1))  # the members differ from the stack there
    assert isinstance(train._stacked_engine(models, x), train.StackedModels)
    assert train.train_seeds(lambda s: _FromRow16(), [0, 1], x, x, steps=0, lr=0.1).engine == "stacked"


class _Log(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[-2])
        return x


def test_stacked_engine_check_leaves_the_models_state_alone():
    torch.manual_seed(6)
    models = [nn.Sequential(nn.Linear(2, 2), _Log()) for _ in range(2)]
    assert isinstance(train._stacked_engine(models, torch.randn(3, 2)), train.StackedModels)
    assert [m[1].calls for m in models] == [[], []]
    run = train.train_seeds(lambda s: nn.Sequential(nn.Linear(2, 2), _Log()), [0, 1], torch.randn(3, 2), torch.zeros(3, 2), steps=2, lr=0.1)
    assert run.engine == "stacked"
    assert [m[1].calls for m in run.models] == [[], []]


def test_layer_norm_without_weights_runs_unchanged_in_the_stack():
    from reslab import paths

    torch.manual_seed(7)
    x = torch.randn(24, 6)
    y = torch.randn(24, 6)
    build = lambda s: paths.fix_stack("pre-LN", 4, 6)  # noqa: E731  (LayerNorm(elementwise_affine=False))
    assert any(isinstance(m, nn.LayerNorm) and m.weight is None for m in build(0).modules())
    auto = train.train_seeds(build, [0, 1], x, y, steps=4, lr=1e-2)
    loop = train.train_seeds(build, [0, 1], x, y, steps=4, lr=1e-2, batched=False)
    assert auto.engine == "stacked"
    assert torch.allclose(auto.losses, loop.losses, rtol=1e-5, atol=1e-7)
    # bare, and over two axes: without weights the layer is kept as it is and normalises the
    # trailing axes of (S, N, ...) inputs, so it may cover more than the last axis
    for shape in ((5,), (3, 5)):
        norms = [nn.LayerNorm(shape, elementwise_affine=False) for _ in range(2)]
        stacked = train.stack_models(norms)
        assert type(stacked.network) is nn.LayerNorm and stacked.flat.numel() == 0
        z = torch.randn(4, 3, 5)
        assert torch.allclose(stacked(z), torch.stack([m(z) for m in norms]), atol=1e-6)
    with pytest.raises(TypeError, match=r"nn.LayerNorm at 'the top level': a normalisation with weights must be over the last axis only"):
        train.stack_models([nn.LayerNorm((3, 5)), nn.LayerNorm((3, 5))])
