"""Stacks built by mlp_stack: shapes, identity at zero initialisation, the measured facts."""

import pytest
import torch

from reslab import nets, probes
from reslab.blocks import PreActResidualBlock, ScaledResidualBlock


def test_hundred_residual_blocks_keep_shape():
    torch.manual_seed(0)
    stack = nets.mlp_stack("residual", 100, 128)
    assert stack(torch.randn(8, 128)).shape == (8, 128)
    assert (stack.kind, stack.depth, stack.width) == ("residual", 100, 128)
    assert len(list(stack.children())) == 100


@pytest.mark.parametrize("kind", ["preact", "scaled", "residual_layer"])
def test_zero_init_stack_is_exactly_identity(kind):
    torch.manual_seed(1)
    stack = nets.mlp_stack(kind, 50, 32, zero_init=True)
    x = torch.randn(16, 32)
    assert torch.equal(stack(x), x)


def test_scaled_default_alpha_is_inverse_sqrt_depth():
    stack = nets.mlp_stack("scaled", 16, 8)
    assert all(isinstance(b, ScaledResidualBlock) for b in stack)
    assert stack[0].alpha.item() == pytest.approx(0.25)
    rezero = nets.mlp_stack("scaled", 4, 8, alpha=0.0, learnable_alpha=True)
    assert sum(1 for name, _ in rezero.named_parameters() if name.endswith("alpha")) == 4


def test_gain_scales_every_weight():
    torch.manual_seed(2)
    a = nets.mlp_stack("plain", 3, 8, init="he")
    torch.manual_seed(2)
    b = nets.mlp_stack("plain", 3, 8, init="he", gain=1.5)
    for la, lb in zip(a.modules(), b.modules()):
        if isinstance(la, torch.nn.Linear):
            assert torch.allclose(lb.weight, 1.5 * la.weight)


def test_measured_facts_of_the_syllabus():
    """Default init: plain input gradient underflows to 0.0 by L = 100; residual forward explodes at L = 1000."""
    torch.manual_seed(0)
    x = torch.randn(16, 128)
    plain = probes.layer_norms(nets.mlp_stack("plain", 100, 128), x)
    assert plain.gradients[0] == 0.0
    torch.manual_seed(0)
    residual = probes.layer_norms(nets.mlp_stack("residual", 1000, 128), x)
    assert residual.activations[-1] > 1e10
    assert residual.gradients[0] > residual.gradients[-1]


def test_preact_stack_is_sum_of_branches():
    torch.manual_seed(3)
    stack = nets.mlp_stack("preact", 5, 6)
    x = torch.randn(2, 6)
    xs = [x]
    for block in stack:
        xs.append(block(xs[-1]))
    total = x + sum(block.branch(torch.relu(xi)) for block, xi in zip(stack, xs[:-1]))
    assert isinstance(stack[0], PreActResidualBlock)
    assert torch.allclose(stack(x), total, atol=1e-6)


@pytest.mark.parametrize(
    "args, kwargs, error, needle",
    [
        (("dense", 4, 8), {}, ValueError, "kind"),
        (("plain", 0, 8), {}, ValueError, "depth"),
        (("plain", 4, -1), {}, ValueError, "width"),
        (("plain", 4, 8), {"zero_init": True}, ValueError, "zero_init"),
        (("residual", 4, 8), {"alpha": 0.5}, ValueError, "alpha"),
        (("plain", 4, 8), {"gain": float("nan")}, ValueError, "gain"),
        (("plain", "4", 8), {}, TypeError, "depth"),
        (("scaled", 4, 8), {"alpha": float("inf")}, ValueError, "alpha"),
    ],
)
def test_bad_stack_arguments_raise(args, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        nets.mlp_stack(*args, **kwargs)


# --- documented defaults and arguments reaching the blocks (added for mutation testing) ---------

from reslab.blocks import PlainBlock, ResidualBlock, ResidualLayer  # noqa: E402


def test_mlp_stack_defaults():
    torch.manual_seed(4)
    stack = nets.mlp_stack("residual", 3, 5)
    assert (stack.kind, stack.depth, stack.width) == ("residual", 3, 5)
    for block in stack:
        assert isinstance(block, ResidualBlock)
        assert (block.width, block.n_layers, block.activation, block.init, block.zero_init) == (5, 2, "relu", "default", False)
        assert all(torch.count_nonzero(lin.bias) > 0 for lin in block.linears)  # PyTorch's init
    scaled = nets.mlp_stack("scaled", 4, 5)
    assert all(not block.alpha.requires_grad and block.alpha.item() == 0.5 for block in scaled)
    assert not any(name.endswith("alpha") for name, _ in scaled.named_parameters())


@pytest.mark.parametrize("kind, cls", [("plain", PlainBlock), ("residual", ResidualBlock), ("preact", PreActResidualBlock), ("scaled", ScaledResidualBlock), ("residual_layer", ResidualLayer)])
def test_mlp_stack_passes_its_arguments_to_every_block(kind, cls):
    torch.manual_seed(5)
    stack = nets.mlp_stack(kind, 2, 4, layers=3, activation="tanh", init="he")
    assert stack.depth == 2 and len(stack) == 2
    n_layers = 1 if kind == "residual_layer" else 3
    for block in stack:
        assert type(block) is cls
        assert (block.width, block.n_layers, block.activation, block.init) == (4, n_layers, "tanh", "he")
        assert all(torch.count_nonzero(lin.bias) == 0 for lin in block.linears)  # He init zeroes biases
    assert stack(torch.randn(3, 4)).shape == (3, 4)


@pytest.mark.parametrize("kind", ["residual", "preact", "scaled", "residual_layer"])
def test_mlp_stack_zero_init_reaches_every_residual_block(kind):
    stack = nets.mlp_stack(kind, 3, 4, zero_init=True, layers=1)
    assert all(block.zero_init is True for block in stack)
    assert all(torch.count_nonzero(block.linears[-1].weight) == 0 for block in stack)


def test_mlp_stack_explicit_alpha_and_learnable_alpha():
    stack = nets.mlp_stack("scaled", 3, 4, alpha=0.3, learnable_alpha=True)
    assert [round(block.alpha.item(), 6) for block in stack] == [0.3] * 3
    assert all(block.alpha.requires_grad for block in stack)


def test_gain_two_doubles_every_weight_and_keeps_biases():
    for kind in ("plain", "residual_layer", "scaled"):
        torch.manual_seed(6)
        a = nets.mlp_stack(kind, 2, 4)
        torch.manual_seed(6)
        b = nets.mlp_stack(kind, 2, 4, gain=2.0)
        for block_a, block_b in zip(a, b):
            for la, lb in zip(block_a.linears, block_b.linears):
                assert torch.equal(lb.weight, 2 * la.weight)
                assert torch.equal(lb.bias, la.bias)


def test_stack_takes_a_list_of_blocks_and_checks_their_widths():
    torch.manual_seed(7)
    first, second = ResidualLayer(4), ResidualLayer(4)
    # modules without a width (here an element-wise nonlinearity) are accepted between blocks
    stack = nets.Stack([first, torch.nn.Tanh(), second], "custom", 4)
    assert (stack.kind, stack.depth, stack.width) == ("custom", 3, 4)
    x = torch.randn(2, 4)
    assert torch.equal(stack(x), second(torch.tanh(first(x))))
    with pytest.raises(ValueError, match="width"):
        nets.Stack([first, ResidualLayer(5)], "residual_layer", 4)
    # a module (even an iterable nn.Sequential) or a non-sequence is not a list of blocks
    for bad in (torch.nn.Sequential(first, second), first, 3, "blocks"):
        with pytest.raises(TypeError, match="blocks must be a non-empty list"):
            nets.Stack(bad, "residual_layer", 4)
