"""A quiet console for a local run: what Snakemake and the jobs print is what a person should read.

Two kinds of noise drowned the useful lines:

* every TensorFlow job on a machine without a GPU printed ``failed call to cuInit ...
  CUDA error`` (TensorFlow probes the CUDA driver and logs the expected failure at error
  level, so TF_CPP_MIN_LOG_LEVEL cannot hide it without hiding real errors too):
  ``quiet_cuda_probe`` drops exactly that line and TensorFlow's start-up notices (oneDNN is on,
  no CUDA driver, CPU instructions, a malloc setting), and only where no GPU device exists;
* Snakemake prints every input and output path of a job on one line (``demo_data`` writes
  ~200 images, a manifest reads one record per image): ``ShortPathLists`` shortens such
  lists in what the console shows; the job's files are unchanged, and ``--summary``
  or the rule's log still name them all.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

# What a Keras job on a machine without a GPU drops from its stderr: TensorFlow's expected cuInit
# failure; and its start-up notices, at info level and mostly printed before its logging is set up
# (so TF_CPP_MIN_LOG_LEVEL does not reach them), twice per import: oneDNN is on, no CUDA driver
# here, which CPU instructions a rebuild could use; and, at a data pipeline's first use, the
# malloc setting it applied. Nothing in them asks anything of a user.
QUIET_LINES = re.compile(
    r"failed call to cuInit"
    r"|^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|^I\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] "
    r"|^I\d{4} [\d:. ]+\d+ generator_dataset_op\.cc:\d+\] Memory patch applied"
    r"|^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$"
)


def has_gpu_device(dev: str | Path = "/dev") -> bool:
    """An NVIDIA device node exists: a failed CUDA probe is then a real error, never hidden."""
    return any(Path(dev).glob("nvidia[0-9]*"))


def drop_stderr_lines(pattern: re.Pattern[str]) -> None:
    """From now on, lines of this process's stderr (file descriptor 2, so C++ logging too)
    that match ``pattern`` are dropped; every other line passes unchanged.

    Stderr is routed through a pipe read by a thread; at exit the descriptor is put back
    and the thread drains what is left, so a traceback printed at exit is never lost.
    """
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as reader:
            for line in reader:
                if not pattern.search(line.decode("utf-8", errors="replace")):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes the pipe's last write end: the reader sees EOF
        thread.join(timeout=5)

    atexit.register(restore)


def quiet_cuda_probe(dev: str | Path = "/dev") -> bool:
    """Before the first TensorFlow import: hide TensorFlow's expected cuInit failure on a machine
    without a GPU, and its start-up notices. Returns whether the filter was installed (False where
    a GPU device exists: there nothing is hidden)."""
    if has_gpu_device(dev):
        return False
    drop_stderr_lines(QUIET_LINES)
    return True


def shorten(paths: Sequence[str], keep: int = 3) -> list[str]:
    """The first ``keep`` paths and one entry saying how many more there are."""
    paths = list(paths)
    if len(paths) <= keep + 1:
        return paths
    return paths[:keep] + [f"... and {len(paths) - keep} more"]


_LONG_LIST = re.compile(r"(?P<head>(?:Missing output files|Updated input files|Input files updated by another job"
                        r"|Incomplete output files): )(?P<files>[^;]+)")  # fmt: skip


def shorten_reason(reason: str, keep: int = 3) -> str:
    """A job's reason line with each file list shortened (``Missing output files: a, b, ... and 197 more``)."""

    def short(match: re.Match[str]) -> str:
        return match["head"] + ", ".join(shorten(match["files"].split(", "), keep))

    return _LONG_LIST.sub(short, reason)


class ShortPathLists(logging.Filter):
    """Shortens the file lists of Snakemake's job-info records (input, output, reason) for the console."""

    def __init__(self, keep: int = 3) -> None:
        super().__init__()
        self.keep = keep

    def filter(self, record: logging.LogRecord) -> bool:
        for name in ("input", "output"):
            value = getattr(record, name, None)
            if isinstance(value, list) and len(value) > self.keep + 1:
                setattr(record, name, shorten([str(v) for v in value], self.keep))
        reason = getattr(record, "reason", None)
        if isinstance(reason, str):
            record.reason = shorten_reason(reason, self.keep)
        return True


def install_short_path_lists(logger: logging.Logger, keep: int = 3) -> None:
    """Attach ``ShortPathLists`` to Snakemake's logger once (the Snakefile is parsed more than once)."""
    if not any(isinstance(f, ShortPathLists) for f in logger.filters):
        logger.addFilter(ShortPathLists(keep))
