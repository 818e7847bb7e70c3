"""Calibration, the frozen operating point, subgroups and the seed summary, each recomputed from the
prediction rows with scikit-learn / scipy and matched; the threshold never moves with the test labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, confusion_matrix, f1_score, roc_curve

from cxrflow.calibration import EPS, calibration, calibration_intercept, calibration_slope
from cxrflow.config import expand_seeds, with_defaults
from cxrflow.covariates import age_band
from cxrflow.evaluation_main import calibration_main, operating_point_main, seeds_main, subgroups_main
from cxrflow.operating_point import choose_threshold, operating_point, threshold_intervals
from cxrflow.subgroups import subgroup_table

CLASSES = ["COVID-19", "Normal"]
BOOT = {"n": 1000, "level": 0.95, "seed": 0}  # the schema's minimum (audit.bootstrap.n)
EVALUATION = with_defaults({"sources": {"x": {"format": "folders", "path": "."}}})["evaluation"]


def _predictions(n_patients: int = 50, seed: int = 0, classes: list[str] = CLASSES, shift: float = 1.2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for pat in range(n_patients):
        true = classes[int(rng.integers(len(classes)))]
        for img in range(int(rng.integers(1, 3))):
            z = rng.normal(size=len(classes))
            z[classes.index(true)] += shift
            prob = np.exp(z) / np.exp(z).sum()
            rows.append({"image_id": f"s{seed}p{pat}_{img}", "patient_id": f"s{seed}p{pat}", "true_label": true,
                         "predicted_label": classes[int(prob.argmax())],
                         **{f"prob_{c}": float(v) for c, v in zip(classes, prob)}})  # fmt: skip
    return pd.DataFrame(rows)


def _logistic(y: np.ndarray, lp: np.ndarray, slope_free: bool) -> np.ndarray:
    """Maximum likelihood of logit P(y) = a + b lp (b = 1 unless slope_free), by scipy.optimize."""

    def nll(theta: np.ndarray) -> float:
        eta = theta[0] + (theta[1] if slope_free else 1.0) * lp
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    return minimize(nll, np.zeros(2 if slope_free else 1), method="BFGS", options={"gtol": 1e-9}).x


def test_calibration_figures_match_sklearn_and_a_scipy_logistic_fit() -> None:
    preds = _predictions()
    result = calibration(preds, CLASSES, 5, BOOT)
    assert list(result) == ["COVID-19"]  # two classes: the positive one
    c = result["COVID-19"]
    y = (preds["true_label"] == "COVID-19").to_numpy().astype(int)
    p = preds["prob_COVID-19"].to_numpy()
    assert c["brier"]["estimate"] == pytest.approx(brier_score_loss(y, p))
    lp = logit(np.clip(p, EPS, 1 - EPS))
    assert c["intercept"]["estimate"] == pytest.approx(_logistic(y, lp, False)[0], abs=1e-5)
    assert c["slope"]["estimate"] == pytest.approx(_logistic(y, lp, True)[1], rel=1e-4)
    sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(lp.reshape(-1, 1), y)
    assert c["slope"]["estimate"] == pytest.approx(sk.coef_[0, 0], rel=1e-4)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=5, strategy="uniform")
    used = [b for b in c["reliability"] if b["count"]]
    assert [b["observed"] for b in used] == pytest.approx(list(prob_true))
    assert [b["predicted"] for b in used] == pytest.approx(list(prob_pred))
    assert sum(b["count"] for b in c["reliability"]) == len(preds)
    for name in ("brier", "intercept", "slope"):
        assert c[name]["low"] <= c[name]["estimate"] <= c[name]["high"]
        assert c[name]["n_used"] > 150


def test_calibration_of_a_perfectly_calibrated_model_and_of_an_overconfident_one() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0.02, 0.98, 4000)
    y = rng.uniform(size=p.size) < p
    assert calibration_intercept(y, p) == pytest.approx(0, abs=0.1)
    assert calibration_slope(y, p) == pytest.approx(1, abs=0.1)
    extreme = expit(3 * logit(p))  # the same ranking, three times too sure
    assert calibration_slope(y, extreme) == pytest.approx(1 / 3, abs=0.05)
    assert np.isnan(calibration_slope(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])))  # separated


def test_three_classes_are_calibrated_one_vs_rest() -> None:
    classes = ["COVID-19", "Normal", "Pneumonia"]
    preds = _predictions(classes=classes)
    result = calibration(preds, classes, 4, BOOT)
    assert list(result) == classes
    for cls in classes:
        y = (preds["true_label"] == cls).to_numpy()
        assert result[cls]["brier"]["estimate"] == pytest.approx(brier_score_loss(y, preds[f"prob_{cls}"]))


def test_threshold_chosen_on_validation_matches_roc_and_ignores_test_labels() -> None:
    val, test = _predictions(seed=1), _predictions(seed=2)
    rule = EVALUATION["threshold"]
    chosen = choose_threshold(val, "COVID-19", rule)
    y = (val["true_label"] == "COVID-19").to_numpy()
    fpr, tpr, thr = roc_curve(y, val["prob_COVID-19"], drop_intermediate=False)
    assert chosen["threshold"] == pytest.approx(thr[np.argmax(tpr - fpr)])
    assert chosen["chosen_on"] == "validation" and chosen["rule"] == "youden"
    first = operating_point(val, {"test": test}, CLASSES, EVALUATION, BOOT)
    flipped = test.assign(true_label=test["true_label"].map({"COVID-19": "Normal", "Normal": "COVID-19"}))
    second = operating_point(val, {"test": flipped}, CLASSES, EVALUATION, BOOT)
    t1 = first["classes"]["COVID-19"]["threshold"]
    assert t1 == second["classes"]["COVID-19"]["threshold"]  # the test labels cannot move it
    at_first, at_second = (r["classes"]["COVID-19"]["sets"]["test"]["at_threshold"] for r in (first, second))
    assert at_first != at_second  # the figures did change with the labels


def test_figures_at_the_frozen_threshold_match_sklearn() -> None:
    val, test = _predictions(seed=1), _predictions(seed=2)
    settings = {**EVALUATION, "threshold": {**EVALUATION["threshold"], "rule": "target_sensitivity",
                                            "target_sensitivity": 0.8}}  # fmt: skip
    result = operating_point(val, {"test": test}, CLASSES, settings, BOOT)["classes"]["COVID-19"]
    t = result["threshold"]["threshold"]
    yv = (val["true_label"] == "COVID-19").to_numpy()
    fpr, tpr, thr = roc_curve(yv, val["prob_COVID-19"], drop_intermediate=False)
    assert t == pytest.approx(thr[np.flatnonzero(tpr >= 0.8)[0]])
    y = (test["true_label"] == "COVID-19").to_numpy()
    pred = test["prob_COVID-19"].to_numpy() >= t
    figures = result["sets"]["test"]["at_threshold"]
    assert figures["f1"]["estimate"] == pytest.approx(f1_score(y, pred))
    assert figures["sensitivity"]["estimate"] == pytest.approx(pred[y].mean())
    assert figures["specificity"]["estimate"] == pytest.approx((~pred[~y]).mean())
    assert figures["ppv"]["estimate"] == pytest.approx(y[pred].mean())
    assert figures["npv"]["estimate"] == pytest.approx((~y[~pred]).mean())
    fpr_t, tpr_t, _ = roc_curve(y, test["prob_COVID-19"], drop_intermediate=False)
    post = result["sets"]["test"]["post_hoc"]
    for s in EVALUATION["fixed_specificities"]:
        assert post[f"sensitivity_at_specificity_{s:g}"]["estimate"] == pytest.approx(tpr_t[fpr_t <= 1 - s].max())
    assert "not a threshold chosen in advance" in post["note"]


def test_fixed_rule_and_fallback_without_both_outcomes() -> None:
    val = _predictions(seed=1)
    fixed = choose_threshold(val, "COVID-19", {**EVALUATION["threshold"], "rule": "fixed", "fixed": 0.3})
    assert fixed["threshold"] == 0.3 and fixed["fallback"] is None
    only_normals = val[val["true_label"] == "Normal"]
    fallback = choose_threshold(only_normals, "COVID-19", EVALUATION["threshold"])
    assert fallback["threshold"] == EVALUATION["threshold"]["fixed"] and "one outcome" in fallback["fallback"]
    wrong_way = pd.DataFrame(
        {"true_label": ["COVID-19"] * 3 + ["Normal"] * 3, "prob_COVID-19": [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]}
    )  # every case ranked the wrong way
    worse = choose_threshold(wrong_way, "COVID-19", EVALUATION["threshold"])  # fmt: skip
    assert worse["threshold"] == EVALUATION["threshold"]["fixed"] and "diagonal" in worse["fallback"]
    no_negatives = threshold_intervals(pd.DataFrame({"image_id": ["a"]}), np.array([True]), np.array([0.9]), 0.5,
                                       0.95)  # fmt: skip
    assert np.isnan(no_negatives["specificity"]["estimate"]) and no_negatives["sensitivity"]["estimate"] == 1.0


def _with_covariates(preds: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    patients = preds["patient_id"].unique()
    per_patient = pd.DataFrame({"patient_id": patients, "sex": rng.choice(["M", "F", ""], len(patients)),
                                "age": rng.choice(["8", "30", "70", ""], len(patients)),
                                "view": rng.choice(["PA", "AP"], len(patients)),
                                "source": rng.choice(["x", "y"], len(patients))})  # fmt: skip
    out = preds.merge(per_patient, on="patient_id")
    out["age_band"] = [age_band(a, EVALUATION["age_edges"]) for a in out["age"]]
    return out


def test_subgroup_figures_match_sklearn_and_small_groups_are_marked() -> None:
    test = _with_covariates(_predictions(n_patients=80, seed=4))
    settings = {**EVALUATION, "min_subgroup": 30}
    table, detail = subgroup_table({"test": test}, CLASSES, 0.5, settings, BOOT)
    assert set(table["covariate"]) == {"source", "sex", "age_band", "view"}
    for covariate in ("sex", "age_band", "view", "source"):
        assert table.loc[table["covariate"] == covariate, "images"].sum() == len(test)  # every image in one group
    sex = table[table["covariate"] == "sex"]
    assert list(sex["group"]) == ["F", "M", "unknown"]
    assert list(table.loc[table["covariate"] == "age_band", "group"]) == ["<18", "18-40", ">=65", "unknown"]
    for row in table.itertuples(index=False):
        values = test[row.covariate].astype(str).replace("", "unknown")
        part = test[values == row.group]
        y = part["true_label"] == "COVID-19"
        assert row.images == len(part) and row.small == (len(part) < 30)
        assert row.f1 == pytest.approx(f1_score(part["true_label"], part["predicted_label"], pos_label="COVID-19"))
        assert row.brier == pytest.approx(brier_score_loss(y, part["prob_COVID-19"]))
        assert row.sensitivity == pytest.approx((part.loc[y, "prob_COVID-19"] >= 0.5).mean())
        assert row.f1_low <= row.f1 <= row.f1_high
    assert detail["test"]["sex"]["F"]["images"] == int((test["sex"] == "F").sum())


def _write(table: pd.DataFrame, path: Path) -> str:
    table.to_csv(path, index=False)
    return str(path)


def test_rule_functions_write_what_a_reader_recomputes(tmp_path: Path) -> None:
    val, test = _predictions(seed=1), _predictions(seed=2)
    cov = _with_covariates(pd.concat([val, test]))[["image_id", "patient_id", "source", "age", "sex", "view",
                                                    "age_band"]].assign(label="x")  # fmt: skip
    paths = {n: _write(t, tmp_path / f"{n}.csv") for n, t in (("val", val), ("test", test), ("cov", cov))}
    op = operating_point_main(paths["val"], paths["test"], paths["test"], paths["cov"], str(tmp_path / "op.json"),
                              CLASSES, EVALUATION, BOOT, str(tmp_path / "op.log"))  # fmt: skip
    assert json.loads((tmp_path / "op.json").read_text()) == op
    # an external set is reported per held-out source, at the same frozen threshold
    sets = op["classes"]["COVID-19"]["sets"]
    assert set(sets) == {"test", "external x", "external y"}
    assert len({part["threshold"] for part in sets.values()}) == 1
    assert sets["external x"]["n"] + sets["external y"]["n"] == sets["test"]["n"]
    outputs = {"json": str(tmp_path / "s.json"), "csv": str(tmp_path / "s.csv"), "plot": str(tmp_path / "s.png")}
    subgroups_main(paths["test"], None, paths["cov"], str(tmp_path / "op.json"), outputs, CLASSES, EVALUATION, BOOT,
                   str(tmp_path / "s.log"))  # fmt: skip
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["threshold"]["threshold"] == op["classes"]["COVID-19"]["threshold"]["threshold"]
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_seeds_expand_into_runs_and_their_spread_is_summarised(tmp_path: Path) -> None:
    config = with_defaults({"sources": {"x": {"format": "folders", "path": "."}},
                            "experiments": {"e": {"seeds": [1, 2, 3], "epochs": 2}, "f": {}}})  # fmt: skip
    groups = expand_seeds(config)
    assert groups == {"e": [("e_seed1", 1), ("e_seed2", 2), ("e_seed3", 3)]}
    assert list(config["experiments"]) == ["e_seed1", "e_seed2", "e_seed3", "f"]
    assert [config["experiments"][r]["seed"] for r, _ in groups["e"]] == [1, 2, 3]
    assert all(config["experiments"][r]["epochs"] == 2 for r, _ in groups["e"])
    paths, f1s = [], []
    for run, seed in groups["e"]:
        preds = _predictions(seed=seed)
        f1 = f1_score(preds["true_label"], preds["predicted_label"], pos_label="COVID-19")
        f1s.append(f1)
        metrics = {"metrics": {"per_class": {"COVID-19": {"f1-score": f1}}, "macro avg": {"f1-score": 0.5}},
                   "ci": {"per_class": {"COVID-19": {"f1": {"low": f1 - 0.1, "high": f1 + 0.1}}}}}  # fmt: skip
        (tmp_path / f"{run}.json").write_text(json.dumps(metrics))
        paths.append(str(tmp_path / f"{run}.json"))
    outputs = {"json": str(tmp_path / "seeds.json"), "plot": str(tmp_path / "seeds.png")}
    result = seeds_main("e", [(r, s, 0) for r, s in groups["e"]], paths, outputs, "COVID-19", str(tmp_path / "l.log"))
    assert result["f1"]["mean"] == pytest.approx(np.mean(f1s))
    assert result["f1"]["sd"] == pytest.approx(np.std(f1s, ddof=1))
    assert result["f1"]["range"] == pytest.approx(max(f1s) - min(f1s))
    assert [r["seed"] for r in result["per_seed"]] == [1, 2, 3]


def test_intervals_resample_split_groups_not_images() -> None:
    from cxrflow.uncertainty import unit_bootstrap

    preds = _predictions(seed=5).assign(group=lambda t: t["patient_id"])
    twice = pd.concat([preds, preds.assign(image_id=preds["image_id"] + "_copy")], ignore_index=True)
    stats = []
    for table in (preds, twice):
        y = (table["true_label"] == "COVID-19").to_numpy()
        p = table["prob_COVID-19"].to_numpy()
        stats.append(unit_bootstrap(table, lambda rows, p=p, y=y: {"brier": float(np.mean((p[rows] - y[rows]) ** 2))},
                                    n_boot=BOOT["n"], seed=BOOT["seed"], level=BOOT["level"])["brier"])  # fmt: skip
    # every image copied within its group: a mean over images is the same in every resample of the groups
    assert [stats[0][k] for k in ("estimate", "low", "high")] == pytest.approx([stats[1][k] for k in
                                                                               ("estimate", "low", "high")])  # fmt: skip
    assert stats[0]["method"] == "BCa bootstrap"


def _model_with_evaluation_parts(tmp_path: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One model's record with real calibration, operating-point, subgroup and confounder files written by the
    rule functions from one image per patient (so each split group is one image); returns the record and the
    validation predictions, test predictions and covariates it was made from."""
    from cxrflow.confounders import confounders
    from cxrflow.record import build_record
    from test_record import model_parts

    val = _predictions(n_patients=60, seed=1).drop_duplicates("patient_id").reset_index(drop=True)
    test = _predictions(n_patients=120, seed=2).drop_duplicates("patient_id").reset_index(drop=True)
    cov = _with_covariates(pd.concat([val, test]))[["image_id", "patient_id", "source", "age", "sex", "view",
                                                    "age_band", "true_label"]].rename(columns={"true_label": "label"})  # fmt: skip
    paths = {n: _write(t, tmp_path / f"{n}.csv") for n, t in (("val", val), ("test", test), ("cov", cov))}
    fold = tmp_path / "fold0"
    fold.mkdir()
    parts = model_parts(fold, f1=0.8)
    calibration_main(paths["test"], None, paths["cov"], {"json": str(fold / "calibration.json"),
                     "plot": str(fold / "reliability.png")}, CLASSES, 10, BOOT, str(tmp_path / "c.log"))  # fmt: skip
    operating_point_main(paths["val"], paths["test"], None, paths["cov"], str(fold / "operating_point.json"), CLASSES,
                         EVALUATION, BOOT, str(tmp_path / "o.log"))  # fmt: skip
    subgroups_main(paths["test"], None, paths["cov"], str(fold / "operating_point.json"),
                   {"json": str(fold / "subgroups.json"), "csv": str(fold / "subgroups.csv"),
                    "plot": str(fold / "subgroups.png")}, CLASSES, EVALUATION, BOOT, str(tmp_path / "s.log"))  # fmt: skip
    conf = confounders(cov, cov["patient_id"], EVALUATION["confounders"])
    (tmp_path / "confounders.json").write_text(json.dumps(conf))
    parts.update(calibration=str(fold / "calibration.json"), reliability=str(fold / "reliability.png"),
                 operating_point=str(fold / "operating_point.json"), subgroups=str(fold / "subgroups.json"),
                 subgroups_plot=str(fold / "subgroups.png"), confounders=str(tmp_path / "confounders.json"))  # fmt: skip
    return build_record("e", 0, parts), val, test, cov


def test_trust_columns_recomputed_from_the_predictions(tmp_path: Path) -> None:
    from scipy.stats import binomtest

    from cxrflow.record import TRUST_COLUMNS, trust_columns

    record, val, test, cov = _model_with_evaluation_parts(tmp_path)
    row = trust_columns(record, "COVID-19")
    assert tuple(row) == TRUST_COLUMNS
    y = (test["true_label"] == "COVID-19").to_numpy()
    p = test["prob_COVID-19"].to_numpy()
    assert row["brier"] == pytest.approx(brier_score_loss(y, p))
    lp = logit(np.clip(p, EPS, 1 - EPS))
    assert row["calibration_intercept"] == pytest.approx(_logistic(y.astype(float), lp, False)[0], abs=1e-5)
    sk = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(lp.reshape(-1, 1), y)
    assert row["calibration_slope"] == pytest.approx(sk.coef_[0, 0], rel=1e-4)
    for name in ("brier", "calibration_intercept", "calibration_slope"):
        assert row[f"{name}_low"] <= row[name] <= row[f"{name}_high"]
    yv = (val["true_label"] == "COVID-19").to_numpy()
    fpr, tpr, thr = roc_curve(yv, val["prob_COVID-19"], drop_intermediate=False)
    assert row["threshold"] == pytest.approx(thr[np.argmax(tpr - fpr)])  # Youden on validation, never on test
    assert (row["threshold_rule"], row["threshold_fallback"]) == ("youden", None)
    pred = p >= row["threshold"]
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    expected = {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp), "ppv": (tp, tp + fp), "npv": (tn, tn + fn)}
    for metric, (k, n) in expected.items():
        # one image per split group: the design effect is 1 and the interval is Clopper-Pearson's exact one
        exact = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="exact")
        assert [row[f"{metric}_at_threshold{s}"] for s in ("", "_low", "_high")] == pytest.approx(
            [k / n, exact.low, exact.high])  # fmt: skip
    assert row["f1_at_threshold"] == pytest.approx(f1_score(y, pred))
    j = binomtest(int(tp), int(tp + fp + fn)).proportion_ci(confidence_level=0.95, method="exact")
    assert [row["f1_at_threshold_low"], row["f1_at_threshold_high"]] == pytest.approx(
        [2 * j.low / (1 + j.low), 2 * j.high / (1 + j.high)])  # fmt: skip
    groups = []
    tested = test.merge(cov[["image_id", "source", "sex", "view", "age_band"]], on="image_id")
    for covariate in ("source", "sex", "age_band", "view"):
        for group, part in tested.groupby(tested[covariate].replace("", "unknown")):
            f1 = f1_score(part["true_label"], part["predicted_label"], pos_label="COVID-19", zero_division=np.nan)
            groups.append((len(part) < EVALUATION["min_subgroup"], f1, f"test {covariate}={group}"))
    assert row["subgroups_small"] == sum(small for small, _, _ in groups)
    worst = min((g for g in groups if not g[0] and np.isfinite(g[1])), key=lambda g: g[1])
    assert (row["worst_subgroup_f1"], row["worst_subgroup"]) == (pytest.approx(worst[1]), worst[2])
    assert row["confounder_flag"] is False


def test_verdict_page_shows_calibration_the_operating_point_subgroups_confounders_and_seeds(tmp_path: Path) -> None:
    from cxrflow.report_views import write_verdict

    record, *_ = _model_with_evaluation_parts(tmp_path)
    record["parts"]["confounders"] = {
        **record["parts"]["confounders"],
        "flag": True,
        "sentence": "Confounder flagged: age_band alone predicts the label.",
    }
    (tmp_path / "record.json").write_text(json.dumps(record))
    (tmp_path / "pre.json").write_text(json.dumps({"ok": 10, "by_source": {"x": 10}, "by_label": {"COVID-19": 10}}))
    (tmp_path / "splits.json").write_text(json.dumps({"patients": 10, "folds": [{"fold": "fold0"}]}))
    (tmp_path / "audit.json").write_text(json.dumps({"source_predictability": {"flag": False}}))
    seeds = {
        "experiment": "e",
        "positive": "COVID-19",
        "per_seed": [{"seed": 1, "f1": 0.6}, {"seed": 2, "f1": 0.8}],
        "f1": {"n": 2, "mean": 0.7, "sd": 0.1414, "min": 0.6, "max": 0.8, "range": 0.2},
    }
    (tmp_path / "seeds.json").write_text(json.dumps(seeds))
    out = {n: tmp_path / n for n in ("verdict.html", "forest.png", "run.rst", "verdict.log")}
    write_verdict([str(tmp_path / "record.json")], "COVID-19", tmp_path / "pre.json", tmp_path / "splits.json",
                  tmp_path / "audit.json", {}, out["verdict.html"], out["forest.png"], out["run.rst"],
                  out["verdict.log"], [str(tmp_path / "seeds.json")])  # fmt: skip
    page = out["verdict.html"].read_text()
    threshold = record["parts"]["operating_point"]["classes"]["COVID-19"]["threshold"]
    assert f"{threshold['threshold']:.3f} (Youden" in page and "applied unchanged to test" in page
    assert "Brier " in page and "intercept " in page and "slope " in page
    assert 'href="views/' in page and "subgroups.csv.html" in page
    assert '<span class="red">red</span>, Confounder flagged: age_band' in page
    assert "Seeds of e: F1 of COVID-19 seed 1 0.60, seed 2 0.80; mean 0.70, sd 0.14, range 0.20" in page
    from matplotlib.image import imread

    assert imread(out["forest.png"]).std() > 0
