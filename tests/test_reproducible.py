"""Two fresh runs of the demo on one machine write the same bytes under results/.

Only logs, benchmarks, the search cache and the provenance record's times may differ
(they live apart: results/logs/, results/benchmarks/, results/cache/ -- keyed by file
stats, which a fresh copy changes, and safe to delete -- the `times` key of provenance.json
and the one `times` line of its page). The copies are made one after the other at the same path,
as a user reruns a clone: paths that the manifest resolves are absolute.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from workflow_helpers import run_snakemake, tiny_config

pytestmark = pytest.mark.slow

TINY = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8}
APART = ("logs/", "benchmarks/", "cache/")


def digests(results: Path) -> dict[str, str]:
    """sha256 of every file under results/ but logs and benchmarks, the provenance times taken out."""
    out = {}
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        rel = path.relative_to(results).as_posix()
        if rel.startswith(APART):
            continue
        data = path.read_bytes()
        if rel == "provenance.json":
            record = json.loads(data)
            assert set(record.pop("times")) == {"start", "end"}
            data = json.dumps(record, sort_keys=True).encode()
        elif rel == "methods/provenance.html":
            data = b"\n".join(line for line in data.splitlines() if b'class="times"' not in line)
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def test_two_fresh_demo_runs_write_identical_bytes(tmp_path: Path) -> None:
    cfg = tiny_config(experiments={"tiny": TINY})
    work = tmp_path / "repo"
    run_snakemake(work, cfg)
    first = digests(work / "results")
    shutil.rmtree(work)
    run_snakemake(work, cfg)  # a fresh copy, nothing of the first run left
    second = digests(work / "results")
    assert "experiments/tiny/fold0/model.keras" in first and "methods/flow.json" in first
    assert set(first) == set(second), set(first) ^ set(second)
    differ = sorted(rel for rel in first if first[rel] != second[rel])
    assert not differ, differ
