"""Audits that tell a reviewer whether a score can be trusted.

* ``source_predictability``: if the collection an image came from can be read off
  the pixels, and collection and label coincide, a classifier can score well by
  recognising the collection. Both halves are measured: grouped CV accuracy of
  predicting the source, and Cramér's V between source and label.
* ``leakage_report``: counts patients (and duplicate groups) that appear in more
  than one split of a fold: anything but 0 invalidates the test score.
* ``source_check``: ``source_predictability`` on the manifest's thumbnails, with the
  flag and sentence of ``data_audit.json``.
* ``trust_table``: one row per experiment and fold with every reason to doubt its
  score (``results/trust_summary.csv``, the first thing the report shows).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats.contingency import association
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import baselines, copies_figure
from .manifest import raw_files, read_manifest
from .metrics import json_safe, write_json
from .split import fold_columns_of, patient_keys

LOG = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
# lbfgs on a few thousand standardised pixel features needs more than sklearn's 100 iterations.
_MAX_ITER = 5000
_EXAMPLES = 10  # shared patient ids listed per split pair; the count is always complete


def _contingency(sources: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.crosstab(pd.Series(sources, name="source"), pd.Series(labels, name="label"))


def source_predictability(
    features: np.ndarray,
    sources: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    seed: int,
    folds: int,
) -> dict[str, Any]:
    """Can the source be predicted from image features, and does the source give away the label?

    Returns grouped (patients never straddle folds) cross-validated accuracy and
    balanced accuracy of a logistic regression predicting the source, the majority
    and chance baselines, Cramér's V of source x label and its contingency table.
    With a single source there is nothing to predict: ``skipped`` says so.
    """
    X = np.asarray(features, dtype=float)
    src = np.asarray(sources).astype(str)
    lab = np.asarray(labels).astype(str)
    grp = np.asarray(groups).astype(str)
    if not (len(X) == len(src) == len(lab) == len(grp)):
        raise ValueError(
            f"lengths differ: features {len(X)}, sources {len(src)}, labels {len(lab)}, groups {len(grp)}"
        )
    table = _contingency(src, lab)
    counts = pd.Series(src).value_counts()
    out: dict[str, Any] = {
        "n_images": int(len(src)),
        "n_sources": int(len(counts)),
        "source_counts": {str(k): int(v) for k, v in counts.items()},
        "contingency": {str(s): {str(c): int(n) for c, n in row.items()} for s, row in table.iterrows()},
        # V = 1: every source holds one label only (source alone decides the label).
        "cramers_v": (
            float(association(table.to_numpy(), method="cramer")) if min(table.shape) > 1 else float("nan")
        ),
        "majority_accuracy": float(counts.iloc[0] / len(src)),
        "chance_balanced_accuracy": float(1 / len(counts)),
    }
    if len(counts) < 2:
        out["skipped"] = f"only one source ({counts.index[0]}): source predictability is undefined"
        return out
    n_groups = len(set(grp))
    if n_groups < folds:
        raise ValueError(f"{n_groups} patient groups cannot fill {folds} folds")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=_MAX_ITER, random_state=seed))
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, X, src, groups=grp, cv=cv)
    out.update(
        {
            "folds": folds,
            "accuracy": float(accuracy_score(src, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(src, predicted)),
        }
    )
    return out


def leakage_report(assignments: pd.DataFrame, pairs: pd.DataFrame | None = None) -> dict[str, Any]:
    """Patients and groups shared between train/val/test, per fold; ``ok`` only when all counts are 0.

    Patients are keyed by source + patient_id (ids are only unique within a
    collection, as in ``split``); images without a patient id count as their own
    patient. With ``pairs`` (``dedup.near_duplicate_pairs``), near-duplicate pairs
    whose two images sit in different splits are counted as leaks too.
    """
    missing = {"image_id", "patient_id", "source", "group"} - set(assignments.columns)
    if missing:
        raise ValueError(f"assignments lack columns {sorted(missing)}")
    if assignments["image_id"].duplicated().any():
        dup = assignments.loc[assignments["image_id"].duplicated(), "image_id"].head(5).tolist()
        raise ValueError(f"image ids occur more than once in assignments: {dup}")
    fold_cols = fold_columns_of(assignments)
    patient = patient_keys(assignments).to_numpy()
    if pairs is not None:
        unknown = (set(pairs["image_id_a"].astype(str)) | set(pairs["image_id_b"].astype(str))) - set(
            assignments["image_id"].astype(str)
        )
        if unknown:
            raise ValueError(f"pairs name images absent from the assignments: {sorted(unknown)[:5]}")
    report: dict[str, Any] = {"folds": {}}
    total = 0
    for col in fold_cols:
        split = assignments[col]
        unknown = set(split.dropna().astype(str)) - set(SPLITS)
        if unknown or split.isna().any():
            raise ValueError(f"{col} has values outside {SPLITS}: {sorted(unknown) or ['<missing>']}")
        fold: dict[str, Any] = {
            "n_images": {s: int((split == s).sum()) for s in SPLITS},
            "shared_patients": {},
            "shared_groups": {},
            "examples": {},
        }
        for a, b in combinations(SPLITS, 2):
            key = f"{a}/{b}"
            shared = sorted(set(patient[split == a]) & set(patient[split == b]))
            groups = set(assignments.loc[split == a, "group"]) & set(assignments.loc[split == b, "group"])
            fold["shared_patients"][key] = len(shared)
            fold["shared_groups"][key] = len(groups)
            fold["examples"][key] = shared[:_EXAMPLES]
            total += len(shared) + len(groups)
        if pairs is not None:
            where = dict(zip(assignments["image_id"].astype(str), split.astype(str)))
            a_split = pairs["image_id_a"].astype(str).map(where)
            b_split = pairs["image_id_b"].astype(str).map(where)
            fold["split_duplicate_pairs"] = int((a_split != b_split).sum())
            total += fold["split_duplicate_pairs"]
        report["folds"][col] = fold
    report["total_shared"] = total
    report["ok"] = total == 0
    return report


def thumbnail_rows(paths: Sequence[str], size: int, cache_dir: str | Path | None = None) -> np.ndarray:
    """``baselines.thumbnail_features`` of the images at ``paths``, read one at a time (never all in
    memory) and, with ``cache_dir``, remembered by (path, size, mtime, ctime) of each file: after a
    dataset update only new or rewritten images are read again. The same numbers either way."""
    cache = Path(cache_dir) / f"thumbnails_{size}.npz" if cache_dir is not None else None
    known: dict[tuple, np.ndarray] = {}
    if cache is not None:
        try:
            with np.load(cache, allow_pickle=False) as stored:
                known = {(str(p), *map(int, st)): row for p, st, row in
                         zip(stored["paths"], stored["stats"], stored["features"])}  # fmt: skip
        except (OSError, ValueError, KeyError):
            known = {}
    out = np.empty((len(paths), size * size), np.float32)
    stats = np.zeros((len(paths), 3), np.int64)
    shape = None
    for k, path in enumerate(paths):
        try:
            st = Path(path).stat()
            stats[k] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            pass
        row = known.get((str(path), *map(int, stats[k])))
        if row is not None and shape is not None:
            out[k] = row
            continue
        img = baselines.load_gray_images([path])
        if shape is not None and img.shape[1:] != shape:
            raise ValueError(f"{path} is {img.shape[1:]}, the first image is {shape}: preprocess first")
        shape = img.shape[1:]
        out[k] = baselines.thumbnail_features(img, size)[0]
    if not len(paths):
        raise ValueError("no images given")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, paths=np.asarray([str(p) for p in paths]), stats=stats, features=out)
        tmp.replace(cache)
    return out


def source_check(
    table: pd.DataFrame, groups: pd.Series, thumbnail_size: int, settings: Mapping[str, Any],
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``source_predictability`` on thumbnails of ``table`` (manifest rows), grouped by split group,
    plus a flag and a sentence. ``settings`` is the config's ``audit.source_predictability``;
    ``cache_dir`` remembers the thumbnails (``thumbnail_rows``).

    Flagged only when both halves hold: sources coincide with labels (Cramér's V) and
    the source is recognisable from the pixels (balanced accuracy); either alone is harmless.
    """
    features = thumbnail_rows(list(table["output_path"]), thumbnail_size, cache_dir)
    # Every source needs a group in each CV fold's training part, or the regression cannot learn it.
    per_source = groups.groupby(table["source"]).nunique()
    if len(per_source) > 1 and per_source.min() < settings["folds"]:
        result: dict[str, Any] = {
            "skipped": f"source {per_source.idxmin()} has {per_source.min()} patient groups, "
            f"fewer than the {settings['folds']} CV folds"
        }
    else:
        result = source_predictability(features, table["source"], table["label"], groups,
                                       seed=settings["seed"], folds=settings["folds"])  # fmt: skip
    if "skipped" in result:
        return {**result, "flag": False, "sentence": f"Source check skipped: {result['skipped']}."}
    v = result["cramers_v"] if np.isfinite(result["cramers_v"]) else 0.0
    flag = bool(v >= settings["flag_cramers_v"] and result["balanced_accuracy"] >= settings["flag_balanced_accuracy"])
    facts = (f"the source is predicted from {thumbnail_size}x{thumbnail_size} thumbnails with balanced accuracy "
             f"{result['balanced_accuracy']:.2f} (chance {result['chance_balanced_accuracy']:.2f}) and Cramér's V "
             f"of source x label is {v:.2f}")  # fmt: skip
    sentence = (f"Sources coincide with labels: {facts}; a model can score by recognising the collection."
                if flag else f"No source shortcut flagged: {facts}.")  # fmt: skip
    return {**result, "flag": flag, "sentence": sentence}


def data_audit(manifest: pd.DataFrame, assignments: pd.DataFrame, pairs: pd.DataFrame, thumbnail_size: int,
               settings: Mapping[str, Any], cache_dir: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """``data_audit.json``: leakage between splits, duplicate pairs and the source check of the ok images."""
    ok = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    leakage = leakage_report(assignments, pairs)
    groups = ok["image_id"].map(dict(zip(assignments["image_id"], assignments["group"])))
    if groups.isna().any():
        raise ValueError(f"ok images missing from the assignments: {ok.loc[groups.isna(), 'image_id'].tolist()[:5]}")
    source = source_check(ok, groups, thumbnail_size, settings, cache_dir)
    return json_safe({"leakage": leakage, "duplicate_pairs": int(len(pairs)), "source_predictability": source})


TRUST_COLUMNS = ("experiment", "fold", "class", "patients_shared", "duplicates_across_splits", "model_f1",
                 "model_f1_low", "model_f1_high", "ci_width", "thumbnail_f1", "thumbnail_margin", "border_ring_f1",
                 "border_ring_margin", "source_flag", "test_sources", "external_f1", "external_f1_low",
                 "external_f1_high", "duplicates_internal_external", "border_only_f1", "full_macro_f1",
                 "border_only_macro_f1", "chance_macro_f1", "shortcut_verdict", "shortcut_flag",
                 "experiment_shortcut_verdict", "experiment_shortcut_flag", "folds_flagged",
                 "external_border_only_f1", "external_shortcut_verdict", "external_shortcut_flag")  # fmt: skip


def external_columns(fold: int, split_audit: Mapping[str, Any], external: Mapping[str, Any] | None,
                     positive: str) -> dict[str, Any]:  # fmt: skip
    """External test F1 of the positive class with its CI, and near-duplicate pairs between the fold's
    training data (train + val) and the external set; empty without test_sources."""
    if external is None:
        return {"test_sources": None, "external_f1": None, "external_f1_low": None, "external_f1_high": None,
                "duplicates_internal_external": None}  # fmt: skip
    ci = external["ci"]["per_class"][positive]["f1"]
    dups = split_audit["external"]["duplicate_pairs_per_fold"][f"fold{fold}"]["train_val"]
    return {"test_sources": " ".join(external.get("test_sources") or []),
            "external_f1": external["metrics"]["per_class"][positive]["f1-score"],
            "external_f1_low": ci["low"], "external_f1_high": ci["high"], "duplicates_internal_external": dups}  # fmt: skip


def shortcut_columns(shortcut: Mapping[str, Any] | None, positive: str) -> dict[str, Any]:
    """The border-only control beside the model (``shortcut_audit.json``); ``not run`` when it is disabled."""
    if shortcut is None:
        return {"border_only_f1": None, "full_macro_f1": None, "border_only_macro_f1": None,
                "chance_macro_f1": None, "shortcut_verdict": "not run", "shortcut_flag": None}  # fmt: skip
    return {
        "border_only_f1": shortcut["border_only"]["f1"][positive],
        "full_macro_f1": shortcut["full"]["macro_f1"]["estimate"],
        "border_only_macro_f1": shortcut["border_only"]["macro_f1"]["estimate"],
        "chance_macro_f1": shortcut["chance"]["macro_f1"],
        "shortcut_verdict": shortcut["verdict"],
        "shortcut_flag": shortcut["flag"],
    }


def experiment_shortcut_columns(audit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The experiment's verdict over all its folds pooled (the same in each of its rows), and how many of
    its folds flagged on their own, e.g. "1/5"; ``not run`` when the control is disabled."""
    if audit is None:
        return {"experiment_shortcut_verdict": "not run", "experiment_shortcut_flag": None, "folds_flagged": None}
    return {"experiment_shortcut_verdict": audit["verdict"], "experiment_shortcut_flag": audit["flag"],
            "folds_flagged": f"{audit['flagged_folds']}/{audit['folds']}"}  # fmt: skip


def external_shortcut_columns(audit: Mapping[str, Any] | None, positive: str) -> dict[str, Any]:
    """The border-only control on the external test set beside ``external_f1``; empty without one."""
    if audit is None:
        return {"external_border_only_f1": None, "external_shortcut_verdict": None, "external_shortcut_flag": None}
    return {"external_border_only_f1": audit["border_only"]["f1"][positive],
            "external_shortcut_verdict": audit["verdict"], "external_shortcut_flag": audit["flag"]}  # fmt: skip


def trust_row(experiment: str, fold: int, fold_metrics: Mapping[str, Any], fold_baselines: Mapping[str, Any],
              data_audit: Mapping[str, Any], positive: str, split_audit: Mapping[str, Any] | None = None,
              external: Mapping[str, Any] | None = None, shortcut: Mapping[str, Any] | None = None,
              experiment_shortcut: Mapping[str, Any] | None = None,
              external_shortcut: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The summary row of one model; margins are model F1 - baseline F1 of the positive class.

    ``split_audit`` is the JSON whose ``leakage`` covers the model's split (the data
    audit for the shared split, the experiment's splits/audit.json for its own);
    ``external`` its external metrics.json (None without test_sources); ``shortcut``
    its shortcut_audit.json, ``experiment_shortcut`` its experiment's over all folds and
    ``external_shortcut`` the one on the external test set (None when audit.border_only
    is disabled, the last also without test_sources).
    """
    split_audit = data_audit if split_audit is None else split_audit
    leak = split_audit["leakage"]["folds"][f"fold{fold}"]
    if "ci" not in fold_metrics:
        raise ValueError(f"{experiment} fold {fold}: metrics.json has no 'ci' (re-run evaluate)")
    ci = fold_metrics["ci"]["per_class"][positive]["f1"]
    low, high = ci["low"], ci["high"]
    return {
        "experiment": experiment,
        "fold": fold,
        "class": positive,
        "patients_shared": sum(leak["shared_patients"].values()),
        "duplicates_across_splits": leak.get("split_duplicate_pairs", 0),
        "model_f1": fold_baselines["model"]["f1"][positive],
        "model_f1_low": low,
        "model_f1_high": high,
        "ci_width": None if low is None or high is None else high - low,
        "thumbnail_f1": fold_baselines["thumbnail"]["f1"][positive],
        "thumbnail_margin": fold_baselines["thumbnail"]["margin_f1"],
        "border_ring_f1": fold_baselines["border_ring"]["f1"][positive],
        "border_ring_margin": fold_baselines["border_ring"]["margin_f1"],
        "source_flag": data_audit["source_predictability"]["flag"],
        **external_columns(fold, split_audit, external, positive),
        **shortcut_columns(shortcut, positive),
        **experiment_shortcut_columns(experiment_shortcut),
        **external_shortcut_columns(external_shortcut, positive),
    }


def _read(path: str | None) -> Any:
    return None if path is None else json.loads(Path(path).read_text())


def trust_table(rows: Sequence[tuple[str, int]], metrics_paths: Sequence[str], baseline_paths: Sequence[str],
                audit_path: str, positive: str, split_audit_paths: Sequence[str | None] | None = None,
                external_paths: Sequence[str | None] | None = None,
                shortcut_paths: Sequence[str | None] | None = None,
                experiment_shortcut_paths: Sequence[str | None] | None = None,
                external_shortcut_paths: Sequence[str | None] | None = None) -> pd.DataFrame:  # fmt: skip
    """``trust_summary.csv``: ``trust_row`` of every (experiment, fold) in ``rows``, the path lists aligned
    with it (None entries, or no list at all: nothing of that kind for the row)."""
    split_audit_paths = split_audit_paths or [None] * len(rows)
    external_paths = external_paths or [None] * len(rows)
    shortcut_paths = shortcut_paths or [None] * len(rows)
    experiment_shortcut_paths = experiment_shortcut_paths or [None] * len(rows)
    external_shortcut_paths = external_shortcut_paths or [None] * len(rows)
    lists = {"metrics": metrics_paths, "baselines": baseline_paths, "split audits": split_audit_paths,
             "external entries": external_paths, "shortcut audits": shortcut_paths,
             "experiment shortcut audits": experiment_shortcut_paths,
             "external shortcut audits": external_shortcut_paths}  # fmt: skip
    if any(len(paths) != len(rows) for paths in lists.values()):
        counts = ", ".join(f"{len(paths)} {name}" for name, paths in lists.items())
        raise ValueError(f"{len(rows)} models but {counts}")
    data_audit = _read(audit_path)
    records = [
        trust_row(e, int(k), *(_read(p) for p in (m, b)), data_audit, positive,
                  *(_read(p) for p in (s, x, c, a, z)))  # fmt: skip
        for (e, k), m, b, s, x, c, a, z in zip(rows, *lists.values())
    ]
    table = pd.DataFrame(records, columns=list(TRUST_COLUMNS))
    table["duplicates_internal_external"] = table["duplicates_internal_external"].astype("Int64")  # a count
    return table


def data_audit_main(manifest_csv: str, assignments_csv: str, duplicates_csv: str, output: str, thumbnail_size: int,
                    settings: Mapping[str, Any], shared_png: str, cache_dir: str | None = None) -> dict[str, Any]:
    """Rule audit_data: :func:`data_audit` of the manifest and the shared split, to data_audit.json, and
    the shared-images figure (copies per source pair, side by side) to ``shared_png``; ``cache_dir``
    remembers the thumbnails between runs."""
    table = read_manifest(manifest_csv)
    assignments = pd.read_csv(assignments_csv, dtype=str, keep_default_na=False)
    pairs = pd.read_csv(duplicates_csv, dtype={"image_id_a": str, "image_id_b": str})
    result = data_audit(table, assignments, pairs, thumbnail_size, settings, cache_dir)
    write_json(result, output)
    leakage, source = result["leakage"], result["source_predictability"]
    LOG.info("leakage ok=%s (total shared %d); %s", leakage["ok"], leakage["total_shared"], source["sentence"])
    copies_figure.shared_figure(pairs, dict(zip(table["image_id"].astype(str), raw_files(table))), shared_png)
    for row in copies_figure.shared_by_source(pairs).itertuples(index=False):
        LOG.info("shared %s/%s: %d pairs (%d exact)", row.source_a, row.source_b, row.pairs, row.exact)
    return result


def trust_summary_main(output: str, *args: Any) -> pd.DataFrame:
    """Rule trust_summary: :func:`trust_table` (same arguments) written to trust_summary.csv."""
    table = trust_table(*args)
    table.to_csv(output, index=False, float_format="%.4f")
    LOG.info("trust summary of %d model(s) written to %s", len(table), output)
    return table
