"""Reading and writing the package's result files: JSON that any tool reads (no NaN, no numpy
types) and the predictions table every reported number is recomputed from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions.csv back, ids as strings: ids such as 0001 or 324a must not turn into numbers."""
    return pd.read_csv(path, dtype={"image_id": str, "patient_id": str, "group": str})


def write_json(data: Any, path: str | Path) -> None:
    """Strict JSON (NaN refused: run it through :func:`json_safe` first), indented, newline-terminated."""
    Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def json_safe(tree: Any) -> Any:
    """NumPy scalars to Python, non-finite floats to None: strict JSON (allow_nan=False) accepts the result."""
    if isinstance(tree, Mapping):
        return {str(k): json_safe(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [json_safe(v) for v in tree]
    if isinstance(tree, (float, np.floating)):
        return float(tree) if np.isfinite(tree) else None
    if isinstance(tree, np.integer):
        return int(tree)
    return tree
