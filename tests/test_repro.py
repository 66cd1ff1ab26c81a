"""Reproducibility helpers: setup() fixes threads and seeds; fmt() keeps 3 significant digits."""

import pytest
import torch

import reslab
from reslab.repro import fmt, generator


def test_setup_seeds_and_threads():
    reslab.setup(seed=5)
    a = torch.randn(3)
    assert torch.get_num_threads() == 1
    reslab.setup(seed=5)
    assert torch.equal(a, torch.randn(3))
    assert torch.equal(torch.randn(2, generator=generator(1)), torch.randn(2, generator=generator(1)))
    # deterministic kernels, without the NaN pre-fill of every new tensor
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False


@pytest.mark.parametrize(
    "value, text",
    [(131.501, "132"), (0.0059053, "0.00591"), (0.0, "0.0"), (float("inf"), "inf"), (-float("inf"), "-inf"),
     (float("nan"), "nan"), (7.2e11, "7.2e+11"), (0.98524, "0.985"), (1.0, "1"), (torch.tensor(2.5), "2.5")],
)
def test_fmt(value, text):
    assert fmt(value) == text


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="threads"):
        reslab.setup(threads=0)
    with pytest.raises(ValueError, match="seed"):
        reslab.setup(seed=-1)
    with pytest.raises(ValueError, match="digits"):
        fmt(1.0, digits=9)
    with pytest.raises(ValueError, match="scalar"):
        fmt(torch.ones(2))


def test_setup_defaults_to_seed_zero_and_the_book_style():
    import matplotlib
    import matplotlib.pyplot as plt

    with matplotlib.rc_context():
        plt.rcdefaults()
        reslab.setup()
        a = torch.randn(3)
        assert plt.rcParams["svg.hashsalt"] == "reslab" and plt.rcParams["figure.dpi"] == 90  # the style is applied
        torch.manual_seed(0)
        assert torch.equal(a, torch.randn(3))
        plt.rcdefaults()
        reslab.setup(style=False)
        assert plt.rcParams["svg.hashsalt"] is None  # style=False leaves matplotlib alone


def test_setup_seeds_python_and_numpy_too():
    import random

    import numpy as np

    draws = []
    for _ in range(2):
        reslab.setup(seed=11, style=False)
        draws.append((random.random(), float(np.random.rand()), float(torch.rand(1))))
    assert draws[0] == draws[1]
    reslab.setup(seed=12, style=False)
    assert random.random() != draws[0][0] and float(np.random.rand()) != draws[0][1]


def test_setup_sets_hash_seed_for_child_processes_unless_already_set(monkeypatch):
    import os

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    reslab.setup(seed=7, style=False)
    assert os.environ["PYTHONHASHSEED"] == "7"
    monkeypatch.setenv("PYTHONHASHSEED", "3")
    reslab.setup(seed=7, style=False)
    assert os.environ["PYTHONHASHSEED"] == "3"  # a launcher's choice wins


def test_setup_turns_on_deterministic_algorithms_with_warnings_only():
    torch.use_deterministic_algorithms(False)
    reslab.setup(style=False)
    assert torch.are_deterministic_algorithms_enabled()
    # ops with no deterministic kernel warn instead of stopping a notebook
    assert torch.is_deterministic_algorithms_warn_only_enabled()


def test_fmt_digits_range_is_one_to_six():
    assert fmt(3.14159265, digits=1) == "3"
    assert fmt(3.14159265, digits=6) == "3.14159"
    assert fmt(-0.000123456, digits=2) == "-0.00012"
    with pytest.raises(ValueError, match="digits"):
        fmt(1.0, digits=7)


@pytest.mark.parametrize("text", ["2.5", b"2.5"])
def test_fmt_refuses_numbers_given_as_text(text):
    with pytest.raises(TypeError, match="value must be a real number"):
        fmt(text)
