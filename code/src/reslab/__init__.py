"""reslab: the building blocks of the *Skip Connections* course module.

Modules (one idea each): :mod:`~reslab.blocks` (plain and residual blocks), :mod:`~reslab.nets`
(stacks of blocks), :mod:`~reslab.probes` (per-layer norms and Jacobians), :mod:`~reslab.train`
(deterministic training, batched over seeds), :mod:`~reslab.plots` (figure style),
:mod:`~reslab.widgets` (kernel-free frame explorers) and :mod:`~reslab.repro` (seeding).

Every chapter starts with::

    import reslab
    reslab.setup()
"""

from . import blocks, nets, plots, probes, repro, train, widgets
from .repro import fmt, setup

__version__ = "0.1.0"
__all__ = ["blocks", "nets", "plots", "probes", "repro", "train", "widgets", "fmt", "setup", "__version__"]
