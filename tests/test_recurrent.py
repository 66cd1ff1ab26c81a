"""Tests of reslab.recurrent: the cells against PyTorch's, exact carries, Jacobians, probes, checks."""

from __future__ import annotations

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
