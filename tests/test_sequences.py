"""Tests of reslab.sequences: the long-memory task, its batched training, the gradient probes."""

from __future__ import annotations

import math

import pytest
import torch

from reslab import sequences as S


def test_recall_task_labels_are_the_first_symbol():
    xs, y = S.recall_task(50, 12, n_symbols=5, seed=3)
    assert xs.shape == (50, 12, 5) and y.shape == (50,)
    assert torch.equal(xs[:, 0].argmax(dim=1), y)
    assert torch.equal(xs[:, 1:], torch.zeros(50, 11, 5))  # silence after the first step
    noisy, y2 = S.recall_task(50, 12, n_symbols=5, noise=0.5, seed=3)
    assert torch.equal(y, y2) and float(noisy[:, 1:].std()) > 0.3


def test_recall_task_rejects_bad_arguments():
    with pytest.raises(ValueError, match="length must be an integer >= 1"):
        S.recall_task(4, 0)
    with pytest.raises(ValueError, match="n_symbols must be an integer >= 2"):
        S.recall_task(4, 5, n_symbols=1)
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        S.recall_task(4, 5, noise=-1.0)


def test_train_recall_members_are_independent():
    both = S.train_recall("gru", [5, 8], [0, 1], carry_biases=(1.0,), steps=15, hidden=6)
    alone = S.train_recall("gru", [8], [1], carry_biases=(1.0,), steps=15, hidden=6)
    assert both.losses.shape == (1, 2, 2, 16) and both.accuracy.shape == (1, 2, 2)
    assert float((both.losses[0, 1, 1] - alone.losses[0, 0, 0]).abs().max()) < 1e-4


def test_fused_lstm_path_trains_exactly_like_the_from_scratch_cells():
    fused = S.train_recall("lstm", [4, 9], [0, 1], carry_biases=(1.0, 3.0), steps=20, hidden=6)
    ours = S.train_recall("lstm", [4, 9], [0, 1], carry_biases=(1.0, 3.0), steps=20, hidden=6, fused=False)
    assert float((fused.losses - ours.losses).abs().max()) < 1e-4  # rounding only, over 20 Adam steps
    assert float((fused.accuracy - ours.accuracy).abs().max()) <= 0.01


def test_train_recall_rejects_a_gate_bias_for_the_rnn():
    with pytest.raises(ValueError, match="carry_biases must be \\[None\\] for kind='rnn'"):
        S.train_recall("rnn", [5], [0], carry_biases=(1.0,), steps=1)
    with pytest.raises(ValueError, match="kind must be one of"):
        S.train_recall("mlp", [5], [0], steps=1)


def test_long_memory_reduced_claim_lstm_carries_where_rnn_forgets():
    """The chapter's claim at a reduced size: T = 30, three seeds, the chapter's budget."""
    lstm = S.train_recall("lstm", [30], [0, 1, 2], carry_biases=(3.0,))
    rnn = S.train_recall("rnn", [30], [0, 1, 2])
    assert bool(lstm.solved(0.9).all())
    assert float(rnn.accuracy.mean()) < 0.8
    assert lstm.chance == 0.25


def test_spectral_radius_sweep_vanishes_below_one():
    curves = S.spectral_radius_sweep([0.5, 1.5], 40, hidden=16, batch=4)
    assert set(curves) == {0.5, 1.5}
    assert float(curves[0.5][40]) < 1e-6 < 1.0 < float(curves[1.5].max())


def test_gradient_curves_direct_path_of_the_1997_cell_is_one():
    c = S.gradient_curves("lstm", 30, forget_gate=False)
    assert torch.equal(c["direct"], torch.ones(31, dtype=torch.float64))
    r = S.gradient_curves("rnn", 30)
    assert r["direct"] is None and r["full"].shape == (31,)
    g0, g3 = (S.gradient_curves("gru", 30, carry_bias=b)["direct"][-1] for b in (0.0, 3.0))
    assert float(g3) > 1e3 * float(g0)  # a carry bias of 3 keeps far more of the direct path


def test_gradient_frame_draws_every_cell():
    curves = {k.upper(): S.gradient_curves(k, 20, carry_bias=None if k == "rnn" else 1.0) for k in ("rnn", "lstm", "gru")}
    fig = S.gradient_frame(curves, 10, 1.0)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == 5 and labels[0].startswith("RNN")
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_math_of_the_retention_rule():
    # after T steps a fixed carry gate sigma(b) keeps sigma(b)^T: b = 3 keeps ~0.7% over 100 steps
    keep = 1 / (1 + math.exp(-3.0))
    assert 0.005 < keep**100 < 0.01


def test_train_recall_returns_every_member_in_its_grid_cell():
    """Members train ordered by length; results come back indexed [bias, length, seed]."""
    grid = S.train_recall("gru", [7, 3], [2, 0], carry_biases=(3.0, 1.0), steps=6, hidden=5)
    for i, b in enumerate((3.0, 1.0)):
        for j, t in enumerate((7, 3)):
            for k, s in enumerate((2, 0)):
                alone = S.train_recall("gru", [t], [s], carry_biases=(b,), steps=6, hidden=5)
                assert float((grid.losses[i, j, k] - alone.losses[0, 0, 0]).abs().max()) < 1e-5, (b, t, s)
                assert float(grid.accuracy[i, j, k]) == pytest.approx(float(alone.accuracy[0, 0, 0]), abs=1e-6)
