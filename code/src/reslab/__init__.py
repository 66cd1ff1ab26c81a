"""reslab: the building blocks of the *Skip Connections* course module.

Modules (one idea each): :mod:`~reslab.blocks` (plain and residual blocks), :mod:`~reslab.nets`
(stacks of blocks), :mod:`~reslab.probes` (per-layer norms and Jacobians), :mod:`~reslab.train`
(deterministic training, batched over seeds), :mod:`~reslab.plots` (figure style),
:mod:`~reslab.widgets` (kernel-free frame explorers) and :mod:`~reslab.repro` (seeding).

Every chapter starts with::

    import reslab
    reslab.setup()
"""

from . import blocks, nets, probes  # probes before paths: probes re-exports the path tools
from . import paths, plots, repro, train, widgets
from . import conv, data, identity, reframing  # chapters 1 and 2
from .repro import fmt, setup

__version__ = "0.1.0"
__all__ = ["blocks", "conv", "data", "identity", "nets", "paths", "plots", "reframing", "probes", "repro", "train", "widgets", "fmt", "setup", "__version__"]
