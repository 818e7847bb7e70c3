"""What a Keras job settles before anything imports Keras: the backend, the CPU threads it may
use, and a quiet CUDA probe.

* Keras reads ``KERAS_BACKEND`` once, at its first import.
* TensorFlow and torch start one compute thread per core of the machine whatever the job was
  given, so Snakemake's ``--cores N`` running N one-thread jobs ran about N² busy threads, and
  a training job beside them fought them all. The job's own ``threads`` (what Snakemake, or
  SLURM's cpus-per-task, granted it) becomes the thread count of TensorFlow (intra- and
  inter-op pools), torch (OpenMP) and the BLAS libraries. JAX has no such setting short of
  one thread; its CPU pool is left as it is (JAX is the backend for GPU machines here).
* ``console.quiet_cuda_probe``: TensorFlow's expected cuInit failure on a machine without a GPU.
"""

from __future__ import annotations

import os

from .console import quiet_cuda_probe

THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def prepare(backend: str, threads: int) -> None:
    """Call first in a rule script that uses Keras: ``prepare(params.experiment["backend"], snakemake.threads)``."""
    os.environ["KERAS_BACKEND"] = backend
    for name in THREAD_VARIABLES:
        os.environ[name] = str(max(1, int(threads)))
    quiet_cuda_probe()
