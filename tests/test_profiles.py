"""The cluster profiles send every rule that asks for a GPU to the GPU partition with one GPU.

A rule with `resources: gpu=1` that a profile forgets lands on the CPU partition with
`--gpus=1`, which a real cluster rejects ("Requested node configuration is not
available"): checked here from the files, without a SLURM (tests/test_slurm.py runs them).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = [REPO / "profiles" / "slurm", REPO / "profiles" / "cluster-generic"]


def workflow_gpu_rules() -> set[str]:
    """Rules whose `resources:` ask for a GPU, read from workflow/rules/*.smk."""
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.M | re.S):
            if re.search(r"^\s+resources:\n(?:\s+\w+=.*\n)*?\s+gpu=[1-9]", body, re.M):
                rules.add(name)
    return rules


def test_the_workflow_has_gpu_rules() -> None:
    assert {"train", "train_inner", "train_border_only", "gradcam"} <= workflow_gpu_rules()


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_every_gpu_rule_goes_to_the_gpu_partition(profile: Path) -> None:
    resources = yaml.safe_load((profile / "config.yaml").read_text())["set-resources"]
    profile_gpu = {rule for rule, values in resources.items() if values.get("gpu")}
    assert profile_gpu == workflow_gpu_rules()
    default_partition = yaml.safe_load((profile / "config.yaml").read_text())["default-resources"]["slurm_partition"]
    for rule in profile_gpu:
        assert resources[rule]["gpu"] == 1 and resources[rule]["slurm_partition"] != default_partition, rule
        assert resources[rule]["cpus_per_gpu"] >= 1 and "mem_mb" in resources[rule] and "runtime" in resources[rule]
