# On SLURM: jobs that can never start stop the run with their reason and the
# profile key to change, before submission (sinfo) or within a minute of it
# (squeue watchdog). scripts/cxrflow/cluster.py holds the logic.

import shutil
import sys

from snakemake.exceptions import WorkflowError

from cxrflow import cluster as cxr_cluster  # noqa: E402


def slurm_request(job):
    """What the slurm plugin will ask for this job (its cpus-per-task rule included)."""
    res = job.resources
    gpus = int(res.get("gpu", 0) or res.get("gpus", 0) or 0)
    if res.get("cpus_per_task"):
        cpus = int(res.get("cpus_per_task"))
    elif gpus and res.get("cpus_per_gpu"):
        cpus = int(res.get("cpus_per_gpu")) * gpus
    else:
        cpus = job.threads
    mem = res.get("mem_mb")
    return cxr_cluster.Request(
        job.rule.name,
        res.get("slurm_partition"),
        cpus,
        int(mem) if mem else None,
        gpus,
        bool(gpus),
    )


def slurm_jobs():
    for job in workflow.dag.needrun_jobs():
        for one in job.jobs if job.is_group() else [job]:
            if not one.is_local:
                yield one


def stop_run(messages, job_ids):
    """Say why, cancel the jobs that cannot start, and stop Snakemake as Ctrl-C would.

    A real SIGINT (not _thread.interrupt_main, which cannot wake a main thread blocked in
    a sleep or a subprocess call); if Snakemake has not stopped within 30 s, exit hard.
    """
    for message in messages:
        print(f"ERROR: {message}", file=sys.stderr, flush=True)
    cxr_cluster.run_command(["scancel", *job_ids])
    cxr_cluster.stop_this_process(grace_s=30.0)


def check_slurm_run():
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm" or not shutil.which("sinfo"):
        return
    partitions = cxr_cluster.parse_sinfo(
        cxr_cluster.run_command(["sinfo", "-h", "-o", cxr_cluster.SINFO_FORMAT])
    )
    if not partitions:
        return
    requests = [slurm_request(job) for job in slurm_jobs()]
    problems = cxr_cluster.check_requests(requests, partitions)
    if problems:
        raise WorkflowError(
            "jobs of this run can never start on this cluster:\n" + "\n".join(problems)
        )
    gpu_rules = {r.rule for r in requests if r.gpu_rule}
    cxr_cluster.Watchdog(workflow.workdir_init, partitions, gpu_rules, stop_run).start()


onstart:
    check_slurm_run()
