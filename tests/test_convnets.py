"""Tests of the conv blocks and the conv net builder (reslab.conv, re-exported by reslab.nets)."""

import pytest
import torch

from reslab import conv, nets


def test_builder_reexported_from_nets():
    assert nets.conv_net is conv.conv_net


@pytest.mark.parametrize("kind", ["plain", "residual", "preact"])
@pytest.mark.parametrize("depth", [2, 8])
def test_conv_net_shapes_and_depth(kind, depth):
    torch.manual_seed(0)
    net = conv.conv_net(kind, depth, 4)
    assert net.depth == depth and len(net.blocks) == (depth - 2) // 2
    assert net(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    # weight layers = stem + 2 per block + head
    n_weights = sum(1 for name, _ in net.named_parameters() if name.endswith("weight"))
    assert n_weights == depth


def test_plain_and_residual_have_same_parameters():
    shapes = {k: [p.shape for p in conv.conv_net(k, 8, 6).parameters()] for k in ("plain", "residual", "preact")}
    assert shapes["plain"] == shapes["residual"] == shapes["preact"]


def test_pool_head_and_other_sizes():
    net = conv.conv_net("residual", 4, 3, in_channels=2, image_size=5, classes=7, head="pool")
    assert net(torch.rand(2, 2, 5, 5)).shape == (2, 7)
    assert net.head.in_features == 3


def test_depth_two_nets_are_identical_for_all_kinds():
    x = torch.rand(4, 1, 8, 8)
    outs = []
    for kind in ("plain", "residual"):
        torch.manual_seed(1)
        outs.append(conv.conv_net(kind, 2, 4)(x))
    assert torch.equal(outs[0], outs[1])


def test_residual_conv_block_zero_init_identity_on_nonnegative_inputs():
    torch.manual_seed(0)
    block = conv.ConvResidualBlock(6, zero_init=True, init="he")
    x = torch.rand(3, 6, 8, 8)  # non-negative
    assert float((block(x) - x).detach().abs().max()) == 0.0
    xs = torch.randn(3, 6, 8, 8)  # with negatives: the final ReLU clips them
    assert torch.equal(block(xs), torch.relu(xs))
    assert float((block(xs) - xs).detach().abs().max()) > 0.0


def test_preact_conv_block_zero_init_identity_for_every_input():
    torch.manual_seed(0)
    block = conv.ConvPreActBlock(6, zero_init=True)
    x = torch.randn(3, 6, 8, 8) * 10
    assert float((block(x) - x).detach().abs().max()) == 0.0


def test_zero_init_residual_net_features_equal_stem_output():
    torch.manual_seed(0)
    net = conv.conv_net("residual", 50, 4, zero_init=True)
    x = torch.rand(2, 1, 8, 8)
    stem = torch.relu(net.stem(x))
    assert float((net.features(x) - stem).detach().abs().max()) == 0.0


def test_plain_block_is_relu_of_convs_and_nonnegative():
    torch.manual_seed(0)
    block = conv.ConvPlainBlock(4, layers=2)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        expected = torch.relu(block.convs[1](torch.relu(block.convs[0](x))))
        assert torch.equal(block(x), expected)
        assert float(block(x).min()) >= 0.0


def test_he_init_variance():
    torch.manual_seed(0)
    layer = conv.init_conv(torch.nn.Conv2d(32, 32, 3), "he")
    assert abs(float(layer.weight.detach().var()) - 2 / (32 * 9)) < 0.1 * 2 / (32 * 9)
    assert float(layer.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize(
    "args, kwargs, exc",
    [
        (("plain", 3, 4), {}, ValueError),  # odd depth
        (("plain", 0, 4), {}, ValueError),
        (("plain", 8, 0), {}, ValueError),
        (("dense", 8, 4), {}, ValueError),
        (("plain", 8.0, 4), {}, TypeError),
        (("plain", 8, 4), {"zero_init": True}, ValueError),
        (("residual", 8, 4), {"zero_init": 1}, TypeError),
        (("residual", 8, 4), {"head": "max"}, ValueError),
        (("residual", 8, 4), {"init": "xavier"}, ValueError),
    ],
)
def test_conv_net_bad_arguments(args, kwargs, exc):
    with pytest.raises(exc):
        conv.conv_net(*args, **kwargs)


def test_conv_inputs_checked():
    net = conv.conv_net("residual", 4, 4)
    with pytest.raises(ValueError, match="shape"):
        net(torch.rand(2, 1, 7, 7))
    with pytest.raises(TypeError, match="floating"):
        net(torch.ones(2, 1, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="channels"):
        conv.ConvResidualBlock(4)(torch.rand(1, 3, 8, 8))
    with pytest.raises(TypeError):
        conv.init_conv(torch.nn.ReLU())
