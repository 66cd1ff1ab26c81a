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
