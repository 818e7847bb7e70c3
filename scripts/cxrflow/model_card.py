"""A model card per trained model: what someone else needs to apply it and to know what it is.

In the spirit of MONAI's bundle ``metadata.json``: architecture, input spec (size,
channels, value range and the preprocessing with its settings), classes, the training
data's fingerprint, training settings, the chosen epoch and frozen operating threshold
where they are recorded, internal and external metrics with their intervals, the
shortcut verdict, the intended use, and the sha256 of the model file. The card is
built only from files beside the model; a file that does not exist yet (the operating
point, the training record) is reported as such, never invented.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .archive import file_sha256

INTENDED_USE = "research use; not a medical device"
CARD_VERSION = 1
# What the card states of the positive class's frozen threshold (operating_point.json, cxrflow.operating_point).
THRESHOLD_KEYS: tuple[str, ...] = ("rule", "chosen_on", "description", "fallback")
ARGMAX = "argmax (no frozen operating threshold recorded)"


class ModelHashMismatch(ValueError):
    """A model file whose bytes are not the ones its card describes."""


def read_json(path: str | Path | None) -> dict[str, Any] | None:
    """A JSON file's content, or None where the path is None or the file does not exist."""
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def split_fingerprint(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Images and a sha256 over the sorted (image_id, label, patient, image sha256) rows of split CSVs.

    The cropped images' bytes enter, so the same ids with other pixels give another hash.
    """
    rows = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                rows.append(f"{row['image_id']}\t{row['label']}\t{row['source']}:{row['patient_id']}\t"
                            f"{file_sha256(row['path'])}")  # fmt: skip
    digest = hashlib.sha256("\n".join(sorted(rows)).encode("utf-8"))
    return {"images": len(rows), "sha256": digest.hexdigest()}


def chosen_epoch(history_csv: str | Path, training: Mapping[str, Any] | None) -> dict[str, Any]:
    """The epoch the saved weights come from: the training record's where present, else the last one run."""
    with open(history_csv, newline="", encoding="utf-8") as handle:
        epochs = [int(float(r["epoch"])) for r in csv.DictReader(handle)]
    if training and training.get("chosen_epoch") is not None:
        return {"epoch": training["chosen_epoch"], "epochs_run": len(epochs), "how": "training record"}
    return {"epoch": max(epochs) if epochs else None, "epochs_run": len(epochs),
            "how": "last epoch run (no chosen epoch recorded)"}  # fmt: skip


def operating_point(op: Mapping[str, Any] | None, positive: str) -> dict[str, Any]:
    """The positive class's threshold frozen on validation (operating_point.json), as the card and
    the predict rule state it, or argmax where none is recorded."""
    chosen = (((op or {}).get("classes") or {}).get(positive) or {}).get("threshold") or {}
    if chosen.get("threshold") is None:
        return {"decision": ARGMAX, "threshold": None}
    return {
        "decision": "frozen threshold",
        "threshold": chosen["threshold"],
        "positive_class": positive,
        **{k: chosen.get(k) for k in THRESHOLD_KEYS},
    }


def _metric_summary(metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if metrics is None:
        return None
    m = metrics["metrics"]
    out = {"accuracy": m.get("accuracy"), "roc_auc": m.get("roc_auc"),
           "f1": {c: v.get("f1-score") for c, v in m.get("per_class", {}).items()},
           "counts": metrics.get("counts")}  # fmt: skip
    if "ci" in metrics:
        out["ci"] = metrics["ci"]
    if "test_sources" in metrics:
        out["test_sources"] = metrics["test_sources"]
    return out


def build_card(experiment: str, fold: str, params: Mapping[str, Any], classes: Sequence[str],
               preprocess: Mapping[str, Any], files: Mapping[str, str | None]) -> dict[str, Any]:  # fmt: skip
    """The card of one model. ``files``: model, metrics, history, train, val and optionally
    external_metrics, shortcut, operating_point, training (absent or missing: not recorded)."""
    shortcut = read_json(files.get("shortcut"))
    training = read_json(files.get("training"))
    size = params["image_size"]
    return {
        "card_version": CARD_VERSION,
        "name": f"{experiment}/fold{fold}",
        "intended_use": INTENDED_USE,
        "model_file": Path(files["model"]).name,
        "model_sha256": file_sha256(files["model"]),
        "framework": {"keras_backend": params["backend"]},
        "architecture": {"arch": params["arch"], "weights": params["weights"], "freeze_base": params["freeze_base"],
                         "head": f"Flatten -> Dropout({params['dropout']}) -> Dense({len(classes)}, softmax)"},
        "input": {"shape": [size, size, 3], "channels": "8-bit grayscale repeated to 3 channels",
                  "value_range": [0, 255], "dtype": "uint8 before the architecture's own scaling",
                  "scaling": f"keras.applications.{params['arch']}.preprocess_input",
                  "preprocessing": {"crop": dict(preprocess), "resize": f"{size}x{size} (cv2.INTER_AREA)"}},
        "output": {"classes": list(classes), "type": "probability per class (softmax), in this order"},
        "training_data": {"train": split_fingerprint([files["train"]]), "val": split_fingerprint([files["val"]])},
        "training": {k: params.get(k) for k in ("epochs", "batch_size", "learning_rate", "optimizer", "seed",
                                                "augmentation", "class_weight") if k in params},
        "chosen_epoch": chosen_epoch(files["history"], training),
        "operating_point": operating_point(read_json(files.get("operating_point")), classes[0]),
        "metrics": {"internal": _metric_summary(read_json(files["metrics"])),
                    "external": _metric_summary(read_json(files.get("external_metrics")))},
        "shortcut": None if shortcut is None else {k: shortcut.get(k) for k in ("verdict", "flag", "sentence")},
    }  # fmt: skip


def check_model(model_path: str | Path, card: Mapping[str, Any]) -> str:
    """The model file's sha256 if it is the card's; ModelHashMismatch naming both hashes otherwise."""
    actual = file_sha256(model_path)
    if actual != card["model_sha256"]:
        raise ModelHashMismatch(
            f"{model_path} is not the model its card describes: its sha256 is {actual}, the card's "
            f"{card['model_sha256']}. The file was changed or replaced after the card was written; "
            "rerun the model's training (or its card) instead of predicting with it"
        )
    return actual


def card_rows(card: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows of the card for its report page."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

    rows = [(k, text(card[k])) for k in ("name", "intended_use", "model_file", "model_sha256", "framework",
                                         "architecture", "output", "training_data", "training", "chosen_epoch",
                                         "operating_point", "shortcut")]  # fmt: skip
    rows += [(f"input {k}", text(v)) for k, v in card["input"].items()]
    for which, m in card["metrics"].items():
        if m is None:
            rows.append((f"{which} metrics", "not evaluated"))
            continue
        ci = m.get("ci", {})
        f1 = "; ".join(f"{c} {v:.3f}" + _interval(ci.get("per_class", {}).get(c, {}).get("f1"))
                       for c, v in m["f1"].items() if v is not None)  # fmt: skip
        rows.append((f"{which} F1", f1))
        rows.append((f"{which} accuracy", f"{m['accuracy']:.3f}" + _interval(ci.get("accuracy"))))
    return rows


def _interval(ci: Mapping[str, Any] | None) -> str:
    if not ci or ci.get("low") is None:
        return ""
    return f" [{ci['low']:.3f}, {ci['high']:.3f}]"
