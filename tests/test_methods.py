"""The methods record's library: flow sums, partition table, provenance fingerprints, the
reproducible model file, the model card's hash check, the prediction's decision rule and
the checklist (real files, a real tiny Keras model; nothing mocked)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from cxrflow import archive, checklist, flow, model_card, partitions, predict, provenance

CLASSES = ["COVID-19", "Normal"]


def manifest_rows() -> pd.DataFrame:
    rows = [
        ("a-1", "a", "COVID-19", "p1", "ok", ""), ("a-2", "a", "COVID-19", "p1", "ok", ""),
        ("a-3", "a", "Normal", "p2", "quarantined", "missing file"),
        ("a-4", "a", "Normal", "p3", "quarantined", "unsafe path: ../x"),
        ("b-1", "b", "Normal", "q1", "ok", ""), ("b-2", "b", "Normal", "q2", "ok", ""),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["image_id", "source", "label", "patient_id", "status", "reason"])


def assignment_rows() -> pd.DataFrame:
    ok = manifest_rows().query("status == 'ok'")
    return ok[["image_id", "label", "patient_id", "source"]].assign(
        fold0=["train", "train", "test", "val"], fold1=["test", "test", "train", "train"]
    )


def test_flow_counts_add_up_and_name_reasons() -> None:
    skipped = pd.DataFrame({"source": ["a", "a"], "path": ["x.txt", "y/z.png"],
                            "reason": ["not an image", "not a configured class: Other"]})  # fmt: skip
    result = flow.flow_counts(manifest_rows(), assignment_rows(), {"a-1": "c1", "b-1": "c1"}, CLASSES, skipped)
    a = result["sources"]["a"]
    assert (a["listed"], a["selected"], a["kept"], a["grouped_as_duplicates"]) == (6, 4, 2, 1)
    assert a["not_selected"]["by_reason"] == {"not a configured class": 1, "not an image": 1}
    assert a["quarantined"]["by_reason"] == {"missing file": 1, "unsafe path": 1}
    assert a["folds"]["fold1"]["test"] == {"COVID-19": 2, "Normal": 0}
    assert result["total"]["listed"] == 8 and result["duplicate_clusters"] == 1
    assert flow.flow_errors(result) == []
    assert len(flow.flow_rows(result)) == 2 * (6 + 2 * 3)


def test_flow_errors_catch_a_lost_image() -> None:
    lost = assignment_rows().iloc[1:]  # a kept image that reached no split
    errors = flow.flow_errors(flow.flow_counts(manifest_rows(), lost, {}, CLASSES))
    assert any("kept images but 1 in the split" in e for e in errors)
    assert any("train+val+test" in e for e in errors)


def test_flow_figure_is_written(tmp_path: Path) -> None:
    result = flow.flow_counts(manifest_rows(), assignment_rows(), {}, CLASSES,
                              external={"e": assignment_rows().query("source == 'b'")})  # fmt: skip
    assert flow.flow_errors(result) == []
    flow.flow_figure(result, str(tmp_path / "flow.png"))
    assert (tmp_path / "flow.png").stat().st_size > 5000


def test_partition_table_with_and_without_covariates() -> None:
    plain = partitions.partition_table(manifest_rows(), assignment_rows(), CLASSES)
    row = plain.query("fold == 'fold0' and partition == 'train' and `class` == 'all'").iloc[0]
    assert (row["images"], row["patients"], row["age_median"], row["sex"]) == (2, 1, "not recorded", "not recorded")
    covariates = manifest_rows().assign(age=["30", "50", "", "", "", "70"], sex=["F", "M", "", "", "F", ""],
                                        view=["PA", "AP", "", "", "PA", "PA"])  # fmt: skip
    table = partitions.partition_table(covariates, assignment_rows(), CLASSES,
                                       {"ext": assignment_rows().query("source == 'b'")})  # fmt: skip
    train = table.query("fold == 'fold1' and partition == 'train' and `class` == 'all'").iloc[0]
    assert (train["images"], train["age_median"], train["age_unknown"]) == (2, 70.0, 1)
    assert train["sex"] == "F: 1; unknown: 1" and train["view"] == "PA: 2"
    test = table.query("fold == 'fold1' and partition == 'test' and `class` == 'COVID-19'").iloc[0]
    assert (test["age_q1"], test["age_median"], test["age_q3"]) == tuple(np.percentile([30, 50], [25, 50, 75]))
    assert "external test of ext" in set(table["partition"])


def test_fingerprint_names_the_changed_source(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "images" / "x.png").write_bytes(b"abc")
    (tmp_path / "one" / "images" / "link.png").symlink_to(tmp_path / "two" / "images" / "x.png")
    sources = {"one": {"path": str(tmp_path / "one")}, "two": {"path": str(tmp_path / "two")}}
    before = {"sources": provenance.source_fingerprints(sources)}
    assert before["sources"]["one"]["files"] == 2 and before["sources"]["one"]["bytes"] == 6
    (tmp_path / "two" / "images" / "x.png").write_bytes(b"abd")  # same size, other content
    after = {"sources": provenance.source_fingerprints(sources)}
    assert provenance.changed_sources(before, after) == ["one", "two"]  # one follows its symlink into two
    (tmp_path / "one" / "images" / "link.png").unlink()
    (tmp_path / "one" / "images" / "link.png").symlink_to(tmp_path / "gone.png")  # broken: still counted
    assert provenance.fingerprint(tmp_path / "one")["files"] == 2


def test_fingerprint_records_a_cloned_dataset_commit(tmp_path: Path) -> None:
    repo = tmp_path / "clone"
    repo.mkdir()
    (repo / "metadata.csv").write_text("filename\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "data"], check=True)
    fp = provenance.fingerprint(repo)
    assert fp["files"] == 1 and len(fp["git_commit"]) == 40  # .git itself is not counted


def test_constraints_differences_warn(tmp_path: Path) -> None:
    pins = tmp_path / "constraints.txt"
    sklearn_version = provenance.installed_versions(["scikit-learn"])["scikit-learn"]
    pins.write_text(f"# pinned\nNumPy==0.0.1\nscikit_learn=={sklearn_version}\n")
    warnings = provenance.constraint_differences(provenance.read_constraints(pins),
                                                 provenance.installed_versions(["numpy", "scikit-learn"]))  # fmt: skip
    assert len(warnings) == 1 and "numpy" in warnings[0] and "pins 0.0.1" in warnings[0]


def test_repository_constraints_match_this_environment(repo_root: Path) -> None:
    pins = provenance.read_constraints(repo_root / "constraints.txt")
    assert {"keras", "numpy", "snakemake", "scikit-learn", "pydicom", "opencv-python-headless"} <= set(pins)
    assert provenance.constraint_differences(pins, provenance.installed_versions(sorted(pins))) == []


def test_provenance_record_shape(tmp_path: Path, repo_root: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(b"x")
    config = {"sources": {"s": {"path": str(tmp_path / "src")}}, "experiments": {"e": {"backend": "tensorflow"}}}
    record = provenance.build_provenance(config, repo_root, repo_root / "constraints.txt", 1.0, 2.0)
    assert record["packages"]["keras"] == keras.__version__ and "tensorflow" in record["packages"]
    assert record["workflow"]["commit"] and record["hardware"]["cpu"]
    assert record["times"] == {"start": "1970-01-01T00:00:01+00:00", "end": "1970-01-01T00:00:02+00:00"}
    again = provenance.build_provenance(config, repo_root, repo_root / "constraints.txt", 5.0, 6.0, record)
    times = provenance.TIMES_KEY
    assert {k: v for k, v in again.items() if k != times} == {k: v for k, v in record.items() if k != times}


def tiny_model() -> keras.Model:
    inputs = keras.Input(shape=(4,))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))


def test_normalised_archive_is_reproducible_and_loads(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = tiny_model()
    paths = [tmp_path / "a.keras", tmp_path / "b.keras"]
    for path in paths:
        model.save(path)
        archive.normalise_keras_archive(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].stat().st_mode & 0o777 != 0o600  # not left private by the temporary file
    with zipfile.ZipFile(paths[0]) as zf:
        meta = json.loads(zf.read("metadata.json"))
        assert meta["date_saved"] == archive.FIXED_DATE_SAVED and meta["keras_version"] == keras.__version__
        assert {i.date_time for i in zf.infolist()} == {archive.FIXED_ZIP_TIME}
    loaded = keras.saving.load_model(paths[0])
    x = np.ones((1, 4), dtype="float32")
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_card_hash_check_refuses_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(b"weights")
    card = {"model_sha256": archive.file_sha256(path)}
    assert model_card.check_model(path, card) == card["model_sha256"]
    path.write_bytes(b"weightz")
    with pytest.raises(model_card.ModelHashMismatch, match="not the model its card describes"):
        model_card.check_model(path, card)


def test_operating_point_read_when_present() -> None:
    assert model_card.operating_point(None, "COVID-19")["decision"].startswith("argmax")
    chosen = {"class": "COVID-19", "rule": "youden", "chosen_on": "validation", "threshold": 0.3, "fallback": None}
    op = model_card.operating_point({"classes": {"COVID-19": {"threshold": chosen, "sets": {}}}}, "COVID-19")
    assert op["threshold"] == 0.3 and op["decision"] == "frozen threshold" and op["positive_class"] == "COVID-19"
    assert op["chosen_on"] == "validation" and op["rule"] == "youden"


def test_decide_at_frozen_threshold_or_argmax() -> None:
    probs = np.array([[0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    labels, rule = predict.decide(probs, CLASSES, {})
    assert list(labels) == ["Normal", "Normal", "COVID-19"] and rule == "argmax"
    labels, rule = predict.decide(probs, CLASSES, {"threshold": 0.3, "positive_class": "COVID-19"})
    assert list(labels) == ["COVID-19", "Normal", "COVID-19"] and "0.3" in rule


def test_checklist_never_fills_an_item_without_a_value() -> None:
    facts = {"flow": {"total": {"listed": 1, "not_selected": 0, "selected": 1, "quarantined": 0, "kept": 1,
                                "grouped_as_duplicates": 0}, "sources": {}},
             "provenance": {"sources": {}, "config": {"sources": {}}, "workflow": {"commit": None}},
             "splits": {"patients": 1, "folds": []}, "partitions": [], "cards": {}, "classes": CLASSES}  # fmt: skip
    items = (*checklist.ITEMS[:3], checklist.Item("X", "1", "empty value", lambda f: ("  ", "somewhere")))
    rows = checklist.fill(facts, items)
    for row in rows:
        assert (row["status"] == "filled") == bool(row["value"].strip())
        assert row["status"] in ("filled", checklist.FOR_AUTHORS)
    assert rows[-1]["status"] == checklist.FOR_AUTHORS and rows[-1]["link"] == ""
    text = checklist.markdown(rows)
    assert "| 6a | Study setting" in text and f"*{checklist.FOR_AUTHORS}*" in text
