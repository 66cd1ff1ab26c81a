"""Shared test settings: headless matplotlib, one thread (as the notebooks use)."""

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
