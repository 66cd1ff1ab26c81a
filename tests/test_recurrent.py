"""Tests of reslab.recurrent: the cells against PyTorch's, exact carries, Jacobians, probes, checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from reslab import recurrent as R

TORCH_CELLS = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}


def _copied(kind: str, d: int, h: int, seed: int):
    torch.manual_seed(seed)
    ref = TORCH_CELLS[kind](d, h)
    ours = R.make_cell(kind, d, h)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cells_match_pytorch_with_copied_weights(kind, seed):
    d, h, b = 7, 13, 6
    ref, ours = _copied(kind, d, h, seed)
    gen = torch.Generator().manual_seed(100 + seed)
    x = 2 * torch.randn(b, d, generator=gen)
    h0, c0 = torch.randn(b, h, generator=gen), torch.randn(b, h, generator=gen)
    with torch.no_grad():
        if kind == "lstm":
            (rh, rc), (oh, oc) = ref(x, (h0, c0)), ours(x, (h0, c0))
            err = max(float((rh - oh).abs().max()), float((rc - oc).abs().max()))
        else:
            err = float((ref(x, h0) - ours(x, h0)).abs().max())
    assert x.dtype == torch.float32
    assert err < 1e-6


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unroll_matches_pytorch_layer_over_a_sequence(kind):
    torch.manual_seed(3)
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](5, 9, batch_first=True)
    cell = R.make_cell(kind, 5, 9)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(layer, f"{name}_l0"))
    xs = torch.randn(4, 30, 5)
    with torch.no_grad():
        ref, _ = layer(xs)
        ours, _ = R.unroll(cell, xs)
    assert ours.shape == (4, 30, 9)
    assert float((ref - ours).abs().max()) < 1e-5


def test_lstm_without_forget_gate_is_the_1997_cell():
    torch.manual_seed(0)
    cell = R.LSTMCell(4, 6, forget_gate=False)
    assert cell.weight_ih.shape == (18, 4)  # three gate blocks: i, g, o
    x, h, c = torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 6)
    g = cell.gates(x, (h, c))
    assert torch.equal(g["f"], torch.ones(3, 6))
    _, c_new = cell(x, (h, c))
    assert torch.allclose(c_new, c + g["i"] * g["g"], atol=1e-7)


@pytest.mark.parametrize("forget_gate", [True, False])
def test_lstm_with_f_one_and_i_zero_carries_the_cell_state_exactly(forget_gate):
    torch.manual_seed(1)
    cell = R.hold_state_(R.LSTMCell(3, 8, forget_gate=forget_gate))
    g = cell.gates(torch.randn(2, 3), (torch.randn(2, 8), torch.randn(2, 8)))
    assert torch.equal(g["f"], torch.ones(2, 8)) and torch.equal(g["i"], torch.zeros(2, 8))
    xs = 5 * torch.randn(4, 200, 3)
    state0 = (torch.randn(4, 8), torch.randn(4, 8))
    _, (h, c) = R.unroll(cell, xs, state0)
    assert torch.equal(c, state0[1])  # bit for bit, after 200 steps of large inputs
    assert not torch.equal(h, state0[0])  # the output h is not what is carried


@pytest.mark.parametrize("convention", ["cho", "chung"])
def test_gru_with_z_one_carries_the_state_exactly(convention):
    torch.manual_seed(2)
    cell = R.hold_state_(R.GRUCell(3, 8, convention=convention))
    xs = 5 * torch.randn(4, 200, 3)
    h0 = torch.randn(4, 8)
    _, h = R.unroll(cell, xs, h0)
    assert torch.equal(h, h0)


def test_gru_chung_convention_is_cho_with_z_negated():
    torch.manual_seed(4)
    cho = R.GRUCell(5, 7)
    chung = R.GRUCell(5, 7, convention="chung")
    chung.load_state_dict(cho.state_dict())
    with torch.no_grad():
        s = slice(7, 14)  # the z rows
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(chung, name)[s] *= -1
    x, h = torch.randn(3, 5), torch.randn(3, 7)
    same_weights = R.GRUCell(5, 7, convention="chung")
    same_weights.load_state_dict(cho.state_dict())
    with torch.no_grad():
        assert float((cho(x, h) - chung(x, h)).abs().max()) < 1e-6
        assert float((cho(x, h) - same_weights(x, h)).abs().max()) > 1e-3  # the swap is a different cell


@pytest.mark.parametrize(
    "make",
    [
        lambda: R.RNNCell(4, 6),
        lambda: R.LSTMCell(4, 6),
        lambda: R.LSTMCell(4, 6, forget_gate=False),
        lambda: R.GRUCell(4, 6),
        lambda: R.GRUCell(4, 6, convention="chung"),
    ],
)
def test_closed_form_step_jacobian_matches_autograd(make):
    torch.manual_seed(5)
    cell = make().double()
    x = torch.randn(3, 4, dtype=torch.float64)
    s = torch.randn(3, cell.state_size, dtype=torch.float64)

    def step(xx, ss):
        return cell.pack(cell(xx[None], cell.unpack(ss[None])))[0]

    auto = torch.vmap(torch.func.jacrev(step, argnums=1))(x, s)
    with torch.no_grad():
        closed = cell.step_jacobian(x, cell.unpack(s))
    assert closed.shape == (3, cell.state_size, cell.state_size)
    assert float((auto.detach() - closed).abs().max()) < 1e-12


def test_lstm_direct_path_block_is_diag_f_and_rnn_is_diag_times_w():
    torch.manual_seed(6)
    lstm = R.LSTMCell(3, 5).double()
    x, h, c = (torch.randn(2, n, dtype=torch.float64) for n in (3, 5, 5))
    jac = lstm.step_jacobian(x, (h, c))
    f = lstm.gates(x, (h, c))["f"]
    assert torch.equal(jac[:, 5:, 5:], torch.diag_embed(f))  # per coordinate: no mixing
    rnn = R.RNNCell(3, 5).double()
    h1 = rnn(x, h)
    assert torch.allclose(rnn.step_jacobian(x, h), torch.diag_embed(1 - h1**2) @ rnn.weight_hh)


def test_gradient_through_time_matches_brute_force_autograd():
    torch.manual_seed(7)
    cell = R.GRUCell(2, 4).double()
    xs = torch.randn(1, 6, 2, dtype=torch.float64)

    def run(h0):
        return R.unroll(cell, xs, h0[None])[1][0]

    jac = torch.autograd.functional.jacobian(run, torch.zeros(4, dtype=torch.float64))
    curve = R.gradient_through_time(cell, xs)
    assert curve.shape == (7,) and curve[0] == 1.0
    assert math.isclose(float(curve[-1]), float(torch.linalg.matrix_norm(jac, ord=2)), rel_tol=1e-9)


def test_spectral_radius_sets_vanishing_and_growth():
    rnn = R.set_spectral_radius_(R.RNNCell(4, 32), 0.5)
    assert math.isclose(float(torch.linalg.eigvals(rnn.weight_hh.detach().double()).abs().max()), 0.5, rel_tol=1e-5)
    xs = torch.randn(4, 60, 4, generator=torch.Generator().manual_seed(0))
    small = R.gradient_through_time(rnn, xs)
    assert float(small[60]) < 1e-10
    big = R.gradient_through_time(R.set_spectral_radius_(R.RNNCell(4, 32), 2.0), xs)
    assert float(big.max()) > 10.0


def test_carry_retention_is_one_for_the_1997_cell_and_sigma_b_power_t_for_a_fixed_gate():
    xs = torch.randn(3, 40, 2)
    assert torch.equal(R.carry_retention(R.LSTMCell(2, 4, forget_gate=False), xs), torch.ones(41, dtype=torch.float64))
    cell = R.LSTMCell(2, 4, forget_bias=1.0)
    with torch.no_grad():
        cell.weight_ih[4:8] = 0.0
        cell.weight_hh[4:8] = 0.0
    ret = R.carry_retention(cell, xs)
    expected = torch.sigmoid(torch.tensor(1.0, dtype=torch.float64)) ** torch.arange(41)
    assert torch.allclose(ret, expected, rtol=1e-6)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_ensemble_runs_each_member_as_alone(kind):
    torch.manual_seed(8)
    cells = [R.make_cell(kind, 3, 5) for _ in range(4)]
    ens = R.stack_cells(cells)
    assert ens.members == 4 and ens.weight_hh.shape[0] == 4
    xs = torch.randn(2, 25, 3)
    with torch.no_grad():
        hs, _ = R.unroll(ens, xs)
        assert hs.shape == (4, 2, 25, 5)
        for m, cell in enumerate(cells):
            assert float((R.unroll(cell, xs)[0] - hs[m]).abs().max()) < 1e-6


def test_bad_shapes_and_arguments_raise():
    lstm, gru = R.LSTMCell(3, 4), R.GRUCell(3, 4)
    with pytest.raises(ValueError, match="x must have last dimension 3"):
        lstm(torch.randn(2, 5))
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        gru(torch.randn(2, 3, 3))
    with pytest.raises(TypeError, match="pair"):
        lstm(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(TypeError, match="tuple"):
        gru(torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4)))
    with pytest.raises(ValueError, match="last dimension 4"):
        gru(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="batch size"):
        gru(torch.randn(2, 3), torch.randn(3, 4))
    with pytest.raises(ValueError, match="xs must have 3 dimensions"):
        R.unroll(gru, torch.randn(5, 3))
    with pytest.raises(TypeError, match="floating-point"):
        gru(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="hidden_size must be an integer >= 1"):
        R.RNNCell(3, 0)
    with pytest.raises(ValueError, match="carry_bias is not accepted"):
        R.make_cell("rnn", 3, 4, carry_bias=1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        R.make_cell("transformer", 3, 4)
    with pytest.raises(ValueError, match="forget_bias needs forget_gate=True"):
        R.LSTMCell(3, 4, forget_gate=False, forget_bias=1.0)
    with pytest.raises(ValueError, match="convention must be one of"):
        R.GRUCell(3, 4, convention="keras")
    with pytest.raises(ValueError, match="differs"):
        R.stack_cells([R.GRUCell(3, 4), R.GRUCell(3, 5)])
    with pytest.raises(TypeError, match="unroll"):
        R.stack_cells([gru, gru])(torch.randn(2, 3))
    with pytest.raises(TypeError, match="no gate"):
        R.hold_state_(R.RNNCell(3, 4))
    with pytest.raises(ValueError, match="part='cell' needs an LSTMCell"):
        R.gradient_through_time(gru, torch.randn(1, 3, 3), part="cell")
    with pytest.raises(ValueError, match="radius must be a finite number > 0"):
        R.set_spectral_radius_(R.RNNCell(3, 4), -1.0)


@pytest.mark.parametrize("with_state", [True, False])
def test_carry_retention_is_the_running_product_of_the_direct_path_jacobians(with_state):
    # LSTM: the c -> c block of each step Jacobian is diag(f_t) along the actual trajectory, so
    # retention(t) = mean over batch and coordinates of prod_{s <= t} diag(J_s)[c, c]
    torch.manual_seed(10)
    cell = R.LSTMCell(3, 4).double()
    xs = torch.randn(2, 6, 3, dtype=torch.float64)
    state = (2 * torch.randn(2, 4, dtype=torch.float64), 2 * torch.randn(2, 4, dtype=torch.float64)) if with_state else None
    jacs = R.step_jacobians(cell, xs, state)
    direct = torch.diagonal(jacs[:, :, 4:, 4:], dim1=-2, dim2=-1)  # (B, T, H): f_t
    expected = torch.cat([torch.ones(1, dtype=torch.float64), direct.cumprod(dim=1).mean(dim=(0, 2))])
    ret = R.carry_retention(cell, xs, state)
    assert ret.dtype == torch.float64 and ret.shape == (7,)
    assert torch.allclose(ret, expected, rtol=1e-12, atol=0)


def test_lstm_carry_gate_is_the_diagonal_of_the_direct_path_jacobian():
    torch.manual_seed(11)
    for forget_gate in (True, False):
        cell = R.LSTMCell(3, 5, forget_gate=forget_gate).double()
        x, h, c = (2 * torch.randn(2, n, dtype=torch.float64) for n in (3, 5, 5))
        carry = cell.carry_gate(x, (h, c))
        jac = cell.step_jacobian(x, (h, c))
        assert torch.equal(carry, torch.diagonal(jac[:, 5:, 5:], dim1=-2, dim2=-1))
        assert torch.equal(jac[:, 5:, 5:], torch.diag_embed(carry))
    assert torch.equal(carry, torch.ones(2, 5, dtype=torch.float64))  # the 1997 cell


@pytest.mark.parametrize("convention", ["cho", "chung"])
def test_gru_carry_gate_is_the_weight_of_the_old_state(convention):
    # h_t = carry * h_{t-1} + (1 - carry) * n_t in both conventions
    torch.manual_seed(12)
    cell = R.GRUCell(3, 5, convention=convention).double()
    x, h = 2 * torch.randn(4, 3, dtype=torch.float64), 2 * torch.randn(4, 5, dtype=torch.float64)
    carry = cell.carry_gate(x, h)
    g = cell.gates(x, h)
    assert torch.allclose(cell(x, h), carry * h + (1 - carry) * g["n"], rtol=0, atol=1e-14)
    assert torch.allclose(carry, g["z"] if convention == "cho" else 1 - g["z"], rtol=0, atol=1e-15)
    assert bool(((carry > 0) & (carry < 1)).all())


def _rows_of(cell, gates):
    h = cell.hidden_size
    return [r for k in gates for r in range(k * h, (k + 1) * h)]


@pytest.mark.parametrize(
    "make, pinned",
    [
        (lambda: R.LSTMCell(3, 4), {0: -R.SATURATE, 1: R.SATURATE}),  # i and f
        (lambda: R.LSTMCell(3, 4, forget_gate=False), {0: -R.SATURATE}),  # i only: (i, g, o)
        (lambda: R.GRUCell(3, 4), {1: R.SATURATE}),  # z = 1
        (lambda: R.GRUCell(3, 4, convention="chung"), {1: -R.SATURATE}),  # z = 0
    ],
)
def test_hold_state_pins_only_its_gates_with_zero_weights_and_bias_plus_minus_100(make, pinned):
    torch.manual_seed(13)
    cell = make()
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    assert R.hold_state_(cell) is cell
    rows = _rows_of(cell, pinned)
    others = [r for r in range(cell.weight_ih.shape[0]) if r not in rows]
    for name, value in cell.state_dict().items():
        assert torch.equal(value[others], before[name][others]), f"{name}: a gate that is not pinned changed"
    for k, value in pinned.items():
        s = cell._gate_slice(k)
        assert torch.equal(cell.weight_ih[s], torch.zeros(4, 3)) and torch.equal(cell.weight_hh[s], torch.zeros(4, 4))
        assert torch.equal(cell.bias_ih[s] + cell.bias_hh[s], torch.full((4,), value))


@pytest.mark.parametrize("forget_gate", [True, False])
def test_held_lstm_gates_ignore_huge_inputs_and_states(forget_gate):
    torch.manual_seed(14)
    cell = R.hold_state_(R.LSTMCell(3, 8, forget_gate=forget_gate))
    x, h, c = 1e3 * torch.randn(2, 3), 1e3 * torch.randn(2, 8), torch.randn(2, 8)
    g = cell.gates(x, (h, c))
    assert torch.equal(g["i"], torch.zeros(2, 8)) and torch.equal(g["f"], torch.ones(2, 8))
    assert torch.equal(cell(x, (h, c))[1], c)  # whatever the input and the state
    # in float64 the pins are not exact 0/1, but the pre-activations are exactly -100 and +100
    g64 = cell.double().gates(x.double(), (h.double(), c.double()))
    sig = torch.sigmoid(torch.tensor([-R.SATURATE, R.SATURATE], dtype=torch.float64))
    assert torch.equal(g64["i"], sig[0].expand(2, 8)) and 0 < float(sig[0]) < 1e-40
    assert torch.equal(g64["f"], sig[1].expand(2, 8))


def test_held_gru_ignores_huge_inputs_and_states():
    torch.manual_seed(15)
    for convention in ("cho", "chung"):
        cell = R.hold_state_(R.GRUCell(3, 8, convention=convention))
        x, h = 1e3 * torch.randn(2, 3), 1e3 * torch.randn(2, 8)
        assert torch.equal(cell(x, h), h)
        assert torch.equal(cell.carry_gate(x, h), torch.ones(2, 8))


@pytest.mark.parametrize("make", [lambda: R.LSTMCell(2, 3), lambda: R.GRUCell(2, 3), lambda: R.GRUCell(2, 3, convention="chung")])
def test_set_carry_bias_sets_the_carry_gate_at_zero_input_and_state(make):
    cell = make()
    assert R.set_carry_bias_(cell, 2.0) is cell
    x = torch.zeros(4, 2)
    state = cell.init_state(4)
    assert torch.allclose(cell.carry_gate(x, state), torch.sigmoid(torch.tensor(2.0)).expand(4, 3), rtol=0, atol=1e-7)
    assert torch.equal(cell.bias_hh[cell._gate_slice(1)], torch.zeros(3))


def test_set_carry_bias_rejects_rnn_and_non_cells():
    with pytest.raises(TypeError, match="no gate"):
        R.set_carry_bias_(R.RNNCell(2, 3), 1.0)
    with pytest.raises(TypeError, match="cell must be"):
        R.set_carry_bias_(torch.nn.GRUCell(2, 3), 1.0)


def test_spectral_radius_draw_is_seeded_and_exact_in_float64():
    torch.manual_seed(16)
    default = R.set_spectral_radius_(R.RNNCell(2, 6), 0.9)
    torch.manual_seed(17)  # the draw must not depend on the global generator
    seed0 = R.set_spectral_radius_(R.RNNCell(2, 6), 0.9, seed=0)
    seed1 = R.set_spectral_radius_(R.RNNCell(2, 6), 0.9, seed=1)
    assert torch.equal(default.weight_hh, seed0.weight_hh)  # the default seed is 0
    assert not torch.equal(seed0.weight_hh, seed1.weight_hh)
    assert torch.equal(default.bias_ih, torch.zeros(6)) and torch.equal(default.bias_hh, torch.zeros(6))
    cell64 = R.set_spectral_radius_(R.RNNCell(2, 6).double(), 0.9)
    assert cell64.weight_hh.dtype == torch.float64
    assert math.isclose(float(torch.linalg.eigvals(cell64.weight_hh.detach()).abs().max()), 0.9, rel_tol=1e-13)
    assert torch.equal(cell64.weight_hh.float(), seed0.weight_hh)  # the same draw, rounded once


def test_spectral_radius_needs_a_single_rnn_cell():
    with pytest.raises(TypeError, match="single"):
        R.set_spectral_radius_(R.LSTMCell(3, 4), 0.5)
    with pytest.raises(TypeError, match="single"):
        R.set_spectral_radius_(R.stack_cells([R.RNNCell(3, 4), R.RNNCell(3, 4)]), 0.5)


@pytest.mark.parametrize("lead", [(), (5,), (2, 5)])
def test_lstm_pack_puts_h_then_c_on_the_last_axis(lead):
    cell = R.LSTMCell(2, 3)
    h, c = torch.randn(*lead, 3), torch.randn(*lead, 3)
    flat = cell.pack((h, c))
    assert flat.shape == (*lead, 6)
    assert torch.equal(flat[..., :3], h) and torch.equal(flat[..., 3:], c)
    h2, c2 = cell.unpack(flat)
    assert torch.equal(h2, h) and torch.equal(c2, c)


def test_ensemble_pack_keeps_members_and_batch():
    cells = [R.LSTMCell(2, 3) for _ in range(2)]
    _, state = R.unroll(R.stack_cells(cells), torch.randn(4, 5, 2))
    assert cells[0].pack(state).shape == (2, 4, 6)


def test_repr_shows_sizes_members_and_options():
    assert repr(R.RNNCell(3, 4)) == "RNNCell(input_size=3, hidden_size=4)"
    assert repr(R.LSTMCell(3, 4, forget_gate=False)) == "LSTMCell(input_size=3, hidden_size=4, forget_gate=False)"
    assert repr(R.GRUCell(3, 4, convention="chung")) == "GRUCell(input_size=3, hidden_size=4, convention='chung')"
    ens = R.stack_cells([R.RNNCell(3, 4), R.RNNCell(3, 4)])
    assert repr(ens) == "RNNCell(input_size=3, hidden_size=4, members=2)"
    assert "members=2" in repr(R.stack_cells([R.LSTMCell(3, 4)] * 2))


def _brute_state_jacobian(cell, xs, state):
    """d s_T / d s_0 of the packed state by autograd through unroll, in float64."""
    c64 = cell.double()
    xs64 = xs.double()

    def run(s0):
        return c64.pack(R.unroll(c64, xs64, c64.unpack(s0[None]))[1])[0]

    return torch.autograd.functional.jacobian(run, cell.pack(state)[0].double())


def test_gradient_through_time_starts_from_the_given_state():
    torch.manual_seed(17)
    gru = R.GRUCell(2, 4)
    xs = torch.randn(1, 5, 2)
    h0 = 2 * torch.randn(1, 4)
    curve = R.gradient_through_time(gru, xs, h0)
    assert gru.weight_hh.dtype == torch.float32  # the original is untouched
    jac = _brute_state_jacobian(copy.deepcopy(gru), xs, h0)
    assert math.isclose(float(curve[-1]), float(torch.linalg.matrix_norm(jac, ord=2)), rel_tol=1e-9)
    assert not math.isclose(float(curve[-1]), float(R.gradient_through_time(gru, xs)[-1]), rel_tol=1e-3)


def test_gradient_through_time_parts_of_the_lstm_state_match_autograd():
    torch.manual_seed(18)
    lstm = R.LSTMCell(2, 3)
    xs = torch.randn(1, 5, 2)
    state = (torch.randn(1, 3), 2 * torch.randn(1, 3))
    jac = _brute_state_jacobian(copy.deepcopy(lstm), xs, state)
    blocks = {"state": jac, "hidden": jac[:3, :3], "cell": jac[3:, 3:]}
    norms = {}
    for part, block in blocks.items():
        curve = R.gradient_through_time(lstm, xs, state, part=part)
        assert curve.shape == (6,) and curve[0] == 1.0
        norms[part] = float(curve[-1])
        assert math.isclose(norms[part], float(torch.linalg.matrix_norm(block, ord=2)), rel_tol=1e-9), part
    assert len({round(v, 6) for v in norms.values()}) == 3  # three different quantities


def test_gradient_through_time_of_an_exactly_zero_product_is_zero():
    cell = R.RNNCell(2, 3)
    with torch.no_grad():
        cell.weight_hh.zero_()  # J_t = diag(1 - h_t^2) W_hh = 0
    curve = R.gradient_through_time(cell, torch.randn(2, 3, 2))
    assert torch.equal(curve, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))


def test_gradient_through_time_is_a_geometric_mean_that_survives_float64_underflow():
    # one unit, W_hh = 2: a zero input keeps h = 0 (J = 2 per step, 1e30 after 100 steps); an
    # input of -3 saturates h near -1 (J ~ 4e-4 per step, ~1e-342: below float64's range).
    # Their geometric mean (~1e-156) is still reported, as the product of the step Jacobians says.
    cell = R.RNNCell(1, 1)
    with torch.no_grad():
        cell.weight_ih.fill_(1.0)
        cell.weight_hh.fill_(2.0)
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    xs = torch.zeros(2, 100, 1)
    xs[1] = -3.0
    curve = R.gradient_through_time(cell, xs)
    logs = torch.log(R.step_jacobians(copy.deepcopy(cell).double(), xs.double())[:, :, 0, 0].abs()).cumsum(dim=1)
    assert float(logs[1, -1]) < -330 * math.log(10.0) and math.isclose(float(logs[0, -1]), 100 * math.log(2.0), rel_tol=1e-12)
    expected = torch.exp(logs.mean(dim=0))
    assert torch.allclose(curve[1:], expected, rtol=1e-9, atol=0)
    assert 0 < float(curve[-1]) < 1e-100


@pytest.mark.parametrize("make", [lambda: R.RNNCell(2, 3), lambda: R.LSTMCell(2, 3), lambda: R.GRUCell(2, 3)])
def test_init_state_is_zeros_of_the_requested_dtype(make):
    cell = make()
    state = cell.init_state(4, torch.float64)
    parts = state if isinstance(state, tuple) else (state,)
    assert len(parts) == (2 if isinstance(cell, R.LSTMCell) else 1)
    for part in parts:
        assert part.dtype == torch.float64 and torch.equal(part, torch.zeros(4, 3, dtype=torch.float64))
    default = cell.init_state(4)
    assert (default[0] if isinstance(default, tuple) else default).dtype == torch.float32


@pytest.mark.parametrize("make", [lambda: R.LSTMCell(2, 3), lambda: R.GRUCell(2, 3), lambda: R.GRUCell(2, 3, convention="chung")])
def test_set_carry_bias_leaves_the_other_gates_alone(make):
    torch.manual_seed(19)
    cell = make()
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    R.set_carry_bias_(cell, -1.5)
    rows = _rows_of(cell, [1])
    others = [r for r in range(cell.bias_ih.shape[0]) if r not in rows]
    for name, value in cell.state_dict().items():
        assert torch.equal(value[others], before[name][others]), name
    assert torch.equal(cell.weight_ih, before["weight_ih"]) and torch.equal(cell.weight_hh, before["weight_hh"])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_a_step_without_state_starts_from_zeros(kind):
    torch.manual_seed(20)
    cell = R.make_cell(kind, 2, 3)
    x = torch.randn(5, 2)  # batch 5 != input width 2
    zeros = torch.zeros(5, 3)
    state = (zeros, zeros) if kind == "lstm" else zeros
    with torch.no_grad():
        default, explicit = cell(x), cell(x, state)
    for a, b in zip(*((default, explicit) if kind == "lstm" else ((default,), (explicit,)))):
        assert a.shape == (5, 3) and torch.equal(a, b)


def test_state_errors_name_the_part_that_is_wrong():
    lstm, gru = R.LSTMCell(3, 4), R.GRUCell(3, 4)
    x, ok = torch.randn(2, 3), torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"^state\[0\] \(h\) must have last dimension 4"):
        lstm(x, (torch.randn(2, 5), ok))
    with pytest.raises(ValueError, match=r"^state\[1\] \(c\) must have last dimension 4"):
        lstm(x, (ok, torch.randn(2, 5)))
    with pytest.raises(ValueError, match=r"^state\[1\] \(c\) must have the batch size of x"):
        lstm(x, (ok, torch.randn(3, 4)))
    with pytest.raises(ValueError, match=r"^state\[1\] \(c\) must have 2 dimensions"):
        lstm(x, (ok, torch.randn(1, 2, 4)))
    with pytest.raises(ValueError, match="^state must have last dimension 4"):
        gru(x, torch.randn(2, 5))
    with pytest.raises(ValueError, match="^state must have 2 dimensions"):
        gru(torch.randn(4, 3), torch.randn(4))


def test_gradient_through_time_of_one_step_from_a_given_state_is_the_step_jacobian_norm():
    torch.manual_seed(21)
    lstm = R.LSTMCell(2, 3).double()
    xs = torch.randn(2, 1, 2, dtype=torch.float64)  # a single step
    state = (torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64))
    curve = R.gradient_through_time(lstm, xs, state)
    with torch.no_grad():
        norms = torch.linalg.matrix_norm(lstm.step_jacobian(xs[:, 0], state), ord=2)
    assert curve.shape == (2,) and curve[0] == 1.0
    assert math.isclose(float(curve[1]), float(norms.log().mean().exp()), rel_tol=1e-12)


def test_sequences_need_a_batch_and_a_step_and_one_step_is_enough():
    torch.manual_seed(22)
    gru = R.GRUCell(2, 3)
    for shape in ((0, 4, 2), (3, 0, 2)):
        with pytest.raises(ValueError, match="at least one sequence of at least one step"):
            R.unroll(gru, torch.randn(*shape))
    xs, h0 = torch.randn(3, 1, 2), torch.randn(3, 3)
    with torch.no_grad():
        hs, h = R.unroll(gru, xs, h0)
        assert hs.shape == (3, 1, 3) and torch.equal(h, gru(xs[:, 0], h0)) and torch.equal(hs[:, 0], h)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_make_cell_carry_bias_sets_the_carry_gate(kind):
    cell = R.make_cell(kind, 2, 3, carry_bias=2.0)
    carry = cell.carry_gate(torch.zeros(4, 2), cell.init_state(4))
    assert torch.allclose(carry, torch.sigmoid(torch.tensor(2.0)).expand(4, 3), rtol=0, atol=1e-7)


def test_initial_weights_are_uniform_within_one_over_sqrt_hidden():
    torch.manual_seed(23)
    cell = R.LSTMCell(8, 16)
    bound = 1 / math.sqrt(16)
    for name, p in cell.named_parameters():
        assert float(p.detach().abs().max()) <= bound, name
    assert float(cell.weight_ih.detach().abs().max()) > 0.9 * bound  # 512 draws fill the range


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_final_states_equal_the_full_unroll_read_at_each_length(kind):
    """Members leave the batch once read: the same states and gradients, up to float rounding."""
    torch.manual_seed(5)
    cells = [R.make_cell(kind, 3, 5) for _ in range(5)]
    lengths = [2, 2, 7, 9, 9]
    xs = torch.randn(4, 11, 3)
    full_ens, short_ens = R.stack_cells(cells), R.stack_cells(cells)
    hs, _ = R.unroll(full_ens, xs)
    ref = hs[torch.arange(5), :, torch.tensor(lengths) - 1]
    out = R.final_states(short_ens, xs, lengths)
    assert out.shape == (5, 4, 5)
    assert torch.allclose(out, ref, rtol=1e-6, atol=1e-7)
    g = torch.randn_like(out)
    ref.backward(g)
    out.backward(g)
    for a, b in zip(full_ens.parameters(), short_ens.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    # a member past its length gets no gradient from later inputs: moving them changes nothing
    xs2 = xs.clone()
    xs2[:, 2:] += 1.0
    with torch.no_grad():
        assert torch.allclose(R.final_states(short_ens, xs2, lengths)[:2], out[:2].detach(), rtol=1e-6, atol=1e-7)
        assert not torch.allclose(R.final_states(short_ens, xs2, lengths)[2:], out[2:].detach(), atol=1e-3)


def test_final_states_rejects_bad_lengths():
    ens = R.stack_cells([R.GRUCell(3, 4), R.GRUCell(3, 4)])
    xs = torch.randn(2, 6, 3)
    with pytest.raises(TypeError, match="ensemble"):
        R.final_states(R.GRUCell(3, 4), xs, [3])
    with pytest.raises(ValueError, match="one length per member"):
        R.final_states(ens, xs, [3])
    with pytest.raises(ValueError, match="must not decrease"):
        R.final_states(ens, xs, [5, 3])
    with pytest.raises(ValueError, match="at most the sequence length 6"):
        R.final_states(ens, xs, [3, 7])
    with pytest.raises(ValueError, match="lengths"):
        R.final_states(ens, xs, [0, 3])
