"""Property-based tests (hypothesis): the identities the book relies on hold for any shape,
depth and scale in a range, not just for the sizes the chapters happen to use."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reslab import _validate, blocks, nets, paths, probes
from reslab.repro import fmt

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
widths = st.integers(min_value=1, max_value=24)
depths = st.integers(min_value=1, max_value=6)
seeds = st.integers(min_value=0, max_value=2**16)


def _x(seed: int, batch: int, width: int, dtype=torch.float32, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(batch, width, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


@SETTINGS
@given(width=widths, depth=depths, seed=seeds, kind=st.sampled_from(["preact", "scaled", "residual_layer"]),
       activation=st.sampled_from(["relu", "tanh", "gelu"]))
def test_zero_init_residual_stack_is_identity_for_any_input(width, depth, seed, kind, activation):
    torch.manual_seed(seed)
    stack = nets.mlp_stack(kind, depth, width, activation=activation, zero_init=True)
    x = _x(seed, 3, width)
    assert torch.equal(stack(x), x)


@SETTINGS
@given(width=widths, depth=depths, seed=seeds)
def test_zero_init_postact_stack_is_identity_on_nonnegative_inputs(width, depth, seed):
    torch.manual_seed(seed)
    stack = nets.mlp_stack("residual", depth, width, zero_init=True)
    x = _x(seed, 3, width).abs()
    assert torch.equal(stack(x), x)


@SETTINGS
@given(width=widths, depth=depths, seed=seeds, kind=st.sampled_from(sorted(nets.KINDS)),
       layers=st.integers(min_value=1, max_value=3), batch=st.integers(min_value=1, max_value=5))
def test_every_stack_keeps_the_shape(width, depth, seed, kind, layers, batch):
    torch.manual_seed(seed)
    stack = nets.mlp_stack(kind, depth, width, layers=layers)
    assert stack(_x(seed, batch, width)).shape == (batch, width)
    assert len(list(stack.children())) == depth


@SETTINGS
@given(width=widths, seed=seeds, activation=st.sampled_from(["relu", "tanh", "gelu", "identity"]))
def test_residual_layer_jacobian_formula_for_any_width(width, seed, activation):
    torch.manual_seed(seed)
    layer = blocks.ResidualLayer(width, activation=activation).double()
    x = _x(seed, 1, width, torch.float64)[0]
    assert (probes.block_jacobian(layer, x) - probes.analytic_jacobian(layer, x)).abs().max().item() < 1e-12


@SETTINGS
@given(width=widths, depth=depths, seed=seeds, kind=st.sampled_from(["plain", "residual", "preact"]))
def test_probe_records_every_layer_and_the_output_gradient(width, depth, seed, kind):
    torch.manual_seed(seed)
    stack = nets.mlp_stack(kind, depth, width, init="he")
    g = _x(seed + 1, 4, width, scale=1.0)
    result = probes.layer_norms(stack, _x(seed, 4, width), grad_output=g)
    assert len(result.activations) == len(result.gradients) == depth + 1
    assert result.gradients[-1] == pytest.approx(probes.batch_norm_of(g), rel=1e-12)
    assert result.finite


@SETTINGS
@given(depth=st.integers(min_value=1, max_value=8), width=st.integers(min_value=1, max_value=8), seed=seeds,
       alpha=st.floats(min_value=0.0, max_value=2.0))
def test_path_decomposition_sums_to_the_gradient(depth, width, seed, alpha):
    stack = paths.residual_layer_stack(depth, width, alpha=alpha, seed=seed)
    x = _x(seed, 2, width, torch.float64)
    decomposition = paths.path_length_decomposition(stack, x, seed=seed)
    gradient = paths.input_gradient(stack, x, seed=seed)
    assert decomposition.coefficients.shape[0] == depth + 1
    assert torch.allclose(decomposition.total(), gradient, rtol=1e-10, atol=1e-12)
    assert decomposition.matvecs == depth * (depth + 1) // 2
    # the empty path carries the output gradient unchanged
    assert torch.equal(decomposition.coefficients[0], paths._delta(stack(x), None, seed))


@SETTINGS
@given(depth=st.integers(min_value=1, max_value=6), width=st.integers(min_value=1, max_value=5), seed=seeds)
def test_path_decomposition_equals_brute_force(depth, width, seed):
    stack = paths.residual_layer_stack(depth, width, seed=seed)
    x = _x(seed, 2, width, torch.float64)
    dp = paths.path_length_decomposition(stack, x, seed=seed)
    brute = paths.enumerate_paths(stack, x, seed=seed)
    by_length = torch.zeros_like(dp.coefficients)
    for length, contribution in zip(brute.lengths.tolist(), brute.contributions):
        by_length[length] += contribution
    assert torch.allclose(dp.coefficients, by_length, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300))
def test_fmt_keeps_three_significant_digits(value):
    text = fmt(value)
    if value == 0:
        assert text == "0.0"
        return
    parsed = float(text)
    assert math.isclose(parsed, value, rel_tol=5e-3)
    digits = text.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    assert len(digits) <= 3


@SETTINGS
@given(value=st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=3), st.none()))
def test_validators_reject_bad_depths_and_widths(value):
    for builder in (lambda v: nets.mlp_stack("plain", v, 4), lambda v: nets.mlp_stack("plain", 2, v)):
        with pytest.raises((ValueError, TypeError)):
            builder(value)


@SETTINGS
@given(alpha=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_non_finite_scales_are_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        blocks.ScaledResidualBlock(4, alpha=alpha)
    with pytest.raises(ValueError, match="finite"):
        _validate.finite_float("alpha", alpha)
