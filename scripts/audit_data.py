"""Rule audit_data: leakage between splits and whether the source gives the label away.

Two things that make a test score meaningless without any bug in the model:
the same patient or radiograph on both sides of a split, and collections that
coincide with labels while being recognisable from the pixels (the model then
learns the collection). Both are measured here and written to data_audit.json.
"""


import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxrflow import audit, baselines, manifest
from cxrflow.data import open_log


def source_check(table: pd.DataFrame, groups: pd.Series, thumbnail_size: int,
                 settings: Mapping[str, Any]) -> dict[str, Any]:
    """audit.source_predictability on thumbnails, grouped by split group, plus a flag and a sentence."""
    features = baselines.thumbnail_features(baselines.load_gray_images(table["output_path"]), thumbnail_size)
    # Every source needs a group in each CV fold's training part, or the regression cannot learn it.
    per_source = groups.groupby(table["source"]).nunique()
    if len(per_source) > 1 and per_source.min() < settings["folds"]:
        result: dict[str, Any] = {
            "skipped": f"source {per_source.idxmin()} has {per_source.min()} patient groups, "
            f"fewer than the {settings['folds']} CV folds"
        }
    else:
        result = audit.source_predictability(features, table["source"], table["label"], groups,
                                             seed=settings["seed"], folds=settings["folds"])
    if "skipped" in result:
        return {**result, "flag": False, "sentence": f"Source check skipped: {result['skipped']}."}
    v = result["cramers_v"] if np.isfinite(result["cramers_v"]) else 0.0
    flag = bool(v >= settings["flag_cramers_v"] and result["balanced_accuracy"] >= settings["flag_balanced_accuracy"])
    facts = (f"the source is predicted from {thumbnail_size}x{thumbnail_size} thumbnails with balanced accuracy "
             f"{result['balanced_accuracy']:.2f} (chance {result['chance_balanced_accuracy']:.2f}) and Cramér's V "
             f"of source x label is {v:.2f}")
    sentence = (f"Sources coincide with labels: {facts}; a model can score by recognising the collection."
                if flag else f"No source shortcut flagged: {facts}.")
    return {**result, "flag": flag, "sentence": sentence}


def _json_safe(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _json_safe(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_json_safe(v) for v in tree]
    if isinstance(tree, (float, np.floating)):
        return float(tree) if np.isfinite(tree) else None
    if isinstance(tree, np.integer):
        return int(tree)
    return tree


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        table = manifest.read_manifest(sm.input.manifest)
        ok = table[table["status"] == "ok"].reset_index(drop=True)
        assignments = pd.read_csv(sm.input.assignments, dtype=str, keep_default_na=False)
        pairs = pd.read_csv(sm.input.duplicates, dtype={"image_id_a": str, "image_id_b": str})
        leakage = audit.leakage_report(assignments, pairs)
        groups = ok["image_id"].map(dict(zip(assignments["image_id"], assignments["group"])))
        if groups.isna().any():
            raise ValueError(f"ok images missing from the assignments: {ok.loc[groups.isna(), 'image_id'].tolist()[:5]}")
        source = source_check(ok, groups, sm.params.thumbnail_size, sm.params.source)
        result = {"leakage": leakage, "duplicate_pairs": int(len(pairs)), "source_predictability": source}
        Path(sm.output[0]).write_text(json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n")
        log.info("leakage ok=%s (total shared %d); %s", leakage["ok"], leakage["total_shared"], source["sentence"])
    except Exception:
        log.exception("data audit failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
