"""Library behind the chest X-ray workflow: pure functions, no Snakemake inside.

Modules by stage (each module's docstring says why it exists):

* settings and layout: ``config`` (configuration, the demo, the schema's defaults),
  ``layout`` (where results live, report categories), ``joblog`` (a job's log),
  ``console`` (a quiet console), ``cluster`` (SLURM jobs that can never start)
* select: ``sources`` (read collections), ``synth`` (embedded demo data),
  ``download`` (fetch public collections), ``covariates`` (age, sex, view normalised)
* crop: ``decode`` (bytes -> 8-bit array), ``crop`` (black-bar crop), ``preprocess``
  (one image end to end), ``batch`` and ``listing`` (batched crop jobs), ``jobs``
  (the crop and manifest jobs), ``manifest``
* split: ``split``, ``dedup`` (copies kept in one split), ``copies`` (copy search),
  ``copies_figure``, ``external`` (held-out sources), ``nested`` (nested CV)
* train: ``data``, ``augment``, ``model``, ``train``
* evaluate: ``metrics``, ``uncertainty`` (the statistics core: every interval), ``plots``,
  ``summary`` (an experiment over its folds), ``calibration``, ``operating_point`` (a
  threshold frozen on validation), ``subgroups``, ``evaluation`` (their rule entry points
  and the seed summary)
* audit: ``baselines``, ``audit`` (leakage, source predictability), ``shortcut``
  (border-only control), ``gradcam``, ``confounders`` (covariates that predict the label)
* report: ``record`` (one evaluation record per model, the trust summary's columns),
  ``report_views`` (HTML views, the Verdict page)
"""

__version__ = "0.1.0"
