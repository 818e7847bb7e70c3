"""A trained model on the images of any configured source: the prediction rule.

The images go through the same selection and crop as the training data (they are the
manifest's rows of that source, cropped by the same jobs), and are read, resized and
scaled exactly as ``evaluate`` reads a split, so the probabilities of an image are
evaluate's. Every selected file gets a row: a quarantined one with its reason and no
probabilities. The model file must be the one its card describes (sha256), so a
replaced or tampered file is refused before any prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import read_gray
from .manifest import read_manifest
from .model_card import check_model, read_json

BASE_COLUMNS: tuple[str, ...] = ("image_id", "source", "patient_id", "raw_path", "true_label", "status", "reason")


def decide(probs: np.ndarray, classes: Sequence[str], point: Mapping[str, Any]) -> tuple[np.ndarray, str]:
    """Predicted class per row and the rule used: the card's frozen threshold on its positive class
    (at or above it -> positive, else the most probable other class), or argmax where none is frozen."""
    names = np.asarray(classes, dtype=object)
    if len(probs) == 0:
        return np.asarray([], dtype=object), "argmax"
    if point.get("threshold") is None or point.get("positive_class") not in classes:
        return names[probs.argmax(axis=1)], "argmax"
    pos = list(classes).index(point["positive_class"])
    others = probs.copy()
    others[:, pos] = -np.inf
    chosen = np.where(probs[:, pos] >= float(point["threshold"]), pos, others.argmax(axis=1))
    return names[chosen], f"{point['positive_class']} at probability >= {point['threshold']}"


def predict_source(model_path: str, card_path: str, manifest_csv: str, source: str, classes: Sequence[str],
                   experiment: Mapping[str, Any], output_csv: str) -> pd.DataFrame:  # fmt: skip
    """predictions of ``source``'s images (one row per selected file) written to ``output_csv``.

    Columns: BASE_COLUMNS, prob_<class> in class order (empty for quarantined files),
    predicted_label, decision (the rule that turned probabilities into the label).
    Raises ModelHashMismatch before loading a model that is not its card's.
    """
    card = read_json(card_path)
    if card is None:
        raise FileNotFoundError(f"no model card at {card_path}: a model is applied only with its card")
    check_model(model_path, card)
    manifest = read_manifest(manifest_csv)
    rows = manifest[manifest["source"] == source].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"source {source!r} has no row in {manifest_csv}")
    ok = rows["status"] == "ok"
    size = int(experiment["image_size"])
    images = np.zeros((int(ok.sum()), size, size, 1), dtype=np.uint8)
    for i, path in enumerate(rows.loc[ok, "output_path"]):
        images[i, ..., 0] = read_gray(path, size)
    import keras

    from .evaluate import predict

    model = keras.saving.load_model(model_path)
    probs = predict(model, images, experiment["arch"], experiment["batch_size"])
    labels, rule = decide(probs, classes, card.get("operating_point") or {})
    out = pd.DataFrame({"image_id": rows["image_id"], "source": rows["source"], "patient_id": rows["patient_id"],
                        "raw_path": rows["raw_path"], "true_label": rows["label"], "status": rows["status"],
                        "reason": rows["reason"]})  # fmt: skip
    for j, name in enumerate(classes):
        column = pd.Series(np.nan, index=rows.index)
        column[ok] = probs[:, j]
        out[f"prob_{name}"] = column
    out["predicted_label"] = ""
    out.loc[ok, "predicted_label"] = labels
    out["decision"] = np.where(ok, rule, "not predicted: quarantined")
    Path(output_csv).parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic_float(out, output_csv)
    return out


def write_csv_atomic_float(table: pd.DataFrame, path: str) -> None:
    """As predictions.csv is written (8 significant digits), atomically."""
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    table.to_csv(tmp, index=False, float_format="%.8g")
    tmp.replace(path)
