"""A Keras job runs on the threads Snakemake gave it (cxrflow.keras_job.prepare), not one per core."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from cxrflow.keras_job import THREAD_VARIABLES, prepare

# A child that frees and takes again 20 MiB per "batch", as a training step does, and prints the page
# faults of 20 such batches after the first: pages the kernel had to hand out (and zero) anew.
BATCHES = """
import resource, sys
import numpy as np
if sys.argv[1] == "prepared":
    from cxrflow.keras_job import prepare
    prepare("tensorflow", 1)

def batch():
    a, b, c = np.ones(1 << 20), np.ones(1 << 20), np.ones(1 << 19)  # 8, 8 and 4 MiB
    del c, b, a

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

# A child that prepares as a rule script does, runs a small model and prints how many threads it has.
CHILD = """
import os, sys
from cxrflow.keras_job import prepare
prepare("tensorflow", int(sys.argv[1]))
import numpy as np
import keras
model = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(8, 3), keras.layers.GlobalAveragePooling2D()])
model.predict(np.zeros((64, 32, 32, 1), np.float32), verbose=0)
print(len(os.listdir("/proc/self/task")))
"""


def test_prepare_sets_the_backend_and_every_thread_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KERAS_BACKEND", *THREAD_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    prepare("jax", 3)
    assert os.environ["KERAS_BACKEND"] == "jax"
    assert {os.environ[name] for name in THREAD_VARIABLES} == {"3"}
    prepare("torch", 0)  # Snakemake never grants 0 threads; a job still gets one
    assert {os.environ[name] for name in THREAD_VARIABLES} == {"1"}


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through /proc")
def test_tensorflow_starts_the_threads_it_was_given() -> None:
    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    counts = {}
    for threads in (1, 8):
        run = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=env, capture_output=True, text=True,
                             timeout=300, check=True)  # fmt: skip
        counts[threads] = int(run.stdout.split()[-1])
    # 8 threads each in the intra- and inter-op pools against 1: at least 7 more threads
    assert counts[8] - counts[1] >= 7, counts


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's settings are glibc's")
def test_prepared_job_keeps_freed_memory_for_the_next_batch() -> None:
    faults = {}
    for mode in ("plain", "prepared"):
        run = subprocess.run([sys.executable, "-c", BATCHES, mode], capture_output=True, text=True, timeout=120,
                             check=True)  # fmt: skip
        faults[mode] = int(run.stdout.split()[-1])
    # plain: the heap's top goes back to the kernel at every batch (~30,000 fresh pages measured here);
    # prepared: the pages stay, and no batch after the first touches a new one
    assert faults["plain"] > 5000 and faults["prepared"] < 500, faults
