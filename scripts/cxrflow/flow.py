"""Where every image went: the data-flow diagram (STARD/CONSORT style) and the numbers behind it.

Per source: files listed -> selected (the rest not selected, by reason) -> quarantined
(by kind of reason) -> kept, of which some grouped with their copies (near-duplicates
travel together, never dropped) -> train / val / test per class in every fold of the
shared split; and the external test sets of experiments that hold sources out.
TRIPOD+AI 20a and CLAIM's flow chart ask for exactly these counts, and
:func:`flow_errors` checks that they add up at every step.

"Files listed" are the manifest's rows plus ``skipped.csv``'s (files under a folder
source that are not images or not of a configured class) where that file exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .manifest import reason_kind

SPLITS: tuple[str, ...] = ("train", "val", "test")


def _per_class(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, int]:
    return {c: int((table["label"] == c).sum()) for c in classes}


def _kinds(reasons: pd.Series) -> dict[str, int]:
    counts = reasons.map(reason_kind).value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index)}


def source_flow(source: str, manifest: pd.DataFrame, skipped: pd.DataFrame | None, assignments: pd.DataFrame,
                grouped_ids: set[str], classes: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """The flow of one source: each step's count, the reasons of what left, and the splits per fold."""
    rows = manifest[manifest["source"] == source]
    skip = skipped[skipped["source"] == source] if skipped is not None else pd.DataFrame(columns=["reason"])
    quarantined = rows[rows["status"] != "ok"]
    kept = rows[rows["status"] == "ok"]
    assigned = assignments[assignments["source"] == source]
    folds = {}
    for col in [c for c in assignments.columns if c.startswith("fold") and c[4:].isdigit()]:
        folds[col] = {s: _per_class(assigned[assigned[col] == s], classes) for s in SPLITS}
    return {
        "listed": int(len(rows) + len(skip)),
        "not_selected": {"total": int(len(skip)), "by_reason": _kinds(skip["reason"].astype(str))},
        "selected": int(len(rows)),
        "selected_per_class": _per_class(rows, classes),
        "quarantined": {"total": int(len(quarantined)), "by_reason": _kinds(quarantined["reason"].astype(str))},
        "kept": int(len(kept)),
        "kept_per_class": _per_class(kept, classes),
        "grouped_as_duplicates": int(kept["image_id"].astype(str).isin(grouped_ids).sum()),
        "in_split": int(len(assigned)),
        "folds": folds,
    }


def flow_counts(manifest: pd.DataFrame, assignments: pd.DataFrame, duplicate_groups: Mapping[str, str],
                classes: Sequence[str], skipped: pd.DataFrame | None = None,
                external: Mapping[str, pd.DataFrame] | None = None) -> dict[str, Any]:  # fmt: skip
    """The whole flow: per source (config order of the manifest), totals, and external sets.

    ``duplicate_groups`` maps image id -> copy cluster (audit/duplicate_groups.json);
    ``external`` maps experiment -> its external.csv (held-out sources).
    """
    grouped = {str(i) for i in duplicate_groups}
    sources = list(dict.fromkeys(manifest["source"].astype(str)))
    if skipped is not None:
        sources += [s for s in dict.fromkeys(skipped["source"].astype(str)) if s not in sources]
    per_source = {s: source_flow(s, manifest, skipped, assignments, grouped, classes) for s in sources}
    total = {key: sum(f[key] for f in per_source.values())
             for key in ("listed", "selected", "kept", "grouped_as_duplicates", "in_split")}  # fmt: skip
    total["not_selected"] = sum(f["not_selected"]["total"] for f in per_source.values())
    total["quarantined"] = sum(f["quarantined"]["total"] for f in per_source.values())
    ext = {}
    for experiment, table in (external or {}).items():
        ext[experiment] = {str(s): _per_class(part, classes) for s, part in table.groupby("source", sort=True)}
    return {"classes": list(classes), "sources": per_source, "total": total, "external": ext,
            "duplicate_clusters": len(set(map(str, duplicate_groups.values())))}  # fmt: skip


def flow_errors(flow: Mapping[str, Any]) -> list[str]:
    """Every step whose counts do not add up (empty: the diagram is consistent)."""
    errors = []
    for source, f in flow["sources"].items():
        if f["listed"] != f["selected"] + f["not_selected"]["total"]:
            errors.append(f"{source}: listed {f['listed']} != selected {f['selected']} + not selected "
                          f"{f['not_selected']['total']}")  # fmt: skip
        for step in ("not_selected", "quarantined"):
            if sum(f[step]["by_reason"].values()) != f[step]["total"]:
                errors.append(f"{source}: {step} reasons do not sum to {f[step]['total']}")
        if f["selected"] != f["quarantined"]["total"] + f["kept"]:
            errors.append(f"{source}: selected {f['selected']} != quarantined {f['quarantined']['total']} + kept "
                          f"{f['kept']}")  # fmt: skip
        if sum(f["selected_per_class"].values()) != f["selected"] or sum(f["kept_per_class"].values()) != f["kept"]:
            errors.append(f"{source}: per-class counts do not sum to the source's")
        if f["in_split"] != f["kept"]:
            errors.append(f"{source}: {f['kept']} kept images but {f['in_split']} in the split")
        for fold, splits in f["folds"].items():
            for c in flow["classes"]:
                n = sum(splits[s][c] for s in SPLITS)
                if n != f["kept_per_class"][c]:
                    errors.append(f"{source} {fold} {c}: train+val+test {n} != kept {f['kept_per_class'][c]}")
    for experiment, sources in flow["external"].items():
        for source, counts in sources.items():
            kept = flow["sources"].get(source, {}).get("kept_per_class")
            if kept is not None and counts != kept:
                errors.append(f"external set of {experiment}: {source} {counts} != kept {kept}")
    return errors


def flow_figure(flow: Mapping[str, Any], path: str) -> None:
    """The diagram: one column of boxes per source, arrows down, exclusions to the side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(flow["sources"])
    fig, ax = plt.subplots(figsize=(max(6.0, 4.2 * len(sources)), 9), dpi=100)
    ax.set_xlim(0, 4.2 * len(sources))
    ax.set_ylim(0, 10)
    ax.axis("off")
    box = {"boxstyle": "round,pad=0.4", "facecolor": "#f2f2f2", "edgecolor": "#555"}
    side = {"boxstyle": "round,pad=0.3", "facecolor": "#fde8b0", "edgecolor": "#a80"}
    for i, source in enumerate(sources):
        f, x = flow["sources"][source], 4.2 * i + 1.6
        fold0 = next(iter(f["folds"].values()), {})
        split_text = "\n".join(f"{s}: " + ", ".join(f"{c} {n}" for c, n in fold0.get(s, {}).items()) for s in SPLITS)
        steps = [
            (9.3, f"{source}\nfiles listed: {f['listed']}"),
            (7.6, f"selected: {f['selected']}"),
            (5.9, f"kept: {f['kept']}\n(" + ", ".join(f"{c} {n}" for c, n in f["kept_per_class"].items()) + ")"),
            (4.2, f"grouped with copies: {f['grouped_as_duplicates']}\n(kept together in one split)"),
            (2.0, f"fold0\n{split_text}" if fold0 else "not split"),
        ]  # fmt: skip
        for (y0, _), (y1, _) in zip(steps, steps[1:]):
            ax.annotate("", xy=(x, y1 + 0.45), xytext=(x, y0 - 0.45), arrowprops={"arrowstyle": "->"})
        for y, text in steps:
            ax.text(x, y, text, ha="center", va="center", fontsize=8, bbox=box)
        exclusions = [
            (8.45, f"not selected: {f['not_selected']['total']}", f["not_selected"]["by_reason"]),
            (6.75, f"quarantined: {f['quarantined']['total']}", f["quarantined"]["by_reason"]),
        ]
        for y, head, reasons in exclusions:
            lines = [head] + [f"{k}: {n}" for k, n in list(reasons.items())[:4]]
            ax.text(x + 1.1, y, "\n".join(lines), ha="left", va="center", fontsize=7, bbox=side)
    if flow["external"]:
        text = "; ".join(f"{e}: external " + ", ".join(f"{s} {sum(c.values())}" for s, c in srcs.items())
                         for e, srcs in flow["external"].items())  # fmt: skip
        ax.text(0.1, 0.4, text, fontsize=8, ha="left")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def flow_rows(flow: Mapping[str, Any]) -> pd.DataFrame:
    """The flow as a table (one row per source and step): the report page and the checklist read it."""
    rows = []
    for source, f in flow["sources"].items():
        rows += [(source, "files listed", f["listed"], ""),
                 (source, "not selected", f["not_selected"]["total"], _reasons(f["not_selected"]["by_reason"])),
                 (source, "selected", f["selected"], _reasons(f["selected_per_class"])),
                 (source, "quarantined", f["quarantined"]["total"], _reasons(f["quarantined"]["by_reason"])),
                 (source, "kept", f["kept"], _reasons(f["kept_per_class"])),
                 (source, "grouped with copies", f["grouped_as_duplicates"], "")]  # fmt: skip
        for fold, splits in f["folds"].items():
            rows += [(source, f"{fold} {s}", sum(splits[s].values()), _reasons(splits[s])) for s in SPLITS]
    for experiment, sources in flow["external"].items():
        rows += [(s, f"external test of {experiment}", sum(c.values()), _reasons(c)) for s, c in sources.items()]
    return pd.DataFrame(rows, columns=["source", "step", "images", "detail"])


def _reasons(counts: Mapping[str, int]) -> str:
    return "; ".join(f"{k}: {n}" for k, n in counts.items())
