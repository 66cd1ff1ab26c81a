"""Shared test settings: headless matplotlib, one thread (as the notebooks use), and a deadline
fixture for tests of loops."""

import contextlib
import signal

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

@contextlib.contextmanager
def _deadline(seconds: float):
    """Fail (instead of hanging) when the body runs longer than ``seconds`` of wall time."""

    def _expired(signum, frame):
        raise TimeoutError(f"did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def deadline():
    """``with deadline(2.0): ...`` fails a test whose body would hang (a loop that never ends)."""
    return _deadline

