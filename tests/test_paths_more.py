"""More tests of reslab.paths: norms and their precision, path sampling, window search, the
variance growth summary, the fixes' stacks, the sweeps' defaults and the explorer figure."""

from __future__ import annotations

import math
from fractions import Fraction

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.colors import same_color, to_rgba

from reslab import blocks, nets, paths, plots, probes


def _x(batch: int, width: int, seed: int = 1, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(batch, width, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------------
# Norms: root mean square over the batch, computed in float64
# --------------------------------------------------------------------------------------------


def test_decomposition_norms_are_batch_rms_of_each_coefficient():
    stack = paths.residual_layer_stack(4, 5, seed=6, init="he")
    x = _x(3, 5)  # batch 3 != width 5, so summing over the wrong axis shows
    dec = paths.path_length_decomposition(stack, x, seed=2)
    norms = dec.norms()
    assert norms.shape == (5,) and norms.dtype == torch.float64
    for k in range(5):
        assert math.isclose(float(norms[k]), probes.batch_norm_of(dec.coefficients[k]), rel_tol=1e-12)
    enum = paths.enumerate_paths(stack, x, seed=2)
    for i in (0, 5, 15):
        assert math.isclose(float(enum.norms()[i]), probes.batch_norm_of(enum.contributions[i]), rel_tol=1e-12)


def test_float32_path_norms_do_not_overflow():
    # contributions near float32's range: their squares overflow float32, not float64
    stack = paths.residual_layer_stack(2, 2, alpha=0.0, dtype=torch.float32)
    x = _x(1, 2, dtype=torch.float32)
    delta = torch.full((1, 2), 1e20, dtype=torch.float32)
    expected = math.sqrt(2) * float(delta[0, 0])
    dec = paths.path_length_decomposition(stack, x, delta=delta)
    assert dec.norms().dtype == torch.float64
    assert math.isclose(float(dec.norms()[0]), expected, rel_tol=1e-12)
    assert dec.norms()[1:].tolist() == [0.0, 0.0]  # alpha = 0: no branch, every longer path is 0
    enum = paths.enumerate_paths(stack, x, delta=delta)
    assert math.isclose(float(enum.norms()[enum.lengths == 0]), expected, rel_tol=1e-12)
    sample = paths.sample_path_norms(stack, x, delta=delta, samples=2, lengths=[0])
    assert sample.norms.dtype == torch.float64
    assert torch.allclose(sample.norms, torch.full((1, 2), expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_total_estimate_counts_are_exact_beyond_float32():
    # Veit et al.'s 54 blocks: C(54, 27) ~ 1.9e15 is exact in float64, not in float32
    sample = paths.PathNormSample(torch.tensor([0, 1, 27, 54]), torch.ones(4, 3, dtype=torch.float64))
    est = sample.total_estimate(54)
    assert est.dtype == torch.float64
    assert est.tolist() == [1.0, 54.0, float(math.comb(54, 27)), 1.0]
    assert int(est[2]) == math.comb(54, 27)


# --------------------------------------------------------------------------------------------
# Sampling single paths
# --------------------------------------------------------------------------------------------


def _sampled_paths(enum: paths.PathEnumeration, sample: paths.PathNormSample) -> list[list[tuple[int, ...]]]:
    """The enumerated path that each sampled norm belongs to (norms of a random stack are distinct)."""
    norms, names = enum.norms(), enum.paths()
    out = []
    for row in sample.norms:
        found = []
        for v in row:
            gap = (norms - v).abs()
            i = int(gap.argmin())
            assert float(gap[i]) < 1e-12 * float(v)
            found.append(names[i])
        out.append(found)
    return out


def test_sampled_paths_are_pinned_by_the_seed():
    # the chapter prints statistics of sample_path_norms(..., seed=0): the paths a seed picks are fixed
    stack = paths.residual_layer_stack(5, 3, seed=21)
    x = _x(2, 3, seed=4)
    enum = paths.enumerate_paths(stack, x, seed=0)
    torch.manual_seed(123)  # the global generator plays no part
    sample = paths.sample_path_norms(stack, x, samples=4, lengths=[1, 2], seed=0)
    assert sample.lengths.tolist() == [1, 2]
    assert _sampled_paths(enum, sample) == [[(4,), (1,), (3,), (0,)], [(1, 3), (0, 3), (3, 4), (0, 4)]]


def test_sample_path_norms_defaults_and_determinism():
    stack = paths.residual_layer_stack(3, 4, seed=5)
    x = _x(2, 4)
    default = paths.sample_path_norms(stack, x)
    assert default.norms.shape == (4, 16)  # samples=16 paths for each length 0..L
    assert default.lengths.tolist() == [0, 1, 2, 3]
    torch.manual_seed(99)
    explicit = paths.sample_path_norms(stack, x, samples=16, seed=0)
    assert torch.equal(default.norms, explicit.norms)
    # a given delta_L is the empty path's contribution: every length-0 sample is its norm
    delta = torch.tensor([[3.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    given = paths.sample_path_norms(stack, x, delta, samples=3, lengths=[0])
    assert torch.allclose(given.norms, torch.full((1, 3), math.sqrt(12.5), dtype=torch.float64), rtol=1e-14, atol=0)


# --------------------------------------------------------------------------------------------
# dominant_lengths and path_length_share at their edges
# --------------------------------------------------------------------------------------------


def test_dominant_lengths_default_share_and_single_length():
    assert paths.dominant_lengths([0, 1, 8, 1, 0]) == (1, 2)  # default share 0.9: 9 of 10
    assert paths.dominant_lengths([2.5]) == (0, 0)
    assert paths.dominant_lengths([0.25, 0.5, 0.25], share=0.5) == (1, 1)  # weights summing to exactly 1
    with pytest.raises(ValueError, match="zero"):
        paths.dominant_lengths([0.0, 0.0])


def test_dominant_lengths_vanishing_share_is_met_by_the_first_nonzero_length():
    assert paths.dominant_lengths([0.0, 3.0, 1.0], share=1e-20) == (1, 1)
    assert paths.dominant_lengths([1.0, 1.0, 1.0], share=1e-300) == (0, 0)


def test_dominant_lengths_keeps_float64_precision():
    # share=1 of [1, 1e-10] needs both lengths; summing in float32 would round the tail away
    assert paths.dominant_lengths([1.0, 1e-10], share=1.0) == (0, 1)
    assert paths.dominant_lengths([1e-10, 1.0, 1e-10], share=1.0) == (0, 2)
    assert paths.dominant_lengths(torch.tensor([1.0, 1e-10], dtype=torch.float32), share=1.0) == (0, 1)


def test_dominant_lengths_window_stays_inside_the_weights():
    # a big weight then many tiny ones: the float prefix sums stay below the float total
    w = torch.cat([torch.ones(1, dtype=torch.float64), torch.full((100_000,), 1e-16, dtype=torch.float64)])
    lo, hi = paths.dominant_lengths(w, share=1.0)
    assert 0 == lo <= hi <= len(w) - 1
    assert math.fsum(w[lo : hi + 1].tolist()) >= math.fsum(w.tolist()) * (1 - 1e-9)


def test_dominant_lengths_finds_a_spike_after_a_long_flat_tail():
    # 9363 lengths of weight 1.75, then one of 1.78125 (and a trailing 0). The spike alone holds
    # exactly `share` of the total, so it is the shortest window; long prefix sums must not hide it.
    tail, spike = 9363, 1.78125
    w = torch.tensor([1.75] * tail + [spike, 0.0], dtype=torch.float64)
    total = Fraction(1.75) * tail + Fraction(spike)
    share = float(Fraction(spike) / total)
    while Fraction(share) * total > Fraction(spike):  # round the share down: the spike holds at least it
        share = math.nextafter(share, 0.0)
    assert paths.dominant_lengths(w, share=share) == (tail, tail)


def test_path_length_share_single_length():
    assert paths.path_length_share(4, 2, 2) == 6 / 16
    assert paths.path_length_share(4, 0, 0) == 1 / 16
    assert paths.path_length_share(4, 4, 4) == 1 / 16


# --------------------------------------------------------------------------------------------
# variance_growth_per_block
# --------------------------------------------------------------------------------------------


def test_variance_growth_per_block_edges(deadline):
    with deadline(2.0):
        # x_0 = 0 has no growth rate: nothing is usable
        assert math.isnan(paths.variance_growth_per_block([0.0, 1.0, 2.0]))
        assert math.isnan(paths.variance_growth_per_block([1.0, 0.0]))
        assert math.isnan(paths.variance_growth_per_block([1.0, float("inf")]))
        # non-constant growth: every block counts; squared norms x64 over 2 blocks -> 8 per block
        assert math.isclose(paths.variance_growth_per_block([1.0, 2.0, 8.0]), 8.0)
        assert math.isclose(paths.variance_growth_per_block([1.0, 2.0, 8.0], blocks=5), 8.0)  # more than there are
        assert math.isclose(paths.variance_growth_per_block([1.0, 2.0, 8.0], blocks=1), 4.0)
        # shrinking norms are a growth below 1, not unusable
        assert math.isclose(paths.variance_growth_per_block([1.0, 0.5, 0.25]), 0.25)
        # the count stops before the first zero norm, whatever follows it
        assert math.isclose(paths.variance_growth_per_block([1.0, 2.0, 0.0, 27.0]), 4.0)


def test_variance_growth_per_block_returns_promptly_on_a_long_trace(deadline):
    acts = [1.5**l for l in range(1001)]
    with deadline(2.0):
        assert math.isclose(paths.variance_growth_per_block(acts), 2.25, rel_tol=1e-9)
        assert math.isclose(paths.variance_growth_per_block(acts, blocks=10), 2.25, rel_tol=1e-9)


# --------------------------------------------------------------------------------------------
# The fixes' stacks: the pre-LN block and its stack
# --------------------------------------------------------------------------------------------


def test_prenorm_block_is_a_preact_block_on_normalised_input():
    torch.manual_seed(3)
    block = paths.PreNormResidualBlock(6)
    assert list(block.norm.parameters()) == []  # LN without learned gain or bias
    twin = blocks.PreActResidualBlock(6)  # the same two-layer branch F
    twin.load_state_dict(block.state_dict())  # strict: the same parameters, nothing more
    x = 5.0 * _x(3, 6, dtype=torch.float32)
    u = torch.nn.functional.layer_norm(x, (6,))
    with torch.no_grad():
        out, ref = block(x), x + (twin(u) - u)  # x + F(LN(x)), and F(u) = preact(u) - u
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
    assert float((out - x).abs().max()) > 0.1


def test_prenorm_stack_and_block_follow_init():
    he = paths.fix_stack("pre-LN", 3, 16, init="he", seed=0)
    default = paths.fix_stack("pre-LN", 3, 16, init="default", seed=0)
    assert isinstance(he, nets.Stack) and (he.kind, he.depth, he.width) == ("prenorm", 3, 16)
    assert (default.kind, default.depth, default.width) == ("prenorm", 3, 16)
    assert all(isinstance(b, paths.PreNormResidualBlock) for b in he)
    # He init zeroes every bias; PyTorch's default init does not
    assert all(float(lin.bias.detach().abs().max()) == 0.0 for b in he for lin in b.linears)
    assert all(float(lin.bias.detach().abs().max()) > 0.0 for b in default for lin in b.linears)
    block = paths.PreNormResidualBlock(16, init="he")
    assert len(block.linears) == 2
    assert all(float(lin.bias.detach().abs().max()) == 0.0 for lin in block.linears)


# --------------------------------------------------------------------------------------------
# Sweeps and profiles: defaults, seeds, and the documented recipe
# --------------------------------------------------------------------------------------------


def test_gradient_norm_sweep_defaults_and_recipe():
    args = (("residual",), (1,), ("he",))
    default = paths.gradient_norm_sweep(*args)[("residual", "he", 1)]
    explicit = paths.gradient_norm_sweep(*args, width=128, batch=8, seed=0)[("residual", "he", 1)]
    assert default.activations == explicit.activations and default.gradients == explicit.gradients
    # the recipe: seed, build, probe a standard normal batch from the same seed
    got = paths.gradient_norm_sweep(("plain", "residual"), (2,), ("he",), width=8, batch=3, seed=3)
    for kind in ("plain", "residual"):
        torch.manual_seed(3)
        stack = nets.mlp_stack(kind, 2, 8, init="he")
        ref = probes.layer_norms(stack, torch.randn(3, 8, generator=torch.Generator().manual_seed(3)), seed=3)
        assert got[(kind, "he", 2)].activations == ref.activations
        assert got[(kind, "he", 2)].gradients == ref.gradients
        assert got[(kind, "he", 2)].loss == ref.loss


def test_path_profile_recipe_and_defaults():
    norms, dec = paths.path_profile(4, 0.7, width=5, batch=3, init="he", seed=3)
    assert dec.coefficients.shape == (5, 3, 5)
    stack = paths.residual_layer_stack(4, 5, alpha=0.7, init="he", seed=3)
    x = _x(3, 5, seed=3)
    ref = paths.path_length_decomposition(stack, x, seed=3)
    assert torch.equal(dec.coefficients, ref.coefficients)
    assert norms.activations == probes.layer_norms(stack, x, seed=3).activations
    # the same delta_L feeds both measurements (also for a seed other than 0)
    assert math.isclose(norms.gradients[0], probes.batch_norm_of(dec.total()), rel_tol=1e-10)
    torch.manual_seed(7)  # the global generator plays no part
    again = paths.path_profile(4, 0.7, width=5, batch=3, init="he", seed=3)[1]
    assert torch.equal(again.coefficients, dec.coefficients)
    # defaults: width 32, batch 4, He init, seed 0
    d_norms, d_dec = paths.path_profile(2, 1.0)
    e_norms, e_dec = paths.path_profile(2, 1.0, width=32, batch=4, init="he", seed=0)
    assert d_dec.coefficients.shape == (3, 4, 32)
    assert torch.equal(d_dec.coefficients, e_dec.coefficients) and d_norms.gradients == e_norms.gradients


def test_path_profile_alpha_zero_is_the_identity():
    norms, dec = paths.path_profile(3, 0.0, width=4, batch=2)
    assert float(dec.coefficients[1:].abs().max()) == 0.0
    assert norms.gradients == [norms.gradients[0]] * 4
    assert norms.activations == [norms.activations[0]] * 4


# --------------------------------------------------------------------------------------------
# The explorer figure
# --------------------------------------------------------------------------------------------


def _texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def _check_figure(fig, depth: int, norms, dec, share: float) -> None:
    ax1, ax2, twin = fig.axes
    lo, hi = paths.dominant_lengths(dec.norms(), share)
    # left panel: per-layer gradient norms on a log axis
    (line,) = ax1.get_lines()
    assert line.get_xdata().tolist() == list(range(depth + 1))
    assert line.get_ydata().tolist() == norms.gradients
    assert same_color(line.get_color(), plots.KIND_COLORS["residual"])
    assert line.get_marker() == "." and line.get_markersize() == 3
    assert ax1.get_yscale() == "log"
    assert ax1.get_xlabel() == "layer $l$ (0 = input)" and ax1.get_ylabel() == "gradient norm"
    assert _texts(ax1.get_legend()) == [r"$\|\delta_l\|$"]
    assert ax1.get_legend()._loc == 0  # "best"
    # right panel: exact |c_k| by path length, the dominant window shaded, path shares on a twin axis
    (ck,) = ax2.get_lines()
    assert ck.get_xdata().tolist() == list(range(depth + 1))
    assert ck.get_ydata().tolist() == dec.norms().tolist()
    assert same_color(ck.get_color(), plots.PALETTE["orange"])
    assert ck.get_marker() == "." and ck.get_markersize() == 3
    assert ax2.get_yscale() == "log"
    assert ax2.get_xlabel() == "path length $k$ (blocks entered)"
    assert ax2.get_ylabel() == "norm of the sum over paths"
    assert ax2.get_title() == "gradient by path length"
    (span,) = ax2.patches
    assert (span.get_x(), span.get_x() + span.get_width()) == (lo - 0.5, hi + 0.5)
    assert to_rgba(span.get_facecolor()) == to_rgba(plots.PALETTE["orange"], 0.15)
    (counts,) = twin.get_lines()
    assert counts.get_xdata().tolist() == list(range(depth + 1))
    assert counts.get_ydata().tolist() == [math.comb(depth, k) / 2**depth for k in range(depth + 1)]
    assert same_color(counts.get_color(), plots.PALETTE["black"])
    assert counts.get_linestyle() == ":" and counts.get_linewidth() == 1
    assert twin.get_ylabel() == "share of the $2^L$ paths"
    assert not any(g.get_visible() for g in twin.get_ygridlines())
    legend = ax2.get_legend()
    assert _texts(legend) == [r"$\|c_k\|$ (exact)", f"{share:.0%} of the sum: k = {lo}-{hi}", "share of paths"]
    assert legend._loc == 8  # "lower center"
    assert all(t.get_fontsize() == 7 for t in legend.get_texts())
    # side by side
    p1, p2 = ax1.get_position(), ax2.get_position()
    assert p1.x1 < p2.x0 and p1.y0 == p2.y0 and p1.y1 == p2.y1


def test_path_profile_figure_in_the_book_style_has_a_fixed_layout():
    with matplotlib.rc_context():
        plots.use_style()  # as after reslab.setup(): constrained layout on by default
        fig = paths.path_profile_figure(6, 1.0)  # defaults: width 32, batch 4, He init, seed 0, share 0.9
        try:
            norms, dec = paths.path_profile(6, 1.0, width=32, batch=4, init="he", seed=0)
            _check_figure(fig, 6, norms, dec, 0.9)
            assert fig.axes[0].get_title() == "L = 6, alpha = 1: per-layer gradient"
            # every explorer frame shares one fixed layout (frames do not jump when a slider moves)
            assert fig.get_layout_engine() is None
            assert tuple(fig.get_size_inches()) == (7.2, 3.0)
            sp = fig.subplotpars
            assert (sp.left, sp.right, sp.bottom, sp.top, sp.wspace) == (0.09, 0.88, 0.16, 0.9, 0.45)
        finally:
            plt.close(fig)


def test_path_profile_figure_ignores_the_users_rcparams():
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        plt.rcParams["legend.loc"] = "upper right"
        fig = paths.path_profile_figure(5, 0.7, width=6, batch=3, init="default", seed=3, share=0.5)
        try:
            norms, dec = paths.path_profile(5, 0.7, width=6, batch=3, init="default", seed=3)
            _check_figure(fig, 5, norms, dec, 0.5)
            assert paths.dominant_lengths(dec.norms(), 0.5) == (0, 1)
            assert fig.axes[0].get_title() == "L = 5, alpha = 0.7: per-layer gradient"
        finally:
            plt.close(fig)


# --------------------------------------------------------------------------------------------
# enumerate_paths' depth limit, and train_deep's defaults and plumbing
# --------------------------------------------------------------------------------------------


def test_enumeration_limit_is_inclusive(monkeypatch):
    assert paths.MAX_ENUMERATION_DEPTH == 20
    monkeypatch.setattr(paths, "MAX_ENUMERATION_DEPTH", 3)  # the same rule at a depth cheap to enumerate
    x = _x(1, 2)
    assert paths.enumerate_paths(paths.residual_layer_stack(3, 2, seed=0), x).contributions.shape == (8, 1, 2)
    with pytest.raises(ValueError, match="<= 3"):
        paths.enumerate_paths(paths.residual_layer_stack(4, 2, seed=0), x)


@pytest.fixture(scope="module")
def digits():
    """A flat split shaped like the 8x8 digits (64 pixels in [0, 1], labels 0..9), synthetic and cheap."""
    from reslab.data import Digits

    gen = torch.Generator().manual_seed(0)
    return Digits(torch.rand(300, 64, generator=gen), torch.arange(300) % 10, torch.rand(10, 64, generator=gen), torch.arange(10))


@pytest.fixture
def small_fix_stack(monkeypatch):
    """Replace paths.fix_stack by one that records each request and builds 2 blocks only (the
    chapter's defaults ask for 1,000); the fixture's value is the list of requests."""
    built = []
    real = paths.fix_stack

    def fix_stack(name, depth, width, init="default", seed=None):
        built.append((name, depth, width, init, seed))
        return real(name, 2, width, init, seed=seed)

    monkeypatch.setattr(paths, "fix_stack", fix_stack)
    return built


def test_train_deep_defaults(small_fix_stack, digits):
    built = small_fix_stack
    result, model = paths.train_deep(data=digits)
    # the chapter's run: 1,000 blocks of width 32 scaled by 1/sqrt(L), PyTorch's init, seed 0
    assert built == [("branch scale 1/sqrt(L)", 1000, 32, "default", 0)]
    assert model.blocks.kind == "scaled" and model.stem.out_features == 32
    assert (model.stem.in_features, model.head.out_features) == (64, 10)  # 8x8 pixels, 10 digits
    assert result.losses.shape == (1, 9)  # 8 steps: the loss before each and after the last
    # full-batch training on the first 256 training digits: the last loss is measured on them
    with torch.no_grad():
        last = torch.nn.functional.cross_entropy(model(digits.x_train[:256]), digits.y_train[:256])
    assert math.isclose(float(result.losses[0, -1]), float(last), rel_tol=1e-5)


def test_train_deep_init_and_seed(digits):
    kw = dict(depth=2, width=8, init="he", steps=0, examples=16, data=digits, seed=3)
    _, model = paths.train_deep("pre-act, no fix", **kw)
    # He init zeroes the bias of every linear map: stem, blocks and head
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 + 2 * 2
    assert all(float(lin.bias.detach().abs().max()) == 0.0 for lin in linears)
    torch.manual_seed(99)  # the global generator plays no part
    _, again = paths.train_deep("pre-act, no fix", **kw)
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_train_deep_sgd_takes_plain_gradient_steps(digits):
    kw = dict(depth=2, width=4, examples=16, data=digits, seed=3, lr=0.1)
    _, start = paths.train_deep(steps=0, **kw)
    loss = torch.nn.functional.cross_entropy(start(digits.x_train[:16]), digits.y_train[:16])
    grads = torch.autograd.grad(loss, [p for p in start.parameters() if p.requires_grad])
    _, trained = paths.train_deep(steps=1, optimizer="sgd", **kw)
    moved = [p for p in trained.parameters() if p.requires_grad]
    before = [p for p in start.parameters() if p.requires_grad]
    assert len(moved) == len(grads)
    for p1, p0, g in zip(moved, before, grads):
        assert torch.allclose(p1.detach(), p0.detach() - 0.1 * g, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Checks before work; fix_stack's and compare_fixes' defaults and seeding
# --------------------------------------------------------------------------------------------


def test_bad_delta_is_reported_before_any_forward_pass():
    stack = paths.residual_layer_stack(2, 3, seed=0)
    calls = []
    stack[0].linear.register_forward_hook(lambda *args: calls.append(1))
    x, bad = _x(2, 3), [[0.0] * 3] * 2  # a list, not a tensor
    for fn in (paths.enumerate_paths, paths.path_length_decomposition, paths.input_gradient, paths.sample_path_norms):
        with pytest.raises(TypeError, match="delta"):
            fn(stack, x, bad)
    assert calls == []


def test_fix_stack_default_init_is_pytorchs():
    stack = paths.fix_stack("pre-act, no fix", 2, 4)
    assert all(float(lin.bias.detach().abs().max()) > 0.0 for b in stack for lin in b.linears)
    assert all(float(lin.weight.detach().abs().max()) <= 0.5 for b in stack for lin in b.linears)  # |w| <= 1/sqrt(4)


def test_compare_fixes_defaults(small_fix_stack):
    built = small_fix_stack
    out = paths.compare_fixes()
    # every fix, 1,000 blocks of width 128, PyTorch's init, seed 0
    assert list(out) == list(paths.FIXES)
    assert built == [(name, 1000, 128, "default", 0) for name in paths.FIXES]
    # one standard normal batch of 8 inputs drawn from seed 0 feeds every stack
    x = torch.randn(8, 128, generator=torch.Generator().manual_seed(0))
    assert all(math.isclose(v.activations[0], probes.batch_norm_of(x), rel_tol=1e-12) for v in out.values())


def test_compare_fixes_recipe_and_seeding():
    kw = dict(depth=2, width=4, batch=3, seed=3)
    out = paths.compare_fixes(["pre-act, no fix"], **kw)["pre-act, no fix"]
    stack = paths.fix_stack("pre-act, no fix", 2, 4, "default", seed=3)
    ref = probes.layer_norms(stack, torch.randn(3, 4, generator=torch.Generator().manual_seed(3)), seed=3)
    assert out.activations == ref.activations and out.gradients == ref.gradients
    torch.manual_seed(11)  # the global generator plays no part
    again = paths.compare_fixes(["pre-act, no fix"], **kw)["pre-act, no fix"]
    assert again.activations == out.activations and again.gradients == out.gradients


def test_path_profile_figure_full_share():
    fig = paths.path_profile_figure(3, 1.0, width=4, batch=2, share=1.0)
    try:
        (span,) = fig.axes[1].patches
        assert (span.get_x(), span.get_x() + span.get_width()) == (-0.5, 3.5)  # every length
        assert "100% of the sum: k = 0-3" in _texts(fig.axes[1].get_legend())
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# Lesions: block classifiers, accuracies, the study's defaults
# --------------------------------------------------------------------------------------------


def _biases(modules) -> list[float]:
    return [float(m.bias.detach().abs().max()) for m in modules if isinstance(m, torch.nn.Linear)]


def test_block_classifier_defaults_and_init():
    model = paths.block_classifier("plain", 2, 4)
    assert (model.stem.in_features, model.stem.out_features, model.head.out_features) == (64, 4, 10)  # 8x8 digits
    assert max(_biases(model.modules())) == 0.0  # default init "he": every bias zero
    model = paths.block_classifier("residual", 2, 4, init="default")
    assert min(_biases(model.modules())) > 0.0  # PyTorch's init draws stem, block and head biases


def test_plain_and_residual_classifiers_differ_only_by_the_skip():
    torch.manual_seed(5)
    plain = paths.block_classifier("plain", 3, 6, in_features=5, classes=3)
    torch.manual_seed(5)
    res = paths.block_classifier("residual", 3, 6, in_features=5, classes=3)
    sp, sr = plain.state_dict(), res.state_dict()
    assert sp.keys() == sr.keys() and all(torch.equal(sp[k], sr[k]) for k in sp)  # the same parameters
    assert sum(isinstance(m, torch.nn.Linear) for m in plain.blocks.modules()) == 3  # one linear map per block
    h = 3.0 * _x(4, 6, dtype=torch.float32)
    with torch.no_grad():
        for bp, br in zip(plain.blocks, res.blocks):
            assert torch.allclose(bp(h), torch.relu(bp.linears[0](h)))  # phi(W x + b)
            assert torch.allclose(br(h), h + bp(h))  # x + phi(W x + b)
            assert float(bp(h).abs().max()) > 0.0


def test_block_classifier_takes_the_width_of_the_stack_or_of_its_first_block():
    stack = nets.Stack([torch.nn.Linear(4, 4), torch.nn.Tanh()], "linear", 4)  # blocks without a width attribute
    model = paths.BlockClassifier(stack, 3, 2)
    assert (model.stem.in_features, model.stem.out_features, model.head.in_features, model.head.out_features) == (3, 4, 4, 2)
    model = paths.BlockClassifier(torch.nn.Sequential(blocks.ResidualLayer(5), blocks.ResidualLayer(5)), 3, 2)
    assert (model.stem.out_features, model.head.in_features) == (5, 5)
    # default init: PyTorch's, biases drawn and |w| <= 1/sqrt(fan-in)
    assert min(_biases([model.stem, model.head])) > 0.0
    assert float(model.stem.weight.detach().abs().max()) <= 1 / math.sqrt(3)


def _hand_classifier() -> paths.BlockClassifier:
    """Stem and head the identity on 2 features; the one residual layer adds relu(x_0 / 2) to x_1."""
    model = paths.block_classifier("residual", 1, 2, in_features=2, classes=2)
    with torch.no_grad():
        for lin in (model.stem, model.head):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
        model.blocks[0].linear.weight.copy_(torch.tensor([[0.0, 0.0], [0.5, 0.0]]))
        model.blocks[0].linear.bias.zero_()
    return model


def test_accuracy_and_lesions_on_a_hand_checked_classifier():
    model = _hand_classifier()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.5], [0.0, 3.0]])
    # logits with the block: (1, .5), (0, 1), (2, 2.5), (0, 3) -> classes 0, 1, 1, 1
    # without it:            (1, 0),  (0, 1), (2, 1.5), (0, 3) -> classes 0, 1, 0, 1
    y = torch.tensor([0, 1, 1, 0])
    assert paths.accuracy(model, x, y) == 0.75
    assert paths.accuracy(model, x, y, skip=(0,)) == 0.5
    acc = paths.lesion_accuracies(model, x[[0, 2, 3]], torch.tensor([0, 1, 1]))
    assert acc.dtype == torch.float64 and acc.tolist() == [2 / 3]  # without block 0: 2 of 3 right
    with pytest.raises(TypeError, match="skip"):
        paths.accuracy(model, x, y, skip=0)


def _split(features: int, classes: int) -> "Digits":
    from reslab.data import Digits

    gen = torch.Generator().manual_seed(1)
    return Digits(torch.rand(40, features, generator=gen), torch.arange(40) % classes, torch.rand(7, features, generator=gen), torch.arange(7) % classes)


def _fake_train_seeds(calls):
    """Stands in for reslab.train.train_seeds: builds each seed's model as it does, records the budget, trains nothing."""
    from reslab.train import TrainResult

    def fake(build, seeds, inputs, targets, **kw):
        models = []
        for s in seeds:
            torch.manual_seed(s)
            models.append(build(s))
        calls.append({"seeds": tuple(seeds), "models": models, **kw})
        return TrainResult(torch.zeros(len(seeds), kw["steps"] + 1), models)

    return fake


def test_lesion_study_defaults_and_result(monkeypatch):
    import reslab.train

    calls = []
    monkeypatch.setattr(reslab.train, "train_seeds", _fake_train_seeds(calls))
    data = _split(16, 4)  # any flat split: 16 features, 4 classes
    study = paths.lesion_study(data=data)
    assert list(study) == ["plain", "residual"]
    for call, kind in zip(calls, study):
        # the chapter's budget: 300 Adam steps at lr 3e-3 on mini-batches of 128, seeds 0, 1, 2
        assert (call["steps"], call["lr"], call["batch_size"], call["loss"]) == (300, 3e-3, 128, "cross_entropy")
        assert call["seeds"] == (0, 1, 2)
        model = call["models"][0]
        assert len(model.blocks) == 16 and model.blocks.width == 32
        assert (model.stem.in_features, model.head.out_features) == (16, 4)
        # LESION_INITS: He for plain layers (zero biases), PyTorch's default for residual ones
        if kind == "plain":
            assert max(_biases(model.blocks.modules())) == 0.0
        else:
            assert min(_biases(model.blocks.modules())) > 0.0
        s = study[kind]
        assert s.kind == kind and s.losses.shape == (3, 301)
        assert s.baseline.dtype == torch.float64
        assert s.baseline.tolist() == [paths.accuracy(m, data.x_test, data.y_test) for m in call["models"]]
        assert s.deleted.shape == (3, 16)
        assert torch.equal(s.deleted, torch.stack([paths.lesion_accuracies(m, data.x_test, data.y_test) for m in call["models"]]))


def test_lesion_study_partial_inits_and_full_batches(monkeypatch):
    import reslab.train

    calls = []
    monkeypatch.setattr(reslab.train, "train_seeds", _fake_train_seeds(calls))
    # a kind missing from `inits` falls back to He; batch_size=None means full-batch steps
    study = paths.lesion_study(2, 4, seeds=(0,), steps=1, batch_size=None, data=_split(5, 3), inits={"plain": "default"})
    assert [c["batch_size"] for c in calls] == [None, None]
    plain, res = (c["models"][0] for c in calls)
    assert min(_biases(plain.modules())) > 0.0
    assert max(_biases(res.modules())) == 0.0
    assert study["residual"].deleted.shape == (1, 2)


# --------------------------------------------------------------------------------------------
# Inputs the path functions accept: one block, one example, and residual_layer_stack's options
# --------------------------------------------------------------------------------------------


def test_one_example_and_one_block_are_accepted():
    stack = paths.residual_layer_stack(3, 4, seed=2)
    x, delta = _x(1, 4), _x(1, 4, seed=7)
    batch = paths.enumerate_paths(stack, x, delta=delta)
    # x of shape (d,) and delta of shape (d,) count as a batch of one
    single = paths.enumerate_paths(stack, x[0], delta=delta[0])
    assert single.contributions.shape == (8, 1, 4)
    assert torch.equal(single.contributions, batch.contributions)
    with pytest.raises(ValueError, match="x"):
        paths.enumerate_paths(stack, x[None])  # (1, 1, d): neither (B, d) nor (d,)
    # a single ResidualLayer is a stack of one block
    one = paths.path_length_decomposition(stack[0], x, delta=delta)
    ref = paths.path_length_decomposition(torch.nn.Sequential(stack[0]), x, delta=delta)
    assert one.depth == 1 and torch.equal(one.coefficients, ref.coefficients)


def test_residual_layer_stack_options():
    torch.manual_seed(4)
    plain = nets.mlp_stack("residual_layer", 2, 3)
    default = paths.residual_layer_stack(2, 3, seed=4)  # alpha = 1: PyTorch's layers unscaled, in float64
    sd, sp = default.state_dict(), plain.state_dict()
    assert all(sd[k].dtype == torch.float64 and torch.equal(sd[k], sp[k].double()) for k in sp)
    he = paths.residual_layer_stack(2, 8, init="he", activation="tanh", seed=4)
    assert all(float(b.linear.bias.detach().abs().max()) == 0.0 for b in he)  # He init zeroes the biases
    x = _x(3, 8)
    with torch.no_grad():
        assert torch.allclose(he[0](x), x + torch.tanh(he[0].linear(x)), atol=1e-14)  # the tanh nonlinearity
