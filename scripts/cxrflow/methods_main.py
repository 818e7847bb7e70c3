"""Entry points of the methods rules (workflow/rules/methods.smk): the run's own methods section.

Each reads the files its rule names, calls the module that computes (flow, partitions,
provenance, model_card, predict, checklist) and writes the machine-readable file and
the page the report shows. No computation lives here.

The flow and predict entries import split and predict themselves: each rule job is a fresh
Python process, and the provenance, model card and checklist jobs would otherwise pay for
SciPy and scikit-learn (about 1 s of CPU each) that they never use.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .checklist import fill, html_rows, markdown
from .flow import flow_counts, flow_errors, flow_figure, flow_rows
from .manifest import read_manifest, write_csv_atomic
from .model_card import build_card, card_rows, read_json
from .partitions import partition_table
from .provenance import build_provenance, provenance_rows
from .report_views import page

# The page states the times on one last line of their own (class "times"), apart from what two runs share.
TIME_ROWS = ("start", "end")


def write_json(data: Any, path: str | Path) -> None:
    """Indented, key-sorted JSON: the same record gives the same bytes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def rows_html(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def table_html(table: pd.DataFrame) -> str:
    return table.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.4g}", border=0)


def _read_optional_csv(path: str | None) -> pd.DataFrame | None:
    if not path or not Path(path).is_file():
        return None
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def flow_main(inputs: Mapping[str, Any], outputs: Mapping[str, str], classes: Sequence[str],
              external: Mapping[str, str], skipped_csv: str | None) -> dict[str, Any]:  # fmt: skip
    """Rule data_flow: flow.json (checked: its counts must add up), the diagram, partitions.csv and their pages."""
    from .split import read_split_file  # SciPy and the copy search's modules: this job alone needs them

    manifest = read_manifest(inputs["manifest"])
    assignments = read_split_file(inputs["assignments"])
    groups = json.loads(Path(inputs["duplicate_groups"]).read_text())
    externals = {e: read_split_file(p) for e, p in external.items()}
    flow = flow_counts(manifest, assignments, groups, classes, _read_optional_csv(skipped_csv), externals)
    errors = flow_errors(flow)
    if errors:
        raise ValueError("the data flow does not add up:\n" + "\n".join(errors))
    write_json(flow, outputs["flow"])
    flow_figure(flow, outputs["figure"])
    parts = partition_table(manifest, assignments, classes, externals)
    write_csv_atomic(parts, Path(outputs["partitions"]))
    note = ("<p class=\"note\">Files listed = the manifest's rows plus the files skipped at listing "
            "(results/preprocessed/skipped.csv, where present). Copies are never dropped: they are grouped "
            "with their twin and travel with it. Every step adds up (checked when written).</p>")  # fmt: skip
    Path(outputs["flow_page"]).write_text(page("Data flow", note + table_html(flow_rows(flow))))
    Path(outputs["partitions_page"]).write_text(page("Characteristics per partition", table_html(parts)))
    return flow


def provenance_main(config: Mapping[str, Any], workflow_dir: str, constraints: str, outputs: Mapping[str, str],
                    start: str | None, previous: str | None) -> dict[str, Any]:  # fmt: skip
    """Rule provenance: results/provenance.json and its page. ``start``: the run's start (seconds since
    the epoch, as text); ``previous``: a copy of the last record, against whose fingerprints the new ones are
    checked."""
    record = build_provenance(config, workflow_dir, constraints, None if start is None else float(start), time.time(),
                              read_json(previous))  # fmt: skip
    write_json(record, outputs["record"])
    config_text = html.escape(json.dumps(record["config"], indent=2, sort_keys=True, default=str))
    rows = [row for row in provenance_rows(record) if row[0] not in TIME_ROWS]
    times = record["times"]
    body = (rows_html(rows) + f"<h2>Resolved configuration</h2><pre>{config_text}</pre>\n"
            f"<p class=\"times\">run start {times['start']}, provenance written {times['end']}</p>")  # fmt: skip
    Path(outputs["page"]).write_text(page("Provenance", body))
    return record


def card_main(experiment: str, fold: str, params: Mapping[str, Any], classes: Sequence[str],
              preprocess: Mapping[str, Any], files: Mapping[str, str | None], outputs: Mapping[str, str]) -> dict:  # fmt: skip
    """Rule model_card: model_card.json beside the model and its page."""
    card = build_card(experiment, fold, params, classes, preprocess, files)
    write_json(card, outputs["card"])
    Path(outputs["page"]).write_text(page(f"Model card {card['name']}", rows_html(card_rows(card))))
    return card


def predict_main(model: str, card: str, manifest: str, source: str, classes: Sequence[str],
                 experiment: Mapping[str, Any], output: str) -> int:  # fmt: skip
    """Rule predict: one model on one source's images."""
    from .predict import predict_source

    return len(predict_source(model, card, manifest, source, classes, experiment, output))


def checklist_main(inputs: Mapping[str, Any], cards: Mapping[str, str], classes: Sequence[str],
                   outputs: Mapping[str, str]) -> list[dict[str, str]]:  # fmt: skip
    """Rule checklist: checklist.md and its page, every item filled from the run's files or left for the authors."""
    facts = {
        "flow": read_json(inputs["flow"]),
        "provenance": read_json(inputs["provenance"]),
        "splits": read_json(inputs["splits"]),
        "partitions": pd.read_csv(inputs["partitions"], dtype=str, keep_default_na=False).to_dict("records"),
        "cards": {name: read_json(path) for name, path in cards.items()},
        "classes": list(classes),
    }
    rows = fill(facts)
    Path(outputs["markdown"]).write_text(markdown(rows), encoding="utf-8")
    Path(outputs["page"]).write_text(page("Reporting checklist (TRIPOD+AI, CLAIM)", html_rows(rows)))
    return rows
