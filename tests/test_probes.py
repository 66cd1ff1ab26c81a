"""Probes: Jacobians against torch.func, one-pass norms against retain_grad, non-finite reports."""

import math

import pytest
import torch

from reslab import nets, probes
from reslab.blocks import PlainBlock, ResidualLayer


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_residual_layer_jacobian_is_identity_plus_dw(activation):
    torch.manual_seed(0)
    layer = ResidualLayer(24, activation=activation).double()
    x = torch.randn(24, dtype=torch.float64)
    auto = probes.block_jacobian(layer, x)
    formula = probes.analytic_jacobian(layer, x)
    # written out by hand as well: I + diag(phi'(z)) W
    z = layer.linear(x).detach()
    if activation == "relu":
        slopes = (z > 0).double()
    elif activation == "tanh":
        slopes = 1 - torch.tanh(z) ** 2
    else:
        slopes = torch.stack([torch.func.grad(torch.nn.functional.gelu)(zi) for zi in z])
    by_hand = torch.eye(24, dtype=torch.float64) + torch.diag(slopes) @ layer.linear.weight.detach()
    assert (auto - formula).abs().max().item() < 1e-12
    assert (auto - by_hand).abs().max().item() < 1e-12


def test_plain_layer_jacobian_is_dw_and_activation_jacobian_is_diagonal():
    torch.manual_seed(1)
    block = PlainBlock(10, layers=1).double()
    x = torch.randn(10, dtype=torch.float64)
    assert (probes.block_jacobian(block, x) - probes.analytic_jacobian(block, x)).abs().max() < 1e-12
    d = torch.func.jacrev(torch.relu)(torch.randn(10, dtype=torch.float64))
    assert torch.equal(d, torch.diag(torch.diagonal(d)))


def _norms_with_retain_grad(stack, x, g):
    xs = [x.detach().clone().requires_grad_(True)]
    for block in stack:
        out = block(xs[-1])
        out.retain_grad()
        xs.append(out)
    xs[-1].backward(g)
    return [probes.batch_norm_of(t) for t in xs], [probes.batch_norm_of(t.grad) for t in xs]


@pytest.mark.parametrize("kind", ["plain", "residual", "preact", "residual_layer"])
def test_probe_matches_retain_grad(kind):
    torch.manual_seed(2)
    stack = nets.mlp_stack(kind, 12, 16, init="he")
    x = torch.randn(8, 16)
    g = torch.randn(8, 16)
    result = probes.layer_norms(stack, x, grad_output=g)
    acts, grads = _norms_with_retain_grad(stack, x, g)
    assert result.depth == 12
    assert result.activations == pytest.approx(acts, rel=1e-12)
    assert result.gradients == pytest.approx(grads, rel=1e-12)
    assert result.gradients[-1] == pytest.approx(probes.batch_norm_of(g))


def test_probe_runs_exactly_one_backward_pass(monkeypatch):
    calls = []
    for name in ("backward", "grad"):
        real = getattr(torch.autograd, name)

        def counting(*args, _real=real, **kwargs):
            calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch.autograd, name, counting)
    torch.manual_seed(3)
    result = probes.layer_norms(nets.mlp_stack("residual", 30, 8), torch.randn(4, 8))
    assert len(calls) == 1
    assert all(math.isfinite(v) for v in result.gradients)


def test_probe_default_grad_output_is_seeded():
    torch.manual_seed(4)
    stack = nets.mlp_stack("preact", 5, 8)
    x = torch.randn(3, 8)
    a = probes.layer_norms(stack, x, seed=7)
    b = probes.layer_norms(stack, x, seed=7)
    c = probes.layer_norms(stack, x, seed=8)
    assert a.gradients == b.gradients and a.loss == b.loss
    assert a.gradients != c.gradients


def test_probe_reports_nonfinite_values_without_crashing():
    torch.manual_seed(5)
    stack = nets.mlp_stack("plain", 40, 16, init="he", gain=10.0)  # overflows float32
    result = probes.layer_norms(stack, torch.randn(4, 16))
    assert not result.finite
    bad = result.nonfinite_layers()
    assert bad["activations"], "the forward pass should overflow to inf"
    assert "non-finite" in result.report()


def test_random_jacobian_lognorm_spread_grows_with_depth():
    shallow = probes.random_jacobian_lognorms(10, 64, 200, seed=0)
    deep = probes.random_jacobian_lognorms(160, 64, 200, seed=0)
    assert shallow.shape == (200,)
    ratio = (deep.std() / shallow.std()).item()
    # spread grows roughly like sqrt(L): sqrt(16) = 4
    assert 2.5 < ratio < 6.0
    # unit gain in expectation, yet the typical (median) log-norm drifts below 0
    assert deep.median().item() < shallow.median().item() < 0.1


def test_batch_norm_of_is_rms_of_row_norms():
    v = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert probes.batch_norm_of(v) == pytest.approx(math.sqrt(25 / 2))
    assert probes.batch_norm_of(torch.tensor([3.0, 4.0])) == 5.0
    assert math.isinf(probes.batch_norm_of(torch.tensor([[float("inf"), 1.0]])))


def test_bad_probe_arguments_raise():
    stack = nets.mlp_stack("plain", 2, 4)
    with pytest.raises(TypeError, match="model"):
        probes.layer_norms("stack", torch.randn(2, 4))
    with pytest.raises(ValueError, match="dimensions"):
        probes.layer_norms(stack, torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match="grad_output"):
        probes.layer_norms(stack, torch.randn(2, 4), grad_output=torch.randn(3, 4))
    with pytest.raises(ValueError, match="empty"):
        probes.layer_norms(torch.nn.Sequential(), torch.randn(2, 4))
    with pytest.raises(TypeError, match="ResidualLayer"):
        probes.analytic_jacobian(nets.mlp_stack("residual", 1, 4)[0], torch.randn(4))
    with pytest.raises(ValueError, match="dimensions"):
        probes.block_jacobian(stack[0], torch.randn(2, 4))
    with pytest.raises(ValueError, match="draws"):
        probes.random_jacobian_lognorms(3, 4, 0)
