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


# --- documented defaults, formulas and initialisations (added for mutation testing) -------------


def test_init_conv_default_keeps_pytorch_weights():
    torch.manual_seed(1)
    layer = torch.nn.Conv2d(2, 3, 3)
    w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
    assert conv.init_conv(layer) is layer
    assert torch.equal(layer.weight, w) and torch.equal(layer.bias, b)


def test_he_init_conv_is_centred_uses_fan_in_and_accepts_no_bias():
    torch.manual_seed(2)
    layer = conv.init_conv(torch.nn.Conv2d(32, 64, 3), "he")
    std = (2 / (32 * 9)) ** 0.5  # fan-in = in-channels x kernel area
    assert float(layer.weight.detach().std()) == pytest.approx(std, rel=0.03)
    assert abs(float(layer.weight.detach().mean())) < 0.03 * std
    no_bias = conv.init_conv(torch.nn.Conv2d(2, 4, 3, bias=False), "he")
    assert no_bias.bias is None
    # a head with a single output (fan-in 400) is initialised like any other
    head = conv.init_conv(torch.nn.Linear(400, 1), "he")
    assert float(head.weight.detach().std()) == pytest.approx((2 / 400) ** 0.5, rel=0.15)
    assert float(head.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize("cls", [conv.ConvPlainBlock, conv.ConvResidualBlock, conv.ConvPreActBlock])
def test_conv_block_defaults_two_3x3_convolutions_keep_the_image_size(cls):
    block = cls(4)
    assert (block.channels, block.n_layers, block.activation, block.init) == (4, 2, "relu", "default")
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in block.convs] == [(4, 4, (3, 3), (1, 1))] * 2
    assert all(float(c.bias.detach().abs().max()) > 0 for c in block.convs)  # PyTorch's default biases
    assert block(torch.rand(2, 4, 5, 7)).shape == (2, 4, 5, 7)


def test_conv_blocks_compute_their_formulas_and_accept_unbatched_images():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        k = conv.ConvPreActBlock(3, layers=3, activation="tanh", init="he")
        assert torch.equal(k.branch(x), k.convs[2](torch.tanh(k.convs[1](torch.tanh(k.convs[0](x))))))
        assert torch.equal(k(x), x + k.branch(torch.tanh(x)))
        post = conv.ConvResidualBlock(3)
        assert torch.equal(post(x), torch.relu(x + post.branch(x)))
        assert post.zero_init is False and not torch.equal(post(x), torch.relu(x))
        # an unbatched (C, H, W) image gives the first row of the batched result
        for block in (k, post, conv.ConvPlainBlock(3)):
            assert torch.allclose(block(x[0]), block(x)[0], atol=1e-6)
    # anything but (C, H, W) or (N, C, H, W) is refused with a clear message
    for bad in (torch.rand(3, 6), torch.rand(1, 2, 3, 6, 6)):
        with pytest.raises(ValueError, match="3 or 4 dimensions"):
            post(bad)


def test_conv_zero_init_zeroes_only_the_last_convolution():
    torch.manual_seed(4)
    block = conv.ConvPreActBlock(3, layers=3, zero_init=True)
    assert block.zero_init is True
    last = block.convs[-1]
    assert float(last.weight.detach().abs().max()) == 0.0 and float(last.bias.detach().abs().max()) == 0.0
    assert all(float(c.weight.detach().abs().max()) > 0 for c in block.convs[:-1])
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(block(x), x)


def test_conv_net_defaults():
    torch.manual_seed(5)
    net = conv.conv_net("residual", 4)
    assert (net.kind, net.channels, net.in_channels, net.image_size, net.head_kind, net.depth) == ("residual", 8, 1, 8, "flatten", 4)
    assert (net.stem.in_channels, net.stem.out_channels) == (1, 8)
    assert (net.head.in_features, net.head.out_features) == (8 * 8 * 8, 10)
    assert all(b.activation == "relu" and b.init == "he" and b.zero_init is False for b in net.blocks)
    # He initialisation everywhere: every bias is zero, and no residual branch is zeroed
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    assert len(biases) == 4 and all(float(b.detach().abs().max()) == 0.0 for b in biases)
    assert all(float(b.convs[-1].weight.detach().abs().max()) > 0 for b in net.blocks)
    x = torch.rand(2, 1, 8, 8)
    assert float(net.features(x).detach().min()) >= 0.0  # ReLU after the last addition
    assert net(x).shape == (2, 10)


def test_conv_net_init_default_keeps_pytorch_biases_everywhere():
    torch.manual_seed(6)
    for kind in ("plain", "residual"):
        net = conv.conv_net(kind, 4, 3, init="default")
        biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
        assert len(biases) == 4 and all(float(b.detach().abs().max()) > 0 for b in biases)


def test_conv_net_forward_is_head_of_features_and_takes_unbatched_images():
    torch.manual_seed(7)
    x = torch.rand(3, 2, 5, 5)
    with torch.no_grad():
        for head in ("flatten", "pool"):
            net = conv.conv_net("preact", 4, 3, in_channels=2, image_size=5, classes=4, activation="tanh", head=head)
            h = net.features(x)
            assert h.shape == (3, 3, 5, 5)
            pooled = h.reshape(3, -1) if head == "flatten" else h.mean(dim=(2, 3))
            assert torch.allclose(net(x), net.head(pooled), atol=1e-6)
            assert torch.allclose(net(x[0]), net(x)[0], atol=1e-6)  # one (C, H, W) image


def test_conv_net_with_one_class_and_plain_blocks_of_two_convolutions():
    torch.manual_seed(8)
    net = conv.conv_net("plain", 6, 2, classes=1)
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 1)
    assert [len(b.convs) for b in net.blocks] == [2, 2]
    assert all(isinstance(b, conv.ConvPlainBlock) for b in net.blocks)
    assert all(isinstance(b, conv.ConvPreActBlock) for b in conv.conv_net("preact", 6, 2).blocks)


def test_conv_net_he_init_reaches_plain_blocks_and_inputs_are_checked():
    torch.manual_seed(9)
    net = conv.conv_net("plain", 4, 3)  # default init="he": every bias zero, plain blocks included
    assert all(b.init == "he" for b in net.blocks)
    biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
    assert len(biases) == 4 and all(float(b.detach().abs().max()) == 0.0 for b in biases)
    with pytest.raises(ValueError, match="3 or 4 dimensions"):
        net(torch.rand(1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\)"):
        net(torch.rand(2, 1, 8, 6))
