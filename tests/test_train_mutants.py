"""Training loops on hand-checkable cases: exact first steps of SGD and Adam, the losses recorded,
the mini-batch order, the defaults, and what batching over seeds keeps (added for mutation testing)."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reslab import nets, train


def _line_data():
    """Fit y = x with y_hat = w x from w = 0: loss(w) = (1 - w)^2 * mean(x^2) = 2.5 (1 - w)^2."""
    x = torch.tensor([[1.0], [2.0]])
    return x, x.clone()


def _zero_line(seed: int = 0) -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    return model


def test_loss_fn_values():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert train.loss_fn("mse")(a, b).item() == pytest.approx(2.5)  # (1 + 4) / 2
    logits = torch.zeros(3, 4)
    assert train.loss_fn("cross_entropy")(logits, torch.tensor([0, 1, 3])).item() == pytest.approx(math.log(4))


def test_one_sgd_step_is_exact():
    """Gradient at w = 0 is -5, so one SGD step of lr = 0.1 gives w = 0.5 and loss 2.5 * 0.25."""
    x, y = _line_data()
    model = _zero_line()
    result = train.train(model, x, y, steps=1, lr=0.1, optimizer="sgd")
    assert result.losses.shape == (1, 2)
    assert result.losses[0].tolist() == pytest.approx([2.5, 0.625])
    assert result.models[0] is model and model.weight.item() == pytest.approx(0.5)
    assert result.final.tolist() == pytest.approx([0.625])


def test_default_optimizer_is_adam_and_default_loss_is_mse():
    """Adam's first step moves w by lr (times 1 - eps/|g|): w = 0.1, loss 2.5 * 0.81."""
    x, y = _line_data()
    model = _zero_line()
    result = train.train(model, x, y, steps=1, lr=0.1)
    assert result.losses[0].tolist() == pytest.approx([2.5, 2.025], rel=1e-6)
    assert model.weight.item() == pytest.approx(0.1, rel=1e-6)


def test_train_seeds_sgd_and_adam_exact_first_steps_batched_and_looped():
    x, y = _line_data()
    for batched in (True, False):
        sgd = train.train_seeds(_zero_line, [0, 1], x, y, steps=1, lr=0.1, optimizer="sgd", batched=batched)
        assert sgd.losses.shape == (2, 2)
        assert sgd.losses.tolist() == [pytest.approx([2.5, 0.625])] * 2
        assert [m.weight.item() for m in sgd.models] == pytest.approx([0.5, 0.5])
        adam = train.train_seeds(_zero_line, [0, 1], x, y, steps=1, lr=0.1, batched=batched)
        assert adam.losses.tolist() == [pytest.approx([2.5, 2.025], rel=1e-6)] * 2


def _zero_classifier(seed: int = 0) -> nn.Module:
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model


def test_train_seeds_full_batch_cross_entropy_batched_equals_loop():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]])
    y = torch.tensor([0, 1, 2, 1])
    kw = dict(steps=2, lr=0.5, loss="cross_entropy", optimizer="sgd")
    batched = train.train_seeds(_zero_classifier, [0, 1], x, y, **kw)
    loop = train.train_seeds(_zero_classifier, [0, 1], x, y, batched=False, **kw)
    assert batched.losses[:, 0].tolist() == pytest.approx([math.log(3)] * 2)  # uniform logits
    assert torch.allclose(batched.losses, loop.losses, rtol=1e-6)
    assert bool((batched.losses[:, 2] < batched.losses[:, 0]).all())


def test_zero_steps_records_the_initial_cross_entropy():
    x = torch.randn(5, 2)
    y = torch.tensor([0, 1, 2, 0, 1])
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    result = train.train(model, x, y, steps=0, lr=0.1, loss="cross_entropy")
    assert result.losses.shape == (1, 1)
    assert result.losses[0, 0].item() == pytest.approx(math.log(3))


class _Recorder(nn.Module):
    """y_hat = w x; remembers which examples (inputs are their own indices) each call saw."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x[:, 0].long().tolist())
        return x * self.w


def _minibatches(n: int, steps: int, batch_size: int, **kw) -> tuple[list[list[int]], torch.Tensor]:
    x = torch.arange(float(n))[:, None]
    model = _Recorder()
    result = train.train(model, x, x.clone(), steps=steps, lr=0.1, optimizer="sgd", batch_size=batch_size, **kw)
    return [s for s in model.seen if len(s) < n], result.losses


def test_each_epoch_of_minibatches_visits_every_example_once():
    batches, _ = _minibatches(6, 6, 2, data_seed=3)
    assert len(batches) == 6 and all(len(b) == 2 for b in batches)
    first, second = batches[:3], batches[3:]
    assert sorted(sum(first, [])) == list(range(6))
    assert sorted(sum(second, [])) == list(range(6))
    assert first != second  # reshuffled between epochs
    # 7 examples in batches of 3: the incomplete rest of an epoch is skipped, never a short batch
    batches, _ = _minibatches(7, 5, 3, data_seed=0)
    assert [len(b) for b in batches] == [3] * 5
    assert len(set(sum(batches[:2], []))) == 6 and len(set(sum(batches[2:4], []))) == 6


def test_minibatch_order_is_seeded_by_data_seed_with_default_zero():
    default, _ = _minibatches(8, 4, 3)
    assert default == _minibatches(8, 4, 3, data_seed=0)[0]
    assert default != _minibatches(8, 4, 3, data_seed=1)[0]


def test_full_batch_when_batch_size_covers_the_data():
    for batch_size in (None, 4, 9):
        x = torch.arange(4.0)[:, None]
        model = _Recorder()
        train.train(model, x, x.clone(), steps=2, lr=0.1, batch_size=batch_size)
        assert [sorted(s) for s in model.seen] == [[0, 1, 2, 3]] * 3  # two steps, one final evaluation


def test_minibatch_losses_are_full_data_losses():
    """With mini-batches the recorded loss is still the loss on all the data: 2.5-style closed form."""
    n = 6
    batches, losses = _minibatches(n, 3, 2, data_seed=1)
    mean_sq = sum(i * i for i in range(n)) / n  # loss(w) = (1 - w)^2 * mean(x^2)
    assert losses.shape == (1, 4)
    assert losses[0, 0].item() == pytest.approx(mean_sq)
    # SGD on the batch b: w <- w + lr * 2 (1 - w) mean_b(x^2)
    w, expected = 0.0, [mean_sq]
    for b in batches:
        w += 0.1 * 2 * (1 - w) * sum(i * i for i in b) / len(b)
        expected.append((1 - w) ** 2 * mean_sq)
    assert losses[0].tolist() == pytest.approx(expected, rel=1e-5)


def test_train_seeds_minibatches_batched_equal_loop_and_default_data_seed_zero():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(12, 3, generator=gen)
    y = x.sum(dim=1, keepdim=True)
    build = lambda seed: nn.Linear(3, 1)  # noqa: E731
    kw = dict(steps=4, lr=0.05, batch_size=5)
    batched = train.train_seeds(build, [0, 1], x, y, **kw)
    loop = train.train_seeds(build, [0, 1], x, y, batched=False, **kw)
    assert torch.allclose(batched.losses, loop.losses, rtol=1e-5, atol=1e-7)
    zero = train.train_seeds(build, [0, 1], x, y, data_seed=0, batched=False, **kw)
    one = train.train_seeds(build, [0, 1], x, y, data_seed=1, **kw)
    assert torch.equal(loop.losses, zero.losses)
    assert not torch.allclose(batched.losses, one.losses)
    one_loop = train.train_seeds(build, [0, 1], x, y, data_seed=1, batched=False, **kw)
    assert torch.allclose(one.losses, one_loop.losses, rtol=1e-5, atol=1e-7)
    # the recorded losses are full-data losses of each seed's model before each step
    torch.manual_seed(0)
    first = nn.Linear(3, 1)
    assert batched.losses[0, 0].item() == pytest.approx(F.mse_loss(first(x), y).item(), rel=1e-6)


def test_train_seeds_calls_build_with_each_seed_under_that_global_seed():
    x, y = _line_data()
    calls = []

    def build(seed):
        calls.append(seed)
        return nn.Linear(1, 1)

    result = train.train_seeds(build, [3, 5], x, y, steps=0, lr=0.1)
    assert calls == [3, 5]
    for seed, model in zip([3, 5], result.models):
        torch.manual_seed(seed)
        fresh = nn.Linear(1, 1)
        assert torch.equal(model.weight, fresh.weight) and torch.equal(model.bias, fresh.bias)


def test_train_seeds_with_one_seed_and_trained_weights_written_back_to_every_model():
    x, y = _line_data()
    one = train.train_seeds(_zero_line, [4], x, y, steps=1, lr=0.1, optimizer="sgd")
    assert one.losses.shape == (1, 2) and one.models[0].weight.item() == pytest.approx(0.5)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(10, 4, generator=gen)
    result = train.train_seeds(lambda s: nets.mlp_stack("preact", 2, 4), [0, 1, 2], x, x, steps=3, lr=0.01)
    with torch.no_grad():
        for i, model in enumerate(result.models):
            assert F.mse_loss(model(x), x).item() == pytest.approx(result.final[i].item(), rel=1e-5)


def test_train_seeds_maps_models_with_buffers():
    """ScaledResidualBlock keeps alpha as a buffer: vmap must map the stacked buffers too."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 4, generator=gen)
    build = lambda seed: nets.mlp_stack("scaled", 2, 4, alpha=0.5 + seed)  # noqa: E731
    batched = train.train_seeds(build, [0, 1], x, x, steps=3, lr=0.01)
    loop = train.train_seeds(build, [0, 1], x, x, steps=3, lr=0.01, batched=False)
    assert batched.engine == "vmap"  # the members' buffers differ, so they cannot be stacked
    assert torch.allclose(batched.losses, loop.losses, rtol=1e-5, atol=1e-7)


def test_train_seeds_batches_by_default_and_loops_with_batched_false():
    x, y = _line_data()
    default = train.train_seeds(_zero_line, [0, 1], x, y, steps=2, lr=0.1)
    loop = train.train_seeds(_zero_line, [0, 1], x, y, steps=2, lr=0.1, batched=False)
    assert default.engine in ("stacked", "vmap") and loop.engine == "loop"
    assert torch.allclose(default.losses, loop.losses, rtol=1e-6)


class _Alternating(nn.Module):
    """Uses map a on odd calls and b on even calls: each step, one of them gets no gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(1, 1, bias=False)
        self.b = nn.Linear(1, 1, bias=False)
        nn.init.zeros_(self.a.weight)
        nn.init.zeros_(self.b.weight)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (self.a if self.calls % 2 == 1 else self.b)(x)


def test_adam_leaves_parameters_without_gradient_in_a_step_untouched():
    """Gradients are reset to None each step, so Adam skips (rather than coasts on momentum for)
    a parameter that took no part in the step; every engine trains such a model as the loop does."""
    x, y = _line_data()
    model = _Alternating()
    train.train(model, x, y, steps=3, lr=0.1)  # a, b, a are used; b is stepped once
    assert model.b.weight.item() == pytest.approx(0.1, rel=1e-6)
    assert model.calls == 4  # three steps and the final loss
    loop = train.train_seeds(lambda s: _Alternating(), [0, 1], x, y, steps=3, lr=0.1, batched=False)
    vmapped = train.train_seeds(lambda s: _Alternating(), [0, 1], x, y, steps=3, lr=0.1, engine="vmap")
    assert vmapped.engine == "vmap"
    assert [m.b.weight.item() for m in vmapped.models] == pytest.approx([0.1, 0.1], rel=1e-6)
    # "auto": the stack passes the output check (on copies: the counters are not advanced),
    # then step 1 trains b instead of a, so it starts again on vmap and matches the loop
    auto = train.train_seeds(lambda s: _Alternating(), [0, 1], x, y, steps=3, lr=0.1)
    assert auto.engine == "vmap"
    assert torch.allclose(auto.losses, loop.losses, rtol=1e-6)
    assert [m.b.weight.item() for m in auto.models] == pytest.approx([0.1, 0.1], rel=1e-6)
    assert [m.a.weight.item() for m in auto.models] == pytest.approx([m.a.weight.item() for m in loop.models], rel=1e-6)
    with pytest.raises(RuntimeError, match=r"parameter 'a.weight' gets a gradient in some steps and not in others \(step 1 differs.*engine='vmap'"):
        train.train_seeds(lambda s: _Alternating(), [0, 1], x, y, steps=3, lr=0.1, engine="stacked")


class _Counted(nn.Module):
    """A linear map that counts its calls (state kept in Python, outside the parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x)


def test_auto_engine_checks_on_copies_and_stacks_when_every_parameter_trains():
    x, y = _line_data()
    models = []

    def build(seed):
        models.append(_Counted())
        return models[-1]

    auto = train.train_seeds(build, [0, 1], x, y, steps=4, lr=0.05)
    loop = train.train_seeds(lambda s: _Counted(), [0, 1], x, y, steps=4, lr=0.05, batched=False)
    assert auto.engine == "stacked"
    assert [m.calls for m in models] == [0, 0]  # the trial forward pass ran on copies
    assert torch.allclose(auto.losses, loop.losses, rtol=1e-6)
    for a, b in zip(auto.models, loop.models):
        assert torch.allclose(a.lin.weight, b.lin.weight, rtol=1e-6) and torch.allclose(a.lin.bias, b.lin.bias, rtol=1e-6)


def test_stacked_models_name_their_parameter_views():
    from reslab.conv import conv_net

    torch.manual_seed(0)
    convs = [conv_net("residual", 2, 2) for _ in range(2)]
    stacked = train.stack_models(convs)
    names = [name for name, _ in stacked.views]
    assert names == [name for name, _ in stacked.network.named_parameters()]
    assert sum(v.numel() for _, v in stacked.views) == stacked.flat.numel()
    assert all(v.data_ptr() >= stacked.flat.data_ptr() for _, v in stacked.views)
    bare = train.stack_models([nn.Linear(2, 2), nn.Linear(2, 2)])
    assert [name for name, _ in bare.views] == ["weight", "bias"]


class _Unused(nn.Module):
    """A trained layer, a frozen layer and a layer the forward pass never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(1, 3)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(3, 1)
        self.spare = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.frozen(x)))


def test_stacked_engine_keeps_frozen_and_unused_parameters_as_the_loop_does():
    x, y = _line_data()
    kw = dict(steps=6, lr=0.1)
    loop = train.train_seeds(lambda s: _Unused(), [0, 1], x, y, batched=False, **kw)
    stacked = train.train_seeds(lambda s: _Unused(), [0, 1], x, y, engine="stacked", **kw)
    assert stacked.engine == "stacked"
    assert torch.allclose(stacked.losses, loop.losses, rtol=1e-6)
    for seed, (a, b) in enumerate(zip(stacked.models, loop.models)):
        torch.manual_seed(seed)
        fresh = _Unused()
        for name in ("frozen.weight", "frozen.bias", "spare.weight", "spare.bias"):  # never moved
            assert torch.equal(a.get_parameter(name), fresh.get_parameter(name)), name
            assert torch.equal(b.get_parameter(name), fresh.get_parameter(name)), name
        assert not a.frozen.weight.requires_grad and a.head.weight.requires_grad
        assert not torch.equal(a.head.weight, fresh.head.weight)  # the head did train
        assert torch.allclose(a.head.weight, b.head.weight, rtol=1e-6) and torch.allclose(a.head.bias, b.head.bias, rtol=1e-6)
    stack = train.stack_models([_Unused(), _Unused()])
    assert {name: view.requires_grad for name, view in stack.views} == {
        "frozen.weight": False, "frozen.bias": False, "head.weight": True, "head.bias": True, "spare.weight": True, "spare.bias": True,
    }
    thawed = _Unused()
    thawed.frozen.requires_grad_(True)
    with pytest.raises(ValueError, match=r"models\[1\] differs from models\[0\] in whether parameter frozen.weight is trained"):
        train.stack_models([_Unused(), thawed])
