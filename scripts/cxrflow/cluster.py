"""SLURM jobs that can never start: found before submitting, or within a minute of it.

A job asking more CPUs than any node of its partition has is accepted by sbatch
and pends forever (reason ``PartitionConfig``) while Snakemake waits without a
word. So at the start of a SLURM run the workflow compares every job's request
with what ``sinfo`` reports per partition (``check_requests``), and while it runs
a watchdog polls ``squeue`` for this workflow's jobs pending for a reason that
does not go away by waiting (``never_starting``); it then cancels the run with
the reason and the profile key to change. Pure parsing and decisions here; the
Snakefile only wires them to Snakemake's jobs and to the real commands.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

# Pending reasons that waiting does not cure: the request does not fit the partition,
# or the nodes it needs are not available to it.
FATAL_REASONS = ("PartitionConfig", "ReqNodeNotAvail", "PartitionNodeLimit", "BadConstraints")


@dataclass(frozen=True)
class Partition:
    """What the largest node of a partition offers a job."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int
    default: bool = False


@dataclass(frozen=True)
class Request:
    """What one job of the workflow asks SLURM for."""

    rule: str
    partition: str | None
    cpus: int
    mem_mb: int | None
    gpus: int
    gpu_rule: bool


def _gpus(gres: str) -> int:
    """`gpu:1`, `gpu:a100:4(S:0-1)`, `(null)` -> GPU count."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


SINFO_FORMAT = "%P|%c|%m|%G|%B"


def parse_sinfo(text: str) -> dict[str, Partition]:
    """`sinfo -h -o "%P|%c|%m|%G|%B"` -> partition -> its largest node (max over node configurations).

    %B (MaxCPUsPerNode of the partition) caps %c when it is a number.
    """
    found: dict[str, Partition] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 5 or not fields[0]:
            continue
        name, cpus, mem, gres, cap = fields[:5]
        default = name.endswith("*")
        name = name.rstrip("*")
        n_cpus = int(cpus.rstrip("+")) if cpus.rstrip("+").isdigit() else 0
        if cap.isdigit():
            n_cpus = min(n_cpus, int(cap))
        n_mem = int(mem.rstrip("+")) if mem.rstrip("+").isdigit() else 0
        old = found.get(name)
        found[name] = Partition(
            name,
            max(n_cpus, old.cpus if old else 0),
            max(n_mem, old.mem_mb if old else 0),
            max(_gpus(gres), old.gpus if old else 0),
            default or (old.default if old else False),
        )
    return found


def profile_key(request: Request, what: str) -> str:
    """The profile setting a user changes for this request's ``what`` (cpus, mem_mb, gpus)."""
    if what == "cpus":
        if request.gpu_rule:
            return f"set-resources: {request.rule}: cpus_per_gpu"
        return f"set-threads: {request.rule} (or `cores`)"
    if what == "mem_mb":
        return f"set-resources: {request.rule}: mem_mb (or default-resources: mem_mb)"
    return f"set-resources: {request.rule}: gpu"


def check_requests(requests: Iterable[Request], partitions: Mapping[str, Partition]) -> list[str]:
    """One message per (rule, resource) that no node of the job's partition can give."""
    default = next((p.name for p in partitions.values() if p.default), None)
    problems: dict[tuple[str, str], str] = {}
    for req in requests:
        name = req.partition or default
        part = partitions.get(name) if name else None
        if part is None:
            problems[(req.rule, "partition")] = (
                f"rule {req.rule}: partition {name!r} does not exist (sinfo lists "
                f"{sorted(partitions)}); set slurm_partition in set-resources: {req.rule} or default-resources"
            )
            continue
        asks = {"cpus": req.cpus, "mem_mb": req.mem_mb or 0, "gpus": req.gpus}
        has = {"cpus": part.cpus, "mem_mb": part.mem_mb, "gpus": part.gpus}
        unit = {"cpus": "CPUs", "mem_mb": "MB of memory", "gpus": "GPUs"}
        for what in ("cpus", "mem_mb", "gpus"):
            if asks[what] > has[what]:
                problems[(req.rule, what)] = (
                    f"rule {req.rule}: asks {asks[what]} {unit[what]} but the largest node of partition "
                    f"{part.name!r} has {has[what]}: the job would never start; change "
                    f"`{profile_key(req, what)}` in the profile"
                )
    return list(problems.values())


SQUEUE_FORMAT = "%i|%T|%r|%k|%Z|%C|%m|%P"


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    state: str
    reason: str
    rule: str
    workdir: str
    cpus: str
    mem: str
    partition: str


def parse_squeue(text: str) -> list[QueuedJob]:
    """`squeue -h -o "%i|%T|%r|%k|%Z|%C|%m|%P"` -> the jobs of Snakemake runs (comment `rule_<name>...`)."""
    jobs = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 8 or not fields[3].startswith("rule_"):
            continue
        rule = fields[3][len("rule_") :].split("_wildcards_")[0]
        jobs.append(QueuedJob(fields[0], fields[1], fields[2], rule, *fields[4:8]))
    return jobs


def never_starting(
    jobs: Sequence[QueuedJob], workdir: str, first_seen: dict[str, float], now: float, grace: float
) -> list[QueuedJob]:
    """This workflow's jobs pending for a fatal reason since at least ``grace`` seconds.

    ``first_seen`` (job id -> time first seen so) is updated in place, so a reason that
    clears on its own within the grace period is forgiven.
    """
    fatal = []
    here = os.path.realpath(workdir)
    current = set()
    for job in jobs:
        if os.path.realpath(job.workdir) != here or job.state != "PENDING":
            continue
        if not any(job.reason.startswith(r) for r in FATAL_REASONS):
            continue
        current.add(job.job_id)
        since = first_seen.setdefault(job.job_id, now)
        if now - since >= grace:
            fatal.append(job)
    for job_id in set(first_seen) - current:
        del first_seen[job_id]
    return fatal


def describe(job: QueuedJob, partitions: Mapping[str, Partition], gpu_rules: Iterable[str]) -> str:
    """Why the job waits and what to change, in one message."""
    part = partitions.get(job.partition)
    offer = f"; the largest node of partition {part.name!r} has {part.cpus} CPUs, {part.mem_mb} MB" if part else ""
    req = Request(job.rule, job.partition, 0, None, 0, job.rule in set(gpu_rules))
    return (
        f"SLURM job {job.job_id} (rule {job.rule}) can never start: pending, reason {job.reason} "
        f"(it asks {job.cpus} CPUs, {job.mem} memory{offer}). Change `{profile_key(req, 'cpus')}` or "
        f"`{profile_key(req, 'mem_mb')}` in the profile, or the partition (slurm_partition)."
    )


def run_command(args: Sequence[str]) -> str:
    """stdout of a SLURM client command, "" when it fails (the cluster is checked again later)."""
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


class Watchdog(threading.Thread):
    """Polls squeue; on a job that can never start, reports it and calls ``stop`` once."""

    def __init__(
        self,
        workdir: str,
        partitions: Mapping[str, Partition],
        gpu_rules: Iterable[str],
        stop: Callable[[list[str], list[str]], None],
        interval: float = 5.0,
        grace: float = 15.0,
        query: Callable[[], str] = lambda: run_command(["squeue", "--me", "-h", "-o", SQUEUE_FORMAT]),
    ) -> None:
        super().__init__(name="cxrflow-slurm-watchdog", daemon=True)
        self.workdir, self.partitions, self.gpu_rules = workdir, partitions, list(gpu_rules)
        self.stop, self.interval, self.grace, self.query = stop, interval, grace, query
        self.first_seen: dict[str, float] = {}
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(self.interval):
            fatal = never_starting(
                parse_squeue(self.query()), self.workdir, self.first_seen, time.monotonic(), self.grace
            )
            if fatal:
                self.stop([describe(j, self.partitions, self.gpu_rules) for j in fatal], [j.job_id for j in fatal])
                return


def stop_this_process(grace_s: float) -> None:
    """SIGINT this process (Snakemake then cancels its jobs and releases its lock); if it is
    still running after ``grace_s``, end it with exit status 1, saying how to recover."""

    def hard_stop() -> None:
        time.sleep(grace_s)
        print(f"ERROR: Snakemake did not stop within {grace_s:.0f} s of the interrupt; exiting. "
              "Before the next run: snakemake --unlock", file=sys.stderr, flush=True)  # fmt: skip
        os._exit(1)

    threading.Thread(target=hard_stop, name="cxrflow-hard-stop", daemon=True).start()
    os.kill(os.getpid(), signal.SIGINT)
