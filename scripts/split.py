"""Rule make_splits: near-duplicate search, then patient-grouped, stratified, stable splits (thin wrapper).

Near-duplicates are found here, not in a rule of their own, because they decide
the split: a copy of one radiograph under two ids must land where its twin does,
exactly as two images of one patient do (``extra_groups``).
"""

import json
import logging
from pathlib import Path

import pandas as pd

from cxrflow import dedup, manifest, split

PAIR_COLUMNS = ("image_id_a", "image_id_b", "distance", "source_a", "source_b", "patient_id_a", "patient_id_b",
                "label_a", "label_b")  # fmt: skip


def find_duplicates(table: pd.DataFrame, max_distance: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """Pairs of ok images whose pHashes differ in <= max_distance bits (with source, patient and label of
    each side, so cross-source copies show at a glance) and image_id -> cluster key for extra_groups."""
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    hashes = dedup.perceptual_hashes(ok["output_path"])
    pairs = dedup.near_duplicate_pairs(ok["image_id"].tolist(), hashes, max_distance)
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
pairs, groups = find_duplicates(table, snakemake.params.max_distance)  # noqa: F821
pairs.to_csv(snakemake.output.duplicates, index=False)  # noqa: F821
Path(snakemake.output.duplicate_groups).write_text(json.dumps(groups, indent=2, sort_keys=True) + "\n")  # noqa: F821
logging.info("%d near-duplicate pairs in %d clusters", len(pairs), len(set(groups.values())))
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
