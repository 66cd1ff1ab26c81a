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


# --- documented defaults, formulas and initialisations (added for mutation testing) -------------

from torch.nn import functional as F  # noqa: E402

from reslab.blocks import HighwayBlock, TransformerBlock  # noqa: E402


def test_activation_fn_returns_the_named_nonlinearity():
    t = torch.linspace(-3.0, 3.0, 13)
    assert torch.equal(blocks.activation_fn("relu")(t), torch.relu(t))
    assert torch.equal(blocks.activation_fn("tanh")(t), torch.tanh(t))
    assert torch.equal(blocks.activation_fn("gelu")(t), F.gelu(t))
    assert torch.equal(blocks.activation_fn("identity")(t), t)
    with pytest.raises(ValueError, match="activation"):
        blocks.activation_fn("swish")


def test_init_linear_default_keeps_pytorch_weights_and_gain_scales_only_weights():
    torch.manual_seed(7)
    layer = torch.nn.Linear(5, 3)
    w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
    assert blocks.init_linear(layer) is layer  # init="default", gain=1: untouched
    assert torch.equal(layer.weight, w) and torch.equal(layer.bias, b)
    blocks.init_linear(layer, gain=2.0)
    assert torch.equal(layer.weight, 2 * w)  # doubling is exact in floating point
    assert torch.equal(layer.bias, b)


def test_he_init_is_centred_uses_fan_in_and_gain_and_accepts_no_bias():
    torch.manual_seed(8)
    layer = blocks.init_linear(torch.nn.Linear(200, 400), "he", gain=3.0)
    std = 3.0 * math.sqrt(2 / 200)  # fan-in 200, not fan-out 400
    assert layer.weight.std().item() == pytest.approx(std, rel=0.02)
    assert abs(layer.weight.mean().item()) < 0.02 * std
    assert torch.count_nonzero(layer.bias) == 0
    no_bias = blocks.init_linear(torch.nn.Linear(50, 60, bias=False), "he")
    assert no_bias.bias is None
    assert no_bias.weight.std().item() == pytest.approx(math.sqrt(2 / 50), rel=0.05)


@pytest.mark.parametrize("cls", [PlainBlock, ResidualBlock, PreActResidualBlock, ScaledResidualBlock])
def test_default_block_has_two_square_linear_maps_relu_and_pytorch_init(cls):
    block = cls(5)
    assert [(lin.in_features, lin.out_features) for lin in block.linears] == [(5, 5), (5, 5)]
    assert (block.width, block.out_width, block.n_layers, block.activation, block.init) == (5, 5, 2, "relu", "default")
    assert all(torch.count_nonzero(lin.bias) > 0 for lin in block.linears)  # PyTorch's biases, not He's zeros


def test_residual_blocks_are_not_zero_initialised_by_default():
    torch.manual_seed(9)
    x = torch.randn(3, 6)
    for block in (ResidualLayer(6), ResidualBlock(6), PreActResidualBlock(6), ScaledResidualBlock(6), ProjectionResidualBlock(6, 6)):
        assert block.zero_init is False
        assert torch.count_nonzero(block.linears[-1].weight) > 0
        assert not torch.equal(block(x), x)


def test_branch_is_the_chain_of_linear_maps_with_phi_between():
    torch.manual_seed(10)
    block = PreActResidualBlock(4, layers=3, activation="tanh")
    w = block.linears
    x = torch.randn(2, 4)
    assert torch.equal(block.branch(x), w[2](torch.tanh(w[1](torch.tanh(w[0](x))))))
    assert torch.equal(block(x), x + block.branch(torch.tanh(x)))


def test_zero_init_zeroes_only_the_last_linear_map():
    torch.manual_seed(11)
    block = PreActResidualBlock(4, layers=3, zero_init=True)
    assert block.zero_init is True
    last = block.linears[-1]
    assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
    assert all(torch.count_nonzero(lin.weight) > 0 for lin in block.linears[:-1])
    x = torch.randn(3, 4)
    assert torch.equal(block(x), x)


def test_residual_layer_is_x_plus_phi_of_one_linear_map():
    torch.manual_seed(12)
    layer = ResidualLayer(6)
    assert len(layer.linears) == 1 and layer.linear is layer.linears[0]
    assert sum(p.numel() for p in layer.parameters()) == 6 * 6 + 6
    x = torch.randn(4, 6)
    assert torch.equal(layer(x), x + torch.relu(layer.linear(x)))
    tanh = ResidualLayer(6, activation="tanh", init="he")
    assert torch.count_nonzero(tanh.linear.bias) == 0
    assert torch.equal(tanh(x), x + torch.tanh(tanh.linear(x)))


def test_post_and_pre_activation_blocks_compute_their_formulas():
    torch.manual_seed(13)
    x = torch.randn(4, 5)
    post = ResidualBlock(5)
    assert torch.equal(post(x), torch.relu(x + post.branch(x)))
    pre = PreActResidualBlock(5)
    assert torch.equal(pre(x), x + pre.branch(torch.relu(x)))


def test_scaled_block_defaults_to_alpha_one_as_a_buffer():
    torch.manual_seed(14)
    block = ScaledResidualBlock(6)
    assert block.alpha.item() == 1.0
    assert "alpha" in dict(block.named_buffers()) and "alpha" not in dict(block.named_parameters())
    assert len(block.linears) == 2
    x = torch.randn(3, 6)
    assert torch.equal(block(x), x + block.branch(torch.relu(x)))
    learnable = ScaledResidualBlock(6, alpha=0.5, learnable=True, layers=1, activation="tanh")
    assert dict(learnable.named_parameters())["alpha"].item() == 0.5
    assert torch.equal(learnable(x), x + 0.5 * learnable.branch(torch.tanh(x)))


def test_projection_block_defaults_to_option_b_and_computes_its_formula():
    torch.manual_seed(15)
    x = torch.randn(4, 8)
    block = ProjectionResidualBlock(8, 4)  # shortcut "B", widths differ: a projection, no bias
    assert block.shortcut_kind == "B" and block.zero_init is False
    assert block.projection is not None and block.projection.bias is None
    assert [(lin.in_features, lin.out_features) for lin in block.linears] == [(8, 4), (4, 4)]
    assert torch.equal(block.shortcut(x), block.projection(x))
    assert torch.equal(block(x), torch.relu(block.projection(x) + block.branch(x)))
    # option A needs no projection when the widths agree: the shortcut is the identity
    same = ProjectionResidualBlock(8, 8, shortcut="A")
    assert same.projection is None and torch.equal(same.shortcut(x), x)
    # option C with He initialisation: projection weights N(0, 2/fan-in), branch biases zero
    c = ProjectionResidualBlock(8, 8, shortcut="C", layers=3, init="he", activation="tanh")
    assert len(c.linears) == 3 and all(torch.count_nonzero(lin.bias) == 0 for lin in c.linears)
    assert torch.equal(c(x), torch.tanh(c.projection(x) + c.branch(x)))
    wide = ProjectionResidualBlock(64, 64, shortcut="C", init="he")
    assert wide.projection.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)


def test_highway_block_defaults_and_he_initialisation():
    torch.manual_seed(16)
    block = HighwayBlock(6)
    assert (block.gate_bias, block.activation, block.init) == (-2.0, "relu", "default")
    assert torch.equal(block.gate.bias, torch.full((6,), -2.0))
    assert torch.count_nonzero(block.transform.bias) > 0  # PyTorch's default biases
    x = torch.randn(3, 6)
    t = torch.sigmoid(block.gate(x))
    assert torch.equal(block.transform_gate(x), t)
    assert torch.allclose(block(x), t * torch.relu(block.transform(x)) + (1 - t) * x, atol=1e-6)
    he = HighwayBlock(64, gate_bias=-1.0, activation="tanh", init="he")
    assert torch.count_nonzero(he.transform.bias) == 0
    assert torch.equal(he.gate.bias, torch.full((64,), -1.0))
    for lin in (he.transform, he.gate):
        assert lin.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)
    with pytest.raises(ValueError, match="last dimension 64"):
        he.transform_gate(torch.randn(2, 6))


def _attention_reference(block, x, causal):
    """Multi-head attention through PyTorch's scaled_dot_product_attention, heads split by hand."""
    b, n, d = x.shape
    h = block.n_heads
    q, k, v = (t.reshape(b, n, h, d // h).transpose(1, 2) for t in block.qkv(x).split(d, dim=-1))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return block.proj(out.transpose(1, 2).reshape(b, n, d))


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_attention_matches_reference_with_distinct_sizes(causal):
    torch.manual_seed(17)
    block = TransformerBlock(12, 3, causal=causal, init="default")  # B=2, N=5, h=3, d_h=4: all distinct
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        assert torch.allclose(block.attention(x), _attention_reference(block, x, causal), atol=1e-5)
        # causal: changing the last position leaves every earlier output unchanged
        x2 = x.clone()
        x2[:, -1] += 1.0
        same_prefix = torch.equal(block.attention(x)[:, :-1], block.attention(x2)[:, :-1])
    assert same_prefix == causal


def test_transformer_block_defaults():
    block = TransformerBlock(8)
    assert (block.n_heads, block.norm, block.d_ff, block.causal, block.init) == (4, "pre", 32, False, "xavier")
    assert (block.ff1.in_features, block.ff1.out_features, block.ff2.in_features, block.ff2.out_features) == (8, 32, 32, 8)
    assert (block.qkv.out_features, block.proj.out_features) == (24, 8)
    assert TransformerBlock(8, 2, d_ff=10).ff1.out_features == 10


def test_transformer_init_xavier_zeroes_biases_and_bounds_weights():
    torch.manual_seed(18)
    xavier = TransformerBlock(8, 2)
    default = TransformerBlock(8, 2, init="default")
    for name in ("qkv", "proj", "ff1", "ff2"):
        layer = getattr(xavier, name)
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        assert torch.count_nonzero(layer.bias) == 0
        assert layer.weight.abs().max().item() <= bound
        assert torch.count_nonzero(getattr(default, name).bias) > 0


def test_transformer_forward_composes_the_documented_sublayers():
    torch.manual_seed(19)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        pre = TransformerBlock(8, 2, init="default", causal=True)
        h = x + pre.attention(pre.ln1(x))
        assert torch.allclose(pre(x), h + pre.feed_forward(pre.ln2(h)), atol=1e-6)
        post = TransformerBlock(8, 2, norm="post", init="default")
        h = post.ln1(x + post.attention(x))
        assert torch.allclose(post(x), post.ln2(h + post.feed_forward(h)), atol=1e-6)
        assert torch.allclose(post.feed_forward(x), post.ff2(F.gelu(post.ff1(x))))
    with pytest.raises(ValueError, match="last dimension 8"):
        pre(torch.randn(2, 5, 6))
