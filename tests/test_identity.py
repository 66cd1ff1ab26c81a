"""Tests of reslab.identity: the experiments of chapter 1 and the claims the chapter makes."""

import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from reslab import identity as idt
from reslab.blocks import PlainBlock, ScaledResidualBlock

# A reduced configuration of the chapter's main experiment: small enough to run in a second or
# two, large enough that the plain/residual gap is wide at the largest depth.
FAST = dict(depths=(1, 12), seeds=(0, 1, 2), width=8, n=64, steps=60, lr=1e-2)


@pytest.fixture(scope="module")
def fast_sweep():
    return idt.depth_sweep(**FAST)


# --- 1.1 near-one products and random Jacobian products --------------------------------------


def test_near_one_product_values():
    exact, approx = idt.near_one_product(0.05, 100)
    assert exact == pytest.approx(131.50, abs=0.01)
    assert approx == pytest.approx(math.e**5)
    exact, approx = idt.near_one_product(-0.05, 100)
    assert exact == pytest.approx(0.00592, rel=1e-3)
    assert approx == pytest.approx(math.exp(-5))
    # to first order the estimate is exact: the relative gap shrinks like eps^2 L
    e, a = idt.near_one_product(1e-4, 100)
    assert abs(e / a - 1) < 1e-5


@pytest.mark.parametrize(
    "args, err",
    [((-1.0, 10), ValueError), ((-2.0, 10), ValueError), ((float("nan"), 10), ValueError), (("0.1", 10), TypeError), ((0.1, 0), ValueError), ((0.1, 2.5), TypeError)],
)
def test_near_one_product_bad_input(args, err):
    with pytest.raises(err):
        idt.near_one_product(*args)


def test_lognorm_moments_formula_and_sqrt_growth():
    mean, sd = idt.lognorm_moments(200, 64)
    assert mean == pytest.approx(-5 * 200 / (4 * 64))
    assert sd == pytest.approx(math.sqrt(5 * 200 / (4 * 64)))
    # four times the depth, twice the spread
    assert idt.lognorm_moments(40, 64)[1] == pytest.approx(2 * idt.lognorm_moments(10, 64)[1])
    with pytest.raises(ValueError, match="width"):
        idt.lognorm_moments(10, 0)
    with pytest.raises(TypeError, match="depth"):
        idt.lognorm_moments(1.5, 8)


def test_jacobian_spread_grows_with_depth_and_matches_heuristic():
    samples = idt.jacobian_lognorm_samples((4, 64), width=32, draws=200, seed=3)
    assert set(samples) == {4, 64} and all(v.shape == (200,) for v in samples.values())
    sd4, sd64 = (float(samples[L].std()) for L in (4, 64))
    assert sd64 > 2.5 * sd4  # sqrt(64/4) = 4 in theory
    for L in (4, 64):
        mean, sd = idt.lognorm_moments(L, 32)
        assert float(samples[L].std()) == pytest.approx(sd, rel=0.3)
        assert abs(float(samples[L].mean()) - mean) < 0.5 * sd
    with pytest.raises(ValueError, match="draws"):
        idt.jacobian_lognorm_samples((4,), width=8, draws=1)
    with pytest.raises(ValueError, match="depths"):
        idt.jacobian_lognorm_samples((), width=8)


# --- data, baselines, networks ---------------------------------------------------------------


def test_identity_data_is_nonnegative_and_seeded():
    x = idt.identity_data(50, 7, seed=4)
    assert x.shape == (50, 7) and x.dtype == torch.float32
    assert bool((x >= 0).all())
    assert torch.equal(x, idt.identity_data(50, 7, seed=4))
    assert not torch.equal(x, idt.identity_data(50, 7, seed=5))
    with pytest.raises(ValueError, match="n must"):
        idt.identity_data(1, 7)
    with pytest.raises(TypeError, match="width"):
        idt.identity_data(10, "7")


def test_random_orthogonal_and_invariant_baseline():
    q = idt.random_orthogonal(12, seed=2)
    assert torch.allclose(q @ q.T, torch.eye(12), atol=1e-5)
    assert torch.equal(q, idt.random_orthogonal(12, seed=2))
    assert not torch.allclose(q, idt.random_orthogonal(12, seed=3))
    x = idt.identity_data(100, 12)
    # the best constant predicts the column means; its loss is the same for x and Qx
    manual = float(((x - x.mean(0)) ** 2).mean())
    assert idt.best_constant_loss(x) == pytest.approx(manual, rel=1e-6)
    assert idt.best_constant_loss(x @ q.T) == pytest.approx(idt.best_constant_loss(x), rel=1e-5)
    with pytest.raises(ValueError, match="width"):
        idt.random_orthogonal(0)
    with pytest.raises(ValueError, match="targets"):
        idt.best_constant_loss(torch.ones(5))
    with pytest.raises(TypeError, match="targets"):
        idt.best_constant_loss([[1.0, 2.0]])


def test_build_net_families_and_exact_identity_of_plain_relu_on_nonnegative_inputs():
    plain = idt.build_net("plain", 5, 6)
    assert all(isinstance(b, PlainBlock) and b.n_layers == 2 for b in plain)
    res = idt.build_net("residual", 9, 6)
    assert all(isinstance(b, ScaledResidualBlock) and float(b.alpha) == pytest.approx(1 / 3) for b in res)
    assert all(float(b.alpha) == 1.0 for b in idt.build_net("residual_unscaled", 4, 6))
    with_readout = idt.build_net("plain", 2, 6, readout=True)
    assert isinstance(with_readout, nn.Sequential) and isinstance(with_readout[-1], nn.Linear)
    # The identity is in the plain net's function class for non-negative inputs: W = I, b = 0.
    with torch.no_grad():
        for block in plain:
            for lin in block.linears:
                lin.weight.copy_(torch.eye(6))
                lin.bias.zero_()
    x = idt.identity_data(20, 6)
    assert torch.equal(plain(x), x)
    with pytest.raises(ValueError, match="family"):
        idt.build_net("highway", 3, 6)
    with pytest.raises(TypeError, match="readout"):
        idt.build_net("plain", 3, 6, readout=1)


def test_zero_init_residual_is_exactly_the_identity_and_stays_there():
    x = idt.identity_data(32, 8)
    losses = idt.zero_init_losses(20, x, steps=5)
    assert losses.shape == (6,)
    assert bool((losses == 0.0).all())  # exactly, not approximately
    # a randomly initialised (unscaled) residual stack is not: its output grows with depth
    assert idt.initial_loss("residual_unscaled", 16, x) > 10 * idt.initial_loss("residual_unscaled", 1, x)
    with pytest.raises(ValueError, match="steps"):
        idt.zero_init_losses(4, x, steps=-1)
    with pytest.raises(ValueError, match="x must have"):
        idt.zero_init_losses(4, torch.ones(8))


# --- 1.2 the paradox --------------------------------------------------------------------------


def test_depth_sweep_central_claim(fast_sweep):
    sw = fast_sweep
    assert sw.losses["plain"].shape == (2, 3, FAST["steps"] + 1)
    plain, res = sw.final("plain"), sw.final("residual")
    # at the largest depth the residual net ends below the plain net, for every seed, by far
    assert bool((res[-1] < plain[-1]).all())
    assert float(res[-1].max()) < 0.3 * float(plain[-1].min())
    # the plain net gets worse with depth
    assert sw.median("plain")[-1] > sw.median("plain")[0]
    # both families start from the same data and are deterministic given the seeds
    again = idt.depth_sweep(**{**FAST, "depths": (12,), "families": ("plain",)})
    assert torch.allclose(again.final("plain")[0], plain[-1])


def test_depth_sweep_stall_verdict(fast_sweep):
    stalled = fast_sweep.stalled("plain")
    assert stalled[-1] and not stalled[0]
    assert not any(fast_sweep.stalled("residual"))
    with pytest.raises(ValueError, match="family"):
        fast_sweep.final("residual_unscaled")
    with pytest.raises(ValueError, match="fraction"):
        fast_sweep.stalled("plain", fraction=0.0)


@pytest.mark.parametrize(
    "kwargs, err",
    [({"depths": ()}, ValueError), ({"depths": (0, 2)}, ValueError), ({"seeds": (-1,)}, ValueError), ({"families": ()}, ValueError), ({"families": ("dense",)}, ValueError), ({"families": "plain"}, TypeError), ({"steps": 0}, ValueError), ({"lr": -1.0}, ValueError)],
)
def test_depth_sweep_bad_input(kwargs, err):
    with pytest.raises(err):
        idt.depth_sweep(**{**FAST, "depths": (1,), "steps": 1, **kwargs})


# --- 1.3 identity vs orthogonal ---------------------------------------------------------------


def test_target_comparison_same_order():
    tc = idt.target_comparison(depth=10, seeds=(0, 1, 2), width=8, n=64, steps=40)
    assert set(tc.losses) == set(idt.TARGETS)
    assert tc.baselines["identity"] == pytest.approx(tc.baselines["orthogonal"], rel=1e-5)
    assert 1 / 3 < tc.ratio() < 3
    # the deep plain net learns little of either: both end near the best-constant level
    for target in idt.TARGETS:
        assert float(tc.final(target).median()) > 0.5 * tc.baselines[target]
    with pytest.raises(ValueError, match="target"):
        tc.final("permutation")
    with pytest.raises(ValueError, match="depth"):
        idt.target_comparison(depth=0)


# --- explorer ---------------------------------------------------------------------------------


def test_gradient_grid_gain_compounds_exactly():
    grid = idt.gradient_norm_grid(depths=(6, 20), gains=(1.0, 1.1), width=16, batch=8, seeds=(0, 1))
    assert set(grid) == {(6, 1.0), (6, 1.1), (20, 1.0), (20, 1.1)}
    for depth in (6, 20):
        for base, scaled in zip(grid[(depth, 1.0)], grid[(depth, 1.1)]):
            assert len(base) == depth + 1
            # ReLU is positively homogeneous and biases are zero: the gain enters as g^L exactly
            ratio = (scaled[0] / scaled[-1]) / (base[0] / base[-1])
            assert ratio == pytest.approx(1.1**depth, rel=1e-4)
    with pytest.raises(ValueError, match="gains"):
        idt.gradient_norm_grid(depths=(3,), gains=(1.0, 0.0), width=4, batch=2)
    with pytest.raises(ValueError, match="gains"):
        idt.gradient_norm_grid(depths=(3,), gains=(), width=4, batch=2)


def test_figures_are_labelled_and_reject_bad_input(fast_sweep):
    grid = idt.gradient_norm_grid(depths=(5,), gains=(0.9,), width=8, batch=4, seeds=(0,))
    samples = idt.jacobian_lognorm_samples((3, 9), width=8, draws=20)
    figs = [
        idt.near_one_figure(),
        idt.jacobian_histogram_figure(samples, 8),
        idt.depth_sweep_figure(fast_sweep),
        idt.gradient_frame(grid, 5, 0.9),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
            assert ax.get_legend() is not None
        plt.close(fig)
    with pytest.raises(ValueError, match="grid"):
        idt.gradient_frame(grid, 5, 1.0)
    # every frame of one grid shares its y-range (whole decades covering g^L and every ratio)
    grid2 = idt.gradient_norm_grid(depths=(4, 40), gains=(0.9, 1.1), width=8, batch=4, seeds=(0,))
    limits = set()
    for key in grid2:
        fig = idt.gradient_frame(grid2, *key)
        limits.add(fig.axes[0].get_ylim())
        plt.close(fig)
    assert len(limits) == 1
    lo, hi = limits.pop()
    assert lo <= 0.9**40 and hi >= 1.1**40 and math.log10(lo).is_integer()
    with pytest.raises(TypeError, match="sweep"):
        idt.depth_sweep_figure({"plain": 1})
    with pytest.raises(TypeError, match="comparison"):
        idt.target_figure(None)
    with pytest.raises(ValueError, match="eps"):
        idt.near_one_figure((0.1, -1.5))
    with pytest.raises(ValueError, match="samples"):
        idt.jacobian_histogram_figure({}, 8)
