"""Library behind the chest X-ray workflow: pure functions, no Snakemake inside.

Modules by stage (each module's docstring says why it exists):

* settings and layout: ``config`` (configuration, the demo, the schema's defaults),
  ``layout`` (where results live, report categories), ``rule_log`` (a job's log),
  ``console`` (a quiet console), ``cluster`` (SLURM jobs that can never start)
* select: ``sources`` (read collections), ``synth`` (embedded demo data),
  ``download`` (fetch public collections), ``covariates`` (age, sex, view normalised)
* crop: ``decode`` (bytes -> 8-bit array), ``crop`` (black-bar crop), ``preprocess``
  (one image end to end), ``crop_batches`` and ``crop_listings`` (batched crop jobs),
  ``crop_jobs`` (the crop and manifest jobs), ``manifest``
* split: ``split``, ``copy_groups`` (copies kept in one split), ``copies`` (the copy search: both stages,
  the worker pool), ``copy_index`` (views, window thumbnails, candidate index), ``copy_align``
  (a candidate pair aligned and scored), ``copy_cache`` (what the copy search remembers),
  ``copies_figure``, ``external`` (held-out sources), ``nested`` (nested CV)
* train: ``keras_job`` (backend and threads, before Keras is imported), ``data``, ``augment``,
  ``model``, ``train``, ``bank`` (features of augmented views through a frozen base, computed once)
* evaluate: ``evaluate`` (a trained model on a split), ``metrics`` (the metric maths),
  ``uncertainty`` (the statistics core: every interval), ``results_io`` (result files),
  ``plots``, ``experiment_summary`` (an experiment over its folds), ``calibration``,
  ``operating_point`` (a threshold frozen on validation), ``subgroups``,
  ``evaluation_main`` (their rule entry points and the seed summary)
* audit: ``baselines``, ``data_audit`` (leakage, source predictability), ``shortcut``
  (border-only control), ``gradcam``, ``confounders`` (covariates that predict the label)
* report: ``record`` (one evaluation record per model, the trust summary's columns),
  ``report_views`` (HTML views, the Verdict page)
* methods record: ``flow`` (where every image went), ``partitions`` (characteristics
  per split), ``provenance`` (versions, hardware, dataset fingerprints), ``archive``
  (byte-reproducible model files), ``model_card``, ``predict`` (a model on new images),
  ``checklist`` (reporting items the run can fill), ``methods_main`` (their rule entry points)
"""

__version__ = "0.1.0"
