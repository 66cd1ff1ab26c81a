"""Tests of the lesion helpers of reslab.paths on a reduced configuration of the chapter's study."""

from __future__ import annotations

import pytest
import torch

from reslab import paths
from reslab.data import load_digits


@pytest.fixture(scope="module")
def digits():
    return load_digits(shape="flat")


def test_digits_must_be_a_flat_split():
    with pytest.raises(TypeError, match="Digits"):
        paths.lesion_study(depth=2, width=4, seeds=(0,), steps=1, data=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="flat"):
        paths.train_deep(depth=2, steps=1, data=load_digits(n_train=50, n_test=20))


def test_block_classifier_skip_deletes_a_block():
    torch.manual_seed(0)
    model = paths.block_classifier("residual", 3, 8, in_features=5, classes=2)
    x = torch.randn(4, 5)
    h = model.stem(x)
    h = model.blocks[2](model.blocks[0](h))
    assert torch.allclose(model(x, skip=(1,)), model.head(h))
    acc = paths.lesion_accuracies(model, x, torch.zeros(4, dtype=torch.int64))
    assert acc.shape == (3,) and bool(((acc >= 0) & (acc <= 1)).all())


def test_residual_degrades_gracefully_plain_collapses(digits):
    study = paths.lesion_study(depth=8, width=24, seeds=(0, 1), steps=80, lr=5e-3, data=digits)
    plain, res = study["plain"], study["residual"]
    assert plain.deleted.shape == (2, 8) and res.losses.shape == (2, 81)
    # both train to a useful accuracy
    assert float(plain.baseline.min()) > 0.7 and float(res.baseline.min()) > 0.8
    # deleting a residual block costs little; deleting a plain layer costs most of the accuracy
    assert res.mean_drop < 0.1
    assert plain.mean_drop > 0.4
    assert res.worst > plain.worst


def test_lesion_bad_inputs(digits):
    with pytest.raises(TypeError, match="BlockClassifier"):
        paths.lesion_accuracies(torch.nn.Linear(2, 2), digits.x_test, digits.y_test)
    with pytest.raises(ValueError, match="kind"):
        paths.block_classifier("highway", 3, 8)
    with pytest.raises(ValueError, match="inits"):
        paths.lesion_study(depth=2, width=4, seeds=(0,), steps=1, data=digits, inits={"plain": "orthogonal"})
