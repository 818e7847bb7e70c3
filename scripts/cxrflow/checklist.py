"""The reporting checklists (TRIPOD+AI, CLAIM) filled from the run's own records.

Each item is filled with a value the run computed and a link to the output that holds
it, or marked "for the authors" where the run cannot know (clinical setting, ethics,
funding). An item is never marked filled without a value: :func:`fill` turns an empty
value into "for the authors". Item numbers and names: TRIPOD+AI (Collins et al., BMJ
2024;385:e078378); CLAIM (Mongan et al. 2020, updated by Tejani et al. 2024).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


def _flow(f: Facts) -> tuple[str, str] | None:
    t = f["flow"]["total"]
    return (f"{t['listed']} files listed, {t['not_selected']} not selected, {t['selected']} selected, "
            f"{t['quarantined']} quarantined, {t['kept']} kept ({t['grouped_as_duplicates']} grouped with copies)",
            "methods/flow.json")  # fmt: skip


def _sources(f: Facts) -> tuple[str, str] | None:
    parts = [f"{n} ({s['path']}: {s['files']} files, sha256 {s['sha256'][:12]}"
             + (f", git {s['git_commit'][:12]}" if s["git_commit"] else "") + ")"
             for n, s in f["provenance"]["sources"].items()]  # fmt: skip
    return "; ".join(parts), "provenance.json"


def _eligibility(f: Facts) -> tuple[str, str] | None:
    specs = f["provenance"]["config"]["sources"]
    parts = [f"{n}: format {s['format']}, filters {dict(s.get('filters') or {})}"
             + (f", limit {s['limit']}" if s.get("limit") else "") for n, s in specs.items()]  # fmt: skip
    return "; ".join(parts) + f"; classes {f['classes']}", "provenance.json"


def _preprocessing(f: Facts) -> tuple[str, str] | None:
    p = f["provenance"]["config"]["preprocess"]
    return (f"black-bar crop, then {p['size']}x{p['size']} 8-bit grayscale PNG; settings "
            + ", ".join(f"{k}={v}" for k, v in sorted(p.items())), "provenance.json")  # fmt: skip


def _missing(f: Facts) -> tuple[str, str] | None:
    q = f["flow"]["total"]["quarantined"]
    reasons = {}
    for s in f["flow"]["sources"].values():
        for k, n in s["quarantined"]["by_reason"].items():
            reasons[k] = reasons.get(k, 0) + n
    text = "; ".join(f"{k}: {n}" for k, n in sorted(reasons.items())) or "none"
    return f"{q} files quarantined (kept out, each with its reason): {text}", "preprocessed/quarantine.csv"


def _sample_size(f: Facts) -> tuple[str, str] | None:
    t = f["flow"]["total"]
    return (
        f"{t['kept']} images ({f['splits']['patients']} patients); no size calculation by the run",
        "splits/summary.json",
    )


def _partition(f: Facts) -> tuple[str, str] | None:
    s = f["provenance"]["config"]["split"]
    return (f"seeded hash of each patient group (seed {s['seed']}), {s['folds']} fold(s), test_size "
            f"{s['test_size']}, val_size {s['val_size']}, stratified by label in expectation",
            "splits/summary.json")  # fmt: skip


def _disjoint(f: Facts) -> tuple[str, str] | None:
    shared = sum(fold["shared_patients"] + fold["shared_groups"] for fold in f["splits"]["folds"])
    return (f"patient level, near-duplicate copies merged into one group; {shared} patients or groups shared "
            "between splits", "splits/summary.json")  # fmt: skip


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


def _software(f: Facts) -> tuple[str, str] | None:
    p = f["provenance"]
    pk = ", ".join(f"{k} {v}" for k, v in p["packages"].items() if v)
    return f"Python {p['python']}; {pk}; Keras backend {', '.join(p['keras_backends']) or 'none'}", "provenance.json"


def _code(f: Facts) -> tuple[str, str] | None:
    wf = f["provenance"]["workflow"]
    if wf["commit"] is None:
        return None
    return f"workflow commit {wf['commit']}" + (" (uncommitted changes)" if wf["dirty"] else ""), "provenance.json"


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


def _robustness(f: Facts) -> tuple[str, str] | None:
    verdicts = {n: c["shortcut"]["verdict"] for n, c in (f.get("cards") or {}).items() if c.get("shortcut")}
    if not verdicts:
        return None
    return "border-only shortcut audit: " + "; ".join(f"{n} {v}" for n, v in verdicts.items()), "trust_summary.csv"


def _explain(f: Facts) -> tuple[str, str] | None:
    if not f["provenance"]["config"]["audit"]["gradcam"]["enabled"] or not f.get("cards"):
        return None
    name = next(iter(f["cards"]))
    return f"Grad-CAM panels of test images per model ({len(f['cards'])} models)", f"experiments/{name}/gradcam.png"


def _failure(f: Facts) -> tuple[str, str] | None:
    if not f.get("cards"):
        return None
    name, card = next(iter(f["cards"].items()))
    m = card["metrics"]["internal"]
    return (f"confusion matrix and per-image predictions of every model; {name}: accuracy {m['accuracy']:.3f} on "
            f"{m['counts']['test']['images']} test images", f"experiments/{name}/predictions.csv")  # fmt: skip


def _numbers(f: Facts) -> tuple[str, str] | None:
    t = f["flow"]["total"]
    return f"{t['kept']} images split; per split, fold and class in the flow table", "methods/flow.json"


def _clusters(f: Facts) -> tuple[str, str] | None:
    n = len(f["flow"]["sources"])
    return (f"{n} sources; cross-source copies grouped; external tests per held-out source where configured",
            "methods/flow.json") if n > 1 else None  # fmt: skip


def _imbalance(f: Facts) -> tuple[str, str] | None:
    kept = {}
    for s in f["flow"]["sources"].values():
        for c, n in s["kept_per_class"].items():
            kept[c] = kept.get(c, 0) + n
    return "kept images per class: " + ", ".join(f"{c} {n}" for c, n in kept.items()), "methods/flow.json"


def _dates(f: Facts) -> tuple[str, str] | None:
    commits = [f"{n} git {s['git_commit'][:12]}" for n, s in f["provenance"]["sources"].items() if s["git_commit"]]
    return ("dataset versions: " + "; ".join(commits), "provenance.json") if commits else None


ITEMS: tuple[Item, ...] = (
    Item("TRIPOD+AI", "5a", "Data sources", _sources),
    Item("TRIPOD+AI", "5b", "Dates of data collection", _dates),
    Item("TRIPOD+AI", "6a", "Study setting (clinical setting, centres)", None),
    Item("TRIPOD+AI", "6b", "Eligibility criteria", _eligibility),
    Item("TRIPOD+AI", "7", "Data preparation and quality checking", _preprocessing),
    Item("TRIPOD+AI", "10", "Sample size", _sample_size),
    Item("TRIPOD+AI", "11", "Missing data", _missing),
    Item("TRIPOD+AI", "12a", "How data were used (partitioning)", _partition),
    Item("TRIPOD+AI", "12c", "Model building, tuning and internal validation", lambda f: _cards(f, "training")),
    Item("TRIPOD+AI", "12d", "Heterogeneity across clusters", _clusters),
    Item("TRIPOD+AI", "12e", "Performance measures", _metrics),
    Item("TRIPOD+AI", "12g", "How predictions are calculated", lambda f: _cards(f, "output")),
    Item("TRIPOD+AI", "13", "Class imbalance", _imbalance),
    Item("TRIPOD+AI", "15", "Model output and thresholds", lambda f: _cards(f, "threshold")),
    Item("TRIPOD+AI", "16", "Differences between development and evaluation data", _characteristics),
    Item("TRIPOD+AI", "17", "Ethical approval", None),
    Item("TRIPOD+AI", "18e", "Data availability", _sources),
    Item("TRIPOD+AI", "18f", "Code availability", _code),
    Item("TRIPOD+AI", "19a", "Funding", None),
    Item("TRIPOD+AI", "19b", "Conflicts of interest", None),
    Item("TRIPOD+AI", "20a", "Flow of participants", _flow),
    Item("TRIPOD+AI", "20b", "Characteristics per source and partition", _characteristics),
    Item("TRIPOD+AI", "21", "Numbers in each analysis", _numbers),
    Item("TRIPOD+AI", "22", "Full model specification", lambda f: _cards(f, "specification")),
    Item("TRIPOD+AI", "23a", "Performance with confidence intervals", _ci),
    Item("TRIPOD+AI", "23b", "Performance across clusters", lambda f: _cards(f, "external")),
    Item("CLAIM", "7", "Data sources", _sources),
    Item("CLAIM", "8", "Eligibility criteria", _eligibility),
    Item("CLAIM", "9", "Data preprocessing steps", _preprocessing),
    Item("CLAIM", "12", "De-identification methods", None),
    Item("CLAIM", "13", "Missing data", _missing),
    Item("CLAIM", "14", "Definition of the reference standard", None),
    Item("CLAIM", "19", "Intended sample size", _sample_size),
    Item("CLAIM", "20", "How data were assigned to partitions", _partition),
    Item("CLAIM", "21", "Level at which partitions are disjoint", _disjoint),
    Item("CLAIM", "22", "Detailed description of the model", lambda f: _cards(f, "architecture")),
    Item("CLAIM", "23", "Software libraries, frameworks and packages", _software),
    Item("CLAIM", "24", "Initialization of model parameters", lambda f: _cards(f, "init")),
    Item("CLAIM", "25", "Details of training approach", lambda f: _cards(f, "training")),
    Item("CLAIM", "26", "Method of selecting the final model", lambda f: _cards(f, "selection")),
    Item("CLAIM", "28", "Metrics of model performance", _metrics),
    Item("CLAIM", "29", "Statistical measures of significance and uncertainty", _ci),
    Item("CLAIM", "30", "Robustness or sensitivity analysis", _robustness),
    Item("CLAIM", "31", "Methods for explainability", _explain),
    Item("CLAIM", "32", "Validation or testing on external data", lambda f: _cards(f, "external")),
    Item("CLAIM", "33", "Flow of participants or cases", _flow),
    Item("CLAIM", "34", "Characteristics of cases in each partition", _characteristics),
    Item("CLAIM", "36", "Estimates of performance and their precision", _ci),
    Item("CLAIM", "37", "Failure analysis of incorrectly classified cases", _failure),
    Item("CLAIM", "40", "Registration", None),
    Item("CLAIM", "42", "Sources of funding", None),
)


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
