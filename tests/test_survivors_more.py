"""Tests that kill surviving mutants of reslab._validate, blocks, conv, paths, probes and recurrent.

Each test pins an observable behaviour the earlier tests left open: the exact wording of an
error message (which argument it names, which conditions it states), the order in which
arguments are checked, and the numerical robustness of ``random_jacobian_lognorms``.
"""

import math
import re

import pytest
import torch

from reslab import _validate, conv, paths, probes
from reslab import recurrent as R
from reslab.blocks import HighwayBlock


# ---------------------------------------------------------------------------------------------
# reslab._validate: the message states exactly the conditions that apply
# ---------------------------------------------------------------------------------------------


def _message(fn, exc):
    with pytest.raises(exc) as info:
        fn()
    return str(info.value)


def test_float_pair_message_states_only_the_conditions_asked_for():
    # neither positive nor increasing: the plain description, nothing appended
    assert _message(lambda: _validate.float_pair("figsize", "ab"), TypeError) == (
        "figsize must be a pair of finite numbers, got str 'ab'")
    assert _message(lambda: _validate.float_pair("figsize", [1, 2, 3]), ValueError) == (
        "figsize must be a pair of finite numbers, got 3 values")
    # only positive
    assert _message(lambda: _validate.float_pair("figsize", 5, positive=True), TypeError) == (
        "figsize must be a pair of finite numbers > 0, got int 5")
    # only increasing
    assert _message(lambda: _validate.float_pair("ylim", (3, 1), increasing=True), ValueError) == (
        "ylim must be a pair of finite numbers (low, high) with low < high, got (3, 1)")


def test_float_sequence_message_says_positive_only_when_asked():
    assert _message(lambda: _validate.float_sequence("radii", 5), TypeError) == (
        "radii must be a non-empty sequence of finite numbers, got int 5")
    assert _message(lambda: _validate.float_sequence("radii", []), ValueError) == (
        "radii must be a non-empty sequence of finite numbers, got an empty sequence")
    assert _message(lambda: _validate.float_sequence("radii", 5, positive=True), TypeError) == (
        "radii must be a non-empty sequence of finite numbers > 0, got int 5")
    assert _message(lambda: _validate.float_sequence("radii", (), positive=True), ValueError) == (
        "radii must be a non-empty sequence of finite numbers > 0, got an empty sequence")


# ---------------------------------------------------------------------------------------------
# blocks / conv: the input checks name the argument ``x``
# ---------------------------------------------------------------------------------------------


def test_highway_transform_gate_names_x_in_its_errors():
    block = HighwayBlock(4)
    assert _message(lambda: block.transform_gate(torch.zeros(2, 3)), ValueError) == (
        "x must have last dimension 4, got shape (2, 3)")
    assert _message(lambda: block.transform_gate([[0.0] * 4]), TypeError) == "x must be a torch.Tensor, got list"


@pytest.mark.parametrize("cls", [conv.ConvPlainBlock, conv.ConvResidualBlock, conv.ConvPreActBlock])
def test_conv_block_input_check_names_x(cls):
    block = cls(2)
    assert _message(lambda: block(torch.zeros(2, 2)), ValueError) == "x must have 3 or 4 dimensions, got shape (2, 2)"
    assert _message(lambda: block(torch.zeros(1, 2, 3, 3, dtype=torch.long)), TypeError) == (
        "x must be a floating-point tensor, got dtype torch.int64")


def test_conv_net_features_names_x():
    torch.manual_seed(0)
    net = conv.conv_net("residual", 4, 2)
    assert _message(lambda: net.features(torch.zeros(8, 8)), ValueError) == "x must have 3 or 4 dimensions, got shape (8, 8)"
    assert _message(lambda: net.features("img"), TypeError) == "x must be a torch.Tensor, got str"


# ---------------------------------------------------------------------------------------------
# paths: lr must be > 0 and is checked before the later arguments and before the data
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0, -0.1])
def test_lesion_study_rejects_a_non_positive_lr_before_later_arguments(lr):
    msg = _message(lambda: paths.lesion_study(2, 2, seeds=[0], steps=1, lr=lr, batch_size=0, data=object()), ValueError)
    assert msg == f"lr must be a finite number > 0, got {float(lr)}"


@pytest.mark.parametrize("lr", [0, -0.1])
def test_train_deep_rejects_a_non_positive_lr_before_later_arguments(lr):
    msg = _message(lambda: paths.train_deep(depth=2, width=2, steps=1, lr=lr, optimizer="bad", data=object()), ValueError)
    assert msg == f"lr must be a finite number > 0, got {float(lr)}"


# ---------------------------------------------------------------------------------------------
# probes.random_jacobian_lognorms: any gain, however large or small, gives a finite answer
# ---------------------------------------------------------------------------------------------


def test_random_jacobian_lognorms_is_exact_at_extreme_gains():
    # ReLU is positively homogeneous, so the gain only adds depth * log(gain). Computed with the
    # gain inside the weights, 1e155 overflowed the squared norms (nan) and 1e-200 underflowed
    # them (-inf); the gain is now factored out, so every positive float gives the exact shift.
    depth, width, draws = 2, 8, 200
    base = probes.random_jacobian_lognorms(depth, width, draws, seed=0)
    assert bool(torch.isfinite(base).all())
    for gain in (1e153, 1e155, 1e300, 1e-200, 5e-324):
        scaled = probes.random_jacobian_lognorms(depth, width, draws, seed=0, gain=gain)
        assert bool(torch.isfinite(scaled).all()), gain
        assert torch.allclose(scaled, base + depth * math.log(gain), rtol=1e-12, atol=1e-9), gain


# ---------------------------------------------------------------------------------------------
# recurrent
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [R.RNNCell, R.LSTMCell, R.GRUCell])
def test_init_state_names_batch_in_its_errors(cls):
    cell = cls(2, 3)
    assert _message(lambda: cell.init_state(0), ValueError) == "batch must be an integer >= 1, got 0"
    assert _message(lambda: cell.init_state(2.0), TypeError) == "batch must be an integer >= 1, got float 2.0"


def test_final_states_starts_from_a_state_of_the_inputs_dtype_like_unroll():
    # final_states promises unroll's values; unroll starts from zeros of xs's dtype. A stack whose
    # recurrent weights are float64 but whose input weights (and xs) are float32 therefore fails in
    # unroll, and must fail the same way in final_states, not silently run in the recurrent dtype.
    torch.manual_seed(0)
    ens = R.stack_cells([R.RNNCell(2, 3), R.RNNCell(2, 3)])
    with torch.no_grad():
        ens.weight_hh.data = ens.weight_hh.data.double()
        ens.bias_hh.data = ens.bias_hh.data.double()
    xs = torch.randn(2, 4, 2)
    with pytest.raises(RuntimeError) as from_unroll:
        R.unroll(ens, xs)
    with pytest.raises(RuntimeError) as from_final:
        R.final_states(ens, xs, [2, 4])
    assert re.sub(r"\s+", " ", str(from_final.value)) == re.sub(r"\s+", " ", str(from_unroll.value))
    # with one dtype throughout both agree on the values
    ens32 = R.stack_cells([R.RNNCell(2, 3), R.RNNCell(2, 3)]).double()
    xs64 = torch.randn(2, 4, 2, dtype=torch.float64)
    full, _ = R.unroll(ens32, xs64)
    final = R.final_states(ens32, xs64, [2, 4])
    assert final.dtype == torch.float64 and final.shape == (2, 2, 3)
    assert torch.allclose(final[0], full[0, :, 1]) and torch.allclose(final[1], full[1, :, 3])
