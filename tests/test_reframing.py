"""Tests of reslab.reframing: chapter 2's drivers, and the chapter's central claim in miniature."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from reslab import nets, reframing  # noqa: E402
from reslab.blocks import ProjectionResidualBlock  # noqa: E402


@pytest.fixture(scope="module")
def small_sweep():
    # reduced configuration of the chapter's sweep: fewer depths, fewer training images
    return reframing.degradation_sweep((8, 50), seeds=(0, 1, 2), channels=4, steps=25, n_train=64)


def test_central_claim_residual_beats_plain_at_largest_depth_for_every_seed(small_sweep):
    plain, residual = small_sweep.final("plain", 50), small_sweep.final("residual", 50)
    assert plain.shape == residual.shape == (3,)
    assert bool((residual < plain).all()), (plain, residual)
    # and plain degrades with depth: the deep plain net trains worse than the shallow one
    assert float(small_sweep.median("plain")[1]) > float(small_sweep.median("plain")[0])
    # while the deep residual net does not (with a margin: not worse than 2x the shallow one)
    assert float(small_sweep.median("residual")[1]) < 2 * float(small_sweep.median("residual")[0])


def test_sweep_result_structure(small_sweep):
    r = small_sweep
    assert r.depths == [8, 50] and r.kinds == ["plain", "residual"] and r.seeds == [0, 1, 2]
    for key, curves in r.curves.items():
        assert curves.shape == (3, 26)
        assert torch.isfinite(curves).all()
        acc = r.test_accuracy[key]
        assert acc.shape == (3,) and bool(((acc >= 0) & (acc <= 1)).all())
    # every net starts near chance: cross-entropy of ten classes ~ ln 10 (zero-init residuals
    # and He-init plain nets alike)
    for kind in r.kinds:
        assert abs(float(r.curves[(kind, 8)][:, 0].median()) - math.log(10)) < 1.0
    assert r.final_table("plain").shape == (2, 3)
    assert r.config["n_train"] == 64 and r.config["n_test"] == 1797 - 64
    with pytest.raises(ValueError):
        r.final("plain", 20)


def test_sweep_is_deterministic_and_depth_two_kinds_agree():
    a = reframing.degradation_sweep((2,), seeds=(0, 1, 2), steps=3, n_train=32)
    b = reframing.degradation_sweep((2,), seeds=(0, 1, 2), steps=3, n_train=32)
    assert torch.equal(a.curves[("plain", 2)], b.curves[("plain", 2)])
    # depth 2 has no blocks: plain and residual nets are the same network
    assert torch.equal(a.curves[("plain", 2)], a.curves[("residual", 2)])


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"depths": (3,)}, ValueError),
        ({"depths": ()}, ValueError),
        ({"kinds": ("dense",)}, ValueError),
        ({"kinds": "plain"}, TypeError),
        ({"seeds": ()}, ValueError),
        ({"steps": 0}, ValueError),
        ({"lr": 0.0}, ValueError),
        ({"optimizer": "lbfgs"}, ValueError),
        ({"zero_init": "yes"}, TypeError),
        ({"n_train": 1797}, ValueError),
    ],
)
def test_sweep_bad_inputs(kwargs, exc):
    with pytest.raises(exc):
        reframing.degradation_sweep(**kwargs)


def test_branch_net_parametrisations_share_weights():
    x = torch.randn(5, 6)
    torch.manual_seed(0)
    plain = reframing.branch_net("plain", 2, 6, 12)
    torch.manual_seed(0)
    res = reframing.branch_net("residual", 2, 6, 12)
    b0, b1 = plain.branches
    assert torch.allclose(plain(x), b1(b0(x)))
    h = x + b0(x)
    assert torch.allclose(res(x), h + b1(h))
    assert reframing.parameter_count(plain) == reframing.parameter_count(res) == 2 * (6 * 12 + 12 + 12 * 6 + 6)
    with pytest.raises(ValueError):
        reframing.branch_net("preact")
    with pytest.raises(ValueError):
        res(torch.randn(5, 7))


def test_steps_to_reach():
    losses = torch.tensor([[1.0, 0.5, 0.2, 0.1], [1.0, 0.9, 0.8, 0.7]])
    assert reframing.steps_to_reach(losses, 0.2) == [2, None]
    assert reframing.steps_to_reach(losses, 1.0) == [0, 0]
    with pytest.raises(ValueError):
        reframing.steps_to_reach(losses, 0.0)
    with pytest.raises(ValueError):
        reframing.steps_to_reach(losses[0], 0.5)


def test_small_residual_race_residual_reaches_threshold_first():
    r = reframing.small_residual_race(seeds=(0, 1, 2), eps=0.1, steps=120, lr=1e-2, hidden=64, n=128)
    res, plain = r.steps_to("residual"), r.steps_to("plain")
    assert all(s is not None for s in res), res
    for a, b in zip(res, plain):
        assert b is None or a < b
    assert r.threshold == pytest.approx(0.1 * r.identity_loss)
    # the residual net starts closer: its initial loss is far below the plain net's
    assert float(r.curves["residual"][:, 0].max()) < 0.2 * float(r.curves["plain"][:, 0].min())
    with pytest.raises(ValueError):
        r.steps_to("preact")


def test_shortcut_costs():
    costs = reframing.shortcut_costs(16, 32)
    branch = (16 * 32 + 32) + (32 * 32 + 32)
    assert costs["A"] == {"total": branch, "shortcut": 0}
    assert costs["B"] == {"total": branch + 16 * 32, "shortcut": 16 * 32}
    assert costs["C"] == costs["B"]
    same = reframing.shortcut_costs(16, 16)
    assert same["A"]["shortcut"] == same["B"]["shortcut"] == 0 and same["C"]["shortcut"] == 256
    assert "A" not in reframing.shortcut_costs(32, 16)
    assert reframing.parameter_count(ProjectionResidualBlock(16, 32, "C")) == costs["C"]["total"]
    with pytest.raises(ValueError):
        reframing.shortcut_costs(0, 16)
    with pytest.raises(TypeError):
        reframing.parameter_count("not a module")


def test_residual_sum_gap_preact_exact_postact_not():
    torch.manual_seed(0)
    x = torch.randn(8, 16, dtype=torch.float64)
    pre = nets.mlp_stack("preact", 10, 16).double()
    post = nets.mlp_stack("residual", 10, 16).double()
    assert reframing.residual_sum_gap(pre, x) < 1e-12
    assert reframing.residual_sum_gap(post, x) > 0.1
    with pytest.raises(TypeError):
        reframing.residual_sum_gap(nets.mlp_stack("plain", 2, 16), x)


def test_figures_render(small_sweep):
    fig = reframing.degradation_figure(small_sweep)
    assert len(fig.axes) == 2 and fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_title() and fig.axes[0].get_xlabel() and fig.axes[0].get_legend() is not None
    plt.close(fig)
    fig = reframing.curves_figure(small_sweep, 50, highlight="plain")
    assert fig.axes[0].get_title() == "plain nets, depth 50"
    assert len(fig.axes[0].get_lines()) >= 6  # three seeds of each kind
    plt.close(fig)
    fig = reframing.curves_figure(small_sweep, 8)
    assert fig.axes[0].get_title() == "depth 8"
    plt.close(fig)
    with pytest.raises(ValueError):
        reframing.curves_figure(small_sweep, 20)
    with pytest.raises(ValueError):
        reframing.curves_figure(small_sweep, 8, highlight="preact")
    race = reframing.small_residual_race(seeds=(0,), steps=5, n=16, hidden=8, width=4)
    fig = reframing.race_figure([race])
    assert len(fig.axes) == 1
    plt.close(fig)
    with pytest.raises(TypeError):
        reframing.degradation_figure("nope")
    with pytest.raises(ValueError):
        reframing.kind_color("dense")
