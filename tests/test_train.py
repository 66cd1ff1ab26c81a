"""Training: the batched-over-seeds loop equals the Python loop; bad input raises."""

import pytest
import torch

from reslab import nets, train


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 12, generator=gen)
    return x, x.clone()


def test_batched_seeds_equal_python_loop():
    x, y = _data()
    build = lambda seed: nets.mlp_stack("preact", 4, 12, init="he")  # noqa: E731
    batched = train.train_seeds(build, [0, 1, 2], x, y, steps=30, lr=1e-2)
    loop = train.train_seeds(build, [0, 1, 2], x, y, steps=30, lr=1e-2, batched=False)
    assert batched.engine == "stacked"
    assert batched.losses.shape == (3, 31)
    assert torch.allclose(batched.losses, loop.losses, rtol=1e-4, atol=1e-6)
    # the trained weights were written back: evaluating the returned model gives the final loss
    with torch.no_grad():
        final = torch.nn.functional.mse_loss(batched.models[1](x), y)
    assert final.item() == pytest.approx(batched.final[1].item(), rel=1e-5)
    # seeds differ in their initialisation
    assert len(set(batched.losses[:, 0].tolist())) == 3


def test_training_reduces_loss_and_is_deterministic():
    x, y = _data()
    torch.manual_seed(0)
    a = train.train(nets.mlp_stack("residual_layer", 3, 12, init="he"), x, y, steps=50, lr=1e-2)
    torch.manual_seed(0)
    b = train.train(nets.mlp_stack("residual_layer", 3, 12, init="he"), x, y, steps=50, lr=1e-2)
    assert torch.equal(a.losses, b.losses)
    assert a.final.item() < 0.5 * a.losses[0, 0].item()


def test_cross_entropy_and_minibatches():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(100, 6, generator=gen)
    y = (x[:, 0] > 0).long()
    build = lambda seed: torch.nn.Sequential(torch.nn.Linear(6, 2))  # noqa: E731
    batched = train.train_seeds(build, [3, 4], x, y, steps=40, lr=0.05, loss="cross_entropy", batch_size=20)
    loop = train.train_seeds(build, [3, 4], x, y, steps=40, lr=0.05, loss="cross_entropy", batch_size=20, batched=False)
    assert torch.allclose(batched.losses, loop.losses, rtol=1e-4, atol=1e-6)
    assert (batched.final < batched.losses[:, 0]).all()


def test_zero_init_identity_has_exact_zero_loss_at_step_zero():
    x, y = _data()
    result = train.train_seeds(lambda s: nets.mlp_stack("preact", 8, 12, zero_init=True), [0, 1, 2], x, y, steps=1, lr=1e-3)
    assert torch.equal(result.losses[:, 0], torch.zeros(3))


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        ({"steps": -1}, ValueError, "steps"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"loss": "l1"}, ValueError, "loss"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_training_arguments_raise(kwargs, error, needle):
    x, y = _data()
    args = {"steps": 1, "lr": 1e-3} | kwargs
    with pytest.raises(error, match=needle):
        train.train(nets.mlp_stack("plain", 1, 12), x, y, **args)
    with pytest.raises(error, match=needle):
        train.train_seeds(lambda s: nets.mlp_stack("plain", 1, 12), [0], x, y, **args)


def test_bad_seeds_and_data_raise():
    x, y = _data()
    with pytest.raises(ValueError, match="seeds"):
        train.train_seeds(lambda s: nets.mlp_stack("plain", 1, 12), [], x, y, steps=1, lr=1e-3)
    with pytest.raises(TypeError, match="build"):
        train.train_seeds(None, [0], x, y, steps=1, lr=1e-3)
    with pytest.raises(TypeError, match="build must return"):
        train.train_seeds(lambda s: "net", [0], x, y, steps=1, lr=1e-3)
    with pytest.raises(ValueError, match="same number of examples"):
        train.train(nets.mlp_stack("plain", 1, 12), x, y[:5], steps=1, lr=1e-3)


# -- the stacked engine -------------------------------------------------------------------------


def _images(n=40, seed=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=gen)
    return x, (x.mean(dim=(1, 2, 3)) * 10).long().clamp(max=9)


def test_default_engine_is_stacked_and_equals_loop_and_vmap():
    x, y = _data()
    build = lambda seed: nets.mlp_stack("scaled", 6, 12, init="he")  # noqa: E731  (a shared alpha buffer)
    runs = {e: train.train_seeds(build, [0, 1, 2], x, y, steps=25, lr=1e-2, engine=e) for e in ("auto", "vmap")}
    loop = train.train_seeds(build, [0, 1, 2], x, y, steps=25, lr=1e-2, batched=False)
    assert runs["auto"].engine == "stacked" and runs["vmap"].engine == "vmap" and loop.engine == "loop"
    for run in runs.values():
        assert torch.allclose(run.losses, loop.losses, rtol=1e-5, atol=1e-7)
    assert (runs["auto"].final < 0.5 * runs["auto"].losses[:, 0]).all()


def test_stacked_conv_net_equals_loop_with_minibatches():
    from reslab.conv import conv_net

    x, y = _images()
    for kind in ("plain", "residual", "preact"):
        build = lambda s, kind=kind: conv_net(kind, 6, 3, zero_init=kind != "plain")  # noqa: E731
        kw = dict(steps=12, lr=3e-3, loss="cross_entropy", batch_size=16)
        stacked = train.train_seeds(build, [0, 1, 2], x, y, engine="stacked", **kw)
        loop = train.train_seeds(build, [0, 1, 2], x, y, batched=False, **kw)
        assert torch.allclose(stacked.losses, loop.losses, rtol=1e-5, atol=1e-6), kind
        # the weights were written back: each returned model reproduces its final loss
        with torch.no_grad():
            finals = torch.stack([torch.nn.functional.cross_entropy(m(x), y) for m in stacked.models])
        assert torch.allclose(finals, stacked.final, rtol=1e-5)


def test_stacked_layers_equal_their_members():
    from reslab.conv import conv_net

    torch.manual_seed(0)
    convs = [conv_net("residual", 4, 2) for _ in range(3)]
    x, _ = _images(6)
    stacked = train.stack_models(convs)
    with torch.no_grad():
        assert torch.allclose(stacked(x), torch.stack([m(x) for m in convs]), rtol=1e-5, atol=1e-6)
    # one flat parameter tensor holds everything, with its gradient
    assert stacked.flat.numel() == 3 * sum(p.numel() for p in convs[0].parameters())
    assert stacked.flat.grad is not None and stacked.flat.grad.shape == stacked.flat.shape
    for d_in, d_out in ((5, 3), (40, 5)):  # a square-ish layer, and a narrowing one (transposed product)
        lin = [torch.nn.Linear(d_in, d_out) for _ in range(2)]
        z = torch.randn(4, 7, d_in)  # extra leading axes are carried through
        stacked_lin = train.stack_models(lin)
        out = stacked_lin(z)
        ref = torch.stack([m(z) for m in lin])
        assert torch.allclose(out, ref, atol=1e-5)
        g = torch.randn_like(out)
        out.backward(g)
        ref.backward(g)
        layer = stacked_lin.network
        assert layer.narrow == (d_out * 4 <= d_in)
        for i, m in enumerate(lin):
            w_grad = layer.weight.grad[i] if layer.narrow else layer.weight.grad[i].T
            assert torch.allclose(w_grad, m.weight.grad, atol=1e-4)
            assert torch.allclose(layer.bias.grad[i].reshape(-1), m.bias.grad, atol=1e-4)
        before = lin[1].weight.detach().clone()
        with torch.no_grad():
            layer.weight.mul_(2.0)
        stacked_lin.write_back(lin)
        assert torch.equal(lin[1].weight, 2 * before)


def test_chapter_models_take_the_stacked_engine():
    from reslab import identity, paths, reframing, sequences
    from reslab.conv import conv_net

    x, y = _data()
    imgs, labels = _images()
    flat = imgs.flatten(1)
    cases = [
        (lambda s: identity.build_net("plain", 4, 12), x, y, "mse"),
        (lambda s: identity.build_net("residual", 4, 12, readout=True), x, y, "mse"),
        (lambda s: reframing.branch_net("residual", 2, 12, 8), x, y, "mse"),
        (lambda s: conv_net("residual", 4, 2, zero_init=True), imgs, labels, "cross_entropy"),
        (lambda s: paths.block_classifier("residual", 3, 8), flat, labels, "cross_entropy"),
        (lambda s: sequences.deep_classifier("highway", 3, 8), flat, labels, "cross_entropy"),
    ]
    for build, xs, ys, loss in cases:
        assert train.train_seeds(build, [0, 1], xs, ys, steps=1, lr=1e-3, loss=loss).engine == "stacked"


def test_unstackable_models_fall_back_to_vmap_or_raise():
    x, y = _data()
    build = lambda s: torch.nn.Sequential(torch.nn.Linear(12, 12), torch.nn.PReLU(12))  # noqa: E731
    auto = train.train_seeds(build, [0, 1], x, y, steps=5, lr=1e-2)
    loop = train.train_seeds(build, [0, 1], x, y, steps=5, lr=1e-2, batched=False)
    assert auto.engine == "vmap"
    assert torch.allclose(auto.losses, loop.losses, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="PReLU"):
        train.train_seeds(build, [0, 1], x, y, steps=1, lr=1e-2, engine="stacked")


class _MixesExamples(torch.nn.Module):
    """Subtracts the mean over the batch axis: stacking members on a new leading axis changes it."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 12)

    def forward(self, x):
        h = self.lin(x)
        return h - h.mean(dim=0)


def test_auto_engine_checks_the_stack_against_the_members():
    x, y = _data()
    auto = train.train_seeds(lambda s: _MixesExamples(), [0, 1], x, y, steps=3, lr=1e-2)
    loop = train.train_seeds(lambda s: _MixesExamples(), [0, 1], x, y, steps=3, lr=1e-2, batched=False)
    assert auto.engine == "vmap"
    assert torch.allclose(auto.losses, loop.losses, rtol=1e-5, atol=1e-7)


def test_foreach_optimizers_give_the_same_bits_as_the_default():
    x, y = _data()
    for name, cls in (("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)):
        torch.manual_seed(0)
        a = nets.mlp_stack("plain", 3, 12, init="he")
        b = nets.mlp_stack("plain", 3, 12, init="he")
        b.load_state_dict(a.state_dict())
        opt_a, opt_b = train._make_optimizer(name, a.parameters(), 1e-2), cls(b.parameters(), lr=1e-2, foreach=False)
        for _ in range(5):
            for model, opt in ((a, opt_a), (b, opt_b)):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())), name


def test_stack_models_rejects_bad_input():
    with pytest.raises(ValueError, match="models"):
        train.stack_models([])
    with pytest.raises(TypeError, match="models\\[1\\]"):
        train.stack_models([torch.nn.Linear(2, 2), "net"])
    with pytest.raises(ValueError, match="structure"):
        train.stack_models([nets.mlp_stack("plain", 2, 4), nets.mlp_stack("plain", 3, 4)])
    with pytest.raises(ValueError, match="shape"):
        train.stack_models([torch.nn.Linear(2, 3), torch.nn.Linear(2, 4)])
    with pytest.raises(ValueError, match="alpha"):
        train.stack_models([nets.mlp_stack("scaled", 2, 4, alpha=0.5), nets.mlp_stack("scaled", 2, 4, alpha=0.25)])
    with pytest.raises(TypeError, match="Conv2d"):
        train.stack_models([torch.nn.Conv2d(1, 1, 3, padding_mode="circular", padding=1)] * 2)
    stacked = train.stack_models([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="2 models"):
        stacked.write_back([torch.nn.Linear(2, 2)])
    x, y = _data()
    with pytest.raises(ValueError, match="engine"):
        train.train_seeds(lambda s: nets.mlp_stack("plain", 1, 12), [0], x, y, steps=1, lr=1e-3, engine="jit")
    with pytest.raises(TypeError, match="batched"):
        train.train_seeds(lambda s: nets.mlp_stack("plain", 1, 12), [0], x, y, steps=1, lr=1e-3, batched="yes")


def test_conv_blocks_still_reject_a_five_dimensional_input_outside_a_stack():
    from reslab.conv import conv_net

    net = conv_net("residual", 4, 2)
    with pytest.raises(ValueError, match="dimensions"):
        net(torch.zeros(2, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="dimensions"):
        net.blocks[0](torch.zeros(2, 3, 2, 8, 8))
