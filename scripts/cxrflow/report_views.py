"""What a reader of report.html sees: HTML views of the table-like results, and the Verdict page.

Snakemake's report shows images and HTML files in the page but offers every CSV,
JSON or text file only as a download, so the numbers this workflow exists to get
right (the shortcut verdict, F1 with its interval, the baselines' margins, leakage
counts) could not be read in the report. Each such file therefore gets a
standalone HTML view (the file itself stays in ``results/`` for machines), and
``verdict_html`` puts the trust summary of every experiment and fold on one page,
coloured red/amber/green where the audit itself decides (``cell_status``).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .rule_log import job_log
from .layout import DATA_CATEGORY, EXPERIMENT_CATEGORY, VERDICT_CATEGORY
from .record import evaluation_notes, read_record, shortcut_reasons, trust_table

_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.red { background: #f8d0d0; } td.amber { background: #fde8b0; } td.green { background: #d6f0d6; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
p.note { color: #555; max-width: 60em; }
"""


def page(title: str, body: str) -> str:
    """A complete HTML page (the report shows it in a frame, so it brings its own style)."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


@dataclass(frozen=True)
class ViewPlace:
    """Where a result file's view sits in the report, and the caption (workflow/report/*.rst) it keeps."""

    caption: str
    category: str
    subcategory: str | None = None
    labels: Mapping[str, str] | None = None
    experiment: str | None = None
    fold: str | None = None


# Path under results/ -> (caption file, figure label); experiment files name their experiment and fold.
_GLOBAL = {
    "trust_summary.csv": ("trust_summary.rst", VERDICT_CATEGORY, "trust summary, every column"),
    "preprocessed/summary.json": ("manifest.rst", DATA_CATEGORY, "images per source, label and status"),
    "splits/summary.json": ("splits.rst", DATA_CATEGORY, "splits"),
    "audit/duplicates.csv": ("duplicates.rst", DATA_CATEGORY, "near-duplicate pairs"),
    "audit/data_audit.json": ("data_audit.rst", DATA_CATEGORY, "data audit"),
    "audit/confounders.json": ("confounders.rst", DATA_CATEGORY, "confounders (age, sex, view, source)"),
}
_EXPERIMENT = [
    (r"splits/audit\.json", "experiment_split.rst", "split audit"),
    (r"metrics\.json", "summary.rst", "summary metrics"),
    (r"summary\.txt", "summary_text.rst", "summary table"),
    (r"shortcut_audit\.txt", "shortcut_experiment.rst", "shortcut audit (all folds)"),
    (r"internal_vs_external\.csv", "internal_vs_external.rst", "internal vs external"),
    (r"nested_cv\.csv", "nested_cv.rst", "nested CV choices"),
    (r"fold(?P<fold>\d+)/predictions\.csv", "predictions.rst", "predictions"),
    (r"fold(?P<fold>\d+)/classification_report\.txt", "classification_report.rst", "classification report"),
    (r"fold(?P<fold>\d+)/shortcut_audit\.txt", "shortcut_audit.rst", "shortcut audit"),
    (r"fold(?P<fold>\d+)/external/predictions\.csv", "external_predictions.rst", "external predictions"),
    (r"fold(?P<fold>\d+)/external/classification_report\.txt", "external_report.rst", "external classification report"),
    (r"fold(?P<fold>\d+)/external/shortcut_audit\.txt", "shortcut_external.rst", "external shortcut audit"),
    (r"fold(?P<fold>\d+)/calibration\.json", "calibration.rst", "calibration"),
    (r"fold(?P<fold>\d+)/operating_point\.json", "operating_point.rst", "operating point"),
    (r"fold(?P<fold>\d+)/subgroups\.csv", "subgroups_table.rst", "subgroup table"),
    (r"seeds\.json", "seeds_table.rst", "F1 per seed"),
]


def experiment_labels(experiment: str, fold: str, figure: str) -> dict[str, str]:
    """The labels of every item of an experiment: its name first, so the report's list says whose it is."""
    return {"experiment": experiment, "fold": fold, "figure": figure}


def view_place(path: str) -> ViewPlace:
    """Category, labels and caption of the view of ``path`` (relative to results/); ValueError if unknown."""
    path = path.replace("\\", "/")
    if path in _GLOBAL:
        caption, category, figure = _GLOBAL[path]
        return ViewPlace(caption, category, None, {"figure": figure})
    match = re.fullmatch(r"experiments/(?P<experiment>[^/]+)/(?P<rest>.+)", path)
    if match:
        experiment = match["experiment"]
        for pattern, caption, figure in _EXPERIMENT:
            found = re.fullmatch(pattern, match["rest"])
            if found:
                fold = found.groupdict().get("fold")
                return ViewPlace(caption, EXPERIMENT_CATEGORY, experiment,
                                 experiment_labels(experiment, fold if fold is not None else "all", figure),
                                 experiment, fold)  # fmt: skip
    raise ValueError(f"results/{path}: no HTML view is defined for this file")


def render_caption(template: str, config: Mapping[str, Any], place: ViewPlace) -> str:
    """A result's own caption (workflow/report/*.rst) with its Jinja filled in as Snakemake fills it
    for the file itself (``snakemake.config``, ``snakemake.wildcards.experiment``/``fold``), so the
    view's caption reads as the file's caption always did."""
    import jinja2  # only the report_view rule pays for it

    stand_in = {"config": config, "wildcards": {"experiment": place.experiment, "fold": place.fold}}
    return jinja2.Template(template).render(snakemake=_Attributes(stand_in))


class _Attributes(dict):
    """A mapping read by attribute, as Jinja reads Snakemake's ``snakemake`` object (nested mappings too)."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _Attributes(value) if isinstance(value, Mapping) and not isinstance(value, _Attributes) else value


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested JSON as (dotted key, leaf) rows; short lists of scalars stay one cell."""
    if isinstance(tree, Mapping):
        rows: list[tuple[str, Any]] = []
        for key, value in tree.items():
            rows += _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return rows or [(prefix, "{}")]
    if isinstance(tree, list) and any(isinstance(v, (Mapping, list)) for v in tree):
        rows = []
        for i, value in enumerate(tree):
            rows += _flatten(value, f"{prefix}[{i}]")
        return rows or [(prefix, "[]")]
    return [(prefix, tree)]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return "" if value is None else str(value)


def frame_html(frame: pd.DataFrame) -> str:
    """A table, numbers right-aligned with four significant digits."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for value in record:
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            cells.append(_td(_cell(value), numeric=numeric))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"


def file_view(path: str | Path, title: str) -> str:
    """The HTML view of one result: a CSV as a table, a JSON as key/value rows, text as it is."""
    path = Path(path)
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        body = frame_html(frame) if len(frame.columns) else "<p>(empty table)</p>"
        body = f'<p class="note">{len(frame)} row(s).</p>\n{body}'
    elif path.suffix == ".json":
        rows = _flatten(json.loads(path.read_text()))
        body = frame_html(pd.DataFrame(rows, columns=["key", "value"]).astype({"value": object}))
    elif path.suffix == ".txt":
        body = f"<pre>{html.escape(path.read_text())}</pre>"
    else:
        raise ValueError(f"{path}: no HTML view for {path.suffix or 'files without a suffix'}")
    return page(title, body)


# --- The Verdict page ---------------------------------------------------------------------------------


def _verdict_status(verdict: str) -> str | None:
    """The colour of a shortcut verdict (shortcut.VERDICTS, in its order); None for ``not run``.

    Imported here, not at the top: shortcut imports scikit-learn, and every Snakemake start
    imports this module (view_place) but only the verdict job colours cells."""
    from .shortcut import VERDICTS

    return dict(zip(VERDICTS, ("red", "amber", "green", "amber"), strict=True)).get(verdict)


def _missing(value: Any) -> bool:
    """None, NaN, pandas' NA (a count column without a value) or an empty string."""
    if isinstance(value, str):
        return value == ""
    return value is None or bool(pd.isna(value))


def cell_status(column: str, value: Any) -> str | None:
    """red/amber/green where the audit itself says so; None where it decides nothing.

    * a shortcut verdict: ``shortcut`` red (the only flagged verdict); ``borders informative``
      and ``inconclusive`` amber; ``no shortcut`` green; ``not run`` uncoloured.
    * patients in two splits: must be 0 (red otherwise); near-duplicates across splits or
      between training and external data: should be 0 (amber otherwise).
    * margin over a trivial baseline at or below 0: the model adds nothing over it (amber).
    * source predictable from pixels and coinciding with the label (amber).
    * a covariate (age band, sex, view) alone predicting the label: a confound no test split
      resolves (red, ``confounder_flag``).
    """
    if _missing(value):
        return None
    if column in ("shortcut_verdict", "experiment_shortcut_verdict", "external_shortcut_verdict"):
        return _verdict_status(str(value))
    if column == "patients_shared":
        return "red" if float(value) > 0 else "green"
    if column in ("duplicates_across_splits", "duplicates_internal_external"):
        return "amber" if float(value) > 0 else "green"
    if column in ("thumbnail_margin", "border_ring_margin"):
        return "amber" if float(value) <= 0 else None
    if column == "source_flag":
        return "amber" if str(value).lower() == "true" else "green"
    if column == "confounder_flag":
        return "red" if str(value).lower() == "true" else "green"
    return None


def _num(value: Any, digits: int = 2) -> str:
    return "n/a" if _missing(value) else f"{float(value):.{digits}f}"


def _interval(value: Any, low: Any, high: Any) -> str:
    if _missing(value):
        return ""
    bounds = "" if _missing(low) or _missing(high) else f" [{_num(low)}, {_num(high)}]"
    return _num(value) + bounds


def _td(text: str, status: str | None = None, numeric: bool = False, href: str | None = None) -> str:
    classes = " ".join(c for c in (status, "num" if numeric else None) if c)
    attribute = f' class="{classes}"' if classes else ""
    content = html.escape(text) if href is None else f'<a href="{html.escape(href)}">{html.escape(text)}</a>'
    return f"<td{attribute}>{content}</td>"


def _worst(*statuses: str | None) -> str | None:
    """red over amber over green; None when no cell was coloured."""
    return next((s for s in ("red", "amber", "green") if s in statuses), None)


def _external_cell(record: Mapping[str, Any], external: str) -> tuple[str, str | None]:
    """Internal F1 vs the held-out sources' F1, with the border-only verdict on them."""
    if not external:
        return "no external test", None
    internal = _interval(record["model_f1"], record["model_f1_low"], record["model_f1_high"])
    text = f"{internal} vs {external} ({record['test_sources']})"
    verdict = record.get("external_shortcut_verdict")
    if _missing(verdict):
        return text, None
    return f"{text}; shortcut verdict there: {verdict}", cell_status("external_shortcut_verdict", verdict)


def _duplicates_cell(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """Near-duplicate pairs across this fold's splits, and between its training data and the external set."""
    across = record["duplicates_across_splits"]
    text, status = str(int(across)), cell_status("duplicates_across_splits", across)
    external = record.get("duplicates_internal_external")
    if _missing(external):
        return text, status
    return (f"{text} ({int(float(external))} training/external)",
            _worst(status, cell_status("duplicates_internal_external", external)))  # fmt: skip


def _calibration_cell(record: Mapping[str, Any]) -> str:
    """Brier score, calibration intercept and slope of the positive class on the test split, with intervals."""
    if _missing(record.get("brier")):
        return ""
    return (f"Brier {_interval(record['brier'], record['brier_low'], record['brier_high'])}; intercept "
            f"{_interval(record['calibration_intercept'], record['calibration_intercept_low'], record['calibration_intercept_high']) or 'n/a'}; "
            f"slope {_interval(record['calibration_slope'], record['calibration_slope_low'], record['calibration_slope_high']) or 'n/a'}")  # fmt: skip


def _threshold_cell(record: Mapping[str, Any], note: Mapping[str, Any]) -> str:
    """Which threshold, how it was chosen on validation, where it was applied, and what it gives on the test split."""
    if _missing(record.get("threshold")):
        return ""
    how = note.get("threshold_description") or str(record["threshold_rule"])
    where = ", ".join(note.get("applied_to") or [])
    figures = "; ".join(f"{name} {_interval(record[f'{m}_at_threshold'], record[f'{m}_at_threshold_low'], record[f'{m}_at_threshold_high']) or 'n/a'}"
                        for m, name in (("sensitivity", "sens"), ("specificity", "spec"), ("ppv", "PPV"),
                                        ("npv", "NPV"), ("f1", "F1")))  # fmt: skip
    return f"{_num(record['threshold'], 3)} ({how}); applied unchanged to {where}; on test: {figures}"


def _subgroup_cell(record: Mapping[str, Any], note: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """The lowest F1 among subgroups of at least evaluation.min_subgroup images, the small ones counted,
    linked to the subgroup table's view."""
    table = note.get("subgroups_table")
    if table is None:
        return "", None, None
    worst = ("no subgroup large enough" if _missing(record.get("worst_subgroup_f1")) else
             f"lowest F1 {_num(record['worst_subgroup_f1'])} in {record['worst_subgroup']}")  # fmt: skip
    small = "" if _missing(record.get("subgroups_small")) else f"; {int(float(record['subgroups_small']))} small"
    return f"{worst}{small} (table)", None, f"views/{table.removeprefix('results/')}.html"


def verdict_rows(trust: pd.DataFrame, reasons: Sequence[str | None],
                 notes: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The Verdict table's rows (text, status and optional link per cell), one per experiment and fold.

    ``reasons`` is aligned with ``trust``: each fold's shortcut-audit sentence, None when the
    control did not run; ``notes`` (``record.evaluation_notes``) likewise: how the threshold was
    chosen, where it was applied, the subgroup table.
    """
    if len(reasons) != len(trust):
        raise ValueError(f"{len(trust)} trust rows but {len(reasons)} shortcut reasons")
    notes = list(notes) if notes is not None else [{} for _ in reasons]
    rows = []
    for record, reason, note in zip(trust.to_dict("records"), reasons, notes, strict=True):
        verdict = record.get("shortcut_verdict")
        experiment_verdict = record.get("experiment_shortcut_verdict")
        verdict_text = "" if _missing(verdict) else str(verdict)
        flagged = "" if _missing(record.get("folds_flagged")) else str(record["folds_flagged"])
        if not _missing(experiment_verdict) and flagged.partition("/")[2] not in ("", "1"):
            # several folds: the experiment's verdict on all folds pooled is the one to read first
            verdict_text += f" (experiment, all folds pooled: {experiment_verdict}; {flagged} folds flagged)"
        external = _interval(record.get("external_f1"), record.get("external_f1_low"), record.get("external_f1_high"))
        cells = {
            "experiment": (str(record["experiment"]), None),
            "fold": (str(record["fold"]), None),
            f"F1 {record['class']} [CI]": (_interval(record["model_f1"], record["model_f1_low"],
                                                     record["model_f1_high"]), None),
            "margin over thumbnail": (_num(record["thumbnail_margin"]),
                                      cell_status("thumbnail_margin", record["thumbnail_margin"])),
            "margin over border ring": (_num(record["border_ring_margin"]),
                                        cell_status("border_ring_margin", record["border_ring_margin"])),
            "shortcut verdict": (verdict_text, _worst(cell_status("shortcut_verdict", verdict),
                                                     cell_status("experiment_shortcut_verdict", experiment_verdict))),
            "why": ("" if reason is None else reason, None),
            "internal vs external F1": _external_cell(record, external),
            "patients shared": (str(int(record["patients_shared"])),
                                cell_status("patients_shared", record["patients_shared"])),
            "duplicates across splits": _duplicates_cell(record),
            "calibration (test)": (_calibration_cell(record), None),
            "operating point": (_threshold_cell(record, note), None),
            "subgroups": _subgroup_cell(record, note),
        }  # fmt: skip
        rows.append({"status": _worst(*(c[1] for c in cells.values())), "cells": cells})
    return rows


def confounder_line(confounders: Mapping[str, Any] | None) -> str:
    """The run's covariate check (results/audit/confounders.json) as one coloured sentence; "" when absent."""
    if confounders is None:
        return ""
    status = cell_status("confounder_flag", confounders["flag"])
    return (
        f'<p id="confounders">Confounders: <span class="{status}">{status}</span>, '
        f"{html.escape(confounders['sentence'])}</p>"
    )


def seed_lines(seeds: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per experiment with `seeds` (its seeds.json): F1 per seed, mean, sd and range."""
    lines = []
    for summary in seeds:
        f1 = summary["f1"]
        each = ", ".join(f"seed {r['seed']} {_num(r['f1'])}" for r in summary["per_seed"])
        lines.append(
            f"Seeds of {summary['experiment']}: F1 of {summary['positive']} {each}; mean {_num(f1['mean'])}, "
            f"sd {_num(f1['sd'])}, range {_num(f1['range'])} ({_num(f1['min'])} to {_num(f1['max'])})."
        )
    return lines


def verdict_html(trust: pd.DataFrame, reasons: Sequence[str | None], run_lines: Sequence[str],
                 source_flag: bool | None, confounders: Mapping[str, Any] | None = None,
                 notes: Sequence[Mapping[str, Any]] | None = None,
                 seeds: Sequence[Mapping[str, Any]] = ()) -> str:  # fmt: skip
    """The Verdict page: what ran, the data's source and covariate checks, then one row per experiment and fold
    with what to trust (calibration, the frozen operating point and the subgroups included), then each
    experiment's spread over seeds."""
    rows = verdict_rows(trust, reasons, notes)
    numeric = {"margin over thumbnail", "margin over border ring", "patients shared", "duplicates across splits"}
    if rows:
        head = "<th>status</th>" + "".join(f"<th>{html.escape(name)}</th>" for name in rows[0]["cells"])
        body_rows = []
        for row in rows:
            status = row["status"] or ""
            cells = "".join(_td(cell[0], cell[1], name in numeric, *cell[2:]) for name, cell in row["cells"].items())
            body_rows.append(f"<tr>{_td(status, row['status'] or None)}{cells}</tr>")
        table = (f"<table id=\"verdict\">\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body_rows)
                 + "\n</tbody></table>")  # fmt: skip
    else:
        table = "<p>No experiment configured: the run stopped at the splits.</p>"
    run = "".join(f"<p>{html.escape(line)}</p>" for line in run_lines)
    source = ""
    if source_flag is not None:
        status = "amber" if source_flag else "green"
        words = ("the source collection can be read off the pixels and coincides with the label: "
                 "a model may tell the sources apart, not the classes" if source_flag else
                 "the source collection is not predictable from the pixels beyond the label")  # fmt: skip
        source = f'<p>Data audit: <span class="{status}">{status}</span>, {html.escape(words)}.</p>'
    source += confounder_line(confounders)
    spread = "".join(f'<p class="seeds">{html.escape(line)}</p>' for line in seed_lines(seeds))
    note = ("<p class=\"note\">F1 is that of the first class with its bootstrap confidence interval over the test "
            "patients. A margin is the model's F1 minus that of a trivial baseline trained on the same split "
            "(on small thumbnails; on the outer border ring only): at or below 0 the model adds nothing over it. The "
            "shortcut verdict compares the model with a border-only control whose lung field is masked. "
            "Calibration: Brier score (lower is better), intercept (0 ideal) and slope (1 ideal) of the first "
            "class on the test split. Operating point: the threshold chosen on the validation split only, frozen "
            "and applied unchanged to each test set. Subgroups: the lowest F1 among groups of at least "
            "evaluation.min_subgroup test images. Intervals are over the test split groups (docs/trust.md). "
            "Colours: red where the audit flags, amber where it warns, green where it passes. Every column is "
            "described under trust_summary.csv in this category.</p>")  # fmt: skip
    style = "<style>span.red{background:#f8d0d0}span.amber{background:#fde8b0}span.green{background:#d6f0d6}</style>"
    return page("Verdict: can these numbers be trusted?", f"{style}{run}\n{source}\n{table}\n{spread}\n{note}")


# --- What ran, in two lines ------------------------------------------------------------------------------


def run_lines(preprocess: Mapping[str, Any], splits: Mapping[str, Any],
              experiments: Mapping[str, Mapping[str, Any]]) -> list[str]:  # fmt: skip
    """Two sentences from the run's own records: the data (sources, image counts, patients, folds), and the
    experiments (architecture, weights, input size, folds).

    ``preprocess`` is results/preprocessed/summary.json, ``splits`` results/splits/summary.json and
    ``experiments`` each experiment's settings by name.
    """
    sources = ", ".join(f"{name} ({count})" for name, count in preprocess.get("by_source", {}).items())
    labels = ", ".join(f"{count} {label}" for label, count in preprocess.get("by_label", {}).items())
    quarantined = preprocess.get("quarantined", 0)
    folds = len(splits.get("folds", []))
    data = (f"Data: {preprocess.get('ok', 0)} images ({labels}) from {len(preprocess.get('by_source', {}))} "
            f"source(s): {sources}; {quarantined} quarantined; {splits.get('patients', '?')} patients split "
            f"by patient into {folds} fold(s).")  # fmt: skip
    if not experiments:
        return [data, "Experiments: none configured (preprocess and split only)."]
    parts = []
    for name, spec in experiments.items():
        bits = [str(spec.get(k)) for k in ("arch",) if spec.get(k)]
        if spec.get("weights") is not None:
            bits.append(f"weights {spec['weights']}")
        if spec.get("image_size"):
            bits.append(f"{spec['image_size']} px")
        if spec.get("epochs"):
            bits.append(f"{spec['epochs']} epochs")
        if spec.get("test_sources"):
            bits.append("external test on " + ", ".join(spec["test_sources"]))
        parts.append(f"{name} ({', '.join(bits)})")
    return [data, f"Experiments: {'; '.join(parts)}."]


def run_rst(lines: Sequence[str]) -> str:
    """The two lines as reStructuredText for the report's first page (one paragraph each)."""
    special = re.compile(r"([\\*`_|])")  # rst markup characters: a source named `a_` stays text
    return "\n\n".join(special.sub(r"\\\1", line) for line in lines) + "\n"


# --- Entry points of the report rules ---------------------------------------------------------------------


def write_view(source: str | Path, target: str | Path, title: str, log_path: str | Path) -> None:
    """Rule report_view: the HTML view of one result file."""
    with job_log(log_path) as log:
        Path(target).write_text(file_view(source, title))
        log.info("HTML view of %s written to %s", source, target)


def write_verdict(record_paths: Sequence[str], positive: str, preprocess_json: str | Path,
                  splits_json: str | Path, data_audit_json: str | Path,
                  experiments: Mapping[str, Mapping[str, Any]], html_path: str | Path, forest_path: str | Path,
                  run_path: str | Path, log_path: str | Path, seeds_paths: Sequence[str] = ()) -> None:  # fmt: skip
    """Rule verdict: the Verdict page, the forest plot and the two lines on what ran (run.rst).

    ``record_paths`` are the models' records (``cxrflow.record``) in the trust summary's row order;
    the page shows their trust columns and each shortcut audit's sentence. ``seeds_paths``: the
    seed summaries (seeds.json) of experiments with `seeds`, shown as lines and in the forest plot.
    """
    from .plots import forest_plot

    with job_log(log_path) as log:
        records = [read_record(p) for p in record_paths]
        trust = trust_table(records, positive)
        lines = run_lines(json.loads(Path(preprocess_json).read_text()), json.loads(Path(splits_json).read_text()),
                          experiments)  # fmt: skip
        audit = json.loads(Path(data_audit_json).read_text())
        source_flag = (audit.get("source_predictability") or {}).get("flag")
        confounders = records[0]["parts"].get("confounders") if records else None  # run-level: one for all
        seeds = [json.loads(Path(p).read_text()) for p in seeds_paths]
        Path(html_path).write_text(verdict_html(trust, shortcut_reasons(records), lines, source_flag, confounders,
                                                evaluation_notes(records, positive), seeds))  # fmt: skip
        forest_plot(trust, forest_path, seeds)
        Path(run_path).write_text(run_rst(lines))
        log.info("verdict of %d model record(s) written to %s, forest plot %s", len(records), html_path, forest_path)


def verdict_rule(inputs: Any, outputs: Any, experiments: Mapping[str, Mapping[str, Any]], positive: str,
                 log_path: str) -> None:  # fmt: skip
    """Rule verdict, one short call: :func:`write_verdict` with the rule's named inputs and outputs unpacked."""
    write_verdict(list(inputs.records), positive, inputs.preprocess, inputs.splits, inputs.data_audit, experiments,
                  outputs.html, outputs.forest, outputs.run, log_path, list(inputs.seeds))  # fmt: skip
