"""The patient bootstrap of any figure computed from prediction rows.

``uncertainty.bootstrap_ci`` resamples patients for the confusion-matrix metrics
and ROC AUC; calibration, operating-point and subgroup figures need the same
resampling for statistics of another shape (a logistic fit, a bin's frequency).
Here a resample is materialised as the row indices it draws (a patient drawn twice
brings its images twice), drawn exactly as ``bootstrap_ci`` draws them (multinomial
patient counts from one seeded generator), and each named statistic gets the same
percentile interval (``uncertainty.percentile_interval``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .metrics import resampling_units
from .uncertainty import percentile_interval

Statistic = Callable[[np.ndarray], Mapping[str, float]]


def patient_draws(predictions: pd.DataFrame, n_boot: int, seed: int) -> list[np.ndarray]:
    """Row indices of each of ``n_boot`` patient resamples (an image without patient id is its own unit)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    units = resampling_units(predictions).to_numpy()
    patients, unit_of_row = np.unique(units, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(patients), np.full(len(patients), 1 / len(patients)), size=n_boot)
    rows = np.arange(len(units))
    return [np.repeat(rows, counts[unit_of_row]) for counts in draws]  # each row as often as its patient is drawn


def bootstrap(predictions: pd.DataFrame, statistic: Statistic, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: {estimate, low, high, n_used}}`` of every value ``statistic(rows)`` returns.

    ``statistic`` takes row indices into ``predictions`` (all rows for the estimate) and
    returns named floats, NaN where a resample leaves it undefined (those resamples are
    not counted in ``n_used``). ``settings`` is audit.bootstrap ({n, level, seed}).
    """
    estimate = statistic(np.arange(len(predictions)))
    values: dict[str, list[float]] = {name: [] for name in estimate}
    for rows in patient_draws(predictions, settings["n"], settings["seed"]):
        resampled = statistic(rows)
        for name in values:
            values[name].append(float(resampled.get(name, np.nan)))
    return {name: percentile_interval(np.asarray(values[name], dtype=float), _finite(estimate[name]), settings["level"])
            for name in estimate}  # fmt: skip


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
