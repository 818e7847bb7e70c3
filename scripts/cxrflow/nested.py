"""Nested cross-validation: inner folds choose the settings, outer folds estimate the score.

Choosing learning rate or dropout by the test score and then reporting that test
score is optimistic: the choice has seen the test set. Here the choice for each
outer fold is made on that fold's *training* patients only:

1. the outer training split is cut into ``inner_folds`` patient-grouped, label-
   stratified folds (scikit-learn ``StratifiedGroupKFold``, groups = the split's
   patient/near-duplicate groups, so no patient or radiograph straddles an inner
   fold);
2. every grid point (``ParameterGrid`` order: keys sorted, the last key varying
   fastest) is trained on each inner-train part and scored by macro F1 on the
   inner-validation part (over the classes present there);
3. the point with the highest mean inner score wins, ties going to the first in
   grid order; it is retrained on the whole outer training split (outer
   validation monitored as usual) and tested once on the outer test split.

The outer test scores, one per outer fold, are the estimate (mean ± sd), and the
choice of each fold is reported beside its score: different choices per fold say
the grid's optimum is not well determined.

**Why StratifiedGroupKFold here and not the split's stable hash?** Stability under
data additions buys nothing inside: a changed outer training split retrains every
inner model anyway. With few patients per inner fold, exact stratification does
matter (a hash can leave an inner-validation part without a class).

Keras is imported only inside :func:`train_and_score_main`, after the caller has
set KERAS_BACKEND.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import ParameterGrid, StratifiedGroupKFold

from .manifest import write_csv_atomic
from .split import SPLIT_FILE_COLUMNS

if TYPE_CHECKING:  # train imports keras: not at parse time, where common.smk imports this module
    from .train import TrainingSettings

LOG = logging.getLogger(__name__)

TIE_TOLERANCE = 1e-9  # mean inner scores this close count as equal
SELECTION_METRIC = "macro F1 on the inner validation part (classes present there), mean over inner folds"


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid, in ParameterGrid order; [] for an empty grid (no selection)."""
    if not grid:
        return []
    return [dict(point) for point in ParameterGrid({k: list(v) for k, v in grid.items()})]


def training_settings(experiment: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment with a grid point's values put in (the settings one model is trained with)."""
    unknown = sorted(set(params) - set(experiment))
    if unknown:
        raise ValueError(f"grid settings {unknown} are not experiment settings")
    return {**experiment, **params}


def inner_validation_masks(labels: Sequence[str], groups: Sequence[str], n_folds: int, seed: int) -> list[np.ndarray]:
    """One boolean mask per inner fold marking its validation images (StratifiedGroupKFold, shuffled by seed)."""
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups).astype(str)
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise ValueError(f"the outer training split has {n_groups} patient groups, fewer than inner_folds={n_folds}")
    cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    masks = []
    for _, val_index in cv.split(np.zeros(len(labels)), labels, groups):
        mask = np.zeros(len(labels), dtype=bool)
        mask[val_index] = True
        masks.append(mask)
    return masks


def inner_split(
    outer_train: pd.DataFrame, groups: Mapping[str, str], n_folds: int, inner: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inner train, inner validation) of inner fold ``inner`` of an outer training split.

    ``groups`` maps image_id -> split group (``assignments.csv``), so near-duplicate
    clusters stay whole as in the outer split.
    """
    if not 0 <= inner < n_folds:
        raise ValueError(f"inner fold {inner} outside 0..{n_folds - 1}")
    missing = sorted(set(outer_train["image_id"]) - set(groups))
    if missing:
        raise ValueError(f"images without a split group: {missing[:10]}")
    mask = inner_validation_masks(outer_train["label"], outer_train["image_id"].map(groups), n_folds, seed)[inner]
    columns = list(SPLIT_FILE_COLUMNS)
    outer_train = outer_train.assign(group=outer_train["image_id"].map(groups))
    return outer_train.loc[~mask, columns], outer_train.loc[mask, columns]


def write_inner_split(
    outer_train_csv: str | Path,
    assignments_csv: str | Path,
    n_folds: int,
    inner: int,
    seed: int,
    train_path: str | Path,
    val_path: str | Path,
) -> tuple[int, int]:
    """File wrapper of :func:`inner_split`; returns the image counts (train, val)."""
    outer = pd.read_csv(outer_train_csv, dtype=str, keep_default_na=False)
    assignments = pd.read_csv(assignments_csv, dtype=str, keep_default_na=False)
    train, val = inner_split(outer, dict(zip(assignments["image_id"], assignments["group"])), n_folds, inner, seed)
    write_csv_atomic(train, Path(train_path))
    write_csv_atomic(val, Path(val_path))
    LOG.info("inner fold %d of %d: %d train, %d validation images", inner, n_folds, len(train), len(val))
    return len(train), len(val)


def inner_score(predictions: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    """Macro F1 over the classes present among the true labels (a class absent from a small inner
    validation part would add the same 0 to every grid point), and accuracy."""
    y, p = predictions["true_label"].astype(str), predictions["predicted_label"].astype(str)
    present = [c for c in classes if (y == c).any()]
    return {
        "macro_f1": float(f1_score(y, p, labels=present, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y, p)),
        "classes_scored": present,
        "n_images": int(len(predictions)),
    }


def select(points: Sequence[Mapping[str, Any]], scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The choice of one outer fold from the inner scores (score.json dicts with point, inner, macro_f1).

    Mean inner macro F1 per point; the highest wins, ties (within TIE_TOLERANCE) -> first in grid order.
    """
    if not points:
        raise ValueError("an empty grid has nothing to select")
    by_point: dict[int, dict[int, float]] = {i: {} for i in range(len(points))}
    for s in scores:
        if s["point"] not in by_point:
            raise ValueError(f"score of grid point {s['point']}, but the grid has {len(points)} points")
        by_point[s["point"]][s["inner"]] = float(s["macro_f1"])
    inner = sorted({s["inner"] for s in scores})
    rows = []
    for i, params in enumerate(points):
        missing = sorted(set(inner) - set(by_point[i]))
        if missing or not by_point[i]:
            raise ValueError(f"grid point {i} has no score for inner folds {missing or inner}")
        values = [by_point[i][j] for j in inner]
        rows.append(
            {
                "index": i,
                "params": dict(params),
                "scores": values,
                "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            }
        )
    top = max(r["mean"] for r in rows)
    # ties -> lowest index; the tolerance keeps float noise (0.5+0.7 vs 0.8+0.4) from breaking a tie
    best = next(r for r in rows if r["mean"] >= top - TIE_TOLERANCE)
    return {
        "metric": SELECTION_METRIC,
        "inner_folds": len(inner),
        "tie_break": "first in grid order",
        "points": rows,
        "chosen": {k: best[k] for k in ("index", "params", "mean", "sd")},
    }


def apply_choice(experiment: Mapping[str, Any], choice: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment with the chosen grid point's settings (what the outer fold's model is trained with)."""
    return training_settings(experiment, choice["chosen"]["params"])


def read_choice(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def nested_table(
    choices: Sequence[Mapping[str, Any]], fold_metrics: Sequence[Mapping[str, Any]], classes: Sequence[str]
) -> pd.DataFrame:
    """One row per outer fold: the chosen settings, their inner score, and the outer test scores;
    then rows ``mean`` and ``sd`` (ddof=1) of the outer scores: the nested-CV estimate."""
    if len(choices) != len(fold_metrics):
        raise ValueError(f"{len(choices)} choices but {len(fold_metrics)} outer folds evaluated")
    keys = sorted({k for c in choices for k in c["chosen"]["params"]})
    rows = []
    for k, (choice, fold) in enumerate(zip(choices, fold_metrics)):
        m = fold["metrics"]
        row: dict[str, Any] = {"fold": str(k), "grid_point": choice["chosen"]["index"]}
        row.update({key: choice["chosen"]["params"].get(key) for key in keys})
        row.update(
            {
                "inner_macro_f1": choice["chosen"]["mean"],
                "inner_macro_f1_sd": choice["chosen"]["sd"],
                "outer_macro_f1": m["macro avg"]["f1-score"],
                "outer_accuracy": m["accuracy"],
            }
        )
        row.update({f"outer_f1_{c}": m["per_class"][c]["f1-score"] for c in classes})
        rows.append(row)
    outer = ["outer_macro_f1", "outer_accuracy", *(f"outer_f1_{c}" for c in classes)]
    values = pd.DataFrame(rows)[outer].astype(float)
    sd = values.std(ddof=1) if len(values) > 1 else pd.Series(np.nan, index=outer)
    rows += [{"fold": "mean", **values.mean().to_dict()}, {"fold": "sd", **sd.to_dict()}]
    table = pd.DataFrame(rows, columns=list(rows[0]))
    table["grid_point"] = table["grid_point"].astype("Int64")  # an index, also on the mean/sd rows (empty)
    return table


def nested_summary(
    choices: Sequence[Mapping[str, Any]], fold_metrics: Sequence[Mapping[str, Any]], classes: Sequence[str]
) -> dict[str, Any]:
    """metrics.json section: the outer estimate (mean ± sd of outer macro F1 and accuracy) and each fold's choice."""
    f1 = [float(f["metrics"]["macro avg"]["f1-score"]) for f in fold_metrics]
    acc = [float(f["metrics"]["accuracy"]) for f in fold_metrics]

    def spread(values: list[float]) -> dict[str, Any]:
        return {
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": values,
        }

    return {
        "selection_metric": SELECTION_METRIC,
        "outer_folds": len(fold_metrics),
        "outer_macro_f1": spread(f1),
        "outer_accuracy": spread(acc),
        "choices": [{"fold": k, **c["chosen"]} for k, c in enumerate(choices)],
        "grid_scores": [c["points"] for c in choices],
    }


def train_and_score_main(
    settings: TrainingSettings,
    grid_point: Mapping[str, Any],
    splits: Mapping[str, str],
    outputs: Mapping[str, str],
    run: Mapping[str, Any],
    scratch_model: str,
    log_path: str,
    workers: int = 1,
    weights_file: str | None = None,
) -> dict[str, Any]:
    """Entry point of train_inner (KERAS_BACKEND already set): train one grid point on one inner fold,
    score it on the inner validation part. The model itself is not kept: only its score is needed.

    ``settings`` is the rule's ``train.TrainingSettings``; ``splits`` its train and val
    inputs, ``outputs`` its score, predictions, history and training record; ``run`` {point, inner};
    ``weights_file`` the fetched ImageNet file of a ``weights: imagenet`` experiment.
    """
    import keras

    from .rule_log import open_log
    from .evaluate import predict_split
    from .train import train

    log = open_log(log_path)
    point, inner, classes = int(run["point"]), int(run["inner"]), list(settings.classes)
    experiment = training_settings(settings.experiment, grid_point)
    log.info("grid point %d %s, inner fold %d", point, dict(grid_point), inner)
    train(experiment, classes, splits["train"], splits["val"], scratch_model, outputs["history"],
          settings.checkpoint_dir, log, workers, weights_file=weights_file,
          training_path=outputs.get("training"))  # fmt: skip
    model = keras.saving.load_model(scratch_model)
    predictions, _ = predict_split(model, splits["val"], classes, experiment, outputs["predictions"])
    score = {"point": point, "inner": inner, "params": dict(grid_point), **inner_score(predictions, classes)}
    Path(outputs["score"]).write_text(json.dumps(score, indent=2, allow_nan=False) + "\n")
    Path(scratch_model).unlink()
    log.info("inner macro F1 %.4f on %d images", score["macro_f1"], score["n_images"])
    return score


def select_main(
    points: Sequence[Mapping[str, Any]], score_paths: Sequence[str], fold: int, output: str
) -> dict[str, Any]:
    """Rule select_params: :func:`select` over one outer fold's inner scores, to choice.json."""
    scores = [json.loads(Path(p).read_text()) for p in score_paths]
    choice = {"outer_fold": int(fold), **select(list(points), scores)}
    Path(output).write_text(json.dumps(choice, indent=2, allow_nan=False) + "\n")
    LOG.info(
        "outer fold %s: chose grid point %d %s (mean inner score %.4f)",
        fold,
        choice["chosen"]["index"],
        choice["chosen"]["params"],
        choice["chosen"]["mean"],
    )
    return choice


def nested_table_main(
    choice_paths: Sequence[str], metrics_paths: Sequence[str], classes: Sequence[str], output: str
) -> pd.DataFrame:
    """Rule nested_table: :func:`nested_table` of the outer folds' choices and test metrics, to a CSV."""
    choices = [read_choice(p) for p in choice_paths]
    metrics = [json.loads(Path(p).read_text()) for p in metrics_paths]
    table = nested_table(choices, metrics, list(classes))
    table.to_csv(output, index=False, float_format="%.6g")  # %.6g: a learning rate of 1e-5 stays readable
    LOG.info("nested CV table of %d outer folds written to %s", len(choices), output)
    return table


def train_main(choice_path: str | None, settings: TrainingSettings, *train_args: Any, **train_kwargs: Any) -> None:
    """Rules train and train_border_only (KERAS_BACKEND already set): ``train.main`` with, for a nested
    experiment, its outer fold's chosen grid point (``choice_path``) put into the ``settings``' experiment."""
    from dataclasses import replace

    from .train import main

    if choice_path is not None:
        settings = replace(settings, experiment=apply_choice(settings.experiment, read_choice(choice_path)))
    main(settings, *train_args, **train_kwargs)
