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
