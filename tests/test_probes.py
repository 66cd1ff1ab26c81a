"""Probes: Jacobians against torch.func, one-pass norms against retain_grad, non-finite reports."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from reslab import nets, plots, probes  # noqa: E402
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


def test_overflowing_1000_layer_plain_stack_is_reported_and_plotted_visibly():
    """Issue 7: a 1,000-layer plain stack that overflows is a result to report and show, not a crash."""
    torch.manual_seed(0)
    # He weights times 2 double |x_l| at every ReLU layer: float32 (max 3.4e38 = 2^128) overflows part-way
    stack = nets.mlp_stack("plain", 1000, 16, layers=1, init="he", gain=2.0)
    result = probes.layer_norms(stack, torch.randn(4, 16))
    assert result.depth == 1000 and len(result.activations) == len(result.gradients) == 1001
    bad = result.nonfinite_layers()
    first = bad["activations"][0]
    assert 100 < first < 200, "the forward signal overflows near layer 128"
    assert bad["activations"] == list(range(first, 1001)), "once overflowed, every later layer is non-finite"
    assert all(math.isfinite(v) and v > 0 for v in result.activations[:first]), "the layers before the overflow keep their values"
    n_act, n_grad = len(bad["activations"]), len(bad["gradients"])
    assert n_grad > 0 and math.isfinite(result.gradients[-1]), "delta_L is finite; the backward pass meets the overflow"
    assert not result.finite
    assert result.report().endswith(f"(non-finite at {n_act} activation and {n_grad} gradient layers)")

    series = {"plain-1000 activations": result.activations, "plain-1000 gradients": result.gradients}
    fig = plots.layer_norm_figure(series, title="1,000 plain layers, gain 2", ylabel="norm", ylim=(1e-3, 1e30))
    ax = fig.axes[0]
    fig.canvas.draw()
    top = ax.bbox.y1
    markers = [line for line in ax.get_lines() if line.get_marker() == "^"]
    assert len(markers) == 2, "one row of overflow markers per series"
    for line, (label, values), nonfinite in zip(markers, series.items(), (bad["activations"], bad["gradients"])):
        assert list(line.get_xdata()) == nonfinite, f"{label}: one marker at every non-finite layer"
        drawn_at = line.get_transform().transform(np.column_stack([line.get_xdata(), line.get_ydata()]))[:, 1]
        assert np.allclose(drawn_at, top), f"{label}: the markers sit on the top edge of the axes, whatever the y-limits"
        assert not line.get_clip_on(), "the markers are not clipped away"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"plain-1000 activations ({n_act} inf/nan)" in legend and f"plain-1000 gradients ({n_grad} inf/nan)" in legend
    finite_line = ax.get_lines()[0]
    assert len(finite_line.get_xdata()) == 1001 - n_act, "the finite norms are drawn as the line"
    assert plots.figure_png(fig)[:4] == b"\x89PNG"  # and it renders


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


def test_analytic_jacobian_rejects_a_plain_block_of_two_layers():
    # the formula D W holds for one layer only; a two-layer plain block has D2 W2 D1 W1
    with pytest.raises(TypeError, match="layers=1"):
        probes.analytic_jacobian(PlainBlock(4, layers=2), torch.randn(4))


def test_analytic_jacobian_keeps_the_blocks_dtype():
    # a bfloat16 residual layer: I + D W stays bfloat16 (the identity must not promote it to float32)
    torch.manual_seed(9)
    layer = ResidualLayer(6).to(torch.bfloat16)
    x = torch.randn(6, dtype=torch.bfloat16)
    formula = probes.analytic_jacobian(layer, x)
    assert formula.dtype == torch.bfloat16
    assert torch.equal(formula, probes.block_jacobian(layer, x).detach())


def test_nonfinite_layers_lists_exactly_the_inf_and_nan_indices():
    norms = probes.LayerNorms([1.0, math.inf, math.nan, 2.0], [0.5, 2.0, 3.0, -math.inf], loss=0.0)
    assert norms.depth == 3 and not norms.finite
    assert norms.nonfinite_layers() == {"activations": [1, 2], "gradients": [3]}
    assert probes.LayerNorms([1.0, 2.0], [3.0, 4.0], loss=0.0).nonfinite_layers() == {"activations": [], "gradients": []}


def test_report_prints_input_and_output_norms_and_finiteness():
    finite = probes.LayerNorms([1.0, 2.5, 40.0], [0.125, 3.0, 7.0], loss=1.0)
    assert finite.report() == "L=2: |x_0|=1, |x_L|=40, |delta_0|=0.125, |delta_L|=7 (all finite)"
    broken = probes.LayerNorms([1.0, math.inf, math.nan], [math.nan, 3.0, 7.0], loss=math.nan)
    assert broken.report() == (
        "L=2: |x_0|=1, |x_L|=nan, |delta_0|=nan, |delta_L|=7 (non-finite at 2 activation and 1 gradient layers)"
    )


def test_random_jacobian_lognorms_is_seeded_and_default_seed_is_0():
    torch.manual_seed(1)
    default = probes.random_jacobian_lognorms(3, 4, 6)
    torch.manual_seed(2)  # the draws must not depend on the global generator
    seed0 = probes.random_jacobian_lognorms(3, 4, 6, seed=0)
    seed1 = probes.random_jacobian_lognorms(3, 4, 6, seed=1)
    assert default.dtype == torch.float64 and default.shape == (6,)
    assert torch.equal(default, seed0)
    assert not torch.equal(seed0, seed1)


def test_random_jacobian_lognorms_is_the_log_norm_of_the_explicit_jacobian_product():
    # Reference: the same seeded draws (input h, direction v, then one weight matrix per layer),
    # every layer Jacobian J_l = diag(1[z_l > 0]) W_l built as a matrix, multiplied out, no rescaling.
    depth, width, draws, seed, gain = 3, 4, 5, 11, 1.5
    out = probes.random_jacobian_lognorms(depth, width, draws, seed=seed, gain=gain)
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(draws, width, 1, generator=gen, dtype=torch.float64)
    v = torch.randn(draws, width, 1, generator=gen, dtype=torch.float64)
    ws = [torch.randn(draws, width, width, generator=gen, dtype=torch.float64) * gain * math.sqrt(2.0 / width) for _ in range(depth)]
    for b in range(draws):
        x, jac = h[b, :, 0], torch.eye(width, dtype=torch.float64)
        for w in ws:
            z = w[b] @ x
            jac = torch.diag((z > 0).double()) @ w[b] @ jac
            x = torch.relu(z)
        unit = v[b, :, 0] / torch.linalg.vector_norm(v[b, :, 0])
        expected = float(torch.log(torch.linalg.vector_norm(jac @ unit)))  # -inf if every unit of a layer is off
        assert float(out[b]) == expected or math.isclose(float(out[b]), expected, rel_tol=1e-12, abs_tol=1e-12)
    assert out.dtype == torch.float64


def test_sequence_checks_name_the_argument_for_a_non_sequence():
    # reslab._validate's shared sequence check (mutation-tested with the probes modules)
    from reslab import _validate

    assert _validate.float_sequence("gains", (1, 2.5)) == [1.0, 2.5]
    for bad in (5, torch.tensor(1.0), "12"):
        with pytest.raises(TypeError, match="^gains must be a non-empty sequence of finite numbers"):
            _validate.float_sequence("gains", bad)
    with pytest.raises(TypeError, match=r"^gains\[0\] must be a finite real number"):
        _validate.float_sequence("gains", torch.tensor([1.0, 2.0]))  # elements of a 1-D tensor are tensors


def test_random_jacobian_lognorms_gain_adds_depth_log_gain():
    # ReLU is positively homogeneous: scaling every W by the gain g leaves the masks unchanged and
    # multiplies |J_L ... J_1 v| by g^L. The forward signal is renormalised at every layer, so this
    # holds even for a gain (1e-100) at which the unnormalised signal would underflow after 4 layers.
    base = probes.random_jacobian_lognorms(4, 6, 8, seed=3)
    assert bool(torch.isfinite(base).all())
    for gain in (1e-100, 0.5, 3.0):
        scaled = probes.random_jacobian_lognorms(4, 6, 8, seed=3, gain=gain)
        assert torch.allclose(scaled, base + 4 * math.log(gain), rtol=1e-12, atol=1e-9), gain


def test_pair_check_defaults_to_any_sign_and_needs_strictly_increasing_limits():
    from reslab import _validate

    assert _validate.float_pair("ylim", (-1, 2)) == (-1.0, 2.0)  # positive=False by default
    assert _validate.float_pair("ylim", (1, 2), increasing=True) == (1.0, 2.0)
    with pytest.raises(ValueError, match="^ylim must be a pair of finite numbers"):
        _validate.float_pair("ylim", (1, 1), increasing=True)


class _Cut(torch.nn.Module):
    """A block whose output does not depend on its input (a learned constant)."""

    def __init__(self, width):
        super().__init__()
        self.value = torch.nn.Parameter(torch.ones(width))

    def forward(self, x):
        return self.value.expand(x.shape)


def test_probe_reports_zero_gradient_below_a_block_that_cuts_the_path():
    torch.manual_seed(24)
    stack = torch.nn.Sequential(torch.nn.Linear(4, 4), _Cut(4), torch.nn.Linear(4, 4))
    g = torch.randn(3, 4)
    result = probes.layer_norms(stack, torch.randn(3, 4), grad_output=g)
    assert result.gradients[:2] == [0.0, 0.0]  # x_0 and x_1 do not reach the output
    assert result.gradients[2] > 0 and result.gradients[3] == pytest.approx(probes.batch_norm_of(g))
    assert result.finite


def test_probe_loss_is_the_inner_product_of_output_and_grad_output():
    torch.manual_seed(25)
    stack = nets.mlp_stack("residual", 3, 4)
    x, g = torch.randn(2, 4), torch.randn(2, 4)
    result = probes.layer_norms(stack, x, grad_output=g)
    with torch.no_grad():
        expected = float((stack(x).double() * g.double()).sum())
    assert result.loss == pytest.approx(expected, rel=1e-6)


def test_probe_default_seed_is_0_and_a_single_block_or_example_works():
    torch.manual_seed(26)
    layer = ResidualLayer(4)
    x = torch.randn(3, 4)
    single = probes.layer_norms(layer, x)
    wrapped = probes.layer_norms(torch.nn.Sequential(layer), x, seed=0)
    assert single.depth == 1 and single.activations == wrapped.activations and single.gradients == wrapped.gradients
    assert single.loss == wrapped.loss
    # one example of shape (d,) is a batch of one
    one = probes.layer_norms(layer, x[0], grad_output=torch.ones(4))
    batch = probes.layer_norms(layer, x[:1], grad_output=torch.ones(1, 4))
    assert one.activations == pytest.approx(batch.activations, rel=1e-12)
    assert one.gradients == pytest.approx(batch.gradients, rel=1e-12)
