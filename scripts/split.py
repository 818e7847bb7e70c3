"""Rule make_splits: near-duplicate search, then patient-grouped, stratified, stable splits (thin wrapper).

Near-duplicates are found here, not in a rule of their own, because they decide
the split: a copy of one radiograph under two ids must land where its twin does,
exactly as two images of one patient do (``extra_groups``).
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxrflow import copies, dedup, manifest, split

PAIR_COLUMNS = ("image_id_a", "image_id_b", "method", "score", "distance", "view_a", "view_b", "overlap", "scale",
                "rotation_deg", "source_a", "source_b", "patient_id_a", "patient_id_b", "label_a", "label_b")  # fmt: skip


def find_duplicates(table: pd.DataFrame, duplicates: dict) -> tuple[pd.DataFrame, dict[str, str]]:
    """Pairs of ok images that show one radiograph (cxrflow.copies: raw file and cropped image searched,
    each pair aligned and scored), with each side's source, patient and label so cross-source copies show
    at a glance, the cropped images' pHash distance, and image_id -> cluster key for extra_groups."""
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    raw = ok["resolved_path"].where(ok["resolved_path"].astype(str) != "", ok["raw_path"])
    pairs = copies.find_copies(ok["image_id"].tolist(), raw.tolist(), ok["output_path"].tolist(), duplicates)
    hashes = dict(zip(ok["image_id"], dedup.perceptual_hashes(ok["output_path"])))
    pairs["distance"] = dedup.hamming(pairs["image_id_a"].map(hashes).to_numpy(np.uint64),
                                      pairs["image_id_b"].map(hashes).to_numpy(np.uint64))  # fmt: skip
    info = ok.set_index("image_id")[["source", "patient_id", "label"]]
    for side in ("a", "b"):
        rows = info.loc[pairs[f"image_id_{side}"]]
        for col in ("source", "patient_id", "label"):
            pairs[f"{col}_{side}"] = rows[col].to_numpy()
    return pairs[list(PAIR_COLUMNS)], dedup.duplicate_groups(pairs)


logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
cfg = snakemake.params.split  # noqa: F821
classes = snakemake.params.classes  # noqa: F821
table = manifest.read_manifest(snakemake.input.manifest)  # noqa: F821
pairs, groups = find_duplicates(table, snakemake.params.duplicates)  # noqa: F821
pairs.to_csv(snakemake.output.duplicates, index=False)  # noqa: F821
Path(snakemake.output.duplicate_groups).write_text(json.dumps(groups, indent=2, sort_keys=True) + "\n")  # noqa: F821
logging.info("%d duplicate pairs (%s) in %d clusters", len(pairs), pairs["method"].value_counts().to_dict(),
             len(set(groups.values())))
assignments = split.assign_splits(
    table,
    seed=cfg["seed"],
    test_size=cfg["test_size"],
    val_size=cfg["val_size"],
    folds=cfg["folds"],
    classes=classes,
    extra_groups=groups,
)
split.check_no_leakage(assignments)
split.write_split_files(assignments, Path(snakemake.params.out_dir))  # noqa: F821
summary = split.split_summary(assignments, classes)
Path(snakemake.output.summary).write_text(json.dumps(summary, indent=2) + "\n")  # noqa: F821
for warning in summary.get("warnings", []):
    logging.warning(warning)
