"""The reporting checklists (TRIPOD+AI, CLAIM) filled from the run's own records.

Each item is filled with a value the run computed and a link to the output that holds
it, or marked "for the authors" where the run cannot know (clinical setting, ethics,
funding). An item is never marked filled without a value: :func:`fill` turns an empty
value into "for the authors". Item numbers and names: TRIPOD+AI (Collins et al., BMJ
2024;385:e078378); CLAIM (Mongan et al. 2020, updated by Tejani et al. 2024).
"""

from __future__ import annotations

import csv
import functools
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOR_AUTHORS = "for the authors"
Facts = Mapping[str, Any]
# A filler: the run's facts -> (value, link relative to results/), or None where the run cannot know.
Filler = Callable[[Facts], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Item:
    checklist: str
    number: str
    name: str
    filler: Filler | None


# The fillers a table row can name, by function name without the underscore.
_FILLERS: dict[str, Filler] = {}


def _fills(filler: Filler) -> Filler:
    """Registers a filler under its name, for the item table to name it."""
    _FILLERS[filler.__name__.lstrip("_")] = filler
    return filler


@_fills
def _flow(f: Facts) -> tuple[str, str] | None:
    t = f["flow"]["total"]
    return (f"{t['listed']} files listed, {t['not_selected']} not selected, {t['selected']} selected, "
            f"{t['quarantined']} quarantined, {t['kept']} kept ({t['grouped_as_duplicates']} grouped with copies)",
            "methods/flow.json")  # fmt: skip


@_fills
def _sources(f: Facts) -> tuple[str, str] | None:
    parts = [f"{n} ({s['path']}: {s['files']} files, sha256 {s['sha256'][:12]}"
             + (f", git {s['git_commit'][:12]}" if s["git_commit"] else "") + ")"
             for n, s in f["provenance"]["sources"].items()]  # fmt: skip
    return "; ".join(parts), "provenance.json"


@_fills
def _eligibility(f: Facts) -> tuple[str, str] | None:
    specs = f["provenance"]["config"]["sources"]
    parts = [f"{n}: format {s['format']}, filters {dict(s.get('filters') or {})}"
             + (f", limit {s['limit']}" if s.get("limit") else "") for n, s in specs.items()]  # fmt: skip
    return "; ".join(parts) + f"; classes {f['classes']}", "provenance.json"


@_fills
def _preprocessing(f: Facts) -> tuple[str, str] | None:
    p = f["provenance"]["config"]["preprocess"]
    return (f"black-bar crop, then {p['size']}x{p['size']} 8-bit grayscale PNG; settings "
            + ", ".join(f"{k}={v}" for k, v in sorted(p.items())), "provenance.json")  # fmt: skip


@_fills
def _missing(f: Facts) -> tuple[str, str] | None:
    q = f["flow"]["total"]["quarantined"]
    reasons = {}
    for s in f["flow"]["sources"].values():
        for k, n in s["quarantined"]["by_reason"].items():
            reasons[k] = reasons.get(k, 0) + n
    text = "; ".join(f"{k}: {n}" for k, n in sorted(reasons.items())) or "none"
    return f"{q} files quarantined (kept out, each with its reason): {text}", "preprocessed/quarantine.csv"


@_fills
def _sample_size(f: Facts) -> tuple[str, str] | None:
    t = f["flow"]["total"]
    return (
        f"{t['kept']} images ({f['splits']['patients']} patients); no size calculation by the run",
        "splits/summary.json",
    )


@_fills
def _partition(f: Facts) -> tuple[str, str] | None:
    s = f["provenance"]["config"]["split"]
    return (f"seeded hash of each patient group (seed {s['seed']}), {s['folds']} fold(s), test_size "
            f"{s['test_size']}, val_size {s['val_size']}, stratified by label in expectation",
            "splits/summary.json")  # fmt: skip


@_fills
def _disjoint(f: Facts) -> tuple[str, str] | None:
    shared = sum(fold["shared_patients"] + fold["shared_groups"] for fold in f["splits"]["folds"])
    return (f"patient level, near-duplicate copies merged into one group; {shared} patients or groups shared "
            "between splits", "splits/summary.json")  # fmt: skip


@_fills
def _characteristics(f: Facts) -> tuple[str, str] | None:
    rows = [r for r in f.get("partitions") or [] if r["class"] == "all" and r["fold"] in ("fold0", "all")]
    if not rows:
        return None
    parts = [f"{r['partition']} {r['images']} images / {r['patients']} patients ({r['sources']})" for r in rows]
    return "; ".join(parts) + "; age, sex and view per class in the table", "methods/partitions.csv"


def _cards(f: Facts, what: str) -> tuple[str, str] | None:
    cards = f.get("cards") or {}
    if not cards:
        return None
    name, card = next(iter(cards.items()))
    link = f"experiments/{name}/model_card.json"
    if what == "architecture":
        a = card["architecture"]
        return f"{a['arch']} (weights {a['weights']}, freeze_base {a['freeze_base']}); head {a['head']}", link
    if what == "init":
        return f"base weights: {card['architecture']['weights']}; seed {card['training'].get('seed')}", link
    if what == "training":
        t = card["training"]
        return ", ".join(f"{k}={v}" for k, v in t.items()), link
    if what == "selection":
        e = card["chosen_epoch"]
        return f"epoch {e['epoch']} of {e['epochs_run']} ({e['how']})", link
    if what == "threshold":
        return card["operating_point"]["decision"], link
    if what == "external":
        ext = [n for n, c in cards.items() if c["metrics"]["external"] is not None]
        if not ext:
            return "none: no experiment holds a source out (test_sources)", "methods/flow.json"
        sources = sorted({s for n in ext for s in cards[n]["metrics"]["external"].get("test_sources", [])})
        where = f"experiments/{ext[0]}/external/metrics.json"
        return f"external test on {', '.join(sources)} for {', '.join(ext)}", where
    if what == "specification":
        return f"model card with the file's sha256 {card['model_sha256'][:16]}...", link
    if what == "output":
        out = card["output"]
        return f"{out['type']}: {', '.join(out['classes'])}; {card['operating_point']['decision']}", link
    return None


@_fills
def _software(f: Facts) -> tuple[str, str] | None:
    p = f["provenance"]
    pk = ", ".join(f"{k} {v}" for k, v in p["packages"].items() if v)
    return f"Python {p['python']}; {pk}; Keras backend {', '.join(p['keras_backends']) or 'none'}", "provenance.json"


@_fills
def _code(f: Facts) -> tuple[str, str] | None:
    wf = f["provenance"]["workflow"]
    if wf["commit"] is None:
        return None
    return f"workflow commit {wf['commit']}" + (" (uncommitted changes)" if wf["dirty"] else ""), "provenance.json"


@_fills
def _metrics(f: Facts) -> tuple[str, str] | None:
    rows = []
    for name, card in (f.get("cards") or {}).items():
        m = card["metrics"]["internal"]
        if m:
            f1 = ", ".join(f"{c} {v:.3f}" for c, v in m["f1"].items() if v is not None)
            auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            rows.append(f"{name}: F1 {f1}; ROC AUC {auc}")
    return ("per-class precision, recall, F1, ROC AUC, confusion matrix; " + "; ".join(rows),
            "trust_summary.csv") if rows else None  # fmt: skip


@_fills
def _ci(f: Facts) -> tuple[str, str] | None:
    rows = []
    for name, card in (f.get("cards") or {}).items():
        m = card["metrics"]["internal"]
        ci = (m or {}).get("ci", {})
        if m and "accuracy" in ci:
            a = ci["accuracy"]
            rows.append(f"{name}: accuracy {a['estimate']:.3f} [{a['low']:.3f}, {a['high']:.3f}] "
                        f"({ci['level']:.0%}, {ci['unit']} bootstrap)")  # fmt: skip
    return ("; ".join(rows), "trust_summary.csv") if rows else None


@_fills
def _robustness(f: Facts) -> tuple[str, str] | None:
    verdicts = {n: c["shortcut"]["verdict"] for n, c in (f.get("cards") or {}).items() if c.get("shortcut")}
    if not verdicts:
        return None
    return "border-only shortcut audit: " + "; ".join(f"{n} {v}" for n, v in verdicts.items()), "trust_summary.csv"


@_fills
def _explain(f: Facts) -> tuple[str, str] | None:
    if not f["provenance"]["config"]["audit"]["gradcam"]["enabled"] or not f.get("cards"):
        return None
    name = next(iter(f["cards"]))
    return f"Grad-CAM panels of test images per model ({len(f['cards'])} models)", f"experiments/{name}/gradcam.png"


@_fills
def _failure(f: Facts) -> tuple[str, str] | None:
    if not f.get("cards"):
        return None
    name, card = next(iter(f["cards"].items()))
    m = card["metrics"]["internal"]
    return (f"confusion matrix and per-image predictions of every model; {name}: accuracy {m['accuracy']:.3f} on "
            f"{m['counts']['test']['images']} test images", f"experiments/{name}/predictions.csv")  # fmt: skip


@_fills
def _numbers(f: Facts) -> tuple[str, str] | None:
    t = f["flow"]["total"]
    return f"{t['kept']} images split; per split, fold and class in the flow table", "methods/flow.json"


@_fills
def _clusters(f: Facts) -> tuple[str, str] | None:
    n = len(f["flow"]["sources"])
    return (f"{n} sources; cross-source copies grouped; external tests per held-out source where configured",
            "methods/flow.json") if n > 1 else None  # fmt: skip


@_fills
def _imbalance(f: Facts) -> tuple[str, str] | None:
    kept = {}
    for s in f["flow"]["sources"].values():
        for c, n in s["kept_per_class"].items():
            kept[c] = kept.get(c, 0) + n
    return "kept images per class: " + ", ".join(f"{c} {n}" for c, n in kept.items()), "methods/flow.json"


@_fills
def _dates(f: Facts) -> tuple[str, str] | None:
    commits = [f"{n} git {s['git_commit'][:12]}" for n, s in f["provenance"]["sources"].items() if s["git_commit"]]
    return ("dataset versions: " + "; ".join(commits), "provenance.json") if commits else None


def _filler(key: str) -> Filler | None:
    """The function a table row names: none (empty), a filler above, or ``cards:<part>`` of the first card."""
    name, _, part = key.partition(":")
    if not key:
        return None
    if name == "cards" and part:
        return functools.partial(_cards, what=part)
    if key in _FILLERS:
        return _FILLERS[key]
    raise ValueError(f"checklist item table: unknown filler {key!r} (known: {sorted(_FILLERS)}, cards:<part>)")


def _read_items(path: Path) -> tuple[Item, ...]:
    """The checklist items of a table (checklist, number, name, filler), in its order."""
    with path.open(newline="", encoding="utf-8") as f:
        return tuple(Item(r["checklist"], r["number"], r["name"], _filler(r["filler"]))
                     for r in csv.DictReader(f, delimiter="\t", restval=""))  # fmt: skip


# The items, one row each in the TSV beside this module (data, not code: the standards' numbers and names).
ITEMS: tuple[Item, ...] = _read_items(Path(__file__).with_name("checklist_items.tsv"))


def fill(facts: Facts, items: Sequence[Item] = ITEMS) -> list[dict[str, str]]:
    """One row per item: checklist, number, name, status (filled / for the authors), value, link."""
    rows = []
    for item in items:
        got = item.filler(facts) if item.filler is not None else None
        value, link = got if got else ("", "")
        filled = bool(str(value).strip())
        rows.append({"checklist": item.checklist, "number": item.number, "name": item.name,
                     "status": "filled" if filled else FOR_AUTHORS, "value": value if filled else "",
                     "link": link if filled else ""})  # fmt: skip
    return rows


def markdown(rows: Sequence[Mapping[str, str]]) -> str:
    """The checklist as Markdown, one table per checklist, links relative to results/methods/."""
    out = ["# Reporting checklist, filled from this run's records", "",
           f"Items the run cannot know are marked *{FOR_AUTHORS}*. Links lead to the output holding the value.", ""]  # fmt: skip
    for name in dict.fromkeys(r["checklist"] for r in rows):
        out += [f"## {name}", "", "| item | name | value | source |", "|---|---|---|---|"]
        for r in (r for r in rows if r["checklist"] == name):
            value = r["value"].replace("|", "\\|") if r["status"] == "filled" else f"*{FOR_AUTHORS}*"
            link = f"[{r['link']}](../{r['link']})" if r["link"] else ""
            out.append(f"| {r['number']} | {r['name']} | {value} | {link} |")
        out.append("")
    return "\n".join(out)


def html_rows(rows: Sequence[Mapping[str, str]]) -> str:
    """The checklist as an HTML table body for the report page."""
    cells = []
    for r in rows:
        value = html.escape(r["value"]) if r["status"] == "filled" else f"<em>{FOR_AUTHORS}</em>"
        cells.append(f"<tr><td>{html.escape(r['checklist'])}</td><td>{html.escape(r['number'])}</td>"
                     f"<td>{html.escape(r['name'])}</td><td>{value}</td><td>{html.escape(r['link'])}</td></tr>")  # fmt: skip
    return (
        "<table><tr><th>checklist</th><th>item</th><th>name</th><th>value</th><th>output</th></tr>"
        + "".join(cells)
        + "</table>"
    )
