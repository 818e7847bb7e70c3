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
* ``keep_freed_memory``: glibc's malloc gives the top of its heap back to the kernel whenever
  it is freed, and a training step frees and takes the same tens of megabytes again at every
  batch: the kernel zeroes those pages anew each time. The demo's training (32 px) spent 24 s
  of its 132 s of CPU in the kernel; with 64 MiB kept at the top of the heap and blocks up to
  glibc's 32 MiB limit served from it, 8 s, and it trained 13-20 % more images per second when
  it had the cores to itself (docs/performance.md, Threads and memory).
"""

from __future__ import annotations

import ctypes
import os

from .console import quiet_cuda_probe

THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)

# glibc mallopt parameters (malloc.h) and the values keep_freed_memory sets.
M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3
HEAP_TOP_PAD = 64 << 20  # kept at the top of the heap when it shrinks
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap, not a fresh mmap


def keep_freed_memory() -> bool:
    """Keep freed memory in the process for the next batch (see the module docstring). True where
    glibc took both settings; False where the C library has no ``mallopt`` (macOS), none can be opened
    by name None (Windows), or it refused them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TOP_PAD, HEAP_TOP_PAD))


def prepare(backend: str, threads: int) -> None:
    """Call first in a rule script that uses Keras: ``prepare(params.experiment["backend"], snakemake.threads)``."""
    os.environ["KERAS_BACKEND"] = backend
    for name in THREAD_VARIABLES:
        os.environ[name] = str(max(1, int(threads)))
    quiet_cuda_probe()
    keep_freed_memory()
