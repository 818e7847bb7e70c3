"""How many images each pair of sources shares, with side-by-side thumbnails a reader can check by eye."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .decode import ImageError, decode_image

# Thumbnails shown per source pair (a few, lowest scores first: those are the ones to doubt).
EXAMPLES_PER_PAIR = 3


def shared_by_source(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per unordered source pair: duplicate pairs, distinct images involved on each side, methods used."""
    cols = ["source_a", "source_b", "pairs", "images_a", "images_b", "exact", "aligned", "min_score"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    swap = pairs["source_a"].astype(str) > pairs["source_b"].astype(str)
    p = pairs.assign(
        sa=np.where(swap, pairs["source_b"], pairs["source_a"]),
        sb=np.where(swap, pairs["source_a"], pairs["source_b"]),
        ia=np.where(swap, pairs["image_id_b"], pairs["image_id_a"]),
        ib=np.where(swap, pairs["image_id_a"], pairs["image_id_b"]),
    )
    rows = []
    for (sa, sb), g in p.groupby(["sa", "sb"], sort=True):
        rows.append({"source_a": sa, "source_b": sb, "pairs": len(g), "images_a": g["ia"].nunique(),
                     "images_b": g["ib"].nunique(), "exact": int((g["method"] == "exact").sum()),
                     "aligned": int((g["method"] == "aligned").sum()), "min_score": float(g["score"].min())})  # fmt: skip
    return pd.DataFrame(rows, columns=cols).sort_values("pairs", ascending=False, ignore_index=True)


def _thumb(path: str, size: int) -> np.ndarray:
    try:
        img = decode_image(Path(path)).pixels
    except ImageError:
        return np.zeros((size, size), np.uint8)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    h, w = img.shape
    s = size / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def shared_figure(pairs: pd.DataFrame, raw_paths: dict[str, str], path: str | Path, thumb: int = 160) -> None:
    """PNG: the per-source-pair counts, then for each source pair a few raw images side by side."""
    counts = shared_by_source(pairs)
    examples = []
    if not pairs.empty:
        cross = pairs[pairs["source_a"] != pairs["source_b"]]
        same = pairs[pairs["source_a"] == pairs["source_b"]]
        for part in (cross, same):
            for _, g in part.groupby(["source_a", "source_b"], sort=True):
                examples.extend(g.sort_values("score").head(EXAMPLES_PER_PAIR).itertuples(index=False))
    rows = max(1, len(examples))
    fig = Figure(figsize=(9, 0.8 + 0.3 * max(1, len(counts)) + 2.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows + 1, 2, height_ratios=[0.5 + 0.3 * max(1, len(counts))] + [2.0] * rows)
    ax = fig.add_subplot(grid[0, :])
    ax.axis("off")
    if counts.empty:
        ax.text(0.5, 0.5, "no duplicate pairs found", ha="center", va="center")
    else:
        shown = counts.assign(min_score=counts["min_score"].round(2))
        ax.table(cellText=shown.values, colLabels=list(shown.columns), loc="center").scale(1, 1.3)
        ax.set_title("Images shared between sources (duplicate pairs per source pair)")
    for k, r in enumerate(examples):
        for side, (img_id, src, _view) in enumerate(((r.image_id_a, r.source_a, r.view_a),
                                                    (r.image_id_b, r.source_b, r.view_b))):  # fmt: skip
            a = fig.add_subplot(grid[k + 1, side])
            a.imshow(_thumb(raw_paths.get(img_id, ""), thumb), cmap="gray", vmin=0, vmax=255)
            a.set_title(f"{src}: {img_id}"[:60] + ("" if side == 0 else f"\n{r.method}, score {r.score:.2f}"),
                        fontsize=7)  # fmt: skip
            a.axis("off")
    fig.savefig(path, dpi=80)
