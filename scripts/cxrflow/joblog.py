"""One way for a rule's job to log: its own log file, with any failure's traceback in it.

Jobs run as threads of the Snakemake process (`run:`) or as scripts (`script:`);
either way the log file is opened before any work, so a failed job always leaves
its log, and an exception that ends the job is written there with its traceback
before it propagates to Snakemake.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"


@contextmanager
def job_log(path: str | Path) -> Iterator[logging.Logger]:
    """A logger of its own for the job writing to ``path`` (appending: a resumed job keeps the first lines)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"cxrflow.job.{path.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    try:
        yield logger
    except BaseException:
        logger.exception("job failed")
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
