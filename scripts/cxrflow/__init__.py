"""Library behind the chest X-ray workflow: pure functions, no Snakemake inside.

Modules, one job each: ``sources`` (read collections), ``synth`` (embedded demo
data), ``download`` (fetch public collections), ``decode`` (bytes -> 8-bit
array), ``crop`` (black-bar crop), ``preprocess`` (one image end to end),
``manifest``, ``split``, ``data``, ``augment``, ``model``, ``train``,
``metrics``, ``plots``, ``audit``, ``external`` (held-out sources),
``nested`` (nested cross-validation), ``summary`` (an experiment over its folds).
"""

__version__ = "0.1.0"
