"""SLURM jobs that can never start: sinfo limits, squeue pending reasons, the watchdog."""

from __future__ import annotations

import threading

from cxrflow.cluster import (
    Partition,
    Request,
    Watchdog,
    check_requests,
    never_starting,
    parse_sinfo,
    parse_squeue,
)

SINFO = """cpu*|2|21694|gpu:1|UNLIMITED
cpu*|4+|8000|(null)|UNLIMITED
gpu|2|21694|gpu:a100:4(S:0-1)|UNLIMITED
small|8|4000|(null)|1
"""


def test_sinfo_gives_each_partition_its_largest_node() -> None:
    parts = parse_sinfo(SINFO)
    assert parts["cpu"] == Partition("cpu", 4, 21694, 1, default=True)
    assert parts["gpu"] == Partition("gpu", 2, 21694, 4, default=False)
    assert parts["small"].cpus == 1  # MaxCPUsPerNode caps the node's CPUs


def test_requests_no_node_can_meet_name_rule_and_profile_key() -> None:
    parts = parse_sinfo(SINFO)
    requests = [
        Request("crop_batch", None, 8, 4000, 0, False),  # default partition cpu: 4 CPUs at most
        Request("crop_batch", None, 8, 4000, 0, False),  # the same rule twice: one message
        Request("train", "gpu", 16, 1000, 1, True),
        Request("gradcam", "gpu", 2, 90000, 1, True),
        Request("summarize", "nope", 1, 100, 0, False),
        Request("ok", "cpu", 2, 1000, 0, False),
    ]
    problems = check_requests(requests, parts)
    assert len(problems) == 4
    assert "rule crop_batch: asks 8 CPUs but the largest node of partition 'cpu' has 4" in problems[0]
    assert "set-threads: crop_batch" in problems[0]
    assert "set-resources: train: cpus_per_gpu" in problems[1]
    assert "90000 MB of memory" in problems[2] and "mem_mb" in problems[2]
    assert "partition 'nope' does not exist" in problems[3]


SQUEUE = """11|PENDING|PartitionConfig|rule_crop_batch_wildcards_batch=1-0|/work/run|8|4000M|cpu
12|RUNNING|None|rule_train|/work/run|2|1000M|gpu
13|PENDING|Resources|rule_evaluate|/work/run|1|1000M|cpu
14|PENDING|PartitionConfig|rule_crop_batch|/elsewhere|8|4000M|cpu
15|PENDING|PartitionConfig|(null)|/work/run|8|4000M|cpu
16|PENDING|ReqNodeNotAvail, Reserved for maintenance|rule_gradcam|/work/run|1|1000M|gpu
"""


def test_only_this_workflow_jobs_pending_for_a_fatal_reason_after_the_grace() -> None:
    jobs = parse_squeue(SQUEUE)
    assert [j.job_id for j in jobs] == ["11", "12", "13", "14", "16"]  # 15 is no Snakemake job
    assert jobs[0].rule == "crop_batch"
    seen: dict[str, float] = {}
    assert never_starting(jobs, "/work/run", seen, now=100.0, grace=15) == []  # first seen now
    fatal = never_starting(jobs, "/work/run", seen, now=116.0, grace=15)
    assert [j.job_id for j in fatal] == ["11", "16"]  # not 13 (Resources: it will start) nor 14 (another run)
    # A reason that clears on its own is forgiven.
    assert never_starting(jobs[1:2], "/work/run", seen, now=120.0, grace=15) == [] and seen == {}


def test_watchdog_stops_the_run_once_with_the_reason() -> None:
    calls: list[tuple[list[str], list[str]]] = []
    done = threading.Event()

    def stop(messages: list[str], ids: list[str]) -> None:
        calls.append((messages, ids))
        done.set()

    dog = Watchdog("/work/run", parse_sinfo(SINFO), ["gradcam"], stop, interval=0.01, grace=0.0,
                   query=lambda: SQUEUE)  # fmt: skip
    dog.start()
    assert done.wait(5)
    dog.join(5)
    ((messages, ids),) = calls
    assert ids == ["11", "16"]
    assert "SLURM job 11 (rule crop_batch) can never start: pending, reason PartitionConfig" in messages[0]
    assert "set-threads: crop_batch" in messages[0]
    assert "set-resources: gradcam: cpus_per_gpu" in messages[1]
