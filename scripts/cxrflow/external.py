"""External validation: hold whole sources out, split the rest, and compare the two test scores.

A model tested on patients of the hospitals it was trained on can score by what
those hospitals' images share (scanner, protocol, burnt-in markers). Testing on a
collection it never saw measures what survives a change of hospital. So an
experiment with ``test_sources`` gets:

* an **internal split** of the other sources made exactly as the shared split
  (``split.assign_splits``: same seed, same patient hash, so every internal patient
  sits where the shared split with the same folds puts it, and stays there when
  data is added);
* an **external test set**: every ok image of the test sources, for every fold;
* a check that no image, patient or split group is on both sides, and a count of
  near-duplicate radiographs (``results/audit/duplicates.csv``) with one copy in
  the internal sources and one in the external set: a republished image makes the
  "external" test partly internal.

Patients are keyed by ``source:patient_id`` everywhere (ids are only unique within a
collection), so two sources cannot share a patient by id; a shared *radiograph*
is what the duplicate count catches.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import split as cxr_split
from .data_audit import leakage_report
from .manifest import read_manifest, write_csv_atomic
from .results_io import write_json
from .uncertainty import difference_of_independent

LOG = logging.getLogger(__name__)

EXTERNAL_COLUMNS: tuple[str, ...] = cxr_split.SPLIT_FILE_COLUMNS


def external_table(manifest: pd.DataFrame, test_sources: Sequence[str]) -> pd.DataFrame:
    """The external test set: every ok image of the test sources, in split-file columns."""
    ok = manifest[(manifest["status"] == "ok") & manifest["source"].isin(list(test_sources))]
    present = set(ok["source"])
    empty = [s for s in test_sources if s not in present]
    if empty:
        raise ValueError(f"test_sources {empty} have no ok image in the manifest: nothing to test externally")
    out = ok.rename(columns={"output_path": "path"})
    out = out.assign(patient_id=out["patient_id"].fillna("").astype(str))
    out = out.assign(group=cxr_split.patient_keys(out))  # the resampling unit, as a split group
    return out[list(EXTERNAL_COLUMNS)].reset_index(drop=True)


def internal_split(
    manifest: pd.DataFrame,
    test_sources: Sequence[str],
    *,
    extra_groups: Mapping[str, str] | None = None,
    **settings: Any,
) -> pd.DataFrame:
    """``split.assign_splits`` (same ``settings``: seed, sizes, folds, classes) on the sources not held out.

    Duplicate clusters (``extra_groups``) are restricted to the internal images.
    """
    internal = manifest[~manifest["source"].isin(list(test_sources))]
    if not (internal["status"] == "ok").any():
        raise ValueError(f"no ok image outside the test_sources {list(test_sources)}: nothing to train on")
    ids = set(internal.loc[internal["status"] == "ok", "image_id"].astype(str))
    groups = {i: g for i, g in (extra_groups or {}).items() if i in ids}
    return cxr_split.assign_splits(internal, extra_groups=groups, **settings)


def check_disjoint(assignments: pd.DataFrame, external: pd.DataFrame) -> None:
    """Raise ValueError if an image or a patient is both internal and external."""
    images = sorted(set(assignments["image_id"]) & set(external["image_id"]))
    patients = sorted(set(cxr_split.patient_keys(assignments)) & set(cxr_split.patient_keys(external)))
    sources = sorted(set(assignments["source"]) & set(external["source"]))
    for what, shared in (("images", images), ("patients", patients), ("sources", sources)):
        if shared:
            raise ValueError(f"{what} both internal and external: {', '.join(map(str, shared[:20]))}")


def cross_duplicates(pairs: pd.DataFrame, assignments: pd.DataFrame, external: pd.DataFrame) -> pd.DataFrame:
    """Near-duplicate pairs with one copy internal and one external, as (internal_id, external_id, distance)."""
    internal_ids, external_ids = set(assignments["image_id"]), set(external["image_id"])
    a, b = pairs["image_id_a"].astype(str), pairs["image_id_b"].astype(str)
    forward = a.isin(internal_ids) & b.isin(external_ids)
    backward = b.isin(internal_ids) & a.isin(external_ids)
    return pd.DataFrame(
        {
            "internal_id": np.where(forward, a, b)[forward | backward],
            "external_id": np.where(forward, b, a)[forward | backward],
            "distance": pairs["distance"].to_numpy()[forward | backward],
        }
    )


def external_report(
    assignments: pd.DataFrame, external: pd.DataFrame, pairs: pd.DataFrame, classes: Sequence[str]
) -> dict[str, Any]:
    """Counts of the external set and, per fold, near-duplicates between it and each internal split.

    ``duplicate_pairs_per_fold[foldk]["train_val"]`` is the number that matters: copies
    of external test images the fold's model trained or was monitored on.
    """
    check_disjoint(assignments, external)
    cross = cross_duplicates(pairs, assignments, external)
    per_fold: dict[str, dict[str, int]] = {}
    for col in cxr_split.fold_columns_of(assignments):
        where = cross["internal_id"].map(dict(zip(assignments["image_id"], assignments[col])))
        counts = {s: int((where == s).sum()) for s in cxr_split.SPLITS}
        per_fold[col] = {**counts, "train_val": counts["train"] + counts["val"]}
    return {
        "sources": sorted(set(external["source"])),
        "images": int(len(external)),
        "patients": int(cxr_split.patient_keys(external).nunique()),
        "images_per_label": {c: int((external["label"] == c).sum()) for c in classes},
        "shared_images_with_internal": 0,
        "shared_patients_with_internal": 0,
        "duplicate_pairs": int(len(cross)),
        "duplicate_pairs_per_fold": per_fold,
        "duplicate_examples": cross.head(10).to_dict("records"),
    }


def _ci_bounds(fold: Mapping[str, Any], cls: str, metric: str) -> tuple[float | None, float | None]:
    ci = fold.get("ci")
    if not ci:
        return None, None
    if cls == "macro avg":
        bounds = ci.get("macro_f1") or {}
    else:
        bounds = ci["accuracy"] if metric == "accuracy" else ci["per_class"][cls][metric]
    return bounds.get("low"), bounds.get("high")


def _value(fold: Mapping[str, Any], cls: str, metric: str) -> float:
    m = fold["metrics"]
    if metric == "accuracy":
        return float(m["accuracy"])
    if cls == "macro avg" and (fold.get("ci") or {}).get("macro_f1"):
        estimate = fold["ci"]["macro_f1"]["estimate"]  # the core's definition: undefined with a class absent
        return float("nan") if estimate is None else float(estimate)
    section = m["macro avg"] if cls == "macro avg" else m["per_class"][cls]
    return float(section["f1-score"])


SIDE_BY_SIDE_COLUMNS = ("fold", "class", "metric", "internal", "internal_low", "internal_high", "internal_sd",
                        "external", "external_low", "external_high", "external_sd", "external_minus_internal",
                        "difference_low", "difference_high")  # fmt: skip


def side_by_side(
    internal: Sequence[Mapping[str, Any]], external: Sequence[Mapping[str, Any]], classes: Sequence[str]
) -> pd.DataFrame:
    """Internal vs external test scores per fold: F1 per class and macro, accuracy, with bootstrap CIs.

    ``internal``/``external`` are the folds' metrics.json dicts (in fold order). With
    several folds, rows ``fold = "mean"`` give the mean and sd over folds (no CI: the
    per-fold CIs do not combine into one for the mean). The external and internal
    test sets hold different patients, so the difference's interval (``difference_low``,
    ``difference_high``) combines the two independent intervals by MOVER
    (``uncertainty.difference_of_independent``), not by pairing.
    """
    if len(internal) != len(external):
        raise ValueError(f"{len(internal)} internal but {len(external)} external fold results")
    keys = [(c, "f1") for c in classes] + [("macro avg", "f1"), ("all", "accuracy")]
    rows = []
    for k, (i_fold, e_fold) in enumerate(zip(internal, external)):
        for cls, metric in keys:
            i_low, i_high = _ci_bounds(i_fold, cls, metric)
            e_low, e_high = _ci_bounds(e_fold, cls, metric)
            i_val, e_val = _value(i_fold, cls, metric), _value(e_fold, cls, metric)
            diff = difference_of_independent(
                {"estimate": e_val, "low": e_low, "high": e_high}, {"estimate": i_val, "low": i_low, "high": i_high}
            )
            rows.append(
                {
                    "fold": str(k),
                    "class": cls,
                    "metric": metric,
                    "internal": i_val,
                    "internal_low": i_low,
                    "internal_high": i_high,
                    "external": e_val,
                    "external_low": e_low,
                    "external_high": e_high,
                    "external_minus_internal": e_val - i_val,
                    "difference_low": diff["low"],
                    "difference_high": diff["high"],
                }
            )
    table = pd.DataFrame(rows, columns=list(SIDE_BY_SIDE_COLUMNS))
    if len(internal) > 1:
        means = []
        for (cls, metric), part in table.groupby(["class", "metric"], sort=False):
            means.append(
                {
                    "fold": "mean",
                    "class": cls,
                    "metric": metric,
                    "internal": part["internal"].mean(),
                    "internal_sd": part["internal"].std(ddof=1),
                    "external": part["external"].mean(),
                    "external_sd": part["external"].std(ddof=1),
                    "external_minus_internal": part["external_minus_internal"].mean(),
                }
            )
        table = pd.concat([table, pd.DataFrame(means, columns=list(SIDE_BY_SIDE_COLUMNS))], ignore_index=True)
    return table


def experiment_split_main(
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    split: Mapping[str, Any],
    folds: int,
    test_sources: Sequence[str],
    classes: Sequence[str],
) -> dict[str, Any]:
    """Rule experiment_split: an experiment's own split of the internal sources (``split``: the config's
    split section; ``folds`` the experiment's), its external test set, and their audit.json. ``inputs``
    are the rule's: manifest, duplicates (csv) and duplicate_groups (json) of make_splits.

    The near-duplicate clusters of make_splits are kept whole inside the internal
    split, and pairs reaching across to the external set are counted.
    """
    classes, test_sources = list(classes), list(test_sources)
    table = read_manifest(inputs["manifest"])
    groups = json.loads(Path(inputs["duplicate_groups"]).read_text())
    pairs = pd.read_csv(inputs["duplicates"], dtype={"image_id_a": str, "image_id_b": str})
    assignments = internal_split(
        table,
        test_sources,
        seed=split["seed"],
        test_size=split["test_size"],
        val_size=split["val_size"],
        folds=folds,
        classes=classes,
        extra_groups=groups,
    )
    cxr_split.check_no_leakage(assignments)
    held_out = (external_table(table, test_sources) if test_sources
                else pd.DataFrame(columns=list(EXTERNAL_COLUMNS)))  # fmt: skip
    ids = set(assignments["image_id"])
    internal_pairs = pairs[pairs["image_id_a"].isin(ids) & pairs["image_id_b"].isin(ids)]
    result = {
        "test_sources": test_sources,
        "internal_sources": sorted(set(assignments["source"])),
        "folds": int(folds),
        "leakage": leakage_report(assignments, internal_pairs),
        "split": cxr_split.split_summary(assignments, classes),
        "external": external_report(assignments, held_out, pairs, classes) if test_sources else None,
    }
    write_csv_atomic(assignments, Path(outputs["assignments"]))
    write_csv_atomic(held_out, Path(outputs["external"]))
    write_json(result, outputs["audit"])
    LOG.info("internal split of %s (%d images, %d folds), external %s: %d images; leakage ok=%s",
             result["internal_sources"], len(assignments), folds, test_sources, len(held_out),
             result["leakage"]["ok"])  # fmt: skip
    for warning in result["split"]["warnings"]:
        LOG.warning(warning)
    return result


def side_by_side_main(
    internal_paths: Sequence[str], external_paths: Sequence[str], classes: Sequence[str], output: str
) -> pd.DataFrame:
    """Rule external_table: :func:`side_by_side` of the folds' internal and external metrics.json."""
    internal = [json.loads(Path(p).read_text()) for p in internal_paths]
    external = [json.loads(Path(p).read_text()) for p in external_paths]
    table = side_by_side(internal, external, list(classes))
    table.to_csv(output, index=False, float_format="%.4f")
    LOG.info("internal vs external over %d fold(s) written to %s", len(internal), output)
    return table
