"""Tests of reslab.paths: the path expansion of the backward pass, path statistics, and the fixes."""

from __future__ import annotations

import math

import pytest
import torch

import reslab
from reslab import nets, paths, probes
from reslab.blocks import ResidualLayer


def _stack(depth: int, width: int = 5, seed: int = 0, activation: str = "relu", init: str = "default", alpha: float = 1.0):
    return paths.residual_layer_stack(depth, width, seed=seed, activation=activation, init=init, alpha=alpha)


def _x(batch: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# Exactness of the expansion
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", range(1, 13))
def test_decomposition_equals_brute_force(depth):
    width = 4 + depth % 3
    stack = _stack(depth, width, seed=100 + depth, init="he" if depth % 2 else "default")
    x = _x(3, width, seed=depth)
    enum = paths.enumerate_paths(stack, x, seed=depth)
    dec = paths.path_length_decomposition(stack, x, seed=depth)
    brute = enum.by_length()
    assert enum.contributions.shape[0] == 2**depth
    scale = brute.abs().max()
    rel = float((dec.coefficients - brute).abs().max() / scale)
    assert rel < 1e-10
    # every length's coefficient separately, relative to its own size
    for k in range(depth + 1):
        ref = brute[k].norm()
        assert float((dec.coefficients[k] - brute[k]).norm()) <= 1e-10 * float(ref) + 1e-300


@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_decomposition_equals_brute_force_smooth_activations(activation):
    stack = _stack(9, 5, seed=3, activation=activation)
    x = _x(2, 5)
    enum = paths.enumerate_paths(stack, x)
    dec = paths.path_length_decomposition(stack, x)
    assert float((dec.coefficients - enum.by_length()).abs().max() / enum.by_length().abs().max()) < 1e-10


@pytest.mark.parametrize("depth", [1, 7, 30, 110])
def test_coefficients_sum_to_autograd_gradient(depth):
    stack = _stack(depth, 8, seed=depth)
    x = _x(4, 8)
    dec = paths.path_length_decomposition(stack, x)
    grad = paths.input_gradient(stack, x)
    rel = float((dec.total() - grad).norm() / grad.norm())
    assert rel < 1e-10
    assert dec.matvecs == depth * (depth + 1) // 2
    assert dec.depth == depth
    assert dec.counts() == [math.comb(depth, k) for k in range(depth + 1)]


def test_L3_eight_paths_sum_to_autograd():
    stack = _stack(3, 6, seed=7)
    x = _x(2, 6)
    delta = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    enum = paths.enumerate_paths(stack, x, delta=delta)
    assert enum.contributions.shape == (8, 2, 6)
    assert sorted(enum.paths()) == [(), (0,), (0, 1), (0, 1, 2), (0, 2), (1,), (1, 2), (2,)]
    assert torch.bincount(enum.lengths).tolist() == [1, 3, 3, 1]
    grad = paths.input_gradient(stack, x, delta=delta)
    assert float((enum.total() - grad).abs().max()) < 1e-12
    # the empty path is the identity: delta_L itself, exactly
    empty = enum.paths().index(())
    assert torch.equal(enum.contributions[empty], delta)
    # a one-block path is (J_l - I)^T delta_L with J_l from torch.func, for one example
    jac = probes.block_jacobian(stack[0], x[0]).detach()  # block 0 sees x_0 itself
    one = enum.paths().index((0,))
    # delta reaching block 0 on the path (0,) is delta_L unchanged (blocks 1, 2 skipped)
    expected = (jac - torch.eye(6, dtype=torch.float64)).T @ delta[0]
    assert float((enum.contributions[one][0] - expected).abs().max()) < 1e-12
    norms = enum.norms()
    assert norms.shape == (8,) and bool((norms > 0).all())


def test_relu_jacobian_diagonal_and_analytic_match():
    torch.manual_seed(0)
    block = ResidualLayer(7).double()
    x = _x(1, 7)[0]
    z = block.linear(x).detach()
    d = torch.func.jacrev(block.phi)(z)
    off = d - torch.diag(torch.diagonal(d))
    assert float(off.abs().max()) == 0.0
    err = (probes.analytic_jacobian(block, x) - probes.block_jacobian(block, x).detach()).abs().max()
    assert float(err) < 1e-12


def test_branch_factors_match_block_outputs():
    stack = _stack(5, 4, seed=2)
    x = _x(3, 4)
    f = paths.branch_factors(stack, x)
    assert f.depth == 5 and f.slopes.shape == (5, 3, 4)
    assert torch.allclose(f.output, stack(x), atol=0, rtol=0)
    assert set(torch.unique(f.slopes).tolist()) <= {0.0, 1.0}  # ReLU slopes


def test_alpha_scales_the_branch_exactly():
    x = _x(2, 5)
    base = _stack(4, 5, seed=11)
    scaled = _stack(4, 5, seed=11, alpha=0.3)
    h1 = h2 = x
    for b1, b2 in zip(base, scaled):
        assert torch.allclose(b2(h2) - h2, 0.3 * torch.relu(b1.linear(h2)), atol=1e-14)
        h1, h2 = b1(h1), b2(h2)
    identity = _stack(4, 5, seed=11, alpha=0.0)
    assert torch.equal(identity(x), x)
    dec = paths.path_length_decomposition(identity, x)
    assert float(dec.coefficients[1:].abs().max()) == 0.0


def test_sampled_path_norms_match_enumeration():
    stack = _stack(6, 5, seed=4)
    x = _x(2, 5)
    enum = paths.enumerate_paths(stack, x, seed=3)
    sample = paths.sample_path_norms(stack, x, samples=5, seed=3)
    assert sample.norms.shape == (7, 5)
    norms = enum.norms()
    lengths = enum.lengths
    # length 0 and length L have one path each: every sample equals it
    assert torch.allclose(sample.norms[0], norms[lengths == 0].expand(5))
    assert torch.allclose(sample.norms[6], norms[lengths == 6].expand(5))
    # every sampled length-2 path is one of the enumerated ones
    pool = norms[lengths == 2]
    for v in sample.norms[2]:
        assert float((pool - v).abs().min()) < 1e-12
    est = sample.total_estimate(6)
    assert est.shape == (7,) and math.isclose(float(est[1]), 6 * float(sample.mean[1]))


def test_binomial_statistics():
    assert paths.path_length_counts(3) == [1, 3, 3, 1]
    share = paths.path_length_share(54, 19, 35)
    assert share > 0.95 and math.isclose(share, 0.98017, abs_tol=1e-4)
    assert paths.path_length_share(54, 0, 54) == 1.0
    assert math.isclose(paths.path_length_share(54, 5, 17), 0.0045, abs_tol=1e-4)  # Veit et al.'s 0.45 %
    assert paths.path_length_share(10, 0, 4) == paths.path_length_share(10, 6, 10)


def test_dominant_lengths():
    assert paths.dominant_lengths([0, 1, 8, 1, 0], share=0.8) == (2, 2)
    assert paths.dominant_lengths([0, 1, 8, 1, 0], share=0.9) == (1, 2)
    assert paths.dominant_lengths([1, 1, 1, 1], share=1.0) == (0, 3)
    assert paths.dominant_lengths(torch.tensor([5.0, 0.0, 0.0, 5.0]), share=0.5) == (0, 0)


def test_variance_growth_per_block(deadline):
    with deadline(2.0):  # a broken loop must fail the test, not hang it
        assert math.isnan(paths.variance_growth_per_block([0.0, 1.0, 2.0]))  # x_0 = 0: no growth rate
        assert math.isclose(paths.variance_growth_per_block([1.0, 2.0, 4.0]), 4.0)
        assert math.isclose(paths.variance_growth_per_block([1.0, 2.0, float("inf")]), 4.0)
        assert math.isclose(paths.variance_growth_per_block([1.0, 2.0, 4.0, 100.0], blocks=2), 4.0)
        assert math.isnan(paths.variance_growth_per_block([1.0, float("nan")]))


def test_path_profile_is_consistent_with_layer_norms():
    norms, dec = paths.path_profile(20, 0.5, width=8, batch=3)
    assert math.isclose(norms.gradients[0], probes.batch_norm_of(dec.total()), rel_tol=1e-10)
    fig = paths.path_profile_figure(12, 1.0, width=8, batch=2)
    assert len(fig.axes) == 3 and "L = 12" in fig.axes[0].get_title()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_probes_reexports_paths():
    assert probes.path_length_decomposition is paths.path_length_decomposition
    assert probes.enumerate_paths is paths.enumerate_paths
    assert reslab.paths is paths


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise():
    stack = _stack(3, 4)
    x = _x(2, 4)
    with pytest.raises(TypeError, match="ResidualLayer"):
        paths.path_length_decomposition(nets.mlp_stack("plain", 3, 4).double(), x)
    with pytest.raises(TypeError, match="stack"):
        paths.enumerate_paths("not a stack", x)
    with pytest.raises(ValueError, match="<= 20"):
        paths.enumerate_paths(_stack(21, 2), _x(1, 2))
    with pytest.raises(ValueError, match="last dimension 4"):
        paths.path_length_decomposition(stack, _x(2, 5))
    with pytest.raises(TypeError, match="dtype"):
        paths.path_length_decomposition(stack, x.float())
    with pytest.raises(ValueError, match="delta must have the output's shape"):
        paths.path_length_decomposition(stack, x, delta=torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="seed"):
        paths.path_length_decomposition(stack, x, seed=-1)
    with pytest.raises(ValueError, match="lengths"):
        paths.sample_path_norms(stack, x, lengths=[0, 4])
    with pytest.raises(ValueError, match="samples"):
        paths.sample_path_norms(stack, x, samples=0)
    with pytest.raises(ValueError, match="lo and hi"):
        paths.path_length_share(10, 6, 5)
    with pytest.raises(ValueError, match="depth"):
        paths.path_length_counts(0)
    with pytest.raises(ValueError, match="non-negative"):
        paths.dominant_lengths([1.0, -1.0])
    with pytest.raises(ValueError, match="share"):
        paths.dominant_lengths([1.0, 1.0], share=1.5)
    with pytest.raises(ValueError, match="alpha"):
        paths.residual_layer_stack(3, 4, alpha=-1.0)
    with pytest.raises(ValueError, match="dtype"):
        paths.residual_layer_stack(3, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="name"):
        paths.fix_stack("batchnorm", 3, 4)
    with pytest.raises(ValueError, match="init"):
        paths.fix_stack("ReZero", 3, 4, init="xavier")
    with pytest.raises(ValueError, match="activations"):
        paths.variance_growth_per_block([1.0])


# --------------------------------------------------------------------------------------------
# Forward growth and gradient norms (reduced configurations of the chapter's claims)
# --------------------------------------------------------------------------------------------


def test_plain_default_gradient_underflows_residual_keeps_it():
    sweep = paths.gradient_norm_sweep(("plain", "residual"), (100,), ("default",), width=128, batch=4)
    plain = sweep[("plain", "default", 100)]
    res = sweep[("residual", "default", 100)]
    assert plain.gradients[0] == 0.0  # exactly zero in float32
    assert res.gradients[0] > 0.5 * res.gradients[-1]


def test_fixes_bound_the_1000_block_forward_pass():
    out = paths.compare_fixes(["post-act, no fix", "branch scale 1/sqrt(L)", "zero-init last layer", "ReZero"], depth=1000, width=16, batch=2)
    grow = {k: v.activations[-1] / v.activations[0] for k, v in out.items()}
    assert grow["post-act, no fix"] > 1e6  # explodes with PyTorch's default init
    assert grow["branch scale 1/sqrt(L)"] < 10
    assert out["zero-init last layer"].activations[-1] == pytest.approx(out["zero-init last layer"].activations[0], rel=1e-6)
    assert out["ReZero"].gradients[0] == pytest.approx(out["ReZero"].gradients[-1], rel=1e-6)
    assert out["zero-init last layer"].finite and out["branch scale 1/sqrt(L)"].finite


def test_he_branches_double_the_variance_per_block():
    out = paths.compare_fixes(["pre-act, no fix", "pre-LN"], depth=40, width=128, init="he", batch=8)
    g = paths.variance_growth_per_block(out["pre-act, no fix"].activations)
    assert 1.6 < g < 2.5
    assert paths.variance_growth_per_block(out["pre-LN"].activations) < 1.2


def test_prenorm_branch_is_scale_invariant():
    torch.manual_seed(0)
    block = paths.PreNormResidualBlock(8)
    x = torch.randn(3, 8)
    small = block(x) - x
    big = block(1e4 * x) - 1e4 * x
    assert torch.allclose(small, big, atol=1e-2)


def test_train_deep_loss_falls():
    result, model = paths.train_deep("branch scale 1/sqrt(L)", depth=150, width=16, steps=4, examples=96)
    losses = result.losses[0]
    assert losses.shape == (5,)
    assert float(losses[-1]) < float(losses[0])
    assert bool(torch.all(losses[1:] < losses[:-1]))
