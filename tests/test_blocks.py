"""Blocks: shapes, identity at zero initialisation, initialisation statistics, bad input."""

import math

import pytest
import torch

from reslab import blocks
from reslab.blocks import (
    PlainBlock,
    PreActResidualBlock,
    ProjectionResidualBlock,
    ResidualBlock,
    ResidualLayer,
    ScaledResidualBlock,
)

RESIDUAL_CLASSES = [ResidualLayer, ResidualBlock, PreActResidualBlock, ScaledResidualBlock]


@pytest.mark.parametrize("cls", [PlainBlock, *RESIDUAL_CLASSES])
def test_block_keeps_shape(cls):
    torch.manual_seed(0)
    block = cls(16)
    assert block(torch.randn(5, 16)).shape == (5, 16)
    assert block(torch.randn(16)).shape == (16,)


def test_projection_block_changes_width_and_counts_parameters():
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    for shortcut, extra in [("A", 0), ("B", 8 * 12), ("C", 8 * 12)]:
        block = ProjectionResidualBlock(8, 12, shortcut=shortcut)
        assert block(x).shape == (4, 12)
        branch = (8 * 12 + 12) + (12 * 12 + 12)
        assert sum(p.numel() for p in block.parameters()) == branch + extra
    # option B adds nothing when widths agree, option C always projects
    assert ProjectionResidualBlock(8, 8, shortcut="B").projection is None
    assert ProjectionResidualBlock(8, 8, shortcut="C").projection is not None


def test_option_a_pads_with_zeros():
    block = ProjectionResidualBlock(3, 5, shortcut="A", zero_init=True)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(block.shortcut(x), torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0]]))
    # zero branch, non-negative input: the block is the padded identity exactly
    assert torch.equal(block(x), torch.tensor([[1.0, 2.0, 3.0, 0.0, 0.0]]))


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_zero_init_preact_is_identity_for_every_input(activation):
    torch.manual_seed(1)
    block = PreActResidualBlock(32, activation=activation, zero_init=True)
    x = torch.randn(64, 32) * 10  # negative entries included
    assert torch.equal(block(x), x)


def test_zero_init_postact_is_identity_only_for_nonnegative_inputs():
    torch.manual_seed(2)
    block = ResidualBlock(32, zero_init=True)
    x = torch.randn(64, 32)
    assert torch.equal(block(x.abs()), x.abs())
    # negative entries are clipped by the ReLU after the addition
    assert not torch.equal(block(x), x)
    assert torch.equal(block(x), torch.relu(x))


def test_zero_init_residual_layer_and_scaled_block_are_identity():
    torch.manual_seed(3)
    x = torch.randn(10, 12)
    assert torch.equal(ResidualLayer(12, zero_init=True)(x), x)
    assert torch.equal(ScaledResidualBlock(12, alpha=0.7, zero_init=True)(x), x)
    # ReZero: alpha = 0 makes any branch vanish
    assert torch.equal(ScaledResidualBlock(12, alpha=0.0, learnable=True)(x), x)


def test_scaled_block_is_x_plus_alpha_branch():
    torch.manual_seed(4)
    block = ScaledResidualBlock(6, alpha=0.25)
    x = torch.randn(3, 6)
    expected = x + 0.25 * block.branch(torch.relu(x))
    assert torch.allclose(block(x), expected, atol=0, rtol=0)
    learnable = ScaledResidualBlock(6, alpha=0.0, learnable=True)
    assert any(p is learnable.alpha for p in learnable.parameters())


def test_plain_block_formula():
    torch.manual_seed(5)
    block = PlainBlock(4, layers=1)
    x = torch.randn(2, 4)
    assert torch.equal(block(x), torch.relu(block.linears[0](x)))


def test_he_init_statistics():
    torch.manual_seed(6)
    layer = blocks.init_linear(torch.nn.Linear(400, 400), "he")
    assert torch.all(layer.bias == 0)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    default = torch.nn.Linear(400, 400)
    assert default.weight.abs().max().item() <= 1 / math.sqrt(400)


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        ({"width": 0}, ValueError, "width"),
        ({"width": 2.5}, TypeError, "width"),
        ({"width": 4, "layers": 0}, ValueError, "layers"),
        ({"width": 4, "activation": "sigmoidish"}, ValueError, "activation"),
        ({"width": 4, "init": "xavier"}, ValueError, "init"),
        ({"width": 4, "zero_init": 1}, TypeError, "zero_init"),
    ],
)
def test_bad_block_arguments_raise(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        ResidualBlock(**kwargs)


def test_bad_inputs_raise():
    block = PreActResidualBlock(4)
    with pytest.raises(ValueError, match="last dimension 4"):
        block(torch.randn(2, 5))
    with pytest.raises(TypeError, match="floating-point"):
        block(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        block([[0.0] * 4])
    with pytest.raises(ValueError, match="alpha"):
        ScaledResidualBlock(4, alpha=float("inf"))
    with pytest.raises(ValueError, match="shortcut"):
        ProjectionResidualBlock(4, 6, shortcut="D")
    with pytest.raises(ValueError, match="out_width >= width"):
        ProjectionResidualBlock(6, 4, shortcut="A")
    with pytest.raises(TypeError, match="layer"):
        blocks.init_linear(torch.nn.Conv1d(1, 1, 1))
    with pytest.raises(ValueError, match="gain"):
        blocks.init_linear(torch.nn.Linear(2, 2), gain=0.0)
