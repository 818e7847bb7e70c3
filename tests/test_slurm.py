"""Runs workflows on a real single-node SLURM (tests/slurm/start_slurm.sh) through profiles/slurm.

Opt-in: CXR_SLURM=1 and root (.ci/run starts the cluster and sets it). Snakemake and the executor
plugins are the project's own (the `test` extra), run with this interpreter, as the jobs on the
node are. A toy workflow pins down the profile's mechanics (groups, GPU, retries, the generic
executor); the real workflow then runs on the demo data end to end. The user profile is layered, not copied: only what a one-node test
cluster needs (account, small memory, 1 CPU per group, fast polling) is overridden.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from workflow_helpers import planned_jobs, shipped_demo, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
TOY_SNAKEFILE = SLURM_DIR / "toy" / "Snakefile"
SLURM_PROFILE = REPO / "profiles" / "slurm"
GENERIC_PROFILE = REPO / "profiles" / "cluster-generic"
BIN = Path(sys.executable).parent  # the venv whose snakemake and plugins the tests use
SLURM_STATE = Path(os.environ.get("CXR_SLURM_STATE", "/tmp/cxr-slurm"))
RUN_TIMEOUT_S = 240


def profile_gpu_rules(profile: Path = SLURM_PROFILE) -> list[str]:
    """Rules the profile sends to the GPU partition (tests/test_profiles.py: all that ask for a GPU)."""
    resources = yaml.safe_load((profile / "config.yaml").read_text())["set-resources"]
    return [rule for rule, values in resources.items() if values.get("gpu")]


GPU_RULES = profile_gpu_rules()

# What differs between a site and the test cluster (2 CPUs, ~20 GB, account root, fake GPU).
TEST_CLUSTER_OVERRIDES: dict[str, Any] = {
    "default-resources": {"slurm_account": "root", "mem_mb": "500 * attempt"},
    "set-resources": {
        "crop_image": {"mem_mb": "200 * attempt"},
        **{rule: {"cpus_per_gpu": 1, "mem_mb": "500 * attempt"} for rule in GPU_RULES},
    },
    "cores": 1,  # one CPU per group job so two run side by side on the 2-CPU node
    "set-threads": {"crop_batch": 1},
    "group-components": {"crop": 3},
    "latency-wait": 5,
    # A trivial job takes 5-8 s (it starts `python -m snakemake`); each status check that
    # finds nothing done adds 10 s to the plugin's next wait, so check once, after the job.
    "slurm-init-seconds-before-status-checks": 10,
    "slurm-keep-successful-logs": True,
}

GENERIC_OVERRIDES: dict[str, Any] = {
    key: value for key, value in TEST_CLUSTER_OVERRIDES.items() if not key.startswith("slurm-")
} | {"seconds-between-status-checks": 2}

_SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)")
_SUBMITTED_GENERIC = re.compile(r"Submitted (?:group )?job \S+ with external jobid '(\d+)'")
SACCT_FIELDS = (
    "JobID",
    "JobName",
    "State",
    "ExitCode",
    "Partition",
    "Comment",
    "ReqTRES",
    "AllocTRES",
)


@dataclass(frozen=True)
class SnakemakeRun:
    """One snakemake invocation: exit status, combined output, SLURM jobs it submitted."""

    returncode: int
    output: str
    submissions: dict[str, Path]  # SLURM job id -> its log file (slurm plugin)
    external_ids: list[str]  # SLURM job ids the cluster-generic plugin submitted
    seconds: float


# ---- reusable helpers --------------------------------------------------------------------------


def start_cluster(state: Path) -> dict[str, str]:
    """Start (or reuse) the test cluster; returns the environment its clients need.

    Raises RuntimeError with the script's output when it cannot start.
    """
    proc = subprocess.run(
        ["bash", str(SLURM_DIR / "start_slurm.sh"), str(state)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"start_slurm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return {"SLURM_CONF": str(state / "slurm.conf")}


def stop_cluster(state: Path) -> None:
    """Stop the daemons started for `state` and remove it."""
    subprocess.run(["bash", str(SLURM_DIR / "stop_slurm.sh"), str(state)], check=False, timeout=120)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def layered_profile(base: Path, dest: Path, overrides: Mapping[str, Any]) -> Path:
    """Write base/config.yaml deep-merged with `overrides` into dest; returns dest.

    Snakemake replaces a whole top-level key (e.g. all of set-resources) when a second profile
    names it, so merging here keeps every site setting that the test does not change. Values
    naming files of the base profile (status scripts) are made absolute, as Snakemake would.
    """
    config = yaml.safe_load((base / "config.yaml").read_text())
    merged = _deep_merge(config, overrides)
    for key, value in merged.items():
        if isinstance(value, str) and (base / value).is_file():
            merged[key] = str(base / value)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    return dest


def run_snakemake(
    snakefile: Path,
    workdir: Path,
    profile: Path,
    env: Mapping[str, str],
    targets: Iterable[str] = (),
    config: Mapping[str, Any] | None = None,
    extra_args: Iterable[str] = (),
    workflow_profile: str = "none",
    timeout_s: float = RUN_TIMEOUT_S,
) -> SnakemakeRun:
    """Run this interpreter's snakemake; kill its whole process group after `timeout_s`.

    `workflow_profile` defaults to none: otherwise Snakemake also applies profiles/default of
    the current folder (local-run settings such as report-after-run) on top of `profile`.

    A hang is the failure mode seen with a wrong status command, so a timeout is an error
    carrying the output so far, never a silent wait.
    """
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "-d",
        str(workdir),
    ]
    cmd += [
        "--profile",
        str(profile),
        "--workflow-profile",
        workflow_profile,
        *extra_args,
    ]
    if config:
        cmd += ["--config", *(f"{k}={v}" for k, v in config.items())]
    cmd += ["--", *targets]
    full_env = {
        **os.environ,
        **env,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO / "scripts"),
    }
    full_env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # SIGINT lets snakemake scancel its jobs; it ignores SIGTERM while polling SLURM.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        raise AssertionError(f"snakemake did not finish within {timeout_s} s:\n{output[-4000:]}") from None
    submissions = {jobid: Path(log) for jobid, log in _SUBMITTED.findall(output)}
    external_ids = _SUBMITTED_GENERIC.findall(output)
    return SnakemakeRun(proc.returncode, output, submissions, external_ids, time.monotonic() - started)


def sacct_jobs(jobids: Iterable[str], env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Accounting records (allocation lines only) of the given SLURM job ids, keyed by id."""
    ids = ",".join(jobids)
    if not ids:
        return {}
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ids, "-o", ",".join(SACCT_FIELDS)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=30,
    ).stdout
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line]
    return {row["JobID"]: row for row in rows}


def jobs_of(run: SnakemakeRun, log_folder: str) -> list[str]:
    """Job ids whose SLURM log lies in `log_folder` (the plugin names it after the rule/group)."""
    return sorted(
        (j for j, log in run.submissions.items() if log.parent.name == log_folder),
        key=int,
    )


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_env() -> Iterable[dict[str, str]]:
    """A running cluster; stopped afterwards only when this fixture started it."""
    if os.environ.get("CXR_SLURM") != "1":
        pytest.skip("set CXR_SLURM=1 to run the SLURM tests (they install and start SLURM)")
    if os.geteuid() != 0:
        pytest.skip("the SLURM tests start daemons and need root")
    try:
        import snakemake_executor_plugin_cluster_generic  # noqa: F401
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError as err:
        pytest.skip(f"{err}: pip install -e '.[test]' installs the executor plugins")
    was_running = (SLURM_STATE / "run" / "slurmctld.pid").is_file()
    try:
        env = start_cluster(SLURM_STATE)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"SLURM could not be started: {err}")
    yield env
    subprocess.run(["scancel", "--user=root"], env={**os.environ, **env}, check=False)
    if not was_running:
        stop_cluster(SLURM_STATE)


@pytest.fixture(scope="module")
def test_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return layered_profile(SLURM_PROFILE, tmp_path_factory.mktemp("profile"), TEST_CLUSTER_OVERRIDES)


@pytest.fixture(scope="module")
def toy_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toy")


@pytest.fixture(scope="module")
def first_run(slurm_env: dict[str, str], test_profile: Path, toy_workdir: Path) -> SnakemakeRun:
    run = run_snakemake(TOY_SNAKEFILE, toy_workdir, test_profile, slurm_env, config={"n_items": 5})
    assert run.returncode == 0, run.output[-4000:]
    return run


# ---- tests -------------------------------------------------------------------------------------


def test_group_jobs_are_batched(first_run: SnakemakeRun, slurm_env: dict[str, str], toy_workdir: Path) -> None:
    crop_jobs = jobs_of(first_run, "group_crop_crop_image")
    assert len(crop_jobs) == 2, first_run.submissions  # 5 items, 3 per group
    records = sacct_jobs(crop_jobs, slurm_env)
    assert {r["State"] for r in records.values()} == {"COMPLETED"}
    ran_in = {p.stem: p.read_text().split("job=")[1].strip() for p in (toy_workdir / "crop").glob("*.txt")}
    assert len(ran_in) == 5 and set(ran_in.values()) == set(crop_jobs)


def test_gpu_job_gets_gpu(first_run: SnakemakeRun, slurm_env: dict[str, str], toy_workdir: Path) -> None:
    (train_job,) = jobs_of(first_run, "rule_train")
    record = sacct_jobs([train_job], slurm_env)[train_job]
    assert record["Partition"] == "gpu"
    assert "gres/gpu=1" in record["ReqTRES"] and "gres/gpu=1" in record["AllocTRES"], record
    assert (toy_workdir / "train" / "cuda.txt").read_text().split()[0] == "CUDA_VISIBLE_DEVICES=0"


def test_rerun_submits_only_new_items(
    first_run: SnakemakeRun,
    slurm_env: dict[str, str],
    test_profile: Path,
    toy_workdir: Path,
) -> None:
    before = {p.name: p.read_text() for p in (toy_workdir / "crop").glob("*.txt")}
    rerun = run_snakemake(TOY_SNAKEFILE, toy_workdir, test_profile, slurm_env, config={"n_items": 7})
    assert rerun.returncode == 0, rerun.output[-4000:]
    after = {p.name: p.read_text() for p in (toy_workdir / "crop").glob("*.txt")}
    assert {k: after[k] for k in before} == before  # old items untouched
    new_crop_jobs = jobs_of(rerun, "group_crop_crop_image")
    assert len(new_crop_jobs) == 1, rerun.submissions  # items 5 and 6 in one group
    assert {after[k].split("job=")[1].strip() for k in set(after) - set(before)} == set(new_crop_jobs)
    assert len(jobs_of(rerun, "rule_train")) == 1 and len(rerun.submissions) == 2


def test_failing_job_is_reported_with_its_log(
    slurm_env: dict[str, str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    profile = layered_profile(
        SLURM_PROFILE,
        tmp_path_factory.mktemp("fail-profile"),
        {**TEST_CLUSTER_OVERRIDES, "retries": 1},
    )
    run = run_snakemake(
        TOY_SNAKEFILE,
        tmp_path,
        profile,
        slurm_env,
        targets=["fail.txt"],
        config={"fail": True},
    )
    assert run.returncode != 0
    attempts = jobs_of(run, "rule_fail")
    assert len(attempts) == 2, run.submissions  # first try + one retry
    records = sacct_jobs(attempts, slurm_env)
    assert [records[j]["State"] for j in attempts] == ["FAILED", "FAILED"]
    # Memory grows with `attempt` (default-resources mem_mb: 500 * attempt).
    assert [re.search(r"mem=(\w+)", records[j]["ReqTRES"]).group(1) for j in attempts] == ["500M", "1000M"]
    last_log = run.submissions[attempts[-1]]
    assert str(last_log) in run.output and "deliberate failure" in last_log.read_text()


def test_cluster_generic_profile_runs_toy(slurm_env: dict[str, str], tmp_path: Path) -> None:
    profile = layered_profile(GENERIC_PROFILE, tmp_path / "profile", GENERIC_OVERRIDES)
    run = run_snakemake(TOY_SNAKEFILE, tmp_path / "wd", profile, slurm_env, config={"n_items": 4})
    assert run.returncode == 0, run.output[-4000:]
    records = sacct_jobs(run.external_ids, slurm_env)
    names = sorted(r["JobName"] for r in records.values())
    assert names == [
        "smk-GROUP",
        "smk-GROUP",
        "smk-train",
    ], records  # 4 items, 3 per group
    (train,) = (r for r in records.values() if r["JobName"] == "smk-train")
    assert train["Partition"] == "gpu" and "gres/gpu=1" in train["AllocTRES"], train
    assert (tmp_path / "wd" / "train" / "cuda.txt").read_text().split()[0] == "CUDA_VISIBLE_DEVICES=0"


# ---- the real workflow on the demo data --------------------------------------------------------

# Jobs of the real workflow load TensorFlow (~1-2 GB resident), crops far less.
REAL_OVERRIDES = _deep_merge(
    TEST_CLUSTER_OVERRIDES,
    {
        "default-resources": {"mem_mb": "2000 * attempt"},
        "set-resources": {
            "crop_batch": {"mem_mb": "1000 * attempt"},
            **{rule: {"mem_mb": "3000 * attempt"} for rule in GPU_RULES},
        },
        "group-components": {"crop": 12},
    },
)
TINY_EXPERIMENT = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8,
                   "checkpoint_every": 1}  # fmt: skip


def local_rules() -> set[str]:
    """Rules marked `localrule: True` (run by the submitting Snakemake, never queued)."""
    names = set()
    for path in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", path.read_text(), re.M):
            if re.search(r"^    localrule: True$", body, re.M):
                names.add(name)
    return names


def rule_of(log: Path) -> str:
    """The plugin's log folder below logs/slurm: rule_<name> or group_<group>_<rules>."""
    parts = log.parts
    return parts[parts.index("slurm") + 1]


def submitted_rules(run: SnakemakeRun) -> dict[str, int]:
    counts: dict[str, int] = {}
    for log in run.submissions.values():
        counts[rule_of(log)] = counts.get(rule_of(log), 0) + 1
    return counts


def write_site_b(root: Path, n: int) -> dict[str, Any]:
    """A second collection (csv format) that an update grows: noise images, half with bars."""
    import cv2
    import numpy as np
    import pandas as pd

    rows = []
    for i in range(n):
        img = np.random.default_rng(1000 + i).integers(90, 230, (80, 64), dtype=np.uint8)
        img[: 8 * (i % 2)] = 0
        (root / "img").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "img" / f"b{i}.png"), img)
        rows.append((f"b{i}.png", "COVID-19" if i % 2 else "Normal", f"pb{i}"))
    pd.DataFrame(rows, columns=["file", "finding", "patient"]).to_csv(root / "meta.csv", index=False)
    return {"format": "csv", "path": str(root), "csv": "meta.csv", "images": "img",
            "columns": {"filename": "file", "label": "finding", "patient_id": "patient"}}  # fmt: skip


def real_config(workdir: Path, site_b: dict[str, Any], **preprocess: Any) -> Path:
    """tests/workflow_helpers.tiny_config (small demo) plus site_b and one tiny experiment."""

    demo = shipped_demo()
    cfg = tiny_config(experiments={"tiny": TINY_EXPERIMENT}, sources={**demo["sources"], "site_b": site_b})
    cfg["demo"]["mix_with_real"] = True  # the synthetic demo beside site_b, on purpose
    cfg["preprocess"].update(preprocess)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def real_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return layered_profile(SLURM_PROFILE, tmp_path_factory.mktemp("real-profile"), REAL_OVERRIDES)


@pytest.fixture(scope="module")
def batched_run(
    slurm_env: dict[str, str], real_profile: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, SnakemakeRun]:
    """Demo + site_b (5 images) through profiles/slurm, crops in batch jobs of up to 6 images."""
    root = tmp_path_factory.mktemp("real")
    work = root / "work"
    cfg = real_config(work, write_site_b(root / "site_b", 5), batch_size=6)
    run = run_snakemake(REPO / "Snakefile", work, real_profile, slurm_env,
                        extra_args=["--configfile", str(cfg)], timeout_s=900)  # fmt: skip
    assert run.returncode == 0, run.output[-6000:]
    return work, run


def test_real_workflow_runs_through_slurm(batched_run: tuple[Path, SnakemakeRun], slurm_env: dict[str, str]) -> None:
    work, run = batched_run
    trust = pd.read_csv(work / "results/trust_summary.csv")
    assert trust["experiment"].tolist() == ["tiny"] and trust["model_f1"].between(0, 1).all()
    assert "per_class" in json.loads((work / "results/experiments/tiny/metrics.json").read_text())["metrics"]
    records = sacct_jobs(run.submissions, slurm_env)
    assert len(records) == len(run.submissions) and {r["State"] for r in records.values()} == {"COMPLETED"}
    # Bookkeeping (selection, manifest, summaries) ran in the submitting process, not the queue.
    rules = submitted_rules(run)
    assert not {"rule_select_source", "rule_manifest", "rule_summarize", "rule_trust_summary"} & set(rules)
    assert {"rule_demo_data", "rule_make_splits", "rule_train", "rule_evaluate"} <= set(rules), rules


def test_real_crops_ran_as_batched_jobs(batched_run: tuple[Path, SnakemakeRun], slurm_env: dict[str, str]) -> None:
    """29 images (12 + 12 demo, 5 site_b) in stable batches of up to 6: one sbatch job per batch."""
    work, run = batched_run
    crop_jobs = [j for j, log in run.submissions.items() if rule_of(log) == "rule_crop_batch"]
    batches = sorted((work / "results/preprocessed/batches").rglob("*.json"))
    sizes = [len(json.loads(p.read_text())["images"]) for p in batches]
    assert sum(sizes) == 29 and len(crop_jobs) == len(batches) <= 6, (sizes, submitted_rules(run))
    assert "group_crop_crop_image" not in submitted_rules(run)
    records = sacct_jobs(crop_jobs, slurm_env)
    assert all(records[j]["Comment"].startswith("rule_crop_batch") for j in crop_jobs), records
    assert {r["State"] for r in records.values()} == {"COMPLETED"}


def test_real_training_job_got_the_gpu(batched_run: tuple[Path, SnakemakeRun], slurm_env: dict[str, str]) -> None:
    work, run = batched_run
    gpu_jobs = {j: rule_of(log) for j, log in run.submissions.items() if rule_of(log)[len("rule_") :] in GPU_RULES}
    # the model, its border-only control and the Grad-CAM panel (no grid here: no train_inner)
    assert sorted(gpu_jobs.values()) == ["rule_gradcam", "rule_train", "rule_train_border_only"], gpu_jobs
    for job, record in sacct_jobs(gpu_jobs, slurm_env).items():
        assert record["Partition"] == "gpu", (gpu_jobs[job], record)
        assert "gres/gpu=1" in record["ReqTRES"] and "gres/gpu=1" in record["AllocTRES"], (gpu_jobs[job], record)
    (train_job,) = [j for j, rule in gpu_jobs.items() if rule == "rule_train"]
    log = (work / "results/logs/train/tiny/fold0.log").read_text()
    assert f"CUDA_VISIBLE_DEVICES=0 SLURM_JOB_ID={train_job} " in log, log
    others = [j for j in run.submissions if j not in gpu_jobs]
    assert all("gres/gpu" not in r["AllocTRES"] for r in sacct_jobs(others, slurm_env).values())


def test_real_rerun_after_update_submits_only_stale_jobs(
    batched_run: tuple[Path, SnakemakeRun], slurm_env: dict[str, str], real_profile: Path
) -> None:
    work, _ = batched_run
    site_b = write_site_b(work.parent / "site_b", 6)  # one image more
    cfg = real_config(work, site_b, batch_size=6)
    common = dict(extra_args=["--configfile", str(cfg)], timeout_s=900)
    dry = run_snakemake(REPO / "Snakefile", work, real_profile, slurm_env,
                        extra_args=["--configfile", str(cfg), "-n"])  # fmt: skip
    assert dry.returncode == 0, dry.output[-4000:]
    planned = planned_jobs(subprocess.CompletedProcess([], 0, dry.output, ""))
    assert planned.get("crop_batch") == 1 and "demo_data" not in planned, planned
    rerun = run_snakemake(REPO / "Snakefile", work, real_profile, slurm_env, **common)
    assert rerun.returncode == 0, rerun.output[-6000:]
    rules = submitted_rules(rerun)
    local = local_rules()
    assert {"select_source", "manifest", "summarize"} <= local
    assert rules == {f"rule_{r}": n for r, n in planned.items() if r not in local}, (rules, planned)
    # The one resubmitted batch re-cropped only the new image.
    (log,) = (work / "results/logs/crop_batch/site_b").glob("*.log")
    assert re.search(r": 6 images in [\d.]+ s: 1 cropped, 0 quarantined, 5 reused from cache$", log.read_text(),
                     re.M), log.read_text()  # fmt: skip


def test_real_per_image_mode_goes_in_group_jobs(slurm_env: dict[str, str], real_profile: Path, tmp_path: Path) -> None:
    """preprocess.batch_size 1: one crop_image job per image, sent as group jobs of 12."""
    work = tmp_path / "work"
    cfg = real_config(work, write_site_b(tmp_path / "site_b", 5), batch_size=1)
    run = run_snakemake(REPO / "Snakefile", work, real_profile, slurm_env, targets=["preprocess"],
                        extra_args=["--configfile", str(cfg)], timeout_s=900)  # fmt: skip
    assert run.returncode == 0, run.output[-6000:]
    groups = [j for j, log in run.submissions.items() if rule_of(log) == "group_crop_crop_image"]
    per_group = [len(set(re.findall(r"output: (results/preprocessed/records/\S+)", run.submissions[j].read_text())))
                 for j in groups]  # fmt: skip
    assert sum(per_group) == 29 and len(groups) == 3 and max(per_group) == 12, per_group
    assert len(list((work / "results/preprocessed/records").rglob("*.json"))) == 29
    records = sacct_jobs(groups, slurm_env)
    assert {r["State"] for r in records.values()} == {"COMPLETED"}
    # Each job of a group is an srun step running its own `python -m snakemake`: say what it costs.
    steps = subprocess.run(
        ["sacct", "-n", "-P", "-j", ",".join(groups), "-o", "JobID,ElapsedRaw"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **slurm_env},
    ).stdout
    total_s = sum(int(line.split("|")[1]) for line in steps.splitlines() if line and "." not in line.split("|")[0])
    print(f"per-image group jobs: {total_s} s of group-job time for 29 images ({total_s / 29:.1f} s/image)")


# ---- jobs that can never start (profile asks more than the cluster has) ------------------------


def test_request_over_any_node_fails_before_submitting(slurm_env: dict[str, str], tmp_path: Path) -> None:
    """The shipped profile's widest job on a site with smaller nodes: checked against sinfo at start.
    (`cores` too: Snakemake caps a job's threads at it, so set-threads alone never asks more.)"""
    profile = layered_profile(SLURM_PROFILE, tmp_path / "profile",
                              _deep_merge(REAL_OVERRIDES, {"cores": 8, "set-threads": {"crop_batch": 8}}))  # fmt: skip
    work = tmp_path / "work"
    cfg = real_config(work, write_site_b(tmp_path / "site_b", 3), batch_size=6)
    run = run_snakemake(REPO / "Snakefile", work, profile, slurm_env, targets=["preprocess"],
                        extra_args=["--configfile", str(cfg)], timeout_s=120)  # fmt: skip
    assert run.returncode != 0
    assert "rule crop_batch: asks 8 CPUs but the largest node of partition 'cpu' has 2" in run.output, run.output
    assert "set-threads: crop_batch" in run.output
    assert not run.submissions and run.seconds < 60


def test_never_starting_job_fails_within_a_minute(
    slurm_env: dict[str, str], real_profile: Path, tmp_path: Path
) -> None:
    """A job pending for a reason waiting does not cure (here ReqNodeNotAvail: the node is
    reserved for maintenance) stops the run with the reason and the keys to change."""
    env = {**os.environ, **slurm_env}
    subprocess.run(["scontrol", "create", "reservation", "ReservationName=cxr_test_maint", "StartTime=now",
                    "Duration=10", "Nodes=localhost", "Users=root", "Flags=maint,ignore_jobs"],
                   check=True, env=env, capture_output=True)  # fmt: skip
    try:
        work = tmp_path / "work"
        cfg = real_config(work, write_site_b(tmp_path / "site_b", 3), batch_size=6)
        run = run_snakemake(REPO / "Snakefile", work, real_profile, slurm_env, targets=["preprocess"],
                            extra_args=["--configfile", str(cfg)], timeout_s=180)  # fmt: skip
    finally:
        subprocess.run(["scontrol", "delete", "ReservationName=cxr_test_maint"], env=env, check=False)
    assert run.returncode != 0
    assert re.search(r"SLURM job \d+ \(rule \w+\) can never start: pending, reason ReqNodeNotAvail", run.output), (
        run.output[-4000:]
    )
    assert "in the profile" in run.output
    assert run.seconds < 90, run.seconds
    queued = subprocess.run(["squeue", "-h", "-o", "%i", "-u", "root"], env=env, capture_output=True, text=True)
    assert queued.stdout.strip() == ""  # the pending jobs were cancelled
