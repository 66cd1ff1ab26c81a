"""reslab: the building blocks of the *Skip Connections* course module.

Core modules (one idea each): :mod:`~reslab.blocks` (plain, residual, highway and Transformer
blocks), :mod:`~reslab.nets` (stacks of blocks), :mod:`~reslab.probes` (per-layer norms and
Jacobians), :mod:`~reslab.train` (deterministic training, batched over seeds),
:mod:`~reslab.plots` (figure style), :mod:`~reslab.widgets` (kernel-free frame explorers) and
:mod:`~reslab.repro` (seeding). Data and cells: :mod:`~reslab.data`, :mod:`~reslab.conv`,
:mod:`~reslab.recurrent`, :mod:`~reslab.sequences`. Chapter experiments:
:mod:`~reslab.identity` (1), :mod:`~reslab.reframing` (2), :mod:`~reslab.paths` (3).

Every chapter starts with::

    import reslab
    reslab.setup()
"""

from . import blocks, nets, probes  # probes before paths: probes re-exports the path tools
from . import paths, plots, repro, train, widgets
from . import conv, data, identity, reframing  # chapters 1 and 2
from . import recurrent, sequences  # chapter 4
from .repro import fmt, setup

__version__ = "0.1.0"
__all__ = ["blocks", "conv", "data", "identity", "nets", "paths", "plots", "reframing", "probes", "recurrent", "sequences", "repro", "train", "widgets", "fmt", "setup", "__version__"]
