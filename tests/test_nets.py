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
