"""Coverage of the reported intervals, and how often the shortcut audit clears a model, on simulated test sets.

Two simulations through the package's own code (``uncertainty.metric_intervals`` and
``shortcut.shortcut_audit``), printed as the tables of docs/trust.md:

1. **Coverage.** Two models (``SCENARIOS``), test sets of 10, 20 and 40 patients (30% COVID-19, stratified:
   exactly round(0.3 n) positive patients), 1-3 images per patient, image score =
   class mean + patient effect + image noise (so images of a patient are correlated),
   predicted positive above a threshold. The true accuracy, sensitivity, positive-class
   F1, macro F1 and ROC AUC follow from the normal model in closed form; a row gives
   the share of simulated intervals (nominal 95%) that contain the truth.
2. **Verdict.** Balanced test sets of 12, 20 and 40 patients, a model right on 97% of
   images and a border-only control on 75% (informative: "no shortcut" must be rare)
   or on 50% (at chance: how many patients "no shortcut" needs).

Run from the repository root: ``PYTHONPATH=scripts python bench/interval_coverage.py [--sims 1000]``.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd
from scipy.stats import norm

from cxrflow.shortcut import shortcut_audit
from cxrflow.uncertainty import metric_intervals

CLASSES = ["COVID-19", "Normal"]
SD_PATIENT, SD_IMAGE, THRESHOLD, PREVALENCE = 0.6, 0.6, 1.0, 0.3
SCENARIOS = {"strong model": 2.5, "moderate model": 1.5}  # mean score of a COVID-19 image (Normal: 0)


def truth(mean_pos: float) -> dict[str, float]:
    """Population values of the simulated model (images weighted equally; image counts independent of scores)."""
    sd = np.hypot(SD_PATIENT, SD_IMAGE)
    sens = norm.sf((THRESHOLD - mean_pos) / sd)
    spec = norm.cdf(THRESHOLD / sd)
    pi = PREVALENCE
    tp, fn, fp, tn = pi * sens, pi * (1 - sens), (1 - pi) * (1 - spec), (1 - pi) * spec
    f1_pos = 2 * tp / (2 * tp + fp + fn)
    f1_neg = 2 * tn / (2 * tn + fn + fp)
    return {
        "accuracy": tp + tn,
        "sensitivity": sens,
        "F1 (COVID-19)": f1_pos,
        "macro F1": (f1_pos + f1_neg) / 2,
        "ROC AUC": norm.cdf(mean_pos / (np.sqrt(2) * sd)),
    }


def simulated_set(n_patients: int, mean_pos: float, rng: np.random.Generator) -> pd.DataFrame:
    n_pos = int(round(PREVALENCE * n_patients))
    labels = np.array([0] * n_pos + [1] * (n_patients - n_pos))
    images = rng.integers(1, 4, n_patients)
    patient = np.repeat(np.arange(n_patients), images)
    y = labels[patient]
    score = np.where(y == 0, mean_pos, 0.0) + rng.normal(0, SD_PATIENT, n_patients)[patient]
    score = score + rng.normal(0, SD_IMAGE, len(patient))
    prob = 1 / (1 + np.exp(-(score - THRESHOLD)))
    return pd.DataFrame(
        {
            "image_id": np.arange(len(patient)).astype(str),
            "patient_id": patient.astype(str),
            "true_label": np.array(CLASSES)[y],
            "predicted_label": np.array(CLASSES)[(prob <= 0.5) * 1],
            "prob_COVID-19": prob,
            "prob_Normal": 1 - prob,
        }
    )


def coverage(sizes: list[int], sims: int, n_boot: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for scenario, mean_pos in SCENARIOS.items():
        rows += _coverage(scenario, mean_pos, sizes, sims, n_boot, rng)
    return pd.DataFrame(rows)


def _coverage(
    scenario: str, mean_pos: float, sizes: list[int], sims: int, n_boot: int, rng: np.random.Generator
) -> list[dict]:
    true = truth(mean_pos)
    rows = []
    for n in sizes:
        hits = {k: [] for k in true}
        width = {k: [] for k in true}
        for s in range(sims):
            ci = metric_intervals(simulated_set(n, mean_pos, rng), CLASSES, n_boot=n_boot, seed=s, level=0.95)
            got = {
                "accuracy": ci["accuracy"],
                "sensitivity": ci["per_class"]["COVID-19"]["recall"],
                "F1 (COVID-19)": ci["per_class"]["COVID-19"]["f1"],
                "macro F1": ci["macro_f1"],
                "ROC AUC": ci["per_class"]["COVID-19"]["roc_auc"],
            }
            for k, iv in got.items():
                ok = np.isfinite(iv["low"]) and np.isfinite(iv["high"])
                hits[k].append(bool(ok and iv["low"] <= true[k] <= iv["high"]))
                width[k].append(iv["high"] - iv["low"] if ok else np.nan)
        for k in true:
            rows.append(
                {
                    "scenario": scenario,
                    "quantity": k,
                    "method": got[k]["method"],
                    "patients": n,
                    "true": round(true[k], 3),
                    "coverage": float(np.mean(hits[k])),
                    "mean width": float(np.nanmean(width[k])),
                }
            )
    return rows


def verdicts(sizes: list[int], sims: int, n_boot: int, seed: int, control: float) -> pd.DataFrame:
    """Shares of verdicts with a model right on 97% of images and a control right on ``control``."""
    rng = np.random.default_rng(seed)
    settings = {"metric": "macro_f1", "flag_margin": 0.1, "chance_tolerance": 0.1, "mask": 0.8, "fill": 128}
    rows = []
    for n in sizes:
        counts: dict[str, int] = {}
        for s in range(sims):
            labels = np.arange(n) % 2
            images = rng.integers(1, 3, n)
            patient = np.repeat(np.arange(n), images)
            y = labels[patient]

            def table(p_right: float, y: np.ndarray = y, patient: np.ndarray = patient) -> pd.DataFrame:
                right = rng.random(len(y)) < p_right
                pred = np.where(right, y, 1 - y)
                prob = np.where(pred == 0, 0.9, 0.1)
                return pd.DataFrame(
                    {
                        "image_id": np.arange(len(y)).astype(str),
                        "patient_id": patient.astype(str),
                        "true_label": np.array(CLASSES)[y],
                        "predicted_label": np.array(CLASSES)[pred],
                        "prob_COVID-19": prob,
                        "prob_Normal": 1 - prob,
                    }
                )

            result = shortcut_audit(
                table(0.97), table(control), CLASSES, settings, {"n": n_boot, "seed": s, "level": 0.95}
            )
            counts[result["verdict"]] = counts.get(result["verdict"], 0) + 1
        rows.append(
            {
                "control right on": control,
                "patients": n,
                **{
                    v: counts.get(v, 0) / sims
                    for v in ("no shortcut", "inconclusive", "borders informative", "shortcut")
                },
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=1000, help="simulated test sets per size (coverage)")
    parser.add_argument("--verdict-sims", type=int, default=200, help="simulated test sets per size (verdict)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # undefined-resample warnings of tiny sets are expected here
    start = time.perf_counter()
    table = coverage([10, 20, 40], args.sims, args.n_boot, args.seed)
    print(f"Coverage of nominal 95% intervals, {args.sims} simulated test sets per size\n")
    print(
        table.pivot_table(index=["scenario", "quantity", "true"], columns="patients", values="coverage")
        .round(3)
        .to_markdown()
    )
    print("\nMean width\n")
    print(
        table.pivot_table(index=["scenario", "quantity"], columns="patients", values="mean width")
        .round(3)
        .to_markdown()
    )
    print("\nMethods\n")
    print(table.drop_duplicates("quantity")[["quantity", "method"]].to_markdown(index=False))
    print(f"\nVerdicts, model right on 97% of images, {args.verdict_sims} simulated test sets per size and control\n")
    table = pd.concat(
        [verdicts([12, 20, 40], args.verdict_sims, args.n_boot, args.seed, control) for control in (0.75, 0.5)]
    )
    print(table.round(3).to_markdown(index=False))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
