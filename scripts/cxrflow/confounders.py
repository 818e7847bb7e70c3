"""Does a patient covariate alone predict the label? (Paediatric normals against adult COVID-19.)

Public COVID-19 X-ray sets often pair adult COVID-19 films with children's normal
films; a network reads age off a chest film easily, so it can score by age. On the
whole selection (every ok image), each covariate (age band, sex, view, source) is
set against the label twice, as ``audit.source_predictability`` does for the source:

* **Cramér's V** of covariate x label, bias-corrected (Bergsma 2013, scipy's
  ``association(..., correction=True)`` is Yates' continuity only: the correction
  here is the one that keeps small tables from showing association where none is),
* a **covariate-only classifier** (logistic regression on the one-hot covariate, classes
  weighted so that it cannot score by naming the majority) under patient-grouped
  cross-validation: its balanced accuracy against chance.

Only images whose covariate is known enter its figures: whether a value was recorded
is a property of the collection, not of the film, so "unknown" is counted and
reported but is not a level the label could be read from. A flag is raised where a
covariate of ``flag_covariates`` reaches ``flag_balanced_accuracy``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.preprocessing import OneHotEncoder
from sklearn.pipeline import make_pipeline

from .covariates import COVARIATES, counts, known
from .results_io import json_safe


def cramers_v_corrected(table: np.ndarray) -> float:
    """Bias-corrected Cramér's V (Bergsma 2013) of a contingency table; NaN for fewer than 2 rows or columns."""
    table = np.asarray(table, dtype=float)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    r, k = table.shape
    n = table.sum()
    if r < 2 or k < 2 or n < 2:
        return float("nan")
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    phi2 = float(np.sum((table - expected) ** 2 / expected) / n)
    phi2 = max(0.0, phi2 - (k - 1) * (r - 1) / (n - 1))
    r_c, k_c = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denom = min(k_c - 1, r_c - 1)
    return float(np.sqrt(phi2 / denom)) if denom > 0 else float("nan")


def covariate_check(values: pd.Series, labels: pd.Series, groups: pd.Series, folds: int, seed: int
                    ) -> dict[str, Any]:  # fmt: skip
    """Cramér's V and grouped-CV balanced accuracy of predicting ``labels`` from ``values`` alone."""
    contingency = pd.crosstab(values.rename("value"), labels.rename("label"))
    out: dict[str, Any] = {"n_known": int(len(values)), "levels": int(values.nunique()),
                           "contingency": {str(v): {str(c): int(n) for c, n in row.items()}
                                           for v, row in contingency.iterrows()},
                           "cramers_v": cramers_v_corrected(contingency.to_numpy()),
                           "chance_balanced_accuracy": 1 / max(1, labels.nunique())}  # fmt: skip
    per_class_groups = groups.groupby(labels.to_numpy()).nunique()
    if values.nunique() < 2 or labels.nunique() < 2:
        return {**out, "balanced_accuracy": None, "skipped": "one value or one label among the known images"}
    if per_class_groups.min() < folds:
        return {**out, "balanced_accuracy": None,
                "skipped": f"label {per_class_groups.idxmin()} has {per_class_groups.min()} patient groups with a "
                           f"known value, fewer than the {folds} CV folds"}  # fmt: skip
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"),
                          LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed))  # fmt: skip
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    x = values.astype(str).to_numpy().reshape(-1, 1)
    predicted = cross_val_predict(model, x, labels.astype(str).to_numpy(), groups=groups.to_numpy(), cv=cv)
    return {**out, "folds": folds, "balanced_accuracy": float(balanced_accuracy_score(labels.astype(str), predicted))}


def confounders(table: pd.DataFrame, groups: pd.Series, settings: Mapping[str, Any]) -> dict[str, Any]:
    """confounders.json: per covariate its check on the images where it is known, the unknown counts,
    and the flag with its sentence. ``table`` is the covariate table of the ok images (covariates.covariate_table),
    ``groups`` each image's patient group (the split's), ``settings`` config evaluation.confounders."""
    groups = pd.Series(np.asarray(groups).astype(str), index=table.index)
    checks = {}
    for covariate in COVARIATES:
        has = known(table, covariate)
        checks[covariate] = covariate_check(table.loc[has, covariate].astype(str), table.loc[has, "label"].astype(str),
                                            groups[has], settings["folds"], settings["seed"])  # fmt: skip
        checks[covariate]["n_unknown"] = int((~has).sum())
    flagged = [c for c in settings["flag_covariates"]
               if (checks[c].get("balanced_accuracy") or 0) >= settings["flag_balanced_accuracy"]]  # fmt: skip
    return json_safe({"n_images": int(len(table)), "counts": counts(table), "covariates": checks,
                      "flag_balanced_accuracy": settings["flag_balanced_accuracy"],
                      "flag_covariates": list(settings["flag_covariates"]), "flagged": flagged, "flag": bool(flagged),
                      "sentence": sentence(checks, flagged, settings)})  # fmt: skip


def _fmt(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def sentence(checks: Mapping[str, Mapping[str, Any]], flagged: Sequence[str], settings: Mapping[str, Any]) -> str:
    """The verdict's confounder line, in words."""
    facts = "; ".join(
        f"{c}: balanced accuracy {_fmt(checks[c].get('balanced_accuracy'))}, Cramér's V {_fmt(checks[c]['cramers_v'])}"
        f" ({checks[c]['n_known']} known, {checks[c]['n_unknown']} unknown)"
        for c in COVARIATES
    )
    if flagged:
        return (f"Confounder flagged: {', '.join(flagged)} alone predict(s) the label (cross-validated balanced "
                f"accuracy >= {settings['flag_balanced_accuracy']:.2f}); a model can score by reading "
                f"{' / '.join(flagged)} off the film instead of the disease. {facts}.")  # fmt: skip
    unflagged = [c for c in COVARIATES if c not in settings["flag_covariates"]]
    aside = f" ({', '.join(unflagged)} measured, not flagged here: see the source check)" if unflagged else ""
    return f"No covariate confounder flagged{aside}: {facts}."
