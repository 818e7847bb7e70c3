"""Audits that tell a reviewer whether a score can be trusted.

* ``source_predictability``: if the collection an image came from can be read off
  the pixels, and collection and label coincide, a classifier can score well by
  recognising the collection. Both halves are measured: grouped CV accuracy of
  predicting the source, and Cramér's V between source and label.
* ``leakage_report``: counts patients (and duplicate groups) that appear in more
  than one split of a fold: anything but 0 invalidates the test score.
* ``source_check``: ``source_predictability`` on the manifest's thumbnails, with the
  flag and sentence of ``data_audit.json``.

The trust summary that puts these beside every model's scores is built from the
per-model records (``record``).
"""

from __future__ import annotations

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
from .results_io import json_safe, write_json
from .split import fold_columns_of, patient_keys

LOG = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
# lbfgs on a few thousand standardised pixel features needs more than sklearn's 100 iterations.
_MAX_ITER = 5000
_EXAMPLES = 10  # shared patient ids listed per split pair; the count is always complete


def _contingency(sources: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.crosstab(pd.Series(sources, name="source"), pd.Series(labels, name="label"))


def bias_corrected_cramers_v(table: np.ndarray) -> float:
    """Bergsma's (2013) bias-corrected Cramér's V of an r x c contingency table; NaN when undefined.

    Plain V of independent labels over a few sources is far from 0 (6 sources x 60
    images: ~0.28); the correction removes the chi-square's expected value under
    independence and shrinks r and c alike, so unrelated source and label give ~0.
    """
    counts = np.asarray(table, dtype=float)
    n = counts.sum()
    r, c = counts.shape
    if n < 2 or min(r, c) < 2:
        return float("nan")
    expected = counts.sum(axis=1, keepdims=True) * counts.sum(axis=0, keepdims=True) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = float(np.nansum(np.where(expected > 0, (counts - expected) ** 2 / expected, 0.0)))
    phi2 = max(0.0, chi2 / n - (r - 1) * (c - 1) / (n - 1))
    r_t = r - (r - 1) ** 2 / (n - 1)
    c_t = c - (c - 1) ** 2 / (n - 1)
    denom = min(r_t - 1, c_t - 1)
    return float(np.sqrt(phi2 / denom)) if denom > 0 else float("nan")


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
        raise ValueError(f"lengths differ: features {len(X)}, sources {len(src)}, labels {len(lab)}, groups {len(grp)}")
    table = _contingency(src, lab)
    counts = pd.Series(src).value_counts()
    out: dict[str, Any] = {
        "n_images": int(len(src)),
        "n_sources": int(len(counts)),
        "source_counts": {str(k): int(v) for k, v in counts.items()},
        "contingency": {str(s): {str(c): int(n) for c, n in row.items()} for s, row in table.iterrows()},
        # V = 1: every source holds one label only (source alone decides the label).
        "cramers_v": (float(association(table.to_numpy(), method="cramer")) if min(table.shape) > 1 else float("nan")),
        "cramers_v_corrected": bias_corrected_cramers_v(table.to_numpy()),
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
    patient. With ``pairs`` (``duplicates.csv``, ``dedup.find_duplicates``), duplicate pairs
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
    table: pd.DataFrame,
    groups: pd.Series,
    thumbnail_size: int,
    settings: Mapping[str, Any],
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``source_predictability`` on thumbnails of ``table`` (manifest rows), grouped by split group,
    plus a flag and a sentence. ``settings`` is the config's ``audit.source_predictability``;
    ``cache_dir`` remembers the thumbnails (``thumbnail_rows``).

    Flagged "confounded" on the bias-corrected Cramér's V of source x label alone
    (``flag_cramers_v``): when source and label are aligned no internal test can tell
    a model that reads the disease from one that recognises the collection. The
    thumbnail classifier (balanced accuracy of predicting the source) is reported
    beside it as supporting evidence, never as a condition.
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
    v_raw = result.get("cramers_v_corrected", float("nan"))
    v = v_raw if v_raw is not None and np.isfinite(v_raw) else 0.0
    flag = bool(v >= settings["flag_cramers_v"])
    facts = f"bias-corrected Cramér's V of source x label is {v:.2f}"
    if "skipped" in result:
        support = f"the thumbnail classifier was skipped ({result['skipped']})"
    else:
        strength = "strong" if result["balanced_accuracy"] >= settings["flag_balanced_accuracy"] else "weak"
        support = (
            f"{strength} supporting evidence: the source is predicted from {thumbnail_size}x{thumbnail_size} "
            f"thumbnails with balanced accuracy {result['balanced_accuracy']:.2f} "
            f"(chance {result['chance_balanced_accuracy']:.2f})"
        )
    sentence = (f"Confounded: sources coincide with labels ({facts}; {support}); a model can score by "
                "recognising the collection, and no internal test resolves it."
                if flag else f"No source confound flagged: {facts}; {support}.")  # fmt: skip
    return {**result, "flag": flag, "confounded": flag, "sentence": sentence}


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


def data_audit_main(
    manifest_csv: str,
    assignments_csv: str,
    duplicates_csv: str,
    output: str,
    thumbnail_size: int,
    settings: Mapping[str, Any],
    shared_png: str,
    cache_dir: str | None = None,
) -> dict[str, Any]:
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
