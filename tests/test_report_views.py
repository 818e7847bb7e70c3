"""The report's pages: HTML views of table-like results, the Verdict page, the forest plot, a quiet console."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from docutils.core import publish_parts
from matplotlib.image import imread

from cxrflow.console import ShortPathLists, has_gpu_device, shorten, shorten_reason
from cxrflow.layout import DATA_CATEGORY, EXPERIMENT_CATEGORY, VERDICT_CATEGORY
from cxrflow.plots import forest_plot
from cxrflow.record import TRUST_COLUMNS, build_record
from cxrflow.report_views import (
    cell_status,
    file_view,
    run_lines,
    verdict_rows,
    render_caption,
    view_place,
    write_verdict,
)
from test_record import model_parts

REPO = Path(__file__).resolve().parents[1]


def trust_row(experiment: str, fold: int, **changes) -> dict:
    row = dict.fromkeys(TRUST_COLUMNS)
    row.update(
        experiment=experiment,
        fold=fold,
        **{"class": "COVID-19"},
        patients_shared=0,
        duplicates_across_splits=0,
        model_f1=0.8,
        model_f1_low=0.6,
        model_f1_high=0.9,
        ci_width=0.3,
        thumbnail_f1=0.7,
        thumbnail_margin=0.1,
        border_ring_f1=0.75,
        border_ring_margin=0.05,
        source_flag=False,
        border_only_f1=0.5,
        shortcut_verdict="no shortcut",
        shortcut_flag=False,
        experiment_shortcut_verdict="no shortcut",
        experiment_shortcut_flag=False,
        folds_flagged="0/1",
    )
    row.update(changes)
    return row


def test_every_table_result_has_a_place_naming_its_experiment() -> None:
    assert view_place("trust_summary.csv").category == VERDICT_CATEGORY
    assert view_place("audit/data_audit.json").category == DATA_CATEGORY
    place = view_place("experiments/demo_vgg19/fold3/classification_report.txt")
    assert (place.category, place.subcategory) == (EXPERIMENT_CATEGORY, "demo_vgg19")
    assert place.labels == {"experiment": "demo_vgg19", "fold": "3", "figure": "classification report"}
    assert view_place("experiments/x/shortcut_audit.txt").labels["fold"] == "all"
    assert view_place("experiments/x/fold0/external/shortcut_audit.txt").caption == "shortcut_external.rst"
    for place in (view_place("experiments/x/metrics.json"), view_place("experiments/x/nested_cv.csv")):
        assert (REPO / "workflow" / "report" / place.caption).is_file()
    with pytest.raises(ValueError, match="no HTML view"):
        view_place("experiments/x/fold0/model.keras")


def test_file_views_show_csv_json_and_text_in_the_page(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("image_id,patient_id,prob\n<b>a</b>,0012,0.5\n")
    page = file_view(tmp_path / "t.csv", "results/t.csv")
    assert "&lt;b&gt;a&lt;/b&gt;" in page and ">0012<" in page  # escaped, ids stay strings
    (tmp_path / "a.json").write_text(json.dumps({"leakage": {"folds": {"fold0": {"shared": 0}}}, "n": [1, 2]}))
    page = file_view(tmp_path / "a.json", "a")
    assert "leakage.folds.fold0.shared" in page and "1, 2" in page
    (tmp_path / "r.txt").write_text("precision  recall\n")
    assert "<pre>precision  recall\n</pre>" in file_view(tmp_path / "r.txt", "r")


def test_colours_only_where_the_audit_decides() -> None:
    assert cell_status("shortcut_verdict", "shortcut") == "red"
    assert cell_status("shortcut_verdict", "inconclusive") == "amber"
    assert cell_status("shortcut_verdict", "no shortcut") == "green"
    assert cell_status("shortcut_verdict", "not run") is None
    assert cell_status("patients_shared", 2) == "red" and cell_status("patients_shared", 0) == "green"
    assert cell_status("duplicates_across_splits", 1) == "amber"
    assert cell_status("thumbnail_margin", -0.1) == "amber" and cell_status("thumbnail_margin", 0.2) is None
    assert cell_status("model_f1", 0.1) is None
    assert cell_status("confounder_flag", True) == "red" and cell_status("confounder_flag", False) == "green"
    assert cell_status("confounder_flag", None) is None


def test_verdict_rows_take_the_worst_cell_and_the_pooled_verdict() -> None:
    trust = pd.DataFrame([trust_row("a", 0), trust_row("b", 0, patients_shared=1),
                          trust_row("c", 1, shortcut_verdict="no shortcut", experiment_shortcut_verdict="shortcut",
                                    folds_flagged="2/5")])  # fmt: skip
    rows = verdict_rows(trust, ["fine.", "fine.", "borders."])
    assert [r["status"] for r in rows] == ["green", "red", "red"]
    assert rows[0]["cells"]["F1 COVID-19 [CI]"][0] == "0.80 [0.60, 0.90]"
    assert "all folds pooled: shortcut; 2/5 folds flagged" in rows[2]["cells"]["shortcut verdict"][0]
    external = verdict_rows(
        pd.DataFrame(
            [
                trust_row(
                    "e",
                    0,
                    external_f1=0.5,
                    external_f1_low=0.3,
                    external_f1_high=0.7,
                    test_sources="hosp_b",
                    duplicates_internal_external=2,
                    external_shortcut_verdict="shortcut",
                )
            ]
        ),
        [None],
    )[0]
    assert external["cells"]["internal vs external F1"] == (
        "0.80 [0.60, 0.90] vs 0.50 [0.30, 0.70] (hosp_b); shortcut verdict there: shortcut",
        "red",
    )
    assert external["cells"]["duplicates across splits"] == ("0 (2 training/external)", "amber")
    assert external["status"] == "red" and external["cells"]["why"] == ("", None)
    with pytest.raises(ValueError, match="3 trust rows but 1"):
        verdict_rows(trust, ["x"])


def test_verdict_page_forest_plot_and_run_lines_from_records(tmp_path: Path) -> None:
    records = []
    for name, parts in (("demo_vgg19", dict(f1=0.8, external=0.4,
                                            shortcut="Shortcut flagged: the borders <alone> separate the classes.")),
                        ("second", dict(f1=0.7, shortcut="No shortcut."))):  # fmt: skip
        records.append(tmp_path / f"{name}.json")
        records[-1].write_text(json.dumps(build_record(name, 0, model_parts(tmp_path / name, **parts))))
    (tmp_path / "pre.json").write_text(
        json.dumps(
            {
                "ok": 200,
                "quarantined": 1,
                "by_source": {"covid": 100, "rsna": 100},
                "by_label": {"COVID-19": 100, "Normal": 100},
            }
        )
    )
    (tmp_path / "splits.json").write_text(json.dumps({"patients": 170, "folds": [{"fold": "fold0"}]}))
    (tmp_path / "audit.json").write_text(json.dumps({"source_predictability": {"flag": True}}))
    experiments = {"demo_vgg19": {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 20}}
    out = {name: tmp_path / name for name in ("verdict.html", "forest.png", "run.rst", "verdict.log")}
    write_verdict([str(p) for p in records], "COVID-19", tmp_path / "pre.json", tmp_path / "splits.json",
                  tmp_path / "audit.json", experiments, out["verdict.html"], out["forest.png"], out["run.rst"],
                  out["verdict.log"])  # fmt: skip
    page = out["verdict.html"].read_text()
    assert 'id="verdict"' in page and "the borders &lt;alone&gt;" in page
    assert re.search(r'<td class="green">no shortcut</td>', page)
    assert "0.80 [0.60, 0.90] vs 0.40 [0.30, 0.40] (b)" in page
    assert "1 (2 training/external)" in page  # a count from the external split audit
    assert "Data: 200 images (100 COVID-19, 100 Normal) from 2 source(s): covid (100), rsna (100)" in page
    run = publish_parts(out["run.rst"].read_text(), writer_name="html")["body"]  # as the report renders it
    assert run.count("<p>") == 2 and "Experiments: demo_vgg19 (vgg19, weights none, 32 px, 20 epochs).</p>" in run
    image = imread(out["forest.png"])
    assert image.shape[0] > 100 and image.std() > 0
    assert "verdict of 2 model record(s)" in out["verdict.log"].read_text()


def test_view_caption_filled_as_for_the_file_itself() -> None:
    place = view_place("experiments/demo_vgg19/fold3/classification_report.txt")
    text = "{{ snakemake.wildcards.experiment }} fold {{ snakemake.wildcards.fold }}, {{ snakemake.config.classes[0] }}"
    assert render_caption(text, {"classes": ["COVID-19", "Normal"]}, place) == "demo_vgg19 fold 3, COVID-19"


def test_forest_plot_without_experiments(tmp_path: Path) -> None:
    forest_plot(pd.DataFrame(columns=list(TRUST_COLUMNS)), tmp_path / "f.png")
    assert imread(tmp_path / "f.png").shape[1] > 100


def test_run_lines_without_experiments() -> None:
    lines = run_lines({"ok": 3, "by_source": {"a": 3}, "by_label": {"Normal": 3}}, {"patients": 3, "folds": [{}]}, {})
    assert lines[1] == "Experiments: none configured (preprocess and split only)."


def test_long_path_lists_are_shortened_for_the_console() -> None:
    paths = [f"results/demo/img{i}.png" for i in range(200)]
    assert shorten(paths) == paths[:3] + ["... and 197 more"]
    assert shorten(paths[:4]) == paths[:4]
    reason = "Missing output files: " + ", ".join(paths) + "; Code has changed since last execution"
    assert shorten_reason(reason) == (
        "Missing output files: results/demo/img0.png, results/demo/img1.png, "
        "results/demo/img2.png, ... and 197 more; Code has changed since last execution"
    )
    record = logging.LogRecord("snakemake", logging.INFO, "", 0, None, None, None)
    record.output, record.input, record.reason = list(paths), ["a"], reason
    assert ShortPathLists().filter(record)
    assert record.output[-1] == "... and 197 more" and record.input == ["a"] and "197 more;" in record.reason


def test_gpu_detection_reads_device_nodes(tmp_path: Path) -> None:
    assert not has_gpu_device(tmp_path)
    (tmp_path / "nvidiactl").touch()
    assert not has_gpu_device(tmp_path)  # the control node alone is no card
    (tmp_path / "nvidia0").touch()
    assert has_gpu_device(tmp_path)


def test_cuda_probe_and_start_notices_dropped_other_stderr_and_tracebacks_kept(tmp_path: Path) -> None:
    """A plain Python child (no Keras): C-level writes to fd 2 are filtered line by line."""
    code = (
        "import os, sys\n"
        "from cxrflow.console import quiet_cuda_probe\n"
        f"assert quiet_cuda_probe({str(tmp_path)!r})\n"
        "os.write(2, b'E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\\n')\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1796637443.310850   23043 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'I0000 00:00:1796637443.311729   23043 cudart_stub.cc:31] Could not find cuda drivers\\n')\n"
        "os.write(2, b'I0000 00:00:1796637443.552156   23043 cpu_feature_guard.cc:227] This TensorFlow binary\\n')\n"
        "os.write(2, b'To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
        "with the appropriate compiler flags.\\n')\n"
        "os.write(2, b'I0000 00:00:1796637874.949575   26806 generator_dataset_op.cc:213] Memory patch applied: "
        "M_TRIM_THRESHOLD=128 kb was set.\\n')\n"
        "os.write(2, b'W0000 00:00:1796637443.552156   23043 port.cc:99] a warning stays\\n')\n"
        "os.write(2, b'E0000 real error stays\\n')\n"
        "print('python warning stays', file=sys.stderr)\n"
        "raise RuntimeError('the job failed')\n"
    )
    env = {"PYTHONPATH": str(REPO / "scripts")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    assert "cuInit" not in proc.stderr
    for notice in ("InitializeLog", "oneDNN", "cuda drivers", "TensorFlow binary", "To enable", "Memory patch"):
        assert notice not in proc.stderr, notice
    assert "a warning stays" in proc.stderr
    assert "real error stays" in proc.stderr and "python warning stays" in proc.stderr
    assert "RuntimeError: the job failed" in proc.stderr
