"""Tests of reslab.data: the bundled 8x8 digits and the small-residual target."""

import pytest
import torch

from reslab import data


def test_digits_sizes_dtypes_and_range():
    d = data.load_digits(1000)
    assert d.n_train == 1000 and d.n_test == 797
    assert d.n_train + d.n_test == data.DIGITS_SIZE == 1797
    assert d.x_train.shape == (1000, 1, 8, 8) and d.x_test.shape == (797, 1, 8, 8)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0
    assert set(d.y_train.tolist()) == set(range(10))


def _sorted_rows(x):
    rows = sorted(tuple(r) for r in x.tolist())
    return torch.tensor(rows)


def test_digits_flat_shape_and_split_is_a_partition():
    d = data.load_digits(100, shape="flat", n_test=50)
    assert d.x_train.shape == (100, 64) and d.x_test.shape == (50, 64)
    from sklearn.datasets import load_digits as sk

    source = torch.tensor(sk().data, dtype=torch.float32) / 16
    full = data.load_digits(1000, shape="flat")
    # train and test together are exactly the 1797 bundled images, each once
    assert torch.equal(_sorted_rows(torch.cat([full.x_train, full.x_test])), _sorted_rows(source))
    # the image layout is the flat layout reshaped
    img = data.load_digits(1000)
    assert torch.equal(img.x_train.reshape(1000, 64), full.x_train)


def test_digits_deterministic_and_seed_dependent():
    a, b = data.load_digits(64), data.load_digits(64)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = data.load_digits(64, seed=1)
    assert not torch.equal(a.y_train, c.y_train)


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"n_train": 0}, ValueError),
        ({"n_train": 1797}, ValueError),
        ({"n_train": 10.0}, TypeError),
        ({"n_train": 10, "shape": "square"}, ValueError),
        ({"n_train": 10, "seed": -1}, ValueError),
        ({"n_train": 1000, "n_test": 798}, ValueError),
    ],
)
def test_digits_bad_inputs(kwargs, exc):
    with pytest.raises(exc):
        data.load_digits(**kwargs)


def test_small_residual_task_is_identity_plus_small_correction():
    t = data.small_residual_task(200, 8, eps=0.1, seed=3)
    assert t.x.shape == t.y.shape == (200, 8)
    assert torch.allclose(t.y - t.x, t.residual, atol=1e-7)
    assert float(t.residual.abs().max()) <= 0.1 + 1e-7  # |tanh| <= 1
    assert 0.1 > float(t.residual.pow(2).mean()) ** 0.5 > 0.03  # of order eps
    zero = data.small_residual_task(50, 4, eps=0.0)
    assert torch.equal(zero.x, zero.y)
    again = data.small_residual_task(200, 8, eps=0.1, seed=3)
    assert torch.equal(t.y, again.y)


@pytest.mark.parametrize("kwargs, exc", [({"n": 0}, ValueError), ({"eps": -0.1}, ValueError), ({"eps": float("nan")}, ValueError), ({"width": "8"}, TypeError)])
def test_small_residual_task_bad_inputs(kwargs, exc):
    with pytest.raises(exc):
        data.small_residual_task(**kwargs)


def test_digits_defaults_are_1000_training_images_seed_0_image_layout():
    d = data.load_digits()
    assert d.n_train == 1000 and d.n_test == 797
    assert d.x_train.shape == (1000, 1, 8, 8)
    explicit = data.load_digits(1000, seed=0, shape="image", n_test=797)
    assert torch.equal(d.x_train, explicit.x_train) and torch.equal(d.y_test, explicit.y_test)


def test_digits_split_sizes_at_their_limits():
    most = data.load_digits(1796)  # the largest training set leaves one test image
    assert most.n_train == 1796 and most.n_test == 1
    rest = data.load_digits(1000, n_test=797)  # n_test may take all the rest
    assert rest.n_test == 797
    with pytest.raises(ValueError, match="^n_train"):
        data.load_digits(1797)
    with pytest.raises(ValueError, match="^n_test"):
        data.load_digits(1796, n_test=2)


def test_digits_labels_are_int64_even_if_the_source_gives_int32(monkeypatch):
    # numpy 1.x on Windows makes scikit-learn's labels int32; cross-entropy needs int64
    import numpy as np
    import sklearn.datasets

    real = sklearn.datasets.load_digits

    def int32_labels():
        bunch = real()
        bunch.target = bunch.target.astype(np.int32)
        return bunch

    monkeypatch.setattr(sklearn.datasets, "load_digits", int32_labels)
    d = data.load_digits(10, n_test=10)
    assert d.y_train.dtype == d.y_test.dtype == torch.int64


def test_small_residual_task_defaults():
    t = data.small_residual_task()
    assert t.x.shape == t.y.shape == t.residual.shape == (256, 16)
    assert t.eps == 0.1
    assert torch.equal(t.y, data.small_residual_task(256, 16, eps=0.1, seed=0).y)
    assert data.small_residual_task(4, 2, eps=0.5).eps == 0.5


def test_small_residual_correction_is_tanh_of_a_linear_map_of_variance_4():
    # eps = 1: the residual is tanh(x A^T) itself; recover A row by row from the unsaturated entries
    t = data.small_residual_task(256, 16, eps=1.0, seed=0)
    x, r = t.x.double(), t.residual.double()
    rows = []
    for j in range(16):
        keep = r[:, j].abs() < 0.999
        z = torch.atanh(r[keep, j])
        a_j = torch.linalg.lstsq(x[keep], z[:, None]).solution[:, 0]
        assert torch.allclose(x[keep] @ a_j, z, atol=1e-3)  # exactly linear inside the tanh
        rows.append(a_j)
    a = torch.stack(rows)
    # A ~ N(0, 4 / width): pre-activations of variance about 4, so g is genuinely nonlinear
    assert 3.0 < float((x @ a.T).var()) < 5.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.complex64])
def test_digits_split_needs_integer_class_labels(dtype):
    x = torch.rand(4, 64)
    labels = torch.tensor([0, 1, 1, 0]).to(dtype)
    with pytest.raises(TypeError, match="y_train must be an integer tensor"):
        data.Digits(x, labels, x, torch.tensor([0, 1, 1, 0]))
    d = data.Digits(x, torch.tensor([0, 1, 1, 0]), x[:2], torch.tensor([1, 0]))  # int64 labels are fine
    assert (d.n_train, d.n_test) == (4, 2)


def test_digits_split_takes_flat_rows_or_image_batches_only():
    labels = torch.tensor([0, 1, 1, 0])
    for x in (torch.rand(4, 64), torch.rand(4, 1, 8, 8)):  # flat rows, or (N, C, H, W) images
        assert data.Digits(x, labels, x, labels).n_train == 4
    for bad in (torch.rand(4, 8, 8), torch.rand(4, 1, 1, 8, 8)):  # no channel axis / one too many
        with pytest.raises(ValueError, match="x_train"):
            data.Digits(bad, labels, bad, labels)
